// Backup: walk the targets, turn every entry into a tree node, store file contents as data
// blobs (read, chunked and sealed on worker threads) and directories as tree blobs, bottom up;
// then the index (by the BlobWriter, after its packs) and the snapshot last.
// Files unchanged since the parent snapshot (type, mtime, ctime, size, inode — restic's rule)
// reuse the parent's content list without being read.
import { lstat, readdir, readlink } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import type { Readable } from 'node:stream';
import { AbortedError, InvalidInputError, SourceNotFoundError, StdinError, StowageError, addSuppressed, throwIfAborted } from '../../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository, type BlobWriter } from '../../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../../repository/id.ts';
import type { CompressionMode } from '../../../repository/compression.ts';
import { goTimeFromNs, goTimeNow, toGoTime, type GoTime } from '../../../repository/gotime.ts';
import { Lock } from '../../../repository/lock.ts';
import { Semaphore } from '../../../repository/concurrency.ts';
import { Chunker } from '../../engine/chunker.ts';
import { FilePool } from '../../engine/file-pool.ts';
import { describeMetadataLoss, SysHelper, type MetadataLoss, type Xattr } from '../../engine/syshelper.ts';
import { IdNames } from '../../engine/fsmeta.ts';
import { PathFilter } from '../../model/filter.ts';
import { goModeFromPosix, nodeTypeFromPosix } from '../../model/mode.ts';
import { compareGoStrings, goStringFromBytes } from '../../model/gojson.ts';
import type { TreeNode } from '../../model/node.ts';
import { encodeTree } from '../../model/tree.ts';
import { TreeLoader } from '../../engine/tree-loader.ts';
import { encodeSnapshot, type Snapshot, type SnapshotSummary } from '../../model/snapshot.ts';
import { findParentSnapshot, loadSnapshot } from '../../engine/select.ts';
import { PROGRAM_VERSION } from '../../../version.ts';
import { BackupMeter, type BackupProgress } from '../../engine/progress.ts';
import { startCommand, type RunningCommand } from '../../engine/stdin-command.ts';

export type { BackupProgress };


/** A stream backed up as one file (restic --stdin). */
export interface StdinStream {
  stream: Readable;
  /** The file's name at the snapshot root (default "stdin"). */
  filename?: string;
}

/**
 * A command whose standard output is backed up as one file (restic --stdin-from-command), e.g.
 * `{ command: 'pg_dump', args: ['mydb'], filename: 'mydb.sql' }`. It runs without a shell, its
 * standard input empty. When it exits non-zero or is killed, the backup fails with
 * CommandFailedError and writes no snapshot.
 */
export interface StdinCommand {
  command: string;
  args?: readonly string[];
  /** The file's name at the snapshot root (default "stdin"). */
  filename?: string;
  /** The command's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Each line the command writes to its standard error, as it comes (restic prints them). */
  onStderr?: (line: string) => void;
}

/** Options of {@link backup}: `paths` or `stdin` is required. */
export interface BackupOptions {
  /**
   * Files and folders to back up. Relative targets are stored relative to the snapshot root.
   * Paths that do not exist are reported (onError, `errors`) and left out; when none exists the
   * backup rejects with SourceNotFoundError and stores nothing.
   */
  paths?: readonly string[];
  /**
   * Back up one file instead of paths: a stream's content or a command's output. If the stream
   * errors or the command fails, the backup rejects (StdinError, CommandFailedError) and writes
   * no snapshot.
   */
  stdin?: StdinStream | StdinCommand;
  /**
   * The host recorded in the snapshot (default: os.hostname()). It also picks the parent: without
   * `parent`, the latest snapshot with this hostname and the same paths is the parent, whose
   * unchanged files are not read again. In Kubernetes the pod name is the hostname and changes with
   * every pod, so no parent is ever found and every backup reads every file again, silently: set a
   * stable hostname (e.g. the workload's name, as Stash does).
   */
  hostname?: string;
  /** Tags recorded in the snapshot (restic --tag), for filtering, grouping and retention. */
  tags?: readonly string[];
  /**
   * restic's --exclude patterns (`*`, `?`, `[…]` within a name, `**` across folders; a pattern
   * without a leading `/` matches at any depth; `!pattern` takes back an earlier match). Excluded
   * paths are not read; the patterns are recorded in the snapshot.
   */
  excludes?: readonly string[];
  /** Parent snapshot for change detection; undefined = the latest with the same host and paths; null = none. */
  parent?: string | null;
  /**
   * Compression of data blobs in a v2 repository (default `'auto'`; restic --compression). Ignored
   * in v1.
   */
  compression?: CompressionMode;
  /** The snapshot's time (default: when the backup starts); restic --time. */
  time?: GoTime;
  /** Worker threads for chunking and sealing (default: one per core). */
  threads?: number;
  /**
   * Aborts the backup: it rejects with `AbortedError`, no snapshot is written, and the packs
   * already stored stay (unreferenced until a later backup reuses them or prune removes them).
   */
  signal?: AbortSignal;
  /**
   * Hold a shared lock for the backup (default true), as restic does. Pass false when the caller
   * already holds one. `retryLock` (ms) keeps trying while an exclusive lock is held.
   */
  lock?: boolean;
  /**
   * With `lock`: keep trying this long (ms) while another process holds an exclusive lock (restic
   * --retry-lock); default 0, fail at once with `LockedError`.
   */
  retryLock?: number;
  /** Progress events (see {@link BackupProgress} for when they come). */
  onProgress?: (p: BackupProgress) => void;
  /**
   * Scan the sources beside the backup for the progress totals, percentage and ETA (default
   * true; only with `onProgress`). The scan lstat's every entry a second time: pass false to
   * spare that, and get counts without totals.
   */
  scan?: boolean;
  /** A file or folder that cannot be read is recorded and skipped (restic exit 3). */
  onError?: (path: string, error: Error) => void;
}

