// `find PATTERN...` and `find --blob/--tree/--pack ID...`: restic's matching and output, the
// --json forms included ([{"matches":[…],"hits":n,"snapshot":id},…] and [{"object_type":…},…]).
import { InvalidInputError } from '../../errors.ts';
import { formatGoTime, goTimeToDate, type GoTime } from '../../repository/gotime.ts';
import type { BlobId, BlobType } from '../../repository/id.ts';
import type { IndexedRepository } from '../../repository/repository.ts';
import { blobPacks, findByPattern, findIds, parseFindTime, type FindCommonOptions } from '../../snapshot/operations/find.ts';
import { goJsonString } from '../../snapshot/model/gojson.ts';
import { formatGoFileMode, GO_MODE_CHAR_DEVICE, GO_MODE_DEVICE, GO_MODE_DIR, GO_MODE_NAMED_PIPE, GO_MODE_SOCKET, GO_MODE_SYMLINK } from '../../snapshot/model/mode.ts';
import type { TreeNode } from '../../snapshot/model/node.ts';
import type { SnapshotEntry } from '../../snapshot/engine/select.ts';
import type { Command, CommandContext } from '../context.ts';
import { FILTER_FLAGS, filterFrom, formatBytes, withRepo } from '../context.ts';

export const findCommand: Command = {
  summary: 'Find a file, a directory or restic IDs',
  usage: '[flags] PATTERN...',
  flags: [
    { name: 'oldest', short: 'O', kind: 'string', arg: 'TIME', help: 'oldest modification date/time' },
    { name: 'newest', short: 'N', kind: 'string', arg: 'TIME', help: 'newest modification date/time' },
    { name: 'snapshot', short: 's', kind: 'list', arg: 'ID', help: 'snapshot ID to search in (can be given multiple times)' },
    { name: 'blob', kind: 'bool', help: 'pattern is a blob-ID' },
    { name: 'tree', kind: 'bool', help: 'pattern is a tree-ID' },
    { name: 'pack', kind: 'bool', help: 'pattern is a pack-ID' },
    { name: 'show-pack-id', kind: 'bool', help: 'display the pack-ID the blobs belong to (with --blob or --tree)' },
    { name: 'ignore-case', short: 'i', kind: 'bool', help: 'ignore case for pattern' },
    { name: 'reverse', short: 'R', kind: 'bool', help: 'reverse sort order oldest to newest' },
    { name: 'long', short: 'l', kind: 'bool', help: 'use a long listing format showing size and mode' },
    { name: 'human-readable', kind: 'bool', help: 'print sizes in human readable format' },
    ...FILTER_FLAGS,
  ],
  async run(ctx) {
    const f = ctx.flags;
    const patterns = f.positional;
    if (patterns.length === 0) throw new InvalidInputError('wrong number of arguments');
    const oldest = f.string('oldest') ? parseFindTime(f.string('oldest')!) : undefined;
    const newest = f.string('newest') ? parseFindTime(f.string('newest')!) : undefined;
    if (oldest && newest && oldest.getTime() > newest.getTime()) throw new InvalidInputError('--oldest must specify a time before --newest');
    if ([f.bool('blob'), f.bool('tree'), f.bool('pack')].filter(Boolean).length > 1) throw new InvalidInputError('cannot have several ID types');
    return withRepo(ctx, 'shared', async (r) => {
      const repo = await r.loadIndex({ signal: ctx.signal });
      const common: FindCommonOptions = {
        snapshots: f.list('snapshot'),
        filter: filterFrom(f, ctx.env),
        reverse: f.bool('reverse'),
        signal: ctx.signal,
        onTreeError: ({ treeId, snapshotId }) => {
          ctx.out(`Unable to load tree ${treeId}\n ... which belongs to snapshot ${snapshotId}\n`);
        },
      };
      if (f.bool('blob') || f.bool('tree') || f.bool('pack')) return findObjects(ctx, repo, patterns, common);
      const out = new PatternOutput(ctx);
      const hits = findByPattern(repo, patterns, { ...common, ignoreCase: f.bool('ignore-case'), oldest, newest });
      let step = await hits.next();
      while (!step.done) {
        out.hit(step.value.snapshot, step.value.path, step.value.node);
        step = await hits.next();
      }
      printIgnored(ctx, step.value);
      out.finish();
      return 0;
    });
  },
};

