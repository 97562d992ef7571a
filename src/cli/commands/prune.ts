import { InvalidInputError } from '../../errors.ts';
import { executePrune, planPrune, type PruneMessageLevel, type PrunePhase, type PruneProgress, type PruneRetentionReport, type PruneStats } from '../../snapshot/operations/prune.ts';
import type { Command, CommandContext } from '../context.ts';
import { compressionFrom, formatBytes, packSizeFrom, withRepo } from '../context.ts';
import { formatDuration, type ProgressReporter } from '../progress.ts';

// `prune`: restic's plan, statistics and messages. On a terminal a status line counts each step
// (restic's progress counters); restic has no JSON status for prune, so --json prints only the
// summary.

/** What the status line counts in each phase of a prune. */
export const PRUNE_STEPS: Readonly<Record<PrunePhase, string>> = {
  snapshots: 'snapshots',
  trees: 'trees',
  packs: 'packs processed',
  unreferenced: 'unreferenced packs deleted',
  repack: 'packs repacked',
  index: 'index files rewritten',
  'delete-index': 'old index files deleted',
  'delete-packs': 'packs deleted',
};

/** restic's progress counters of a prune, by phase (the scan of the trees has none). */
const RESTIC_COUNTERS: Readonly<Partial<Record<PrunePhase, string>>> = {
  snapshots: 'snapshots',
  packs: 'packs processed',
  unreferenced: 'files deleted',
  repack: 'packs repacked',
  index: 'indexes processed',
  'delete-index': 'old indexes deleted',
  'delete-packs': 'files deleted',
};

/**
 * restic's prune counters in their last state, one line as each ends (restic prints them where it
 * draws no bar too): `[0:00] 100.00%  21 / 21 packs processed`. A counter ends when the phase
 * changes, a message is printed, or {@link PruneCounters.flush} is called.
 */
export class PruneCounters {
  readonly #out: (text: string) => void;
  readonly #labels: Readonly<Record<string, string | undefined>>;
  #last: { phase: string; done: number; total: number; started: number } | undefined;

  /**
   * `out` receives each line; pass a no-op where nothing is printed (--json, --quiet). `labels`
   * names restic's counter of each phase (default: prune's); phases without one print nothing.
   */
  constructor(out: (text: string) => void, labels: Readonly<Record<string, string | undefined>> = RESTIC_COUNTERS) {
    this.#out = out;
    this.#labels = labels;
  }

