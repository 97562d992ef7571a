// Choosing what to read, in one home: snapshots listed and filtered, one by "ID", unique prefix or
// "latest" (with filters), optionally with ":subfolder" (restic ≥ 0.17); restic's selection of
// several (explicit IDs, or every snapshot passing --host/--tag/--path); the parent of a backup;
// and a tree or node by its path. Restore, dump, diff, find, tag, copy and the CLI share these.
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, InvalidInputError, NotFoundError, StowageError, throwIfAborted } from '../../errors.ts';
import { baseRepository, withIndex, type AnyRepository, type IndexedRepository } from '../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../repository/id.ts';
import { mapLimit } from '../../repository/concurrency.ts';
import { compareGoTime } from '../../repository/gotime.ts';
import { decodeSnapshot, filterSnapshots, groupSnapshots, latestSnapshot, type SnapshotEntry, type SnapshotFilter } from '../model/snapshot.ts';
import { decodeTree } from '../model/tree.ts';
import type { TreeNode } from '../model/node.ts';

// ---------------------------------------------------------------------------------------------
// Listing and loading snapshots

export type { SnapshotEntry, SnapshotFilter };

/** Every snapshot, oldest first. */
export async function listSnapshots(repository: AnyRepository, options: CallOptions & SnapshotFilter = {}): Promise<SnapshotEntry[]> {
  const repo = baseRepository(repository);
  const ids: string[] = [];
  for await (const id of repo.listIds('snapshots', options)) ids.push(id);
  const all = await mapLimit(ids, 8, async (id) => ({
    id: id as SnapshotId,
    snapshot: decodeSnapshot(await repo.loadUnpacked('snapshots', id, options), id),
  }));
  return sortByTime(filterEntries(all, options));
}

export function sortByTime(list: SnapshotEntry[]): SnapshotEntry[] {
  return list.sort((a, b) => compareGoTime(a.snapshot.time, b.snapshot.time) || (a.id < b.id ? -1 : 1));
}

export function filterEntries(list: SnapshotEntry[], f: SnapshotFilter): SnapshotEntry[] {
  return filterSnapshots(list, f);
}

/** Loads a snapshot by full ID, unique prefix, or "latest" (with optional filters). */
export async function loadSnapshot(repository: AnyRepository, ref: string, options: CallOptions & SnapshotFilter = {}): Promise<SnapshotEntry> {
  const repo = baseRepository(repository);
  if (ref === 'latest') {
    const list = await listSnapshots(repo, options);
    const last = list[list.length - 1];
    if (!last) throw new NotFoundError('snapshot "latest" (no snapshot matches)');
    return last;
  }
  if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new InvalidInputError(`invalid snapshot ID ${JSON.stringify(ref)}`);
  const id = await repo.resolveId('snapshots', ref, options);
  return { id: id as SnapshotId, snapshot: decodeSnapshot(await repo.loadUnpacked('snapshots', id, options), id) };
}

/** restic's parent choice: the latest snapshot with the same hostname and the same set of paths. */
export async function findParentSnapshot(repo: AnyRepository, q: { hostname: string; paths: string[] }): Promise<SnapshotEntry | undefined> {
  const want = [...q.paths].sort().join('\0');
  const list = await listSnapshots(repo, { hosts: [q.hostname] });
  return list.filter((e) => [...e.snapshot.paths].sort().join('\0') === want).pop();
}

/** Keeps the n newest snapshots of each group (restic snapshots --latest n). */
export function latestPerGroup(list: SnapshotEntry[], n: number, by = { host: true, paths: true }): SnapshotEntry[] {
  const out: SnapshotEntry[] = [];
  for (const g of groupSnapshots(list, by)) out.push(...sortByTime(g.snapshots).slice(-n));
  return sortByTime(out);
}

/** Walks a tree depth first, yielding each node with its path ("/a/b"). */
export async function* walkTree(repository: AnyRepository, treeId: BlobId, prefix = '', options: CallOptions = {}): AsyncGenerator<{ path: string; node: TreeNode }> {
  const repo = await withIndex(repository, options);
  const nodes = decodeTree(await repo.loadBlob('tree', treeId, options), treeId);
  for (const node of nodes) {
    const p = `${prefix}/${node.name}`;
    yield { path: p, node };
    if (node.type === 'dir' && node.subtree) yield* walkTree(repo, node.subtree, p, options);
  }
}

