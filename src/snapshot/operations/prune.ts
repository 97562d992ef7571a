// Prune: remove data no snapshot needs any more, as restic's prune does.
//
// planPrune only reads. It finds every blob the snapshots reach, classifies every pack (used,
// unused, partly used, unreferenced, duplicates, mixed) and decides what to delete and what to
// repack with restic's rules (--max-unused, --max-repack-size, --repack-cacheable-only, small
// packs, uncompressed trees).
//
// executePrune changes the repository in the one order that never loses a referenced blob,
// wherever it is killed:
//   1. delete packs no index names (nothing can refer to them)
//   2. copy the still-used blobs of the repack packs into new packs, then index those
//   3. write new index files for the index files that name a pack about to go
//   4. delete those old index files
//   5. delete the packs that are now unused or repacked
// A crash before 3 leaves extra packs or duplicate blobs; a crash after 3 leaves packs that no
// index names. Both are harmless, and the next prune cleans them up.
import { retentionOf, type CallOptions, type RetentionCapable } from '../../backend/backend.ts';
import { AbortedError, IntegrityError, InvalidInputError, NotFoundError, UnsupportedError, throwIfAborted } from '../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository } from '../../repository/repository.ts';
import type { MasterIndex } from '../../repository/master-index.ts';
import { rewriteIndexFiles } from '../../repository/index-writer.ts';
import { DEFAULT_PACK_SIZE, MIN_PACK_SIZE, entrySize, packFile } from '../../repository/pack.ts';
import { CRYPTO_OVERHEAD } from '../../repository/crypto.ts';
import { BlobHandleSet } from '../../repository/blob-set.ts';
import { repack } from '../../repository/repack.ts';
import { isId, type BlobId, type PackId } from '../../repository/id.ts';
import type { CompressionMode } from '../../repository/compression.ts';
import { mapLimit } from '../../repository/concurrency.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import { decodeSnapshot } from '../model/snapshot.ts';
import { decodeTree } from '../model/tree.ts';

/** Fewer small packs than this are kept as they are (not worth the trouble, and no endless repacking). */
const MIN_SMALL_PACKS_TO_REPACK = 10;

// ---------------------------------------------------------------------------------------------
// Options and results

/** The phase a prune is in, as {@link PruneProgress} reports it. */
export type PrunePhase = 'snapshots' | 'trees' | 'packs' | 'unreferenced' | 'repack' | 'index' | 'delete-index' | 'delete-packs';

/** Progress of a prune, reported through `onProgress`. */
export interface PruneProgress {
  phase: PrunePhase;
  done: number;
  total?: number;
}

/** Messages as restic prints them: 'info' always, 'verbose' with -v, 'warning' on stderr. */
export type PruneMessageLevel = 'info' | 'verbose' | 'warning';

/** Options of {@link planPrune}: what counts as worth repacking, as restic's prune flags. */
export interface PrunePlanOptions extends CallOptions {
  /**
   * Unused space to tolerate after the prune (restic --max-unused): a percentage of the used
   * size ("5%", the default), an absolute size ("10M", bytes as a number), or "unlimited".
   */
  maxUnused?: string | number;
  /** Stop after repacking this much (restic --max-repack-size): bytes, or a size such as "1G". */
  maxRepackSize?: string | number;
  /** Repack only packs that hold trees; data packs are kept (restic --repack-cacheable-only). */
  repackCacheableOnly?: boolean;
  /** restic 0.14–0.16 --repack-small: packs below 80 % of the pack size count as small. */
  repackSmall?: boolean;
  /** Packs below this size count as small (restic --repack-smaller-than): bytes or "4M". */
  repackSmallerThan?: string | number;
  /** Repack every pack with uncompressed blobs (restic --repack-uncompressed; repository v2). */
  repackUncompressed?: boolean;
  /** The repository's target pack size (default 16 MiB, as restic). */
  packSize?: number;
  /**
   * Respect object retention (S3 Object Lock): before a pack is planned for deletion or repacking,
   * its retention is read (one request per such pack, counted in `plan.retention.requests`), and a
   * pack still retained is kept as it is. Default: on when the backend locks its uploads (S3
   * `objectLock`); true also for a bucket with only a default retention. `UnsupportedError` when
   * true and the backend has no retention.
   */
  retention?: boolean;
  /** The instant retentions are compared with (default: now). */
  now?: Date;
  /** Snapshots to plan as if already removed (a `forget --dry-run --prune`; restic does the same). */
  ignoreSnapshots?: Iterable<string>;
  /**
   * Finds the blobs the kept snapshots use, given their root trees, as restic's PlanPrune takes
   * `getUsedBlobs` from its caller. Default: {@link findUsedBlobs}. The plan takes over the set
   * returned (it becomes `keepBlobs`); a blob the set lacks is pruned.
   */
  getUsedBlobs?: (indexed: IndexedRepository, roots: readonly BlobId[], options: CallOptions & { onProgress?: (p: PruneProgress) => void }) => Promise<BlobHandleSet>;
  /** Called as each phase of the planning advances. */
  onProgress?: (p: PruneProgress) => void;
  /** Human-readable lines, as restic prints them. */
  onMessage?: (message: string, level: PruneMessageLevel) => void;
}

