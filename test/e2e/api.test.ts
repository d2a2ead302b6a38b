// Scenario: an operator drives forwards at run time through the control API socket
// (slirp4netns-compatible JSON): adds TCP and UDP forwards, lists them, removes one (its listener
// closes, the others keep working), gets every documented error, and reads live counters and flows.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { GUEST, REPO, UNPRIV_UID } from '../lab/lab.js';
import { skipReason, slipwayOnly, titled, useLab, useStack } from '../lab/scenario.js';
import { waitFor } from '../lab/exec.js';
import { containerServers } from '../lab/container-servers.js';
import { apiCall as api, apiJson } from '../lab/api.js';

const reason = skipReason(['curl', 'socat']) ?? slipwayOnly();

describe.skipIf(!!reason)(titled('the control API adds, lists and removes forwards at run time', reason), () => {
  const lab = useLab('api');
  let sock = '';
  const { ctr, stack } = useStack(lab, () => {
    sock = join(lab().stackDir('run'), 'api.sock');
    return { configure: true, extraArgs: ['--api-socket', sock, '-p', '18000:80'] };
  });
  beforeAll(async () => {
    await containerServers(lab(), ctr(), ['world', GUEST.configured]);
  });

  const curl = (port: number) => lab().hostExec(['curl', '-sS', '--max-time', '5', `http://127.0.0.1:${port}/`]);
  const listening = async (port: number) => (await lab().hostExec(['ss', '-Hltn', `sport = :${port}`])).stdout.trim() !== '';

  it('creates the API socket mode 0600, owned by the user running slipway, before signalling ready', () => {
    const st = statSync(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(UNPRIV_UID);
  });

  let tcpId = 0;
  let udpId = 0;

  it('adds a TCP forward that curl can use', async () => {
    const r = await api(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '0.0.0.0', host_port: 18200, guest_port: 80 } });
    expect(r).toMatch(/^\{"return":\{"id":\d+\}\}$/);
    tcpId = (JSON.parse(r) as { return: { id: number } }).return.id;
    const c = await curl(18200);
    expect(c.stdout, c.stderr).toBe(WORLD_HTTP_BODY);
  });

  it('adds a UDP forward that socat can use', async () => {
    const r = await apiJson(sock, { execute: 'add_hostfwd', arguments: { proto: 'udp', host_addr: '127.0.0.1', host_port: 18207, guest_addr: GUEST.configured, guest_port: 7 } });
    udpId = r.return.id;
    expect(udpId).toBeGreaterThan(tcpId);
    const e = await lab().hostExec(['socat', '-t', '2', '-T', '3', '-', 'UDP4:127.0.0.1:18207'], { input: 'api-udp' });
    expect(e.stdout, e.stderr).toBe('api-udp');
  });

  it('lists the forwards with slirp4netns entry fields', async () => {
    const r = await apiJson(sock, { execute: 'list_hostfwd' });
    expect(r.entries).toEqual(r.return.entries);
    expect(r.return.entries).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: tcpId, proto: 'tcp', host_addr: '0.0.0.0', host_port: 18200, guest_addr: GUEST.configured, guest_port: 80 }),
        { id: udpId, proto: 'udp', host_addr: '127.0.0.1', host_port: 18207, guest_addr: GUEST.configured, guest_port: 7 },
        expect.objectContaining({ proto: 'tcp', host_port: 18000, guest_port: 80 }),
      ]),
    );
  });

  it('reports live counters and flows (extensions)', async () => {
    const holder = lab().spawnTracked('flow-holder', ['ip', 'netns', 'exec', lab().hostNs, 'socat', 'TCP4:127.0.0.1:18200', 'SYSTEM:sleep 3']);
    let flows: Record<string, any>[] = [];
    await waitFor(async () => {
      flows = (await apiJson(sock, { execute: 'list_flows' })).return.flows;
      return flows.some((f) => f.proto === 'tcp' && f.forward === tcpId);
    }, 5000);
    expect(flows).toEqual(expect.arrayContaining([expect.objectContaining({ forward: tcpId, proto: 'tcp', path: 'splice', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) })]));
    const stats = (await apiJson(sock, { execute: 'get_stats' })).return;
    expect(stats.frames.rx).toBeGreaterThan(0);
    expect(stats.forwards.tcpAccepted).toBeGreaterThan(0);
    expect(stats.forwards.udpToGuest).toBeGreaterThan(0);
    holder.kill();
  });

  it('lists an IPv6 client of a forward with its address in brackets', async () => {
    const id = (await apiJson(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '::1', host_port: 18201, guest_port: 80 } })).return.id;
    const holder = lab().spawnTracked('flow-holder6', ['ip', 'netns', 'exec', lab().hostNs, 'socat', 'TCP6:[::1]:18201', 'SYSTEM:sleep 3']);
    let flows: Record<string, any>[] = [];
    await waitFor(async () => {
      flows = (await apiJson(sock, { execute: 'list_flows' })).return.flows;
      return flows.some((f) => f.forward === id);
    }, 5000);
    expect(flows.find((f) => f.forward === id)).toMatchObject({ proto: 'tcp', peer: expect.stringMatching(/^\[::1\]:\d+$/) });
    holder.kill();
    expect((await apiJson(sock, { execute: 'remove_hostfwd', arguments: { id } })).return).toEqual({});
  });

  it('removes a forward: its listener closes, the others keep working', async () => {
    expect(await api(sock, { execute: 'remove_hostfwd', arguments: { id: tcpId } })).toBe('{"return":{}}');
    expect(await listening(18200)).toBe(false);
    const c = await curl(18200);
    expect(c.code).toBe(7);
    const other = await curl(18000);
    expect(other.stdout, other.stderr).toBe(WORLD_HTTP_BODY);
    const e = await lab().hostExec(['socat', '-t', '2', '-T', '3', '-', 'UDP4:127.0.0.1:18207'], { input: 'still here' });
    expect(e.stdout).toBe('still here');
    const list = await apiJson(sock, { execute: 'list_hostfwd' });
    expect(list.return.entries.map((x: { id: number }) => x.id)).not.toContain(tcpId);
  });

  it.each([
    ['not json', 'bad request: cannot parse JSON'],
    ['{"arguments":{}}', 'bad request: no execute found'],
    ['{"execute":"frobnicate"}', 'bad request: unknown execute'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":18300,"guest_port":80}}', 'bad request: add_hostfwd: bad arguments.proto'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"x","host_port":18300,"guest_port":80}}', 'bad request: add_hostfwd: bad arguments.host_addr'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_port":80}}', 'bad request: add_hostfwd: bad arguments.host_port'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18300,"guest_addr":"x","guest_port":80}}', 'bad request: add_hostfwd: bad arguments.guest_addr'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18300}}', 'bad request: add_hostfwd: bad arguments.guest_port'],
    ['{"execute":"remove_hostfwd","arguments":{"id":9999}}', 'bad request: remove_hostfwd: bad arguments.id'],
    [JSON.stringify({ execute: 'list_hostfwd', pad: 'x'.repeat(5000) }), 'bad request: too large message'],
  ])('answers %s with its error desc', async (req, desc) => {
    expect(await api(sock, req)).toBe(JSON.stringify({ error: { desc } }));
  });

  it('refuses a host port already in use, naming it, and keeps running', async () => {
    const r = await apiJson(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: 18000, guest_port: 80 } });
    expect(r.error.desc).toContain('0.0.0.0:18000');
    expect(r.error.desc).toContain('EADDRINUSE');
    const p = await apiJson(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: 80, guest_port: 80 } });
    expect(p.error.desc).toContain('ip_unprivileged_port_start');
    expect(stack().alive(), stack().describe()).toBe(true);
    expect((await curl(18000)).stdout).toBe(WORLD_HTTP_BODY);
  });

  it('refuses to start with an API socket path too long for sun_path', async () => {
    const c2 = await lab().createContainer();
    const long = join(lab().tmp, 'run', 'x'.repeat(120));
    const r = await lab().runUnpriv([process.execPath, join(REPO, 'bin/slipway'), '--configure', '--api-socket', long, String(c2.pid)], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/at most 107/);
  });
});
