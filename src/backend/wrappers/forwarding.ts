// The base of the wrappers: a Backend that hands every call to the backend it wraps, so each
// wrapper (retry, limits, observe, faulty) overrides only the calls it changes.

import { loadPieces, saveFromFile, type Backend, type LocalFile, type CallOptions, type FileHandle, type FileInfo, type FileType, type LoadOptions, type RemoveOptions } from '../backend.ts';

/**
 * A backend that forwards every call unchanged to the backend it wraps, with the same `location`
 * and (unless given) the same `connections`. The wrappers extend it and override what they change.
 */
export class ForwardingBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  readonly #inner: Backend;

  constructor(inner: Backend, connections: number = inner.connections) {
    this.#inner = inner;
    this.location = inner.location;
    this.connections = connections;
  }

  /** The wrapped backend. */
  get inner(): Backend {
    return this.#inner;
  }

  create(options?: CallOptions): Promise<void> {
    return this.#inner.create(options);
  }

  save(h: FileHandle, data: Uint8Array, options?: CallOptions): Promise<void> {
    return this.#inner.save(h, data, options);
  }

  /** The inner backend's `saveFile`, or its `save` of the file's bytes when it has none. */
  saveFile(h: FileHandle, file: LocalFile, options?: CallOptions): Promise<void> {
    return saveFromFile(this.#inner, h, file, options);
  }

  load(h: FileHandle, options?: LoadOptions): Promise<Uint8Array> {
    return this.#inner.load(h, options);
  }

  /** The inner backend's stream, or its `load` in pieces when it has none. */
  loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array> {
    return loadPieces(this.#inner, h, options);
  }

  stat(h: FileHandle, options?: CallOptions): Promise<FileInfo> {
    return this.#inner.stat(h, options);
  }

  list(type: FileType, options?: CallOptions): AsyncIterable<FileInfo> {
    return this.#inner.list(type, options);
  }

  remove(h: FileHandle, options?: RemoveOptions): Promise<void> {
    return this.#inner.remove(h, options);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