/** Options of {@link executePrune}. */
export interface PruneExecuteOptions extends CallOptions {
  /** Compression for blobs that are repacked uncompressed in a v2 repository (default auto). */
  compression?: CompressionMode;
  /** Target size of the packs repacking writes (default 16 MiB, as restic). */
  packSize?: number;
  /** Take an exclusive lock for the prune (default true); pass false when the caller holds one. */
  lock?: boolean;
  /** Keep trying this long (ms) while another process holds a lock (restic --retry-lock). */
  retryLock?: number;
  /** Called as each phase of the execution advances. */
  onProgress?: (p: PruneProgress) => void;
  /** Human-readable lines, as restic prints them. */
  onMessage?: (message: string, level: PruneMessageLevel) => void;
}

/** Options of {@link prune}: those of the plan and of its execution. */
export interface PruneOptions extends PrunePlanOptions, PruneExecuteOptions {
  /** Plan and report only; change nothing (restic --dry-run). */
  dryRun?: boolean;
  /** Called with the plan once it is made, before anything is changed (restic prints its statistics here). */
  onPlan?: (plan: PrunePlan) => void;
}

/** restic's prune statistics (its JSON "summary", in camelCase). Sizes are stored bytes. */
export interface PruneStats {
  blobs: {
    used: number; duplicate: number; unused: number; total: number;
    repack: number; repackRemove: number; remove: number; removeTotal: number; remaining: number;
  };
  bytes: {
    used: number; duplicate: number; unused: number; unreferenced: number; uncompressed: number; total: number;
    repack: number; repackRemove: number; remove: number; removeTotal: number; remaining: number; remainingUnused: number;
  };
  packs: {
    used: number; unused: number; partlyUsed: number; unreferenced: number; total: number;
    keep: number; repack: number; remove: number; removeTotal: number;
  };
}

/**
 * What a prune will do, from {@link planPrune}: packs to delete and to repack, the blobs to keep,
 * and restic's statistics.
 */
export interface PrunePlan {
  stats: PruneStats;
  /** The snapshots whose data is kept; the plan holds only while these are all the snapshots. */
  snapshots: string[];
  /** The index files the plan was made from. */
  indexFiles: string[];
  /** Packs that no index names: deleted first. */
  removeUnreferenced: PackId[];
  /** Packs whose used blobs are copied into new packs before they are deleted. */
  repack: PackId[];
  /** Packs with no used blob: deleted. */
  remove: PackId[];
  /** Packs the index names that do not exist and hold no used blob: dropped from the index. */
  forgetMissing: PackId[];
  /** The blobs to copy out of the repack packs (value 1 = still to copy). */
  keepBlobs: BlobHandleSet;
  /** Packs below this size count as small. */
  targetPackSize: number;
  /** With `retention`: what object retention held back, and what it lets go now and later. */
  retention?: PruneRetentionReport;
}

/** What retention (S3 Object Lock) means for a prune, from {@link planPrune} with `retention`. */
export interface PruneRetentionReport {
  /** The instant retentions were compared with. */
  now: Date;
  /** Retention reads made (one per pack the plan wanted to delete or repack). */
  requests: number;
  /** What this prune frees: packs deleted or repacked, and the bytes that frees (unused and unreferenced). */
  reclaimableNow: { packs: number; bytes: number };
  /**
   * Packs the plan wanted to delete or repack but that are still retained, earliest first: the
   * bytes each would free, and from when.
   */
  later: Array<{ file: string; retainUntil: Date; mode: 'GOVERNANCE' | 'COMPLIANCE'; bytes: number }>;
  /** Those retained packs as stored (their whole size): kept untouched by this prune. */
  locked: { packs: number; bytes: number };
}

/** What {@link prune} or {@link executePrune} did. */
export interface PruneResult {
  /** True when nothing was changed (`dryRun`). */
  dryRun: boolean;
  /** restic's prune statistics. */
  stats: PruneStats;
  /** The plan that was carried out. */
  plan: PrunePlan;
  /** New packs written by repacking. */
  packsWritten: number;
  /** Index files written (for the new packs, and the rewritten ones). */
  indexFilesWritten: string[];
  /** Index files deleted (replaced by the ones written). */
  indexFilesRemoved: string[];
  /** Packs deleted. */
  packsRemoved: number;
  /**
   * Files that could not be deleted. Harmless (restic ignores them too): packs no index names
   * are deleted by the next prune.
   */
  failedRemovals: Array<{ file: string; message: string }>;
}

// ---------------------------------------------------------------------------------------------
// Option parsing (restic's rules)

/** restic's size syntax: a whole number with an optional b/k/m/g/t suffix (powers of 1024). */
export function parseSize(s: string | number, what: string): number {
  if (typeof s === 'number') {
    if (!Number.isSafeInteger(s) || s < 0) throw new InvalidInputError(`invalid size ${s} for ${what}`);
    return s;
  }
  const m = /^([+-]?\d+)([bBkKmMgGtT]?)$/.exec(s);
  if (!m) throw new InvalidInputError(`invalid size ${JSON.stringify(s)} for ${what}`);
  const unit = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase()]!;
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidInputError(`size ${JSON.stringify(s)} for ${what} is out of range`);
  return n;
}

