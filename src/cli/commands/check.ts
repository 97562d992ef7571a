// `check`: restic's checks and output. Like restic 0.19 it holds an exclusive lock (a backup
// running alongside would show up as unindexed packs and missing blobs); --no-lock skips it.
// With --json, errors go to stderr as {"message_type":"error",…} lines and the summary to stdout
// in restic's shape; each error line also carries the problem's code, file, blob and snapshots.
// On a terminal a status line counts each phase; restic has no JSON status for check, so --json
// prints none.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkRepository, parseReadDataSubset, type CheckPhase, type CheckReport } from '../../snapshot/operations/check/index.ts';
import { InvalidInputError } from '../../errors.ts';
import type { Repository } from '../../repository/repository.ts';
import { listSnapshots, loadSnapshot } from '../../snapshot/engine/select.ts';
import { findSnapshotByPrefix } from '../../snapshot/model/snapshot.ts';
import type { Command, CommandContext } from '../context.ts';
import { FILTER_FLAGS, cacheDirFrom, filterFrom, maxMemoryFrom, withRepo } from '../context.ts';
import { formatDuration } from '../progress.ts';

export const checkCommand: Command = {
  summary: 'Check the repository for errors',
  usage: '[flags] [snapshotID ...]',
  flags: [
    { name: 'read-data', kind: 'bool', help: 'read and verify all data packs' },
    { name: 'read-data-subset', kind: 'string', arg: 'SUBSET', help: "read a subset of the data packs: 'n/t' (group n of t), 'x%' (random share) or a size like 500M" },
    { name: 'with-cache', kind: 'bool', help: 'use the existing cache instead of a temporary one' },
    { name: 'check-unused', kind: 'bool', help: 'deprecated in restic and ignored' },
    ...FILTER_FLAGS,
  ],
  async run(ctx) {
    const readData = ctx.flags.bool('read-data');
    const subsetFlag = ctx.flags.string('read-data-subset');
    if (readData && subsetFlag !== undefined) throw new InvalidInputError('check flags --read-data and --read-data-subset cannot be used together');
    // Validate before opening the repository, as restic does.
    const subset = subsetFlag === undefined ? undefined : parseReadDataSubset(subsetFlag);
    const memoryLimit = maxMemoryFrom(ctx);
    const text = !ctx.json;
    // As restic: a temporary cache (removed after), so trees are read pack by pack from the
    // storage and never from a cached copy; --with-cache uses the existing cache instead.
    // Made, as restic makes it, inside the cache folder (else in the temporary folder).
    const temporary = ctx.flags.bool('with-cache') || ctx.flags.bool('no-cache') ? undefined : await temporaryCache(cacheDirFrom(ctx));
    if (temporary && text && !ctx.quiet) ctx.out(`using temporary cache in ${temporary}\n`);
    try {
      return await checkWith(ctx, readData, subset, text, temporary, memoryLimit);
    } finally {
      if (temporary) await rm(temporary, { recursive: true, force: true });
    }
  },
};

