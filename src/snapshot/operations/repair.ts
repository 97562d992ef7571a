// `repair index` and `repair snapshots`, with restic's semantics.
//
// repair index: builds the index again from what is stored. Index entries of packs that exist
// with the size the index implies are kept (with readAllPacks every pack is read instead); packs
// in no index, or of another size, have their headers read; packs that no longer exist are left
// out, and so are packs whose header cannot be read. The new index files are written first and
// only then the old ones are deleted, so an interruption never leaves the repository without an
// index for a stored pack.
//
// repair snapshots: rewrites every tree of the chosen snapshots. A file keeps only the data
// blobs that are indexed (and not named in damagedBlobs) and its size becomes theirs; a folder
// whose tree cannot be loaded becomes an empty folder; a snapshot whose root tree cannot be
// loaded is removed. A changed snapshot is saved anew with `original` set to the old ID and the
// tag "repaired" (no tag with forget, which removes the old snapshot), as restic does.
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, IntegrityError, StowageError, throwIfAborted } from '../../errors.ts';
import type { BlobWriter, IndexedRepository, Repository } from '../../repository/repository.ts';
import { baseRepository, sha256hex, type AnyRepository } from '../../repository/repository.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import { CRYPTO_OVERHEAD } from '../../repository/crypto.ts';
import { goTimeString } from '../../repository/gotime.ts';
import type { BlobId, PackId, SnapshotId } from '../../repository/id.ts';
import type { IndexPack } from '../../repository/index-file.ts';
import { IndexWriter } from '../../repository/index-writer.ts';
import { expectedPackSize, packFile, type PackedBlob } from '../../repository/pack.ts';
import { loadPackHeader } from '../../repository/pack-reader.ts';
import { mapLimit, Semaphore } from '../../repository/concurrency.ts';
import { loadIndexFiles } from '../../repository/index-loader.ts';
import { decodeSnapshot, encodeSnapshot, findSnapshotByPrefix, snapshotMatches, type Snapshot, type SnapshotFilter } from '../model/snapshot.ts';
import { sortByTime, type SnapshotEntry } from '../engine/select.ts';
import { decodeTree, encodeTree, nodeNameProblem, sortNodes } from '../model/tree.ts';
import type { TreeNode } from '../model/node.ts';

interface LockingOptions {
  /** Take an exclusive lock for the run (default true). Pass false when the caller holds one. */
  lock?: boolean;
  /** Keep trying this long (ms) while another process holds a lock. */
  retryLock?: number;
}

/** Damage (bad bytes, a file or blob that is gone), as opposed to a backend or usage failure. */
function isDamage(e: unknown): boolean {
  return e instanceof StowageError && (e.code === 'INTEGRITY' || e.code === 'NOT_FOUND');
}

// ---------------------------------------------------------------------------------------------
// repair index

/** Progress of {@link repairIndex}, reported through `onProgress`. */
export interface RepairIndexProgress {
  phase: 'index' | 'read-packs' | 'write-index' | 'delete-index';
  done: number;
  total: number;
}

/** Options of {@link repairIndex}. */
export interface RepairIndexOptions extends CallOptions, LockingOptions {
  /** Read the header of every pack instead of trusting index entries whose pack size matches. */
  readAllPacks?: boolean;
  /** Human-readable lines, as restic prints them. */
  onMessage?: (m: string, level?: 'info' | 'warning') => void;
  /** Called as each phase advances. */
  onProgress?: (p: RepairIndexProgress) => void;
}

/** What {@link repairIndex} found and wrote. */
export interface RepairIndexResult {
  /** Index files that could not be loaded (they are deleted with the others). */
  invalidIndexFiles: Array<{ id: string; message: string }>;
  /** Packs in no index whose headers were read and added. */
  packsAdded: string[];
  /** Packs whose size did not match the index; their headers were read again. */
  packsReindexed: string[];
  /** Packs the old index named that do not exist; left out. */
  packsRemoved: string[];
  /** Packs whose header could not be read; left out of the index (they stay stored). */
  packsFailed: Array<{ pack: string; message: string }>;
  /** Pack headers read. */
  packsRead: number;
  /** Packs and blobs in the new index. */
  packs: number;
  /** Blobs in the new index. */
  blobs: number;
  /** IDs of the index files written. */
  indexFilesWritten: string[];
  /** IDs of the old index files deleted. */
  indexFilesRemoved: string[];
}

