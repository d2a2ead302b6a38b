// Scenario: bin/slipway-slirp4netns, the slirp4netns drop-in, driven the way supervisors drive
// slirp4netns (positional PID|PATH TAPNAME, -c, -r FD), in the lab: --cidr, --netns-type=path,
// --disable-dns (the DNS address silently disappears: a connection times out rather than being
// refused), and the confinement of --enable-sandbox / --enable-seccomp: a denied syscall is
// denied in a child process, Node (worker threads included) still runs, the sandbox does not
// touch the caller's mounts, and the sandboxed stack still serves the container.
// slipway-specific.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { captureText, exited, run, sleep, waitFor, type ChildProcess } from '../lab/exec.js';
import { NET, REPO, UNPRIV_UID, type Container } from '../lab/lab.js';
import { skipReason, slipwayOnly, titled, useLab } from '../lab/scenario.js';
import { existsSync } from 'node:fs';

const LAUNCHER = join(REPO, 'build/Release/slipway-launcher');
const S4N = join(REPO, 'bin/slipway-slirp4netns');
const reason =
  skipReason(['curl', 'dig', 'python3']) ?? slipwayOnly() ?? (existsSync(LAUNCHER) ? undefined : 'build/Release/slipway-launcher not built');

interface Running {
  child: ChildProcess;
  ready: () => string;
  stderr: () => string;
}

