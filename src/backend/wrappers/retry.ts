// Retries backend calls that failed for a reason that may pass: 5xx and 429 answers, timeouts,
// connection resets, truncated reads. Exponential backoff with full jitter, bounded by attempts
// and by elapsed time, as restic's retry backend does (its cap is 15 minutes; ours defaults to 5).

import { describeFile, loadInPieces, saveFromFile, type LocalFile, type RemoveOptions } from '../backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from '../backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, StowageError, throwIfAborted } from '../../errors.ts';
import { redactSecrets } from '../../redact.ts';
import type { Logger } from '../../logger.ts';
import { abortedErrorOf, transientErrors } from '../shared.ts';
import { systemClock } from './clock.ts';
import type { Clock } from './clock.ts';
import { ForwardingBackend } from './forwarding.ts';
import { summarizeError } from './observe.ts';

/** The backend calls the wrappers know about. */
export type BackendOp = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove' | 'retention';

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
 * How long and how often a failing call is retried, and how retries are reported.
 *
 * The budget, per call: at most `maxAttempts` attempts (default 12), and no attempt starts more
 * than `maxElapsedMs` (default 5 minutes) after the call began — so a call against a dead
 * endpoint fails within about 5 minutes plus one attempt's own timeout. The waits between
 * attempts are drawn at random up to 1, 2, 4, 8, 16, 32 s, then 60 s each (full jitter): with
 * the defaults, 11 waits of at most 363 s in all, about 3 minutes on average, so a call that is
 * refused at once typically gives up after its 12th attempt, some 3 minutes in, and never starts
 * one after 5 minutes. A listing that makes progress starts its budget afresh. Calls retry
 * independently: during an outage every call in flight spends its own budget.
 *
 * While it retries, the wrapper tells `onRetry` about every retry and logs them to `logger`
 * (warn), coalesced: the first retry of an outage in full, then at most one line per
 * `logIntervalMs` counting the others, a line when a call gives up, and one when calls succeed
 * again. Without a logger nothing is printed (the `stowage` command passes one that shows warnings).
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
  /**
   * Called before each backoff, e.g. to show "save data/ab/… failed, retrying in 1.2 s"; every
   * retry, not coalesced as the log lines are.
   */
  onRetry?: (info: RetryInfo) => void;
  /**
   * Logs retries at warn, coalesced (see logIntervalMs): the first retry of an outage (the call,
   * the attempt, the wait and the error summarized as ObservedError, so no credentials), counts
   * of the later ones, each call that gives up, and calls succeeding again.
   */
  logger?: Logger;
  /**
   * While calls keep failing, retries after the first are counted and logged as one line at
   * most this often: "37 more retries of 12 requests in the last 10.0 s" (default 10 000 ms;
   * 0 logs every retry).
   */
  logIntervalMs?: number;
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
  logIntervalMs: 10_000,
};

/**
 * Whether an error may go away if the call is repeated: a BackendError marked transient, or a
 * raw network error (ECONNRESET, ETIMEDOUT, UND_ERR_SOCKET, … also as the `cause` of a wrapper
 * such as fetch's TypeError). Never an abort, a missing file, a permanent (4xx) error or bad input.
 */
export function isRetryableError(err: unknown): boolean {
  if (err instanceof AbortedError || err instanceof NotFoundError) return false;
  if (err instanceof BackendError) return err.transient;
  if (err instanceof StowageError) return false;
  return transientErrors.error(err);
}

