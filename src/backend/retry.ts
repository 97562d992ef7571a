// Retries backend calls that failed for a reason that may pass: 5xx and 429 answers, timeouts,
// connection resets, truncated reads. Exponential backoff with full jitter, bounded by attempts
// and by elapsed time, as restic's retry backend does (its cap is 15 minutes; ours defaults to 5).
//
// Also home of wrapBackend(), which stacks the wrappers in the order they belong in.

import { describeFile } from './backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from './backend.ts';
import {
  AbortedError,
  BackendError,
  IntegrityError,
  InvalidInputError,
  NotFoundError,
  StowageError,
  throwIfAborted,
} from '../errors.ts';
import { LimitedBackend, abortedErrorOf, systemClock } from './limits.ts';
import type { Clock, LimitOptions, RateLimitOptions } from './limits.ts';
import { ObservedBackend, logObserver, summarizeError } from './observe.ts';
import type { BackendEvent, BackendObserver } from './observe.ts';
import type { Logger } from '../logger.ts';

/** The backend calls the wrappers know about. */
export type BackendOp = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove';

/** What onRetry is told about a failed attempt that is about to be repeated. */
export interface RetryInfo {
  op: BackendOp;
  /** The file ("keys/ab12…", "config"), the file type for list, "repository" for create. */
  file: string;
  /** The attempt that just failed: 1 for the first try. */
  attempt: number;
  error: unknown;
  /** How long the wrapper waits before the next attempt. */
  delayMs: number;
  /** Time since the call started (for list: since it last made progress). */
  elapsedMs: number;
}

/**
 * Options of {@link RetryBackend}: exponential backoff with full jitter, bounded by attempts and
 * elapsed time.
 */
export interface RetryOptions {
  /** No new attempt starts once this much time has passed since the call began (default 5 min). */
  maxElapsedMs?: number;
  /** Attempts in all, the first one included (default 12). 1 turns retrying off. */
  maxAttempts?: number;
  /** Upper bound of the first backoff (default 1000 ms); each later bound is `multiplier` times larger. */
  initialDelayMs?: number;
  /** Largest backoff bound (default 60 s). */
  maxDelayMs?: number;
  /** Growth of the backoff bound per attempt (default 2). */
  multiplier?: number;
  /** Called before each backoff, e.g. to log "save data/ab/… failed, retrying in 1.2 s". */
  onRetry?: (info: RetryInfo) => void;
  /**
   * Logs each retry (warn: the call, the attempt, the wait and the error summarized as
   * ObservedError, so no credentials) and each call that fails after it was retried (warn).
   */
  logger?: Logger;
  /** Time source, for tests. */
  clock?: Clock;
  /** Uniform numbers in [0, 1) for the jitter, for tests (default Math.random). */
  random?: () => number;
}

const DEFAULTS = {
  maxElapsedMs: 5 * 60_000,
  maxAttempts: 12,
  initialDelayMs: 1000,
  maxDelayMs: 60_000,
  multiplier: 2,
};

// Node's socket errors that mean "the connection went away", not "the request was wrong".
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EAI_AGAIN',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'ESOCKETTIMEDOUT',
]);

// undici (fetch) reports socket trouble as UND_ERR_*; these few are caller mistakes or aborts instead.
const UNDICI_NOT_TRANSIENT = new Set([
  'UND_ERR_ABORTED',
  'UND_ERR_INVALID_ARG',
  'UND_ERR_INVALID_RETURN_VALUE',
  'UND_ERR_NOT_SUPPORTED',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
]);

/**
 * Whether an error may go away if the call is repeated: a BackendError marked transient, or a
 * raw network error (ECONNRESET, ETIMEDOUT, UND_ERR_SOCKET, … also as the `cause` of a wrapper
 * such as fetch's TypeError). Never an abort, a missing file, a permanent (4xx) error or bad input.
 */