/** What {@link backup} wrote. */
export interface BackupResult {
  /** The new snapshot's ID. */
  snapshotId: SnapshotId;
  /** The snapshot as stored (tree, paths, host, tags, summary). */
  snapshot: Snapshot;
  /**
   * Counts and sizes of the backup: files and folders new, changed and unchanged, bytes processed
   * and added.
   */
  summary: SnapshotSummary;
  /**
   * Files or folders that could not be read, and source paths that do not exist: they are not in
   * the snapshot (restic's exit code 3).
   */
  errors: Array<{ path: string; message: string }>;
  /**
   * Set when the syscall helper (perl) is unavailable: extended attributes were not read, so the
   * snapshot has none (kinds `['xattrs']`; reason says why and how to fix it). The same line is
   * logged once as a warning through the repository's logger. Undefined when nothing was lost
   * (and for a backup of stdin).
   */
  metadataLoss?: MetadataLoss;
}

/** A folder level created from the target paths (e.g. "home" and "user" for /home/user/docs). */
interface VirtualDir {
  realPath: string;
  children: Map<string, VirtualDir | { target: string }>;
}

/**
 * Backs up files and folders (or one stream or command output, as `restic backup --stdin` and
 * `--stdin-from-command`) into a new snapshot, as
 * restic does: the same content-defined chunks (so restic and Stowage deduplicate against each
 * other), blobs the repository already has are not stored again, and files unchanged since the
 * parent snapshot (same size, mtime, ctime, inode) are not read. Chunking, hashing, compression and
 * encryption run on worker threads. Packs are stored first, then the index, then the snapshot, so a
 * crash never leaves a snapshot pointing at missing data. Holds a shared lock unless `lock: false`.
 *
 * A file or folder that cannot be read is skipped, reported to `onError` and listed in `errors`
 * (the CLI exits with 3); the backup still succeeds.
 *
 * @throws InvalidInputError when there is nothing to back up ({@link SourceNotFoundError} when
 *   none of the paths exists).
 * @throws CommandFailedError when `stdin.command` exits non-zero or is killed; StdinError when
 *   `stdin.stream` fails. No snapshot is written.
 * @throws LockedError when an exclusive lock is held past `retryLock`.
 * @throws AbortedError when `signal` aborts.
 * @throws BackendError when the storage fails after retries.
 *
 * @example
 * ```ts
 * const repo = await Repository.open(backend, { password }); // or its IndexedRepository, to reuse the index
 * const { snapshotId, summary } = await backup(repo, { paths: ['/var/lib/app'], tags: ['nightly'], hostname: 'app' });
 * console.log(snapshotId, summary.filesNew, summary.dataAdded);
 * ```
 */
