// Loads tree blobs for a walk (backup's parent trees, restore's trees), several per read.
//
// A walk knows a folder's subtrees as soon as it has decoded the folder, and the trees of one
// snapshot lie together in few packs. `prefetch` reads the subtrees that lie close to each other
// in one request and decodes them as they arrive; `load` takes a prefetched tree or reads it
// alone. Every tree is verified (MAC, hash) exactly as a single loadBlob would.
import { AbortedError } from '../../errors.ts';
import type { IndexedRepository } from '../../repository/repository.ts';
import type { BlobId } from '../../repository/id.ts';
import type { BlobLocation } from '../../repository/master-index.ts';
import type { TreeNode } from '../model/node.ts';
import { decodeTree } from '../model/tree.ts';

/** Unneeded bytes read to bring two trees into one request. */
const MAX_GAP = 64 * 1024;
/** Largest request. */
const MAX_READ = 4 * 1024 * 1024;

export class TreeLoader {
  readonly #repo: IndexedRepository;
  readonly #signal: AbortSignal | undefined;
  readonly #pending = new Map<BlobId, Promise<TreeNode[]>>();

  constructor(repo: IndexedRepository, signal?: AbortSignal) {
    this.#repo = repo;
    this.#signal = signal;
  }

  /** Starts reading these trees (the ones the index knows), grouped into few requests. */
  prefetch(ids: Iterable<BlobId>): void {
    const byPack = new Map<string, BlobLocation[]>();
    for (const id of ids) {
      if (this.#pending.has(id)) continue;
      const loc = this.#repo.index.lookup(id, 'tree')[0];
      if (!loc) continue;
      let list = byPack.get(loc.packId);
      if (!list) byPack.set(loc.packId, (list = []));
      list.push(loc);
    }
    for (const locs of byPack.values()) {
      locs.sort((a, b) => a.offset - b.offset);
      let run: BlobLocation[] = [];
      for (const loc of locs) {
        const first = run[0];
        const last = run[run.length - 1];
        if (first && last && (loc.offset - (last.offset + last.length) > MAX_GAP || loc.offset + loc.length - first.offset > MAX_READ)) {
          this.#read(run);
          run = [];
        }
        if (last && loc.offset < last.offset + last.length) continue; // the same blob twice
        run.push(loc);
      }
      if (run.length) this.#read(run);
    }
  }

  #read(run: BlobLocation[]): void {
    if (run.length === 1) {
      const id = run[0]!.id;
      const tree = this.#alone(id);
      tree.catch(() => undefined); // reported to whoever loads it
      this.#pending.set(id, tree);
      return;
    }
    const first = run[0]!;
    const last = run[run.length - 1]!;
    const bytes = this.#repo.backend.load({ type: 'data', name: first.packId }, { signal: this.#signal, offset: first.offset, length: last.offset + last.length - first.offset });
    bytes.catch(() => undefined);
    for (const loc of run) {
      const tree = bytes.then(
        (b) => decodeTree(this.#repo.decodeBlob(loc, b.subarray(loc.offset - first.offset, loc.offset - first.offset + loc.length)), loc.id),
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

  async #alone(id: BlobId): Promise<TreeNode[]> {
    return decodeTree(await this.#repo.loadBlob('tree', id, { signal: this.#signal }), id);
  }

  /** The tree's nodes: prefetched if it was, else read now. Each prefetched tree is handed out once. */
  load(id: BlobId): Promise<TreeNode[]> {
    const p = this.#pending.get(id);
    if (p) {
      this.#pending.delete(id);
      return p;
    }
    return this.#alone(id);
  }
}