export function isRetryableError(err: unknown): boolean {
  if (err instanceof AbortedError || err instanceof NotFoundError) return false;
  if (err instanceof BackendError) return err.transient;
  if (err instanceof StowageError) return false;
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    if ((current as { name?: unknown }).name === 'AbortError') return false;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (NETWORK_CODES.has(code)) return true;
      if (code.startsWith('UND_ERR_')) return !UNDICI_NOT_TRANSIENT.has(code);
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** Marks an error that this wrapper found to be worth another attempt (kept as thrown otherwise). */
class Retryable {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

/** Wraps a backend so transient failures are retried with backoff; see RetryOptions. */
export class RetryBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  readonly #inner: Backend;
  readonly #maxElapsedMs: number;
  readonly #maxAttempts: number;
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #multiplier: number;
  readonly #onRetry: ((info: RetryInfo) => void) | undefined;
  readonly #logger: Logger | undefined;
  readonly #clock: Clock;
  readonly #random: () => number;

  constructor(inner: Backend, options: RetryOptions = {}) {
    this.#inner = inner;
    this.location = inner.location;
    this.connections = inner.connections;
    this.#maxElapsedMs = nonNegative(options.maxElapsedMs ?? DEFAULTS.maxElapsedMs, 'retry maxElapsedMs');
    this.#maxAttempts = options.maxAttempts ?? DEFAULTS.maxAttempts;
    if (!Number.isInteger(this.#maxAttempts) || this.#maxAttempts < 1) {
      throw new InvalidInputError(`retry maxAttempts must be a positive integer, got ${this.#maxAttempts}`);
    }
    this.#initialDelayMs = nonNegative(options.initialDelayMs ?? DEFAULTS.initialDelayMs, 'retry initialDelayMs');
    this.#maxDelayMs = nonNegative(options.maxDelayMs ?? DEFAULTS.maxDelayMs, 'retry maxDelayMs');
    this.#multiplier = options.multiplier ?? DEFAULTS.multiplier;
    if (!(this.#multiplier >= 1)) throw new InvalidInputError(`retry multiplier must be at least 1, got ${this.#multiplier}`);
    this.#onRetry = options.onRetry;
    this.#logger = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
  }

  /** The wrapped backend. */
  get inner(): Backend {
    return this.#inner;
  }

  create(options: CallOptions = {}): Promise<void> {
    return this.#retry('create', 'repository', options.signal, () => this.#inner.create(options));
  }

  // Backends replace atomically, so repeating a save that may have landed is harmless.
  save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    return this.#retry('save', describeFile(h), options.signal, () => this.#inner.save(h, data, options));
  }

  load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const file = describeFile(h);
    return this.#retry('load', file, options.signal, async () => {
      let data: Uint8Array;
      try {
        data = await this.#inner.load(h, options);
      } catch (err) {
        // A short read is a broken transfer when the file holds the range, damage when it does not.
        if (err instanceof IntegrityError && (await this.#fileHoldsRange(h, options))) throw new Retryable(err);
        throw err;
      }
      if (options.length !== undefined && data.length !== options.length) {
        const offset = options.offset ?? 0;
        throw new Retryable(
          new IntegrityError(`read returned ${data.length} bytes instead of ${options.length} at offset ${offset}`, { file }),
        );
      }
      return data;
    });
  }

  stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    return this.#retry('stat', describeFile(h), options.signal, () => this.#inner.stat(h, options));
  }

  /**
   * A retried remove that finds no file reports NotFoundError, as the contract asks, even though
   * an earlier attempt whose answer was lost may have removed it; that earlier failure is the
   * error's `cause`. Callers that only want the file gone ignore NotFoundError anyway.
   */
  remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    let earlier: unknown;
    return this.#retry('remove', describeFile(h), options.signal, async () => {
      try {
        await this.#inner.remove(h, options);
      } catch (err) {
        if (earlier !== undefined && err instanceof NotFoundError && err.cause === undefined) {
          throw new NotFoundError(err.file, { cause: earlier });
        }
        earlier = err;
        throw err;
      }
    });
  }

  /**
   * Lists with restarts: after a retryable failure the listing starts over and skips the names
   * already yielded. Progress (a new name) resets the attempt count and the elapsed-time budget,
   * so a long listing that fails now and then still completes.
   */
  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    const signal = options.signal;
    throwIfAborted(signal);
    const seen = new Set<string>();
    let attempt = 1;
    let start = this.#clock.now();
    for (;;) {
      const iterator = this.#inner.list(type, options)[Symbol.asyncIterator]();
      let ended = false;
      let failure: unknown;
      try {
        for (;;) {
          let step: IteratorResult<FileInfo>;
          try {
            step = await iterator.next();
          } catch (err) {
            ended = true;
            failure = err;
            break;
          }
          if (step.done) {
            ended = true;
            return;
          }
          if (seen.has(step.value.name)) continue;
          seen.add(step.value.name);
          if (attempt > 1) {
            attempt = 1;
            start = this.#clock.now();
          }
          yield step.value;
        }
      } finally {
        // The caller stopped early: let the wrapped listing release what it holds.
        if (!ended) await iterator.return?.();
      }
      await this.#backoffOrThrow('list', type, signal, attempt, start, failure, isRetryableError(failure));
      attempt++;
    }
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  async #retry<T>(op: BackendOp, file: string, signal: AbortSignal | undefined, call: (attempt: number) => Promise<T>): Promise<T> {
    // Like restic: an already aborted call changes nothing, even on backends that would not notice.
    throwIfAborted(signal);
    const start = this.#clock.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await call(attempt);
      } catch (err) {
        const marked = err instanceof Retryable;
        const error = marked ? err.error : err;
        await this.#backoffOrThrow(op, file, signal, attempt, start, error, marked || isRetryableError(error));
      }
    }
  }

  /** Sleeps before the next attempt, or throws `error` when there is none to be made. */
  async #backoffOrThrow(
    op: BackendOp,
    file: string,
    signal: AbortSignal | undefined,
    attempt: number,
    start: number,
    error: unknown,
    retryable: boolean,
  ): Promise<void> {
    if (signal?.aborted) throw error instanceof AbortedError ? error : abortedErrorOf(signal, error);
    if (!retryable) throw error;
    const elapsedMs = this.#clock.now() - start;
    if (attempt >= this.#maxAttempts) throw this.#givingUp(op, file, attempt, elapsedMs, error);
    const bound = Math.min(this.#maxDelayMs, this.#initialDelayMs * this.#multiplier ** (attempt - 1));
    const delayMs = Math.floor(this.#random() * bound);
    // The first failure is always retried once, even after a very slow first attempt (as restic does).
    if (attempt > 1 && elapsedMs + delayMs > this.#maxElapsedMs) throw this.#givingUp(op, file, attempt, elapsedMs, error);
    this.#warn(`${op} ${file} failed, retrying`, { op, file, attempt, delayMs, elapsedMs: Math.round(elapsedMs), error: summarizeError(error) });
    this.#onRetry?.({ op, file, attempt, error, delayMs, elapsedMs });
    await this.#clock.sleep(delayMs, signal);
  }

  /** Logs a retried call that failed for good; returns its error, for the caller to throw. */
  #givingUp(op: BackendOp, file: string, attempts: number, elapsedMs: number, error: unknown): unknown {
    if (attempts > 1) {
      this.#warn(`${op} ${file} failed after ${attempts} attempts, giving up`, { op, file, attempts, elapsedMs: Math.round(elapsedMs), error: summarizeError(error) });
    }
    return error;
  }

  /** A logger that throws must not change what the call does (as ObservedBackend's observers). */
  #warn(message: string, fields: Record<string, unknown>): void {
    try {
      this.#logger?.warn(message, fields);
    } catch {
      // Deliberately ignored.
    }
  }

  /** Whether the stored file is long enough for the range a load asked for (a stat, not retried). */
  async #fileHoldsRange(h: FileHandle, options: LoadOptions): Promise<boolean> {
    let size: number;
    try {
      ({ size } = await this.#inner.stat(h, { signal: options.signal }));
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof AbortedError) throw err;
      // The stat failed too; if that may pass, so may the read: try the read again.
      return isRetryableError(err);
    }
    const end = (options.offset ?? 0) + (options.length ?? 0);
    return end <= size;
  }
}

