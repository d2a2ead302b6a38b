import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadline, DeadlineQueue } from './deadline.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('DeadlineQueue', () => {
  it('fires a deadline once when due, on one Node timer for all deadlines', () => {
    const q = new DeadlineQueue();
    const fired: string[] = [];
    const a = new Deadline(q, () => fired.push('a'));
    const b = new Deadline(q, () => fired.push('b'));
    const c = new Deadline(q, () => fired.push('c'));
    a.arm(30);
    b.arm(10);
    c.arm(20);
    expect(vi.getTimerCount()).toBe(1);
    expect([a.armed, b.armed, c.armed]).toEqual([true, true, true]);
    vi.advanceTimersByTime(9);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['b']);
    expect(b.armed).toBe(false);
    vi.advanceTimersByTime(20);
    expect(fired).toEqual(['b', 'c', 'a']);
    expect(q.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('moves a deadline later without a new timer, and earlier', () => {
    const q = new DeadlineQueue();
    const at: number[] = [];
    const t0 = Date.now();
    const d = new Deadline(q, () => at.push(Date.now() - t0));
    d.arm(10);
    d.arm(50); // later: the entry stays queued for 10 and re-queues itself then
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(49);
    expect(at).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(at).toEqual([50]);
    d.arm(100);
    d.arm(5); // earlier
    vi.advanceTimersByTime(5);
    expect(at).toEqual([50, 55]);
    vi.advanceTimersByTime(200);
    expect(at).toEqual([50, 55]);
  });

  it('armBy never moves a deadline later', () => {
    const q = new DeadlineQueue();
    let n = 0;
    const d = new Deadline(q, () => n++);
    d.arm(10);
    d.armBy(40);
    vi.advanceTimersByTime(10);
    expect(n).toBe(1);
    d.arm(40);
    d.armBy(10);
    vi.advanceTimersByTime(10);
    expect(n).toBe(2);
  });

  it('a disarmed deadline does not fire and its entry lapses; a cancelled one leaves the queue', () => {
    const q = new DeadlineQueue();
    let n = 0;
    const lazy = new Deadline(q, () => n++);
    const gone = new Deadline(q, () => n++);
    lazy.arm(10);
    gone.arm(20);
    lazy.disarm();
    gone.cancel();
    expect([lazy.armed, gone.armed, q.size]).toEqual([false, false, 1]);
    vi.advanceTimersByTime(10);
    expect([n, q.size, vi.getTimerCount()]).toEqual([0, 0, 0]);
    lazy.arm(5); // armed again after lapsing
    vi.advanceTimersByTime(5);
    expect(n).toBe(1);
  });

  it('keeps heap order through random arms, moves and cancels: each fires once, on time', () => {
    const q = new DeadlineQueue();
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed % n;
    };
    const t0 = Date.now();
    const due = new Map<number, number>();
    const firedAt = new Map<number, number[]>();
    const ds = Array.from({ length: 300 }, (_, i) => new Deadline(q, () => {
      (firedAt.get(i) ?? firedAt.set(i, []).get(i)!).push(Date.now() - t0);
    }));
    for (let i = 0; i < ds.length; i++) {
      const ms = 1 + rand(500);
      ds[i]!.arm(ms);
      due.set(i, ms);
    }
    for (let k = 0; k < 200; k++) {
      const i = rand(ds.length);
      const r = rand(3);
      if (r === 0) {
        ds[i]!.cancel();
        due.delete(i);
      } else if (r === 1) {
        ds[i]!.disarm();
        due.delete(i);
      } else {
        const ms = 1 + rand(800);
        ds[i]!.arm(ms);
        due.set(i, ms);
      }
    }
    for (let t = 0; t < 900; t++) vi.advanceTimersByTime(1);
    for (let i = 0; i < ds.length; i++) {
      if (due.has(i)) expect([i, firedAt.get(i)]).toEqual([i, [due.get(i)]]);
      else expect([i, firedAt.get(i)]).toEqual([i, undefined]);
    }
    expect(q.size).toBe(0);
  });

  it('a cancel in the middle of the heap moves the last entry up when it is earlier than its new parent', () => {
    const q = new DeadlineQueue();
    const firedAt: [number, number][] = [];
    const t0 = Date.now();
    // Queued in this order the heap is [9, 16, 11, 37, 20, 35, 15]; cancelling 37 moves 15 under 16,
    // where it must go up (else 16 fires before it).
    const ds = [20, 37, 9, 35, 16, 11, 15].map((ms) => {
      const d = new Deadline(q, () => firedAt.push([ms, Date.now() - t0]));
      d.arm(ms);
      return d;
    });
    ds[1]!.cancel();
    vi.advanceTimersByTime(100);
    expect(firedAt).toEqual([[9, 9], [11, 11], [15, 15], [16, 16], [20, 20], [35, 35]]);
  });

  it('runs the other due deadlines when one throws, then throws the error; arming from a callback works', () => {
    const q = new DeadlineQueue();
    const fired: string[] = [];
    const later = new Deadline(q, () => fired.push('later'));
    const bad = new Deadline(q, () => {
      fired.push('bad');
      later.arm(10);
      throw new Error('boom');
    });
    const good = new Deadline(q, () => fired.push('good'));
    bad.arm(5);
    good.arm(5);
    expect(() => vi.advanceTimersByTime(5)).toThrow('boom');
    expect(fired).toEqual(['bad', 'good']);
    vi.advanceTimersByTime(10);
    expect(fired).toEqual(['bad', 'good', 'later']);
  });

  it('keeps a deadline beyond Node\'s longest timeout (2^31 - 1 ms) on one timer, and fires it on time', () => {
    const q = new DeadlineQueue();
    const t0 = Date.now();
    let at = -1;
    const d = new Deadline(q, () => (at = Date.now() - t0));
    const far = 30 * 24 * 3600 * 1000; // 30 days
    d.arm(far);
    vi.advanceTimersToNextTimer(); // one timer capped at the maximum, not a 1 ms loop
    expect([Date.now() - t0, at, vi.getTimerCount()]).toEqual([0x7fffffff, -1, 1]);
    vi.advanceTimersToNextTimer();
    expect(at).toBe(far);
  });

  it('clear forgets every deadline', () => {
    const q = new DeadlineQueue();
    let n = 0;
    const ds = [new Deadline(q, () => n++), new Deadline(q, () => n++)];
    ds[0]!.arm(5);
    ds[1]!.arm(50);
    q.clear();
    expect([q.size, vi.getTimerCount(), ds[0]!.armed]).toEqual([0, 0, false]);
    vi.advanceTimersByTime(100);
    expect(n).toBe(0);
    ds[1]!.arm(1);
    vi.advanceTimersByTime(1);
    expect(n).toBe(1);
  });
});
