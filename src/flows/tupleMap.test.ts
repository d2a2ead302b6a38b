import { describe, expect, it } from 'vitest';
import { TupleMap } from './tupleMap.js';

describe('TupleMap', () => {
  it('keeps IPv4 tuples apart by every field, at the edges of the ranges', () => {
    const m = new TupleMap<string>();
    const tuples: [number, number, number, number][] = [
      [0x0a000264, 40000, 0xcb00710a, 80],
      [0x0a000264, 40001, 0xcb00710a, 80],
      [0x0a000265, 40000, 0xcb00710a, 80],
      [0x0a000264, 40000, 0xcb00710b, 80],
      [0x0a000264, 40000, 0xcb00710a, 81],
      [0xffffffff, 65535, 0xffffffff, 65535],
      [0, 0, 0, 0],
    ];
    tuples.forEach(([ga, gp, ra, rp], i) => m.set(4, ga, gp, ra, rp, `v${i}`));
    expect(m.size).toBe(tuples.length);
    tuples.forEach(([ga, gp, ra, rp], i) => expect(m.get(4, ga, gp, ra, rp)).toBe(`v${i}`));
    // Guest and remote swapped is another tuple.
    expect(m.get(4, 0xcb00710a, 80, 0x0a000264, 40000)).toBeUndefined();
    m.set(4, 0x0a000264, 40000, 0xcb00710a, 80, 'again'); // replacing does not count twice
    expect(m.size).toBe(tuples.length);
    expect([...m.values()].sort()).toEqual(['again', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6']);
  });

  it('deletes, only the given value when one is given', () => {
    const m = new TupleMap<object>();
    const a = {};
    const b = {};
    m.set(4, 1, 2, 3, 4, a);
    m.set(4, 1, 3, 3, 4, b);
    expect(m.delete(4, 1, 2, 3, 4, b)).toBe(false);
    expect(m.get(4, 1, 2, 3, 4)).toBe(a);
    expect(m.delete(4, 1, 2, 3, 4, a)).toBe(true);
    expect(m.delete(4, 1, 2, 3, 4)).toBe(false);
    expect(m.delete(4, 9, 9, 9, 9)).toBe(false);
    expect(m.size).toBe(1);
    expect(m.delete(4, 1, 3, 3, 4)).toBe(true);
    expect(m.size).toBe(0);
    m.set(4, 1, 3, 3, 4, a); // the emptied remote's inner map is made again
    expect(m.get(4, 1, 3, 3, 4)).toBe(a);
  });

  it('keys IPv6 tuples by text, apart from IPv4 ones; clear empties both', () => {
    const m = new TupleMap<number>();
    m.set(6, 'fd00::100', 40000, '2001:db8::1', 443, 6);
    m.set(4, 1, 40000, 2, 443, 4);
    expect(m.get(6, 'fd00::100', 40000, '2001:db8::1', 443)).toBe(6);
    expect(m.get(6, 'fd00::100', 40000, '2001:db8::1', 444)).toBeUndefined();
    expect(m.size).toBe(2);
    expect(m.delete(6, 'fd00::100', 40000, '2001:db8::1', 443, 5)).toBe(false);
    expect(TupleMap.keyOf(6, 'fd00::100', 40000, '2001:db8::1', 443)).toBe('6/fd00::100/40000/2001:db8::1/443');
    m.clear();
    expect([m.size, [...m.values()]]).toEqual([0, []]);
  });
});
