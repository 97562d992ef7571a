// File content on its way to a client: the plaintext extent of each blob (from the index), a byte
// range mapped onto blobs, and the blobs read a few ahead and written to the response with
// back-pressure. Every blob is reserved in the server's ByteBudget before it is loaded and released
// once the socket took its bytes, so memory stays bounded whatever the file size or client count.
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { AbortedError, IntegrityError } from '../errors.ts';
import type { TreeNode } from '../snapshot/model/node.ts';
import type { ByteBudget, Reservation } from '../snapshot/engine/archive/budget.ts';
import type { ArchiveSink, FileLayout } from '../snapshot/engine/archive/contents.ts';
export { fileLayout, type FileLayout } from '../snapshot/engine/archive/contents.ts';
import type { RepositoryView } from './view.ts';

/** A strong validator for a file: its content is named by its blob IDs. */
export function contentEtag(node: TreeNode): string {
  const h = createHash('sha256');
  for (const id of node.content ?? []) h.update(id);
  return `"${h.digest('hex').slice(0, 32)}"`;
}

/**
 * Writes to a response with back-pressure: `write` resolves when more may be written, and a
 * reservation passed with a chunk is released when the socket has taken it, or when the response
 * closes, whichever comes first.
 */
export class ResponseSink implements ArchiveSink {
  readonly res: ServerResponse;
  readonly signal: AbortSignal;
  readonly #held = new Set<Reservation>();
  #unflushed = 0;
  #flushWaiters: Array<() => void> = [];

  constructor(res: ServerResponse, signal: AbortSignal) {
    this.res = res;
    this.signal = signal;
    res.once('close', () => {
      for (const r of this.#held) r.release();
      this.#held.clear();
      this.#unflushed = 0;
      this.#wakeFlushed();
    });
  }

  /** Small chunks are gathered (copied) up to this many bytes and written as one. */
  static readonly GATHER = 64 * 1024;
  #gathered: Buffer[] = [];
  #gatheredBytes = 0;

  async write(chunk: Uint8Array, reservation?: Reservation): Promise<void> {
    if (this.signal.aborted || this.res.destroyed) {
      reservation?.release();
      throw new AbortedError('the client went away', { reason: this.signal.reason });
    }
    if (chunk.length < 16 * 1024) {
      // A tar of many small files is mostly headers and small contents: one socket write per
      // piece would cost a syscall (and a chunk header) each.
      this.#gathered.push(Buffer.from(chunk));
      this.#gatheredBytes += chunk.length;
      reservation?.release();
      if (this.#gatheredBytes >= ResponseSink.GATHER) await this.#write(this.#takeGathered());
      return;
    }
    if (this.#gatheredBytes > 0) await this.#write(this.#takeGathered());
    await this.#write(chunk, reservation);
  }

  /** Writes what was gathered; call before ending the response. */
  async flush(): Promise<void> {
    if (this.#gatheredBytes > 0) await this.#write(this.#takeGathered());
  }

  #takeGathered(): Buffer {
    const b = Buffer.concat(this.#gathered, this.#gatheredBytes);
    this.#gathered = [];
    this.#gatheredBytes = 0;
    return b;
  }

  async #write(chunk: Uint8Array, reservation?: Reservation): Promise<void> {
    if (this.signal.aborted || this.res.destroyed) {
      reservation?.release();
      throw new AbortedError('the client went away', { reason: this.signal.reason });
    }
    if (reservation) this.#held.add(reservation);
    this.#unflushed++;
    const more = this.res.write(chunk, () => {
      if (reservation) {
        reservation.release();
        this.#held.delete(reservation);
      }
      this.#unflushed = Math.max(0, this.#unflushed - 1);
      if (this.#unflushed === 0) this.#wakeFlushed();
    });
    if (!more) await this.#drain();
  }

  /** Resolves when every chunk written so far was taken by the socket (or the response closed). */
  flushed(): Promise<void> {
    if (this.#unflushed === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push(resolve));
  }

  #wakeFlushed(): void {
    const w = this.#flushWaiters;
    this.#flushWaiters = [];
    for (const f of w) f();
  }

  #drain(): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        this.signal.removeEventListener('abort', done);
        if (this.signal.aborted || this.res.destroyed) reject(new AbortedError('the client went away', { reason: this.signal.reason }));
        else resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
      this.signal.addEventListener('abort', done);
    });
  }
}

/** How much a response may read ahead of what it has written (blobs). */
export const READ_AHEAD = 3;

/**
 * Writes bytes [start, end) of the file to the sink. Blobs are reserved before they are loaded;
 * a response that must wait for the budget first lets its own written bytes drain and holds
 * nothing while it waits, so responses never wait on each other in a circle.
 */
export async function writeFileRange(view: RepositoryView, layout: FileLayout, start: number, end: number, sink: ResponseSink, budget: ByteBudget, onData?: (bytes: Uint8Array) => void): Promise<void> {
  if (end <= start) return;
  const { blobs, ends } = layout;
  let i = firstBlobAfter(ends, start);
  const signal = sink.signal;
  const inflight: Array<{ index: number; reservation: Reservation; data: Promise<Uint8Array> }> = [];
  const blobStart = (k: number) => (k === 0 ? 0 : ends[k - 1]!);
  try {
    while (inflight.length > 0 || (i < blobs.length && blobStart(i) < end)) {
      while (inflight.length < READ_AHEAD && i < blobs.length && blobStart(i) < end) {
        const length = ends[i]! - blobStart(i);
        let reservation = budget.tryAcquire(length);
        if (!reservation) {
          if (inflight.length > 0) break;
          await sink.flushed();
          reservation = await budget.acquire(length, signal);
        }
        const data = view.dataBlob(blobs[i]!, { signal });
        data.catch(() => {});
        inflight.push({ index: i, reservation, data });
        i++;
      }
      const head = inflight.shift()!;
      let data: Uint8Array;
      try {
        data = await head.data;
      } catch (e) {
        head.reservation.release();
        throw e;
      }
      const from = blobStart(head.index);
      if (data.length !== ends[head.index]! - from) {
        head.reservation.release();
        throw new IntegrityError(`blob has ${data.length} bytes, the index says ${ends[head.index]! - from}`, { blob: blobs[head.index] });
      }
      const a = Math.max(0, start - from);
      const b = Math.min(data.length, end - from);
      const piece = a === 0 && b === data.length ? data : data.subarray(a, b);
      onData?.(piece);
      await sink.write(piece, head.reservation);
    }
  } finally {
    for (const f of inflight) {
      f.data.then(() => f.reservation.release(), () => f.reservation.release());
    }
  }
}

function firstBlobAfter(ends: Float64Array, offset: number): number {
  let lo = 0;
  let hi = ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ends[mid]! <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A parsed Range header: one range (several, or one that cannot be satisfied, are answered as HTTP says). */
export type RangeAnswer = { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

/** RFC 9110 single byte range; multiple ranges are answered with the whole file (allowed by the RFC). */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (!header) return { kind: 'full' };
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header.trim());
  if (!m) return { kind: 'full' };
  const [, a, b] = m;
  if (a === '' && b === '') return { kind: 'full' };
  let start: number;
  let end: number;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return { kind: 'unsatisfiable' };
    start = Math.max(0, size - n);
    end = size;
  } else {
    start = Number(a);
    end = b === '' ? size : Math.min(size, Number(b) + 1);
    if (b !== '' && Number(b) < start) return { kind: 'full' };
  }
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end };
}
