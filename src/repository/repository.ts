// The repository: the only place that sees keys and plaintext. Typed by state:
//   Repository         — opened (master key + config): keys, unpacked files (snapshots, locks)
//   IndexedRepository  — index loaded: blobs can be read and written
import os from 'node:os';
import { join } from 'node:path';
import { unlink } from 'node:fs/promises';
import { closeSync, openSync } from 'node:fs';
import { createHash, randomInt } from 'node:crypto';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LocalFile } from '../backend/backend.ts';
import { describeFile, saveFromFile, savesFiles, versionsOf } from '../backend/backend.ts';
import { wrapBackend } from '../backend/wrappers/stack.ts';
import { assertRuntime } from '../runtime.ts';
import { raceAbort } from '../backend/shared.ts';
import { readIndexFile } from './index-loader.ts';
import {
  AbortedError, BlobNotFoundError, IntegrityError, SizeLimitError, InvalidInputError, NotFoundError, RepositoryExistsError,
  RepositoryNotFoundError, StowageError, UnsupportedError, WrongPasswordError, addSuppressed, throwIfAborted,
} from '../errors.ts';
import { discard, initCrypto, open, randomKey, seal, type CryptoKey } from './crypto.ts';
import { createKeyFile, openKeyFile, parseKeyFile, DEFAULT_SCRYPT, type KeyFileJson, type ScryptParams } from './keyfile.ts';
import { decodeConfig, encodeConfig, newConfig, type RepoConfig } from './config.ts';
import { decompress, decodeUnpacked, encodeUnpacked, UNPACKED_SIZE_LIMITS, type CompressionMode } from './compression.ts';
import { isId, type AnyId, type BlobId, type BlobType, type KeyId, type PackId } from './id.ts';
import { MasterIndex, type BlobLocation } from './master-index.ts';
import { IndexWriter } from './index-writer.ts';
import type { IndexPack } from './index-file.ts';
import { DEFAULT_PACK_SIZE, PackWriter, entrySize, packFile, type PackedBlob } from './pack.ts';
import { ZstdEncoder } from './zstd-encoder.ts';
import { parseGoTime, type GoTime } from './gotime.ts';
import { mapLimit } from './concurrency.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { CachedBackend, type CacheOptions } from './cache.ts';
import { ListingBackend, collectFiles, type HeldType } from './listing.ts';
import { sweepTempPacks, tempPackName } from './temp-packs.ts';

/** The file types stored as one encrypted JSON document each (not in packs). */
export type UnpackedType = 'snapshots' | 'index' | 'locks';

/** Options of {@link Repository.init}. */
export interface InitOptions extends CallOptions {
  /** The password of the first key; must not be empty (unless `insecureNoPassword`). */
  password: string;
  /**
   * Make the first key with an empty password, as restic ≥ 0.17's `init --insecure-no-password`
   * (`password` must then be `''`). Anyone who can read the repository can then decrypt it.
   */
  insecureNoPassword?: boolean;
  /** Repository format version: 2 (default, compression) or 1 (readable by restic ≥ 0.9). */
  version?: 1 | 2;
  /** scrypt parameters for the first key (default N=32768, r=8, p=1, as restic calibrates here). */
  kdf?: ScryptParams;
  /** Recorded in the key file, as restic records the user (informational). */
  username?: string;
  /** Recorded in the key file, as restic records the host (informational). */
  hostname?: string;
  /** Use this chunker polynomial instead of a random one (restic init --copy-chunker-params). */
  chunkerPolynomial?: bigint;
  /** Where the repository logs what it does (default: nothing is logged); kept as `repo.logger`. */
  logger?: Logger;
}

/** Options of {@link Repository.open}. */
export interface OpenOptions extends CallOptions {
  /** The password of one of the repository's keys. */
  password: string;
  /**
   * Open with an empty password (`password` must then be `''`): a repository made with restic
   * ≥ 0.17's `--insecure-no-password`, or a key added with `--new-insecure-no-password`.
   */
  insecureNoPassword?: boolean;
  /** Key ID (or unique prefix) to try first. */
  keyHint?: string;
  /** At most this many keys are tried (restic: 20). */
  maxKeys?: number;
  /** Where the repository logs what it does (default: nothing is logged); kept as `repo.logger`. */
  logger?: Logger;
  /**
   * A local cache of snapshots, index files and tree packs under `<dir>/<repository ID>/` (see
   * `CachedBackend`, `defaultCacheDir`). Default: no cache — the library touches no local folder
   * unless given one (the CLI uses one by default). A folder that cannot be written means no
   * cache, with one warning on `logger`.
   */
  cache?: CacheOptions | false;
  /**
   * Open the repository as it was at this instant, read-only, from the storage's object versions
   * (a versioned S3 bucket, B2 file versions, GCS generations, Azure blob versions: the driver's `viewAsOf`, found through wrappers). Every file is its newest
   * version at or before `asOf`; writes throw ReadOnlyError (locks are kept in memory); no cache
   * is used (a cache mirrors the present). UnsupportedError when the backend keeps no versions.
   */
  asOf?: Date;
  /**
   * Hold one listing of `snapshots/` and of `index/` per open (and per refresh) for everything
   * that asks — the cache, the index load, snapshot selection — instead of listing the backend at
   * each ask (see `ListingBackend`, {@link Repository.refreshListings}). What this process writes
   * and removes is applied to them; a lock taken makes them be listed again under it. For
   * programs that open, do one thing and close (the CLI); a long-lived handle that must see
   * other clients' snapshots without calling `refresh()` keeps the default, false.
   */
  holdListings?: boolean;
  /**
   * Listings to make at once, beside the config and key reads (no round trip of their own): for
   * the cache's sync and, with `holdListings`, for the index load and the command. Default:
   * snapshots and index with a cache or `holdListings`, none otherwise.
   */
  prefetch?: readonly HeldType[];
}

/** A key file, as {@link Repository.listKeys} lists it. */
export interface KeyInfo {
  id: KeyId;
  current: boolean;
  username: string;
  hostname: string;
  /** When the key was made, as its key file says; prints and serialises as RFC 3339. */
  created: GoTime;
}

/** restic tries at most 20 keys before it gives up. */
const MAX_KEYS = 20;

/**
 * An opened repository: its backend, config and master key. Reads and writes the unpacked files
 * (snapshots, index, locks) and manages keys; blob reads and writes need the index, so {@link
 * Repository.loadIndex} returns an {@link IndexedRepository} for `backup`, `restore` and the like.
 * Obtained only from {@link Repository.init} or {@link Repository.open}.
 *
 * @example
 * ```ts
 * import { LocalBackend, Repository } from 'stowage';
 *
 * const backend = new LocalBackend('/srv/restic-repo');
 * const repo = await Repository.init(backend, { password: 'secret' }); // a new repository, or:
 * const same = await Repository.open(backend, { password: 'secret' });
 * const indexed = await same.loadIndex();
 * ```
 */
export class Repository {
  /** The storage the repository lives on. */
  readonly backend: Backend;
  /** The decrypted config: repository ID, format version, chunker polynomial. */
  readonly config: RepoConfig;
  /** The ID of the key file the password opened. */
  readonly keyId: KeyId;
  /** The logger given to open/init (silentLogger otherwise); locks and index loads log here. */
  readonly logger: Logger;
  readonly #key: CryptoKey;
  #closed = false;

