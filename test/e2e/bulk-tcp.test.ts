// Scenario: 256 MiB over TCP each way between the container and the world arrives intact
// (equal sha256 on both ends), with the stack still alive afterwards.
// Validated against slirp4netns (SLIPWAY_E2E_STACK=slirp4netns).
import { describe, expect, it } from 'vitest';
import { NET, PORTS } from '../lab/lab.js';
import { skipReason, STACK, titled, useLab, useStack } from '../lab/scenario.js';

const MIB = 1024 * 1024;
const BYTES = Number(process.env.SLIPWAY_E2E_BULK_MIB ?? 256) * MIB;

const reason = skipReason();

interface Result {
  mode: string;
  bytes: number;
  local: string;
  remote?: string;
  remoteBytes?: number;
  expected?: string;
  gbps: number;
}

function parse(stdout: string, stderr: string): Result {
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Result;
  } catch {
    throw new Error(`tcp-client gave no result.\nstdout: ${stdout}\nstderr: ${stderr}`);
  }
}

describe.skipIf(!!reason)(titled(`${BYTES / MIB} MiB over TCP each way arrives intact`, reason), () => {
  const lab = useLab('bulk-tcp');
  const { ctr, stack } = useStack(lab, { configure: true });

  it('uploads to the world sink and the sink reports the same sha256 and byte count', async () => {
    const r = await ctr().node('tcp-client.ts', ['upload', NET.server, String(PORTS.sink), String(BYTES)], {
      timeoutMs: 170_000,
    });
    const res = parse(r.stdout, r.stderr + stack().describe());
    expect(res.remoteBytes).toBe(BYTES);
    expect(res.remote).toBe(res.local);
    console.log(`[${STACK}] upload ${BYTES / MIB} MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  });

  it('downloads from the world source and gets the deterministic data (same sha256)', async () => {
    const r = await ctr().node('tcp-client.ts', ['download', NET.server, String(PORTS.source), String(BYTES)], {
      timeoutMs: 170_000,
    });
    const res = parse(r.stdout, r.stderr + stack().describe());
    expect(res.bytes).toBe(BYTES);
    expect(res.local).toBe(res.expected);
    console.log(`[${STACK}] download ${BYTES / MIB} MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  });

  it('keeps the stack alive', () => {
    expect(stack().alive(), stack().describe()).toBe(true);
  });
});
