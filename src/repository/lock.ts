// Locks (locks/<id>) as restic writes and honours them. Shared locks (backup, restore, check)
// conflict only with exclusive ones; an exclusive lock (prune, forget, key removal) conflicts
// with every lock. A running holder refreshes its lock every 5 minutes by writing a new file
// and removing the old one; a lock older than 30 minutes, or from this host with a dead PID,
// is stale.
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CallOptions } from '../backend/backend.ts';
import { IntegrityError, NotFoundError, SizeLimitError, StowageError, addSuppressed, throwIfAborted } from '../errors.ts';
import { UNPACKED_SIZE_LIMITS } from './compression.ts';
import { isId } from './id.ts';
import { type GoTime, formatGoTime, goTimeNow, parseGoTime, goTimeToDate } from './gotime.ts';
import type { IndexedRepository, Repository } from './repository.ts';
import { ListingBackend } from './listing.ts';
import { summarizeError } from '../backend/wrappers/observe.ts';

/** Who holds a lock that blocked an operation, as read from its lock file. */
export interface LockHolder {
  /** The lock file's ID. */
  id: string;
  /**
   * Whether the lock is exclusive (prune, forget, repair) rather than shared (backup, check,
   * restore).
   */
  exclusive: boolean;
  /** The host of the process holding the lock. */
  hostname: string;
  /** The user of that process. */
  username: string;
  /** The process ID, on that host. */
  pid: number;
  /** When the lock was written, as its file says; prints and serialises as RFC 3339. */
  time: GoTime;
}

/** The repository is locked by another process (restic exit code 11). */
export class LockedError extends StowageError {
  /** The locks in the way (at least one when the lock files could be read). */
  readonly holders: LockHolder[];
  constructor(holders: LockHolder[], message?: string) {
    const h = holders[0];
    super(
      'LOCKED',
      message ??
        (h
          ? `repository is already locked ${h.exclusive ? 'exclusively' : ''} by PID ${h.pid} on ${h.hostname} by ${h.username} (lock ${h.id.slice(0, 10)}, created ${h.time})`.replace('  ', ' ')
          : 'repository is locked'),
    );
    this.holders = holders;
  }
}

/**
 * A lock file, decoded: who holds it (see LockHolder) and the holder's uid and gid when recorded.
 */
export interface LockInfo extends LockHolder {
  uid?: number;
  gid?: number;
}

/** Options of {@link Lock.acquire}. */
export interface LockOptions extends CallOptions {
  /**
   * An exclusive lock (prune, forget, repair) excludes every other lock; a shared one (backup,
   * check, restore) excludes exclusive ones only.
   */
  exclusive: boolean;
  /** Keep trying this long (ms) while another process holds a conflicting lock (restic --retry-lock). */
  retryLock?: number;
  /** Refresh interval (ms); restic: 5 minutes. */
  refreshInterval?: number;
  /** Time between writing our lock and looking for others (restic: 200 ms). */
  settleTime?: number;
}

export const STALE_AFTER_MS = 30 * 60 * 1000;
const REFRESH_MS = 5 * 60 * 1000;

/** The lock file's JSON. `time` is a GoTime, or (for tests planting odd files) the exact string to write. */
export function encodeLock(l: Omit<LockInfo, 'id' | 'time'> & { time: GoTime | string }): Uint8Array {
  const parts = [
    `"time":${JSON.stringify(typeof l.time === 'string' ? l.time : formatGoTime(l.time))}`,
    `"exclusive":${l.exclusive}`,
    `"hostname":${JSON.stringify(l.hostname)}`,
    `"username":${JSON.stringify(l.username)}`,
    `"pid":${l.pid}`,
  ];
  if (l.uid) parts.push(`"uid":${l.uid}`);
  if (l.gid) parts.push(`"gid":${l.gid}`);
  return Buffer.from(`{${parts.join(',')}}`);
}

