import { InvalidInputError, NotFoundError } from '../../errors.ts';
import { loadSnapshot } from '../../snapshot/queries.ts';
import { decodeTree } from '../../snapshot/tree.ts';
import type { TreeNode } from '../../snapshot/node.ts';
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
      const snap = await loadSnapshot(r, ref, filterFrom(ctx.flags));
      const repo = await r.loadIndex({ signal: ctx.signal });
      const parts = file.split('/').filter(Boolean);
      let tree = snap.snapshot.tree;
      let node: TreeNode | undefined;
      for (let i = 0; i < parts.length; i++) {
        node = decodeTree(await repo.loadBlob('tree', tree), tree).find((n) => n.name === parts[i]);
        if (!node) throw new NotFoundError(`path ${file} in snapshot ${snap.id.slice(0, 8)}`);
        if (i < parts.length - 1) {
          if (node.type !== 'dir' || !node.subtree) throw new NotFoundError(`path ${file} in snapshot ${snap.id.slice(0, 8)}`);
          tree = node.subtree;
        }
      }
      if (!node || node.type !== 'file') throw new InvalidInputError(`${file} is not a file (folders are not supported by dump yet)`);
      for (const id of node.content ?? []) {
        const data = await repo.loadBlob('data', id, { signal: ctx.signal });
        if (!process.stdout.write(data)) await new Promise((res) => process.stdout.once('drain', res));
      }
      return 0;
    });
  },
};
