// `stowage forget`: restic's forget — keep rules, --group-by, snapshot filters, explicit IDs,
// --dry-run, --prune, and --json in restic 0.19's shape.
import { InvalidInputError } from '../../errors.ts';
import type { SnapshotEntry } from '../../snapshot/engine/select.ts';
import { forget, type ForgetPruneOptions } from '../../snapshot/operations/forget.ts';
import type { PruneMessageLevel, PruneProgress } from '../../snapshot/operations/prune.ts';
import { compareGoStrings } from '../../snapshot/model/gojson.ts';
import { PruneCounters, printStats, pruneStatus } from './prune.ts';
import { snapshotTable } from './snapshots.ts';
import { formatDuration } from '../progress.ts';
import {
  type ForgetPlan,
  type RetentionGroup,
  type RetentionPolicy,
  describeRetentionPolicy,
  parseRetentionDuration,
  splitTagList,
} from '../../snapshot/model/retention.ts';
import type { SnapshotFilter, SnapshotGroupBy } from '../../snapshot/model/snapshot.ts';
import { FlagError, type FlagSpec } from '../args.ts';
import type { Command, CommandContext } from '../context.ts';
import { compressionFrom, packSizeFrom, snapshotJson, withRepo } from '../context.ts';

/** restic's exit status when some snapshot files could not be removed. */
const EXIT_PARTIAL = 3;

const COUNT_FLAGS = [
  ['keep-last', 'l', 'last'],
  ['keep-hourly', 'H', 'hourly'],
  ['keep-daily', 'd', 'daily'],
  ['keep-weekly', 'w', 'weekly'],
  ['keep-monthly', 'm', 'monthly'],
  ['keep-yearly', 'y', 'yearly'],
] as const;

const WITHIN_FLAGS = [
  ['keep-within', 'within', ''],
  ['keep-within-hourly', 'withinHourly', 'hourly '],
  ['keep-within-daily', 'withinDaily', 'daily '],
  ['keep-within-weekly', 'withinWeekly', 'weekly '],
  ['keep-within-monthly', 'withinMonthly', 'monthly '],
  ['keep-within-yearly', 'withinYearly', 'yearly '],
] as const;

/** The keep rules as flags (restic's names), shared with `retention extend`. */
export const POLICY_FLAGS: FlagSpec[] = [
  ...COUNT_FLAGS.map(([name, short, what]): FlagSpec => ({
    name, short, kind: 'string', arg: 'n', help: `keep the last n ${what === 'last' ? '' : what + ' '}snapshots ('unlimited' keeps all)`,
  })),
  ...WITHIN_FLAGS.map(([name, , what]): FlagSpec => ({
    name, kind: 'string', arg: 'DURATION', help: `keep ${what}snapshots newer than DURATION (e.g. 1y5m7d2h) relative to the latest snapshot`,
  })),
  { name: 'keep-tag', kind: 'list', arg: 'TAG[,TAG]', help: 'keep snapshots with all these tags (repeatable: any of the lists)' },
];

/** The snapshot filter and grouping flags, shared with `retention extend`. */
export const SELECTION_FLAGS: FlagSpec[] = [
  // forget has no -H for --host: -H is --keep-hourly, as in restic.
  { name: 'host', kind: 'list', arg: 'HOST', help: 'only consider snapshots of this host (repeatable; default $RESTIC_HOST; "" for any)' },
  { name: 'hostname', kind: 'list', arg: 'HOST', help: 'deprecated: use --host' },
  { name: 'tag', kind: 'list', arg: 'TAG[,TAG]', help: 'only consider snapshots with these tags (comma = and; repeat = or)' },
  { name: 'path', kind: 'list', arg: 'PATH', help: 'only consider snapshots including this absolute path (repeatable: all of them)' },
  { name: 'group-by', short: 'g', kind: 'string', arg: 'GROUP', help: "group snapshots by host, paths and/or tags, comma separated ('' for no grouping; default host,paths)" },
];

