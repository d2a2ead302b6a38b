/**
 * TCP endpoint toward the guest. Theory of operation:
 *
 * The guest's TCP connection ends here. Each connection is one `TcpFlow`: toward the guest it is
 * a real TCP endpoint (handshake, sequence numbers, ACKs, retransmission, flow control, FIN/RST);
 * toward the host it is an ordinary stream socket (`HostSide`: the native `HostSocket` of
 * flows/hostSocket.ts for the stack's own connects, or a `net.Socket` for tap-mode forwards and
 * tests). Bytes are relayed between the two; segments are never forwarded as such, so the host
 * kernel does its own TCP with the world.
 *
 * Opens. Passive (guest SYN): the flow starts in CONNECTING and asks the env for a host socket;
 * the SYN-ACK is sent only once that socket connects, so the guest sees a refused or unreachable
 * destination exactly as it would without us (RST on ECONNREFUSED, an ICMP error via
 * `env.unreachable` on ENETUNREACH/EHOSTUNREACH/ETIMEDOUT). Guest SYN retransmits meanwhile are
 * absorbed. Active (inbound forwards in tap mode, `TcpFlowTable.openToGuest`): the host socket is
 * already connected; we send the SYN (retransmitted on a timer) and relay after the SYN-ACK.
 *
 * Guest → host. A segment beyond RCV.NXT (a frame lost or reordered before it) is copied into a
 * bounded per-flow `ReorderQueue` and answered at once with a duplicate ACK; the guest's fast
 * retransmit fills the gap, and the held data follows it to the host, so one loss costs one
 * retransmission, not the rest of the window. What does not fit the queue is dropped (the guest
 * sends it again). Overlap with received data is trimmed. In-order payload is not copied at once: the flow
 * notes (offset, length) slices of the frame buffer (the tap ring, valid until the end of the
 * batch) and writes them when the batch ends (`flush`). When the host socket has nothing queued
 * (no backlog in Node or libuv), the slices go straight from the ring to the socket fd with one
 * sendmsg (`env.writeSlices`, native): no user-space copy, no allocation. Whatever the kernel did
 * not take (or everything, while a backlog exists or without a native writer) is copied into a
 * per-flow slab, a ring of `bufferLimit` bytes allocated on first use and reused, and handed to
 * `socket.write` as one contiguous run per batch; a run's space is released by its write
 * callback. Order is kept: direct writes happen only with nothing queued, and everything else
 * goes through the socket in order. The advertised window is what we can still buffer toward
 * the host: `bufferLimit` less the larger of `socket.writableLength` and the slab's bytes in
 * use, less slices not yet flushed; scaled, and the right edge we advertised never moves left; it
 * only moves right by at least min(limit/2, MSS) (receiver SWS avoidance). So the slab never
 * overflows when the guest honours our window (if it ever did, the excess is written from a
 * fresh copy). When the host drains a window that had become small, a window update is sent from
 * the write callback.
 *
 * ACKs are batched: receiving marks the flow "dirty"; `flushAcks()` (called by the stack after
 * each tap batch, and as a microtask fallback) sends one ACK per flow that needs one. An ACK is
 * due at once after two data segments, a full-sized segment with PSH, FIN, out-of-order or
 * duplicate data, else it is delayed by `delayedAckMs`. A lone segment smaller than our MSS with
 * PSH (a request, while the host can still reply) is acknowledged within `pushAckDelayMs` (5 ms):
 * a host reply that comes sooner carries the ACK, so a request/response exchange costs the guest
 * one frame from us, not two. Once that wait has run out on one of a flow's requests (the guest
 * may be a Nagle sender waiting for the ACK: a write-write-read pattern), the flow's later
 * requests are acknowledged within `pushAckQuickMs` (1 ms), so such a guest stalls 5 ms once and
 * 1 ms after. What comes next after that lone ACK tells which it was: more data from the guest
 * (the rest of a write Nagle held back) keeps the quick delay; the host's reply first says the
 * host was only slow, and the flow goes back to the 5 ms wait (a database connection whose
 * queries sometimes take longer would otherwise pay an ACK frame per request for good). Why not
 * 1 ms throughout: the deadline is pending while the loop sleeps between request and reply, and
 * an epoll timeout shorter than the kernel's tick (4 ms at 250 Hz) makes the kernel program the
 * timer hardware on the way into the sleep and again out of it; on the
 * benchmark VM that cost ~5 µs of CPU per sleep, ~18 µs per connection (bench/PROFILE.md). Any
 * segment we send carries the ACK and cancels a pending one.
 *
 * Host → guest. Host socket chunks are queued as they come (a list of Buffers with offsets, no
 * concatenation: `SendQueue`); queue position 0 is SND.UNA. Segments of at most the guest's MSS
 * (or, when the tap takes GSO super-frames, up to `gsoMaxPayload`) are cut from single chunks
 * (a segment never spans two chunks, so the payload is handed to the env without copying) and
 * sent within the guest's receive window, honoured exactly; no
 * congestion control toward a local guest. Unacknowledged bytes stay queued for retransmission:
 * RTO (RFC 6298 estimator, Karn's rule, exponential back-off, retry limit), fast retransmit on
 * the third duplicate ACK, and a persist timer with 1-byte probes while the guest's window is
 * zero. The host socket is paused while queued+unacked bytes reach `bufferLimit` or the guest's
 * window is closed, and resumed once it opens and the queue is at most half full. So memory per
 * flow is bounded both ways by `bufferLimit` (plus one chunk).
 *
 * Close. Guest FIN → `socket.end()` after the data before it (host data keeps flowing to the
 * guest); host 'end' → FIN to the guest after all queued data, retransmitted like data (a native
 * socket reports the EOF with the last data, `eofWithData`, so they go out in one frame). Guest
 * RST (exactly at RCV.NXT; elsewhere in the window: challenge ACK, RFC 5961) →
 * `socket.resetAndDestroy()`; host errors (ECONNRESET, EPIPE, …) → RST to the guest. When both
 * FINs are acknowledged the flow is finished (`env.closed`). If our FIN went first (the host
 * closed first), the 4-tuple lingers `timeWaitMs` in TIME-WAIT, where a retransmitted guest FIN
 * is ACKed again; what lingers is a TIME-WAIT record in the table (timeWait.ts), not the flow (at
 * thousands of connections per second, whole flows held for 2 s were most of the heap and of the
 * GC's work). If the guest's FIN went first, its side holds the TIME-WAIT and ours closes at once.
 * Every state has a timer that ends it: connect timeout, SYN(-ACK) retries,
 * data retries, idle (long while open, short once either side has sent FIN), TIME-WAIT.
 *
 * Express lane. An idle established flow (nothing pending either way) may be published to the
 * native lane (native/express.c, env.express), which then handles lone requests and their replies
 * without calling JS; every entry point here syncs first (expressSync) and takes over what the
 * lane owes. docs/architecture.md has the rules.
 *
 * Addresses: IPv4 addresses are uint32 numbers, IPv6 addresses strings; `flow.key` starts with
 * the family, so keys never collide. Segments given to `input` must already be checksum-verified.
 */

import { reportInternalError } from '../internalError.js';
import { ACK, FIN, PSH, RST, SYN, type TcpOptions, type TcpSegment, seqAdd, seqDiff, seqLt } from '../wire/tcp.js';
import { ReorderQueue } from './reorder.js';
import { TupleMap } from './tupleMap.js';
import { TimeWaitTable } from './timeWait.js';
import { Deadline, DeadlineQueue } from './deadline.js';
import {
  type ExpressBinding, X_ADV_EDGE, X_EVENTS, X_FLAGS, X_GSO, X_INFLIGHT, X_LIMIT, X_OWED, X_RCV_MSS, X_RCV_NXT,
  X_RCV_SHIFT, X_RX_BYTES, X_RX_SEGS, X_SND_MSS, X_SND_NXT, X_SND_SHIFT, X_SND_UNA, X_SND_WND,
  X_ACK_DELAY, X_DUE, X_TX_SEGS, X_TXLEN, X_WL1, X_WL2, XE_TX, XF_RX, XF_TX,
} from './express.js';

/** A guest-visible address: uint32 for IPv4, text for IPv6. */
export type TcpAddr = number | string;

/** The two ends of a guest connection as the guest sees them (what the env needs to emit). */
export interface TcpEndpoints {
  readonly family: 4 | 6;
  readonly guestAddr: TcpAddr;
  readonly guestPort: number;
  readonly remoteAddr: TcpAddr;
  readonly remotePort: number;
}

/** SYN options to write: MSS and window shift (0 when the guest did not offer scaling: harmless). */
export interface TcpSynOptions {
  mss: number;
  wscale: number;
}

/**
 * What a flow needs of its host socket: a `net.Socket` (tap-mode forwards, tests) or a native
 * `HostSocket` (flows/hostSocket.ts, the stack's outbound connects). Events: 'connect', 'data',
 * 'end', 'error', 'close' (one listener each).
 */
export interface HostSide {
  readonly connecting: boolean;
  readonly destroyed: boolean;
  readonly writable: boolean;
  readonly writableLength: number;
  allowHalfOpen: boolean;
  /** Native sockets: the fd for direct writes (-1 while connecting). */
  readonly hostFd?: number;
  /** Native sockets: true during a 'data' event that carries the last bytes before the peer's EOF. */
  readonly eofWithData?: boolean;
  /**
   * Native sockets: take back a 'data' chunk the flow no longer needs (acknowledged by the guest),
   * so its memory is read into again instead of allocating a fresh buffer per read.
   */
  readonly recycle?: (chunk: Buffer) => void;
  on(event: string, listener: (...args: never[]) => void): unknown;
  setNoDelay?(noDelay?: boolean): unknown;
  write(buf: Uint8Array, cb?: (err?: Error | null) => void): boolean;
  end(): unknown;
  destroy(): unknown;
  resetAndDestroy?(): unknown;
  pause(): unknown;
  resume(): unknown;
}

