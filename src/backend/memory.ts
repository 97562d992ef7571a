// A repository held in a Map, for unit tests. It follows the same rules as the real backends
// (names, ranges, NotFoundError, aborts) so code tested against it behaves the same on disk.

import { describeFile, layoutPath } from './backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from './backend.ts';
import { NotFoundError, throwIfAborted } from '../errors.ts';
import { checkConnections, checkHandle, checkType, fileInfo, isIdName, resolveRange } from './shared.ts';

/** Options of {@link MemoryBackend}. */
export interface MemoryBackendOptions {
  /** Requests in flight at once (default 8). */
  connections?: number;
}

let instances = 0;

/**
 * A repository held in memory, for tests: it follows the same rules as the real backends (names,
 * ranges, `NotFoundError`, aborts), so code tested against it behaves the same on disk. Its
 * contents go when it is garbage collected.
 */
export class MemoryBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  /** Stored bytes by layout path ("keys/<id>", "data/ab/<id>", "config"). */
  private readonly files = new Map<string, Uint8Array>();

  constructor(opts: MemoryBackendOptions = {}) {
    this.location = `memory:${++instances}`;
    this.connections = checkConnections(opts.connections ?? 8, this.location);
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    checkHandle(h);
    // A copy, so the caller reusing its buffer cannot change what is stored.
    this.files.set(layoutPath(h), data.slice());
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    throwIfAborted(options.signal);
    const stored = this.get(h);
    const { offset, length } = resolveRange(options, stored.length, describeFile(h));
    return stored.slice(offset, offset + length);
  }

  /** A byte range in pieces of at most 1 MiB (copies, as `load` gives). */
  async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    throwIfAborted(options.signal);
    const stored = this.get(h);
    const { offset, length } = resolveRange(options, stored.length, describeFile(h));
    for (let done = 0; done < length; done += PIECE) {
      throwIfAborted(options.signal);
      yield stored.slice(offset + done, offset + Math.min(length, done + PIECE));
    }
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    throwIfAborted(options.signal);
    const stored = this.get(h);
    return fileInfo(h, stored.length);
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    // Iterate over a snapshot so saves and removes during the listing do not disturb it.
    for (const [path, bytes] of [...this.files]) {
      throwIfAborted(options.signal);
      const info = listedAs(type, path, bytes);
      if (info) yield info;
    }
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    this.get(h);
    this.files.delete(layoutPath(h));
  }

  async close(): Promise<void> {
    // The files stay: a test may close a repository and open it again on the same backend.
  }

  private get(h: FileHandle): Uint8Array {
    checkHandle(h);
    const stored = this.files.get(layoutPath(h));
    if (!stored) throw new NotFoundError(describeFile(h));
    return stored;
  }
}

const PIECE = 1024 * 1024;

/** The listing entry for a stored path if it belongs to `type` and has an ID name. */
function listedAs(type: FileType, path: string, bytes: Uint8Array): FileInfo | undefined {
  if (type === 'config') return path === 'config' ? { name: 'config', size: bytes.length } : undefined;
  const parts = path.split('/');
  if (parts[0] !== type) return undefined;
  const name = parts[parts.length - 1];
  return isIdName(name) ? { name, size: bytes.length } : undefined;
}
