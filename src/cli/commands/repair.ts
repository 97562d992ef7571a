// `repair index` and `repair snapshots`, as restic's (both under an exclusive lock; a dry run of
// repair snapshots takes none). restic has no JSON output for them; with --json the result
// object is printed.
import { InvalidInputError } from '../../errors.ts';
import { writeFile } from 'node:fs/promises';
import { repairIndex, repairSnapshots } from '../../snapshot/operations/repair.ts';
import { repairPacks } from '../../snapshot/operations/repair-packs.ts';
import { loadSnapshot } from '../../snapshot/engine/select.ts';
import type { Command } from '../context.ts';
import { PruneCounters } from './prune.ts';
import { FILTER_FLAGS, filterFrom, withRepo } from '../context.ts';

/** restic's counters of `repair index`, by phase. */
const INDEX_COUNTERS: Readonly<Record<string, string>> = {
  'read-packs': 'packs',
  'write-index': 'indexes processed',
  'delete-index': 'old indexes deleted',
};

export const repairCommand: Command = {
  summary: 'Repair the repository: rebuild the index, salvage damaged packs, or rewrite damaged snapshots',
  usage: 'index [--read-all-packs] | packs PACKID... | snapshots [--dry-run] [--forget] [snapshotID ...]',
  flags: [
    { name: 'read-all-packs', kind: 'bool', help: 'index: read every pack instead of trusting index entries that match' },
    { name: 'dry-run', short: 'n', kind: 'bool', help: 'snapshots: only print what would be done' },
    { name: 'forget', kind: 'bool', help: 'snapshots: remove the original snapshots after saving the repaired ones' },
    ...FILTER_FLAGS,
  ],
  async run(ctx) {
    const [sub, ...args] = ctx.flags.positional;
    const say = (m: string) => {
      if (!ctx.json && !ctx.quiet) ctx.out(m + '\n');
    };
    switch (sub) {
      case 'index':
        if (args.length > 0) throw new InvalidInputError('repair index takes no arguments');
        return withRepo(ctx, 'exclusive', async (repo) => {
          // restic's counters in their last state, as each phase ends.
          const counters = new PruneCounters((line) => say(line.slice(0, -1)), INDEX_COUNTERS);
          const result = await repairIndex(repo, {
            readAllPacks: ctx.flags.bool('read-all-packs'),
            lock: false,
            signal: ctx.signal,
            onMessage: (m, level) => {
              if (level === 'warning') {
                if (!ctx.json) ctx.err(m + '\n');
                return;
              }
              counters.flush();
              say(m);
            },
            onProgress: (p) => counters.step(p),
          });
          counters.flush();
          if (ctx.json) ctx.out(JSON.stringify(result) + '\n');
          else say('done');
          return 0;
        });
      case 'packs':
        // As restic: a copy of each pack in the current folder (pack-<id>, never overwritten),
        // the intact blobs stored again, the index rewritten without the packs, the packs deleted.
        if (args.length === 0) throw new InvalidInputError('no ids specified');
        return withRepo(ctx, 'exclusive', async (repo) => {
          const result = await repairPacks(repo, args, {
            lock: false,
            signal: ctx.signal,
            onPackBytes: (id, bytes) => writeFile(`pack-${id}`, bytes, { flag: 'wx' }),
            onMessage: (m, level) => {
              if (level === 'warning') ctx.err(m + '\n');
              else say(m);
            },
          });
          if (ctx.json) ctx.out(JSON.stringify(result) + '\n');
          ctx.err('\nUse `stowage repair snapshots --forget` to remove the corrupted data blobs from all snapshots\n');
          return 0;
        });
      case 'snapshots': {
        const dryRun = ctx.flags.bool('dry-run');
        return withRepo(ctx, dryRun ? 'none' : 'exclusive', async (repo) => {
          const filter = filterFrom(ctx.flags, ctx.env);
          let snapshotIds: string[] | undefined;
          if (args.length > 0) {
            snapshotIds = [];
            for (const a of args) snapshotIds.push(a === 'latest' ? (await loadSnapshot(repo, 'latest', { ...filter, signal: ctx.signal })).id : a);
          }
          const result = await repairSnapshots(repo, {
            snapshotIds,
            filter: snapshotIds ? undefined : filter,
            dryRun,
            forget: ctx.flags.bool('forget'),
            lock: false,
            signal: ctx.signal,
            onMessage: say,
          });
          if (ctx.json) ctx.out(JSON.stringify(result) + '\n');
          for (const u of result.unreadable) ctx.err(`snapshot ${u.id} could not be read: ${u.message}\n`);
          return 0;
        });
      }
      default:
        throw new InvalidInputError('repair needs a subcommand: index, packs or snapshots');
    }
  },
};