/** Minimal logger (pino's Logger fits). */
export interface TcpLog {
  debug(obj: object, msg?: string): void;
  /** pino's: when present and false for 'debug', per-connection debug lines are not built. */
  isLevelEnabled?(level: string): boolean;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface TcpFlowEnv {
  /**
   * Send one segment to the guest, from remote to guest (`flow` is a TcpFlow, or a scratch
   * TcpEndpoints for RSTs to unknown flows). The env writes Ethernet+IP+TCP headers (+ SYN
   * options when given) and checksums; payload is buf[off, off+len), to be sent without copying.
   */
  emit(
    flow: TcpEndpoints, flags: number, seq: number, ack: number, window: number,
    payload: Uint8Array | null, off: number, len: number, synOpts?: TcpSynOptions,
  ): void;
  /**
   * Open the host side for a guest SYN. Returns a connecting socket (or a Duplex with the same
   * events: 'connect', 'data', 'end', 'error', 'close'), or null to refuse (→ RST). The flow sets
   * `allowHalfOpen` on it: half-close must be possible.
   */
  connect(flow: TcpFlow): HostSide | null;
  /** Host connect failed network/host-unreachable style: send an ICMP error to the guest. */
  unreachable(flow: TcpFlow, err: NodeJS.ErrnoException): void;
  /** Called once when the flow is finished and forgotten by the table. */
  closed(flow: TcpFlow): void;
  /**
   * Optional direct socket write (native `writeSlices`): write `count` (offset, length) pairs of
   * `buf` to the socket fd without blocking; returns bytes written or -errno, never throws.
   */
  writeSlices?(fd: number, buf: Uint8Array, offLen: Int32Array, count: number): number;
  /**
   * Optional: put an established flow on the express lane (native/express.c; flows with a
   * native host socket on a tap with a vnet header). Null when it cannot go there.
   */
  express?(flow: TcpFlow): ExpressBinding | null;
  log: TcpLog;
}

/** Tunables; all have defaults (see DEFAULT_TCP_CONFIG). */
export interface TcpConfig {
  /** Tap MTU: our MSS is mtu-40 (IPv4) or mtu-60 (IPv6). */
  mtu: number;
  /** Bytes buffered per flow per direction (toward the host socket; host data toward the guest). */
  bufferLimit: number;
  /** Most flows at once; SYNs beyond get RST. */
  maxFlows: number;
  rtoInitialMs: number;
  rtoMinMs: number;
  rtoMaxMs: number;
  /** Retransmissions of one segment before the flow is reset. */
  maxRetransmits: number;
  /** SYN-ACK / SYN retransmissions before giving up on a handshake. */
  synRetries: number;
  delayedAckMs: number;
  /**
   * ACK delay for a lone small segment with PSH (a request: the host's reply may carry the ACK).
   * Longer than a 250 Hz tick on purpose (see the theory of operation).
   */
  pushAckDelayMs: number;
  /** The same, once that delay has run out on one of the flow's requests (a Nagle guest may be waiting). */
  pushAckQuickMs: number;
  timeWaitMs: number;
  /** Host connect taking longer → treated as ETIMEDOUT (unreachable). */
  connectTimeoutMs: number;
  /** No traffic either way for this long (both directions open) → reset. */
  idleTimeoutMs: number;
  /** Same, once either side has sent FIN. */
  halfClosedTimeoutMs: number;
  /**
   * Largest payload per emitted segment when the tap takes GSO super-frames (vnet header):
   * segments may then exceed the guest's MSS and the kernel treats them as GRO-merged
   * segments of MSS bytes. 0 = segments are cut at the guest's MSS.
   */
  gsoMaxPayload: number;
}

export const DEFAULT_TCP_CONFIG: Readonly<TcpConfig> = {
  mtu: 65520,
  bufferLimit: 4 << 20,
  maxFlows: 16384,
  rtoInitialMs: 200,
  rtoMinMs: 200,
  rtoMaxMs: 10_000,
  maxRetransmits: 12,
  synRetries: 5,
  delayedAckMs: 40,
  pushAckDelayMs: 5,
  pushAckQuickMs: 1,
  timeWaitMs: 2_000,
  connectTimeoutMs: 60_000,
  idleTimeoutMs: 7_200_000,
  halfClosedTimeoutMs: 60_000,
  gsoMaxPayload: 0,
};

/** Counters for stats. */
export interface TcpCounters {
  opened: number;
  /** Host connect refused (or env refused). */
  refused: number;
  /** Host connect unreachable (ICMP error sent instead of RST). */
  unreachable: number;
  /** RSTs sent to the guest. */
  resets: number;
  /** RSTs received from the guest that ended a flow. */
  resetsReceived: number;
  retransmits: number;
  droppedOutOfOrder: number;
  /** Out-of-order segments held until the gap before them was filled. */
  outOfOrderHeld: number;
  /** SYNs refused because the table was full. */
  rejectedFull: number;
  /** Flows ended by a timer (handshake, retries, idle). */
  timeouts: number;
  /** Guest → host payload bytes written straight from the tap ring to the socket. */
  directBytes: number;
  /** Segments the express lane took from the guest / sent to it (native/express.c). */
  expressIn: number;
  expressOut: number;
  /** Guest → host payload bytes copied (the socket had a backlog or took only part). */
  copiedBytes: number;
  /**
   * Of those, bytes copied into a buffer of their own (an allocation per write) because the slab
   * looked full: its in-use estimate still counted runs the kernel had already taken.
   */
  freshBytes: number;
  /**
   * Flows reset because handling one of their events threw (a bug in slipway: logged with the
   * stack); the other flows and the process carry on.
   */
  internalErrors: number;
}

/** Flow states. Half-closes are flags on ESTABLISHED (see `stateName` for the RFC names). */
export const TcpState = {
  /** Guest SYN seen, host socket connecting; nothing sent yet. */
  CONNECTING: 0,
  /** Active open: SYN sent to the guest. */
  SYN_SENT: 1,
  /** SYN-ACK sent, waiting for the guest's ACK. */
  SYN_RCVD: 2,
  /** Synchronized: data both ways, FINs tracked by flags. */
  ESTABLISHED: 3,
  /** Finished (TIME-WAIT, when due, is kept by the table as a record of its TimeWaitTable). */
  CLOSED: 5,
} as const;
export type TcpStateValue = (typeof TcpState)[keyof typeof TcpState];

const UNREACHABLE_CODES = new Set(['ENETUNREACH', 'EHOSTUNREACH', 'ETIMEDOUT', 'EHOSTDOWN', 'ENETDOWN']);

/** Shared empty buffer for released queue slots. */
const EMPTY = Buffer.alloc(0);

/** Guest → host slices noted per flow before a write is forced (one sendmsg's iovecs). */
const MAX_SLICES = 64;

/** The fd under a host socket (native, or a net.Socket's libuv stream handle), or -1. */
function socketFd(sock: HostSide): number {
  const nfd = sock.hostFd;
  if (nfd !== undefined) return nfd;
  const h = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = h?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/**
 * Host data waiting for the guest: chunks as the socket delivered them, position 0 = SND.UNA.
 * `locate` finds a position with a cursor that remembers the last lookup (sending walks forward).
 */
export class SendQueue {
  /**
   * Called with each chunk once it is wholly acknowledged (and forgotten here): the host side's
   * read-buffer pool takes it back (HostSide.recycle). Never called for chunks dropped by close.
   */
  recycle: ((b: Buffer) => void) | null = null;
  private bufs: Buffer[] = [];
  private head = 0;
  private headOff = 0;
  /** Bytes queued (unacknowledged + unsent). */
  bytes = 0;
  private cIdx = 0;
  /** Queue position of bufs[cIdx][0] (negative for a partly consumed head chunk). */
  private cStart = 0;
  /** Results of `locate`. */
  locBuf: Buffer = EMPTY;
  locOff = 0;
  locLen = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.bufs.push(b);
    this.bytes += b.length;
  }

  /** Forget the first `n` bytes (acknowledged). */
  drop(n: number): void {
    if (n <= 0) return;
    this.bytes -= n;
    const recycle = this.recycle;
    if (this.bytes === 0) {
      if (recycle !== null) for (let i = this.head; i < this.bufs.length; i++) recycle(this.bufs[i]);
      this.bufs.length = 0;
      this.head = this.headOff = this.cIdx = this.cStart = 0;
      return;
    }
    const bufs = this.bufs;
    this.headOff += n;
    while (this.headOff >= bufs[this.head].length) {
      this.headOff -= bufs[this.head].length;
      if (recycle !== null) recycle(bufs[this.head]);
      bufs[this.head] = EMPTY;
      this.head++;
    }
    this.cStart -= n;
    if (this.cIdx < this.head) {
      this.cIdx = this.head;
      this.cStart = -this.headOff;
    }
    if (this.head >= 64 && this.head * 2 >= bufs.length) {
      bufs.splice(0, this.head);
      this.cIdx -= this.head;
      this.head = 0;
    }
  }

  /** Point locBuf/locOff/locLen at the contiguous bytes from queue position `pos` (< bytes). */
  locate(pos: number): void {
    const bufs = this.bufs;
    if (pos < this.cStart || this.cIdx < this.head || this.cIdx >= bufs.length) {
      this.cIdx = this.head;
      this.cStart = -this.headOff;
    }
    while (pos >= this.cStart + bufs[this.cIdx].length) {
      this.cStart += bufs[this.cIdx].length;
      this.cIdx++;
    }
    const b = bufs[this.cIdx];
    this.locBuf = b;
    this.locOff = pos - this.cStart;
    this.locLen = b.length - this.locOff;
  }
}

/** What an RST answering `seg` for no flow looks like (RFC 9293 3.10.7.1); false: send nothing. */
export function resetFor(seg: TcpSegment, out: { flags: number; seq: number; ack: number }): boolean {
  const f = seg.flags;
  if (f & RST) return false;
  if (f & ACK) {
    out.flags = RST;
    out.seq = seg.ack;
    out.ack = 0;
  } else {
    out.flags = RST | ACK;
    out.seq = 0;
    out.ack = seqAdd(seg.seq, seg.payloadLen + (f & SYN ? 1 : 0) + (f & FIN ? 1 : 0));
  }
  return true;
}

function randomIsn(): number {
  return (Math.random() * 0x1_0000_0000) >>> 0;
}

/** Smallest shift that lets a 16-bit window reach `limit` (RFC 7323: at most 14). */
export function windowShiftFor(limit: number): number {
  let s = 0;
  while (s < 14 && 0xffff * (1 << s) < limit) s++; // not 2 ** s: a Math.pow call per connection
  return s;
}

/** One guest TCP connection and its host socket. Create through `TcpFlowTable`. */
export class TcpFlow implements TcpEndpoints {
  state: TcpStateValue;
  socket: HostSide | null = null;

