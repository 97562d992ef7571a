// A pool of file workers (one per core). `process(file)` queues a file; queued files go to the
// workers in batches (up to BATCH_FILES files or BATCH_BYTES bytes, a big file alone), at most
// two batches per worker at a time, to whichever worker has the least work.
//
// Each worker writes sealed blobs into its ring (see file-worker.ts); this side hands every new
// blob to `sink` (the BlobWriter, which copies it into a pack), in file order, and then tells the
// worker how many blobs it has consumed so it can reuse the ring.
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import type { CryptoKey } from '../../repository/crypto.ts';
import type { CompressionMode } from '../../repository/compression.ts';
import type { BatchDone, BatchFile, BatchJob, BlobsMessage, WorkerInit, WorkerReady } from './file-worker.ts';

/** Receives a sealed blob; the bytes are only valid until the returned promise settles. */
export type BlobSink = (id: string, sealed: Uint8Array, uncompressedLength: number, plainLength: number) => Promise<unknown>;

export interface FileJob {
  path: string | Uint8Array;
  /** Size from lstat, to size batches (the worker reads to the end whatever it is). */
  size?: number;
  /** IDs of blobs the repository has (e.g. the file's previous content): not sealed again. */
  known?: readonly string[];
}

export interface FileResult {
  size: number;
  /** The file's blob IDs, in order. */
  ids: string[];
  error?: { code?: string; message: string };
}

export interface FilePoolOptions {
  key: CryptoKey;
  polynomial: bigint;
  compress: boolean;
  mode: CompressionMode;
  threads?: number;
  sink: BlobSink;
  /** Answers whether the repository has a blob; checked for blobs a worker did not seal. */
  has: (id: string) => boolean;
  /**
   * Bytes of file content chunked so far, reported as the workers' blobs arrive (for progress
   * within big files), with the file being read then (as far as the worker has said) and the
   * worker's number (0 to threads − 1).
   */
  onBytes?: (bytes: number, reading: FileJob | undefined, worker: number) => void;
}

const BATCH_FILES = 64;
/**
 * A small young generation: these threads make short-lived garbage at a high rate, and V8 would
 * otherwise grow each one's young generation to tens of megabytes of resident memory.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 2 };
const BATCH_BYTES = 4 * 1024 * 1024;
/** Batches a worker holds at once: one it works on, one waiting, so it never idles. */
const BATCHES_PER_WORKER = 2;

interface Pending {
  job: FileJob;
  resolve: (r: FileResult) => void;
  reject: (e: unknown) => void;
}

interface Batch {
  id: number;
  files: Pending[];
  bytes: number;
  /** Blob IDs received so far, in order. */
  ids: string[];
  failed?: unknown;
}

interface Slot {
  worker: Worker;
  ring: Uint8Array | undefined;
  consumed: Int32Array;
  consumedCount: number;
  batches: Batch[];
  queuedBytes: number;
  /** Messages are handled one after the other (blobs in order, the ring released in order). */
  chain: Promise<void>;
}

export class FilePool {
  readonly #slots: Slot[] = [];
  readonly #queue: Pending[] = [];
  readonly #sink: BlobSink;
  readonly #has: (id: string) => boolean;
  readonly #onBytes: FilePoolOptions['onBytes'];
  readonly #ready: Promise<void>;
  #nextBatch = 1;
  #pumpScheduled = false;
  #closed = false;
  #failure: unknown;
  readonly #roomWaiters: Array<() => void> = [];

  constructor(opts: FilePoolOptions) {
    this.#sink = opts.sink;
    this.#has = opts.has;
    this.#onBytes = opts.onBytes;
    const n = Math.max(1, opts.threads ?? os.availableParallelism());
    const url = new URL(import.meta.url.endsWith('.ts') ? './file-worker.ts' : './file-worker.js', import.meta.url);
    const ready: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const control = new SharedArrayBuffer(4);
      const init: WorkerInit = {
        type: 'init',
        key: { encrypt: opts.key.encrypt, macK: opts.key.macK, macR: opts.key.macR },
        polynomial: opts.polynomial.toString(16),
        compress: opts.compress,
        mode: opts.mode,
        control,
      };
      const worker = new Worker(url, { resourceLimits: WORKER_LIMITS });
      worker.unref();
      const slot: Slot = { worker, ring: undefined, consumed: new Int32Array(control), consumedCount: 0, batches: [], queuedBytes: 0, chain: Promise.resolve() };
      ready.push(new Promise((resolve, reject) => {
        worker.once('message', (m: WorkerReady) => {
          slot.ring = m.ring;
          resolve();
        });
        worker.once('error', reject);
      }));
      worker.on('error', (e) => this.#fail(e));
      worker.on('exit', (code) => {
        if (!this.#closed) this.#fail(new Error(`file worker exited with code ${code}`));
      });
      worker.postMessage(init);
      this.#slots.push(slot);
    }
    this.#ready = Promise.all(ready).then(() => {
      for (const slot of this.#slots) slot.worker.on('message', (m: BlobsMessage | BatchDone) => this.#onMessage(slot, m));
    });
    this.#ready.catch(() => undefined);
  }

  get threads(): number {
    return this.#slots.length;
  }

