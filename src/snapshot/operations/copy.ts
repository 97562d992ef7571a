// Copying snapshots from one repository to another (other keys, other backends), as restic's
// `copy` does: snapshots already in the destination are skipped (restic's "similar snapshot"
// rule, keyed by the persistent `original` ID), the rest are copied blob by blob, each blob
// verified, re-encrypted with the destination's key and stored unless the destination has it;
// packs and their index are written before the snapshots that need them.
//
// One difference from restic: when the two repositories chunk with different polynomials,
// files are re-chunked with the destination's polynomial by default (restic keeps the source's
// chunks, which then never deduplicate with later backups into the destination). Re-chunked
// files get new content lists, so their trees and the snapshot's tree change; the copy is then
// recognised as "already copied" by comparing tree shapes (see sameTreeShape).
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, IntegrityError, throwIfAborted } from '../../errors.ts';
import { sha256hex, withIndex, type AnyRepository, type BlobWriter, type IndexedRepository } from '../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../repository/id.ts';
import type { BlobLocation } from '../../repository/master-index.ts';
import type { CompressionMode } from '../../repository/compression.ts';
import { decompress } from '../../repository/compression.ts';
import { CRYPTO_OVERHEAD } from '../../repository/crypto.ts';
import { DEFAULT_PACK_SIZE, packFile } from '../../repository/pack.ts';
import { blobBytes, loadPackRead, planPackReads, type PackRead, type PackReadLimits } from '../../repository/pack-reader.ts';
import { Semaphore, mapLimit } from '../../repository/concurrency.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import { Chunker, MIN_SIZE } from '../engine/chunker.ts';
import { encodeNode, type TreeNode } from '../model/node.ts';
import { decodeTree, encodeTree } from '../model/tree.ts';
import { encodeSnapshot, type Snapshot, type SnapshotFilter } from '../model/snapshot.ts';
import { listSnapshots, type SnapshotEntry } from '../engine/select.ts';
import { selectSnapshots, type SnapshotSelection } from '../engine/select.ts';

/** Options of {@link copy} (and {@link planCopy}). */
export interface CopyOptions extends CallOptions {
  /** Source snapshots to copy (IDs, prefixes, "latest"); none: every one passing `filter`. */
  snapshots?: readonly string[];
  /** restic's --host/--tag/--path, applied to the source and to the destination's snapshots. */
  filter?: SnapshotFilter;
  /**
   * Re-chunk file contents with the destination's chunker polynomial. Default: exactly when the
   * two polynomials differ. false copies the source's chunks as they are (restic's behaviour).
   */
  rechunk?: boolean;
  /** Compression for data blobs in a v2 destination (default 'auto'). */
  compression?: CompressionMode;
  /** Target pack size in bytes for the destination (default 16 MiB). */
  packSize?: number;
  /** Lock both repositories with shared locks (default true); false when the caller holds them. */
  lock?: boolean;
  /** Lock the source (default: as `lock`); restic's --no-lock leaves only the source unlocked. */
  lockSource?: boolean;
  /** Keep trying this long (ms) while another process holds an exclusive lock. */
  retryLock?: number;
  /** Called as blobs are copied, with running totals. */
  onProgress?: (p: CopyProgress) => void;
  /** Snapshot-level events, in order, for restic-like output. */
  onEvent?: (e: CopyEvent) => void;
}

/** Progress of a {@link copy}, reported through `onProgress`. */
export interface CopyProgress {
  snapshotsDone: number;
  snapshotsTotal: number;
  /** Blobs stored in the destination so far. */
  blobsCopied: number;
  /** Their plaintext bytes. */
  bytesCopied: number;
  /** Files read and chunked anew (re-chunking only). */
  filesRechunked: number;
}

/** What happens to each source snapshot during a {@link copy}, in order, for restic-like output. */
export type CopyEvent =
  | { type: 'skipped'; source: SnapshotEntry; existing: SnapshotId }
  | { type: 'started'; source: SnapshotEntry }
  /** Blob-by-blob copy only: what the snapshot needs that the destination lacks. */
  | { type: 'planned'; source: SnapshotEntry; blobs: number; storedBytes: number; packs: number }
  | { type: 'saved'; source: SnapshotEntry; newId: SnapshotId };

/**
 * One source snapshot in a {@link CopyPlan}: to copy, or to skip because the destination has it.
 */
