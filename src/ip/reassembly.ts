/**
 * IPv4 fragment reassembly, bounded (see FragmentTable for the bounds and the drop reasons).
 * The rebuilt datagram carries the first fragment's header without options, fragment fields
 * cleared and the checksum fixed.
 */

import { IPV4_MIN_HEADER, type Ipv4Packet } from '../wire/ipv4.js';
import { writeU16 } from '../wire/bytes.js';
import { checksum } from '../wire/checksum.js';
import { FragmentTable } from './fragments.js';

export class Ipv4Reassembler {
  private readonly table: FragmentTable;

  constructor(maxDatagrams = 64, timeoutMs = 15_000, now: () => number = Date.now) {
    this.table = new FragmentTable(IPV4_MIN_HEADER, 65535 - IPV4_MIN_HEADER, maxDatagrams, timeoutMs, now);
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

  /** Add a (validated) fragment; returns the complete datagram when this fragment completes it. */
  add(p: Ipv4Packet): Uint8Array | null {
    const key = `${p.src}-${p.dst}-${p.protocol}-${p.id}`;
    const whole = this.table.add(key, p.fragmentOffset, p.payloadLen, p.moreFragments, p.buf, p.payloadOff,
      (buf) => buf.set(p.buf.subarray(p.off, p.off + IPV4_MIN_HEADER), 0));
    if (!whole) return null;
    const out = whole.buf;
    out[0] = 0x45;
    writeU16(out, 2, out.length);
    out[6] = 0;
    out[7] = 0;
    out[10] = 0;
    out[11] = 0;
    writeU16(out, 10, checksum(out, 0, IPV4_MIN_HEADER));
    return out;
  }
}
