// Side-by-side throughput: slipway vs slirp4netns vs pasta, in the test lab (never the real
// network). For each stack: a fresh rootless container netns, the stack attached with MTU 65520,
// then iperf3 upload (container → world) and download (-R) against 203.0.113.10.
//
//   npm run bench:compare                     all stacks, 5 s per direction
//   BENCH_STACKS=slirp4netns,pasta BENCH_SECONDS=10 npm run bench:compare
//
// Prints Gbit/s (receiver side, from iperf3 -J) and the ratio slipway ÷ best peer, and writes
// JSON to bench/results/compare-<timestamp>.json. A stack that cannot start is reported as such.
// Needs root (namespaces); the stacks themselves run as uid 65534.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, labSupport, missingTools, NET, PORTS, REPO, stackBinaryMissing, type StackKind } from '../test/lab/lab.js';
import { run } from '../test/lab/exec.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const MTU = Number(process.env.BENCH_MTU ?? 65520);
const STACKS = (process.env.BENCH_STACKS ?? 'slipway,slirp4netns,pasta').split(',').map((s) => s.trim()) as StackKind[];

interface DirResult {
  gbps?: number;
  retransmits?: number;
  error?: string;
}
interface StackResult {
  stack: StackKind;
  status: 'ok' | 'failed' | 'not-installed';
  error?: string;
  version?: string;
  upload?: DirResult;
  download?: DirResult;
}

async function version(kind: StackKind): Promise<string | undefined> {
  if (kind === 'slipway') {
    try {
      const pkg = JSON.parse((await import('node:fs')).readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
      const git = await run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']);
      return `${pkg.version} (${git.stdout.trim() || 'no git'})`;
    } catch {
      return undefined;
    }
  }
  const r = await run([kind, '--version']);
  return (r.stdout + r.stderr).split('\n').find((l) => /version|libslirp|pasta/i.test(l) && !/syslog/.test(l))?.trim();
}

function parseIperf(json: string, reverse: boolean): DirResult {
  try {
    const j = JSON.parse(json) as {
      error?: string;
      end?: { sum_received?: { bits_per_second: number }; sum_sent?: { bits_per_second: number; retransmits?: number } };
    };
    if (j.error) return { error: j.error };
    const recv = j.end?.sum_received?.bits_per_second;
    if (recv === undefined) return { error: 'no sum_received in iperf3 output' };
    // sum_received is always the receiver's view (world server for upload, container for -R).
    return { gbps: recv / 1e9, retransmits: j.end?.sum_sent?.retransmits };
  } catch {
    return { error: `unparseable iperf3 output (${reverse ? 'download' : 'upload'}): ${json.slice(0, 200)}` };
  }
}

async function benchStack(lab: Lab, kind: StackKind): Promise<StackResult> {
  const missing = stackBinaryMissing(kind);
  if (missing) return { stack: kind, status: 'not-installed', error: missing };
  const res: StackResult = { stack: kind, status: 'ok', version: await version(kind) };
  let stack;
  try {
    const ctr = await lab.createContainer();
    try {
      stack = await lab.startStack(kind, ctr, { configure: true, mtu: MTU, readyTimeoutMs: 20_000 });
    } catch (e) {
      return { ...res, status: 'failed', error: `did not start: ${(e as Error).message.split('\n').slice(0, 6).join(' | ')}` };
    }
    for (const reverse of [false, true]) {
      const r = await ctr.exec(
        ['iperf3', '-c', NET.server, '-p', String(PORTS.iperf), '-t', String(SECONDS), '-J', ...(reverse ? ['-R'] : [])],
        { timeoutMs: (SECONDS + 30) * 1000 },
      );
      const d = parseIperf(r.stdout, reverse);
      if (d.error && r.stderr.trim()) d.error += ` (${r.stderr.trim().slice(0, 200)})`;
      if (reverse) res.download = d;
      else res.upload = d;
      if (d.error) res.status = 'failed';
    }
    if (!stack.alive()) {
      res.status = 'failed';
      res.error = `stack died during the run: ${stack.describe().slice(0, 400)}`;
    }
  } finally {
    await stack?.stop();
  }
  return res;
}

function fmt(d: DirResult | undefined): string {
  if (!d) return '-';
  if (d.gbps === undefined) return 'error';
  return d.gbps.toFixed(2);
}

function ratio(results: StackResult[], dir: 'upload' | 'download'): string {
  const mine = results.find((r) => r.stack === 'slipway')?.[dir]?.gbps;
  const peers = results.filter((r) => r.stack !== 'slipway').map((r) => r[dir]?.gbps).filter((x): x is number => x !== undefined);
  if (mine === undefined || peers.length === 0) return 'n/a';
  return (mine / Math.max(...peers)).toFixed(2);
}

async function main(): Promise<number> {
  const sup = labSupport();
  if (!sup.ok) {
    console.error(`bench:compare: ${sup.reason}`);
    return 2;
  }
  const tools = missingTools(['iperf3']);
  if (tools) {
    console.error(`bench:compare: ${tools}`);
    return 2;
  }
  const lab = await Lab.create('bench', { iperf: true });
  const results: StackResult[] = [];
  const onSignal = (): void => {
    void lab.destroy().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    for (const kind of STACKS) {
      process.stderr.write(`bench: ${kind} ...\n`);
      const r = await benchStack(lab, kind);
      results.push(r);
      process.stderr.write(`bench: ${kind}: ${r.status}${r.error ? ` (${r.error})` : ''}\n`);
    }
  } finally {
    await lab.destroy();
  }

  const rows = results.map((r) => [
    r.stack,
    r.status === 'ok' ? 'ok' : r.status,
    fmt(r.upload),
    fmt(r.download),
  ]);
  const header = ['stack', 'status', 'upload Gbit/s', 'download Gbit/s'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cols: string[]): string => cols.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`iperf3 ${SECONDS}s per direction, MTU ${MTU}, container → ${NET.server} (lab world)`);
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  console.log(line(['slipway ÷ best peer', '', ratio(results, 'upload'), ratio(results, 'download')]));
  for (const r of results) if (r.error) console.log(`  ${r.stack}: ${r.error}`);

  const out = {
    date: new Date().toISOString(),
    seconds: SECONDS,
    mtu: MTU,
    target: NET.server,
    host: { node: process.version, cpus: (await import('node:os')).cpus().length, kernel: (await import('node:os')).release() },
    results,
    ratio: { upload: ratio(results, 'upload'), download: ratio(results, 'download') },
  };
  const dir = join(REPO, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `compare-${out.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`results: ${file}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`bench:compare failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
