// The memory the server may hold in blobs on their way to clients: every blob a response reads is
// reserved here before it is loaded and given back when its bytes have been handed to the socket
// (or the response ends), so many clients, large files and slow readers cost at most `limit`
// bytes of blob data together, whatever their number.
import { AbortedError } from '../../../errors.ts';

/** A reservation of bytes; `release()` may be called more than once (only the first counts). */
export interface Reservation {
  readonly bytes: number;
  release(): void;
}

export class ByteBudget {
  readonly limit: number;
  #inUse = 0;
  #peak = 0;
  readonly #waiting: Array<{ bytes: number; grant: (r: Reservation) => void; fail: (e: unknown) => void; signal?: AbortSignal; onAbort: () => void }> = [];

  constructor(limit: number) {
    this.limit = Math.max(1, Math.floor(limit));
  }

  /** Bytes reserved now. */
  get inUse(): number {
    return this.#inUse;
  }
  /** The most bytes reserved at once since the start. */
  get peak(): number {
    return this.#peak;
  }

  /** A reservation at once, or undefined when it does not fit (nobody waiting is overtaken). */
  tryAcquire(bytes: number): Reservation | undefined {
    const n = this.#clamp(bytes);
    if (this.#waiting.length > 0 || this.#inUse + n > this.limit) return undefined;
    return this.#grant(n);
  }

  /** Waits (first come, first served) until `bytes` fit; rejects with AbortedError on abort. */
  acquire(bytes: number, signal?: AbortSignal): Promise<Reservation> {
    const now = this.tryAcquire(bytes);
    if (now) return Promise.resolve(now);
    if (signal?.aborted) return Promise.reject(new AbortedError('request ended', { reason: signal.reason }));
    return new Promise((resolve, reject) => {
      const entry = {
        bytes: this.#clamp(bytes),
        grant: resolve,
        fail: reject,
        signal,
        onAbort: () => {
          const i = this.#waiting.indexOf(entry);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(new AbortedError('request ended', { reason: signal?.reason }));
          this.#wake();
        },
      };
      signal?.addEventListener('abort', entry.onAbort, { once: true });
      this.#waiting.push(entry);
    });
  }

  /** A blob larger than the whole budget still fits when nothing else is held. */
  #clamp(bytes: number): number {
    return Math.min(Math.max(0, Math.ceil(bytes)), this.limit);
  }

  #grant(n: number): Reservation {
    this.#inUse += n;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
    let held = true;
    return {
      bytes: n,
      release: () => {
        if (!held) return;
        held = false;
        this.#inUse -= n;
        this.#wake();
      },
    };
  }

  #wake(): void {
    while (this.#waiting.length > 0 && this.#inUse + this.#waiting[0]!.bytes <= this.limit) {
      const w = this.#waiting.shift()!;
      w.signal?.removeEventListener('abort', w.onAbort);
      w.grant(this.#grant(w.bytes));
    }
  }
}
