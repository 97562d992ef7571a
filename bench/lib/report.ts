// What the benchmark reports: the figures and their targets, the median of each figure over the
// runs, and the one comparison table (markdown) built from them.
import type { Usage } from './measure.ts';
import { median } from './measure.ts';

export type ToolId = 'stowage' | 'restic' | 'restic014';
export type StepName = 'init' | 'backup' | 'rebackup' | 'restore' | 'check' | 'snapshots';

/** One command of one tool in one run. */
export interface Sample {
  run: number;
  scenario: string;
  step: StepName;
  tool: ToolId;
  /** Source bytes the figure's throughput is computed from (the corpus size). */
  bytes: number;
  usage?: Usage;
  mibPerSecond?: number;
  /** Set when the command failed or its result did not check out; the sample then does not count. */
  error?: string;
  /** Something odd that does not invalidate the sample (e.g. a re-backup that found changes). */
  warning?: string;
  logFile: string;
}

/**
 * How a figure is judged. `throughput`: the ratio is Stowage MiB/s over restic MiB/s and must
 * reach `target`. `time`: the ratio is Stowage seconds over restic seconds and must stay at or
 * below `target`. `none`: reported only.
 */
export interface FigureDef {
  scenario: string;
  step: StepName;
  label: string;
  judge: 'throughput' | 'time' | 'none';
  target?: number;
  /** Whether "peak RSS ≤ restic" applies. */
  rssTarget: boolean;
}

// Targets from the performance issue: first backup big ≥ 2.0× throughput, small ≥ 1.5×,
// re-backup ≤ 0.5× time, restore ≥ 1.5×, check ≤ 0.7× time, peak RSS ≤ restic's.
export const FIGURES: readonly FigureDef[] = [
  { scenario: 'big-off', step: 'backup', label: 'first backup, big, --compression off', judge: 'throughput', target: 2.0, rssTarget: true },
  { scenario: 'small-auto', step: 'backup', label: 'first backup, small, compression auto', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'big-auto', step: 'backup', label: 'first backup, big, compression auto', judge: 'throughput', target: 2.0, rssTarget: true },
  { scenario: 'big-off', step: 'rebackup', label: 're-backup (no change), big', judge: 'time', target: 0.5, rssTarget: true },
  { scenario: 'small-auto', step: 'rebackup', label: 're-backup (no change), small', judge: 'time', target: 0.5, rssTarget: true },
  { scenario: 'big-off', step: 'restore', label: 'restore, big', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'small-auto', step: 'restore', label: 'restore, small', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'big-off', step: 'check', label: 'check --read-data, big', judge: 'time', target: 0.7, rssTarget: true },
  { scenario: 'big-off', step: 'snapshots', label: 'snapshots (open repo, key derivation)', judge: 'none', rssTarget: false },
];

export interface ToolFigure {
  /** Runs that succeeded out of the runs attempted. */
  ok: number;
  attempted: number;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
  /** Source bytes over the median wall time. */
  mibPerSecond: number;
}

export type Metric = 'MiB/s' | 'wall s' | 'CPU s' | 'peak RSS MiB';

export interface Row {
  figure: string;
  metric: Metric;
  stowage?: number;
  restic?: number;
  restic014?: number;
  /** Stowage's value over restic 0.19's for this row's metric. */
  ratio?: number;
  /** e.g. "≥ 2.0×"; absent when the row is reported only. */
  target?: string;
  met?: boolean;
}

export interface FigureResult {
  def: FigureDef;
  tools: Partial<Record<ToolId, ToolFigure>>;
  rows: Row[];
}

const MiB = 1024 * 1024;

