// Scenario: the link between the container and slipway is bad — 1% of frames lost, 1% reordered,
// 1% duplicated, both ways, and a little corruption toward slipway (SLIPWAY_FAULTS) — and
// everything still works: 32 MiB up and down arrive intact (equal sha256), DNS and HTTP answer,
// slipway stays up. The fault counters must be non-zero, so the test cannot pass with the
// faults silently off; the stack's own counters show the recovery (retransmits, bad checksums).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { GUEST, NET, PORTS } from '../lab/lab.js';
import { skipReason, slipwayOnly, titled, useLab, useStack } from '../lab/scenario.js';
import { getStats } from '../lab/api.js';
import { digShort } from '../lab/exec.js';

const MIB = 1024 * 1024;
const BYTES = 32 * MIB;
const FAULTS = [
  'rx-drop=0.01', 'rx-reorder=0.01', 'rx-dup=0.01', 'rx-corrupt=0.005',
  'tx-drop=0.01', 'tx-reorder=0.01', 'tx-dup=0.01',
  'seed=42',
].join(',');

const reason = skipReason(['curl', 'dig']) ?? slipwayOnly();

function parseResult(stdout: string, stderr: string): Record<string, any> {
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, any>;
  } catch {
    throw new Error(`tcp-client gave no result.\nstdout: ${stdout}\nstderr: ${stderr}`);
  }
}

describe.skipIf(!!reason)(titled('a lossy, reordering, duplicating link (SLIPWAY_FAULTS) is recovered from', reason), () => {
  const lab = useLab('faults');
  let sock = '';
  const { ctr, stack } = useStack(lab, () => {
    sock = join(lab().stackDir('run'), 'api.sock');
    return { configure: true, env: { SLIPWAY_FAULTS: FAULTS }, extraArgs: ['--api-socket', sock] };
  });

  it('warns at start that faults are injected on purpose', () => {
    const warn = stack().stderr.text().split('\n').find((l) => l.includes('SLIPWAY_FAULTS is set'));
    expect(warn, stack().describe()).toBeDefined();
    expect(JSON.parse(warn!).level).toBe(40);
  });

  it('uploads 32 MiB to the world sink intact (same sha256 and byte count)', async () => {
    const r = await ctr().node('tcp-client.ts', ['upload', NET.server, String(PORTS.sink), String(BYTES)], { timeoutMs: 150_000 });
    const res = parseResult(r.stdout, r.stderr + stack().describe());
    expect(res.remoteBytes).toBe(BYTES);
    expect(res.remote).toBe(res.local);
    console.log(`[faults] upload 32 MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  }, 160_000);

  it('downloads 32 MiB from the world source intact (same sha256)', async () => {
    const r = await ctr().node('tcp-client.ts', ['download', NET.server, String(PORTS.source), String(BYTES)], { timeoutMs: 150_000 });
    const res = parseResult(r.stdout, r.stderr + stack().describe());
    expect(res.bytes).toBe(BYTES);
    expect(res.local).toBe(res.expected);
    console.log(`[faults] download 32 MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  }, 160_000);

  it('resolves world.test through the DNS forwarder (dig retries a lost datagram)', async () => {
    const r = await ctr().exec(['dig', '+short', '+time=1', '+tries=5', `@${GUEST.dns}`, NET.worldName, 'A']);
    // A try lost to the injected faults shows as ";; communications error" before the answer.
    const dig = digShort(r.stdout);
    expect(dig.answer, r.stdout + r.stderr).toBe(NET.server);
    expect(dig.other, r.stdout).toEqual([]);
    expect(dig.timedOut, r.stdout).toBeLessThan(5);
  });

  it('fetches the world HTTP server with curl, several times', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await ctr().exec(['curl', '-sS', '--max-time', '20', `http://${NET.server}/`]);
      expect(r.stdout, r.stderr).toBe(WORLD_HTTP_BODY);
    }
  });

  it('did inject every kind of fault, and the stack recovered (retransmits, checksum drops)', async () => {
    const stats = await getStats(sock);
    const f = stats.faults;
    console.log(`[faults] injected ${JSON.stringify(f)}; stack tcp ${JSON.stringify(stats.tcp)}; drops ${JSON.stringify(stats.drops)}`);
    expect(f.seed).toBe(42);
    for (const dir of ['rx', 'tx'] as const) {
      expect(f[dir].dropped, dir).toBeGreaterThan(0);
      expect(f[dir].reordered, dir).toBeGreaterThan(0);
      expect(f[dir].duplicated, dir).toBeGreaterThan(0);
    }
    expect(f.rx.corrupted).toBeGreaterThan(0);
    expect(f.tx.corrupted).toBe(0);
    // Lost data toward the guest is sent again; corrupted frames from the guest fail a check.
    expect(stats.tcp.retransmits).toBeGreaterThan(0);
  });

  it('is still running', () => {
    expect(stack().alive(), stack().describe()).toBe(true);
  });
});
