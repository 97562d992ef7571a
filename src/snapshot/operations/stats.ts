// Repository statistics in one call: the sizes and counts Stash shows on a Repository.
import type { CallOptions } from '../../backend/backend.ts';
import { IndexedRepository, withIndex, type AnyRepository } from '../../repository/repository.ts';
import type { BlobId } from '../../repository/id.ts';
import type { GoTime } from '../../repository/gotime.ts';
import { decodeTree } from '../model/tree.ts';
import { listSnapshots } from '../engine/select.ts';

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
  // An index loaded earlier is brought up to date first (the LIST requests only, when nothing
  // changed): the counts below come from it, and other clients may have backed up or pruned.
  if (repository instanceof IndexedRepository) await repository.refresh({ signal: options.signal });
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