  // Sequence space toward the guest (what we send).
  readonly iss: number;
  sndUna: number;
  sndNxt: number;
  /** Highest sequence sent + 1 (sndNxt is rewound on RTO). */
  sndMax: number;
  /** Guest's receive window in bytes (already scaled). */
  sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  /** Guest's window shift, applied to its windows once synchronized. */
  sndShift = 0;
  /** Largest segment we send: min(guest MSS, our MSS). */
  sndMss: number;

  // Sequence space from the guest (what we receive).
  /** Guest's initial sequence number. */
  guestIsn = 0;
  rcvNxt = 0;
  /** Our window shift (0 unless the guest offered scaling). */
  rcvShift = 0;
  /** RCV.NXT + the window we last advertised: never moved left. */
  private rcvAdvEdge = 0;
  /** MSS we announced. */
  readonly rcvMss: number;

  // Host → guest queue.
  readonly queue = new SendQueue();
  /** Host sent 'end': FIN follows the queued data. */
  hostEof = false;
  finSent = false;
  finAcked = false;
  /** Our FIN went out before the guest's arrived: this side holds the TIME-WAIT. */
  private closedFirst = false;
  /** Guest's FIN has been received (host socket ended). */
  guestFin = false;
  private paused = false;

  // Retransmission.
  private rto: number;
  private srtt = 0;
  private rttvar = 0;
  private backoff = 0;
  private retries = 0;
  private dupAcks = 0;
  private persisting = false;
  /** Sequence whose ACK completes the RTT sample in flight (timing off when rttAt is 0). */
  private rttSeq = 0;
  private rttAt = 0;

  // ACK batching.
  /** Data received and not yet acknowledged. */
  ackPending = false;
  /** The pending ACK must go out at the next flush. */
  ackNow = false;
  /** A small segment with PSH awaits its ACK (sent within pushAckDelayMs). */
  private pushed = false;
  /** The host once did not answer a request within pushAckDelayMs: ACK requests within pushAckQuickMs. */
  private pushQuick = false;
  /** The push-ACK wait ran out and that ACK went alone: the next event says why (see pushQuick). */
  private pushProbe = false;
  private segsUnacked = 0;
  /** Queued in the table's dirty list. */
  inDirty = false;

  // Guest → host writes (see the theory of operation).
  /** Buffer the noted slices point into (the tap ring), null when none. */
  private wBuf: Uint8Array | null = null;
  /** (offset, length) pairs into wBuf, not yet written. */
  private wSlices: Int32Array | null = null;
  /** Guest data beyond RCV.NXT, made on the first out-of-order segment. */
  private reorder: ReorderQueue | null = null;
  private wCount = 0;
  private wBytes = 0;
  /** Copies of what the socket did not take at once; a ring reused as writes complete. */
  private slab: Buffer | null = null;
  private slabHead = 0;
  /** Bytes of slab runs handed to the socket whose write callback has not come yet. */
  private slabPending = 0;
  /** Fresh copies (slab full) handed to the socket and not yet called back. */
  private freshPending = 0;
  private runStart = 0;
  private runLen = 0;
  /** Lengths of slab runs handed to the socket, oldest first (from runsHead). */
  private runs: number[] = [];
  private runsHead = 0;
  /** Traffic seen since the last idle check. */
  private active = true;

  // The express lane (see native/express.c and expressSync/expressPublish).
  private xb: ExpressBinding | null = null;
  /** The lane may have moved the numbers in xb.state: sync before using ours. */
  private xPublished = false;
  /**
   * Lone requests seen (far below 0 once the lane was asked): a flow goes on the lane at its second, so a connection that
   * makes one exchange and closes (most short connections) does not pay for attaching.
   */
  private requests = 0;

  private readonly rtx: Deadline;
  private readonly delack: Deadline;
  private readonly life: Deadline;
  private keyText: string | null = null;

  /** The flow's 4-tuple as text (logs, listings), made when first asked for. */
  get key(): string {
    return (this.keyText ??= TupleMap.keyOf(this.family, this.guestAddr, this.guestPort, this.remoteAddr, this.remotePort));
  }

  constructor(
    private readonly table: TcpFlowTable,
    readonly family: 4 | 6,
    readonly guestAddr: TcpAddr,
    readonly guestPort: number,
    readonly remoteAddr: TcpAddr,
    readonly remotePort: number,
    state: TcpStateValue,
  ) {
    const cfg = table.config;
    this.state = state;
    this.iss = randomIsn();
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.rcvMss = cfg.mtu - (family === 4 ? 40 : 60);
    this.sndMss = family === 4 ? 536 : 1220;
    this.rto = cfg.rtoInitialMs;
    this.rtx = new Deadline(table.timers, () => this.safely('retransmit timer', this.onRtxTimer));
    this.delack = new Deadline(table.timers, () => this.onDelackDeadline());
    this.life = new Deadline(table.timers, () => this.safely('life timer', this.onLifeTimer));
  }

  /** Run a handler of a host-side event (timer, socket); a throw resets this flow only. */
  private safely(during: string, fn: (this: TcpFlow) => void): void {
    try {
      if (this.xPublished) this.expressSync(true);
      fn.call(this);
    } catch (e) {
      this.table.internalError(this, e, during);
    }
  }

  /** RFC 9293 name of the current state (for logs and tests). */
  get stateName(): string {
    switch (this.state) {
      case TcpState.CONNECTING: return 'LISTEN';
      case TcpState.SYN_SENT: return 'SYN_SENT';
      case TcpState.SYN_RCVD: return 'SYN_RCVD';
      case TcpState.CLOSED: return 'CLOSED';
    }
    if (this.finSent) {
      if (this.guestFin) return this.finAcked ? 'CLOSED' : 'LAST_ACK'; // both done: it is finishing
      return this.finAcked ? 'FIN_WAIT_2' : 'FIN_WAIT_1';
    }
    return this.guestFin ? 'CLOSE_WAIT' : 'ESTABLISHED';
  }

  // ---------------------------------------------------------------------------------------------
  // Opening

  /** Passive open from a guest SYN (table checked it is a plain SYN). */
  passiveOpen(seg: TcpSegment, opts: TcpOptions): void {
    const cfg = this.table.config;
    this.guestIsn = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.takeSynOptions(opts);
    this.sndWnd = seg.window;
    this.sndWl1 = seg.seq;
    this.sndWl2 = 0;
    let sock: HostSide | null = null;
    try {
      sock = this.table.env.connect(this);
    } catch (err) {
      this.table.env.log.warn({ flow: this.key, err }, 'tcp: host connect threw');
    }
    if (sock === null) {
      this.table.counters.refused++;
      this.sendRaw(RST | ACK, 0, this.rcvNxt, 0);
      this.finish();
      return;
    }
    this.attach(sock);
    this.life.arm(cfg.connectTimeoutMs);
  }

  /** Active open toward the guest for an accepted host socket. */
  activeOpen(sock: HostSide): void {
    this.rcvShift = windowShiftFor(this.table.config.bufferLimit);
    this.attach(sock);
    this.pauseHost();
    this.sendSyn();
  }

  private takeSynOptions(opts: TcpOptions): void {
    const ours = this.rcvMss;
    const theirs = opts.mss > 0 ? opts.mss : this.family === 4 ? 536 : 1220;
    this.sndMss = Math.max(1, Math.min(ours, theirs));
    if (opts.wscale >= 0) {
      this.sndShift = opts.wscale;
      if (this.state !== TcpState.SYN_SENT) this.rcvShift = windowShiftFor(this.table.config.bufferLimit);
    } else {
      this.sndShift = 0;
      this.rcvShift = 0;
    }
  }

  private attach(sock: HostSide): void {
    this.socket = sock;
    this.queue.recycle = sock.recycle ?? null;
    (sock as { allowHalfOpen: boolean }).allowHalfOpen = true;
    sock.on('connect', this.onConnect);
    sock.on('data', this.onData);
    sock.on('end', this.onEnd);
    sock.on('error', this.onError);
    sock.on('close', this.onClose);
  }

  private readonly onConnect = (): void => this.safely('host connect', this.connected);

  private connected(): void {
    if (this.state !== TcpState.CONNECTING) return;
    const sock = this.socket as HostSide;
    if (typeof sock.setNoDelay === 'function') sock.setNoDelay(true);
    this.state = TcpState.SYN_RCVD;
    this.table.counters.opened++;
    this.life.disarm(); // lazily: established() re-arms it for the idle timeout without a new timer
    this.retries = 0;
    this.sendSynAck();
    if (this.table.debugLog) this.table.env.log.debug({ flow: this.key }, 'tcp: host connected, SYN-ACK sent');
  }

