/**
 * A TCP flow's host side as a native socket (native/sockio.c, "HostSocket") instead of a
 * `net.Socket`: no stream machinery, no libuv TCP handle, one uv_poll per flow and one JS call per
 * event. The native side keeps no JS object per socket; this object holds the socket's id. It
 * implements the small `HostSide` surface `TcpFlow` uses (the same as net.Socket's, so tap-mode
 * forwards and tests keep handing net.Sockets to flows).
 *
 * Events: 'connect'; 'data' (Buffers the flow may keep: it queues them until the guest acknowledges
 * them; see takeRead); 'end' (while the last chunk before the peer's EOF is being
 * delivered, `eofWithData` is true so the flow can send that data and its FIN in one frame);
 * 'error' (ErrnoException with Node's code, errno and syscall). Writes go straight to the fd;
 * what the kernel does not take is queued here (`writableLength`) and written when the socket
 * becomes writable; write callbacks come in order once their bytes reached the kernel. `end()`
 * shuts the write side down after the queue drained; once both directions ended the fd is closed
 * (there is no 'close' event: the flow ends itself). `resetAndDestroy()` closes with SO_LINGER 0.
 */
import { getSystemErrorName } from 'node:util';
import { hostSockets as native, setHostReadBuffer, type Tap } from '../native.js';
import { DEFAULT_TCP_CONFIG, type HostSide } from './tcp.js';
import { EXPRESS_STATE_LEN, type ExpressBinding } from './express.js';

type Listener = (...args: never[]) => void;
const EAGAIN = -11;

/**
 * One read fills at most one GSO super-frame toward the guest (an IPv4 datagram's 65535 bytes less
 * IP and TCP headers; the stack's GSO_MAX_PAYLOAD): a segment never spans two chunks, so a 64 KiB
 * read would leave a 41-byte tail frame after every full one, doubling tun writes on a download.
 */
const READ_SIZE = 65535 - 20 - 20;
const KEEP_MIN = 32 * 1024;
/**
 * Free read buffers kept for reuse: as many as a flow's whole send queue can hold, so the guest
 * acknowledging a full queue at once leaves no garbage. The queue holds up to the flow's
 * bufferLimit (4 MiB by default) plus one chunk, in chunks of KEEP_MIN bytes or more: 129 at
 * most, and the buffer being read into besides. A pool that holds fewer than the buffers a flow
 * cycles through drops one or more on every burst of ACKs and allocates them again on the next
 * reads: at 64 (one per 64 KiB of the queue, one short of a full queue and the read buffer) a
 * 12 s download allocated 1,200 fresh 64 KiB buffers (~7 MB/s) and left them to V8, which
 * collects array buffers only once ~64 MB of them are outstanding (peak RSS 135 MB).
 * The pool is dropped when traffic goes quiet (dropReadPool).
 */
const POOL_MAX = Math.ceil(DEFAULT_TCP_CONFIG.bufferLimit / KEEP_MIN) + 2;
const pool: ArrayBufferLike[] = [];
/** The memory of every read buffer this module made: only those are taken back. */
const ours = new WeakSet<ArrayBufferLike>();
/**
 * Reads land in one shared buffer. A read of at least KEEP_MIN bytes is handed on as a view of
 * it (no copy; the flow queues it until the guest ACKs it) and another buffer takes its place;
 * a smaller one is copied out and the shared one is reused.
 * Buffers handed on come back through `recycle` once the guest has acknowledged them and wait in
 * a LIFO pool (the most recently freed, still in cache, is read into next): a bulk download reads
 * into the same few buffers instead of allocating, zeroing and collecting one per read.
 */
let readBuf: Buffer | null = null;
/**
 * Copies of reads above COPY_FROM_POOL bytes (and below KEEP_MIN) go into buffers of a size class
 * (8, 16 or 32 KiB: at most twice the bytes they hold), which come back through `recycle` as the
 * read buffers do. A fresh buffer per such read was garbage only V8's collector returns, and V8
 * waits for tens of MB of it: a download from the host's loopback read ~950 chunks of 16-32 KiB
 * in 4 s and grew the C heap by ~33 MB (peak RSS 109 MB against 84 for the same run without
 * them, bench/PROFILE.md). Up to CLASS_POOL_BYTES of each class are kept; reads up to
 * COPY_FROM_POOL bytes take slices of Node's shared 8 KiB pool, which costs no allocation each.
 */
