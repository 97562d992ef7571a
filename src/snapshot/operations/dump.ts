// restic's `dump`: one file of a snapshot as a stream (blobs read in order, a few ahead, each
// verified before its bytes are passed on), or a folder — or the whole snapshot — as a tar or
// zip archive laid out as restic 0.19 writes it (the engine's archive writers: blobs read ahead
// in pack order within a memory budget, decoded by worker threads).
import os from 'node:os';
import { Readable } from 'node:stream';
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, InvalidInputError, StowageError } from '../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository } from '../../repository/repository.ts';
import type { BlobId } from '../../repository/id.ts';
import type { TreeNode } from '../model/node.ts';
import { nodeNameToBytes } from '../model/node.ts';
import { goQuoteInner } from '../model/gojson.ts';
import { decodeTree, nodeNameProblem } from '../model/tree.ts';
import type { SnapshotEntry } from '../engine/select.ts';
import type { SnapshotFilter } from '../model/snapshot.ts';
import { findNodeByPath, resolveSnapshotRef } from '../engine/select.ts';
import { ByteBudget, type Reservation } from '../engine/archive/budget.ts';
import type { ArchivePath, ArchiveSink } from '../engine/archive/contents.ts';
import { writeTar } from '../engine/archive/tar.ts';
import { writeZip } from '../engine/archive/zip.ts';
import { DecodePool } from '../engine/decode-pool.ts';

/** Options of {@link dumpFile} and {@link dump}: the filter picks the snapshot `"latest"` means. */
export interface DumpOptions extends CallOptions, SnapshotFilter {
  /** Blobs of a single file read ahead of the consumer (default 4: up to ~32 MiB with restic's chunk sizes). */
  readAhead?: number;
}

/** A file found in a snapshot, with its content as a stream. */
export interface DumpedFile {
  snapshot: SnapshotEntry;
  /** The file's tree node (size, mode, times, owner). */
  node: TreeNode;
  /** The file's size in bytes. */
  size: number;
  /**
   * The content. Each blob is verified (MAC and SHA-256) before it is pushed; a blob that fails
   * destroys the stream with its typed error (`IntegrityError`, `NotFoundError`, `AbortedError`).
   */
  stream: Readable;
}

/**
 * Finds the file at `path` in the snapshot `ref` ("latest", an ID or unique prefix, optionally
 * "ID:subfolder" with `path` below that folder) and returns its node and content stream. Lookup
 * errors (no such snapshot or path, not a file) reject here, before any byte is streamed; a
 * folder is refused (see {@link dump} for folders).
 *
 * @example
 * const { stream, size } = await dumpFile(repo, 'latest', '/etc/hosts', { hosts: ['web-1'] });
 * stream.pipe(process.stdout);
 */
export async function dumpFile(repository: AnyRepository, ref: string, path: string, options: DumpOptions = {}): Promise<DumpedFile> {
  const repo = await withIndex(repository, options);
  const resolved = await resolveSnapshotRef(repo, ref, options);
  const where = `snapshot ${resolved.snapshot.id.slice(0, 8)}`;
  const node = await findNodeByPath(repo, resolved.tree, path, where, options);
  if (node.type !== 'file') {
    throw new InvalidInputError(`${path} in ${where} is a ${node.type === 'dir' ? 'folder' : node.type}, not a file (dump() writes a folder as an archive)`);
  }
  return { snapshot: resolved.snapshot, node, size: Number(node.size ?? 0), stream: fileStream(repo, node, options) };
}

function fileStream(repo: IndexedRepository, node: TreeNode, options: DumpOptions): Readable {
  const readAhead = Math.max(1, options.readAhead ?? 4);
  return Readable.from(readBlobs(repo, node.content ?? [], readAhead, options), { objectMode: false });
}

/** Options of {@link dump}. */
export interface DumpArchiveOptions extends DumpOptions {
  /** The archive a folder is written as: 'tar' (default) or 'zip', as restic's `--archive`. */
  archive?: 'tar' | 'zip';
  /** Plaintext of blobs read ahead of the archive's consumer, in bytes (default 64 MiB). */
  memoryLimit?: number;
  /** Worker threads that verify and decrypt an archive's blobs (default: cores, at most 4; 0: this thread). */
  decodeThreads?: number;
}

/** What {@link dump} found and streams. */
export interface Dumped {
  snapshot: SnapshotEntry;
  /** 'file': the content of one file; 'tar' or 'zip': an archive of a folder (or of the snapshot). */
  kind: 'file' | 'tar' | 'zip';
  /** The file or folder dumped; undefined for the whole snapshot ("/"). */
  node?: TreeNode;
  /**
   * The bytes. A failure after the first byte (a damaged blob: `IntegrityError`; `AbortedError`)
   * destroys the stream with its typed error; destroying the stream stops the reads.
   */
  stream: Readable;
}

