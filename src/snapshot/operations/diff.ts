// Differences between two snapshots (or two folders of them), as restic's `diff` reports them:
// one change per path ('+' added, '-' removed, 'M' content modified, 'T' type changed, 'U'
// metadata updated with `metadata`, '?' after 'M' when nothing but the content changed, a
// hint of bitrot), and statistics of what was added and removed, blobs included.
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, BlobNotFoundError, throwIfAborted } from '../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository } from '../../repository/repository.ts';
import type { BlobId, BlobType } from '../../repository/id.ts';
import type { BlobLocation } from '../../repository/master-index.ts';
import { CRYPTO_OVERHEAD } from '../../repository/crypto.ts';
import { compareGoStrings } from '../model/gojson.ts';
import type { TreeNode } from '../model/node.ts';
import { decodeTree } from '../model/tree.ts';
import type { SnapshotEntry } from '../engine/select.ts';
import { resolveSnapshotRef } from '../engine/select.ts';

/** One difference between two snapshots, as `restic diff` prints it. */
export interface DiffChange {
  /** "/dir/file", folders with a trailing '/'. */
  path: string;
  /** '+', '-', or a combination of 'T', 'M', '?', 'U' (restic's order). */
  modifier: string;
}

/** Counts of what was added or removed between two snapshots. */
export interface DiffStat {
  files: number;
  dirs: number;
  others: number;
  dataBlobs: number;
  treeBlobs: number;
  /** Plaintext bytes of those blobs. */
  bytes: number;
}

/** The summary of {@link diffSnapshots}. */
export interface DiffResult {
  /** Files whose content changed. */
  changedFiles: number;
  /** What the second snapshot has that the first lacks. */
  added: DiffStat;
  /** What the first snapshot has that the second lacks. */
  removed: DiffStat;
}

/** Options of {@link diffSnapshots}. */
export interface DiffOptions extends CallOptions {
  /** Report metadata changes ('U'), restic --metadata. */
  metadata?: boolean;
  /** Called for each change, in restic's order (depth first, by name). */
  onChange?: (change: DiffChange) => void;
  /**
   * A folder that cannot be read below the top level: restic reports it and goes on. Without
   * this callback the error is thrown.
   */
  onError?: (error: unknown) => void;
}

/** What one side of a diff is: a snapshot and, for "ID:subfolder", the folder's tree. */
export interface DiffSide {
  snapshot: SnapshotEntry;
  subfolder: string;
  tree: BlobId;
}

/**
 * Resolves "ID", "ID:subfolder" or "latest[:subfolder]" to the tree to compare (restic's
 * FindSnapshot + FindTreeDirectory).
 */
export async function resolveDiffSide(repo: IndexedRepository, ref: string, options: CallOptions = {}): Promise<DiffSide> {
  return resolveSnapshotRef(repo, ref, options);
}

/** Compares two trees as restic's diff does. */
export async function diffTrees(repo: IndexedRepository, tree1: BlobId, tree2: BlobId, options: DiffOptions = {}): Promise<DiffResult> {
  const run = new DiffRun(repo, options);
  run.before.add(blobKey('tree', tree1));
  run.after.add(blobKey('tree', tree2));
  await run.diffTree('/', tree1, tree2);
  return run.result();
}

/** Compares two snapshot references ("ID", "ID:subfolder", "latest"). */
export async function diffSnapshots(
  repository: AnyRepository,
  ref1: string,
  ref2: string,
  options: DiffOptions = {},
): Promise<DiffResult & { source: DiffSide; target: DiffSide }> {
  const repo = await withIndex(repository, options);
  const source = await resolveDiffSide(repo, ref1, options);
  const target = await resolveDiffSide(repo, ref2, options);
  return { ...(await diffTrees(repo, source.tree, target.tree, options)), source, target };
}

const blobKey = (type: BlobType, id: string) => `${type}:${id}`;

function emptyStat(): DiffStat {
  return { files: 0, dirs: 0, others: 0, dataBlobs: 0, treeBlobs: 0, bytes: 0 };
}

function joinPath(prefix: string, name: string): string {
  return prefix.endsWith('/') ? prefix + name : `${prefix}/${name}`;
}

