// A repository in a folder: a local disk, an NFS or SMB mount, a Kubernetes hostPath or PVC.
// restic's default layout (config, keys/, snapshots/, index/, locks/, data/XX/<id>), written the
// way restic's own local backend writes it: temp file, fsync, rename, fsync the folder, read-only.

import { randomBytes } from 'node:crypto';
import { mkdir, open, opendir, rename, stat, chmod, unlink, link, copyFile } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import type { FileHandle as OsFileHandle } from 'node:fs/promises';
import type { Dir } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describeFile, layoutPath, uninitializedBytes } from './backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions, LocalFile } from './backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, StowageError, throwIfAborted } from '../errors.ts';
import { checkConnections, checkHandle, checkType, fileInfo, isIdName, resolveRange, transientErrors } from './shared.ts';

/** Options of {@link LocalBackend}. */
export interface LocalBackendOptions {
  /**
   * Requests in flight at once (default 4; restic's local backend uses 2). Every save ends with
   * an fsync, and with two in flight a backup waits for the disk: four keep it busy.
   */
  connections?: number;
}

const DEFAULT_CONNECTIONS = 4;

/** Large files are written and read in pieces of this size so an abort takes effect in between. */
const IO_CHUNK = 4 * 1024 * 1024;
/**
 * The pieces of a streamed range (`loadStream`): each is a buffer of its own that the reader
 * copies out and frees, so a reader holds one piece per stream; 1 MiB reads from the page cache
 * cost no more per byte than bigger ones.
 */
const STREAM_PIECE_BYTES = 1024 * 1024;

/** How many files of a folder are stat'ed at once while listing (hides NFS round trips). */
const LIST_STAT_BATCH = 64;

/** Temp files live next to their final name (so the rename stays on one filesystem). */
const TEMP_PREFIX = '.tmp-';

const DIR_MODE = 0o700;
const TEMP_FILE_MODE = 0o600;
const FINAL_FILE_MODE = 0o400;
/** In a group-accessible repository (its config readable by the group), as restic: group rwx. */
const GROUP_DIR_MODE = 0o770;
const GROUP_FINAL_FILE_MODE = 0o440;

/** The modes new folders and files get (folders through the umask, files exactly). */
interface Modes {
  dir: number;
  file: number;
}

/**
 * A repository in a folder of this machine (a local disk, an NFS or SMB mount, a Kubernetes
 * hostPath or PVC), written as restic's local backend writes it: each file goes to a temporary
 * file, is fsynced and renamed into place, and ends up read-only. Keeps 4 requests in flight by
 * default (restic: 2).
 *
 * The constructor only resolves `path` (relative to the working folder) and throws
 * `InvalidInputError` for an empty path or a bad `connections`; nothing is touched on disk until
 * the first call. `create()` (run by `Repository.init`) makes the folders.
 *
 * New files are made read-only (0400) in folders made 0700; in a group-accessible repository
 * (its `config` file readable by the group, as after restic's documented `chmod -R g+rX`), 0440
 * in folders made 0770 (less the umask), as restic ≥ 0.14 does, so the group can still read
 * what is added. The config's mode is read once, at the first write.
 *
 * @example
 * ```ts
 * const repo = await Repository.open(new LocalBackend('/srv/restic-repo'), { password: 'secret' });
 * ```
 */
