// The file contents of an archive (tar, zip): the files' blobs read ahead of the writer in pack
// order and decoded by the engine's decode workers, so a folder of many small files is bound by
// neither one read per blob nor one decryption context per blob on the main thread.
//
// The blobs the archive will need, in the order it needs them, are cut into segments (up to
// 4 MiB of plaintext or 1024 blobs). A segment is read with one ranged request per run of
// neighbouring blobs in a pack (gaps up to 64 KiB, runs up to 4 MiB), and each run is verified,
// decrypted and decompressed by a worker, which hands every blob's plaintext back in its own
// buffer. A segment reserves its plaintext in the server's ByteBudget before it is read and gives
// it back once the socket has taken its last blob (or the response ended). Segments are started
// in order, ahead of the writer only while the budget has room at once (tryAcquire); the segment
// the writer needs next is waited for only after the response's own writes have drained, when
// every earlier segment is given back and no later one is started, so responses never wait on
// each other in a circle (as writeFileRange). A blob a worker cannot verify, or a read that fails,
// is loaded again with loadBlob (other copies, an index refresh), as everywhere else.
import { AbortedError, BlobNotFoundError, IntegrityError } from '../../../errors.ts';
import { CRYPTO_OVERHEAD, ownedBytes } from '../../../repository/crypto.ts';
import type { BlobId } from '../../../repository/id.ts';
import type { BlobLocation } from '../../../repository/master-index.ts';
import { packFile } from '../../../repository/pack.ts';
import type { IndexedRepository } from '../../../repository/repository.ts';
import type { TreeNode } from '../../model/node.ts';
import type { DecodeBlob, DecodePool } from '../decode-pool.ts';
import type { ByteBudget, Reservation } from './budget.ts';

/** A file's blobs with their plaintext offsets: `ends[i]` is the offset after blob i. */
export interface FileLayout {
  blobs: readonly BlobId[];
  ends: Float64Array;
  size: number;
}

/** The plaintext length of every blob of the file, from the index (one refresh on a miss). */
export async function fileLayout(repo: IndexedRepository, node: TreeNode, signal?: AbortSignal): Promise<FileLayout> {
  const blobs = node.content ?? [];
  const ends = new Float64Array(blobs.length);
  let at = 0;
  for (let i = 0; i < blobs.length; i++) {
    const id = blobs[i]!;
    const loc = await repo.retryAfterRefresh(() => {
      const found = repo.index.lookup(id, 'data')[0];
      if (!found) throw new BlobNotFoundError('data', id);
      return found;
    }, { signal });
    at += loc.uncompressedLength > 0 ? loc.uncompressedLength : loc.length - CRYPTO_OVERHEAD;
    ends[i] = at;
  }
  return { blobs, ends, size: at };
}

/**
 * Where an archive goes: `write` resolves when more may be written, and a reservation passed with
 * a chunk is released once the chunk has left (taken by the socket, the consumer, or the
 * compressor), or when the sink closes. Small chunks may be gathered until `flush`.
 */
export interface ArchiveSink {
  readonly signal: AbortSignal;
  write(chunk: Uint8Array, reservation?: Reservation): Promise<void>;
  /** Writes out what was gathered. */
  flush(): Promise<void>;
  /** Resolves when every chunk written so far has left. */
  flushed(): Promise<void>;
}

/** A path in an archive (the exact bytes, folders ending in '/') and its node. */
export interface ArchivePath {
  path: Buffer;
  node: TreeNode;
}

/** Most plaintext and most blob uses in one segment. */
const SEGMENT_BYTES = 4 * 1024 * 1024;
const SEGMENT_USES = 1024;
/** Plaintext started ahead of the writer (at most half the budget), and entries walked ahead. */
const AHEAD_BYTES = 16 * 1024 * 1024;
const AHEAD_ENTRIES = 8192;
/** Neighbours in a pack read with one request: gaps up to READ_GAP, requests up to READ_MAX. */
const READ_GAP = 64 * 1024;
const READ_MAX = 4 * 1024 * 1024;

/** An entry of the archive, with its file's layout when it is a regular file. */
export interface ArchiveEntry extends ArchivePath {
  layout?: FileLayout;
  uses?: Use[];
}

interface Slot {
  id: BlobId;
  loc: BlobLocation | undefined;
  length: number;
  data?: Promise<Uint8Array>;
}

interface Use {
  slot: Slot;
  seg: Segment;
}

interface Segment {
  slots: Map<BlobId, Slot>;
  bytes: number;
  uses: number;
  closed: boolean;
  started: boolean;
  reservation?: Reservation;
}