export function decodeLock(json: Uint8Array, id: string): LockInfo {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(Buffer.from(json).toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new IntegrityError('lock is not valid JSON', { file: `locks/${id}` }, { cause: e });
  }
  if (!o || typeof o !== 'object' || typeof o.time !== 'string') throw new IntegrityError('lock has no time', { file: `locks/${id}` });
  let time: GoTime;
  try {
    time = parseGoTime(o.time);
  } catch (e) {
    throw new IntegrityError(`lock has an invalid time ${JSON.stringify(o.time).slice(0, 60)}`, { file: `locks/${id}` }, { cause: e });
  }
  return {
    id,
    time,
    exclusive: o.exclusive === true,
    hostname: typeof o.hostname === 'string' ? o.hostname : '',
    username: typeof o.username === 'string' ? o.username : '',
    pid: typeof o.pid === 'number' ? o.pid : 0,
    uid: typeof o.uid === 'number' ? o.uid : undefined,
    gid: typeof o.gid === 'number' ? o.gid : undefined,
  };
}

/** restic's rule: older than 30 min, or from this host and its process is gone. */
export function isStale(l: LockInfo, now = Date.now(), hostname = os.hostname()): boolean {
  const t = goTimeToDate(l.time).getTime();
  if (now - t > STALE_AFTER_MS) return true;
  if (l.hostname !== hostname) return false;
  // No process has a PID outside 1..2^31-1 (and kill(0) would signal our own group).
  if (!Number.isInteger(l.pid) || l.pid <= 0 || l.pid > 0x7fffffff) return true;
  try {
    process.kill(l.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Every lock in the repository, decoded (a lock removed while listing is skipped), but `except`
 * (one's own, not read). Empty lock
 * files are ignored, as restic ≥ 0.15.1 ignores them (a backend without atomic uploads can leave
 * one behind an interrupted upload); so `unlock` leaves them and only `--remove-all` removes them.
 * Throws `IntegrityError` for a damaged lock file, `SizeLimitError` (before loading it) for one
 * larger than `UNPACKED_SIZE_LIMITS.locks`.
 */
export async function listLocks(repo: Repository, options: CallOptions & { except?: string } = {}): Promise<LockInfo[]> {
  const out: LockInfo[] = [];
  const limit = UNPACKED_SIZE_LIMITS.locks;
  for await (const { name: id, size } of repo.backend.list('locks', options)) {
    if (!isId(id) || size === 0) continue;
    if (id === options.except) continue; // our own lock: known without reading it
    if (size > limit) throw new SizeLimitError(`lock file of ${size} bytes is larger than the ${limit} bytes accepted`, { file: `locks/${id}` }, limit, size);
    try {
      out.push(decodeLock(await repo.loadUnpacked('locks', id, options), id));
    } catch (e) {
      // A lock removed between list and load is simply gone.
      if (e instanceof NotFoundError) continue;
      throw e;
    }
  }
  return out;
}

/**
 * Removes stale locks (or every lock with `all`); returns the IDs removed. With `all` the lock
 * files are not read, as in restic's unlock --remove-all: it is the way to clear a damaged one.
 */
export async function unlock(repo: Repository, options: CallOptions & { all?: boolean } = {}): Promise<string[]> {
  const ids: string[] = [];
  const holders = new Map<string, LockInfo>();
  if (options.all) for await (const id of repo.listIds('locks', options)) ids.push(id);
  else {
    for (const l of await listLocks(repo, options)) {
      if (!isStale(l)) continue;
      ids.push(l.id);
      holders.set(l.id, l);
    }
  }
  for (const id of ids) {
    await repo.backend.remove({ type: 'locks', name: id }, options).catch((e) => {
      if (!(e instanceof NotFoundError)) throw e;
    });
    const holder = holders.get(id);
    if (holder) repo.logger.info('stale lock removed', { lock: id, ...describeHolder(holder) });
    else repo.logger.info('lock removed', { lock: id });
  }
  return ids;
}

/**
 * A repository lock, as restic's: a lock file refreshed every few minutes while held, so other
 * processes (restic too) can tell a live lock from a stale one. Take it with {@link Lock.acquire}
 * or, more simply, {@link withLock}.
 */
export class Lock {
  readonly #repo: Repository;
  /** Whether the lock is exclusive. */
  readonly exclusive: boolean;
  #id: string;
  #timer: NodeJS.Timeout | undefined;
  #released = false;
  #refreshing: Promise<void> = Promise.resolve();

  private constructor(repo: Repository, exclusive: boolean, id: string) {
    this.#repo = repo;
    this.exclusive = exclusive;
    this.#id = id;
  }

  /** The ID of the current lock file (a refresh writes a new one and removes the old). */
  get id(): string {
    return this.#id;
  }

  /**
   * Writes a lock file, then looks for conflicting ones (any lock for an exclusive lock, exclusive
   * locks for a shared one; stale locks conflict too until `unlock` removes them, as in restic). On
   * a conflict it removes its own file, waits (backoff up to 1 minute) and tries again until
   * `retryLock` ms have passed, then throws `LockedError` naming the holders.
   */
  static async acquire(repo: Repository, options: LockOptions): Promise<Lock> {
    const deadline = Date.now() + (options.retryLock ?? 0);
    let delay = 1000;
    for (;;) {
      throwIfAborted(options.signal);
      const id = await saveLock(repo, options.exclusive, options);
      let conflicts: LockInfo[];
      try {
        await sleep(options.settleTime ?? 200, undefined, { signal: options.signal }).catch(() => undefined);
        conflicts = (await listLocks(repo, { signal: options.signal, except: id })).filter((l) => options.exclusive || l.exclusive);
      } catch (e) {
        // Aborted, or another lock is unreadable: do not leave our own lock behind.
        await repo.backend.remove({ type: 'locks', name: id }, { missingOk: true }).catch(() => undefined);
        throw e;
      }
      if (conflicts.length === 0) {
        // Snapshots and index files are listed again from now on: a listing made before the lock
        // was held may miss what a prune or backup that ended meanwhile changed.
        if (repo.backend instanceof ListingBackend) repo.backend.drop();
        const lock = new Lock(repo, options.exclusive, id);
        lock.#startRefresh(options.refreshInterval ?? REFRESH_MS);
        repo.logger.info('lock acquired', { lock: id, exclusive: options.exclusive });
        return lock;
      }
      await repo.backend.remove({ type: 'locks', name: id }, { missingOk: true }).catch(() => undefined);
      if (Date.now() >= deadline) throw new LockedError(conflicts);
      repo.logger.info('repository is locked by another process, waiting', {
        exclusive: options.exclusive,
        retryInMs: Math.min(delay, Math.max(0, deadline - Date.now())),
        holders: conflicts.map((l) => ({ lock: l.id, ...describeHolder(l), stale: isStale(l) })),
      });
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())), undefined, { signal: options.signal }).catch(() => undefined);
      delay = Math.min(delay * 2, 60_000);
    }
  }

  #startRefresh(interval: number): void {
    this.#timer = setInterval(() => {
      this.#refreshing = this.refresh().catch((e: unknown) => {
        // The next tick tries again; a lock left unrefreshed for 30 minutes looks stale to others.
        try {
          this.#repo.logger.warn('lock refresh failed', { lock: this.#id, exclusive: this.exclusive, error: summarizeError(e) });
        } catch {
          // A logger that throws must not turn into an unhandled rejection on a timer.
        }
      });
    }, interval);
    this.#timer.unref();
  }

  /** Writes a fresh lock file, then removes the old one. */
  async refresh(): Promise<void> {
    if (this.#released) return;
    const old = this.#id;
    this.#id = await saveLock(this.#repo, this.exclusive, {});
    this.#repo.logger.debug('lock refreshed', { lock: this.#id, replaced: old, exclusive: this.exclusive });
    await this.#repo.backend.remove({ type: 'locks', name: old }, { missingOk: true }).catch((e: unknown) => {
      this.#repo.logger.debug('could not remove the replaced lock file', { lock: old, error: summarizeError(e) });
    });
  }

  /** Stops the refresh and removes the lock file; calling it again does nothing. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    await this.#refreshing;
    await this.#repo.backend.remove({ type: 'locks', name: this.#id }, { missingOk: true }).catch((e) => {
      if (!(e instanceof NotFoundError)) throw e;
    });
    this.#repo.logger.debug('lock released', { lock: this.#id, exclusive: this.exclusive });
  }

  /**
   * Releases the lock after the work done under it failed with `error`. When the release fails
   * too (often: the storage is down, which is why the work failed), its error is logged (warn)
   * and kept on `error.suppressed` (see addSuppressed), and this resolves: the caller throws
   * `error`, which names what really went wrong, not the lock file that could not be removed.
   */
  async releaseAfterError(error: unknown): Promise<void> {
    const id = this.#id;
    try {
      await this.release();
    } catch (later) {
      addSuppressed(error, later);
      try {
        this.#repo.logger.warn('could not remove the lock after the operation failed; "unlock" removes it once it is stale', { lock: id, error: summarizeError(later) });
      } catch {
        // A logger that throws must not hide the operation's error.
      }
    }
  }
}