const FLAGS: FlagSpec[] = [
  ...POLICY_FLAGS,
  ...SELECTION_FLAGS,
  { name: 'unsafe-allow-remove-all', kind: 'bool', help: 'allow deleting all snapshots of a snapshot group (needs a filter)' },
  { name: 'compact', short: 'c', kind: 'bool', help: 'use compact output format' },
  { name: 'dry-run', short: 'n', kind: 'bool', help: 'do not delete anything, just print what would be done' },
  { name: 'prune', kind: 'bool', help: "run the 'prune' command if snapshots have been removed" },
  { name: 'max-unused', kind: 'string', arg: 'LIMIT', help: 'with --prune: tolerate this much unused data (default 5%)' },
  { name: 'max-repack-size', kind: 'string', arg: 'SIZE', help: 'with --prune: stop after repacking this much data' },
  { name: 'repack-cacheable-only', kind: 'bool', help: 'with --prune: only repack packs which are cacheable' },
  { name: 'repack-small', kind: 'bool', help: 'with --prune: deprecated, see --repack-smaller-than' },
  { name: 'repack-uncompressed', kind: 'bool', help: 'with --prune: repack all uncompressed data' },
  { name: 'repack-smaller-than', kind: 'string', arg: 'SIZE', help: 'with --prune: repack pack files below this size' },
];

export const forgetCommand: Command = {
  summary: 'Remove snapshots from the repository',
  usage: '[flags] [SNAPSHOT...]',
  flags: FLAGS,
  async run(ctx) {
    const dryRun = ctx.flags.bool('dry-run');
    const noLock = ctx.flags.bool('no-lock');
    if (noLock && !dryRun) throw new InvalidInputError('--no-lock is only applicable in combination with --dry-run for forget command');
    const policy = policyFrom(ctx);
    const filter = forgetFilterFrom(ctx);
    const groupBy = parseGroupBy(ctx.flags.string('group-by'));
    const ids = ctx.flags.positional;
    const usePolicy = ids.length === 0;
    const text = !ctx.json && !ctx.quiet;
    if (usePolicy && text && (Object.keys(policy).length > 0 || ctx.flags.bool('unsafe-allow-remove-all'))) ctx.out(`Applying Policy: ${describeRetentionPolicy(policy)}\n`);

    let removing = 0;
    let announced = false;
    let deletedLine = false;
    const started = performance.now();
    // restic's deletion counter, in its last state (printed where no status line is drawn too).
    const printDeleted = (deleted: number): void => {
      if (deletedLine || !text || dryRun || deleted === 0) return;
      deletedLine = true;
      ctx.out(`[${formatDuration((performance.now() - started) / 1000)}] 100.00%  ${deleted} / ${deleted} files deleted\n`);
    };
    const counters = new PruneCounters((line) => {
      if (text) ctx.out(line);
    });
    const announce = (): void => {
      if (announced) return;
      announced = true;
      printDeleted(removing);
      ctx.out(dryRun ? `${removing} snapshots would be removed, running prune dry run\n` : `${removing} snapshots have been removed, running prune\n`);
    };
    const onPruneMessage = (m: string, level: PruneMessageLevel) => {
      if (level === 'warning') return ctx.err(m + '\n');
      if (!text || (level === 'verbose' && !ctx.verbose)) return;
      announce();
      counters.flush();
      ctx.out(m + '\n');
    };
    const pruneOptions: ForgetPruneOptions = {
      maxUnused: ctx.flags.string('max-unused') ?? '5%',
      maxRepackSize: ctx.flags.string('max-repack-size'),
      repackCacheableOnly: ctx.flags.bool('repack-cacheable-only'),
      repackSmall: ctx.flags.bool('repack-small'),
      repackSmallerThan: ctx.flags.string('repack-smaller-than'),
      repackUncompressed: ctx.flags.bool('repack-uncompressed'),
      compression: compressionFrom(ctx),
      packSize: packSizeFrom(ctx),
      onMessage: onPruneMessage,
      onPlan: (plan) => {
        counters.flush();
        if (!text) return;
        announce();
        if (dryRun) ctx.out('\nWould have made the following changes:\n');
        printStats(ctx, plan.stats);
      },
    };
    const progress = ctx.flags.bool('prune') ? ctx.progress('prune') : undefined;
    if (progress) {
      const status = pruneStatus(progress);
      pruneOptions.onProgress = (p: PruneProgress) => {
        status(p);
        counters.step(p);
      };
    }

    let json: string | undefined;
    try {
      return await withRepo(ctx, 'none', async (repo) => {
        const result = await forget(repo, {
          policy: usePolicy ? policy : undefined,
          groupBy,
          filter,
          ids: usePolicy ? undefined : ids,
          dryRun,
          unsafeAllowRemoveAll: ctx.flags.bool('unsafe-allow-remove-all'),
          lock: !noLock,
          retryLock: ctx.retryLock(),
          signal: ctx.signal,
          prune: ctx.flags.bool('prune') ? pruneOptions : false,
          onPlan(plan, snapshots) {
            removing = plan.remove.length;
            const byId = new Map(snapshots.map((e) => [e.id as string, e]));
            if (ctx.json) json = forgetJson(plan.groups, byId, groupBy.tags === true);
            else if (!ctx.quiet) printPlan(ctx, plan, byId, groupBy.tags === true);
            if (text && dryRun && plan.remove.length > 0) {
              ctx.out(`Would have removed the following snapshots:\n{${[...plan.remove].sort().map((id) => id.slice(0, 8)).join(' ')}}\n\n`);
            }
          },
        });
        if (ctx.verbose && !ctx.json && !dryRun) for (const id of result.removed) ctx.out(`removed snapshots/${id}\n`);
        for (const f of result.failed) ctx.err(`unable to remove snapshots/${f.id} from the repository: ${f.error}\n`);
        counters.flush();
        printDeleted(result.removed.length + result.failed.length);
        // restic prints the JSON only when a policy made groups.
        if (json !== undefined && result.groups.length > 0) ctx.out(json);
        if (result.failed.length > 0) {
          ctx.err('Fatal: failed to remove one or more snapshots\n');
          return EXIT_PARTIAL;
        }
        return 0;
      });
    } finally {
      progress?.finish();
    }
  },
};