export async function backup(repository: AnyRepository, options: BackupOptions): Promise<BackupResult> {
  const signal = options.signal;
  throwIfAborted(signal);
  const repo = await withIndex(repository, { signal });
  const start = goTimeNow();
  // A caller's time may be a plain { epochNs, offsetMinutes }: results carry GoTime values.
  const time = options.time === undefined ? undefined : toGoTime(options.time);
  const compression = options.compression ?? 'auto';
  if (!options.stdin && (options.paths ?? []).length === 0) throw new InvalidInputError('nothing to back up: give at least one path');
  // Source paths that do not exist are left out, as restic does; with none left there is
  // nothing to back up (checked before the lock is taken and anything is stored).
  const targets = options.stdin ? { present: [], missing: [] } : await existingTargets(options.paths!, options.onError);
  const stdinName = options.stdin?.filename ?? 'stdin';
  if (options.stdin && (!stdinName || stdinName.includes('/'))) throw new InvalidInputError(`invalid stdin file name ${JSON.stringify(stdinName)}`);
  if (options.stdin && 'command' in options.stdin && !options.stdin.command) throw new InvalidInputError('no command was given to back up the output of');
  // The lock is taken while the backup starts (taking it includes a wait of its own, to see
  // whether another process locks at the same time); nothing is stored before it is held.
  const locking = options.lock === false ? Promise.resolve(undefined) : Lock.acquire(repo.repo, { exclusive: false, retryLock: options.retryLock, signal });
  locking.catch(() => undefined);
  const writer = repo.blobWriter({ compression, signal, ready: locking });
  const helper = SysHelper.start();
  const run = new BackupRun(repo, writer, helper, options);
  run.errors.push(...targets.missing);
  let command: RunningCommand | undefined;
  // Without the lock, stop reading at once (and report the lock's error, not the stop's).
  const locked = locking.catch((e: unknown) => {
    void run.close();
    throw e;
  });
  try {
    let paths: string[];
    let work: Promise<BlobId>;
    if (options.stdin && 'command' in options.stdin) {
      command = startCommand({ ...options.stdin, filename: stdinName });
      work = saveCommandOutput(run, command, stdinName, signal);
      paths = ['/' + stdinName];
    } else if (options.stdin) {
      work = run.saveStdin(options.stdin.stream, stdinName);
      paths = ['/' + stdinName];
    } else {
      paths = targets.present.map((t) => path.resolve(t)).sort();
      work = run.resolveParent(paths).then((parentTree) => run.saveVirtual(buildVirtualTree(targets.present), parentTree));
    }
    let tree: BlobId;
    try {
      [tree] = await Promise.all([work, locked]);
    } catch (e) {
      // No command is left running (the lock may have failed while it was being read).
      if (command) {
        command.kill();
        await command.exited.catch(() => undefined);
      }
      // What was stored stays consistent: packs that landed get their index, no snapshot.
      await run.close();
      await writer.abandon().catch((later: unknown) => addSuppressed(e, later));
      throw e;
    }
    await run.close();
    // Packs and their index are stored; only now may a snapshot refer to them.
    await writer.flush();
    const end = goTimeNow();
    const summary: SnapshotSummary = {
      backupStart: start,
      backupEnd: end,
      filesNew: run.stats.filesNew,
      filesChanged: run.stats.filesChanged,
      filesUnmodified: run.stats.filesUnmodified,
      dirsNew: run.stats.dirsNew,
      dirsChanged: run.stats.dirsChanged,
      dirsUnmodified: run.stats.dirsUnmodified,
      dataBlobs: writer.stats.dataBlobs,
      treeBlobs: writer.stats.treeBlobs,
      dataAdded: writer.stats.dataAdded,
      dataAddedPacked: writer.stats.dataAddedPacked,
      totalFilesProcessed: run.stats.filesNew + run.stats.filesChanged + run.stats.filesUnmodified,
      totalBytesProcessed: run.stats.bytes,
    };
    const user = safeUser();
    const snapshot: Snapshot = {
      time: time ?? start,
      parent: run.parentId ?? undefined,
      tree,
      paths,
      hostname: options.hostname ?? os.hostname(),
      username: user.username,
      uid: user.uid,
      gid: user.gid,
      excludes: options.excludes?.length ? [...options.excludes] : undefined,
      tags: options.tags?.length ? [...options.tags] : undefined,
      programVersion: PROGRAM_VERSION,
      summary,
    };
    const snapshotId = (await repo.repo.saveUnpacked('snapshots', encodeSnapshot(snapshot), { signal })) as SnapshotId;
    // Once per run: the helper's absence means no xattrs were read (whether files had any, Node
    // cannot tell).
    let metadataLoss: MetadataLoss | undefined;
    if (!options.stdin && !(await helper.ready())) {
      metadataLoss = describeMetadataLoss('backup', ['xattrs'], {}, helper.unavailableReason ?? 'the syscall helper is unavailable');
      repo.logger.warn(metadataLoss.message, { lost: metadataLoss.kinds.join(','), snapshot: snapshotId.slice(0, 8) });
    }
    return { snapshotId, snapshot, summary, errors: run.errors, ...(metadataLoss ? { metadataLoss } : {}) };
  } catch (err) {
    // The failure is what the caller sees, even when removing the lock fails too (same outage).
    await run.close();
    await (await locking.catch(() => undefined))?.releaseAfterError(err);
    throw err;
  } finally {
    command?.kill();
    await run.close();
    helper.close();
    await (await locking.catch(() => undefined))?.release();
  }
}