export class LocalBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  /** The absolute path of the repository folder. */
  readonly root: string;
  #modes: Promise<Modes> | undefined;

  constructor(path: string, opts: LocalBackendOptions = {}) {
    if (typeof path !== 'string' || path === '') throw new InvalidInputError('local backend path must be a non-empty string');
    this.root = resolve(path);
    this.location = this.root;
    this.connections = checkConnections(opts.connections ?? DEFAULT_CONNECTIONS, this.location);
  }

  /** restic's rule: group access for new files and folders if the config file is group-readable. */
  #writeModes(): Promise<Modes> {
    this.#modes ??= stat(join(this.root, 'config')).then(
      (st) => ((st.mode & 0o040) !== 0 ? { dir: GROUP_DIR_MODE, file: GROUP_FINAL_FILE_MODE } : { dir: DIR_MODE, file: FINAL_FILE_MODE }),
      () => ({ dir: DIR_MODE, file: FINAL_FILE_MODE }),
    );
    return this.#modes;
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const modes = await this.#writeModes();
    const folders = ['keys', 'snapshots', 'index', 'locks', 'data'];
    for (let i = 0; i < 256; i++) folders.push(`data/${i.toString(16).padStart(2, '0')}`);
    for (const folder of folders) {
      throwIfAborted(options.signal);
      try {
        await mkdir(join(this.root, folder), { recursive: true, mode: modes.dir });
      } catch (err) {
        throw fsErrorToStowage(err, 'create', folder, this.location);
      }
    }
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    await this.#install(h, options.signal, false, async (tempPath, folder, dirMode) => {
      const fh = await openNew(tempPath, folder, dirMode);
      try {
        throwIfAborted(options.signal);
        for (let pos = 0; pos < data.length; ) {
          const { bytesWritten } = await fh.write(data, pos, Math.min(IO_CHUNK, data.length - pos), pos);
          pos += bytesWritten;
          throwIfAborted(options.signal);
        }
        return fh;
      } catch (err) {
        await fh.close().catch(() => {});
        throw err;
      }
    });
  }

  /**
   * Stores a local file as `save` stores bytes (temp file, fsync, rename, folder fsync,
   * read-only), without reading it: the temp file is a hard link to it when both are on one file
   * system (the file must then not be written to afterwards; its mode becomes read-only), else a
   * copy the kernel makes.
   */
  async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    await this.#install(h, options.signal, true, async (tempPath, folder, dirMode) => {
      await linkOrCopy(local.path, tempPath, folder, dirMode);
      throwIfAborted(options.signal);
      const fh = await open(tempPath, 'r');
      try {
        const { size } = await fh.stat();
        if (size !== local.size) throw new IntegrityError(`the local file ${local.path} holds ${size} bytes, not the ${local.size} to be saved`, { file: describeFile(h) });
        return fh;
      } catch (err) {
        await fh.close().catch(() => {});
        throw err;
      }
    });
  }

  /**
   * How every file lands: `fill` makes the temp file beside its final place and returns it open;
   * then fsync, rename into place, fsync the folder, read-only modes. Nothing is left behind on
   * failure or abort, up to the rename. `linked`: the temp file is a hard link to the source, and
   * renaming a link onto a link of the same file (a repeated save) leaves both names, so ours is dropped.
   */
  async #install(
    h: FileHandle,
    signal: AbortSignal | undefined,
    linked: boolean,
    fill: (tempPath: string, folder: string, dirMode: number) => Promise<OsFileHandle>,
  ): Promise<void> {
    throwIfAborted(signal);
    checkHandle(h);
    const file = describeFile(h);
    const finalPath = this.pathOf(h);
    const folder = dirname(finalPath);
    const tempPath = join(folder, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const modes = await this.#writeModes();
    let fh: OsFileHandle | undefined;
    try {
      fh = await fill(tempPath, folder, modes.dir);
      await syncTolerant(fh);
      await fh.close();
      fh = undefined;
      // The last point where an abort still leaves nothing behind.
      throwIfAborted(signal);
      await rename(tempPath, finalPath);
      if (linked) await unlink(tempPath).catch(() => {});
    } catch (err) {
      await fh?.close().catch(() => {});
      await unlink(tempPath).catch(() => {});
      throw fsErrorToStowage(err, 'save', file, this.location);
    }

    // The file is in place; what follows makes it durable and protects it, so it no longer aborts.
    try {
      await syncFolder(folder);
    } catch (err) {
      throw fsErrorToStowage(err, 'save', file, this.location);
    }
    // Best effort: some filesystems (SMB, some NFS exports) refuse mode changes.
    await chmod(finalPath, modes.file).catch(() => {});
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    return this.#withRange(h, options, async (fh, offset, length, file) => {
      // readFully fills every byte or throws.
      const out = uninitializedBytes(length);
      await readFully(fh, out, offset, file, options.signal);
      return out;
    });
  }

  /** A byte range read piece by piece (`STREAM_PIECE_BYTES` each) from one open file. */
  async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    const file = describeFile(h);
    let fh: OsFileHandle | undefined;
    try {
      const range = await this.#openRange(h, options);
      fh = range.fh;
      for (let done = 0; done < range.length; ) {
        const piece = uninitializedBytes(Math.min(STREAM_PIECE_BYTES, range.length - done));
        await readFully(fh, piece, range.offset + done, file, options.signal);
        done += piece.length;
        yield piece;
      }
    } catch (err) {
      throw fsErrorToStowage(err, 'load', file, this.location);
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  /** Opens the file and resolves the requested range against its size. */
  async #openRange(h: FileHandle, options: LoadOptions): Promise<{ fh: OsFileHandle; offset: number; length: number }> {
    throwIfAborted(options.signal);
    checkHandle(h);
    const fh = await open(this.pathOf(h), 'r');
    try {
      throwIfAborted(options.signal);
      const { size } = await fh.stat();
      return { fh, ...resolveRange(options, size, describeFile(h)) };
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }

  async #withRange<T>(h: FileHandle, options: LoadOptions, read: (fh: OsFileHandle, offset: number, length: number, file: string) => Promise<T>): Promise<T> {
    const file = describeFile(h);
    let fh: OsFileHandle | undefined;
    try {
      const range = await this.#openRange(h, options);
      fh = range.fh;
      return await read(fh, range.offset, range.length, file);
    } catch (err) {
      throw fsErrorToStowage(err, 'load', file, this.location);
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    throwIfAborted(options.signal);
    checkHandle(h);
    const file = describeFile(h);
    try {
      const st = await stat(this.pathOf(h));
      if (!st.isFile()) throw new NotFoundError(file);
      return fileInfo(h, st.size);
    } catch (err) {
      throw fsErrorToStowage(err, 'stat', file, this.location);
    }
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') {
      try {
        const st = await stat(join(this.root, 'config'));
        if (st.isFile()) yield { name: 'config', size: st.size };
      } catch (err) {
        if (!isMissing(err)) throw fsErrorToStowage(err, 'list', 'config', this.location);
      }
      return;
    }
    if (type !== 'data') {
      yield* this.listFolder(type, options.signal);
      return;
    }
    // data/ holds one sub-folder per two-digit prefix; walk whatever sub-folders exist.
    for (const shard of await this.readFolderNames('data', options.signal)) {
      yield* this.listFolder(`data/${shard}`, options.signal);
    }
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    checkHandle(h);
    const file = describeFile(h);
    const path = this.pathOf(h);
    try {
      await unlink(path);
    } catch (err) {
      // Some filesystems refuse to delete read-only files; make it writable and try once more.
      if (!hasCode(err, 'EACCES') && !hasCode(err, 'EPERM')) throw fsErrorToStowage(err, 'remove', file, this.location);
      try {
        await chmod(path, TEMP_FILE_MODE);
        await unlink(path);
      } catch (again) {
        throw fsErrorToStowage(again, 'remove', file, this.location);
      }
    }
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  private pathOf(h: FileHandle): string {
    return join(this.root, layoutPath(h));
  }

  /** The names of the sub-folders of a folder (a missing folder has none). */
  private async readFolderNames(folder: string, signal: AbortSignal | undefined): Promise<string[]> {
    const names: string[] = [];
    try {
      const dir = await opendir(join(this.root, folder));
      for await (const entry of dir) {
        if (entry.isDirectory()) names.push(entry.name);
        throwIfAborted(signal);
      }
    } catch (err) {
      if (isMissing(err)) return [];
      throw fsErrorToStowage(err, 'list', folder, this.location);
    }
    return names;
  }

  /** Lists the ID-named regular files of one folder with their sizes. */
  private async *listFolder(folder: string, signal: AbortSignal | undefined): AsyncGenerator<FileInfo> {
    let dir: Dir;
    try {
      dir = await opendir(join(this.root, folder));
    } catch (err) {
      if (isMissing(err)) return;
      throw fsErrorToStowage(err, 'list', folder, this.location);
    }
    const batch: string[] = [];
    try {
      // Breaking out of the for-await closes the directory handle.
      for await (const entry of dir) {
        throwIfAborted(signal);
        if (!isIdName(entry.name) || entry.isDirectory()) continue;
        batch.push(entry.name);
        if (batch.length >= LIST_STAT_BATCH) yield* this.statBatch(folder, batch.splice(0), signal);
      }
      yield* this.statBatch(folder, batch.splice(0), signal);
    } catch (err) {
      throw fsErrorToStowage(err, 'list', folder, this.location);
    }
  }

  private async *statBatch(folder: string, names: string[], signal: AbortSignal | undefined): AsyncGenerator<FileInfo> {
    if (names.length === 0) return;
    const infos = await Promise.all(
      names.map(async (name): Promise<FileInfo | undefined> => {
        try {
          const st = await stat(join(this.root, folder, name));
          return st.isFile() ? { name, size: st.size } : undefined;
        } catch (err) {
          // Removed between reading the folder and stat'ing it: it is simply gone.
          if (isMissing(err)) return undefined;
          throw err;
        }
      }),
    );
    throwIfAborted(signal);
    for (const info of infos) if (info) yield info;
  }
}

