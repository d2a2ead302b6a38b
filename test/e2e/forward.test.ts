// Scenario: services inside a rootless container are published on host ports (--publish) and
// reached from the host netns: over the spliced path (default) and over the tap (--forward-mode
// tap); bulk data arrives intact, iperf3 runs near loopback speed, UDP works with a real client,
// 500 concurrent connections complete, and unusable ports fail at startup with a clear message.
import net from 'node:net';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { HOST_LOOPBACK_BODY, WORLD_HTTP_BODY } from '../lab/data.js';
import { GUEST, REPO, type Container, type Lab } from '../lab/lab.js';
import { skipReason, slipwayOnly, titled, useLab, useStack } from '../lab/scenario.js';
import { sleep, waitFor } from '../lab/exec.js';
import { containerServers } from '../lab/container-servers.js';

const MIB = 1024 * 1024;
const BYTES = Number(process.env.SLIPWAY_E2E_BULK_MIB ?? 256) * MIB;
const reason = skipReason(['curl', 'socat', 'iperf3']) ?? slipwayOnly();

interface BulkResult {
  bytes: number;
  local: string;
  remote?: string;
  remoteBytes?: number;
  expected?: string;
  gbps: number;
}

function lastJson<T>(stdout: string, what: string): T {
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${what} gave no result:\n${stdout}`);
  }
}

/** The lab's bulk client (tcp-client.ts) run in the host netns against a host port. */
async function bulk(lab: Lab, mode: 'upload' | 'download', port: number): Promise<BulkResult> {
  const r = await lab.hostExec([process.execPath, '--import', 'tsx', join(REPO, 'test/lab/tcp-client.ts'), mode, '127.0.0.1', String(port), String(BYTES)], {
    cwd: REPO,
    timeoutMs: 170_000,
  });
  return lastJson<BulkResult>(r.stdout, `tcp-client ${mode}: ${r.stderr}`);
}

/**
 * iperf3 from the host netns to 127.0.0.1:port, Gbit/s received. `retries`: for the plain
 * host-loopback reference only (no slipway on that path): an iperf3 server still closing the
 * previous test resets the next client's control connection now and then.
 */
async function iperf(lab: Lab, port: number, reverse: boolean, retries = 0): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const r = await lab.hostExec(['iperf3', '-c', '127.0.0.1', '-p', String(port), '-t', '5', '-J', ...(reverse ? ['-R'] : [])], { timeoutMs: 30_000 });
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } }; error?: string };
    if (!j.error) return j.end.sum_received.bits_per_second / 1e9;
    if (attempt >= retries || !/control message|busy/.test(j.error)) throw new Error(j.error);
    await sleep(1000);
  }
}

describe.skipIf(!!reason)(titled('published ports reach services in the container (spliced path)', reason), () => {
  const lab = useLab('forward');
  const { ctr, stack } = useStack(lab, {
    configure: true,
    extraArgs: [
      '-p', '18000:9000', '-p', '18001:9001', '-p', '18080:80', '-p', '18081:8081',
      '-p', '15201:5201', '-p', '127.0.0.1:17007:7/udp', '-p', '18099:9999', '-p', '18082:8082',
    ],
  });
  beforeAll(async () => {
    await containerServers(lab(), ctr(), ['world', GUEST.configured]);
    await containerServers(lab(), ctr(), ['host-loopback', '127.0.0.1', '8081']);
    await containerServers(lab(), ctr(), ['host-loopback', '::1', '8082']);
    lab().spawnTracked('ctr-iperf3', ['nsenter', '-t', String(ctr().pid), '-n', 'iperf3', '-s', '-p', '5201']);
    const up = await waitFor(async () => (await ctr().exec(['ss', '-Hltn', 'sport = :5201'])).stdout.trim() !== '', 5000);
    if (!up) throw new Error(`iperf3 did not start in the container:\n${lab().logs.get('ctr-iperf3')?.text()}`);
  });

  it('serves curl from a server bound only to the container address 10.0.2.100', async () => {
    const r = await lab().hostExec(['curl', '-sS', '--max-time', '10', 'http://127.0.0.1:18080/']);
    expect(r.stdout, r.stderr + stack().describe()).toBe(WORLD_HTTP_BODY);
  });

  it('serves curl from a server bound only to the container loopback', async () => {
    const r = await lab().hostExec(['curl', '-sS', '--max-time', '10', 'http://127.0.0.1:18081/']);
    expect(r.stdout, r.stderr).toBe(HOST_LOOPBACK_BODY);
  });

  it('serves curl from a server bound only to the container IPv6 loopback [::1]', async () => {
    const r = await lab().hostExec(['curl', '-sS', '--max-time', '10', 'http://127.0.0.1:18082/']);
    expect(r.stdout, r.stderr + stack().describe()).toBe(HOST_LOOPBACK_BODY);
  });

  it('listens on IPv6 too by default ([::1])', async () => {
    const r = await lab().hostExec(['curl', '-sS', '--max-time', '10', 'http://[::1]:18080/']);
    expect(r.stdout, r.stderr).toBe(WORLD_HTTP_BODY);
  });

  it('resets the host client when nothing listens on the container port', async () => {
    const t0 = Date.now();
    const r = await lab().hostExec(['curl', '-sS', '--max-time', '10', 'http://127.0.0.1:18099/']);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.code).not.toBe(28); // not a timeout
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it(`uploads ${BYTES / MIB} MiB through the forward with an equal sha256`, async () => {
    const res = await bulk(lab(), 'upload', 18000);
    expect(res.remoteBytes).toBe(BYTES);
    expect(res.remote).toBe(res.local);
    console.log(`[splice] upload ${BYTES / MIB} MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  });

  it(`downloads ${BYTES / MIB} MiB through the forward with an equal sha256`, async () => {
    const res = await bulk(lab(), 'download', 18001);
    expect(res.bytes).toBe(BYTES);
    expect(res.local).toBe(res.expected);
    console.log(`[splice] download ${BYTES / MIB} MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  });

  it('runs iperf3 both ways through the forward near host loopback speed', async () => {
    lab().spawnTracked('host-iperf3', ['ip', 'netns', 'exec', lab().hostNs, 'iperf3', '-s', '-p', '15301', '-B', '127.0.0.1']);
    await waitFor(async () => (await lab().hostExec(['ss', '-Hltn', 'sport = :15301'])).stdout.trim() !== '', 5000);
    const loopUp = await iperf(lab(), 15301, false, 2);
    const loopDown = await iperf(lab(), 15301, true, 2);
    const up = await iperf(lab(), 15201, false);
    const down = await iperf(lab(), 15201, true);
    console.log(
      `[splice] iperf3 host→container ${up.toFixed(2)} Gbit/s, container→host (-R) ${down.toFixed(2)} Gbit/s; ` +
        `host loopback ${loopUp.toFixed(2)} / ${loopDown.toFixed(2)} Gbit/s; ratio ${(up / loopUp).toFixed(2)} / ${(down / loopDown).toFixed(2)}`,
    );
    expect(up).toBeGreaterThan(loopUp * 0.3);
    expect(down).toBeGreaterThan(loopDown * 0.3);
  });

  it('echoes UDP datagrams through a UDP forward (socat)', async () => {
    const payload = `udp-forward-${Date.now()}`;
    const r = await lab().hostExec(['socat', '-t', '2', '-T', '3', '-', 'UDP4:127.0.0.1:17007'], { input: payload });
    expect(r.stdout, r.stderr + stack().describe()).toBe(payload);
    const big = 'a'.repeat(4000) + 'b'.repeat(4000);
    const r2 = await lab().hostExec(['socat', '-t', '2', '-T', '3', '-', 'UDP4:127.0.0.1:17007'], { input: big });
    expect(r2.stdout).toBe(big);
  });

  it('completes 500 concurrent connections through one forward', async () => {
    const r = await lab().hostExec([process.execPath, '--import', 'tsx', join(REPO, 'test/lab/many-conns.ts'), '127.0.0.1', '18000', '500'], {
      cwd: REPO,
      timeoutMs: 120_000,
    });
    const res = lastJson<{ ok: number; failed: number; errors: string[] }>(r.stdout, `many-conns: ${r.stderr}`);
    expect(res.errors).toEqual([]);
    expect(res.ok).toBe(500);
  });

  it('is still running after all of the above', () => {
    expect(stack().alive(), stack().describe()).toBe(true);
  });
});

describe.skipIf(!!reason)(titled('tap-mode forwards deliver from the gateway address', reason), () => {
  const lab = useLab('forward-tap');
  let sock = '';
  const { ctr, stack } = useStack(lab, () => {
    sock = join(lab().stackDir('run'), 'api.sock');
    return {
      configure: true,
      extraArgs: ['--forward-mode', 'tap', '--api-socket', sock, '-p', '19000:9000', '-p', '19001:9001', '-p', '19080:80'],
    };
  });
  beforeAll(async () => {
    await containerServers(lab(), ctr(), ['world', GUEST.configured]);
  });

  it('shows the connection as coming from the gateway 10.0.2.2', async () => {
    const r = await lab().hostExec(['curl', '-sS', '-D', '-', '--max-time', '10', 'http://127.0.0.1:19080/']);
    expect(r.stdout, r.stderr + stack().describe()).toContain(WORLD_HTTP_BODY);
    expect(r.stdout.toLowerCase()).toContain(`x-lab-remote: ${GUEST.gateway}`);
  });

  it('lists a live tap-mode connection in the API flow listing', async () => {
    const holder = lab().spawnTracked('tap-flow-holder', ['ip', 'netns', 'exec', lab().hostNs, 'socat', 'TCP4:127.0.0.1:19080', 'SYSTEM:sleep 3']);
    let flows: Record<string, unknown>[] = [];
    const listFlows = (): Promise<Record<string, unknown>[]> =>
      new Promise((resolve, reject) => {
        const s = net.connect(sock, () => s.end(JSON.stringify({ execute: 'list_flows' })));
        let out = '';
        s.on('data', (b: Buffer) => (out += b.toString()));
        s.on('close', () => resolve((JSON.parse(out) as { return: { flows: Record<string, unknown>[] } }).return.flows));
        s.on('error', reject);
      });
    await waitFor(async () => {
      flows = await listFlows();
      return flows.some((f) => f.path === 'tap');
    }, 5000);
    expect(flows, stack().describe()).toEqual(
      expect.arrayContaining([expect.objectContaining({ proto: 'tcp', path: 'tap', target: `${GUEST.configured}:80`, source: expect.stringMatching(/^10\.0\.2\.2:\d+$/) })]),
    );
    holder.kill();
  });

  it(`uploads ${BYTES / MIB} MiB over the tap with an equal sha256`, async () => {
    const res = await bulk(lab(), 'upload', 19000);
    expect(res.remoteBytes).toBe(BYTES);
    expect(res.remote).toBe(res.local);
    console.log(`[tap] upload ${BYTES / MIB} MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  });

  it(`downloads ${BYTES / MIB} MiB over the tap with an equal sha256`, async () => {
    const res = await bulk(lab(), 'download', 19001);
    expect(res.bytes).toBe(BYTES);
    expect(res.local).toBe(res.expected);
    console.log(`[tap] download ${BYTES / MIB} MiB: ${res.gbps.toFixed(2)} Gbit/s`);
  });

  it('is still running', () => {
    expect(stack().alive(), stack().describe()).toBe(true);
  });
});

