import { InvalidInputError } from '../../errors.ts';
import { dumpFile } from '../../snapshot/operations/dump.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo } from '../context.ts';

export const dumpCommand: Command = {
  summary: 'Print a file from a snapshot to standard output',
  usage: '[flags] SNAPSHOT PATH',
  flags: [...FILTER_FLAGS],
  async run(ctx) {
    const [ref, file] = ctx.flags.positional;
    if (!ref || !file) throw new InvalidInputError('usage: stowage dump SNAPSHOT PATH');
    return withRepo(ctx, 'none', async (r) => {
      const { stream } = await dumpFile(r, ref, file, { ...filterFrom(ctx.flags, ctx.env), signal: ctx.signal });
      for await (const data of stream) {
        if (!process.stdout.write(data)) await new Promise((res) => process.stdout.once('drain', res));
      }
      return 0;
    });
  },
};