  /** Files queued or being read. */
  get pending(): number {
    let n = this.#queue.length;
    for (const s of this.#slots) for (const b of s.batches) n += b.files.length;
    return n;
  }

  /** Resolves once fewer than `limit` files wait, so a caller can pace how much it queues. */
  async room(limit: number): Promise<void> {
    while (this.#queue.length >= limit && !this.#failure && !this.#closed) {
      await new Promise<void>((r) => this.#roomWaiters.push(r));
    }
  }

  /** Reads, chunks and seals one file on a worker. */
  process(job: FileJob): Promise<FileResult> {
    if (this.#closed) return Promise.reject(new Error('file pool is closed'));
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<FileResult>((resolve, reject) => {
      this.#queue.push({ job, resolve, reject });
      if (!this.#pumpScheduled) {
        this.#pumpScheduled = true;
        // Let the caller queue a whole folder first, so it goes out as one batch.
        setImmediate(() => {
          this.#pumpScheduled = false;
          void this.#ready.then(() => this.#pump(), () => undefined);
        });
      }
    });
  }

  #pump(): void {
    while (this.#queue.length > 0 && !this.#failure) {
      let slot: Slot | undefined;
      for (const s of this.#slots) {
        if (s.batches.length >= BATCHES_PER_WORKER) continue;
        if (!slot || s.queuedBytes < slot.queuedBytes) slot = s;
      }
      if (!slot) break;
      const batch: Batch = { id: this.#nextBatch++, files: [], bytes: 0, ids: [] };
      while (this.#queue.length > 0 && batch.files.length < BATCH_FILES) {
        const size = this.#queue[0]!.job.size ?? BATCH_BYTES;
        if (batch.files.length > 0 && batch.bytes + size > BATCH_BYTES) break;
        batch.files.push(this.#queue.shift()!);
        batch.bytes += size;
      }
      slot.batches.push(batch);
      slot.queuedBytes += batch.bytes;
      const files: BatchFile[] = batch.files.map((p) => (p.job.known?.length ? { path: p.job.path, known: p.job.known } : { path: p.job.path }));
      const msg: BatchJob = { type: 'batch', batch: batch.id, files };
      slot.worker.postMessage(msg);
    }
    if (this.#queue.length < BATCH_FILES * this.#slots.length) for (const w of this.#roomWaiters.splice(0)) w();
  }

  #onMessage(slot: Slot, m: BlobsMessage | BatchDone): void {
    slot.chain = slot.chain.then(() => this.#handle(slot, m));
  }

  async #handle(slot: Slot, m: BlobsMessage | BatchDone): Promise<void> {
    const batch = slot.batches[0];
    if (!batch) return;
    const ring = slot.ring!;
    let sealed = 0;
    let plainBytes = 0;
    for (let i = 0; i < m.ids.length; i++) {
      const id = m.ids[i]!;
      const at = m.layout[4 * i]!;
      const length = m.layout[4 * i + 1]!;
      plainBytes += m.layout[4 * i + 3]!;
      batch.ids.push(id);
      if (length === 0) {
        // Not sealed by the worker: the repository must have it already.
        if (!this.#has(id) && batch.failed === undefined) batch.failed = new Error(`data blob ${id} was not sealed and is not in the repository`);
        continue;
      }
      sealed++;
      if (batch.failed !== undefined) continue;
      try {
        await this.#sink(id, ring.subarray(at, at + length), m.layout[4 * i + 2]!, m.layout[4 * i + 3]!);
      } catch (e) {
        batch.failed = e;
      }
    }
    if (sealed > 0) {
      slot.consumedCount = (slot.consumedCount + sealed) | 0;
      Atomics.store(slot.consumed, 0, slot.consumedCount);
      Atomics.notify(slot.consumed, 0);
    }
    if (plainBytes > 0) {
      // A batch's last blobs come with its end: they belong to its last file with any blobs.
      const file = m.type === 'blobs' ? m.file : lastFileWithBlobs(m);
      this.#onBytes?.(plainBytes, batch.files[file]?.job, this.#slots.indexOf(slot));
    }
    if (m.type !== 'done') return;
    slot.batches.shift();
    slot.queuedBytes -= batch.bytes;
    let pos = 0;
    for (let i = 0; i < batch.files.length; i++) {
      const p = batch.files[i]!;
      const outcome = m.files[i]!;
      const ids = batch.ids.slice(pos, pos + outcome.blobs);
      pos += outcome.blobs;
      if (batch.failed !== undefined) p.reject(batch.failed);
      else p.resolve({ size: outcome.size, ids, error: outcome.error });
    }
    this.#pump();
  }

  #fail(e: unknown): void {
    this.#failure ??= e;
    for (const s of this.#slots) {
      for (const b of s.batches.splice(0)) for (const p of b.files) p.reject(e);
    }
    for (const p of this.#queue.splice(0)) p.reject(e);
    for (const w of this.#roomWaiters.splice(0)) w();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#roomWaiters.splice(0)) w();
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
    const closed = new Error('file pool is closed');
    for (const s of this.#slots) for (const b of s.batches.splice(0)) for (const p of b.files) p.reject(closed);
    for (const p of this.#queue.splice(0)) p.reject(closed);
  }
}

/** The index of a finished batch's last file that has blobs (0 when none has). */
function lastFileWithBlobs(m: BatchDone): number {
  for (let i = m.files.length - 1; i >= 0; i--) if (m.files[i]!.blobs > 0) return i;
  return 0;
}
