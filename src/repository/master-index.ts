// The master index: every blob of every index file, merged, in a few typed arrays and no
// per-blob JS objects or strings. About 39 bytes per blob for a large repository (restic: 56).
//
// After compact() it is two tables that point into each other:
//   records   one per blob location, grouped by pack (in pack-number order), by offset within a
//             pack. A record holds only what cannot be derived: its stored length, its
//             uncompressed length (as a difference from the stored one) and two flags (tree,
//             compressed), each bit-packed at the narrowest width the data allows. Its pack is
//             found from `packStart`; its offset is the end of the record before it in the same
//             pack, so offsets are summed from the nearest anchor: the pack's start (offset 0),
//             a record that does not follow the one before it, or a checkpoint every
//             ANCHOR_EVERY records.
//   ID table  the blob IDs in sorted order, minus their first two bytes (a 65536-entry bucket
//             table by those bytes gives each ID's range), each with its record number.
// Packs are numbered in the order they are first added and keep their number; a permutation
// sorted by pack ID makes `hasPack` a binary search, and packs added since the last compact are
// found through a small hash table keyed by their ID bytes (no strings are kept).
//
// addPack() appends to staging arrays; bulk loads (index files) then call compact() once. Index
// files list each pack once, with its blobs by offset, so the staging arrays are then already in
// record order and compact() turns them into the tables in place, with linear passes (radix sort
// for the IDs). Blobs a backup adds are also put in a Map by ID so they are found before the next
// compact.
import { InvalidInputError, shownValue } from '../errors.ts';
import type { BlobId, BlobType, PackId } from './id.ts';
import type { PackedBlob } from './pack.ts';
import type { IndexPack } from './index-file.ts';

/** Where a blob is stored: its pack, byte range, and plaintext length when compressed. */
export interface BlobLocation {
  /** Data or tree. */
  readonly type: BlobType;
  /** The blob's ID. */
  readonly id: BlobId;
  /** The pack that holds it. */
  readonly packId: PackId;
  /** Byte offset of the sealed blob in the pack. */
  readonly offset: number;
  /** Length of the sealed (encrypted, maybe compressed) blob in the pack. */
  readonly length: number;
  /** Plaintext length of a compressed blob; 0 when stored uncompressed. */
  readonly uncompressedLength: number;
}

const ID_BYTES = 32;
const ID_WORDS = ID_BYTES / 4;
/** The bucket table stands for the first two bytes of every stored ID. */
const TAIL_BYTES = ID_BYTES - 2;
const BUCKETS = 65536;
/** A lookup sums at most this many lengths to find an offset. */
const ANCHOR_EVERY = 64;
// Record flags.
const TREE = 1;
const COMPRESSED = 2;

// ---- bytes ------------------------------------------------------------------------------------

/**
 * Writes a 64-digit hex ID as 32 bytes at `at`; false when it is not one. Buffer's hex decoder
 * stops at the first non-hex character, so a short count is the validity check.
 */
function decodeId(hex: string, out: Buffer, at: number): boolean {
  return hex.length === 64 && out.write(hex, at, ID_BYTES, 'hex') === ID_BYTES;
}

/** Scratch space for the ID being looked up or printed (JS is single-threaded; never held across calls). */
const KEY = Buffer.alloc(ID_BYTES);
const HEX_OUT = Buffer.alloc(ID_BYTES);

