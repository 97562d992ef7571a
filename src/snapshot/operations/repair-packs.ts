// `repair packs PACKID...`, with restic 0.19's semantics: the blobs of the named packs that still
// decrypt and hash to their IDs are stored again in new packs (and indexed), the index files that
// name the packs are rewritten without them, and the packs are deleted. Blobs that could not be
// salvaged are then missing from the index: `repair snapshots --forget` cuts them out of the
// snapshots that use them, as restic documents. When a pack's header lists other blobs than its
// index entries (an incomplete index entry), the blobs of the header are salvaged too. A pack the
// index does not name is deleted without salvage, as restic does.
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, InvalidInputError, NotFoundError, throwIfAborted } from '../../errors.ts';
import { withIndex, IndexedRepository, type AnyRepository } from '../../repository/repository.ts';
import { MasterIndex, type BlobLocation } from '../../repository/master-index.ts';
import { rewriteIndexFiles } from '../../repository/index-writer.ts';
import { loadPackHeader } from '../../repository/pack-reader.ts';
import { isId, type PackId } from '../../repository/id.ts';
import type { PackedBlob } from '../../repository/pack.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import type { CompressionMode } from '../../repository/compression.ts';

/** Options of {@link repairPacks}. */
export interface RepairPacksOptions extends CallOptions {
  /** Take an exclusive lock for the run (default true). Pass false when the caller holds one. */
  lock?: boolean;
  /** Keep trying this long (ms) while another process holds a lock. */
  retryLock?: number;
  /** Compression of the salvaged blobs (v2; default auto). */
  compression?: CompressionMode;
  /** Target size of the new packs (default 16 MiB). */
  packSize?: number;
  /** Called with each pack's raw bytes before anything changes (the CLI keeps a copy as `pack-<id>`, as restic does). */
  onPackBytes?: (packId: string, bytes: Uint8Array) => void | Promise<void>;
  /** restic's lines: plain progress lines and the warnings it prints on stderr. */
  onMessage?: (message: string, level: 'info' | 'warning') => void;
}

/** What {@link repairPacks} did. */
export interface RepairPacksResult {
  /** Blobs stored again from the damaged packs (type and ID). */
  salvaged: Array<{ type: 'data' | 'tree'; id: string }>;
  /** Blobs that could not be read back intact, with why; the index no longer has them. */
  lost: Array<{ type: 'data' | 'tree'; id: string; pack: string; message: string }>;
  /** New packs written for the salvaged blobs. */
  packsWritten: number;
  /** Index files written (the salvaged blobs' and the rewritten ones). */
  indexFilesWritten: string[];
  /** Old index files deleted. */
  indexFilesRemoved: string[];
  /** The named packs deleted from the repository. */
  packsRemoved: string[];
}

/**
 * Salvages the intact blobs of damaged packs into new packs, rewrites the index without the
 * packs and deletes them, as `restic repair packs` (0.19). IDs must be full 64-hex pack IDs.
 * Holds an exclusive lock unless `lock: false`. Afterwards run `repairSnapshots` with `forget`
 * (`stowage repair snapshots --forget`) for the blobs that were lost.
 */
export async function repairPacks(repository: AnyRepository, packIds: readonly string[], options: RepairPacksOptions = {}): Promise<RepairPacksResult> {
  const ids = new Set<string>();
  for (const id of packIds) {
    if (!isId(id)) throw new InvalidInputError(`invalid pack ID "${id}": a pack ID has 64 hex digits`);
    ids.add(id);
  }
  if (ids.size === 0) throw new InvalidInputError('no ids specified');
  const repo = repository instanceof IndexedRepository ? repository.repo : repository;
  return withOptionalLock(repo, { lock: options.lock, exclusive: true, retryLock: options.retryLock, signal: options.signal }, async () => {
    const indexed = await withIndex(repository, options);
    return salvage(indexed, ids, options);
  });
}