async function checkWith(ctx: CommandContext, readData: boolean, subset: ReturnType<typeof parseReadDataSubset> | undefined, text: boolean, temporary: string | undefined, memoryLimit: number | undefined): Promise<number> {
  return withRepo(ctx, 'exclusive', async (repo) => {
    const say = text && !ctx.quiet;
    if (say && !ctx.flags.bool('no-lock')) ctx.out('create exclusive lock for repository\n');
    const snapshotIds = await selectSnapshots(ctx, repo);
    const progress = ctx.progress('check');
    // restic prints its progress bars' last state even where it draws none: the snapshots whose
    // trees were checked, then the packs read.
    const started = performance.now();
    let snapshotsLine = say;
    let packs: { done: number; total: number } | undefined;
    let treesStarted = false;
    let readStarted = false;
    const printPacksLine = (): void => {
      if (say && packs) ctx.out(finalLine(packs.done, packs.total, 'packs'));
      packs = undefined;
    };
    const finalLine = (done: number, total: number, what: string): string =>
      `[${formatDuration((performance.now() - started) / 1000)}] ${(total === 0 ? 100 : (done / total) * 100).toFixed(2)}%  ${done} / ${total} ${what}\n`;
    const printSnapshotsLine = async (): Promise<void> => {
      if (!snapshotsLine) return;
      snapshotsLine = false;
      const n = snapshotIds?.length ?? (await listSnapshots(repo, { signal: ctx.signal })).length;
      ctx.out(finalLine(n, n, 'snapshots'));
    };
    let report: CheckReport;
    try {
      let pending = Promise.resolve();
      report = await checkRepository(repo, {
        readData,
        readDataSubset: subset,
        snapshotIds,
        memoryLimit,
        signal: ctx.signal,
        onMessage: (m) => {
          if (!say) return;
          pending = pending.then(async () => {
            // A message after the trees' phase ends it, one after the reading ends that.
            if (treesStarted) await printSnapshotsLine();
            if (readStarted) printPacksLine();
            ctx.out(m + '\n');
            if (m.startsWith('check snapshots')) treesStarted = true;
            if (m.startsWith('read ')) readStarted = true;
          });
        },
        onProgress: (p) => {
          if (p.phase === 'read-data' && p.total !== undefined) packs = { done: p.done, total: p.total };
          const label = CHECK_STEPS[p.phase];
          if (!label) return;
          // The trees' total grows as they are discovered: no percentage for it.
          const total = p.phase === 'trees' ? undefined : p.total;
          progress.step({ label, done: p.done, total, bytes: p.phase === 'read-data' ? (p.bytes ?? 0) : undefined });
        },
      });
      await pending;
    } finally {
      progress.finish();
    }
    await printSnapshotsLine();
    printPacksLine();
    if (ctx.json) {
      for (const e of report.errors) ctx.err(JSON.stringify({ message_type: 'error', ...e }) + '\n');
      ctx.out(JSON.stringify({
        message_type: 'summary',
        num_errors: report.errors.length,
        broken_packs: report.brokenPacks.length ? report.brokenPacks : null,
        suggest_repair_index: report.suggestRepairIndex,
        suggest_prune: report.suggestPrune,
      }) + '\n');
      return report.ok ? 0 : 1;
    }
    for (const h of report.hints) {
      if (h.code === 'PACK_UNREFERENCED' ? ctx.verbose : !ctx.quiet) ctx.out(h.message + '\n');
    }
    const unreferenced = report.hints.filter((h) => h.code === 'PACK_UNREFERENCED').length;
    if (report.hints.some((h) => h.code === 'PACK_DUPLICATE') && !ctx.quiet) {
      ctx.out("Duplicate packs are non-critical, you can run `stowage repair index' to correct this.\n");
    }
    if (report.hints.some((h) => h.code === 'PACK_MIXED') && !ctx.quiet) {
      ctx.out('Mixed packs with tree and data blobs are non-critical, you can run `stowage prune` to correct this.\n');
    }
    if (unreferenced > 0 && report.ok && !ctx.quiet) {
      ctx.out(`${unreferenced} additional files were found in the repo, which likely contain duplicate data.\nThis is non-critical, you can run \`stowage prune\` to correct this.\n`);
    }
    for (const e of report.errors) {
      ctx.err(`${e.message}\n`);
      if (e.snapshots?.length) ctx.err(`  affects snapshots: ${e.snapshots.map((s) => s.slice(0, 8)).join(' ')}\n`);
      if (e.files?.length && ctx.verbose) ctx.err(`  affects files: ${e.files.join(', ')}${e.moreFiles ? ` and ${e.moreFiles} more` : ''}\n`);
    }
    if (report.errors.some((e) => e.code === 'INDEX_UNREADABLE')) {
      ctx.err("\nThe repository index is damaged and must be repaired. You must run `stowage repair index' to correct this.\n\n");
    } else if (report.brokenPacks.length > 0) {
      // restic's advice, with this command's name.
      ctx.err('\nThe repository contains damaged pack files. These damaged files must be removed to repair the repository. This can be done using the following commands. Please read the troubleshooting guide at https://restic.readthedocs.io/en/stable/077_troubleshooting.html first.\n\n');
      ctx.err(`stowage repair packs ${report.brokenPacks.join(' ')}\nstowage repair snapshots --forget\n\n`);
    }
    if (report.damagedSnapshots.length > 0) {
      ctx.err(`Snapshots with damaged data: ${report.damagedSnapshots.map((s) => s.slice(0, 8)).join(' ')}\n`);
    }
    if (!report.ok) {
      ctx.err('Fatal: repository contains errors\n');
      return 1;
    }
    return 0;
  }, temporary ? { cache: { dir: temporary } } : {});
}

/**
 * What the status line counts in each phase of check. The pack list phase reports only its end
 * (the "check all packs" message says it started), so it has no line of its own.
 */
const CHECK_STEPS: Readonly<Record<CheckPhase, string | undefined>> = {
  index: 'index files',
  packs: undefined,
  trees: 'trees',
  'read-data': 'packs read',
  affected: 'trees searched for damaged files',
};

/** Snapshot IDs from the arguments ("latest" and prefixes) or the filter flags; undefined = all. */
async function selectSnapshots(ctx: CommandContext, repo: Repository): Promise<string[] | undefined> {
  const args = ctx.flags.positional;
  const filter = filterFrom(ctx.flags, ctx.env);
  const filtered = Boolean(filter.hosts?.length || filter.tags?.length || filter.paths?.length);
  if (args.length === 0 && !filtered) return undefined;
  if (args.length === 0) return (await listSnapshots(repo, { ...filter, signal: ctx.signal })).map((e) => e.id);
  const all: string[] = [];
  for await (const id of repo.listIds('snapshots', { signal: ctx.signal })) all.push(id);
  const out = new Set<string>();
  for (const a of args) {
    if (a === 'latest') out.add((await loadSnapshot(repo, 'latest', { ...filter, signal: ctx.signal })).id);
    else out.add(findSnapshotByPrefix(all, a));
  }
  return [...out];
}

/** A fresh folder for check's cache: in `base` (made if missing) as restic does, else in the system's temporary folder. */
async function temporaryCache(base: string): Promise<string> {
  try {
    await mkdir(base, { recursive: true });
    return await mkdtemp(path.join(base, 'stowage-check-cache-'));
  } catch {
    return mkdtemp(path.join(tmpdir(), 'stowage-check-cache-'));
  }
}
