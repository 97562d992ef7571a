// What every command shares: the context, opening and locking the repository, output helpers.
import { FlagError, type Flags, type FlagSpec } from './args.ts';
import { InvalidInputError, NotFoundError } from '../errors.ts';
import { openBackend } from '../backend/location.ts';
import type { Backend } from '../backend/backend.ts';
import { Repository, type IndexedRepository } from '../repository/repository.ts';
import { withLockAndIndex, withOptionalLock } from '../repository/lock.ts';
import { defaultCacheDir, removeOldCaches, type CacheOptions } from '../repository/cache.ts';
import type { HeldType } from '../repository/listing.ts';
import { parseCompressionMode, type CompressionMode } from '../repository/compression.ts';
import type { BlobId } from '../repository/id.ts';
import type { SnapshotEntry, SnapshotFilter } from '../snapshot/engine/select.ts';
import { encodeSnapshot } from '../snapshot/model/snapshot.ts';
import { decodeTree } from '../snapshot/model/tree.ts';
import { LOG_LEVELS, type Logger, type LogLevel } from '../logger.ts';
import type { ProgressOperation, ProgressReporter } from './progress.ts';
import { parseSize } from '../snapshot/operations/prune.ts';
import { checkMemoryLimit } from '../memory-budget.ts';

export interface CommandContext {
  flags: Flags;
  env: NodeJS.ProcessEnv;
  signal: AbortSignal;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  /** restic's verbosity level: 0, 1 with -v, 2 with -vv (or --verbose=N); 0 with --quiet. */
  verbosity: number;
  /** Writes to stdout; a status line on the terminal is cleared first. */
  out(s: string): void;
  /** Writes to stderr; a status line on the terminal is cleared first. */
  err(s: string): void;
  repoLocation(): string;
  password(): string;
  retryLock(): number;
  /** Where the library's log records go: stderr, at the level cliLogLevel picks. */
  logger: Logger;
  /**
   * The command's progress reporter (status line on a terminal, JSON status with --json where
   * restic has one, nothing with --quiet). Anything written through out, err or the logger
   * clears its line first, so output never lands in the middle of it.
   */
  progress(operation: ProgressOperation): ProgressReporter;
}

/**
 * The CLI's log level: warnings (backend retries, a failed lock refresh) by default, as restic
 * prints its retries; errors only with --quiet; info (repository opened, index loaded, locks)
 * with --verbose. $STOWAGE_LOG_LEVEL (debug, info, warn, error, silent) overrides both; debug
 * shows every backend request.
 */
export function cliLogLevel(options: { quiet: boolean; verbose: boolean; env: NodeJS.ProcessEnv }): LogLevel | 'silent' {
  const fromEnv = options.env.STOWAGE_LOG_LEVEL?.trim().toLowerCase();
  if (fromEnv) {
    if (fromEnv === 'silent' || (LOG_LEVELS as readonly string[]).includes(fromEnv)) return fromEnv as LogLevel | 'silent';
    throw new InvalidInputError(`invalid $STOWAGE_LOG_LEVEL ${JSON.stringify(options.env.STOWAGE_LOG_LEVEL)}: expected one of ${[...LOG_LEVELS, 'silent'].join(', ')}`);
  }
  if (options.quiet) return 'error';
  return options.verbose ? 'info' : 'warn';
}

export interface Command {
  summary: string;
  usage: string;
  flags: FlagSpec[];
  run(ctx: CommandContext): Promise<number>;
}

export const FILTER_FLAGS: FlagSpec[] = [
  { name: 'host', short: 'H', kind: 'list', arg: 'HOST', help: 'only snapshots of this host (repeatable)' },
  { name: 'tag', kind: 'list', arg: 'TAG[,TAG]', help: 'only snapshots with these tags (comma = and; repeat = or)' },
  { name: 'path', kind: 'list', arg: 'PATH', help: 'only snapshots that include this path (repeatable)' },
];

/**
 * restic's snapshot filter flags: --host defaults to $RESTIC_HOST when not given, and a single
 * `--host ""` means any host (as restic 0.19's finalizeSnapshotFilter).
 */
export function filterFrom(f: Flags, env: NodeJS.ProcessEnv = {}): SnapshotFilter {
  let hosts = f.list('host');
  if (hosts.length === 0 && env.RESTIC_HOST) hosts = [env.RESTIC_HOST];
  if (hosts.length === 1 && hosts[0] === '') hosts = [];
  return {
    hosts,
    tags: f.list('tag').map((t) => t.split(',').filter((x) => x !== '')),
    paths: f.list('path'),
  };
}