/** Where an archive's entries and their contents come from. */
export class ArchiveContents {
  readonly #repo: IndexedRepository;
  readonly #pool: DecodePool | undefined;
  readonly #budget: ByteBudget;
  readonly #sink: ArchiveSink;
  readonly #walk: AsyncIterator<ArchivePath>;
  readonly #queue: ArchiveEntry[] = [];
  #queuedBytes = 0;
  #walked = false;
  /** Segments not yet given back, oldest first; the last may still be open. */
  readonly #segments: Segment[] = [];
  #aheadBytes = 0;
  readonly #aheadLimit: number;

  constructor(repo: IndexedRepository, entries: AsyncIterable<ArchivePath>, sink: ArchiveSink, budget: ByteBudget, pool: DecodePool | undefined) {
    this.#repo = repo;
    this.#pool = pool;
    this.#budget = budget;
    this.#sink = sink;
    this.#walk = entries[Symbol.asyncIterator]();
    this.#aheadLimit = Math.min(AHEAD_BYTES, budget.limit / 2);
  }

  /** The next entry (undefined after the last), with the blobs of the next ones on their way. */
  async next(): Promise<ArchiveEntry | undefined> {
    await this.#fill();
    const e = this.#queue.shift();
    if (e?.layout) this.#queuedBytes -= e.layout.size;
    return e;
  }

  /**
   * Writes the whole content of a file entry (from next()) to the sink, or to \`out\` (a
   * compressor), which must release each chunk's reservation once it is done with the chunk.
   */
  async writeFile(entry: ArchiveEntry, onData?: (bytes: Uint8Array) => void, out?: (bytes: Uint8Array, reservation: Reservation) => Promise<void>): Promise<void> {
    const { layout, uses } = entry;
    if (!layout || !uses) return;
    for (let i = 0; i < uses.length; i++) {
      const { slot, seg } = uses[i]!;
      if (!seg.started) await this.#startNeeded(seg);
      let data: Uint8Array;
      try {
        data = await slot.data!;
      } catch (e) {
        this.#used(seg);
        throw e;
      }
      const expected = layout.ends[i]! - (i === 0 ? 0 : layout.ends[i - 1]!);
      if (data.length !== expected) {
        this.#used(seg);
        throw new IntegrityError(`blob has ${data.length} bytes, the index says ${expected}`, { blob: slot.id });
      }
      onData?.(data);
      let held = true;
      await (out ?? ((d, r) => this.#sink.write(d, r)))(data, {
        bytes: data.length,
        release: () => {
          if (!held) return;
          held = false;
          this.#used(seg);
        },
      });
    }
    this.#startAhead();
  }

  /**
   * Gives back every reservation once its reads have settled, and stops the walk: for a response
   * that failed. (After the last entry nothing needs it: each blob's bytes are given back as the
   * socket takes them.)
   */
  close(): void {
    for (const seg of this.#segments) {
      const r = seg.reservation;
      if (!r) continue;
      // Given back once its reads and decodes have settled: until then the bytes are still held.
      void Promise.allSettled([...seg.slots.values()].map((s) => s.data)).then(() => r.release());
    }
    this.#segments.length = 0;
    this.#queue.length = 0;
    void this.#walk.return?.();
  }

  /** Walks entries ahead of the writer and plans their blobs into segments. */
  async #fill(): Promise<void> {
    const signal = this.#sink.signal;
    while (!this.#walked && (this.#queue.length === 0 || (this.#queuedBytes < this.#aheadLimit + SEGMENT_BYTES && this.#queue.length < AHEAD_ENTRIES))) {
      const r = await this.#walk.next();
      if (r.done) {
        this.#walked = true;
        break;
      }
      const entry: ArchiveEntry = r.value;
      if (entry.node.type === 'file') {
        entry.layout = await fileLayout(this.#repo, entry.node, signal);
        entry.uses = this.#plan(entry.layout);
        this.#queuedBytes += entry.layout.size;
      }
      this.#queue.push(entry);
    }
    if (this.#walked) {
      const last = this.#segments[this.#segments.length - 1];
      if (last) last.closed = true;
    }
    this.#startAhead();
  }