  private constructor(backend: Backend, config: RepoConfig, key: CryptoKey, keyId: KeyId, logger: Logger = silentLogger) {
    this.backend = backend;
    this.config = config;
    this.#key = key;
    this.keyId = keyId;
    this.logger = logger;
  }

  /** The local metadata cache in front of the backend, when one is in use (see {@link OpenOptions.cache}). */
  get cache(): CachedBackend | undefined {
    const below = this.backend instanceof ListingBackend ? this.backend.inner : this.backend;
    return below instanceof CachedBackend && below.enabled ? below : undefined;
  }

  /**
   * Lists snapshots and index files on the backend again (one request each); returns the IDs, in
   * the order of `types`. Opened with `holdListings`, it also holds the new listings: `listIds`,
   * snapshot selection and the index load answer from the listings made at open (or on first
   * use) or by the last call of this (or `IndexedRepository.refresh`), never older ones, with
   * this process's own saves and removes applied; call it to see what other clients wrote or
   * removed since.
   */
  async refreshListings(types: readonly HeldType[] = ['snapshots', 'index'], options: CallOptions = {}): Promise<string[][]> {
    if (!(this.backend instanceof ListingBackend)) return Promise.all(types.map((t) => collect(this.listIds(t, options))));
    const lists = await this.backend.renew(types, options);
    return lists.map((names) => names.filter((n) => isId(n)));
  }

  /** The repository format version: 1, or 2 (compression). */
  get version(): 1 | 2 {
    return this.config.version;
  }

  /**
   * Creates a new repository: `create()` on the backend (folders, bucket), then the config (a
   * random chunker polynomial unless given) and the first key for `password`.
   *
   * @throws RepositoryExistsError when the location already holds a config.
   * @throws InvalidInputError for an empty password or invalid options.
   * @throws BackendError when the storage cannot be reached or written.
   */
  static async init(backend: Backend, options: InitOptions): Promise<Repository> {
    assertRuntime();
    await initCrypto();
    const signal = options.signal;
    requirePassword(options.password, options.insecureNoPassword);
    const exists = await backend.stat({ type: 'config', name: '' }, { signal }).then(() => true, (e) => {
      if (e instanceof NotFoundError) return false;
      throw e;
    });
    if (exists) throw new RepositoryExistsError(backend.location);
    await backend.create({ signal });
    const master = randomKey();
    const config = newConfig(options.version ?? 2, options.chunkerPolynomial);
    const kf = await createKeyFile(options.password, master, {
      params: options.kdf ?? DEFAULT_SCRYPT,
      username: options.username,
      hostname: options.hostname,
    });
    // Key first, config last: a config without a readable key would be a dead repository.
    await backend.save({ type: 'keys', name: kf.id }, kf.bytes, { signal });
    await backend.save({ type: 'config', name: '' }, seal(master, encodeConfig(config)), { signal });
    const logger = options.logger ?? silentLogger;
    logger.info('repository created', { location: backend.location, version: config.version, key: kf.id });
    return new Repository(backend, config, master, kf.id, logger);
  }

  /**
   * Opens a repository with a password: tries the key files as restic does (the `keyHint` first,
   * then in listing order, at most `maxKeys`), then loads and verifies the config.
   *
   * @throws RepositoryNotFoundError when the location holds no config (restic exit code 10).
   * @throws WrongPasswordError when no key opens with the password (exit code 12).
   * @throws IntegrityError when the config or a key file is damaged.
   * @throws UnsupportedError for a repository format version other than 1 or 2.
   */
  static async open(backend: Backend, options: OpenOptions): Promise<Repository> {
    assertRuntime();
    await initCrypto();
    const signal = options.signal;
    requirePassword(options.password, options.insecureNoPassword);
    if (options.asOf !== undefined) {
      const versions = versionsOf(backend);
      if (!versions) throw new UnsupportedError(`${backend.location} keeps no object versions, so it cannot be opened as of ${String(options.asOf)}`);
      // The view reads the storage driver directly, so it gets its own retries and connection
      // limit; closing the repository closes the view and the driver, as it closes a backend.
      backend = wrapBackend(versions.viewAsOf(options.asOf, { closeBackend: true }), { logger: options.logger });
      options = { ...options, cache: false };
    }
    // Everything that does not depend on the key is asked at once: the config, the key listing
    // and the listings the command will want (each sequential request costs a round trip).
    const seeds: Partial<Record<HeldType, Promise<FileInfo[]>>> = {};
    for (const type of options.prefetch ?? (options.cache || options.holdListings ? (['snapshots', 'index'] as const) : [])) {
      const p = collectFiles(backend.list(type, { signal }));
      p.catch(() => undefined); // unused when the open fails; a failed listing is made again on use
      seeds[type] = p;
    }
    const configP = backend.load({ type: 'config', name: '' }, { signal });
    const keysP = collectFiles(backend.list('keys', { signal }));
    keysP.catch(() => undefined); // the config's error comes first
    let configBytes: Uint8Array;
    try {
      configBytes = await configP;
    } catch (e) {
      if (e instanceof NotFoundError) throw new RepositoryNotFoundError(backend.location, { cause: e });
      throw e;
    }
    const names = (await keysP).map((f) => f.name);
    if (options.keyHint) {
      const hinted = names.filter((n) => n.startsWith(options.keyHint!));
      if (hinted.length === 1) names.unshift(...names.splice(names.indexOf(hinted[0]!), 1));
    }
    const max = options.maxKeys ?? MAX_KEYS;
    const logger = options.logger ?? silentLogger;
    logger.debug('looking for a key that opens with the password', { location: backend.location, keys: names.length });
    let tried = 0;
    for (const name of names) {
      if (tried++ >= max) throw new WrongPasswordError(`wrong password or no key found (tried the maximum of ${max} keys)`);
      throwIfAborted(signal);
      logger.debug('trying key', { key: name });
      const bytes = await backend.load({ type: 'keys', name }, { signal });
      if (sha256hex(bytes) !== name) throw new IntegrityError('key file does not match its name (SHA-256)', { file: `keys/${name}` });
      const kf = parseKeyFile(bytes, name);
      const master = await openKeyFile(options.password, kf, name);
      if (!master) continue;
      let plain: Uint8Array;
      try {
        plain = open(master, configBytes, { file: 'config' });
      } catch (e) {
        throw new IntegrityError(`config or key keys/${name} is damaged`, { file: 'config' }, { cause: e });
      }
      const config = decodeConfig(plain, 'config');
      logger.info('repository opened', { location: backend.location, version: config.version, key: name, keysTried: tried });
      let store: Backend = backend;
      if (options.cache) {
        // Keyed by the config's repository ID: a repository made anew at this location has
        // another ID and never sees the old one's files.
        const cached = await CachedBackend.open(backend, options.cache.dir, config.id, { logger });
        if (cached) {
          // The cache drops what the listings lack (another client's forget or prune); they are
          // the ones the index load and the command use, so the backend is listed once per type.
          // A type not listed now is listed through the cache on first use, which drops then.
          for (const type of ['snapshots', 'index'] as const) {
            const files = seeds[type];
            if (!files) continue;
            const listed = await files.catch((e: unknown) => {
              if (e instanceof AbortedError) throw e;
              return undefined; // listed again on use (through the cache, which then drops)
            });
            if (listed) await cached.applyListing(type, listed.map((f) => f.name));
          }
          store = cached;
        }
      }
      return new Repository(options.holdListings ? new ListingBackend(store, seeds) : store, config, master, name as KeyId, logger);
    }
    logger.debug('no key opens with the password', { keysTried: tried });
    throw new WrongPasswordError();
  }

