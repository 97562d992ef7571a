// Phase 4 (readData / readDataSubset): packs are streamed, never held whole: each pack's SHA-256
// is computed as its bytes arrive, its blobs are verified on decode workers in ranges of at most
// RANGE_BYTES as soon as a range has arrived (MAC, decompression, hash), and its header, kept from
// its last bytes, is compared with the index. Workers and packs read at once follow the memory
// budget (`memoryLimit`, else the container's limit). Nothing waits on anything it need not: the
// next piece is read while this one is hashed, each worker has the next range queued, the main
// thread decodes a range itself when every worker's queue is full, and the next pack is read
// while the last ranges of the one before are decoded.
import { createHash } from 'node:crypto';
import { AbortedError, IntegrityError, throwIfAborted } from '../../../errors.ts';
import type { Repository } from '../../../repository/repository.ts';
import type { PackId } from '../../../repository/id.ts';
import { loadPieces, uninitializedBytes } from '../../../backend/backend.ts';
import { uncachedBackend } from '../../../repository/cache.ts';
import { discard } from '../../../repository/crypto.ts';
import { expectedPackSize, MAX_HEADER_SIZE, readPackHeader, type PackedBlob } from '../../../repository/pack.ts';
import { mapLimit, Semaphore } from '../../../repository/concurrency.ts';
import { planBudget } from '../../../memory-budget.ts';
import { DecodePool, type DecodeBlob } from '../../engine/decode-pool.ts';
import { blobDecoder, verifyBlobs, type BlobDecoder } from '../../engine/decode-worker.ts';
import { blobKey, packFile, type CheckContext, type Damage } from './findings.ts';
import { selectPacks } from './subset.ts';
import type { CheckProblem, ReadDataSubset } from './types.ts';

/**
 * The most bytes of blobs handed to a worker at once (a bigger blob goes alone): small enough that
 * the ranges in flight stay a few MiB, big enough that a message carries many small blobs.
 */
export const RANGE_BYTES = 1024 * 1024;
/** The last bytes of a pack always kept for its header, even when the index says it is shorter. */
const TAIL_MIN = 64 * 1024;

/** What reading found and counted. */
export interface ReadDataResult {
  packsRead: number;
  blobsRead: number;
  bytesRead: number;
  /** Blobs (type:id) found unreadable; the tree phase did not know them. */
  foundByReading: Set<string>;
}

/** A pack's problems, each with the blobs it makes unreadable. */
interface PackVerdict {
  bytes: number;
  problems: Array<{ problem: CheckProblem; bad: PackedBlob[] }>;
}

/**
 * Reads the chosen packs (all, or `subset` of them; only those in `usedPacks` when given) and
 * verifies them. Damaged blobs are marked in `damage`.
 */
export async function readData(
  ctx: CheckContext,
  packs: ReadonlyMap<PackId, PackedBlob[]>,
  { subset, usedPacks, damage }: { subset: ReadDataSubset | undefined; usedPacks: ReadonlySet<string> | undefined; damage: Damage },
): Promise<ReadDataResult> {
  const result: ReadDataResult = { packsRead: 0, blobsRead: 0, bytesRead: 0, foundByReading: new Set() };
  const chosen = choosePacks(ctx, packs, subset, usedPacks);
  // Missing packs are reported already; reading them would only say so again.
  const list = [...chosen].filter((id) => !damage.missingPacks.has(id)).sort();
  if (list.length === 0) return result;
  let done = 0;
  // The main thread reads and hashes the packs, so it counts as a worker: one decode worker
  // fewer than cores, and as many packs read at once as workers, within the budget.
  const budget = planBudget('check', { memoryLimit: ctx.options.memoryLimit, connections: ctx.repo.backend.connections });
  const pool = new DecodePool({ key: ctx.repo.masterKeyForWorkers(), threads: budget.workers });
  let decoder: BlobDecoder | undefined;
  const slots: Slots = {
    // A pack whose bytes have all arrived gives its stream up: the next pack is read while its
    // last ranges are decoded (a kept tail more in memory, no range more).
    streams: new Semaphore(budget.connections),
    withWorkers: 0,
    decoder: () => (decoder ??= blobDecoder(ctx.repo.masterKeyForWorkers())),
  };
  try {
    await mapLimit(list, budget.connections + 1, async (packId) => {
      throwIfAborted(ctx.options.signal);
      const blobs = packs.get(packId as PackId)!;
      const size = damage.packSizes.get(packId) ?? expectedPackSize(blobs);
      const verdict = await verifyTwice(packId, () => verifyPack(ctx.repo, packId, blobs, size, pool, slots, ctx.options.signal));
      result.packsRead++;
      result.blobsRead += blobs.length;
      result.bytesRead += verdict.bytes;
      for (const { problem, bad } of verdict.problems) {
        ctx.findings.error(problem);
        if (problem.code === 'PACK_DAMAGED' || problem.code === 'BLOB_DAMAGED') ctx.findings.broken.add(packId);
        for (const b of bad) damage.markBlob(packId, b);
        if (bad.length === 0) continue;
        const keys = bad.map((b) => blobKey(b.type, b.id));
        ctx.findings.packBlobs.set(problem, keys);
        for (const k of keys) result.foundByReading.add(k);
      }
      ctx.progress({ phase: 'read-data', done: ++done, total: list.length, bytes: result.bytesRead });
    });
  } finally {
    await pool.close();
  }
  return result;
}