/** An abort as Stowage, fetch or AbortSignal.timeout() report it: not a failure of its own. */
function isAbortError(err: unknown): boolean {
  if (err instanceof AbortedError) return true;
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

/**
 * The retry warnings of one RetryBackend, coalesced: during an outage many calls fail at once
 * (every pack in flight), and a line per retry would flood the log.
 *
 * - The first retry of an outage (no call of this backend was being retried) is logged in full:
 *   "save data/ab/ab12… failed, retrying" with the attempt, the wait and the error.
 * - Further retries are counted; the first one at least `intervalMs` after the last line logs
 *   "37 more retries of 12 requests in the last 10.0 s" with the last call and error.
 *   An interval of 0 logs every retry in full.
 * - A call that gives up is always logged ("… failed after 12 attempts, giving up"), after the
 *   count of the retries not yet logged, if any of them were of other calls.
 * - When the last call being retried succeeds: "backend calls succeed again after 41 retries of
 *   12 requests in 63.2 s". When it fails another way (aborted, a permanent error), the retries
 *   not yet logged are.
 *
 * A logger that throws changes nothing (as ObservedBackend's observers).
 */
class RetryLog {
  readonly #logger: Logger | undefined;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  /** Calls that failed and have not succeeded or failed for good yet. */
  readonly #retrying = new Set<object>();
  #outage: { start: number; retries: number; requests: number } | undefined;
  /** Retries counted since the last line. */
  #pending: { since: number; retries: number; requests: Set<object>; last?: RetryInfo } = { since: 0, retries: 0, requests: new Set() };

  constructor(logger: Logger | undefined, clock: Clock, intervalMs: number) {
    this.#logger = logger;
    this.#clock = clock;
    this.#intervalMs = intervalMs;
  }

  /** A call failed and is about to be retried. */
  retrying(token: object, info: RetryInfo): void {
    const now = this.#clock.now();
    const newRequest = !this.#retrying.has(token);
    this.#retrying.add(token);
    if (!this.#outage) {
      this.#outage = { start: now, retries: 1, requests: 1 };
      this.#pending = { since: now, retries: 0, requests: new Set() };
      this.#logRetry(info);
      return;
    }
    this.#outage.retries++;
    if (newRequest) this.#outage.requests++;
    if (this.#intervalMs === 0) {
      this.#logRetry(info);
      return;
    }
    this.#pending.retries++;
    this.#pending.requests.add(token);
    this.#pending.last = info;
    if (now - this.#pending.since >= this.#intervalMs) this.#flush(now);
  }

  /** A retried call failed for good. */
  givingUp(token: object, op: BackendOp, file: string, attempts: number, elapsedMs: number, error: unknown): void {
    const p = this.#pending;
    // A count of this call's own retries would only repeat what "after N attempts" says.
    if (p.retries > 0 && !(p.requests.size === 1 && p.requests.has(token))) this.#flush(this.#clock.now());
    else this.#pending = { since: this.#clock.now(), retries: 0, requests: new Set() };
    this.#warn(`${op} ${file} failed after ${attempts} attempts, giving up`, { op, file, attempts, elapsedMs: Math.round(elapsedMs), error: summarizeError(error) });
  }

  /** A call ended: `ok` when it succeeded (or, for a listing, made progress again). */
  settled(token: object, ok: boolean): void {
    if (!this.#retrying.delete(token) || this.#retrying.size > 0 || !this.#outage) return;
    const now = this.#clock.now();
    const outage = this.#outage;
    this.#outage = undefined;
    if (ok) {
      const { retries, requests } = outage;
      const elapsedMs = Math.round(now - outage.start);
      this.#warn(`backend calls succeed again after ${plural(retries, 'retry', 'retries')} of ${plural(requests, 'request', 'requests')} in ${seconds(elapsedMs)} s`, { retries, requests, elapsedMs });
    } else if (this.#pending.retries > 0) this.#flush(now);
  }

  #logRetry(info: RetryInfo): void {
    const { op, file, attempt, delayMs, elapsedMs, error } = info;
    this.#warn(`${op} ${file} failed, retrying`, { op, file, attempt, delayMs, elapsedMs: Math.round(elapsedMs), error: summarizeError(error) });
  }

  /** Logs the count of the retries not logged yet, and starts counting afresh. */
  #flush(now: number): void {
    const { since, retries, requests, last } = this.#pending;
    this.#pending = { since: now, retries: 0, requests: new Set() };
    if (retries === 0) return;
    const elapsedMs = Math.round(now - since);
    this.#warn(`${plural(retries, 'more retry', 'more retries')} of ${plural(requests.size, 'request', 'requests')} in the last ${seconds(elapsedMs)} s`, {
      retries,
      requests: requests.size,
      elapsedMs,
      ...(last ? { op: last.op, file: last.file, error: summarizeError(last.error) } : {}),
    });
  }

  #warn(message: string, fields: Record<string, unknown>): void {
    try {
      this.#logger?.warn(message, fields);
    } catch {
      // Deliberately ignored.
    }
  }
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/** Marks an error that this wrapper found to be worth another attempt (kept as thrown otherwise). */
class Retryable {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

/** Wraps a backend so transient failures are retried with backoff; see RetryOptions. */
export class RetryBackend extends ForwardingBackend {
  readonly #maxElapsedMs: number;
  readonly #maxAttempts: number;
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #multiplier: number;
  readonly #onRetry: ((info: RetryInfo) => void) | undefined;
  readonly #log: RetryLog;
  readonly #clock: Clock;
  readonly #random: () => number;

