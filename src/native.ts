/**
 * Typed surface of the native core (`build/Release/slipway.node`) and the path of the namespace
 * agent executable (`build/Release/slipway-agent`).
 *
 * The path is computed from this module's URL: dist/native.js and src/native.ts are both one
 * level below the package root, so `../build/Release` works for both (vitest runs src/ directly).
 *
 * Every native call is non-blocking. Native errors are plain `Error`s whose message names the
 * syscall and the errno text, with `.code` ('EAGAIN', 'EACCES', ...), `.errno` (negative) and
 * `.syscall` — see {@link NativeError}.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const packageRoot = fileURLToPath(new URL('..', import.meta.url));

function buildDir(): string {
  const override = process.env['SLIPWAY_NATIVE_DIR'];
  if (override) return override;
  const release = join(packageRoot, 'build', 'Release');
  if (existsSync(join(release, 'slipway.node'))) return release;
  const debug = join(packageRoot, 'build', 'Debug');
  if (existsSync(join(debug, 'slipway.node'))) return debug;
  return release;
}

const dir = buildDir();

/** Absolute path of the slipway-agent executable. */
export const agentPath: string = join(dir, 'slipway-agent');

/** Error thrown by native calls. */
export interface NativeError extends Error {
  /** errno name, e.g. 'EAGAIN' (or 'ERR_INVALID_ARG_TYPE' / 'ERR_OUT_OF_RANGE' for bad arguments). */
  code: string;
  /** negative errno, as in Node's own system errors (absent for argument errors). */
  errno?: number;
  syscall?: string;
}

export function isNativeError(e: unknown, code?: string): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).code === 'string' && (code === undefined || (e as NativeError).code === code);
}

export interface TapStats {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** frames not written because the tap queue was full (EAGAIN/ENOBUFS). */
  txDropped: number;
  rxErrors: number;
  /** With the express lane started: flows on it, segments it took and sent, frames it handed to JS, frames the tap refused. */
  expressFlows?: number;
  expressRx?: number;
  expressTx?: number;
  expressHanded?: number;
  expressTxDropped?: number;
}

/**
 * Batch reader/writer for a tap fd (takes ownership of the fd; sets O_NONBLOCK).
 *
 * On each wake-up, frames are read into successive slots of `ring` until EAGAIN or all slots are
 * used, then `onFrames(count)` is called once: frame i is `ring.subarray(i * slotSize, i *
 * slotSize + lengths[i])`. The ring is reused on the next read: copy what you keep. If the ring
 * filled up, reading continues after the callback (at most 8 rounds per wake-up). Frames longer
 * than `slotSize` are truncated, so make slotSize >= MTU + 14 (+ 12 with a vnet header).
 */
export interface Tap {
  readonly ring: Buffer;
  readonly lengths: Int32Array;
  /** the fd, or -1 after close(). */
  readonly fd: number;
  /** Write one frame. false (and counted in txDropped) if the queue is full. Throws on other errors. */
  write(frame: Uint8Array): boolean;
  /** Write one frame made of several parts (writev(2), at most 64 parts). */
  writev(parts: Uint8Array[]): boolean;
  /**
   * With a vnet header only: write one frame whose TCP/UDP checksum field holds the folded
   * pseudo-header sum (not inverted); the kernel completes the checksum from `csumStart`
   * (offset of the L4 header in the frame) and stores it at `csumStart + csumOffset`. With
   * `gsoType` (VNET_GSO_TCPV4/TCPV6) the frame is a super-frame cut into `gsoSize` segments.
   */
  writevOffload(parts: Uint8Array[], gsoType: number, gsoSize: number, csumStart: number, csumOffset: number, hdrLen: number): boolean;
  /**
   * writevOffload of the frame hdr[0, hdrLen) + payload[off, off + len) (payload null when len is
   * 0): the same bytes and vnet header, one native call with no array of views. Throws a
   * RangeError when an argument is out of range or past the end of its buffer.
   */
  sendOffload(
    hdr: Uint8Array, hdrLen: number, payload: Uint8Array | null, off: number, len: number,
    gsoType: number, gsoSize: number, csumStart: number, csumOffset: number,
  ): boolean;
  /** With a vnet header: the header of frame i at vnet[i*12 .. i*12+12) (flags, gso type, ...); else null. */
  readonly vnet: Buffer | null;
  /** Stop reading (the kernel queue fills, then drops). */
  pause(): void;
  resume(): void;
  /** Stop polling and close the fd. Idempotent. */
  close(): void;
  stats(): TapStats;
  /**
   * Start the express lane (native/express.c, src/flows/express.ts) on this tap (12-byte vnet
   * header only): established TCP flows attached to it exchange small segments without a
   * call into JS. `onTimer()` runs `delayMs` after the lane last left an ACK owed or bytes in
   * flight. Throws when the tap has no vnet header or the lane is already started.
   */
  expressStart(onTimer: () => void, delayMs: number): void;
}
export interface TapConstructor {
  /** `vnetHdrLen`: 12 when the tap was opened with IFF_VNET_HDR (agent `vnetHdr`), else 0. */
  new (fd: number, slotSize: number, slots: number, onFrames: (count: number) => void, vnetHdrLen?: number): Tap;
}


