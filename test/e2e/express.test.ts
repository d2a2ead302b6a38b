// Scenario: request/response exchanges on one connection (where slipway's express lane,
// native/express.c, carries the segments without a call into JS), at MTU 65520 and 1500, and over
// IPv6. Every echoed message is compared; messages of 3,000 and 40,000 bytes go beyond one MSS at
// MTU 1500 and beyond one read of the lane. A server that answers every 4th request 15 ms late
// makes the lane hand those requests' ACKs back to JS's timers, and the flow come back to the lane
// after each. Through all of it the container's TCP retransmits nothing, and the lane's counters
// show it did the work (with SLIPWAY_EXPRESS=0, JS alone, the same exchanges pass and the counters
// stay at zero).
// slipway-specific (the counters); the exchanges themselves are plain TCP.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NET, PORTS, type Container } from '../lab/lab.js';
import { skipReason, slipwayOnly, tcpEcho as echo, titled, useLab, useStack } from '../lab/scenario.js';
import { getStats } from '../lab/api.js';

const reason = skipReason() ?? slipwayOnly();

/** The container's own TCP retransmission count (RetransSegs of its netns' /proc/net/snmp). */
async function guestRetransmits(ctr: Container): Promise<number> {
  const r = await ctr.exec(['cat', '/proc/net/snmp']);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[names.indexOf('RetransSegs')]);
}

for (const [mtu, express, v6] of [[65520, true, false], [1500, true, false], [1500, false, false], [65520, true, true]] as const) {
  const title = `request/response on one connection${v6 ? ' over IPv6' : ''} at MTU ${mtu}${express ? '' : ', express lane off (SLIPWAY_EXPRESS=0)'}`;
  const server = v6 ? NET.server6 : NET.server;
  describe.skipIf(!!reason)(titled(title, reason), () => {
    const lab = useLab(`express-${mtu}-${express ? 'on' : 'off'}${v6 ? '-v6' : ''}`, { ipv6: v6 });
    let api = '';
    const { ctr, stack } = useStack(lab, () => {
      api = join(lab().stackDir(`express-${mtu}`), 'api.sock');
      return { configure: true, mtu, extraArgs: ['--api-socket', api], env: express ? {} : { SLIPWAY_EXPRESS: '0' } };
    });

    it('echoes 2,000 messages of 1 to 40,000 bytes intact, with no retransmission in the container', async () => {
      const before = await guestRetransmits(ctr());
      const res = await echo(ctr(), server, PORTS.echo, 2000);
      expect(res.mismatches, stack().describe()).toBe(0);
      expect(res.exchanges).toBe(2000);
      expect(await guestRetransmits(ctr())).toBe(before);
      const stats = await getStats(api);
      console.log(`[slipway mtu ${mtu}${express ? '' : ' no lane'}${v6 ? ' IPv6' : ''}] echo 2000: mean ${res.meanUs.toFixed(0)} us; tap ${JSON.stringify(stats.tap)}; tcp ${JSON.stringify(stats.tcp)}`);
      expect(stats.tcp.retransmits).toBe(0);
      if (express) {
        // Most of the small exchanges went through the lane both ways.
        expect(stats.tap.expressRx).toBeGreaterThan(1000);
        expect(stats.tap.expressTx).toBeGreaterThan(1000);
        expect(stats.tcp.expressIn).toBeGreaterThan(1000);
      } else {
        expect(stats.tap.expressRx ?? 0).toBe(0);
        expect(stats.tcp.expressIn).toBe(0);
      }
    });

    it('echoes 60 messages from a server that answers every 4th 15 ms late, intact', async () => {
      const before = await guestRetransmits(ctr());
      const laneBefore = (await getStats(api)).tap.expressRx ?? 0;
      const res = await echo(ctr(), server, PORTS.slowEcho, 60);
      expect(res.mismatches, stack().describe()).toBe(0);
      expect(res.meanUs).toBeGreaterThan(3_000);
      // A late request the lane took waited past the push-ACK delay: JS sent its ACK (had it not,
      // the container would have retransmitted the request). The prompt ones between went through
      // the lane: the late replies did not leave the flow in JS.
      expect(await guestRetransmits(ctr())).toBe(before);
      const stats = await getStats(api);
      expect(stats.tcp.retransmits).toBe(0);
      if (express) expect(stats.tap.expressRx - laneBefore).toBeGreaterThan(30);
    });

    it('keeps the stack alive', () => {
      expect(stack().alive(), stack().describe()).toBe(true);
    });
  });
}
