// The one interface every storage implements. A backend moves bytes and nothing else:
// no crypto, no retries (see the wrappers), no JSON.

import { open as openFile } from 'node:fs/promises';
import { IntegrityError, throwIfAborted } from '../errors.ts';

/** The kinds of files in a repository; each kind has its own folder in restic's layout. */
export type FileType = 'config' | 'keys' | 'snapshots' | 'index' | 'data' | 'locks';

/** Every {@link FileType}, in a fixed order. */
export const FILE_TYPES: readonly FileType[] = ['config', 'keys', 'snapshots', 'index', 'data', 'locks'];

/** A file in the repository. For `config` the name is ignored (there is one). */
export interface FileHandle {
  /** The kind of file. */
  readonly type: FileType;
  /** The file's name: its ID, 64 lowercase hex digits (ignored for `config`). */
  readonly name: string;
}

/** A file as listed or stat'ed: its name and size. */
export interface FileInfo {
  /** The file's name (its ID). */
  readonly name: string;
  /** Its size in bytes. */
  readonly size: number;
}

/**
 * A file on the local disk whose bytes are to be stored (a data pack written to a temporary file
 * while it was built; see {@link Backend.saveFile}).
 */
export interface LocalFile {
  /** Its path. */
  readonly path: string;
  /** Its size in bytes: what a save stores, and what it checks the file still holds. */
  readonly size: number;
}

/** Options every backend call (and most operations) takes. */
export interface CallOptions {
  /** Aborts the call; it then rejects with an `AbortedError`. */
  signal?: AbortSignal;
}

/** Options of {@link Backend.load}: a byte range. */
export interface LoadOptions extends CallOptions {
  /** Byte offset to start reading at (default 0). */
  offset?: number;
  /** Number of bytes to read (default: to the end). A range past the end is an error. */
  length?: number;
}

/** Options of {@link Backend.remove}. */
export interface RemoveOptions extends CallOptions {
  /**
   * The caller does not need to know whether the file existed (a lock being released ignores
   * `NotFoundError` anyway): drivers whose storage deletes a missing file silently (S3,
   * rest-server) then skip the existence check, one HEAD request, they make before a delete.
   */
  missingOk?: boolean;
}

/**
 * A storage for a repository's files: moves bytes, nothing else (no crypto, no retries; see
 * `openBackend` and `wrapBackend` for retries and limits). Implemented by the local, memory and
 * cloud backends and by the wrappers; a custom storage can implement it too and must pass the same
 * contract: atomic saves, `NotFoundError` for missing files.
 */
export interface Backend {
  /** Where this backend points, for messages and logs. Never contains credentials. */
  readonly location: string;
  /** How many requests the backend should have in flight at once (cloud backends 5 as in restic; local 4, where restic uses 2). */
  readonly connections: number;