  constructor(inner: Backend, options: RetryOptions = {}) {
    super(inner);
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
    this.#clock = options.clock ?? systemClock;
    this.#log = new RetryLog(options.logger, this.#clock, nonNegative(options.logIntervalMs ?? DEFAULTS.logIntervalMs, 'retry logIntervalMs'));
    this.#random = options.random ?? Math.random;
  }

  /**
   * Runs a storage call that is not a Backend method (a retention read or write, found with
   * `retentionOf`) with this wrapper's retries. The call must be safe to repeat.
   */
  retryCall<T>(op: BackendOp, file: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    return this.#retry(op, file, signal, call);
  }

  override create(options: CallOptions = {}): Promise<void> {
    return this.#retry('create', 'repository', options.signal, () => this.inner.create(options));
  }

  // Backends replace atomically, so repeating a save that may have landed is harmless.
  override save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    return this.#retry('save', describeFile(h), options.signal, () => this.inner.save(h, data, options));
  }

  // The file does not change, so each attempt reads it again.
  override saveFile(h: FileHandle, file: LocalFile, options: CallOptions = {}): Promise<void> {
    return this.#retry('save', describeFile(h), options.signal, () => saveFromFile(this.inner, h, file, options));
  }

  override load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const file = describeFile(h);
    return this.#retry('load', file, options.signal, async () => {
      let data: Uint8Array;
      try {
        data = await this.inner.load(h, options);
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

  /**
   * A stream whose request fails before its first piece is retried as a load is; one that breaks
   * after some pieces goes on from the byte it reached, with a new request (retried the same way),
   * so the caller sees each byte once. A backend without streams is read through `load` in pieces.
   */
  override async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    const inner = this.inner;
    if (!inner.loadStream) return yield* loadInPieces((o) => this.load(h, o), options, describeFile(h));
    const file = describeFile(h);
    const signal = options.signal;
    let offset = options.offset ?? 0;
    let remaining = options.length;
    // Why the last stream stopped short: the next round counts it as its first failed attempt
    // (backoff, onRetry, the log and maxAttempts see it as any retried call).
    let broken: unknown;
    while (remaining > 0) {
      const range = { signal, offset, length: remaining };
      const { pieces, first } = await this.#retry('load', file, signal, async () => {
        if (broken !== undefined) {
          const error = broken;
          broken = undefined;
          throw new Retryable(error);
        }
        const pieces = inner.loadStream!(h, range)[Symbol.asyncIterator]();
        try {
          const first = await pieces.next();
          if (first.done || first.value.length === 0) {
            throw new IntegrityError(`read returned 0 bytes instead of ${range.length} at offset ${range.offset}`, { file });
          }
          return { pieces, first: first.value };
        } catch (err) {
          await pieces.return?.().catch(() => undefined);
          if (err instanceof IntegrityError && (await this.#fileHoldsRange(h, range))) throw new Retryable(err);
          throw err;
        }
      });
      try {
        for (let piece: Uint8Array | undefined = first; piece; ) {
          const take = piece.length > remaining ? piece.subarray(0, remaining) : piece;
          offset += take.length;
          remaining -= take.length;
          yield take;
          // Asked for even after the last byte, so that a finished stream ends on its own (an
          // HTTP body read to its end keeps its connection; one stopped early closes it).
          let step: IteratorResult<Uint8Array>;
          try {
            step = await pieces.next();
          } catch (err) {
            if (remaining === 0) break; // every byte is here
            // Broken after some bytes: the next round asks for the rest (a lasting failure fails there).
            if (signal?.aborted || !(isRetryableError(err) || err instanceof IntegrityError)) throw err;
            broken = err;
            break;
          }
          if (step.done || remaining === 0) {
            if (remaining > 0) broken = new IntegrityError(`read ended ${remaining} bytes short at offset ${offset}`, { file });
            break;
          }
          piece = step.value;
        }
      } finally {
        await pieces.return?.().catch(() => undefined);
      }
    }
  }