/** Creates the temp file exclusively, making its folder (e.g. a missing data/XX) on demand. */
async function openNew(path: string, folder: string, dirMode: number): Promise<OsFileHandle> {
  try {
    return await open(path, 'wx', TEMP_FILE_MODE);
  } catch (err) {
    if (!hasCode(err, 'ENOENT')) throw err;
    await mkdir(folder, { recursive: true, mode: dirMode });
    return await open(path, 'wx', TEMP_FILE_MODE);
  }
}

/**
 * A new name `dest` for the file `src`: a hard link, or where links are refused (another file
 * system, EXDEV; a file system without them) a copy, made exclusively; the folder (a missing
 * data/XX) is made on demand.
 */
async function linkOrCopy(src: string, dest: string, folder: string, dirMode: number): Promise<void> {
  const attempt = async () => {
    try {
      await link(src, dest);
    } catch (err) {
      if (hasCode(err, 'ENOENT')) throw err;
      await copyFile(src, dest, fsConstants.COPYFILE_EXCL);
    }
  };
  try {
    await attempt();
  } catch (err) {
    if (!hasCode(err, 'ENOENT')) throw err;
    // A missing data/XX folder is made; a missing source fails again and says so.
    await mkdir(folder, { recursive: true, mode: dirMode });
    await attempt();
  }
}