class DiffRun {
  readonly #repo: IndexedRepository;
  readonly #options: DiffOptions;
  readonly before = new Set<string>();
  readonly after = new Set<string>();
  /** Blobs of folders that are the same on both sides. */
  readonly #common = new Set<string>();
  readonly #added = emptyStat();
  readonly #removed = emptyStat();
  #changedFiles = 0;
  /** Whether the byte counts met a missing blob already, and whether that refreshed the index. */
  #missed = false;
  #refreshedOnMiss = false;

  constructor(repo: IndexedRepository, options: DiffOptions) {
    this.#repo = repo;
    this.#options = options;
  }

  async #load(id: BlobId): Promise<TreeNode[]> {
    throwIfAborted(this.#options.signal);
    return decodeTree(await this.#repo.loadBlob('tree', id, this.#options), id);
  }

  #change(path: string, modifier: string): void {
    this.#options.onChange?.({ path, modifier });
  }

  /** Errors below the top level are reported and skipped, as restic does. */
  async #guard(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      if (e instanceof AbortedError || !this.#options.onError) throw e;
      this.#options.onError(e);
    }
  }

  async diffTree(prefix: string, id1: BlobId, id2: BlobId): Promise<void> {
    const tree1 = await this.#load(id1);
    const tree2 = await this.#load(id2);
    let i = 0;
    let j = 0;
    while (i < tree1.length || j < tree2.length) {
      const cmp = i >= tree1.length ? 1 : j >= tree2.length ? -1 : compareGoStrings(tree1[i]!.name, tree2[j]!.name);
      const node1 = cmp <= 0 ? tree1[i++] : undefined;
      const node2 = cmp >= 0 ? tree2[j++] : undefined;
      addBlobs(this.before, node1);
      addBlobs(this.after, node2);
      if (node1 && node2) await this.#both(prefix, node1, node2);
      else if (node1) await this.#oneSided(prefix, node1, '-', this.#removed, this.before);
      else if (node2) await this.#oneSided(prefix, node2, '+', this.#added, this.after);
    }
  }

  async #both(prefix: string, node1: TreeNode, node2: TreeNode): Promise<void> {
    let name = joinPath(prefix, node1.name);
    let mod = '';
    if (node1.type !== node2.type) mod += 'T';
    if (node2.type === 'dir') name += '/';
    if (node1.type === 'file' && node2.type === 'file' && !sameContent(node1.content, node2.content)) {
      mod += 'M';
      this.#changedFiles++;
      // Same metadata but other content: likely bitrot (unless backups ignored inode or ctime).
      if (nodesEqual({ ...node1, content: null }, { ...node2, content: null })) mod += '?';
    } else if (this.#options.metadata && !nodesEqual(node1, node2)) {
      mod += 'U';
    }
    if (mod !== '') this.#change(name, mod);
    if (node1.type === 'dir' && node2.type === 'dir' && node1.subtree && node2.subtree) {
      const [s1, s2] = [node1.subtree, node2.subtree];
      await this.#guard(() => (s1 === s2 ? this.#collect(s1) : this.diffTree(name, s1, s2)));
    }
  }

  async #oneSided(prefix: string, node: TreeNode, mode: '+' | '-', stat: DiffStat, blobs: Set<string>): Promise<void> {
    let name = joinPath(prefix, node.name);
    if (node.type === 'dir') name += '/';
    this.#change(name, mode);
    countNode(stat, node);
    if (node.type === 'dir' && node.subtree) {
      const subtree = node.subtree;
      await this.#guard(() => this.#printDir(mode, stat, blobs, name, subtree));
    }
  }

  /** Everything below a folder that is only on one side. */
  async #printDir(mode: '+' | '-', stat: DiffStat, blobs: Set<string>, prefix: string, id: BlobId): Promise<void> {
    for (const node of await this.#load(id)) {
      let name = joinPath(prefix, node.name);
      if (node.type === 'dir') name += '/';
      this.#change(name, mode);
      countNode(stat, node);
      addBlobs(blobs, node);
      if (node.type === 'dir' && node.subtree) {
        const subtree = node.subtree;
        await this.#guard(() => this.#printDir(mode, stat, blobs, name, subtree));
      }
    }
  }

  /** The blobs of a folder that is the same on both sides; they count as neither added nor removed. */
  async #collect(id: BlobId): Promise<void> {
    for (const node of await this.#load(id)) {
      addBlobs(this.#common, node);
      if (node.type === 'dir' && node.subtree) {
        const subtree = node.subtree;
        await this.#guard(() => this.#collect(subtree));
      }
    }
  }

  async result(): Promise<DiffResult> {
    const both = new Set([...this.before].filter((k) => this.after.has(k)));
    const only = (side: Set<string>) => [...side].filter((k) => !both.has(k) && !this.#common.has(k));
    await this.#countBlobs(only(this.before), this.#removed);
    await this.#countBlobs(only(this.after), this.#added);
    return { changedFiles: this.#changedFiles, added: this.#added, removed: this.#removed };
  }

  async #countBlobs(keys: string[], stat: DiffStat): Promise<void> {
    for (const key of keys) {
      const [type, id] = key.split(':') as [BlobType, BlobId];
      if (type === 'data') stat.dataBlobs++;
      else stat.treeBlobs++;
      let loc: BlobLocation | undefined = this.#repo.index.lookup(id, type)[0];
      try {
        // The first blob the index lacks refreshes it once (another client's newer snapshot);
        // after that, a miss is reported without another refresh (a damaged repository may
        // lack many).
        if (!loc && !this.#missed) loc = (await this.#repo.locateBlob(type, id, { signal: this.#options.signal }))[0]!;
        if (!loc) throw new BlobNotFoundError(type, id, { indexRefreshed: this.#refreshedOnMiss });
      } catch (e) {
        this.#missed = true;
        if (e instanceof BlobNotFoundError) this.#refreshedOnMiss = e.indexRefreshed;
        // Its size is unknown: a BlobNotFoundError naming it, as the other reads report a miss.
        if (!(e instanceof BlobNotFoundError) || !this.#options.onError) throw e;
        this.#options.onError(e);
        continue;
      }
      stat.bytes += loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD;
    }
  }
}

function countNode(stat: DiffStat, node: TreeNode): void {
  if (node.type === 'file') stat.files++;
  else if (node.type === 'dir') stat.dirs++;
  else stat.others++;
}

function addBlobs(set: Set<string>, node: TreeNode | undefined): void {
  if (!node) return;
  if (node.type === 'file') for (const id of node.content ?? []) set.add(blobKey('data', id));
  else if (node.type === 'dir' && node.subtree) set.add(blobKey('tree', node.subtree));
}

/** restic compares content lists with reflect.DeepEqual: null and [] differ. */
function sameContent(a: BlobId[] | null, b: BlobId[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

const u64 = (v: number | bigint | undefined) => BigInt(v ?? 0);

/**
 * restic's Node.Equals: every field, times compared as instants (so the same mtime written with
 * another zone offset is equal), extended attributes as a set, generic attributes by value.
 */
export function nodesEqual(a: TreeNode, b: TreeNode): boolean {
  return (
    a.name === b.name &&
    a.type === b.type &&
    a.mode === b.mode &&
    a.mtime.epochNs === b.mtime.epochNs &&
    a.atime.epochNs === b.atime.epochNs &&
    a.ctime.epochNs === b.ctime.epochNs &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    (a.user ?? '') === (b.user ?? '') &&
    (a.group ?? '') === (b.group ?? '') &&
    u64(a.inode) === u64(b.inode) &&
    u64(a.deviceId) === u64(b.deviceId) &&
    u64(a.size) === u64(b.size) &&
    u64(a.links) === u64(b.links) &&
    (a.linktarget ?? '') === (b.linktarget ?? '') &&
    u64(a.device) === u64(b.device) &&
    sameContent(a.content, b.content) &&
    sameXattrs(a, b) &&
    sameGeneric(a, b) &&
    a.subtree === b.subtree &&
    (a.error ?? '') === (b.error ?? '')
  );
}

function sameXattrs(a: TreeNode, b: TreeNode): boolean {
  const xa = a.extendedAttributes ?? [];
  const xb = b.extendedAttributes ?? [];
  if (xa.length !== xb.length) return false;
  const byName = new Map(xa.map((x) => [x.name, x.value]));
  const seen = new Set<string>();
  for (const x of xb) {
    const v = byName.get(x.name);
    if (v === undefined || !Buffer.from(v).equals(Buffer.from(x.value))) return false;
    seen.add(x.name);
  }
  return seen.size === byName.size;
}

function sameGeneric(a: TreeNode, b: TreeNode): boolean {
  const ga = a.genericAttributes ?? {};
  const gb = b.genericAttributes ?? {};
  const ka = Object.keys(ga);
  if (ka.length !== Object.keys(gb).length) return false;
  return ka.every((k) => Object.hasOwn(gb, k) && ga[k] === gb[k]);
}
