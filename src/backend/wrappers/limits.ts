// Keeps a backend within bounds: at most `connections` calls in flight (restic's "sema" backend,
// which lets lock files through) and, optionally, an average upload and download bandwidth
// (restic's --limit-upload/-download).

import { describeFile, loadInPieces, saveFromFile, type Backend, type LocalFile, type CallOptions, type FileHandle, type FileInfo, type FileType, type LoadOptions, type RemoveOptions } from '../backend.ts';
import { InvalidInputError, throwIfAborted } from '../../errors.ts';
import { abortedErrorOf, checkConnections } from '../shared.ts';
import { systemClock } from './clock.ts';
import type { Clock } from './clock.ts';
import { ForwardingBackend } from './forwarding.ts';

// ---- connections ------------------------------------------------------------------------------

/** A listing's hold on a connection: in use, paused at an item (lendable), or given away. */
interface ListLease {
  state: 'active' | 'idle' | 'none';
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * A counting semaphore whose waiters can be aborted, and which can borrow the connection of a
 * listing that is paused at an item. Without borrowing, code that loads files inside a
 * `for await (… of backend.list())` loop would wait forever with one connection.
 */
export class ConnectionPool {
  readonly size: number;
  #free: number;
  readonly #waiters: Waiter[] = [];
  readonly #idle = new Set<ListLease>();

  constructor(size: number) {
    this.size = size;
    this.#free = size;
  }

  /** Calls waiting for a connection. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Connections in use (paused listings included). */
  get inUse(): number {
    return this.size - this.#free;
  }

  /** Waits for a connection. `first` puts the caller at the head of the queue. */
  acquire(signal?: AbortSignal, first = false): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortedErrorOf(signal));
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    const lease = this.#idle.values().next().value;
    if (lease !== undefined) {
      // The paused listing's connection passes straight to this caller; it queues again when it resumes.
      this.#idle.delete(lease);
      lease.state = 'none';
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(abortedErrorOf(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      if (first) this.#waiters.unshift(waiter);
      else this.#waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) {
      if (next.onAbort) next.signal?.removeEventListener('abort', next.onAbort);
      next.resolve();
    } else {
      this.#free++;
    }
  }

  /** A listing that holds a connection pauses at an item: someone waiting may take it. */
  pause(lease: ListLease): void {
    if (lease.state !== 'active') return;
    if (this.#waiters.length > 0) {
      lease.state = 'none';
      this.release();
    } else {
      lease.state = 'idle';
      this.#idle.add(lease);
    }
  }

  /** A listing resumes: it keeps its connection if nobody borrowed it, else queues first in line. */
  async resume(lease: ListLease, signal?: AbortSignal): Promise<void> {
    if (lease.state === 'idle') {
      this.#idle.delete(lease);
      lease.state = 'active';
      return;
    }
    if (lease.state === 'none') {
      await this.acquire(signal, true);
      lease.state = 'active';
    }
  }

  /** A listing ends: whatever it still holds goes back. */
  end(lease: ListLease): void {
    if (lease.state === 'idle') this.#idle.delete(lease);
    if (lease.state !== 'none') this.release();
    lease.state = 'none';
  }
}

// ---- bandwidth --------------------------------------------------------------------------------

/**
 * A token bucket in bytes that may go into debt: a transfer larger than the bucket starts after
 * the debt of those before it is paid, so the average rate holds for any mix of sizes.
 */
export class TokenBucket {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;

  constructor(bytesPerSecond: number, burstBytes: number, clock: Clock = systemClock) {
    this.bytesPerSecond = bytesPerSecond;
    this.burstBytes = burstBytes;
    this.#clock = clock;
    this.#tokens = burstBytes;
    this.#last = clock.now();
  }

  /** Takes `bytes` tokens, waiting until the bucket is out of debt again. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (bytes <= 0) return;
    this.#refill();
    this.#tokens -= bytes;
    if (this.#tokens >= 0) return;
    try {
      await this.#clock.sleep((-this.#tokens / this.bytesPerSecond) * 1000, signal);
    } catch (err) {
      // Nothing was sent: give the tokens back.
      this.#tokens += bytes;
      throw err;
    }
  }

  #refill(): void {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.burstBytes, this.#tokens + ((now - this.#last) / 1000) * this.bytesPerSecond);
    this.#last = now;
  }
}

// ---- the wrapper --------------------------------------------------------------------------------

/** Bandwidth caps (token buckets), as the CLI's `--limit-upload` / `--limit-download`. */
export interface RateLimitOptions {
  /** Average bytes per second for saves (default: unlimited). */
  uploadBytesPerSecond?: number;
  /** Average bytes per second for loads (default: unlimited). */
  downloadBytesPerSecond?: number;
  /** Bytes that may pass at once after a quiet spell (default: one second's worth). */
  burstBytes?: number;
}

/** Options of {@link LimitedBackend}: a connection limit and optional bandwidth caps. */
export interface LimitOptions extends RateLimitOptions {
  /** Calls in flight at once (default: the wrapped backend's `connections`). */
  connections?: number;
  /** Time source, for tests. */
  clock?: Clock;
}

/**
 * At most `connections` calls in flight; a listing counts as one for as long as it runs, but
 * lends its connection to a waiting call while the caller handles an item. Calls on lock files
 * (save, load, stat, remove of `locks`) pass the limit, as in restic: a lock refresh must never
 * queue behind pack uploads, or the lock goes stale while the backup waits. With rate limits, a
 * save waits (holding its connection) until the upload bucket allows its bytes; a load waits
 * before the request when its length is known, otherwise after the bytes arrived. Whole calls
 * are throttled, not the bytes within one: the average holds, a single request runs at full speed.
 */
export class LimitedBackend extends ForwardingBackend {
  readonly #pool: ConnectionPool;
  readonly #upload: TokenBucket | undefined;
  readonly #download: TokenBucket | undefined;

