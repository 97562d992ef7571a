// zstd compression as repository v2 uses it: for blobs (pack types 2 and 3) and for the
// "unpacked" files (index, snapshots, locks), whose plaintext starts with an encoding byte.
// Everything read here is attacker-controlled until proven otherwise, so decompression is always
// bounded: a few bytes of zstd can expand to gigabytes.
import zlib from 'node:zlib';
import { IntegrityError, SizeLimitError, InvalidInputError } from '../errors.ts';
import { assertRuntime } from '../runtime.ts';

/**
 * restic's --compression values. Each maps to a zstd level; 'off' stores data blobs uncompressed
 * but, as in restic, trees and unpacked files are still compressed (at the default level).
 */
export type CompressionMode = 'auto' | 'off' | 'fastest' | 'better' | 'max';

export const COMPRESSION_MODES: readonly CompressionMode[] = ['auto', 'off', 'fastest', 'better', 'max'];

// zstd levels close to klauspost/compress's SpeedDefault, SpeedFastest, SpeedBetterCompression
// and the top setting. Each level's own window is at most 8 MiB (level 19 uses exactly 8 MiB),
// which every restic version decodes.
const LEVEL: Record<CompressionMode, number> = { auto: 3, off: 3, fastest: 1, better: 7, max: 19 };

/** Largest plaintext accepted for an unpacked file (index, snapshot, lock). */
export const MAX_UNPACKED_SIZE = 1 << 30;

/**
 * The largest unpacked file accepted, stored and decompressed, per type. restic writes locks of
 * ~200 bytes, snapshots of a few KiB (their paths and tags; thousands of paths stay far below),
 * and index files of at most a few MiB (it splits them; very old versions wrote one large
 * index); a file past these caps is damage or hostile, not a repository restic made. The index
 * cap is V8's string limit (~512 MiB): a larger index could not be parsed anyway.
 */
export const UNPACKED_SIZE_LIMITS: Readonly<Record<'snapshots' | 'index' | 'locks', number>> = {
  locks: 1 << 20,
  snapshots: 64 << 20,
  index: 512 << 20,
};

/** Encoding byte of a zstd-compressed unpacked file in repository v2. */
const ENCODING_ZSTD = 0x02;

export type Where = { file?: string; blob?: string };

export function parseCompressionMode(s: string): CompressionMode {
  if ((COMPRESSION_MODES as readonly string[]).includes(s)) return s as CompressionMode;
  throw new InvalidInputError(`invalid compression mode ${JSON.stringify(s)} (expected ${COMPRESSION_MODES.join(', ')})`);
}

/** Whether data blobs are compressed in a repository of this version with this mode. */
export function compressesDataBlobs(mode: CompressionMode, repoVersion: 1 | 2): boolean {
  return repoVersion >= 2 && mode !== 'off';
}

/** One zstd frame: no checksum, no dictionary, content size declared. */
export function compress(data: Uint8Array, mode: CompressionMode): Uint8Array {
  if (typeof zlib.zstdCompressSync !== 'function') assertRuntime(); // a missing zstd is not damage
  return zlib.zstdCompressSync(data, {
    pledgedSrcSize: data.length,
    params: {
      [zlib.constants.ZSTD_c_compressionLevel]: LEVEL[mode],
      [zlib.constants.ZSTD_c_checksumFlag]: 0,
    },
  });
}

/**
 * Decompresses one zstd frame or a run of frames (Go's decoder accepts both), with or without a
 * declared content size. With `expectedLength` the output must be exactly that long and is never
 * allowed to grow past it; without, `maxLength` bounds it. Bad input is an IntegrityError naming
 * `where`.
 */