function safeUser(): { username?: string; uid?: number; gid?: number } {
  try {
    const u = os.userInfo();
    return { username: u.username, uid: u.uid, gid: u.gid };
  } catch {
    return {};
  }
}

/**
 * The targets that exist, and an error entry for each that does not (reported to onError as
 * found). Throws SourceNotFoundError when none exists.
 */
async function existingTargets(
  targets: readonly string[],
  onError: BackupOptions['onError'],
): Promise<{ present: string[]; missing: Array<{ path: string; message: string }> }> {
  const present: string[] = [];
  const missing: Array<{ path: string; message: string }> = [];
  for (const t of targets) {
    try {
      await lstat(t);
      present.push(t);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const message = code === 'ENOENT' || code === 'ENOTDIR' ? `${t} does not exist, skipping` : `${t} cannot be accessed, skipping: ${(e as Error).message}`;
      missing.push({ path: t, message });
      onError?.(t, Object.assign(new Error(message, { cause: e }), { code }));
    }
  }
  if (present.length === 0) throw new SourceNotFoundError(missing.map((m) => m.path));
  return { present, missing };
}

/**
 * Saves a command's output; good only when the command then exits with status 0. On failure
 * the command is ended and waited for, so none is left running when the backup rejects.
 */
async function saveCommandOutput(run: BackupRun, command: RunningCommand, filename: string, signal: AbortSignal | undefined): Promise<BlobId> {
  // Aborting ends the command, whose output then ends: the reader sees the abort after that.
  const stop = () => command.kill();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    const tree = await run.saveStdin(command.stdout, filename);
    await command.exited;
    return tree;
  } catch (e) {
    const killedHere = command.kill();
    const failure = await command.exited.then(() => undefined, (err: unknown) => err);
    throwIfAborted(signal);
    // Output that broke off is better explained by the command's own failure, unless that
    // failure is only our kill.
    if (e instanceof StdinError && failure && !killedHere) throw failure;
    throw e;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}

/**
 * restic's layout of targets in the snapshot: an absolute target keeps its full path below the
 * root, a relative one its relative path ("." puts the folder's contents at the root).
 */
export function buildVirtualTree(targets: readonly string[]): VirtualDir | { target: string } {
  const root: VirtualDir = { realPath: '', children: new Map() };
  for (const t of targets) {
    const abs = path.resolve(t);
    const rel = path.isAbsolute(t) ? abs.slice(1) : path.normalize(t);
    const comps = rel.split('/').filter((c) => c !== '' && c !== '.');
    while (comps[0] === '..') comps.shift();
    if (comps.length === 0) {
      if (targets.length > 1) throw new InvalidInputError(`target ${t} is the snapshot root and cannot be combined with other targets`);
      return { target: abs };
    }
    let dir = root;
    let real = path.isAbsolute(t) ? '' : abs.slice(0, abs.length - comps.join('/').length - 1);
    for (let i = 0; i < comps.length; i++) {
      const c = comps[i]!;
      real = real + '/' + c;
      const last = i === comps.length - 1;
      const existing = dir.children.get(c);
      if (last) {
        if (existing) throw new InvalidInputError(`targets overlap at ${real}`);
        dir.children.set(c, { target: abs });
      } else if (!existing) {
        const next: VirtualDir = { realPath: real, children: new Map() };
        dir.children.set(c, next);
        dir = next;
      } else if ('target' in existing) {
        throw new InvalidInputError(`targets overlap at ${real}`);
      } else dir = existing;
    }
  }
  return root;
}

/** Files queued for the workers before the walk waits (bounds memory on huge trees). */
const QUEUED_FILES_LIMIT = 4096;
/** Folders listed at once (readdir, lstat, xattrs); waiting for their children holds no place. */
const FOLDERS_AT_ONCE = 8;
/** lstat calls made in one go before the event loop gets a turn. */
const STATS_AT_ONCE = 256;

/** An entry of a folder being saved. */
interface Entry {
  raw: Buffer;
  full: Buffer;
  fullStr: string;
  prev: TreeNode | undefined;
  st?: BigIntStats;
  xattrs?: Xattr[];
}

