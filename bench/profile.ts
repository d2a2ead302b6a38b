// Profile slipway on the iperf3 paths, in the lab: for each MTU and each path (upload → world,
// download ← world), a fresh slipway runs with `node --cpu-prof` (and --perf-basic-prof, so
// `perf record` of the same process resolves JIT frames), one iperf3 transfer runs, slipway is
// stopped with SIGTERM (which writes the .cpuprofile), and the top functions by self time are
// printed (bench/cpuprofile.ts). Raw files stay in bench/results/profile-<date>/.
//
// --path rr / crr profile the request/response and connection-rate probes (bench/rr.c) instead;
// --path udp-up / udp-down an unthrottled UDP iperf3 (-u -b 0, datagrams of MTU - 28 bytes).
//
//   npx tsx bench/profile.ts [--seconds 8] [--mtu 1500] [--path upload|download|rr|crr|udp-up|udp-down] [--no-perf]
//     [--stack pasta|slirp4netns] (perf only: a peer on the same path) [--freq 499] (perf samples/s)
//     [--syscalls] (no sampling: the stack's syscalls counted by `perf trace -s`, per operation for
//     rr/crr; PROFILE_STRACE=FILE adds a 0.3 s strace of the calls with their arguments)
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab, NET, PORTS, REPO, type StackKind } from '../test/lab/lab.js';
import { run, sleep, which } from '../test/lab/exec.js';
import { BENCH_PORTS, buildRr, endSession, launch, loadRow, startBenchServers, unprivDir } from './harness.js';
import { summarize } from './cpuprofile.js';

const { values: a } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    mtu: { type: 'string', multiple: true },
    path: { type: 'string', multiple: true },
    'no-perf': { type: 'boolean', default: false },
    /** perf only: no --cpu-prof (its sampling thread and bookkeeping cost the process ~10-20 %). */
    'no-cpu-prof': { type: 'boolean', default: false },
    interval: { type: 'string', default: '250' },
    /** perf only, for comparison: profile slirp4netns or pasta on the same path instead. */
    stack: { type: 'string', default: 'slipway' },
    /** perf sampling frequency (Hz). */
    freq: { type: 'string', default: '499' },
    /** instead of sampling: count the stack's syscalls with `perf trace -s` (printed per operation for rr/crr). */
    syscalls: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(a.seconds);
const MTUS = (a.mtu?.length ? a.mtu : ['65520', '1500']).map(Number);
const PATHS = (a.path?.length ? a.path : ['upload', 'download']) as ('upload' | 'download' | 'rr' | 'crr' | 'udp-up' | 'udp-down')[];
const STACK = a.stack as StackKind;
if (!['slipway', 'slirp4netns', 'pasta'].includes(STACK)) throw new Error(`--stack: slipway, slirp4netns or pasta, not '${STACK}'`);
const PERF = !a['no-perf'] && !!which('perf');

