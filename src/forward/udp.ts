/**
 * UdpForward: one UDP port-forward rule.
 *
 * The host socket (node dgram) receives from any peer. Each peer (address, port) gets its own
 * socket made by the agent inside the container netns and connected to the target, so replies
 * come back on it and go to that peer from the host socket. The target is the rule's guest
 * address, bound as the local address (so the kernel says EADDRNOTAVAIL when it is not local in
 * the netns), else the netns loopback.
 *
 * Batching: the container-side socket is a native DgramBatch (recvmmsg into a ring, one JS call
 * per batch; sendmmsg for what the host socket delivered in one loop turn), and a batch from the
 * container goes out of the host socket's fd with one sendmmsg straight from that ring
 * (`relayTo`). The host socket's receive side is still node's (one callback per datagram). Bounded: at most
 * `maxPeers` mappings (the least recently used is evicted), at most 64 datagrams queued per peer
 * while its socket is being made, idle mappings expire after `idleMs`.
 */

import type dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from 'pino';
import { catchInternal, guarded } from '../internalError.js';
import { DgramBatch, closeFd, type DgramBatch as DgramBatchHandle } from '../native.js';
import { hostPort } from '../ip/endpoint.js';
import { bindUdp, describeEndpoint, listenAddresses, noIpv6 } from './listen.js';
import type { NetnsSockets } from './netnsSockets.js';
import type { ForwardCounters, ForwardRule } from './rule.js';

export interface UdpForwardEnv {
  sockets: NetnsSockets;
  log: Logger;
  counters: ForwardCounters;
  alsoIpv6?: boolean;
  maxPeers?: number;
  idleMs?: number;
}

const PENDING_MAX = 64;
const SLOT = 65536;
const SLOTS = 16;

interface Peer {
  key: string;
  host: dgram.Socket;
  address: string;
  port: number;
  batch: DgramBatchHandle | null;
  pending: Buffer[];
  out: Buffer[];
  flushQueued: boolean;
  lastUsed: number;
  closed: boolean;
  target: string;
}

export class UdpForward {
  private readonly sockets: dgram.Socket[] = [];
  private readonly peers = new Map<string, Peer>();
  private readonly sweep: NodeJS.Timeout;
  private closed = false;

  constructor(
    readonly rule: ForwardRule,
    private readonly env: UdpForwardEnv,
  ) {
    const idle = env.idleMs ?? 90_000;
    this.sweep = setInterval(() => this.expire(idle), Math.min(10_000, idle / 2));
    this.sweep.unref();
  }