/** Watches an fd (does not own it). `events` passed to cb is the uv bitmask (below) or a negative errno. */
export interface FdWatch {
  close(): void;
}
export interface FdWatchConstructor {
  new (fd: number, events: 'readable' | 'any', cb: (events: number) => void): FdWatch;
}
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;
export const POLL_DISCONNECT = 4;
export const POLL_PRIORITIZED = 8;

/**
 * ICMP "ping" socket (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6). Needs the caller's gid inside
 * `net.ipv4.ping_group_range`; otherwise the constructor throws with code EACCES (see
 * {@link pingPermissionHint}).
 */
export interface PingSocket {
  /** Send an ICMP echo request (header + payload; the kernel rewrites the id and checksum). false if the queue is full. */
  send(dst: string, icmpMessage: Uint8Array): boolean;
  close(): void;
}
export interface PingSocketConstructor {
  /** onReply gets a copy of the ICMP message (header + payload) and the source address. */
  new (family: 4 | 6, onReply: (data: Buffer, fromAddr: string) => void): PingSocket;
}

/** SOCK_SEQPACKET channel to the namespace agent (owns the fd). Received fds are CLOEXEC. */
export interface AgentChannel {
  /** false if the socket buffer is full. */
  send(msg: Uint8Array): boolean;
  close(): void;
}
export interface AgentChannelConstructor {
  new (fd: number, onMessage: (msg: Buffer, fds: number[]) => void, onClose: () => void): AgentChannel;
}

/** Byte counts of a SpliceRelay: a→b and b→a. */
export interface SpliceStats {
  aToB: number;
  bToA: number;
}

/**
 * Zero-copy relay between two connected stream sockets (splice(2) through a pipe per direction;
 * native/splice.c documents the theory). Takes ownership of both fds (sets O_NONBLOCK). Half-close
 * is relayed (EOF on one side → shutdown(SHUT_WR) on the other after the data); an error on
 * either side closes both with a RST. `onDone` is called once, after both directions ended
 * (err null) or on the first error (err = errno name); `close()` ends it abortively without
 * calling onDone.
 */
export interface SpliceRelay {
  close(): void;
  /** Live byte counts; pipeSize is the pipe capacity granted by the kernel. */
  stats(): SpliceStats & { pipeSize: number; open: boolean };
}
export interface SpliceRelayConstructor {
  new (fdA: number, fdB: number, onDone: (err: string | null, stats: SpliceStats) => void, pipeSize?: number): SpliceRelay;
}

/** Reports once when a non-blocking connect on fd finishes: cb(null) or cb('ECONNREFUSED'...). Does not own fd. */
export interface ConnectWatch {
  close(): void;
}
export interface ConnectWatchConstructor {
  new (fd: number, cb: (err: string | null) => void): ConnectWatch;
}

