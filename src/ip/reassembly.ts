/**
 * IPv4 fragment reassembly, bounded: at most `maxDatagrams` in progress, each at most 65535
 * bytes, each dropped `timeoutMs` after its first fragment. Overlapping fragments discard the
 * whole datagram (as RFC 5722 requires for IPv6; no legitimate sender overlaps). What cannot be
 * reassembled is counted by reason, never kept.
 */

import { IPV4_MIN_HEADER, type Ipv4Packet } from '../wire/ipv4.js';
import { writeU16 } from '../wire/bytes.js';
import { checksum } from '../wire/checksum.js';

interface Pending {
  buf: Uint8Array; // rebuilt datagram: 20-byte header + payload
  /** Received [start, end) payload ranges, kept sorted. */
  ranges: [number, number][];
  /** Total payload length, known once the last fragment arrived (-1 before). */
  total: number;
  deadline: number;
}

export class Ipv4Reassembler {
  private readonly pending = new Map<string, Pending>();
  readonly drops = { timeout: 0, overlap: 0, tooBig: 0, tooMany: 0 };
  completed = 0;

  constructor(
    private readonly maxDatagrams = 64,
    private readonly timeoutMs = 15_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Add a (validated) fragment. Returns the complete datagram (header without options,
   * fragment fields cleared, checksum fixed) when this fragment completes it, else null.
   */
  add(p: Ipv4Packet): Uint8Array | null {
    const t = this.now();
    this.expire(t);
    const key = `${p.src}-${p.dst}-${p.protocol}-${p.id}`;
    const start = p.fragmentOffset;
    const len = p.payloadLen;
    const end = start + len;
    if (end + IPV4_MIN_HEADER > 65535) {
      this.discard(key);
      this.drops.tooBig++;
      return null;
    }
    let d = this.pending.get(key);
    if (!d) {
      if (this.pending.size >= this.maxDatagrams) {
        this.drops.tooMany++;
        return null;
      }
      d = { buf: new Uint8Array(65535), ranges: [], total: -1, deadline: t + this.timeoutMs };
      this.pending.set(key, d);
    }
    for (const [s, e] of d.ranges) {
      if (start < e && s < end) {
        this.discard(key);
        this.drops.overlap++;
        return null;
      }
    }
    if (!p.moreFragments) {
      if (d.total !== -1 && d.total !== end) {
        this.discard(key);
        this.drops.overlap++;
        return null;
      }
      d.total = end;
    } else if (len % 8 !== 0) {
      // Only the last fragment may have a length that is not a multiple of 8.
      this.discard(key);
      this.drops.overlap++;
      return null;
    }
    if (start === 0) d.buf.set(p.buf.subarray(p.off, p.off + IPV4_MIN_HEADER), 0);
    d.buf.set(p.buf.subarray(p.payloadOff, p.payloadOff + len), IPV4_MIN_HEADER + start);
    d.ranges.push([start, end]);
    if (d.total === -1) return null;
    let covered = 0;
    for (const [s, e] of d.ranges) covered += e - s;
    if (covered !== d.total) return null;
    this.pending.delete(key);
    const out = d.buf.subarray(0, IPV4_MIN_HEADER + d.total);
    out[0] = 0x45;
    writeU16(out, 2, out.length);
    out[6] = 0;
    out[7] = 0;
    out[10] = 0;
    out[11] = 0;
    writeU16(out, 10, checksum(out, 0, IPV4_MIN_HEADER));
    this.completed++;
    return out;
  }

  get inProgress(): number {
    return this.pending.size;
  }

  private discard(key: string): void {
    this.pending.delete(key);
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
