// A/B of slipway builds on the RR and connection-rate rows (bench/rr.c), alternating builds
// within one run so a noisy shared machine loads both alike. Besides the client's own result it
// reads the stack's CPU time (utime+stime of its process tree, /proc) over each measurement, so
// CPU µs per transaction / per connection is comparable even when wall time is not.
//
// Row `pause` waits 5 s without traffic (so serve.ts's idle trimmer runs before the next row).
// Each build's launch → ready (ms from spawn to the ready-fd byte; for the peers as bench:compare
// measures it) is reported as ready_ms.
// Also per op: frames the stack wrote to / read from the guest (tap0 counters in the container)
// and the stack's voluntary context switches (sleeps); rows `down`/`up` are iperf3 to the world
// (Gbit/s, stack CPU s/GB, frames to the guest per MB), `down_loop`/`up_loop` the same to the host's
// loopback iperf3 server through the gateway address; `fwd_in`/`fwd_out` are iperf3 through
// the inbound forward (-p 127.0.0.1:PORT → an iperf3 server in the container) and its reverse;
// `udp_up`/`udp_down` are bench:compare's UDP rows (Mbit/s received, stack CPU s/GB, loss %, sleeps per MB).
//
//   npx tsx bench/ab-rr.ts --build A=/path/to/checkout --build B=/other/checkout[@ENV=VALUE...] \
//     [--build C=DIR@NODE_ARGS='--flag --other'] (node flags for that build only; most V8 flags make
//     V8 reject the bundle's code cache, so start-up compiles everything in that build alone)
//     [--build D=DIR@ARGS='--busy-poll 0'] (slipway options for that build only)
//     [--rounds 5] [--seconds 2] [--mtu 65520] [--rows rr,crr,down,up] [--env NAME=VALUE]
//
// Each build directory is a full checkout with `npm run build` done (bin/, dist/, build/Release),
// e.g. `git worktree add --detach /tmp/slw/base HEAD`, a node_modules symlink, `npm run build`.
// `--peers slirp4netns,pasta` runs the peers in the same alternation (launched as bench:compare
// launches them), for CPU per transaction side by side; `--node-args '--trace-gc'` passes node
// flags to the slipway builds. Environment: AB_THREADS=1 prints each row's CPU per op by thread,
// AB_STDERR=PREFIX writes each stack's output to PREFIX-<build>-<round>.log, AB_SETTLE_MS=N waits N ms
// after the rows before reading rss_mb (serve.ts's idle trimmer returns memory after 2-4 s of quiet).
// Rounds alternate the order of the builds; the summary prints medians and every sample.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Container, Lab, NET, PORTS, Stack, type StackKind } from '../test/lab/lab.js';
import {
  BENCH_PORTS, benchContainer, buildRr, launch, containerIperfServer, cpuSeconds, iperfArgv, median, memoryMB, parseIperf, cpuSteal, processTree,
  startBenchServers, threadCpuSeconds, udpIperfArgv,
} from './harness.js';
import { sleep } from '../test/lab/exec.js';

