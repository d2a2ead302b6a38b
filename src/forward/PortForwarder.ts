/**
 * PortForwarder: the set of port-forward rules of one slipway instance (from --publish at start,
 * and added/removed at run time through the control API). Theory of operation of the data paths
 * is in tcp.ts (splice and tap modes) and udp.ts; this file owns ids, life cycle and counters.
 */

import type { Logger } from 'pino';
import { NetnsSockets, type SocketMaker } from './netnsSockets.js';
import { TcpForward, type TapOpener } from './tcp.js';
import { UdpForward } from './udp.js';
import { newForwardCounters, type ForwardCounters, type ForwardRule } from './rule.js';
import { hostPort } from '../ip/endpoint.js';

export interface PortForwarderEnv {
  agent: SocketMaker;
  mode: 'splice' | 'tap';
  /** Tap mode: the stack's active opener (null in splice mode). */
  tap: TapOpener | null;
  log: Logger;
  /** Whether the stack serves IPv6 (the API's 0.0.0.0 then listens on :: too, like slirp4netns). */
  ipv6: boolean;
}

export interface ForwardEntry {
  id: number;
  rule: ForwardRule;
  /** Where it listens, e.g. ["tcp 0.0.0.0:8080"]. */
  listening: string[];
}

interface Live extends ForwardEntry {
  impl: TcpForward | UdpForward;
}

export class PortForwarder {
  readonly counters: ForwardCounters = newForwardCounters();
  private readonly sockets: NetnsSockets;
  private readonly rules = new Map<number, Live>();
  private nextId = 1;

  constructor(private readonly env: PortForwarderEnv) {
    this.sockets = new NetnsSockets(env.agent);
  }

  /**
   * Start forwarding a rule. `fromApi`: the slirp4netns API's host address semantics (0.0.0.0
   * also means :: when IPv6 is on). Rejects with a ListenError naming address and port.
   */
  async add(rule: ForwardRule, fromApi = false): Promise<ForwardEntry> {
    const alsoIpv6 = fromApi && this.env.ipv6;
    const impl =
      rule.proto === 'tcp'
        ? new TcpForward(rule, { sockets: this.sockets, mode: this.env.mode, tap: this.env.tap, log: this.env.log, counters: this.counters, alsoIpv6 })
        : new UdpForward(rule, { sockets: this.sockets, log: this.env.log, counters: this.counters, alsoIpv6 });
    await impl.start();
    const id = this.nextId++;
    const live: Live = { id, rule, listening: impl.addresses(), impl };
    this.rules.set(id, live);
    this.env.log.info({ id, rule: rule.text, listening: live.listening, to: hostPort(rule.guestAddress, rule.guestPort), mode: rule.proto === 'tcp' ? this.env.mode : 'udp' }, 'forwarding');
    return { id, rule, listening: live.listening };
  }

  /** Stop listening for a rule (its established connections finish on their own). */
  remove(id: number): boolean {
    const live = this.rules.get(id);
    if (!live) return false;
    live.impl.close();
    this.rules.delete(id);
    this.env.log.info({ id, rule: live.rule.text }, 'forward removed');
    return true;
  }

  list(): ForwardEntry[] {
    return [...this.rules.values()].map(({ id, rule, listening }) => ({ id, rule, listening }));
  }

  /** Counters, with live spliced bytes included. */
  stats(): ForwardCounters & { rules: number } {
    const s = { ...this.counters, rules: this.rules.size };
    for (const l of this.rules.values()) {
      if (!(l.impl instanceof TcpForward)) continue;
      for (const c of l.impl.connections) {
        const st = c.relay?.stats();
        if (st) {
          s.bytesIn += st.aToB;
          s.bytesOut += st.bToA;
        }
      }
    }
    return s;
  }

  /** Live forwarded flows (spliced and tap-mode TCP connections, UDP peers). */
  flows(): object[] {
    const out: object[] = [];
    const now = Date.now();
    for (const l of this.rules.values()) {
      if (l.impl instanceof TcpForward) {
        for (const c of l.impl.connections) {
          const st = c.relay?.stats();
          out.push({ forward: l.id, proto: 'tcp', path: 'splice', peer: c.peer, target: c.target, ageMs: now - c.since, bytesIn: st?.aToB ?? 0, bytesOut: st?.bToA ?? 0 });
        }
      } else {
        for (const p of l.impl.list()) out.push({ forward: l.id, proto: 'udp', ...p });
      }
    }
    const tapFlows = this.env.tap?.flows?.() ?? [];
    if (tapFlows.length > 0) {
      const ids = new Map<ForwardRule, number>();
      for (const l of this.rules.values()) ids.set(l.rule, l.id);
      for (const { rule, ...f } of tapFlows) out.push({ forward: rule ? (ids.get(rule) ?? null) : null, proto: 'tcp', path: 'tap', ...f });
    }
    return out;
  }

  /** Shutdown: listeners and connections. */
  close(): void {
    this.sockets.close();
    for (const l of this.rules.values()) {
      if (l.impl instanceof TcpForward) l.impl.close(true);
      else l.impl.close();
    }
    this.rules.clear();
  }
}