async function salvage(indexed: IndexedRepository, ids: ReadonlySet<string>, options: RepairPacksOptions): Promise<RepairPacksResult> {
  const { signal } = options;
  const say = (m: string, level: 'info' | 'warning' = 'info'): void => options.onMessage?.(m, level);
  const backend = indexed.backend;
  const result: RepairPacksResult = { salvaged: [], lost: [], packsWritten: 0, indexFilesWritten: [], indexFilesRemoved: [], packsRemoved: [] };

  // The stored packs among the named ones, their sizes, and a copy of each for the caller.
  const sizes = new Map<string, number>();
  for await (const f of backend.list('data', { signal })) if (ids.has(f.name)) sizes.set(f.name, f.size);
  if (options.onPackBytes) {
    say('saving backup copies of pack files to current folder');
    for (const id of [...ids].sort()) {
      // A missing pack stops the command here, before anything changed (restic: the load's error).
      const bytes = await backend.load({ type: 'data', name: id }, { signal });
      await options.onPackBytes(id, bytes);
    }
  }

  say('salvaging intact data from specified pack files');
  // What the pack headers list (a header that cannot be read lists nothing).
  const headers = new Map<string, PackedBlob[]>();
  for (const [id, size] of sizes) {
    try {
      headers.set(id, await loadPackHeader(backend, indexed.repo.masterKeyForWorkers(), id as PackId, size, { signal }));
    } catch (e) {
      if (e instanceof AbortedError) throw e;
    }
  }
  const fromIndex = new Map<string, BlobLocation[]>();
  for (const e of indexed.index.entries()) {
    if (!ids.has(e.packId)) continue;
    let l = fromIndex.get(e.packId);
    if (!l) fromIndex.set(e.packId, (l = []));
    l.push(e);
  }

  // The blobs are stored again even though the index has them (in the packs that go).
  const target = new IndexedRepository(indexed.repo, new MasterIndex(), new Map(), { refreshOnMiss: false });
  const writer = target.blobWriter({ compression: options.compression, packSize: options.packSize, signal });
  const stored = new Set<string>();
  const lostKeys = new Set<string>();
  const lose = (loc: BlobLocation, packId: string, message: string): void => {
    const key = `${loc.type}:${loc.id}`;
    if (lostKeys.has(key)) return;
    lostKeys.add(key);
    result.lost.push({ type: loc.type, id: loc.id, pack: packId, message });
  };
  const reupload = async (packId: string, blobs: readonly BlobLocation[], bytes: Uint8Array | undefined): Promise<void> => {
    for (const loc of blobs) {
      throwIfAborted(signal);
      // A missing or truncated pack: what lies past its end is gone (restic stops there silently;
      // the result lists those blobs as lost).
      if (!bytes || loc.offset + loc.length > bytes.length) {
        lose(loc, packId, bytes ? 'the pack file is truncated' : 'the pack file does not exist');
        continue;
      }
      let plain: Uint8Array;
      try {
        plain = indexed.decodeBlob(loc, bytes.subarray(loc.offset, loc.offset + loc.length));
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        say(`failed to load blob ${loc.id}: ${(e as Error).message}`, 'warning');
        lose(loc, packId, (e as Error).message);
        continue;
      }
      await writer.saveBlob(loc.type, plain);
      const key = `${loc.type}:${loc.id}`;
      if (!stored.has(key)) {
        stored.add(key);
        result.salvaged.push({ type: loc.type, id: loc.id });
      }
    }
  };
  const byOffset = (a: { offset: number }, b: { offset: number }) => a.offset - b.offset;
  const sameBlobs = (a: readonly PackedBlob[], b: readonly PackedBlob[]): boolean => {
    if (a.length !== b.length) return false;
    const key = (x: PackedBlob) => `${x.type}:${x.id}:${x.offset}:${x.length}:${x.uncompressedLength}`;
    const ka = a.map(key).sort();
    const kb = b.map(key).sort();
    return ka.every((k, i) => k === kb[i]);
  };
  for (const packId of [...fromIndex.keys()].sort()) {
    const indexBlobs = fromIndex.get(packId)!.sort(byOffset);
    let bytes: Uint8Array | undefined;
    try {
      bytes = sizes.has(packId) ? await backend.load({ type: 'data', name: packId }, { signal }) : undefined;
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    await reupload(packId, indexBlobs, bytes);
    const packBlobs = headers.get(packId);
    if (packBlobs && !sameBlobs(indexBlobs, packBlobs)) {
      say(`repairing incomplete index entry for pack ${packId}`, 'warning');
      await reupload(packId, packBlobs.map((b) => ({ ...b, packId: packId as PackId })).sort(byOffset), bytes);
    }
    if (indexBlobs.length === 0 && !packBlobs?.length) say(`no blobs found for pack ${packId}`, 'warning');
  }
  await writer.flush();
  // A blob lost from one copy of the header but salvaged from another is not lost.
  result.lost = result.lost.filter((b) => !stored.has(`${b.type}:${b.id}`));
  result.packsWritten = writer.stats.packs;
  for (const [id, packs] of target.indexFiles) {
    result.indexFilesWritten.push(id);
    indexed.indexFiles.set(id, packs);
  }

  // The index without the packs: the files that name them are rewritten, then deleted.
  say('rebuilding index');
  const obsolete = [...indexed.indexFiles].filter(([, packs]) => packs.some((p) => ids.has(p))).map(([id]) => id).sort();
  result.indexFilesWritten.push(...(await rewriteIndexFiles(indexed.repo, indexed.indexFiles, obsolete, ids, { signal })));
  for (const id of obsolete) {
    await backend.remove({ type: 'index', name: id }, { signal, missingOk: true });
    indexed.indexFiles.delete(id);
    result.indexFilesRemoved.push(id);
  }

  say('removing salvaged pack files');
  // A pack that cannot be deleted now is named by no index: prune removes it later (as restic).
  for (const id of [...ids].sort()) {
    try {
      await backend.remove({ type: 'data', name: id }, { signal, missingOk: true });
      result.packsRemoved.push(id);
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      say(`unable to remove pack ${id}: ${(e as Error).message}`, 'warning');
    }
  }
  return result;
}