function compareBytes(a: Uint8Array, ai: number, b: Uint8Array, bi: number, n: number): number {
  for (let k = 0; k < n; k++) {
    const d = a[ai + k]! - b[bi + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** The last i in [0, hi) with a[i] <= v, for a non-decreasing `a` whose a[0] <= v. */
function lastAtMost(a: Uint32Array, v: number, hi = a.length): number {
  let lo = 0;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (a[m]! <= v) lo = m + 1;
    else hi = m;
  }
  return lo - 1;
}

// ---- sorting IDs -------------------------------------------------------------------------------

/** The first three bytes of the ID at byte `a`, as two 12-bit radix digits. */
function highDigit(ids: Uint8Array, a: number): number {
  return (ids[a]! << 4) | (ids[a + 1]! >>> 4);
}
function lowDigit(ids: Uint8Array, a: number): number {
  return ((ids[a + 1]! & 0xf) << 8) | ids[a + 2]!;
}
const DIGITS = 4096;

/** n IDs in ID order, split where the ID table splits them. */
interface SortedIds {
  /** The first two bytes of each, as a 16-bit number. */
  prefixes: Uint16Array;
  /** The other 30 bytes of each. */
  tails: Uint8Array;
  /** For each position, the number (input position) of the ID there; equal IDs keep their order. */
  order: Uint32Array;
}

/**
 * Sorts n IDs (32 bytes each, in `ids`). An LSD radix sort on the first three bytes as two 12-bit
 * digits: two streaming passes, the first moving each ID as eight 32-bit words, the second
 * splitting it into prefix and tail as it goes. Then the rare runs that share the first three
 * bytes (about n²/2²⁵ pairs of random IDs, plus repeated IDs) are sorted by the rest.
 */
function sortIds(ids: Uint8Array, n: number): SortedIds {
  const lowStart = new Uint32Array(DIGITS + 1);
  const highStart = new Uint32Array(DIGITS + 1);
  for (let i = 0; i < n; i++) {
    lowStart[lowDigit(ids, i * ID_BYTES) + 1]!++;
    highStart[highDigit(ids, i * ID_BYTES) + 1]!++;
  }
  for (let d = 0; d < DIGITS; d++) {
    lowStart[d + 1]! += lowStart[d]!;
    highStart[d + 1]! += highStart[d]!;
  }
  // Pass 1, by the low digit, into `byLow`.
  const words = new Uint32Array(ids.buffer, ids.byteOffset, n * ID_WORDS);
  const byLow = new Uint32Array(n * ID_WORDS);
  const byLowNumber = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const j = lowStart[lowDigit(ids, i * ID_BYTES)]!++;
    for (let w = 0; w < ID_WORDS; w++) byLow[j * ID_WORDS + w] = words[i * ID_WORDS + w]!;
    byLowNumber[j] = i;
  }
  // Pass 2, by the high digit, into prefixes and tails (moved as 16-bit halves).
  const byLowBytes = new Uint8Array(byLow.buffer);
  const byLowHalves = new Uint16Array(byLow.buffer);
  const prefixes = new Uint16Array(n);
  const tailHalves = new Uint16Array((n * TAIL_BYTES) / 2);
  const order = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const a = j * ID_BYTES;
    const k = highStart[highDigit(byLowBytes, a)]!++;
    prefixes[k] = (byLowBytes[a]! << 8) | byLowBytes[a + 1]!;
    for (let h = 0; h < TAIL_BYTES / 2; h++) tailHalves[(k * TAIL_BYTES) / 2 + h] = byLowHalves[a / 2 + 1 + h]!;
    order[k] = byLowNumber[j]!;
  }
  const tails = new Uint8Array(tailHalves.buffer);

  // Runs sharing the first three bytes: insertion sort on the rest (linear for repeated IDs);
  // a long run of distinct IDs (made to share a prefix?) gets an n log n sort instead.
  const held = new Uint8Array(TAIL_BYTES);
  for (let lo = 0; lo < n; ) {
    let hi = lo + 1;
    while (hi < n && prefixes[hi] === prefixes[lo] && tails[hi * TAIL_BYTES] === tails[lo * TAIL_BYTES]) hi++;
    if (hi - lo > RUN_INSERTION_MAX) {
      sortRun(tails, order, lo, hi);
      lo = hi;
      continue;
    }
    for (let i = lo + 1; i < hi; i++) {
      let j = i;
      while (j > lo && compareBytes(tails, (j - 1) * TAIL_BYTES + 1, tails, i * TAIL_BYTES + 1, TAIL_BYTES - 1) > 0) j--;
      if (j === i) continue;
      held.set(tails.subarray(i * TAIL_BYTES, i * TAIL_BYTES + TAIL_BYTES));
      const moved = order[i]!;
      tails.copyWithin((j + 1) * TAIL_BYTES, j * TAIL_BYTES, i * TAIL_BYTES);
      order.copyWithin(j + 1, j, i);
      tails.set(held, j * TAIL_BYTES);
      order[j] = moved;
    }
    lo = hi;
  }
  return { prefixes, tails, order };
}

const RUN_INSERTION_MAX = 64;

/** Sorts tails lo..hi-1 (which share their prefix) and their order entries, stably (n log n). */
function sortRun(tails: Uint8Array, order: Uint32Array, lo: number, hi: number): void {
  const copy = tails.slice(lo * TAIL_BYTES, hi * TAIL_BYTES);
  const numbers = order.slice(lo, hi);
  const byTail = Array.from({ length: hi - lo }, (_, k) => k);
  byTail.sort((a, b) => compareBytes(copy, a * TAIL_BYTES, copy, b * TAIL_BYTES, TAIL_BYTES) || a - b);
  byTail.forEach((k, j) => {
    tails.set(copy.subarray(k * TAIL_BYTES, k * TAIL_BYTES + TAIL_BYTES), (lo + j) * TAIL_BYTES);
    order[lo + j] = numbers[k]!;
  });
}

// ---- bit-packed columns ---------------------------------------------------------------------

/** What one value kept in the overflow list costs, in bits (a u32 position and a u32 value). */
const OVERFLOW_BITS = 64;

/**
 * Unsigned 32-bit integers packed at one bit width chosen from the data. With `overflow`, the
 * width is the cheapest one overall: values that do not fit (rare outliers) are marked with the
 * all-ones value and kept exactly in a sorted side list. Without it, the width fits every value.
 */
class PackedUints {
  readonly #width: number;
  readonly #mask: number;
  readonly #words: Uint32Array;
  readonly #overflowAt: Uint32Array | null;
  readonly #overflowValue: Uint32Array | null;

