import { InvalidInputError, NotFoundError } from '../../errors.ts';
import { encodeConfig } from '../../repository/config.ts';
import type { BlobId } from '../../repository/id.ts';
import { loadSnapshot } from '../../snapshot/engine/select.ts';
import { encodeSnapshot } from '../../snapshot/model/snapshot.ts';
import type { Command } from '../context.ts';
import { withRepo } from '../context.ts';

export const catCommand: Command = {
  summary: 'Print internal objects (config, snapshot, index, key, pack, blob, tree)',
  usage: 'config|masterkey|snapshot|index|key|pack|blob|tree [ID]',
  flags: [],
  async run(ctx) {
    const [kind, ref] = ctx.flags.positional;
    if (!kind) throw new InvalidInputError('type not specified');
    return withRepo(ctx, 'none', async (repo) => {
      const write = (b: Uint8Array | string) => ctx.out(typeof b === 'string' ? b : Buffer.from(b).toString('utf8'));
      if (kind === 'config') {
        write(JSON.stringify(JSON.parse(Buffer.from(encodeConfig(repo.config)).toString()), null, 2) + '\n');
        return 0;
      }
      if (!ref) throw new InvalidInputError('ID not specified');
      switch (kind) {
        case 'snapshot': {
          const s = await loadSnapshot(repo, ref);
          write(JSON.stringify(JSON.parse(Buffer.from(encodeSnapshot({ ...s.snapshot, extra: undefined })).toString()), null, 2) + '\n');
          return 0;
        }
        case 'index':
          write(await repo.loadUnpacked('index', await repo.resolveId('index', ref)));
          return 0;
        case 'key': {
          const id = await repo.resolveId('keys', ref);
          write(await repo.backend.load({ type: 'keys', name: id }));
          ctx.out('\n');
          return 0;
        }
        case 'lock':
          write(await repo.loadUnpacked('locks', await repo.resolveId('locks', ref)));
          ctx.out('\n');
          return 0;
        case 'pack': {
          const id = await repo.resolveId('data', ref);
          const bytes = await repo.backend.load({ type: 'data', name: id });
          process.stdout.write(bytes);
          return 0;
        }
        case 'blob':
        case 'tree': {
          const idx = await repo.loadIndex({ signal: ctx.signal });
          const loc = idx.index.lookup(ref as BlobId)[0];
          if (!loc) throw new NotFoundError(`blob ${ref}`);
          process.stdout.write(await idx.loadBlob(loc.type, loc.id));
          return 0;
        }
        default:
          throw new InvalidInputError(`invalid type ${JSON.stringify(kind)}`);
      }
    });
  },
};