/**
 * Rebuilds the index as `restic repair index` does: keeps the entries of packs whose size matches,
 * reads the headers of packs that are new, resized or (with `readAllPacks`) all, writes new index
 * files and deletes the old ones. Holds an exclusive lock unless `lock: false`; throws
 * `LockedError` when another process holds a lock.
 */
export async function repairIndex(repository: AnyRepository, options: RepairIndexOptions = {}): Promise<RepairIndexResult> {
  const repo = baseRepository(repository);
  return withOptionalLock(repo, { lock: options.lock, exclusive: true, retryLock: options.retryLock, signal: options.signal }, () => rebuildIndex(repo, options));
}

async function rebuildIndex(repo: Repository, options: RepairIndexOptions): Promise<RepairIndexResult> {
  const say = options.onMessage ?? (() => undefined);
  const progress = options.onProgress ?? (() => undefined);
  const signal = options.signal;
  const result: RepairIndexResult = {
    invalidIndexFiles: [], packsAdded: [], packsReindexed: [], packsRemoved: [], packsFailed: [],
    packsRead: 0, packs: 0, blobs: 0, indexFilesWritten: [], indexFilesRemoved: [],
  };

  // The old index: what to keep, and which files to delete at the end.
  const oldIndexFiles: string[] = [];
  const kept = new Map<PackId, PackedBlob[]>();
  if (options.readAllPacks) {
    for await (const id of repo.listIds('index', { signal })) oldIndexFiles.push(id);
  } else {
    say('loading indexes...');
    const loaded = await loadIndexFiles(repo, { signal, onProgress: (done, total) => progress({ phase: 'index', done, total }) });
    oldIndexFiles.push(...loaded.files.keys());
    for (const f of loaded.failures) {
      // Only a file whose bytes are bad is replaced; a backend failure must not cost an index file.
      if (!(f.error instanceof StowageError) || (f.error.code !== 'INTEGRITY' && f.error.code !== 'NOT_FOUND')) throw f.error;
      if (f.error.code === 'NOT_FOUND') continue; // removed meanwhile: nothing to delete
      say(`removing invalid index ${f.id}: ${f.error.message}`);
      result.invalidIndexFiles.push({ id: f.id, message: f.error.message });
      oldIndexFiles.push(f.id);
    }
    for (const [pack, blobs] of loaded.index.packs()) kept.set(pack, blobs);
  }

  say('getting pack files to read...');
  const toRead = new Map<PackId, number>();
  const stored = new Set<string>();
  for await (const f of repo.backend.list('data', { signal })) {
    stored.add(f.name);
    const blobs = kept.get(f.name as PackId);
    if (blobs && expectedPackSize(blobs) === f.size) continue;
    if (!blobs) {
      if (!options.readAllPacks) say(`adding pack file to index ${f.name}`);
      result.packsAdded.push(f.name);
    } else {
      say(`reindexing pack file ${f.name} with unexpected size ${f.size} instead of ${expectedPackSize(blobs)}`, 'warning');
      result.packsReindexed.push(f.name);
      kept.delete(f.name as PackId);
    }
    toRead.set(f.name as PackId, f.size);
  }
  for (const pack of [...kept.keys()]) {
    if (stored.has(pack)) continue;
    say(`removing not found pack file ${pack}`, 'warning');
    result.packsRemoved.push(pack);
    kept.delete(pack);
  }

  if (toRead.size > 0) {
    say('reading pack files');
    let done = 0;
    const readList = [...toRead].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    await mapLimit(readList, Math.max(2, repo.backend.connections), async ([pack, size]) => {
      throwIfAborted(signal);
      try {
        const blobs = await loadPackHeader(repo.backend, repo.masterKeyForWorkers(), pack, size, { signal });
        if (repo.version === 1 && blobs.some((b) => b.uncompressedLength)) {
          throw new IntegrityError('pack holds compressed blobs, which repository version 1 does not support', { file: packFile(pack) });
        }
        kept.set(pack, blobs);
      } catch (e) {
        if (!isDamage(e)) throw e;
        say(`skipped incomplete pack file: ${pack}: ${(e as Error).message}`);
        result.packsFailed.push({ pack, message: (e as Error).message });
      }
      result.packsRead++;
      progress({ phase: 'read-packs', done: ++done, total: toRead.size });
    });
  }

  say('rebuilding index');
  const packs: IndexPack[] = [...kept].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([id, blobs]) => ({ id, blobs }));
  // Every batch is queued first (the packs are all known), then stored a few at a time.
  const index = new IndexWriter(repo, { signal, connections: Math.max(2, repo.backend.connections) });
  const writes: Array<Promise<string | undefined>> = [];
  for (const p of packs) {
    index.add(p);
    result.blobs += p.blobs.length;
    if (index.full) writes.push(index.write());
  }
  if (index.pending > 0) writes.push(index.write());
  result.packs = packs.length;
  let written = 0;
  result.indexFilesWritten = await Promise.all(writes.map(async (w) => {
    const id = (await w)!;
    progress({ phase: 'write-index', done: ++written, total: writes.length });
    return id;
  }));

  // Only now, with the new index stored, may the old files go. A new file can have the same
  // content, and so the same name, as an old one: that one stays.
  const keep = new Set(result.indexFilesWritten);
  const obsolete = [...new Set(oldIndexFiles)].filter((id) => !keep.has(id)).sort();
  let deleted = 0;
  await mapLimit(obsolete, Math.max(2, repo.backend.connections), async (id) => {
    try {
      await repo.backend.remove({ type: 'index', name: id }, { signal });
      result.indexFilesRemoved.push(id);
    } catch (e) {
      if (!(e instanceof StowageError && e.code === 'NOT_FOUND')) throw e;
    }
    progress({ phase: 'delete-index', done: ++deleted, total: obsolete.length });
  });
  result.indexFilesRemoved.sort();
  for (const list of [result.packsAdded, result.packsReindexed, result.packsRemoved]) list.sort();
  result.packsFailed.sort((a, b) => (a.pack < b.pack ? -1 : 1));
  return result;
}

