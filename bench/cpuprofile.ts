// Summarize a V8 .cpuprofile: top functions by self time (and their inclusive time), as a
// percentage of the non-idle samples.
//
//   npx tsx bench/cpuprofile.ts FILE.cpuprofile [TOP]
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function label(n: Node): string {
  const f = n.callFrame;
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  const file = f.url.replace(/^file:\/\//, '').replace(/^.*\/(dist|src|node_modules)\//, '$1/');
  return `${name} ${file.startsWith('node:') ? file : basename(file)}:${f.lineNumber + 1}`;
}

export function summarize(file: string, top = 25): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0;
    const n = byId.get(p.samples[i]!)!;
    const l = label(n);
    if (l === '(idle)') {
      idle += dt;
      continue;
    }
    total += dt;
    self.set(l, (self.get(l) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const ll = label(byId.get(id)!);
      if (seen.has(ll)) continue;
      seen.add(ll);
      incl.set(ll, (incl.get(ll) ?? 0) + dt);
    }
  }
  const pct = (v: number): string => `${((100 * v) / total).toFixed(1).padStart(5)}%`;
  const lines = [
    `busy ${(total / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s of ${((p.endTime - p.startTime) / 1e6).toFixed(2)} s profiled (main thread)`,
    '  self    incl   function',
  ];
  for (const [l, v] of [...self.entries()].sort((x, y) => y[1] - x[1]).slice(0, top)) {
    lines.push(`${pct(v)}  ${pct(incl.get(l) ?? v)}   ${l}`);
  }
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(summarize(process.argv[2]!, Number(process.argv[3] ?? 25)));
}
