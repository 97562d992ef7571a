// What the server reads, kept in one place: the snapshot list (re-listed at most every
// `snapshotTtlMs`, only new snapshot files loaded), decoded trees (a small LRU bounded in bytes),
// and paths walked name by name from a snapshot's root. Names that cannot be a path component
// ('', '.', '..', '/', NUL) are never listed nor reachable: a tree holding one is shown without it.
import type { CallOptions } from '../backend/backend.ts';
import { InvalidInputError, NotFoundError } from '../errors.ts';
import { mapLimit } from '../repository/concurrency.ts';
import type { IndexedRepository } from '../repository/repository.ts';
import { goTimeFromNs } from '../repository/gotime.ts';
import type { BlobId, SnapshotId } from '../repository/id.ts';
import { sortByTime } from '../snapshot/engine/select.ts';
import type { TreeNode } from '../snapshot/model/node.ts';
import { decodeSnapshot, type SnapshotEntry } from '../snapshot/model/snapshot.ts';
import { decodeTree, nodeNameProblem } from '../snapshot/model/tree.ts';

/** A folder as the server shows it: its safe entries and how many unsafe ones were left out. */
export interface Folder {
  treeId: BlobId;
  nodes: TreeNode[];
  hidden: number;
}

/** Longest path component accepted in a request (bytes); longer ones cannot exist on any OS. */
export const MAX_NAME_BYTES = 4096;
/** Most components in one requested path. */
export const MAX_DEPTH = 512;

export class RepositoryView {
  readonly repo: IndexedRepository;
  readonly #ttl: number;
  #snapshots: Map<string, SnapshotEntry> = new Map();
  #sorted: SnapshotEntry[] = [];
  #listedAt = -Infinity;
  #listing: Promise<SnapshotEntry[]> | undefined;
  readonly #trees = new Map<string, { folder: Folder; bytes: number }>();
  #treeBytes = 0;
  readonly #treeLimit: number;
  readonly #blobs = new Map<string, Uint8Array>();
  readonly #loading = new Map<string, Promise<Uint8Array>>();
  #blobBytes = 0;
  readonly #blobLimit: number;

  constructor(repo: IndexedRepository, options: { snapshotTtlMs?: number; treeCacheBytes?: number; blobCacheBytes?: number } = {}) {
    this.repo = repo;
    this.#ttl = options.snapshotTtlMs ?? 5000;
    this.#treeLimit = options.treeCacheBytes ?? 32 * 1024 * 1024;
    this.#blobLimit = options.blobCacheBytes ?? 32 * 1024 * 1024;
  }