/** --max-unused: returns the unused bytes tolerated after the prune, given the used bytes. */
export function parseMaxUnused(v: string | number | undefined): (used: number) => number {
  if (typeof v === 'number') {
    const n = parseSize(v, '--max-unused');
    return () => n;
  }
  const s = (v ?? '5%').trim();
  if (s === '') throw new InvalidInputError(`invalid value for --max-unused: ${JSON.stringify(v)}`);
  if (s === 'unlimited') return () => Infinity;
  if (s.endsWith('%')) {
    const t = s.slice(0, -1);
    const p = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : NaN;
    if (Number.isNaN(p)) throw new InvalidInputError(`invalid percentage ${JSON.stringify(v)} passed for --max-unused`);
    if (p < 0) throw new InvalidInputError('percentage for --max-unused must be positive');
    if (p >= 100) throw new InvalidInputError('percentage for --max-unused must be below 100%');
    return (used) => Math.floor((p / (100 - p)) * used);
  }
  const n = parseSize(s, '--max-unused');
  return () => n;
}

// ---------------------------------------------------------------------------------------------
// Used blobs

/** Every blob the given snapshots reach: their trees and the data blobs of their files. */
export async function findUsedBlobs(
  indexed: IndexedRepository,
  roots: readonly BlobId[],
  options: CallOptions & { onProgress?: (p: PruneProgress) => void } = {},
): Promise<BlobHandleSet> {
  const used = new BlobHandleSet(indexed.index.size);
  const pending: BlobId[] = [];
  for (const r of roots) if (used.add('tree', r)) pending.push(r);
  const limit = Math.max(2, indexed.backend.connections);
  let active = 0;
  let done = 0;
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const pump = (): void => {
      if (failed) return;
      while (active < limit && pending.length > 0) {
        const id = pending.pop()!;
        active++;
        visit(id).then(
          () => {
            active--;
            options.onProgress?.({ phase: 'trees', done: ++done });
            pump();
          },
          (e: unknown) => {
            failed = true;
            reject(e);
          },
        );
      }
      if (active === 0 && pending.length === 0) resolve();
    };
    const visit = async (id: BlobId): Promise<void> => {
      throwIfAborted(options.signal);
      // Lenient: a tree restic accepted must keep its blobs even if Stowage would not restore it.
      const nodes = decodeTree(await indexed.loadBlob('tree', id, options), id, { lenient: true });
      for (const n of nodes) {
        if (n.type === 'file') {
          for (const c of n.content ?? []) used.add('data', c);
        } else if (n.type === 'dir' && n.subtree) {
          if (used.add('tree', n.subtree)) pending.push(n.subtree);
        }
      }
    };
    pump();
  });
  return used;
}

// ---------------------------------------------------------------------------------------------
// Planning

type PackKind = 'data' | 'tree' | 'mixed';

interface PackInfo {
  usedBlobs: number;
  unusedBlobs: number;
  duplicateBlobs: number;
  /** Used blob bytes plus the header (the header goes with the pack's used part). */
  usedSize: number;
  unusedSize: number;
  kind: PackKind | undefined;
  uncompressed: boolean;
}

function emptyStats(): PruneStats {
  return {
    blobs: { used: 0, duplicate: 0, unused: 0, total: 0, repack: 0, repackRemove: 0, remove: 0, removeTotal: 0, remaining: 0 },
    bytes: {
      used: 0, duplicate: 0, unused: 0, unreferenced: 0, uncompressed: 0, total: 0,
      repack: 0, repackRemove: 0, remove: 0, removeTotal: 0, remaining: 0, remainingUnused: 0,
    },
    packs: { used: 0, unused: 0, partlyUsed: 0, unreferenced: 0, total: 0, keep: 0, repack: 0, remove: 0, removeTotal: 0 },
  };
}

