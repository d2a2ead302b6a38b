// Shared machinery for bench/compare.ts and bench/profile.ts: launching each stack on a fresh
// rootless container netns in the test lab (design.md: loopback and lab namespaces only), timing
// launch → ready, reading the stack's process tree (CPU, RSS), the container's TCP counters, and
// running iperf3 / the rr probe / the integrity client.
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Container, Lab, NET, REPO, Stack, UNPRIV_UID, type StackAddresses, type StackKind } from '../test/lab/lab.js';
import { cpuSeconds, processTree, run, runOk, sleep, statCpuSeconds, waitFor, type RunResult } from '../test/lab/exec.js';
import { apiCall } from '../test/lab/api.js';

export const BENCH_PORTS = {
  /** iperf3 in the host netns on 127.0.0.1 (reached through the stack's gateway address). */
  hostLoopIperf: 5202,
  /** iperf3 inside the container (target of the inbound forward). */
  containerIperf: 5203,
  /** Host port forwarded to containerIperf. */
  forwardHost: 5204,
  /** rr probe servers in the world. */
  rr: 9100,
  crr: 9101,
} as const;

// ---------------------------------------------------------------------------------------------
// /proc readers

// processTree and cpuSeconds live with the lab (the e2e tests read CPU time too).
export { cpuSeconds, processTree };

/** The machine's CPU time so far, and how much of it the hypervisor stole (/proc/stat, ticks). */
export function cpuSteal(): { total: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
}

/** CPU seconds (utime+stime) of each thread of `pid`, by thread name (comm): where the time goes. */
export function threadCpuSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const comm = Number(t) === pid ? 'main' : s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')).replace(/[0-9]+$/, '');
      out.set(comm, (out.get(comm) ?? 0) + statCpuSeconds(s));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Summed VmRSS and VmHWM (MB) over the pids. */