/** The keep flags as a policy (only the rules given). */
export function policyFrom(ctx: CommandContext): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const [name, short, field] of COUNT_FLAGS) {
    const s = ctx.flags.string(name);
    if (s === undefined) continue;
    const n = parsePolicyCount(s, `-${short}, --${name}`);
    if (n !== 0) policy[field] = n;
  }
  for (const [name, field] of WITHIN_FLAGS) {
    const s = ctx.flags.string(name);
    if (s === undefined) continue;
    const d = parseRetentionDuration(s);
    if (d.years < 0 || d.months < 0 || d.days < 0 || d.hours < 0) {
      throw new InvalidInputError(`--${name}: durations containing negative values are not allowed`);
    }
    if (d.years || d.months || d.days || d.hours) policy[field] = d;
  }
  const tags = ctx.flags.list('keep-tag').map(splitTagList);
  if (tags.length) policy.tags = tags;
  return policy;
}

/**
 * restic's ForgetPolicyCount: a base-10 integer ≥ 0, or "unlimited" (-1). `flag` as pflag names
 * it ("-l, --keep-last"); refused with pflag's message (FlagError: no "Fatal: ").
 */
export function parsePolicyCount(s: string, flag: string): number {
  if (s === 'unlimited') return -1;
  const n = /^[+-]?\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n)) {
    const why = Number.isNaN(n) ? 'invalid syntax' : 'value out of range';
    throw new FlagError(`invalid argument ${JSON.stringify(s)} for "${flag}" flag: strconv.ParseInt: parsing ${JSON.stringify(s)}: ${why}`);
  }
  if (n < 0) throw new FlagError(`invalid argument ${JSON.stringify(s)} for "${flag}" flag: negative values not allowed, use 'unlimited' instead`);
  return n;
}

/** restic's --group-by: host(s), path(s), tag(s), comma separated; '' for no grouping. */
export function parseGroupBy(s: string | undefined): SnapshotGroupBy {
  if (s === undefined) return { host: true, paths: true };
  const g: SnapshotGroupBy = {};
  for (const option of s.split(',')) {
    if (option === 'host' || option === 'hosts') g.host = true;
    else if (option === 'path' || option === 'paths') g.paths = true;
    else if (option === 'tag' || option === 'tags') g.tags = true;
    else if (option !== '') throw new InvalidInputError(`unknown grouping option: ${JSON.stringify(option)}`);
  }
  return g;
}

