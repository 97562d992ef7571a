import path from 'node:path';
import { InvalidInputError, StowageError } from '../../errors.ts';
import { planRestore, restore } from '../../snapshot/operations/restore/index.ts';
import { formatDuration } from '../progress.ts';
import { formatGoDuration } from '../../operator/format.ts';
import { loadSnapshot } from '../../snapshot/engine/select.ts';
import type { Command } from '../context.ts';
import { readPatternFiles } from '../patterns.ts';
import { OVERWRITE_MODES, type OverwriteMode } from '../../snapshot/operations/restore/overwrite.ts';
import { FlagError } from '../args.ts';
import { snapshotString } from './copy.ts';
import { xattrSelector } from '../../snapshot/operations/restore/metadata.ts';
import { FILTER_FLAGS, filterFrom, withRepo, formatBytes, splitSnapshotRef, findSubtree, maxMemoryFrom } from '../context.ts';

export const restoreCommand: Command = {
  summary: 'Extract a snapshot into a folder',
  usage: '[flags] SNAPSHOT[:SUBFOLDER]',
  flags: [
    ...FILTER_FLAGS,
    { name: 'target', short: 't', kind: 'string', arg: 'DIR', help: 'folder to restore into (required)' },
    { name: 'include', short: 'i', kind: 'list', arg: 'PATTERN', help: 'restore only matching paths (repeatable)' },
    { name: 'exclude', short: 'e', kind: 'list', arg: 'PATTERN', help: 'do not restore matching paths (repeatable)' },
    { name: 'dry-run', kind: 'bool', help: 'do not write any data, just show what would be done (with --verbose: every entry)' },
    { name: 'overwrite', kind: 'string', arg: 'BEHAVIOR', help: 'overwrite behavior, one of (always|if-changed|if-newer|never) (default always)' },
    { name: 'verify', kind: 'bool', help: 'verify restored files content' },
    { name: 'sparse', kind: 'bool', help: 'restore files as sparse' },
    { name: 'ownership-by-name', kind: 'bool', help: 'restore file ownership by user name and group name (except POSIX ACLs)' },
    { name: 'delete', kind: 'bool', help: 'delete files from target directory if they do not exist in snapshot' },
    { name: 'include-file', kind: 'list', arg: 'FILE', help: 'read include patterns from a file (repeatable)' },
    { name: 'exclude-file', kind: 'list', arg: 'FILE', help: 'read exclude patterns from a file (repeatable)' },
    { name: 'include-xattr', kind: 'list', arg: 'PATTERN', help: 'include xattr by pattern (can be specified multiple times)' },
    { name: 'exclude-xattr', kind: 'list', arg: 'PATTERN', help: 'exclude xattr by pattern (can be specified multiple times)' },
    { name: 'iinclude', kind: 'list', arg: 'PATTERN', help: 'same as --include but ignores the casing of filenames' },
    { name: 'iexclude', kind: 'list', arg: 'PATTERN', help: 'same as --exclude but ignores the casing of filenames' },
    { name: 'iinclude-file', kind: 'list', arg: 'FILE', help: 'same as --include-file but ignores casing of filenames in patterns' },
    { name: 'iexclude-file', kind: 'list', arg: 'FILE', help: 'same as --exclude-file but ignores casing of filenames in patterns' },
  ],
  async run(ctx) {
    const refArg = ctx.flags.positional[0];
    if (!refArg) throw new InvalidInputError('no snapshot ID specified, specify snapshot ID or use special ID "latest"');
    const target = ctx.flags.string('target');
    if (!target) throw new InvalidInputError('please specify a directory to restore to (--target)');
    const patterns = async (flag: string) => [...ctx.flags.list(flag), ...(await readPatternFiles(ctx.flags.list(`${flag}-file`), ctx.env))];
    const selection = {
      include: await patterns('include'),
      exclude: await patterns('exclude'),
      iinclude: await patterns('iinclude'),
      iexclude: await patterns('iexclude'),
    };
    if ((selection.include.length || selection.iinclude.length) && (selection.exclude.length || selection.iexclude.length)) {
      throw new InvalidInputError('exclude and include patterns are mutually exclusive');
    }
    const filtered = Object.values(selection).some((l) => l.length > 0);
    if (ctx.flags.bool('dry-run') && ctx.flags.bool('verify')) throw new InvalidInputError('--dry-run and --verify are mutually exclusive');
    if (ctx.flags.bool('delete') && path.resolve(target) === '/' && !filtered) throw new InvalidInputError("'--target / --delete' must be combined with an include or exclude filter");
    const xattrs = { includeXattrs: ctx.flags.list('include-xattr'), excludeXattrs: ctx.flags.list('exclude-xattr') };
    // Checked before anything is read (restic: once the index is loaded; the same error).
    xattrSelector(xattrs.includeXattrs, xattrs.excludeXattrs);
    const overwrite = (ctx.flags.string('overwrite') ?? 'always') as OverwriteMode;
    if (!OVERWRITE_MODES.includes(overwrite)) throw new FlagError(`invalid argument ${JSON.stringify(overwrite)} for "--overwrite" flag: invalid overwrite behavior ${JSON.stringify(overwrite)}, must be one of (${OVERWRITE_MODES.join('|')})`);
    const [ref, sub] = splitSnapshotRef(refArg);
    return withRepo(ctx, 'shared', async (r) => {
      const snap = await loadSnapshot(r, ref, filterFrom(ctx.flags, ctx.env));
      const repo = await r.loadIndex({ signal: ctx.signal });
      const tree = sub ? await findSubtree(repo, snap.snapshot.tree, sub) : snap.snapshot.tree;
      // restic's first line: "restoring snapshot 1a2b3c4d of [/a] at <Go time> by user@host to DIR".
      if (!ctx.quiet && !ctx.json) ctx.out(`restoring ${snapshotString(snap)} to ${target}\n`);
      const started = performance.now();
      if (ctx.flags.bool('dry-run')) {
        // restic 0.19's lines (restic: -vv; here --verbose), "restored", "updated", "unchanged"
        // and "deleted", in its order (planRestore's), then "Summary: Restored N files/dirs
        // (BYTES) in M:SS[, skipped …][, deleted …]"; the JSON as restic's. The target is read
        // as restic reads it: its files compared with the snapshot's.
        const counts = { filesRestored: 0, dirsRestored: 0, bytesRestored: 0, dirsOnTheWay: 0, filesSkipped: 0, bytesSkipped: 0, othersSkipped: 0, deleted: 0 };
        await planRestore(repo, tree, {
          ...selection,
          target,
          overwrite,
          delete: ctx.flags.bool('delete'),
          signal: ctx.signal,
          onItem: (item) => {
            if (item.action === 'deleted') counts.deleted++;
            else if (item.action === 'unchanged') {
              counts.filesSkipped++;
              counts.bytesSkipped += item.size;
              // Links and special files were counted in before they were left (restic's count).
              if (item.type !== 'file' || item.hardLink) counts.othersSkipped++;
            } else {
              counts.filesRestored++;
              counts.bytesRestored += item.size;
              if (item.onTheWay) counts.dirsOnTheWay++;
            }
            if (!ctx.verbose) return;
            const p = item.path.toString();
            if (ctx.json) ctx.out(JSON.stringify({ message_type: 'verbose_status', action: item.action, item: p, size: item.size }) + '\n');
            else if (!ctx.quiet) {
              const sized = item.action === 'unchanged' || (item.action !== 'deleted' && item.type === 'file' && !item.hardLink);
              ctx.out(`${item.action.padEnd(9)} ${p}${sized ? ` with size ${formatBytes(item.size)}` : ''}\n`);
            }
          },
        });
        if (ctx.json) ctx.out(restoreSummaryJson(counts, (performance.now() - started) / 1000));
        else if (!ctx.quiet) ctx.out(restoreSummary(counts, (performance.now() - started) / 1000));
        return 0;
      }
      const progress = ctx.progress('restore');
      let res: Awaited<ReturnType<typeof restore>>;
      try {
        res = await restore(repo, tree, {
          target,
          ...selection,
          ...xattrs,
          delete: ctx.flags.bool('delete'),
          overwrite,
          verify: ctx.flags.bool('verify'),
          sparse: ctx.flags.bool('sparse'),
          ownershipByName: ctx.flags.bool('ownership-by-name'),
          onDelete: (p) => {
            if (ctx.verbose && !ctx.quiet && !ctx.json) {
              progress.clear();
              ctx.out(`deleted   ${p}\n`);
            }
          },
          memoryLimit: maxMemoryFrom(ctx),
          signal: ctx.signal,
          onWarning: (p, m) => {
            progress.clear();
            ctx.err(`ignoring error for ${p}: ${m}\n`);
          },
          // The restore knows its totals once it has walked the snapshot's trees.
          onProgress: (p) => {
            progress.setTotals({ files: p.totalFiles, dirs: 0, bytes: p.totalBytes });
            progress.update(p);
          },
        });
      } finally {
        progress.finish();
      }
      if (ctx.json) {
        ctx.out(restoreSummaryJson(res, (performance.now() - started) / 1000));
      } else if (!ctx.quiet) ctx.out(restoreSummary(res, (performance.now() - started) / 1000));
      if (res.verified) {
        // As restic: each mismatch reported, then a fatal count.
        for (const e of res.verified.errors) ctx.err(`ignoring error for ${e.path}: ${e.message}\n`);
        if (res.verified.errors.length > 0) throw new StowageError('INTEGRITY', `There were ${res.verified.errors.length} errors`);
        // restic's time: Go's duration rounded to the millisecond ("12ms", "1.234s").
        const took = formatGoDuration(BigInt(Math.round(res.verified.durationMs)) * 1_000_000n);
        if (!ctx.quiet && !ctx.json) ctx.out(`verifying files in ${target}\nfinished verifying ${res.verified.files} files in ${target} (took ${took})\n`);
      }
      return 0;
    });
  },
};

