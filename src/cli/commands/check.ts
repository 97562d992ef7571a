import { checkRepository } from '../../snapshot/check.ts';
import type { Command } from '../context.ts';
import { withRepo } from '../context.ts';

export const checkCommand: Command = {
  summary: 'Check the repository for errors',
  usage: '[flags]',
  flags: [{ name: 'read-data', kind: 'bool', help: 'read and verify all data blobs' }],
  async run(ctx) {
    return withRepo(ctx, 'shared', async (repo) => {
      const report = await checkRepository(repo, {
        readData: ctx.flags.bool('read-data'),
        signal: ctx.signal,
        onMessage: (m) => {
          if (!ctx.quiet && !ctx.json) ctx.out(m + '\n');
        },
      });
      if (ctx.json) ctx.out(JSON.stringify(report) + '\n');
      else {
        for (const e of report.errors) ctx.err(`error: ${e.message}\n`);
        for (const h of report.hints) if (!ctx.quiet) ctx.out(`hint: ${h}\n`);
        ctx.out(report.errors.length ? `Fatal: repository contains errors\n` : 'no errors were found\n');
      }
      return report.errors.length ? 1 : 0;
    });
  },
};