  /** Records a step; prints the previous phase's counter when the phase changed. */
  step(p: PruneProgress | { phase: string; done: number; total?: number }): void {
    if (this.#last && this.#last.phase !== p.phase) this.flush();
    if (!this.#labels[p.phase]) return;
    const started = this.#last?.started ?? performance.now();
    this.#last = { phase: p.phase, done: p.done, total: p.total ?? p.done, started };
  }

  /** Prints the counter of the phase in progress, if any. */
  flush(): void {
    const c = this.#last;
    this.#last = undefined;
    if (!c) return;
    const pct = c.total === 0 ? 100 : (c.done / c.total) * 100;
    this.#out(`[${formatDuration((performance.now() - c.started) / 1000)}] ${pct.toFixed(2)}%  ${c.done} / ${c.total} ${this.#labels[c.phase]}\n`);
  }
}

/** A prune's onProgress that draws the status line. */
export function pruneStatus(progress: ProgressReporter): (p: PruneProgress) => void {
  return (p) => progress.step({ label: PRUNE_STEPS[p.phase], done: p.done, total: p.total });
}

export const pruneCommand: Command = {
  summary: 'Remove unneeded data from the repository',
  usage: '[flags]',
  flags: [
    { name: 'max-unused', kind: 'string', arg: 'LIMIT', help: "tolerate this much unused data: bytes with suffix k/K, m/M, g/G, t/T, a value in %, or 'unlimited' (default 5%)" },
    { name: 'max-repack-size', kind: 'string', arg: 'SIZE', help: 'stop after repacking this much data in total (suffixes k/K, m/M, g/G, t/T)' },
    { name: 'repack-cacheable-only', kind: 'bool', help: 'only repack packs which are cacheable (tree packs)' },
    { name: 'repack-small', kind: 'bool', help: 'repack pack files below 80% of the pack size (restic 0.14-0.16; see --repack-smaller-than)' },
    { name: 'repack-smaller-than', kind: 'string', arg: 'SIZE', help: 'repack pack files below this size (suffixes k/K, m/M)' },
    { name: 'repack-uncompressed', kind: 'bool', help: 'repack all uncompressed data' },
    { name: 'dry-run', short: 'n', kind: 'bool', help: 'do not modify the repository, just print what would be done' },
    { name: 'respect-retention', kind: 'bool', help: 'keep packs under S3 Object Lock retention (one request per pack to delete or repack; default with -o s3.object-lock)' },
  ],
  async run(ctx) {
    const dryRun = ctx.flags.bool('dry-run');
    if (ctx.flags.bool('no-lock') && !dryRun) throw new InvalidInputError('--no-lock is only applicable in combination with --dry-run for prune command');
    const compression = compressionFrom(ctx);
    const repackUncompressed = ctx.flags.bool('repack-uncompressed');
    if (repackUncompressed && compression === 'off') throw new InvalidInputError('disabled compression and `--repack-uncompressed` are mutually exclusive');
    const packSize = packSizeFrom(ctx);
    const text = !ctx.json && !ctx.quiet;
    const counters = new PruneCounters((line) => {
      if (text) ctx.out(line);
    });
    const onMessage = (m: string, level: PruneMessageLevel) => {
      if (level === 'warning') ctx.err(m + '\n');
      else if (text && (level === 'info' || ctx.verbose)) {
        counters.flush();
        ctx.out(m + '\n');
      }
    };
    // The lock is taken before the index is loaded, so the plan sees everything that exists.
    return withRepo(ctx, 'exclusive', async (repo) => {
      const progress = ctx.progress('prune');
      const status = pruneStatus(progress);
      const onProgress = (p: PruneProgress): void => {
        status(p);
        counters.step(p);
      };
      try {
        const indexed = await repo.loadIndex({ signal: ctx.signal, onProgress: (done, total) => progress.step({ label: 'index files loaded', done, total }) });
        const plan = await planPrune(indexed, {
          maxUnused: ctx.flags.string('max-unused') ?? '5%',
          maxRepackSize: ctx.flags.string('max-repack-size'),
          repackCacheableOnly: ctx.flags.bool('repack-cacheable-only'),
          repackSmall: ctx.flags.bool('repack-small'),
          repackSmallerThan: ctx.flags.string('repack-smaller-than'),
          repackUncompressed,
          packSize,
          ...(ctx.flags.bool('respect-retention') ? { retention: true } : {}),
          signal: ctx.signal,
          onMessage,
          onProgress,
        });
        counters.flush();
        if (dryRun) onMessage('\nWould have made the following changes:', 'info');
        if (ctx.json) ctx.out(JSON.stringify({ ...resticSummary(plan.stats), ...(plan.retention ? { retention: retentionJson(plan.retention) } : {}) }) + '\n');
        else if (!ctx.quiet) {
          printStats(ctx, plan.stats);
          if (plan.retention) printRetention(ctx, plan.retention);
        }
        if (dryRun) {
          const list = (ids: readonly string[]) => ids.map((id) => id.slice(0, 8)).join(' ');
          onMessage('Repeated prune dry-runs can report slightly different amounts of data to keep or repack. This is expected behavior.\n', 'verbose');
          if (plan.removeUnreferenced.length) onMessage(`Would have removed the following unreferenced packs:\n{${list(plan.removeUnreferenced)}}\n`, 'verbose');
          onMessage(`Would have repacked and removed the following packs:\n{${list(plan.repack)}}\n`, 'verbose');
          onMessage(`Would have removed the following no longer used packs:\n{${list(plan.remove)}}\n`, 'verbose');
          return 0;
        }
        // Files that could not be deleted were reported as warnings; like restic, they do not fail
        // the prune (the next one deletes them).
        await executePrune(indexed, plan, { lock: false, compression, packSize, signal: ctx.signal, onMessage, onProgress });
        counters.flush();
        return 0;
      } finally {
        progress.finish();
      }
    });
  },
};

/** restic's JSON summary of a prune (restic ≥ 0.19's PruneStats), field for field. */
export function resticSummary(s: PruneStats): Record<string, unknown> {
  return {
    message_type: 'summary',
    blobs: {
      used: s.blobs.used, duplicate: s.blobs.duplicate, unused: s.blobs.unused, total: s.blobs.total, repack: s.blobs.repack,
      repack_remove: s.blobs.repackRemove, remove: s.blobs.remove, remove_total: s.blobs.removeTotal, remaining: s.blobs.remaining,
    },
    bytes: {
      used: s.bytes.used, duplicate: s.bytes.duplicate, unused: s.bytes.unused, unreferenced: s.bytes.unreferenced,
      uncompressed: s.bytes.uncompressed, total: s.bytes.total, repack: s.bytes.repack, repack_remove: s.bytes.repackRemove,
      remove: s.bytes.remove, remove_total: s.bytes.removeTotal, remaining: s.bytes.remaining, remaining_unused: s.bytes.remainingUnused,
    },
    packfiles: {
      used: s.packs.used, unused: s.packs.unused, partly_used: s.packs.partlyUsed, unreferenced: s.packs.unreferenced, total: s.packs.total,
      keep: s.packs.keep, repack: s.packs.repack, remove: s.packs.remove, remove_total: s.packs.removeTotal,
    },
  };
}

/** The retention report in --json: snake_case, dates in RFC 3339. */
function retentionJson(r: PruneRetentionReport): Record<string, unknown> {
  return {
    now: r.now.toISOString(),
    requests: r.requests,
    reclaimable_now: r.reclaimableNow,
    later: r.later.map((l) => ({ file: l.file, retain_until: l.retainUntil.toISOString(), mode: l.mode, bytes: l.bytes })),
    locked: r.locked,
  };
}

function printRetention(ctx: CommandContext, r: PruneRetentionReport): void {
  const lines = [
    `object retention: ${r.requests} retention reads`,
    `reclaimable now:   ${String(r.reclaimableNow.packs).padStart(6)} packs / ${formatBytes(r.reclaimableNow.bytes)}`,
    `locked (kept):     ${String(r.locked.packs).padStart(6)} packs / ${formatBytes(r.locked.bytes)}`,
  ];
  // One line per day on which retained bytes become reclaimable.
  const byDay = new Map<string, number>();
  for (const l of r.later) {
    const day = l.retainUntil.toISOString().slice(0, 10);
    byDay.set(day, (byDay.get(day) ?? 0) + l.bytes);
  }
  for (const [day, bytes] of byDay) lines.push(`reclaimable from ${day}: ${formatBytes(bytes)}`);
  ctx.out(lines.join('\n') + '\n\n');
}

/** Go's "%3.2f%%" of numerator/denominator, capped at 100; empty when the denominator is 0. */
function percent(n: number, d: number): string {
  if (d === 0) return '';
  return `${Math.min(100, (100 * n) / d).toFixed(2)}%`;
}

/**
 * The statistics as restic prints them (the first and last blocks only with --verbose). Each
 * entry is one message of restic's printer, which ends every message with one newline.
 */
export function printStats(ctx: CommandContext, s: PruneStats): void {
  const lines: string[] = [];
  const v = (l: string) => {
    if (ctx.verbose) lines.push(l);
  };
  const p = (l: string) => lines.push(l);
  const n = (x: number) => String(x).padStart(10);
  v(`\nused:         ${n(s.blobs.used)} blobs / ${formatBytes(s.bytes.used)}`);
  if (s.blobs.duplicate > 0) v(`duplicates:   ${n(s.blobs.duplicate)} blobs / ${formatBytes(s.bytes.duplicate)}`);
  v(`unused:       ${n(s.blobs.unused)} blobs / ${formatBytes(s.bytes.unused)}`);
  if (s.bytes.unreferenced > 0) v(`unreferenced:                    ${formatBytes(s.bytes.unreferenced)}`);
  v(`total:        ${n(s.blobs.total)} blobs / ${formatBytes(s.bytes.total)}`);
  v(`unused size: ${percent(s.bytes.duplicate + s.bytes.unused, s.bytes.total)} of total size`);
  p(`\nto repack:    ${n(s.blobs.repack)} blobs / ${formatBytes(s.bytes.repack)}`);
  p(`this removes: ${n(s.blobs.repackRemove)} blobs / ${formatBytes(s.bytes.repackRemove)}`);
  p(`to delete:    ${n(s.blobs.remove)} blobs / ${formatBytes(s.bytes.remove + s.bytes.unreferenced)}`);
  p(`total prune:  ${n(s.blobs.removeTotal)} blobs / ${formatBytes(s.bytes.removeTotal)}`);
  if (s.bytes.uncompressed > 0) p(`not yet compressed:              ${formatBytes(s.bytes.uncompressed)}`);
  p(`remaining:    ${n(s.blobs.remaining)} blobs / ${formatBytes(s.bytes.remaining)}`);
  p(`unused size after prune: ${formatBytes(s.bytes.remainingUnused)} (${percent(s.bytes.remainingUnused, s.bytes.remaining)} of remaining size)`);
  p('');
  v(`totally used packs: ${n(s.packs.used)}`);
  v(`partly used packs:  ${n(s.packs.partlyUsed)}`);
  v(`unused packs:       ${n(s.packs.unused)}\n`);
  v(`to keep:      ${n(s.packs.keep)} packs`);
  v(`to repack:    ${n(s.packs.repack)} packs`);
  v(`to delete:    ${n(s.packs.remove)} packs`);
  if (s.packs.unreferenced > 0) v(`to delete:    ${n(s.packs.unreferenced)} unreferenced packs\n`);
  ctx.out(lines.join('\n') + '\n');
}
