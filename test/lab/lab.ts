// The slipway test lab: a private "host" netns wired to a "world" netns full of test servers on
// documentation addresses, plus rootless "container" netns made by an unprivileged user, and a
// pluggable launcher for the network stack under test (slipway, slirp4netns or pasta).
//
// NETWORK SAFETY: nothing here touches this machine's real interfaces or resolver. The host netns
// only has lo and a veth into the world netns (its default route points there), and every DNS
// upstream is the world's dnsmasq on 203.0.113.53, which answers world.test and forwards nothing.
//
//   container netns (uid 65534's userns)      host netns slw-h-<id>                    world netns slw-w-<id>
//   tap0 10.0.2.100 ◄── stack (uid 65534) ──► veth 198.51.100.1/24 ◄──────────► veth 198.51.100.2/24
//                                             lo 127.0.0.1 (host-loopback srv)         lo 203.0.113.10 (http/udp echo/sink/source/iperf3)
//                                             default via 198.51.100.2                 lo 203.0.113.53 (dnsmasq)
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import {
  captureText,
  descendants,
  exited,
  isAlive,
  run,
  runOk,
  runSync,
  sleep,
  spawn,
  waitFor,
  which,
  type ChildProcess,
  type RunOptions,
  type RunResult,
} from './exec.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const UNPRIV_UID = 65534;

/** Addresses of the lab. All documentation ranges; nothing routable outside the lab. */
export const NET = {
  hostVeth: '198.51.100.1',
  worldVeth: '198.51.100.2',
  vethPrefix: 24,
  server: '203.0.113.10',
  dns: '203.0.113.53',
  worldPrefix: '203.0.113.0/24',
  // IPv6 (enabled with LabOptions.ipv6): veth 2001:db8:1::/64, servers 2001:db8:2::10 and ::53.
  hostVeth6: '2001:db8:1::1',
  worldVeth6: '2001:db8:1::2',
  server6: '2001:db8:2::10',
  dns6: '2001:db8:2::53',
  worldPrefix6: '2001:db8:2::/64',
  worldName: 'world.test',
} as const;

export const PORTS = { http: 80, udpEcho: 7, sink: 9000, source: 9001, iperf: 5201, echo: 7007, slowEcho: 7008 } as const;

/** Addresses a guest sees behind slirp4netns-compatible stacks (slipway, slirp4netns). */
export const GUEST = {
  gateway: '10.0.2.2',
  dns: '10.0.2.3',
  configured: '10.0.2.100',
  dhcpFirst: 15,
  dhcpLast: 30,
} as const;

const STD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// ---------------------------------------------------------------------------------------------
// Feature detection (used by tests to skip with a reason)

export type Support = { ok: true } | { ok: false; reason: string };

const BASE_TOOLS = ['ip', 'unshare', 'setpriv', 'nsenter'];

/** Can this machine run the lab at all? */
export function labSupport(): Support {
  if (process.platform !== 'linux') return { ok: false, reason: 'lab needs Linux' };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { ok: false, reason: 'lab needs root (creates network namespaces and veths)' };
  }
  const missing = BASE_TOOLS.filter((t) => !which(t));
  if (missing.length) return { ok: false, reason: `lab needs ${missing.join(', ')} (run scripts/test-deps.sh)` };
  if (!existsSync('/dev/net/tun')) return { ok: false, reason: 'lab needs /dev/net/tun' };
  return { ok: true };
}

/** Are these extra commands present? Returns a skip reason or undefined. */
export function missingTools(tools: string[]): string | undefined {
  const missing = tools.filter((t) => !which(t));
  return missing.length ? `missing tools: ${missing.join(', ')} (run scripts/test-deps.sh)` : undefined;
}

// ---------------------------------------------------------------------------------------------
// Stack launchers

export type StackKind = 'slipway' | 'slirp4netns' | 'pasta';

export function stackKindFromEnv(): StackKind {
  const v = (process.env.SLIPWAY_E2E_STACK ?? 'slipway').trim();
  if (v === 'slipway' || v === 'slirp4netns' || v === 'pasta') return v;
  throw new Error(`SLIPWAY_E2E_STACK must be slipway, slirp4netns or pasta (got ${v})`);
}

export function stackBinaryMissing(kind: StackKind): string | undefined {
  if (kind === 'slipway') {
    return existsSync(join(REPO, 'bin/slipway')) ? undefined : `bin/slipway not found in ${REPO} (not built yet?)`;
  }
  return which(kind === 'pasta' ? 'pasta' : 'slirp4netns') ? undefined : `${kind} is not installed`;
}

