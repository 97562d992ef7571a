// The JSON files and blobs we write (index files, trees) are written piece by piece into one
// growing byte buffer as they are encoded: a tree of 250 000 nodes or an index of 50 000 blobs
// once held every piece as a string, their join, and the bytes at once (three copies).

/** A byte buffer that grows by doubling, written with UTF-8 strings. */
export class JsonBytes {
  #buf: Buffer;
  #length = 0;

  constructor(initial: number) {
    this.#buf = Buffer.allocUnsafe(Math.max(16, initial));
  }

  write(s: string): void {
    // A UTF-8 byte count is at most 3 per UTF-16 unit: when even that fits, no need to count.
    if (this.#length + s.length * 3 > this.#buf.length && this.#length + Buffer.byteLength(s) > this.#buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + s.length * 3));
      this.#buf.copy(next, 0, 0, this.#length);
      this.#buf = next;
    }
    this.#length += this.#buf.write(s, this.#length, 'utf8');
  }

  /** The bytes written, a view of the buffer (for bytes used at once and let go). */
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#length);
  }

  /** The bytes written, copied to their exact length when over a quarter of the room is spare (for bytes that are kept). */
  trimmed(): Uint8Array {
    const used = this.bytes();
    return this.#length < this.#buf.length * 0.75 ? Buffer.from(used) : used;
  }
}
