// Worker thread for reading blobs back: verifies (MAC), decrypts, decompresses and hashes the
// blobs of a byte range of a pack, and either only reports what failed (check --read-data),
// also writes each verified blob to the files that need it (restore), or hands each verified
// blob's plaintext back (serve's archives).
//
// The bytes arrive as a transferred ArrayBuffer (no copy) and are freed as soon as the job is
// done. Jobs run one after the other. Nothing is written before a blob has passed every check.
import { parentPort } from 'node:worker_threads';
import { closeSync, constants as fsc, fchmodSync, fchownSync, openSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { IntegrityError } from '../../errors.ts';
import { discard, IV_SIZE, openInto, type CryptoKey } from '../../repository/crypto.ts';
import { decompress } from '../../repository/compression.ts';
import { ZstdDecoder } from '../../repository/zstd-decoder.ts';
import { zeroPrefixLength } from './decode-pool.ts';

export interface DecodeInit {
  type: 'init';
  key: { encrypt: Uint8Array; macK: Uint8Array; macR: Uint8Array };
}
/**
 * One blob at `at` in the job's bytes. `writes` (restore only): [file path, offset in the file,
 * create, sparse], where create means the file does not exist yet and this job creates it
 * (exclusively), and sparse (restore --sparse) that the file already has its full length and the
 * blob's all-zero beginning is not written (left a hole), as restic's sparse writes leave it.
 */
export interface DecodeBlob {
  at: number;
  length: number;
  uncompressedLength: number;
  id: string;
  writes?: Array<[Uint8Array, number, boolean, boolean?]>;
}
export interface DecodeJob {
  type: 'job';
  job: number;
  bytes: ArrayBuffer;
  /** Where messages name the blobs: the pack file. */
  file: string;
  blobs: DecodeBlob[];
  /**
   * Files this job completes: [path, uid (−1: keep), gid, permission bits (−1: keep)]. Once all
   * their blobs are written, owner and mode are set on the open file (owner first: chown clears
   * the setuid and setgid bits).
   */
  finish?: Array<[Uint8Array, number, number, number]>;
  /** Hand every verified blob's plaintext back (DecodeDone.plain), each in its own ArrayBuffer. */
  returnPlain?: boolean;
}
export interface DecodeDone {
  type: 'done';
  job: number;
  /** Per blob: null when verified (and written), else why not. */
  errors: Array<string | null>;
  /** Per `finish` entry: null when owner and mode are set, a message when that failed, undefined when not tried. */
  finished?: Array<string | null | undefined>;
  /** A write that failed (the file system, not the data): the restore cannot go on. */
  writeError?: { code?: string; message: string; path: string };
  /** returnPlain: per blob, its plaintext (transferred, exactly its length) or null when it failed. */
  plain?: Array<ArrayBuffer | null>;
}

/**
 * The blob's plaintext. A blob is one zstd frame of known size, which is decompressed into one
 * buffer of exactly that size (freed as soon as it is written); anything else (several frames,
 * damage) goes through the general, bounded decompress, which names what is wrong.
 */
function inflate(data: Uint8Array, length: number, where: { file: string; blob: string }): Uint8Array {
  try {
    const r = zlib.zstdDecompressSync(data, { chunkSize: Math.max(64, length), maxOutputLength: length, info: true }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    if (r.buffer.length === length && r.engine.bytesWritten === data.length) return r.buffer;
    discard(r.buffer);
  } catch {
    // decompress below says what is wrong
  }
  return decompress(data, length, where);
}

/**
 * Files one job keeps open at once: a blob may be shared by thousands of files, and the workers,
 * the main thread and the reads all share the process's limit (256 in small containers).
 */
const MAX_OPEN_FILES = 32;

/** See {@link blobDecoder}. */
export interface BlobDecoder {
  decode: (b: DecodeBlob, bytes: Uint8Array, file: string, inPlace: boolean) => Uint8Array | string;
  /** Drops the kept zstd context. */
  reset: () => void;
  /** Whether a plaintext `decode` gave lies in the decoder's own buffer (reused by the next call). */
  isShared: (b: Uint8Array) => boolean;
}

/**
 * Decodes blobs with `key`: `decode` gives a blob's verified plaintext (valid until the next call)
 * or why it is not intact. With `inPlace`, a blob that passes its MAC is decrypted over its own
 * ciphertext in `bytes` (the caller's own), so no plaintext buffer as big as the biggest blob
 * stays resident. A worker keeps one; check --read-data's main thread also decodes with one when
 * every worker has its queue full. `reset` drops the kept zstd context.
 */
export function blobDecoder(key: CryptoKey): BlobDecoder {
  let plain: Buffer = Buffer.alloc(0);

  const plainRoom = (n: number): Buffer => {
    if (plain.length < n) {
      discard(plain);
      plain = Buffer.allocUnsafeSlow(Math.max(n, 1 << 20));
    }
    return plain;
  };

  const decoder = new ZstdDecoder();

  const decode = (b: DecodeBlob, bytes: Uint8Array, file: string, inPlace: boolean): Uint8Array | string => {
    if (b.at < 0 || b.at + b.length > bytes.length) return new IntegrityError(`blob is truncated (${Math.max(0, bytes.length - b.at)} of ${b.length} bytes)`, { file, blob: b.id }).message;
    const sealed = bytes.subarray(b.at, b.at + b.length);
    let out: Uint8Array;
    let reused = false;
    let compressed: Uint8Array | undefined;
    try {
      const n = openInto(key, sealed, inPlace ? sealed.subarray(IV_SIZE) : plainRoom(b.length), { file, blob: b.id });
      out = inPlace ? sealed.subarray(IV_SIZE, IV_SIZE + n) : plain.subarray(0, n);
      if (b.uncompressedLength) {
        compressed = out;
        const fast = decoder.decompress(out, b.uncompressedLength);
        reused = fast !== undefined;
        out = fast ?? inflate(out, b.uncompressedLength, { file, blob: b.id });
      }
    } catch (e) {
      return (e as Error).message;
    }
    let digest = createHash('sha256').update(out).digest('hex');
    if (reused && digest !== b.id) {
      // The kept context may have been left inside an earlier, damaged frame: once more with a fresh one.
      decoder.reset();
      discard(out);
      try {
        out = inflate(compressed!, b.uncompressedLength, { file, blob: b.id });
      } catch (e) {
        return (e as Error).message;
      }
      digest = createHash('sha256').update(out).digest('hex');
    }
    if (digest !== b.id) {
      if (out.buffer !== plain.buffer) discard(out);
      // Worded as IndexedRepository.decodeBlob words it.
      return new IntegrityError('blob content does not match its ID (SHA-256)', { file, blob: b.id }).message;
    }
    return out;
  };
  return { decode, reset: () => decoder.reset(), isShared: (b) => b.buffer === plain.buffer };
}

/**
 * Verifies the blobs of a range (`at` is the offset in `bytes`, which the caller owns and which
 * are decrypted in place when the blobs do not overlap): per blob, null when intact, else why not.
 * What a worker does for check --read-data, done by the caller's thread.
 */
export function verifyBlobs(dec: BlobDecoder, bytes: Uint8Array, file: string, blobs: readonly DecodeBlob[]): Array<string | null> {
  let inPlace = true;
  for (let i = 0, end = 0; i < blobs.length && inPlace; i++) {
    inPlace = blobs[i]!.at >= end;
    end = blobs[i]!.at + blobs[i]!.length;
  }
  return blobs.map((b) => {
    const r = dec.decode(b, bytes, file, inPlace);
    if (typeof r === 'string') return r;
    if (!dec.isShared(r)) discard(r);
    return null;
  });
}

const port = parentPort;
if (port) {
  let key: CryptoKey;
  let dec: BlobDecoder;
  const decode = (b: DecodeBlob, bytes: Uint8Array, file: string, inPlace: boolean): Uint8Array | string => dec.decode(b, bytes, file, inPlace);

  const run = (job: DecodeJob): DecodeDone => {
    const bytes = new Uint8Array(job.bytes);
    // In place only when the blobs follow each other without overlapping (an index can be wrong).
    let inPlace = true;
    for (let i = 0, end = 0; i < job.blobs.length && inPlace; i++) {
      const b = job.blobs[i]!;
      inPlace = b.at >= end;
      end = b.at + b.length;
    }
    const errors: Array<string | null> = [];
    const done: DecodeDone = { type: 'done', job: job.job, errors };
    if (job.returnPlain) done.plain = [];
    const failedPaths = new Set<string>();
    // Files stay open while the job runs (a file's blobs often lie next to each other), up to
    // MAX_OPEN_FILES: one blob may belong to tens of thousands of files. The least recently
    // opened is closed first; a file this job created is reopened without O_CREAT.
    const open = new Map<string, { fd: number; path: Buffer }>();
    const created = new Set<string>();
    try {
      for (const b of job.blobs) {
        if (done.writeError) {
          errors.push('not attempted');
          continue;
        }
        const r = decode(b, bytes, job.file, inPlace);
        if (done.plain) {
          // The plaintext moves back without a copy when it has a buffer of its own (inflated).
          const own = typeof r !== 'string' && !dec.isShared(r) && r.byteOffset === 0 && r.byteLength === r.buffer.byteLength && r.buffer instanceof ArrayBuffer;
          done.plain.push(typeof r === 'string' ? null : own ? (r.buffer as ArrayBuffer) : new Uint8Array(r).buffer);
          errors.push(typeof r === 'string' ? r : null);
          continue;
        }
        if (typeof r === 'string') {
          errors.push(r);
          for (const [rawPath] of b.writes ?? []) failedPaths.add(Buffer.from(rawPath.buffer, rawPath.byteOffset, rawPath.byteLength).toString('latin1'));
          continue;
        }
        let path: Buffer | undefined;
        let zeros: number | undefined; // r's all-zero beginning, once a sparse file needs it
        try {
          for (const [rawPath, offset, create, sparse] of b.writes ?? []) {
            path = Buffer.from(rawPath.buffer, rawPath.byteOffset, rawPath.byteLength);
            const k = path.toString('latin1');
            let f = open.get(k);
            if (!f) {
              if (open.size >= MAX_OPEN_FILES) {
                const [oldest, o] = open.entries().next().value!;
                open.delete(oldest);
                closeSync(o.fd);
              }
              // O_NOFOLLOW (and O_EXCL when creating): never write through a link planted in the target.
              const creating = create && !created.has(k);
              const flags = fsc.O_WRONLY | fsc.O_NOFOLLOW | (creating ? fsc.O_CREAT | fsc.O_EXCL : 0);
              f = { fd: openSync(path, flags, 0o600), path };
              open.set(k, f);
              if (creating) created.add(k);
            }
            const from = sparse ? (zeros ??= zeroPrefixLength(r)) : 0;
            for (let o = from; o < r.length; ) o += writeSync(f.fd, r, o, r.length - o, offset + o);
          }
          errors.push(null);
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          done.writeError = { code: err.code, message: err.message, path: path?.toString('utf8') ?? '' };
          errors.push(err.message);
        }
        if (!dec.isShared(r)) discard(r);
      }
      if (job.finish && !done.writeError) {
        done.finished = job.finish.map(([rawPath, uid, gid, mode]) => {
          const k = Buffer.from(rawPath.buffer, rawPath.byteOffset, rawPath.byteLength).toString('latin1');
          const f = open.get(k);
          // A file with a blob still missing is finished by the main thread once it has it, and
          // so is one closed early (too many files open).
          if (!f || failedPaths.has(k)) return undefined;
          try {
            if (uid >= 0) fchownSync(f.fd, uid, gid);
            if (mode >= 0) fchmodSync(f.fd, mode);
            return null;
          } catch (e) {
            return (e as Error).message;
          }
        });
      }
    } finally {
      for (const f of open.values()) closeSync(f.fd);
    }
    discard(bytes);
    return done;
  };

  // One job at a time, in the order they came.
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (m: DecodeInit | DecodeJob) => {
    if (m.type === 'init') {
      key = { encrypt: Buffer.from(m.key.encrypt), macK: Buffer.from(m.key.macK), macR: Buffer.from(m.key.macR) };
      dec = blobDecoder(key);
      port.postMessage({ type: 'ready' });
      return;
    }
    queue = queue.then(() => {
      const done = run(m);
      port.postMessage(done, done.plain?.filter((b): b is ArrayBuffer => b !== null) ?? []);
    });
  });
}