const COPY_FROM_POOL = 4096;
const CLASS_SIZES = [8192, 16384, 32768] as const;
const CLASS_POOL_BYTES = 2 * 1024 * 1024;
const classPools: ArrayBufferLike[][] = CLASS_SIZES.map(() => []);

function newReadBuffer(): Buffer {
  const ab = pool.pop();
  if (ab !== undefined) return Buffer.from(ab);
  const b = Buffer.allocUnsafeSlow(READ_SIZE);
  ours.add(b.buffer);
  return b;
}

/** A buffer of `n` bytes (COPY_FROM_POOL < n <= 32 KiB) from its size class's pool, or a new one. */
function classBuffer(n: number): Buffer {
  const c = n <= CLASS_SIZES[0] ? 0 : n <= CLASS_SIZES[1] ? 1 : 2;
  const ab = classPools[c]!.pop();
  if (ab !== undefined) return Buffer.from(ab, 0, n);
  const b = Buffer.allocUnsafeSlow(CLASS_SIZES[c]);
  ours.add(b.buffer);
  return b.subarray(0, n);
}

/** A chunk from a read is no longer referenced by its flow: keep its memory for a later read. */
function recycleRead(chunk: Buffer): void {
  const ab = chunk.buffer;
  if (chunk.byteOffset !== 0 || !ours.has(ab)) return;
  const size = ab.byteLength;
  if (size === READ_SIZE) {
    if (pool.length < POOL_MAX && ab !== readBuf!.buffer) pool.push(ab);
    return;
  }
  const c = CLASS_SIZES.indexOf(size as (typeof CLASS_SIZES)[number]);
  if (c >= 0 && classPools[c]!.length * size < CLASS_POOL_BYTES) classPools[c]!.push(ab);
}

/** Forget the free read buffers (traffic went quiet: let the memory go). */
export function dropReadPool(): void {
  pool.length = 0;
  for (const p of classPools) p.length = 0;
}

function takeRead(n: number): Buffer {
  const b = readBuf!;
  if (n >= KEEP_MIN) {
    readBuf = newReadBuffer();
    setHostReadBuffer(readBuf);
    return b.subarray(0, n);
  }
  const c = n > COPY_FROM_POOL ? classBuffer(n) : Buffer.allocUnsafe(n);
  b.copy(c, 0, 0, n);
  return c;
}

interface Pending {
  buf: Uint8Array;
  cb: ((err?: Error | null) => void) | undefined;
}

/** A Node-style error for a negative errno `status`. */
export function errnoError(status: number, syscall: string): NodeJS.ErrnoException {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = 'EIO';
  }
  const e: NodeJS.ErrnoException = new Error(`${syscall} ${code}`);
  e.code = code;
  e.errno = status;
  e.syscall = syscall;
  return e;
}

/**
 * The open sockets by slot (an id's low 20 bits, native/sockio.c): events come from the native
 * side as (id, ...) to the two functions below.
 */
const ID_SLOT = 0xfffff;
const sockets: (HostSocket | undefined)[] = [];
/** hostSocketOpen's other results: [fd, connected at once]. */
const openOut = new Int32Array(2);
let setUp = false;

function onNativeState(id: number, status: number): void {
  const s = sockets[id & ID_SLOT];
  if (s !== undefined && s.id === id) s.onState(status);
}

function onNativeRead(id: number, length: number, status: number): void {
  const s = sockets[id & ID_SLOT];
  if (s !== undefined && s.id === id) s.onRead(length, status);
}