class BackupRun {
  readonly repo: IndexedRepository;
  readonly writer: BlobWriter;
  readonly helper: SysHelper;
  readonly options: BackupOptions;
  readonly names = new IdNames();
  readonly excludes: PathFilter;
  readonly errors: Array<{ path: string; message: string }> = [];
  readonly stats = { filesNew: 0, filesChanged: 0, filesUnmodified: 0, dirsNew: 0, dirsChanged: 0, dirsUnmodified: 0, bytes: 0 };
  readonly folderLimit = new Semaphore(FOLDERS_AT_ONCE);
  readonly trees: TreeLoader;
  #pool: FilePool | undefined;
  parentId: SnapshotId | null = null;
  parentTreeId: BlobId | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #meter: BackupMeter;

  constructor(repo: IndexedRepository, writer: BlobWriter, helper: SysHelper, options: BackupOptions) {
    this.repo = repo;
    this.writer = writer;
    this.helper = helper;
    this.options = options;
    this.excludes = new PathFilter(options.excludes ?? []);
    this.trees = new TreeLoader(repo, options.signal);
    const scan = options.stdin || options.scan === false ? undefined : { paths: options.paths ?? [], excludes: options.excludes, signal: options.signal };
    this.#meter = new BackupMeter(options.onProgress, scan);
  }