/** Decides what a prune would do. Reads only; the caller holds the lock that makes it valid. */
export async function planPrune(repository: AnyRepository, options: PrunePlanOptions = {}): Promise<PrunePlan> {
  const indexed = await withIndex(repository, options);
  const { signal } = options;
  const say = options.onMessage ?? (() => undefined);
  const repo = indexed.repo;
  const packSize = options.packSize ?? DEFAULT_PACK_SIZE;
  const maxUnusedAfter = parseMaxUnused(options.maxUnused);
  const maxRepack = options.maxRepackSize === undefined || options.maxRepackSize === '' ? Infinity : parseSize(options.maxRepackSize, '--max-repack-size');
  let smallPackBytes = 0;
  if (options.repackSmallerThan !== undefined && options.repackSmallerThan !== '') {
    smallPackBytes = parseSize(options.repackSmallerThan, '--repack-smaller-than');
    if (smallPackBytes <= 0) throw new InvalidInputError('--repack-smaller-than must be larger than zero');
  } else if (options.repackSmall) smallPackBytes = Math.floor(packSize / 5) * 4;
  if (smallPackBytes > packSize) throw new InvalidInputError('--repack-smaller-than exceeds the repository pack size');
  if (options.repackUncompressed && repo.version < 2) throw new InvalidInputError('compression requires at least repository format version 2');

  // Snapshots → the blobs they use.
  say('loading all snapshots...', 'info');
  const snapshots: string[] = [];
  const ignored = new Set(options.ignoreSnapshots ?? []);
  for await (const id of repo.listIds('snapshots', { signal })) if (!ignored.has(id)) snapshots.push(id);
  const roots = await mapLimit(snapshots, 8, async (id) => decodeSnapshot(await repo.loadUnpacked('snapshots', id, { signal }), id).tree);
  say(`finding data that is still in use for ${snapshots.length} snapshots`, 'info');
  const getUsedBlobs = options.getUsedBlobs ?? findUsedBlobs;
  const used = await getUsedBlobs(indexed, roots, { signal, onProgress: options.onProgress });
  throwIfAborted(signal);
  // The snapshots whose trees were walked (restic's counter; the trees are walked together).
  options.onProgress?.({ phase: 'snapshots', done: snapshots.length, total: snapshots.length });

  say('searching used packs...', 'info');
  const stats = emptyStats();
  const packs = packInfoFromIndex(indexed.index, used, stats);

  say('collecting packs for deletion and repacking', 'info');
  const decision = await decidePackActions(indexed, packs, stats, {
    maxUnusedAfter, maxRepack, smallPackBytes, repackCacheableOnly: options.repackCacheableOnly === true,
    repackUncompressed: options.repackUncompressed === true, say, signal, onProgress: options.onProgress,
  });

  let retention: PruneRetentionReport | undefined;
  let held = { unreferencedPacks: 0, unreferencedBytes: 0 };
  const lockApi = retentionOf(indexed.backend);
  if (options.retention ?? lockApi?.locksUploads === true) {
    if (!lockApi) throw new UnsupportedError(`prune with retention: ${indexed.backend.location} has no object retention (S3 Object Lock)`);
    ({ report: retention, held } = await holdRetainedPacks(decision, packs, stats, lockApi, {
      now: options.now ?? new Date(), v2: repo.version >= 2, connections: Math.max(1, indexed.backend.connections), say, signal,
    }));
  }

  // The blobs to copy while repacking: used blobs that no pack we keep holds already.
  const dropped = new Set<string>([...decision.repack, ...decision.remove, ...decision.forgetMissing]);
  if (decision.repack.length > 0) {
    for (const e of indexed.index.entries()) if (!dropped.has(e.packId)) used.set(e.type, e.id, 0);
  }
  const keepBlobs = decision.repack.length > 0 ? used : new BlobHandleSet();

  const s = stats;
  s.blobs.total = s.blobs.used + s.blobs.unused + s.blobs.duplicate;
  s.blobs.removeTotal = s.blobs.remove + s.blobs.repackRemove;
  s.blobs.remaining = s.blobs.total - s.blobs.removeTotal;
  s.bytes.total = s.bytes.used + s.bytes.duplicate + s.bytes.unused + s.bytes.unreferenced;
  s.bytes.removeTotal = s.bytes.remove + s.bytes.repackRemove + s.bytes.unreferenced - held.unreferencedBytes;
  s.bytes.remaining = s.bytes.total - s.bytes.removeTotal;
  s.bytes.remainingUnused = s.bytes.duplicate + s.bytes.unused - s.bytes.remove - s.bytes.repackRemove;
  s.packs.total = s.packs.used + s.packs.partlyUsed + s.packs.unused + s.packs.unreferenced + held.unreferencedPacks;
  s.packs.removeTotal = s.packs.unreferenced + s.packs.remove;

  return {
    stats,
    snapshots: snapshots.sort(),
    indexFiles: [...indexed.indexFiles.keys()].sort(),
    removeUnreferenced: decision.removeUnreferenced,
    repack: decision.repack,
    remove: decision.remove,
    forgetMissing: decision.forgetMissing,
    keepBlobs,
    targetPackSize: decision.targetPackSize,
    ...(retention ? { retention } : {}),
  };
}

/**
 * Reads the retention of every pack the decision deletes or repacks and takes the retained ones
 * out of it (kept as they are), moving their statistics to "keep". Mutates `decision` and `stats`.
 */