  async start(): Promise<void> {
    const r = this.rule;
    try {
      for (const la of listenAddresses(r.hostAddress, this.env.alsoIpv6)) {
        let s: dgram.Socket;
        try {
          s = await bindUdp(la, r.hostPort);
        } catch (e) {
          if (r.hostAddress === null && la.address === '::' && noIpv6(e)) s = await bindUdp({ address: '0.0.0.0', ipv6Only: false }, r.hostPort);
          else throw e;
        }
        s.on('message', this.guard('a datagram on a UDP forward', (msg: Buffer, rinfo: dgram.RemoteInfo) => this.fromHost(s, msg, rinfo)));
        s.on('error', (e) => this.env.log.warn({ err: e.message, rule: r.text }, 'udp forward socket error'));
        this.sockets.push(s);
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  addresses(): string[] {
    return this.sockets.map((s) => {
      const a = s.address();
      return describeEndpoint('udp', a.address, a.port);
    });
  }

  /** Peers with their idle time, for the flow listing. */
  list(): { peer: string; target: string; idleMs: number }[] {
    const now = Date.now();
    return [...this.peers.values()].map((p) => ({ peer: hostPort(p.address, p.port), target: p.target, idleMs: now - p.lastUsed }));
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweep);
    for (const s of this.sockets) s.close();
    this.sockets.length = 0;
    for (const p of [...this.peers.values()]) this.drop(p);
  }

  private guard<A extends unknown[]>(what: string, fn: (...args: A) => void): (...args: A) => void {
    return guarded(this.env.log, this.env.counters, what, fn);
  }

  private fromHost(host: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    const key = `${rinfo.address}|${rinfo.port}`;
    let p = this.peers.get(key);
    const now = Date.now();
    if (p === undefined) {
      p = this.newPeer(key, host, rinfo);
    } else if (now - p.lastUsed > 1000) {
      // keep the map in LRU order without touching it on every datagram
      this.peers.delete(key);
      this.peers.set(key, p);
    }
    p.lastUsed = now;
    if (p.batch === null) {
      if (p.pending.length < PENDING_MAX) p.pending.push(msg);
      else this.env.counters.udpDropped++;
      return;
    }
    p.out.push(msg);
    if (!p.flushQueued) {
      p.flushQueued = true;
      setImmediate(this.guard('a UDP forward flush', () => this.flush(p)));
    }
  }

  private flush(p: Peer): void {
    p.flushQueued = false;
    if (p.closed || p.batch === null || p.out.length === 0) return;
    const out = p.out;
    p.out = [];
    const n = p.batch.sendBatch(out);
    this.env.counters.udpToGuest += n;
    this.env.counters.udpDropped += out.length - n;
  }

  private newPeer(key: string, host: dgram.Socket, rinfo: dgram.RemoteInfo): Peer {
    const max = this.env.maxPeers ?? 1024;
    if (this.peers.size >= max) {
      const oldest = this.peers.values().next().value as Peer;
      this.drop(oldest);
    }
    const p: Peer = {
      key, host, address: rinfo.address, port: rinfo.port, batch: null, pending: [], out: [],
      flushQueued: false, lastUsed: Date.now(), closed: false, target: '',
    };
    this.peers.set(key, p);
    this.env.counters.udpPeers++;
    catchInternal(this.env.log, this.env.counters, 'a UDP forward peer', this.connect(p));
    return p;
  }

  private async connect(p: Peer): Promise<void> {
    const r = this.rule;
    const family = net.isIPv6(r.guestAddress) ? 6 : 4;
    const lo = family === 6 ? '::1' : '127.0.0.1';
    let fd = -1;
    for (const t of [{ address: r.guestAddress, bind: true }, { address: lo, bind: false }]) {
      try {
        fd = await this.env.sockets.open({
          family,
          type: 'dgram',
          ...(t.bind ? { bind: { address: t.address, port: 0 } } : {}),
          connect: { address: t.address, port: r.guestPort },
        });
        p.target = hostPort(t.address, r.guestPort);
        break;
      } catch (e) {
        if ((e as { code?: string }).code !== 'EADDRNOTAVAIL') {
          this.env.log.debug({ err: (e as Error).message, rule: r.text }, 'udp forward: cannot make the container socket');
          break;
        }
      }
    }
    if (fd < 0 || p.closed) {
      if (fd >= 0) closeFd(fd);
      this.env.counters.udpDropped += p.pending.length;
      this.drop(p);
      return;
    }
    try {
      p.batch = new DgramBatch(fd, SLOT, SLOTS, this.guard('a datagram from the container on a UDP forward', (n: number) => this.fromGuest(p, n)));
    } catch (e) {
      closeFd(fd);
      this.drop(p);
      return;
    }
    p.out = p.pending;
    p.pending = [];
    this.flush(p);
  }

  private fromGuest(p: Peer, n: number): void {
    const b = p.batch;
    if (b === null || p.closed) return;
    p.lastUsed = Date.now();
    // Straight from the ring to the peer through the host socket's fd: one sendmmsg per batch.
    const fd = (p.host as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd === 'number' && fd >= 0) {
      const sent = b.relayTo(fd, n, p.address, p.port);
      this.env.counters.udpToHost += sent;
      this.env.counters.udpDropped += n - sent;
      return;
    }
    for (let i = 0; i < n; i++) {
      // Copy: the ring is reused after this callback, and dgram sends asynchronously.
      const d = Buffer.from(b.ring.subarray(i * SLOT, i * SLOT + b.lengths[i]));
      p.host.send(d, p.port, p.address, (err) => {
        if (err) this.env.counters.udpDropped++;
      });
    }
    this.env.counters.udpToHost += n;
  }

  private drop(p: Peer): void {
    if (p.closed) return;
    p.closed = true;
    p.batch?.close();
    p.batch = null;
    if (this.peers.get(p.key) === p) this.peers.delete(p.key);
  }

  private expire(idleMs: number): void {
    const now = Date.now();
    for (const p of [...this.peers.values()]) if (now - p.lastUsed > idleMs) this.drop(p);
  }
}