export class HostSocket implements HostSide {
  connecting = true;
  destroyed = false;
  writable = true;
  allowHalfOpen = true;
  writableLength = 0;
  eofWithData = false;
  readonly recycle = recycleRead;
  /** The native socket's id (native/sockio.c); -1 once closed, or when it never opened. */
  id = -1;
  /** The socket's fd (from hostSocketOpen); -1 once closed. */
  private fd = -1;
  private readonly q: Pending[] = [];
  private qHead = 0;
  private ending = false;
  private shut = false;
  private readEof = false;
  private paused = false;
  private onConnect: (() => void) | null = null;
  private onData: ((b: Buffer) => void) | null = null;
  private onEnd: (() => void) | null = null;
  private onError: ((e: NodeJS.ErrnoException) => void) | null = null;

  constructor(family: 4 | 6, address: string, port: number, bindAddress: string | null) {
    if (readBuf === null) {
      readBuf = newReadBuffer();
      setHostReadBuffer(readBuf);
    }
    if (!setUp) {
      native.hostSocketSetup(onNativeState, onNativeRead, openOut);
      setUp = true;
    }
    try {
      const id = native.hostSocketOpen(family, address, port, bindAddress);
      this.id = id;
      this.fd = openOut[0];
      sockets[id & ID_SLOT] = this;
      // Connected inside connect() (loopback, veth): report it once the flow has its listeners on.
      if (openOut[1] === 1) queueMicrotask(() => this.onState(0));
    } catch (err) {
      // connect() failed at once (ENETUNREACH, EADDRNOTAVAIL, …): report it like net.connect, later.
      const e = err as NodeJS.ErrnoException;
      const ee = errnoError(typeof e.errno === 'number' ? e.errno : -5, 'connect');
      this.destroyed = true;
      this.writable = false;
      queueMicrotask(() => this.onError?.(ee));
    }
  }

  get hostFd(): number {
    return this.connecting ? -1 : this.fd;
  }

  on(event: string, listener: Listener): this {
    switch (event) {
      case 'connect': this.onConnect = listener as () => void; break;
      case 'data': this.onData = listener as (b: Buffer) => void; break;
      case 'end': this.onEnd = listener as () => void; break;
      case 'error': this.onError = listener as (e: NodeJS.ErrnoException) => void; break;
      default: // 'close': never emitted (see above)
    }
    return this;
  }

  setNoDelay(): this {
    return this; // TCP_NODELAY is set natively
  }

  // The two entry points from the native side: a throw in them (a bug in slipway, here or in the
  // flow's handlers) ends this socket with an error the flow reports as internal, not the process.
  /** @internal (from the native side) */
  onState(status: number): void {
    try {
      this.state(status);
    } catch (e) {
      this.internalFail(e);
    }
  }

  /** @internal (from the native side) */
  onRead(length: number, status: number): void {
    try {
      this.read(length, status);
    } catch (e) {
      this.internalFail(e);
    }
  }

  private internalFail(e: unknown): void {
    const err = (e instanceof Error ? e : new Error(String(e))) as NodeJS.ErrnoException & { internal?: boolean };
    err.internal = true;
    this.fail(err);
  }

  private state(status: number): void {
    if (this.destroyed) return;
    if (status === 0) {
      this.connecting = false;
      if (this.paused) native.hostSocketRead(this.id, false);
      this.onConnect?.();
      if (this.writableLength > 0) this.drain();
      else if (this.ending && !this.shut) this.doShutdown();
      return;
    }
    if (status === 1) {
      this.drain();
      return;
    }
    this.fail(errnoError(status, 'connect'));
  }

  private read(length: number, status: number): void {
    if (this.destroyed) return;
    if (status < 0) {
      this.fail(errnoError(status, 'read'));
      return;
    }
    if (length > 0) {
      const chunk = takeRead(length);
      this.eofWithData = status === 1;
      this.onData?.(chunk);
      this.eofWithData = false;
      if (this.destroyed) return;
    }
    if (status === 1) {
      this.readEof = true;
      this.onEnd?.();
      this.maybeClose();
    }
  }