/**
 * A connected datagram socket read with recvmmsg into a ring (like Tap: datagram i is
 * `ring.subarray(i * slotSize, i * slotSize + lengths[i])`, valid during the callback) and
 * written in batches with sendmmsg. Owns the fd.
 */
export interface DgramBatch {
  readonly ring: Buffer;
  readonly lengths: Int32Array;
  /** Send datagrams; returns how many went out (the rest are dropped: queue full or refused). */
  sendBatch(datagrams: Uint8Array[]): number;
  /**
   * Send ring slots [0, count) (the batch being delivered) from another, unconnected datagram
   * socket fd to address:port with one sendmmsg (no copy, no JS call per datagram); returns how
   * many went out (the rest are dropped: the socket's queue was full).
   */
  relayTo(fd: number, count: number, address: string, port: number): number;
  stats(): { rx: number; tx: number; txDropped: number; errors: number };
  close(): void;
}
export interface DgramBatchConstructor {
  new (fd: number, slotSize: number, slots: number, onBatch: (count: number) => void): DgramBatch;
}

/**
 * Host sockets of TCP flows: non-blocking sockets connecting to address:port (bound to
 * bindAddress when given), polled natively and named by a number (native/sockio.c documents the
 * functions and callbacks). See src/flows/hostSocket.ts.
 */
export interface HostSockets {
  /** The event functions, once: onState(id, status), onRead(id, length, status); `out` gets hostSocketOpen's fd and connected flag. */
  hostSocketSetup(onState: (id: number, status: number) => void, onRead: (id: number, length: number, status: number) => void, out: Int32Array): void;
  /** A new socket's id; out[0] = its fd, out[1] = 1 when the connect finished at once (no onState(id, 0) follows). Throws when connect() fails at once. */
  hostSocketOpen(family: 4 | 6, address: string, port: number, bindAddress: string | null): number;
  /** Bytes written (maybe fewer), or -errno (-EAGAIN when the socket buffer is full, -EBADF for a closed id). */
  hostSocketWrite(id: number, buf: Uint8Array): number;
  /** Ask for one onState(id, 1) when the socket becomes writable. */
  hostSocketWantWrite(id: number, on: boolean): void;
  /** Read (the default once connected) or pause reading. */
  hostSocketRead(id: number, on: boolean): void;
  /** shutdown(SHUT_WR): 0 or -errno. */
  hostSocketShutdown(id: number): number;
  /** Close the fd; with reset, SO_LINGER 0 first (the peer gets a RST). The id is void after. */
  hostSocketClose(id: number, reset: boolean): void;
  /**
   * Put the socket's flow on `tap`'s express lane: `state` is the shared state (EXPRESS_STATE_LEN
   * entries, layout in src/flows/express.ts), `hdr` the Ethernet + IPv4 + TCP (54 bytes) or
   * Ethernet + IPv6 + TCP (74) header of a segment to the guest. Throws while connecting, after close, or when the tap has no lane.
   */
  hostSocketExpressAttach(id: number, tap: Tap, state: Int32Array, hdr: Uint8Array): void;
  hostSocketExpressDetach(id: number): void;
  /** A copy of the bytes the lane sent to the guest that it has not acknowledged. */
  hostSocketExpressUnacked(id: number): Buffer;
}

/**
 * The host socket of a UDP NAT binding, with UDP_GRO on receive and UDP_SEGMENT on send
 * (native/udp.c). Reads land in the ring every UdpHost shares (`udpHostRing()`); onBatch(n)
 * hands over its slots [0, n) and they are reused once it returns.
 */
export interface UdpHostHandle {
  readonly fd: number;
  /**
   * Datagrams buf[offsets[i], +lengths[i]) for i < count (≤ 64) to address:port, as one
   * segmented send when they allow it; how many went out, or -errno when none did.
   */
  sendSegments(buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number, address: string, port: number): number;
  localPort(): number;
  stats(): { reads: number; datagramsIn: number; datagramsOut: number; errors: number };
  close(): void;
}
export interface UdpHostConstructor {
  new (family: 4 | 6, bindAddress: string | null, onBatch: (count: number) => void): UdpHostHandle;
}
/**
 * The ring UdpHost reads into: slot i is ring[i * UDP_HOST_SLOT, +meta[i*4]); meta[i*4 + 1] is
 * the GRO segment size (0: one datagram), [i*4 + 2] the source port, [i*4 + 3] an IPv4 source
 * (host order, as int32); addrs[i*16, +16) an IPv6 source.
 */