  private sendSynAck(): void {
    const so = this.table.synScratch;
    so.mss = this.rcvMss;
    so.wscale = this.rcvShift;
    const win = Math.min(this.table.config.bufferLimit, 0xffff);
    this.rcvAdvEdge = seqAdd(this.rcvNxt, win);
    this.table.env.emit(this, SYN | ACK, this.iss, this.rcvNxt, win, null, 0, 0, so);
    this.sndNxt = this.sndMax = seqAdd(this.iss, 1);
    this.rtx.arm(this.currentRto());
  }

  private sendSyn(): void {
    const so = this.table.synScratch;
    so.mss = this.rcvMss;
    so.wscale = this.rcvShift;
    const win = Math.min(this.table.config.bufferLimit, 0xffff);
    this.table.env.emit(this, SYN, this.iss, 0, win, null, 0, 0, so);
    this.sndNxt = this.sndMax = seqAdd(this.iss, 1);
    this.rtx.arm(this.currentRto());
  }

  private established(): void {
    this.state = TcpState.ESTABLISHED;
    this.sndUna = seqAdd(this.iss, 1);
    this.retries = 0;
    this.backoff = 0;
    this.rtx.disarm();
    this.life.arm(this.table.config.idleTimeoutMs);
    this.maybeResumeHost();
  }

  // ---------------------------------------------------------------------------------------------
  // Segments from the guest

  /** One segment from the guest for this flow. */
  input(seg: TcpSegment): void {
    if (this.xPublished) this.expressSync(true);
    this.active = true;
    const flags = seg.flags;
    const state = this.state;
    if (state === TcpState.CLOSED) return;
    if (state === TcpState.CONNECTING) {
      // SYN retransmits are absorbed; a RST for our (unsent) SYN-ACK cancels the connect.
      if (flags & RST && seg.seq === this.rcvNxt) this.abortFromGuest();
      return;
    }
    if (state === TcpState.SYN_SENT) return this.inputSynSent(seg);
    const seq = seg.seq;
    if (flags & RST) return this.inputRst(seq);
    if (flags & SYN) {
      if (state === TcpState.SYN_RCVD && seq === this.guestIsn) {
        this.sendSynAck();
        return;
      }
      this.requestAck(true); // challenge ACK (RFC 5961 4.2)
      return;
    }
    if (!(flags & ACK)) return;
    if (state === TcpState.SYN_RCVD) {
      if (seg.ack !== seqAdd(this.iss, 1)) {
        this.sendRaw(RST, seg.ack, 0, 0);
        return;
      }
      this.sndWnd = seg.window << this.sndShift;
      this.sndWl1 = seq;
      this.sndWl2 = seg.ack;
      this.established();
      this.sendData(Infinity); // host data (or EOF) that came while the handshake finished
    }

    // Acceptability and trimming against what we advertised.
    let len = seg.payloadLen;
    let off = seg.payloadOff;
    let fin = (flags & FIN) !== 0;
    const wnd = Math.max(0, seqDiff(this.rcvAdvEdge, this.rcvNxt));
    const d = seqDiff(seq, this.rcvNxt);
    if (d > 0) {
      // Beyond RCV.NXT: in window → out of order (dropped, duplicate ACK); else unacceptable.
      if (d < wnd && (len > 0 || fin)) {
        // Hold what fits in the window (a FIN here is dropped: the guest sends it again).
        const n = Math.min(len, wnd - d);
        if (n > 0 && !this.guestFin) {
          this.reorder ??= new ReorderQueue(Math.min(this.table.config.bufferLimit >> 2, 1 << 20));
          if (this.reorder.insert(this.rcvNxt, seq, seg.buf, off, n)) this.table.counters.outOfOrderHeld++;
          else this.table.counters.droppedOutOfOrder++;
        } else {
          this.table.counters.droppedOutOfOrder++;
        }
        this.inputAck(seg.ack, seg.window, seq, 0, false);
      }
      this.requestAck(true);
      return;
    }
    if (d < 0) {
      const segLen = len + (fin ? 1 : 0);
      if (d + segLen <= 0) {
        // Entirely old (a retransmit we already have, a retransmitted FIN, a keep-alive): re-ACK.
        this.requestAck(true);
        return;
      }
      off -= d;
      len += d;
    }
    if (len > wnd) {
      len = wnd;
      fin = false;
      this.ackNow = true;
    }
    if (!this.inputAck(seg.ack, seg.window, seq, len, fin)) return;
    if (this.state === TcpState.CLOSED) return;

    if (len > 0) {
      if (!this.guestFin) {
        this.pushProbe = false; // the guest went on after the lone ACK: keep the quick delay
        this.deliver(seg.buf, off, len, (flags & PSH) !== 0);
        if (this.reorder !== null && this.reorder.size > 0) this.deliverHeld();
      }
    } else if (seg.payloadLen > 0) {
      this.requestAck(true); // zero-window probe or trimmed away
    }
    if (fin && !this.guestFin) {
      this.guestFin = true;
      this.rcvNxt = seqAdd(this.rcvNxt, 1);
      if (this.wCount !== 0) this.flushWrites();
      const sock = this.socket;
      if (sock !== null && !sock.destroyed) sock.end();
      this.requestAck(true);
      this.life.arm(this.table.config.halfClosedTimeoutMs);
      this.maybeFinished();
    }
  }

  private inputSynSent(seg: TcpSegment): void {
    const flags = seg.flags;
    const ackOk = (flags & ACK) !== 0 && seg.ack === seqAdd(this.iss, 1);
    if (flags & ACK && !ackOk) {
      if (!(flags & RST)) this.sendRaw(RST, seg.ack, 0, 0);
      return;
    }
    if (flags & RST) {
      if (ackOk) this.abortFromGuest();
      return;
    }
    if (!(flags & SYN) || !ackOk) return; // simultaneous open is not supported
    this.guestIsn = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    const opts = seg.options(this.table.optScratch);
    this.takeSynOptions(opts);
    this.sndWl1 = seg.seq;
    this.sndWl2 = seg.ack;
    this.rcvAdvEdge = this.rcvNxt;
    this.table.counters.opened++;
    this.sndWnd = seg.window; // a SYN-ACK's own window is never scaled
    this.established();
    this.sendAck();
    this.sendData(Infinity);
  }

  private inputRst(seq: number): void {
    const d = seqDiff(seq, this.rcvNxt);
    if (d === 0) {
      this.abortFromGuest();
      return;
    }
    const wnd = Math.max(1, seqDiff(this.rcvAdvEdge, this.rcvNxt));
    if (d > 0 && d < wnd) this.requestAck(true); // challenge ACK (RFC 5961 3.2)
  }

  /** ACK field and window of an acceptable segment; false when the segment must be dropped. */
  private inputAck(ack: number, window: number, seq: number, len: number, fin: boolean): boolean {
    const acked = seqDiff(ack, this.sndUna);
    if (seqDiff(ack, this.sndMax) > 0) {
      this.requestAck(true);
      return false;
    }
    if (acked < 0) return true; // old ACK: ignore the field, keep the data
    const oldWnd = this.sndWnd;
    let wndChanged = false;
    if (seqLt(this.sndWl1, seq) || (this.sndWl1 === seq && !seqLt(ack, this.sndWl2))) {
      const w = window << this.sndShift;
      wndChanged = w !== oldWnd;
      this.sndWnd = w;
      this.sndWl1 = seq;
      this.sndWl2 = ack;
    }
    if (acked > 0) {
      const dataAcked = Math.min(acked, this.queue.bytes);
      this.queue.drop(dataAcked);
      this.sndUna = ack;
      if (this.finSent && acked > dataAcked) this.finAcked = true;
      if (seqLt(this.sndNxt, this.sndUna)) this.sndNxt = this.sndUna;
      this.dupAcks = 0;
      this.backoff = 0;
      this.retries = 0;
      if (this.rttAt !== 0 && !seqLt(ack, this.rttSeq)) {
        this.sampleRtt(Date.now() - this.rttAt);
        this.rttAt = 0;
      }
      if (this.sndUna === this.sndMax) {
        this.rtx.disarm();
        this.persisting = false;
        if (this.xb !== null) this.markDirty(); // all acknowledged: the flush may publish it to the lane
      } else if (!this.persisting) {
        this.rtx.arm(this.currentRto());
      }
      if (this.finAcked) {
        this.maybeFinished();
        if (this.state !== TcpState.ESTABLISHED) return true;
      }
    } else if (len === 0 && !fin && !wndChanged && this.sndUna !== this.sndMax && this.sndWnd > 0 && !this.persisting) {
      if (++this.dupAcks === 3) this.fastRetransmit();
    }
    if (this.sndWnd > 0 && this.persisting) {
      this.persisting = false;
      this.rtx.disarm();
      if (this.sndUna !== this.sndMax) this.rtx.arm(this.currentRto());
    }
    if (acked > 0 || (wndChanged && this.sndWnd > oldWnd)) {
      this.sendData(Infinity);
      this.maybeResumeHost();
    }
    return true;
  }

  /** In-order payload → host socket: noted now, written at the end of the batch (`flush`). */
  private deliver(buf: Uint8Array, off: number, len: number, push: boolean): void {
    this.rcvNxt = seqAdd(this.rcvNxt, len);
    const sock = this.socket;
    if (sock !== null && !sock.destroyed && sock.writable) {
      if (this.wCount !== 0 && (this.wBuf !== buf || this.wCount === MAX_SLICES)) this.flushWrites();
      let sl = this.wSlices;
      if (sl === null) sl = this.wSlices = new Int32Array(2 * MAX_SLICES);
      const c = this.wCount++;
      sl[2 * c] = off;
      sl[2 * c + 1] = len;
      this.wBuf = buf;
      this.wBytes += len;
    }
    this.ackPending = true;
    if (++this.segsUnacked >= 2 || (push && (len >= this.rcvMss || this.hostEof))) this.ackNow = true;
    else if (push) {
      this.pushed = true; // a request: the host's reply may carry the ACK
      this.requests++;
    }
    this.markDirty();
  }

