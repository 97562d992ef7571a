// What the benchmark reports: the figures and their targets, the median of each figure over the
// runs, and the one comparison table (markdown) built from them.
import type { Usage } from './measure.ts';
import { median } from './measure.ts';

export type ToolId = 'stowage' | 'restic' | 'restic014' | 'kopia';
export type StepName = 'init' | 'backup' | 'rebackup' | 'restore' | 'check' | 'snapshots' | 'prune';

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
  /** Under a memory cgroup: the peak charged to it (MiB) and how often the limit was hit. */
  cgroup?: { limitMiB: number; peakMiB?: number; limitHits?: number };
  /** prune: the pack files and bytes the repository holds afterwards. */
  repoAfter?: { packs: number; bytes: number };
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
  /** No MiB/s row: for prune, bytes per second of the repository would say little. */
  noThroughputRow?: true;
}

// Targets from the performance issue: first backup big ≥ 2.0× throughput, small ≥ 1.5×,
// re-backup ≤ 0.5× time, restore ≥ 1.5×, check ≤ 0.7× time, prune ≤ 0.7× time, peak RSS ≤ restic's.
export const FIGURES: readonly FigureDef[] = [
  { scenario: 'big-off', step: 'backup', label: 'first backup, big, --compression off', judge: 'throughput', target: 2.0, rssTarget: true },
  { scenario: 'small-auto', step: 'backup', label: 'first backup, small, compression auto', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'big-auto', step: 'backup', label: 'first backup, big, compression auto', judge: 'throughput', target: 2.0, rssTarget: true },
  { scenario: 'big-off', step: 'rebackup', label: 're-backup (no change), big', judge: 'time', target: 0.5, rssTarget: true },
  { scenario: 'small-auto', step: 'rebackup', label: 're-backup (no change), small', judge: 'time', target: 0.5, rssTarget: true },
  { scenario: 'big-off', step: 'restore', label: 'restore, big', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'small-auto', step: 'restore', label: 'restore, small', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'big-off', step: 'check', label: 'check --read-data, big', judge: 'time', target: 0.7, rssTarget: true },
  { scenario: 'prune', step: 'prune', label: 'prune after forgetting half the snapshots', judge: 'time', target: 0.7, rssTarget: true, noThroughputRow: true },
  { scenario: 'big-off', step: 'snapshots', label: 'snapshots (open repo, key derivation)', judge: 'none', rssTarget: false },
  // The same first backups in a 256 MiB memory cgroup (issue 17: must complete, not be killed).
  { scenario: 'big-off-256m', step: 'backup', label: 'first backup, big, --compression off, 256 MiB cgroup', judge: 'throughput', target: 2.0, rssTarget: true },
  { scenario: 'small-auto-256m', step: 'backup', label: 'first backup, small, compression auto, 256 MiB cgroup', judge: 'throughput', target: 1.5, rssTarget: true },
  // Issue 17's size rows (`--huge`, `--many`), held to the same targets as their 1 GiB and 20 000-file rows.
  { scenario: 'huge-off', step: 'backup', label: 'first backup, 10 GiB, --compression off', judge: 'throughput', target: 2.0, rssTarget: true },
  { scenario: 'huge-off', step: 'restore', label: 'restore, 10 GiB', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'many-auto', step: 'backup', label: 'first backup, 200 000 files, compression auto', judge: 'throughput', target: 1.5, rssTarget: true },
  { scenario: 'many-auto', step: 'rebackup', label: 're-backup (no change), 200 000 files', judge: 'time', target: 0.5, rssTarget: true },
  { scenario: 'many-auto', step: 'restore', label: 'restore, 200 000 files', judge: 'throughput', target: 1.5, rssTarget: true },
];

/**
 * Issue 17's flatness targets: the peak RSS of a bigger job over the same step's on the base corpus
 * (10 GiB within 10% of 1 GiB; many files within 20% of 20 000).
 */
export const FLATNESS: readonly { scenario: string; base: string; step: StepName; label: string; limit: number }[] = [
  { scenario: 'huge-off', base: 'big-off', step: 'backup', label: 'first backup, 10 GiB ÷ 1 GiB', limit: 1.1 },
  { scenario: 'huge-off', base: 'big-off', step: 'restore', label: 'restore, 10 GiB ÷ 1 GiB', limit: 1.1 },
  { scenario: 'many-auto', base: 'small-auto', step: 'backup', label: 'first backup, 200 000 ÷ 20 000 files', limit: 1.2 },
  { scenario: 'many-auto', base: 'small-auto', step: 'rebackup', label: 're-backup, 200 000 ÷ 20 000 files', limit: 1.2 },
  { scenario: 'many-auto', base: 'small-auto', step: 'restore', label: 'restore, 200 000 ÷ 20 000 files', limit: 1.2 },
];

