// A zstd compressor that keeps its context and its output buffer from one call to the next.
//
// zlib.zstdCompressSync sets up a fresh compression context (hash tables of a megabyte or more)
// and fresh output buffers for every call. A backup compresses every chunk, so on the worker
// threads that is a quarter of the compression time and, through the C allocator's caching of
// those freed tables, well over a hundred megabytes of resident memory on a backup of many small
// files. Node has no public API to reuse a context, so this drives the native handle of a
// ZstdCompress stream directly (the calls zlib's own synchronous path makes), one whole frame per
// call. It checks itself on first use, and whatever goes wrong — an unknown Node version, an
// error, output that does not fit — it answers with `compress()` from compression.ts instead.
// The frames have the same level and declare their size as compress()'s do; zstd may tune a
// table size differently, so they can differ by a few bytes.
import zlib from 'node:zlib';
import { compress, type CompressionMode } from './compression.ts';

/** zstd levels of compression.ts (kept equal; a test compares the output of both). */
const LEVEL: Record<CompressionMode, number> = { auto: 3, off: 3, fastest: 1, better: 7, max: 19 };

interface NativeHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
}

export class ZstdEncoder {
  readonly #mode: CompressionMode;
  #engine: zlib.ZstdCompress | undefined;
  #out: Buffer = Buffer.alloc(0);
  /** false once reuse failed: from then on every call goes to compress(). */
  #usable = true;

  constructor(mode: CompressionMode) {
    this.#mode = mode;
  }

  /**
   * One zstd frame of `input` (content size declared, no checksum). The result may be a view of
   * this encoder's buffer, valid until the next call.
   */
  compress(input: Uint8Array): Uint8Array {
    if (this.#usable) {
      try {
        const r = this.#compressReusing(input);
        if (r) return r;
      } catch {
        this.#drop();
      }
    }
    return compress(input, this.#mode);
  }

  #compressReusing(input: Uint8Array): Uint8Array | undefined {
    if (!this.#engine) {
      const engine = new zlib.ZstdCompress({
        params: { [zlib.constants.ZSTD_c_compressionLevel]: LEVEL[this.#mode], [zlib.constants.ZSTD_c_checksumFlag]: 0 },
      });
      // A failed engine destroys itself and emits 'error'; #handle then sees no handle.
      engine.on('error', () => undefined);
      this.#engine = engine;
      if (!this.#selfTest()) {
        this.#usable = false;
        this.#drop();
        return undefined;
      }
    }
    const bound = input.length + (input.length >> 7) + 1024;
    if (this.#out.length < bound) this.#out = Buffer.allocUnsafeSlow(Math.max(bound, 64 * 1024));
    const n = this.#frame(input, this.#out);
    return n < 0 ? undefined : this.#out.subarray(0, n);
  }

  /** Writes one frame into `out`; its length, or −1 when it did not fit or the engine failed. */
  #frame(input: Uint8Array, out: Uint8Array): number {
    const engine = this.#engine!;
    const handle = (engine as unknown as { _handle?: NativeHandle | null })._handle;
    const state = (engine as unknown as { _writeState?: Uint32Array })._writeState;
    if (!handle || !state) {
      this.#usable = false;
      this.#drop();
      return -1;
    }
    handle.writeSync(zlib.constants.ZSTD_e_end, input, 0, input.length, out, 0, out.length);
    if (!(engine as unknown as { _handle?: NativeHandle | null })._handle) {
      this.#drop();
      return -1;
    }
    const availOut = state[0]!;
    const availIn = state[1]!;
    // All input taken and room left over: the frame is complete, and the context is ready for
    // the next one with the same parameters (a reset would also reset the level).
    if (availIn === 0 && availOut > 0) return out.length - availOut;
    // An unfinished frame: this engine is not used again.
    this.#drop();
    return -1;
  }

  /** The native path must give a frame that decodes to its input, as small as compress()'s. */
  #selfTest(): boolean {
    try {
      const sample = Buffer.from('stowage zstd self test '.repeat(64));
      const out = Buffer.allocUnsafe(4096);
      const n = this.#frame(sample, out);
      return n > 0 && n <= compress(sample, this.#mode).length && zlib.zstdDecompressSync(out.subarray(0, n)).equals(sample);
    } catch {
      return false;
    }
  }

  #drop(): void {
    try {
      this.#engine?.close();
    } catch {
      // already closed
    }
    this.#engine = undefined;
  }

  close(): void {
    this.#drop();
  }
}
