/**
 * Tap-mode forwards: an accepted host socket becomes an active open of the stack's TCP endpoint
 * toward the guest, from the gateway address and an ephemeral port (what libslirp's hostfwd does).
 */

import type net from 'node:net';
import type { TcpFlow, TcpFlowTable } from '../flows/tcp.js';
import { formatIpv4, parseIpv4 } from '../wire/ipv4.js';
import { hostPort } from '../ip/endpoint.js';
import type { ForwardRule } from './rule.js';
import type { TapFlowInfo, TapOpener } from './tcp.js';

const addr = (a: number | string): string => (typeof a === 'number' ? formatIpv4(a) : a);

const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_COUNT = 65536 - EPHEMERAL_FIRST;

export class GatewayOpener implements TapOpener {
  private next = 0;
  /** Flows this opener made (weak: a flow leaves with the table's entry). */
  private readonly opened = new WeakMap<TcpFlow, { rule: ForwardRule | undefined; peer: string; since: number }>();

  constructor(
    private readonly tcp: TcpFlowTable,
    /** The gateway address (uint32): the source the guest sees. */
    private readonly gateway: number,
  ) {}

  openToGuest(guestAddress: string, guestPort: number, socket: net.Socket, rule?: ForwardRule): boolean {
    let guest: number;
    try {
      guest = parseIpv4(guestAddress);
    } catch {
      socket.resetAndDestroy();
      return false;
    }
    for (let i = 0; i < 64; i++) {
      const port = EPHEMERAL_FIRST + (this.next++ % EPHEMERAL_COUNT);
      if (this.tcp.lookup(4, guest, guestPort, this.gateway, port)) continue;
      const peer = hostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
      const flow = this.tcp.openToGuest(4, guest, guestPort, this.gateway, port, socket);
      if (!flow) return false;
      this.opened.set(flow, { rule, peer, since: Date.now() });
      return true;
    }
    socket.resetAndDestroy();
    return false;
  }

  /** Live tap-mode forwarded connections (the flows of the stack's table this opener made). */
  flows(): TapFlowInfo[] {
    const out: TapFlowInfo[] = [];
    const now = Date.now();
    for (const f of this.tcp.flows()) {
      const o = this.opened.get(f);
      if (!o) continue;
      out.push({
        rule: o.rule,
        peer: o.peer,
        target: `${addr(f.guestAddr)}:${f.guestPort}`,
        source: `${addr(f.remoteAddr)}:${f.remotePort}`,
        state: f.stateName,
        ageMs: now - o.since,
      });
    }
    return out;
  }
}