/** The flatness lines as markdown, for the pairs of figures this run has both of. */
export function flatnessTable(figures: readonly FigureResult[]): string {
  const rss = (scenario: string, step: StepName, tool: ToolId): number | undefined => {
    const f = figures.find((x) => x.def.scenario === scenario && x.def.step === step)?.tools[tool];
    return f && f.ok > 0 ? f.peakRssMiB : undefined;
  };
  const lines = ['| peak RSS | Stowage (MiB) | Stowage ratio | restic 0.19.1 (MiB) | restic ratio | target | met? |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const f of FLATNESS) {
    const [sBig, sBase, rBig, rBase] = [rss(f.scenario, f.step, 'stowage'), rss(f.base, f.step, 'stowage'), rss(f.scenario, f.step, 'restic'), rss(f.base, f.step, 'restic')];
    if (sBig === undefined && rBig === undefined) continue;
    const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
    const show = (v?: number, digits = 0) => (v === undefined ? '—' : v.toFixed(digits));
    const sr = ratio(sBig, sBase);
    const met = sr === undefined ? '—' : sr <= f.limit ? 'yes' : '**no**';
    lines.push(`| ${f.label} | ${show(sBig)} / ${show(sBase)} | ${show(sr, 2)}× | ${show(rBig)} / ${show(rBase)} | ${show(ratio(rBig, rBase), 2)}× | ≤ ${f.limit.toFixed(1)}× | ${met} |`);
  }
  return lines.length > 2 ? lines.join('\n') : '';
}

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

export type Metric = 'MiB/s' | 'wall s' | 'CPU s' | 'peak RSS MiB' | 'bytes per blob' | 'bytes per blob, heap + external growth';

export interface Row {
  figure: string;
  metric: Metric;
  stowage?: number;
  restic?: number;
  restic014?: number;
  /** kopia 0.21.1, on the rows it runs (first backup and restore of big-off and small-auto). */
  kopia?: number;
  /** Stowage's value over restic 0.19's for this row's metric. */
  ratio?: number;
  /** Stowage's value over kopia's for this row's metric (reported only; no target). */
  ratioKopia?: number;
  /** kopia ran this figure (so an empty kopia cell is a failure, not "not run"). */
  kopiaAttempted?: boolean;
  /** e.g. "≥ 2.0×"; absent when the row is reported only. */
  target?: string;
  met?: boolean;
  /**
   * What a cell shows instead of the number: a reference value that was not measured here, or a
   * dash where the tool has no such figure (otherwise an empty cell reads FAIL).
   */
  text?: Partial<Record<ToolId, string>>;
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
    const kopia = get('kopia');
    const ratioKopia = stowage !== undefined && kopia !== undefined && kopia > 0 ? stowage / kopia : undefined;
    const r: Row = { figure: def.label, metric, stowage, restic, restic014: get('restic014'), kopia, ratio, ratioKopia };
    if (t.kopia) r.kopiaAttempted = true;
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
    const wall = row('wall s', 'wallSeconds', { target: def.target!, atLeast: false });
    if (def.noThroughputRow) return [wall, row('CPU s', 'cpuSeconds'), row('peak RSS MiB', 'peakRssMiB', rss)];
    return [wall, row('MiB/s', 'mibPerSecond'), row('CPU s', 'cpuSeconds'), row('peak RSS MiB', 'peakRssMiB', rss)];
  }
  return [row('wall s', 'wallSeconds'), row('CPU s', 'cpuSeconds'), row('peak RSS MiB', 'peakRssMiB', rss)];
}

// The index figures come from bench/index-memory.ts (one child process per run), not from a
// command of each tool: Stowage's master index with synthetic entries, against fixed targets.

/** What `bench/index-memory.ts --json` prints (the fields the table uses). */
export interface IndexMemoryResult {
  entries: number;
  /** The index's own accounting (MasterIndex.memoryBytes()) over the entries. */
  indexBytesPerBlob: number;
  /** The process's JS heap and external (typed array) growth after GC, over the entries. */
  heapGrowthPerBlob: number;
  externalGrowthPerBlob: number;
  load: { wallSeconds: number; cpuSeconds: number };
}