export interface UdpHostRing {
  readonly ring: Buffer;
  readonly meta: Int32Array;
  readonly addrs: Uint8Array;
}
export const UDP_HOST_SLOT = 65536;

interface Addon extends HostSockets {
  UdpHost: UdpHostConstructor;
  udpHostRing(): UdpHostRing;
  setHostReadBuffer(buf: Buffer): void;
  Tap: TapConstructor;
  FdWatch: FdWatchConstructor;
  PingSocket: PingSocketConstructor;
  AgentChannel: AgentChannelConstructor;
  SpliceRelay: SpliceRelayConstructor;
  ConnectWatch: ConnectWatchConstructor;
  DgramBatch: DgramBatchConstructor;
  dupFd(fd: number): number;
  resetClose(fd: number): void;
  connectFd(fd: number, address: string, port: number, bindAddress?: string | null): string | null;
  csum(buf: Uint8Array, offset: number, length: number, initial: number): number;
  socketpair(): [number, number];
  setCloexec(fd: number, on: boolean): void;
  closeFd(fd: number): void;
  mallocTrim(): boolean;
  lowMemory(): void;
  idleTimeMetricsOff(): boolean;
  setBusyPoll(maxUs: number): void;
  busyPollStats(): BusyPollStats;
  spawnFds(path: string, argv: string[], fds: number[]): [number, number];
  reapPid(pid: number): [number, number] | null;
  writeSlices(fd: number, buf: Uint8Array, offLen: Int32Array, count: number): number;
}

const require = createRequire(import.meta.url);
const addon = require(join(dir, 'slipway.node')) as Addon;

export const Tap: TapConstructor = addon.Tap;
export const FdWatch: FdWatchConstructor = addon.FdWatch;
export const PingSocket: PingSocketConstructor = addon.PingSocket;
export const AgentChannel: AgentChannelConstructor = addon.AgentChannel;
export const SpliceRelay: SpliceRelayConstructor = addon.SpliceRelay;
export const ConnectWatch: ConnectWatchConstructor = addon.ConnectWatch;
export const DgramBatch: DgramBatchConstructor = addon.DgramBatch;
export const hostSockets: HostSockets = addon;
export const UdpHost: UdpHostConstructor = addon.UdpHost;
export const udpHostRing: () => UdpHostRing = addon.udpHostRing;
/** Where every HostSocket reads to from now on (onRead(length) = its first `length` bytes). */
export const setHostReadBuffer: (buf: Buffer) => void = addon.setHostReadBuffer;
/** A CLOEXEC duplicate of fd (F_DUPFD_CLOEXEC). */
export const dupFd: (fd: number) => number = addon.dupFd;
/** Close a socket abortively (SO_LINGER 0): the peer gets a RST. */
export const resetClose: (fd: number) => void = addon.resetClose;
/**
 * Bind (when bindAddress is given) and start a non-blocking connect of a stream socket: null when
 * connected, "EINPROGRESS" when still connecting (wait with ConnectWatch), else the errno name.
 */
export const connectFd: (fd: number, address: string, port: number, bindAddress?: string | null) => string | null = addon.connectFd;

/**
 * Internet checksum partial sum over buf[offset, offset+length): ones'-complement sum of the
 * big-endian 16-bit words (odd trailing byte padded with zero) plus `initial`, folded to 16 bits,
 * not inverted. Final checksum = `~csum(...) & 0xffff`.
 */
