import { InvalidInputError } from '../../errors.ts';
import { Repository } from '../../repository/repository.ts';
import type { Command } from '../context.ts';
import { backendFor } from '../context.ts';
import { FROM_REPO_FLAGS, hasFromRepo, openFromRepo } from './copy.ts';

export const initCommand: Command = {
  summary: 'Initialize a new repository',
  usage: '[flags]',
  flags: [
    { name: 'repository-version', kind: 'string', arg: '1|2|latest|stable', help: 'repository format version (default 2)' },
    { name: 'copy-chunker-params', kind: 'bool', help: 'copy chunker parameters from the secondary repository (--from-repo; useful with the copy command)' },
    ...FROM_REPO_FLAGS,
  ],
  async run(ctx) {
    const v = ctx.flags.string('repository-version') ?? 'stable';
    const version = v === '1' ? 1 : v === '2' || v === 'latest' || v === 'stable' ? 2 : undefined;
    if (!version) throw new InvalidInputError(`unsupported repository version ${JSON.stringify(v)} (use 1 or 2)`);
    let chunkerPolynomial: bigint | undefined;
    if (ctx.flags.bool('copy-chunker-params')) {
      const other = await openFromRepo(ctx);
      chunkerPolynomial = other.config.chunkerPolynomial;
      await other.backend.close();
    } else if (hasFromRepo(ctx)) {
      throw new InvalidInputError('Secondary repository must only be specified when copying the chunker parameters');
    }
    let password: string;
    try {
      password = ctx.password();
    } catch (e) {
      // restic's init says these twice: "Fatal: Fatal: an empty password is not allowed …".
      if (e instanceof InvalidInputError) throw new InvalidInputError(`Fatal: ${e.message}`);
      throw e;
    }
    const backend = await backendFor(ctx);
    try {
      const repo = await Repository.init(backend, { password, insecureNoPassword: ctx.flags.bool('insecure-no-password'), version, chunkerPolynomial, signal: ctx.signal, logger: ctx.logger });
      if (ctx.json) ctx.out(JSON.stringify({ message_type: 'initialized', id: repo.config.id, repository: backend.location }) + '\n');
      else if (!ctx.quiet) {
        ctx.out(`created restic repository ${repo.config.id.slice(0, 10)} at ${backend.location}\n` +
          (chunkerPolynomial !== undefined ? ' with chunker parameters copied from secondary repository\n' : '') + '\n' +
          'Please note that knowledge of your password is required to access\nthe repository. Losing your password means that your data is\nirrecoverably lost.\n');
      }
    } finally {
      await backend.close();
    }
    return 0;
  },
};
