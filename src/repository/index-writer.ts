// Writing index files (index/<id>) in batches, as restic does: packs are collected until a batch
// holds 50,000 blobs, then written as one file. Whoever adds a pack has stored it first, so an
// index file never names a pack that is not there.
import { createHash } from 'node:crypto';
import type { CallOptions } from '../backend/backend.ts';
import { Semaphore } from './concurrency.ts';
import type { PackId } from './id.ts';
import { decodeIndexFile, encodeIndexFile, type IndexPack } from './index-file.ts';
import { throwIfAborted } from '../errors.ts';
import type { Repository } from './repository.ts';

/** restic starts a new index file once the current one holds this many blobs. */
export const INDEX_MAX_BLOBS = 50_000;

/** Options of {@link IndexWriter}. */
export interface IndexWriterOptions extends CallOptions {
  /** Index files stored at once when {@link IndexWriter.write} calls overlap (default 1). */
  connections?: number;
  /** Nothing is stored before this settles; if it rejects, so does every write. */
  ready?: Promise<unknown>;
  /** Each file written is recorded here with its packs (an IndexedRepository's `indexFiles`). */
  indexFiles?: Map<string, PackId[]>;
}

/**
 * Collects stored packs into index files of about {@link INDEX_MAX_BLOBS} blobs. A pack added
 * again with the same blobs (listed by two old index files) is dropped.
 */
export class IndexWriter {
  readonly #repo: Repository;
  readonly #options: IndexWriterOptions;
  readonly #writes: Semaphore;
  readonly #seen = new Set<string>();
  #batch: IndexPack[] = [];
  #blobs = 0;
  /** IDs of the index files written so far, in the order they were stored. */
  readonly written: string[] = [];

  constructor(repo: Repository, options: IndexWriterOptions = {}) {
    this.#repo = repo;
    this.#options = options;
    this.#writes = new Semaphore(Math.max(1, options.connections ?? 1));
    options.ready?.catch(() => undefined);
  }

  /** Packs waiting in the current batch. */
  get pending(): number {
    return this.#batch.length;
  }

  /** Whether the current batch is due to be written (restic: 50,000 blobs or more). */
  get full(): boolean {
    return this.#blobs >= INDEX_MAX_BLOBS;
  }

  /** Adds a stored pack to the current batch; returns false for a duplicate, which is dropped. */
  add(pack: IndexPack): boolean {
    const key = fingerprint(pack);
    if (this.#seen.has(key)) return false;
    this.#seen.add(key);
    this.#batch.push(pack);
    this.#blobs += pack.blobs.length;
    return true;
  }

  /**
   * Writes the current batch as one index file and returns its ID (undefined when the batch is
   * empty). The batch is taken at once, so adding may go on while the file is stored.
   */
  async write(): Promise<string | undefined> {
    if (this.#batch.length === 0) return undefined;
    const packs = this.#batch;
    this.#batch = [];
    this.#blobs = 0;
    return this.#writes.run(async () => {
      await this.#options.ready;
      const id = await this.#repo.saveUnpacked('index', encodeIndexFile(packs), { signal: this.#options.signal });
      this.written.push(id);
      this.#options.indexFiles?.set(id, packs.map((p) => p.id));
      return id;
    });
  }
}

/** The pack's ID and a hash of its blob list: equal exactly when both list the same blobs. */
function fingerprint(pack: IndexPack): string {
  const h = createHash('sha256');
  for (const b of pack.blobs) h.update(`${b.type[0]}${b.id}@${b.offset}+${b.length}/${b.uncompressedLength},`);
  return `${pack.id}:${h.digest('base64')}`;
}

/**
 * Writes the packs the given index files list, minus the `dropped` ones, into new index files
 * (batched as restic does; a pack listed twice is written once) and returns their IDs. Reads one
 * old index file at a time; `indexFiles` (an IndexedRepository's) learns each new file. The old
 * files are left for the caller to delete once this has returned.
 */
export async function rewriteIndexFiles(
  repo: Repository,
  indexFiles: Map<string, PackId[]>,
  obsolete: readonly string[],
  dropped: ReadonlySet<string>,
  options: CallOptions & { onProgress?: (done: number, total: number) => void } = {},
): Promise<string[]> {
  const { signal } = options;
  const writer = new IndexWriter(repo, { signal, indexFiles });
  let done = 0;
  for (const indexId of obsolete) {
    throwIfAborted(signal);
    const content = decodeIndexFile(await repo.loadUnpacked('index', indexId, { signal }), `index/${indexId}`);
    for (const p of content.packs) {
      if (dropped.has(p.id)) continue;
      if (writer.add(p) && writer.full) await writer.write();
    }
    options.onProgress?.(++done, obsolete.length);
  }
  await writer.write();
  return writer.written;
}
