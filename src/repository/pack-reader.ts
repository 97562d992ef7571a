// Reading stored packs: blobs in few requests, and a pack's header from its end.
//
// Neighbouring blobs of one pack cost one request instead of many when they are read together,
// at the price of the unneeded bytes between them. How much to read across (maxGap) and how big
// one request may be (maxSpan) depends on the caller: a tree walk wants its trees soon and reads
// little, a repack or a copy reads a lot and favours few requests. So the caller passes both.
import type { Backend, CallOptions } from '../backend/backend.ts';
import type { CryptoKey } from './crypto.ts';
import type { PackId } from './id.ts';
import { EAGER_TAIL, packFile, readPackHeader, type PackedBlob } from './pack.ts';

/** Where a blob lies: its pack and its byte range there (stored bytes, as the index lists them). */
export interface PackSpan {
  /** The pack holding the blob. */
  readonly packId: PackId;
  /** Byte offset of the sealed blob in the pack. */
  readonly offset: number;
  /** Stored length of the sealed blob. */
  readonly length: number;
}

/** How far {@link planPackReads} brings blobs into one read. */
export interface PackReadLimits {
  /** Unneeded bytes read at most between two blobs to cover both with one request. */
  maxGap: number;
  /** Largest request, from the first blob's start to the last one's end (a bigger blob is read alone). */
  maxSpan: number;
}

/** One request to a pack: the bytes from its first blob's start to its last blob's end. */
export interface PackRead<T> {
  /** The pack to read from. */
  packId: PackId;
  /** Where the read starts (the first blob's offset). */
  offset: number;
  /** Bytes to read. */
  length: number;
  /** The blobs the read covers, by offset. */
  blobs: T[];
}

/**
 * Groups blobs into reads: by pack (in the order the packs first appear), each pack's blobs by
 * offset, cut wherever the gap or the span would exceed the limits. The same blob listed twice
 * (same offset and length) is read once. `spanOf` says where an item lies when the
 * items are not locations themselves.
 */
export function planPackReads<T extends PackSpan>(blobs: Iterable<T>, limits: PackReadLimits): PackRead<T>[];
export function planPackReads<T>(blobs: Iterable<T>, limits: PackReadLimits, spanOf: (blob: T) => PackSpan): PackRead<T>[];
export function planPackReads<T>(blobs: Iterable<T>, limits: PackReadLimits, spanOf = (b: T) => b as unknown as PackSpan): PackRead<T>[] {
  const byPack = new Map<PackId, T[]>();
  for (const b of blobs) {
    const packId = spanOf(b).packId;
    const list = byPack.get(packId);
    if (list) list.push(b);
    else byPack.set(packId, [b]);
  }
  const reads: PackRead<T>[] = [];
  for (const [packId, list] of byPack) {
    list.sort((x, y) => spanOf(x).offset - spanOf(y).offset);
    let run: T[] = [];
    let start = 0;
    let end = 0;
    let last: PackSpan | undefined;
    const cut = () => {
      if (run.length > 0) reads.push({ packId, offset: start, length: end - start, blobs: run });
      run = [];
    };
    for (const b of list) {
      const span = spanOf(b);
      if (run.length > 0 && (span.offset - end > limits.maxGap || span.offset + span.length - start > limits.maxSpan)) cut();
      if (last && span.offset === last.offset && span.length === last.length) continue; // the same blob twice
      if (run.length === 0) start = span.offset;
      run.push(b);
      end = span.offset + span.length;
      last = span;
    }
    cut();
  }
  return reads;
}

/** Loads the bytes of a read; {@link blobBytes} then cuts out each blob. */
export function loadPackRead(backend: Backend, read: PackRead<unknown>, options: CallOptions = {}): Promise<Uint8Array> {
  return backend.load({ type: 'data', name: read.packId }, { signal: options.signal, offset: read.offset, length: read.length });
}

/**
 * A blob's sealed bytes within the bytes of the read that covers it: a view, not a copy. Shorter
 * than the blob when the read came back short, which decoding then reports as truncation.
 */
export function blobBytes(read: { offset: number }, bytes: Uint8Array, blob: { offset: number; length: number }): Uint8Array {
  const at = blob.offset - read.offset;
  return bytes.subarray(at, at + blob.length);
}

/**
 * Reads and verifies the header of a stored pack of `size` bytes: one request for its last
 * {@link EAGER_TAIL} bytes (most headers fit), a second one when the header is bigger.
 */
export async function loadPackHeader(backend: Backend, key: CryptoKey, packId: PackId, size: number, options: CallOptions = {}): Promise<PackedBlob[]> {
  const h = { type: 'data' as const, name: packId };
  const tailOf = (n: number) => {
    const length = Math.min(n, size);
    return backend.load(h, { signal: options.signal, offset: size - length, length });
  };
  return readPackHeader(key, size, await tailOf(EAGER_TAIL), tailOf, packFile(packId));
}
