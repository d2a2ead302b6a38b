import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../log.js';
import { idleTrimmer, tapActivity } from './serve.js';

const log = createLogger('silent');

describe('idle trimmer', () => {
  afterEach(() => vi.useRealTimers());

  // A burst of 28,000 short connections as one CRR run counted them: ~4.6 frames from the guest
  // and ~3.4 to it per connection, 57-59 bytes each on average (460 bytes per connection).
  const burst = { rxBytes: 28_000 * 270, txBytes: 28_000 * 190, rxFrames: 28_000 * 4.6, txFrames: 28_000 * 3.4 };

  it('counts a burst of short connections as activity, not only its few bytes', () => {
    expect(burst.rxBytes + burst.txBytes).toBeLessThan(16 << 20);
    expect(tapActivity(burst)).toBeGreaterThanOrEqual(16 << 20);
  });

  it('releases memory once a busy tap goes quiet, and not while it is busy', () => {
    vi.useFakeTimers();
    let t = { rxBytes: 0, txBytes: 0, rxFrames: 0, txFrames: 0 };
    const release = vi.fn();
    const timer = idleTrimmer(() => tapActivity(t), release, log);
    try {
      t = burst; // the burst within the first 2 s interval
      vi.advanceTimersByTime(2000);
      expect(release).not.toHaveBeenCalled(); // still busy in that interval
      vi.advanceTimersByTime(2000); // a quiet interval
      expect(release).toHaveBeenCalledTimes(1);
      vi.advanceTimersByTime(10_000); // quiet, but nothing moved since: no second trim
      expect(release).toHaveBeenCalledTimes(1);
    } finally {
      clearInterval(timer);
    }
  });
});
