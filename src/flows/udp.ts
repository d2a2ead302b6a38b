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
 * One table per family: IPv4 tables hold uint32 guest addresses and IPv4 sockets, IPv6 tables
 * text addresses and IPv6 sockets (`env.family`). Keys embed the address, so they never collide.
 *
 * The host sockets are native (UdpHost, native/udp.c) and use the kernel's UDP offloads. From the
 * guest, datagrams of one binding to one destination that arrive in one tap batch are sent
 * together, straight from the tap ring: with UDP_SEGMENT when they have one size (one trip
 * through the host's stack for up to 64), else with sendmmsg. Toward the guest, UDP_GRO may
 * hand us up to 64 datagrams of one sender as one buffer with their size; `toGuest` gets it
 * with that segment size, and the stack writes it as one GSO_UDP_L4 frame the guest kernel
 * splits (or as single datagrams where it cannot).
 */

import type { Logger } from 'pino';
import { reportInternalError } from '../internalError.js';
import { errnoError } from './hostSocket.js';
import { UDP_HOST_SLOT, UdpHost, udpHostRing, type UdpHostHandle, type UdpHostRing } from '../native.js';
import { formatIpv4 } from '../wire/ipv4.js';
import ipaddr from 'ipaddr.js';

export interface UdpNatEnv<A = number> {
  /** Host sockets: IPv4 (default) or IPv6. */
  family?: 4 | 6;
  /**
   * Deliver buf[off, +len) to the guest: one datagram, or with `segSize` > 0 several of that
   * size (the last may be shorter) from one sender, back to back.
   */
  toGuest(src: A, dst: A, srcPort: number, dstPort: number, buf: Uint8Array, off: number, len: number, segSize: number): void;
  /**
   * Deliver datagrams parts[0, count) from one sender, all `segSize` bytes but the last (≤),
   * `total` bytes in all, to the guest together (one GSO frame where the link takes it).
   */
  toGuestParts?(src: A, dst: A, srcPort: number, dstPort: number, parts: Uint8Array[], count: number, segSize: number, total: number): void;
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
  /** When it last moved to the end of the table's least-recently-used order. */
  orderedAt: number;
  closed = false;
  socket: UdpHostHandle | null = null;
  constructor(
    readonly key: string,
    readonly guest: A,
    readonly guestPort: number,
    now: number,
  ) {
    this.lastUsed = now;
    this.orderedAt = now;
  }
}

/** The most datagrams one send takes (the kernel's UDP_MAX_SEGMENTS). */
const MAX_RUN = 64;
/** And their total size (a UDP payload stays under 64 KiB). */
const MAX_RUN_BYTES = 65000;

export class UdpNat<A = number> {
  private readonly bindings = new Map<string, UdpBinding<A>>();
  private readonly sweep: NodeJS.Timeout;
  readonly counters = {
    opened: 0, evicted: 0, expired: 0, toHost: 0, toGuest: 0, sendErrors: 0, dropped: 0, internalErrors: 0,
    /** Sends to the host (each one datagram or a run of them). */
    hostSends: 0,
    /** Reads from host sockets (each one datagram or a GRO run of them). */
    hostReads: 0,
    /** Bindings whose host socket could not be made (the datagram was dropped). */
    socketErrors: 0,
  };
  private readonly ring: UdpHostRing;

  // The run of guest datagrams waiting for one send: one binding, one destination, one buffer.
  private run: UdpBinding<A> | null = null;
  private runBuf: Uint8Array | null = null;
  private runHost = '';
  private runPort = 0;
  private runDst: A | null = null;
  private runCount = 0;
  private runBytes = 0;
  private readonly runOffs = new Int32Array(MAX_RUN);
  private readonly runLens = new Int32Array(MAX_RUN);
  /** The tap ring of the batch in progress (datagrams in it stay valid until batchEnd). */
  private batchBuf: Uint8Array | null = null;

  // Last source seen on the receive side, and what it mapped to.
  private lastV4 = -1;
  private readonly lastV6 = new Uint8Array(16);
  private lastV6Set = false;
  private lastFrom: A | null = null;

  constructor(
    private readonly env: UdpNatEnv<A>,
    private readonly limit = 4096,
    private readonly idleMs = 120_000,
  ) {
    this.sweep = setInterval(() => this.expire(), Math.min(10_000, idleMs / 2));
    this.sweep.unref();
    this.ring = udpHostRing();
  }

  get active(): number {
    return this.bindings.size;
  }

  /**
   * Frames of one tap batch in `ring` follow: datagrams in it are held for a joint send until
   * batchEnd() (any other buffer, e.g. a reassembled packet, is sent at once).
   */
  batchBegin(ring: Uint8Array): void {
    this.batchBuf = ring;
  }

  /** The tap batch is done (its ring is about to be reused): send what is held. */
  batchEnd(): void {
    this.batchBuf = null;
    if (this.runCount > 0) this.flush();
  }

  /** A datagram from the guest (buf[off, +len): see batchBegin for how long it is used). */
  input(src: A, dst: A, srcPort: number, dstPort: number, buf: Uint8Array, off: number, len: number): void {
    const host = this.env.route(dst, dstPort);
    if (host === null) {
      this.counters.dropped++;
      return;
    }
    // A burst comes from one guest socket: skip the key and the map for the binding of the last.
    const last = this.lastBinding;
    const b = last !== null && last.guest === src && last.guestPort === srcPort && !last.closed ? last : this.binding(src, srcPort);
    if (b === null) {
      this.counters.dropped++;
      return;
    }
    this.counters.toHost++;
    if (this.runCount > 0) {
      const seg = this.runLens[0];
      const joins = this.run === b && this.runBuf === buf && this.runPort === dstPort && this.runHost === host &&
        this.runCount < MAX_RUN && this.runBytes + len <= MAX_RUN_BYTES &&
        this.runLens[this.runCount - 1] === seg && len <= seg;
      if (!joins) this.flush();
    }
    if (this.runCount === 0) {
      this.run = b;
      this.runBuf = buf;
      this.runHost = host;
      this.runPort = dstPort;
      this.runDst = dst;
    }
    this.runOffs[this.runCount] = off;
    this.runLens[this.runCount] = len;
    this.runCount++;
    this.runBytes += len;
    if (buf !== this.batchBuf) this.flush();
  }

  private flush(): void {
    const b = this.run as UdpBinding<A>;
    const n = this.runCount;
    this.runCount = 0;
    this.runBytes = 0;
    this.run = null;
    const buf = this.runBuf as Uint8Array;
    this.runBuf = null;
    if (b.closed || b.socket === null) {
      this.counters.dropped += n;
      return;
    }
    this.counters.hostSends++;
    this.touch(b);
    const r = b.socket.sendSegments(buf, this.runOffs, this.runLens, n, this.runHost, this.runPort);
    if (r < 0) {
      this.counters.sendErrors += n;
      const err = errnoError(r, 'sendmsg');
      if (err.code !== 'EAGAIN' && err.code !== 'ENOBUFS') this.env.unreachable(b.guest, b.guestPort, this.runDst as A, this.runPort, err);
    } else if (r < n) {
      this.counters.sendErrors += n - r;
    }
  }

  /** The binding the last guest datagram used (see input). */
  private lastBinding: UdpBinding<A> | null = null;

  private binding(src: A, srcPort: number): UdpBinding<A> | null {
    const key = `${src}:${srcPort}`;
    let b = this.bindings.get(key);
    if (b) {
      this.touch(b);
      this.lastBinding = b;
      return b;
    }
    if (this.bindings.size >= this.limit) {
      const oldest = this.bindings.values().next().value as UdpBinding<A>;
      this.close(oldest);
      this.counters.evicted++;
    }
    const binding = new UdpBinding<A>(key, src, srcPort, Date.now());
    try {
      binding.socket = new UdpHost(this.env.family ?? 4, this.env.bindAddress ?? null, (n: number) => this.fromHost(binding, n));
    } catch (e) {
      // Out of fds, say: every datagram would fail the same way, so the log says it at powers of two.
      const n = ++this.counters.socketErrors;
      if ((n & (n - 1)) === 0) this.env.log.warn({ err: (e as Error).message, guest: key, count: n }, 'udp: cannot open a host socket (datagram dropped)');
      return null;
    }
    this.bindings.set(key, binding);
    this.counters.opened++;
    this.lastBinding = binding;
    return binding;
  }

  /** Slots [0, n) of the shared ring were read for `b`. */
  private fromHost(b: UdpBinding<A>, n: number): void {
    try {
      this.deliver(b, n);
    } catch (e) {
      reportInternalError(this.env.log, this.counters, 'a UDP datagram from the host', e);
    }
  }

  private deliver(b: UdpBinding<A>, n: number): void {
    if (b.closed) return;
    const { ring, meta } = this.ring;
    const env = this.env;
    this.counters.hostReads += n;
    this.touch(b);
    for (let i = 0; i < n; ) {
      const m = i * 4;
      const len = meta[m];
      if (len < 0) {
        this.counters.dropped++;
        i++;
        continue;
      }
      const from = this.source(i);
      if (from === null) {
        this.counters.dropped++;
        i++;
        continue;
      }
      const seg = meta[m + 1];
      // Single datagrams of one sender and one size (the last may be shorter), read together:
      // to the guest together, as the kernel's GRO would have handed them to us.
      let j = i + 1;
      if (seg === 0 && env.toGuestParts !== undefined) {
        let total = len;
        let last = len;
        while (j < n && last === len) {
          const mj = j * 4;
          const lj = meta[mj];
          if (lj <= 0 || lj > len || meta[mj + 1] !== 0 || meta[mj + 2] !== meta[m + 2] || total + lj > MAX_RUN_BYTES || !this.sameSource(i, j)) break;
          total += lj;
          last = lj;
          j++;
        }
        if (j - i > 1) {
          const parts = this.parts;
          for (let k = i; k < j; k++) parts[k - i] = this.slotView(k, meta[k * 4]);
          this.counters.toGuest += j - i;
          env.toGuestParts(from, b.guest, meta[m + 2], b.guestPort, parts, j - i, len, total);
          i = j;
          continue;
        }
      }
      this.counters.toGuest += seg > 0 ? Math.ceil(len / seg) : 1;
      env.toGuest(from, b.guest, meta[m + 2], b.guestPort, ring, i * UDP_HOST_SLOT, len, seg);
      i = j;
    }
  }

  private readonly parts: Uint8Array[] = [];
  private readonly slotViews: Uint8Array[] = [];

  /** ring slot k's first `len` bytes (the view is kept: a stream reads one size again and again). */
  private slotView(k: number, len: number): Uint8Array {
    let v = this.slotViews[k];
    if (v === undefined || v.length !== len) v = this.slotViews[k] = this.ring.ring.subarray(k * UDP_HOST_SLOT, k * UDP_HOST_SLOT + len);
    return v;
  }

  private sameSource(i: number, j: number): boolean {
    const meta = this.ring.meta;
    if (this.env.family !== 6) return meta[i * 4 + 3] === meta[j * 4 + 3];
    const a = this.ring.addrs;
    for (let k = 0; k < 16; k++) if (a[i * 16 + k] !== a[j * 16 + k]) return false;
    return true;
  }

  /** The guest-visible source of ring slot i (cached: a stream comes from one sender). */
  private source(i: number): A | null {
    const meta = this.ring.meta;
    if (this.env.family !== 6) {
      const v4 = meta[i * 4 + 3];
      if (v4 !== this.lastV4) {
        this.lastV4 = v4;
        this.lastFrom = this.env.unroute(formatIpv4(v4 >>> 0));
      }
      return this.lastFrom;
    }
    const a = this.ring.addrs;
    const o = i * 16;
    let same = this.lastV6Set;
    for (let k = 0; same && k < 16; k++) same = a[o + k] === this.lastV6[k];
    if (!same) {
      this.lastV6.set(a.subarray(o, o + 16));
      this.lastV6Set = true;
      const addr = ipaddr.fromByteArray(Array.from(this.lastV6));
      // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
      const text = addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() ? (addr as ipaddr.IPv6).toIPv4Address().toString() : addr.toString();
      this.lastFrom = this.env.unroute(text);
    }
    return this.lastFrom;
  }

  /**
   * Mark a binding used. Map order is least recently used first, to within a second: a binding
   * moves to the end at most once a second (`orderedAt`), not on every datagram.
   */
  private touch(b: UdpBinding<A>): void {
    const now = Date.now();
    b.lastUsed = now;
    if (b.closed || now - b.orderedAt < 1000) return;
    b.orderedAt = now;
    this.bindings.delete(b.key);
    this.bindings.set(b.key, b);
  }

  private expire(): void {
    const cutoff = Date.now() - this.idleMs;
    for (const b of this.bindings.values()) {
      // Map order is orderedAt order, and lastUsed ≥ orderedAt: the rest are newer.
      if (b.orderedAt > cutoff) break;
      if (b.lastUsed > cutoff) continue;
      this.close(b);
      this.counters.expired++;
    }
  }

  private close(b: UdpBinding<A>): void {
    if (b.closed) return;
    if (this.run === b && this.runCount > 0) this.flush();
    b.closed = true;
    this.bindings.delete(b.key);
    b.socket?.close();
    b.socket = null;
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
        hostPort = b.socket?.localPort() ?? null;
      } catch {
        /* closed */
      }
      return { guest: b.key, hostPort, idleMs: now - b.lastUsed };
    });
  }
}