/** fsync, ignoring filesystems that do not implement it (SMB on macOS, some FUSE mounts). */
async function syncTolerant(fh: OsFileHandle): Promise<void> {
  try {
    await fh.sync();
  } catch (err) {
    if (!hasCode(err, 'EINVAL') && !hasCode(err, 'ENOTSUP') && !hasCode(err, 'EOPNOTSUPP')) throw err;
  }
}

/** Makes a rename durable by syncing the folder that holds the new name. */
async function syncFolder(folder: string): Promise<void> {
  let fh: OsFileHandle | undefined;
  try {
    fh = await open(folder, 'r');
    await syncTolerant(fh);
  } catch (err) {
    // Windows and a few network filesystems cannot open or sync a folder; the rename stands.
    if (!hasCode(err, 'EISDIR') && !hasCode(err, 'EPERM') && !hasCode(err, 'EACCES')) throw err;
  } finally {
    await fh?.close().catch(() => {});
  }
}

// Filesystem errors that may pass (a network filesystem's hiccup, too many open files).
// Everything else (EACCES, EPERM, EROFS, ENOSPC, EISDIR, …) needs a person to fix it: permanent.
const transientFs = transientErrors.extend({ codes: ['EIO', 'EAGAIN', 'EMFILE', 'ENFILE', 'EBUSY', 'EINTR', 'ESTALE'] });

/**
 * Turns an OS error into a StowageError naming the operation and file, e.g.
 * "save data/ab/ab12…: ENOSPC: no space left on device, write". StowageErrors pass through.
 * ENOENT/ENOTDIR mean "the file does not exist" except for save (the repository folder vanished).
 */
export function fsErrorToStowage(err: unknown, op: string, file: string, location?: string): StowageError {
  if (err instanceof StowageError) return err;
  const code = errorCode(err);
  if (code === 'ABORT_ERR') return new AbortedError(undefined, { cause: err });
  const detail = err instanceof Error ? err.message : String(err);
  if ((code === 'ENOENT' || code === 'ENOTDIR') && op !== 'save' && op !== 'create') return new NotFoundError(file, { cause: err });
  const where = location ? ` (in ${location})` : '';
  const transient = transientFs.code(code);
  return new BackendError(`${op} ${file}${where}: ${detail}`, { transient, cause: err });
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function hasCode(err: unknown, code: string): boolean {
  return errorCode(err) === code;
}

function isMissing(err: unknown): boolean {
  return hasCode(err, 'ENOENT') || hasCode(err, 'ENOTDIR');
}

/** Fills `out` from byte `position` of an open file. The file ending early means the stored copy is
 * damaged: restic's files never change after they are written. */
async function readFully(fh: OsFileHandle, out: Uint8Array, position: number, file: string, signal?: AbortSignal): Promise<void> {
  for (let filled = 0; filled < out.length; ) {
    throwIfAborted(signal);
    const { bytesRead } = await fh.read(out, filled, Math.min(IO_CHUNK, out.length - filled), position + filled);
    if (bytesRead === 0) throw new IntegrityError(`unexpected end of file at byte ${position + filled} while reading`, { file });
    filled += bytesRead;
  }
}
