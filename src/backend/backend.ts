// The one interface every storage implements. A backend moves bytes and nothing else:
// no crypto, no retries (see the wrappers), no JSON.

import { IntegrityError } from '../errors.ts';

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
  /** Reads a file or a byte range of it. Throws NotFoundError when it does not exist. */
  load(h: FileHandle, options?: LoadOptions): Promise<Uint8Array>;
  /**
   * Optional: reads a byte range as one request whose bytes arrive in pieces, in order, as the
   * caller asks for them (a big range never sits in memory whole). The pieces together are the
   * range; a stream that ends before `length` bytes was cut short (the caller checks). Backends
   * without it are read with {@link loadPieces}: `load` of at most {@link STREAM_PIECE} bytes each.
   */
  loadStream?(h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array>;
  /** Size of a file. Throws NotFoundError when it does not exist. */
  stat(h: FileHandle, options?: CallOptions): Promise<FileInfo>;
  /** Lists the files of one type (names and sizes), in no particular order. */
  list(type: FileType, options?: CallOptions): AsyncIterable<FileInfo>;
  /** Removes a file. Throws NotFoundError when it does not exist. */
  remove(h: FileHandle, options?: CallOptions): Promise<void>;
  /** Releases connections and handles. */
  close(): Promise<void>;
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
