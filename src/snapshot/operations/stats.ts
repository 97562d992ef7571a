// Statistics: restic's `stats` in its four counting modes (snapshotStats), and the sizes and
// counts Stash shows on a Repository in one call (repositoryStats).
import type { CallOptions } from '../../backend/backend.ts';
import { InvalidInputError, IntegrityError, throwIfAborted } from '../../errors.ts';
import { IndexedRepository, withIndex, type AnyRepository } from '../../repository/repository.ts';
import type { BlobId } from '../../repository/id.ts';
import type { GoTime } from '../../repository/gotime.ts';
import { decodeTree } from '../model/tree.ts';
import type { TreeNode } from '../model/node.ts';
import type { SnapshotFilter } from '../model/snapshot.ts';
import { listSnapshots, selectSnapshots, type SnapshotSelection } from '../engine/select.ts';
import { TreeLoader } from '../engine/tree-loader.ts';

/** restic's counting modes of `stats --mode`. */
export const STATS_MODES = ['restore-size', 'files-by-contents', 'blobs-per-file', 'raw-data'] as const;
/** One of restic's `stats` counting modes ({@link STATS_MODES}). */
export type StatsMode = (typeof STATS_MODES)[number];

/** Options of {@link snapshotStats}. */
export interface SnapshotStatsOptions extends CallOptions {
  /** The counting mode (default `restore-size`). */
  mode?: StatsMode;
  /** Snapshots to count (IDs, prefixes, "latest"); none: every snapshot passing `filter`. */
  snapshots?: readonly string[];
  /** restic's --host/--tag/--path selection. */
  filter?: SnapshotFilter;
  /**
   * Called after each node walked and each blob counted, with restic's progress numbers: the
   * snapshots begun, and the nodes, blobs and bytes seen since the current snapshot began
   * (restic's status line; its last state is the line restic prints at the end).
   */
  onProgress?: (progress: SnapshotStatsProgress) => void;
}

/** Progress of {@link snapshotStats}, counted as restic's status line counts. */
export interface SnapshotStatsProgress {
  snapshotsDone: number;
  snapshotsTotal: number;
  files: number;
  blobs: number;
  bytes: number;
}

/**
 * The answer of {@link snapshotStats}: restic's `stats --json` fields (camel-cased). Fields
 * restic leaves out when zero are 0 here.
 */
export interface SnapshotStats {
  mode: StatsMode;
  snapshotsCount: number;
  /**
   * restore-size: the sizes of the files restored (hard links once per snapshot);
   * files-by-contents: of the files with distinct contents; blobs-per-file: of the data blobs
   * of each such file (plaintext); raw-data: of the blobs the snapshots use as stored.
   */
  totalSize: number;
  /**
   * restore-size: every node (files, folders, links…); files-by-contents: nodes with distinct
   * contents (every content-less node is one); blobs-per-file: files with data.
   */
  totalFileCount: number;
  /** blobs-per-file: distinct blobs per file; raw-data: distinct blobs. */
  totalBlobCount: number;
  /** raw-data in a v2 repository: the blobs' size were none compressed. */
  totalUncompressedSize: number;
  /** raw-data, v2: uncompressed / stored size of the compressed blobs. */
  compressionRatio: number;
  /** raw-data, v2: the share (%) of the uncompressed size held by compressed blobs. */
  compressionProgress: number;
  /** raw-data, v2: the share (%) of the uncompressed size compression saves. */
  compressionSpaceSaving: number;
  /** Snapshot references that selected nothing (restic prints `Ignoring …` and goes on). */
  ignored: SnapshotSelection['ignored'];
}

/** Per-blob encryption overhead (IV + MAC), as restic adds it back to uncompressed sizes. */
const SEAL_OVERHEAD = 32;

/**
 * restic's `stats`: walks the chosen snapshots (every snapshot passing `filter` when none is
 * named) and counts as restic 0.19 counts in the chosen mode — see {@link SnapshotStats} for
 * what each field means in each mode. The index is refreshed first when already loaded.
 */
