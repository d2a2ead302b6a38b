// Chart for bench:compare results: a hand-written SVG (no dependencies), one small panel per
// metric with a bar per stack for each MTU (the median, with a whisker over the range of the
// rounds), the slipway ÷ best-peer ratio under each group, and a title with the date, machine and
// versions.
//
//   npx tsx bench/chart.ts [IN.json] [OUT.svg]     default docs/bench/latest.json → docs/bench/compare.svg
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmtValue, type CompareResult, type MetricDef } from './metrics.js';

const COLORS: Record<string, string> = { slipway: '#2563eb', slirp4netns: '#ea8a1c', pasta: '#3f9b4f' };
const FALLBACK = ['#7c3aed', '#db2777', '#0891b2'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function short(v: number, digits: number): string {
  if (v >= 10_000) return `${(v / 1000).toFixed(1)}k`;
  return v.toFixed(v >= 100 ? 0 : digits);
}

export function renderChart(res: CompareResult): string {
  const metrics = res.metrics.filter((m) => m.id !== 'integrity');
  const stacks = [...new Set(res.runs.flatMap((r) => r.stacks.map((s) => s.stack)))];
  const color = (s: string, i: number): string => COLORS[s] ?? FALLBACK[i % FALLBACK.length]!;
  const cols = 4;
  const pw = 290;
  const ph = 212;
  const gap = 14;
  const top = 118;
  const left = 16;
  const rows = Math.ceil(metrics.length / cols);
  const W = left * 2 + cols * pw + (cols - 1) * gap;
  // Warnings and how much CPU the hypervisor took during each stack's rounds (how sure the bars are).
  const warnings = res.notes.filter((n) => n.startsWith('WARNING') || n.includes('stolen by the hypervisor'));
  const H = top + rows * (ph + gap) + 20 + 16 * (res.runs.length + warnings.length);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Verdana, Arial, sans-serif">`);
  o.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  const day = res.date.slice(0, 16).replace('T', ' ');
  o.push(`<text x="${left}" y="28" font-size="20" font-weight="bold" fill="#111">slipway vs slirp4netns vs pasta — npm run bench:compare</text>`);
  const m = res.machine;
  o.push(`<text x="${left}" y="50" font-size="12.5" fill="#333">${esc(`${day} UTC · ${m.nproc} × ${m.model} · kernel ${m.kernel} · node ${m.node} · iperf3 -t ${res.seconds}, single stream, ${res.repeat} round(s)${res.quick ? ', quick' : ''} · lab netns, documentation addresses`)}</text>`);
  const vers = stacks.map((s) => `${s} ${res.versions[s] ?? '?'}`).join(' · ');
  o.push(`<text x="${left}" y="68" font-size="12.5" fill="#333">${esc(vers)}</text>`);
  // legend
  let lx = left;
  stacks.forEach((s, i) => {
    o.push(`<rect x="${lx}" y="80" width="14" height="14" fill="${color(s, i)}"/>`);
    o.push(`<text x="${lx + 19}" y="92" font-size="13" fill="#111">${esc(s)}</text>`);
    lx += 30 + s.length * 8;
  });
  o.push(`<text x="${lx + 10}" y="92" font-size="12" fill="#555">bar: median of the rounds, whisker: their range · under each MTU group: slipway ÷ best peer (green = goal met, red = not)</text>`);

  metrics.forEach((met, idx) => {
    const x0 = left + (idx % cols) * (pw + gap);
    const y0 = top + Math.floor(idx / cols) * (ph + gap);
    o.push(panel(res, met, stacks, color, x0, y0, pw, ph));
  });

  // integrity lines (one per MTU) and warnings from the run
  const im = res.metrics.find((x) => x.id === 'integrity')!;
  const mib = res.integrityBytes ? `${res.integrityBytes / 1048576} MiB` : 'a large transfer';
  let y = H - 20 - 16 * (res.runs.length + warnings.length - 1);
  for (const r of res.runs) {
    const parts = r.stacks.map((s) => {
      const v = s.metrics.integrity;
      return `${s.stack} ${fmtValue(im, v)}${v?.value === undefined && v?.error ? ` (${v.error.slice(0, 50)})` : ''}`;
    });
    o.push(`<text x="${left}" y="${y}" font-size="12" fill="#333">${esc(`data integrity, MTU ${r.mtu} (sha256 of ${mib} up and down equal): ${parts.join(', ')}`)}</text>`);
    y += 16;
  }
  for (const w of warnings) {
    const fill = w.startsWith('WARNING') ? '#b91c1c' : '#333';
    o.push(`<text x="${left}" y="${y}" font-size="11" fill="${fill}">${esc(w.length > 190 ? `${w.slice(0, 187)}…` : w)}</text>`);
    y += 16;
  }
  o.push('</svg>');
  return o.join('\n') + '\n';
}

function panel(
  res: CompareResult, met: MetricDef, stacks: string[], color: (s: string, i: number) => string,
  x0: number, y0: number, pw: number, ph: number,
): string {
  const o: string[] = [];
  o.push(`<rect x="${x0}" y="${y0}" width="${pw}" height="${ph}" fill="#fafafa" stroke="#ddd"/>`);
  o.push(`<text x="${x0 + 8}" y="${y0 + 17}" font-size="12.5" font-weight="bold" fill="#111">${esc(met.label)}</text>`);
  const goal = met.absTarget !== undefined ? '' : met.ratioTarget !== undefined ? ` · goal ratio ${met.better === 'higher' ? '≥' : '≤'} ${met.ratioTarget}` : '';
  o.push(`<text x="${x0 + 8}" y="${y0 + 32}" font-size="11" fill="#666">${esc(`${met.unit}, ${met.better} is better${goal}`)}</text>`);
  const plotTop = y0 + 52;
  const plotBottom = y0 + ph - 50;
  const plotH = plotBottom - plotTop;
  // The scale holds the highest round too, so each bar's whisker (the range of its rounds) fits.
  const values = res.runs.flatMap((r) => r.stacks.flatMap((s) => {
    const v = s.metrics[met.id];
    return v?.value === undefined ? [] : [v.value, ...(v.samples ?? [])];
  }));
  const vmax = niceMax(Math.max(0, ...values));
  // grid
  for (let g = 0; g <= 2; g++) {
    const y = plotBottom - (plotH * g) / 2;
    o.push(`<line x1="${x0 + 34}" x2="${x0 + pw - 6}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${x0 + 30}" y="${y + 4}" font-size="9.5" fill="#888" text-anchor="end">${esc(short((vmax * g) / 2, met.digits))}</text>`);
  }
  const groups = res.runs.length;
  const gw = (pw - 44) / Math.max(1, groups);
  res.runs.forEach((run, gi) => {
    const gx = x0 + 38 + gi * gw;
    const bw = Math.min(26, (gw - 16) / Math.max(1, stacks.length));
    const bx0 = gx + (gw - bw * stacks.length) / 2;
    stacks.forEach((s, si) => {
      const v = run.stacks.find((r) => r.stack === s)?.metrics[met.id];
      const bx = bx0 + si * bw;
      if (v?.value === undefined) {
        const t = v?.error?.startsWith('not available') ? 'n/a' : v?.error === 'not installed' ? '—' : 'err';
        o.push(`<text x="${bx + bw / 2}" y="${plotBottom - 4}" font-size="9.5" fill="#999" text-anchor="middle">${t}</text>`);
        return;
      }
      const h = vmax > 0 ? (plotH * v.value) / vmax : 0;
      o.push(`<rect x="${bx + 1}" y="${plotBottom - h}" width="${bw - 2}" height="${Math.max(h, 0.5)}" fill="${color(s, si)}"><title>${esc(`${s} MTU ${run.mtu}: ${v.value} ${met.unit}`)}</title></rect>`);
      const rounds = v.samples ?? [];
      let labelY = plotBottom - h - 3;
      if (rounds.length > 1 && vmax > 0) {
        const lo = plotBottom - (plotH * Math.min(...rounds)) / vmax;
        const hi = plotBottom - (plotH * Math.max(...rounds)) / vmax;
        const cx = bx + bw / 2;
        const tip = esc(`${s} MTU ${run.mtu}: rounds ${rounds.map((r) => short(r, met.digits)).join(', ')}`);
        o.push(`<path d="M${cx} ${lo}V${hi}M${cx - 3} ${lo}h6M${cx - 3} ${hi}h6" stroke="#333" stroke-width="1" fill="none"><title>${tip}</title></path>`);
        labelY = Math.min(labelY, hi - 3);
      }
      o.push(`<text x="${bx + bw / 2}" y="${labelY}" font-size="9" fill="#222" text-anchor="middle">${esc(short(v.value, met.digits))}</text>`);
    });
    o.push(`<text x="${gx + gw / 2}" y="${plotBottom + 14}" font-size="10.5" fill="#444" text-anchor="middle">MTU ${run.mtu}</text>`);
    const rat = run.ratios[met.id];
    const good = '#15803d';
    const bad = '#b91c1c';
    if (met.absTarget !== undefined) {
      // Absolute goal (launch time, RSS, retransmits): show it met or not, ratio in grey.
      if (rat?.met !== undefined) {
        const goal = `${rat.met ? '✓' : '✗'} goal ${met.better === 'higher' ? '≥' : '≤'} ${met.absTarget}`;
        o.push(`<text x="${gx + gw / 2}" y="${plotBottom + 28}" font-size="10.5" font-weight="bold" fill="${rat.met ? good : bad}" text-anchor="middle">${esc(goal)}</text>`);
      }
      if (rat?.ratio !== undefined) {
        o.push(`<text x="${gx + gw / 2}" y="${plotBottom + 41}" font-size="10" fill="#666" text-anchor="middle">${esc(`×${rat.ratio.toFixed(2)} vs ${rat.best}`)}</text>`);
      }
    } else if (rat?.ratio !== undefined) {
      const fill = rat.met === undefined ? '#444' : rat.met ? good : bad;
      const goal = '';
      o.push(`<text x="${gx + gw / 2}" y="${plotBottom + 28}" font-size="11" font-weight="bold" fill="${fill}" text-anchor="middle">${esc(`×${rat.ratio.toFixed(2)}`)}</text>`);
      o.push(`<text x="${gx + gw / 2}" y="${plotBottom + 41}" font-size="9.5" fill="#666" text-anchor="middle">${esc(`vs ${rat.best}${goal}`)}</text>`);
    }
  });
  return o.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const repo = join(fileURLToPath(new URL('.', import.meta.url)), '..');
  const inp = process.argv[2] ?? join(repo, 'docs/bench/latest.json');
  const out = process.argv[3] ?? join(repo, 'docs/bench/compare.svg');
  writeFileSync(out, renderChart(JSON.parse(readFileSync(inp, 'utf8')) as CompareResult));
  console.log(`chart: ${out}`);
}
