// Reports every backend call to a hook, for logs and metrics: what was done to which file, how
// many bytes, how long it took, how it failed. Events carry no credentials and no file contents.

import { describeFile, loadInPieces, saveFromFile, type Backend, type LocalFile, type CallOptions, type FileHandle, type FileInfo, type FileType, type LoadOptions, type RemoveOptions } from '../backend.ts';
import { BackendError, StowageError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import { redactSecrets } from '../../redact.ts';
import { ForwardingBackend } from './forwarding.ts';

export { redactSecrets };

/** A backend call, as {@link BackendEvent.op} names it. */
export type ObservedOp = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove';

/** A failure as an event carries it: a summary, never the error object with its cause chain. */
export interface ObservedError {
  /** Class name, e.g. "BackendError", "NotFoundError", "TypeError". */
  name: string;
  /** StowageError code ("BACKEND", "NOT_FOUND", …) or an OS/network code ("ECONNRESET"). */
  code?: string;
  message: string;
  /** For BackendError: whether the failure may pass. */
  transient?: boolean;
  /** For BackendError: the HTTP status, when there was one. */
  status?: number;
}

/**
 * One finished backend call, as a {@link BackendObserver} sees it: no credentials and no file
 * contents.
 */
export interface BackendEvent {
  /** The call. */
  op: ObservedOp;
  /** The file type (absent for create). */
  type?: FileType;
  /** The file name (an ID); absent for config, create and list. */
  name?: string;
  /** save: bytes sent; load: bytes received; stat: the file size. */
  bytes?: number;
  /** load: the offset asked for, when not 0. */
  offset?: number;
  /** list: the entries seen. */
  count?: number;
  /** Time spent in the wrapped backend (for list: in fetching entries, not in the caller's loop). */
  durationMs: number;
  /** How the call failed; absent when it succeeded. */
  error?: ObservedError;
}

/**
 * Receives a {@link BackendEvent} when each backend call ends (see {@link ObservedBackend},
 * `openBackend`'s `observe`). Must not throw; what it throws is ignored.
 */
export type BackendObserver = (event: BackendEvent) => void;

/**
 * Calls `observer` once per call on the wrapped backend, when the call ends. An observer that
 * throws is ignored: logging must never fail a backup.
 */
export class ObservedBackend extends ForwardingBackend {
  readonly #observer: BackendObserver;

  constructor(inner: Backend, observer: BackendObserver) {
    super(inner);
    this.#observer = observer;
  }

  override create(options: CallOptions = {}): Promise<void> {
    return this.#observe({ op: 'create' }, () => this.inner.create(options), () => ({}));
  }

  override save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    return this.#observe({ op: 'save', ...fileOf(h), bytes: data.length }, () => this.inner.save(h, data, options), () => ({}));
  }

  override saveFile(h: FileHandle, file: LocalFile, options: CallOptions = {}): Promise<void> {
    return this.#observe({ op: 'save', ...fileOf(h), bytes: file.size }, () => saveFromFile(this.inner, h, file, options), () => ({}));
  }

  override load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const base: Partial<BackendEvent> = { op: 'load', ...fileOf(h) };
    if (options.offset) base.offset = options.offset;
    return this.#observe(base, () => this.inner.load(h, options), (data) => ({ bytes: data.length }));
  }

  /**
   * One event per stream (one request), when it ends: the bytes received, and the time from its
   * start to its end (which includes the caller's pauses between pieces). A backend without
   * streams is read through `load` in pieces, an event each.
   */
  override async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    const inner = this.inner;
    if (!inner.loadStream) return yield* loadInPieces((o) => this.load(h, o), options, describeFile(h));
    const base: Partial<BackendEvent> = { op: 'load', ...fileOf(h) };
    if (options.offset) base.offset = options.offset;
    const started = performance.now();
    let bytes = 0;
    let error: ObservedError | undefined;
    try {
      for await (const piece of inner.loadStream(h, options)) {
        bytes += piece.length;
        yield piece;
      }
    } catch (err) {
      error = summarizeError(err);
      throw err;
    } finally {
      this.#emit({ ...base, ...(error ? { error } : { bytes }), durationMs: performance.now() - started } as BackendEvent);
    }
  }

  override stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    return this.#observe({ op: 'stat', ...fileOf(h) }, () => this.inner.stat(h, options), (info) => ({ bytes: info.size }));
  }

  override remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    return this.#observe({ op: 'remove', ...fileOf(h) }, () => this.inner.remove(h, options), () => ({}));
  }

  override async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    const iterator = this.inner.list(type, options)[Symbol.asyncIterator]();
    let count = 0;
    let durationMs = 0;
    let error: ObservedError | undefined;
    let ended = false;
    try {
      for (;;) {
        const started = performance.now();
        let step: IteratorResult<FileInfo>;
        try {
          step = await iterator.next();
        } catch (err) {
          ended = true;
          error = summarizeError(err);
          throw err;
        } finally {
          durationMs += performance.now() - started;
        }
        if (step.done) {
          ended = true;
          return;
        }
        count++;
        yield step.value;
      }
    } finally {
      if (!ended) await iterator.return?.();
      this.#emit({ op: 'list', type, count, durationMs, ...(error ? { error } : {}) });
    }
  }

  async #observe<T>(base: Partial<BackendEvent>, call: () => Promise<T>, after: (result: T) => Partial<BackendEvent>): Promise<T> {
    const started = performance.now();
    try {
      const result = await call();
      this.#emit({ ...base, ...after(result), durationMs: performance.now() - started } as BackendEvent);
      return result;
    } catch (err) {
      // A failed save sent nothing we can vouch for; a failed load received nothing usable.
      const { bytes: _bytes, ...rest } = base;
      this.#emit({ ...rest, durationMs: performance.now() - started, error: summarizeError(err) } as BackendEvent);
      throw err;
    }
  }

  #emit(event: BackendEvent): void {
    try {
      this.#observer(event);
    } catch {
      // Deliberately ignored; see the class comment.
    }
  }
}

/**
 * An observer that logs each backend request at debug level: "backend load" with the event's
 * fields (type, name, bytes, offset, count, durationMs rounded to 0.1 ms, error).
 */
export function logObserver(logger: Logger): BackendObserver {
  return (event) => {
    const { op, durationMs, ...rest } = event;
    logger.debug(`backend ${op}${event.error ? ' failed' : ''}`, { op, ...rest, durationMs: Math.round(durationMs * 10) / 10 });
  };
}

function fileOf(h: FileHandle): { type: FileType; name?: string } {
  return h.type === 'config' ? { type: 'config' } : { type: h.type, name: h.name };
}

/** The parts of an error that are safe to log, with anything that looks like a credential masked. */
export function summarizeError(err: unknown): ObservedError {
  if (err instanceof StowageError) {
    const out: ObservedError = { name: err.name, code: err.code, message: redactSecrets(err.message) };
    if (err instanceof BackendError) {
      out.transient = err.transient;
      if (err.status !== undefined) out.status = err.status;
    }
    return out;
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, ...(typeof code === 'string' ? { code } : {}), message: redactSecrets(err.message) };
  }
  return { name: typeof err, message: redactSecrets(String(err)) };
}