const { values: args } = parseArgs({
  options: {
    build: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    mtu: { type: 'string', default: '65520' },
    rows: { type: 'string', default: 'rr,crr' },
    env: { type: 'string', multiple: true },
    peers: { type: 'string', default: '' },
    /** node flags for the slipway builds, space-separated (e.g. --trace-gc, which NODE_OPTIONS refuses). */
    'node-args': { type: 'string', default: '' },
  },
  strict: true,
});
/** Node flags given as one string ('--a --b'). */
const flagWords = (s: string): string[] => s.split(' ').filter(Boolean);
const NODE_ARGS = flagWords(args['node-args']!);
/** Row `pause`: this long with no traffic (serve.ts's idle trimmer runs after 2-4 s of quiet). */
const PAUSE_MS = 5000;
// NAME=DIR[@ENV=VALUE...]: the same checkout may run as several builds with different settings.
const builds = (args.build ?? []).map((b) => {
  const i = b.indexOf('=');
  const [dir, ...envs] = b.slice(i + 1).split('@');
  const { NODE_ARGS: nodeArgs = '', ARGS: cliArgs = '', ...env } = Object.fromEntries(envs.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  return { name: b.slice(0, i), dir, env, nodeArgs: flagWords(nodeArgs), cliArgs: flagWords(cliArgs), peer: undefined as StackKind | undefined };
});
// --peers slirp4netns,pasta: the peers run in the same alternation, launched as bench:compare does.
for (const p of (args.peers ?? '').split(',').filter(Boolean)) {
  if (p !== 'slirp4netns' && p !== 'pasta') throw new Error(`--peers: unknown stack '${p}' (slirp4netns, pasta)`);
  builds.push({ name: p, dir: '', env: {}, nodeArgs: [], cliArgs: [], peer: p });
}
if (builds.length === 0) throw new Error('--build NAME=DIR or --peers (one or more)');
const ROUNDS = Number(args.rounds);
const SETTLE_MS = Number(process.env.AB_SETTLE_MS ?? 0);
const SECONDS = Number(args.seconds);
const MTU = args.mtu!;
const ROWS = args.rows!.split(',');
const FWD = ROWS.some((r) => r.startsWith('fwd'));
const extraEnv = Object.fromEntries((args.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));

function parseJsonLine(text: string): Record<string, number> | undefined {
  const line = text.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as Record<string, number>) : undefined;
}

function wakeups(pid: number): number {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return n;
}

function taskCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

async function tapPackets(c: Container): Promise<{ rx: number; tx: number }> {
  const r = await c.exec(['cat', '/proc/net/dev']);
  // tap0 (slipway, slirp4netns) or the host interface's name (pasta): the one that is not lo.
  const f = (/^\s*(?!lo:)[\w.@-]+:(.*)$/m.exec(r.stdout.split('\n').slice(2).join('\n'))?.[1] ?? '').trim().split(/\s+/).map(Number);
  return { rx: f[1] ?? NaN, tx: f[9] ?? NaN };
}