  /** The gap is filled: pass on the held segments that now continue the stream, ACK at once. */
  private deliverHeld(): void {
    const q = this.reorder!;
    for (let b = q.next(this.rcvNxt); b !== null; b = q.next(this.rcvNxt)) this.deliver(b, 0, b.length, false);
    this.requestAck(true);
  }

  private requestAck(now: boolean): void {
    this.ackPending = true;
    if (now) this.ackNow = true;
    this.markDirty();
  }

  private markDirty(): void {
    if (!this.inDirty) {
      this.inDirty = true;
      this.table.markDirty(this);
    }
  }

  /** End of a tap batch: write the noted data to the host, send the ACK that is due. */
  flush(): void {
    this.inDirty = false;
    if (this.xPublished) this.expressSync(false);
    if (this.wCount !== 0) this.flushWrites();
    if (this.state === TcpState.CLOSED) return;
    if (this.ackNow) this.sendAck();
    else if (this.pushed) this.delack.armBy(this.pushAckMs());
    else if (this.ackPending && !this.delack.armed) this.delack.arm(this.table.config.delayedAckMs);
    if (this.xb === null && this.requests >= 2) this.expressAttach();
    if (this.xb !== null) this.expressPublish();
  }

  /** How long a request's ACK may wait for the host's reply to carry it (see pushQuick). */
  private pushAckMs(): number {
    const cfg = this.table.config;
    return this.pushQuick ? cfg.pushAckQuickMs : cfg.pushAckDelayMs;
  }

  // ---------------------------------------------------------------------------------------------
  // The express lane (native/express.c)

  /**
   * Take the flow back from the lane: stop it, read its numbers, take over what it owes (the ACK
   * of a request it took, the bytes it sent that the guest has not acknowledged). `dirty`: queue
   * the flow for a flush, which publishes it again when it is still simple.
   */
  private expressSync(dirty: boolean): void {
    this.xPublished = false;
    const xb = this.xb as ExpressBinding;
    const xs = xb.state;
    xs[X_FLAGS] = 0;
    xs[X_DUE] = 0;
    const ev = xs[X_EVENTS];
    if (ev !== 0) {
      xs[X_EVENTS] = 0;
      this.active = true;
      this.rcvNxt = xs[X_RCV_NXT] >>> 0;
      this.sndUna = xs[X_SND_UNA] >>> 0;
      this.sndNxt = this.sndMax = xs[X_SND_NXT] >>> 0;
      this.rcvAdvEdge = xs[X_ADV_EDGE] >>> 0;
      if (ev & XE_TX) this.ackSent(); // the lane's segment carried the ACK of everything before
      const counters = this.table.counters;
      counters.directBytes += xs[X_RX_BYTES];
      counters.expressIn += xs[X_RX_SEGS];
      counters.expressOut += xs[X_TX_SEGS];
      xs[X_RX_BYTES] = xs[X_RX_SEGS] = xs[X_TX_SEGS] = 0;
    }
    // A window-only ACK changes these without an event.
    this.sndWnd = xs[X_SND_WND];
    this.sndWl1 = xs[X_WL1] >>> 0;
    this.sndWl2 = xs[X_WL2] >>> 0;
    if (xs[X_INFLIGHT] > 0) {
      this.queue.push(xb.unacked()); // position 0 is SND.UNA: the queue was empty when published
      xs[X_INFLIGHT] = 0;
      if (!this.rtx.armed) this.rtx.arm(this.currentRto());
    }
    if (xs[X_OWED] !== 0) {
      xs[X_OWED] = 0;
      if (!this.ackPending) {
        this.ackPending = true;
        this.pushed = true; // the lane takes only lone requests
        this.segsUnacked = 1;
        // Due from now (it may be older: the lane's timer says so, see onLaneDue).
        this.delack.arm(this.pushAckMs());
      }
    }
    if (dirty) this.markDirty();
  }

  private expressAttach(): void {
    const express = this.table.env.express;
    this.requests = -1 << 30; // asked once
    if (express === undefined || this.state !== TcpState.ESTABLISHED) return;
    this.xb = express(this);
    if (this.xb !== null) this.table.expressFlows.add(this);
  }

  /** Nothing pending: hand the numbers to the lane and let it run. */
  private expressPublish(): void {
    const sock = this.socket;
    if (
      this.state !== TcpState.ESTABLISHED || this.guestFin || this.hostEof || this.finSent || this.paused || this.persisting
      || this.queue.bytes !== 0 || this.sndUna !== this.sndMax || this.sndNxt !== this.sndMax || this.sndWnd <= 0
      || this.wCount !== 0 || (this.reorder !== null && this.reorder.size > 0) || this.ackNow
      || sock === null || sock.destroyed || sock.writableLength !== 0 || this.slabInUse() !== 0
      || this.pushProbe // JS sees which comes first (the lane's events carry no order)
    ) return;
    const xs = (this.xb as ExpressBinding).state;
    const cfg = this.table.config;
    xs[X_RCV_NXT] = this.rcvNxt;
    xs[X_SND_UNA] = this.sndUna;
    xs[X_SND_NXT] = this.sndNxt;
    xs[X_SND_WND] = this.sndWnd;
    xs[X_WL1] = this.sndWl1;
    xs[X_WL2] = this.sndWl2;
    xs[X_ADV_EDGE] = this.rcvAdvEdge;
    xs[X_SND_SHIFT] = this.sndShift;
    xs[X_RCV_SHIFT] = this.rcvShift;
    xs[X_LIMIT] = cfg.bufferLimit;
    xs[X_RCV_MSS] = this.rcvMss;
    xs[X_SND_MSS] = this.sndMss;
    xs[X_GSO] = cfg.gsoMaxPayload;
    xs[X_EVENTS] = 0;
    xs[X_DUE] = 0;
    // An ACK JS owes: the lane may send it on a reply, but JS's delayed-ACK deadline covers it
    // (2: the lane's timer leaves it alone; its clock for it would start at the wrong time).
    xs[X_OWED] = this.ackPending ? 2 : 0;
    xs[X_INFLIGHT] = 0;
    xs[X_TXLEN] = 0;
    xs[X_ACK_DELAY] = this.pushAckMs();
    xs[X_FLAGS] = XF_RX | XF_TX;
    this.xPublished = true;
  }

  /** @internal Add the lane's counters not yet taken by a sync. */
  addLaneCounters(c: TcpCounters): void {
    const xs = this.xb?.state;
    if (xs === undefined || !this.xPublished) return;
    c.expressIn += xs[X_RX_SEGS];
    c.expressOut += xs[X_TX_SEGS];
    c.directBytes += xs[X_RX_BYTES];
  }

  /** The lane's timer: it left an ACK owed or bytes in flight a while ago. */
  expressTimeout(): void {
    const xs = this.xb?.state;
    if (!this.xPublished || xs === undefined || xs[X_DUE] === 0) return;
    this.safely('express timer', this.onLaneDue);
  }

  /** The request the lane took has waited pushAckDelayMs for a reply: as onDelayedAck. */
  private onLaneDue(): void {
    if (!this.ackPending || !this.pushed || this.state === TcpState.CLOSED) return;
    this.pushQuick = this.pushProbe = true;
    this.sendAck();
  }

  /** Write the noted slices: straight to the fd when nothing is queued, the rest via the slab. */
  private flushWrites(): void {
    const n = this.wCount;
    const buf = this.wBuf as Uint8Array;
    const sl = this.wSlices as Int32Array;
    const total = this.wBytes;
    this.wCount = 0;
    this.wBytes = 0;
    this.wBuf = null;
    const sock = this.socket;
    if (sock === null || sock.destroyed || !sock.writable) return;
    const counters = this.table.counters;
    let skip = 0;
    const direct = this.table.env.writeSlices;
    if (direct !== undefined && sock.writableLength === 0 && !sock.connecting) {
      const fd = socketFd(sock);
      if (fd >= 0) {
        const r = direct(fd, buf, sl, n);
        if (r > 0) {
          skip = r;
          counters.directBytes += r;
        }
      }
    }
    if (skip === total) return;
    counters.copiedBytes += total - skip;
    for (let i = 0; i < n; i++) {
      let off = sl[2 * i];
      let len = sl[2 * i + 1];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      off += skip;
      len -= skip;
      skip = 0;
      this.toSlab(sock, buf, off, len);
    }
    this.endRun(sock);
  }

  /** Copy into the slab, extending the current run (a wrap ends it). */
  private toSlab(sock: HostSide, buf: Uint8Array, off: number, len: number): void {
    while (len > 0) {
      let slab = this.slab;
      if (slab === null) slab = this.slab = this.table.takeSlab();
      const cap = slab.length;
      let used = this.slabInUse();
      if (used === 0) this.slabHead = 0;
      if (this.slabHead === cap) {
        this.endRun(sock);
        this.slabHead = 0;
        used = this.slabInUse();
      }
      const head = this.slabHead;
      // `used` is an upper bound and can exceed the slab (runs already written whose callbacks
      // have not come yet are counted while a fresh copy is in flight): no room then, never less.
      const room = head - used >= 0 ? cap - head : used < cap ? cap - used : 0;
      if (room === 0) {
        // Beyond what we advertised (never for a guest honouring the window): a fresh copy.
        this.endRun(sock);
        this.freshPending++;
        this.table.counters.freshBytes += len;
        sock.write(Buffer.copyBytesFrom(buf, off, len), this.onFreshWritten);
        return;
      }
      const k = len < room ? len : room;
      slab.set(buf.subarray(off, off + k), head);
      if (this.runLen === 0) this.runStart = head;
      this.runLen += k;
      this.slabHead = head + k;
      off += k;
      len -= k;
    }
  }

  /** Hand the current slab run to the socket. */
  private endRun(sock: HostSide): void {
    const len = this.runLen;
    if (len === 0) return;
    this.runLen = 0;
    const slab = this.slab as Buffer;
    this.runs.push(len);
    this.slabPending += len;
    sock.write(slab.subarray(this.runStart, this.runStart + len), this.onSlabWritten);
  }

