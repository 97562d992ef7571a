// The local metadata cache: snapshots, index files and tree packs kept on local disk as the
// encrypted files they are, in restic's cache layout, so a warm command reads only listings from
// the backend. The backend stays the truth: listings drop what it no longer has, every cached file
// is checked against its name (SHA-256) before use, and writes are atomic (temp + rename) so
// several processes can share one cache folder. See docs/ARCHITECTURE.md, "Cache".
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describeFile, loadInPieces, readLocalFile, saveFromFile, type Backend, type LocalFile, type CallOptions, type FileHandle, type FileInfo, type FileType, type LoadOptions, type RemoveOptions } from '../backend/backend.ts';
import { ForwardingBackend } from '../backend/wrappers/forwarding.ts';
import { ListingBackend } from './listing.ts';
import { AbortedError, throwIfAborted } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';

/** Where a repository's cache lives: `dir` is the base folder; the repository's files go in `<dir>/<repository ID>/`. */
export interface CacheOptions {
  /** The cache base folder (see {@link defaultCacheDir}); created when missing. */
  dir: string;
}

/** The contents of the `CACHEDIR.TAG` written in the base folder (https://bford.info/cachedir/), as restic writes it. */
export const CACHEDIR_TAG = 'Signature: 8a477f597d28d172789f06886806bc55\n';

/** The cache layout version written to `<repository ID>/version` (restic's is 1; the layout is the same). */
export const CACHE_VERSION = 1;

/** restic's default age after which a repository's cache counts as old: 30 days. */
export const DEFAULT_CACHE_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

const LAYOUT: Partial<Record<FileType, string>> = { snapshots: 'snapshots', index: 'index', data: 'data' };
const ID_RE = /^[0-9a-f]{64}$/;
/** Temp files, ours and restic's: `tmp-…`. */
const TEMP_RE = /^tmp-/;

/**
 * Age after which a temp file in the cache is a dead writer's and is removed: 1 hour. A live
 * writer (Stowage's or restic's) writes its temp file in one go and renames it at once, and every
 * write sets the file's modification time, so no live writer's temp file is this old.
 */
export const STALE_TEMP_AGE_MS = 3600 * 1000;

/**
 * The CLI's default cache base folder, by restic's rules but in a folder of Stowage's own:
 * `$RESTIC_CACHE_DIR` when set (taken as given, so pointing it at restic's cache shares that cache
 * deliberately), else `$XDG_CACHE_HOME/stowage` (an absolute `$XDG_CACHE_HOME` only), else
 * `~/Library/Caches/stowage` on macOS, `%LOCALAPPDATA%\stowage` on Windows, `~/.cache/stowage`
 * elsewhere.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RESTIC_CACHE_DIR) return env.RESTIC_CACHE_DIR;
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'stowage');
  if (process.platform === 'darwin') return path.join(os.homedir(), 'Library', 'Caches', 'stowage');
  if (process.platform === 'win32' && env.LOCALAPPDATA) return path.join(env.LOCALAPPDATA, 'stowage');
  return path.join(os.homedir(), '.cache', 'stowage');
}

/** One repository's cache folder, as {@link listCaches} reports it. */
export interface CacheInfo {
  /** The repository ID (the folder's name). */
  id: string;
  /** The folder. */
  dir: string;
  /** When a program last opened the repository with this cache (the folder's modification time). */
  lastUsed: Date;
  /** Whether it is older than the `maxAgeMs` asked for. */
  old: boolean;
  /** Bytes of the files in it (when asked for). */
  size?: number;
}

/**
 * The repository caches under a base folder (folders named by a 64-hex repository ID), oldest
 * use first. A missing base folder has none.
 */
export async function listCaches(base: string, options: { maxAgeMs?: number; sizes?: boolean } = {}): Promise<CacheInfo[]> {
  let names: string[];
  try {
    names = await readdir(base);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return [];
    throw e;
  }
  const maxAge = options.maxAgeMs ?? DEFAULT_CACHE_MAX_AGE_MS;
  const out: CacheInfo[] = [];
  for (const name of names) {
    if (!/^[0-9a-fA-F]{64}$/.test(name)) continue;
    const dir = path.join(base, name);
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const info: CacheInfo = { id: name, dir, lastUsed: st.mtime, old: Date.now() - st.mtimeMs > maxAge };
    if (options.sizes) info.size = await folderSize(dir);
    out.push(info);
  }
  return out.sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
}