export async function backendFor(ctx: CommandContext): Promise<Backend> {
  const extended: Record<string, string> = {};
  for (const o of ctx.flags.list('option')) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new InvalidInputError(`invalid option ${JSON.stringify(o)}: expected key=value`);
    extended[o.slice(0, eq)] = o.slice(eq + 1);
  }
  const kib = (name: string) => {
    const v = ctx.flags.int(name);
    return v === undefined ? undefined : v * 1024;
  };
  const up = kib('limit-upload');
  const down = kib('limit-download');
  return openBackend(ctx.repoLocation(), {
    env: ctx.env,
    extended,
    // restic's --cacert takes comma-separated lists too, and defaults to $RESTIC_CACERT (the same form).
    cacert: cacertFrom(ctx),
    insecureTls: ctx.flags.bool('insecure-tls'),
    rateLimit: up || down ? { uploadBytesPerSecond: up, downloadBytesPerSecond: down } : undefined,
    logger: ctx.logger,
  });
}

function cacertFrom(ctx: CommandContext): string[] {
  const given = ctx.flags.list('cacert');
  const list = given.length > 0 ? given : ctx.env.RESTIC_CACERT ? [ctx.env.RESTIC_CACERT] : [];
  return list.flatMap((v) => v.split(',')).filter((v) => v !== '');
}

/** The cache base folder the CLI uses: `--cache-dir`, else restic's rules in Stowage's own folder ({@link defaultCacheDir}). */
export function cacheDirFrom(ctx: CommandContext): string {
  return ctx.flags.string('cache-dir') || defaultCacheDir(ctx.env);
}

/**
 * The cache the CLI opens a repository with: on by default, off with `--no-cache`. With
 * `--cleanup-cache`, caches not used for 30 days are removed first (as restic does).
 */
export async function cacheFrom(ctx: CommandContext): Promise<CacheOptions | false> {
  if (ctx.flags.bool('no-cache')) return false;
  const dir = cacheDirFrom(ctx);
  if (ctx.flags.bool('cleanup-cache')) {
    const removed = await removeOldCaches(dir).catch((e: unknown) => {
      ctx.logger.warn('old caches could not be removed', { dir, error: String((e as Error).message ?? e) });
      return [];
    });
    if (removed.length > 0 && !ctx.quiet && !ctx.json) ctx.err(`removing ${removed.length} old cache dirs from ${dir}\n`);
  }
  return { dir };
}

/** A --as-of style flag's value: an instant with a date and a zone (RFC 3339, e.g. 2026-12-06T04:00:00Z). */
export function parseAsOf(value: string, flag: string): Date {
  const d = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(value.trim()) ? new Date(value.trim()) : new Date(NaN);
  if (!Number.isFinite(d.getTime())) throw new InvalidInputError(`--${flag} must be an RFC 3339 time with a zone, e.g. 2026-12-06T04:00:00Z; got ${JSON.stringify(value)}`);
  return d;
}

export async function openRepo(ctx: CommandContext, options: { cache?: boolean | CacheOptions; prefetch?: readonly HeldType[] } = {}): Promise<Repository> {
  // restic checks the pack size as it opens any repository, whatever the command.
  packSizeFrom(ctx);
  const backend = await backendFor(ctx);
  const asOf = ctx.flags.string('as-of');
  return Repository.open(backend, {
    ...(asOf !== undefined ? { asOf: parseAsOf(asOf, 'as-of') } : {}),
    // A command is short: one listing of snapshots/ and index/ per open serves all of it.
    holdListings: true,
    prefetch: options.prefetch,
    password: ctx.password(),
    insecureNoPassword: ctx.flags.bool('insecure-no-password'),
    keyHint: ctx.flags.string('key-hint') ?? ctx.env.RESTIC_KEY_HINT,
    signal: ctx.signal,
    logger: ctx.logger,
    cache: options.cache === false || ctx.flags.bool('no-cache') ? false : typeof options.cache === 'object' ? options.cache : await cacheFrom(ctx),
  });
}

/**
 * Runs fn with the repository opened and locked (unless --no-lock for read-only commands); with
 * the local cache unless `cache: false` or --no-cache; `cache: { dir }` names another folder (check's temporary one).
 */
export async function withRepo<T>(
  ctx: CommandContext,
  lock: 'none' | 'shared' | 'exclusive',
  fn: (repo: Repository) => Promise<T>,
  options: { cache?: boolean | CacheOptions; prefetch?: readonly HeldType[] } = {},
): Promise<T> {
  const take = lock !== 'none' && !ctx.flags.bool('no-lock');
  // Listings made before a lock is held are not used under it (see Lock.acquire): a locked
  // command lists snapshots and index files after the lock, once; one without a lock lists them
  // beside the config and key reads (`prefetch` names which, when not both).
  const repo = await openRepo(ctx, { ...options, prefetch: take ? [] : options.prefetch });
  try {
    return await withOptionalLock(repo, { lock: take, exclusive: lock === 'exclusive', retryLock: ctx.retryLock(), signal: ctx.signal }, () => fn(repo));
  } finally {
    await repo.backend.close();
  }
}

/**
 * Runs fn with the index loaded under a lock (unless --no-lock): the cache's index files are read
 * while the lock is taken, then brought up to date once it is held (see `withLockAndIndex`), which
 * takes that work out of the command's time at no request more.
 */
