// Metric definitions and result types shared by bench/compare.ts and bench/chart.ts.
import type { StackKind } from '../test/lab/lab.js';


export type Better = 'higher' | 'lower';
export interface MetricDef {
  id: string;
  label: string;
  unit: string;
  better: Better;
  /** Goal for slipway ÷ best peer (≥ for higher-better, ≤ for lower-better). */
  ratioTarget?: number;
  /** Absolute goal for slipway's own value (≤ for lower-better). */
  absTarget?: number;
  digits: number;
}

export const METRICS: MetricDef[] = [
  { id: 'up_world', label: 'upload → world', unit: 'Gbit/s', better: 'higher', ratioTarget: 1.5, digits: 2 },
  { id: 'down_world', label: 'download ← world', unit: 'Gbit/s', better: 'higher', ratioTarget: 1.0, digits: 2 },
  { id: 'up_loop', label: 'upload → host loopback (gw)', unit: 'Gbit/s', better: 'higher', ratioTarget: 1.5, digits: 2 },
  { id: 'down_loop', label: 'download ← host loopback (gw)', unit: 'Gbit/s', better: 'higher', ratioTarget: 1.0, digits: 2 },
  { id: 'fwd_in', label: 'forward host → container', unit: 'Gbit/s', better: 'higher', ratioTarget: 1.0, digits: 2 },
  { id: 'fwd_out', label: 'forward container → host (-R)', unit: 'Gbit/s', better: 'higher', ratioTarget: 1.0, digits: 2 },
  { id: 'rr_us', label: 'TCP RR latency (1 B ping-pong)', unit: 'µs', better: 'lower', ratioTarget: 1.0, digits: 1 },
  { id: 'crr', label: 'connections/s (connect+1 B+close)', unit: 'conn/s', better: 'higher', ratioTarget: 1.5, digits: 0 },
  { id: 'udp_up', label: 'UDP upload → world (1400 B, -b 0)', unit: 'Mbit/s', better: 'higher', ratioTarget: 1.0, digits: 0 },
  { id: 'udp_down', label: 'UDP download ← world (1400 B, -b 0)', unit: 'Mbit/s', better: 'higher', ratioTarget: 1.0, digits: 0 },
  { id: 'cpu_up', label: 'CPU per GB, upload → world', unit: 's/GB', better: 'lower', ratioTarget: 1.0, digits: 2 },
  { id: 'cpu_down', label: 'CPU per GB, download ← world', unit: 's/GB', better: 'lower', ratioTarget: 1.0, digits: 2 },
  { id: 'rss_peak', label: 'peak RSS under load (ΣVmHWM)', unit: 'MB', better: 'lower', absTarget: 64, digits: 1 },
  { id: 'rss_after', label: 'RSS after load', unit: 'MB', better: 'lower', absTarget: 64, digits: 1 },
  // No goal: for context. RSS counts the program's file pages (node's ~40 MB of text), which every
  // instance shares; this is what one more instance costs.
  { id: 'anon_after', label: 'private memory after load (ΣRssAnon)', unit: 'MB', better: 'lower', digits: 1 },
  { id: 'ready_ms', label: 'launch → ready', unit: 'ms', better: 'lower', absTarget: 150, digits: 0 },
  { id: 'retx_up', label: 'container retransmits, uploads (segs)', unit: 'segs', better: 'lower', absTarget: 0, digits: 0 },
  { id: 'drops_up', label: 'tap drops, uploads (frames)', unit: 'frames', better: 'lower', absTarget: 0, digits: 0 },
  { id: 'rto_up', label: 'container RTO timeouts, uploads', unit: 'count', better: 'lower', absTarget: 0, digits: 0 },
  { id: 'integrity', label: 'integrity: sha256 up+down equal', unit: 'ok', better: 'higher', absTarget: 1, digits: 0 },
];

export interface MetricValue {
  value?: number;
  samples?: number[];
  error?: string;
}
export interface StackRun {
  stack: StackKind;
  status: 'ok' | 'partial' | 'failed' | 'not-installed';
  errors: string[];
  metrics: Record<string, MetricValue>;
  /** Per-row details of every round (iperf3 bytes, CPU, counters, ss snapshots, rr output). */
  rounds: object[];
}
export interface MtuRun {
  mtu: number;
  stacks: StackRun[];
  ratios: Record<string, { ratio?: number; best?: string; met?: boolean; note?: string }>;
}
export interface CompareResult {
  date: string;
  quick: boolean;
  seconds: number;
  repeat: number;
  /** Bytes each way in the integrity check. */
  integrityBytes?: number;
  machine: { nproc: number; model: string; kernel: string; node: string };
  versions: Record<string, string>;
  metrics: MetricDef[];
  runs: MtuRun[];
  notes: string[];
}

export function fmtValue(m: MetricDef, v: MetricValue | undefined): string {
  if (!v || v.value === undefined) return v?.error?.startsWith('not available') ? 'n/a' : 'error';
  if (m.id === 'integrity') return v.value === 1 ? 'ok' : 'FAIL';
  return v.value.toLocaleString('en-US', { minimumFractionDigits: m.digits, maximumFractionDigits: m.digits });
}

export function targetText(m: MetricDef): string {
  if (m.absTarget !== undefined) return m.id === 'integrity' ? 'ok' : `${m.better === 'higher' ? '≥' : '≤'} ${m.absTarget} ${m.unit}`;
  if (m.ratioTarget !== undefined) return `ratio ${m.better === 'higher' ? '≥' : '≤'} ${m.ratioTarget.toFixed(1)}`;
  return '';
}