describe.skipIf(!!reason)(titled('a forward that cannot listen is a startup error', reason), () => {
  const lab = useLab('forward-errors');

  async function slipway(ctr: Container, args: string[]): Promise<{ code: number | null; stderr: string }> {
    const r = await lab().runUnpriv([process.execPath, join(REPO, 'bin/slipway'), '--configure', '--dns-upstream', '203.0.113.53', ...args, String(ctr.pid)], {
      timeoutMs: 20_000,
    });
    return { code: r.code, stderr: r.stderr };
  }

  it('exits 1 naming the address and port when the port is in use', async () => {
    lab().spawnTracked('holder', ['ip', 'netns', 'exec', lab().hostNs, 'socat', 'TCP4-LISTEN:18500,bind=127.0.0.1,reuseaddr,fork', 'SYSTEM:true']);
    await waitFor(async () => (await lab().hostExec(['ss', '-Hltn', 'sport = :18500'])).stdout.trim() !== '', 5000);
    const ctr = await lab().createContainer();
    const r = await slipway(ctr, ['-p', '127.0.0.1:18500:80']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('127.0.0.1:18500');
    expect(r.stderr).toMatch(/already in use \(EADDRINUSE\)/);
  });

  it('exits 1 explaining ip_unprivileged_port_start for a privileged port', async () => {
    const ctr = await lab().createContainer();
    const r = await slipway(ctr, ['-p', '127.0.0.1:80:80']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('127.0.0.1:80');
    expect(r.stderr).toContain('ip_unprivileged_port_start');
  });

  it('exits 1 when the host address is not local', async () => {
    const ctr = await lab().createContainer();
    const r = await slipway(ctr, ['-p', '192.0.2.1:18600:80']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('192.0.2.1:18600');
    expect(r.stderr).toContain('EADDRNOTAVAIL');
  });
});
