import { InvalidInputError } from '../../errors.ts';
import { formatGoTime } from '../../repository/gotime.ts';
import { listTree, resolveSnapshotRef } from '../../snapshot/engine/select.ts';
import { compareGoTime } from '../../repository/gotime.ts';
import { compareGoStrings, goJsonString } from '../../snapshot/model/gojson.ts';
import { encodeSnapshot, type Snapshot } from '../../snapshot/model/snapshot.ts';
import { formatGoFileMode } from '../../snapshot/model/mode.ts';
import type { TreeNode } from '../../snapshot/model/node.ts';
import type { Command } from '../context.ts';
import { FlagError } from '../args.ts';
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
    { name: 'ncdu', kind: 'bool', help: "output NCDU export format (pipe into 'ncdu -f -')" },
    { name: 'sort', short: 's', kind: 'string', arg: 'MODE', help: 'sort output by (name|size|time=mtime|atime|ctime|extension)' },
    { name: 'reverse', kind: 'bool', help: 'reverse sorted output' },
  ],
  async run(ctx) {
    const [ref, ...dirs] = ctx.flags.positional;
    const sortFlag = ctx.flags.string('sort') ?? 'name';
    const sort = SORT_MODES[sortFlag];
    if (sort === undefined) throw new FlagError(`invalid argument ${JSON.stringify(sortFlag)} for "-s, --sort" flag: invalid sort mode ${JSON.stringify(sortFlag)}, must be one of (name|size|time=mtime|atime|ctime|extension)`);
    const reverse = ctx.flags.bool('reverse');
    const ncdu = ctx.flags.bool('ncdu');
    if (!ref) throw new InvalidInputError("no snapshot ID specified, specify snapshot ID or use special ID 'latest'");
    if (ncdu && ctx.json) throw new InvalidInputError("only either '--json' or '--ncdu' can be specified");
    if (ncdu && sort !== 'name') throw new InvalidInputError('--sort and --ncdu are mutually exclusive');
    if (ncdu && reverse) throw new InvalidInputError('--reverse and --ncdu are mutually exclusive');
    // restic refuses a relative DIR before it opens the repository, with this text.
    if (dirs.some((d) => !d.startsWith('/'))) throw new InvalidInputError("All path filters must be absolute, starting with a forward slash '/'");
    return withRepo(ctx, 'none', async (r) => {
      const repo = await r.loadIndex({ signal: ctx.signal });
      const { snapshot: snap, tree } = await resolveSnapshotRef(repo, ref, { ...filterFrom(ctx.flags, ctx.env), signal: ctx.signal });
      // Like restic, the header names the tree listed: with ID:subfolder, the subfolder's.
      const shown = { ...snap, snapshot: { ...snap.snapshot, tree } };
      if (ncdu) {
        ctx.out(await ncduListing(listTree(repo, tree, { dirs, recursive: ctx.flags.bool('recursive'), prefixes: true, signal: ctx.signal }), shown.snapshot));
        return 0;
      }
      if (ctx.json) ctx.out(JSON.stringify({ ...snapshotJson(shown), message_type: 'snapshot', struct_type: 'snapshot' }) + '\n');
      else if (!ctx.quiet) ctx.out(`${snapshotString(shown)} filtered by [${dirs.join(' ')}]:\n`);
      const long = ctx.flags.bool('long');
      const human = ctx.flags.bool('human-readable');
      const line = ({ path, node }: { path: string; node: TreeNode }) => (ctx.json ? lsNodeJson(path, node) : formatNode(path, node, long, human)) + '\n';
      const listing = listTree(repo, tree, { dirs, recursive: ctx.flags.bool('recursive'), signal: ctx.signal });
      if (sort === 'name' && !reverse) {
        for await (const entry of listing) ctx.out(line(entry));
        return 0;
      }
      // restic's sortedPrinter: the whole listing collected, sorted stably (ties by path, as Go
      // compares strings), then reversed with --reverse; "name" keeps the tree order.
      const all: Array<{ path: string; node: TreeNode }> = [];
      for await (const entry of listing) all.push(entry);
      const key = SORT_KEYS[sort];
      if (key) all.sort((a, b) => key(a, b) || compareGoStrings(a.path, b.path));
      if (reverse) all.reverse();
      for (const entry of all) ctx.out(line(entry));
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

type SortMode = 'name' | 'size' | 'mtime' | 'atime' | 'ctime' | 'extension';
const SORT_MODES: Record<string, SortMode | undefined> = { name: 'name', size: 'size', time: 'mtime', mtime: 'mtime', atime: 'atime', ctime: 'ctime', extension: 'extension' };
type Entry = { path: string; node: TreeNode };
const fileSize = (n: TreeNode): bigint => (n.type === 'file' ? BigInt(n.size ?? 0) : 0n);
/** Go's filepath.Ext: from the last dot of the last element on, or ''. */
function goExt(p: string): string {
  for (let i = p.length - 1; i >= 0 && p[i] !== '/'; i--) if (p[i] === '.') return p.slice(i);
  return '';
}
const SORT_KEYS: Record<SortMode, ((a: Entry, b: Entry) => number) | undefined> = {
  name: undefined,
  size: (a, b) => { const x = fileSize(a.node), y = fileSize(b.node); return x < y ? -1 : x > y ? 1 : 0; },
  mtime: (a, b) => compareGoTime(a.node.mtime, b.node.mtime),
  atime: (a, b) => compareGoTime(a.node.atime, b.node.atime),
  ctime: (a, b) => compareGoTime(a.node.ctime, b.node.ctime),
  extension: (a, b) => compareGoStrings(goExt(a.path), goExt(b.path)),
};

/**
 * restic's `ls --ncdu`: ncdu's JSON export (format 1.2) with the snapshot as its metadata, one
 * node a line, each directory an array opened by its node and closed after its entries.
 */
async function ncduListing(listing: AsyncIterable<{ path: string; node: TreeNode }>, snapshot: Snapshot): Promise<string> {
  const meta = Buffer.from(encodeSnapshot({ ...snapshot, extra: undefined })).toString('utf8');
  let out = `[1, 2, ${meta}, [{"name":"/"}`;
  const open: string[] = [];
  const indent = () => '  '.repeat(open.length + 1);
  const close = () => {
    open.pop();
    out += `\n${indent()}]`;
  };
  for await (const { path, node } of listing) {
    while (open.length && !path.startsWith(open[open.length - 1]! + '/')) close();
    if (node.type === 'dir') {
      out += `,\n${indent()}[\n${'  '.repeat(open.length + 2)}${ncduNode(node)}`;
      open.push(path);
    } else {
      out += `,\n${indent()}${ncduNode(node)}`;
    }
  }
  while (open.length) close();
  return out + '\n]\n]\n';
}

function ncduNode(n: TreeNode): string {
  const size = fileSize(n);
  let mode = n.mode & 0o777;
  if (n.mode & (1 << 23)) mode |= 0o4000; // os.ModeSetuid
  if (n.mode & (1 << 22)) mode |= 0o2000; // os.ModeSetgid
  if (n.mode & (1 << 20)) mode |= 0o1000; // os.ModeSticky
  const mtime = n.mtime.epochNs < 0n ? 0n : n.mtime.epochNs / 1_000_000_000n;
  const u = (x: unknown) => (x === undefined ? '0' : String(x));
  return `{"name":${goJsonString(n.name)},"asize":${size},"dsize":${((size + 511n) / 512n) * 512n},"dev":${u(n.deviceId)},"ino":${u(n.inode)},"nlink":${u(n.links)},"notreg":${n.type !== 'dir' && n.type !== 'file'},"uid":${n.uid},"gid":${n.gid},"mode":${mode},"mtime":${mtime}}`;
}
