// A repository as it was at an instant, read from a storage that keeps old versions of each name
// (B2 file versions, GCS generations, Azure blob versions): the storage driver lists versions and
// reads one by its ID; this file picks, for each name, the newest version at or before the instant.
// Every versioned driver (S3, B2, GCS, Azure) builds its view on this one class.

import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from './backend.ts';
import { InvalidInputError, NotFoundError, ReadOnlyError, throwIfAborted } from '../errors.ts';
import { checkType, fileInfo, listConfig, listedAs, startCall, underPrefix } from './shared.ts';

/** One stored version of a name, as a driver lists it. */
export interface ListedVersion {
  /** The full object name (with the repository prefix). */
  key: string;
  /** The storage's ID of this version (B2 fileId, GCS generation, Azure versionId). */
  versionId: string;
  /** When this version was written (or, for a deletion, when the name was deleted or hidden). */
  lastModified: Date;
  /** Its size in bytes (0 for a deletion). */
  size: number;
  /** True when this entry hides or deletes the name (B2 hide marker, an S3 delete marker). */
  deleted: boolean;
}

/** What a driver gives {@link VersionsAsOfView}: listing versions and reading one. */
export interface VersionSource {
  /** Where the storage is, for messages. */
  readonly location: string;
  /** Requests in flight at once. */
  readonly connections: number;
  /** The repository's folder in the bucket ("" for its root). */
  readonly prefix: string;
  /** The object name of a file. */
  keyOf(h: FileHandle): string;
  /**
   * Every version of every name starting with `keyPrefix`, in any order; when two versions of a
   * name have the same time, the newer is listed first.
   */
  listVersions(keyPrefix: string, signal: AbortSignal | undefined): AsyncIterable<ListedVersion>;
  /** Reads one version of a file (a byte range of it with offset/length). */
  loadVersion(h: FileHandle, versionId: string, options: LoadOptions): Promise<Uint8Array>;
  /** Releases the storage's connections. */
  close(): Promise<void>;
}

/** The parts of a driver a view uses as they are: where it is, its connections, its prefix, close. */
export interface VersionedDriver {
  readonly location: string;
  readonly connections: number;
  readonly prefix: string;
  close(): Promise<void>;
}

/** A {@link VersionSource} from a driver and its three version calls. */
export function versionSource(driver: VersionedDriver, access: Pick<VersionSource, 'keyOf' | 'listVersions' | 'loadVersion'>): VersionSource {
  return { location: driver.location, connections: driver.connections, prefix: driver.prefix, close: () => driver.close(), ...access };
}

/**
 * A repository in a storage with object versions as it was at an instant: each file is its newest
 * version written at or before `asOf`; a file whose newest such entry is a deletion (a hide marker),
 * or that had no version yet, is missing. Read-only: save and remove throw {@link ReadOnlyError},
 * except for lock files, which are kept in this object's memory (commands that lock work; nothing
 * is written).
 */
export class VersionsAsOfView implements Backend {
  readonly location: string;
  readonly connections: number;
  /** The instant the view shows. */
  readonly asOf: Date;
  readonly #source: VersionSource;
  /** Key → the version it resolves to (null: missing at asOf). */
  readonly #resolved = new Map<string, ListedVersion | null>();
  readonly #locks = new Map<string, Uint8Array>();
  readonly #closeSource: boolean;

  /** With `closeBackend`, closing the view closes the storage driver too. */
  constructor(source: VersionSource, asOf: Date, options: { closeBackend?: boolean } = {}) {
    if (!(asOf instanceof Date) || !Number.isFinite(asOf.getTime())) throw new InvalidInputError('asOf must be a valid Date');
    this.#source = source;
    this.#closeSource = options.closeBackend === true;
    this.asOf = new Date(asOf.getTime());
    this.location = `${source.location} (as of ${this.asOf.toISOString()})`;
    this.connections = source.connections;
  }

  async create(): Promise<void> {
    throw new ReadOnlyError(this.#source.location, `the view ${this.location}`);
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    if (h.type !== 'locks') throw new ReadOnlyError(file, `the view ${this.location}`);
    this.#locks.set(h.name, Uint8Array.from(data));
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    if (h.type !== 'locks') throw new ReadOnlyError(file, `the view ${this.location}`);
    if (!this.#locks.delete(h.name)) throw new NotFoundError(file);
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    if (h.type === 'locks') {
      const bytes = this.#locks.get(h.name);
      if (!bytes) throw new NotFoundError(file);
      const start = options.offset ?? 0;
      return bytes.slice(start, options.length === undefined ? undefined : start + options.length);
    }
    const v = await this.#resolve(h, options.signal);
    if (!v) throw new NotFoundError(file);
    return this.#source.loadVersion(h, v.versionId, options);
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    const file = startCall(h, options.signal);
    if (h.type === 'locks') {
      const bytes = this.#locks.get(h.name);
      if (!bytes) throw new NotFoundError(file);
      return fileInfo(h, bytes.length);
    }
    const v = await this.#resolve(h, options.signal);
    if (!v) throw new NotFoundError(file);
    return fileInfo(h, v.size);
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'locks') {
      for (const [name, bytes] of this.#locks) yield { name, size: bytes.length };
      return;
    }
    if (type === 'config') return yield* listConfig(() => this.stat({ type, name: '' }, options));
    const folder = underPrefix(this.#source.prefix, `${type}/`);
    for (const [key, v] of await this.#newestAsOf(folder, options.signal)) {
      this.#resolved.set(key, v);
      if (!v) continue;
      const info = listedAs(type, key.slice(folder.length), v.size);
      if (info) yield info;
    }
  }

  async close(): Promise<void> {
    if (this.#closeSource) await this.#source.close();
  }

  /** The version of a file at asOf (listed once per key, then remembered). */
  async #resolve(h: FileHandle, signal: AbortSignal | undefined): Promise<ListedVersion | null> {
    const key = this.#source.keyOf(h);
    if (this.#resolved.has(key)) return this.#resolved.get(key)!;
    const found = (await this.#newestAsOf(key, signal)).get(key) ?? null;
    this.#resolved.set(key, found);
    return found;
  }

  /** For each key under `keyPrefix`, its newest entry at or before asOf; null when that is a deletion. */
  async #newestAsOf(keyPrefix: string, signal: AbortSignal | undefined): Promise<Map<string, ListedVersion | null>> {
    const limit = this.asOf.getTime();
    const newest = new Map<string, ListedVersion>();
    for await (const v of this.#source.listVersions(keyPrefix, signal)) {
      if (v.lastModified.getTime() > limit) continue;
      const seen = newest.get(v.key);
      // Equal times: the entry listed first (the newer, by the source's promise) wins.
      if (!seen || v.lastModified.getTime() > seen.lastModified.getTime()) newest.set(v.key, v);
    }
    const out = new Map<string, ListedVersion | null>();
    for (const [key, v] of [...newest].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) out.set(key, v.deleted ? null : v);
    return out;
  }
}