  #plan(layout: FileLayout): Use[] {
    const uses: Use[] = [];
    const index = this.#repo.index;
    for (let i = 0; i < layout.blobs.length; i++) {
      const id = layout.blobs[i]!;
      const length = layout.ends[i]! - (i === 0 ? 0 : layout.ends[i - 1]!);
      let seg = this.#segments[this.#segments.length - 1];
      let slot = seg && !seg.closed ? seg.slots.get(id) : undefined;
      if (!seg || seg.closed || (!slot && seg.slots.size > 0 && (seg.bytes + length > SEGMENT_BYTES || seg.uses >= SEGMENT_USES))) {
        if (seg) seg.closed = true;
        seg = { slots: new Map(), bytes: 0, uses: 0, closed: false, started: false };
        this.#segments.push(seg);
        slot = undefined;
      }
      if (!slot) {
        slot = { id, loc: index.lookup(id, 'data')[0], length };
        seg.slots.set(id, slot);
        seg.bytes += length;
      }
      seg.uses++;
      uses.push({ slot, seg });
    }
    return uses;
  }

  /** Starts the closed segments next in line while the budget has room at once. */
  #startAhead(): void {
    for (const seg of this.#segments) {
      if (seg.started) continue;
      if (!seg.closed || this.#aheadBytes >= this.#aheadLimit) return;
      const reservation = this.#budget.tryAcquire(seg.bytes);
      if (!reservation) return;
      this.#start(seg, reservation);
    }
  }

  /**
   * The writer needs this segment now: every earlier one is written, no later one is started.
   * When the budget has no room, the response's own writes drain first, so it waits holding
   * nothing.
   */
  async #startNeeded(seg: Segment): Promise<void> {
    seg.closed = true;
    let reservation = this.#budget.tryAcquire(seg.bytes);
    if (!reservation) {
      await this.#sink.flushed();
      reservation = await this.#budget.acquire(seg.bytes, this.#sink.signal);
    }
    if (seg.started) {
      reservation.release(); // started meanwhile by #startAhead
      return;
    }
    this.#start(seg, reservation);
  }

  #used(seg: Segment): void {
    if (--seg.uses > 0) return;
    seg.reservation?.release();
    this.#aheadBytes -= seg.bytes;
    const i = this.#segments.indexOf(seg);
    if (i >= 0) this.#segments.splice(i, 1);
    seg.slots.clear();
  }

  /** Reads the segment's blobs (one request per run in a pack) and has them decoded. */
  #start(seg: Segment, reservation: Reservation): void {
    seg.started = true;
    seg.reservation = reservation;
    this.#aheadBytes += seg.bytes;
    const located: Slot[] = [];
    for (const slot of seg.slots.values()) {
      if (slot.loc) located.push(slot);
      else slot.data = this.#alone(slot);
    }
    located.sort((a, b) => (a.loc!.packId < b.loc!.packId ? -1 : a.loc!.packId > b.loc!.packId ? 1 : a.loc!.offset - b.loc!.offset));
    let run: Slot[] = [];
    for (const slot of located) {
      const first = run[0]?.loc;
      const last = run[run.length - 1]?.loc;
      const loc = slot.loc!;
      if (first && last && (loc.packId !== first.packId || loc.offset < last.offset + last.length || loc.offset - (last.offset + last.length) > READ_GAP || loc.offset + loc.length - first.offset > READ_MAX)) {
        this.#read(run);
        run = [];
      }
      run.push(slot);
    }
    if (run.length > 0) this.#read(run);
    for (const slot of seg.slots.values()) slot.data!.catch(() => {});
  }

  /** One ranged read of neighbouring blobs in a pack, decoded by a worker (or here without a pool). */
  #read(run: Slot[]): void {
    const repo = this.#repo;
    const signal = this.#sink.signal;
    const first = run[0]!.loc!;
    const last = run[run.length - 1]!.loc!;
    const from = first.offset;
    const bytes = repo.backend.load({ type: 'data', name: first.packId }, { signal, offset: from, length: last.offset + last.length - from });
    const pool = this.#pool;
    const decoded: Promise<Array<Uint8Array | undefined>> = bytes.then(async (buf) => {
      if (!pool) {
        return run.map((s) => {
          try {
            return repo.decodeBlob(s.loc!, buf.subarray(s.loc!.offset - from, s.loc!.offset - from + s.loc!.length));
          } catch {
            return undefined;
          }
        });
      }
      const blobs: DecodeBlob[] = run.map((s) => ({ at: s.loc!.offset - from, length: s.loc!.length, uncompressedLength: s.loc!.uncompressedLength, id: s.id }));
      const done = await pool.run(buf, packFile(first.packId), blobs, { transfer: ownedBytes(buf), returnPlain: true });
      return run.map((_s, i) => (done.plain?.[i] ? new Uint8Array(done.plain[i]!) : undefined));
    });
    run.forEach((slot, i) => {
      slot.data = decoded.then(
        (all) => all[i] ?? this.#alone(slot),
        (e: unknown) => (e instanceof AbortedError || signal.aborted ? Promise.reject(e) : this.#alone(slot)),
      );
    });
  }

  /** A blob on its own: loadBlob tries every copy the index knows and refreshes it on a miss. */
  #alone(slot: Slot): Promise<Uint8Array> {
    return this.#repo.loadBlob('data', slot.id, { signal: this.#sink.signal });
  }
}
