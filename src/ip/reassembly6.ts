/**
 * IPv6 fragment reassembly (RFC 8200 §4.5), bounded like the IPv4 one (see FragmentTable). The
 * rebuilt packet is the 40-byte IPv6 header (extension headers before the fragment header are
 * not kept: they were already walked) with the fragment header's Next Header, followed by the
 * fragmentable part, which may itself start with more extension headers.
 */

import { IPV6_HEADER_LEN, type Ipv6Packet } from '../wire/ipv6.js';
import { writeU16 } from '../wire/bytes.js';
import { FragmentTable } from './fragments.js';

export class Ipv6Reassembler {
  private readonly table: FragmentTable;

  constructor(maxDatagrams = 64, timeoutMs = 60_000, now: () => number = Date.now) {
    // The payload length field (16 bits) must still hold the fragment header we drop.
    this.table = new FragmentTable(IPV6_HEADER_LEN, 65535 - 8, maxDatagrams, timeoutMs, now);
  }

  get drops(): FragmentTable['drops'] {
    return this.table.drops;
  }
  get completed(): number {
    return this.table.completed;
  }
  get inProgress(): number {
    return this.table.inProgress;
  }

  /** Add a walked fragment. Returns the whole packet when this fragment completes it, else null. */
  add(p: Ipv6Packet): Uint8Array | null {
    const b = p.buf;
    const whole = this.table.add(keyOf(b, p.srcOff, p.dstOff, p.fragmentId), p.fragmentOffset, p.upperLen, p.moreFragments,
      b, p.upperOff, (buf) => {
        buf.set(b.subarray(p.off, p.off + IPV6_HEADER_LEN), 0);
        buf[6] = p.upperProto;
      });
    if (!whole) return null;
    writeU16(whole.buf, 4, whole.total);
    return whole.buf;
  }
}

function keyOf(b: Uint8Array, src: number, dst: number, id: number): string {
  let s = '';
  for (let i = 0; i < 16; i++) s += String.fromCharCode(b[src + i], b[dst + i]);
  return s + id;
}
