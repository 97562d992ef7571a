// The master index: every blob of every index file, merged, in a few typed arrays.
// No per-blob JS objects or hex strings: IDs are raw bytes in one array sorted by ID, with
// parallel arrays for the location. A 65536-entry table of bucket starts (by the first two ID
// bytes) narrows each lookup to a short binary search.
// Blobs added during a backup go to a small overlay (a Map) until `compact()` merges them.
import type { BlobId, BlobType, PackId } from './id.ts';
import type { PackedBlob } from './pack.ts';
import type { IndexPack } from './index-file.ts';

export interface BlobLocation {
  readonly type: BlobType;
  readonly id: BlobId;
  readonly packId: PackId;
  readonly offset: number;
  readonly length: number;
  readonly uncompressedLength: number;
}

const TREE_BIT = 0x80000000;
const PACK_MASK = 0x7fffffff;

function hexToBytes(id: string, out: Uint8Array, at: number): void {
  Buffer.from(out.buffer, out.byteOffset, out.byteLength).write(id, at, 32, 'hex');
}

export class MasterIndex {
  // Packs: number → ID bytes, and the reverse for adding.
  #packIds = new Uint8Array(32 * 1024);
  #packCount = 0;
  readonly #packNumber = new Map<string, number>();

  // Sorted table.
  #ids = new Uint8Array(0);
  #pack = new Uint32Array(0); // pack number | TREE_BIT
  #offset = new Uint32Array(0);
  #length = new Uint32Array(0);
  #ulen = new Uint32Array(0);
  #count = 0;
  readonly #bucket = new Uint32Array(65537);

  // Unsorted entries waiting for compact() (appended by addPack before the table is built).
  #pIds = new Uint8Array(32 * 1024);
  #pPack = new Uint32Array(1024);
  #pOffset = new Uint32Array(1024);
  #pLength = new Uint32Array(1024);
  #pUlen = new Uint32Array(1024);
  #pCount = 0;
  readonly #pending = new Map<string, number[]>(); // hex → pending slots, for lookups before compact()

  get size(): number {
    return this.#count + this.#pCount;
  }
  get packCount(): number {
    return this.#packCount;
  }