  /** The workers, started when the first file needs reading (a re-backup may need none). */
  get pool(): FilePool {
    if (this.#closed) throw new AbortedError('the backup was stopped');
    this.#pool ??= new FilePool({
      key: this.repo.repo.masterKeyForWorkers(),
      polynomial: this.repo.config.chunkerPolynomial,
      compress: this.writer.shouldCompress('data', 1),
      mode: this.writer.compression,
      threads: this.options.threads,
      sink: (id, sealed, ulen, plainLength) => this.writer.addSealed('data', id as BlobId, sealed, ulen, plainLength),
      has: (id) => this.writer.has('data', id as BlobId),
      // Bytes count as they are chunked, so a big file moves the progress (and its ETA) too.
      onBytes: this.options.onProgress
        ? (n, reading, worker) => {
            this.#meter.bytesDone += n;
            if (reading) this.#meter.reading(worker, typeof reading.path === 'string' ? reading.path : Buffer.from(reading.path).toString('utf8'));
            this.#meter.report();
          }
        : undefined,
    });
    return this.#pool;
  }

  close(): Promise<void> {
    if (!this.#closing) {
      this.#closed = true;
      this.#closing = Promise.all([this.#pool?.close(), this.#meter.close()]).then(() => undefined);
    }
    return this.#closing;
  }

  async resolveParent(paths: string[]): Promise<TreeNode[] | undefined> {
    const p = this.options.parent;
    if (p === null) return undefined;
    const found = p === undefined
      ? await findParentSnapshot(this.repo.repo, { hostname: this.options.hostname ?? os.hostname(), paths })
      : await loadSnapshot(this.repo.repo, p);
    if (!found) return undefined;
    this.parentId = found.id;
    this.parentTreeId = found.snapshot.tree;
    return this.loadTree(found.snapshot.tree);
  }

  async loadTree(id: BlobId | undefined): Promise<TreeNode[] | undefined> {
    if (!id) return undefined;
    try {
      return await this.trees.load(id);
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      return undefined; // an unreadable parent only costs re-reading files
    }
  }

  async saveTree(nodes: TreeNode[]): Promise<BlobId> {
    const { id } = await this.writer.saveBlob('tree', encodeTree(nodes));
    return id;
  }

  recordError(p: string, e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    this.errors.push({ path: p, message: err.message });
    this.options.onError?.(p, err);
  }

  /** Saves a level of folders made from target paths (their metadata comes from the real folders). */
  async saveVirtual(v: VirtualDir | { target: string }, parent: TreeNode[] | undefined): Promise<BlobId> {
    if ('target' in v) {
      // "." (or a lone relative folder): its contents are the root.
      const st = await lstat(v.target, { bigint: true });
      if (!st.isDirectory()) throw new InvalidInputError(`${v.target} is not a folder`);
      return (await this.saveDirContents(Buffer.from(v.target), parent, this.parentTreeId)).id;
    }
    const nodes: TreeNode[] = [];
    const targets: Entry[] = [];
    await Promise.all([...v.children].map(async ([name, child]) => {
      const prev = parent?.find((n) => n.name === name);
      if ('target' in child) {
        const full = Buffer.from(child.target);
        targets.push({ raw: Buffer.from(name), full, fullStr: child.target, prev });
      } else {
        const st = await lstat(child.realPath, { bigint: true });
        const node = this.nodeFromStat(Buffer.from(name), Buffer.from(child.realPath), st, await this.xattrsOf(Buffer.from(child.realPath)));
        node.subtree = await this.saveVirtual(child, prev?.type === 'dir' ? await this.loadTree(prev.subtree) : undefined);
        nodes.push(node);
      }
    }));
    nodes.push(...(await this.saveEntries(targets.filter((t) => this.excludes.empty || !this.excludes.matches(t.fullStr)))));
    return this.saveTree(sortByName(nodes));
  }

  async xattrsOf(full: Buffer): Promise<Xattr[] | undefined> {
    if (!(await this.helper.ready()) || !this.helper.available) return undefined;
    const list = await this.helper.listXattrs(full);
    return list.length ? list : undefined;
  }

  /**
   * Saves a folder's entries and its tree. When every node equals the parent tree's (the common
   * case in a backup after the first), that tree is taken as it is: nothing to encode or hash.
   */
  async saveDirContents(dir: Buffer, parent: TreeNode[] | undefined, parentId?: BlobId): Promise<{ id: BlobId; changed: boolean }> {
    throwIfAborted(this.options.signal);
    const entries: Entry[] = [];
    await this.folderLimit.run(async () => {
      // Pace the walk: let the workers catch up before listing more.
      if (this.#pool) await this.#pool.room(QUEUED_FILES_LIMIT);
      const names = await readdir(dir, { encoding: 'buffer' });
      const prevByName = new Map<string, TreeNode>();
      for (const n of parent ?? []) prevByName.set(n.name, n);
      for (const raw of names) {
        const full = Buffer.concat([dir, SLASH, raw]);
        const fullStr = full.toString('utf8');
        if (!this.excludes.empty && this.excludes.matches(fullStr)) continue;
        entries.push({ raw, full, fullStr, prev: prevByName.get(goStringFromBytes(raw)) });
      }
      await this.statEntries(entries);
    });
    const nodes = sortByName(await this.saveEntries(entries));
    throwIfAborted(this.options.signal);
    if (parentId && parent && sameNodes(nodes, parent)) return { id: parentId, changed: false };
    const id = await this.saveTree(nodes);
    return { id, changed: true };
  }

  /**
   * lstat and xattrs of a folder's entries; an entry that fails is recorded and dropped.
   * lstat is called synchronously, a few hundred at a time: a metadata lookup in the page cache
   * costs a third of what the same call through the thread pool costs, and between batches the
   * event loop (the workers' blobs) gets its turn.
   */
  async statEntries(entries: Entry[]): Promise<void> {
    for (let i = 0; i < entries.length; i++) {
      if (i > 0 && i % STATS_AT_ONCE === 0) await new Promise<void>((r) => setImmediate(r));
      const e = entries[i]!;
      try {
        e.st = lstatSync(e.full, { bigint: true });
      } catch (err) {
        this.recordError(e.fullStr, err);
      }
    }
    if (!(await this.helper.ready()) || !this.helper.available) return;
    const listed = entries.filter((e) => e.st && nodeTypeFromPosix(Number(e.st.mode)) !== 'socket');
    const lists = await this.helper.listXattrsMany(listed.map((e) => e.full));
    for (let i = 0; i < listed.length; i++) {
      const e = listed[i]!;
      const list = lists[i]!;
      if (list instanceof Error) {
        this.recordError(e.fullStr, list);
        e.st = undefined;
      } else if (list.length) e.xattrs = list;
    }
  }

  /** Nodes of entries (statted here when not yet), contents stored. Failed entries are left out. */
  async saveEntries(entries: Entry[]): Promise<TreeNode[]> {
    if (entries.some((e) => !e.st)) await this.statEntries(entries.filter((e) => !e.st));
    // The previous trees of the subfolders, read together while the files are looked at.
    const subtrees: BlobId[] = [];
    for (const e of entries) {
      if (e.st?.isDirectory() && e.prev?.type === 'dir' && e.prev.subtree) subtrees.push(e.prev.subtree);
    }
    if (subtrees.length) this.trees.prefetch(subtrees);
    const nodes = await Promise.all(entries.map((e) => (e.st ? this.saveEntry(e) : undefined)));
    return nodes.filter((n): n is TreeNode => n !== undefined);
  }

  /** One directory entry → its node (contents stored). undefined when unreadable. */
  async saveEntry(e: Entry): Promise<TreeNode | undefined> {
    const { full, fullStr, prev } = e;
    const st = e.st!;
    let node: TreeNode;
    try {
      node = this.nodeFromStat(e.raw, full, st, e.xattrs);
      if (node.type === 'symlink') node.linktarget = goStringFromBytes(await readlink(full, { encoding: 'buffer' }));
    } catch (err) {
      this.recordError(fullStr, err);
      return undefined;
    }
    if (node.type === 'dir') {
      try {
        const prevTree = prev?.type === 'dir' ? await this.loadTree(prev.subtree) : undefined;
        const { id } = await this.saveDirContents(full, prevTree, prevTree ? prev!.subtree : undefined);
        node.subtree = id;
        if (!prev) this.stats.dirsNew++;
        else if (prev.subtree === id) this.stats.dirsUnmodified++;
        else this.stats.dirsChanged++;
        this.#meter.dirsDone++;
      } catch (err) {
        if (err instanceof AbortedError) throw err;
        this.recordError(fullStr, err);
        return undefined;
      }
    } else if (node.type === 'file') {
      const size = Number(st.size);
      if (prev && prev.type === 'file' && unchanged(prev, node) && prev.content?.every((id) => this.writer.has('data', id))) {
        node.content = prev.content;
        this.stats.filesUnmodified++;
        this.stats.bytes += size;
      } else {
        throwIfAborted(this.options.signal);
        // The previous version's blobs that the repository has need hashing, not sealing.
        const known = prev?.type === 'file' ? prev.content?.filter((id) => this.writer.has('data', id)) : undefined;
        const result = await this.pool.process({ path: full, size, known });
        if (result.error) {
          this.#meter.finished(fullStr);
          this.recordError(fullStr, Object.assign(new Error(`${fullStr}: ${result.error.message}`), { code: result.error.code }));
          return undefined;
        }
        node.content = result.ids as BlobId[];
        node.size = result.size;
        if (prev) this.stats.filesChanged++;
        else this.stats.filesNew++;
        this.stats.bytes += result.size;
      }
      this.#meter.filesDone++;
      // A file read by the workers has had its bytes counted as they were chunked.
      if (node.content === prev?.content) this.#meter.bytesDone += size;
      this.#meter.finished(fullStr);
      this.#meter.report();
    }
    return node;
  }

  nodeFromStat(rawName: Buffer, full: Buffer, st: BigIntStats, xattrs: Xattr[] | undefined): TreeNode {
    const type = nodeTypeFromPosix(Number(st.mode));
    if (!type) throw new Error(`${full.toString('utf8')}: unsupported file type (mode ${Number(st.mode).toString(8)})`);
    const mtime = goTimeFromNs(st.mtimeNs);
    const uid = Number(st.uid);
    const gid = Number(st.gid);
    const node: TreeNode = {
      name: goStringFromBytes(rawName),
      type,
      mode: goModeFromPosix(Number(st.mode)),
      mtime,
      atime: mtime,
      ctime: goTimeFromNs(st.ctimeNs),
      uid,
      gid,
      user: this.names.user(uid),
      group: this.names.group(gid),
      inode: st.ino,
      // Stock restic writes device_id for every node (its hard-link-only mode is an opt-in
      // feature flag), so trees deduplicate against restic's only if we do the same.
      deviceId: st.dev,
      content: null,
    };
    if (type === 'file') {
      node.size = Number(st.size);
      node.content = [];
    }
    if (type !== 'dir' && type !== 'fifo' && type !== 'socket') node.links = Number(st.nlink);
    if (type === 'dev' || type === 'chardev') node.device = st.rdev;
    // listxattr order, as restic records it
    if (xattrs?.length) node.extendedAttributes = xattrs;
    return node;
  }

  /** A stream backed up as one file at the snapshot root (restic --stdin). Chunked here. */
  async saveStdin(stream: Readable, filename: string): Promise<BlobId> {
    const chunker = new Chunker(this.repo.config.chunkerPolynomial);
    chunker.reset();
    const ids: BlobId[] = [];
    let pending: Buffer[] = [];
    let size = 0;
    const emit = async (chunk: Uint8Array) => {
      const { id } = await this.writer.saveBlob('data', chunk);
      ids.push(id);
    };
    for await (const buf of piecesOf(stream, filename)) {
      throwIfAborted(this.options.signal);
      size += buf.length;
      this.#meter.streamed(buf.length, '/' + filename);
      let from = 0;
      for (;;) {
        const cut = chunker.next(buf, from);
        if (cut < 0) {
          pending.push(buf.subarray(from));
          break;
        }
        pending.push(buf.subarray(from, cut));
        await emit(Buffer.concat(pending));
        pending = [];
        from = cut;
      }
    }
    if (pending.length && pending.some((p) => p.length)) await emit(Buffer.concat(pending));
    const now = goTimeNow();
    const user = safeUser();
    const node: TreeNode = {
      name: filename,
      type: 'file',
      mode: 0o644,
      mtime: now,
      atime: now,
      ctime: now,
      uid: user.uid ?? 0,
      gid: user.gid ?? 0,
      user: user.username,
      size,
      content: ids,
    };
    this.stats.filesNew++;
    this.stats.bytes += size;
    this.#meter.filesDone++;
    this.#meter.finished('/' + filename);
    this.#meter.report();
    return this.saveTree([node]);
  }
}

