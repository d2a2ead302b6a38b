/**
 * Deadlines (retransmission, delayed ACK, idle and TIME-WAIT timers) that share one Node timer
 * per queue. A Node timer per deadline costs a Timeout object, a list insertion (and a priority
 * queue insertion for each new duration) and a clearTimeout for every connection; a queue costs a
 * heap insertion. Arming a deadline later than the time it is queued for only moves its `at` (the
 * entry re-queues itself when it comes due), so re-arming per ACK is cheap.
 */

/** The longest delay a Node timer takes as given. */
const MAX_TIMEOUT_MS = 0x7fffffff;

export class DeadlineQueue {
  /** Binary min-heap by `queuedAt`. */
  private readonly heap: Deadline[] = [];
  private handle: NodeJS.Timeout | null = null;
  /** Date.now() the Node timer is set for (0: none). */
  private handleAt = 0;
  private firing = false;
  private readonly fire = (): void => this.run();

  /** Deadlines queued (armed, or disarmed and not yet due). */
  get size(): number {
    return this.heap.length;
  }

  /** @internal Queue `d` (not queued) for time `t`. */
  push(d: Deadline, t: number, now: number): void {
    d.queuedAt = t;
    d.index = this.heap.length;
    this.heap.push(d);
    this.up(d.index);
    if (d.index === 0) this.rearm(now);
  }

  /** @internal `d` (queued) is due earlier, at `t`. */
  moveEarlier(d: Deadline, t: number, now: number): void {
    d.queuedAt = t;
    this.up(d.index);
    if (d.index === 0) this.rearm(now);
  }

  /** @internal Take `d` (queued) out. The Node timer is left to lapse when `d` was first. */
  remove(d: Deadline): void {
    const h = this.heap;
    const i = d.index;
    const last = h.pop()!;
    if (last !== d) {
      h[i] = last;
      last.index = i;
      this.down(i);
      this.up(last.index);
    }
    d.queuedAt = 0;
    d.index = -1;
    if (h.length === 0 && this.handle !== null) {
      clearTimeout(this.handle);
      this.handle = null;
      this.handleAt = 0;
    }
  }

  /** Cancel every deadline (shutdown). */
  clear(): void {
    for (const d of this.heap) {
      d.queuedAt = 0;
      d.index = -1;
      d.at = 0;
    }
    this.heap.length = 0;
    if (this.handle !== null) clearTimeout(this.handle);
    this.handle = null;
    this.handleAt = 0;
  }

  private run(): void {
    this.handle = null;
    this.handleAt = 0;
    const h = this.heap;
    const now = Date.now();
    let failed = false;
    let error: unknown;
    this.firing = true;
    try {
      while (h.length > 0 && h[0]!.queuedAt <= now) {
        const d = h[0]!;
        this.remove(d);
        if (d.at === 0) continue; // disarmed since it was queued
        if (d.at > now) {
          this.push(d, d.at, now); // armed later since: queued again for then
          continue;
        }
        d.at = 0;
        try {
          d.fn();
        } catch (e) {
          // The other due deadlines still run; the first error is thrown after them, as a
          // throwing timer callback would have been.
          if (!failed) error = e;
          failed = true;
        }
      }
    } finally {
      this.firing = false;
      this.rearm(Date.now());
    }
    if (failed) throw error;
  }

  /** Set the Node timer for the earliest entry (an earlier timer is kept: it re-checks). */
  private rearm(now: number): void {
    if (this.firing) return;
    const first = this.heap[0];
    if (first === undefined) return;
    if (this.handle !== null) {
      if (this.handleAt <= first.queuedAt) return;
      clearTimeout(this.handle);
    }
    this.handleAt = first.queuedAt;
    // Node caps a timeout at 2^31 - 1 ms (longer ones fire after 1 ms): a far deadline is
    // re-checked when the capped timer fires.
    this.handle = setTimeout(this.fire, Math.min(MAX_TIMEOUT_MS, Math.max(1, first.queuedAt - now)));
    this.handle.unref?.();
  }

  private up(i: number): void {
    const h = this.heap;
    const d = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (parent.queuedAt <= d.queuedAt) break;
      h[i] = parent;
      parent.index = i;
      i = p;
    }
    h[i] = d;
    d.index = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = h.length;
    const d = h[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && h[c + 1]!.queuedAt < h[c]!.queuedAt) c++;
      const child = h[c]!;
      if (child.queuedAt >= d.queuedAt) break;
      h[i] = child;
      child.index = i;
      i = c;
    }
    h[i] = d;
    d.index = i;
  }
}

/** One deadline: `fn` runs once when it is due, unless disarmed or cancelled first. */
export class Deadline {
  /** @internal Date.now() it is due (0: not armed). */
  at = 0;
  /** @internal Date.now() it is queued for (0: not queued), and its heap position. */
  queuedAt = 0;
  index = -1;

  constructor(
    private readonly queue: DeadlineQueue,
    /** @internal */ readonly fn: () => void,
  ) {}

  get armed(): boolean {
    return this.at !== 0;
  }

  /** Due `ms` (at least 1) from now, earlier or later than it was. */
  arm(ms: number): void {
    const now = Date.now();
    const at = now + Math.max(1, ms);
    this.at = at;
    if (this.queuedAt === 0) this.queue.push(this, at, now);
    else if (this.queuedAt > at) this.queue.moveEarlier(this, at, now);
  }

  /** Arm unless already due no later than `ms` from now (never moves a deadline later). */
  armBy(ms: number): void {
    if (this.at !== 0 && this.at <= Date.now() + Math.max(1, ms)) return;
    this.arm(ms);
  }

  /**
   * Forget the deadline but leave its entry queued, to lapse: for a deadline re-armed about as
   * often as it is cancelled (the delayed ACK, once per request), which then costs nothing.
   */
  disarm(): void {
    this.at = 0;
  }

  /** Forget the deadline and take its entry out of the queue (the flow is gone). */
  cancel(): void {
    this.at = 0;
    if (this.queuedAt !== 0) this.queue.remove(this);
  }
}