  /**
   * A data blob's plaintext. Clients read files in small ranges (Windows and macOS WebDAV ask for
   * 64 KiB or so at a time), and each range of a blob would otherwise load and decrypt the whole
   * blob again: the last blobs read are kept (an LRU of `blobCacheBytes`), and concurrent requests
   * for one blob share its single load. The shared load is not cut short by one client's abort;
   * each caller stops waiting on its own signal.
   */
  dataBlob(id: BlobId, options: CallOptions = {}): Promise<Uint8Array> {
    const hit = this.#blobs.get(id);
    if (hit) {
      this.#blobs.delete(id);
      this.#blobs.set(id, hit);
      return Promise.resolve(hit);
    }
    let loading = this.#loading.get(id);
    if (!loading) {
      loading = this.repo.loadBlob('data', id).then((data) => this.#keep(id, data)).finally(() => this.#loading.delete(id));
      this.#loading.set(id, loading);
    }
    return options.signal ? raceAbort(loading, options.signal) : loading;
  }

  /** Puts a loaded blob in the LRU (a copy when it is a small view of a larger buffer). */
  #keep(id: BlobId, loaded: Uint8Array): Uint8Array {
    // A small blob may be a view of a larger buffer (the decompressor's 64 KiB output, a range
    // read of many blobs): kept as it is, each would hold the whole buffer.
    const data = loaded.buffer.byteLength > loaded.length + 4096 ? Uint8Array.prototype.slice.call(loaded) : loaded;
    if (data.length <= this.#blobLimit / 4) {
      this.#blobs.delete(id);
      this.#blobs.set(id, data);
      this.#blobBytes += data.length;
      for (const [k, v] of this.#blobs) {
        if (this.#blobBytes <= this.#blobLimit) break;
        this.#blobs.delete(k);
        this.#blobBytes -= v.length;
      }
    }
    return data;
  }

  /** Every snapshot, oldest first; the list is at most `snapshotTtlMs` old. */
  snapshots(options: CallOptions = {}): Promise<SnapshotEntry[]> {
    if (performance.now() - this.#listedAt < this.#ttl) return Promise.resolve(this.#sorted);
    // Concurrent callers share one listing, which no single caller's abort may cut short.
    this.#listing ??= this.#list().finally(() => (this.#listing = undefined));
    return options.signal ? raceAbort(this.#listing, options.signal) : this.#listing;
  }

  async #list(): Promise<SnapshotEntry[]> {
    const ids: string[] = [];
    for await (const id of this.repo.repo.listIds('snapshots')) ids.push(id);
    const known = this.#snapshots;
    const next = new Map<string, SnapshotEntry>();
    const fresh = ids.filter((id) => !known.has(id));
    for (const id of ids) if (known.has(id)) next.set(id, known.get(id)!);
    const loaded = await mapLimit(fresh, 8, async (id) => ({ id: id as SnapshotId, snapshot: decodeSnapshot(await this.repo.repo.loadUnpacked('snapshots', id), id) }));
    for (const e of loaded) next.set(e.id, e);
    this.#snapshots = next;
    this.#sorted = sortByTime([...next.values()]);
    this.#listedAt = performance.now();
    return this.#sorted;
  }

  /** "latest", a full ID or a unique prefix of at least 4 hex digits. */
  async snapshot(ref: string, options: CallOptions = {}): Promise<SnapshotEntry> {
    const list = await this.snapshots(options);
    if (ref === 'latest') {
      const last = list[list.length - 1];
      if (!last) throw new NotFoundError('snapshot "latest" (the repository has no snapshot)');
      return last;
    }
    if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new InvalidInputError(`invalid snapshot ID ${JSON.stringify(ref.slice(0, 80))}`);
    let hits = list.filter((e) => e.id.startsWith(ref));
    if (hits.length === 0 && list === this.#sorted && performance.now() - this.#listedAt > 250) {
      // A snapshot written since the list was made (a link someone just shared): list again now.
      this.#listedAt = -Infinity;
      hits = (await this.snapshots(options)).filter((e) => e.id.startsWith(ref));
    }
    if (hits.length > 1) throw new InvalidInputError(`snapshot prefix ${ref} is ambiguous`);
    if (hits.length === 0) throw new NotFoundError(`snapshot ${ref}`);
    return hits[0]!;
  }

  /** A folder's safe entries, sorted by name as restic stores them. */
  async folder(treeId: BlobId, options: CallOptions = {}): Promise<Folder> {
    const hit = this.#trees.get(treeId);
    if (hit) {
      this.#trees.delete(treeId);
      this.#trees.set(treeId, hit);
      return hit.folder;
    }
    const bytes = await this.repo.loadBlob('tree', treeId, options);
    const all = decodeTree(bytes, treeId, { lenient: true });
    const nodes = all.filter((n) => nodeNameProblem(n.name) === undefined && Buffer.byteLength(n.name) <= MAX_NAME_BYTES && !(n.type === 'dir' && !n.subtree));
    const folder: Folder = { treeId, nodes, hidden: all.length - nodes.length };
    const size = bytes.length * 3;
    if (size <= this.#treeLimit / 4) {
      this.#trees.set(treeId, { folder, bytes: size });
      this.#treeBytes += size;
      for (const [id, e] of this.#trees) {
        if (this.#treeBytes <= this.#treeLimit) break;
        this.#trees.delete(id);
        this.#treeBytes -= e.bytes;
      }
    }
    return folder;
  }

  /**
   * The node at `parts` below the tree `root` (undefined parts: the root folder itself, returned
   * as a synthetic dir node). Every part must be a checked name (see checkName).
   */
  async lookup(root: BlobId, parts: readonly string[], where: string, options: CallOptions = {}): Promise<TreeNode> {
    let node: TreeNode = rootNode(root);
    let walked = '';
    for (const part of parts) {
      if (node.type !== 'dir' || !node.subtree) throw new NotFoundError(`path ${walked}/${part} in ${where}`);
      const folder = await this.folder(node.subtree, options);
      walked += '/' + part;
      const child = findSorted(folder.nodes, part);
      if (!child) throw new NotFoundError(`path ${walked} in ${where}`);
      node = child;
    }
    return node;
  }
}

/** A dir node standing for a snapshot's root (or any tree) so that lookups and listings treat it alike. */
export function rootNode(tree: BlobId, like?: Partial<TreeNode>): TreeNode {
  const zero = goTimeFromNs(0n, 0);
  return { name: '', type: 'dir', mode: 0x8000_01ed, mtime: zero, atime: zero, ctime: zero, uid: 0, gid: 0, content: null, subtree: tree, ...like };
}

function findSorted(nodes: readonly TreeNode[], name: string): TreeNode | undefined {
  // Trees are sorted by name bytes; a linear scan is still cheap next to the tree's decoding, and
  // lenient decoding does not promise the order.
  for (const n of nodes) if (n.name === name) return n;
  return undefined;
}

/** InvalidInputError when `name` cannot be a path component; the name otherwise. */
export function checkName(name: string): string {
  const problem = nodeNameProblem(name);
  if (problem !== undefined) throw new InvalidInputError(`path component ${JSON.stringify(name.slice(0, 40))} is not allowed: ${problem}`);
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw new InvalidInputError(`path component longer than ${MAX_NAME_BYTES} bytes`);
  return name;
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