export type CopyPlanItem =
  | { action: 'copy'; source: SnapshotEntry }
  | { action: 'skip'; source: SnapshotEntry; existing: SnapshotId };

/** What a {@link copy} will do, from {@link planCopy}. */
export interface CopyPlan {
  /** Whether files are re-chunked with the destination's polynomial. */
  rechunk: boolean;
  /** Source snapshots in order (oldest first), each to copy or to skip. */
  items: CopyPlanItem[];
  /** Snapshot references that selected nothing. */
  ignored: SnapshotSelection['ignored'];
}

/** What {@link copy} did. */
export interface CopyResult {
  /** Whether files were re-chunked with the destination's polynomial. */
  rechunked: boolean;
  /** Snapshots copied: source ID, new ID, and the new root tree. */
  copied: Array<{ sourceId: SnapshotId; newId: SnapshotId; tree: BlobId }>;
  /** Snapshots the destination already had (same content), with its ID. */
  skipped: Array<{ sourceId: SnapshotId; existingId: SnapshotId }>;
  /** Snapshot references that selected nothing, with the reason. */
  ignored: SnapshotSelection['ignored'];
  /** Blobs and bytes added to the destination. */
  stats: {
    dataBlobs: number;
    treeBlobs: number;
    /** Plaintext bytes of the new data blobs. */
    dataAdded: number;
    /** Bytes of new blobs as stored. */
    dataAddedPacked: number;
    packs: number;
    filesRechunked: number;
  };
}

/**
 * Locks both repositories (shared, as restic's read and append locks), plans and copies. The
 * locks are taken after the indexes were loaded; a caller that must rule out a prune running
 * in between locks first, then loads the indexes and passes `lock: false` (the CLI does).
 */
export async function copy(source: AnyRepository, destination: AnyRepository, options: CopyOptions = {}): Promise<CopyResult> {
  const src = await withIndex(source, options);
  const dst = await withIndex(destination, options);
  const signal = options.signal;
  const lockDst = options.lock !== false;
  const lockSrc = options.lockSource ?? lockDst;
  // Source first, destination second; released in the reverse order.
  return withOptionalLock(src.repo, { lock: lockSrc, exclusive: false, retryLock: options.retryLock, signal }, () =>
    withOptionalLock(dst.repo, { lock: lockDst, exclusive: false, retryLock: options.retryLock, signal }, async () => {
      const plan = await planCopy(src, dst, options);
      return executeCopy(src, dst, plan, options);
    }));
}

// ---------------------------------------------------------------------------------------------
// Plan

/** Which source snapshots to copy and which the destination already holds. */
export async function planCopy(source: AnyRepository, destination: AnyRepository, options: CopyOptions = {}): Promise<CopyPlan> {
  const src = await withIndex(source, options);
  const dst = await withIndex(destination, options);
  const rechunk = options.rechunk ?? src.config.chunkerPolynomial !== dst.config.chunkerPolynomial;
  const filter = options.filter ?? {};
  const sel = await selectSnapshots(src.repo, options.snapshots ?? [], filter, options);
  // As restic: the destination's snapshots that pass the same filter, by original ID and by ID.
  const byOriginal = new Map<string, SnapshotEntry[]>();
  const file = (key: string, e: SnapshotEntry) => {
    const l = byOriginal.get(key);
    if (l) l.push(e);
    else byOriginal.set(key, [e]);
  };
  for (const e of await listSnapshots(dst.repo, { ...filter, signal: options.signal })) {
    if (e.snapshot.original) file(e.snapshot.original, e);
    file(e.id, e);
  }
  const shapes = new TreeShapes(src, dst, options);
  const items: CopyPlanItem[] = [];
  for (const source of sel.snapshots) {
    let existing: SnapshotId | undefined;
    for (const candidate of byOriginal.get(source.snapshot.original ?? source.id) ?? []) {
      if (!similarSnapshots(candidate.snapshot, source.snapshot)) continue;
      const a = candidate.snapshot.tree;
      const b = source.snapshot.tree;
      if (a === b || (rechunk && (await shapes.same(b, a)))) {
        existing = candidate.id;
        break;
      }
    }
    items.push(existing ? { action: 'skip', source, existing } : { action: 'copy', source });
  }
  return { rechunk, items, ignored: sel.ignored };
}