  #packNo(id: PackId): number {
    let n = this.#packNumber.get(id);
    if (n !== undefined) return n;
    n = this.#packCount++;
    if (n * 32 + 32 > this.#packIds.length) this.#packIds = grow(this.#packIds, (n + 1) * 64);
    hexToBytes(id, this.#packIds, n * 32);
    this.#packNumber.set(id, n);
    return n;
  }

  packIdOf(n: number): PackId {
    return Buffer.from(this.#packIds.buffer, n * 32, 32).toString('hex') as PackId;
  }

  hasPack(id: PackId): boolean {
    return this.#packNumber.has(id);
  }

  /**
   * Adds all blobs of a pack. Bulk loads (index files) pass `lookupNow = false` and call
   * `compact()` at the end, so no per-blob strings are ever held; blobs a backup adds pass true
   * so they are found (dedup) before the next compact.
   */
  addPack(pack: IndexPack, lookupNow = true): void {
    const p = this.#packNo(pack.id);
    for (const b of pack.blobs) this.#addPending(p, b, lookupNow);
  }

  #addPending(pack: number, b: PackedBlob, lookupNow: boolean): void {
    const i = this.#pCount++;
    if (i >= this.#pPack.length) {
      const n = this.#pPack.length * 2;
      this.#pIds = grow(this.#pIds, n * 32);
      this.#pPack = grow(this.#pPack, n);
      this.#pOffset = grow(this.#pOffset, n);
      this.#pLength = grow(this.#pLength, n);
      this.#pUlen = grow(this.#pUlen, n);
    }
    hexToBytes(b.id, this.#pIds, i * 32);
    this.#pPack[i] = pack | (b.type === 'tree' ? TREE_BIT : 0);
    this.#pOffset[i] = b.offset;
    this.#pLength[i] = b.length;
    this.#pUlen[i] = b.uncompressedLength;
    if (!lookupNow) return;
    const slots = this.#pending.get(b.id);
    if (slots) slots.push(i);
    else this.#pending.set(b.id, [i]);
  }

  /** Merges pending entries into the sorted table (bucket sort by first 2 bytes, then by ID). */
  compact(): void {
    if (this.#pCount === 0) return;
    const n = this.#count + this.#pCount;
    const ids = new Uint8Array(n * 32);
    const pack = new Uint32Array(n);
    const offset = new Uint32Array(n);
    const length = new Uint32Array(n);
    const ulen = new Uint32Array(n);

    // Count per bucket over both sources.
    const counts = new Uint32Array(65537);
    for (let i = 0; i < this.#count; i++) counts[(this.#ids[i * 32]! << 8) | this.#ids[i * 32 + 1]!]!++;
    for (let i = 0; i < this.#pCount; i++) counts[(this.#pIds[i * 32]! << 8) | this.#pIds[i * 32 + 1]!]!++;
    const start = new Uint32Array(65537);
    for (let b = 0, s = 0; b < 65536; b++) {
      start[b] = s;
      s += counts[b]!;
    }
    start[65536] = n;
    const fill = start.slice();
    const put = (srcIds: Uint8Array, i: number, p: number, o: number, l: number, u: number) => {
      const b = (srcIds[i * 32]! << 8) | srcIds[i * 32 + 1]!;
      const j = fill[b]!++;
      ids.set(srcIds.subarray(i * 32, i * 32 + 32), j * 32);
      pack[j] = p; offset[j] = o; length[j] = l; ulen[j] = u;
    };
    for (let i = 0; i < this.#count; i++) put(this.#ids, i, this.#pack[i]!, this.#offset[i]!, this.#length[i]!, this.#ulen[i]!);
    for (let i = 0; i < this.#pCount; i++) put(this.#pIds, i, this.#pPack[i]!, this.#pOffset[i]!, this.#pLength[i]!, this.#pUlen[i]!);

    // Insertion sort inside each bucket (buckets are tiny: n / 65536 entries on average).
    for (let b = 0; b < 65536; b++) {
      const lo = start[b]!;
      const hi = start[b + 1]!;
      for (let i = lo + 1; i < hi; i++) {
        let j = i;
        while (j > lo && compareAt(ids, (j - 1) * 32, ids, j * 32) > 0) {
          swap(ids, pack, offset, length, ulen, j - 1, j);
          j--;
        }
      }
    }

    // restic drops exact duplicates when it merges index files (the same pack listed by two
    // of them); keeping them would list the pack's blobs twice in packs() and break check.
    // Equal IDs are adjacent now, so a duplicate is within its run of equal IDs.
    let w = 0;
    for (let b = 0; b < 65536; b++) {
      const lo = start[b]!;
      const hi = start[b + 1]!;
      start[b] = w;
      for (let i = lo; i < hi; i++) {
        let dup = false;
        for (let k = w - 1; k >= start[b]! && compareAt(ids, k * 32, ids, i * 32) === 0; k--) {
          if (pack[k] === pack[i] && offset[k] === offset[i] && length[k] === length[i] && ulen[k] === ulen[i]) {
            dup = true;
            break;
          }
        }
        if (dup) continue;
        if (w !== i) {
          ids.copyWithin(w * 32, i * 32, i * 32 + 32);
          pack[w] = pack[i]!; offset[w] = offset[i]!; length[w] = length[i]!; ulen[w] = ulen[i]!;
        }
        w++;
      }
    }
    start[65536] = w;

    this.#ids = w === n ? ids : ids.slice(0, w * 32);
    this.#pack = w === n ? pack : pack.slice(0, w);
    this.#offset = w === n ? offset : offset.slice(0, w);
    this.#length = w === n ? length : length.slice(0, w);
    this.#ulen = w === n ? ulen : ulen.slice(0, w);
    this.#count = w;
    this.#bucket.set(start);
    this.#pCount = 0;
    this.#pending.clear();
    // The staging arrays grew to hold everything that was pending; give that memory back.
    this.#pIds = new Uint8Array(32 * 1024);
    this.#pPack = new Uint32Array(1024);
    this.#pOffset = new Uint32Array(1024);
    this.#pLength = new Uint32Array(1024);
    this.#pUlen = new Uint32Array(1024);
  }

  #range(key: Uint8Array): [number, number] {
    const b = (key[0]! << 8) | key[1]!;
    let lo = this.#bucket[b]!;
    let hi = this.#bucket[b + 1]!;
    // lower bound
    let l = lo, h = hi;
    while (l < h) {
      const m = (l + h) >>> 1;
      if (compareAt(this.#ids, m * 32, key, 0) < 0) l = m + 1;
      else h = m;
    }
    lo = l;
    let e = lo;
    while (e < hi && compareAt(this.#ids, e * 32, key, 0) === 0) e++;
    return [lo, e];
  }

  /** All places a blob is stored (usually one). Type is checked when given. */
  lookup(id: BlobId, type?: BlobType): BlobLocation[] {
    const out: BlobLocation[] = [];
    if (this.#count > 0) {
      const key = Buffer.from(id, 'hex');
      const [lo, hi] = this.#range(key);
      for (let i = lo; i < hi; i++) {
        const loc = this.#at(id, this.#pack[i]!, this.#offset[i]!, this.#length[i]!, this.#ulen[i]!);
        if (!type || loc.type === type) out.push(loc);
      }
    }
    const slots = this.#pending.get(id);
    if (slots) {
      for (const i of slots) {
        const loc = this.#at(id, this.#pPack[i]!, this.#pOffset[i]!, this.#pLength[i]!, this.#pUlen[i]!);
        if (!type || loc.type === type) out.push(loc);
      }
    }
    return out;
  }

  has(id: BlobId, type?: BlobType): boolean {
    if (!type) {
      if (this.#pending.has(id)) return true;
      if (this.#count === 0) return false;
      const [lo, hi] = this.#range(Buffer.from(id, 'hex'));
      return hi > lo;
    }
    return this.lookup(id, type).length > 0;
  }

  #at(id: BlobId, p: number, offset: number, length: number, ulen: number): BlobLocation {
    return {
      type: p & TREE_BIT ? 'tree' : 'data',
      id,
      packId: this.packIdOf(p & PACK_MASK),
      offset,
      length,
      uncompressedLength: ulen,
    };
  }

  /** Every entry, grouped by nothing in particular (sorted table first, then pending). */
  *entries(): IterableIterator<BlobLocation> {
    for (let i = 0; i < this.#count; i++) {
      const id = Buffer.from(this.#ids.buffer, i * 32, 32).toString('hex') as BlobId;
      yield this.#at(id, this.#pack[i]!, this.#offset[i]!, this.#length[i]!, this.#ulen[i]!);
    }
    for (let i = 0; i < this.#pCount; i++) {
      const id = Buffer.from(this.#pIds.buffer, i * 32, 32).toString('hex') as BlobId;
      yield this.#at(id, this.#pPack[i]!, this.#pOffset[i]!, this.#pLength[i]!, this.#pUlen[i]!);
    }
  }

  /** Groups every entry by pack (for check, stats and prune). */
  packs(): Map<PackId, PackedBlob[]> {
    const m = new Map<PackId, PackedBlob[]>();
    for (const e of this.entries()) {
      let l = m.get(e.packId);
      if (!l) m.set(e.packId, (l = []));
      l.push({ type: e.type, id: e.id, offset: e.offset, length: e.length, uncompressedLength: e.uncompressedLength });
    }
    for (const l of m.values()) l.sort((a, b) => a.offset - b.offset);
    return m;
  }

  /** Bytes held by the typed arrays (what "bytes per blob" is measured on). */
  memoryBytes(): number {
    return this.#ids.byteLength + this.#pack.byteLength + this.#offset.byteLength + this.#length.byteLength +
      this.#ulen.byteLength + this.#bucket.byteLength + this.#packIds.byteLength +
      this.#pIds.byteLength + this.#pPack.byteLength * 4;
  }
}

function compareAt(a: Uint8Array, ai: number, b: Uint8Array, bi: number): number {
  for (let k = 0; k < 32; k++) {
    const d = a[ai + k]! - b[bi + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

function swap(ids: Uint8Array, p: Uint32Array, o: Uint32Array, l: Uint32Array, u: Uint32Array, i: number, j: number): void {
  for (let k = 0; k < 32; k++) {
    const t = ids[i * 32 + k]!;
    ids[i * 32 + k] = ids[j * 32 + k]!;
    ids[j * 32 + k] = t;
  }
  let t = p[i]!; p[i] = p[j]!; p[j] = t;
  t = o[i]!; o[i] = o[j]!; o[j] = t;
  t = l[i]!; l[i] = l[j]!; l[j] = t;
  t = u[i]!; u[i] = u[j]!; u[j] = t;
}

function grow<T extends Uint8Array | Uint32Array>(a: T, min: number): T {
  const n = Math.max(min, a.length * 2);
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}