/** Who holds a lock, for log records: what restic prints about a lock, no more. */
function describeHolder(l: LockInfo): Record<string, unknown> {
  return { time: formatGoTime(l.time), exclusive: l.exclusive, hostname: l.hostname, username: l.username, pid: l.pid };
}

async function saveLock(repo: Repository, exclusive: boolean, options: CallOptions): Promise<string> {
  const info = {
    time: goTimeNow(),
    exclusive,
    hostname: os.hostname(),
    username: safeUsername(),
    pid: process.pid,
    uid: process.getuid?.(),
    gid: process.getgid?.(),
  };
  return repo.saveUnpacked('locks', encodeLock(info), options);
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    return '';
  }
}

/**
 * Runs fn while holding a lock; the lock is released on success, error and abort. When fn fails
 * and the release fails too, fn's error is thrown, with the release's on its `suppressed`.
 */
export async function withLock<T>(repo: Repository, options: LockOptions, fn: (lock: Lock) => Promise<T>): Promise<T> {
  const lock = await Lock.acquire(repo, options);
  try {
    return await fn(lock);
  } catch (err) {
    await lock.releaseAfterError(err);
    throw err;
  } finally {
    // Nothing to do after releaseAfterError: a lock is released once.
    await lock.release();
  }
}

/**
 * Runs fn with the index loaded and a lock held. With a cache, the two are taken at once: taking
 * a lock waits (`settleTime`, 200 ms as restic) to see whether another process locks at the same
 * time, and meanwhile the index files the cache holds are read (no request: the cache folder is
 * not the truth, so nothing is listed before the lock). Once the lock is held, the index is
 * refreshed (snapshots/ and index/ listed, new index files loaded, the packs of removed ones
 * dropped), so fn sees what an index loaded under the lock holds: a prune or backup that ended
 * before the lock was held is in it. The same requests as a load under the lock; the cache's part
 * of the load's time is saved. Without a cache, the index is loaded once the lock is held.
 */