async function holdRetainedPacks(
  decision: Decision,
  packs: Map<PackId, PackInfo>,
  stats: PruneStats,
  lockApi: RetentionCapable,
  o: { now: Date; v2: boolean; connections: number; say: (m: string, level: PruneMessageLevel) => void; signal?: AbortSignal | undefined },
): Promise<{ report: PruneRetentionReport; held: { unreferencedPacks: number; unreferencedBytes: number } }> {
  const touched: Array<{ id: PackId; kind: 'unreferenced' | 'remove' | 'repack' }> = [
    ...decision.removeUnreferenced.map((id) => ({ id, kind: 'unreferenced' as const })),
    ...decision.remove.map((id) => ({ id, kind: 'remove' as const })),
    ...decision.repack.map((id) => ({ id, kind: 'repack' as const })),
  ];
  const retentions = await mapLimit(touched, o.connections, ({ id }) => lockApi.getRetention({ type: 'data', name: id }, { signal: o.signal }));
  const report: PruneRetentionReport = { now: o.now, requests: touched.length, reclaimableNow: { packs: 0, bytes: 0 }, later: [], locked: { packs: 0, bytes: 0 } };
  const held = { unreferencedPacks: 0, unreferencedBytes: 0 };
  const keep = new Set<PackId>();
  touched.forEach(({ id, kind }, i) => {
    const r = retentions[i];
    const p = packs.get(id);
    const size = kind === 'unreferenced' ? decision.unreferencedSizes.get(id)! : p!.usedSize + p!.unusedSize;
    const frees = kind === 'unreferenced' ? size : p!.unusedSize;
    if (!r || r.retainUntil.getTime() <= o.now.getTime()) {
      report.reclaimableNow.packs++;
      report.reclaimableNow.bytes += frees;
      return;
    }
    keep.add(id);
    o.say(`pack ${id.slice(0, 8)} is retained (${r.mode}) until ${r.retainUntil.toISOString()}: kept`, 'verbose');
    report.later.push({ file: packFile(id), retainUntil: r.retainUntil, mode: r.mode, bytes: frees });
    report.locked.packs++;
    report.locked.bytes += size;
    stats.packs.keep++;
    if (kind === 'unreferenced') {
      held.unreferencedPacks++;
      held.unreferencedBytes += size;
    } else if (kind === 'remove') {
      stats.blobs.remove -= p!.unusedBlobs;
      stats.bytes.remove -= p!.unusedSize;
    } else {
      stats.blobs.repack -= p!.unusedBlobs + p!.usedBlobs;
      stats.bytes.repack -= size;
      stats.blobs.repackRemove -= p!.unusedBlobs;
      stats.bytes.repackRemove -= p!.unusedSize;
      if (p!.uncompressed && o.v2) stats.bytes.uncompressed += size;
    }
  });
  report.later.sort((a, b) => a.retainUntil.getTime() - b.retainUntil.getTime() || a.file.localeCompare(b.file));
  if (keep.size > 0) {
    decision.removeUnreferenced = decision.removeUnreferenced.filter((id) => !keep.has(id));
    decision.remove = decision.remove.filter((id) => !keep.has(id));
    decision.repack = decision.repack.filter((id) => !keep.has(id));
    stats.packs.unreferenced = decision.removeUnreferenced.length;
    stats.packs.remove = decision.remove.length;
    stats.packs.repack = decision.repack.length;
    o.say(`${keep.size} pack(s) under retention are kept (${report.requests} retention reads)`, 'info');
  }
  return { report, held };
}

/**
 * Counts used, unused and duplicate blobs per pack. Afterwards every used handle in `used` has
 * value 1, and each pack's counts say how much of it is needed: of a blob stored more than once,
 * one copy is counted as used (preferring packs that hold other used blobs or only duplicates,
 * such as the packs an interrupted prune wrote), the others as unused.
 */
function packInfoFromIndex(index: MasterIndex, used: BlobHandleSet, stats: PruneStats): Map<PackId, PackInfo> {
  // How many copies of each used blob the index holds (saturating at 255).
  for (const e of index.entries()) {
    const n = used.get(e.type, e.id);
    if (n !== undefined && n < 255) used.set(e.type, e.id, n + 1);
  }
  const missing: string[] = [];
  for (const e of used.entries()) if (e.value === 0) missing.push(`${e.type} blob ${e.id}`);
  if (missing.length > 0) {
    throw new IntegrityError(
      `${missing.length} blob(s) used by snapshots are not in the index (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}); ` +
        'will not prune, to prevent further data loss',
      { blob: missing[0]!.split(' ').pop() },
    );
  }

  const packs = new Map<PackId, PackInfo>();
  let hasDuplicates = false;
  for (const e of index.entries()) {
    let p = packs.get(e.packId);
    if (!p) {
      p = { usedBlobs: 0, unusedBlobs: 0, duplicateBlobs: 0, usedSize: 4 + CRYPTO_OVERHEAD, unusedSize: 0, kind: undefined, uncompressed: false };
      packs.set(e.packId, p);
    }
    p.usedSize += entrySize(e);
    p.kind = p.kind === undefined ? e.type : p.kind === e.type ? p.kind : 'mixed';
    const copies = used.get(e.type, e.id) ?? 0;
    if (copies >= 2) {
      hasDuplicates = true;
      p.unusedSize += e.length;
      p.unusedBlobs++;
      p.duplicateBlobs++;
      stats.bytes.duplicate += e.length;
      stats.blobs.duplicate++;
    } else if (copies === 1) {
      p.usedSize += e.length;
      p.usedBlobs++;
      stats.bytes.used += e.length;
      stats.blobs.used++;
    } else {
      p.unusedSize += e.length;
      p.unusedBlobs++;
      stats.bytes.unused += e.length;
      stats.blobs.unused++;
    }
    if (!e.uncompressedLength) p.uncompressed = true;
  }

  if (hasDuplicates) {
    // Pick one copy of each duplicate as used. Value 0 now marks "one copy left to consider":
    // that last copy is taken whatever its pack.
    for (const e of index.entries()) {
      const count = used.get(e.type, e.id);
      if (count === undefined || count === 1) continue;
      const p = packs.get(e.packId)!;
      if (p.usedBlobs > 0 || p.duplicateBlobs === p.unusedBlobs || count === 0) {
        p.usedSize += e.length;
        p.usedBlobs++;
        p.unusedSize -= e.length;
        p.unusedBlobs--;
        stats.bytes.used += e.length;
        stats.blobs.used++;
        stats.bytes.duplicate -= e.length;
        stats.blobs.duplicate--;
        used.set(e.type, e.id, 1);
      } else {
        used.set(e.type, e.id, count - 1 === 1 ? 0 : count - 1);
      }
    }
  }
  return packs;
}

