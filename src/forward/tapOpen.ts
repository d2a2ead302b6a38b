/**
 * Tap-mode forwards: an accepted host socket becomes an active open of the stack's TCP endpoint
 * toward the guest, from the gateway address and an ephemeral port (what libslirp's hostfwd does).
 */

import type net from 'node:net';
import type { TcpFlowTable } from '../flows/tcp.js';
import { parseIpv4 } from '../wire/ipv4.js';
import type { TapOpener } from './tcp.js';

const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_COUNT = 65536 - EPHEMERAL_FIRST;

export class GatewayOpener implements TapOpener {
  private next = 0;

  constructor(
    private readonly tcp: TcpFlowTable,
    /** The gateway address (uint32): the source the guest sees. */
    private readonly gateway: number,
  ) {}

  openToGuest(guestAddress: string, guestPort: number, socket: net.Socket): boolean {
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
      return this.tcp.openToGuest(4, guest, guestPort, this.gateway, port, socket) !== null;
    }
    socket.resetAndDestroy();
    return false;
  }
}