/** forget's filter flags with restic's rules: $RESTIC_HOST as default host, --host "" for any, empty tags kept. */
export function forgetFilterFrom(ctx: CommandContext): SnapshotFilter {
  let hosts = [...ctx.flags.list('hostname'), ...ctx.flags.list('host')];
  if (hosts.length === 0 && ctx.env.RESTIC_HOST) hosts = [ctx.env.RESTIC_HOST];
  if (hosts.length === 1 && hosts[0] === '') hosts = [];
  return { hosts, tags: ctx.flags.list('tag').map(splitTagList), paths: ctx.flags.list('path') };
}

// ---------------------------------------------------------------------------------------------
// Output

/** restic's `forget --json`: an array of {tags, host, paths, keep, remove, reasons}, one per group. */
export function forgetJson(groups: readonly RetentionGroup[], byId: ReadonlyMap<string, SnapshotEntry>, sortTags: boolean): string {
  // restic's grouping sorts every snapshot's paths in place (and its tags when grouping by tags),
  // so the snapshots it prints show them sorted.
  const snapshotObject = (id: string) => {
    const e = byId.get(id)!;
    const sorted = { ...e.snapshot, paths: [...e.snapshot.paths].sort(compareGoStrings) };
    if (sortTags && sorted.tags) sorted.tags = [...sorted.tags].sort(compareGoStrings);
    return snapshotJson({ id: e.id, snapshot: sorted });
  };
  const orNull = <T>(l: T[]) => (l.length ? l : null);
  const out = groups.map((g) => ({
    tags: g.key.tags,
    host: g.key.hostname,
    paths: g.key.paths,
    keep: orNull(g.keep.map((k) => snapshotObject(k.id))),
    remove: orNull(g.remove.map((r) => snapshotObject(r.id))),
    reasons: orNull(g.keep.map((k) => ({ snapshot: snapshotObject(k.id), matches: k.matches }))),
  }));
  return goHtmlEscape(JSON.stringify(out)) + '\n';
}

/** Go's json.Encoder escapes <, >, & and U+2028/U+2029; outside strings JSON has none of them. */
function goHtmlEscape(s: string): string {
  return s.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function printPlan(ctx: CommandContext, plan: ForgetPlan, byId: ReadonlyMap<string, SnapshotEntry>, sortTags: boolean): void {
  const compact = ctx.flags.bool('compact');
  for (const g of plan.groups) {
    if (ctx.verbose) {
      const info: string[] = [];
      if (g.key.hostname) info.push(`host [${g.key.hostname}]`);
      if (g.key.tags) info.push(`tags [${g.key.tags.join(', ')}]`);
      if (g.key.paths) info.push(`paths [${g.key.paths.join(', ')}]`);
      if (info.length) ctx.out(`snapshots for (${info.join(', ')}):\n`);
    }
    // restic's grouping sorts every snapshot's paths in place (and its tags when grouping by
    // tags), so its tables show them sorted.
    const entries = (ids: readonly string[]) =>
      ids.map((id) => {
        const e = byId.get(id)!;
        const snapshot = { ...e.snapshot, paths: [...e.snapshot.paths].sort(compareGoStrings) };
        if (sortTags && snapshot.tags) snapshot.tags = [...snapshot.tags].sort(compareGoStrings);
        return { id: e.id, snapshot };
      });
    if (g.keep.length) {
      ctx.out(`keep ${g.keep.length} snapshots:\n`);
      const reasons = new Map(g.keep.map((k) => [k.id as string, k.matches]));
      ctx.out(snapshotTable(entries(g.keep.map((k) => k.id)), { compact, env: ctx.env, reasons }));
      ctx.out('\n');
    }
    if (g.remove.length) {
      ctx.out(`remove ${g.remove.length} snapshots:\n`);
      ctx.out(snapshotTable(entries(g.remove.map((r) => r.id)), { compact, env: ctx.env }));
      ctx.out('\n');
    }
  }
}
