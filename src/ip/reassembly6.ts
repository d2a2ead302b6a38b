/**
 * IPv6 fragment reassembly (RFC 8200 §4.5), bounded like the IPv4 one: at most `maxDatagrams`
 * in progress, each at most 65535 payload bytes, each dropped `timeoutMs` after its first
 * fragment; overlapping fragments discard the datagram (RFC 5722). The rebuilt packet is the
 * 40-byte IPv6 header (extension headers before the fragment header are not kept: they were
 * already walked) with the fragment header's Next Header, followed by the fragmentable part,
 * which may itself start with more extension headers.
 */

import { IPV6_HEADER_LEN, type Ipv6Packet } from '../wire/ipv6.js';
import { writeU16 } from '../wire/bytes.js';

interface Pending {
  buf: Uint8Array;
  ranges: [number, number][];
  total: number;
  deadline: number;
}

const MAX_PAYLOAD = 65535;

export class Ipv6Reassembler {
  private readonly pending = new Map<string, Pending>();
  readonly drops = { timeout: 0, overlap: 0, tooBig: 0, tooMany: 0, badLength: 0 };
  completed = 0;

  constructor(
    private readonly maxDatagrams = 64,
    private readonly timeoutMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Add a walked fragment. Returns the whole packet when this fragment completes it, else null. */
  add(p: Ipv6Packet): Uint8Array | null {
    const t = this.now();
    this.expire(t);
    const b = p.buf;
    const key = keyOf(b, p.srcOff, p.dstOff, p.fragmentId);
    const start = p.fragmentOffset;
    const len = p.upperLen;
    const end = start + len;
    const more = p.moreFragments;
    if (end > MAX_PAYLOAD - 8) {
      this.pending.delete(key);
      this.drops.tooBig++;
      return null;
    }
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
      d = { buf: new Uint8Array(IPV6_HEADER_LEN + MAX_PAYLOAD), ranges: [], total: -1, deadline: t + this.timeoutMs };
      this.pending.set(key, d);
    }
    for (const [s, e] of d.ranges) {
      if (start < e && s < end) {
        this.pending.delete(key);
        this.drops.overlap++;
        return null;
      }
    }
    if (!more) {
      if (d.total !== -1 && d.total !== end) {
        this.pending.delete(key);
        this.drops.overlap++;
        return null;
      }
      d.total = end;
    }
    if (d.total !== -1 && d.ranges.some(([, e]) => e > d.total)) {
      this.pending.delete(key);
      this.drops.overlap++;
      return null;
    }
    if (start === 0) {
      d.buf.set(b.subarray(p.off, p.off + IPV6_HEADER_LEN), 0);
      d.buf[6] = p.upperProto;
    }
    d.buf.set(b.subarray(p.upperOff, p.upperOff + len), IPV6_HEADER_LEN + start);
    d.ranges.push([start, end]);
    if (d.total === -1) return null;
    let covered = 0;
    for (const [s, e] of d.ranges) covered += e - s;
    if (covered !== d.total) return null;
    this.pending.delete(key);
    const out = d.buf.subarray(0, IPV6_HEADER_LEN + d.total);
    writeU16(out, 4, d.total);
    this.completed++;
    return out;
  }

  get inProgress(): number {
    return this.pending.size;
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

function keyOf(b: Uint8Array, src: number, dst: number, id: number): string {
  let s = '';
  for (let i = 0; i < 16; i++) s += String.fromCharCode(b[src + i], b[dst + i]);
  return s + id;
}