// ---------------------------------------------------------------------------------------------
// repair snapshots

/** What {@link repairSnapshots} changed at one path. */
export type RepairChangeKind =
  /** Data blobs of a file were missing: the file keeps the rest and their size. */
  | 'content-removed'
  /** A file's size did not match its blobs and was set to theirs. */
  | 'size-fixed'
  /** A folder's tree could not be loaded: it became an empty folder. */
  | 'dir-replaced'
  /** A node was dropped: the type restic calls invalid, an unsafe name, or a name twice. */
  | 'node-removed'
  /** The snapshot's root tree could not be loaded: the snapshot is removed. */
  | 'root-unreadable';

/** One change {@link repairSnapshots} made in a snapshot. */
export interface RepairChange {
  kind: RepairChangeKind;
  /** Path inside the snapshot ("/" for the root). */
  path: string;
  detail?: string;
}

/** One snapshot as {@link repairSnapshots} handled it. */
export interface RepairedSnapshot {
  id: string;
  /** unchanged; rewritten (a new snapshot replaces it); removed (its root tree is unreadable). */
  status: 'unchanged' | 'rewritten' | 'removed';
  tree: string;
  /** The repaired root tree (rewritten only). */
  newTree?: string;
  /** The new snapshot's ID (rewritten, not in a dry run). */
  newId?: string;
  /** Whether the old snapshot file was (or in a dry run would be) deleted. */
  forgotten: boolean;
  changes: RepairChange[];
}

/** Progress of {@link repairSnapshots}, reported through `onProgress`. */
export interface RepairSnapshotsProgress {
  phase: 'snapshots';
  done: number;
  total: number;
}

/** Options of {@link repairSnapshots}. */
export interface RepairSnapshotsOptions extends CallOptions, LockingOptions {
  /** Snapshots to repair: full IDs or unique prefixes. Default: every snapshot the filter passes. */
  snapshotIds?: readonly string[];
  /** restic's --host/--tag/--path selection, when no `snapshotIds` are given. */
  filter?: SnapshotFilter;
  /** Work out what would change; write and delete nothing (and take no lock, as restic). */
  dryRun?: boolean;
  /** Delete each original snapshot once its repaired one is saved. */
  forget?: boolean;
  /**
   * Blobs (data or tree IDs) to treat as missing although the index lists them, e.g. the ones
   * `check` with readData found damaged.
   */
  damagedBlobs?: Iterable<string>;
  /** Human-readable lines, as restic prints them. */
  onMessage?: (m: string) => void;
  /** Called after each snapshot. */
  onProgress?: (p: RepairSnapshotsProgress) => void;
}