interface Decision {
  /** The size of each pack in removeUnreferenced, as listed. */
  unreferencedSizes: Map<PackId, number>;
  removeUnreferenced: PackId[];
  repack: PackId[];
  remove: PackId[];
  forgetMissing: PackId[];
  targetPackSize: number;
}

interface DecideOptions extends CallOptions {
  maxUnusedAfter: (used: number) => number;
  maxRepack: number;
  smallPackBytes: number;
  repackCacheableOnly: boolean;
  repackUncompressed: boolean;
  say: (m: string, level: PruneMessageLevel) => void;
  onProgress?: (p: PruneProgress) => void;
}

/** 80 % of the larger of 4 MiB and the 3rd-percentile pack size, unless set explicitly. */
function targetPackSizeOf(packs: Map<PackId, PackInfo>, smallPackBytes: number): number {
  if (smallPackBytes > 0) return smallPackBytes;
  if (packs.size === 0) return 0;
  const sizes = [...packs.values()].map((p) => p.usedSize + p.unusedSize).sort((a, b) => a - b);
  const p3 = sizes[Math.floor((packs.size * 3) / 100)]!;
  return Math.floor((Math.max(MIN_PACK_SIZE, p3) * 4) / 5);
}

interface Candidate {
  id: PackId;
  info: PackInfo;
  mustCompress: boolean;
}