export interface StackOptions {
  /** Configure lo + tap inside the netns (default true). */
  configure?: boolean;
  mtu?: number;
  disableHostLoopback?: boolean;
  /** Pass an --exit-fd (fd 4) the test can close with Stack.closeExitFd(). */
  exitFd?: boolean;
  /** Extra CLI arguments, inserted before the PID. */
  extraArgs?: string[];
  /** slipway's DNS upstreams (default: the world DNS server's IPv4 address). */
  dnsUpstreams?: string[];
  /** Extra environment for the stack process (e.g. SLIPWAY_FAULTS). */
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
}

export interface StackAddresses {
  gateway: string;
  dns: string;
  guest: string;
}

export class Stack {
  readonly stdout: { text: () => string };
  readonly stderr: { text: () => string };
  readyText = '';
  private readonly exitP: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly kind: StackKind,
    readonly child: ChildProcess,
    readonly argv: string[],
    readonly addresses: StackAddresses,
  ) {
    this.stdout = captureText(child.stdout);
    this.stderr = captureText(child.stderr);
    this.exitP = exited(child);
    const readyPipe = child.stdio[3] as NodeJS.ReadableStream | null | undefined;
    readyPipe?.on('data', (b: Buffer) => (this.readyText += b.toString('utf8')));
    readyPipe?.on('error', () => {});
    (child.stdio[4] as NodeJS.WritableStream | null | undefined)?.on?.('error', () => {});
  }

  get pid(): number {
    return this.child.pid!;
  }

  alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && isAlive(this.pid);
  }

  /** Resolves when the stack exits. */
  exit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exitP;
  }

  /** Wait for exit with a deadline; returns undefined on timeout. */
  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    return Promise.race([this.exitP, sleep(timeoutMs).then(() => undefined)]);
  }

  /** Close our end of the --exit-fd pipe. */
  closeExitFd(): void {
    const s = this.child.stdio[4] as unknown as { destroy?: () => void; end?: () => void } | null;
    if (!s) throw new Error('stack was not started with exitFd: true');
    s.end?.();
    s.destroy?.();
  }

  descendants(): number[] {
    return descendants(this.pid);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
    if (!this.alive()) return;
    this.child.kill(signal);
    if (!(await this.waitExit(graceMs))) {
      this.child.kill('SIGKILL');
      await this.waitExit(2000);
    }
  }

  describe(): string {
    const st = this.alive() ? 'running' : `exited code=${this.child.exitCode} signal=${this.child.signalCode}`;
    return `${this.kind} (pid ${this.child.pid}, ${st}): ${this.argv.join(' ')}\n--- stderr ---\n${this.stderr.text().slice(-4000)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Containers

export class Container {
  constructor(
    readonly lab: Lab,
    readonly child: ChildProcess,
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  get netnsPath(): string {
    return `/proc/${this.pid}/ns/net`;
  }

  get usernsPath(): string {
    return `/proc/${this.pid}/ns/user`;
  }

  /** Run a command inside the container's netns (as root on the real host; fine for tools). */
  exec(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(this.inNetns(argv), { timeoutMs: 30_000, ...opts });
  }

  /** Like exec, but throws with the full output when the exit code is not 0. */
  execOk(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    return runOk(this.inNetns(argv), { timeoutMs: 30_000, ...opts });
  }

  private inNetns(argv: string[]): string[] {
    return ['nsenter', '-t', String(this.pid), '-n', ...argv];
  }

  /**
   * Like exec, but in a private mount namespace where /etc/resolv.conf says
   * "nameserver <dns>" (the stack's DNS forwarder), so libc name lookups go through the stack
   * and never to this machine's real resolver.
   */
  execResolving(dns: string, argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    const f = join(this.lab.tmp, `resolv-${dns.replace(/[^0-9a-f]/gi, '_')}.conf`);
    writeFileSync(f, `nameserver ${dns}\noptions timeout:2 attempts:2\n`);
    return run(
      [
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'f="$0"; p="$1"; shift; mount --bind "$f" /etc/resolv.conf && exec nsenter -t "$p" -n -- "$@"',
        f,
        String(this.pid),
        ...argv,
      ].map(String),
      { timeoutMs: 30_000, ...opts },
    );
  }

  /** Run one of the lab's TypeScript helper scripts inside the container netns. */
  node(script: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.exec([process.execPath, '--import', 'tsx', join(REPO, 'test/lab', script), ...args], {
      cwd: REPO,
      ...opts,
    });
  }

  alive(): boolean {
    return isAlive(this.pid);
  }
}

// ---------------------------------------------------------------------------------------------
// The lab

export interface LabOptions {
  /** Also wire IPv6 (2001:db8:1::/64 veth, 2001:db8:2::10 servers). Default false. */
  ipv6?: boolean;
  /** Start iperf3 -s in the world (default: only if iperf3 is installed). */
  iperf?: boolean;
  /** Start the world DNS server (default true). */
  dns?: boolean;
}

interface Tracked {
  child: ChildProcess;
  what: string;
}

export class Lab {
  readonly hostNs: string;
  readonly worldNs: string;
  readonly tmp: string;
  private readonly tracked: Tracked[] = [];
  private destroyed = false;
  readonly logs = new Map<string, { text: () => string }>();

  private constructor(
    readonly name: string,
    readonly id: string,
    readonly opts: LabOptions,
  ) {
    this.hostNs = `slw-h-${id}`;
    this.worldNs = `slw-w-${id}`;
    this.tmp = mkdtempSync(join(tmpdir(), `slw-lab-${id}-`));
    chmodSync(this.tmp, 0o755);
  }

  static async create(name: string, opts: LabOptions = {}): Promise<Lab> {
    const sup = labSupport();
    if (!sup.ok) throw new Error(`cannot build the lab: ${sup.reason}`);
    cleanStaleNamespaces();
    const id = `${process.pid}-${randomBytes(2).toString('hex')}`;
    const lab = new Lab(name, id, opts);
    try {
      await lab.build();
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  private async build(): Promise<void> {
    const H = this.hostNs;
    const W = this.worldNs;
    checkUnprivilegedAccess();
    ensureTunUsable();

    await runOk(['ip', 'netns', 'add', H]);
    await runOk(['ip', 'netns', 'add', W]);
    // resolv.conf seen by anything started with `ip netns exec H` (slirp4netns's DNS, slipway's default).
    mkdirSync(`/etc/netns/${H}`, { recursive: true });
    writeFileSync(`/etc/netns/${H}/resolv.conf`, `nameserver ${NET.dns}\n`);
    mkdirSync(`/etc/netns/${W}`, { recursive: true });
    writeFileSync(`/etc/netns/${W}/resolv.conf`, `nameserver ${NET.dns}\n`);

    const ipH = (...a: string[]): Promise<RunResult> => runOk(['ip', '-n', H, ...a]);
    const ipW = (...a: string[]): Promise<RunResult> => runOk(['ip', '-n', W, ...a]);
    await ipH('link', 'set', 'lo', 'up');
    await ipW('link', 'set', 'lo', 'up');
    // Created inside H so no name ever appears in the root netns.
    await ipH('link', 'add', 'veth-w', 'type', 'veth', 'peer', 'name', 'veth-h', 'netns', W);
    await ipH('addr', 'add', `${NET.hostVeth}/${NET.vethPrefix}`, 'dev', 'veth-w');
    await ipW('addr', 'add', `${NET.worldVeth}/${NET.vethPrefix}`, 'dev', 'veth-h');
    await ipH('link', 'set', 'veth-w', 'up');
    await ipW('link', 'set', 'veth-h', 'up');
    await ipW('addr', 'add', `${NET.server}/32`, 'dev', 'lo');
    await ipW('addr', 'add', `${NET.dns}/32`, 'dev', 'lo');
    await ipH('route', 'add', NET.worldPrefix, 'via', NET.worldVeth);
    await ipH('route', 'add', 'default', 'via', NET.worldVeth);
    if (this.opts.ipv6) {
      await ipH('addr', 'add', `${NET.hostVeth6}/64`, 'dev', 'veth-w', 'nodad');
      await ipW('addr', 'add', `${NET.worldVeth6}/64`, 'dev', 'veth-h', 'nodad');
      await ipW('addr', 'add', `${NET.server6}/128`, 'dev', 'lo', 'nodad');
      await ipW('addr', 'add', `${NET.dns6}/128`, 'dev', 'lo', 'nodad');
      await ipH('-6', 'route', 'add', NET.worldPrefix6, 'via', NET.worldVeth6);
      await ipH('-6', 'route', 'add', 'default', 'via', NET.worldVeth6);
    }
    // Unprivileged ICMP echo sockets in the host netns (per-netns sysctl).
    await runOk(['ip', 'netns', 'exec', H, 'sysctl', '-q', '-w', 'net.ipv4.ping_group_range=0 2147483647']);

    // World servers.
    const addrs = [NET.server, ...(this.opts.ipv6 ? [NET.server6] : [])];
    await this.startReadyDaemon(
      'world-servers',
      ['ip', 'netns', 'exec', W, process.execPath, '--import', 'tsx', join(REPO, 'test/lab/servers.ts'), 'world', ...addrs],
    );
    if (this.opts.dns !== false) {
      if (!which('dnsmasq')) throw new Error('dnsmasq (package dnsmasq-base) is needed for the world DNS server');
      const dnsArgs = [
        'ip', 'netns', 'exec', W, 'dnsmasq', '-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts',
        '--no-poll', '--pid-file=', '--user=root', '--group=root', '--log-facility=-', '--log-queries',
        `--address=/${NET.worldName}/${NET.server}`,
        ...(this.opts.ipv6 ? [`--address=/${NET.worldName}/${NET.server6}`] : []),
        `--listen-address=${NET.dns}`, ...(this.opts.ipv6 ? [`--listen-address=${NET.dns6}`] : []),
        '--bind-interfaces', '--port=53',
      ];
      this.spawnTracked('dnsmasq', dnsArgs);
      const ok = await waitFor(
        async () => (await run(['ip', 'netns', 'exec', W, 'ss', '-Hlun', `src ${NET.dns}:53`])).stdout.trim() !== '',
        5000,
      );
      if (!ok) throw new Error(`world dnsmasq did not start:\n${this.logs.get('dnsmasq')?.text()}`);
    }
    if (this.opts.iperf ?? !!which('iperf3')) {
      this.spawnTracked('iperf3', ['ip', 'netns', 'exec', W, 'iperf3', '-s', '-B', NET.server, '-p', String(PORTS.iperf)]);
      const ok = await waitFor(
        async () => (await run(['ip', 'netns', 'exec', W, 'ss', '-Hltn', `src ${NET.server}:${PORTS.iperf}`])).stdout.trim() !== '',
        5000,
      );
      if (!ok) throw new Error(`world iperf3 did not start:\n${this.logs.get('iperf3')?.text()}`);
    }
    // Sanity: the world answers from the host netns, and nothing else is reachable.
    await runOk(['ip', 'netns', 'exec', H, 'curl', '-sS', '--max-time', '5', `http://${NET.server}/`], { timeoutMs: 10_000 });
  }

  /** Spawn a long-lived process owned by the lab (killed in destroy()). */
  spawnTracked(what: string, argv: string[], extra: { env?: NodeJS.ProcessEnv; stdio?: ('pipe' | 'ignore')[] } = {}): ChildProcess {
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: REPO,
      env: extra.env ?? process.env,
      stdio: extra.stdio ?? ['ignore', 'pipe', 'pipe'],
    });
    child.on('error', () => {});
    const out = captureText(child.stdout);
    const err = captureText(child.stderr);
    this.logs.set(what, { text: () => `${out.text()}${err.text()}` });
    this.tracked.push({ child, what });
    return child;
  }

  private async startReadyDaemon(what: string, argv: string[], timeoutMs = 15_000): Promise<string> {
    const child = this.spawnTracked(what, argv);
    let buf = '';
    return new Promise<string>((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs} ms:\n${this.logs.get(what)?.text()}`)), timeoutMs);
      child.stdout!.on('data', (b: Buffer) => {
        buf += b.toString('utf8');
        const m = /^READY (.*)$/m.exec(buf);
        if (m) {
          clearTimeout(timer);
          resolvePromise(m[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${what} exited (${code}) before ready:\n${this.logs.get(what)?.text()}`));
      });
    });
  }

  /** argv prefix to run something as the unprivileged user inside the host netns. */
  unprivPrefix(): string[] {
    return [
      'ip', 'netns', 'exec', this.hostNs,
      'setpriv', `--reuid=${UNPRIV_UID}`, `--regid=${UNPRIV_UID}`, '--clear-groups', '--inh-caps=-all',
    ];
  }

  unprivEnv(): NodeJS.ProcessEnv {
    return {
      PATH: STD_PATH,
      HOME: '/tmp',
      LANG: 'C.UTF-8',
      ...(process.env.SLIPWAY_LOG_LEVEL ? { SLIPWAY_LOG_LEVEL: process.env.SLIPWAY_LOG_LEVEL } : {}),
    };
  }

  /** Run a command as uid 65534 in the host netns. */
  runUnpriv(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run([...this.unprivPrefix(), ...argv], { env: this.unprivEnv(), cwd: REPO, timeoutMs: 60_000, ...opts });
  }

  /** Run a command as root in the host netns. */
  hostExec(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', this.hostNs, ...argv], { timeoutMs: 30_000, ...opts });
  }

  worldExec(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', this.worldNs, ...argv], { timeoutMs: 30_000, ...opts });
  }

  /** An HTTP server on the host netns's loopback (for gateway → host loopback). Returns its port. */
  async startHostLoopbackServer(addr = '127.0.0.1', port = 0): Promise<number> {
    const info = await this.startReadyDaemon(`host-loopback-${addr}-${port}`, [
      'ip', 'netns', 'exec', this.hostNs, process.execPath, '--import', 'tsx',
      join(REPO, 'test/lab/servers.ts'), 'host-loopback', addr, String(port),
    ]);
    return (JSON.parse(info) as { port: number }).port;
  }

  /** A new directory tmp/name that the stack, run as UNPRIV_UID, can create files in (an API
   * socket, a capture file). */
  stackDir(name: string): string {
    const dir = join(this.tmp, name);
    mkdirSync(dir);
    chownSync(dir, UNPRIV_UID, UNPRIV_UID);
    return dir;
  }

  /** A fresh rootless container netns: userns+netns created by uid 65534 inside the host netns. */
  async createContainer(): Promise<Container> {
    const child = this.spawnTracked(
      `container-${this.tracked.length}`,
      [...this.unprivPrefix(), 'unshare', '--user', '--map-root-user', '--net', 'sleep', 'infinity'],
      { env: this.unprivEnv() },
    );
    const pid = child.pid;
    if (!pid) throw new Error('could not spawn the container process');
    const hostNsIno = statSync(`/run/netns/${this.hostNs}`).ino;
    // Wait until the pid has its own netns (unshare has run and exec'd sleep).
    const ok = await waitFor(() => {
      try {
        const ino = statSync(`/proc/${pid}/ns/net`).ino;
        return ino !== hostNsIno && readComm(pid) === 'sleep';
      } catch {
        return false;
      }
    }, 5000);
    if (!ok) throw new Error(`container did not start:\n${this.logs.get(`container-${this.tracked.length - 1}`)?.text()}`);
    return new Container(this, child);
  }

  /** Start a network stack for the container. Resolves once it reports ready. */
  async startStack(kind: StackKind, container: Container, opts: StackOptions = {}): Promise<Stack> {
    const configure = opts.configure ?? true;
    const mtu = opts.mtu ?? 65520;
    const pid = String(container.pid);
    let cmd: string[];
    let addresses: StackAddresses = { gateway: GUEST.gateway, dns: GUEST.dns, guest: GUEST.configured };
    const fds: string[] = ['--ready-fd', '3', ...(opts.exitFd ? ['--exit-fd', '4'] : [])];
    switch (kind) {
      case 'slipway': {
        const missing = stackBinaryMissing('slipway');
        if (missing) throw new Error(missing);
        cmd = [
          process.execPath, join(REPO, 'bin/slipway'),
          configure ? '--configure' : '--no-configure',
          '--mtu', String(mtu),
          ...(opts.dnsUpstreams ?? [NET.dns]).flatMap((u) => ['--dns-upstream', u]),
          ...fds,
          ...(opts.disableHostLoopback ? ['--disable-host-loopback'] : []),
          ...(opts.extraArgs ?? []),
          pid,
        ];
        break;
      }
      case 'slirp4netns':
        cmd = [
          'slirp4netns',
          ...(configure ? ['--configure'] : []),
          '--mtu', String(mtu),
          ...fds,
          ...(opts.disableHostLoopback ? ['--disable-host-loopback'] : []),
          ...(opts.extraArgs ?? []),
          pid, 'tap0',
        ];
        break;
      case 'pasta':
        // pasta copies the host's address and uses the host's gateway; no ready-fd, so we poll.
        cmd = [
          'pasta', '--config-net', '-f', '-q', '--mtu', String(mtu), '--no-map-gw',
          '-t', 'none', '-u', 'none', '-T', 'none', '-U', 'none',
          ...(opts.extraArgs ?? []),
          pid,
        ];
        addresses = { gateway: NET.worldVeth, dns: NET.dns, guest: NET.hostVeth };
        break;
    }
    const argv = [...this.unprivPrefix(), ...cmd];
    const child = this.spawnTracked(`stack-${kind}-${this.tracked.length}`, argv, {
      env: { ...this.unprivEnv(), ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe', kind === 'pasta' ? 'ignore' : 'pipe', opts.exitFd ? 'pipe' : 'ignore'],
    });
    const stack = new Stack(kind, child, argv, addresses);
    const timeoutMs = opts.readyTimeoutMs ?? 20_000;
    let ready: boolean;
    if (kind === 'pasta') {
      ready = await waitFor(async () => {
        if (!stack.alive()) return true;
        const r = await container.exec(['ip', '-4', 'route', 'show', 'default']);
        return r.stdout.includes('default');
      }, timeoutMs, 100);
      ready = ready && stack.alive();
    } else {
      ready = await waitFor(() => stack.readyText.length > 0 || !stack.alive(), timeoutMs);
      ready = ready && stack.readyText.length > 0;
    }
    if (!ready) {
      await sleep(100);
      const ex = stack.alive() ? 'still running, not ready' : `exited code=${child.exitCode} signal=${child.signalCode}`;
      await stack.stop('SIGKILL');
      throw new Error(`stack ${kind} did not become ready (${ex}; waited up to ${timeoutMs} ms)\n${stack.describe()}`);
    }
    return stack;
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const t of this.tracked) {
      if (t.child.exitCode === null && t.child.signalCode === null) t.child.kill('SIGTERM');
    }
    await waitFor(() => this.tracked.every((t) => t.child.exitCode !== null || t.child.signalCode !== null), 3000);
    for (const t of this.tracked) {
      if (t.child.exitCode === null && t.child.signalCode === null) t.child.kill('SIGKILL');
    }
    killNetnsPids(this.hostNs);
    killNetnsPids(this.worldNs);
    for (const ns of [this.hostNs, this.worldNs]) {
      runSync(['ip', 'netns', 'del', ns]);
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    rmSync(this.tmp, { recursive: true, force: true });
  }

  /** Text of every lab process's output, for failure messages. */
  dumpLogs(): string {
    return [...this.logs.entries()].map(([k, v]) => `--- ${k} ---\n${v.text().slice(-3000)}`).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

function readComm(pid: number): string | undefined {
  return runSync(['cat', `/proc/${pid}/comm`]).stdout.trim() || undefined;
}

function killNetnsPids(ns: string): void {
  const pids = runSync(['ip', 'netns', 'pids', ns]).stdout.split(/\s+/).filter(Boolean).map(Number);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/**
 * Remove lab namespaces left by crashed runs. Names embed the creating process's pid
 * (slw-[hw]-<pid>-<rand>); only namespaces whose creator is dead are removed, so labs of other
 * concurrent test runs survive.
 */
export function cleanStaleNamespaces(): string[] {
  const removed: string[] = [];
  const list = runSync(['ip', 'netns', 'list']).stdout;
  for (const line of list.split('\n')) {
    const name = line.trim().split(/\s+/)[0];
    if (!name) continue;
    const m = /^slw-[hw]-(\d+)-[0-9a-f]+$/.exec(name);
    if (!m) continue;
    if (isAlive(Number(m[1]))) continue;
    killNetnsPids(name);
    runSync(['ip', 'netns', 'del', name]);
    rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** The stack runs as uid 65534 from this checkout: it must be able to read it and run node. */
export function checkUnprivilegedAccess(): void {
  const r = runSync([
    'setpriv', `--reuid=${UNPRIV_UID}`, `--regid=${UNPRIV_UID}`, '--clear-groups',
    'sh', '-c', 'cd "$1" && test -r package.json && "$2" -e 0', 'sh', REPO, process.execPath,
  ]);
  if (r.code !== 0) {
    throw new Error(
      `uid ${UNPRIV_UID} cannot read the repository at ${REPO} or run ${process.execPath}; ` +
        `the lab runs the stack unprivileged. Make every directory down to the repo o+rx ` +
        `(e.g. chmod o+rx ${dirname(REPO)}) and node world-executable.\n${r.stderr}`,
    );
  }
}

/** Rootless stacks need /dev/net/tun usable by everyone (as on desktop distributions). */
export function ensureTunUsable(): void {
  const st = statSync('/dev/net/tun');
  if ((st.mode & 0o666) !== 0o666) {
    if (process.getuid?.() === 0) chmodSync('/dev/net/tun', 0o666);
    else throw new Error('/dev/net/tun is not mode 0666');
  }
}