export function decompress(
  data: Uint8Array,
  expectedLength: number | undefined,
  where: Where,
  maxLength: number = MAX_UNPACKED_SIZE,
): Uint8Array {
  if (typeof zlib.zstdDecompressSync !== 'function') assertRuntime(); // a missing zstd is not damage
  const limit = expectedLength ?? maxLength;
  if (data.length === 0) throw new IntegrityError('empty zstd stream', where);
  const parts: Buffer[] = [];
  let total = 0;
  let offset = 0;
  // Node's decoder stops at the end of the first frame and reports how much input it used, so
  // further frames are decoded one call at a time, each within what is left of the limit.
  while (offset < data.length) {
    // A declared size over the limit fails before any output is allocated.
    const declared = declaredContentSize(data, offset);
    if (declared !== undefined && declared > limit - total) {
      throw new SizeLimitError(`zstd frame declares ${declared} bytes, more than ${limit} allowed`, where, limit, declared);
    }
    let result: { buffer: Buffer; engine: zlib.ZstdDecompress };
    try {
      result = zlib.zstdDecompressSync(data.subarray(offset), {
        info: true,
        maxOutputLength: Math.max(1, limit - total),
      }) as unknown as { buffer: Buffer; engine: zlib.ZstdDecompress };
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new SizeLimitError(`zstd data decompresses to more than ${limit} bytes`, where, limit);
      }
      throw new IntegrityError(`invalid zstd data: ${(e as Error).message}`, where, { cause: e });
    }
    const used = result.engine.bytesWritten;
    if (!(used > 0)) throw new IntegrityError('invalid zstd data: decoder made no progress', where);
    offset += used;
    total += result.buffer.length;
    if (total > limit) throw new SizeLimitError(`zstd data decompresses to more than ${limit} bytes`, where, limit, total);
    parts.push(result.buffer);
  }
  if (expectedLength !== undefined && total !== expectedLength) {
    throw new IntegrityError(`zstd data decompresses to ${total} bytes, expected ${expectedLength}`, where);
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
}

/**
 * The plaintext of an unpacked file: in v2 the encoding byte 0x02 followed by zstd(JSON),
 * in v1 the JSON itself. `mode` only picks the level; 'off' does not apply to these files.
 */
export function encodeUnpacked(json: Uint8Array, repoVersion: 1 | 2, mode: CompressionMode = 'auto'): Uint8Array {
  if (repoVersion === 1) return json;
  const z = compress(json, mode);
  const out = Buffer.allocUnsafe(1 + z.length);
  out[0] = ENCODING_ZSTD;
  out.set(z, 1);
  return out;
}

/**
 * Turns an unpacked file's plaintext back into JSON bytes. In v2 the first byte decides: '{' or
 * '[' means plain JSON (older writers), 0x02 means zstd; anything else is an IntegrityError.
 * v1 never has an encoding byte. Empty input stays empty.
 */
export function decodeUnpacked(
  plain: Uint8Array,
  repoVersion: 1 | 2,
  where: Where,
  maxLength: number = MAX_UNPACKED_SIZE,
): Uint8Array {
  if (repoVersion === 1 || plain.length === 0) return plain;
  const first = plain[0]!;
  if (first === 0x7b || first === 0x5b) return plain;
  if (first === ENCODING_ZSTD) return decompress(plain.subarray(1), undefined, where, maxLength);
  throw new IntegrityError(`unsupported encoding format 0x${first.toString(16).padStart(2, '0')}`, where);
}

const ZSTD_MAGIC = 0xfd2fb528;

/** The content size a zstd frame header at `offset` declares, if it declares one. */
function declaredContentSize(data: Uint8Array, offset: number): number | undefined {
  if (data.length - offset < 6) return undefined;
  const view = new DataView(data.buffer, data.byteOffset + offset, data.length - offset);
  if (view.getUint32(0, true) !== ZSTD_MAGIC) return undefined;
  const fhd = view.getUint8(4);
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const dictIdSize = [0, 1, 2, 4][fhd & 3]!;
  const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (fcsSize === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1) + dictIdSize;
  if (view.byteLength < at + fcsSize) return undefined;
  switch (fcsSize) {
    case 1: return view.getUint8(at);
    case 2: return view.getUint16(at, true) + 256;
    case 4: return view.getUint32(at, true);
    default: return Number(view.getBigUint64(at, true));
  }
}
