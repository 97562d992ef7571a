// `list TYPE`: IDs one per line (blobs: "TYPE ID"), as restic prints them; `--json` changes
// nothing, as in restic. A shared lock is held, except while listing locks.
import { InvalidInputError } from '../../errors.ts';
import { LIST_KINDS, listBlobs, listFiles, type ListKind } from '../../snapshot/operations/list.ts';
import type { Command } from '../context.ts';
import { withRepo } from '../context.ts';

export const listCommand: Command = {
  summary: 'List objects in the repository',
  usage: `[flags] [${LIST_KINDS.join('|')}]`,
  flags: [],
  async run(ctx) {
    const args = ctx.flags.positional;
    if (args.length !== 1) throw new InvalidInputError(`accepts 1 arg(s), received ${args.length}`);
    const kind = args[0]!;
    if (!(LIST_KINDS as readonly string[]).includes(kind)) throw new InvalidInputError(`invalid argument ${JSON.stringify(kind)} for "stowage list"`);
    return withRepo(ctx, kind === 'locks' ? 'none' : 'shared', async (repo) => {
      const signal = ctx.signal;
      let lines: string[] = [];
      const flush = () => {
        if (lines.length > 0) ctx.out(lines.join('\n') + '\n');
        lines = [];
      };
      if (kind === 'blobs') {
        for await (const b of listBlobs(repo, { signal })) {
          lines.push(`${b.type} ${b.id}`);
          if (lines.length >= 4096) flush();
        }
      } else {
        for await (const id of listFiles(repo, kind as Exclude<ListKind, 'blobs'>, { signal })) {
          lines.push(id);
          if (lines.length >= 4096) flush();
        }
      }
      flush();
      return 0;
    });
  },
};