/**
 * A stream's pieces as Buffers; the stream's own error becomes a StdinError (errors of the
 * consumer of a piece are not caught here: they leave the loop through return()).
 */
async function* piecesOf(stream: Readable, filename: string): AsyncGenerator<Buffer> {
  try {
    for await (const piece of stream) yield Buffer.isBuffer(piece) ? piece : Buffer.from(piece as string);
  } catch (e) {
    if (e instanceof StowageError) throw e;
    throw new StdinError(filename, `reading ${filename} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** restic's change detection: a file is unchanged when type, mtime, ctime, size and inode agree. */
function unchanged(prev: TreeNode, cur: TreeNode): boolean {
  return (
    prev.type === cur.type &&
    prev.mtime.epochNs === cur.mtime.epochNs &&
    prev.ctime.epochNs === cur.ctime.epochNs &&
    BigInt(prev.size ?? 0) === BigInt(cur.size ?? 0) &&
    BigInt(prev.inode ?? 0) === BigInt(cur.inode ?? 0)
  );
}

function sortByName(nodes: TreeNode[]): TreeNode[] {
  return nodes.sort((a, b) => compareGoStrings(a.name, b.name));
}

const SLASH = Buffer.from('/');

/**
 * Whether two node lists encode to the same tree bytes: every field equal, with the zero values
 * encodeNode leaves out (undefined, 0, '', []) counted as one. Times must agree in instant and in
 * offset (the offset is written).
 */
export function sameNodes(a: readonly TreeNode[], b: readonly TreeNode[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!sameNode(a[i]!, b[i]!)) return false;
  return true;
}

function sameNode(a: TreeNode, b: TreeNode): boolean {
  return (
    a.name === b.name &&
    a.type === b.type &&
    (a.mode ?? 0) === (b.mode ?? 0) &&
    sameTime(a.mtime, b.mtime) &&
    sameTime(a.atime, b.atime) &&
    sameTime(a.ctime, b.ctime) &&
    (a.uid ?? 0) === (b.uid ?? 0) &&
    (a.gid ?? 0) === (b.gid ?? 0) &&
    (a.user ?? '') === (b.user ?? '') &&
    (a.group ?? '') === (b.group ?? '') &&
    sameUint(a.inode, b.inode) &&
    sameUint(a.deviceId, b.deviceId) &&
    sameUint(a.size, b.size) &&
    sameUint(a.links, b.links) &&
    sameUint(a.device, b.device) &&
    (a.linktarget ?? '') === (b.linktarget ?? '') &&
    sameBytes(a.linktargetRaw, b.linktargetRaw) &&
    (a.subtree ?? '') === (b.subtree ?? '') &&
    (a.error ?? '') === (b.error ?? '') &&
    sameContent(a.content, b.content) &&
    sameXattrs(a.extendedAttributes, b.extendedAttributes) &&
    sameGeneric(a.genericAttributes, b.genericAttributes)
  );
}

function sameTime(a: GoTime, b: GoTime): boolean {
  return a.epochNs === b.epochNs && a.offsetMinutes === b.offsetMinutes;
}

function sameUint(a: number | bigint | undefined, b: number | bigint | undefined): boolean {
  if (typeof a === typeof b) return a === b || (!a && !b);
  return BigInt(a ?? 0) === BigInt(b ?? 0);
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a?.length || !b?.length) return !a?.length && !b?.length;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function sameContent(a: readonly BlobId[] | null, b: readonly BlobId[] | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameXattrs(a: TreeNode['extendedAttributes'], b: TreeNode['extendedAttributes']): boolean {
  if (!a?.length || !b?.length) return !a?.length && !b?.length;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.name !== b[i]!.name || !sameBytes(a[i]!.value, b[i]!.value)) return false;
  return true;
}

function sameGeneric(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ka = a ? Object.keys(a) : [];
  const kb = b ? Object.keys(b) : [];
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (a![k] !== b?.[k]) return false;
  return true;
}