/**
 * restic's similarSnapshots without the tree: time (as an instant), host, user, uid, gid, the
 * same paths and tags as sets and the same excludes in order. Parent and original may differ.
 */
export function similarSnapshots(a: Snapshot, b: Snapshot): boolean {
  const pa = a.paths;
  const pb = b.paths;
  const ta = a.tags ?? [];
  const tb = b.tags ?? [];
  const ea = a.excludes ?? [];
  const eb = b.excludes ?? [];
  if (a.time.epochNs !== b.time.epochNs || (a.hostname ?? '') !== (b.hostname ?? '') || (a.username ?? '') !== (b.username ?? '')) return false;
  if ((a.uid ?? 0) !== (b.uid ?? 0) || (a.gid ?? 0) !== (b.gid ?? 0)) return false;
  if (pa.length !== pb.length || ea.length !== eb.length || ta.length !== tb.length) return false;
  const paths = new Set(pa);
  if (!pb.every((p) => paths.has(p))) return false;
  // restic's HasTags: an empty tag matches a snapshot without tags.
  for (const t of tb) {
    if (t === '' && ta.length === 0) break;
    if (!ta.includes(t)) return false;
  }
  return ea.every((x, i) => x === eb[i]);
}

/**
 * Whether a destination tree is a re-chunked copy of a source tree: the same names, types and
 * metadata everywhere (file sizes included), with content lists and subtree IDs free to differ.
 */
class TreeShapes {
  readonly #src: IndexedRepository;
  readonly #dst: IndexedRepository;
  readonly #options: CallOptions;
  readonly #memo = new Map<string, Promise<boolean>>();

  constructor(src: IndexedRepository, dst: IndexedRepository, options: CallOptions) {
    this.#src = src;
    this.#dst = dst;
    this.#options = options;
  }

  same(srcTree: BlobId, dstTree: BlobId): Promise<boolean> {
    const key = `${srcTree}:${dstTree}`;
    let p = this.#memo.get(key);
    if (!p) this.#memo.set(key, (p = this.#compare(srcTree, dstTree)));
    return p;
  }