describe.skipIf(!!reason)(titled('slipway-slirp4netns: the slirp4netns drop-in', reason), () => {
  const lab = useLab('slirp4netns');
  const running: ChildProcess[] = [];
  afterEach(async () => {
    for (const c of running.splice(0)) {
      c.kill('SIGKILL');
      await exited(c);
    }
  });

  /** Start slipway-slirp4netns as uid 65534 in the host netns with -r 3; resolves when ready. */
  async function start(args: string[], env: Record<string, string> = {}): Promise<Running> {
    const child = lab().spawnTracked(`s4n-${running.length}`, [...lab().unprivPrefix(), S4N, '-r', '3', ...args], {
      env: { ...lab().unprivEnv(), SLIPWAY_DNS_UPSTREAM: NET.dns, ...env },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    running.push(child);
    let ready = '';
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (b: Buffer) => (ready += b.toString()));
    const err = captureText(child.stderr);
    const ok = await waitFor(() => ready.length > 0 || child.exitCode !== null, 20_000);
    if (!ok || ready.length === 0) throw new Error(`slipway-slirp4netns did not become ready (exit ${child.exitCode})\n${err.text()}`);
    return { child, ready: () => ready, stderr: err.text };
  }

  it('-c PID TAPNAME: configures the tap, writes "1" on the ready fd, serves the world', async () => {
    const ctr = await lab().createContainer();
    const s = await start(['-c', String(ctr.pid), 'tap0']);
    expect(s.ready()).toBe('1');
    const addr = await ctr.exec(['ip', '-o', 'link', 'show', 'tap0']);
    expect(addr.stdout).toMatch(/mtu 1500\b/); // slirp4netns' default MTU
    const r = await ctr.exec(['curl', '-sS', '--max-time', '10', `http://${NET.server}/`]);
    expect(r.stdout, r.stderr).toBe(WORLD_HTTP_BODY);
  });

  it('starts Node without NODE_EXTRA_CA_CERTS (Node would warn that it cannot load this file)', async () => {
    const ctr = await lab().createContainer();
    const s = await start(['-c', String(ctr.pid), 'tap0'], { NODE_EXTRA_CA_CERTS: '/nonexistent/slipway-test-ca.pem' });
    expect(s.ready()).toBe('1');
    expect(s.stderr()).not.toMatch(/extra certs/);
  });

  it('--cidr=10.0.135.128/25: the configured address is 10.0.135.228', async () => {
    const ctr = await lab().createContainer();
    await start(['-c', '--cidr=10.0.135.128/25', String(ctr.pid), 'tap11']);
    const r = await ctr.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'tap11']);
    expect(r.stdout).toContain('inet 10.0.135.228/25');
  });

  it('--netns-type=path --userns-path: joins the given namespaces', async () => {
    const ctr = await lab().createContainer();
    await start(['-c', '--netns-type=path', `--userns-path=${ctr.usernsPath}`, ctr.netnsPath, 'tap0']);
    const r = await ctr.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'tap0']);
    expect(r.stdout).toContain('inet 10.0.2.100/24');
  });

  it('DNS at 10.0.2.3 forwards to SLIPWAY_DNS_UPSTREAM; --disable-dns makes 10.0.2.3 silent (timeout, not refused)', async () => {
    const ctr = await lab().createContainer();
    await start(['-c', String(ctr.pid), 'tap0']);
    const ok = await ctr.exec(['dig', '+short', '+time=3', '+tries=1', '@10.0.2.3', NET.worldName]);
    expect(ok.stdout.trim(), ok.stderr).toBe(NET.server);

    const ctr2 = await lab().createContainer();
    await start(['-c', '--disable-dns', String(ctr2.pid), 'tap0']);
    const udp = await ctr2.exec(['dig', '+short', '+time=2', '+tries=1', '@10.0.2.3', NET.worldName]);
    expect(udp.stdout).toMatch(/timed out|no servers could be reached/);
    // Nothing answers: no RST (which would be "Connection refused"), and 10.0.2.3 still answers
    // ARP, so the guest does not give up early with "No route to host": the connect times out.
    const tcp = await ctr2.exec(['python3', '-c', 'import socket,errno\ns=socket.socket()\ns.settimeout(3)\ntry:\n  s.connect(("10.0.2.3",53)); print("connected")\nexcept socket.timeout: print("timeout")\nexcept OSError as e: print(errno.errorcode[e.errno])']);
    expect(tcp.stdout.trim(), tcp.stderr).toBe('timeout');
  });

  it('--enable-sandbox --enable-seccomp: the confined stack serves the container', async () => {
    const ctr = await lab().createContainer();
    const s = await start(['--enable-sandbox', '--enable-seccomp', '-c', String(ctr.pid), 'tap0']);
    expect(s.stderr()).toContain('confined by slipway-launcher');
    const r = await ctr.exec(['curl', '-sS', '--max-time', '10', `http://${NET.server}/`]);
    expect(r.stdout, r.stderr).toBe(WORLD_HTTP_BODY);
    const d = await ctr.exec(['dig', '+short', '+time=3', '+tries=1', '@10.0.2.3', NET.worldName]);
    expect(d.stdout.trim(), d.stderr).toBe(NET.server);
  });

  describe('what the launcher confines (a probe runs in place of the front end)', () => {
    // The probe is exec'd by the launcher exactly as the front end would be. It lives under /run,
    // which the sandbox keeps (like /etc); /tmp is an empty tmpfs there.
    const PROBE = String.raw`
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
const py = (code) => {
  const r = spawnSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });
  return (r.stdout || r.stderr || String(r.error)).trim();
};
const errnoOf = (call) => py('import ctypes,os\nlibc=ctypes.CDLL(None,use_errno=True)\nr=' + call + '\nprint(0 if r==0 else os.strerror(ctypes.get_errno()) if r<0 else r)');
const out = {
  launcher: process.env.SLIPWAY_LAUNCHER ?? '',
  mount: errnoOf('libc.mount(b"none", b"' + process.env.PROBE_MOUNT_TARGET + '", b"tmpfs", 0, None)'),
  ptrace: errnoOf('libc.ptrace(0, 0, None, None)'),
  bpf: errnoOf('libc.syscall(321, 0, None, 0)'),
  ioUring: errnoOf('libc.syscall(425, 1, None)'),
  unshare: errnoOf('libc.unshare(0x00020000)'),
  capSysAdminBounding: py('import ctypes\nprint(ctypes.CDLL(None).prctl(23, 21, 0, 0, 0))'),
  getpid: process.pid > 0,
  proc: existsSync('/proc/self'),
  home: existsSync('/home'),
  tmp: existsSync('/tmp') ? readdirSync('/tmp') : null,
  etc: existsSync('/etc/hostname'),
};
try { writeFileSync(process.env.PROBE_PKG + '/probe-write', 'x'); out.packageWrite = 'ok'; } catch (e) { out.packageWrite = e.code; }
const w = new Worker('const { parentPort } = require("node:worker_threads"); parentPort.postMessage(6 * 7);', { eval: true });
w.on('message', (m) => { out.worker = m; process.stdout.write(JSON.stringify(out) + '\n'); process.exit(0); });
`;
    let dir: string;

    function probeFile(): string {
      dir = mkdtempSync('/run/slw-probe-');
      chmodSync(dir, 0o755);
      const f = join(dir, 'probe.mjs');
      writeFileSync(f, PROBE);
      chmodSync(f, 0o644);
      return f;
    }
    afterEach(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
      // The seccomp-only probe (no sandbox) may write its marker into the checkout.
      rmSync(join(REPO, 'probe-write'), { force: true });
    });

    it('--enable-seccomp (as root, no sandbox): mount, ptrace, bpf, unshare get EPERM in a child; io_uring ENOSYS; Node and worker threads run', async () => {
      const probe = probeFile();
      const target = mkdtempSync('/run/slw-mnt-');
      try {
        // Root could mount here without the filter; run it in a private mount namespace anyway.
        const r = await run(['unshare', '--mount', '--propagation', 'private', LAUNCHER, REPO, process.execPath, probe, '--enable-seccomp', String(process.pid)], {
          env: { ...process.env, PROBE_MOUNT_TARGET: target, PROBE_PKG: REPO },
          timeoutMs: 30_000,
        });
        expect(r.code, r.stderr).toBe(0);
        const o = JSON.parse(r.stdout) as Record<string, unknown>;
        expect(o).toMatchObject({
          launcher: 'seccomp',
          mount: 'Operation not permitted',
          ptrace: 'Operation not permitted',
          bpf: 'Operation not permitted',
          unshare: 'Operation not permitted',
          ioUring: 'Function not implemented',
          getpid: true,
          worker: 42,
        });
      } finally {
        rmSync(target, { recursive: true, force: true });
      }
    });

    it('--enable-sandbox (rootless, in the target userns): only /etc, /run, read-only runtime; caps dropped; caller\'s mounts untouched', async () => {
      const ctr: Container = await lab().createContainer();
      const probe = probeFile();
      const before = readFileSync('/proc/self/mountinfo', 'utf8');
      const r = await run([...lab().unprivPrefix(), LAUNCHER, REPO, process.execPath, probe, '--enable-sandbox', '-c', String(ctr.pid)], {
        env: { ...lab().unprivEnv(), PROBE_MOUNT_TARGET: '/etc', PROBE_PKG: REPO },
        timeoutMs: 30_000,
      });
      expect(r.code, r.stderr).toBe(0);
      const o = JSON.parse(r.stdout) as Record<string, unknown>;
      // /tmp is an empty tmpfs, except for the way down to the package or node when they live
      // under /tmp themselves (a checkout in /tmp): the sandbox mounts them at their own paths.
      const underTmp = [...new Set([REPO, process.execPath].filter((p) => p.startsWith('/tmp/')).map((p) => p.split('/')[2]))];
      expect([...(o['tmp'] as string[])].sort()).toEqual(underTmp.sort());
      expect(o).toMatchObject({
        launcher: 'sandbox',
        proc: false,
        home: false,
        etc: true,
        worker: 42,
        capSysAdminBounding: '0',
      });
      expect(['EROFS', 'EACCES', 'EPERM']).toContain(o['packageWrite']);
      expect(o['mount']).toBe('Operation not permitted'); // no CAP_SYS_ADMIN left
      await sleep(100);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).toBe(before);
      expect(UNPRIV_UID).toBeGreaterThan(0);
    });
  });
});
