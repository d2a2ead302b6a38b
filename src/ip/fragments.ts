/**
 * FragmentTable: the bookkeeping both reassemblers share (IPv4 and IPv6). At most
 * `maxDatagrams` datagrams in progress, each at most 65535 payload bytes, each dropped
 * `timeoutMs` after its first fragment. Overlapping fragments, or a length that contradicts the
 * last fragment, discard the whole datagram (as RFC 5722 requires for IPv6; no legitimate
 * sender overlaps). What cannot be reassembled is counted by reason, never kept.
 *
 * The caller owns the protocol: it computes the key and the payload range of each fragment,
 * writes the header of the rebuilt datagram when the first fragment arrives (`headerLen` bytes
 * at the start of `buf`), and fixes the header's length fields once `add` returns the whole.
 */

interface Pending {
  /** Rebuilt datagram: header + payload. */
  buf: Uint8Array;
  /** Received [start, end) payload ranges. */
  ranges: [number, number][];
  /** Total payload length, known once the last fragment arrived (-1 before). */
  total: number;
  deadline: number;
}

const MAX_PAYLOAD = 65535;

export class FragmentTable {
  private readonly pending = new Map<string, Pending>();
  readonly drops = { timeout: 0, overlap: 0, tooBig: 0, tooMany: 0, badLength: 0 };
  completed = 0;

  constructor(
    /** Bytes reserved for the rebuilt header in front of the payload. */
    private readonly headerLen: number,
    /** Largest payload end a fragment may reach. */
    private readonly maxPayload: number,
    private readonly maxDatagrams: number,
    private readonly timeoutMs: number,
    private readonly now: () => number,
  ) {}

  get inProgress(): number {
    return this.pending.size;
  }

  /**
   * Add payload bytes [start, start+len) of datagram `key` from `src[srcOff…]`. `writeHeader`
   * is called with the datagram buffer when the fragment at offset 0 arrives. Returns the
   * whole datagram (header + `total` payload bytes) when this fragment completes it.
   */
  add(
    key: string, start: number, len: number, more: boolean, src: Uint8Array, srcOff: number,
    writeHeader: (buf: Uint8Array) => void,
  ): { buf: Uint8Array; total: number } | null {
    const t = this.now();
    this.expire(t);
    const end = start + len;
    if (end > this.maxPayload) {
      this.pending.delete(key);
      this.drops.tooBig++;
      return null;
    }
    // Only the last fragment may have a length that is not a (non-zero) multiple of 8.
    if (more && (len === 0 || len % 8 !== 0)) {
      this.pending.delete(key);
      this.drops.badLength++;
      return null;
    }
    let d = this.pending.get(key);
    if (!d) {
      if (this.pending.size >= this.maxDatagrams) {
        this.drops.tooMany++;
        return null;
      }
      d = { buf: new Uint8Array(this.headerLen + MAX_PAYLOAD), ranges: [], total: -1, deadline: t + this.timeoutMs };
      this.pending.set(key, d);
    }
    for (const [s, e] of d.ranges) {
      if (start < e && s < end) return this.overlap(key);
    }
    if (!more) {
      if (d.total !== -1 && d.total !== end) return this.overlap(key);
      d.total = end;
    }
    if (d.total !== -1 && (end > d.total || d.ranges.some(([, e]) => e > d!.total))) return this.overlap(key);
    if (start === 0) writeHeader(d.buf);
    d.buf.set(src.subarray(srcOff, srcOff + len), this.headerLen + start);
    d.ranges.push([start, end]);
    if (d.total === -1) return null;
    let covered = 0;
    for (const [s, e] of d.ranges) covered += e - s;
    if (covered !== d.total) return null;
    this.pending.delete(key);
    this.completed++;
    return { buf: d.buf.subarray(0, this.headerLen + d.total), total: d.total };
  }

  private overlap(key: string): null {
    this.pending.delete(key);
    this.drops.overlap++;
    return null;
  }

  private expire(t: number): void {
    for (const [k, d] of this.pending) {
      if (d.deadline <= t) {
        this.pending.delete(k);
        this.drops.timeout++;
      }
    }
  }
}
