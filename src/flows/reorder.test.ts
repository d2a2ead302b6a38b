import { describe, expect, it } from 'vitest';
import { ReorderQueue } from './reorder.js';

const data = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
/** Bytes [a, b) of the stream starting at sequence number base. */
const part = (a: number, b: number) => data.subarray(a, b);

function drain(q: ReorderQueue, rcvNxt: number): { bytes: number[]; rcvNxt: number } {
  const out: number[] = [];
  for (let b = q.next(rcvNxt); b; b = q.next(rcvNxt)) {
    out.push(...b);
    rcvNxt = (rcvNxt + b.length) >>> 0;
  }
  return { bytes: out, rcvNxt };
}

describe('ReorderQueue', () => {
  it('holds segments beyond the gap and gives them back in order once it is filled', () => {
    const q = new ReorderQueue(1000);
    expect(q.insert(0, 30, part(30, 40), 0, 10)).toBe(true);
    expect(q.insert(0, 10, part(10, 20), 0, 10)).toBe(true);
    expect(q.next(0)).toBeNull(); // 0..10 still missing
    // The gap [0,10) arrives and is delivered by the caller; then the queue continues at 10.
    const r = drain(q, 10);
    expect(r.bytes).toEqual([...part(10, 20)]);
    expect(r.rcvNxt).toBe(20); // [20,30) still missing
    expect(drain(q, 30).bytes).toEqual([...part(30, 40)]);
    expect(q.bytes).toBe(0);
  });

  it('trims overlaps against what it holds and what was delivered', () => {
    const q = new ReorderQueue(1000);
    q.insert(0, 20, part(20, 30), 0, 10);
    expect(q.insert(0, 15, part(15, 35), 0, 20)).toBe(true); // keeps [15,20) and [30,35)
    expect(q.insert(0, 20, part(20, 30), 0, 10)).toBe(false); // nothing new
    expect(q.bytes).toBe(20);
    // Delivery got to 17 by itself: the held [15,20) is trimmed to [17,20).
    expect(drain(q, 17).bytes).toEqual([...part(17, 35)]);
  });

  it('works across sequence-number wrap-around', () => {
    const q = new ReorderQueue(1000);
    const base = 0xfffffff8;
    q.insert(base, (base + 10) >>> 0, part(10, 20), 0, 10);
    const r = drain(q, (base + 10) >>> 0);
    expect(r.bytes).toEqual([...part(10, 20)]);
    expect(r.rcvNxt).toBe(((base + 20) >>> 0));
  });

  it('is bounded in bytes', () => {
    const q = new ReorderQueue(15);
    expect(q.insert(0, 10, part(10, 20), 0, 10)).toBe(true);
    expect(q.insert(0, 30, part(30, 40), 0, 10)).toBe(false);
    expect(q.bytes).toBe(10);
  });

  it('ignores data at or before RCV.NXT', () => {
    const q = new ReorderQueue(100);
    expect(q.insert(10, 5, part(5, 15), 0, 10)).toBe(false);
    expect(q.insert(10, 10, part(10, 15), 0, 5)).toBe(false);
  });
});