export async function withLockAndIndex<T>(
  repo: Repository,
  options: LockOptions,
  fn: (indexed: IndexedRepository, lock: Lock) => Promise<T>,
): Promise<T> {
  const cache = repo.cache;
  if (!cache) return withLock(repo, options, async (lock) => fn(await repo.loadIndex({ signal: options.signal }), lock));
  const loading = (async () => {
    const [index, snapshots] = await Promise.all([cache.cachedIds('index'), cache.cachedIds('snapshots')]);
    return repo.loadIndex({ signal: options.signal, ids: { index, snapshots } });
  })();
  loading.catch(() => undefined); // when the lock fails, its error is the one thrown
  return withLock(repo, options, async (lock) => {
    // An index file the cache held that the backend no longer has and that was not readable
    // from the cache either (damaged, or removed by another process): loaded again, under the lock.
    const early = await loading.catch((e: unknown) => {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    });
    if (!early) return fn(await repo.loadIndex({ signal: options.signal }), lock);
    await early.refresh({ signal: options.signal });
    return fn(early, lock);
  });
}

/** Options of {@link withOptionalLock}: those of the lock, and whether to take it at all. */
export interface OptionalLockOptions extends LockOptions {
  /** Take the lock (default true); false when the caller holds one already, or for --no-lock. */
  lock?: boolean;
}

/**
 * Runs fn under a lock unless `options.lock` is false, releasing it as {@link withLock} does. The
 * idiom of every operation with a `lock?: boolean` option; fn gets the lock, or undefined.
 */
export async function withOptionalLock<T>(repo: Repository, options: OptionalLockOptions, fn: (lock: Lock | undefined) => Promise<T>): Promise<T> {
  const { lock, ...lockOptions } = options;
  if (lock === false) return fn(undefined);
  return withLock(repo, lockOptions, fn);
}

export { StowageError };