function nonNegative(n: number, what: string): number {
  if (typeof n !== 'number' || !(n >= 0)) throw new InvalidInputError(`${what} must be a non-negative number, got ${n}`);
  return n;
}

// ---- composition ----------------------------------------------------------------------------

/** Options of {@link wrapBackend}. */
export interface WrapOptions {
  /** Retry transient failures (default: on, with RetryOptions' defaults); false turns it off. */
  retry?: RetryOptions | false;
  /** Calls in flight at once (default: the backend's own `connections`). */
  connections?: number;
  /** Upload/download bandwidth caps in bytes per second. */
  rateLimit?: RateLimitOptions;
  /** Sees every request that reaches the backend, each retry attempt separately. */
  observe?: BackendObserver;
  /**
   * Logs retries and failures for good (warn, see RetryOptions.logger, which it is the default
   * of) and every request that reaches the backend (debug, one record per BackendEvent).
   */
  logger?: Logger;
}

/**
 * Stacks the wrappers, outermost first: retry → limits → observe → backend.
 *
 * - Retry is outermost so every attempt queues for a connection afresh: a call sleeping in its
 *   backoff holds no connection, and the others keep working (restic stacks them the same way).
 * - Limits sit below retry so each attempt's bytes count against the rate limit, as they cross
 *   the wire again.
 * - Observe is innermost so each event is one real request: its duration excludes queueing and
 *   throttling, and a call retried three times shows up as three events.
 */
export function wrapBackend(backend: Backend, options: WrapOptions = {}): Backend {
  let wrapped: Backend = backend;
  const observers = [options.observe, options.logger && logObserver(options.logger)].filter((o): o is BackendObserver => o !== undefined);
  if (observers.length === 1) wrapped = new ObservedBackend(wrapped, observers[0]!);
  else if (observers.length > 1) wrapped = new ObservedBackend(wrapped, (event: BackendEvent) => observers.forEach((o) => callSafely(o, event)));
  const limits: LimitOptions = { connections: options.connections ?? backend.connections, ...options.rateLimit };
  wrapped = new LimitedBackend(wrapped, limits);
  if (options.retry !== false) wrapped = new RetryBackend(wrapped, { logger: options.logger, ...options.retry });
  return wrapped;
}

/** One observer's failure must not keep the event from the next one (ObservedBackend ignores it too). */
function callSafely(observer: BackendObserver, event: BackendEvent): void {
  try {
    observer(event);
  } catch {
    // Deliberately ignored, as ObservedBackend does.
  }
}
