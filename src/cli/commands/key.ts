import { InvalidInputError } from '../../errors.ts';
import type { Command } from '../context.ts';
import { withRepo, formatTime } from '../context.ts';
import { formatGoTime } from '../../repository/gotime.ts';
import { goTrimSpace, readTextFile } from '../secrets.ts';

export const keyCommand: Command = {
  summary: 'Manage keys (passwords): list, add, remove, passwd',
  usage: 'list|add|remove ID|passwd',
  flags: [
    { name: 'new-password-file', kind: 'string', arg: 'FILE', help: 'file with the new password (add, passwd)' },
    { name: 'user', kind: 'string', arg: 'NAME', help: 'username stored in the new key' },
    { name: 'host', kind: 'string', arg: 'NAME', help: 'hostname stored in the new key' },
  ],
  async run(ctx) {
    const [sub, id] = ctx.flags.positional;
    const newPassword = async () => {
      const f = ctx.flags.string('new-password-file') ?? ctx.env.RESTIC_NEW_PASSWORD_FILE;
      if (f) return goTrimSpace(readTextFile(f));
      // As restic where standard input is no terminal: the new password is its first line.
      if (process.stdin.isTTY) throw new InvalidInputError('no new password given (use --new-password-file, or pipe it to standard input)');
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
      const first = Buffer.concat(chunks).toString('utf8').split('\n')[0]!.replace(/\r$/, '');
      if (first === '') throw new InvalidInputError('an empty password is not allowed (no new password on standard input)');
      return first;
    };
    switch (sub) {
      case 'list':
        return withRepo(ctx, 'none', async (repo) => {
          const keys = await repo.listKeys({ signal: ctx.signal });
          if (ctx.json) ctx.out(JSON.stringify(keys.map((k) => ({ current: k.current, id: k.id, userName: k.username, hostName: k.hostname, created: k.created }))) + '\n');
          else {
            ctx.out(' ID        User        Host        Created\n' + '-'.repeat(60) + '\n');
            for (const k of keys) ctx.out(`${k.current ? '*' : ' '}${k.id.slice(0, 8).padEnd(10)}${k.username.padEnd(12)}${k.hostname.padEnd(12)}${formatTime(formatGoTime(k.created))}\n`);
            // restic closes the table with a second rule.
            ctx.out('-'.repeat(60) + '\n');
          }
          return 0;
        }, { prefetch: [] });
      case 'add':
        return withRepo(ctx, 'shared', async (repo) => {
          const k = await repo.addKey(await newPassword(), { username: ctx.flags.string('user'), hostname: ctx.flags.string('host') });
          if (!ctx.quiet) ctx.out(`saved new key with ID ${k}\n`);
          return 0;
        });
      case 'remove':
        if (!id) throw new InvalidInputError('key remove needs a key ID');
        return withRepo(ctx, 'exclusive', async (repo) => {
          await repo.removeKey(id);
          if (!ctx.quiet) ctx.out(`removed key ${id}\n`);
          return 0;
        });
      case 'passwd':
        return withRepo(ctx, 'exclusive', async (repo) => {
          await repo.changePassword(await newPassword());
          if (!ctx.quiet) ctx.out('saved new key\n');
          return 0;
        });
      default:
        throw new InvalidInputError('key needs a subcommand: list, add, remove or passwd');
    }
  },
};
