// `tag`: changes snapshot tags under an exclusive lock, with restic's flags and output.
// As in restic, each --set/--add/--remove value is a comma-separated list with blanks trimmed
// and empty tags dropped, so `--set ""` changes nothing (restic 0.19 behaves the same).
import { InvalidInputError } from '../../errors.ts';
import { tag } from '../../snapshot/operations/tag.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo } from '../context.ts';

export const tagCommand: Command = {
  summary: 'Modify tags on snapshots',
  usage: '[flags] [snapshotID ...]',
  flags: [
    { name: 'set', kind: 'list', arg: 'TAG[,TAG]', help: 'tags which will replace the existing tags (can be given multiple times)' },
    { name: 'add', kind: 'list', arg: 'TAG[,TAG]', help: 'tags which will be added to the existing tags (can be given multiple times)' },
    { name: 'remove', kind: 'list', arg: 'TAG[,TAG]', help: 'tags which will be removed from the existing tags (can be given multiple times)' },
    ...FILTER_FLAGS,
  ],
  async run(ctx) {
    const f = ctx.flags;
    const [setGiven, addGiven, removeGiven] = [f.list('set').length > 0, f.list('add').length > 0, f.list('remove').length > 0];
    if (!setGiven && !addGiven && !removeGiven) throw new InvalidInputError('nothing to do!');
    if (setGiven && (addGiven || removeGiven)) throw new InvalidInputError('--set and --add/--remove cannot be given at the same time');
    const set = flatten(f.list('set'));
    const add = flatten(f.list('add'));
    const remove = flatten(f.list('remove'));
    if (!ctx.json && !ctx.quiet) ctx.out('create exclusive lock for repository\n');
    return withRepo(ctx, 'exclusive', async (repo) => {
      // restic passes the flattened lists on: a --set that flattens to nothing changes nothing.
      const noop = set.length === 0 && add.length === 0 && remove.length === 0;
      const res = noop
        ? { changed: [], ignored: [], failed: [] }
        : await tag(repo, {
            lock: false,
            snapshots: f.positional,
            filter: filterFrom(f, ctx.env),
            ...(set.length > 0 ? { set } : { add, remove }),
            signal: ctx.signal,
            onChange: (c) => {
              if (ctx.json) ctx.out(JSON.stringify({ message_type: 'changed', old_snapshot_id: c.oldId, new_snapshot_id: c.newId }) + '\n');
              else if (ctx.verbose && !ctx.quiet) ctx.out(`old snapshot ID: ${c.oldId} -> new snapshot ID: ${c.newId}\n`);
            },
          });
      for (const { ref, error } of res.ignored) ctx.err(`Ignoring ${JSON.stringify(ref)}: ${error.message}\n`);
      for (const { id, error } of res.failed) ctx.err(`unable to modify the tags for snapshot ID ${JSON.stringify(id)}, ignoring: ${error.message}\n`);
      const n = res.changed.length;
      if (ctx.json) ctx.out(JSON.stringify({ message_type: 'summary', changed_snapshots: n }) + '\n');
      else if (!ctx.quiet) ctx.out(n === 0 ? 'no snapshots were modified\n' : `modified ${n} snapshots\n`);
      return 0;
    });
  },
};

/** restic's TagLists.Flatten: every comma-separated tag, blanks trimmed, empty ones dropped. */
function flatten(values: string[]): string[] {
  return values.flatMap((v) => v.split(',').map((t) => t.trim())).filter((t) => t !== '');
}
