// The contents, executed from the plan: each pack read with one request (plan.streams) whose bytes
// are handed on range by range as they arrive, so a big pack never sits in memory whole; each
// range's blobs verified (MAC and SHA-256) and written to every place in every file that holds
// them by the decode workers. A blob that fails is read again from any other copy the index knows
// before the restore gives up.
import { chmod, link, open } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { AbortedError, throwIfAborted } from '../../../errors.ts';
import type { IndexedRepository } from '../../../repository/repository.ts';
import { mapLimit, Semaphore } from '../../../repository/concurrency.ts';
import { DecodePool, ownedBytes, zeroPrefixLength, type DecodeBlob } from '../../engine/decode-pool.ts';
import { MIN_SIZE } from '../../engine/chunker.ts';
import { discard } from '../../../repository/crypto.ts';
import { posixPermissionsFromGo } from '../../model/mode.ts';
import type { MetadataWriter } from './metadata.ts';
import type { RestoreOutput } from './output.ts';
import { forEachWrite, type ContentPlan, type FileTask, type PlannedBlob, type ReadJob } from './plan.ts';
import type { PackStream } from './ranges.ts';
import { loadPieces, uninitializedBytes } from '../../../backend/backend.ts';
import type { TargetFolder } from './target.ts';
import { packFile } from '../../../repository/pack.ts';
import { sha256Hex, type BlobId } from '../../../repository/id.ts';

/** Writes the files' contents and their hard links; complete files get their metadata at once. */
export class ContentWriter {
  readonly #repo: IndexedRepository;
  readonly #signal: AbortSignal | undefined;
  readonly #owners: boolean;
  readonly #target: TargetFolder;
  readonly #metadata: MetadataWriter;
  readonly #output: RestoreOutput;
  /** Decode workers and packs read at once (the memory budget); default one per core, the backend's connections. */
  readonly #workers: number | undefined;
  readonly #connections: number;
  /** restore --sparse. */
  readonly #sparse: boolean;

  constructor(repo: IndexedRepository, env: { signal: AbortSignal | undefined; owners: boolean; target: TargetFolder; metadata: MetadataWriter; output: RestoreOutput; workers?: number; connections?: number; sparse?: boolean }) {
    this.#repo = repo;
    this.#signal = env.signal;
    this.#owners = env.owners;
    this.#target = env.target;
    this.#metadata = env.metadata;
    this.#output = env.output;
    this.#workers = env.workers;
    this.#connections = Math.max(1, env.connections ?? repo.backend.connections);
    this.#sparse = env.sparse ?? false;
  }