/**
 * restic's `dump`: the entry at `path` in the snapshot `ref` ("latest", an ID or unique prefix,
 * optionally "ID:subfolder" with `path` below it). A file streams its content; a folder streams
 * as a tar (default) or zip archive of what it holds, and "/" as one of the whole snapshot (or
 * subfolder), with restic 0.19.1's entries and headers: paths relative to the snapshot root
 * ("home/user/a.txt"; "a.txt" below "/"), no entry for the folder itself, hard links as full
 * copies, special files of the folder itself as empty entries and deeper ones left out. Lookup
 * errors reject here with restic's texts ("cannot dump file: path \"/x\" not found in snapshot").
 *
 * @example
 * const { stream } = await dump(repo, 'latest', '/home/user/work', { archive: 'zip' });
 * await pipeline(stream, createWriteStream('work.zip'));
 */
export async function dump(repository: AnyRepository, ref: string, path: string, options: DumpArchiveOptions = {}): Promise<Dumped> {
  const archive = options.archive ?? 'tar';
  if (archive !== 'tar' && archive !== 'zip') throw new InvalidInputError(`unknown archive format ${JSON.stringify(archive)}`);
  const repo = await withIndex(repository, options);
  const resolved = await resolveSnapshotRef(repo, ref, options);
  const parts = splitPath(cleanPath(path));
  const snapshot = resolved.snapshot;
  if (parts[0] === '') return { snapshot, kind: archive, stream: archiveStream(repo, resolved.tree, Buffer.alloc(0), archive, options) };
  let tree = resolved.tree;
  let item = '';
  for (let i = 0; i < parts.length; i++) {
    item = cleanPath(`${item}/${parts[i]!}`);
    const nodes = await loadNodes(repo, tree, options.signal);
    const node = nodes.find((n) => n.name === parts[i]);
    if (!node) throw new StowageError('NOT_FOUND', `cannot dump file: path ${quote(item)} not found in snapshot`);
    const last = i === parts.length - 1;
    if (last && node.type === 'file') return { snapshot, kind: 'file', node, stream: fileStream(repo, node, options) };
    if (node.type === 'dir' && node.subtree) {
      if (!last) {
        tree = node.subtree;
        continue;
      }
      const prefix = Buffer.concat([...parts.map((p) => Buffer.concat([nodeNameToBytes(p), Buffer.from('/')]))]);
      return { snapshot, kind: archive, node, stream: archiveStream(repo, node.subtree, prefix, archive, options) };
    }
    throw new InvalidInputError(`cannot dump file: ${quote(item)} should be a ${last ? 'file' : 'dir'}, but is a ${quote(node.type)}`);
  }
  throw new StowageError('NOT_FOUND', `cannot dump file: path ${quote(item)} not found in snapshot`);
}

/** Go's %q of a string (strconv.Quote). */
function quote(s: string): string {
  return `"${goQuoteInner(s)}"`;
}

/** Go's path.Clean. */
function cleanPath(p: string): string {
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
    } else out.push(part);
  }
  const joined = out.join('/');
  return rooted ? '/' + joined : joined || '.';
}