export async function withIndexedRepo<T>(ctx: CommandContext, lock: 'shared' | 'exclusive', fn: (repo: IndexedRepository) => Promise<T>): Promise<T> {
  // Nothing listed before the lock is held (see withRepo); with --no-lock, beside the open.
  const repo = await openRepo(ctx, { prefetch: ctx.flags.bool('no-lock') ? undefined : [] });
  try {
    if (ctx.flags.bool('no-lock')) return await fn(await repo.loadIndex({ signal: ctx.signal }));
    return await withLockAndIndex(repo, { exclusive: lock === 'exclusive', retryLock: ctx.retryLock(), signal: ctx.signal }, (indexed) => fn(indexed));
  } finally {
    await repo.backend.close();
  }
}

export function compressionFrom(ctx: CommandContext): CompressionMode {
  return parseCompressionMode(ctx.flags.string('compression') ?? ctx.env.RESTIC_COMPRESSION ?? 'auto');
}

/**
 * --max-memory SIZE, else $STOWAGE_MAX_MEMORY: the memory budget of a backup, restore or check in bytes
 * (restic's size syntax: a number with an optional k/m/g/t suffix, powers of 1024); undefined
 * when neither is set (the library then follows the container's cgroup limit, if any).
 */
export function maxMemoryFrom(ctx: CommandContext): number | undefined {
  const flag = ctx.flags.string('max-memory');
  const value = flag ?? (ctx.env.STOWAGE_MAX_MEMORY || undefined);
  if (value === undefined) return undefined;
  const what = flag !== undefined ? '--max-memory' : '$STOWAGE_MAX_MEMORY';
  return checkMemoryLimit(parseSize(value.trim(), what), what);
}

/**
 * --pack-size MiB, else $RESTIC_PACK_SIZE (an empty one is unset), as restic 0.19.1 takes them: an
 * unsigned integer (the flag's errors are pflag's, the variable's restic's "invalid value for"),
 * 0 for the default 16 MiB, else 4 to 128 MiB (restic's errors as it opens the repository).
 * Undefined for the default.
 */
export function packSizeFrom(ctx: Pick<CommandContext, 'flags' | 'env'>): number | undefined {
  const flag = ctx.flags.string('pack-size');
  const value = flag ?? (ctx.env.RESTIC_PACK_SIZE || undefined);
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  const max = flag !== undefined ? Number.MAX_SAFE_INTEGER : 2 ** 32 - 1;
  if (!(n <= max)) {
    const why = `strconv.ParseUint: parsing ${JSON.stringify(value)}: ${Number.isNaN(n) ? 'invalid syntax' : 'value out of range'}`;
    if (flag !== undefined) throw new FlagError(`invalid argument ${JSON.stringify(value)} for "--pack-size" flag: ${why}`);
    throw new InvalidInputError(`invalid value for RESTIC_PACK_SIZE ${JSON.stringify(value)}: ${why}`);
  }
  if (n === 0) return undefined;
  if (n < 4) throw new InvalidInputError('pack size smaller than minimum of 4 MiB');
  if (n > 128) throw new InvalidInputError('pack size larger than limit of 128 MiB');
  return n * 1024 * 1024;
}

/** A snapshot as restic prints it: restic's fields only (other tools' fields are kept in the file, not shown). */
export function snapshotJson(e: SnapshotEntry): Record<string, unknown> {
  const o = JSON.parse(Buffer.from(encodeSnapshot({ ...e.snapshot, extra: undefined })).toString('utf8')) as Record<string, unknown>;
  return { ...o, id: e.id, short_id: e.id.slice(0, 8) };
}

export function formatTime(t: string): string {
  const d = new Date(t);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(3)} ${units[i]}`;
}

/** "ID[:subfolder]" as restic's restore and dump accept. */
export function splitSnapshotRef(ref: string): [string, string] {
  const i = ref.indexOf(':');
  return i < 0 ? [ref, ''] : [ref.slice(0, i), ref.slice(i + 1)];
}

export async function findSubtree(repo: IndexedRepository, root: BlobId, sub: string): Promise<BlobId> {
  let tree = root;
  for (const part of sub.split('/').filter(Boolean)) {
    const node = decodeTree(await repo.loadBlob('tree', tree), tree).find((n) => n.name === part);
    if (!node || node.type !== 'dir' || !node.subtree) throw new NotFoundError(`path ${sub} in snapshot`);
    tree = node.subtree;
  }
  return tree;
}


/**
 * Prints the message a command ends with and returns its exit code: the text on stderr, or with
 * --json restic's documented `exit_error` message (`{"message_type":"exit_error","code":N,
 * "message":"…"}`, one line on stderr).
 */
export function exitWith(ctx: Pick<CommandContext, 'json' | 'err'>, code: number, message: string): number {
  if (ctx.json) ctx.err(JSON.stringify({ message_type: 'exit_error', code, message }) + '\n');
  else ctx.err(message + '\n');
  return code;
}
