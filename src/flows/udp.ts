/**
 * UDP NAT. Theory of operation:
 *
 * Each guest (address, port) that sends UDP gets one `UdpBinding`: a host dgram socket bound to
 * an ephemeral port, from which it sends to whatever destinations the guest addresses. Datagrams
 * arriving on that socket go back to the guest from the address and port they came from (with
 * host loopback shown as the gateway address, the mirror of the outbound mapping). A binding
 * lives while it is used and is closed `idleMs` after its last datagram either way; the table is
 * bounded and evicts the least recently used binding when full.
 *
 * One table per family: IPv4 tables hold uint32 guest addresses and udp4 sockets, IPv6 tables
 * text addresses and udp6 sockets (`env.family`). Keys embed the address, so they never collide.
 */

import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { guarded } from '../internalError.js';

export interface UdpNatEnv<A = number> {
  /** Host sockets: udp4 (default) or udp6. */
  family?: 4 | 6;
  /** Deliver a datagram to the guest. */
  toGuest(src: A, dst: A, srcPort: number, dstPort: number, payload: Uint8Array): void;
  /** Map a guest-visible destination to the real host destination (null: drop). */
  route(dst: A, port: number): string | null;
  /** Map a host-side source address back to a guest-visible address (null: drop). */
  unroute(address: string): A | null;
  /** A send failed with an errno a guest should hear about as ICMP (unreachable). */
  unreachable(guest: A, guestPort: number, dst: A, dstPort: number, err: NodeJS.ErrnoException): void;
  /** Outbound bind address for host sockets (--outbound-addr), or undefined. */
  bindAddress?: string;
  log: Logger;
}

export class UdpBinding<A = number> {
  lastUsed: number;
  closed = false;
  constructor(
    readonly key: string,
    readonly guest: A,
    readonly guestPort: number,
    readonly socket: dgram.Socket,
    now: number,
  ) {
    this.lastUsed = now;
  }
}

export class UdpNat<A = number> {
  private readonly bindings = new Map<string, UdpBinding<A>>();
  private readonly sweep: NodeJS.Timeout;
  readonly counters = { opened: 0, evicted: 0, expired: 0, toHost: 0, toGuest: 0, sendErrors: 0, dropped: 0, internalErrors: 0 };

  constructor(
    private readonly env: UdpNatEnv<A>,
    private readonly limit = 4096,
    private readonly idleMs = 120_000,
  ) {
    this.sweep = setInterval(() => this.expire(), Math.min(10_000, idleMs / 2));
    this.sweep.unref();
  }

  get active(): number {
    return this.bindings.size;
  }

  /** A datagram from the guest; `payload` is copied. */
  input(src: A, dst: A, srcPort: number, dstPort: number, buf: Uint8Array, off: number, len: number): void {
    const host = this.env.route(dst, dstPort);
    if (host === null) {
      this.counters.dropped++;
      return;
    }
    const b = this.binding(src, srcPort);
    // Copy: the frame ring is reused as soon as this batch returns.
    const data = Buffer.from(buf.subarray(off, off + len));
    this.counters.toHost++;
    b.socket.send(data, dstPort, host, this.guard('a UDP send error', (err: Error | null) => {
      if (err) {
        this.counters.sendErrors++;
        this.env.unreachable(src, srcPort, dst, dstPort, err as NodeJS.ErrnoException);
      }
    }));
  }

  private binding(src: A, srcPort: number): UdpBinding<A> {
    const key = `${src}:${srcPort}`;
    let b = this.bindings.get(key);
    if (b) {
      this.touch(b);
      return b;
    }
    if (this.bindings.size >= this.limit) {
      const oldest = this.bindings.values().next().value as UdpBinding<A>;
      this.close(oldest);
      this.counters.evicted++;
    }
    const socket = dgram.createSocket({ type: this.env.family === 6 ? 'udp6' : 'udp4' });
    const binding = new UdpBinding(key, src, srcPort, socket, Date.now());
    socket.on('message', this.guard('a UDP datagram from the host', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
      const from = this.env.unroute(rinfo.address);
      if (from === null) {
        this.counters.dropped++;
        return;
      }
      this.touch(binding);
      this.counters.toGuest++;
      this.env.toGuest(from, binding.guest, rinfo.port, binding.guestPort, msg);
    }));
    socket.on('error', (err) => {
      // ECONNREFUSED and friends on an unconnected socket are not fatal to the binding.
      this.env.log.debug({ err, guest: key }, 'udp host socket error');
    });
    if (this.env.bindAddress) socket.bind({ address: this.env.bindAddress, port: 0 });
    this.bindings.set(key, binding);
    this.counters.opened++;
    return binding;
  }

  private guard<A extends unknown[]>(what: string, fn: (...args: A) => void): (...args: A) => void {
    return guarded(this.env.log, this.counters, what, fn);
  }

  /** Mark a binding used: Map order is least recently used first. */
  private touch(b: UdpBinding<A>): void {
    b.lastUsed = Date.now();
    if (b.closed) return;
    this.bindings.delete(b.key);
    this.bindings.set(b.key, b);
  }

  private expire(): void {
    const cutoff = Date.now() - this.idleMs;
    for (const b of this.bindings.values()) {
      if (b.lastUsed > cutoff) break; // LRU order: the rest are newer
      this.close(b);
      this.counters.expired++;
    }
  }

  private close(b: UdpBinding<A>): void {
    if (b.closed) return;
    b.closed = true;
    this.bindings.delete(b.key);
    b.socket.close();
  }

  /** Close every binding (shutdown). */
  closeAll(): void {
    clearInterval(this.sweep);
    for (const b of [...this.bindings.values()]) this.close(b);
  }

  list(): { guest: string; hostPort: number | null; idleMs: number }[] {
    const now = Date.now();
    return [...this.bindings.values()].map((b) => {
      let hostPort: number | null = null;
      try {
        hostPort = b.socket.address().port;
      } catch {
        /* not bound yet */
      }
      return { guest: b.key, hostPort, idleMs: now - b.lastUsed };
    });
  }
}