export async function snapshotStats(repository: AnyRepository, options: SnapshotStatsOptions = {}): Promise<SnapshotStats> {
  const mode = options.mode ?? 'restore-size';
  if (!(STATS_MODES as readonly string[]).includes(mode)) {
    throw new InvalidInputError(`unknown counting mode: ${String(mode)} (${STATS_MODES.join(', ')})`);
  }
  const { signal } = options;
  if (repository instanceof IndexedRepository) await repository.refresh({ signal });
  const repo = await withIndex(repository, { signal });
  const sel = await selectSnapshots(repo, options.snapshots ?? [], options.filter ?? {}, { signal });
  const out: SnapshotStats = {
    mode, snapshotsCount: 0, totalSize: 0, totalFileCount: 0, totalBlobCount: 0,
    totalUncompressedSize: 0, compressionRatio: 0, compressionProgress: 0, compressionSpaceSaving: 0, ignored: sel.ignored,
  };
  const progress: SnapshotStatsProgress = { snapshotsDone: 0, snapshotsTotal: sel.snapshots.length, files: 0, blobs: 0, bytes: 0 };
  const report = () => options.onProgress?.({ ...progress });
  const trees = new TreeLoader(repo, signal);
  const usedBlobs = new Map<string, 'tree' | 'data'>();
  // A tree's subtrees are read ahead as it is decoded (those raw-data has not counted yet).
  const loadTree = async (id: BlobId): Promise<TreeNode[]> => {
    const nodes = await trees.load(id);
    trees.prefetch(nodes.flatMap((n) => (n.type === 'dir' && n.subtree && !usedBlobs.has(n.subtree) ? [n.subtree] : [])));
    return nodes;
  };
  // Depth first in tree order, each folder's node before its entries: restic's walk, whose
  // order decides which of several equal files counts in the by-contents modes.
  const walk = async (treeId: BlobId, prefix: string, visit: (path: string, node: TreeNode) => void): Promise<void> => {
    for (const node of await loadTree(treeId)) {
      throwIfAborted(signal);
      const p = `${prefix}/${node.name}`;
      visit(p, node);
      if (node.type === 'dir') {
        if (!node.subtree) throw new IntegrityError(`folder ${p} has no subtree`, { blob: treeId });
        await walk(node.subtree, p, visit);
      }
    }
  };
  const uniqueContents = new Set<string>();
  const fileBlobs = new Map<string, Set<string>>();

  for (const { id, snapshot } of sel.snapshots) {
    out.snapshotsCount++;
    progress.snapshotsDone++;
    progress.files = progress.blobs = progress.bytes = 0;
    report();
    if (mode === 'raw-data') {
      await collectUsedBlobs(snapshot.tree, usedBlobs, loadTree, signal);
      continue;
    }
    // restic counts a hard-linked file once per snapshot, by inode and device.
    const hardLinks = new Set<string>();
    await walk(snapshot.tree, '', (p, node) => {
      const size = Number(node.size ?? 0);
      progress.files++;
      progress.bytes += size;
      if (mode === 'restore-size') {
        out.totalFileCount++;
        if (Number(node.links ?? 0) === 1 || node.type === 'dir') out.totalSize += size;
        else {
          const key = `${node.inode ?? 0}:${node.deviceId ?? 0}`;
          if (!hardLinks.has(key) || Number(node.inode ?? 0) === 0) {
            hardLinks.add(key);
            out.totalSize += size;
          }
        }
      } else {
        // A node is new when no earlier node had the same content list; folders, links and
        // empty files all have the empty one.
        const content = node.content ?? [];
        const key = content.join('');
        if (!uniqueContents.has(key)) {
          uniqueContents.add(key);
          if (mode === 'files-by-contents') {
            out.totalSize += size;
            out.totalFileCount++;
          } else {
            for (const blob of content) {
              progress.blobs++;
              let seen = fileBlobs.get(p);
              if (!seen) {
                fileBlobs.set(p, (seen = new Set()));
                out.totalFileCount++;
              }
              if (seen.has(blob)) continue;
              const loc = repo.index.lookup(blob, 'data')[0];
              if (!loc) throw new IntegrityError(`blob ${blob} of ${p} in snapshot ${id.slice(0, 8)} is not in the index`, { blob });
              out.totalSize += loc.uncompressedLength || loc.length - SEAL_OVERHEAD;
              seen.add(blob);
              out.totalBlobCount++;
            }
          }
        }
      }
      report();
    });
  }
  if (mode === 'raw-data') {
    let compressed = 0;
    let compressedUncompressed = 0;
    for (const [blob, type] of usedBlobs) {
      const loc = repo.index.lookup(blob as BlobId, type)[0];
      if (!loc) throw new IntegrityError(`${type} blob ${blob} is not in the index`, { blob });
      out.totalSize += loc.length;
      if (repo.repo.version >= 2) {
        const uncompressed = loc.uncompressedLength ? loc.uncompressedLength + SEAL_OVERHEAD : loc.length;
        out.totalUncompressedSize += uncompressed;
        if (loc.uncompressedLength) {
          compressed += loc.length;
          compressedUncompressed += uncompressed;
        }
      }
      out.totalBlobCount++;
      progress.blobs++;
      progress.bytes += loc.length;
    }
    if (compressed > 0) out.compressionRatio = compressedUncompressed / compressed;
    if (out.totalUncompressedSize > 0) {
      out.compressionProgress = (compressedUncompressed / out.totalUncompressedSize) * 100;
      out.compressionSpaceSaving = (1 - out.totalSize / out.totalUncompressedSize) * 100;
    }
    report();
  }
  return out;
}

/** Adds every tree and data blob reachable from `root` to `used`; a tree already there is not read again. */
async function collectUsedBlobs(root: BlobId, used: Map<string, 'tree' | 'data'>, loadTree: (id: BlobId) => Promise<TreeNode[]>, signal: AbortSignal | undefined): Promise<void> {
  if (used.has(root)) return;
  used.set(root, 'tree');
  for (const node of await loadTree(root)) {
    throwIfAborted(signal);
    for (const blob of node.content ?? []) used.set(blob, 'data');
    if (node.type === 'dir' && node.subtree) await collectUsedBlobs(node.subtree, used, loadTree, signal);
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