/** What {@link repairSnapshots} did (or, with `dryRun`, would do). */
export interface RepairSnapshotsResult {
  /** True when nothing was written (`dryRun`). */
  dryRun: boolean;
  /** Every snapshot looked at, with its changes. */
  snapshots: RepairedSnapshot[];
  /** Snapshots rewritten or removed. */
  modified: number;
  /** Snapshot files that could not be read (left as they are). */
  unreadable: Array<{ id: string; message: string }>;
  /** Tree blobs stored. */
  treesWritten: number;
}

/**
 * Repairs snapshots as `restic repair snapshots` does: files lose blobs that are missing (or listed
 * in `damagedBlobs`), unreadable folders become empty, invalid nodes are dropped, and each changed
 * snapshot is saved anew (the original deleted with `forget`). Holds an exclusive lock unless
 * `lock: false` or `dryRun`; throws `LockedError` when another process holds a lock.
 */
export async function repairSnapshots(repository: AnyRepository, options: RepairSnapshotsOptions = {}): Promise<RepairSnapshotsResult> {
  const repo = baseRepository(repository);
  return withOptionalLock(repo, { lock: options.lock !== false && !options.dryRun, exclusive: true, retryLock: options.retryLock, signal: options.signal }, async () => {
    const indexed = await repo.loadIndex({ signal: options.signal });
    return new SnapshotRepair(indexed, options).run();
  });
}

/** A change with the ID of the tree that holds its node (restic reports a tree's changes once). */
type TracedChange = RepairChange & { origin?: string };

/** How loading and rewriting one tree went: its new ID and the changes under it (relative paths). */
type TreeOutcome = { ok: true; id: BlobId; changes: RepairChange[] } | { ok: false; reason: string };

class SnapshotRepair {
  readonly repo: IndexedRepository;
  readonly options: RepairSnapshotsOptions;
  readonly say: (m: string) => void;
  readonly damaged: Set<string>;
  readonly writer: BlobWriter | undefined;
  readonly loads: Semaphore;
  /** Tree ID → its rewrite, shared by every snapshot and folder that has the tree. */
  readonly outcomes = new Map<string, Promise<TreeOutcome>>();

  constructor(repo: IndexedRepository, options: RepairSnapshotsOptions) {
    this.repo = repo;
    this.options = options;
    this.say = options.onMessage ?? (() => undefined);
    this.damaged = new Set(options.damagedBlobs ?? []);
    this.writer = options.dryRun ? undefined : repo.blobWriter({ signal: options.signal });
    this.loads = new Semaphore(Math.max(2, repo.backend.connections));
  }