async function decidePackActions(indexed: IndexedRepository, packs: Map<PackId, PackInfo>, stats: PruneStats, o: DecideOptions): Promise<Decision> {
  const removeUnreferenced: PackId[] = [];
  const unreferencedSizes = new Map<PackId, number>();
  const remove: PackId[] = [];
  const repack: PackId[] = [];
  const candidates: Candidate[] = [];
  const smallCandidates: Candidate[] = [];
  const v2 = indexed.config.version >= 2;
  const target = targetPackSizeOf(packs, o.smallPackBytes);
  const unseen = new Map(packs);
  let done = 0;

  for await (const f of indexed.backend.list('data', { signal: o.signal })) {
    if (!isId(f.name)) continue;
    const id = f.name as PackId;
    const p = unseen.get(id);
    if (!p) {
      o.say(`will remove pack ${id.slice(0, 8)} as it is unused and not indexed`, 'verbose');
      removeUnreferenced.push(id);
      unreferencedSizes.set(id, f.size);
      stats.bytes.unreferenced += f.size;
      continue;
    }
    unseen.delete(id);
    if (p.usedSize + p.unusedSize !== f.size && p.usedBlobs !== 0) {
      // A needed pack that does not match the index: stop before anything is changed.
      throw new IntegrityError(
        `pack ${id}: calculated size ${p.usedSize + p.unusedSize} does not match real size ${f.size}; run "restic repair index"`,
        { file: packFile(id) },
      );
    }
    if (p.usedBlobs === 0) stats.packs.unused++;
    else if (p.unusedBlobs === 0) stats.packs.used++;
    else stats.packs.partlyUsed++;
    if (p.uncompressed) stats.bytes.uncompressed += p.usedSize + p.unusedSize;
    // In a v2 repository uncompressed trees are always repacked (compressed), data on request.
    const mustCompress = v2 && p.uncompressed && (p.kind === 'tree' || o.repackUncompressed);

    if (p.usedBlobs === 0) {
      remove.push(id);
      stats.blobs.remove += p.unusedBlobs;
      stats.bytes.remove += p.unusedSize;
    } else if (o.repackCacheableOnly && p.kind === 'data') {
      stats.packs.keep++;
    } else if (p.unusedBlobs === 0 && p.kind !== 'mixed' && !mustCompress) {
      if (f.size >= target) stats.packs.keep++;
      else smallCandidates.push({ id, info: p, mustCompress });
    } else {
      candidates.push({ id, info: p, mustCompress });
    }
    o.onProgress?.({ phase: 'packs', done: ++done, total: packs.size });
  }

  // What is left is in the index but not in the repository.
  const forgetMissing: PackId[] = [];
  const neededMissing: PackId[] = [];
  for (const [id, p] of unseen) {
    if (p.usedBlobs === 0) {
      forgetMissing.push(id);
      stats.blobs.remove += p.unusedBlobs;
      stats.bytes.remove += p.unusedSize;
    } else neededMissing.push(id);
  }
  if (neededMissing.length > 0) {
    throw new IntegrityError(
      `the index references ${neededMissing.length} needed pack file(s) which are missing from the repository: ${neededMissing.join(', ')}`,
      { file: packFile(neededMissing[0]!) },
    );
  }
  if (forgetMissing.length > 0) {
    o.say('Missing but unneeded pack files are referenced in the index, will be repaired', 'warning');
    for (const id of forgetMissing) o.say(`will forget missing pack file ${id}`, 'warning');
  }

  if (smallCandidates.length < MIN_SMALL_PACKS_TO_REPACK) stats.packs.keep += smallCandidates.length;
  else candidates.push(...smallCandidates);

  // Tree and mixed packs first, then packs below the target size, then by unused/total, highest first.
  const total = (p: PackInfo) => p.usedSize + p.unusedSize;
  candidates.sort((a, b) => {
    const pa = a.info;
    const pb = b.info;
    if (pa.kind !== 'data' && pb.kind === 'data') return -1;
    if (pb.kind !== 'data' && pa.kind === 'data') return 1;
    if (total(pa) < target && total(pb) >= target) return -1;
    if (total(pb) < target && total(pa) >= target) return 1;
    return pb.unusedSize * pa.usedSize - pa.unusedSize * pb.usedSize;
  });

  const maxUnused = o.maxUnusedAfter(stats.bytes.used);
  for (const c of candidates) {
    const p = c.info;
    const remainingUnused = stats.bytes.duplicate + stats.bytes.unused - stats.bytes.remove - stats.bytes.repackRemove;
    const reachedUnusedLimit = remainingUnused < maxUnused;
    const reachedRepackSize = stats.bytes.repack + total(p) >= o.maxRepack;
    const largeEnough = total(p) >= target;
    if (reachedRepackSize) {
      stats.packs.keep++;
    } else if (p.kind !== 'data' || c.mustCompress) {
      // Tree, mixed and must-compress packs are limited by the repack size only.
      repackPack(c);
    } else if (reachedUnusedLimit && largeEnough) {
      stats.packs.keep++;
    } else {
      repackPack(c);
    }
  }

  function repackPack(c: Candidate): void {
    const p = c.info;
    repack.push(c.id);
    stats.blobs.repack += p.unusedBlobs + p.usedBlobs;
    stats.bytes.repack += total(p);
    stats.blobs.repackRemove += p.unusedBlobs;
    stats.bytes.repackRemove += p.unusedSize;
    if (p.uncompressed) stats.bytes.uncompressed -= total(p);
  }

  stats.packs.unreferenced = removeUnreferenced.length;
  stats.packs.repack = repack.length;
  stats.packs.remove = remove.length;
  if (!v2) stats.bytes.uncompressed = 0;
  return { unreferencedSizes, removeUnreferenced, repack, remove, forgetMissing, targetPackSize: target };
}

// ---------------------------------------------------------------------------------------------
// Execution

/**
 * Carries out a plan. With `lock` (the default) it takes an exclusive lock and first verifies
 * that the snapshots and index files are still the ones the plan was made from.
 * Afterwards `indexed.index` is out of date: load the index again before further use.
 */
export async function executePrune(indexed: IndexedRepository, plan: PrunePlan, options: PruneExecuteOptions = {}): Promise<PruneResult> {
  const { signal } = options;
  return withOptionalLock(indexed.repo, { lock: options.lock, exclusive: true, retryLock: options.retryLock, signal }, async (lock) => {
    if (lock) await assertPlanCurrent(indexed, plan, signal);
    return execute(indexed, plan, options);
  });
}

async function assertPlanCurrent(indexed: IndexedRepository, plan: PrunePlan, signal: AbortSignal | undefined): Promise<void> {
  const snapshots: string[] = [];
  for await (const id of indexed.repo.listIds('snapshots', { signal })) snapshots.push(id);
  const indexFiles: string[] = [];
  for await (const id of indexed.repo.listIds('index', { signal })) indexFiles.push(id);
  const same = (a: string[], b: readonly string[]) => a.length === b.length && a.sort().every((x, i) => x === b[i]);
  if (!same(snapshots, plan.snapshots) || !same(indexFiles, plan.indexFiles)) {
    throw new InvalidInputError('the repository changed since the prune plan was made (snapshots or index files differ); plan again');
  }
}

