/**
 * `--pcap PATH`: every frame crossing the tap, both directions, into a classic libpcap file
 * (LINKTYPE_ETHERNET, microsecond timestamps, snaplen 65535; a longer frame — a 64 KiB GSO
 * super-frame — is cut at the snaplen with its real length recorded).
 *
 * Off the hot path: a frame is copied into a 1 MiB chunk (the ring is reused after each batch)
 * and nothing else; full chunks, and a partly filled one after `flushMs`, are written with one
 * asynchronous positioned `fs.write` at a time. The backlog is bounded (`maxBufferedBytes`):
 * when the disk cannot keep up, whole frames are left out of the capture and counted, never
 * blocking the stack nor growing memory. `close()` writes what is left synchronously (positioned
 * writes are idempotent, so the chunk an async write may still be writing is simply rewritten).
 * Offloaded TCP frames toward the guest carry only the pseudo-header sum in their checksum field
 * (the guest's kernel completes it), so tcpdump -v calls their checksums incorrect.
 */

import fs from 'node:fs';
import type { FrameWriter } from './sink.js';
import type { FrameReceiver } from './frames.js';

/** The largest frame stored whole; the rest of a longer frame is cut (its length is kept). */
export const PCAP_SNAPLEN = 65535;
/** LINKTYPE_ETHERNET. */
const LINKTYPE_ETHERNET = 1;
const GLOBAL_HEADER_LEN = 24;
const RECORD_HEADER_LEN = 16;

export interface PcapOptions {
  /** Bytes per write (default 1 MiB). */
  chunkBytes?: number;
  /** At most this much capture waits in memory; beyond it frames are left out (default 16 MiB). */
  maxBufferedBytes?: number;
  /** A partly filled chunk goes to disk this long after its first frame (default 200 ms). */
  flushMs?: number;
  /** Called once when a write fails (capture stops; the stack goes on). */
  onError?: (message: string) => void;
}

interface Chunk {
  buf: Buffer;
  len: number;
  /** Where in the file it goes. */
  pos: number;
}

/** The libpcap global header (little-endian, version 2.4). */
export function pcapGlobalHeader(snaplen = PCAP_SNAPLEN): Buffer {
  const h = Buffer.alloc(GLOBAL_HEADER_LEN);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeInt32LE(0, 8); // thiszone
  h.writeUInt32LE(0, 12); // sigfigs
  h.writeUInt32LE(snaplen, 16);
  h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return h;
}

/** Wall-clock time in microseconds (performance.now has sub-millisecond resolution). */
function nowMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