  write(buf: Uint8Array, cb?: (err?: Error | null) => void): boolean {
    if (this.destroyed || this.ending) return false;
    let off = 0;
    if (this.writableLength === 0 && !this.connecting) {
      const r = native.hostSocketWrite(this.id, buf);
      if (r === buf.length) {
        if (cb !== undefined) queueMicrotask(cb);
        return true;
      }
      if (r < 0 && r !== EAGAIN) {
        this.failSoon(errnoError(r, 'write'));
        return false;
      }
      if (r > 0) off = r;
    }
    this.q.push({ buf: off > 0 ? buf.subarray(off) : buf, cb });
    this.writableLength += buf.length - off;
    if (!this.connecting) native.hostSocketWantWrite(this.id, true);
    return false;
  }

  /** Socket writable: write what is queued, in order; callbacks of completed writes. */
  private drain(): void {
    const q = this.q;
    while (this.qHead < q.length) {
      const p = q[this.qHead];
      const r = native.hostSocketWrite(this.id, p.buf);
      if (r < 0) {
        if (r === EAGAIN) break;
        this.fail(errnoError(r, 'write'));
        return;
      }
      this.writableLength -= r;
      if (r < p.buf.length) {
        p.buf = p.buf.subarray(r);
        break;
      }
      this.qHead++;
      p.cb?.();
      if (this.destroyed) return;
    }
    if (this.qHead === q.length) {
      q.length = 0;
      this.qHead = 0;
      if (this.ending && !this.shut) this.doShutdown();
    } else {
      if (this.qHead >= 64) {
        q.splice(0, this.qHead);
        this.qHead = 0;
      }
      native.hostSocketWantWrite(this.id, true);
    }
  }

  end(): this {
    if (this.destroyed || this.ending) return this;
    this.ending = true;
    this.writable = false;
    if (!this.connecting && this.writableLength === 0) this.doShutdown();
    return this;
  }

  private doShutdown(): void {
    this.shut = true;
    // The peer's EOF is in and nothing is unread: close() sends the same FIN, one syscall fewer.
    if (this.readEof) {
      this.close(false);
      return;
    }
    const r = native.hostSocketShutdown(this.id);
    if (r < 0 && r !== -107 /* ENOTCONN: the peer is gone already */) {
      this.failSoon(errnoError(r, 'shutdown'));
      return;
    }
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.readEof && this.shut && !this.destroyed) this.close(false);
  }

  pause(): this {
    this.paused = true;
    if (!this.connecting && !this.destroyed) native.hostSocketRead(this.id, false);
    return this;
  }

  resume(): this {
    this.paused = false;
    if (!this.connecting && !this.destroyed && !this.readEof) native.hostSocketRead(this.id, true);
    return this;
  }

  /**
   * Put the connected socket's flow on `tap`'s express lane (native/express.c) with `hdr`, the
   * Ethernet + IP + TCP header of a segment to the guest (54 bytes for IPv4, 74 for IPv6). Null while connecting or once closed, or with
   * bytes still queued here.
   */
  express(tap: Tap, hdr: Uint8Array): ExpressBinding | null {
    const id = this.id;
    if (id < 0 || this.destroyed || this.connecting || this.writableLength !== 0) return null;
    const state = new Int32Array(EXPRESS_STATE_LEN);
    native.hostSocketExpressAttach(id, tap, state, hdr);
    return {
      state,
      unacked: () => native.hostSocketExpressUnacked(id),
      detach: () => native.hostSocketExpressDetach(id),
    };
  }

  destroy(): this {
    this.close(false);
    return this;
  }

  resetAndDestroy(): this {
    this.close(true);
    return this;
  }

  private close(reset: boolean): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.writable = false;
    this.fd = -1;
    const id = this.id;
    if (id >= 0) {
      this.id = -1;
      native.hostSocketClose(id, reset);
      if (sockets[id & ID_SLOT] === this) sockets[id & ID_SLOT] = undefined;
    }
    this.q.length = 0;
    this.qHead = 0;
    this.writableLength = 0;
  }

  private fail(err: NodeJS.ErrnoException): void {
    if (this.destroyed) return;
    this.close(false);
    this.onError?.(err);
  }

  private failSoon(err: NodeJS.ErrnoException): void {
    if (this.destroyed) return;
    this.close(false);
    queueMicrotask(() => this.onError?.(err));
  }
}