/** The packs to read, said as restic says it. */
function choosePacks(ctx: CheckContext, packs: ReadonlyMap<PackId, PackedBlob[]>, subset: ReadDataSubset | undefined, usedPacks: ReadonlySet<string> | undefined): Set<string> {
  const sizes = new Map<string, number>();
  for (const [id, blobs] of packs) {
    if (usedPacks && !usedPacks.has(id)) continue;
    sizes.set(id, expectedPackSize(blobs));
  }
  const filtered = usedPacks ? 'filtered ' : '';
  if (!subset) {
    ctx.say(`read all ${filtered}data`);
    return new Set(sizes.keys());
  }
  const chosen = selectPacks(sizes, subset, ctx.options.random);
  const s = subset;
  // restic 0.19.1's line has no closing parenthesis; scripts parse it as it is.
  if (s.kind === 'group') ctx.say(`read group #${s.n} of ${chosen.size} ${filtered}data packs (out of total ${sizes.size} packs in ${s.t} groups`);
  else if (s.kind === 'percent') ctx.say(`read ${s.percent.toFixed(1)}% of ${filtered}packfiles`);
  else {
    // As restic: the size asked for, capped to the packs' total, and its share of them.
    let total = 0;
    for (const size of sizes.values()) total += size;
    const bytes = Math.min(s.bytes, total);
    ctx.say(`read ${bytes} bytes (${(total === 0 ? 100 : (bytes / total) * 100).toFixed(1)}%) of ${filtered}data packs`);
  }
  return chosen;
}

/** A pack that fails is read a second time: that tells damage in storage from damage in transit (restic does the same). */
async function verifyTwice(packId: string, verify: () => Promise<PackVerdict>): Promise<PackVerdict> {
  const first = await verify();
  if (first.problems.length === 0) return first;
  const again = await verify();
  if (again.problems.length > 0) return again;
  return {
    ...again,
    problems: [{
      problem: {
        code: 'PACK_READ_RETRIED', pack: packId, file: packFile(packId),
        message: `pack ${packId}: check successful on second attempt, original error: ${first.problems.map((p) => p.problem.message).join('; ')}`,
      },
      bad: [],
    }],
  };
}

/** What the packs being verified share. */
interface Slots {
  /** Packs being read (streamed). */
  streams: Semaphore;
  /** Ranges with the decode workers (at most the pool's capacity: one decoded, one queued per worker). */
  withWorkers: number;
  /** The main thread's decoder, for a range that finds every worker's queue full. */
  decoder: () => BlobDecoder;
}

/**
 * The pieces of `source`, each next one asked for before the current one is handed out: reading
 * the next piece overlaps hashing and copying this one (one piece more in memory).
 */
async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let pending = it.next();
  let finished = false;
  try {
    for (;;) {
      const r = await pending;
      if (r.done) {
        finished = true;
        return;
      }
      pending = it.next();
      // Awaited on the next turn; a consumer that leaves first must not leave it unhandled.
      pending.catch(() => undefined);
      yield r.value;
    }
  } catch (e) {
    finished = true;
    throw e;
  } finally {
    // Left early: the source is closed (once the read under way is done).
    if (!finished && it.return) await it.return().catch(() => undefined);
  }
}

