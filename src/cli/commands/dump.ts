import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { getSystemErrorMessage } from 'node:util';
import { InvalidInputError } from '../../errors.ts';
import { dump } from '../../snapshot/operations/dump.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo } from '../context.ts';

export const dumpCommand: Command = {
  summary: 'Print backed-up files or folders to stdout',
  usage: '[flags] SNAPSHOT[:SUBFOLDER] PATH',
  flags: [
    ...FILTER_FLAGS,
    { name: 'archive', short: 'a', kind: 'string', arg: 'FORMAT', help: 'set archive format as "tar" or "zip" (default "tar")' },
    { name: 'target', short: 't', kind: 'string', arg: 'PATH', help: 'write the output to target path' },
  ],
  async run(ctx) {
    const [ref, file] = ctx.flags.positional;
    if (!ref || file === undefined || ctx.flags.positional.length !== 2) throw new InvalidInputError('no file and no snapshot ID specified');
    const archive = ctx.flags.string('archive') ?? 'tar';
    if (archive !== 'tar' && archive !== 'zip') {
      ctx.err(`unknown archive format ${JSON.stringify(archive)}\n`);
      return 1;
    }
    const targetPath = ctx.flags.string('target');
    return withRepo(ctx, 'none', async (r) => {
      // As restic: the target is created before the path is looked up.
      let target: WriteStream | undefined;
      if (targetPath) {
        target = createWriteStream(targetPath);
        try {
          await once(target, 'open');
        } catch (e) {
          const errno = (e as NodeJS.ErrnoException).errno;
          ctx.err(`cannot dump to file: open ${targetPath}: ${errno === undefined ? (e as Error).message : getSystemErrorMessage(errno)}\n`);
          return 1;
        }
      }
      try {
        const dumped = await dump(r, ref, file, { ...filterFrom(ctx.flags, ctx.env), archive, signal: ctx.signal });
        if (dumped.kind !== 'file' && !target && process.stdout.isTTY) {
          dumped.stream.destroy();
          throw new InvalidInputError('cannot dump file: stdout is the terminal, please redirect output');
        }
        const out = target ?? process.stdout;
        try {
          for await (const data of dumped.stream) {
            if (!out.write(data)) await once(out, 'drain');
          }
        } catch (e) {
          // `stowage dump … | head`: the reader has gone; stop reading, as restic stops (SIGPIPE).
          if ((e as NodeJS.ErrnoException).code !== 'EPIPE' || target) throw e;
          dumped.stream.destroy();
        }
      } finally {
        if (target) {
          target.end();
          await once(target, 'close');
        }
      }
      return 0;
    });
  },
};