async function execute(indexed: IndexedRepository, plan: PrunePlan, options: PruneExecuteOptions): Promise<PruneResult> {
  const { signal } = options;
  const say = options.onMessage ?? (() => undefined);
  const backend = indexed.backend;
  const connections = Math.max(1, backend.connections);
  const result: PruneResult = {
    dryRun: false, stats: plan.stats, plan, packsWritten: 0, indexFilesWritten: [], indexFilesRemoved: [], packsRemoved: 0, failedRemovals: [],
  };
  const removeFiles = async (type: 'data' | 'index', ids: readonly string[], phase: PrunePhase): Promise<string[]> => {
    const removed: string[] = [];
    let done = 0;
    await mapLimit(ids, connections, async (id) => {
      throwIfAborted(signal);
      try {
        await backend.remove({ type, name: id }, { signal });
        removed.push(id);
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        if (e instanceof NotFoundError) removed.push(id);
        else {
          const file = type === 'data' ? packFile(id) : `index/${id}`;
          say(`unable to remove ${file} from the repository`, 'warning');
          result.failedRemovals.push({ file, message: (e as Error).message });
        }
      }
      options.onProgress?.({ phase, done: ++done, total: ids.length });
    });
    return removed;
  };

  // 1. Packs no index names: nothing refers to them.
  if (plan.removeUnreferenced.length > 0) {
    say('deleting unreferenced packs', 'info');
    result.packsRemoved += (await removeFiles('data', plan.removeUnreferenced, 'unreferenced')).length;
  }
  throwIfAborted(signal);

  // 2. Copy what is still used out of the repack packs; their index is written after them.
  if (plan.repack.length > 0) {
    say('repacking packs', 'info');
    const written = await repackPacks(indexed, plan, options);
    result.packsWritten = written.packs;
    for (const [id, packs] of written.indexFiles) {
      result.indexFilesWritten.push(id);
      indexed.indexFiles.set(id, packs);
    }
  }
  throwIfAborted(signal);

  // 3 and 4. Index files that name a pack about to go are replaced, then deleted.
  const dropped = new Set<string>([...plan.removeUnreferenced, ...plan.repack, ...plan.remove, ...plan.forgetMissing]);
  const obsoleteIndexes = [...indexed.indexFiles].filter(([, packs]) => packs.some((p) => dropped.has(p))).map(([id]) => id);
  if (obsoleteIndexes.length > 0) {
    say('rebuilding index', 'info');
    result.indexFilesWritten.push(...(await rewriteIndexFiles(indexed.repo, indexed.indexFiles, obsoleteIndexes, dropped, { signal, onProgress: (done, total) => options.onProgress?.({ phase: 'index', done, total }) })));
    throwIfAborted(signal);
    result.indexFilesRemoved = await removeFiles('index', obsoleteIndexes, 'delete-index');
    for (const id of result.indexFilesRemoved) indexed.indexFiles.delete(id);
  }
  throwIfAborted(signal);

  // 5. The unused and repacked packs, now named by no index.
  const obsoletePacks = [...plan.remove, ...plan.repack];
  if (obsoletePacks.length > 0) {
    say(`removing ${obsoletePacks.length} old packs`, 'info');
    result.packsRemoved += (await removeFiles('data', obsoletePacks, 'delete-packs')).length;
  }
  say('done', 'info');
  return result;
}

/** Repacks the plan's packs; what is written is indexed, and `indexed.indexFiles` learns it. */
async function repackPacks(indexed: IndexedRepository, plan: PrunePlan, options: PruneExecuteOptions): Promise<{ packs: number; indexFiles: Map<string, PackId[]> }> {
  return repack(indexed, plan.repack, plan.keepBlobs, {
    signal: options.signal, compression: options.compression, packSize: options.packSize,
    onProgress: (done, total) => options.onProgress?.({ phase: 'repack', done, total }),
  });
}

// ---------------------------------------------------------------------------------------------
// Plan + execute

/**
 * Plans and (unless `dryRun`) executes a prune under one exclusive lock (unless `lock: false`).
 * When the index changed between loading `indexed` and taking the lock (a backup finished), it is
 * loaded again. Afterwards `indexed.index` is out of date: load the index again before further use.
 */
export async function prune(repository: AnyRepository, options: PruneOptions = {}): Promise<PruneResult> {
  const indexed = await withIndex(repository, options);
  const { signal } = options;
  if (options.repackUncompressed && options.compression === 'off') {
    throw new InvalidInputError('disabled compression and --repack-uncompressed are mutually exclusive');
  }
  return withOptionalLock(indexed.repo, { lock: options.lock, exclusive: true, retryLock: options.retryLock, signal }, async (lock) => {
    let current = indexed;
    if (lock && !(await indexUnchanged(indexed, signal))) {
      options.onMessage?.('loading indexes...', 'info');
      current = await indexed.repo.loadIndex({ signal });
    }
    const plan = await planPrune(current, options);
    options.onPlan?.(plan);
    if (options.dryRun) {
      return { dryRun: true, stats: plan.stats, plan, packsWritten: 0, indexFilesWritten: [], indexFilesRemoved: [], packsRemoved: 0, failedRemovals: [] };
    }
    return execute(current, plan, options);
  });
}

async function indexUnchanged(indexed: IndexedRepository, signal: AbortSignal | undefined): Promise<boolean> {
  let n = 0;
  for await (const id of indexed.repo.listIds('index', { signal })) {
    if (!indexed.indexFiles.has(id)) return false;
    n++;
  }
  return n === indexed.indexFiles.size;
}

export type { BlobId };
export { BlobHandleSet };
