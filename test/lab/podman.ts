// Rootless Podman in the lab: Debian's podman 4.3 + runc, run as an unprivileged user with
// /etc/subuid + /etc/subgid ranges, INSIDE the lab's host netns (nsenter --net, so /sys and its
// cgroup mounts stay as they are), with --network-cmd-path pointing at bin/slipway-slirp4netns.
//
// NETWORK SAFETY: Podman and everything it starts (slipway, rootlessport) live in the lab's host
// netns, whose only way out is the veth into the world netns. No registry is contacted: the root
// filesystem is a local directory (--rootfs) holding busybox. The container's resolver is
// 10.0.2.3 (--dns), which slipway forwards to the world's dnsmasq given in SLIPWAY_DNS_UPSTREAM.
import { appendFileSync, chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run, runSync, which, type RunOptions, type RunResult } from './exec.js';
import { NET, REPO, type Lab } from './lab.js';

export const PODMAN_USER = 'slwpod';
const STD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const SLIPWAY_S4N = join(REPO, 'bin/slipway-slirp4netns');

/** Why rootless Podman cannot run here (undefined if it can). */
export function podmanMissing(): string | undefined {
  const missing = ['podman', 'runc', 'newuidmap', 'newgidmap', 'busybox'].filter((t) => !which(t));
  if (missing.length) return `Podman scenarios need ${missing.join(', ')} (apt-get install podman runc uidmap busybox-static; scripts/test-deps.sh installs them)`;
  if (!existsSync(join(REPO, 'build/Release/slipway-launcher'))) return 'build/Release/slipway-launcher not built (npm install)';
  return undefined;
}

/** `podman --version` text. */
export function podmanVersion(): string {
  return runSync(['podman', '--version']).stdout.trim();
}

/** Make sure the test user exists with subordinate id ranges (idempotent). */
export function ensurePodmanUser(): { uid: number; gid: number } {
  if (runSync(['id', '-u', PODMAN_USER]).code !== 0) {
    const r = runSync(['useradd', '--create-home', '--shell', '/bin/sh', PODMAN_USER]);
    if (r.code !== 0) throw new Error(`useradd ${PODMAN_USER} failed: ${r.stderr}`);
  }
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    const text = existsSync(f) ? readFileSync(f, 'utf8') : '';
    if (!text.split('\n').some((l) => l.startsWith(`${PODMAN_USER}:`))) appendFileSync(f, `${PODMAN_USER}:300000:65536\n`);
  }
  const uid = Number(runSync(['id', '-u', PODMAN_USER]).stdout.trim());
  const gid = Number(runSync(['id', '-g', PODMAN_USER]).stdout.trim());
  return { uid, gid };
}

/** Shared libraries of a dynamic executable (empty for a static one). */
function sharedLibs(exe: string): string[] {
  const r = runSync(['ldd', exe]);
  if (r.code !== 0) return [];
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

/** A busybox root filesystem owned by the Podman user (static busybox, or busybox + its libs). */
export function buildRootfs(dir: string, owner: { uid: number; gid: number }): string {
  const busybox = which('busybox')!;
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run', 'www']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(busybox, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  for (const lib of sharedLibs(busybox)) {
    mkdirSync(join(dir, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(dir, lib));
  }
  for (const c of ['sh', 'ip', 'wget', 'nslookup', 'ping', 'ping6', 'sleep', 'cat', 'httpd', 'nc', 'echo']) symlinkSync('busybox', join(dir, 'bin', c));
  for (const f of ['resolv.conf', 'hosts', 'hostname']) writeFileSync(join(dir, 'etc', f), '');
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\n');
  writeFileSync(join(dir, 'www/index.html'), 'hello from the podman container\n');
  chownTree(dir, owner);
  return dir;
}

function chownTree(dir: string, o: { uid: number; gid: number }): void {
  runSync(['chown', '-R', '-h', `${o.uid}:${o.gid}`, dir]);
}

/** A rootless Podman set-up for one lab: private storage, runtime dir and root filesystem. */
export class LabPodman {
  readonly base: string;
  readonly rootfs: string;
  /** XDG_RUNTIME_DIR, under /run as /run/user/UID is: Podman puts the API socket there, which
   * must be short (a UNIX socket path has at most 107 bytes) and visible inside the
   * --enable-sandbox mount namespace (only /etc and /run are, as with slirp4netns). */
  readonly runtimeDir: string;
  constructor(
    readonly lab: Lab,
    readonly owner: { uid: number; gid: number },
  ) {
    this.base = join(lab.tmp, 'podman');
    for (const d of ['home', 'storage', 'runroot']) mkdirSync(join(this.base, d), { recursive: true });
    this.runtimeDir = mkdtempSync('/run/slwp-');
    this.rootfs = buildRootfs(join(this.base, 'rootfs'), owner);
    chownTree(this.base, owner);
    chownTree(this.runtimeDir, owner);
    chmodSync(this.runtimeDir, 0o700);
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: STD_PATH,
      HOME: join(this.base, 'home'),
      XDG_RUNTIME_DIR: this.runtimeDir,
      LANG: 'C.UTF-8',
      SLIPWAY_DNS_UPSTREAM: NET.dns,
      ...extra,
    };
  }

  /** Run `podman ARGS` as the Podman user inside the lab's host netns. */
  podman(args: string[], opts: RunOptions & { extraEnv?: Record<string, string> } = {}): Promise<RunResult> {
    const env = this.env(opts.extraEnv);
    const argv = [
      'nsenter', `--net=/run/netns/${this.lab.hostNs}`,
      'setpriv', `--reuid=${this.owner.uid}`, `--regid=${this.owner.gid}`, '--init-groups',
      'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      'podman',
      '--cgroup-manager=cgroupfs', '--events-backend=file', '--runtime=runc', '--storage-driver=vfs',
      '--root', join(this.base, 'storage'), '--runroot', join(this.base, 'runroot'),
      `--network-cmd-path=${SLIPWAY_S4N}`,
      ...args,
    ];
    return run(argv, { timeoutMs: 60_000, cwd: this.base, ...opts });
  }

  /** `podman run --rm` with the lab rootfs and 10.0.2.3 as resolver. */
  runContainer(network: string, cmd: string, extra: string[] = [], opts: RunOptions & { extraEnv?: Record<string, string> } = {}): Promise<RunResult> {
    return this.podman(['run', '--rm', '--dns', '10.0.2.3', '--network', network, ...extra, '--rootfs', this.rootfs, '/bin/sh', '-c', cmd], opts);
  }

  /** Processes of the Podman user that are slipway (front end, broker, agent). */
  slipwayProcesses(): string[] {
    const out: string[] = [];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const status = readFileSync(`/proc/${d}/status`, 'utf8');
        const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
        if (uid !== this.owner.uid) continue;
        const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ');
        const comm = readFileSync(`/proc/${d}/comm`, 'utf8').trim();
        if (/slirp4netns\.js|slipway/.test(cmd) || comm.startsWith('slipway')) out.push(`${d}:${comm}:${cmd.slice(0, 120)}`);
      } catch {
        /* raced */
      }
    }
    return out;
  }

  /** Kill everything the Podman user left running in the lab (pause process, conmon, containers). */
  cleanup(): void {
    const pids = runSync(['ps', '-u', String(this.owner.uid), '-o', 'pid=']).stdout.split(/\s+/).filter(Boolean).map(Number);
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(this.runtimeDir, { recursive: true, force: true });
  }
}