  /** A slab run was written (or failed: the socket is going away): release its space. */
  private readonly onSlabWritten = (): void => {
    const runs = this.runs;
    if (this.runsHead < runs.length) this.slabPending -= runs[this.runsHead++];
    if (this.runsHead === runs.length) {
      runs.length = 0;
      this.runsHead = 0;
    } else if (this.runsHead >= 64) {
      runs.splice(0, this.runsHead);
      this.runsHead = 0;
    }
    // Callbacks of writes completed together come back to back: look at the window once, after
    // the last of them, so an update carries everything the host drained.
    if (!this.windowCheckQueued) {
      this.windowCheckQueued = true;
      queueMicrotask(this.windowCheck);
    }
  };

  private readonly onFreshWritten = (): void => {
    this.freshPending--;
    this.safely('host write done', this.onWritten);
  };

  /**
   * Slab bytes the socket may still read (an upper bound): the current run, plus issued runs not
   * yet called back, but never more than Node still holds (`writableLength` drops when libuv has
   * written, a tick before the callbacks; runs complete in order, so the oldest are the ones done).
   */
  private slabInUse(): number {
    let pending = this.slabPending;
    const sock = this.socket;
    if (pending > 0 && this.freshPending === 0 && sock !== null) {
      const wl = sock.writableLength;
      if (wl < pending) pending = wl;
    }
    return pending + this.runLen;
  }

  private windowCheckQueued = false;
  private readonly windowCheck = (): void => {
    this.windowCheckQueued = false;
    this.safely('host write done', this.onWritten);
  };

  private onDelackDeadline(): void {
    const xs = this.xb?.state;
    if (this.xPublished && xs !== undefined && (xs[X_EVENTS] & XE_TX) !== 0) {
      // The ACK this was for went out on a segment the lane sent since it took the flow (the
      // lane owed it, X_OWED 2): nothing to do, and the lane goes on.
      this.ackSent();
      return;
    }
    this.safely('delayed ACK timer', this.onDelayedAck);
  }

  private onDelayedAck(): void {
    // Armed again while this flow was taken back from the express lane: for a request the lane
    // took a moment ago, not the one this deadline was for (the lane's reply acknowledged that).
    if (this.delack.armed) return;
    if (!this.ackPending || this.state === TcpState.CLOSED) return;
    // The host did not answer the request in time: the guest may be waiting for this ACK.
    if (this.pushed) this.pushQuick = this.pushProbe = true;
    this.sendAck();
  }

  // ---------------------------------------------------------------------------------------------
  // Window toward the guest

  /** Window field for an outgoing segment (scaled); moves the advertised edge right, never left. */
  private advertise(): number {
    const limit = this.table.config.bufferLimit;
    const avail = Math.max(0, limit - this.buffered());
    const rcvNxt = this.rcvNxt;
    let wnd = Math.max(0, seqDiff(this.rcvAdvEdge, rcvNxt));
    if (avail - wnd >= Math.min(limit >> 1, this.rcvMss)) wnd = avail;
    const shift = this.rcvShift;
    const unit = 1 << shift; // shift ≤ 14 (RFC 7323); `2 ** shift` would call pow() per segment
    let field = Math.ceil(wnd / unit);
    if (field > 0xffff) field = 0xffff;
    this.rcvAdvEdge = seqAdd(rcvNxt, field * unit);
    return field;
  }

  /** Bytes received and not yet taken by the host kernel (what the window must leave room for). */
  private buffered(): number {
    const sock = this.socket;
    const queued = sock !== null ? sock.writableLength : 0;
    const slab = this.slabInUse();
    return (queued > slab ? queued : slab) + this.wBytes;
  }

  /** Host consumed written data: reopen a window that had become small. */
  private readonly onWritten = (): void => {
    if (this.state !== TcpState.ESTABLISHED || this.guestFin) return;
    const sock = this.socket;
    if (sock === null) return;
    const limit = this.table.config.bufferLimit;
    const step = Math.min(limit >> 1, this.rcvMss);
    const old = Math.max(0, seqDiff(this.rcvAdvEdge, this.rcvNxt));
    if (old >= step) return;
    const avail = limit - this.buffered();
    if (avail - old >= step) this.sendAck();
  };

  // ---------------------------------------------------------------------------------------------
  // Sending toward the guest

  private sendAck(): void {
    this.sendRaw(ACK, this.sndNxt, this.rcvNxt, this.advertise(), true);
  }

  /** Segment without payload; `withWindow` when the window field was computed by advertise(). */
  private sendRaw(flags: number, seq: number, ack: number, window: number, acked = false): void {
    if (flags & RST) this.table.counters.resets++;
    this.table.env.emit(this, flags, seq, ack, window, null, 0, 0);
    if (acked) this.ackSent();
  }

  private ackSent(): void {
    this.ackPending = false;
    this.ackNow = false;
    this.pushed = false;
    this.segsUnacked = 0;
    this.delack.disarm();
  }