  constructor(values: Uint32Array | Uint8Array, overflow: boolean) {
    const n = values.length;
    // How many values need b bits, and how many of those are all ones (2^b - 1, the marker at width b).
    const need = new Float64Array(33);
    const allOnes = new Float64Array(33);
    for (let i = 0; i < n; i++) {
      const v = values[i]!;
      const b = 32 - Math.clz32(v);
      need[b]!++;
      if ((v & (v + 1)) === 0) allOnes[b]!++; // v + 1 is a power of two
    }
    let maxBits = 32;
    while (maxBits > 0 && need[maxBits] === 0) maxBits--;
    let width = maxBits;
    if (overflow && maxBits > 0) {
      let best = Infinity;
      for (let w = 1; w <= Math.min(32, maxBits + 1); w++) {
        let spilled = allOnes[w]!;
        for (let b = w + 1; b <= maxBits; b++) spilled += need[b]!;
        const cost = n * w + spilled * OVERFLOW_BITS;
        if (cost < best) {
          best = cost;
          width = w;
        }
      }
    }
    const mask = 2 ** width - 1;
    const words = new Uint32Array(Math.ceil((n * width) / 32));
    let spills = 0;
    if (width > 0) {
      for (let i = 0, bit = 0; i < n; i++, bit += width) {
        let v = values[i]!;
        if (overflow && v >= mask) {
          spills++;
          v = mask;
        }
        const word = Math.floor(bit / 32);
        const shift = bit - word * 32;
        words[word]! |= v << shift;
        if (shift + width > 32) words[word + 1]! |= v >>> (32 - shift);
      }
    }
    this.#width = width;
    this.#mask = mask;
    this.#words = words;
    this.#overflowAt = overflow ? new Uint32Array(spills) : null;
    this.#overflowValue = overflow ? new Uint32Array(spills) : null;
    if (spills > 0) {
      for (let i = 0, k = 0; i < n; i++) {
        if (values[i]! < mask) continue;
        this.#overflowAt![k] = i;
        this.#overflowValue![k++] = values[i]!;
      }
    }
  }

