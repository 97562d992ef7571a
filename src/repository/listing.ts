// One listing of snapshots/ and index/ per open (or per refresh), shared by everything that asks:
// the cache's sync, the index load and the command (e.g. "latest", a backup's parent). Each
// sequential LIST costs a round trip; a command used to make two to four of each.
//
// The backend stays the truth: a held listing is the one made at open (or at the first list) or
// at the last renew() (IndexedRepository.refresh, Repository.refreshListings), never older, and
// this process's own saves and removes through it are applied to it. Other types (keys, locks,
// data) pass through: locks must always be current, and keys and data are listed once anyway.
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LocalFile, RemoveOptions } from '../backend/backend.ts';
import { saveFromFile } from '../backend/backend.ts';
import { raceAbort } from '../backend/shared.ts';
import { ForwardingBackend } from '../backend/wrappers/forwarding.ts';
import { AbortedError, NotFoundError } from '../errors.ts';

/** The file types whose listing a {@link ListingBackend} holds. */
export type HeldType = 'snapshots' | 'index';

const HELD: ReadonlySet<FileType> = new Set<FileType>(['snapshots', 'index']);

interface Held {
  /** The backend's listing as it was made. */
  base: Promise<FileInfo[]>;
  /** Files this process saved since (name → size); they are listed even if the base lacks them. */
  added: Map<string, number>;
  /** Files this process removed since. */
  removed: Set<string>;
}

/**
 * A backend that lists `snapshots` and `index` once and answers later listings of those types
 * from what it holds, updated by the saves and removes made through it; {@link renew} lists again.
 * `Repository.open` puts it on top of the stack (above the cache), so `repo.backend.list` of those
 * types costs one request per open or refresh.
 */
export class ListingBackend extends ForwardingBackend {
  readonly #held = new Map<FileType, Held>();
  /** Backend listings made so far, by type (for tests and logs). */
  readonly listings: Partial<Record<HeldType, number>> = {};

  /**
   * `seeds`: listings already under way on the storage below (an open starts them beside the
   * config and key reads, before the cache in front of it exists); held as if made here.
   */
  constructor(inner: Backend, seeds: Partial<Record<HeldType, Promise<FileInfo[]>>> = {}) {
    super(inner);
    for (const [type, base] of Object.entries(seeds) as Array<[HeldType, Promise<FileInfo[]>]>) this.#hold(type, base);
  }

  /**
   * Starts the listings of `types` now, unless held already (e.g. beside the config and key
   * reads of an open); returns them as names once made.
   */
  prefetch(types: readonly HeldType[], options: CallOptions = {}): Promise<string[][]> {
    return Promise.all(types.map((t) => this.#names(t, options)));
  }

  /**
   * Lists `types` on the backend again and holds the new listings (what this process saved or
   * removed before is in them, as the backend has it); returns the names. Calls already waiting
   * on an older listing get the older one.
   */
  renew(types: readonly HeldType[], options: CallOptions = {}): Promise<string[][]> {
    for (const t of types) this.#start(t, options);
    return this.prefetch(types, options);
  }

  /**
   * Lets go of the held listings (those under way too): the next list of a type asks the backend.
   * A lock taken calls this, so what the command reads under the lock is listed after it is held
   * (a prune that ended just before must not be hidden by a listing made before the lock).
   */
  drop(): void {
    this.#held.clear();
  }

  /** Whether a listing of `type` is held (or under way). */
  holds(type: HeldType): boolean {
    return this.#held.has(type);
  }

  #start(type: FileType, options: CallOptions): Held {
    return this.#hold(type, collectFiles(this.inner.list(type, { signal: options.signal })));
  }

  #hold(type: FileType, base: Promise<FileInfo[]>): Held {
    const held: Held = { base, added: new Map(), removed: new Set() };
    this.listings[type as HeldType] = (this.listings[type as HeldType] ?? 0) + 1;
    this.#held.set(type, held);
    // A failed or aborted listing is not held: the next call lists again.
    held.base.catch(() => {
      if (this.#held.get(type) === held) this.#held.delete(type);
    });
    return held;
  }

  async #entries(type: FileType, options: CallOptions): Promise<FileInfo[]> {
    for (;;) {
      const held = this.#held.get(type) ?? this.#start(type, options);
      let base: FileInfo[];
      try {
        base = await raceAbort(held.base, options.signal);
      } catch (e) {
        // Another caller's listing that was aborted: this caller (not aborted) lists again.
        if (e instanceof AbortedError && !options.signal?.aborted && this.#held.get(type) !== held) continue;
        throw e;
      }
      const out: FileInfo[] = [];
      for (const f of base) if (!held.removed.has(f.name) && !held.added.has(f.name)) out.push({ ...f });
      for (const [name, size] of held.added) out.push({ name, size });
      return out;
    }
  }

  async #names(type: HeldType, options: CallOptions): Promise<string[]> {
    return (await this.#entries(type, options)).map((f) => f.name);
  }

  override async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    if (!HELD.has(type)) {
      yield* this.inner.list(type, options);
      return;
    }
    yield* await this.#entries(type, options);
  }

  override async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    await this.inner.save(h, data, options);
    this.#saved(h, data.length);
  }

  override async saveFile(h: FileHandle, file: LocalFile, options: CallOptions = {}): Promise<void> {
    await saveFromFile(this.inner, h, file, options);
    this.#saved(h, file.size);
  }

  #saved(h: FileHandle, size: number): void {
    const held = this.#held.get(h.type);
    if (held) {
      held.removed.delete(h.name);
      held.added.set(h.name, size);
    }
  }

  override async remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    try {
      await this.inner.remove(h, options);
    } catch (e) {
      if (e instanceof NotFoundError) this.#forget(h);
      throw e;
    }
    this.#forget(h);
  }

  #forget(h: FileHandle): void {
    const held = this.#held.get(h.type);
    if (held) {
      held.added.delete(h.name);
      held.removed.add(h.name);
    }
  }
}

/** Every file of a listing, in an array. */
export async function collectFiles(files: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const f of files) out.push(f);
  return out;
}
