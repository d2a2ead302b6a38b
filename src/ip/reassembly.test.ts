import { describe, expect, it } from 'vitest';
import { Ipv4Reassembler } from './reassembly.js';
import { Ipv4Packet, PROTO_UDP, parseIpv4 } from '../wire/ipv4.js';
import { writeU16 } from '../wire/bytes.js';
import { checksum } from '../wire/checksum.js';

const SRC = parseIpv4('10.0.2.100');
const DST = parseIpv4('203.0.113.10');

/** An IPv4 fragment: payload bytes [start, start+len) of a datagram with id 7. */
function fragment(payload: Uint8Array, start: number, len: number, more: boolean, id = 7): Ipv4Packet {
  const b = new Uint8Array(20 + len);
  b[0] = 0x45;
  writeU16(b, 2, 20 + len);
  writeU16(b, 4, id);
  writeU16(b, 6, (more ? 0x2000 : 0) | (start / 8));
  b[8] = 64;
  b[9] = PROTO_UDP;
  b.set([SRC >>> 24, (SRC >>> 16) & 255, (SRC >>> 8) & 255, SRC & 255], 12);
  b.set([DST >>> 24, (DST >>> 16) & 255, (DST >>> 8) & 255, DST & 255], 16);
  writeU16(b, 10, checksum(b, 0, 20));
  b.set(payload.subarray(start, start + len), 20);
  const p = new Ipv4Packet().wrap(b, 0, b.length);
  expect(p.check()).toBeNull();
  return p;
}

const data = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);

describe('Ipv4Reassembler', () => {
  it('rebuilds a datagram from fragments in any order', () => {
    const r = new Ipv4Reassembler();
    expect(r.add(fragment(data, 1480, 1480, true))).toBeNull();
    expect(r.add(fragment(data, 2960, 40, false))).toBeNull();
    const whole = r.add(fragment(data, 0, 1480, true));
    expect(whole).not.toBeNull();
    const p = new Ipv4Packet().wrap(whole!, 0, whole!.length);
    expect(p.check()).toBeNull();
    expect(p.isFragment).toBe(false);
    expect(p.payloadLen).toBe(3000);
    expect(Buffer.from(whole!.subarray(20)).equals(Buffer.from(data))).toBe(true);
    expect(r.inProgress).toBe(0);
  });
  it('drops overlapping fragments', () => {
    const r = new Ipv4Reassembler();
    r.add(fragment(data, 0, 1480, true));
    expect(r.add(fragment(data, 1472, 1480, true))).toBeNull();
    expect(r.drops.overlap).toBe(1);
    expect(r.inProgress).toBe(0);
  });
  it('bounds the datagrams in progress and expires old ones', () => {
    let t = 0;
    const r = new Ipv4Reassembler(2, 1000, () => t);
    r.add(fragment(data, 0, 8, true, 1));
    r.add(fragment(data, 0, 8, true, 2));
    expect(r.add(fragment(data, 0, 8, true, 3))).toBeNull();
    expect(r.drops.tooMany).toBe(1);
    t = 1001;
    r.add(fragment(data, 0, 8, true, 4));
    expect(r.drops.timeout).toBe(2);
    expect(r.inProgress).toBe(1);
  });
  it('refuses a datagram that would exceed 65535 bytes', () => {
    const r = new Ipv4Reassembler();
    const big = new Uint8Array(70000);
    expect(r.add(fragment(big, 65528, 8, false))).toBeNull();
    expect(r.drops.tooBig).toBe(1);
  });
});

describe('Ipv4Reassembler edge cases shared with IPv6 (FragmentTable)', () => {
  it('drops a non-final fragment whose length is not a multiple of 8', () => {
    const r = new Ipv4Reassembler();
    expect(r.add(fragment(data, 0, 1479, true))).toBeNull();
    expect(r.drops.badLength).toBe(1);
    expect(r.inProgress).toBe(0);
  });
  it('drops a fragment that reaches past the final length', () => {
    const r = new Ipv4Reassembler();
    r.add(fragment(data, 8, 8, false)); // total = 16
    expect(r.add(fragment(data, 16, 8, true))).toBeNull();
    expect(r.drops.overlap).toBe(1);
  });
});