/** A run of the pack's blobs handed to a worker at once: its byte range and the blobs (their places in the index's list). */
interface Range {
  start: number;
  end: number;
  blobs: number[];
  /** The range's bytes as they arrive (allocated at its first byte). */
  buf?: Uint8Array;
  sent: boolean;
}

/**
 * The pack's blobs in ranges of consecutive blobs, by offset, each at most {@link RANGE_BYTES}
 * (a bigger blob is a range of its own). Blobs an index lists overlapping fall into one range, or
 * into ranges that overlap: each gets its bytes.
 */
function rangesOf(blobs: readonly PackedBlob[]): Range[] {
  const order = blobs.map((_, i) => i).sort((a, b) => blobs[a]!.offset - blobs[b]!.offset);
  const ranges: Range[] = [];
  let cur: Range | undefined;
  for (const i of order) {
    const b = blobs[i]!;
    const end = b.offset + b.length;
    if (cur && b.offset >= cur.start && Math.max(cur.end, end) - cur.start <= RANGE_BYTES) {
      cur.end = Math.max(cur.end, end);
      cur.blobs.push(i);
      continue;
    }
    cur = { start: b.offset, end, blobs: [i], sent: false };
    ranges.push(cur);
  }
  return ranges;
}

/**
 * Reads one pack and verifies everything in it; `bad` lists the blobs that cannot be read. The
 * pack is read in one request and never held whole: its SHA-256 is computed here as the pieces
 * arrive, its blobs go to the decode workers in ranges as soon as a range is complete (MAC,
 * decompression, hash), and its last bytes, which hold the header, are kept and read at the end.
 * `size` is the pack's stored size (the listing's).
 */