export function summarize(def: FigureDef, samples: readonly Sample[]): ToolFigure | undefined {
  const good = samples.filter((s) => s.usage && !s.error);
  if (samples.length === 0) return undefined;
  const wall = median(good.map((s) => s.usage!.wallSeconds));
  return {
    ok: good.length,
    attempted: samples.length,
    wallSeconds: wall,
    cpuSeconds: median(good.map((s) => s.usage!.cpuSeconds)),
    peakRssMiB: median(good.map((s) => s.usage!.peakRssMiB)),
    mibPerSecond: good.length ? samples[0]!.bytes / MiB / wall : NaN,
  };
}

export function buildFigures(samples: readonly Sample[], tools: readonly ToolId[]): FigureResult[] {
  const results: FigureResult[] = [];
  for (const def of FIGURES) {
    const perTool: Partial<Record<ToolId, ToolFigure>> = {};
    for (const tool of tools) {
      const mine = samples.filter((s) => s.scenario === def.scenario && s.step === def.step && s.tool === tool);
      const f = summarize(def, mine);
      if (f) perTool[tool] = f;
    }
    if (Object.keys(perTool).length === 0) continue;
    results.push({ def, tools: perTool, rows: rowsFor(def, perTool) });
  }
  return results;
}

function rowsFor(def: FigureDef, t: Partial<Record<ToolId, ToolFigure>>): Row[] {
  const pick = (key: keyof ToolFigure) => (id: ToolId) => {
    const f = t[id];
    return f && f.ok > 0 ? (f[key] as number) : undefined;
  };
  const row = (metric: Metric, key: keyof ToolFigure, judge?: { target: number; atLeast: boolean }): Row => {
    const get = pick(key);
    const stowage = get('stowage');
    const restic = get('restic');
    const ratio = stowage !== undefined && restic !== undefined && restic > 0 ? stowage / restic : undefined;
    const r: Row = { figure: def.label, metric, stowage, restic, restic014: get('restic014'), ratio };
    if (judge) {
      r.target = `${judge.atLeast ? '≥' : '≤'} ${judge.target.toFixed(1)}×`;
      // A tool that failed every run cannot meet its target.
      r.met = ratio !== undefined && (judge.atLeast ? ratio >= judge.target : ratio <= judge.target);
    }
    return r;
  };
  const rss = def.rssTarget ? { target: 1.0, atLeast: false } : undefined;
  if (def.judge === 'throughput') {
    return [row('MiB/s', 'mibPerSecond', { target: def.target!, atLeast: true }), row('wall s', 'wallSeconds'), row('CPU s', 'cpuSeconds'), row('peak RSS MiB', 'peakRssMiB', rss)];
  }
  if (def.judge === 'time') {
    return [row('wall s', 'wallSeconds', { target: def.target!, atLeast: false }), row('MiB/s', 'mibPerSecond'), row('CPU s', 'cpuSeconds'), row('peak RSS MiB', 'peakRssMiB', rss)];
  }
  return [row('wall s', 'wallSeconds'), row('CPU s', 'cpuSeconds'), row('peak RSS MiB', 'peakRssMiB', rss)];
}

function num(v: number | undefined, metric: Metric): string {
  if (v === undefined || !Number.isFinite(v)) return 'FAIL';
  if (metric === 'MiB/s' || metric === 'peak RSS MiB') return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** The comparison table as markdown; the restic 0.14 column appears when it was measured. */
export function markdownTable(figures: readonly FigureResult[], withRestic014: boolean): string {
  const head = ['figure', 'Stowage', 'restic 0.19.1', 'ratio', 'target', 'met?', ...(withRestic014 ? ['restic 0.14'] : [])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((h, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const f of figures) {
    for (const r of f.rows) {
      const cells = [
        `${r.figure}: ${r.metric}`,
        num(r.stowage, r.metric),
        num(r.restic, r.metric),
        r.ratio === undefined ? '—' : `${r.ratio.toFixed(2)}×`,
        r.target ?? '',
        r.met === undefined ? '' : r.met ? 'yes' : '**no**',
        ...(withRestic014 ? [num(r.restic014, r.metric)] : []),
      ];
      lines.push(`| ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}
