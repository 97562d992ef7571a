// The one interface every storage implements. A backend moves bytes and nothing else:
// no crypto, no retries (see the wrappers), no JSON.

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
  /** Reads a file or a byte range of it. Throws NotFoundError when it does not exist. */
  load(h: FileHandle, options?: LoadOptions): Promise<Uint8Array>;
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