export const csum: (buf: Uint8Array, offset: number, length: number, initial: number) => number = addon.csum;
/** AF_UNIX SOCK_SEQPACKET pair, both ends CLOEXEC. */
export const socketpair: () => [number, number] = addon.socketpair;
export const setCloexec: (fd: number, on: boolean) => void = addon.setCloexec;
export const closeFd: (fd: number) => void = addon.closeFd;
/** glibc malloc_trim(0): return the C heap's free memory to the kernel; true if any was released. */
export const mallocTrim: () => boolean = addon.mallocTrim;
/**
 * V8's low-memory notification: full GCs until nothing more is freed, and the young generation
 * shrunk back to its initial size (a plain full GC leaves it as large as the last burst grew it).
 */
export const lowMemory: () => void = addon.lowMemory;
/**
 * Turn off libuv's idle-time metrics on Node's loop (Node turns them on for
 * performance.eventLoopUtilization(), which then stops counting idle time). With them on, each
 * sleep of the loop costs an extra zero-timeout epoll_pwait. True when they were on and now are
 * off; false, changing nothing, on a libuv whose private layout the addon does not know.
 */
export const idleTimeMetricsOff: () => boolean = addon.idleTimeMetricsOff;

/** The busy-poll window's state and counters (native/busypoll.c). */
export interface BusyPollStats {
  /** The configured ceiling (0: off). */
  maxUs: number;
  /** How long the loop polls after an event now (0 … maxUs, adapted to the traffic). */
  windowUs: number;
  /** Polling right now (the loop is not sleeping). */
  polling: boolean;
  /** Events that came within the window; times it doubled, halved; zero-timeout loop turns. */
  hits: number;
  grows: number;
  shrinks: number;
  polls: number;
  /** Events that read 16 KiB or more (bulk transfer): no poll after them. */
  bulk: number;
}
/**
 * After each event, keep the loop polling (no sleep) for an adaptive window of at most `maxUs` µs
 * (native/busypoll.c): on a VM a sleep and wake-up costs more CPU than polling for an event due
 * within tens of µs. The window halves while events come further apart than `maxUs`, so an idle
 * stack does not poll. 0 turns it off.
 */
export const setBusyPoll: (maxUs: number) => void = addon.setBusyPoll;
export const busyPollStats: () => BusyPollStats = addon.busyPollStats;
/**
 * posix_spawn `path` with `argv` (argv[0] included) and the process's environment; the child's fd i
 * is fds[i] (-1: /dev/null) and it gets no other fd of ours; signals default and unblocked.
 * Returns [pid, pidfd]: the pidfd turns readable when the child ends, then reapPid collects it
 * (native/spawn.c). Throws with the errno's code (ENOENT, EACCES; ENOSYS: no pidfd_open).
 */
export const spawnFds: (path: string, argv: string[], fds: number[]) => [number, number] = addon.spawnFds;
/** waitpid(pid, WNOHANG): null while it runs, else [exit code or -1, signal number or 0]. */
export const reapPid: (pid: number) => [number, number] | null = addon.reapPid;
/**
 * Write `count` (offset, length) slices of `buf` (pairs in offLen) to a connected stream socket
 * fd without blocking: bytes written, or -errno (EAGAIN included). Never throws on I/O errors,
 * never raises SIGPIPE. Only for an fd whose owner has nothing queued (native/sockio.c).
 */
export const writeSlices: (fd: number, buf: Uint8Array, offLen: Int32Array, count: number) => number = addon.writeSlices;

/** A line to log when `new PingSocket()` fails with EACCES/EPERM. */
export function pingPermissionHint(family: 4 | 6): string {
  const gid = typeof process.getgid === 'function' ? process.getgid() : -1;
  return (
    `ICMP ping sockets are not allowed for gid ${gid}: net.ipv4.ping_group_range does not include it ` +
    `(applies to IPv${family} too). Allow it with: sysctl -w net.ipv4.ping_group_range="0 2147483647". ` +
    'Until then, ping from the container to outside addresses will not get replies.'
  );
}

/** True for the error `new PingSocket()` throws when ping_group_range forbids ping sockets. */
export function isPingPermissionError(e: unknown): boolean {
  return isNativeError(e) && (e.code === 'EACCES' || e.code === 'EPERM');
}
