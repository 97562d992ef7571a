// A pool of file workers (one per core). `process(path, onBlob)` reads, chunks and seals a file
// on a worker; `onBlob` receives each sealed blob in file order, and the worker waits for it to
// finish before it sends more than a few (back-pressure from packing and uploading).
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import type { CryptoKey } from '../repository/crypto.ts';
import type { CompressionMode } from '../repository/compression.ts';
import type { BlobMessage, DoneMessage, WorkerInit } from './file-worker.ts';

export interface SealedChunk {
  id: string;
  sealed: Uint8Array;
  uncompressedLength: number;
  plainLength: number;
}

export interface FileResult {
  size: number;
  error?: { code?: string; message: string };
}

interface Job {
  path: string | Uint8Array;
  onBlob: (b: SealedChunk) => Promise<void>;
  resolve: (r: FileResult) => void;
  reject: (e: unknown) => void;
  chain: Promise<void>;
  failed?: unknown;
}

interface Slot {
  worker: Worker;
  busy: number; // jobs queued on this worker
}

export interface FilePoolOptions {
  key: CryptoKey;
  polynomial: bigint;
  compress: boolean;
  mode: CompressionMode;
  threads?: number;
}

export class FilePool {
  readonly #slots: Slot[] = [];
  readonly #jobs = new Map<number, Job>();
  #nextJob = 1;
  #ready: Promise<void>;
  #closed = false;

  constructor(opts: FilePoolOptions) {
    const n = Math.max(1, opts.threads ?? os.availableParallelism());
    const url = new URL(import.meta.url.endsWith('.ts') ? './file-worker.ts' : './file-worker.js', import.meta.url);
    const init: WorkerInit = {
      type: 'init',
      key: { encrypt: opts.key.encrypt, macK: opts.key.macK, macR: opts.key.macR },
      polynomial: opts.polynomial.toString(16),
      compress: opts.compress,
      mode: opts.mode,
    };
    const ready: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const worker = new Worker(url);
      worker.unref();
      const slot: Slot = { worker, busy: 0 };
      ready.push(new Promise((resolve, reject) => {
        const onReady = (m: { type: string }) => {
          if (m.type === 'ready') {
            worker.off('message', onReady);
            resolve();
          }
        };
        worker.on('message', onReady);
        worker.once('error', reject);
      }));
      worker.on('message', (m: BlobMessage | DoneMessage | { type: 'ready' }) => this.#onMessage(slot, m));
      worker.on('error', (e) => this.#failAll(e));
      worker.postMessage(init);
      this.#slots.push(slot);
    }
    this.#ready = Promise.all(ready).then(() => undefined);
  }

  get threads(): number {
    return this.#slots.length;
  }

  #onMessage(slot: Slot, m: BlobMessage | DoneMessage | { type: 'ready' }): void {
    if (m.type === 'ready') return;
    const job = this.#jobs.get(m.job);
    if (!job) return;
    if (m.type === 'blob') {
      const chunk: SealedChunk = { id: m.id, sealed: new Uint8Array(m.sealed), uncompressedLength: m.uncompressedLength, plainLength: m.plainLength };
      job.chain = job.chain.then(async () => {
        if (job.failed === undefined) {
          try {
            await job.onBlob(chunk);
          } catch (e) {
            job.failed = e;
          }
        }
        slot.worker.postMessage({ type: 'ack' });
      });
    } else {
      void job.chain.then(() => {
        this.#jobs.delete(m.job);
        slot.busy--;
        if (job.failed !== undefined) job.reject(job.failed);
        else job.resolve({ size: m.size, error: m.error });
      });
    }
  }

  #failAll(e: unknown): void {
    for (const [id, job] of this.#jobs) {
      this.#jobs.delete(id);
      job.reject(e);
    }
  }

  /** Reads and seals one file on the least busy worker. */
  async process(path: string | Uint8Array, onBlob: (b: SealedChunk) => Promise<void>): Promise<FileResult> {
    if (this.#closed) throw new Error('file pool is closed');
    await this.#ready;
    const slot = this.#slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.#nextJob++;
    return new Promise<FileResult>((resolve, reject) => {
      this.#jobs.set(id, { path, onBlob, resolve, reject, chain: Promise.resolve() });
      slot.busy++;
      slot.worker.postMessage({ type: 'file', job: id, path });
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}
