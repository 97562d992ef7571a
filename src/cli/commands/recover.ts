// `recover`: a snapshot of the trees nothing refers to, with restic 0.19's output. restic has no
// JSON output for it; with --json the result object is printed.
import { InvalidInputError } from '../../errors.ts';
import { recover } from '../../snapshot/operations/recover.ts';
import type { Command } from '../context.ts';
import { withRepo } from '../context.ts';

export const recoverCommand: Command = {
  summary: 'Recover data from the repository not referenced by snapshots',
  usage: '',
  flags: [],
  async run(ctx) {
    if (ctx.flags.positional.length > 0) throw new InvalidInputError('recover takes no arguments');
    const say = (m: string) => {
      if (!ctx.json && !ctx.quiet) ctx.out(m + '\n');
    };
    return withRepo(ctx, 'exclusive', async (repo) => {
      const result = await recover(repo, { lock: false, signal: ctx.signal, onMessage: say });
      for (const u of result.unreadable) ctx.err(`unable to load tree ${u.id.slice(0, 8)}: ${u.message}\n`);
      if (ctx.json) ctx.out(JSON.stringify(result) + '\n');
      return 0;
    });
  },
};