const out = join(REPO, 'bench/results', `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`);
mkdirSync(out, { recursive: true });
const lab = await Lab.create('profile', { iperf: true });
const report: string[] = [];
const probe = PATHS.some((p) => p === 'rr' || p === 'crr') ? await buildRr(lab) : '';
if (probe) await startBenchServers(lab, probe);
try {
  for (const mtu of MTUS) {
    for (const path of PATHS) {
      const tag = `${path}-mtu${mtu}`;
      const dir = unprivDir(lab, `prof-${tag}-`);
      const s = await launch(lab, STACK, {
        mtu,
        nodeArgs: STACK !== 'slipway' ? undefined : a['no-cpu-prof']
          ? ['--perf-basic-prof']
          : ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${a.interval}`, '--perf-basic-prof'],
      });
      process.stderr.write(`profile: ${tag} (${STACK} pid ${s.stack.pid})\n`);
      let perfDone: Promise<unknown> = Promise.resolve();
      const perfData = join(out, `${tag}.perf.data`);
      let traceDone: Promise<{ stdout: string; stderr: string }> | undefined;
      if (a.syscalls) {
        traceDone = sleep(700).then(() =>
          run(['perf', 'trace', '-s', '-p', String(s.stack.pid), '--', 'sleep', String(Math.max(1, SECONDS - 2))], { timeoutMs: (SECONDS + 20) * 1000 }),
        );
        if (process.env.PROFILE_STRACE) {
          // a sample of the calls themselves, arguments included, after the counts
          traceDone = traceDone.then(async (t) => {
            await run(['timeout', '0.3', 'strace', '-f', '-tt', '-o', process.env.PROFILE_STRACE!, '-p', String(s.stack.pid)], { timeoutMs: 10_000 });
            return t;
          });
        }
      } else if (PERF) {
        // Start sampling a moment after iperf3 does; stop before it ends.
        perfDone = sleep(700).then(() =>
          run(['perf', 'record', '-F', a.freq!, '-g', '-p', String(s.stack.pid), '-o', perfData, '--', 'sleep', String(Math.max(1, SECONDS - 2))], { timeoutMs: (SECONDS + 20) * 1000 }),
        );
      }
      let head: string;
      if (path === 'rr' || path === 'crr') {
        const res = await s.container.exec([probe, `client-${path}`, NET.server, String(path === 'rr' ? BENCH_PORTS.rr : BENCH_PORTS.crr), String(SECONDS)], { timeoutMs: (SECONDS + 30) * 1000 });
        head = `## ${path} to the world, MTU ${mtu}: ${res.stdout.trim()}`;
      } else if (path === 'udp-up' || path === 'udp-down') {
        const res = await s.container.exec(
          ['iperf3', '-c', NET.server, '-p', String(PORTS.iperf), '-u', '-b', '0', '-l', String(Math.min(mtu - 28, 8000)), '-t', String(SECONDS), '-J', ...(path === 'udp-down' ? ['-R'] : [])],
          { timeoutMs: (SECONDS + 30) * 1000 },
        );
        const end = (JSON.parse(res.stdout) as { end: { sum: { lost_percent: number }; sum_received?: { bits_per_second: number } } }).end;
        head = `## ${path} world, MTU ${mtu}: received ${((end.sum_received?.bits_per_second ?? 0) / 1e6).toFixed(0)} Mbit/s, ${end.sum.lost_percent.toFixed(1)} % lost`;
      } else {
        const r = await loadRow(s, 'container', NET.server, PORTS.iperf, SECONDS, path === 'download');
        head = `## ${path} ${path === 'upload' ? '→' : '←'} world, MTU ${mtu}: ${r.gbps?.toFixed(2) ?? r.error} Gbit/s, stack CPU ${r.cpuSeconds?.toFixed(2)} s (${r.cpuPerGB?.toFixed(2)} s/GB)`;
      }
      await perfDone;
      if (traceDone) {
        const t = await traceDone;
        const ops = /"transactions":(\d+)|"connections":(\d+)/.exec(head);
        const perOp = ops ? Number(ops[1] ?? ops[2]) / SECONDS * Math.max(1, SECONDS - 2) : 0;
        report.push(syscallTable(t.stdout + t.stderr, perOp));
      }
      await endSession(s);
      await sleep(300);
      const prof = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
      report.push(head);
      if (prof) {
        copyFileSync(join(dir, prof), join(out, `${tag}.cpuprofile`));
        report.push(summarize(join(out, `${tag}.cpuprofile`), 25));
      } else {
        report.push('(no .cpuprofile written)');
      }
      if (PERF && !a.syscalls) {
        const rep = await run(['perf', 'report', '-f', '-i', perfData, '--stdio', '--no-children', '--sort', 'dso,sym', '--percent-limit', '1.2'], { timeoutMs: 120_000 });
        const lines = rep.stdout.split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).slice(0, 30);
        const dsos = await run(['perf', 'report', '-f', '-i', perfData, '--stdio', '--no-children', '--sort', 'dso', '--percent-limit', '0.5'], { timeoutMs: 120_000 });
        const dsoLines = dsos.stdout.split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).map((l) => l.trim().replace(/\s+/, ' ')).slice(0, 8);
        report.push(`perf by object: ${dsoLines.join(', ')}`);
        report.push('perf (whole process incl. kernel, self, dso/sym):\n' + lines.join('\n'));
        writeFileSync(join(out, `${tag}.perf.txt`), rep.stdout);
      }
      report.push('');
      process.stderr.write(`${head}\n`);
    }
  }
} finally {
  await lab.destroy();
}
/** `perf trace -s` totals summed over the threads, with calls per operation when the run counted them. */
function syscallTable(text: string, ops: number): string {
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/^\s+(\w+)\s+(\d+)\s+\d+\s+[\d.]+/gm)) calls.set(m[1]!, (calls.get(m[1]!) ?? 0) + Number(m[2]));
  const rows = [...calls].sort((x, y) => y[1] - x[1]);
  return `syscalls (perf trace -s, ${ops ? `~${Math.round(ops)} operations in the window` : 'no operation count'}):\n` +
    rows.map(([n, c]) => `  ${n.padEnd(18)} ${String(c).padStart(9)}${ops ? `  ${(c / ops).toFixed(2)} per op` : ''}`).join('\n');
}
const text = report.join('\n');
writeFileSync(join(out, 'summary.txt'), text);
console.log(text);
console.log(`raw profiles: ${out}`);
process.exit(0);
