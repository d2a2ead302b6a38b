// Where one thread's CPU goes, from a `perf record -g` file (bench/profile.ts writes them): each
// sample's call chain is put in one category (a syscall made from JavaScript, N-API and addon code
// under a JS call, JavaScript with the V8 builtins it calls, the event loop's own work, epoll) and
// credited to the innermost JS function on the chain. With --per-op-us (the thread's CPU per
// operation, e.g. from bench/ab-rr.ts) the shares are printed as µs per operation.
//
//   npx tsx bench/perfattr.ts bench/results/profile-…/rr-mtu65520.perf.data [--tid N] [--per-op-us 43.4] [--top 30]
//
// Without --tid the thread with the most samples (the main thread) is read.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values: a, positionals } = parseArgs({
  options: {
    tid: { type: 'string' },
    'per-op-us': { type: 'string' },
    top: { type: 'string', default: '30' },
  },
  allowPositionals: true,
});
const file = positionals[0];
if (!file) throw new Error('usage: perfattr.ts PERF.DATA [--tid N] [--per-op-us US] [--top N]');

function perfScript(args: string[]): string {
  const r = spawnSync('perf', ['script', '-i', file!, ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`perf script: ${r.stderr}`);
  return r.stdout;
}

let tid = a.tid;
if (tid === undefined) {
  const counts = new Map<string, number>();
  for (const line of perfScript(['-F', 'tid']).split('\n')) {
    const t = line.trim();
    if (t) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  tid = [...counts].sort((x, y) => y[1] - x[1])[0]?.[0];
  if (tid === undefined) throw new Error('no samples');
}

interface Frame { sym: string; kernel: boolean }
const samples: Frame[][] = [];
let cur: Frame[] = [];
for (const line of perfScript(['--tid', tid, '-F', 'ip,sym,dso']).split('\n')) {
  const m = /^\s*[0-9a-f]+\s+(.*)\s+\((.*)\)$/.exec(line);
  if (m) {
    cur.push({ sym: m[1]!.replace(/\+0x[0-9a-f]+$/, ''), kernel: m[2]!.includes('kernel') });
  } else if (line.trim() === '' && cur.length > 0) {
    samples.push(cur);
    cur = [];
  }
}
if (cur.length > 0) samples.push(cur);

const scale = a['per-op-us'] ? Number(a['per-op-us']) : 100;
const unit = a['per-op-us'] ? 'µs/op' : '%';
const cats = new Map<string, number>();
const byJs = new Map<string, number>();
const bump = (m: Map<string, number>, k: string): void => {
  m.set(k, (m.get(k) ?? 0) + 1);
};
const isNativeCall = (s: string): boolean => s.startsWith('napi_') || s.includes('FunctionCallbackWrapper') || s.includes('CallApiCallback') || s.includes('HandleApiCall');
for (const s of samples) {
  const kernel = s[0]!.kernel;
  const ji = s.findIndex((f) => f.sym.startsWith('JS:'));
  const syms = s.map((f) => f.sym);
  let cat: string;
  if (ji >= 0) {
    const native = syms.slice(0, ji).some(isNativeCall);
    cat = native ? (kernel ? 'syscalls from JS (kernel)' : 'N-API + addon + libc under JS') : kernel ? 'kernel under JS (other)' : 'JavaScript + V8 builtins/runtime';
    if (!kernel) bump(byJs, `${native ? 'native  ' : 'js      '}${syms[ji]!.replace(/ \/\S*\/dist\//, ' ')}`);
  } else if (syms.some((x) => x.includes('napi_make_callback'))) cat = 'napi_make_callback around JS';
  else if (syms.some((x) => x.includes('CheckImmediate'))) cat = "Node's CheckImmediate (per loop turn)";
  else if (syms.some((x) => x.includes('epoll'))) cat = kernel ? 'epoll_wait (kernel: sleep, wake-up)' : 'epoll_wait (libc)';
  else if (syms.some((x) => x.startsWith('uv_') || x.startsWith('uv__'))) cat = kernel ? 'libuv loop (kernel: reads in poll callbacks)' : 'libuv loop';
  else cat = kernel ? 'other (kernel)' : 'other';
  bump(cats, cat);
}
const n = samples.length;
const fmt = (v: number): string => ((scale * v) / n).toFixed(2).padStart(7);
console.log(`${file}: thread ${tid}, ${n} samples; figures in ${unit}`);
for (const [k, v] of [...cats].sort((x, y) => y[1] - x[1])) console.log(`${fmt(v)}  ${k}`);
console.log(`\nuser-space samples by innermost JS function ("native": inside a native call it made):`);
for (const [k, v] of [...byJs].sort((x, y) => y[1] - x[1]).slice(0, Number(a.top))) console.log(`${fmt(v)}  ${k}`);
