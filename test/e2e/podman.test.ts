// Scenario: Podman runs rootless containers on slipway. Debian's podman 4.3 (+ runc, uidmap),
// as an unprivileged user with subordinate id ranges, inside the lab's host netns, with
// `--network-cmd-path=bin/slipway-slirp4netns`. Podman passes --enable-sandbox and
// --enable-seccomp (it finds them in --help), so this also proves the sandboxed path.
// slipway-specific (it is the drop-in under test); skipped only when Podman is not installed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { waitFor } from '../lab/exec.js';
import { NET } from '../lab/lab.js';
import { ensurePodmanUser, LabPodman, podmanMissing, podmanVersion } from '../lab/podman.js';
import { skipReason, titled, useLab } from '../lab/scenario.js';

const reason = skipReason(['curl']) ?? podmanMissing();

/** HTTP GET with busybox nc (busybox 1.35's wget crashes on this kernel). */
function httpGet(host: string): string {
  return `printf 'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' | nc -w 10 ${host} 80`;
}

describe.skipIf(!!reason)(titled(`Podman on slipway (${reason ? 'podman' : podmanVersion()})`, reason), () => {
  const lab = useLab('podman', { ipv6: true });
  let pm: LabPodman;

  beforeAll(() => {
    pm = new LabPodman(lab(), ensurePodmanUser());
  });
  afterAll(() => {
    pm?.cleanup();
  });

  it('the container gets 10.0.2.100/24 and a default route via 10.0.2.2', async () => {
    const r = await pm.runContainer('slirp4netns', 'ip -4 addr show tap0; ip route');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('inet 10.0.2.100/24');
    expect(r.stdout).toMatch(/default via 10\.0\.2\.2 dev tap0/);
  });

  it('reaches a world server by address and by name (DNS through 10.0.2.3)', async () => {
    const r = await pm.runContainer(
      'slirp4netns',
      `${httpGet(NET.server)} && echo && ${httpGet(NET.worldName)} && echo && cat /etc/resolv.conf`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split(WORLD_HTTP_BODY).length - 1).toBe(2);
    expect(r.stdout).toContain('nameserver 10.0.2.3');
  });

  it('honours mtu=… from --network slirp4netns:mtu=1400', async () => {
    const r = await pm.runContainer('slirp4netns:mtu=1400', 'ip link show tap0');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('mtu 1400');
  });

  for (const handler of ['rootlesskit', 'slirp4netns'] as const) {
    it(`-p HOST:CONTAINER works with port_handler=${handler}`, async () => {
      const port = handler === 'rootlesskit' ? 18080 : 18081;
      const name = `web-${handler}`;
      const start = await pm.podman([
        'run', '-d', '--name', name, '--network', `slirp4netns:port_handler=${handler}`, '-p', `127.0.0.1:${port}:8080`,
        '--rootfs', pm.rootfs, '/bin/httpd', '-f', '-p', '8080', '-h', '/www',
      ]);
      expect(start.code, start.stderr).toBe(0);
      try {
        let body = '';
        const ok = await waitFor(async () => {
          const r = await lab().hostExec(['curl', '-sS', '--max-time', '3', `http://127.0.0.1:${port}/`]);
          body = r.stdout + r.stderr;
          return r.code === 0;
        }, 20_000, 250);
        expect(ok, `${body}\n${(await pm.podman(['logs', name])).stderr}`).toBe(true);
        expect(body).toContain('hello from the podman container');
      } finally {
        await pm.podman(['rm', '-f', '-t', '0', name]);
      }
    });
  }

  it('--network slirp4netns:enable_ipv6=true gives IPv6 (SLAAC in fd00::/64, world over IPv6)', async () => {
    const r = await pm.runContainer(
      'slirp4netns:enable_ipv6=true',
      `i=0; while [ $i -lt 50 ] && ! ip -6 addr show dev tap0 | grep -q 'inet6 fd00::'; do sleep 0.1; i=$((i+1)); done; ` +
        `ip -6 addr show dev tap0; ip -6 route; ${httpGet(NET.server6)}`,
    );
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/inet6 fd00::[0-9a-f:]+\/64/);
    expect(r.stdout).toContain(WORLD_HTTP_BODY);
  });

  it('podman stop / rm leaves no slipway process behind', async () => {
    const name = 'sleeper';
    const start = await pm.podman(['run', '-d', '--name', name, '--network', 'slirp4netns', '--rootfs', pm.rootfs, '/bin/sleep', '600']);
    expect(start.code, start.stderr).toBe(0);
    const running = await waitFor(() => pm.slipwayProcesses().length > 0, 10_000);
    expect(running, 'no slipway process while the container runs').toBe(true);
    const stop = await pm.podman(['stop', '-t', '1', name]);
    expect(stop.code, stop.stderr).toBe(0);
    const rm = await pm.podman(['rm', name]);
    expect(rm.code, rm.stderr).toBe(0);
    const gone = await waitFor(() => pm.slipwayProcesses().length === 0, 10_000);
    expect(gone, `still running: ${pm.slipwayProcesses().join('\n')}`).toBe(true);
  });

  it('podman info sees slipway behind the slirp4netns contract', async () => {
    const v = await pm.podman(['info', '--format', '{{.Host.Slirp4NetNS.Version}}']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/slirp4netns version 1\.2\.0\+slipway/);
  });
});
