// Scenario: the loop's busy polling (native/busypoll.c, --busy-poll). In request/response exchanges
// with the lab's echo server (a Node client in the container), many of the next events come
// within the default 100 µs window and are caught while polling (`busyPoll.hits` in get_stats);
// once traffic stops, the loop stops polling and goes back to sleep (the stack's CPU time over 2 idle seconds stays near zero;
// a stack that kept polling would burn ~2 s). A server that answers every 4th request 15 ms late
// makes the window shrink. With --busy-poll 0 the same exchanges pass and nothing polls.
// slipway-specific (the counters and the flag).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NET, PORTS } from '../lab/lab.js';
import { skipReason, slipwayOnly, tcpEcho, titled, useLab, useStack } from '../lab/scenario.js';
import { getStats } from '../lab/api.js';
import { cpuSeconds, processTree, sleep } from '../lab/exec.js';

const reason = skipReason() ?? slipwayOnly();

for (const busyPoll of [undefined, 0] as const) {
  const title = busyPoll === undefined ? 'busy polling at its default' : 'busy polling off (--busy-poll 0)';
  describe.skipIf(!!reason)(titled(title, reason), () => {
    const lab = useLab(`busy-poll-${busyPoll ?? 'default'}`);
    let api = '';
    const { ctr, stack } = useStack(lab, () => {
      api = join(lab().stackDir('busy-poll'), 'api.sock');
      return { configure: true, extraArgs: ['--api-socket', api, ...(busyPoll === undefined ? [] : ['--busy-poll', String(busyPoll)])] };
    });

    it('echoes 2,000 messages intact; the events are caught while polling only when it is on', async () => {
      const res = await tcpEcho(ctr(), NET.server, PORTS.echo, 2000);
      expect(res.mismatches, stack().describe()).toBe(0);
      expect(res.exchanges).toBe(2000);
      const bp = (await getStats(api)).busyPoll;
      console.log(`[slipway busy-poll ${busyPoll ?? 'default'}] ${JSON.stringify(bp)}`);
      if (busyPoll === 0) {
        expect(bp).toMatchObject({ maxUs: 0, hits: 0, polls: 0, polling: false });
      } else {
        expect(bp.maxUs).toBe(100);
        // ~4,000 events (a request from the tap, a reply from the host socket, per exchange); alone
        // on the machine about a third come within the window, under the parallel test suite fewer.
        expect(bp.hits).toBeGreaterThan(200);
        expect(bp.polls).toBeGreaterThan(0);
      }
    });

    it('stops polling once the traffic stops: the idle stack uses next to no CPU', async () => {
      await sleep(500);
      const pids = processTree(stack().pid);
      const before = cpuSeconds(pids);
      await sleep(2000);
      const used = cpuSeconds(pids) - before;
      expect(used, `CPU seconds in 2 s idle; ${JSON.stringify((await getStats(api)).busyPoll)}`).toBeLessThan(0.2);
      expect((await getStats(api)).busyPoll.polling).toBe(false);
    });

    if (busyPoll === undefined) {
      it('shrinks the window when replies come later than it (a server answering every 4th request 15 ms late)', async () => {
        const shrinksBefore = (await getStats(api)).busyPoll.shrinks;
        const res = await tcpEcho(ctr(), NET.server, PORTS.slowEcho, 40);
        expect(res.mismatches).toBe(0);
        expect((await getStats(api)).busyPoll.shrinks).toBeGreaterThan(shrinksBefore);
      });
    }
  });
}
