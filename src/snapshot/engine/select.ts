// Naming what to read: a snapshot by "ID", unique prefix or "latest" (with filters), optionally
// with ":subfolder" (restic ≥ 0.17), and a node by its path inside a tree. One home for the
// lookups that restore, dump, diff and the CLI share.
import type { CallOptions } from '../../backend/backend.ts';
import { InvalidInputError, NotFoundError } from '../../errors.ts';
import type { IndexedRepository } from '../../repository/repository.ts';
import type { BlobId } from '../../repository/id.ts';
import type { TreeNode } from '../model/node.ts';
import { decodeTree } from '../model/tree.ts';
import { loadSnapshot, type SnapshotEntry } from '../operations/queries.ts';
import type { SnapshotFilter } from '../model/snapshot.ts';

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
