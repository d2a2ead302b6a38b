import { describe, expect, it } from 'vitest';
import { Ipv6Reassembler } from './reassembly6.js';
import { Ipv6Packet, NH_FRAGMENT, NH_UDP } from '../wire/ipv6.js';
import { fragmentHeader, ip6, ipv6Frame } from '../testing/frames6.js';

const SRC = ip6('fd00::100');
const DST = ip6('2001:db8:2::10');
const data = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);

function fragment(start: number, len: number, more: boolean, id = 7): Ipv6Packet {
  const f = ipv6Frame(SRC, DST, NH_FRAGMENT, data.subarray(start, start + len), { ext: fragmentHeader(NH_UDP, start, more, id) });
  const p = new Ipv6Packet().wrap(f, 14, f.length - 14);
  expect(p.check()).toBeNull();
  expect(p.walk()).toBeNull();
  return p;
}

describe('Ipv6Reassembler', () => {
  it('rebuilds a packet from fragments in any order', () => {
    const r = new Ipv6Reassembler();
    expect(r.add(fragment(1232, 1232, true))).toBeNull();
    expect(r.add(fragment(2464, 536, false))).toBeNull();
    const whole = r.add(fragment(0, 1232, true));
    expect(whole).not.toBeNull();
    const p = new Ipv6Packet().wrap(whole!, 0, whole!.length);
    expect(p.check()).toBeNull();
    expect(p.walk()).toBeNull();
    expect(p.isFragment).toBe(false);
    expect(p.upperProto).toBe(NH_UDP);
    expect(p.upperLen).toBe(3000);
    expect(Buffer.from(whole!.subarray(40)).equals(Buffer.from(data))).toBe(true);
    expect(r.inProgress).toBe(0);
  });
  it('drops overlaps, bad lengths, oversize, and bounds what is in progress', () => {
    const r = new Ipv6Reassembler(2, 1000, () => t);
    let t = 0;
    r.add(fragment(0, 1232, true));
    expect(r.add(fragment(1224, 1232, true))).toBeNull();
    expect(r.drops.overlap).toBe(1);
    expect(r.add(fragment(0, 100, true, 2))).toBeNull(); // not a multiple of 8
    expect(r.drops.badLength).toBe(1);
    r.add(fragment(0, 8, true, 3));
    r.add(fragment(0, 8, true, 4));
    expect(r.add(fragment(0, 8, true, 5))).toBeNull();
    expect(r.drops.tooMany).toBe(1);
    t = 1001;
    r.add(fragment(0, 8, true, 6));
    expect(r.drops.timeout).toBe(2);
    const big = new Ipv6Reassembler();
    const f = ipv6Frame(SRC, DST, NH_FRAGMENT, new Uint8Array(16), { ext: fragmentHeader(NH_UDP, 65520, false, 9) });
    const p = new Ipv6Packet().wrap(f, 14, f.length - 14);
    p.check();
    p.walk();
    expect(big.add(p)).toBeNull();
    expect(big.drops.tooBig).toBe(1);
  });
});