export function memoryMB(pids: number[]): { rss: number; hwm: number; anon: number } {
  let rss = 0;
  let hwm = 0;
  let anon = 0;
  for (const p of pids) {
    try {
      const s = readFileSync(`/proc/${p}/status`, 'utf8');
      rss += Number(/^VmRSS:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      hwm += Number(/^VmHWM:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      // Private memory: RSS less the file pages (program text shared by every instance).
      anon += Number(/^RssAnon:\s+(\d+)/m.exec(s)?.[1] ?? 0) + Number(/^RssShmem:\s+(\d+)/m.exec(s)?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return { rss: rss / 1024, hwm: hwm / 1024, anon: anon / 1024 };
}

/** TCP counters of the container netns (/proc/net is per netns of the reader). */
export async function tcpCounters(ctr: Container): Promise<Record<string, number>> {
  const [r, l] = await Promise.all([ctr.exec(['cat', '/proc/net/snmp', '/proc/net/netstat']), ctr.exec(['ip', '-j', '-s', 'link', 'show'])]);
  const out: Record<string, number> = {};
  // Frames the container sent that its tap queue dropped because the stack did not read them in
  // time (tx side of the container's interface), and the reverse.
  try {
    const links = JSON.parse(l.stdout) as { ifname: string; stats64?: { tx: { dropped: number }; rx: { dropped: number } } }[];
    out['link.txDropped'] = 0;
    out['link.rxDropped'] = 0;
    for (const k of links) {
      if (k.ifname === 'lo' || !k.stats64) continue;
      out['link.txDropped'] += k.stats64.tx.dropped;
      out['link.rxDropped'] += k.stats64.rx.dropped;
    }
  } catch {
    /* no ip -j */
  }
  const lines = r.stdout.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    const a = lines[i]!.split(/\s+/);
    const b = lines[i + 1]!.split(/\s+/);
    if (a[0] && a[0] === b[0] && a[0].endsWith(':') && !/^\d/.test(a[1] ?? '') && /^-?\d/.test(b[1] ?? '')) {
      const sect = a[0].slice(0, -1);
      for (let k = 1; k < a.length; k++) if (a[k]) out[`${sect}.${a[k]}`] = Number(b[k]);
      i++;
    }
  }
  return out;
}

export const RETX_KEYS = ['link.txDropped', 'link.rxDropped', 'Tcp.RetransSegs', 'TcpExt.TCPTimeouts', 'TcpExt.TCPLossProbes', 'TcpExt.TCPFastRetrans', 'TcpExt.TCPSackRecovery', 'TcpExt.TCPLostRetransmit'];

export function counterDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const k of RETX_KEYS) d[k] = (b[k] ?? 0) - (a[k] ?? 0);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Launching

export interface LaunchOptions {
  mtu: number;
  /** Set up the inbound forward forwardHost → containerIperf (slipway -p, pasta -t, slirp4netns API). */
  forward?: boolean;
  /** Extra environment for the stack. */
  env?: NodeJS.ProcessEnv;
  /** slipway only: node flags before bin/slipway (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
}

export interface Session {
  kind: StackKind;
  container: Container;
  stack: Stack;
  /** Spawn → ready-fd (slipway, slirp4netns) or → default route seen (pasta -f; coarse). */
  readyMs?: number;
  addresses: StackAddresses;
  /** Address the container uses to reach the host's loopback. */
  hostLoopAddr: string;
  forward: { ok: boolean; error?: string };
  /** Directory writable by the unprivileged stack (API socket, pid files, profiles). */
  dir: string;
}

/** A directory the unprivileged stack can write to. */
export function unprivDir(lab: Lab, prefix: string): string {
  const d = mkdtempSync(join(lab.tmp, prefix));
  chmodSync(d, 0o755);
  chownSync(d, UNPRIV_UID, UNPRIV_UID);
  return d;
}

function argvFor(lab: Lab, kind: StackKind, ctr: Container, o: LaunchOptions, dir: string, daemon = false): { cmd: string[]; addresses: StackAddresses; hostLoop: string } {
  const pid = String(ctr.pid);
  const mtu = String(o.mtu);
  switch (kind) {
    case 'slipway':
      return {
        cmd: [
          process.execPath, ...(o.nodeArgs ?? []), join(REPO, 'bin/slipway'), '--configure', '--mtu', mtu, '--dns-upstream', NET.dns,
          '--ready-fd', '3', ...(o.forward ? ['-p', `127.0.0.1:${BENCH_PORTS.forwardHost}:${BENCH_PORTS.containerIperf}`] : []), pid,
        ],
        addresses: { gateway: '10.0.2.2', dns: '10.0.2.3', guest: '10.0.2.100' },
        hostLoop: '10.0.2.2',
      };
    case 'slirp4netns':
      return {
        cmd: [
          'slirp4netns', '--configure', '--mtu', mtu, '--ready-fd', '3',
          ...(o.forward ? ['--api-socket', join(dir, 'api.sock')] : []), pid, 'tap0',
        ],
        addresses: { gateway: '10.0.2.2', dns: '10.0.2.3', guest: '10.0.2.100' },
        hostLoop: '10.0.2.2',
      };
    case 'pasta':
      // pasta copies the host netns's address (198.51.100.1) and gateway (198.51.100.2); the
      // gateway address is mapped to the host's loopback (no --no-map-gw here, unlike the e2e lab).
      return {
        cmd: [
          'pasta', '--config-net', ...(daemon ? ['-P', join(dir, 'pasta.pid')] : ['-f']), '-q', '--mtu', mtu,
          '-t', o.forward ? `${BENCH_PORTS.forwardHost}:${BENCH_PORTS.containerIperf}` : 'none',
          '-u', 'none', '-T', 'none', '-U', 'none', pid,
        ],
        addresses: { gateway: NET.worldVeth, dns: NET.dns, guest: NET.hostVeth },
        hostLoop: NET.worldVeth,
      };
  }
  void lab;
}

let launchSeq = 0;

/**
 * A fresh container netns for a benchmark, its ephemeral port range widened to 1024-65535 (same
 * for every stack). The container's TCP client closes first, so each connection of the CRR row
 * leaves a TIME-WAIT socket in the container for 60 s; with the default range (32768-60999, and
 * connect() trying one parity's ~14,100 ports before the other's) the container runs out of
 * cheap ports after ~14,000 connections and its connect() slows to ~160/s, whatever the stack
 * (measured 2026-12-02: 14,122-14,140 TIME-WAIT sockets in the container when it set in). A row of
 * 2 s at more than 7,000 connections/s, or several rows in one session, would measure that.
 */
export async function benchContainer(lab: Lab): Promise<Container> {
  const container = await lab.createContainer();
  await container.execOk(['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
  return container;
}

/** Launch `kind` on a fresh container netns and wait until it is ready. Throws when it is not. */
export async function launch(lab: Lab, kind: StackKind, o: LaunchOptions): Promise<Session> {
  const container = await benchContainer(lab);
  const dir = unprivDir(lab, `${kind}-`);
  const { cmd, addresses, hostLoop } = argvFor(lab, kind, container, o, dir);
  const argv = [...lab.unprivPrefix(), ...cmd];
  const t0 = performance.now();
  const child = lab.spawnTracked(`bench-${kind}-${launchSeq++}`, argv, {
    env: { ...lab.unprivEnv(), ...(o.env ?? {}) },
    stdio: ['ignore', 'pipe', 'pipe', kind === 'pasta' ? 'ignore' : 'pipe', 'ignore'],
  });
  const stack = new Stack(kind, child, argv, addresses);
  const timeoutMs = o.readyTimeoutMs ?? 20_000;
  let readyAt: number | undefined;
  if (kind === 'pasta') {
    const ok = await waitFor(async () => {
      if (!stack.alive()) return true;
      const r = await container.exec(['ip', '-4', 'route', 'show', 'default']);
      return r.stdout.includes('default');
    }, timeoutMs, 20);
    if (ok && stack.alive()) readyAt = performance.now();
  } else {
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    readyAt = await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      pipe.once('data', () => {
        clearTimeout(timer);
        resolve(performance.now());
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }
  if (readyAt === undefined) {
    await sleep(100);
    const why = stack.alive() ? 'still running, not ready' : `exited code=${child.exitCode} signal=${child.signalCode}`;
    const text = stack.stderr.text().trim().split('\n').slice(-6).join(' | ');
    await stack.stop('SIGKILL');
    container.child.kill('SIGKILL');
    const err = new Error(`${kind} did not become ready (${why}): ${text}`) as Error & { stderr?: string };
    err.stderr = stack.stderr.text();
    throw err;
  }
  const s: Session = {
    kind, container, stack, readyMs: readyAt - t0, addresses, hostLoopAddr: hostLoop,
    forward: { ok: false, error: o.forward ? undefined : 'not requested' }, dir,
  };
  if (o.forward) {
    if (kind === 'slirp4netns') {
      try {
        const resp = await apiCall(join(dir, 'api.sock'), {
          execute: 'add_hostfwd',
          arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: BENCH_PORTS.forwardHost, guest_port: BENCH_PORTS.containerIperf },
        }, { timeoutMs: 5000 });
        if (/"error"/.test(resp)) s.forward = { ok: false, error: `add_hostfwd: ${resp.trim()}` };
        else s.forward = { ok: true };
      } catch (e) {
        s.forward = { ok: false, error: `API socket: ${(e as Error).message}` };
      }
    } else {
      s.forward = { ok: true };
    }
  }
  return s;
}

export async function endSession(s: Session): Promise<void> {
  await s.stack.stop('SIGTERM', 5000);
  s.container.child.kill('SIGKILL');
}

/**
 * Launch → ready in ms, for `n` launches on fresh containers. slipway and slirp4netns: spawn →
 * byte on --ready-fd. pasta (no ready-fd): spawn → its foreground process exits after
 * daemonizing, which it does once the namespace is configured.
 */
export async function readyTimes(lab: Lab, kind: StackKind, mtu: number, n: number): Promise<{ samples: number[]; errors: string[] }> {
  const samples: number[] = [];
  const errors: string[] = [];
  for (let i = 0; i < n; i++) {
    if (kind !== 'pasta') {
      try {
        const s = await launch(lab, kind, { mtu });
        samples.push(s.readyMs!);
        await endSession(s);
      } catch (e) {
        errors.push((e as Error).message);
      }
      continue;
    }
    const ctr = await benchContainer(lab);
    const dir = unprivDir(lab, 'pasta-ready-');
    const { cmd } = argvFor(lab, kind, ctr, { mtu }, dir, true);
    const t0 = performance.now();
    const r = await run([...lab.unprivPrefix(), ...cmd], { env: lab.unprivEnv(), cwd: REPO, timeoutMs: 20_000 });
    const t1 = performance.now();
    const pidFile = join(dir, 'pasta.pid');
    const daemonPid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
    const route = await ctr.exec(['ip', '-4', 'route', 'show', 'default']);
    if (r.code === 0 && route.stdout.includes('default')) samples.push(t1 - t0);
    else errors.push(`pasta (daemon mode) code ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    if (daemonPid > 0) {
      try {
        process.kill(daemonPid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await waitFor(() => !existsSync(`/proc/${daemonPid}`), 2000, 20);
    }
    ctr.child.kill('SIGKILL');
  }
  return { samples, errors };
}

// ---------------------------------------------------------------------------------------------
// Measurements

export interface IperfResult {
  gbps?: number;
  bytes?: number;
  /** Sender-side retransmits reported by iperf3 (the sender's TCP). */
  senderRetransmits?: number;
  /** UDP (-u): datagrams lost, % (iperf3's end.sum.lost_percent). */
  lostPercent?: number;
  error?: string;
}

export function parseIperf(text: string): IperfResult {
  try {
    const j = JSON.parse(text) as {
      error?: string;
      end?: { sum_received?: { bits_per_second: number; bytes: number }; sum_sent?: { retransmits?: number }; sum?: { lost_percent?: number } };
    };
    if (j.error) return { error: j.error };
    const recv = j.end?.sum_received;
    if (!recv) return { error: 'no sum_received in iperf3 output' };
    return { gbps: recv.bits_per_second / 1e9, bytes: recv.bytes, senderRetransmits: j.end?.sum_sent?.retransmits, lostPercent: j.end?.sum?.lost_percent };
  } catch {
    return { error: `unparseable iperf3 output: ${text.trim().slice(0, 200)}` };
  }
}

export function iperfArgv(host: string, port: number, seconds: number, reverse: boolean): string[] {
  return ['iperf3', '-c', host, '-p', String(port), '-t', String(seconds), '-J', '--connect-timeout', '5000', ...(reverse ? ['-R'] : [])];
}

/** Unthrottled UDP iperf3 (-b 0) with `len`-byte datagrams: what bench:compare's UDP rows and ab-rr's run. */
export function udpIperfArgv(host: string, port: number, seconds: number, reverse: boolean, len = 1400): string[] {
  return [...iperfArgv(host, port, seconds, reverse), '-u', '-b', '0', '-l', String(len)];
}

/** A UDP iperf3 run (parseIperf's reading): what arrived at the receiver, in Mbit/s, and the loss iperf3 counted. */
export function parseUdpIperf(text: string): { mbps?: number; bytes?: number; lostPercent?: number; error?: string } {
  const r = parseIperf(text);
  return r.error !== undefined ? { error: r.error } : { mbps: r.gbps! * 1000, bytes: r.bytes, lostPercent: r.lostPercent };
}

export interface LoadRow extends IperfResult {
  cpuSeconds?: number;
  cpuPerGB?: number;
  /** Container TCP counter deltas over the row. */
  container?: Record<string, number>;
  /** `ss -tin` in the container halfway through. */
  ss?: string;
  rssMidMB?: number;
}

/**
 * One iperf3 transfer with the stack's CPU time, the container's TCP counters and a mid-run
 * `ss -ti` snapshot around it. `where` says which netns runs the client.
 */
export async function loadRow(
  s: Session, where: 'container' | 'host', host: string, port: number, seconds: number, reverse: boolean,
): Promise<LoadRow> {
  const lab = s.container.lab;
  const exec = (argv: string[]): Promise<RunResult> =>
    where === 'container' ? s.container.exec(argv, { timeoutMs: (seconds + 40) * 1000 }) : lab.hostExec(argv, { timeoutMs: (seconds + 40) * 1000 });
  const c0 = await tcpCounters(s.container);
  const cpu0 = cpuSeconds(processTree(s.stack.pid));
  let ss = '';
  let rssMid = 0;
  const probe = sleep((seconds * 1000) / 2).then(async () => {
    rssMid = memoryMB(processTree(s.stack.pid)).rss;
    const r = await s.container.exec(['ss', '-tin']);
    ss = r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .slice(0, 12)
      .join('\n')
      .slice(0, 2000);
  });
  const r = await exec(iperfArgv(host, port, seconds, reverse));
  await probe;
  const cpu1 = cpuSeconds(processTree(s.stack.pid));
  const c1 = await tcpCounters(s.container);
  const res: LoadRow = parseIperf(r.stdout);
  if (res.error && r.stderr.trim()) res.error += ` (${r.stderr.trim().slice(0, 200)})`;
  res.cpuSeconds = cpu1 - cpu0;
  if (res.bytes) res.cpuPerGB = res.cpuSeconds / (res.bytes / 1e9);
  res.container = counterDelta(c0, c1);
  res.ss = ss;
  res.rssMidMB = rssMid;
  return res;
}

/** An iperf3 server owned by the lab, in the container netns; resolves once it listens. */
export async function containerIperfServer(container: Container): Promise<() => void> {
  const child = container.lab.spawnTracked(`iperf3-ctr-${container.pid}`, [
    'nsenter', '-t', String(container.pid), '-n', 'iperf3', '-s', '-p', String(BENCH_PORTS.containerIperf),
  ]);
  const ok = await waitFor(async () => (await container.exec(['ss', '-Hltn', `sport = :${BENCH_PORTS.containerIperf}`])).stdout.trim() !== '', 5000);
  if (!ok) throw new Error('iperf3 server in the container did not start');
  return () => child.kill('SIGKILL');
}

/** Lab-wide servers the bench needs beyond the lab's own: host-loopback iperf3, rr probes. */
export async function startBenchServers(lab: Lab, rrBin: string): Promise<void> {
  lab.spawnTracked('iperf3-hostlo', ['ip', 'netns', 'exec', lab.hostNs, 'iperf3', '-s', '-B', '127.0.0.1', '-p', String(BENCH_PORTS.hostLoopIperf)]);
  lab.spawnTracked('rr-server', ['ip', 'netns', 'exec', lab.worldNs, rrBin, 'server-rr', NET.server, String(BENCH_PORTS.rr)]);
  lab.spawnTracked('crr-server', ['ip', 'netns', 'exec', lab.worldNs, rrBin, 'server-crr', NET.server, String(BENCH_PORTS.crr)]);
  const ok = await waitFor(async () => {
    const h = await lab.hostExec(['ss', '-Hltn', `sport = :${BENCH_PORTS.hostLoopIperf}`]);
    const w = await lab.worldExec(['ss', '-Hltn', `( sport = :${BENCH_PORTS.rr} or sport = :${BENCH_PORTS.crr} )`]);
    return h.stdout.trim() !== '' && w.stdout.trim().split('\n').length >= 2;
  }, 5000);
  if (!ok) throw new Error(`bench servers did not start:\n${lab.dumpLogs()}`);
}

/** Compile bench/rr.c into the lab's temp dir. */
export async function buildRr(lab: Lab): Promise<string> {
  const out = join(lab.tmp, 'rr');
  await runOk(['cc', '-O2', '-o', out, join(REPO, 'bench/rr.c')]);
  chmodSync(out, 0o755);
  return out;
}

export function median(xs: number[]): number | undefined {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1]! + v[m]!) / 2;
}