  async #compare(srcTree: BlobId, dstTree: BlobId): Promise<boolean> {
    if (!this.#dst.index.has(dstTree, 'tree')) return false;
    const a = decodeTree(await this.#src.loadBlob('tree', srcTree, this.#options), srcTree, { lenient: true });
    const b = decodeTree(await this.#dst.loadBlob('tree', dstTree, this.#options), dstTree, { lenient: true });
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (shapeOf(x) !== shapeOf(y)) return false;
      if (x.type === 'dir' && x.subtree && y.subtree && x.subtree !== y.subtree && !(await this.same(x.subtree, y.subtree))) return false;
    }
    return true;
  }
}

/** A node's encoding without its content list and subtree. */
function shapeOf(n: TreeNode): string {
  return encodeNode({ ...n, content: n.content === null ? null : [], subtree: undefined });
}

// ---------------------------------------------------------------------------------------------
// Execute

/** restic saves the snapshots of a batch once ~100 packs' worth were copied and a minute passed. */
const BATCH_MIN_MS = 60_000;
const BATCH_PACKS = 100;

/** Copies what the plan says to copy: blobs (packs, then index), then each batch's snapshots. */
export async function executeCopy(src: IndexedRepository, dst: IndexedRepository, plan: CopyPlan, options: CopyOptions = {}): Promise<CopyResult> {
  const signal = options.signal;
  const writer = dst.blobWriter({ compression: options.compression, packSize: options.packSize, signal });
  const run = new CopyRun(src, dst, writer, plan, options);
  const result: CopyResult = {
    rechunked: plan.rechunk,
    copied: [],
    skipped: [],
    ignored: plan.ignored,
    stats: { dataBlobs: 0, treeBlobs: 0, dataAdded: 0, dataAddedPacked: 0, packs: 0, filesRechunked: 0 },
  };
  const batchBytes = (options.packSize ?? DEFAULT_PACK_SIZE) * BATCH_PACKS;
  let batch: Array<{ source: SnapshotEntry; tree: BlobId }> = [];
  let batchStart = Date.now();
  let batchFrom = 0;

  const saveBatch = async () => {
    // Packs and index first: a snapshot may only name blobs the index already lists.
    await writer.flush();
    for (const { source, tree } of batch) {
      const copied: Snapshot = { ...source.snapshot, tree, original: source.snapshot.original ?? source.id };
      // The parent means nothing in the destination.
      delete copied.parent;
      const newId = (await dst.repo.saveUnpacked('snapshots', encodeSnapshot(copied), { signal })) as SnapshotId;
      result.copied.push({ sourceId: source.id, newId, tree });
      run.snapshotsDone++;
      options.onEvent?.({ type: 'saved', source, newId });
    }
    batch = [];
    batchStart = Date.now();
    batchFrom = writer.stats.dataAddedPacked;
  };

  try {
    for (const item of plan.items) {
      throwIfAborted(signal);
      if (item.action === 'skip') {
        result.skipped.push({ sourceId: item.source.id, existingId: item.existing });
        options.onEvent?.({ type: 'skipped', source: item.source, existing: item.existing });
        continue;
      }
      options.onEvent?.({ type: 'started', source: item.source });
      const tree = plan.rechunk ? await run.rechunkTree(item.source.snapshot.tree) : await run.copyTree(item.source);
      batch.push({ source: item.source, tree });
      if (writer.stats.dataAddedPacked - batchFrom >= batchBytes && Date.now() - batchStart >= BATCH_MIN_MS) await saveBatch();
    }
    await saveBatch();
  } catch (e) {
    // Whatever was packed gets indexed even on failure, so no pack is left unreferenced; the
    // snapshots of the unfinished batch are not written.
    await writer.flush().catch(() => undefined);
    throw e;
  }
  const s = writer.stats;
  result.stats = {
    dataBlobs: s.dataBlobs,
    treeBlobs: s.treeBlobs,
    dataAdded: s.dataAdded,
    dataAddedPacked: s.dataAddedPacked,
    packs: s.packs,
    filesRechunked: run.filesRechunked,
  };
  return result;
}

/** Files re-chunked at once; each holds up to a chunk (8 MiB) plus a few source blobs. */
const FILE_CONCURRENCY = 4;
/** Source blobs read ahead within one re-chunked file. */
const READ_AHEAD = 2;
/** Neighbouring blobs of one pack are read in one request across gaps up to 256 KiB, up to 32 MiB. */
const COPY_READS: PackReadLimits = { maxGap: 256 * 1024, maxSpan: 32 * 1024 * 1024 };

class CopyRun {
  readonly #src: IndexedRepository;
  readonly #dst: IndexedRepository;
  readonly #writer: BlobWriter;
  readonly #options: CopyOptions;
  readonly #snapshotsTotal: number;
  readonly #connections: number;
  readonly #files = new Semaphore(FILE_CONCURRENCY);
  /** Source trees already walked (blob-by-blob copy). */
  readonly #visited = new Set<string>();
  /** Source tree → destination tree (re-chunking). */
  readonly #trees = new Map<string, Promise<BlobId>>();
  /** Hash of a multi-blob content list → its re-chunked list. */
  readonly #contents = new Map<string, Promise<BlobId[]>>();
  snapshotsDone = 0;
  blobsCopied = 0;
  bytesCopied = 0;
  filesRechunked = 0;

  constructor(src: IndexedRepository, dst: IndexedRepository, writer: BlobWriter, plan: CopyPlan, options: CopyOptions) {
    this.#src = src;
    this.#dst = dst;
    this.#writer = writer;
    this.#options = options;
    this.#snapshotsTotal = plan.items.filter((i) => i.action === 'copy').length;
    this.#connections = Math.max(2, src.backend.connections);
  }

