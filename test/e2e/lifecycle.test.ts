// Scenario: the stack's life cycle as a supervisor (Podman, rootlesskit) drives it:
// --ready-fd, --exit-fd, SIGTERM, and `slipway run -- CMD` returning CMD's status.
// ready-fd / exit-fd / SIGTERM are validated against slirp4netns; `run`, error messages and the
// exact exit code on SIGTERM are slipway-specific.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { isAlive, procComm, waitFor } from '../lab/exec.js';
import { GUEST, NET, REPO, type Container, type Stack } from '../lab/lab.js';
import { skipReason, slipwayOnly, STACK, titled, useLab } from '../lab/scenario.js';

const reason = skipReason(['ping']);

/** Pids (other than `except`) whose network namespace is the given one. */
function pidsInNetns(netnsLink: string, except: number[]): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (except.includes(pid)) continue;
    try {
      if (readlinkSync(`/proc/${d}/ns/net`) === netnsLink) out.push(pid);
    } catch {
      /* raced or kernel thread */
    }
  }
  return out;
}

describe.skipIf(!!reason)(titled('stack life cycle', reason), () => {
  const lab = useLab('lifecycle');
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop('SIGKILL');
    stack = undefined;
  });

  async function attached(opts: { exitFd?: boolean } = {}): Promise<{ ctr: Container; stack: Stack }> {
    const ctr = await lab().createContainer();
    stack = await lab().startStack(STACK, ctr, { configure: true, ...opts });
    return { ctr, stack };
  }

  it('--ready-fd: writes "1" once the tap is configured and traffic is served', async () => {
    const { ctr, stack: s } = await attached();
    // The moment ready arrives, the gateway must already answer (no sleeps before this).
    const p = await ctr.exec(['ping', '-c', '1', '-W', '2', GUEST.gateway]);
    expect(p.stdout, p.stderr).toMatch(/1 received/);
    await waitFor(() => s.readyText.length > 0, 1000);
    expect(s.readyText).toBe('1');
  });

  it('--exit-fd: exits with status 0 when the supervisor closes the pipe', async () => {
    const { stack: s } = await attached({ exitFd: true });
    expect(s.alive()).toBe(true);
    s.closeExitFd();
    const ex = await s.waitExit(5000);
    expect(ex, `still running 5 s after exit-fd closed\n${s.describe()}`).toBeDefined();
    expect(ex!.code, s.describe()).toBe(0);
  });

  it('SIGTERM: exits promptly and leaves nothing behind in the container netns', async () => {
    const { ctr, stack: s } = await attached();
    const netnsLink = readlinkSync(ctr.netnsPath);
    const helpers = s.descendants();
    s.child.kill('SIGTERM');
    const ex = await s.waitExit(5000);
    expect(ex, `still running 5 s after SIGTERM\n${s.describe()}`).toBeDefined();
    if (STACK === 'slipway') {
      // slipway-specific: a clean shutdown, not death by signal.
      expect(ex!.signal, s.describe()).toBeNull();
      expect(ex!.code, s.describe()).toBe(0);
    }
    // No helper (e.g. slipway-agent) survives its parent.
    const gone = await waitFor(() => helpers.every((p) => !isAlive(p)), 3000);
    const left = helpers.filter(isAlive).map((p) => `${p}:${procComm(p)}`);
    expect(gone, `helpers still alive: ${left.join(', ')}`).toBe(true);
    // Nothing but the container's own process is left in its netns.
    const strays = pidsInNetns(netnsLink, [ctr.pid]).map((p) => `${p}:${procComm(p)}`);
    expect(strays).toEqual([]);
    expect(strays.some((x) => x.endsWith(':slipway-agent'))).toBe(false);
  });

  it('survives its container exiting first without hanging the supervisor (exits or keeps serving nothing)', async () => {
    const { ctr, stack: s } = await attached();
    ctr.child.kill('SIGKILL');
    await waitFor(() => !ctr.alive(), 3000);
    // Whatever it does, SIGTERM must still stop it promptly.
    if (s.alive()) s.child.kill('SIGTERM');
    const ex = await s.waitExit(5000);
    expect(ex, s.describe()).toBeDefined();
  });

  describe.skipIf(!!slipwayOnly())(titled('slipway-specific CLI behaviour', slipwayOnly()), () => {
    const slipway = [process.execPath, join(REPO, 'bin/slipway')];

    it('`slipway run -- sh -c "exit 7"` exits with 7', async () => {
      const r = await lab().runUnpriv([...slipway, 'run', '--dns-upstream', NET.dns, '--', 'sh', '-c', 'exit 7']);
      expect(r.code, r.stderr).toBe(7);
    });

    it('`slipway run -- true` exits with 0', async () => {
      const r = await lab().runUnpriv([...slipway, 'run', '--dns-upstream', NET.dns, '--', 'true']);
      expect(r.code, r.stderr).toBe(0);
    });

    it('run as a program, starts Node without NODE_EXTRA_CA_CERTS and gives it back to the command it runs', async () => {
      // Node warns at start that it cannot load a missing CA file: slipway's own Node must not see
      // the variable (bin/slipway moves it aside), the command must see it unchanged.
      const ca = '/nonexistent/slipway-test-ca.pem';
      const r = await lab().runUnpriv(
        [join(REPO, 'bin/slipway'), 'run', '--dns-upstream', NET.dns, '--', 'sh', '-c', 'printf "%s|%s" "$NODE_EXTRA_CA_CERTS" "${SLIPWAY_NODE_EXTRA_CA_CERTS-unset}"'],
        { env: { ...lab().unprivEnv(), NODE_EXTRA_CA_CERTS: ca } },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${ca}|unset`);
      expect(r.stderr).not.toMatch(/extra certs/);
    });

    it('`slipway run` configures the tap (10.0.2.100) and reaches the world from inside', async () => {
      const r = await lab().runUnpriv([
        ...slipway, 'run', '--dns-upstream', NET.dns, '--', 'sh', '-c',
        `ip -4 -o addr show dev tap0 && curl -sS --max-time 10 http://${NET.server}/`,
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`inet ${GUEST.configured}/24`);
      expect(r.stdout).toContain(WORLD_HTTP_BODY);
    });

    it('fails with a message naming the PID when the PID does not exist', async () => {
      const r = await lab().runUnpriv([...slipway, '--dns-upstream', NET.dns, '999999999'], { timeoutMs: 15_000 });
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr).toMatch(/999999999/);
    });

    it('fails with a message naming the path when --netns-path does not exist', async () => {
      const missing = '/nonexistent/slipway-test-netns';
      const r = await lab().runUnpriv([...slipway, '--dns-upstream', NET.dns, '--netns-path', missing], {
        timeoutMs: 15_000,
      });
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr).toContain(missing);
    });

    it('--help and --version exit 0', async () => {
      const h = await lab().runUnpriv([...slipway, '--help'], { timeoutMs: 15_000 });
      expect(h.code, h.stderr).toBe(0);
      expect(h.stdout).toMatch(/--netns-path/);
      const v = await lab().runUnpriv([...slipway, '--version'], { timeoutMs: 15_000 });
      expect(v.code, v.stderr).toBe(0);
      const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
      expect(v.stdout).toContain(pkg.version);
    });
  });
});