/**
 * restic's in-memory index entry, 56 bytes on 64-bit platforms (the figure restic documents; see
 * restic/restic#21937). A reference value: restic's index memory is not measured here.
 */
export const RESTIC_INDEX_BYTES_PER_BLOB = 56;
export const INDEX_BYTES_PER_BLOB_TARGET = 40;
export const INDEX_LOAD_SECONDS_TARGET = 2;

/** The index rows: the median over the runs that produced a result; FAIL when none did. */
export function indexRows(results: readonly (IndexMemoryResult | undefined)[]): Row[] {
  const ok = results.filter((r): r is IndexMemoryResult => r !== undefined);
  const med = (f: (r: IndexMemoryResult) => number) => (ok.length ? median(ok.map(f)) : undefined);
  const entries = ok[0]?.entries ?? 5_000_000;
  const n = entries % 1_000_000 === 0 ? `${entries / 1_000_000}M` : entries.toLocaleString('en');
  const noRestic = { restic: '—', restic014: '—' };

  const bytes = med((r) => r.indexBytesPerBlob);
  const growth = med((r) => r.heapGrowthPerBlob + r.externalGrowthPerBlob);
  const wall = med((r) => r.load.wallSeconds);
  const cpu = med((r) => r.load.cpuSeconds);
  return [
    {
      figure: `index memory, ${n} entries`,
      metric: 'bytes per blob',
      stowage: bytes,
      restic: RESTIC_INDEX_BYTES_PER_BLOB,
      ratio: bytes !== undefined ? bytes / RESTIC_INDEX_BYTES_PER_BLOB : undefined,
      target: `≤ ${INDEX_BYTES_PER_BLOB_TARGET} B`,
      met: bytes !== undefined && bytes <= INDEX_BYTES_PER_BLOB_TARGET,
      text: { restic: `${RESTIC_INDEX_BYTES_PER_BLOB} (documented, not measured)`, restic014: '—' },
    },
    // The process's view of the same memory, as a cross-check of the index's own accounting.
    { figure: `index memory, ${n} entries`, metric: 'bytes per blob, heap + external growth', stowage: growth, text: noRestic },
    {
      figure: `index load, ${n} entries`,
      metric: 'wall s',
      stowage: wall,
      target: `< ${INDEX_LOAD_SECONDS_TARGET} s`,
      met: wall !== undefined && wall < INDEX_LOAD_SECONDS_TARGET,
      text: noRestic,
    },
    { figure: `index load, ${n} entries`, metric: 'CPU s', stowage: cpu, text: noRestic },
  ];
}

function num(v: number | undefined, metric: Metric): string {
  if (v === undefined || !Number.isFinite(v)) return 'FAIL';
  if (metric.startsWith('bytes per blob')) return v.toFixed(1);
  if (metric === 'MiB/s' || metric === 'peak RSS MiB') return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/**
 * The comparison table as markdown; the restic 0.14 column appears when it was measured, the
 * kopia columns (its value and Stowage / kopia) when kopia was.
 */
export function markdownTable(figures: readonly { rows: readonly Row[] }[], withRestic014: boolean, withKopia = false): string {
  const head = ['figure', 'Stowage', 'restic 0.19.1', 'ratio', ...(withKopia ? ['kopia 0.21.1', 'Stowage / kopia'] : []), 'target', 'met?', ...(withRestic014 ? ['restic 0.14'] : [])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((h, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const f of figures) {
    for (const r of f.rows) {
      // kopia runs only some figures: an empty cell there means "not run", not FAIL.
      const kopiaRan = r.kopia !== undefined || r.ratioKopia !== undefined;
      const cells = [
        `${r.figure}: ${r.metric}`,
        r.text?.stowage ?? num(r.stowage, r.metric),
        r.text?.restic ?? num(r.restic, r.metric),
        r.ratio === undefined ? '—' : `${r.ratio.toFixed(2)}×`,
        ...(withKopia ? [r.text?.kopia ?? (kopiaRan || r.kopiaAttempted ? num(r.kopia, r.metric) : '—'), r.ratioKopia === undefined ? '—' : `${r.ratioKopia.toFixed(2)}×`] : []),
        r.target ?? '',
        r.met === undefined ? '' : r.met ? 'yes' : '**no**',
        ...(withRestic014 ? [r.text?.restic014 ?? num(r.restic014, r.metric)] : []),
      ];
      lines.push(`| ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}