/** Removes the caches under `base` not used for `maxAgeMs` (default 30 days); returns those removed. */
export async function removeOldCaches(base: string, maxAgeMs: number = DEFAULT_CACHE_MAX_AGE_MS): Promise<CacheInfo[]> {
  const old = (await listCaches(base, { maxAgeMs })).filter((c) => c.old);
  for (const c of old) await rm(c.dir, { recursive: true, force: true });
  return old;
}

async function folderSize(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await folderSize(p);
    else if (e.isFile()) total += (await stat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** Counts of what a {@link CachedBackend} did in this process. */
export interface CacheStats {
  /** Loads answered from the cache. */
  hits: number;
  /** Files fetched from the backend and stored in the cache. */
  stored: number;
  /** Cached files that did not match their name (damaged, truncated) and were discarded. */
  discarded: number;
  /** Cached files removed because the backend no longer lists them (or the index no longer names a pack). */
  dropped: number;
  /** Temp files older than {@link STALE_TEMP_AGE_MS} (left by a writer that died) removed. */
  tempsRemoved: number;
}

/**
 * A backend with a local cache of snapshots, index files and the packs that hold trees (whole
 * packs: the first read of a tree fetches its pack once). `Repository.open(…, { cache })` puts it
 * in front of the backend; everything else passes through.
 *
 * - Lists always go to the backend, and a complete listing of snapshots, index or data drops the
 *   cached files of that type it does not name (another client's forget, prune or rewrite).
 * - A cached file is used only after its SHA-256 matches its name (once per process and file); a
 *   damaged one is removed and fetched again, never trusted. Bytes fetched are cached only when
 *   they match their name.
 * - Writes go to a temp file in the same folder, then are renamed into place, so processes can
 *   share a folder; a file removed by another process is simply fetched again.
 * - When the folder cannot be written, the cache turns itself off with one warning on the logger
 *   and every call goes to the backend.
 */
export class CachedBackend extends ForwardingBackend {
  /** This repository's cache folder: `<base>/<repository ID>`. */
  readonly dir: string;
  /** What the cache did so far. */
  readonly stats: CacheStats = { hits: 0, stored: 0, discarded: 0, dropped: 0, tempsRemoved: 0 };
  readonly #logger: Logger;
  #off = false;
  readonly #treePacks = new Set<string>();
  /** Files checked against their name in this process. */
  readonly #verified = new Set<string>();
  readonly #fetching = new Map<string, Promise<Uint8Array>>();

  private constructor(inner: Backend, dir: string, logger: Logger) {
    super(inner);
    this.dir = dir;
    this.#logger = logger;
  }

  /**
   * Opens (creating as needed) the cache of repository `repoId` under `base`: `CACHEDIR.TAG` in
   * the base, `version` and the type folders in the repository's folder, whose modification time
   * is set to now (what {@link listCaches} reports as last used). Temp files of writers that died
   * (older than {@link STALE_TEMP_AGE_MS}) are removed: here in the repository's folder, and in
   * the type folders as their first listing walks them. Returns undefined, after one warning on
   * `logger`, when the folder cannot be made or written.
   */
  static async open(inner: Backend, base: string, repoId: string, options: { logger?: Logger } = {}): Promise<CachedBackend | undefined> {
    const logger = options.logger ?? silentLogger;
    const dir = path.join(base, repoId);
    try {
      if (!ID_RE.test(repoId)) throw new Error(`repository ID ${JSON.stringify(repoId)} is not 64 hex digits`);
      await mkdir(base, { recursive: true, mode: 0o700 });
      await writeFile(path.join(base, 'CACHEDIR.TAG'), CACHEDIR_TAG, { flag: 'wx', mode: 0o644 }).catch((e) => {
        if (errCode(e) !== 'EEXIST') throw e;
      });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const version = await readFile(path.join(dir, 'version'), 'utf8').then((s) => Number(s.trim()), () => 0);
      if (version > CACHE_VERSION) throw new Error(`cache version ${version} is newer than ${CACHE_VERSION}`);
      if (version < CACHE_VERSION) await writeAtomic(path.join(dir, 'version'), new TextEncoder().encode(String(CACHE_VERSION)));
      for (const sub of Object.values(LAYOUT)) await mkdir(path.join(dir, sub!), { recursive: true, mode: 0o700 });
      const now = new Date();
      await utimes(dir, now, now);
    } catch (e) {
      logger.warn('cache disabled: its folder cannot be used', { dir, error: String((e as Error).message ?? e) });
      return undefined;
    }
    logger.debug('cache opened', { dir });
    const cache = new CachedBackend(inner, dir, logger);
    for (const name of await readdir(dir).catch(() => [] as string[])) await cache.#sweepTemp(path.join(dir, name), name);
    return cache;
  }

  /** Whether the cache is in use (false after it turned itself off). */
  get enabled(): boolean {
    return !this.#off;
  }

  /**
   * The packs that hold trees, from the loaded index: these are cached whole. Cached packs not
   * among them are removed (the index no longer names them, or they hold data).
   */
  async setTreePacks(ids: Iterable<string>): Promise<void> {
    this.#treePacks.clear();
    for (const id of ids) this.#treePacks.add(id);
    await this.#dropUnlisted('data', this.#treePacks);
  }

  /** Marks a pack as holding trees (a tree pack being written), so it is cached when saved or read. */
  addTreePack(id: string): void {
    this.#treePacks.add(id);
  }

  /**
   * Lists snapshots and index files on the backend (two listings), dropping cached files it no
   * longer has. (`Repository.open` makes these listings beside its config and key reads and hands
   * them to {@link applyListing}.)
   */
  async sync(options: CallOptions = {}): Promise<void> {
    await Promise.all((['snapshots', 'index'] as const).map(async (type) => {
      for await (const _ of this.list(type, options)) { /* the listing drops what is gone */ }
    }));
  }

  /**
   * Drops the cached files of `type` that a complete listing of the backend (`names`) lacks: what
   * a listing through this backend does, for a listing made below it (an open lists snapshots and
   * index files before it knows the repository ID, so before the cache exists).
   */
  async applyListing(type: 'snapshots' | 'index', names: Iterable<string>): Promise<void> {
    if (!this.#off) await this.#dropUnlisted(type, new Set(names));
  }

  /**
   * The IDs of the files of `type` in the cache folder: no request, and not the truth (another
   * client may have removed some from the backend; a file is checked against its name when read).
   * For work that can start before a listing is allowed (the index read during a lock's wait).
   */
  async cachedIds(type: 'snapshots' | 'index'): Promise<string[]> {
    if (this.#off) return [];
    const root = path.join(this.dir, LAYOUT[type]!);
    const out: string[] = [];
    for (const sub of await readdir(root).catch(() => [] as string[])) {
      for (const name of await readdir(path.join(root, sub)).catch(() => [] as string[])) if (ID_RE.test(name)) out.push(name);
    }
    return out;
  }

  #cacheable(h: FileHandle): boolean {
    if (this.#off || !LAYOUT[h.type] || !ID_RE.test(h.name)) return false;
    return h.type !== 'data' || this.#treePacks.has(h.name);
  }

  #path(type: FileType, name: string): string {
    return path.join(this.dir, LAYOUT[type]!, name.slice(0, 2), name);
  }

  override async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    if (!this.#cacheable(h)) return this.inner.load(h, options);
    const file = this.#path(h.type, h.name);
    const offset = options.offset ?? 0;
    if (this.#verified.has(file)) {
      const part = await readRange(file, offset, options.length).catch(() => undefined);
      if (part) {
        this.stats.hits++;
        return part;
      }
      this.#verified.delete(file); // removed by another process meanwhile: fetched again below
    }
    const whole = await this.#whole(h, file, options.signal);
    const end = options.length === undefined ? whole.length : offset + options.length;
    return offset === 0 && end === whole.length ? whole : whole.subarray(offset, Math.min(end, whole.length));
  }

  /** A cached kind of file is read through `load` (fetched whole and cached); the others stream from the backend. */
  override loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array> {
    return this.#cacheable(h) ? ownPieces(loadInPieces((o) => this.load(h, o), options, describeFile(h))) : super.loadStream(h, options);
  }

  /** The whole file: from the cache when it matches its name, else from the backend (then cached). */
  #whole(h: FileHandle, file: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    let p = this.#fetching.get(file);
    if (!p) {
      p = (async () => {
        const cached = await readFile(file).catch(() => undefined);
        if (cached) {
          if (sha256hex(cached) === h.name) {
            this.#verified.add(file);
            this.stats.hits++;
            return new Uint8Array(cached.buffer, cached.byteOffset, cached.length);
          }
          this.stats.discarded++;
          this.#logger.info('cached file does not match its name; fetched again', { file: `${h.type}/${h.name}` });
          await unlink(file).catch(() => undefined);
        }
        throwIfAborted(signal);
        const bytes = await this.inner.load({ type: h.type, name: h.name }, { signal });
        if (sha256hex(bytes) === h.name) await this.#store(h, file, bytes);
        return bytes;
      })();
      this.#fetching.set(file, p);
      p.then(() => this.#fetching.delete(file), () => this.#fetching.delete(file));
    }
    return p;
  }

  async #store(h: FileHandle, file: string, bytes: Uint8Array): Promise<void> {
    if (this.#off) return;
    try {
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await writeAtomic(file, bytes);
      this.#verified.add(file);
      this.stats.stored++;
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      this.#turnOff(e, `${h.type}/${h.name}`);
    }
  }

  #turnOff(e: unknown, file: string): void {
    if (this.#off) return;
    this.#off = true;
    this.#logger.warn('cache disabled: a file cannot be written to it', { dir: this.dir, file, error: String((e as Error).message ?? e) });
  }

  override async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    await this.inner.save(h, data, options);
    if (this.#cacheable(h) && sha256hex(data) === h.name) await this.#store(h, this.#path(h.type, h.name), data);
  }

  override async saveFile(h: FileHandle, file: LocalFile, options: CallOptions = {}): Promise<void> {
    await saveFromFile(this.inner, h, file, options);
    if (!this.#cacheable(h)) return;
    const data = await readLocalFile(file, describeFile(h), options.signal);
    if (sha256hex(data) === h.name) await this.#store(h, this.#path(h.type, h.name), data);
  }

  override async remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    await this.inner.remove(h, options);
    if (LAYOUT[h.type] && ID_RE.test(h.name)) await this.#unlink(this.#path(h.type, h.name));
  }

  override async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    const seen = LAYOUT[type] ? new Set<string>() : undefined;
    for await (const f of this.inner.list(type, options)) {
      seen?.add(f.name);
      yield f;
    }
    // Only a complete listing says what the backend no longer has.
    if (seen && !this.#off) await this.#dropUnlisted(type, seen);
  }

  async #dropUnlisted(type: FileType, keep: ReadonlySet<string>): Promise<void> {
    const root = path.join(this.dir, LAYOUT[type]!);
    for (const sub of await readdir(root).catch(() => [] as string[])) {
      const folder = path.join(root, sub);
      for (const name of await readdir(folder).catch(() => [] as string[])) {
        if (await this.#sweepTemp(path.join(folder, name), name)) continue;
        if (ID_RE.test(name) && !keep.has(name)) {
          await this.#unlink(path.join(folder, name));
          this.stats.dropped++;
        }
      }
    }
  }

  /**
   * Removes `file` when it is a temp file (ours or restic's, `tmp-…`) not written to for
   * {@link STALE_TEMP_AGE_MS}: a writer that died left it. Returns whether `file` is a temp file.
   */
  async #sweepTemp(file: string, name: string): Promise<boolean> {
    if (!TEMP_RE.test(name)) return false;
    const st = await stat(file).catch(() => undefined);
    if (st?.isFile() && Date.now() - st.mtimeMs > STALE_TEMP_AGE_MS) {
      await unlink(file).then(() => this.stats.tempsRemoved++, () => undefined);
    }
    return true;
  }

  async #unlink(file: string): Promise<void> {
    this.#verified.delete(file);
    await unlink(file).catch(() => undefined);
  }
}

/**
 * The storage behind a cache: `backend` itself, or what a {@link CachedBackend} wraps. For reads
 * that must see the stored bytes (check --read-data verifies the backend's copy, not the cache's).
 */
export function uncachedBackend(backend: Backend): Backend {
  const below = backend instanceof ListingBackend ? backend.inner : backend;
  return below instanceof CachedBackend ? below.inner : below;
}

/** Writes a file atomically: a temp file in the same folder, then a rename over the name. */
async function writeAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `tmp-${randomBytes(8).toString('hex')}`);
  try {
    await writeFile(tmp, bytes, { mode: 0o644 });
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

async function readRange(file: string, offset: number, length: number | undefined): Promise<Uint8Array> {
  if (offset === 0 && length === undefined) {
    const b = await readFile(file);
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  }
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const n = Math.max(0, Math.min(length ?? size - offset, size - offset));
    const buf = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const { bytesRead } = await fh.read(buf, done, n - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, done);
  } finally {
    await fh.close();
  }
}

function sha256hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function errCode(e: unknown): string | undefined {
  return (e as { code?: string })?.code;
}

/**
 * Pieces the caller may free (see `Backend.loadStream`): a piece that is a whole file shared by
 * concurrent reads of it (`#whole`) is handed on as a copy; a part of one cannot be freed anyway.
 */
async function* ownPieces(pieces: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const p of pieces) yield p.byteOffset === 0 && p.byteLength === p.buffer.byteLength ? p.slice() : p;
}