function printIgnored(ctx: CommandContext, ignored: Array<{ ref: string; error: Error }>): void {
  for (const { ref, error } of ignored) ctx.err(`Ignoring ${JSON.stringify(ref)}: ${error.message}\n`);
}

/** restic's global.TimeFormat in local time. */
function localTime(t: GoTime): string {
  const d = goTimeToDate(t);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${String(d.getFullYear()).padStart(4, '0')}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const TYPE_MODE: Partial<Record<TreeNode['type'], number>> = {
  dir: GO_MODE_DIR,
  symlink: GO_MODE_SYMLINK,
  dev: GO_MODE_DEVICE,
  chardev: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
  fifo: GO_MODE_NAMED_PIPE,
  socket: GO_MODE_SOCKET,
};

/** restic's formatNode: the path, or with --long "mode uid gid size mtime path[ -> target]". */
export function formatNode(path: string, n: TreeNode, long: boolean, human: boolean): string {
  if (!long) return path;
  const size = human ? formatBytes(Number(n.size ?? 0)) : String(n.size ?? 0).padStart(6);
  const mode = formatGoFileMode(((TYPE_MODE[n.type] ?? 0) | n.mode) >>> 0);
  const target = n.type === 'symlink' ? ` -> ${n.linktarget ?? ''}` : '';
  return `${mode} ${String(n.uid).padStart(5)} ${String(n.gid).padStart(5)} ${size} ${localTime(n.mtime)} ${path}${target}`;
}

/**
 * A matched node as restic's find --json prints it: path and permissions first, then the node's
 * fields without name, content, subtree, device and the attribute maps.
 */
function nodeMatchJson(path: string, n: TreeNode): string {
  const parts = [`"path":${goJsonString(path)}`, `"permissions":${goJsonString(formatGoFileMode(n.mode))}`, `"type":"${n.type}"`];
  if (n.mode) parts.push(`"mode":${n.mode}`);
  parts.push(`"mtime":"${formatGoTime(n.mtime)}"`, `"atime":"${formatGoTime(n.atime)}"`, `"ctime":"${formatGoTime(n.ctime)}"`);
  parts.push(`"uid":${n.uid}`, `"gid":${n.gid}`);
  if (n.user) parts.push(`"user":${goJsonString(n.user)}`);
  if (n.group) parts.push(`"group":${goJsonString(n.group)}`);
  const u64 = (key: string, v: number | bigint | undefined) => {
    if (v !== undefined && BigInt(v) !== 0n) parts.push(`"${key}":${v.toString()}`);
  };
  u64('inode', n.inode);
  u64('device_id', n.deviceId);
  u64('size', n.size);
  u64('links', n.links);
  if (n.linktarget) parts.push(`"linktarget":${goJsonString(n.linktarget)}`);
  if (n.error) parts.push(`"error":${goJsonString(n.error)}`);
  return `{${parts.join(',')}}`;
}

class PatternOutput {
  readonly #ctx: CommandContext;
  readonly #long: boolean;
  readonly #human: boolean;
  #current: SnapshotEntry | undefined;
  #hits = 0;
  #open = false;

  constructor(ctx: CommandContext) {
    this.#ctx = ctx;
    this.#long = ctx.flags.bool('long');
    this.#human = ctx.flags.bool('human-readable');
  }

  hit(snapshot: SnapshotEntry, path: string, node: TreeNode): void {
    const ctx = this.#ctx;
    if (ctx.json) {
      if (!this.#open) {
        ctx.out('[');
        this.#open = true;
      }
      if (this.#current !== snapshot) {
        if (this.#current) ctx.out(`],"hits":${this.#hits},"snapshot":"${this.#current.id}"},`);
        ctx.out('{"matches":[');
        this.#current = snapshot;
        this.#hits = 0;
      }
      if (this.#hits > 0) ctx.out(',');
      ctx.out(nodeMatchJson(path, node));
      this.#hits++;
      return;
    }
    if (this.#current !== snapshot) {
      if (this.#current && !ctx.quiet) ctx.out('\n');
      this.#current = snapshot;
      if (!ctx.quiet) ctx.out(`Found matching entries in snapshot ${snapshot.id.slice(0, 8)} from ${localTime(snapshot.snapshot.time)}\n`);
    }
    ctx.out(formatNode(path, node, this.#long, this.#human) + '\n');
  }

  finish(): void {
    if (!this.#ctx.json) return;
    if (this.#current) this.#ctx.out(`],"hits":${this.#hits},"snapshot":"${this.#current.id}"}`);
    this.#ctx.out(this.#open ? ']\n' : '[]\n');
  }
}

async function findObjects(ctx: CommandContext, repo: IndexedRepository, ids: string[], common: FindCommonOptions): Promise<number> {
  const f = ctx.flags;
  const gen = findIds(repo, {
    ...common,
    blobs: f.bool('blob') ? ids : undefined,
    trees: f.bool('tree') ? ids : undefined,
    packs: f.bool('pack') ? ids : undefined,
  });
  let count = 0;
  let step = await gen.next();
  while (!step.done) {
    const o = step.value;
    if (ctx.json) {
      ctx.out(count === 0 ? '[' : ',');
      const parent = o.parentTree ? `,"parent_tree":"${o.parentTree}"` : '';
      ctx.out(`{"object_type":"${o.kind}","id":"${o.id}","path":${goJsonString(o.path)}${parent},"snapshot":"${o.snapshot.id}","time":"${formatGoTime(o.snapshot.snapshot.time)}"}`);
    } else {
      ctx.out(`Found ${o.kind} ${o.id}\n`);
      if (o.kind === 'blob') ctx.out(` ... in file ${o.path}\n     (tree ${o.parentTree})\n`);
      else ctx.out(` ... path ${o.path}\n`);
      ctx.out(` ... in snapshot ${o.snapshot.id.slice(0, 8)} (${localTime(o.snapshot.snapshot.time)})\n`);
    }
    count++;
    step = await gen.next();
  }
  const result = step.value;
  if (result.packsOnlyInIndex.length > 0) {
    ctx.err(`some pack files are missing from the repository, getting their blobs from the repository index: [${result.packsOnlyInIndex.join(' ')}]\n\n`);
  }
  printIgnored(ctx, result.ignored);
  if (ctx.json) ctx.out(count === 0 ? '[]\n' : ']\n');
  if (f.bool('show-pack-id')) {
    for (const id of result.blobs) showPack(ctx, repo, id, 'data');
    for (const id of result.trees) showPack(ctx, repo, id, 'tree');
  }
  return 0;
}

/** restic's findObjectPack output for one ID. */
function showPack(ctx: CommandContext, repo: IndexedRepository, id: string, type: BlobType): void {
  if (!/^[0-9a-f]{64}$/.test(id)) {
    ctx.out(`Note: cannot find pack for object '${id}', unable to parse ID: invalid length for ID: ${JSON.stringify(id)}\n`);
    return;
  }
  const locs = blobPacks(repo, type, id as BlobId);
  if (locs.length === 0) {
    // restic prints the type where the ID goes and the reverse.
    ctx.out(`Object ${type} with type ${id.slice(0, 8)} not found in the index\n`);
    return;
  }
  const l = locs[0]!;
  ctx.out(`Object belongs to pack ${l.packId}\n ... Pack ${l.packId.slice(0, 8)}: <Blob (${type}) ${id.slice(0, 8)}, offset ${l.offset}, length ${l.length}, uncompressed length ${l.uncompressedLength}>\n`);
}