  /** Prepares the storage for a new repository (folders, bucket). Idempotent. */
  create(options?: CallOptions): Promise<void>;
  /**
   * Stores a whole file atomically: readers see either nothing or all bytes, never a part.
   * Saving a name that exists replaces it (names are content hashes, so the bytes are equal).
   */
  save(h: FileHandle, data: Uint8Array, options?: CallOptions): Promise<void>;
  /**
   * Optional: stores the bytes of a local file as `save` stores bytes, atomically, without holding
   * them in memory whole (the local backend links or copies the file). The file does not change
   * while a save from it runs, so a save can be repeated from it. Backends without it are given
   * the file's bytes through `save` (`saveFromFile`).
   */
  saveFile?(h: FileHandle, file: LocalFile, options?: CallOptions): Promise<void>;
  /** Reads a file or a byte range of it. Throws NotFoundError when it does not exist. */
  load(h: FileHandle, options?: LoadOptions): Promise<Uint8Array>;
  /**
   * Optional: reads a byte range as one request whose bytes arrive in pieces, in order, as the
   * caller asks for them (a big range never sits in memory whole). The pieces together are the
   * range; a stream that ends before `length` bytes was cut short (the caller checks). Each piece
   * is the caller's once handed on (nothing else keeps or reuses it: restore frees pieces it has
   * copied out). Backends
   * without it are read with `loadPieces`: `load` of at most `STREAM_PIECE` bytes each.
   */
  loadStream?(h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array>;
  /** Size of a file. Throws NotFoundError when it does not exist. */
  stat(h: FileHandle, options?: CallOptions): Promise<FileInfo>;
  /** Lists the files of one type (names and sizes), in no particular order. */
  list(type: FileType, options?: CallOptions): AsyncIterable<FileInfo>;
  /**
   * Removes a file. Throws NotFoundError when it does not exist, unless `missingOk` lets a driver
   * skip the check that costs a request of its own (then a missing file may or may not throw).
   */
  remove(h: FileHandle, options?: RemoveOptions): Promise<void>;
  /** Releases connections and handles. */
  close(): Promise<void>;
}

/** A file version's WORM retention (S3 Object Lock): its mode and until when it cannot be deleted or overwritten. */
export interface ObjectRetention {
  /** GOVERNANCE (a privileged user may bypass it) or COMPLIANCE (nobody may). */
  mode: 'GOVERNANCE' | 'COMPLIANCE';
  /** Until this instant the version can be neither deleted nor overwritten. */
  retainUntil: Date;
}

/**
 * What a backend offers when its storage keeps per-object retention (S3 Object Lock): prune and
 * `retention extend` find it with {@link retentionOf}. Each call is one request.
 */
export interface RetentionCapable {
  /** True when every upload (but lock files) gets a retention, so readers should respect it by default. */
  readonly locksUploads: boolean;
  /** The current version's retention, or undefined when it has none. */
  getRetention(h: FileHandle, options?: CallOptions): Promise<ObjectRetention | undefined>;
  /** Sets the current version's retention (extending it; stores refuse to shorten COMPLIANCE). */
  putRetention(h: FileHandle, retention: ObjectRetention, options?: CallOptions): Promise<void>;
}

/**
 * The retention calls of `backend`, looking through wrappers (anything with an `inner` backend:
 * retry, limits, observe, the cache), or undefined when the storage has none. Under a retry
 * wrapper the calls are retried as the backend's own calls are.
 */
export function retentionOf(backend: Backend): RetentionCapable | undefined {
  // The first wrapper that retries (RetryBackend's retryCall) on the way down retries these calls too.
  let retrier: Retrier | undefined;
  for (let b: unknown = backend, depth = 0; b !== null && typeof b === 'object' && depth < 32; depth++) {
    const r = b as Partial<RetentionCapable> & Partial<Retrier> & { inner?: unknown };
    if (typeof r.getRetention === 'function' && typeof r.putRetention === 'function' && typeof r.locksUploads === 'boolean') {
      const cap = r as RetentionCapable;
      if (!retrier) return cap;
      const via = retrier;
      return {
        locksUploads: cap.locksUploads,
        getRetention: (h, options) => via.retryCall('retention', describeFile(h), options?.signal, () => cap.getRetention(h, options)),
        putRetention: (h, retention, options) => via.retryCall('retention', describeFile(h), options?.signal, () => cap.putRetention(h, retention, options)),
      };
    }
    if (!retrier && typeof r.retryCall === 'function') retrier = r as Retrier;
    b = r.inner;
  }
  return undefined;
}

/** What retentionOf needs of a retrying wrapper (RetryBackend), without importing it. */
interface Retrier {
  retryCall<T>(op: 'retention', file: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T>;
}

/**
 * What a backend offers when its storage keeps old versions of objects (a versioned S3 bucket):
 * a read-only view of the repository as it was at an instant. Found with {@link versionsOf}.
 */
export interface VersionedCapable {
  /**
   * A backend that reads every file as its latest version at or before `asOf` (deleted then:
   * missing). Read-only: saves and removes throw ReadOnlyError, except lock files, which live in
   * the view's memory so that commands taking a lock work. With `closeBackend`, closing the view
   * closes the backend it reads.
   */
  viewAsOf(asOf: Date, options?: { closeBackend?: boolean }): Backend;
}

/** The version calls of `backend`, looking through wrappers, or undefined when the storage keeps no versions. */
export function versionsOf(backend: Backend): VersionedCapable | undefined {
  for (let b: unknown = backend, depth = 0; b !== null && typeof b === 'object' && depth < 32; depth++) {
    const r = b as Partial<VersionedCapable> & { inner?: unknown };
    if (typeof r.viewAsOf === 'function') return r as VersionedCapable;
    b = r.inner;
  }
  return undefined;
}

/** The path of a file in restic's default layout (data packs sharded by two hex digits). */
export function layoutPath(h: FileHandle): string {
  if (h.type === 'config') return 'config';
  if (h.type === 'data') return `data/${h.name.slice(0, 2)}/${h.name}`;
  return `${h.type}/${h.name}`;
}

/** "type/name" for messages: which file an error is about. */
export function describeFile(h: FileHandle): string {
  return layoutPath(h);
}

/**
 * n bytes of uninitialized memory (no zero fill) in an ArrayBuffer of their own, as a plain
 * Uint8Array: what `load` and `loadStream` hand out (the caller may keep or transfer it, see
 * `ownedBytes`), and what restore and check read a pack range into. Only for a buffer that is
 * filled completely before anyone reads it: `new Uint8Array(n)` would write every byte twice.
 */
export function uninitializedBytes(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, n);
}

/** The largest `load` that {@link loadPieces} makes for a backend without `loadStream`. */
export const STREAM_PIECE = 8 * 1024 * 1024;

/**
 * A byte range in pieces: through `backend.loadStream` (one request) when the backend has it,
 * else through `load`, {@link STREAM_PIECE} bytes at a time (one request each).
 */
export function loadPieces(backend: Backend, h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array> {
  if (backend.loadStream) return backend.loadStream(h, options);
  return loadInPieces((o) => backend.load(h, o), options, describeFile(h));
}

/** `load` called for consecutive pieces of at most {@link STREAM_PIECE} bytes (the fallback of {@link loadPieces}). */
export async function* loadInPieces(load: (options: LoadOptions) => Promise<Uint8Array>, options: LoadOptions & { length: number }, file: string): AsyncGenerator<Uint8Array> {
  const start = options.offset ?? 0;
  for (let done = 0; done < options.length; ) {
    const length = Math.min(STREAM_PIECE, options.length - done);
    const piece = await load({ signal: options.signal, offset: start + done, length });
    // A short answer is a broken read, as for load (a stream wrapper may go on from here).
    if (piece.length !== length) throw new IntegrityError(`read returned ${piece.length} bytes instead of ${length} at offset ${start + done}`, { file });
    done += piece.length;
    yield piece;
  }
}

/**
 * Stores a local file through `backend.saveFile`, or, for a backend without it, reads the file
 * and hands its bytes to `save`. A file that no longer holds `file.size` bytes is an
 * `IntegrityError` (it changed under the save).
 */
export async function saveFromFile(backend: Backend, h: FileHandle, file: LocalFile, options: CallOptions = {}): Promise<void> {
  if (backend.saveFile) return backend.saveFile(h, file, options);
  return backend.save(h, await readLocalFile(file, describeFile(h), options.signal), options);
}

/** The bytes of a {@link LocalFile}, checked to be `file.size` long. */
export async function readLocalFile(file: LocalFile, what: string, signal?: AbortSignal): Promise<Uint8Array> {
  throwIfAborted(signal);
  const fh = await openFile(file.path, 'r');
  try {
    const data = Buffer.allocUnsafeSlow(file.size);
    let pos = 0;
    while (pos < file.size) {
      const { bytesRead } = await fh.read(data, pos, file.size - pos, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
    }
    const extra = pos === file.size ? (await fh.read(Buffer.alloc(1), 0, 1, pos)).bytesRead : 0;
    if (pos !== file.size || extra !== 0) throw new IntegrityError(`the local file ${file.path} to be saved as ${what} no longer holds ${file.size} bytes`, { file: what });
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  } finally {
    await fh.close();
  }
}

/**
 * Whether saves from local files reach the storage without being read into memory: the backend
 * beneath the wrappers (anything with an `inner` backend) has its own `saveFile`.
 */
export function savesFiles(backend: Backend): boolean {
  let b: unknown = backend;
  for (let depth = 0; depth < 32; depth++) {
    const r = b as { inner?: unknown; saveFile?: unknown } | null;
    if (r === null || typeof r !== 'object') return false;
    if (r.inner === undefined || r.inner === null) return typeof r.saveFile === 'function';
    b = r.inner;
  }
  return false;
}
