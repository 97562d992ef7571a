// Worker thread: reads one file at a time, cuts it into restic chunks, and for each chunk
// computes the blob ID, compresses (v2) and seals it. Sealed blobs go back to the main thread
// as transferred ArrayBuffers. At most MAX_UNACKED blobs of a file are in flight, so a slow
// upload slows the reader instead of filling memory.
import { parentPort } from 'node:worker_threads';
import { open as openFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { Chunker, MAX_SIZE, MIN_SIZE } from './chunker.ts';
import { initCrypto, seal, type CryptoKey } from '../repository/crypto.ts';
import { compress, type CompressionMode } from '../repository/compression.ts';

export interface WorkerInit {
  type: 'init';
  key: { encrypt: Uint8Array; macK: Uint8Array; macR: Uint8Array };
  polynomial: string; // hex
  compress: boolean;
  mode: CompressionMode;
}
export interface FileJob {
  type: 'file';
  job: number;
  path: string | Uint8Array;
}
export interface BlobMessage {
  type: 'blob';
  job: number;
  id: string;
  sealed: ArrayBuffer;
  uncompressedLength: number;
  plainLength: number;
}
export interface DoneMessage {
  type: 'done';
  job: number;
  size: number;
  error?: { code?: string; message: string };
}

export const MAX_UNACKED = 4;

const port = parentPort;
if (port) {
  let key: CryptoKey;
  let chunker: Chunker;
  let doCompress = false;
  let mode: CompressionMode = 'auto';
  let unacked = 0;
  let wake: (() => void) | undefined;
  const jobs: FileJob[] = [];
  let running = false;
  const buf = Buffer.allocUnsafe(MAX_SIZE * 2);

  const emit = async (job: number, chunk: Uint8Array) => {
    const id = createHash('sha256').update(chunk).digest('hex');
    let payload = chunk;
    let ulen = 0;
    if (doCompress && chunk.length > 0) {
      payload = compress(chunk, mode);
      ulen = chunk.length;
    }
    const sealed = seal(key, payload);
    const ab = ownArrayBuffer(sealed);
    const msg: BlobMessage = { type: 'blob', job, id, sealed: ab, uncompressedLength: ulen, plainLength: chunk.length };
    unacked++;
    port.postMessage(msg, [ab]);
    while (unacked >= MAX_UNACKED) await new Promise<void>((r) => (wake = r));
  };

  const processFile = async (j: FileJob): Promise<number> => {
    const path = typeof j.path === 'string' ? j.path : Buffer.from(j.path);
    const fh = await openFile(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | (fsc.O_NOATIME ?? 0)).catch(() => openFile(path, fsc.O_RDONLY | fsc.O_NOFOLLOW));
    try {
      chunker.reset();
      let size = 0;
      let start = 0; // start of the current chunk in buf
      let fill = 0; // bytes in buf
      for (;;) {
        if (fill === buf.length) {
          // Move the unfinished chunk to the front (it is < MAX_SIZE, so half the buffer).
          buf.copyWithin(0, start, fill);
          fill -= start;
          start = 0;
        }
        const { bytesRead } = await fh.read(buf, fill, Math.min(buf.length - fill, 4 * 1024 * 1024), null);
        if (bytesRead === 0) break;
        let scan = fill;
        fill += bytesRead;
        size += bytesRead;
        while (scan < fill) {
          const cut = chunker.next(buf.subarray(0, fill), scan);
          if (cut < 0) break;
          await emit(j.job, buf.subarray(start, cut));
          start = scan = cut;
        }
      }
      if (fill > start || size === 0) {
        if (fill > start) await emit(j.job, buf.subarray(start, fill));
      }
      return size;
    } finally {
      await fh.close();
    }
  };

  const run = async () => {
    if (running) return;
    running = true;
    while (jobs.length) {
      const j = jobs.shift()!;
      let msg: DoneMessage;
      try {
        msg = { type: 'done', job: j.job, size: await processFile(j) };
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        msg = { type: 'done', job: j.job, size: 0, error: { code: err.code, message: err.message } };
      }
      // All acks of this file arrive before the next file starts (keeps per-file order simple).
      while (unacked > 0) await new Promise<void>((r) => (wake = r));
      port.postMessage(msg);
    }
    running = false;
  };

  port.on('message', async (m: WorkerInit | FileJob | { type: 'ack' }) => {
    if (m.type === 'init') {
      await initCrypto();
      key = { encrypt: Buffer.from(m.key.encrypt), macK: Buffer.from(m.key.macK), macR: Buffer.from(m.key.macR) };
      chunker = new Chunker(BigInt('0x' + m.polynomial));
      doCompress = m.compress;
      mode = m.mode === 'off' ? 'auto' : m.mode;
      port.postMessage({ type: 'ready' });
    } else if (m.type === 'file') {
      jobs.push(m);
      void run();
    } else if (m.type === 'ack') {
      unacked--;
      const w = wake;
      wake = undefined;
      w?.();
    }
  });
}

/** An ArrayBuffer that holds exactly these bytes and nothing else (safe to transfer). */
function ownArrayBuffer(b: Uint8Array): ArrayBuffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length && b.buffer instanceof ArrayBuffer) return b.buffer;
  const ab = new ArrayBuffer(b.length);
  new Uint8Array(ab).set(b);
  return ab;
}

export { MIN_SIZE };
