// Loads tree blobs for a walk (backup's parent trees, restore's trees), several per read.
//
// A walk knows a folder's subtrees as soon as it has decoded the folder, and the trees of one
// snapshot lie together in few packs. `prefetch` reads the subtrees that lie close to each other
// in one request and decodes them as they arrive; `load` takes a prefetched tree or reads it
// alone. Every tree is verified (MAC, hash) exactly as a single loadBlob would. What a tree is
// handed out as is the loader's `decode`: its nodes (decodeTree) by default, or its plaintext
// bytes for a walk that reads them node by node (treeNodes), so no TreeNode[] is held.
import { AbortedError } from '../../errors.ts';
import type { IndexedRepository } from '../../repository/repository.ts';
import type { BlobId } from '../../repository/id.ts';
import type { BlobLocation } from '../../repository/master-index.ts';
import { blobBytes, loadPackRead, planPackReads, type PackRead, type PackReadLimits } from '../../repository/pack-reader.ts';
import type { TreeNode } from '../model/node.ts';
import { decodeTree } from '../model/tree.ts';

/** Trees are wanted soon: little read across (64 KiB) to bring two into one request, at most 4 MiB. */
const TREE_READS: PackReadLimits = { maxGap: 64 * 1024, maxSpan: 4 * 1024 * 1024 };

/** A tree's verified plaintext as a walk wants it. */
export type TreeDecode<T> = (plaintext: Uint8Array, id: BlobId) => T;

/** Hands a tree out as its plaintext bytes, for treeNodes. */
export const TREE_BYTES: TreeDecode<Uint8Array> = (plaintext) => plaintext;

export class TreeLoader<T = TreeNode[]> {
  readonly #repo: IndexedRepository;
  readonly #signal: AbortSignal | undefined;
  readonly #decode: TreeDecode<T>;
  readonly #pending = new Map<BlobId, Promise<T>>();

  constructor(repo: IndexedRepository, signal?: AbortSignal, decode?: TreeDecode<T>) {
    this.#repo = repo;
    this.#signal = signal;
    this.#decode = decode ?? (decodeTree as unknown as TreeDecode<T>);
  }

  /** Starts reading these trees (the ones the index knows), grouped into few requests. */
  prefetch(ids: Iterable<BlobId>): void {
    const locations: BlobLocation[] = [];
    for (const id of ids) {
      if (this.#pending.has(id)) continue;
      const loc = this.#repo.index.lookup(id, 'tree')[0];
      if (loc) locations.push(loc);
    }
    for (const read of planPackReads(locations, TREE_READS)) this.#read(read);
  }

  #read(read: PackRead<BlobLocation>): void {
    if (read.blobs.length === 1) {
      const id = read.blobs[0]!.id;
      const tree = this.#alone(id);
      tree.catch(() => undefined); // reported to whoever loads it
      this.#pending.set(id, tree);
      return;
    }
    const bytes = loadPackRead(this.#repo.backend, read, { signal: this.#signal });
    bytes.catch(() => undefined);
    for (const loc of read.blobs) {
      const tree = bytes.then(
        (b) => this.#decode(this.#repo.decodeBlob(loc, blobBytes(read, b, loc)), loc.id),
        (e: unknown) => {
          if (e instanceof AbortedError) throw e;
          return this.#alone(loc.id);
        },
      ).catch((e: unknown) => {
        if (e instanceof AbortedError) throw e;
        // A damaged copy here: loadBlob tries every copy and names what is wrong.
        return this.#alone(loc.id);
      });
      tree.catch(() => undefined); // reported to whoever loads it
      this.#pending.set(loc.id, tree);
    }
  }

  async #alone(id: BlobId): Promise<T> {
    return this.#decode(await this.#repo.loadBlob('tree', id, { signal: this.#signal }), id);
  }

  /** The tree's nodes: prefetched if it was, else read now. Each prefetched tree is handed out once. */
  load(id: BlobId): Promise<T> {
    const p = this.#pending.get(id);
    if (p) {
      this.#pending.delete(id);
      return p;
    }
    return this.#alone(id);
  }
}