  override stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    return this.#retry('stat', describeFile(h), options.signal, () => this.inner.stat(h, options));
  }

  /**
   * A retried remove that finds no file reports NotFoundError, as the contract asks, even though
   * an earlier attempt whose answer was lost may have removed it; that earlier failure is the
   * error's `cause`. Callers that only want the file gone ignore NotFoundError anyway.
   */
  override remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    let earlier: unknown;
    return this.#retry('remove', describeFile(h), options.signal, async () => {
      try {
        await this.inner.remove(h, options);
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
  override async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    const signal = options.signal;
    throwIfAborted(signal);
    const seen = new Set<string>();
    let attempt = 1;
    let start = this.#clock.now();
    let previous: unknown;
    const token = {};
    let settled = false;
    try {
      for (;;) {
        const iterator = this.inner.list(type, options)[Symbol.asyncIterator]();
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
              settled = true;
              this.#log.settled(token, true);
              return;
            }
            if (seen.has(step.value.name)) continue;
            seen.add(step.value.name);
            if (attempt > 1) {
              attempt = 1;
              previous = undefined;
              start = this.#clock.now();
              this.#log.settled(token, true);
            }
            yield step.value;
          }
        } finally {
          // The caller stopped early: let the wrapped listing release what it holds.
          if (!ended) await iterator.return?.();
        }
        await this.#backoffOrThrow('list', type, signal, attempt, start, failure, isRetryableError(failure), previous, token);
        previous = failure;
        attempt++;
      }
    } finally {
      // Failed, or stopped early by the caller.
      if (!settled) this.#log.settled(token, false);
    }
  }

  async #retry<T>(op: BackendOp, file: string, signal: AbortSignal | undefined, call: (attempt: number) => Promise<T>): Promise<T> {
    // Like restic: an already aborted call changes nothing, even on backends that would not notice.
    throwIfAborted(signal);
    const start = this.#clock.now();
    let previous: unknown;
    const token = {};
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const result = await call(attempt);
          this.#log.settled(token, true);
          return result;
        } catch (err) {
          const marked = err instanceof Retryable;
          const error = marked ? err.error : err;
          await this.#backoffOrThrow(op, file, signal, attempt, start, error, marked || isRetryableError(error), previous, token);
          previous = error;
        }
      }
    } catch (err) {
      this.#log.settled(token, false);
      throw err;
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
    previous: unknown,
    token: object,
  ): Promise<void> {
    if (signal?.aborted) throw this.#aborted(signal, op, file, error, previous);
    if (!retryable) throw error;
    const elapsedMs = this.#clock.now() - start;
    if (attempt >= this.#maxAttempts) throw this.#givingUp(op, file, attempt, elapsedMs, error, token);
    const bound = Math.min(this.#maxDelayMs, this.#initialDelayMs * this.#multiplier ** (attempt - 1));
    const delayMs = Math.floor(this.#random() * bound);
    // The first failure is always retried once, even after a very slow first attempt (as restic does).
    if (attempt > 1 && elapsedMs + delayMs > this.#maxElapsedMs) throw this.#givingUp(op, file, attempt, elapsedMs, error, token);
    this.#log.retrying(token, { op, file, attempt, error, delayMs, elapsedMs });
    this.#onRetry?.({ op, file, attempt, error, delayMs, elapsedMs });
    try {
      await this.#clock.sleep(delayMs, signal);
    } catch (err) {
      if (signal?.aborted) throw this.#aborted(signal, op, file, err, error);
      throw err;
    }
  }

  /**
   * The AbortedError for a call that the signal stopped: `error` is what the call or the backoff
   * threw, `previous` the failure of the attempt before it. A call cut short while it was failing
   * keeps that failure as the `cause` and names it in the message (a timeout that fires after
   * eight "connection refused" reads "… last error: … ECONNREFUSED …", not just "aborted").
   */
  #aborted(signal: AbortSignal, op: BackendOp, file: string, error: unknown, previous: unknown): AbortedError {
    let cause: unknown = error;
    if (error instanceof AbortedError) {
      // A backend's AbortedError often has fetch's AbortError as its cause, which says nothing new.
      const own = error.cause;
      if (own !== undefined && !isAbortError(own)) cause = own;
      else if (previous !== undefined) cause = previous;
      else return error;
    }
    const base = abortedErrorOf(signal);
    const last = summarizeError(cause).message;
    const where = last.includes(`${op} ${file}`) ? '' : ` (${op} ${file})`;
    return new AbortedError(`${base.message}; last error${where}: ${last}`, { cause, reason: signal.reason });
  }

  /**
   * Logs a retried call that failed for good; returns the error for the caller to throw: see
   * gaveUpError (a call that was not retried fails with its error unchanged).
   */
  #givingUp(op: BackendOp, file: string, attempts: number, elapsedMs: number, error: unknown, token: object): unknown {
    if (attempts <= 1) return error;
    this.#log.givingUp(token, op, file, attempts, elapsedMs, error);
    return gaveUpError(op, file, attempts, elapsedMs, error);
  }

  /** Whether the stored file is long enough for the range a load asked for (a stat, not retried). */
  async #fileHoldsRange(h: FileHandle, options: LoadOptions): Promise<boolean> {
    let size: number;
    try {
      ({ size } = await this.inner.stat(h, { signal: options.signal }));
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof AbortedError) throw err;
      // The stat failed too; if that may pass, so may the read: try the read again.
      return isRetryableError(err);
    }
    const end = (options.offset ?? 0) + (options.length ?? 0);
    return end <= size;
  }
}

/**
 * The error of a call the wrapper gave up on: a BackendError that names the call and the file
 * ("save data/ab/ab12…"), unless the last error's message already does, and how long it was
 * tried ("… (gave up after 8 attempts in 41.3 s)"), with the last error as `cause` and its
 * `transient` and `status`. An IntegrityError (a read that kept coming back short) names its
 * file already and is kept as it is, so that check and restore still see it for what it is.
 */
function gaveUpError(op: BackendOp, file: string, attempts: number, elapsedMs: number, error: unknown): unknown {
  if (error instanceof IntegrityError) return error;
  const message = redactSecrets(error instanceof Error ? error.message : String(error));
  const named = message.includes(`${op} ${file}`) ? message : `${op} ${file}: ${message}`;
  return new BackendError(`${named} (gave up after ${attempts} attempts in ${(elapsedMs / 1000).toFixed(1)} s)`, {
    transient: error instanceof BackendError ? error.transient : true,
    status: error instanceof BackendError ? error.status : undefined,
    cause: error,
  });
}

function nonNegative(n: number, what: string): number {
  if (typeof n !== 'number' || !(n >= 0)) throw new InvalidInputError(`${what} must be a non-negative number, got ${n}`);
  return n;
}
