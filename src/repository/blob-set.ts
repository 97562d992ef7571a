// A compact set of blob handles (type + ID) with one byte of value each: the "used blobs" of a
// prune, the blobs a repack still has to copy. Millions of blobs fit in little memory.
import { InvalidInputError } from '../errors.ts';
import type { BlobId, BlobType } from './id.ts';


/**
 * A set of blob handles with one byte of value each, in two typed arrays (open addressing):
 * about 70 bytes per blob instead of a JS string and Set entry. Blob IDs are SHA-256 hashes,
 * so their first bytes are a good hash already.
 */
export class BlobHandleSet {
  #keys: Uint8Array;
  #state: Uint8Array; // 0 empty, 1 data, 2 tree
  #value: Uint8Array;
  #mask: number;
  #size = 0;
  readonly #scratch = Buffer.alloc(32);

  constructor(expected = 0) {
    let cap = 1024;
    while (cap < expected * 2) cap *= 2;
    this.#keys = new Uint8Array(cap * 32);
    this.#state = new Uint8Array(cap);
    this.#value = new Uint8Array(cap);
    this.#mask = cap - 1;
  }

  /** Number of blobs in the set. */
  get size(): number {
    return this.#size;
  }

  /** Adds the handle (value 0) unless present; returns whether it was new. */
  add(type: BlobType, id: string): boolean {
    if (this.#find(type, id) >= 0) return false;
    if ((this.#size + 1) * 10 > this.#state.length * 7) this.#grow();
    this.#insert(type === 'data' ? 1 : 2, this.#scratchFor(id), 0);
    return true;
  }

  /** Whether the set holds the blob. */
  has(type: BlobType, id: string): boolean {
    return this.#find(type, id) >= 0;
  }

  /** The handle's value, or undefined when the handle is not in the set. */
  get(type: BlobType, id: string): number | undefined {
    const i = this.#find(type, id);
    return i < 0 ? undefined : this.#value[i]!;
  }

  /** Sets the value of a handle that is in the set; returns false when it is not. */
  set(type: BlobType, id: string, value: number): boolean {
    const i = this.#find(type, id);
    if (i < 0) return false;
    this.#value[i] = value;
    return true;
  }

  /** Every handle with its value. */
  *entries(): IterableIterator<{ type: BlobType; id: BlobId; value: number }> {
    for (let i = 0; i < this.#state.length; i++) {
      const s = this.#state[i]!;
      if (s === 0) continue;
      yield { type: s === 1 ? 'data' : 'tree', id: Buffer.from(this.#keys.buffer, i * 32, 32).toString('hex') as BlobId, value: this.#value[i]! };
    }
  }

  /** How many handles have this value. */
  countValue(value: number): number {
    let n = 0;
    for (let i = 0; i < this.#state.length; i++) if (this.#state[i] !== 0 && this.#value[i] === value) n++;
    return n;
  }

  /** Bytes held by the arrays. */
  memoryBytes(): number {
    return this.#keys.byteLength + this.#state.byteLength + this.#value.byteLength;
  }

  /** A summary (the blob count) for JSON output, instead of every ID. */
  toJSON(): { blobs: number } {
    return { blobs: this.#size };
  }

  #scratchFor(id: string): Buffer {
    if (this.#scratch.write(id, 0, 32, 'hex') !== 32) throw new InvalidInputError(`invalid blob ID ${JSON.stringify(id).slice(0, 80)}`);
    return this.#scratch;
  }

  #find(type: BlobType, id: string): number {
    const key = this.#scratchFor(id);
    const t = type === 'data' ? 1 : 2;
    const keys = this.#keys;
    for (let i = key.readUInt32LE(0) & this.#mask; ; i = (i + 1) & this.#mask) {
      const s = this.#state[i]!;
      if (s === 0) return -1;
      if (s === t && sameKey(keys, i * 32, key)) return i;
    }
  }

  #insert(t: number, key: Uint8Array, value: number): void {
    let i = (key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24)) >>> 0 & this.#mask;
    while (this.#state[i] !== 0) i = (i + 1) & this.#mask;
    this.#state[i] = t;
    this.#keys.set(key.subarray(0, 32), i * 32);
    this.#value[i] = value;
    this.#size++;
  }

  #grow(): void {
    const keys = this.#keys;
    const state = this.#state;
    const value = this.#value;
    const cap = state.length * 2;
    this.#keys = new Uint8Array(cap * 32);
    this.#state = new Uint8Array(cap);
    this.#value = new Uint8Array(cap);
    this.#mask = cap - 1;
    this.#size = 0;
    for (let i = 0; i < state.length; i++) {
      if (state[i] !== 0) this.#insert(state[i]!, keys.subarray(i * 32, i * 32 + 32), value[i]!);
    }
  }
}

function sameKey(keys: Uint8Array, at: number, key: Uint8Array): boolean {
  for (let k = 0; k < 32; k++) if (keys[at + k] !== key[k]) return false;
  return true;
}