  /**
   * Writes the contents of every file: reads the packs in the order the files first need them,
   * and lets the decode workers verify and write. The second and later names of a hard link are
   * linked to the first once it is complete.
   */
  async write(plan: ContentPlan): Promise<void> {
    const needsPacks = plan.jobs.length > 0 || plan.oversized.length > 0;
    const pool = needsPacks ? new DecodePool({ key: this.#repo.repo.masterKeyForWorkers(), threads: this.#workers }) : undefined;
    try {
      await this.createFiles(plan);
      // From here on a file is reached through its blobs not yet written (a failure finds what
      // it must cut from them): the list of all goes, and each range's blobs go once it is
      // written (decodeJob), so the plan shrinks as the restore goes instead of staying whole.
      plan.tasks.length = 0;
      if (pool) await this.readPacks(plan, pool);
    } finally {
      await pool?.close();
    }
    // A second name of a hard link shares the first's inode, owner, mode and times.
    for (const { f, first } of plan.links) {
      await this.#target.removeExisting(f.path);
      await link(first, f.path);
      this.#output.result.filesRestored++;
      this.#output.report();
    }
  }

  /**
   * Creates every file that no single job creates (and empty files, complete at once). With
   * sparse, the files restic restores sparse — those holding the all-zero chunk, or of one blob
   * — are all created here, at their full length (so what is not written reads as zeros).
   */
  async createFiles(plan: ContentPlan): Promise<void> {
    if (this.#sparse) {
      for (const t of plan.tasks) {
        // restic neither: holes cannot be punched into what the file holds.
        if (t.inPlace) continue;
        const content = t.pending.node.content ?? [];
        if (content.length === 1 || content.includes(zeroChunkId())) {
          t.sparse = true;
          t.job = -1;
        }
      }
    }
    await mapLimit(plan.tasks, 32, async (t) => {
      if (t.inPlace) {
        // The target's own file (restore --overwrite found some of its blobs in place): only
        // the others are written, and it is cut to its length. O_NOFOLLOW: never through a link.
        const openInPlace = () => open(t.pending.path, fsc.O_WRONLY | fsc.O_NOFOLLOW);
        // A read-only file is made writable first (its mode is restored with its metadata), as restic does.
        const fh = await openInPlace().catch(async (e: NodeJS.ErrnoException) => {
          if (e.code !== 'EACCES') throw e;
          await chmod(t.pending.path, 0o600);
          return openInPlace();
        });
        try {
          await fh.truncate(t.size);
        } finally {
          await fh.close();
        }
        if (t.remaining === 0) this.fileDone(t);
        return;
      }
      // A file is otherwise made anew, so a hole never shows old data.
      await this.#target.removeExisting(t.pending.path);
      if (t.job >= 0) return;
      // O_NOFOLLOW | O_EXCL: never write through a link that appeared in the target.
      const fh = await open(t.pending.path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      try {
        if (t.sparse) await fh.truncate(t.size);
      } finally {
        await fh.close();
      }
      if (t.remaining === 0) this.fileDone(t);
    });
  }

  /** Runs the reads, then the oversized blobs; on failure, cuts incomplete files to what is verified. */
  async readPacks(plan: ContentPlan, pool: DecodePool): Promise<void> {
    try {
      // One request per connection, each kept streaming: a range waits for a worker only while
      // the workers already hold (or wait for) as many ranges as they and the requests can use.
      const connections = this.#connections;
      const decoding = new Semaphore(pool.capacity + connections);
      await runSettled(plan.streams, connections, (s) => this.runStream(s, plan, pool, decoding));
      for (const b of plan.oversized) {
        const reports = this.#output.reports;
        await this.restoreAlone(b);
        if (this.#output.reports === reports) this.#output.report();
      }
    } catch (e) {
      // Blobs are written in pack order, not file order: a file left incomplete is cut where
      // its first missing blob starts, so that what is left is its verified beginning, with no
      // holes. O_NOFOLLOW: nothing outside the target is touched.
      // Where each such file's first missing blob starts: the least offset among the writes of
      // the blobs not written.
      const cuts = new Map<FileTask, number>();
      const unwritten = (b: PlannedBlob) => {
        if (b.written) return;
        forEachWrite(b, (t, offset) => {
          if (t.remaining > 0 && !(offset >= (cuts.get(t) ?? Infinity))) cuts.set(t, offset);
        });
      };
      for (const job of plan.jobs) for (const b of job.blobs) unwritten(b);
      for (const b of plan.oversized) unwritten(b);
      for (const [t, cut] of cuts) {
        const fh = await open(t.pending.path, fsc.O_WRONLY | fsc.O_NOFOLLOW).catch(() => undefined);
        await fh?.truncate(cut).catch(() => undefined);
        await fh?.close();
      }
      throw e;
    }
  }

  /**
   * One request to a pack: its bytes are copied into each range's own buffer as they arrive, and
   * each range goes to a worker as soon as it is complete, while the rest of the pack is still on
   * its way. When the request fails for good, the ranges not yet complete are restored blob by
   * blob from any copy (restoreAlone). Returns when every range of it is written.
   */
  async runStream(stream: PackStream, plan: ContentPlan, pool: DecodePool, decoding: Semaphore): Promise<void> {
    const signal = this.#signal;
    throwIfAborted(signal);
    const handed: Array<Promise<void>> = [];
    let next = 0; // the range being filled (index into stream.jobs)
    let buf: Uint8Array | undefined;
    let pos = stream.offset; // pack offset of the piece's first byte
    let aborted: unknown;
    let failed = false;
    try {
      const pieces = loadPieces(this.#repo.backend, { type: 'data', name: stream.packId }, { signal, offset: stream.offset, length: stream.length });
      for await (const piece of pieces) {
        let at = 0;
        while (at < piece.length && next < stream.jobs.length) {
          const j = stream.jobs[next]!;
          const job = plan.jobs[j]!;
          const { start, end } = rangeOf(job);
          const here = pos + at;
          if (here < start) {
            at += Math.min(start - here, piece.length - at); // a gap between ranges: skipped
            continue;
          }
          // Filled completely before it is handed on: no zero fill first.
          buf ??= uninitializedBytes(end - start);
          const n = Math.min(end - here, piece.length - at);
          buf.set(piece.subarray(at, at + n), here - start);
          at += n;
          if (here + n < end) continue;
          const bytes = buf;
          buf = undefined;
          next++;
          await decoding.acquire();
          const done = this.decodeJob(job, j, bytes, pool).finally(() => decoding.release());
          done.catch(() => (failed = true)); // awaited below, with the others
          handed.push(done);
        }
        pos += piece.length;
        // Copied out: a piece that is its own buffer (a local read) is freed now, not when V8
        // gets to its external memory (only after tens of MiB of pieces have piled up).
        discard(piece);
        // After the last range the stream ends on its own (read to its end, an HTTP body keeps
        // its connection for the next request); a failure stops it early.
        if (failed) break;
      }
    } catch (e) {
      if (e instanceof AbortedError) aborted = e;
      // Otherwise the ranges not handed on are restored blob by blob below.
    }
    const results = await Promise.allSettled(handed);
    if (aborted) throw aborted;
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    throwIfAborted(signal);
    for (; next < stream.jobs.length; next++) {
      const reports = this.#output.reports;
      for (const b of plan.jobs[stream.jobs[next]!]!.blobs) await this.restoreAlone(b);
      if (this.#output.reports === reports) this.#output.report();
    }
  }

  /** One range of a pack, read: verified and written by a worker (a blob that fails, here). */
  async decodeJob(job: ReadJob, j: number, bytes: Uint8Array, pool: DecodePool): Promise<void> {
    const first = job.blobs[0]!;
    // The files this job creates and completes get their owner and mode from the worker.
    const finishing = new Set<FileTask>();
    const decodeBlobs: DecodeBlob[] = job.blobs.map((b) => {
      const writes: Array<[Uint8Array, number, boolean, boolean]> = [];
      forEachWrite(b, (t, offset) => {
        writes.push([t.pending.path, offset, t.job === j, t.sparse]);
        if (t.job === j) finishing.add(t);
      });
      return { at: b.offset - first.offset, length: b.length, uncompressedLength: b.uncompressedLength, id: b.id, writes };
    });
    const finished = [...finishing];
    const finish = finished.map((t): [Uint8Array, number, number, number] => {
      const { node, path: fp } = t.pending;
      return [fp, this.#owners ? node.uid : -1, node.gid, node.mode === undefined ? -1 : posixPermissionsFromGo(node.mode)];
    });
    // The range's own buffer moves to the worker as it is.
    const done = await pool.run(bytes, packFile(job.packId), decodeBlobs, { transfer: ownedBytes(bytes), finish });
    if (done.writeError) {
      throw Object.assign(new Error(`${done.writeError.path}: ${done.writeError.message}`), { code: done.writeError.code });
    }
    finished.forEach((t, k) => {
      const r = done.finished?.[k];
      if (r === undefined) return;
      t.ownerModeSet = true;
      if (r !== null) this.#output.warn(t.pending.path, `owner/mode: ${r}`);
    });
    // Counted from here, where this job's own results are applied: a report made meanwhile by
    // another job must not stand in for this one's.
    const reports = this.#output.reports;
    for (let i = 0; i < job.blobs.length; i++) {
      const b = job.blobs[i]!;
      if (done.errors[i] === null) this.blobWritten(b);
      else await this.restoreAlone(b);
    }
    // Bytes move within big files too, not only when a file completes.
    if (this.#output.reports === reports) this.#output.report();
    // Every blob of the range is written: the plan lets go of them (and of the files done).
    job.blobs = [];
  }

  /**
   * A blob the workers could not verify (or too big for them): read again from every copy the
   * index knows (loadBlob throws IntegrityError naming it when none is intact), then written here.
   */
  async restoreAlone(b: PlannedBlob): Promise<void> {
    const plain = await this.#repo.loadBlob('data', b.id, { signal: this.#signal });
    let zeros: number | undefined;
    const writes: Array<[FileTask, number]> = [];
    forEachWrite(b, (t, offset) => writes.push([t, offset]));
    for (const [t, offset] of writes) {
      const fh = await open(t.pending.path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
      try {
        const from = t.sparse ? (zeros ??= zeroPrefixLength(plain)) : 0;
        for (let o = from; o < plain.length; ) o += (await fh.write(plain, o, plain.length - o, offset + o)).bytesWritten;
      } finally {
        await fh.close();
      }
    }
    this.blobWritten(b);
  }

  blobWritten(b: PlannedBlob): void {
    b.written = true;
    forEachWrite(b, (t) => {
      this.#output.started(t);
      this.#output.result.bytesRestored += b.size;
      if (--t.remaining === 0) this.fileDone(t);
    });
  }

  fileDone(t: FileTask): void {
    const { node, path: p } = t.pending;
    if (node.size !== undefined && BigInt(t.size) !== BigInt(node.size)) {
      this.#output.warn(p, `restored ${t.size} bytes, snapshot says ${node.size}`);
    }
    this.#output.result.filesRestored++;
    this.#output.report();
    this.#metadata.finishEntry(t.pending, !t.ownerModeSet);
  }
}

let zeroChunk: BlobId | undefined;

/**
 * The ID of the chunk an all-zero stretch is cut into: over zeros the rolling hash is 0, a cut as
 * soon as the chunker's minimum size is reached. What restic's restorer looks for to restore a
 * file sparse.
 */
function zeroChunkId(): BlobId {
  return (zeroChunk ??= sha256Hex<BlobId>(new Uint8Array(MIN_SIZE)));
}

/** Where a range lies in its pack. */
function rangeOf(job: ReadJob): { start: number; end: number } {
  const last = job.blobs[job.blobs.length - 1]!;
  return { start: job.blobs[0]!.offset, end: last.offset + last.length };
}

/**
 * fn over items, at most `limit` at once. After a failure no new item starts, and the ones under
 * way finish before the first failure is thrown (so nothing is still writing when it is).
 */
async function runSettled<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failure) throw failure.error;
}