async function verifyPack(repo: Repository, packId: string, blobs: PackedBlob[], size: number, pool: DecodePool, slots: Slots, signal: AbortSignal | undefined): Promise<PackVerdict> {
  const file = packFile(packId);
  const problems: PackVerdict['problems'] = [];
  const packProblem = (message: string) => problems.push({ problem: { code: 'PACK_DAMAGED', message: `pack ${packId}: ${message}`, pack: packId, file }, bad: [] });
  let end = 0;
  let indexEnd = 0;
  for (const b of blobs) indexEnd = Math.max(indexEnd, b.offset + b.length);
  for (const b of blobs) {
    if (b.offset !== end) {
      packProblem('index for pack contains gaps / overlapping blobs');
      break;
    }
    end = b.offset + b.length;
  }
  // The header follows the last blob: from there (at least the last TAIL_MIN bytes, in case the
  // index is wrong about where the blobs end, at most what a header can be) the bytes are kept.
  const tailStart = Math.max(0, Math.min(indexEnd, size - TAIL_MIN), size - MAX_HEADER_SIZE);
  const tail = new Uint8Array(size - tailStart);
  const ranges = rangesOf(blobs);
  const errors: Array<string | null> = new Array<string | null>(blobs.length).fill(null);
  const hash = createHash('sha256');
  const handed: Array<Promise<void>> = [];
  // The stored pack, not a cached copy: the point is to find damage in storage.
  const backend = uncachedBackend(repo.backend);
  const h = { type: 'data' as const, name: packId };
  // The range's bytes are ours (its own buffer, or a part of it): decoded in place, or moved to a worker.
  const send = (r: Range, bytes: Uint8Array, transfer: boolean): void => {
    r.sent = true;
    r.buf = undefined;
    const jobBlobs: DecodeBlob[] = r.blobs.map((i) => {
      const b = blobs[i]!;
      return { at: b.offset - r.start, length: b.length, uncompressedLength: b.uncompressedLength, id: b.id };
    });
    if (slots.withWorkers >= pool.capacity) {
      // Every worker has one range being decoded and one queued: rather than wait, this thread
      // decodes this one (with no zstd context kept for later).
      const dec = slots.decoder();
      const found = verifyBlobs(dec, bytes, file, jobBlobs);
      dec.reset();
      // Freed now, as a worker frees its job's bytes, not when V8 gets to its external memory.
      if (transfer) discard(bytes);
      r.blobs.forEach((i, k) => (errors[i] = found[k] ?? null));
      return;
    }
    slots.withWorkers++;
    const done = pool.run(bytes, file, jobBlobs, { transfer }).then((d) => {
      r.blobs.forEach((i, k) => (errors[i] = d.errors[k] ?? null));
    }).finally(() => slots.withWorkers--);
    done.catch(() => undefined); // awaited below, with the others
    handed.push(done);
  };
  let pos = 0;
  let next = 0; // the first range not yet handed on
  await slots.streams.acquire();
  let streaming = true;
  const streamDone = () => {
    if (streaming) slots.streams.release();
    streaming = false;
  };
  try {
    // A stream's pieces are small, so the next is read ahead; a backend without streams is read
    // in loads of STREAM_PIECE, too big to hold one more.
    const pieces = loadPieces(backend, h, { signal, offset: 0, length: size });
    for await (const piece of backend.loadStream ? readAhead(pieces) : pieces) {
      const pieceEnd = pos + piece.length;
      if (pieceEnd > size) throw new IntegrityError(`read returned more than the ${size} bytes asked for`, { file });
      hash.update(piece);
      if (pieceEnd > tailStart) {
        const from = Math.max(pos, tailStart);
        tail.set(piece.subarray(from - pos), from - tailStart);
      }
      const complete: Range[] = [];
      for (let k = next; k < ranges.length && ranges[k]!.start < pieceEnd; k++) {
        const r = ranges[k]!;
        if (r.sent || r.end <= pos) continue;
        const from = Math.max(pos, r.start);
        const to = Math.min(pieceEnd, r.end);
        r.buf ??= uninitializedBytes(r.end - r.start); // filled completely before it is sent
        r.buf.set(piece.subarray(from - pos, to - pos), from - r.start);
        if (to === r.end) complete.push(r);
      }
      pos = pieceEnd;
      // Copied out: a piece that is its own buffer (a local read) is freed now, not when V8 gets
      // to its external memory.
      discard(piece);
      // Each complete range's own buffer moves to a worker as it is.
      for (const r of complete) send(r, r.buf!, true);
      while (next < ranges.length && ranges[next]!.sent) next++;
    }
    if (pos !== size) throw new IntegrityError(`read ended after ${pos} of ${size} bytes`, { file });
    streamDone();
  } catch (e) {
    streamDone();
    await Promise.allSettled(handed);
    if (e instanceof AbortedError) throw e;
    return { bytes: 0, problems: [{ problem: { code: 'PACK_UNREADABLE', message: `pack ${packId}: download error: ${(e as Error).message}`, pack: packId, file }, bad: blobs }] };
  }
  // Ranges past the end of a short pack: what there is of them, so the worker says how much is missing.
  for (const r of ranges) {
    if (r.sent) continue;
    const have = Math.max(0, size - r.start);
    send(r, r.buf ? r.buf.subarray(0, have) : new Uint8Array(0), false);
  }
  // A worker that failed fails the check (as a storage error would), after every range settled.
  const settled = await Promise.allSettled(handed);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  const packHash = hash.digest('hex');
  if (packHash !== packId) packProblem(`unexpected pack id ${packHash}`);
  blobs.forEach((b, i) => {
    const message = errors[i];
    if (message !== null && message !== undefined) {
      problems.push({ problem: { code: 'BLOB_DAMAGED', message: `pack ${packId}: blob ${b.id}: ${message}`, pack: packId, file, blob: b.id }, bad: [b] });
    }
  });
  let header: PackedBlob[] | string;
  try {
    // A header longer than the bytes kept (an index wrong about where the blobs end) is read again from the end.
    header = await readPackHeader(repo.masterKeyForWorkers(), size, tail, (n) => backend.load(h, { signal, offset: size - n, length: n }), file);
  } catch (e) {
    if (e instanceof AbortedError) throw e;
    header = (e as Error).message;
  }
  if (typeof header === 'string') packProblem(header);
  else {
    const key = (b: PackedBlob) => `${b.type}:${b.id}:${b.offset}:${b.length}:${b.uncompressedLength}`;
    const inHeader = new Set(header.map(key));
    const inIndex = new Set(blobs.map(key));
    for (const b of header) if (!inIndex.has(key(b))) packProblem(`blob ${b.id} is not contained in index or position is incorrect`);
    for (const b of blobs) if (!inHeader.has(key(b))) packProblem(`blob ${b.id} of the index is not in the pack header or its position is incorrect`);
  }
  return { bytes: size, problems };
}