  constructor(inner: Backend, options: LimitOptions = {}) {
    super(inner, checkConnections(options.connections ?? inner.connections, inner.location));
    this.#pool = new ConnectionPool(this.connections);
    const clock = options.clock ?? systemClock;
    this.#upload = bucketFor(options.uploadBytesPerSecond, options.burstBytes, clock, 'uploadBytesPerSecond');
    this.#download = bucketFor(options.downloadBytesPerSecond, options.burstBytes, clock, 'downloadBytesPerSecond');
  }

  /** Connections in use and calls waiting for one, for tests and progress displays. */
  get usage(): { inUse: number; waiting: number } {
    return { inUse: this.#pool.inUse, waiting: this.#pool.waiting };
  }

  override create(options: CallOptions = {}): Promise<void> {
    return this.#withConnection(undefined, options.signal, () => this.inner.create(options));
  }

  override save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    return this.#withConnection(h, options.signal, async () => {
      await this.#upload?.take(data.length, options.signal);
      await this.inner.save(h, data, options);
    });
  }

  override saveFile(h: FileHandle, file: LocalFile, options: CallOptions = {}): Promise<void> {
    return this.#withConnection(h, options.signal, async () => {
      await this.#upload?.take(file.size, options.signal);
      await saveFromFile(this.inner, h, file, options);
    });
  }

  override load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    return this.#withConnection(h, options.signal, async () => {
      const known = options.length !== undefined;
      if (known) await this.#download?.take(options.length!, options.signal);
      const data = await this.inner.load(h, options);
      if (!known) await this.#download?.take(data.length, options.signal);
      return data;
    });
  }

  /**
   * A stream holds its connection until it ends or the caller stops (a paused caller pauses the
   * transfer, not the connection's use); the download rate is taken piece by piece. A backend
   * without streams is read through `load` in pieces, each taking a connection.
   */
  override async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    const inner = this.inner;
    if (!inner.loadStream) return yield* loadInPieces((o) => this.load(h, o), options, describeFile(h));
    if (h.type === 'locks') return yield* inner.loadStream(h, options);
    await this.#pool.acquire(options.signal);
    try {
      for await (const piece of inner.loadStream(h, options)) {
        await this.#download?.take(piece.length, options.signal);
        yield piece;
      }
    } finally {
      this.#pool.release();
    }
  }

  override stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    return this.#withConnection(h, options.signal, () => this.inner.stat(h, options));
  }

  override remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    return this.#withConnection(h, options.signal, () => this.inner.remove(h, options));
  }

  override async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    await this.#pool.acquire(options.signal);
    const lease: ListLease = { state: 'active' };
    try {
      for await (const info of this.inner.list(type, options)) {
        this.#pool.pause(lease);
        yield info;
        await this.#pool.resume(lease, options.signal);
      }
    } finally {
      this.#pool.end(lease);
    }
  }

  /** Runs `call` on a connection of the pool; a call on a lock file needs none (see the class comment). */
  async #withConnection<T>(h: FileHandle | undefined, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    if (h?.type === 'locks') {
      throwIfAborted(signal);
      return await call();
    }
    await this.#pool.acquire(signal);
    try {
      return await call();
    } finally {
      this.#pool.release();
    }
  }
}

function bucketFor(rate: number | undefined, burst: number | undefined, clock: Clock, what: string): TokenBucket | undefined {
  if (rate === undefined) return undefined;
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) {
    throw new InvalidInputError(`rate limit ${what} must be a positive number of bytes per second, got ${rate}`);
  }
  const size = burst ?? Math.max(rate, 1);
  if (typeof size !== 'number' || !Number.isFinite(size) || size < 0) {
    throw new InvalidInputError(`rate limit burstBytes must be a non-negative number, got ${burst}`);
  }
  return new TokenBucket(rate, size, clock);
}