  get(i: number): number {
    const w = this.#width;
    if (w === 0) return 0;
    const bit = i * w;
    const word = Math.floor(bit / 32);
    const shift = bit - word * 32;
    let v = this.#words[word]! >>> shift;
    if (shift + w > 32) v |= this.#words[word + 1]! << (32 - shift);
    v = (v & this.#mask) >>> 0;
    if (v === this.#mask && this.#overflowAt) return this.#overflowValue![lastAtMost(this.#overflowAt, i)]!;
    return v;
  }

  get byteLength(): number {
    return this.#words.byteLength + (this.#overflowAt?.byteLength ?? 0) + (this.#overflowValue?.byteLength ?? 0);
  }
}

// An uncompressed length is stored as its difference from the stored length (small for most
// blobs), zigzag-coded. Both lengths are u32, so the difference modulo 2^32 suffices.
function zigzag(d: number): number {
  return ((d << 1) ^ (d >> 31)) >>> 0;
}
function unzigzag(z: number): number {
  return (z >>> 1) ^ -(z & 1);
}

// ---- the index ------------------------------------------------------------------------------

/** One record while walking the table in pack order (reused between steps). */
interface RecordCursor {
  /** Where the record's ID is in the ID table, and its first two bytes (its bucket). */
  idIndex: number;
  bucket: number;
  pack: number;
  flags: number;
  offset: number;
  length: number;
  uncompressedLength: number;
}

/** Rough heap cost of one Map entry keyed by a 64-character string (for memoryBytes()). */
const MAP_ENTRY_BYTES = 120;

/**
 * Every blob of the repository and where it is stored, merged from all index files and held
 * compactly (IDs as raw bytes), so a repository with millions of blobs fits in memory. Part of an
 * {@link IndexedRepository}.
 */
export class MasterIndex {
  // Packs, numbered in the order they were added: 32 ID bytes per pack. The ones below
  // #indexedPacks (those known at the last compact) are in #packIds, and #packsById lists their
  // numbers sorted by ID; later ones are in #newPackIds, found through #newPackSlots: an
  // open-addressing table of their numbers (-1: empty), hashed by the first ID bytes, which for
  // SHA-256 values are as good as random. It is kept at most half full.
  #packIds: Buffer = Buffer.alloc(0);
  #newPackIds: Buffer = Buffer.alloc(0);
  #packCount = 0;
  #indexedPacks = 0;
  #packsById: Uint32Array = new Uint32Array(0);
  #newPackSlots = new Int32Array(0);

  // Records. Pack p's records are packStart[p] .. packStart[p + 1] - 1 (for p < #indexedPacks).
  #count = 0;
  #packStart = new Uint32Array(1);
  #length = new PackedUints(new Uint32Array(0), true);
  #ulenDelta = new PackedUints(new Uint32Array(0), true);
  #flags = new PackedUints(new Uint32Array(0), false);
  #anchorRecord = new Uint32Array(0);
  #anchorOffset = new Uint32Array(0);

  // The ID table, in ID order.
  readonly #bucket = new Uint32Array(BUCKETS + 1);
  #tails: Uint8Array = new Uint8Array(0);
  #recordOf = new PackedUints(new Uint32Array(0), false);

  // Staged entries, waiting for compact().
  #sCount = 0;
  #sIds: Buffer = Buffer.alloc(0);
  #sPack = new Uint32Array(0);
  #sFlags = new Uint8Array(0);
  #sOffset = new Uint32Array(0);
  #sLength = new Uint32Array(0);
  #sUlen = new Uint32Array(0);
  /** Staged entries added with lookupNow: hex ID → staging slots. */
  readonly #pending = new Map<string, number[]>();

  /** Number of blobs indexed. */
  get size(): number {
    return this.#count + this.#sCount;
  }
  /** Number of packs indexed. */
  get packCount(): number {
    return this.#packCount;
  }
  /** Blobs added since the last compact (held in the staging arrays until then). */
  get stagedSize(): number {
    return this.#sCount;
  }

  // ---- packs ----------------------------------------------------------------------------------

  /** The number of the pack whose ID is in KEY, or -1. */
  #findPack(): number {
    let lo = 0;
    let hi = this.#indexedPacks;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      const p = this.#packsById[m]!;
      const c = compareBytes(this.#packIds, p * ID_BYTES, KEY, 0, ID_BYTES);
      if (c === 0) return p;
      if (c < 0) lo = m + 1;
      else hi = m;
    }
    const slots = this.#newPackSlots;
    if (slots.length === 0) return -1;
    for (let i = KEY.readUInt32LE(0) & (slots.length - 1); ; i = (i + 1) & (slots.length - 1)) {
      const p = slots[i]!;
      if (p < 0) return -1;
      if (compareBytes(this.#newPackIds, (p - this.#indexedPacks) * ID_BYTES, KEY, 0, ID_BYTES) === 0) return p;
    }
  }

  /** Puts pack number p, whose ID is at `at` in #newPackIds, into #newPackSlots. */
  #slotNewPack(p: number, at: number): void {
    const slots = this.#newPackSlots;
    let i = this.#newPackIds.readUInt32LE(at) & (slots.length - 1);
    while (slots[i]! >= 0) i = (i + 1) & (slots.length - 1);
    slots[i] = p;
  }

  #packNo(id: PackId): number {
    if (!decodeId(id, KEY, 0)) throw new InvalidInputError(`invalid pack ID ${shownValue(id)}`);
    const known = this.#findPack();
    if (known >= 0) return known;
    const n = this.#packCount;
    const newCount = n - this.#indexedPacks;
    const at = newCount * ID_BYTES;
    if (at + ID_BYTES > this.#newPackIds.length) {
      this.#newPackIds = resizedBuffer(this.#newPackIds, Math.max(64 * ID_BYTES, 2 * this.#newPackIds.length));
    }
    KEY.copy(this.#newPackIds, at);
    this.#packCount = n + 1;
    if (2 * (newCount + 1) > this.#newPackSlots.length) {
      this.#newPackSlots = new Int32Array(Math.max(256, 2 * this.#newPackSlots.length)).fill(-1); // a power of two
      for (let k = 0; k <= newCount; k++) this.#slotNewPack(this.#indexedPacks + k, k * ID_BYTES);
    } else {
      this.#slotNewPack(n, at);
    }
    return n;
  }

  /** The ID of pack number `n` (0 ≤ n < packCount); throws `InvalidInputError` otherwise. */
  packIdOf(n: number): PackId {
    if (!(n >= 0 && n < this.#packCount)) throw new InvalidInputError(`no pack number ${n} (${this.#packCount} packs)`);
    if (n < this.#indexedPacks) return this.#packIds.toString('hex', n * ID_BYTES, n * ID_BYTES + ID_BYTES) as PackId;
    const at = (n - this.#indexedPacks) * ID_BYTES;
    return this.#newPackIds.toString('hex', at, at + ID_BYTES) as PackId;
  }

  /** Whether the index lists the pack. */
  hasPack(id: PackId): boolean {
    return decodeId(id, KEY, 0) && this.#findPack() >= 0;
  }

  // ---- adding -----------------------------------------------------------------------------------

  /**
   * Adds all blobs of a pack. Bulk loads (index files) pass `lookupNow = false` and call
   * `compact()` at the end, so no per-blob strings are ever held; blobs a backup adds pass true
   * so they are found (dedup) before the next compact.
   */
  addPack(pack: IndexPack, lookupNow = true): void {
    const blobs = pack.blobs;
    const first = this.#sCount;
    this.#reserve(first + blobs.length);
    // The IDs are decoded in one go: far fewer calls into Buffer's hex decoder, which stops at
    // the first non-hex digit, so a short count means some ID is bad.
    let hex = '';
    for (let k = 0; k < blobs.length; k++) {
      const b = blobs[k]!;
      const i = first + k;
      if (typeof b.id !== 'string' || b.id.length !== 64 || !isU32(b.offset) || !isU32(b.length) || !isU32(b.uncompressedLength) ||
        (b.type !== 'data' && b.type !== 'tree')) {
        throw new InvalidInputError(`blob ${shownValue(b.id)} in pack ${pack.id} has an invalid ID, type, offset or length`);
      }
      hex += b.id;
      this.#sFlags[i] = (b.type === 'tree' ? TREE : 0) | (b.uncompressedLength !== 0 ? COMPRESSED : 0);
      this.#sOffset[i] = b.offset;
      this.#sLength[i] = b.length;
      this.#sUlen[i] = b.uncompressedLength;
    }
    if (blobs.length > 0 && this.#sIds.write(hex, first * ID_BYTES, blobs.length * ID_BYTES, 'hex') !== blobs.length * ID_BYTES) {
      const bad = blobs.find((b) => !decodeId(b.id, KEY, 0));
      throw new InvalidInputError(`invalid blob ID ${shownValue(bad?.id)} in pack ${pack.id}`);
    }
    // Only now that every blob is valid does the pack get a number and the blobs count.
    this.#sPack.fill(this.#packNo(pack.id), first, first + blobs.length);
    this.#sCount = first + blobs.length;
    if (lookupNow) {
      for (let k = 0; k < blobs.length; k++) {
        const id = blobs[k]!.id;
        const slots = this.#pending.get(id);
        if (slots) slots.push(first + k);
        else this.#pending.set(id, [first + k]);
      }
    }
  }

  /** Room for n staged entries (doubling, so copies add up to less than the final size). */
  #reserve(n: number): void {
    if (n <= this.#sPack.length) return;
    const cap = Math.max(n, 1024, this.#sPack.length * 2);
    this.#sIds = resizedBuffer(this.#sIds, cap * ID_BYTES);
    this.#sPack = resized(this.#sPack, cap);
    this.#sFlags = resized(this.#sFlags, cap);
    this.#sOffset = resized(this.#sOffset, cap);
    this.#sLength = resized(this.#sLength, cap);
    this.#sUlen = resized(this.#sUlen, cap);
  }

  // ---- compacting -------------------------------------------------------------------------------

  /**
   * Builds the tables from everything added (compacted entries are staged again with the new
   * ones). restic drops exact duplicates when it merges index files (the same pack listed by two
   * of them); so does this, or packs() would list such a pack's blobs twice and break check.
   */
  compact(): void {
    if (this.#sCount === 0 && this.#indexedPacks === this.#packCount) return;
    if (this.#count > 0) this.#restageTable();
    if (!this.#stagedInRecordOrder()) this.#putStagedInRecordOrder();
    this.#rebuild();
  }

  /**
   * Drops every blob of these packs (packs the index does not list are ignored) and returns how
   * many packs were dropped. The tables are rebuilt from memory: the kept records are staged
   * again in record order (packs renumbered in their old order), then built as compact() builds
   * them; nothing is read from the repository. For a refreshed index: another client's prune
   * removed the packs.
   */
  removePacks(ids: Iterable<PackId>): number {
    this.compact();
    const drop = new Uint8Array(this.#packCount);
    let dropped = 0;
    for (const id of ids) {
      if (!decodeId(id, KEY, 0)) continue;
      const p = this.#findPack();
      if (p >= 0 && drop[p] === 0) {
        drop[p] = 1;
        dropped++;
      }
    }
    if (dropped === 0) return 0;
    const kept = this.#packCount - dropped;
    const renumbered = new Uint32Array(this.#packCount);
    const keptIds = Buffer.alloc(kept * ID_BYTES);
    for (let p = 0, k = 0; p < this.#packCount; p++) {
      if (drop[p]) continue;
      renumbered[p] = k;
      this.#packIds.copy(keptIds, k * ID_BYTES, p * ID_BYTES, p * ID_BYTES + ID_BYTES);
      k++;
    }
    this.#reserve(this.#count);
    for (const c of this.#records()) {
      if (drop[c.pack]) continue;
      const i = this.#sCount++;
      this.#idBytesInto(c.idIndex, c.bucket, this.#sIds, i * ID_BYTES);
      this.#sPack[i] = renumbered[c.pack]!;
      this.#sFlags[i] = c.flags;
      this.#sOffset[i] = c.offset;
      this.#sLength[i] = c.length;
      this.#sUlen[i] = c.uncompressedLength;
    }
    this.#count = 0;
    // Every kept pack is "new" to #indexPacks, which sorts them by ID again.
    this.#packIds = Buffer.alloc(0);
    this.#newPackIds = keptIds;
    this.#indexedPacks = 0;
    this.#packCount = kept;
    this.#newPackSlots = new Int32Array(0);
    this.#rebuild();
    return dropped;
  }

  /** Builds the tables from the staging arrays, which are in record order, and empties them. */
  #rebuild(): void {
    this.#buildRecords();
    this.#buildIdTable();
    this.#indexPacks();

    this.#sCount = 0;
    this.#sIds = Buffer.alloc(0);
    this.#sPack = new Uint32Array(0);
    this.#sFlags = new Uint8Array(0);
    this.#sOffset = new Uint32Array(0);
    this.#sLength = new Uint32Array(0);
    this.#sUlen = new Uint32Array(0);
    this.#pending.clear();
  }

  /** Moves the compacted entries back to the staging arrays (after the staged ones). */
  #restageTable(): void {
    this.#reserve(this.#sCount + this.#count);
    for (const c of this.#records()) {
      const i = this.#sCount++;
      this.#idBytesInto(c.idIndex, c.bucket, this.#sIds, i * ID_BYTES);
      this.#sPack[i] = c.pack;
      this.#sFlags[i] = c.flags;
      this.#sOffset[i] = c.offset;
      this.#sLength[i] = c.length;
      this.#sUlen[i] = c.uncompressedLength;
    }
    this.#count = 0;
  }

  /** Whether each pack's entries are together, in pack-number order, by strictly rising offset. */
  #stagedInRecordOrder(): boolean {
    for (let i = 1; i < this.#sCount; i++) {
      const d = this.#sPack[i]! - this.#sPack[i - 1]!;
      if (d < 0 || (d === 0 && this.#sOffset[i]! <= this.#sOffset[i - 1]!)) return false;
    }
    return true;
  }

  /**
   * The general case (a pack met twice, blobs out of offset order): sorts the staged entries by
   * pack number, then offset, and drops exact duplicates.
   */
  #putStagedInRecordOrder(): void {
    const n = this.#sCount;
    const packs = this.#packCount;
    // Counting sort by pack keeps the arrival order inside each pack.
    const start = new Uint32Array(packs + 1);
    for (let i = 0; i < n; i++) start[this.#sPack[i]! + 1]!++;
    for (let p = 0; p < packs; p++) start[p + 1]! += start[p]!;
    const order = new Uint32Array(n);
    const fill = start.slice();
    for (let i = 0; i < n; i++) order[fill[this.#sPack[i]!]!++] = i;

    const offset = this.#sOffset;
    let kept = 0;
    for (let p = 0; p < packs; p++) {
      const lo = start[p]!;
      const hi = start[p + 1]!;
      if (hi - lo > 1) order.set(Array.from(order.subarray(lo, hi)).sort((a, b) => offset[a]! - offset[b]! || a - b), lo);
      const packKept = kept;
      for (let j = lo; j < hi; j++) {
        const s = order[j]!;
        let duplicate = false;
        for (let k = kept - 1; k >= packKept && offset[order[k]!] === offset[s]; k--) {
          if (this.#sameStaged(order[k]!, s)) {
            duplicate = true;
            break;
          }
        }
        if (!duplicate) order[kept++] = s;
      }
    }

    const ids = Buffer.alloc(Math.max(kept, 1) * ID_BYTES);
    for (let r = 0; r < kept; r++) this.#sIds.copy(ids, r * ID_BYTES, order[r]! * ID_BYTES, order[r]! * ID_BYTES + ID_BYTES);
    const pick = <T extends Uint8Array | Uint32Array>(a: T): T => {
      const out = new (a.constructor as new (n: number) => T)(Math.max(kept, 1));
      for (let r = 0; r < kept; r++) out[r] = a[order[r]!]!;
      return out;
    };
    this.#sIds = ids;
    this.#sPack = pick(this.#sPack);
    this.#sFlags = pick(this.#sFlags);
    this.#sOffset = pick(this.#sOffset);
    this.#sLength = pick(this.#sLength);
    this.#sUlen = pick(this.#sUlen);
    this.#sCount = kept;
  }

  #sameStaged(a: number, b: number): boolean {
    return this.#sFlags[a] === this.#sFlags[b] && this.#sLength[a] === this.#sLength[b] && this.#sUlen[a] === this.#sUlen[b] &&
      compareBytes(this.#sIds, a * ID_BYTES, this.#sIds, b * ID_BYTES, ID_BYTES) === 0;
  }

  /** The record columns, from the staging arrays in record order (reusing them as scratch). */
  #buildRecords(): void {
    const m = this.#sCount;
    const packStart = new Uint32Array(this.#packCount + 1);
    let anchorRecord = new Uint32Array(1024);
    let anchorOffset = new Uint32Array(1024);
    let anchors = 0;
    let pack = -1;
    let expected = 0; // where the next record starts if it follows the one before
    let known = 0; // the last record whose offset needs no summing
    for (let r = 0; r < m; r++) {
      const p = this.#sPack[r]!;
      if (p !== pack) {
        for (let q = pack + 1; q <= p; q++) packStart[q] = r;
        pack = p;
        expected = 0;
        known = r;
      }
      const offset = this.#sOffset[r]!;
      if (offset !== expected || r - known >= ANCHOR_EVERY) {
        if (anchors === anchorRecord.length) {
          anchorRecord = resized(anchorRecord, anchors * 2);
          anchorOffset = resized(anchorOffset, anchors * 2);
        }
        anchorRecord[anchors] = r;
        anchorOffset[anchors++] = offset;
        known = r;
      }
      const length = this.#sLength[r]!;
      expected = offset + length;
      const ulen = this.#sUlen[r]!;
      this.#sUlen[r] = ulen === 0 ? 0 : zigzag((ulen - length) | 0);
    }
    for (let q = pack + 1; q <= this.#packCount; q++) packStart[q] = m;
    this.#count = m;
    this.#packStart = packStart;
    this.#length = new PackedUints(this.#sLength.subarray(0, m), true);
    this.#ulenDelta = new PackedUints(this.#sUlen.subarray(0, m), true);
    this.#flags = new PackedUints(this.#sFlags.subarray(0, m), false);
    this.#anchorRecord = anchorRecord.slice(0, anchors);
    this.#anchorOffset = anchorOffset.slice(0, anchors);
  }

  /** The ID table: the staged IDs sorted (record r is staging slot r), their first two bytes dropped. */
  #buildIdTable(): void {
    const m = this.#count;
    const { prefixes, tails, order } = sortIds(this.#sIds, m);
    const bucket = this.#bucket;
    bucket.fill(0);
    for (let j = 0; j < m; j++) bucket[prefixes[j]! + 1]!++;
    for (let b = 0; b < BUCKETS; b++) bucket[b + 1]! += bucket[b]!;
    this.#tails = tails;
    this.#recordOf = new PackedUints(order, false);
  }

  /** Moves the new packs' IDs to #packIds and sorts the pack numbers by pack ID, for hasPack. */
  #indexPacks(): void {
    const n = this.#packCount;
    const known = this.#indexedPacks * ID_BYTES;
    const ids = Buffer.alloc(n * ID_BYTES);
    this.#packIds.copy(ids, 0, 0, known);
    this.#newPackIds.copy(ids, known, 0, n * ID_BYTES - known);
    this.#packIds = ids;
    this.#newPackIds = Buffer.alloc(0);
    this.#packsById = sortIds(ids, n).order;
    this.#indexedPacks = n;
    this.#newPackSlots = new Int32Array(0);
  }

  // ---- reading records ---------------------------------------------------------------------------

  #packOfRecord(r: number): number {
    return lastAtMost(this.#packStart, r, this.#indexedPacks);
  }

  #offsetOf(r: number, pack: number): number {
    const first = this.#packStart[pack]!;
    const a = this.#anchorRecord.length > 0 && this.#anchorRecord[0]! <= r ? lastAtMost(this.#anchorRecord, r) : -1;
    let j = first;
    let offset = 0;
    if (a >= 0 && this.#anchorRecord[a]! >= first) {
      j = this.#anchorRecord[a]!;
      offset = this.#anchorOffset[a]!;
    }
    for (; j < r; j++) offset += this.#length.get(j);
    return offset;
  }

  #uncompressedLength(r: number, flags: number, length: number): number {
    return flags & COMPRESSED ? (length + unzigzag(this.#ulenDelta.get(r))) >>> 0 : 0;
  }

  #location(id: BlobId, r: number, flags: number): BlobLocation {
    const pack = this.#packOfRecord(r);
    const length = this.#length.get(r);
    return {
      type: flags & TREE ? 'tree' : 'data',
      id,
      packId: this.packIdOf(pack),
      offset: this.#offsetOf(r, pack),
      length,
      uncompressedLength: this.#uncompressedLength(r, flags, length),
    };
  }

  #stagedLocation(id: BlobId, i: number): BlobLocation {
    return {
      type: this.#sFlags[i]! & TREE ? 'tree' : 'data',
      id,
      packId: this.packIdOf(this.#sPack[i]!),
      offset: this.#sOffset[i]!,
      length: this.#sLength[i]!,
      uncompressedLength: this.#sUlen[i]!,
    };
  }

  /**
   * The first ID-table entry not below the ID in KEY. IDs are SHA-256 values, spread evenly, so
   * the next two bytes tell about where in its bucket the ID is; a galloping search from there
   * touches a cache line or two where a binary search over the bucket would touch six.
   */
  #lowerBound(): number {
    const b = (KEY[0]! << 8) | KEY[1]!;
    const first = this.#bucket[b]!;
    const end = this.#bucket[b + 1]!;
    const guess = first + Math.floor((((KEY[2]! << 8) | KEY[3]!) * (end - first)) / 65536);
    // Narrow to lo < hi with entry lo below the key (or lo = first - 1) and entry hi not below it (or hi = end).
    let lo: number;
    let hi: number;
    if (guess < end && this.#tailBelowKey(guess)) {
      lo = guess;
      let step = 1;
      hi = lo + step;
      while (hi < end && this.#tailBelowKey(hi)) {
        lo = hi;
        step *= 2;
        hi = lo + step;
      }
      if (hi > end) hi = end;
    } else {
      hi = guess;
      let step = 1;
      lo = hi - step;
      while (lo >= first && !this.#tailBelowKey(lo)) {
        hi = lo;
        step *= 2;
        lo = hi - step;
      }
      if (lo < first) lo = first - 1;
    }
    while (hi - lo > 1) {
      const m = lo + ((hi - lo) >>> 1);
      if (this.#tailBelowKey(m)) lo = m;
      else hi = m;
    }
    return hi;
  }

  #tailBelowKey(i: number): boolean {
    return compareBytes(this.#tails, i * TAIL_BYTES, KEY, 2, TAIL_BYTES) < 0;
  }

  /** The end of the run of ID-table entries equal to the ID in KEY that starts at `from`. */
  #matchEnd(from: number): number {
    const end = this.#bucket[((KEY[0]! << 8) | KEY[1]!) + 1]!;
    let to = from;
    while (to < end && compareBytes(this.#tails, to * TAIL_BYTES, KEY, 2, TAIL_BYTES) === 0) to++;
    return to;
  }

  /** All places a blob is stored (usually one). Type is checked when given. */
  lookup(id: BlobId, type?: BlobType): BlobLocation[] {
    const out: BlobLocation[] = [];
    if (this.#count > 0 && decodeId(id, KEY, 0)) {
      const from = this.#lowerBound();
      const to = this.#matchEnd(from);
      for (let i = from; i < to; i++) {
        const r = this.#recordOf.get(i);
        const flags = this.#flags.get(r);
        if (!type || (flags & TREE ? 'tree' : 'data') === type) out.push(this.#location(id, r, flags));
      }
    }
    const slots = this.#pending.size > 0 ? this.#pending.get(id) : undefined;
    if (slots) {
      for (const i of slots) if (!type || (this.#sFlags[i]! & TREE ? 'tree' : 'data') === type) out.push(this.#stagedLocation(id, i));
    }
    return out;
  }

  /** Whether the index holds the blob (of that type, when given). */
  has(id: BlobId, type?: BlobType): boolean {
    if (this.#count > 0 && decodeId(id, KEY, 0)) {
      const from = this.#lowerBound();
      const to = this.#matchEnd(from);
      for (let i = from; i < to; i++) {
        if (!type || (this.#flags.get(this.#recordOf.get(i)) & TREE ? 'tree' : 'data') === type) return true;
      }
    }
    const slots = this.#pending.size > 0 ? this.#pending.get(id) : undefined;
    return slots !== undefined && slots.some((i) => !type || (this.#sFlags[i]! & TREE ? 'tree' : 'data') === type);
  }

  /** The 32 bytes of the ID at ID-table position i, which is in `bucket`. */
  #idBytesInto(i: number, bucket: number, out: Uint8Array, at: number): void {
    out[at] = bucket >>> 8;
    out[at + 1] = bucket & 0xff;
    for (let k = 0; k < TAIL_BYTES; k++) out[at + 2 + k] = this.#tails[i * TAIL_BYTES + k]!;
  }

  /** Every compacted record in record order, with offsets summed as it goes. */
  *#records(): Generator<RecordCursor> {
    const n = this.#count;
    const idIndexOf = new Uint32Array(n);
    const bucketOf = new Uint16Array(n);
    for (let b = 0; b < BUCKETS; b++) {
      for (let i = this.#bucket[b]!; i < this.#bucket[b + 1]!; i++) {
        const r = this.#recordOf.get(i);
        idIndexOf[r] = i;
        bucketOf[r] = b;
      }
    }
    const c: RecordCursor = { idIndex: 0, bucket: 0, pack: 0, flags: 0, offset: 0, length: 0, uncompressedLength: 0 };
    let a = 0;
    for (let p = 0; p < this.#indexedPacks; p++) {
      let next = 0;
      for (let r = this.#packStart[p]!; r < this.#packStart[p + 1]!; r++) {
        while (a < this.#anchorRecord.length && this.#anchorRecord[a]! < r) a++;
        c.offset = a < this.#anchorRecord.length && this.#anchorRecord[a] === r ? this.#anchorOffset[a]! : next;
        c.idIndex = idIndexOf[r]!;
        c.bucket = bucketOf[r]!;
        c.pack = p;
        c.flags = this.#flags.get(r);
        c.length = this.#length.get(r);
        c.uncompressedLength = this.#uncompressedLength(r, c.flags, c.length);
        next = c.offset + c.length;
        yield c;
      }
    }
  }

  /** Every entry: the compacted ones grouped by pack, then the staged ones. */
  *entries(): IterableIterator<BlobLocation> {
    let pack = -1;
    let packId = '' as PackId; // one string per pack, shared by its entries
    for (const c of this.#records()) {
      if (c.pack !== pack) packId = this.packIdOf((pack = c.pack));
      this.#idBytesInto(c.idIndex, c.bucket, HEX_OUT, 0);
      yield {
        type: c.flags & TREE ? 'tree' : 'data',
        id: HEX_OUT.toString('hex') as BlobId,
        packId,
        offset: c.offset,
        length: c.length,
        uncompressedLength: c.uncompressedLength,
      };
    }
    for (let i = 0; i < this.#sCount; i++) {
      yield this.#stagedLocation(this.#sIds.toString('hex', i * ID_BYTES, i * ID_BYTES + ID_BYTES) as BlobId, i);
    }
  }

  /** Groups every entry by pack (for check, stats and prune), each pack's blobs in offset order. */
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

  /** Bytes the index holds: every typed array, plus an estimate for the entries of its Map. */
  memoryBytes(): number {
    return this.#packIds.byteLength + this.#newPackIds.byteLength + this.#packsById.byteLength + this.#packStart.byteLength +
      this.#length.byteLength + this.#ulenDelta.byteLength + this.#flags.byteLength +
      this.#anchorRecord.byteLength + this.#anchorOffset.byteLength +
      this.#bucket.byteLength + this.#tails.byteLength + this.#recordOf.byteLength +
      this.#sIds.byteLength + this.#sPack.byteLength + this.#sFlags.byteLength + this.#sOffset.byteLength +
      this.#sLength.byteLength + this.#sUlen.byteLength +
      this.#newPackSlots.byteLength + this.#pending.size * MAP_ENTRY_BYTES;
  }
}

function isU32(v: number): boolean {
  return v >>> 0 === v;
}

/** A copy of `a` with room for `n` elements (or its first n). */
function resized<T extends Uint8Array | Uint32Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a.length <= n ? a : a.subarray(0, n));
  return b;
}

function resizedBuffer(a: Buffer, n: number): Buffer {
  const b = Buffer.alloc(n);
  a.copy(b, 0, 0, Math.min(a.length, n));
  return b;
}
