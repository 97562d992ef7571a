// Pack files: sealed blobs back to back, then the sealed header, then the header's length.
//   EncBlob_1 ‖ … ‖ EncBlob_n ‖ IV ‖ AES-CTR(header) ‖ MAC ‖ u32le(len(encrypted header))
// Header entry: type byte, u32le stored length, [u32le plaintext length if compressed], 32-byte ID.
import { createHash } from 'node:crypto';
import { ftruncateSync, readSync, writeSync } from 'node:fs';
import { IntegrityError } from '../errors.ts';
import { CRYPTO_OVERHEAD, open, seal, type CryptoKey } from './crypto.ts';
import { bytesToId, type BlobId, type BlobType, type PackId } from './id.ts';

/** Size of a header entry of an uncompressed blob: type, length, ID. */
export const PLAIN_ENTRY_SIZE = 1 + 4 + 32;
/** Size of a header entry of a compressed blob: type, length, plaintext length, ID. */
export const COMPRESSED_ENTRY_SIZE = 1 + 4 + 4 + 32;
/** restic's largest accepted header (16 MiB), including the 4-byte length field. */
export const MAX_HEADER_SIZE = 16 * 1024 * 1024 + 4;
/** restic eagerly reads this many bytes from the end of a pack; most headers fit. */
export const EAGER_TAIL = 15 * COMPRESSED_ENTRY_SIZE + CRYPTO_OVERHEAD + 4;

/** The pack size restic aims for unless told otherwise (--pack-size, $RESTIC_PACK_SIZE). */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
/** restic's smallest target pack size; prune's small-pack threshold never goes below 80 % of it. */
export const MIN_PACK_SIZE = 4 * 1024 * 1024;

/** A pack's file name in the repository, `data/<first two hex digits>/<id>`, for messages. */
export function packFile(id: string): string {
  return `data/${id.slice(0, 2)}/${id}`;
}

/** A blob's place in a pack, as both the pack header and the index files describe it. */
export interface PackedBlob {
  readonly type: BlobType;
  readonly id: BlobId;
  readonly offset: number;
  /** Stored length, crypto overhead included. */
  readonly length: number;
  /** Plaintext length when the blob is compressed, else 0. */
  readonly uncompressedLength: number;
}

/** Size of the blob's entry in a pack header. */
export function entrySize(b: { uncompressedLength: number }): number {
  return b.uncompressedLength ? COMPRESSED_ENTRY_SIZE : PLAIN_ENTRY_SIZE;
}

/** The exact file size a pack with these blobs has; `restic check` compares it with the file. */
export function expectedPackSize(blobs: Iterable<{ length: number; uncompressedLength: number }>): number {
  let size = 4 + CRYPTO_OVERHEAD;
  for (const b of blobs) size += b.length + entrySize(b);
  return size;
}

/**
 * Collects sealed blobs of one type into a pack; `finish` seals the header and names the pack.
 * Blobs are copied into one buffer as they arrive (so the senders' buffers are free at once and a
 * finished pack needs no second copy) and hashed right after the copy, while the bytes are still
 * in cache: finishing a pack only hashes its header. Given a file descriptor instead
 * (`PackWriter.toFile`), blobs are written to that file as they arrive and nothing of the pack
 * but its header is held in memory.
 */
export class PackWriter {
  readonly blobType: BlobType;
  readonly #key: CryptoKey;
  // Untouched capacity costs no memory; a caller may pass a buffer of an earlier pack to reuse.
  #buf: Buffer;
  readonly #hash = createHash('sha256');
  readonly #blobs: PackedBlob[] = [];
  #size = 0;
  #headerSize = 0;
  /** The file the pack is written to, when it is not built in memory. */
  #fd: number | undefined;

  constructor(key: CryptoKey, blobType: BlobType, expectedSize = 1 << 20, buffer?: Buffer) {
    this.#key = key;
    this.blobType = blobType;
    this.#buf = buffer && buffer.length >= expectedSize ? buffer : Buffer.allocUnsafeSlow(expectedSize);
  }

  /**
   * A writer that writes each blob to `fd` (a new, empty file open for reading and writing: a
   * merge reads its blobs back) as it is added,
   * holding only the header in memory; finish it with {@link finishFile}. The caller closes `fd`.
   */
  static toFile(key: CryptoKey, blobType: BlobType, fd: number): PackWriter {
    const w = new PackWriter(key, blobType, 0, Buffer.alloc(0));
    w.#fd = fd;
    return w;
  }