  #progress(): void {
    this.#options.onProgress?.({
      snapshotsDone: this.snapshotsDone,
      snapshotsTotal: this.#snapshotsTotal,
      blobsCopied: this.blobsCopied,
      bytesCopied: this.bytesCopied,
      filesRechunked: this.filesRechunked,
    });
  }

  #stored(added: boolean, plainLength: number): void {
    if (!added) return;
    this.blobsCopied++;
    this.bytesCopied += plainLength;
    this.#progress();
  }

  // ---- blob by blob (same polynomial, or rechunk: false) ----------------------------------

  /** Copies every tree and data blob of the snapshot the destination lacks; the tree ID stays. */
  async copyTree(source: SnapshotEntry): Promise<BlobId> {
    const signal = this.#options.signal;
    const missing = new Map<string, BlobLocation>();
    const trees: BlobLocation[] = [];
    let level: BlobId[] = [source.snapshot.tree];
    // Breadth first, a level at a time, so that tree loads run in parallel.
    while (level.length > 0) {
      const next: BlobId[] = [];
      await mapLimit(level, this.#connections, async (treeId) => {
        if (this.#visited.has(treeId)) return;
        this.#visited.add(treeId);
        throwIfAborted(signal);
        const plain = await this.#src.loadBlob('tree', treeId, { signal });
        // Trees are copied as they are: their bytes (and so their IDs) never change.
        const treeLoc = this.#writer.has('tree', treeId) ? undefined : this.#src.index.lookup(treeId, 'tree')[0];
        if (treeLoc) trees.push(treeLoc);
        const { added } = await this.#writer.saveBlob('tree', plain);
        this.#stored(added, plain.length);
        for (const node of decodeTree(plain, treeId, { lenient: true })) {
          if (node.type === 'dir' && node.subtree) next.push(node.subtree);
          else if (node.type === 'file') {
            for (const id of node.content ?? []) {
              if (missing.has(id) || this.#writer.has('data', id)) continue;
              // A blob the source index lacks refreshes it once; still missing: BlobNotFoundError.
              missing.set(id, (await this.#src.locateBlob('data', id, { signal }))[0]!);
            }
          }
        }
      });
      level = next;
    }
    const locations = [...missing.values()];
    // Reported like restic, which counts the trees the destination lacks and their packs too.
    const all = [...trees, ...locations];
    this.#options.onEvent?.({
      type: 'planned',
      source,
      blobs: all.length,
      storedBytes: all.reduce((n, l) => n + l.length, 0),
      packs: new Set(all.map((l) => l.packId)).size,
    });
    const reads = planPackReads(locations, COPY_READS);
    await mapLimit(reads, this.#connections, (read) => this.#copyRead(read));
    return source.snapshot.tree;
  }

  /** Reads neighbouring blobs of one pack in one request and stores each. */
  async #copyRead(read: PackRead<BlobLocation>): Promise<void> {
    const signal = this.#options.signal;
    let bytes: Uint8Array | undefined;
    try {
      bytes = await loadPackRead(this.#src.backend, read, { signal });
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      // Each blob is then tried on its own, from every copy the index knows.
    }
    for (const loc of read.blobs) {
      throwIfAborted(signal);
      const sealed = bytes && blobBytes(read, bytes, loc);
      try {
        if (!sealed) throw new IntegrityError('pack range could not be read', { file: packFile(loc.packId), blob: loc.id });
        await this.#transfer(loc, sealed);
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        // loadBlob verifies and tries every stored copy; it throws when none is intact.
        const plain = await this.#src.loadBlob('data', loc.id, { signal });
        const { added } = await this.#writer.saveBlob('data', plain);
        this.#stored(added, plain.length);
      }
    }
  }

  /**
   * Verifies a sealed source blob and stores it under the destination's key. A compressed
   * blob keeps its compressed bytes when the destination compresses too.
   */
  async #transfer(loc: BlobLocation, sealed: Uint8Array): Promise<void> {
    const where = { file: packFile(loc.packId), blob: loc.id };
    if (sealed.length !== loc.length) throw new IntegrityError(`blob is truncated (${sealed.length} of ${loc.length} bytes)`, where);
    const payload = this.#src.repo.open(sealed, where);
    const plain = loc.uncompressedLength ? decompress(payload, loc.uncompressedLength, where) : payload;
    if (sha256hex(plain) !== loc.id) throw new IntegrityError('blob content does not match its ID (SHA-256)', where);
    let added: boolean;
    if (!this.#writer.shouldCompress(loc.type, plain.length)) {
      added = await this.#writer.addSealed(loc.type, loc.id, this.#dst.repo.seal(plain), 0, plain.length);
    } else if (loc.uncompressedLength) {
      added = await this.#writer.addSealed(loc.type, loc.id, this.#dst.repo.seal(payload), loc.uncompressedLength, plain.length);
    } else {
      added = (await this.#writer.saveBlob(loc.type, plain)).added;
    }
    this.#stored(added, plain.length);
  }

  /** Copies one data blob unless the destination has it (re-chunking: files that keep their blob). */
  async #copyBlob(id: BlobId): Promise<void> {
    if (this.#writer.has('data', id)) return;
    const loc = (await this.#src.locateBlob('data', id, { signal: this.#options.signal }))[0]!;
    await this.#copyRead({ packId: loc.packId, offset: loc.offset, length: loc.length, blobs: [loc] });
  }

  // ---- re-chunking (different polynomials) ------------------------------------------------

  /** The destination tree for a source tree: files re-chunked, subtrees converted. */
  rechunkTree(treeId: BlobId): Promise<BlobId> {
    let p = this.#trees.get(treeId);
    if (!p) this.#trees.set(treeId, (p = this.#convertTree(treeId)));
    return p;
  }

  async #convertTree(treeId: BlobId): Promise<BlobId> {
    const signal = this.#options.signal;
    throwIfAborted(signal);
    const plain = await this.#src.loadBlob('tree', treeId, { signal });
    const nodes = decodeTree(plain, treeId, { lenient: true });
    const out = [...nodes];
    let changed = false;
    // Files of this folder in parallel (bounded by the file semaphore), then its subfolders.
    await mapLimit(nodes.map((n, i) => [n, i] as const).filter(([n]) => n.type === 'file' && n.content && n.content.length > 0), FILE_CONCURRENCY, async ([n, i]) => {
      const content = await this.#rechunkContent(n.content!);
      if (!sameIds(content, n.content!)) {
        out[i] = { ...n, content };
        changed = true;
      }
    });
    for (let i = 0; i < nodes.length; i++) {
      const n = nodes[i]!;
      if (n.type !== 'dir' || !n.subtree) continue;
      const subtree = await this.rechunkTree(n.subtree);
      if (subtree !== n.subtree) {
        out[i] = { ...n, subtree };
        changed = true;
      }
    }
    // An unchanged folder keeps its exact bytes and ID.
    const bytes = changed ? encodeTree(out) : plain;
    const { id, added } = await this.#writer.saveBlob('tree', bytes);
    this.#stored(added, bytes.length);
    return id;
  }

  async #rechunkContent(content: BlobId[]): Promise<BlobId[]> {
    // A file of one blob no larger than the minimum chunk size is one chunk under any
    // polynomial: the blob is copied as it is.
    if (content.length === 1) {
      const loc = this.#src.index.lookup(content[0]!, 'data')[0];
      if (loc && (loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD) <= MIN_SIZE) {
        await this.#copyBlob(content[0]!);
        return content;
      }
    }
    const key = sha256hex(Buffer.from(content.join('')));
    let p = this.#contents.get(key);
    if (!p) this.#contents.set(key, (p = this.#files.run(() => this.#chunkFile(content))));
    return p;
  }

  /** Reads a file through its source blobs and cuts it with the destination's chunker. */
  async #chunkFile(content: BlobId[]): Promise<BlobId[]> {
    const signal = this.#options.signal;
    const chunker = new Chunker(this.#dst.config.chunkerPolynomial);
    const out: BlobId[] = [];
    let pieces: Uint8Array[] = [];
    const emit = async () => {
      const chunk = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
      pieces = [];
      const { id, added } = await this.#writer.saveBlob('data', chunk);
      this.#stored(added, chunk.length);
      out.push(id);
    };
    const loads: Array<Promise<Uint8Array>> = [];
    const load = (i: number) => {
      const p = this.#src.loadBlob('data', content[i]!, { signal });
      p.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
      return p;
    };
    for (let i = 0; i < Math.min(READ_AHEAD, content.length); i++) loads.push(load(i));
    for (let i = 0; i < content.length; i++) {
      throwIfAborted(signal);
      const data = await loads[i]!;
      loads[i] = Promise.resolve(new Uint8Array(0)); // let it be collected
      if (i + READ_AHEAD < content.length) loads.push(load(i + READ_AHEAD));
      let offset = 0;
      while (offset < data.length) {
        const cut = chunker.next(data, offset);
        if (cut < 0) {
          pieces.push(data.subarray(offset));
          break;
        }
        pieces.push(data.subarray(offset, cut));
        await emit();
        offset = cut;
      }
    }
    if (pieces.length > 0) await emit();
    this.filesRechunked++;
    this.#progress();
    return out;
  }
}

function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
