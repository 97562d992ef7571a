// Worker thread: reads files, cuts them into restic chunks, and for each chunk computes the
// blob ID, compresses (v2) and seals it.
//
// Work comes in batches of files (many small files cost one message, not several each). Files
// are read with blocking calls: this thread does nothing else, and a synchronous read costs a
// tenth of a promise-based one.
//
// Sealed blobs are written into a ring in this thread's Poly1305 memory (a SharedArrayBuffer the
// main thread can read), where their MAC is computed in place. The main thread learns of them by
// message (IDs and places, a few per message), copies them into its pack and then stores, in a
// shared counter, how many blobs it has consumed; their room is then free. Whenever everything
// written has been consumed, or once past RING_SOFT with its start free, the ring is used from its
// start again, so when the main thread keeps up only its first megabytes are ever touched. When the ring is full the worker waits on
// the counter (Atomics.wait), which is the back-pressure from packing and storing.
import { parentPort } from 'node:worker_threads';
import { closeSync, constants as fsc, openSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Chunker, MAX_SIZE } from './chunker.ts';
import { CRYPTO_OVERHEAD, sealInto, type CryptoKey } from '../../repository/crypto.ts';
import { workspace } from '../../repository/poly1305.ts';
import type { CompressionMode } from '../../repository/compression.ts';
import { ZstdEncoder } from '../../repository/zstd-encoder.ts';

export interface WorkerInit {
  type: 'init';
  key: { encrypt: Uint8Array; macK: Uint8Array; macR: Uint8Array };
  polynomial: string; // hex
  compress: boolean;
  mode: CompressionMode;
  /** Int32 [0]: ring blobs the main thread has consumed (it writes, the worker reads). */
  control: SharedArrayBuffer;
}
export interface WorkerReady {
  type: 'ready';
  /** The ring: a view of the worker's shared memory. */
  ring: Uint8Array;
}
export interface BatchFile {
  path: string | Uint8Array;
  /** IDs of blobs the repository already has: such chunks are hashed but not sealed. */
  known?: readonly string[];
}
export interface BatchJob {
  type: 'batch';
  batch: number;
  files: BatchFile[];
}
/**
 * Blobs of the current batch, in file order. `layout` holds four numbers per blob: ring offset,
 * sealed length (0: not sealed, the repository has it), uncompressed length (0: not
 * compressed), plaintext length.
 */
export interface BlobsMessage {
  type: 'blobs';
  ids: string[];
  layout: number[];
  /** The batch's file (its index) being read when the blobs were announced: the file in work. */
  file: number;
}
export interface FileOutcome {
  size: number;
  /** How many of the batch's blobs (in order) belong to this file. */
  blobs: number;
  error?: { code?: string; message: string };
}
/** The batch's last blobs and every file's outcome. */
export interface BatchDone {
  type: 'done';
  batch: number;
  ids: string[];
  layout: number[];
  files: FileOutcome[];
}

/** Largest sealed blob: a MAX_SIZE chunk that zstd could not shrink, plus IV and MAC. */
export const MAX_SEALED = MAX_SIZE + (MAX_SIZE >> 7) + 64 * 1024 + CRYPTO_OVERHEAD;
/** The ring holds one blob of any size, or several typical ones. */
export const RING_SIZE = MAX_SEALED + 2 * 1024 * 1024;
/**
 * Blobs are placed from the ring's start again once this far in, if the start is free: the part
 * of the ring a stream of small blobs touches (and so keeps resident) stays about this big plus
 * what the main thread has not consumed yet, instead of the whole ring.
 */
export const RING_SOFT = 1024 * 1024;
/** Reads of this size; the read buffer holds an unfinished chunk plus one read. */
const READ_SIZE = 1024 * 1024;
/** Blobs are announced once this many bytes wait, so the ring is released early. */
const ANNOUNCE_BYTES = 512 * 1024;
/** IDs this worker sealed lately: a repeated chunk (zeros, copies) is not sealed twice. */
const RECENT_IDS = 16384;