  /**
   * Send queued data from SND.NXT within the guest's window (at most `maxSegs` segments), then
   * the FIN when the host has ended and everything before it is sent.
   */
  private sendData(maxSegs: number): void {
    if (this.state !== TcpState.ESTABLISHED) return;
    const q = this.queue;
    const env = this.table.env;
    const wndEdge = seqAdd(this.sndUna, this.sndWnd);
    let sent = 0;
    while (sent < maxSegs) {
      const pos = seqDiff(this.sndNxt, this.sndUna);
      const avail = q.bytes - pos;
      if (avail <= 0) break;
      const room = seqDiff(wndEdge, this.sndNxt);
      if (room <= 0) break;
      let n = Math.min(avail, room, this.segmentCap());
      q.locate(pos);
      if (q.locLen < n) n = q.locLen;
      const rtx = seqLt(this.sndNxt, this.sndMax);
      // The last queued bytes after the host's EOF carry the FIN (one frame, not two).
      const fin = n === avail && this.hostEof && !this.finAcked;
      const flags = n === avail ? (fin ? ACK | PSH | FIN : ACK | PSH) : ACK;
      env.emit(this, flags, this.sndNxt, this.rcvNxt, this.advertise(), q.locBuf, q.locOff, n);
      if (rtx) this.table.counters.retransmits++;
      else if (this.rttAt === 0 && this.backoff === 0) {
        this.rttAt = Date.now();
        this.rttSeq = seqAdd(this.sndNxt, n);
      }
      this.sndNxt = seqAdd(this.sndNxt, fin ? n + 1 : n);
      if (seqLt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt;
      sent++;
      if (fin) {
        if (!this.finSent) {
          this.life.arm(this.table.config.halfClosedTimeoutMs);
          this.closedFirst = !this.guestFin;
        }
        this.finSent = true;
        break;
      }
    }
    if (sent < maxSegs && this.hostEof && seqDiff(this.sndNxt, this.sndUna) === q.bytes && (!this.finSent || (!this.finAcked && this.sndNxt !== this.sndMax))) {
      if (this.finSent) this.table.counters.retransmits++;
      else this.closedFirst = !this.guestFin;
      env.emit(this, FIN | ACK, this.sndNxt, this.rcvNxt, this.advertise(), null, 0, 0);
      this.finSent = true;
      this.sndNxt = seqAdd(this.sndNxt, 1);
      if (seqLt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt;
      this.life.arm(this.table.config.halfClosedTimeoutMs);
      sent++;
    }
    if (sent > 0) this.ackSent();
    if (this.sndUna !== this.sndMax) {
      if (!this.rtx.armed) this.rtx.arm(this.currentRto());
    } else if (this.sndWnd === 0 && q.bytes > 0 && !this.persisting) {
      this.persisting = true;
      this.backoff = 0;
      this.rtx.arm(this.currentRto());
    }
  }

  /** Payload bytes per emitted segment: the guest's MSS, or a GSO super-frame's worth. */
  private segmentCap(): number {
    const gso = this.table.config.gsoMaxPayload;
    return gso > this.sndMss ? gso : this.sndMss;
  }

  private fastRetransmit(): void {
    const q = this.queue;
    const n = Math.min(q.bytes, this.sndMss);
    this.table.counters.retransmits++;
    if (n > 0) {
      q.locate(0);
      const len = Math.min(n, q.locLen);
      this.table.env.emit(this, ACK, this.sndUna, this.rcvNxt, this.advertise(), q.locBuf, q.locOff, len);
    } else if (this.finSent) {
      this.table.env.emit(this, FIN | ACK, this.sndUna, this.rcvNxt, this.advertise(), null, 0, 0);
    }
    this.rttAt = 0;
    this.ackSent();
    this.rtx.arm(this.currentRto());
  }

  private currentRto(): number {
    const cfg = this.table.config;
    return Math.min(this.rto * (this.backoff < 30 ? 1 << this.backoff : 2 ** 30), cfg.rtoMaxMs);
  }

  private sampleRtt(r: number): void {
    const cfg = this.table.config;
    if (this.srtt === 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.rto = Math.min(cfg.rtoMaxMs, Math.max(cfg.rtoMinMs, this.srtt + Math.max(1, 4 * this.rttvar)));
  }

  private onRtxTimer(): void {
    const cfg = this.table.config;
    switch (this.state) {
      case TcpState.SYN_RCVD:
      case TcpState.SYN_SENT:
        if (++this.retries > cfg.synRetries) {
          this.table.counters.timeouts++;
          this.abort(this.state === TcpState.SYN_RCVD, true);
          return;
        }
        this.backoff++;
        this.table.counters.retransmits++;
        if (this.state === TcpState.SYN_RCVD) this.sendSynAck();
        else this.sendSyn();
        return;
      case TcpState.ESTABLISHED:
        break;
      default:
        return;
    }
    if (!this.persisting && this.sndWnd === 0 && this.queue.bytes > 0) {
      // Window closed with data outstanding: probe instead of retransmitting into it.
      this.persisting = true;
      this.backoff = 0;
    }
    if (this.persisting) {
      if (this.sndWnd > 0 || this.queue.bytes === 0) {
        this.persisting = false;
        this.sendData(Infinity);
        return;
      }
      // Zero-window probe: one byte at SND.UNA (accepted → acknowledged like data).
      const q = this.queue;
      q.locate(0);
      this.table.env.emit(this, ACK, this.sndUna, this.rcvNxt, this.advertise(), q.locBuf, q.locOff, 1);
      const end = seqAdd(this.sndUna, 1);
      if (seqLt(this.sndMax, end)) this.sndMax = end;
      this.ackSent();
      if (this.backoff < 16) this.backoff++;
      this.rtx.arm(this.currentRto());
      return;
    }
    if (this.sndUna === this.sndMax) return;
    if (++this.retries > cfg.maxRetransmits) {
      this.table.counters.timeouts++;
      this.abort(true, true);
      return;
    }
    // Go back to SND.UNA and resend one segment; the rest follows as ACKs return.
    this.backoff++;
    this.rttAt = 0;
    this.dupAcks = 0;
    this.sndNxt = this.sndUna;
    this.sendData(1);
    this.rtx.arm(this.currentRto());
  }

  // ---------------------------------------------------------------------------------------------
  // Host socket events

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === TcpState.CLOSED) return;
    try {
      if (this.xPublished) this.expressSync(true);
      this.hostData(chunk);
    } catch (e) {
      this.table.internalError(this, e, 'host data');
    }
  };

  private hostData(chunk: Buffer): void {
    this.active = true;
    if (this.pushProbe) this.pushProbe = this.pushQuick = false; // the host was only slow
    this.queue.push(chunk);
    // The peer's EOF came with this data (native sockets): the FIN rides on the last segment.
    if (this.socket!.eofWithData === true) this.hostEof = true;
    if (this.queue.bytes >= this.table.config.bufferLimit || (this.sndWnd === 0 && this.state === TcpState.ESTABLISHED)) {
      this.pauseHost();
    }
    this.sendData(Infinity);
  }

  private readonly onEnd = (): void => this.safely('host EOF', this.hostEnded);

  private hostEnded(): void {
    if (this.state === TcpState.CLOSED) return;
    this.hostEof = true;
    this.sendData(Infinity);
  }

  private readonly onError = (err: NodeJS.ErrnoException): void => this.safely('host socket error', () => this.hostError(err));

  private hostError(err: NodeJS.ErrnoException): void {
    if (this.state === TcpState.CLOSED) return;
    if ((err as { internal?: boolean }).internal === true) {
      // Not the network: a bug on our side of the socket (HostSocket marks it).
      this.table.internalError(this, err, 'host socket event');
      return;
    }
    const env = this.table.env;
    if (this.state === TcpState.CONNECTING) {
      this.life.cancel();
      if (err.code !== undefined && UNREACHABLE_CODES.has(err.code)) {
        this.table.counters.unreachable++;
        env.log.debug({ flow: this.key, code: err.code }, 'tcp: host unreachable');
        env.unreachable(this, err);
      } else {
        this.table.counters.refused++;
        env.log.debug({ flow: this.key, code: err.code }, 'tcp: host refused');
        this.sendRaw(RST | ACK, 0, this.rcvNxt, 0);
      }
      this.finish();
      return;
    }
    env.log.debug({ flow: this.key, code: err.code }, 'tcp: host socket error, resetting guest');
    this.abort(true, false);
  }

  private readonly onClose = (): void => this.safely('host close', this.hostClosed);

  private hostClosed(): void {
    if (this.state === TcpState.CLOSED || this.state === TcpState.CONNECTING) return;
    // Closed under us without error (destroyed by someone): the guest must hear it.
    if (!(this.hostEof && this.guestFin)) this.abort(true, false);
  }

  private pauseHost(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket?.pause();
  }

  private maybeResumeHost(): void {
    if (!this.paused || this.state !== TcpState.ESTABLISHED || this.sndWnd === 0) return;
    if (this.queue.bytes > this.table.config.bufferLimit >> 1) return;
    this.paused = false;
    this.socket?.resume();
  }

  // ---------------------------------------------------------------------------------------------
  // Ending

  private maybeFinished(): void {
    if (this.state !== TcpState.ESTABLISHED || !this.guestFin || !this.finAcked) return;
    if (this.ackPending) this.sendAck(); // the ACK of the guest's FIN: the flush would find us closed
    if (this.closedFirst) this.table.enterTimeWait(this, this.sndNxt, this.rcvNxt, this.advertise());
    this.finish();
  }

  private onLifeTimer(): void {
    const cfg = this.table.config;
    switch (this.state) {
      case TcpState.CONNECTING: {
        const err: NodeJS.ErrnoException = new Error('host connect timed out');
        err.code = 'ETIMEDOUT';
        this.socket?.destroy();
        this.table.counters.timeouts++;
        this.table.counters.unreachable++;
        this.table.env.unreachable(this, err);
        this.finish();
        return;
      }
      case TcpState.ESTABLISHED:
        if (this.active) {
          this.active = false;
          this.life.arm(this.guestFin || this.finSent ? cfg.halfClosedTimeoutMs : cfg.idleTimeoutMs);
          return;
        }
        this.table.counters.timeouts++;
        this.abort(true, true);
        return;
      default:
    }
  }

  /** The guest reset the connection: reset the host side too. */
  private abortFromGuest(): void {
    this.table.counters.resetsReceived++;
    const sock = this.socket;
    if (sock !== null && !sock.destroyed) {
      if (typeof sock.resetAndDestroy === 'function' && !sock.connecting) sock.resetAndDestroy();
      else sock.destroy();
    }
    this.finish();
  }

  /** End the flow now: optionally RST the guest and reset the host socket. */
  abort(rstGuest: boolean, resetHost: boolean): void {
    if (this.state === TcpState.CLOSED) return;
    if (this.xPublished) this.expressSync(false);
    if (rstGuest) {
      if (this.state === TcpState.CONNECTING) this.sendRaw(RST | ACK, 0, this.rcvNxt, 0);
      else if (this.state === TcpState.SYN_SENT) this.sendRaw(RST, this.sndMax, 0, 0);
      else this.sendRaw(RST | ACK, this.sndMax, this.rcvNxt, 0);
    }
    const sock = this.socket;
    if (sock !== null && !sock.destroyed) {
      if (resetHost && typeof sock.resetAndDestroy === 'function' && !sock.connecting) sock.resetAndDestroy();
      else sock.destroy();
    }
    this.finish();
  }

  /** After an abort that threw: drop the host socket and the table entry whatever the state. */
  forceClose(): void {
    try {
      this.socket?.destroy();
    } catch {
      /* already broken */
    }
    this.finish();
  }

  private finish(): void {
    if (this.state === TcpState.CLOSED) return;
    this.state = TcpState.CLOSED;
    if (this.xb !== null) {
      this.xPublished = false;
      this.xb.detach();
      this.xb = null;
      this.table.expressFlows.delete(this);
    }
    this.rtx.cancel();
    this.delack.cancel();
    this.life.cancel();
    this.wCount = 0;
    this.wBytes = 0;
    this.wBuf = null;
    // The slab goes back to the table once no write still points into it (every run called back).
    if (this.slab !== null && this.slabPending === 0 && this.freshPending === 0 && this.runLen === 0) this.table.giveSlab(this.slab);
    this.slab = null;
    this.table.release(this);
  }
}

/** All TCP flows of one stack, both families. */
export class TcpFlowTable {
  readonly config: TcpConfig;
  readonly counters: TcpCounters = {
    opened: 0, refused: 0, unreachable: 0, resets: 0, resetsReceived: 0, retransmits: 0,
    droppedOutOfOrder: 0, outOfOrderHeld: 0, rejectedFull: 0, timeouts: 0, directBytes: 0, expressIn: 0, expressOut: 0, copiedBytes: 0, freshBytes: 0, internalErrors: 0,
  };
  /** Reused option objects (no allocation per segment). */
  readonly synScratch: TcpSynOptions = { mss: 0, wscale: 0 };
  readonly optScratch: TcpOptions = { mss: 0, wscale: -1, sackOk: false };
  private readonly rstScratch = { flags: 0, seq: 0, ack: 0 };
  private readonly unknown: { -readonly [K in keyof TcpEndpoints]: TcpEndpoints[K] } = {
    family: 4, guestAddr: 0, guestPort: 0, remoteAddr: 0, remotePort: 0,
  };

  /** Flows by 4-tuple (IPv4: number keys, no string per lookup). */
  private readonly byTuple = new TupleMap<TcpFlow>();
  /** TIME-WAIT records (src/flows/timeWait.ts): slots of a ring by 4-tuple, due in queue order. */
  private readonly timeWait = new TimeWaitTable();
  /** @internal Every deadline of the table's flows (and its TIME-WAIT expiry), on one Node timer. */
  readonly timers = new DeadlineQueue();
  private readonly twTimer = new Deadline(this.timers, () => {
    try {
      this.expireTimeWait();
    } catch (e) {
      reportInternalError(this.env.log, this.counters, 'tcp TIME-WAIT expiry', e);
    }
  });
  private count = 0;
  /** @internal Flows on the express lane (native/express.c). */
  readonly expressFlows = new Set<TcpFlow>();
  private readonly dirty: TcpFlow[] = [];
  private flushQueued = false;
  private inBatch = false;
  /**
   * One slab kept from a finished flow for the next flow that needs one: flows come and go one
   * after another far more often than many are backlogged at once, and a fresh `bufferLimit`
   * buffer per flow would pile up as garbage until V8 next collects external memory.
   */
  private spareSlab: Buffer | null = null;
  private readonly flushTask = (): void => {
    this.flushQueued = false;
    this.flushAcks();
  };