/** restic's splitPath: "/" → [""], "/a/b" and "a/b" → ["a", "b"]. */
function splitPath(p: string): string[] {
  if (p === '/') return [''];
  return p.replace(/^\//, '').split('/');
}

async function loadNodes(repo: IndexedRepository, tree: BlobId, signal: AbortSignal | undefined): Promise<TreeNode[]> {
  return decodeTree(await repo.loadBlob('tree', tree, { signal }), tree);
}

/**
 * restic's walk of a dumped folder: its own entries whatever their type, below them only files,
 * folders and symlinks; depth first, folders before what they hold. Names that cannot be a path
 * component ('', '.', '..', '/', NUL) are left out (restic's trees never hold them).
 */
async function* dumpEntries(repo: IndexedRepository, tree: BlobId, prefix: Buffer, signal: AbortSignal, top: boolean): AsyncGenerator<ArchivePath> {
  for (const node of await loadNodes(repo, tree, signal)) {
    if (nodeNameProblem(node.name) !== undefined) continue;
    if (!top && node.type !== 'file' && node.type !== 'dir' && node.type !== 'symlink') continue;
    const name = Buffer.concat([prefix, nodeNameToBytes(node.name)]);
    if (node.type === 'dir') {
      const path = Buffer.concat([name, Buffer.from('/')]);
      yield { path, node };
      if (node.subtree) yield* dumpEntries(repo, node.subtree, path, signal, false);
    } else yield { path: name, node };
  }
}

function archiveStream(repo: IndexedRepository, tree: BlobId, prefix: Buffer, archive: 'tar' | 'zip', options: DumpArchiveOptions): Readable {
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const sink = new QueueSink(signal);
  const threads = options.decodeThreads ?? Math.min(4, os.availableParallelism());
  const budget = new ByteBudget(options.memoryLimit ?? 64 * 1024 * 1024);
  void (async () => {
    const pool = threads > 0 ? new DecodePool({ key: repo.repo.masterKeyForWorkers(), threads }) : undefined;
    try {
      const entries = dumpEntries(repo, tree, prefix, signal, true);
      if (archive === 'zip') await writeZip(repo, entries, sink, budget, pool, { deflate: true, specials: 'empty' });
      else await writeTar(repo, entries, sink, budget, pool, { specials: 'regular' });
      sink.end();
    } catch (e) {
      sink.end(e);
    } finally {
      await pool?.close();
    }
  })();
  return Readable.from(sink.chunks(() => stop.abort(new AbortedError('the dump stream was closed'))), { objectMode: false });
}

/**
 * An archive's bytes on their way to an async iterator: small pieces gathered into 64 KiB
 * chunks, writes held back while more than 4 MiB wait, each chunk's reservation released when
 * the consumer has taken it.
 */
class QueueSink implements ArchiveSink {
  readonly signal: AbortSignal;
  readonly #queue: Array<{ chunk: Uint8Array; reservation?: Reservation }> = [];
  #queued = 0;
  #gathered: Buffer[] = [];
  #gatheredBytes = 0;
  #ended = false;
  #error: unknown;
  #wakeConsumer: (() => void) | undefined;
  #waiters: Array<() => void> = [];
  static readonly LIMIT = 4 * 1024 * 1024;
  static readonly GATHER = 64 * 1024;

  constructor(signal: AbortSignal) {
    this.signal = signal;
    signal.addEventListener('abort', () => this.#wake(), { once: true });
  }

  async write(chunk: Uint8Array, reservation?: Reservation): Promise<void> {
    this.#check(reservation);
    if (chunk.length < 16 * 1024) {
      this.#gathered.push(Buffer.from(chunk));
      this.#gatheredBytes += chunk.length;
      reservation?.release();
      if (this.#gatheredBytes >= QueueSink.GATHER) this.#pushGathered();
    } else {
      this.#pushGathered();
      this.#push(chunk, reservation);
    }
    while (this.#queued > QueueSink.LIMIT) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
      this.#check();
    }
  }

  async flush(): Promise<void> {
    this.#pushGathered();
  }

  async flushed(): Promise<void> {
    while (this.#queue.length > 0) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
      this.#check();
    }
  }

  /** No more writes; `error` ends the stream with it. */
  end(error?: unknown): void {
    this.#pushGathered();
    this.#ended = true;
    this.#error = error;
    this.#wake();
  }

  async *chunks(onClose: () => void): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const next = this.#queue.shift();
        if (next) {
          this.#queued -= next.chunk.length;
          this.#wake();
          yield next.chunk;
          next.reservation?.release();
          continue;
        }
        if (this.#ended) {
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        await new Promise<void>((resolve) => (this.#wakeConsumer = resolve));
      }
    } finally {
      if (!this.#ended) onClose();
      for (const q of this.#queue.splice(0)) q.reservation?.release();
    }
  }

  #check(reservation?: Reservation): void {
    if (this.signal.aborted) {
      reservation?.release();
      throw this.signal.reason instanceof AbortedError ? this.signal.reason : new AbortedError('dump aborted', { reason: this.signal.reason });
    }
  }

  #pushGathered(): void {
    if (this.#gatheredBytes === 0) return;
    const b = Buffer.concat(this.#gathered, this.#gatheredBytes);
    this.#gathered = [];
    this.#gatheredBytes = 0;
    this.#push(b);
  }

  #push(chunk: Uint8Array, reservation?: Reservation): void {
    this.#queue.push({ chunk, reservation });
    this.#queued += chunk.length;
    this.#wake();
  }

  #wake(): void {
    const c = this.#wakeConsumer;
    this.#wakeConsumer = undefined;
    c?.();
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

async function* readBlobs(repo: IndexedRepository, content: readonly BlobId[], readAhead: number, options: CallOptions): AsyncGenerator<Uint8Array> {
  const pending: Array<Promise<Uint8Array>> = [];
  let next = 0;
  const fill = () => {
    while (pending.length < readAhead && next < content.length) {
      const p = repo.loadBlob('data', content[next++]!, options);
      p.catch(() => {}); // awaited in order below; this only keeps an early failure from being "unhandled"
      pending.push(p);
    }
  };
  fill();
  while (pending.length > 0) {
    const data = await pending.shift()!;
    fill();
    yield data;
  }
}