/**
 * restic 0.19's last line of a restore: "Summary: Restored N files/dirs (SIZE) in M:SS", where N
 * counts files, folders and other entries alike. restic counts what it set out to restore apart
 * from what it finished: folders made only on the way to included entries are finished but were
 * not counted in, links and special files `--overwrite` leaves were counted in but not finished;
 * when the two differ the line is "Restored N / M files/dirs (SIZE / SIZE)". Entries left as they
 * were (`--overwrite`) add ", skipped K files/dirs SIZE", and `--delete` ", deleted K files/dirs"
 * when it removed something.
 */
export function restoreSummary(res: SummaryCounts, seconds: number): string {
  const { finished, total } = entryCounts(res);
  const bytes = formatBytes(res.bytesRestored);
  let line = total === finished
    ? `Summary: Restored ${finished} files/dirs (${bytes}) in ${formatDuration(seconds)}`
    : `Summary: Restored ${finished} / ${total} files/dirs (${bytes} / ${bytes}) in ${formatDuration(seconds)}`;
  if (res.filesSkipped) line += `, skipped ${res.filesSkipped} files/dirs ${formatBytes(res.bytesSkipped ?? 0)}`;
  if (res.deleted) line += `, deleted ${res.deleted} files/dirs`;
  return `${line}\n`;
}