/** Options of {@link listTree}. */
export interface ListTreeOptions extends CallOptions {
  /**
   * Absolute paths inside the tree ("/home/user"); without any, every node is listed. Each is
   * listed itself with its direct children (restic's `ls SNAPSHOT DIR...`), or its whole subtree
   * with `recursive`.
   */
  dirs?: readonly string[];
  /** List everything below each of `dirs`, not only its direct children. */
  recursive?: boolean;
  /**
   * Also yield the nodes on the way to `dirs` (restic's "prefix directories", which its `ls
   * --ncdu` prints), marked `prefix: true`.
   */
  prefixes?: boolean;
}

/**
 * restic's `ls` selection: walks a tree depth first in tree order and yields the nodes within one
 * of `dirs` (the dir itself and its direct children, or its whole subtree with `recursive`),
 * descending only where a dir lies deeper. A dir that names nothing in the tree lists nothing.
 * Paths are cleaned as restic cleans them ("/a/./b/", "/a/../b", "//a"); a relative one is an
 * InvalidInputError, as in restic.
 */
export async function* listTree(repository: AnyRepository, treeId: BlobId, options: ListTreeOptions = {}): AsyncGenerator<{ path: string; node: TreeNode; prefix?: true }> {
  const dirs = (options.dirs ?? []).map((d) => {
    if (!d.startsWith('/')) throw new InvalidInputError(`path filter ${JSON.stringify(d)}: all path filters must be absolute, starting with a forward slash '/'`);
    return cleanPathParts(d);
  });
  const repo = await withIndex(repository, options);
  const isPrefix = (base: readonly string[], p: readonly string[]) => base.length <= p.length && base.every((part, i) => p[i] === part);
  async function* walk(tree: BlobId, parts: string[]): AsyncGenerator<{ path: string; node: TreeNode; prefix?: true }> {
    for (const node of decodeTree(await repo.loadBlob('tree', tree, options), tree)) {
      const p = [...parts, node.name];
      const path = '/' + p.join('/');
      const within = dirs.length === 0 || dirs.some((d) => isPrefix(d, p));
      if (within) yield { path, node };
      else if (options.prefixes && dirs.some((d) => isPrefix(p, d))) yield { path, node, prefix: true };
      const descend = (within && (options.recursive || dirs.length === 0)) || dirs.some((d) => isPrefix(p, d));
      if (descend && node.type === 'dir' && node.subtree) yield* walk(node.subtree, p);
    }
  }
  yield* walk(treeId, []);
}

