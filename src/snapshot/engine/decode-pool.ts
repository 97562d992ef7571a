// A pool of decode workers (see decode-worker.ts) for restore, check --read-data and serve's
// archives: the caller
// reads a byte range of a pack and `run` hands it to the least busy worker, resolving with what
// the worker found. The bytes move to the worker without a copy when the caller owns them.
// At most two jobs wait at each worker (one worked on, one next), so a caller that reads ahead
// waits here instead of holding more packs in memory.
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { AbortedError } from '../../errors.ts';
import type { CryptoKey } from '../../repository/crypto.ts';
import type { DecodeBlob, DecodeDone, DecodeInit, DecodeJob } from './decode-worker.ts';

export type { DecodeBlob, DecodeDone, DecodeJob };

/** Largest byte range a caller should hand over at once (any data blob fits: chunks are ≤ 8 MiB). */
export const MAX_JOB_BYTES = 9 * 1024 * 1024;
const JOBS_PER_WORKER = 2;
/**
 * A small young generation: these threads make short-lived garbage at a high rate, and V8 would
 * otherwise grow each one's young generation to tens of megabytes of resident memory.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 2 };

interface WorkerState {
  worker: Worker;
  busy: number;
  jobs: Map<number, { resolve: (d: DecodeDone) => void; reject: (e: unknown) => void }>;
}

export interface DecodePoolOptions {
  key: CryptoKey;
  threads?: number;
}

export interface RunOptions {
  /** The caller gives `bytes` away (it spans its whole ArrayBuffer and nobody else holds it). */
  transfer?: boolean;
  finish?: DecodeJob['finish'];
  /** Hand each verified blob's plaintext back (DecodeDone.plain) instead of writing it. */
  returnPlain?: boolean;
}

// ownedBytes moved beside discard (repack needs it too); re-exported for the engine's users.
export { ownedBytes } from '../../repository/crypto.ts';

const ZEROS = new Uint8Array(64 * 1024);

/**
 * How many bytes at the start of b are zero: what restore --sparse leaves unwritten (a hole in a
 * file already of its full length), as restic's sparse writes skip a blob's all-zero prefix.
 */
export function zeroPrefixLength(b: Uint8Array): number {
  let i = 0;
  // Compared with a zero buffer a block at a time (natively), then the first differing block byte by byte.
  while (i < b.length) {
    const n = Math.min(ZEROS.length, b.length - i);
    if (Buffer.compare(b.subarray(i, i + n), ZEROS.subarray(0, n)) !== 0) break;
    i += n;
  }
  while (i < b.length && b[i] === 0) i++;
  return i;
}

export class DecodePool {
  readonly #workers: WorkerState[] = [];
  readonly #waiters: Array<() => void> = [];
  readonly #ready: Promise<void>;
  #nextJob = 1;
  #failure: unknown;
  #closed = false;

  constructor(opts: DecodePoolOptions) {
    const n = Math.max(1, opts.threads ?? os.availableParallelism());
    const url = new URL(import.meta.url.endsWith('.ts') ? './decode-worker.ts' : './decode-worker.js', import.meta.url);
    const init: DecodeInit = { type: 'init', key: { encrypt: opts.key.encrypt, macK: opts.key.macK, macR: opts.key.macR } };
    const ready: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const worker = new Worker(url, { resourceLimits: WORKER_LIMITS });
      worker.unref();
      const state: WorkerState = { worker, busy: 0, jobs: new Map() };
      ready.push(new Promise((resolve, reject) => {
        worker.once('message', () => {
          worker.on('message', (d: DecodeDone) => {
            const job = state.jobs.get(d.job);
            state.jobs.delete(d.job);
            job?.resolve(d);
          });
          resolve();
        });
        worker.once('error', reject);
      }));
      worker.on('error', (e) => this.#fail(e));
      worker.on('exit', (code) => {
        if (!this.#closed) this.#fail(new Error(`decode worker exited with code ${code}`));
      });
      worker.postMessage(init);
      this.#workers.push(state);
    }
    this.#ready = Promise.all(ready).then(() => undefined);
    this.#ready.catch(() => undefined);
  }

  /** Jobs that can be with the workers at once. */
  get capacity(): number {
    return this.#workers.length * JOBS_PER_WORKER;
  }

  /**
   * Has a worker check the blobs in `bytes` (`at` is the offset in `bytes`), writing them where
   * `writes` says. `file` names the pack in messages. Without `transfer`, the bytes are copied.
   */
  async run(bytes: Uint8Array, file: string, blobs: DecodeBlob[], options: RunOptions = {}): Promise<DecodeDone> {
    await this.#ready;
    const w = await this.#acquire();
    const buffer = options.transfer ? (bytes.buffer as ArrayBuffer) : new Uint8Array(bytes).buffer;
    const job = this.#nextJob++;
    const msg: DecodeJob = { type: 'job', job, bytes: buffer, file, blobs, finish: options.finish, returnPlain: options.returnPlain };
    try {
      return await new Promise<DecodeDone>((resolve, reject) => {
        if (this.#failure) {
          reject(this.#failure);
          return;
        }
        w.jobs.set(job, { resolve, reject });
        w.worker.postMessage(msg, [buffer]);
      });
    } finally {
      w.busy--;
      this.#waiters.shift()?.();
    }
  }

  async #acquire(): Promise<WorkerState> {
    for (;;) {
      if (this.#failure) throw this.#failure;
      let best: WorkerState | undefined;
      for (const w of this.#workers) if (w.busy < JOBS_PER_WORKER && (!best || w.busy < best.busy)) best = w;
      if (best) {
        best.busy++;
        return best;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  #fail(e: unknown): void {
    this.#failure ??= e;
    for (const w of this.#workers) {
      for (const job of w.jobs.values()) job.reject(e);
      w.jobs.clear();
    }
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Stops the workers; jobs still with them (a server closing mid-download) are rejected. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#fail(new AbortedError('the decode workers were stopped'));
    await Promise.all(this.#workers.map((w) => w.worker.terminate()));
  }
}