  /** Bytes the pack holds so far (blobs only). */
  get size(): number {
    return this.#size;
  }
  get count(): number {
    return this.#blobs.length;
  }
  /** Size the file would have if finished now. */
  get fileSize(): number {
    return this.#size + this.#headerSize + CRYPTO_OVERHEAD + 4;
  }

  /** Adds a sealed blob. `uncompressedLength` is 0 for an uncompressed blob. */
  add(id: BlobId, sealed: Uint8Array, uncompressedLength: number): void {
    const blob: PackedBlob = { type: this.blobType, id, offset: this.#size, length: sealed.length, uncompressedLength };
    if (this.#fd !== undefined) {
      writeAll(this.#fd, sealed, this.#size);
      this.#hash.update(sealed);
      this.#blobs.push(blob);
      this.#size += sealed.length;
      this.#headerSize += entrySize(blob);
      return;
    }
    this.#reserve(sealed.length);
    this.#buf.set(sealed, this.#size);
    this.#hash.update(this.#buf.subarray(this.#size, this.#size + sealed.length));
    this.#blobs.push(blob);
    this.#size += sealed.length;
    this.#headerSize += entrySize(blob);
  }

  #reserve(extra: number): void {
    const need = this.#size + extra;
    if (need <= this.#buf.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(need, this.#buf.length * 2));
    grown.set(this.#buf.subarray(0, this.#size));
    this.#buf = grown;
  }

  /**
   * Appends the blobs of `other` (same type) after this pack's, as restic merges the small packs
   * left open when a run ends. `other` is empty afterwards; its buffer is the caller's again.
   */
  merge(other: PackWriter): Buffer {
    for (const b of other.#blobs) this.add(b.id, other.#blobBytes(b), b.uncompressedLength);
    return other.takeBuffer();
  }

  /** A blob's sealed bytes as this pack holds them (read back from its file when it has one). */
  #blobBytes(b: PackedBlob): Uint8Array {
    if (this.#fd === undefined) return this.#buf.subarray(b.offset, b.offset + b.length);
    const out = Buffer.allocUnsafe(b.length);
    for (let done = 0; done < b.length; ) {
      const n = readSync(this.#fd, out, done, b.length - done, b.offset + done);
      if (n === 0) throw new Error(`PackWriter.merge: the pack file ended before blob ${b.id}`);
      done += n;
    }
    return out;
  }

  /** Hands this pack's buffer back (for reuse) and leaves the pack empty and unusable. */
  takeBuffer(): Buffer {
    const buf = this.#buf;
    this.#buf = Buffer.alloc(0);
    this.#blobs.length = 0;
    this.#size = 0;
    this.#headerSize = 0;
    return buf;
  }

  /** Whether another blob would push the header past restic's limit. */
  get headerFull(): boolean {
    return this.#headerSize + COMPRESSED_ENTRY_SIZE + CRYPTO_OVERHEAD + 4 > MAX_HEADER_SIZE;
  }

  /**
   * Seals the header and returns the whole pack file and its ID (SHA-256 of the file). `bytes`
   * is a view of the pack's buffer from offset 0; once stored, the buffer may be reused.
   */
  finish(): { id: PackId; bytes: Buffer; blobs: PackedBlob[] } {
    if (this.#fd !== undefined) throw new Error('PackWriter.finish: this pack is written to a file, use finishFile');
    const start = this.#size;
    const sealedHeader = seal(this.#key, encodePackHeader(this.#blobs));
    this.#reserve(sealedHeader.length + 4);
    this.#buf.set(sealedHeader, this.#size);
    this.#buf.writeUInt32LE(sealedHeader.length, this.#size + sealedHeader.length);
    const length = this.#size + sealedHeader.length + 4;
    const bytes = this.#buf.subarray(0, length);
    this.#hash.update(bytes.subarray(start));
    this.#buf = Buffer.alloc(0);
    return { id: this.#hash.digest('hex') as PackId, bytes, blobs: this.#blobs.slice() };
  }

  /** Seals the header, writes it after the blobs in the file, and returns the pack's ID and size. */
  finishFile(): { id: PackId; size: number; blobs: PackedBlob[] } {
    const fd = this.#fd;
    if (fd === undefined) throw new Error('PackWriter.finishFile: this pack is built in memory, use finish');
    const sealedHeader = seal(this.#key, encodePackHeader(this.#blobs));
    const tail = Buffer.allocUnsafe(sealedHeader.length + 4);
    tail.set(sealedHeader, 0);
    tail.writeUInt32LE(sealedHeader.length, sealedHeader.length);
    writeAll(fd, tail, this.#size);
    // A blob whose write failed part-way left bytes past the pack's end: cut them off.
    ftruncateSync(fd, this.#size + tail.length);
    this.#hash.update(tail);
    return { id: this.#hash.digest('hex') as PackId, size: this.#size + tail.length, blobs: this.#blobs.slice() };
  }
}

/** Writes all of `bytes` to `fd` at `position` (a short write goes on where it stopped). */
function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/** The plaintext pack header listing these blobs, in order. */
export function encodePackHeader(blobs: readonly PackedBlob[]): Uint8Array {
  let size = 0;
  for (const b of blobs) size += entrySize(b);
  const h = Buffer.allocUnsafe(size);
  let o = 0;
  for (const b of blobs) {
    const compressed = b.uncompressedLength !== 0;
    h[o++] = (b.type === 'data' ? 0 : 1) + (compressed ? 2 : 0);
    h.writeUInt32LE(b.length, o);
    o += 4;
    if (compressed) {
      h.writeUInt32LE(b.uncompressedLength, o);
      o += 4;
    }
    h.write(b.id, o, 32, 'hex');
    o += 32;
  }
  return h;
}

/** Parses a decrypted pack header; offsets are the running sum of lengths. */
export function decodePackHeader(header: Uint8Array, file: string): PackedBlob[] {
  const blobs: PackedBlob[] = [];
  const view = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  let o = 0;
  let offset = 0;
  while (o < view.length) {
    const t = view[o]!;
    if (t > 3) throw new IntegrityError(`pack header has unknown blob type ${t} at entry ${blobs.length}`, { file });
    const compressed = t >= 2;
    const size = compressed ? COMPRESSED_ENTRY_SIZE : PLAIN_ENTRY_SIZE;
    if (o + size > view.length) throw new IntegrityError('pack header is truncated', { file });
    const length = view.readUInt32LE(o + 1);
    const uncompressedLength = compressed ? view.readUInt32LE(o + 5) : 0;
    const id = bytesToId<BlobId>(view, o + size - 32);
    if (length < CRYPTO_OVERHEAD) throw new IntegrityError(`pack header entry ${blobs.length} has length ${length}`, { file, blob: id });
    blobs.push({ type: t % 2 === 0 ? 'data' : 'tree', id, offset, length, uncompressedLength });
    offset += length;
    o += size;
  }
  return blobs;
}

/**
 * Reads the header from the end of a pack. `tail` holds the last bytes of the pack (at least the
 * 4-byte length); `readMore(n)` fetches the last n bytes when the tail is too short.
 */
export async function readPackHeader(
  key: CryptoKey,
  packSize: number,
  tail: Uint8Array,
  readMore: (n: number) => Promise<Uint8Array>,
  file: string,
): Promise<PackedBlob[]> {
  if (packSize < 4 + CRYPTO_OVERHEAD) throw new IntegrityError(`pack is too small (${packSize} bytes)`, { file });
  if (tail.length < 4) throw new IntegrityError('pack is truncated', { file });
  const hlen = Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength).readUInt32LE(tail.length - 4);
  if (hlen < CRYPTO_OVERHEAD || hlen > packSize - 4 || hlen + 4 > MAX_HEADER_SIZE) {
    throw new IntegrityError(`pack header length ${hlen} is invalid for a pack of ${packSize} bytes`, { file });
  }
  let buf = tail;
  if (buf.length < hlen + 4) buf = await readMore(hlen + 4);
  const sealed = buf.subarray(buf.length - 4 - hlen, buf.length - 4);
  const header = open(key, sealed, { file });
  const blobs = decodePackHeader(header, file);
  const end = blobs.length ? blobs[blobs.length - 1]!.offset + blobs[blobs.length - 1]!.length : 0;
  if (end + hlen + 4 !== packSize) {
    throw new IntegrityError(`pack size ${packSize} does not match its header (expected ${end + hlen + 4})`, { file });
  }
  return blobs;
}