async function main(): Promise<void> {
  const lab = await Lab.create('abrr', { iperf: ROWS.some((r) => r === 'down' || r === 'up' || r.startsWith('fwd') || r.startsWith('udp')) });
  const results = new Map<string, Record<string, number[]>>();
  try {
    const rrBin = await buildRr(lab);
    await startBenchServers(lab, rrBin);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? builds : [...builds].reverse();
      for (const b of order) {
        let container: Container;
        let stack: Stack;
        let hostLoop = '10.0.2.2';
        let readyMs: number | undefined;
        if (b.peer) {
          const s = await launch(lab, b.peer, { mtu: Number(MTU), forward: FWD, env: extraEnv });
          if (FWD && !s.forward.ok) throw new Error(`${b.name}: forward: ${s.forward.error}`);
          ({ container, stack, hostLoopAddr: hostLoop, readyMs } = s);
        } else {
          container = await benchContainer(lab);
          const argv = [
            ...lab.unprivPrefix(), process.execPath, ...NODE_ARGS, ...b.nodeArgs, join(b.dir, 'bin/slipway'), '--configure', '--mtu', MTU,
            '--dns-upstream', NET.dns, '--ready-fd', '3', ...b.cliArgs,
            ...(FWD ? ['-p', `127.0.0.1:${BENCH_PORTS.forwardHost}:${BENCH_PORTS.containerIperf}`] : []), String(container.pid),
          ];
          const t0 = performance.now();
          const child = lab.spawnTracked(`ab-${b.name}-${round}`, argv, { env: { ...lab.unprivEnv(), ...extraEnv, ...b.env }, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
          stack = new Stack('slipway', child, argv, { gateway: '10.0.2.2', dns: '10.0.2.3', guest: '10.0.2.100' });
          const st = stack;
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`${b.name}: not ready: ${st.stderr.text()}`)), 20_000);
            (child.stdio[3] as NodeJS.ReadableStream).once('data', () => {
              clearTimeout(t);
              readyMs = performance.now() - t0;
              resolve();
            });
          });
        }
        await sleep(200);
        const r = results.get(b.name) ?? {};
        results.set(b.name, r);
        const add = (k: string, v: number): void => {
          (r[k] ??= []).push(v);
        };
        if (readyMs !== undefined) add('ready_ms', readyMs);
        const tree = processTree(stack.pid);
        // The Node process of the tree (the launch wrappers exec or wait): the one with most threads.
        const nodePid = tree.reduce((best, p) => (taskCount(p) > taskCount(best) ? p : best), stack.pid);
        const steal0 = cpuSteal();
        /** One iperf3 run: its Gbit/s and the stack's CPU s/GB recorded; the bytes moved, or undefined (reported). */
        // One iperf3 run: the receiver's rate (Gbit/s; UDP rows Mbit/s and loss %) and the stack's CPU per GB.
        const iperfRow = async (row: string, run: () => Promise<{ stdout: string }>, udp = false): Promise<number | undefined> => {
          const c0 = cpuSeconds(tree);
          const out = await run();
          const c1 = cpuSeconds(tree);
          const ip = parseIperf(out.stdout);
          if (!ip.bytes) {
            process.stderr.write(`${b.name} ${row}: ${ip.error ?? 'nothing received'}\n`);
            return undefined;
          }
          if (udp) add(`${row}_mbps`, ip.gbps! * 1000);
          else add(`${row}_gbps`, ip.gbps!);
          add(`${row}_cpu_s_per_GB`, (c1 - c0) / (ip.bytes / 1e9));
          if (udp) add(`${row}_lost_pct`, ip.lostPercent ?? NaN);
          return ip.bytes;
        };
        const stopIperf = FWD ? await containerIperfServer(container) : undefined;
        for (const row of ROWS) {
          if (row === 'pause') {
            await sleep(PAUSE_MS);
            continue;
          }
          if (row === 'fwd_in' || row === 'fwd_out') {
            await iperfRow(row, () => lab.hostExec(iperfArgv('127.0.0.1', BENCH_PORTS.forwardHost, SECONDS, row === 'fwd_out'), { timeoutMs: (SECONDS + 30) * 1000 }));
            continue;
          }
          if (row === 'udp_up' || row === 'udp_down') {
            // bench:compare's UDP rows: unthrottled 1400-byte datagrams to / from the world server.
            const w0 = wakeups(stack.pid);
            const bytes = await iperfRow(row, () => container.exec(udpIperfArgv(NET.server, PORTS.iperf, SECONDS, row === 'udp_down'), { timeoutMs: (SECONDS + 40) * 1000 }), true);
            const w1 = wakeups(stack.pid);
            if (bytes !== undefined) add(`${row}_sleeps_per_MB`, (w1 - w0) / (bytes / 1e6));
            continue;
          }
          if (row === 'down' || row === 'up' || row === 'down_loop' || row === 'up_loop') {
            const f0 = await tapPackets(container);
            const t0 = threadCpuSeconds(nodePid);
            // _loop: the host's loopback iperf3 server through the gateway address (pasta maps its own).
            const [host, port] = row.endsWith('_loop') ? [hostLoop, BENCH_PORTS.hostLoopIperf] : [NET.server, PORTS.iperf];
            const bytes = await iperfRow(row, () => container.exec(iperfArgv(host, port, SECONDS, row.startsWith('down')), { timeoutMs: (SECONDS + 30) * 1000 }));
            const t1 = threadCpuSeconds(nodePid);
            const f1 = await tapPackets(container);
            if (bytes === undefined) continue;
            add(`${row}_frames_to_guest_per_MB`, (f1.rx - f0.rx) / (bytes / 1e6));
            // The main thread (event loop) apart from Node's helper threads (GC, libuv pool).
            const gb = bytes / 1e9;
            let others = 0;
            for (const [name, sec] of t1) if (name !== 'main') others += sec - (t0.get(name) ?? 0);
            add(`${row}_main_cpu_s_per_GB`, ((t1.get('main') ?? 0) - (t0.get('main') ?? 0)) / gb);
            add(`${row}_helper_threads_cpu_s_per_GB`, others / gb);
            continue;
          }
          const port = row === 'rr' ? BENCH_PORTS.rr : BENCH_PORTS.crr;
          const f0 = await tapPackets(container);
          const w0 = wakeups(stack.pid);
          const c0 = cpuSeconds(tree);
          const t0 = threadCpuSeconds(nodePid);
          const out = await container.exec([rrBin, `client-${row}`, NET.server, String(port), String(SECONDS)], { timeoutMs: 60_000 });
          const c1 = cpuSeconds(tree);
          const t1 = threadCpuSeconds(nodePid);
          const w1 = wakeups(stack.pid);
          const f1 = await tapPackets(container);
          const j = parseJsonLine(out.stdout);
          if (!j) {
            process.stderr.write(`${b.name} ${row}: ${out.stderr}\n`);
            continue;
          }
          const n = row === 'rr' ? j.transactions! : j.connections!;
          add(row === 'rr' ? 'rr_us' : 'crr_per_s', row === 'rr' ? j.mean_us! : j.per_second!);
          add(`${row}_cpu_us`, ((c1 - c0) * 1e6) / n);
          // The main thread alone (slipway's event loop; a peer's only thread).
          add(`${row}_main_cpu_us`, (((t1.get('main') ?? 0) - (t0.get('main') ?? 0)) * 1e6) / n);
          if (process.env.AB_THREADS) process.stderr.write(`${b.name} ${row} threads µs/op: ${[...t1].map(([k, v]) => `${k}=${(((v - (t0.get(k) ?? 0)) * 1e6) / n).toFixed(1)}`).join(' ')}; tree ${tree.join(',')}\n`);
          // Frames the stack wrote to the guest (tap0 rx in the container) and read from it, per op.
          add(`${row}_frames_to_guest`, (f1.rx - f0.rx) / n);
          add(`${row}_frames_from_guest`, (f1.tx - f0.tx) / n);
          // Voluntary context switches of the stack's process (sleeps in epoll_wait) per op.
          add(`${row}_sleeps`, (w1 - w0) / n);
          if (row === 'crr' && j.errors) add('crr_errors', j.errors);
          // TIME-WAIT sockets the container holds after the row (its client closed first): ~32,000 of
          // them in 60 s use up one parity of the port range and the next connections crawl.
          if (row === 'crr') add('crr_container_time_wait', (await container.exec(['ss', '-Htan', 'state', 'time-wait'])).stdout.split('\n').filter(Boolean).length);
        }
        if (SETTLE_MS > 0) await sleep(SETTLE_MS);
        const mem = memoryMB(tree);
        add('rss_mb', mem.rss);
        add('rss_peak_mb', mem.hwm);
        // CPU time the hypervisor took from this VM during the rows: high = a noisy round.
        const steal1 = cpuSteal();
        add('steal_pct', (100 * (steal1.steal - steal0.steal)) / Math.max(1, steal1.total - steal0.total));
        stopIperf?.();
        await stack.stop('SIGTERM', 5000);
        if (process.env.AB_STDERR) writeFileSync(`${process.env.AB_STDERR}-${b.name}-${round}.log`, stack.stdout.text() + stack.stderr.text());
        container.child.kill('SIGKILL');
        process.stderr.write(`round ${round + 1} ${b.name}: ${JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.at(-1)])))}\n`);
      }
    }
  } finally {
    await lab.destroy();
  }
  for (const [name, r] of results) {
    const line = Object.entries(r).map(([k, v]) => `${k} ${median(v)!.toFixed(k.includes('per_s') ? 0 : k.includes('frames') || k.includes('sleeps') || k.includes('GB') || k.includes('gbps') ? 2 : 1)} [${v.map((x) => x.toFixed(k.includes('frames') || k.includes('sleeps') || k.includes('GB') || k.includes('gbps') ? 2 : 0)).join(' ')}]`);
    console.log(`${name}: ${line.join('; ')}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