  async run(): Promise<RepairSnapshotsResult> {
    const o = this.options;
    const { entries, unreadable } = await this.selectSnapshots();
    const result: RepairSnapshotsResult = { dryRun: o.dryRun === true, snapshots: [], modified: 0, unreadable, treesWritten: 0 };
    let done = 0;
    const reported = new Set<string>();
    // As restic, one snapshot at a time: its header, its changes, then what became of it (its
    // trees are stored before the snapshot that refers to them).
    for (const e of entries) {
      throwIfAborted(o.signal);
      const s = e.snapshot;
      this.say(`\nsnapshot ${e.id.slice(0, 8)} of [${s.paths.join(' ')}] at ${goTimeString(s.time)} by ${s.username ?? ''}@${s.hostname ?? ''}`);
      const root = await this.rewriteRoot(s.tree);
      const entry: RepairedSnapshot = { id: e.id, status: 'unchanged', tree: s.tree, forgotten: false, changes: root.changes };
      // As restic, a tree's changes are printed with the first snapshot that has the tree.
      root.changes.forEach((c, i) => {
        if (!reported.has(root.origins[i]!)) this.say(describeChange(c));
      });
      for (const t of root.origins) reported.add(t);
      if (root.id === null) {
        entry.status = 'removed';
        entry.forgotten = true;
      } else if (root.id !== s.tree) {
        entry.status = 'rewritten';
        entry.newTree = root.id;
        entry.forgotten = o.forget === true;
      }
      if (entry.status !== 'unchanged') result.modified++;
      result.snapshots.push(entry);
      if (entry.status === 'removed') {
        if (o.dryRun) this.say(`would delete empty snapshot ${entry.id.slice(0, 8)}`);
        else {
          await this.repo.backend.remove({ type: 'snapshots', name: entry.id }, { signal: o.signal });
          this.say(`removed empty snapshot ${entry.id.slice(0, 8)}`);
        }
      } else if (entry.status === 'rewritten') {
        if (o.dryRun) this.say(`would save new snapshot${o.forget ? '\nwould remove old snapshot' : ''}`);
        else {
          await this.writer!.flush();
          const repaired: Snapshot = { ...s, tree: entry.newTree as BlobId, original: entry.id as SnapshotId };
          if (!o.forget && !(s.tags ?? []).includes('repaired')) repaired.tags = [...(s.tags ?? []), 'repaired'];
          entry.newId = await this.repo.repo.saveUnpacked('snapshots', encodeSnapshot(repaired), { signal: o.signal });
          this.say(`saved new snapshot ${entry.newId.slice(0, 8)}`);
          if (o.forget) {
            await this.repo.backend.remove({ type: 'snapshots', name: entry.id }, { signal: o.signal });
            this.say(`removed old snapshot ${entry.id.slice(0, 8)}`);
          }
        }
      }
      o.onProgress?.({ phase: 'snapshots', done: ++done, total: entries.length });
    }
    if (this.writer) {
      await this.writer.flush();
      result.treesWritten = this.writer.stats.treeBlobs;
    }
    const n = result.modified;
    this.say(n === 0 ? `\nno snapshots ${o.dryRun ? 'would be' : 'were'} modified` : `\n${o.dryRun ? 'would modify' : 'modified'} ${n} snapshots`);
    return result;
  }

  async selectSnapshots(): Promise<{ entries: SnapshotEntry[]; unreadable: Array<{ id: string; message: string }> }> {
    const o = this.options;
    const all: string[] = [];
    for await (const id of this.repo.repo.listIds('snapshots', o)) all.push(id);
    const ids = o.snapshotIds ? [...new Set(o.snapshotIds.map((p) => findSnapshotByPrefix(all, p)))] : all;
    const unreadable: Array<{ id: string; message: string }> = [];
    const loaded = await mapLimit(ids, 8, async (id): Promise<SnapshotEntry | undefined> => {
      try {
        return { id: id as SnapshotId, snapshot: decodeSnapshot(await this.repo.repo.loadUnpacked('snapshots', id, o), id) };
      } catch (e) {
        if (!isDamage(e)) throw e;
        this.say(`snapshot ${id}: ${(e as Error).message}`);
        unreadable.push({ id, message: (e as Error).message });
        return undefined;
      }
    });
    const entries = loaded.filter((e): e is SnapshotEntry => e !== undefined && (!o.filter || snapshotMatches(e.snapshot, o.filter)));
    unreadable.sort((a, b) => (a.id < b.id ? -1 : 1));
    return { entries: sortByTime(entries), unreadable };
  }

  /** The root's rewrite; `origins` holds, for each change, the ID of the tree that holds its node. */
  async rewriteRoot(tree: string): Promise<{ id: BlobId | null; changes: RepairChange[]; origins: string[] }> {
    const r = await this.outcome(tree);
    if (!r.ok) return { id: null, changes: [{ kind: 'root-unreadable', path: '/', detail: r.reason }], origins: [tree] };
    return {
      id: r.id,
      changes: r.changes.map(({ origin: _origin, ...c }: TracedChange) => ({ ...c, path: '/' + c.path })),
      origins: r.changes.map((c: TracedChange) => c.origin ?? tree),
    };
  }

  outcome(tree: string): Promise<TreeOutcome> {
    let p = this.outcomes.get(tree);
    if (!p) {
      p = this.rewriteTree(tree);
      this.outcomes.set(tree, p);
    }
    return p;
  }