/** What a restore's summary is made of (a RestoreResult has all of it). */
interface SummaryCounts {
  filesRestored: number;
  dirsRestored: number;
  othersRestored?: number;
  bytesRestored: number;
  filesSkipped?: number;
  bytesSkipped?: number;
  deleted?: number;
  dirsOnTheWay?: number;
  othersSkipped?: number;
}

/** restic's two entry counts: those it finished and those it counted in (see {@link restoreSummary}). */
function entryCounts(res: SummaryCounts): { finished: number; total: number } {
  const finished = res.filesRestored + res.dirsRestored + (res.othersRestored ?? 0);
  return { finished, total: finished - (res.dirsOnTheWay ?? 0) + (res.othersSkipped ?? 0) };
}

/** restic 0.19's JSON summary: its keys in its order, each left out when 0 (Go's omitempty). */
export function restoreSummaryJson(res: SummaryCounts, seconds: number): string {
  const { finished, total } = entryCounts(res);
  const fields: Array<[string, number]> = [
    ['seconds_elapsed', Math.floor(seconds)],
    ['total_files', total],
    ['files_restored', finished],
    ['files_skipped', res.filesSkipped ?? 0],
    ['files_deleted', res.deleted ?? 0],
    ['total_bytes', res.bytesRestored],
    ['bytes_restored', res.bytesRestored],
    ['bytes_skipped', res.bytesSkipped ?? 0],
  ];
  const out: Record<string, string | number> = { message_type: 'summary' };
  for (const [k, v] of fields) if (v !== 0) out[k] = v;
  return JSON.stringify(out) + '\n';
}