/** The parts of an absolute path after Go's path.Clean ("." dropped, ".." taken back). */
function cleanPathParts(path: string): string[] {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Selecting several snapshots (restic's FindFilteredSnapshots)

export interface SnapshotSelection {
  /** The snapshots, oldest first, each once. */
  snapshots: SnapshotEntry[];
  /**
   * References that selected nothing, with the reason; restic prints `Ignoring "<ref>": …` for
   * each and goes on. The ref "filters" means the filter was given together with explicit IDs
   * (other than "latest") and was therefore not used.
   */
  ignored: Array<{ ref: string; error: StowageError }>;
}

/**
 * restic's rule: with `refs`, exactly those snapshots (full IDs, unique prefixes, and "latest",
 * which alone honours the filter); without, every snapshot passing the filter.
 */
export async function selectSnapshots(
  repository: AnyRepository,
  refs: readonly string[],
  filter: SnapshotFilter = {},
  options: CallOptions = {},
): Promise<SnapshotSelection> {
  const repo = baseRepository(repository);
  const ignored: SnapshotSelection['ignored'] = [];
  if (refs.length === 0) return { snapshots: await listSnapshots(repo, { ...filter, signal: options.signal }), ignored };

  let all: SnapshotEntry[] | undefined;
  const chosen = new Map<string, SnapshotEntry>();
  let usedFilter = false;
  for (const ref of refs) {
    throwIfAborted(options.signal);
    try {
      if (ref === 'latest') {
        if (usedFilter) continue;
        usedFilter = true;
        all ??= await listSnapshots(repo, { signal: options.signal });
        const latest = latestSnapshot(all, filter);
        if (!latest) throw new NotFoundError(`snapshot "latest" (no snapshot matched the filter)`);
        chosen.set(latest.id, latest);
      } else if (ref.includes(':')) {
        throw new InvalidInputError('<snapshot>:<subfolder> syntax not allowed');
      } else {
        const entry = await loadSnapshot(repo, ref, { signal: options.signal });
        chosen.set(entry.id, entry);
      }
    } catch (e) {
      if (!(e instanceof StowageError) || e instanceof AbortedError) throw e;
      ignored.push({ ref, error: e });
    }
  }
  const filtered = (filter.hosts?.length ?? 0) + (filter.tags?.length ?? 0) + (filter.paths?.length ?? 0) > 0;
  if (!usedFilter && filtered) ignored.push({ ref: 'filters', error: new InvalidInputError('explicit snapshot ids are given') });
  return { snapshots: sortByTime([...chosen.values()]), ignored };
}

// ---------------------------------------------------------------------------------------------
// References and paths

/** A snapshot reference resolved to the tree it names (the snapshot's, or a subfolder's). */
export interface ResolvedSnapshotRef {
  snapshot: SnapshotEntry;
  /** The part after ':' ("" for the whole snapshot). */
  subfolder: string;
  /** The tree of the snapshot root or of the subfolder. */
  tree: BlobId;
}

/** Splits "ID[:subfolder]" / "latest[:subfolder]" at the first ':'. */
export function parseSnapshotRef(ref: string): { id: string; subfolder: string } {
  const colon = ref.indexOf(':');
  const id = colon < 0 ? ref : ref.slice(0, colon);
  if (id === '') throw new InvalidInputError(`invalid snapshot reference ${JSON.stringify(ref)} (expected ID, prefix or "latest", optionally ":subfolder")`);
  return { id, subfolder: colon < 0 ? '' : ref.slice(colon + 1) };
}

/**
 * Resolves "ID", a unique ID prefix or "latest" (the newest snapshot passing `options`' filter),
 * each optionally followed by ":subfolder", to its tree (restic's FindSnapshot +
 * FindTreeDirectory).
 */
export async function resolveSnapshotRef(repo: IndexedRepository, ref: string, options: CallOptions & SnapshotFilter = {}): Promise<ResolvedSnapshotRef> {
  const { id, subfolder } = parseSnapshotRef(ref);
  const snapshot = await loadSnapshot(repo.repo, id, options);
  const tree = await findTreeByPath(repo, snapshot.snapshot.tree, subfolder, `snapshot ${snapshot.id.slice(0, 8)}`, options);
  return { snapshot, subfolder, tree };
}

/**
 * What `restore` and similar calls accept as a source: `"latest"`, a snapshot ID or unique prefix
 * (each optionally `":subfolder"`), a {@link SnapshotEntry} from `listSnapshots`, or a tree ID.
 */
export type TreeSource = string | SnapshotEntry;

/**
 * The tree a {@link TreeSource} names. A full 64-hex ID that the index knows as a tree blob is
 * taken as that tree (what `restore` took before snapshot references); anything else is resolved
 * as a snapshot reference, "latest" filtered by `options`.
 */
export async function resolveTreeSource(repo: IndexedRepository, source: TreeSource, options: CallOptions & SnapshotFilter = {}): Promise<BlobId> {
  if (typeof source !== 'string') return source.snapshot.tree;
  if (/^[0-9a-f]{64}$/.test(source) && repo.index.lookup(source as BlobId, 'tree').length > 0) return source as BlobId;
  return (await resolveSnapshotRef(repo, source, options)).tree;
}

/** The folder at `path` ("a/b", "/a/b"; "" is the root) below `root`, as a tree ID. */
export async function findTreeByPath(repo: IndexedRepository, root: BlobId, path: string, where: string, options: CallOptions = {}): Promise<BlobId> {
  let tree = root;
  let walked = '';
  for (const part of pathParts(path)) {
    walked += '/' + part;
    const node = await childNamed(repo, tree, part, options);
    if (!node) throw new NotFoundError(`path ${walked} in ${where}`);
    if (node.type !== 'dir' || !node.subtree) throw new NotFoundError(`directory ${walked} in ${where} (it is a ${node.type})`);
    tree = node.subtree;
  }
  return tree;
}

/** The node at `path` ("a/b/c", leading '/' optional) below `root`; NotFoundError names the path. */
export async function findNodeByPath(repo: IndexedRepository, root: BlobId, path: string, where: string, options: CallOptions = {}): Promise<TreeNode> {
  const parts = pathParts(path);
  const last = parts.pop();
  if (last === undefined) throw new InvalidInputError(`${JSON.stringify(path)} names the root of ${where}, not an entry`);
  const parent = await findTreeByPath(repo, root, parts.join('/'), where, options);
  const node = await childNamed(repo, parent, last, options);
  if (!node) throw new NotFoundError(`path /${[...parts, last].join('/')} in ${where}`);
  return node;
}

function pathParts(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

async function childNamed(repo: IndexedRepository, tree: BlobId, name: string, options: CallOptions): Promise<TreeNode | undefined> {
  return decodeTree(await repo.loadBlob('tree', tree, options), tree).find((n) => n.name === name);
}
