import { InvalidInputError } from '../../errors.ts';
import { formatGoTime } from '../../repository/gotime.ts';
import { listTree, resolveSnapshotRef } from '../../snapshot/engine/select.ts';
import { goJsonString } from '../../snapshot/model/gojson.ts';
import { formatGoFileMode } from '../../snapshot/model/mode.ts';
import type { TreeNode } from '../../snapshot/model/node.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo, snapshotJson } from '../context.ts';
import { snapshotString } from './copy.ts';
import { formatNode } from './find.ts';

export const lsCommand: Command = {
  summary: 'List files in a snapshot',
  usage: '[flags] SNAPSHOT[:SUBFOLDER] [DIR...]',
  flags: [
    ...FILTER_FLAGS,
    { name: 'long', short: 'l', kind: 'bool', help: 'use a long listing format showing size and mode' },
    { name: 'recursive', kind: 'bool', help: 'include files in subfolders of the listed directories' },
    { name: 'human-readable', kind: 'bool', help: 'print sizes in human readable format' },
  ],
  async run(ctx) {
    const [ref, ...dirs] = ctx.flags.positional;
    if (!ref) throw new InvalidInputError("no snapshot ID specified, specify snapshot ID or use special ID 'latest'");
    // restic refuses a relative DIR before it opens the repository, with this text.
    if (dirs.some((d) => !d.startsWith('/'))) throw new InvalidInputError("All path filters must be absolute, starting with a forward slash '/'");
    return withRepo(ctx, 'none', async (r) => {
      const repo = await r.loadIndex({ signal: ctx.signal });
      const { snapshot: snap, tree } = await resolveSnapshotRef(repo, ref, { ...filterFrom(ctx.flags, ctx.env), signal: ctx.signal });
      // Like restic, the header names the tree listed: with ID:subfolder, the subfolder's.
      const shown = { ...snap, snapshot: { ...snap.snapshot, tree } };
      if (ctx.json) ctx.out(JSON.stringify({ ...snapshotJson(shown), message_type: 'snapshot', struct_type: 'snapshot' }) + '\n');
      else if (!ctx.quiet) ctx.out(`${snapshotString(shown)} filtered by [${dirs.join(' ')}]:\n`);
      const long = ctx.flags.bool('long');
      const human = ctx.flags.bool('human-readable');
      for await (const { path, node } of listTree(repo, tree, { dirs, recursive: ctx.flags.bool('recursive'), signal: ctx.signal })) {
        ctx.out((ctx.json ? lsNodeJson(path, node) : formatNode(path, node, long, human)) + '\n');
      }
      return 0;
    });
  },
};

/** restic's `ls --json` node line: size for files only, mode and inode left out when 0. */
function lsNodeJson(path: string, n: TreeNode): string {
  const parts = [`"name":${goJsonString(n.name)}`, `"type":"${n.type}"`, `"path":${goJsonString(path)}`, `"uid":${n.uid}`, `"gid":${n.gid}`];
  if (n.type === 'file') parts.push(`"size":${(n.size ?? 0).toString()}`);
  if (n.mode) parts.push(`"mode":${n.mode}`);
  parts.push(`"permissions":${goJsonString(formatGoFileMode(n.mode))}`);
  parts.push(`"mtime":"${formatGoTime(n.mtime)}"`, `"atime":"${formatGoTime(n.atime)}"`, `"ctime":"${formatGoTime(n.ctime)}"`);
  if (n.inode !== undefined && BigInt(n.inode) !== 0n) parts.push(`"inode":${n.inode.toString()}`);
  parts.push('"message_type":"node"', '"struct_type":"node"');
  return `{${parts.join(',')}}`;
}