/** Writes frames to a pcap file; see the top of this file. */
export class PcapWriter {
  /** Frames in the file (or on their way to it). */
  frames = 0;
  /** Frames cut at the snaplen. */
  truncated = 0;
  /** Frames left out: backlog full, or the file failed. */
  dropped = 0;
  /** Bytes written to the file so far (headers included). */
  written = 0;
  private error: string | null = null;
  private cur: Chunk | null = null;
  private readonly queue: Chunk[] = [];
  private readonly free: Buffer[] = [];
  private chunksAllocated = 0;
  private readonly maxChunks: number;
  private readonly chunkBytes: number;
  private readonly flushMs: number;
  private nextPos = GLOBAL_HEADER_LEN;
  private writing = false;
  private closed = false;
  private closeWhenIdle = false;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly opts: PcapOptions,
  ) {
    this.chunkBytes = Math.max(opts.chunkBytes ?? 1 << 20, RECORD_HEADER_LEN + PCAP_SNAPLEN);
    this.maxChunks = Math.max(2, Math.floor((opts.maxBufferedBytes ?? 16 << 20) / this.chunkBytes));
    this.flushMs = opts.flushMs ?? 200;
    this.written = GLOBAL_HEADER_LEN;
  }

  /** Create (or truncate) PATH, mode 0600 (captures hold the container's traffic), and write the header. */
  static open(path: string, opts: PcapOptions = {}): PcapWriter {
    let fd: number;
    try {
      fd = fs.openSync(path, 'w', 0o600);
      fs.writeSync(fd, pcapGlobalHeader(), 0, GLOBAL_HEADER_LEN, 0);
    } catch (e) {
      throw new Error(`--pcap ${path}: cannot create the capture file: ${(e as Error).message} (is the directory writable by this user?)`);
    }
    return new PcapWriter(path, fd, opts);
  }

  /** Record one frame, `len` bytes at `buf[off]`, with timestamp `us` (microseconds). */
  frame(buf: Uint8Array, off: number, len: number, us = nowMicros()): void {
    const c = this.room(len);
    if (!c) return;
    const incl = this.header(c, len, us);
    c.buf.set(buf.subarray(off, off + incl), c.len);
    c.len += incl;
  }

  /** Record one frame given as consecutive parts (a writev). */
  frameParts(parts: Uint8Array[], us = nowMicros()): void {
    let len = 0;
    for (let i = 0; i < parts.length; i++) len += parts[i].length;
    const c = this.room(len);
    if (!c) return;
    let left = this.header(c, len, us);
    for (let i = 0; i < parts.length && left > 0; i++) {
      const p = parts[i];
      const n = Math.min(p.length, left);
      c.buf.set(n === p.length ? p : p.subarray(0, n), c.len);
      c.len += n;
      left -= n;
    }
  }

  /** Wrap the stack → guest writer: frames the tap took are recorded after it took them. */
  wrapWriter(inner: FrameWriter): FrameWriter {
    const w: FrameWriter = {
      write: (f) => {
        const ok = inner.write(f);
        if (ok) this.frame(f, 0, f.length);
        return ok;
      },
      writev: (p) => {
        const ok = inner.writev(p);
        if (ok) this.frameParts(p);
        return ok;
      },
    };
    const offload = inner.writevOffload?.bind(inner);
    if (offload) {
      w.writevOffload = (p, gt, gs, cs, co, hl) => {
        const ok = offload(p, gt, gs, cs, co, hl);
        if (ok) this.frameParts(p);
        return ok;
      };
    }
    return w;
  }

  /** Wrap the guest → stack receiver: each batch is recorded (one timestamp) before it is handled. */
  wrapReceiver(next: FrameReceiver): FrameReceiver {
    return (ring, slotSize, lengths, count, vnet) => {
      const us = nowMicros();
      for (let i = 0; i < count; i++) this.frame(ring, i * slotSize, lengths[i], us);
      next(ring, slotSize, lengths, count, vnet);
    };
  }

  /** The current chunk if it has room for a frame of `len` bytes; null (counted) when the frame must be left out. */
  private room(len: number): Chunk | null {
    if (this.closed || this.error !== null) {
      if (!this.closed) this.dropped++;
      return null;
    }
    const need = RECORD_HEADER_LEN + Math.min(len, PCAP_SNAPLEN);
    let c = this.cur;
    if (c && c.len + need > c.buf.length) {
      this.seal();
      c = null;
    }
    if (!c) {
      const buf = this.free.pop() ?? (this.chunksAllocated < this.maxChunks ? this.allocate() : null);
      if (!buf) {
        this.dropped++;
        return null;
      }
      c = this.cur = { buf, len: 0, pos: 0 };
      if (this.timer === null) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.seal();
        }, this.flushMs);
        this.timer.unref();
      }
    }
    return c;
  }

  private allocate(): Buffer {
    this.chunksAllocated++;
    return Buffer.allocUnsafe(this.chunkBytes);
  }

  /** Write a record header; returns the bytes of the frame to store. */
  private header(c: Chunk, len: number, us: number): number {
    const incl = Math.min(len, PCAP_SNAPLEN);
    if (incl < len) this.truncated++;
    const b = c.buf;
    const o = c.len;
    const sec = Math.floor(us / 1e6);
    b.writeUInt32LE(sec >>> 0, o);
    b.writeUInt32LE(us - sec * 1e6, o + 4);
    b.writeUInt32LE(incl, o + 8);
    b.writeUInt32LE(len, o + 12);
    c.len += RECORD_HEADER_LEN;
    this.frames++;
    return incl;
  }

  /** Queue the current chunk for writing and start a write if none is running. */
  private seal(): void {
    const c = this.cur;
    if (c && c.len > 0) {
      c.pos = this.nextPos;
      this.nextPos += c.len;
      this.queue.push(c);
      this.cur = null;
    }
    this.pump();
  }

  private pump(): void {
    if (this.writing || this.queue.length === 0 || this.error !== null) return;
    const c = this.queue[0];
    this.writing = true;
    const step = (done: number): void => {
      fs.write(this.fd, c.buf, done, c.len - done, c.pos + done, (err, n) => {
        if (err) {
          this.writing = false;
          this.fail(err);
          return;
        }
        if (done + n < c.len && n > 0) return step(done + n);
        this.writing = false;
        this.written += c.len;
        this.queue.shift();
        this.free.push(c.buf);
        if (this.closeWhenIdle) return this.closeFd();
        this.pump();
      });
    };
    step(0);
  }

  private fail(err: Error): void {
    if (this.error !== null) return;
    this.error = `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`.trim();
    if (this.cur) this.queue.push(this.cur);
    this.cur = null;
    for (const c of this.queue) {
      const lost = countRecords(c);
      this.frames -= lost;
      this.dropped += lost;
    }
    this.queue.length = 0;
    this.opts.onError?.(`--pcap ${this.path}: write failed, capture stopped: ${err.message}`);
    if (this.closeWhenIdle) this.closeFd();
  }

  /** Write everything still in memory (synchronously) and close the file. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.cur && this.cur.len > 0 && this.error === null) {
      this.cur.pos = this.nextPos;
      this.nextPos += this.cur.len;
      this.queue.push(this.cur);
    }
    this.cur = null;
    if (this.error === null) {
      try {
        // The first queued chunk may be in an async write right now: rewriting it at the same
        // position with the same bytes is harmless, and it makes the file whole before exit.
        for (let i = 0; i < this.queue.length; i++) {
          const c = this.queue[i];
          let done = 0;
          while (done < c.len) done += fs.writeSync(this.fd, c.buf, done, c.len - done, c.pos + done);
          if (i > 0 || !this.writing) this.written += c.len;
        }
        this.queue.splice(this.writing ? 1 : 0);
      } catch (e) {
        this.fail(e as Error);
      }
    }
    if (this.writing) this.closeWhenIdle = true;
    else this.closeFd();
  }

  private closeFd(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }

  /** Counters for get_stats and the shutdown log. */
  stats(): { path: string; frames: number; truncated: number; dropped: number; bytesWritten: number; error: string | null } {
    return { path: this.path, frames: this.frames, truncated: this.truncated, dropped: this.dropped, bytesWritten: this.written, error: this.error };
  }
}

/** How many pcap records a chunk holds (for counting what a failed write lost). */
function countRecords(c: Chunk): number {
  let n = 0;
  for (let o = 0; o + RECORD_HEADER_LEN <= c.len; n++) o += RECORD_HEADER_LEN + c.buf.readUInt32LE(o + 8);
  return n;
}