const port = parentPort;
if (port) {
  let key: CryptoKey;
  let chunker: Chunker;
  let encoder: ZstdEncoder | undefined;
  let ring: Uint8Array;
  let consumed: Int32Array;
  let ids: string[] = [];
  let layout: number[] = [];
  let waitingBytes = 0;
  let recent = new Set<string>();
  let known: ReadonlySet<string> | undefined;
  let emitted = 0; // blobs emitted so far (sealed or not), for each file's count
  let reading = 0; // the batch's file being read, named in announcements (progress)
  const buf = Buffer.allocUnsafeSlow(MAX_SIZE + READ_SIZE);

  const announce = () => {
    if (ids.length === 0) return;
    const msg: BlobsMessage = { type: 'blobs', ids, layout, file: reading };
    port.postMessage(msg);
    ids = [];
    layout = [];
    waitingBytes = 0;
  };

  // Blobs in the ring that the main thread has not consumed yet, oldest first: [start, end).
  const liveStart: number[] = [];
  const liveEnd: number[] = [];
  let liveHead = 0;
  let consumedSeen = 0;

  /** Forgets the blobs the main thread has consumed since the last look. */
  const release = () => {
    const c = Atomics.load(consumed, 0);
    liveHead += (c - consumedSeen) | 0;
    consumedSeen = c;
    if (liveHead === liveStart.length || liveHead > 1024) {
      liveStart.splice(0, liveHead);
      liveEnd.splice(0, liveHead);
      liveHead = 0;
    }
  };

  /**
   * A place for n contiguous bytes in the ring, after the newest live blob or, wrapping, before
   * the oldest. With nothing live it is the start, which keeps the touched part of the ring
   * small. Waits for the main thread when there is no room.
   */
  const allocate = (n: number): number => {
    for (;;) {
      release();
      let at = -1;
      if (liveHead === liveStart.length) at = 0;
      else {
        const tail = liveStart[liveHead]!;
        const head = liveEnd[liveEnd.length - 1]!;
        if (head > tail) {
          // Back to the start once past RING_SOFT when the start is free, else onwards: the
          // main thread lags a little behind, so a stream of small blobs would otherwise
          // walk the whole ring and keep all of it resident.
          if (tail >= n && head + n > RING_SOFT) at = 0;
          else if (ring.length - head >= n) at = head;
          else if (tail >= n) at = 0;
        } else if (tail - head >= n) at = head;
      }
      if (at >= 0) {
        liveStart.push(at);
        liveEnd.push(at + n);
        return at;
      }
      announce();
      Atomics.wait(consumed, 0, consumedSeen, 1000);
    }
  };

  const emit = (chunk: Uint8Array) => {
    const id = createHash('sha256').update(chunk).digest('hex');
    emitted++;
    if (known?.has(id) || recent.has(id)) {
      ids.push(id);
      layout.push(0, 0, 0, chunk.length);
      return;
    }
    let payload = chunk;
    let ulen = 0;
    if (encoder && chunk.length > 0) {
      const packed = encoder.compress(chunk);
      // Stored as it is when zstd cannot shrink it (random data): the pack header says so,
      // and reading it back then needs no decompression.
      if (packed.length < chunk.length) {
        payload = packed;
        ulen = chunk.length;
      }
    }
    const n = payload.length + CRYPTO_OVERHEAD;
    const at = allocate(n);
    sealInto(key, payload, ring.subarray(at, at + n));
    ids.push(id);
    layout.push(at, n, ulen, chunk.length);
    if (recent.size >= RECENT_IDS) recent = new Set();
    recent.add(id);
    waitingBytes += n;
    if (waitingBytes >= ANNOUNCE_BYTES) announce();
  };

  const openForReading = (path: string | Buffer): number => {
    try {
      return openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | (fsc.O_NOATIME ?? 0));
    } catch (e) {
      // O_NOATIME is only allowed on files we own.
      if ((e as NodeJS.ErrnoException).code !== 'EPERM' || !fsc.O_NOATIME) throw e;
      return openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    }
  };

  /** Reads, chunks and seals one file; returns its size. */
  const processFile = (path: string | Buffer): number => {
    const fd = openForReading(path);
    try {
      chunker.reset();
      let size = 0;
      let start = 0; // start of the current chunk in buf
      let fill = 0; // bytes in buf
      for (;;) {
        if (fill + READ_SIZE > buf.length) {
          // Move the unfinished chunk (< MAX_SIZE) to the front.
          buf.copyWithin(0, start, fill);
          fill -= start;
          start = 0;
        }
        const bytesRead = readSync(fd, buf, fill, READ_SIZE, null);
        if (bytesRead === 0) break;
        let scan = fill;
        fill += bytesRead;
        size += bytesRead;
        const view = buf.subarray(0, fill);
        while (scan < fill) {
          const cut = chunker.next(view, scan);
          if (cut < 0) break;
          emit(buf.subarray(start, cut));
          start = scan = cut;
        }
      }
      if (fill > start) emit(buf.subarray(start, fill));
      return size;
    } finally {
      closeSync(fd);
    }
  };

  const runBatch = (job: BatchJob) => {
    const files: FileOutcome[] = [];
    for (const [i, f] of job.files.entries()) {
      reading = i;
      const before = emitted;
      known = f.known?.length ? new Set(f.known) : undefined;
      const path = typeof f.path === 'string' ? f.path : Buffer.from(f.path.buffer, f.path.byteOffset, f.path.byteLength);
      let outcome: FileOutcome;
      try {
        outcome = { size: processFile(path), blobs: 0 };
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        outcome = { size: 0, blobs: 0, error: { code: err.code, message: err.message } };
      }
      known = undefined;
      outcome.blobs = emitted - before;
      files.push(outcome);
    }
    const done: BatchDone = { type: 'done', batch: job.batch, ids, layout, files };
    port.postMessage(done);
    ids = [];
    layout = [];
    waitingBytes = 0;
  };

  port.on('message', (m: WorkerInit | BatchJob) => {
    if (m.type === 'init') {
      key = { encrypt: Buffer.from(m.key.encrypt), macK: Buffer.from(m.key.macK), macR: Buffer.from(m.key.macR) };
      chunker = new Chunker(BigInt('0x' + m.polynomial));
      if (m.compress) encoder = new ZstdEncoder(m.mode === 'off' ? 'auto' : m.mode);
      consumed = new Int32Array(m.control);
      ring = workspace(RING_SIZE);
      const ready: WorkerReady = { type: 'ready', ring };
      port.postMessage(ready);
    } else if (m.type === 'batch') {
      runBatch(m);
    }
  });
}
