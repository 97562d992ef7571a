import { unlock as unlockRepo } from '../../repository/lock.ts';
import type { Command } from '../context.ts';
import { withRepo } from '../context.ts';

export const unlockCommand: Command = {
  summary: 'Remove stale locks (or all with --remove-all)',
  usage: '[flags]',
  flags: [{ name: 'remove-all', kind: 'bool', help: 'remove all locks, even those of running processes' }],
  async run(ctx) {
    return withRepo(ctx, 'none', async (repo) => {
      const removed = await unlockRepo(repo, { all: ctx.flags.bool('remove-all'), signal: ctx.signal });
      if (!ctx.quiet) ctx.out(`successfully removed ${removed.length} locks\n`);
      return 0;
    }, { prefetch: [] });
  },
};
