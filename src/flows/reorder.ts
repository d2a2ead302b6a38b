/**
 * ReorderQueue: guest segments that arrived beyond RCV.NXT, kept (as copies: the tap ring is
 * reused) until the gap before them is filled, so one lost or reordered frame costs one
 * retransmission instead of the rest of the window. Bounded in bytes; a segment that does not
 * fit is dropped (the guest retransmits it). Stored ranges never overlap: new data is trimmed
 * against what is already held.
 */

import { seqAdd, seqDiff } from '../wire/tcp.js';

interface Held {
  seq: number;
  data: Buffer;
}

export class ReorderQueue {
  /** Held segments, sorted by sequence number (relative order is modulo 2^32 around RCV.NXT). */
  private held: Held[] = [];
  bytes = 0;

  constructor(private readonly limit: number) {}

  get size(): number {
    return this.held.length;
  }

  /**
   * Hold bytes [seq, seq+len) of buf[off…] that lie beyond `rcvNxt`. Returns false when nothing
   * new was kept (all of it already held, or no room).
   */
  insert(rcvNxt: number, seq: number, buf: Uint8Array, off: number, len: number): boolean {
    let start = seqDiff(seq, rcvNxt);
    const end = start + len;
    if (start <= 0 || len <= 0) return false;
    let kept = false;
    // Walk the held ranges in order, keeping the pieces of [start, end) that fall in their gaps.
    let i = 0;
    while (start < end) {
      while (i < this.held.length && this.rel(rcvNxt, this.held[i]) + this.held[i].data.length <= start) i++;
      const next = i < this.held.length ? this.rel(rcvNxt, this.held[i]) : Infinity;
      if (start < next) {
        const pieceEnd = Math.min(end, next);
        const n = pieceEnd - start;
        if (this.bytes + n > this.limit) return kept;
        const from = off + (start - seqDiff(seq, rcvNxt));
        this.held.splice(i, 0, { seq: seqAdd(rcvNxt, start), data: Buffer.from(buf.subarray(from, from + n)) });
        this.bytes += n;
        kept = true;
        i++;
        start = pieceEnd;
      } else {
        // Inside held range i: skip past it.
        start = next + this.held[i].data.length;
        i++;
      }
    }
    return kept;
  }

  /**
   * The held segment that continues the stream at `rcvNxt` (trimmed of anything before it), or
   * null. Segments wholly before `rcvNxt` are discarded on the way.
   */
  next(rcvNxt: number): Buffer | null {
    while (this.held.length > 0) {
      const h = this.held[0];
      const rel = seqDiff(h.seq, rcvNxt);
      if (rel > 0) return null;
      this.held.shift();
      this.bytes -= h.data.length;
      if (rel + h.data.length <= 0) continue;
      return rel === 0 ? h.data : h.data.subarray(-rel);
    }
    return null;
  }

  clear(): void {
    this.held = [];
    this.bytes = 0;
  }

  private rel(rcvNxt: number, h: Held): number {
    return seqDiff(h.seq, rcvNxt);
  }
}
