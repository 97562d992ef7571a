// A zstd decompressor that keeps its context from one blob to the next.
//
// zlib.zstdDecompressSync sets up a fresh decompression context for every call; a folder of small
// files read back (restore, serve's archives) is thousands of frames, and making those contexts
// was a third of the decode workers' time. As ZstdEncoder does for compression, this drives the
// native handle of one ZstdDecompress stream (the call zlib's own synchronous path makes), one
// whole frame per call, into a buffer of exactly the plaintext size the index gives. It checks
// itself on first use. Anything unexpected — input left over, output short, the engine failed, an
// unknown Node version — gives undefined and drops the context, and the caller decompresses with a
// fresh one. A frame cut short could leave the context inside a frame that looks complete, so
// callers accept a result only when its SHA-256 matches the blob's ID, and on a mismatch drop the
// context (reset()) and decompress the blob again with a fresh one.
import zlib from 'node:zlib';

interface NativeHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
}

export class ZstdDecoder {
  #engine: zlib.ZstdDecompress | undefined;
  /** false once reuse failed its self test: from then on every call answers undefined. */
  #usable = true;

  /**
   * The plaintext of one whole zstd frame of exactly `length` bytes, in a buffer of its own, or
   * undefined when this context cannot give it (decompress with a fresh context then).
   */
  decompress(input: Uint8Array, length: number): Buffer | undefined {
    if (!this.#usable || length <= 0) return undefined;
    try {
      if (!this.#engine) {
        this.#engine = new zlib.ZstdDecompress();
        // A failed engine destroys itself and emits 'error'; #frame then sees no handle.
        this.#engine.on('error', () => undefined);
        if (!this.#selfTest()) {
          this.#usable = false;
          this.reset();
          return undefined;
        }
      }
      const out = Buffer.allocUnsafeSlow(length);
      return this.#frame(input, out) ? out : undefined;
    } catch {
      this.reset();
      return undefined;
    }
  }

  /** Fills `out` with the frame; false (and the context dropped) unless it fit exactly. */
  #frame(input: Uint8Array, out: Uint8Array): boolean {
    const engine = this.#engine!;
    const handle = (engine as unknown as { _handle?: NativeHandle | null })._handle;
    const state = (engine as unknown as { _writeState?: Uint32Array })._writeState;
    if (!handle || !state) {
      this.#usable = false;
      this.reset();
      return false;
    }
    handle.writeSync(zlib.constants.ZSTD_e_end, input, 0, input.length, out, 0, out.length);
    // All input taken and the output exactly full: the frame (as far as its bytes go) is decoded.
    if ((engine as unknown as { _handle?: NativeHandle | null })._handle && state[1] === 0 && state[0] === 0) return true;
    this.reset();
    return false;
  }

  #selfTest(): boolean {
    const sample = Buffer.from('stowage zstd decoder self test '.repeat(64));
    const frame = zlib.zstdCompressSync(sample);
    for (let i = 0; i < 2; i++) {
      const out = Buffer.allocUnsafe(sample.length);
      if (!this.#frame(frame, out) || !out.equals(sample)) return false;
    }
    return true;
  }

  /** Drops the context (the next call makes a new one). */
  reset(): void {
    try {
      this.#engine?.close();
    } catch {
      // already closed
    }
    this.#engine = undefined;
  }
}
