// Metadata queries: list and filter snapshots, find one by ID prefix or "latest", the parent
// for a backup, and repository statistics (the sizes and counts Stash shows on a Repository).
import type { CallOptions } from '../../backend/backend.ts';
import { InvalidInputError, NotFoundError } from '../../errors.ts';
import { baseRepository, withIndex, type AnyRepository, type IndexedRepository } from '../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../repository/id.ts';
import { mapLimit } from '../../repository/concurrency.ts';
import { type GoTime, compareGoTime } from '../../repository/gotime.ts';
import { decodeSnapshot, filterSnapshots, groupSnapshots, type Snapshot, type SnapshotFilter } from '../model/snapshot.ts';
import { decodeTree } from '../model/tree.ts';
import type { TreeNode } from '../model/node.ts';

/** A snapshot with its ID, as the queries return them. */
export interface SnapshotEntry {
  id: SnapshotId;
  snapshot: Snapshot;
}

export type { SnapshotFilter };

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

/** The result of {@link repositoryStats}. */
export interface RepositoryStats {
  snapshotCount: number;
  /** Sum of file sizes over all snapshots, as restic `stats --mode restore-size`. */
  totalRestoreSize: number;
  totalFileCount: number;
  /** Bytes stored in packs (restic `stats --mode raw-data`: blob lengths as stored). */
  rawDataSize: number;
  /** Uncompressed size of the blobs the snapshots use. */
  uncompressedSize: number;
  /** uncompressedSize / rawDataSize (1 = no compression gain). */
  compressionRatio: number;
  /** Percentage of the uncompressed size saved by compression (0 to 100). */
  compressionSpaceSaving: number;
  blobCount: number;
  treeBlobCount: number;
  dataBlobCount: number;
  packCount: number;
  /** The oldest snapshot's time as written in it (null without snapshots); prints and serialises as RFC 3339. */
  firstBackup: GoTime | null;
  /** The newest snapshot's time (null without snapshots). */
  lastBackup: GoTime | null;
}

/**
 * Sizes and counts of a repository in one call: snapshot count, restore size, file count, stored
 * and uncompressed sizes, compression, blob and pack counts, first and last backup — the
 * statistics Stash shows on a Repository. It does not check integrity (Stash's `integrity`
 * field): that takes {@link checkRepository}.
 */
export async function repositoryStats(repository: AnyRepository, options: CallOptions = {}): Promise<RepositoryStats> {
  const repo = await withIndex(repository, options);
  const snaps = await listSnapshots(repo.repo, options);
  let totalRestoreSize = 0;
  let totalFileCount = 0;
  const usedBlobs = new Set<string>();
  const seenTrees = new Set<string>();
  const visit = async (treeId: BlobId): Promise<{ size: number; files: number }> => {
    let size = 0;
    let files = 0;
    const nodes = decodeTree(await repo.loadBlob('tree', treeId, options), treeId);
    usedBlobs.add(treeId);
    for (const n of nodes) {
      if (n.type === 'file') {
        size += Number(n.size ?? 0);
        files++;
        for (const c of n.content ?? []) usedBlobs.add(c);
      } else if (n.type === 'dir' && n.subtree) {
        const sub = await visitCached(n.subtree);
        size += sub.size;
        files += sub.files;
      }
    }
    return { size, files };
  };
  const cache = new Map<string, { size: number; files: number }>();
  const visitCached = async (id: BlobId) => {
    let r = cache.get(id);
    if (!r) {
      seenTrees.add(id);
      r = await visit(id);
      cache.set(id, r);
    }
    return r;
  };
  for (const s of snaps) {
    const r = await visitCached(s.snapshot.tree);
    totalRestoreSize += r.size;
    totalFileCount += r.files;
  }
  let rawDataSize = 0;
  let uncompressedSize = 0;
  let treeBlobCount = 0;
  let dataBlobCount = 0;
  const counted = new Set<string>();
  for (const e of repo.index.entries()) {
    if (counted.has(e.id)) continue;
    counted.add(e.id);
    if (e.type === 'tree') treeBlobCount++;
    else dataBlobCount++;
    if (!usedBlobs.has(e.id)) continue;
    rawDataSize += e.length;
    uncompressedSize += e.uncompressedLength || e.length - 32;
  }
  const times = snaps.map((s) => s.snapshot.time);
  return {
    snapshotCount: snaps.length,
    totalRestoreSize,
    totalFileCount,
    rawDataSize,
    uncompressedSize,
    compressionRatio: rawDataSize ? uncompressedSize / rawDataSize : 1,
    compressionSpaceSaving: uncompressedSize ? (1 - rawDataSize / uncompressedSize) * 100 : 0,
    blobCount: treeBlobCount + dataBlobCount,
    treeBlobCount,
    dataBlobCount,
    packCount: repo.index.packCount,
    firstBackup: times.length ? times[0]! : null,
    lastBackup: times.length ? times[times.length - 1]! : null,
  };
}
