// Repacking, as restic's repository.Repack: the blobs still needed are copied out of some packs
// into new ones, which are then indexed. The old packs are left alone; whoever repacks deletes
// them once the new index files name the new packs (prune does, in its safe order).
import type { CallOptions } from '../backend/backend.ts';
import { AbortedError, IntegrityError, throwIfAborted } from '../errors.ts';
import type { BlobHandleSet } from './blob-set.ts';
import type { CompressionMode } from './compression.ts';
import { mapLimit } from './concurrency.ts';
import { discard, ownedBytes } from './crypto.ts';
import type { PackId } from './id.ts';
import { MasterIndex, type BlobLocation } from './master-index.ts';
import { packFile } from './pack.ts';
import { blobBytes, loadPackRead, planPackReads, type PackReadLimits } from './pack-reader.ts';
import { IndexedRepository, OPEN_PACKS, type BlobWriter } from './repository.ts';

/** Reads cover kept blobs across gaps up to 1 MiB, up to 8 MiB each: never a whole pack at once. */
const REPACK_READS: PackReadLimits = { maxGap: 1024 * 1024, maxSpan: 8 * 1024 * 1024 };

/** Options of {@link repack}. */
export interface RepackOptions extends CallOptions {
  /** Compression for blobs that are stored uncompressed in a v2 repository (default auto). */
  compression?: CompressionMode;
  /** Target size of the new packs (default 16 MiB, as restic). */
  packSize?: number;
  /** Called after each source pack is done. */
  onProgress?: (done: number, total: number) => void;
}

/** What {@link repack} wrote. */
export interface RepackResult {
  /** New packs written. */
  packs: number;
  /** The index files written for them: ID → the packs each lists. */
  indexFiles: Map<string, PackId[]>;
}

/**
 * Copies the blobs of `packs` that `keep` marks with value 1 into new packs (each blob verified,
 * and compressed when the repository would compress it now), then writes their index files.
 * Each copied blob's value drops to 0. A damaged blob is taken from another copy the index knows;
 * without one, this throws before anything could be deleted. `indexed.indexFiles` learns nothing:
 * the caller records the result's index files.
 */
export async function repack(indexed: IndexedRepository, packs: Iterable<PackId>, keep: BlobHandleSet, options: RepackOptions = {}): Promise<RepackResult> {
  const { signal } = options;
  const repackSet = new Set<string>(packs);

  // Which blobs to read from which pack.
  const perPack = new Map<PackId, BlobLocation[]>();
  for (const e of indexed.index.entries()) {
    if (!repackSet.has(e.packId) || keep.get(e.type, e.id) !== 1) continue;
    let l = perPack.get(e.packId);
    if (!l) perPack.set(e.packId, (l = []));
    l.push(e);
  }

  // The writer gets an empty index: the blobs are in the index already (in the packs that go),
  // and must be stored again.
  const target = new IndexedRepository(indexed.repo, new MasterIndex(), new Map(), { refreshOnMiss: false });
  // The two packs being filled (OPEN_PACKS) and one being stored. Repacking reads and copies much
  // faster than a pack is stored, so more would only hold memory (restic keeps packs in temp files).
  const writer = target.blobWriter({ compression: options.compression, packSize: options.packSize, signal, packBuffers: OPEN_PACKS + 1 });
  const packIds = [...perPack.keys()];
  let done = 0;
  // One connection stays free for the uploads, as in restic.
  await mapLimit(packIds, Math.max(1, indexed.backend.connections - 1), async (packId) => {
    const blobs = perPack.get(packId)!;
    perPack.delete(packId);
    for (const read of planPackReads(blobs, REPACK_READS)) {
      throwIfAborted(signal);
      let bytes: Uint8Array | undefined;
      let readError: unknown;
      try {
        bytes = await loadPackRead(indexed.backend, read, { signal });
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        // Each blob of the range is then looked for in its other copies.
        readError = e;
      }
      for (const loc of read.blobs) {
        // Another pack may hold a copy too; whoever gets there first copies it.
        if (keep.get(loc.type, loc.id) !== 1) continue;
        keep.set(loc.type, loc.id, 0);
        let sealed = bytes && blobBytes(read, bytes, loc);
        let plain: Uint8Array;
        try {
          if (!sealed) throw readError;
          plain = indexed.decodeBlob(loc, sealed);
        } catch (e) {
          const other = await intactCopy(indexed, loc, signal);
          if (!other) {
            // A failed read (network, permissions) is reported as it is; damage as damage.
            if (!(e instanceof IntegrityError)) throw e;
            throw new IntegrityError(
              `blob ${loc.id} cannot be repacked: ${(e as Error).message}; no intact copy exists. Nothing was deleted yet; run "restic check --read-data" and "restic repair packs"`,
              { file: packFile(packId), blob: loc.id },
              { cause: e },
            );
          }
          ({ sealed, plain } = other);
        }
        await copyBlob(writer, loc, sealed, plain);
        // The writer has copied what it keeps; V8 would free these only at a later collection.
        discard(plain);
      }
      // Only a buffer the backend gave away (the in-memory backend hands out views of its own).
      if (bytes && ownedBytes(bytes)) discard(bytes);
    }
    options.onProgress?.(++done, packIds.length);
  });
  await writer.flush();
  const left = keep.countValue(1);
  if (left > 0) throw new IntegrityError(`internal error: ${left} blob(s) were not repacked; nothing was deleted`);
  return { packs: writer.stats.packs, indexFiles: new Map(target.indexFiles) };
}

/** A verified copy of a blob from another pack, for when the one being repacked is damaged. */
async function intactCopy(indexed: IndexedRepository, loc: BlobLocation, signal: AbortSignal | undefined): Promise<{ sealed: Uint8Array; plain: Uint8Array } | undefined> {
  for (const other of indexed.index.lookup(loc.id, loc.type)) {
    if (other.packId === loc.packId && other.offset === loc.offset) continue;
    try {
      const sealed = await indexed.backend.load({ type: 'data', name: other.packId }, { signal, offset: other.offset, length: other.length });
      return { sealed, plain: indexed.decodeBlob(other, sealed) };
    } catch (e) {
      if (e instanceof AbortedError) throw e;
    }
  }
  return undefined;
}

/**
 * Copies a verified blob. Its sealed bytes are reused as they are (same repository, same key),
 * except an uncompressed blob that the repository would compress now (v2: trees always, data
 * unless compression is off): that one is compressed, as restic does when it repacks.
 */
async function copyBlob(writer: BlobWriter, loc: BlobLocation, sealed: Uint8Array, plain: Uint8Array): Promise<void> {
  if (loc.uncompressedLength === 0 && writer.shouldCompress(loc.type, plain.length)) {
    await writer.saveBlob(loc.type, plain);
    return;
  }
  // addSealed copies the bytes into the pack before it returns or waits.
  await writer.addSealed(loc.type, loc.id, sealed, loc.uncompressedLength, plain.length);
}
