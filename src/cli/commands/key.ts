import { InvalidInputError } from '../../errors.ts';
import type { Command } from '../context.ts';
import { exitWith, withRepo, formatTime } from '../context.ts';
import { formatGoTime } from '../../repository/gotime.ts';
import { goTrimSpace, readTextFile } from '../secrets.ts';

export const keyCommand: Command = {
  summary: 'Manage keys (passwords): list, add, remove, passwd',
  usage: 'list|add|remove ID|passwd',
  flags: [
    { name: 'new-password-file', kind: 'string', arg: 'FILE', help: 'file with the new password (add, passwd)' },
    { name: 'new-insecure-no-password', kind: 'bool', help: 'add an empty password for the repository (insecure)' },
    { name: 'user', kind: 'string', arg: 'NAME', help: 'username stored in the new key' },
    { name: 'host', kind: 'string', arg: 'NAME', help: 'hostname stored in the new key' },
  ],
  async run(ctx) {
    const [sub, id] = ctx.flags.positional;
    const insecureNoPassword = ctx.flags.bool('new-insecure-no-password');
    // restic prints these two without "Fatal:" (exit 1), before it opens the repository.
    const refuse = (message: string) => exitWith(ctx, 1, message);
    const newPasswordFile = ctx.flags.string('new-password-file') ?? ctx.env.RESTIC_NEW_PASSWORD_FILE;
    let newPassword = '';
    if (sub === 'add' || sub === 'passwd') {
      if (insecureNoPassword) {
        if (newPasswordFile) return refuse('only either --new-password-file or --new-insecure-no-password may be specified');
      } else {
        if (newPasswordFile) newPassword = goTrimSpace(readTextFile(newPasswordFile));
        // As restic where standard input is no terminal: the new password is its first line.
        else if (process.stdin.isTTY) throw new InvalidInputError('no new password given (use --new-password-file or --new-insecure-no-password, or pipe it to standard input)');
        else newPassword = await firstLineOfStdin();
        if (newPassword === '') return refuse('an empty password is not allowed by default. Pass the flag `--new-insecure-no-password` to restic to disable this check');
      }
    }
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
          const k = await repo.addKey(newPassword, { insecureNoPassword, username: ctx.flags.string('user'), hostname: ctx.flags.string('host') });
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
          await repo.changePassword(newPassword, { insecureNoPassword });
          if (!ctx.quiet) ctx.out('saved new key\n');
          return 0;
        });
      default:
        throw new InvalidInputError('key needs a subcommand: list, add, remove or passwd');
    }
  },
};

async function firstLineOfStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8').split('\n')[0]!.replace(/\r$/, '');
}