  /** Loads a tree and rewrites it; changes carry paths relative to it ('' is the tree itself). */
  async rewriteTree(tree: string): Promise<TreeOutcome> {
    throwIfAborted(this.options.signal);
    let nodes: TreeNode[];
    try {
      if (this.damaged.has(tree)) throw new IntegrityError('tree is listed as damaged', { blob: tree });
      const bytes = await this.loads.run(() => this.repo.loadBlob('tree', tree as BlobId, { signal: this.options.signal }));
      nodes = decodeTree(bytes, tree, { lenient: true });
    } catch (e) {
      if (e instanceof AbortedError || !isDamage(e)) throw e;
      return { ok: false, reason: (e as Error).message };
    }

    const changes: RepairChange[] = [];
    const kept = this.sanitize(nodes, changes);
    // Subtrees are rewritten concurrently; their changes are collected per node to keep node order.
    const rewritten = await Promise.all(kept.map(async (node): Promise<{ node?: TreeNode; changes: RepairChange[] }> => {
      const own: RepairChange[] = [];
      if (node.type === 'irregular') {
        own.push({ kind: 'node-removed', path: node.name, detail: 'invalid type "irregular"' });
        return { changes: own };
      }
      if (node.type === 'file') return { node: this.repairFile(node, own), changes: own };
      if (node.type !== 'dir') return { node, changes: own };
      // A missing subtree reads as the null ID, which no index holds: the folder becomes empty.
      const sub = await this.outcome(node.subtree ?? '0'.repeat(64));
      if (!sub.ok) {
        own.push({ kind: 'dir-replaced', path: node.name, detail: sub.reason });
        return { node: { ...node, subtree: await this.saveTree([]) }, changes: own };
      }
      for (const c of sub.changes) own.push({ ...c, path: c.path === '' ? node.name : `${node.name}/${c.path}` });
      return { node: { ...node, subtree: sub.id }, changes: own };
    }));
    for (const r of rewritten) changes.push(...r.changes);
    // The changes made here name this tree (those from below keep theirs).
    for (const c of changes as TracedChange[]) c.origin ??= tree;
    const id = await this.saveTree(rewritten.flatMap((r) => (r.node ? [r.node] : [])));
    return { ok: true, id, changes };
  }

  /** Drops nodes no tree may hold (unsafe names, a name twice); restic cannot re-encode them either. */
  sanitize(nodes: TreeNode[], changes: RepairChange[]): TreeNode[] {
    const out: TreeNode[] = [];
    const seen = new Set<string>();
    for (const n of nodes) {
      const problem = nodeNameProblem(n.name);
      if (problem !== undefined) {
        changes.push({ kind: 'node-removed', path: JSON.stringify(n.name).slice(1, -1) || '""', detail: `unsafe name: ${problem}` });
      } else if (seen.has(n.name)) {
        changes.push({ kind: 'node-removed', path: n.name, detail: 'name appears twice' });
      } else {
        seen.add(n.name);
        out.push(n);
      }
    }
    // Keep restic's order (by name bytes); a tree out of order is sorted.
    return sortNodes(out);
  }

  repairFile(node: TreeNode, changes: RepairChange[]): TreeNode {
    const content = node.content ?? [];
    const kept: BlobId[] = [];
    let size = 0;
    for (const id of content) {
      const loc = this.damaged.has(id) ? undefined : this.repo.index.lookup(id, 'data')[0];
      if (!loc) continue;
      kept.push(id);
      size += loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD;
    }
    if (kept.length < content.length) {
      changes.push({ kind: 'content-removed', path: node.name, detail: `${content.length - kept.length} of ${content.length} data blobs missing` });
    } else if (BigInt(node.size ?? 0) !== BigInt(size)) {
      changes.push({ kind: 'size-fixed', path: node.name, detail: `size ${node.size ?? 0} → ${size}` });
    }
    return { ...node, content: kept, size };
  }

  /** Encodes a tree and stores it unless it exists (nothing is stored in a dry run). */
  async saveTree(nodes: TreeNode[]): Promise<BlobId> {
    const bytes = encodeTree(nodes);
    if (!this.writer) return sha256hex(bytes) as BlobId;
    return (await this.writer.saveBlob('tree', bytes)).id;
  }
}

function describeChange(c: RepairChange): string {
  switch (c.kind) {
    case 'content-removed':
      return `  file ${JSON.stringify(c.path)}: removed missing content`;
    case 'size-fixed':
      return `  file ${JSON.stringify(c.path)}: fixed incorrect size`;
    case 'dir-replaced':
      return `  dir ${JSON.stringify(c.path)}: replaced with empty directory`;
    case 'root-unreadable':
      return `  dir "/": not readable`;
    case 'node-removed':
      return `  node ${JSON.stringify(c.path)}: removed (${c.detail ?? 'invalid'})`;
  }
}
