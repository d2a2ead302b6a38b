import { describe, expect, it } from 'vitest';
import { TimeWaitTable } from './timeWait.js';

const G = 0x0a000264; // 10.0.2.100
const R = 0xcb00710a; // 203.0.113.10 (above 2^31: must survive as uint32)

describe('TimeWaitTable', () => {
  it('keeps a record by 4-tuple with its sequence numbers and addresses, until it is due', () => {
    const t = new TimeWaitTable();
    t.enter(4, G, 40000, R, 80, 0xfffffff0, 123, 65535, 1000);
    expect(t.size).toBe(1);
    const s = t.find(4, G, 40000, R, 80);
    expect(s).toBeGreaterThanOrEqual(0);
    expect([t.seq(s), t.ack(s), t.window(s)]).toEqual([0xfffffff0, 123, 65535]);
    expect(t.endpoints(s)).toEqual({ family: 4, guestAddr: G, guestPort: 40000, remoteAddr: R, remotePort: 80 });
    expect(t.find(4, G, 40001, R, 80)).toBe(-1);
    expect(t.expire(999)).toBe(1000);
    expect(t.size).toBe(1);
    expect(t.expire(1000)).toBe(-1);
    expect(t.size).toBe(0);
    expect(t.find(4, G, 40000, R, 80)).toBe(-1);
  });

  it('expires in queue order and says when the next record is due', () => {
    const t = new TimeWaitTable();
    for (let i = 0; i < 10; i++) t.enter(4, G, 1000 + i, R, 80, i, i, 0, 100 + i);
    expect(t.expire(104)).toBe(105);
    expect(t.size).toBe(5);
    for (let i = 0; i < 10; i++) expect(t.find(4, G, 1000 + i, R, 80) >= 0).toBe(i >= 5);
  });

  it('a restarted record outlives its first due time; the old slot does not take it away', () => {
    const t = new TimeWaitTable();
    t.enter(4, G, 1, R, 80, 7, 8, 9, 100);
    t.enter(4, G, 2, R, 80, 0, 0, 0, 150);
    t.restart(t.find(4, G, 1, R, 80), 300);
    expect(t.size).toBe(2);
    expect(t.queued).toBe(3);
    expect(t.expire(200)).toBe(300);
    const s = t.find(4, G, 1, R, 80);
    expect(s).toBeGreaterThanOrEqual(0);
    expect([t.seq(s), t.ack(s), t.window(s)]).toEqual([7, 8, 9]);
    expect(t.find(4, G, 2, R, 80)).toBe(-1);
    expect(t.expire(300)).toBe(-1);
    expect(t.size).toBe(0);
  });

  it('a forgotten record is gone at once, and its slot falling due leaves a new record of the 4-tuple alone', () => {
    const t = new TimeWaitTable();
    t.enter(4, G, 1, R, 80, 1, 1, 0, 100);
    t.forget(t.find(4, G, 1, R, 80));
    expect(t.size).toBe(0);
    t.enter(4, G, 1, R, 80, 2, 2, 0, 200); // a later incarnation's TIME-WAIT
    expect(t.expire(100)).toBe(200);
    expect(t.ack(t.find(4, G, 1, R, 80))).toBe(2);
  });

  it('holds IPv6 records (text addresses) beside IPv4 ones', () => {
    const t = new TimeWaitTable();
    t.enter(6, 'fd00::100', 5000, '2001:db8::10', 443, 1, 2, 3, 100);
    t.enter(4, G, 5000, R, 443, 4, 5, 6, 100);
    const s6 = t.find(6, 'fd00::100', 5000, '2001:db8::10', 443);
    expect(t.endpoints(s6)).toEqual({ family: 6, guestAddr: 'fd00::100', guestPort: 5000, remoteAddr: '2001:db8::10', remotePort: 443 });
    expect(t.ack(t.find(4, G, 5000, R, 443))).toBe(5);
    expect(t.find(6, 'fd00::101', 5000, '2001:db8::10', 443)).toBe(-1);
  });

  it('grows past its first ring with records restarted and forgotten on the way, every record intact', () => {
    // Against a plain model: tuple (guest port) -> due time, as the table is used (every record
    // due a fixed time after it was entered or restarted).
    const t = new TimeWaitTable();
    const W = 100;
    const n = 3000;
    const model = new Map<number, number>();
    const port = (i: number): number => 10000 + i;
    const addr = (i: number): number => G + (i % 7);
    for (let now = 0; now < n; now++) {
      t.enter(4, addr(now), port(now), R, 80, now * 3, now * 5, now % 65536, now + W);
      model.set(now, now + W);
      if (now % 10 === 9) {
        const s = t.find(4, addr(now - 5), port(now - 5), R, 80);
        if (s >= 0) {
          t.restart(s, now + W);
          model.set(now - 5, now + W);
        }
      }
      if (now % 13 === 12) {
        const s = t.find(4, addr(now - 1), port(now - 1), R, 80);
        if (s >= 0) t.forget(s);
        model.delete(now - 1);
      }
      // First a steady load that takes the ring round several times (positions past its size),
      // then none expires for a while: it grows with records at wrapped positions.
      if (now < 1200 || now === 2500) {
        t.expire(now);
        for (const [k, due] of model) if (due <= now) model.delete(k);
      }
    }
    expect(t.size).toBe(model.size);
    for (let i = 0; i < n; i++) {
      const s = t.find(4, addr(i), port(i), R, 80);
      expect(s >= 0, `record ${i}`).toBe(model.has(i));
      if (s < 0) continue;
      expect([t.seq(s), t.ack(s), t.window(s)]).toEqual([i * 3, i * 5, i % 65536]);
      expect(t.endpoints(s)).toEqual({ family: 4, guestAddr: addr(i), guestPort: port(i), remoteAddr: R, remotePort: 80 });
    }
    const mid = n - 50;
    expect(t.expire(mid)).toBe(mid + 1);
    for (const [k, due] of model) if (due <= mid) model.delete(k);
    expect(t.size).toBe(model.size);
    for (let i = 0; i < n; i++) expect(t.find(4, addr(i), port(i), R, 80) >= 0, `record ${i}`).toBe(model.has(i));
    expect(t.expire(n + W)).toBe(-1);
    expect(t.size).toBe(0);
    expect(t.queued).toBe(0);
  });

  it('runs round its ring under a steady load without growing, and clear() forgets everything', () => {
    const t = new TimeWaitTable();
    let now = 0;
    for (let i = 0; i < 20000; i++) {
      now++;
      t.enter(4, G, i % 60000, R, 80, i, i, 0, now + 100);
      t.expire(now);
      expect(t.queued).toBeLessThanOrEqual(101);
    }
    const s = t.find(4, G, 19999 % 60000, R, 80);
    expect(t.ack(s)).toBe(19999);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.find(4, G, 19999 % 60000, R, 80)).toBe(-1);
    expect(t.expire(now + 1000)).toBe(-1);
  });
});