  /** @internal Debug logging is on (fixed at start): only then are per-connection debug lines built. */
  readonly debugLog: boolean;

  constructor(readonly env: TcpFlowEnv, config: Partial<TcpConfig> = {}) {
    this.config = { ...DEFAULT_TCP_CONFIG, ...config };
    this.debugLog = env.log.isLevelEnabled?.('debug') ?? true;
  }

  /** @internal A slab for a flow's host-bound copies (the spare one, or a new one). */
  takeSlab(): Buffer {
    const s = this.spareSlab;
    if (s !== null) {
      this.spareSlab = null;
      return s;
    }
    return Buffer.allocUnsafeSlow(this.config.bufferLimit);
  }

  /** @internal A finished flow's slab, no longer referenced by any write. */
  giveSlab(slab: Buffer): void {
    if (this.spareSlab === null && slab.length === this.config.bufferLimit) this.spareSlab = slab;
  }

  /** Forget the spare slab (traffic went quiet: let the memory go). */
  dropSpares(): void {
    this.spareSlab = null;
  }

  /** Flows in the table. */
  get active(): number {
    return this.count;
  }

  /** Counters plus the number of active flows. */
  stats(): TcpCounters & { active: number; timeWait: number; expressFlows: number } {
    const s = { active: this.count, timeWait: this.timeWait.size, expressFlows: this.expressFlows.size, ...this.counters };
    // What the lane did since each flow last synced (a busy flow on the lane may not sync for long).
    for (const f of this.expressFlows) f.addLaneCounters(s);
    return s;
  }

  /** Find a flow by its guest-side 4-tuple. */
  lookup(family: 4 | 6, guestAddr: TcpAddr, guestPort: number, remoteAddr: TcpAddr, remotePort: number): TcpFlow | undefined {
    return this.byTuple.get(family, guestAddr, guestPort, remoteAddr, remotePort);
  }

  /**
   * A checksum-verified segment from the guest: `src` is the guest's address, `dst` the remote
   * (uint32 for IPv4, text for IPv6).
   */
  input(family: 4 | 6, src: TcpAddr, dst: TcpAddr, seg: TcpSegment): void {
    const flow = this.lookup(family, src, seg.srcPort, dst, seg.dstPort);
    const flags = seg.flags;
    if (flow !== undefined) {
      try {
        flow.input(seg);
      } catch (e) {
        this.internalError(flow, e, 'guest segment');
      }
      return;
    }
    if (this.timeWait.size > 0) {
      const tw = this.timeWait.find(family, src, seg.srcPort, dst, seg.dstPort);
      if (tw >= 0) {
        if ((flags & (SYN | ACK | RST)) !== SYN || !seqLt(this.timeWait.ack(tw), seg.seq)) {
          this.inputTimeWait(tw, seg);
          return;
        }
        this.timeWait.forget(tw); // a new incarnation may reuse the 4-tuple
      }
    }
    if ((flags & (SYN | ACK | RST | FIN)) !== SYN) {
      this.resetUnknown(family, src, dst, seg);
      return;
    }
    if (this.count >= this.config.maxFlows) {
      this.counters.rejectedFull++;
      this.resetUnknown(family, src, dst, seg);
      return;
    }
    const f = this.add(family, src, seg.srcPort, dst, seg.dstPort, TcpState.CONNECTING);
    try {
      f.passiveOpen(seg, seg.options(this.optScratch));
    } catch (e) {
      this.internalError(f, e, 'guest SYN');
    }
  }

  /**
   * Handling an event of `flow` threw: a bug, not bad input (that is counted and dropped where
   * it is parsed). Log it with the stack, reset that connection both ways, keep the rest going:
   * one broken flow must not take the container's whole network down.
   */
  internalError(flow: TcpFlow, err: unknown, during: string): void {
    reportInternalError(this.env.log, this.counters, `tcp ${during}`, err, { flow: flow.key }, 'connection reset');
    try {
      flow.abort(true, true);
    } catch {
      flow.forceClose();
    }
  }

  /**
   * Active open toward the guest for an already accepted host socket (inbound forward, tap
   * mode): the guest sees a SYN from remoteAddr:remotePort. Null when the table is full or the
   * 4-tuple is taken (the socket is then destroyed).
   */
  openToGuest(
    family: 4 | 6, guestAddr: TcpAddr, guestPort: number, remoteAddr: TcpAddr, remotePort: number, socket: HostSide,
  ): TcpFlow | null {
    if (this.count >= this.config.maxFlows || this.lookup(family, guestAddr, guestPort, remoteAddr, remotePort)) {
      this.counters.rejectedFull++;
      socket.destroy();
      return null;
    }
    const f = this.add(family, guestAddr, guestPort, remoteAddr, remotePort, TcpState.SYN_SENT);
    f.activeOpen(socket);
    return f;
  }

  /**
   * The express lane's timer (the tap calls it): flows that owe a request's ACK or have bytes in
   * flight since the lane last acted are taken back, and JS's own timers go on from there.
   */
  expressTimer(): void {
    for (const f of this.expressFlows) f.expressTimeout();
    this.flushAcks();
  }

  /** Send the ACKs (and host writes) a batch of guest segments made due. */
  flushAcks(): void {
    const d = this.dirty;
    for (let i = 0; i < d.length; i++) {
      try {
        d[i].flush();
      } catch (e) {
        this.internalError(d[i], e, 'batch end');
      }
    }
    d.length = 0;
  }

  /** Every flow in the table (read-only view: listing, statistics; do not add or remove while iterating). */
  flows(): IterableIterator<TcpFlow> {
    return this.byTuple.values();
  }

  /** Reset every flow (shutdown). */
  closeAll(): void {
    const all = [...this.byTuple.values()];
    for (const f of all) f.abort(true, true);
    this.flushAcks();
    this.timeWait.clear();
    this.timers.clear(); // the TIME-WAIT expiry, and any deadline a flow left
  }

  /** 4-tuples in TIME-WAIT. */
  get timeWaiting(): number {
    return this.timeWait.size;
  }

  /** @internal A flow whose FIN went first is finishing: keep its 4-tuple in TIME-WAIT. */
  enterTimeWait(flow: TcpFlow, seq: number, ack: number, window: number): void {
    this.timeWait.enter(flow.family, flow.guestAddr, flow.guestPort, flow.remoteAddr, flow.remotePort, seq, ack, window, this.timeWaitDue());
  }

  /** When a record (re)starting now is due; the expiry timer runs while any record is queued. */
  private timeWaitDue(): number {
    if (!this.twTimer.armed) this.twTimer.arm(this.config.timeWaitMs);
    return Date.now() + this.config.timeWaitMs;
  }

  /**
   * A segment for a 4-tuple in TIME-WAIT (RFC 9293 3.10.7.4): a RST ends it; a retransmitted FIN
   * (or any other segment carrying data, FIN or SYN) is acknowledged again, a FIN restarting the
   * wait; a bare ACK is ignored.
   */
  private inputTimeWait(slot: number, seg: TcpSegment): void {
    const flags = seg.flags;
    const tw = this.timeWait;
    if (flags & RST) {
      tw.forget(slot);
      return;
    }
    if (!(flags & (FIN | SYN)) && seg.payloadLen === 0) return;
    const seq = tw.seq(slot);
    const ack = tw.ack(slot);
    const window = tw.window(slot);
    const ends = tw.endpoints(slot);
    this.env.emit(ends, ACK, seq, ack, window, null, 0, 0);
    if (flags & FIN) tw.restart(slot, this.timeWaitDue());
  }

  /** The oldest TIME-WAIT records are due: forget them (unless restarted since). */
  private expireTimeWait(): void {
    const now = Date.now();
    const next = this.timeWait.expire(now);
    if (next >= 0) this.twTimer.arm(Math.max(1, next - now));
  }

  /**
   * A batch of guest frames begins: flows marked dirty meanwhile are flushed by `batchEnd()`, so
   * the microtask fallback (for marks outside a batch: host events, timers) is not needed.
   */
  batchBegin(): void {
    this.inBatch = true;
  }

  /** The batch is done: write what it noted to the host, send the ACKs it made due. */
  batchEnd(): void {
    this.inBatch = false;
    this.flushAcks();
  }

  /** @internal A flow has something for the next flush. */
  markDirty(flow: TcpFlow): void {
    this.dirty.push(flow);
    if (!this.flushQueued && !this.inBatch) {
      this.flushQueued = true;
      queueMicrotask(this.flushTask);
    }
  }

  /** @internal A flow is finished: forget it and tell the env. */
  release(flow: TcpFlow): void {
    if (!this.byTuple.delete(flow.family, flow.guestAddr, flow.guestPort, flow.remoteAddr, flow.remotePort, flow)) return;
    this.count--;
    if (this.debugLog) this.env.log.debug({ flow: flow.key }, 'tcp: flow closed');
    this.env.closed(flow);
  }

  private add(family: 4 | 6, guestAddr: TcpAddr, guestPort: number, remoteAddr: TcpAddr, remotePort: number, state: TcpStateValue): TcpFlow {
    const f = new TcpFlow(this, family, guestAddr, guestPort, remoteAddr, remotePort, state);
    this.byTuple.set(family, guestAddr, guestPort, remoteAddr, remotePort, f);
    this.count++;
    return f;
  }

  private resetUnknown(family: 4 | 6, src: TcpAddr, dst: TcpAddr, seg: TcpSegment): void {
    const r = this.rstScratch;
    if (!resetFor(seg, r)) return;
    const u = this.unknown;
    u.family = family;
    u.guestAddr = src;
    u.guestPort = seg.srcPort;
    u.remoteAddr = dst;
    u.remotePort = seg.dstPort;
    this.counters.resets++;
    this.env.emit(u, r.flags, r.seq, r.ack, 0, null, 0, 0);
  }
}
