// Scenario: bursts of UDP through slipway at MTU 1500, IPv4 and IPv6, to the world echo server.
// Guest datagrams of one flow in one tap batch leave as one segmented send (UDP_SEGMENT), and
// echoes read together come back as one GSO_UDP_L4 frame the container's kernel splits; every
// datagram must arrive with its own length and bytes, none twice.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NET, PORTS, REPO, type Container, type Stack } from '../lab/lab.js';
import { skipReason, slipwayOnly, titled, useLab } from '../lab/scenario.js';
import { getStats } from '../lab/api.js';

const reason = skipReason() ?? slipwayOnly();
const N = 2000;

interface Burst { sent: number; echoed: number; corrupt: number; duplicates: number; errors: string[] }

describe.skipIf(!!reason)(titled('UDP bursts with segmentation offload both ways, IPv4 and IPv6', reason), () => {
  const lab = useLab('udp', { ipv6: true });
  let ctr: Container;
  let stack: Stack;
  let apiSock: string;

  beforeAll(async () => {
    ctr = await lab().createContainer();
    apiSock = join(lab().stackDir('udp-api'), 'api.sock');
    stack = await lab().startStack('slipway', ctr, { configure: true, mtu: 1500, extraArgs: ['--api-socket', apiSock] });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  async function burst(host: string, type: 'udp4' | 'udp6'): Promise<Burst> {
    // Datagrams that fill a 1500-byte packet without fragments (IPv4: 20 + 8, IPv6: 40 + 8).
    const size = type === 'udp4' ? 1472 : 1452;
    const r = await ctr.exec([process.execPath, '--import', 'tsx', join(REPO, 'test/lab/udp-burst.ts'), host, String(PORTS.udpEcho), String(N), String(size), type], { timeoutMs: 60_000, cwd: REPO });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    expect(line.startsWith('{'), `udp-burst: ${r.stdout} ${r.stderr}`).toBe(true);
    return JSON.parse(line) as Burst;
  }

  for (const [family, host, type] of [['IPv4', NET.server, 'udp4'], ['IPv6', NET.server6, 'udp6']] as const) {
    it(`echoes ${N} datagrams over ${family} intact, none twice, and sends runs of them together`, async () => {
      const before = await getStats(apiSock);
      const res = await burst(host, type);
      const after = await getStats(apiSock);
      const udp = (s: Record<string, any>) => (family === 'IPv4' ? s.udp : s.ipv6.udp) as Record<string, number>;
      expect(res.errors).toEqual([]);
      expect(res.corrupt).toBe(0);
      expect(res.duplicates).toBe(0);
      const delta = (k: string): number => udp(after)[k] - udp(before)[k];
      // Every datagram reached the host socket, and every echo that came back reached the
      // container. (The echo server, on this shared VM, may drop some of a burst: that is UDP.)
      expect(delta('toHost')).toBe(N);
      expect(delta('sendErrors')).toBe(0);
      expect(delta('dropped')).toBe(0);
      expect(res.echoed).toBe(delta('toGuest'));
      expect(res.echoed).toBeGreaterThan(N / 2);
      // Runs went out together: fewer sends than datagrams; echoes read together reached the
      // container in fewer frames than datagrams (GSO_UDP_L4, split by its kernel).
      expect(delta('hostSends')).toBeLessThan(N);
      expect(after.frames.tx - before.frames.tx).toBeLessThan(delta('toGuest'));
      expect(after.frames.txErrors).toBe(before.frames.txErrors);
    });
  }
});