  // ---- keys -------------------------------------------------------------------------------

  /** Every key file (ID, user, host, creation time; `current` for the one in use), oldest first. */
  async listKeys(options: CallOptions = {}): Promise<KeyInfo[]> {
    const out: Array<KeyInfo & { written: string }> = [];
    for await (const f of this.backend.list('keys', options)) {
      const kf: KeyFileJson = parseKeyFile(await this.backend.load({ type: 'keys', name: f.name }, options), f.name);
      out.push({ id: f.name as KeyId, current: f.name === this.keyId, username: kf.username, hostname: kf.hostname, created: parseGoTime(kf.created), written: kf.created });
    }
    // Ordered by the time as written, as before times were GoTime values.
    return out.sort((a, b) => a.written.localeCompare(b.written)).map(({ written: _, ...k }) => k);
  }

  /** Adds a key (a new password) for the same master key; `insecureNoPassword` with `''` adds an empty one (restic's `--new-insecure-no-password`). */
  async addKey(password: string, options: CallOptions & { kdf?: ScryptParams; username?: string; hostname?: string; insecureNoPassword?: boolean } = {}): Promise<KeyId> {
    requirePassword(password, options.insecureNoPassword);
    const kf = await createKeyFile(password, this.#key, { params: options.kdf ?? DEFAULT_SCRYPT, username: options.username, hostname: options.hostname });
    await this.backend.save({ type: 'keys', name: kf.id }, kf.bytes, options);
    return kf.id;
  }

  /**
   * Removes a key by ID or unique prefix. Throws `InvalidInputError` for the key in use (as restic
   * refuses it) or an ambiguous prefix, `NotFoundError` when no key matches.
   */
  async removeKey(id: string, options: CallOptions = {}): Promise<void> {
    const full = await this.resolveId('keys', id, options);
    if (full === this.keyId) throw new InvalidInputError('refusing to remove the key currently used to access the repository');
    await this.backend.remove({ type: 'keys', name: full }, options);
  }

  /** Replaces the current key with one for a new password (add new, then remove old). */
  async changePassword(password: string, options: CallOptions & { kdf?: ScryptParams; insecureNoPassword?: boolean } = {}): Promise<KeyId> {
    const id = await this.addKey(password, options);
    await this.backend.remove({ type: 'keys', name: this.keyId }, options);
    (this as { keyId: KeyId }).keyId = id;
    return id;
  }

  // ---- unpacked files (snapshots, index, locks) -----------------------------------------

  /**
   * Encrypts (and in v2 compresses) a JSON document and stores it under its hash; with `dryRun`
   * only the name it would have is returned (a dry run's snapshot ID, as restic prints one).
   */
  async saveUnpacked(type: UnpackedType, json: Uint8Array, options: CallOptions & { dryRun?: boolean } = {}): Promise<string> {
    const sealed = seal(this.#key, encodeUnpacked(json, this.version));
    const id = sha256hex(sealed);
    if (options.dryRun) return id;
    await this.backend.save({ type, name: id }, sealed, options);
    return id;
  }

  /**
   * Loads, verifies (name = SHA-256 of the stored bytes, MAC) and decodes an unpacked file. A
   * file stored or decompressing larger than {@link UNPACKED_SIZE_LIMITS} allows for its type is
   * a SizeLimitError naming it, raised before it is decrypted or inflated past the cap.
   */
  async loadUnpacked(type: UnpackedType, id: string, options: CallOptions = {}): Promise<Uint8Array> {
    const h: FileHandle = { type, name: id };
    const file = describeFile(h);
    const limit = UNPACKED_SIZE_LIMITS[type];
    const bytes = await this.backend.load(h, options);
    if (bytes.length > limit) throw new SizeLimitError(`${type} file of ${bytes.length} bytes is larger than the ${limit} bytes accepted`, { file }, limit, bytes.length);
    if (sha256hex(bytes) !== id) throw new IntegrityError('file content does not match its name (SHA-256)', { file });
    return decodeUnpacked(open(this.#key, bytes, { file }), this.version, { file }, limit);
  }

  /** IDs of all files of a type (64-hex names only). */
  async *listIds(type: FileType, options: CallOptions = {}): AsyncIterable<string> {
    for await (const f of this.backend.list(type, options)) if (isId(f.name)) yield f.name;
  }

  /** Expands a unique ID prefix of a file of `type` to the full ID. */
  async resolveId(type: FileType, prefix: string, options: CallOptions = {}): Promise<string> {
    if (isId(prefix)) return prefix;
    if (!/^[0-9a-f]+$/.test(prefix)) throw new InvalidInputError(`invalid ID ${JSON.stringify(prefix)}`);
    const hits: string[] = [];
    for await (const id of this.listIds(type, options)) if (id.startsWith(prefix)) hits.push(id);
    if (hits.length === 0) throw new NotFoundError(`${type}/${prefix}…`);
    if (hits.length > 1) throw new InvalidInputError(`ID prefix ${prefix} is ambiguous: ${hits.map((h) => h.slice(0, 12)).join(', ')}`);
    return hits[0]!;
  }

  // ---- crypto for the layers above --------------------------------------------------------

  /** Seals bytes with the master key (used by workers' results and by pack headers). */
  seal(plain: Uint8Array): Uint8Array {
    return seal(this.#key, plain);
  }
  /**
   * Verifies (MAC) and decrypts bytes sealed with the master key; throws `IntegrityError` naming
   * `where` when they do not verify.
   */
  open(sealed: Uint8Array, where: { file?: string; blob?: string }): Uint8Array {
    return open(this.#key, sealed, where);
  }
  /**
   * The master key, for the worker threads that seal blobs. Only the repository and its own
   * workers ever hold it; it is never logged or serialised elsewhere.
   */
  masterKeyForWorkers(): CryptoKey {
    return this.#key;
  }

  // ---- lifetime ---------------------------------------------------------------------------

  /**
   * Closes the backend (its connections, SDK clients, helper processes). Idempotent. The
   * repository (and every `IndexedRepository` loaded from it) must not be used afterwards.
   * Also runs at the end of an `await using repo = await Repository.open(…)` block.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.backend.close();
  }

  /** Whether {@link Repository.close} has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** `await using` support: the same as {@link Repository.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- index ------------------------------------------------------------------------------

  /** Loads every index file into the master index; returns the repository in its indexed state. */
  async loadIndex(
    options: CallOptions & {
      onProgress?: (done: number, total: number) => void;
      /**
       * Load these index files instead of listing `index/`, with these snapshots as the ones
       * known (for `refresh()`'s `snapshotsChanged`): e.g. what the cache holds, read while a
       * lock is taken, then brought up to date by `refresh()` once it is held. The cache keeps
       * its other tree packs.
       */
      ids?: { index: readonly string[]; snapshots: readonly string[] };
    } = {},
  ): Promise<IndexedRepository> {
    const started = performance.now();
    const index = new MasterIndex();
    // The snapshots are listed too (one LIST, beside the index's), so a later refresh() can
    // tell whether they changed.
    const [ids, snapshots] = options.ids
      ? [[...options.ids.index], [...options.ids.snapshots]]
      : await Promise.all([collect(this.listIds('index', options)), collect(this.listIds('snapshots', options))]);
    let done = 0;
    const indexFiles = new Map<string, PackId[]>();
    await mapLimit(ids, Math.max(2, this.backend.connections), async (id) => {
      const packs = await readIndexFile(this, id, options);
      for (const p of packs) index.addPack(p, false);
      indexFiles.set(id, packs.map((p) => p.id));
      options.onProgress?.(++done, ids.length);
    });
    index.compact();
    const cache = this.cache;
    if (cache) {
      const treePacks = new Set<string>();
      for (const e of index.entries()) if (e.type === 'tree') treePacks.add(e.packId);
      if (options.ids) for (const p of treePacks) cache.addTreePack(p);
      else await cache.setTreePacks(treePacks);
    }
    this.logger.info('index loaded', { indexFiles: ids.length, packs: index.packCount, blobs: index.size, durationMs: Math.round(performance.now() - started) });
    return new IndexedRepository(this, index, indexFiles, { snapshots });
  }
}

/** A refresh or a BlobWriter compacts the blobs staged once there are more than this (or 1/8 of the index). */
const STAGED_BEFORE_COMPACT = 65536;

async function collect(ids: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const id of ids) out.push(id);
  return out;
}

/** What {@link IndexedRepository.refresh} found changed in the repository. */
export interface RefreshResult {
  /** Index files loaded now (other clients' backups, a prune's rewritten index), sorted. */
  added: string[];
  /** Index files the repository no longer has (another client's prune), dropped from memory, sorted. */
  removed: string[];
  /** Whether snapshot files were added or removed since the index was loaded or last refreshed. */
  snapshotsChanged: boolean;
  /** Packs the index in memory lists now and did not before. */
  packsAdded: number;
  /** Packs dropped from the index in memory: no index file in the repository lists them any more. */
  packsRemoved: number;
}

/** Options of {@link IndexedRepository.startAutoRefresh}. */
export interface AutoRefreshOptions {
  /** Stops the interval when it aborts (as the returned function and `close()` do). */
  signal?: AbortSignal;
  /** Called after each refresh, with what it found (also when nothing changed). */
  onRefresh?: (result: RefreshResult) => void;
  /** Called when a refresh fails (it is also logged at warn); the interval goes on. */
  onError?: (error: unknown) => void;
}

/** Options of the {@link IndexedRepository} constructor. */
export interface IndexedRepositoryOptions {
  /** The snapshot IDs the repository held when the index was loaded (for `snapshotsChanged`). */
  snapshots?: Iterable<string>;
  /**
   * Whether a blob the index lacks, or a pack that is gone, makes a read refresh the index once
   * and try again (default true). Off for an index that is not the repository's whole index
   * (check's tolerant load, a repack's target).
   */
  refreshOnMiss?: boolean;
}

/** Options of {@link IndexedRepository.blobWriter}. */
export interface BlobWriterOptions extends CallOptions {
  /**
   * Compression of data blobs in a v2 repository (default `'auto'`); trees are always compressed in
   * v2, nothing is in v1.
   */
  compression?: CompressionMode;
  /** Target pack size in bytes (restic: 16 MiB). */
  packSize?: number;
  /**
   * Data packs held in memory at once: the two being filled (blobs go into either at random) plus those being
   * stored (default: the backend's connections + 2). Fewer bound memory at the cost of waiting for
   * storage; with two, a full pack is stored before the next blob of its slot can start a new one.
   */
  packBuffers?: number;
  /** Called after each pack is stored. */
  onPack?: (packId: PackId, blobs: readonly PackedBlob[], size: number) => void;
  /**
   * Nothing is stored before this settles (e.g. while the repository lock is being taken);
   * if it rejects, so does every store. Blobs are packed meanwhile.
   */
  ready?: Promise<unknown>;
  /**
   * Pack, count and hash as usual but store nothing: no pack, no index file, nothing added to the
   * in-memory index (backup --dry-run). `stats` tell what would have been added.
   */
  dryRun?: boolean;
  /**
   * Where data packs are written as they are built, when the backend stores local files without
   * reading them into memory (the local backend links or copies them; see `Backend.saveFile`):
   * default `os.tmpdir()` (restic writes its packs to temporary files too). Each blob goes to the
   * pack's file as it is added, so no data pack is held in memory (`packBuffers` is then unused);
   * a file is removed once its pack is stored. A process killed meanwhile leaves its
   * `stowage-pack-<pid>-…` files behind: the next BlobWriter with the same folder removes those
   * whose process is gone (see `temp-packs.ts`). `false` builds packs in memory, as for other backends. A
   * folder where no file can be made turns this off for the rest of the run.
   */
  tempDir?: string | false;
}

/**
 * A repository with its index loaded (from {@link Repository.loadIndex}): what blob reads and
 * writes need. `backup`, `restore`, `checkRepository` with data, `prune` and `copy` take this form.
 */
export class IndexedRepository {
  /** The repository itself (keys, unpacked files). */
  readonly repo: Repository;
  /** Every blob's pack, offset and length, from all index files. */
  readonly index: MasterIndex;
  /** Index file ID → the packs it lists (as loaded, refreshed, or written by this process). */
  readonly indexFiles: Map<string, PackId[]>;
  #snapshots: Set<string> | undefined;
  readonly #refreshOnMiss: boolean;
  /** The refresh under way; concurrent callers share it. */
  #refreshing: Promise<RefreshResult> | undefined;
  /** Counts finished refreshes: a read that missed refreshes only if none finished since its lookup. */
  #generation = 0;
  /** How to stop each auto-refresh interval that runs. */
  readonly #autoRefreshStops = new Set<() => void>();

  /**
   * Made by {@link Repository.loadIndex}; constructing one directly is for index loads of one's
   * own (check's tolerant load).
   */
  constructor(repo: Repository, index: MasterIndex, indexFiles: Map<string, PackId[]>, options: IndexedRepositoryOptions = {}) {
    this.repo = repo;
    this.index = index;
    this.indexFiles = indexFiles;
    this.#snapshots = options.snapshots ? new Set(options.snapshots) : undefined;
    this.#refreshOnMiss = options.refreshOnMiss ?? true;
  }

  /**
   * Brings the index in memory up to date with the repository, as other clients (restic, another
   * Stowage) change it: lists `index/` and `snapshots/`, loads only the index files that are new,
   * and drops the packs of index files that are gone (unless another index file still lists
   * them), rebuilding the compact tables from memory. With nothing changed it costs the two LIST
   * requests and no other. Concurrent calls share one refresh. Reads see the index before or
   * after a refresh, never in between.
   *
   * Reads call it themselves when the index lacks a blob or a pack has gone (see
   * {@link IndexedRepository.loadBlob}); call it (or {@link IndexedRepository.startAutoRefresh})
   * to see new snapshots' blobs before they are read, e.g. before {@link MasterIndex} counts.
   *
   * @throws IntegrityError when a new index file is damaged (the index in memory is left as it was).
   * @throws AbortedError when `signal` aborts (the index in memory is left as it was).
   *
   * @example
   * ```ts
   * const indexed = await repo.loadIndex();
   * // … later, after restic backed up into the same repository:
   * const { added, removed, snapshotsChanged } = await indexed.refresh();
   * ```
   */
  refresh(options: CallOptions = {}): Promise<RefreshResult> {
    if (options.signal?.aborted) return Promise.reject(new AbortedError('refresh aborted', { reason: options.signal.reason }));
    // One refresh serves every caller meanwhile, so it must not stop because one of them does:
    // it runs to its end (close() waits for it, so no request outlives the repository), and each
    // caller waits under its own signal.
    this.#refreshing ??= this.#refresh({}).finally(() => {
      this.#refreshing = undefined;
    });
    return raceAbort(this.#refreshing, options.signal, 'refresh aborted');
  }

  async #refresh(options: CallOptions): Promise<RefreshResult> {
    const started = performance.now();
    const signal = options.signal;
    const [ids, snapshots] = (await this.repo.refreshListings(['index', 'snapshots'], { signal })) as [string[], string[]];
    const listed = new Set(ids);
    const added = ids.filter((id) => !this.indexFiles.has(id)).sort();
    const removed = [...this.indexFiles.keys()].filter((id) => !listed.has(id)).sort();
    const loaded = new Map<string, IndexPack[]>();
    await mapLimit(added, Math.max(2, this.backend.connections), async (id) => {
      loaded.set(id, await readIndexFile(this.repo, id, { signal }));
    });
    // Their tree packs are read whole and cached, as those of the load.
    const cache = this.repo.cache;
    if (cache) for (const packs of loaded.values()) for (const p of packs) if (p.blobs.some((b) => b.type === 'tree')) cache.addTreePack(p.id);
    // From here on nothing awaits: readers see the index before or after, never in between.
    const gone = new Set<PackId>();
    for (const id of removed) {
      for (const p of this.indexFiles.get(id) ?? []) gone.add(p);
      this.indexFiles.delete(id);
    }
    for (const id of added) this.indexFiles.set(id, loaded.get(id)!.map((p) => p.id));
    // A prune rewrites the index: a pack of a removed file that a remaining one lists stays.
    if (gone.size > 0) for (const packs of this.indexFiles.values()) for (const p of packs) gone.delete(p);
    const packsRemoved = gone.size > 0 ? this.index.removePacks(gone) : 0;
    // New blobs are staged and found through the index's Map until the next compact (as a
    // backup's are): a refresh costs what it adds, not a rebuild of a large index. Once the
    // staged blobs are many, they are compacted in (a linear rebuild from memory).
    let packsAdded = 0;
    for (const id of added) {
      for (const p of loaded.get(id)!) {
        let pack = p;
        if (this.index.hasPack(p.id)) {
          // Listed already (a pack's ID is its content's hash), usually with all its blobs; but
          // old v1 repositories may have a pack's entries split over index files: add the rest.
          const missing = p.blobs.filter((b) => !this.index.lookup(b.id, b.type).some((l) => l.packId === p.id && l.offset === b.offset));
          if (missing.length === 0) continue;
          pack = { id: p.id, blobs: missing };
        }
        this.index.addPack(pack, true);
        packsAdded++;
      }
    }
    if (this.index.stagedSize > Math.max(STAGED_BEFORE_COMPACT, this.index.size / 8)) this.index.compact();
    const before = this.#snapshots;
    const snapshotsChanged = before === undefined || before.size !== snapshots.length || snapshots.some((id) => !before.has(id));
    this.#snapshots = new Set(snapshots);
    this.#generation++;
    const result: RefreshResult = { added, removed, snapshotsChanged, packsAdded, packsRemoved };
    const fields = { ...result, added: added.length, removed: removed.length, durationMs: Math.round(performance.now() - started) };
    if (added.length || removed.length || snapshotsChanged) this.logger.info('index refreshed', fields);
    else this.logger.debug('index refreshed: nothing changed', fields);
    return result;
  }

  /**
   * Refreshes the index every `intervalMs` (the next one starts `intervalMs` after the last
   * ended, so they never overlap) until the returned function is called, `signal` aborts or the
   * repository is closed. The timer does not keep the process alive. A failed refresh is logged
   * (warn) and given to `onError`; the interval goes on.
   *
   * @throws InvalidInputError for an interval that is not a positive number of milliseconds.
   *
   * @example
   * ```ts
   * const stop = indexed.startAutoRefresh(60_000, { onRefresh: (r) => r.snapshotsChanged && reload() });
   * // … stop() (or indexed.close()) ends it.
   * ```
   */
  startAutoRefresh(intervalMs: number, options: AutoRefreshOptions = {}): () => void {
    if (!(Number.isFinite(intervalMs) && intervalMs > 0)) throw new InvalidInputError(`invalid refresh interval ${intervalMs} ms`);
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      if (controller.signal.aborted) return;
      controller.abort(new AbortedError('auto-refresh stopped'));
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', stop);
      this.#autoRefreshStops.delete(stop);
    };
    const tick = async () => {
      timer = undefined;
      try {
        const result = await this.refresh({ signal: controller.signal });
        if (!controller.signal.aborted) options.onRefresh?.(result);
      } catch (e) {
        if (controller.signal.aborted || this.repo.closed) return;
        this.logger.warn('index refresh failed', { error: e instanceof Error ? e.message : String(e) });
        options.onError?.(e);
      }
      if (!controller.signal.aborted && !this.repo.closed) schedule();
    };
    const schedule = () => {
      timer = setTimeout(() => void tick(), intervalMs);
      timer.unref();
    };
    if (options.signal?.aborted) return stop;
    options.signal?.addEventListener('abort', stop, { once: true });
    this.#autoRefreshStops.add(stop);
    schedule();
    return stop;
  }

  /**
   * After a read found the index lacking (a blob, or a pack gone): refreshes, unless a refresh
   * finished since the read looked (generation `seen`); then the read looks again.
   */
  async #refreshAfterMiss(seen: number, options: CallOptions): Promise<void> {
    if (this.#generation !== seen) return;
    this.logger.debug('index lacks a blob or a pack is gone: refreshing');
    await this.refresh({ signal: options.signal });
  }

  /**
   * Runs `attempt`; when it throws `NotFoundError` (or {@link BlobNotFoundError}) and this index
   * refreshes on a miss, refreshes the index once (unless a refresh finished since `attempt`
   * started) and runs `attempt` again, whose error is then the one thrown. For operations that
   * look blobs up themselves (a restore's plan).
   */
  async retryAfterRefresh<T>(attempt: () => T | Promise<T>, options: CallOptions = {}): Promise<T> {
    const seen = this.#generation;
    try {
      return await attempt();
    } catch (e) {
      if (!this.#refreshOnMiss || !(e instanceof NotFoundError)) throw e;
      await this.#refreshAfterMiss(seen, options);
      return attempt();
    }
  }

  /**
   * Where the blob is stored (every copy the index knows). A blob the index lacks (another
   * client's newer snapshot) makes it refresh the index once, as {@link IndexedRepository.loadBlob}
   * does, and look again. For operations that read packs themselves (copy) or need a blob's size
   * (diff), so that each does what loadBlob does on a miss.
   *
   * @throws BlobNotFoundError when the index lacks the blob, even after a refresh.
   */
  async locateBlob(type: BlobType, id: BlobId, options: CallOptions = {}): Promise<readonly BlobLocation[]> {
    const seen = this.#generation;
    const locations = this.index.lookup(id, type);
    if (locations.length > 0) return locations;
    if (!this.#refreshOnMiss) throw new BlobNotFoundError(type, id);
    await this.#refreshAfterMiss(seen, options);
    const again = this.index.lookup(id, type);
    if (again.length === 0) throw new BlobNotFoundError(type, id, { indexRefreshed: true });
    return again;
  }

  /** The repository's backend. */
  get backend(): Backend {
    return this.repo.backend;
  }
  /** The repository's config. */
  get config(): RepoConfig {
    return this.repo.config;
  }
  /** The repository's logger. */
  get logger(): Logger {
    return this.repo.logger;
  }

  /**
   * Stops every auto-refresh interval, waits for a refresh under way, and closes the repository
   * this index belongs to (see {@link Repository.close}).
   */
  async close(): Promise<void> {
    for (const stop of [...this.#autoRefreshStops]) stop();
    await this.#refreshing?.catch(() => undefined);
    await this.repo.close();
  }

  /** `await using` support: the same as {@link IndexedRepository.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Reads a blob: loads its byte range, verifies the MAC, decompresses, and checks that the
   * plaintext hashes to the ID. Tries every stored copy before failing.
   *
   * A blob the index lacks (another client's newer snapshot) or whose packs are gone (another
   * client's prune) makes it refresh the index once ({@link IndexedRepository.refresh}) and try
   * again; only then does it fail.
   *
   * @throws BlobNotFoundError when the index lacks the blob, even after a refresh.
   * @throws NotFoundError naming the pack file when it is gone and the refreshed index still lists it there.
   * @throws IntegrityError when no stored copy verifies.
   */
  async loadBlob(type: BlobType, id: BlobId, options: CallOptions = {}): Promise<Uint8Array> {
    let refreshed = false;
    for (;;) {
      const seen = this.#generation;
      const locations = this.index.lookup(id, type);
      const retry = !refreshed && this.#refreshOnMiss;
      if (locations.length === 0) {
        if (!retry) throw new BlobNotFoundError(type, id, { indexRefreshed: refreshed });
        await this.#refreshAfterMiss(seen, options);
        refreshed = true;
        continue;
      }
      let last: unknown;
      let packGone = false;
      for (const loc of locations) {
        try {
          const sealed = await this.backend.load({ type: 'data', name: loc.packId }, { ...options, offset: loc.offset, length: loc.length });
          return this.decodeBlob(loc, sealed);
        } catch (e) {
          if (e instanceof AbortedError) throw e;
          if (e instanceof NotFoundError) packGone = true;
          last = e;
        }
      }
      if (packGone && retry) {
        await this.#refreshAfterMiss(seen, options);
        refreshed = true;
        continue;
      }
      throw last;
    }
  }

  /** Verifies and decodes a sealed blob read from its pack. Never returns unverified bytes. */
  decodeBlob(loc: BlobLocation, sealed: Uint8Array): Uint8Array {
    const where = { file: packFile(loc.packId), blob: loc.id };
    if (sealed.length !== loc.length) throw new IntegrityError(`blob is truncated (${sealed.length} of ${loc.length} bytes)`, where);
    let plain = this.repo.open(sealed, where);
    if (loc.uncompressedLength) {
      const compressed = plain;
      plain = decompress(compressed, loc.uncompressedLength, where);
      // Freed now rather than at a garbage collection: V8 lets external memory pile up.
      discard(compressed);
    }
    if (sha256hex(plain) !== loc.id) throw new IntegrityError('blob content does not match its ID (SHA-256)', where);
    return plain;
  }

  /** A writer that packs new blobs, stores packs and then the index files that list them. */
  blobWriter(options: BlobWriterOptions = {}): BlobWriter {
    return new BlobWriter(this, options);
  }
}

interface PendingUpload {
  promise: Promise<void>;
}

/**
 * Packs open at once per blob type, each blob going into one of them at random: restic 0.18's
 * mitigation of chunk-size fingerprinting (restic #5291). Which of a file's consecutive chunks share
 * a pack is then unknowable from outside, so pack sizes do not reveal where a file was chunked.
 */
export const OPEN_PACKS = 2;

/** Room for the blob that takes a data pack past its target size (chunks are at most 8 MiB). */
const PACK_OVERSHOOT = 8 * 1024 * 1024 + 64 * 1024;

/**
 * Packs blobs (data and tree apart), uploads packs with at most `connections` in flight, and
 * writes an index file once its packs are stored — so the index never names a missing pack.
 *
 * Data packs are built in a few buffers that are reused once a pack is stored: one pack being
 * filled plus `connections` being stored — or, when the backend stores local files itself, in
 * temporary files (`tempDir`), each stored from its file once finished. A blob that needs a new pack waits for a free buffer, which is the back-pressure
 * from storage to the readers, and bounds the memory packs take.
 */
export class BlobWriter {
  readonly #repo: IndexedRepository;
  readonly #compression: CompressionMode;
  readonly #packSize: number;
  readonly #maxBuffers: number;
  /** Where data packs are written as they are built; undefined: in memory. */
  #tempDir: string | undefined;
  /** The sweep of files killed processes left in the temporary folder, started with the writer. */
  #sweep: Promise<unknown> = Promise.resolve();
  /** The files of data packs being written to temporary files. */
  readonly #files = new Map<PackWriter, { path: string; fd: number }>();
  readonly #signal: AbortSignal | undefined;
  readonly #onPack: BlobWriterOptions['onPack'];
  readonly #ready: Promise<unknown>;
  readonly #dryRun: boolean;
  /** Compresses trees (and small data) here, keeping its context between blobs. */
  #encoder: ZstdEncoder | undefined;
  /** The open packs of each type ({@link OPEN_PACKS} slots; an empty slot gets a pack when chosen). */
  readonly #packers = new Map<BlobType, Array<PackWriter | undefined>>([['data', []], ['tree', []]]);
  readonly #inRun = new Set<string>();
  readonly #uploads = new Set<PendingUpload>();
  /** Data pack buffers not in use, and how many exist; waiters get the next one released. */
  readonly #freeBuffers: Buffer[] = [];
  #buffers = 0;
  readonly #bufferWaiters: Array<() => void> = [];
  readonly #index: IndexWriter;
  #failure: unknown;
  /**
   * What was written so far: blobs, plaintext and packed bytes added (trees and data, each with
   * its pack header entry, as restic's `data_added` and `data_added_packed`), packs and index files.
   */
  readonly stats = { dataBlobs: 0, treeBlobs: 0, dataAdded: 0, dataAddedPacked: 0, packs: 0, indexFiles: 0 };
  /** IDs of the index files written so far. */
  readonly writtenIndexFiles: string[] = [];

  constructor(repo: IndexedRepository, options: BlobWriterOptions) {
    this.#repo = repo;
    this.#compression = options.compression ?? 'auto';
    this.#packSize = options.packSize ?? DEFAULT_PACK_SIZE;
    this.#maxBuffers = Math.max(1, options.packBuffers ?? this.#repo.backend.connections + OPEN_PACKS);
    this.#signal = options.signal;
    this.#onPack = options.onPack;
    this.#ready = options.ready ?? Promise.resolve();
    this.#dryRun = options.dryRun === true;
    const tempDir = options.tempDir ?? os.tmpdir();
    this.#tempDir = tempDir !== false && !this.#dryRun && savesFiles(repo.backend) ? tempDir : undefined;
    if (this.#tempDir !== undefined) {
      const dir = this.#tempDir;
      this.#sweep = sweepTempPacks(dir).then((removed) => {
        if (removed.length) repo.logger.debug('removed temporary pack files left behind by processes that ended', { dir, files: removed.length });
      }, () => undefined);
    }
    this.#ready.catch(() => undefined);
    this.#index = new IndexWriter(repo.repo, { signal: options.signal, ready: this.#ready, indexFiles: repo.indexFiles });
  }

  /** The compression mode in use for data blobs. */
  get compression(): CompressionMode {
    return this.#compression;
  }

  /**
   * Blobs of a stored pack are known to the index from now on: `has` finds them there, so the run's
   * set keeps only blobs of packs being filled or stored (one string per blob of a whole backup,
   * ~130 bytes each, was ~20 MiB of live heap at 150 000 new blobs).
   */
  #leaveRun(blobs: readonly PackedBlob[]): void {
    for (const b of blobs) this.#inRun.delete(`${b.type}:${b.id}`);
    // The index finds them through a Map of their IDs until its next compact (as after a refresh):
    // compacted in once many (a linear rebuild from memory), that Map does not grow with the job.
    const index = this.#repo.index;
    if (index.stagedSize > Math.max(STAGED_BEFORE_COMPACT, index.size / 8)) index.compact();
  }

  /** Whether the blob is in the repository or already queued in this run. */
  has(type: BlobType, id: BlobId): boolean {
    // Keyed by type too: a data blob may have the same bytes (and ID) as a tree blob.
    return this.#inRun.has(`${type}:${id}`) || this.#repo.index.has(id, type);
  }

  /** Whether a blob of this type should be compressed under the repository version and mode. */
  shouldCompress(type: BlobType, length: number): boolean {
    if (this.#repo.config.version < 2 || length === 0) return false;
    return type === 'tree' || this.#compression !== 'off';
  }

  /**
   * Hashes, compresses and seals a blob here (trees, small data) and adds it unless known.
   * `stored`: what the pack holds for it (the sealed blob and its header entry), 0 when known.
   */
  async saveBlob(type: BlobType, plain: Uint8Array): Promise<{ id: BlobId; added: boolean; stored: number }> {
    const id = sha256hex(plain) as BlobId;
    if (this.has(type, id)) return { id, added: false, stored: 0 };
    let payload = plain;
    let ulen = 0;
    if (this.shouldCompress(type, plain.length)) {
      this.#encoder ??= new ZstdEncoder(this.#compression === 'off' ? 'auto' : this.#compression);
      payload = this.#encoder.compress(plain);
      ulen = plain.length;
    }
    const sealed = this.#repo.repo.seal(payload);
    const added = await this.addSealed(type, id, sealed, ulen, plain.length);
    return { id, added, stored: added ? sealed.length + entrySize({ uncompressedLength: ulen }) : 0 };
  }

  /**
   * Adds a blob that is already compressed and sealed (by a worker). Returns false when the
   * blob is known. The bytes are copied before this returns (before its first await), so the
   * caller may reuse `sealed` at once. Waits while packs are being stored (back-pressure).
   */
  async addSealed(type: BlobType, id: BlobId, sealed: Uint8Array, uncompressedLength: number, plainLength: number): Promise<boolean> {
    if (this.#failure) throw this.#failure;
    if (this.has(type, id)) return false;
    // A random slot for each blob, from the system's CSPRNG (as restic): see OPEN_PACKS.
    const slots = this.#packers.get(type)!;
    let slot = randomInt(OPEN_PACKS);
    let packer = slots[slot];
    if (!packer && type === 'data') {
      packer = this.#openFilePack();
      if (packer) slots[slot] = packer;
      // With no more buffers than open packs, a new pack could never get one: use an open one.
      else if (slots.filter(Boolean).length >= this.#maxBuffers) packer = slots[(slot = slots.findIndex(Boolean))];
    }
    if (!packer && type === 'data' && this.#freeBuffers.length === 0 && this.#buffers >= this.#maxBuffers) {
      // Every buffer holds a pack being stored: copy the blob out before waiting for one.
      const copy = Buffer.from(sealed);
      await this.#bufferReleased();
      return this.addSealed(type, id, copy, uncompressedLength, plainLength);
    }
    if (!packer) {
      packer = type === 'data'
        ? new PackWriter(this.#repo.repo.masterKeyForWorkers(), type, this.#packSize + PACK_OVERSHOOT, this.#takeBuffer())
        : new PackWriter(this.#repo.repo.masterKeyForWorkers(), type, 1 << 20);
      slots[slot] = packer;
      // Blobs waiting for a buffer can go into this pack now.
      if (type === 'data') this.#wakeWaiters();
    }
    this.#inRun.add(`${type}:${id}`);
    packer.add(id, sealed, uncompressedLength);
    // As restic ≥ 0.17 counts them: trees as well as data, the plaintext added and what the
    // pack holds for it (the sealed blob and its header entry, 37 bytes, 41 when compressed).
    if (type === 'data') this.stats.dataBlobs++;
    else this.stats.treeBlobs++;
    this.stats.dataAdded += plainLength;
    this.stats.dataAddedPacked += sealed.length + entrySize({ uncompressedLength });
    if (packer.size >= this.#packSize || packer.headerFull) {
      slots[slot] = undefined;
      await this.#upload(packer);
    }
    return true;
  }

  /** A free data pack buffer, or a new one (the caller has checked that one may be made). */
  #takeBuffer(): Buffer {
    const free = this.#freeBuffers.pop();
    if (free) return free;
    this.#buffers++;
    return Buffer.allocUnsafeSlow(this.#packSize + PACK_OVERSHOOT);
  }

  #releaseBuffer(buf: Buffer | undefined): void {
    if (buf && buf.length >= this.#packSize + PACK_OVERSHOOT) this.#freeBuffers.push(buf);
    else this.#buffers--;
    this.#wakeWaiters();
  }

  /**
   * Every waiter looks again: one woken alone might find a pack to add to instead and leave the
   * free buffer to nobody, while the others wait for a release that never comes.
   */
  #wakeWaiters(): void {
    for (const wake of this.#bufferWaiters.splice(0)) wake();
  }

  #bufferReleased(): Promise<void> {
    return new Promise((resolve) => this.#bufferWaiters.push(resolve));
  }

  async #upload(packer: PackWriter): Promise<void> {
    while (this.#uploads.size >= Math.max(1, this.#repo.backend.connections)) {
      await Promise.race([...this.#uploads].map((u) => u.promise));
    }
    if (this.#failure) {
      this.#drop(packer);
      throw this.#failure;
    }
    const file = this.#files.get(packer);
    if (file) return this.#uploadFile(packer, file);
    const finished = packer.finish();
    const { id, blobs } = finished;
    // Handed on as a plain Uint8Array: a backend that keeps data.slice() must get a copy, and
    // Buffer's slice() is a view of this buffer, which is reused for the next pack.
    const bytes = new Uint8Array(finished.bytes.buffer, finished.bytes.byteOffset, finished.bytes.length);
    const reusable = packer.blobType === 'data' ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.buffer.byteLength - bytes.byteOffset) : undefined;
    if (this.#dryRun) {
      // Nothing leaves the process; the buffer is free again at once.
      this.stats.packs++;
      if (packer.blobType === 'data') this.#releaseBuffer(reusable);
      return;
    }
    if (packer.blobType === 'tree') this.#repo.repo.cache?.addTreePack(id);
    const entry: PendingUpload = { promise: Promise.resolve() };
    entry.promise = (async () => {
      let stored = false;
      try {
        await this.#ready;
        await this.#repo.backend.save({ type: 'data', name: id }, bytes, { signal: this.#signal });
        stored = true;
        // Only now may the index mention these blobs.
        this.#repo.index.addPack({ id, blobs });
        this.#index.add({ id, blobs });
        this.#leaveRun(blobs);
        this.stats.packs++;
        this.#onPack?.(id, blobs, bytes.length);
      } catch (e) {
        this.#failure ??= e;
      } finally {
        this.#uploads.delete(entry);
        // A backend may still hold the bytes of a failed save (a retry in flight): not reused.
        if (packer.blobType === 'data') this.#releaseBuffer(stored ? reusable : undefined);
      }
    })();
    this.#uploads.add(entry);
    if (this.#index.full) await this.#writeIndex();
  }

  /** Finishes a data pack written to a temporary file and stores it from there; the file is removed after. */
  async #uploadFile(packer: PackWriter, file: { path: string; fd: number }): Promise<void> {
    this.#files.delete(packer);
    let finished: ReturnType<PackWriter['finishFile']>;
    try {
      finished = packer.finishFile();
    } catch (err) {
      closeQuietly(file.fd);
      await unlink(file.path).catch(() => undefined);
      throw err;
    }
    closeSync(file.fd);
    const { id, blobs, size } = finished;
    const local: LocalFile = { path: file.path, size };
    const entry: PendingUpload = { promise: Promise.resolve() };
    entry.promise = (async () => {
      try {
        await this.#ready;
        await saveFromFile(this.#repo.backend, { type: 'data', name: id }, local, { signal: this.#signal });
        // Only now may the index mention these blobs.
        this.#repo.index.addPack({ id, blobs });
        this.#index.add({ id, blobs });
        this.#leaveRun(blobs);
        this.stats.packs++;
        this.#onPack?.(id, blobs, size);
      } catch (e) {
        this.#failure ??= e;
      } finally {
        this.#uploads.delete(entry);
        await unlink(local.path).catch(() => undefined);
      }
    })();
    this.#uploads.add(entry);
    if (this.#index.full) await this.#writeIndex();
  }

  /**
   * A data pack written to a new file in the temporary folder as blobs arrive; undefined when packs
   * are built in memory, or when no file can be made there (the folder is then not tried again).
   */
  #openFilePack(): PackWriter | undefined {
    const dir = this.#tempDir;
    if (dir === undefined) return undefined;
    const path = join(dir, tempPackName());
    let fd: number;
    try {
      fd = openSync(path, 'wx+', 0o600);
    } catch (err) {
      this.#tempDir = undefined;
      this.#repo.logger.debug('data packs are built in memory: no file can be made in the temporary folder', { dir, error: String((err as Error).message ?? err) });
      return undefined;
    }
    const packer = PackWriter.toFile(this.#repo.repo.masterKeyForWorkers(), 'data', fd);
    this.#files.set(packer, { path, fd });
    return packer;
  }

  /** Drops an open pack that will not be stored: its buffer (`buffer`, to reuse) is free again, its file removed. */
  #drop(packer: PackWriter, buffer?: Buffer): void {
    const file = this.#files.get(packer);
    if (file) {
      this.#files.delete(packer);
      closeQuietly(file.fd);
      unlink(file.path).catch(() => undefined);
    } else if (packer.blobType === 'data') this.#releaseBuffer(buffer);
  }

  async #writeIndex(): Promise<void> {
    const id = await this.#index.write();
    if (id === undefined) return;
    this.writtenIndexFiles.push(id);
    this.stats.indexFiles++;
  }

  /** Finishes open packs, waits for every upload, then writes the index for them. */
  async flush(): Promise<void> {
    await this.#sweep;
    for (const slots of this.#packers.values()) {
      // As restic: the open packs are merged while together they stay below the target size, so a
      // small run (one small file split in two chunks) does not store each chunk in a pack of its own.
      const open = slots.splice(0).filter((p): p is PackWriter => p !== undefined);
      let into: PackWriter | undefined;
      for (const p of open) {
        if (p.count === 0) this.#drop(p, p.takeBuffer());
        else if (!into) into = p;
        else if (into.size + p.size < this.#packSize && !into.headerFull) this.#drop(p, into.merge(p));
        else {
          await this.#upload(into);
          into = p;
        }
      }
      if (into) await this.#upload(into);
    }
    while (this.#uploads.size) await Promise.all([...this.#uploads].map((u) => u.promise));
    // Index what did land even when an upload failed, so those packs are not left unreferenced.
    try {
      await this.#writeIndex();
    } catch (err) {
      // The upload's failure is the one to report (the index write fails for the same outage).
      if (!this.#failure) throw err;
      addSuppressed(this.#failure, err);
    }
    if (this.#failure) throw this.#failure;
  }

  /**
   * Ends a run that failed: the open packs are dropped (nothing will refer to their blobs), the
   * uploads in flight are waited for, and the packs that landed get their index file, so the
   * index in memory lists nothing the repository's index files do not (a later run in this
   * process may reuse those blobs). Never throws: the run's own error is the one to report.
   */
  async abandon(): Promise<void> {
    // A straggler of the failed run (a sibling folder still being walked) adds nothing more.
    this.#failure ??= new AbortedError('the run was abandoned after an error');
    for (const slots of this.#packers.values()) {
      for (const p of slots.splice(0)) if (p) this.#drop(p);
    }
    while (this.#uploads.size) await Promise.all([...this.#uploads].map((u) => u.promise));
    await this.#writeIndex().catch(() => undefined);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing to do: the file is being dropped
  }
}

/** A password is a non-empty string; with `insecureNoPassword` (restic ≥ 0.17's flag), exactly ''. */
function requirePassword(p: string, insecureNoPassword = false): void {
  if (typeof p !== 'string') throw new InvalidInputError('the password must be a string');
  if (insecureNoPassword) {
    if (p !== '') throw new InvalidInputError('insecureNoPassword must not be given together with a password');
  } else if (p.length === 0) {
    throw new InvalidInputError('an empty password is not allowed (insecureNoPassword: true opens or makes a repository without one)');
  }
}

/**
 * Either state of a repository. Calls that read blobs accept both and load the index when given a
 * plain `Repository` (pass the `IndexedRepository` to reuse one loaded index across calls); calls
 * that need no index accept an `IndexedRepository` too.
 */
export type AnyRepository = Repository | IndexedRepository;

/** The opened repository behind either state. */
export function baseRepository(r: AnyRepository): Repository {
  return r instanceof IndexedRepository ? r.repo : r;
}

/** The repository in its indexed state: `r` itself, or `r` with its index loaded now. */
export async function withIndex(r: AnyRepository, options: CallOptions = {}): Promise<IndexedRepository> {
  // Only the signal: a caller's options may carry an onProgress of another shape.
  return r instanceof IndexedRepository ? r : r.loadIndex({ signal: options.signal });
}

export function sha256hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export function defaultHostname(): string {
  return os.hostname();
}

export type { AnyId, CompressionMode };
export { StowageError };
