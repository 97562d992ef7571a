// Backup: walk the targets, turn every entry into a tree node, store file contents as data
// blobs (read, chunked and sealed on worker threads) and directories as tree blobs, bottom up;
// then the index (by the BlobWriter, after its packs) and the snapshot last.
// Files unchanged since the parent snapshot (type, mtime, ctime, size, inode — restic's rule)
// reuse the parent's content list without being read.
import { lstat, readdir, readlink } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import type { Readable } from 'node:stream';
import { AbortedError, InvalidInputError, throwIfAborted } from '../errors.ts';
import type { IndexedRepository, BlobWriter } from '../repository/repository.ts';
import type { BlobId, SnapshotId } from '../repository/id.ts';
import type { CompressionMode } from '../repository/compression.ts';
import { goTimeFromNs, goTimeNow, formatGoTime, type GoTime } from '../repository/gotime.ts';
import { Semaphore } from '../repository/concurrency.ts';
import { Lock } from '../repository/lock.ts';
import { Chunker } from './chunker.ts';
import { FilePool } from './file-pool.ts';
import { SysHelper } from './syshelper.ts';
import { IdNames } from './fsmeta.ts';
import { PathFilter } from './filter.ts';
import { goModeFromPosix, nodeTypeFromPosix } from './mode.ts';
import { compareGoStrings, goStringFromBytes } from './gojson.ts';
import type { TreeNode } from './node.ts';
import { encodeTree, decodeTree } from './tree.ts';
import { encodeSnapshot, type Snapshot, type SnapshotSummary } from './snapshot.ts';
import { findParentSnapshot, loadSnapshot } from './queries.ts';

export const PROGRAM_VERSION = 'stowage 0.1.0';

export interface BackupProgress {
  filesDone: number;
  dirsDone: number;
  bytesDone: number;
  currentFile?: string;
}

export interface BackupOptions {
  /** Files and folders to back up. Relative targets are stored relative to the snapshot root. */
  paths?: string[];
  /** Back up a stream as one file instead of paths (restic --stdin). */
  stdin?: { stream: Readable; filename: string };
  hostname?: string;
  tags?: string[];
  excludes?: string[];
  /** Parent snapshot for change detection; undefined = the latest with the same host and paths; null = none. */
  parent?: string | null;
  compression?: CompressionMode;
  time?: GoTime;
  /** Worker threads for chunking and sealing (default: one per core). */
  threads?: number;
  signal?: AbortSignal;
  /**
   * Hold a shared lock for the backup (default true), as restic does. Pass false when the caller
   * already holds one. `retryLock` (ms) keeps trying while an exclusive lock is held.
   */
  lock?: boolean;
  retryLock?: number;
  onProgress?: (p: BackupProgress) => void;
  /** A file or folder that cannot be read is recorded and skipped (restic exit 3). */
  onError?: (path: string, error: Error) => void;
}

export interface BackupResult {
  snapshotId: SnapshotId;
  snapshot: Snapshot;
  summary: SnapshotSummary;
  /** Files or folders that could not be read (they are not in the snapshot). */
  errors: Array<{ path: string; message: string }>;
}

/** A folder level created from the target paths (e.g. "home" and "user" for /home/user/docs). */
interface VirtualDir {
  realPath: string;
  children: Map<string, VirtualDir | { target: string }>;
}

export async function backup(repo: IndexedRepository, options: BackupOptions): Promise<BackupResult> {
  const signal = options.signal;
  throwIfAborted(signal);
  const start = goTimeNow();
  const compression = options.compression ?? 'auto';
  const lock = options.lock === false ? undefined : await Lock.acquire(repo.repo, { exclusive: false, retryLock: options.retryLock, signal });
  const writer = repo.blobWriter({ compression, signal });
  const helper = SysHelper.start();
  const run = new BackupRun(repo, writer, helper, options);
  try {
    let tree: BlobId;
    let paths: string[];
    if (options.stdin) {
      tree = await run.saveStdin(options.stdin.stream, options.stdin.filename);
      paths = ['/' + options.stdin.filename];
    } else {
      const targets = options.paths ?? [];
      if (targets.length === 0) throw new InvalidInputError('nothing to back up: give at least one path');
      paths = targets.map((t) => path.resolve(t)).sort();
      const parentTree = await run.resolveParent(paths);
      tree = await run.saveVirtual(buildVirtualTree(targets), parentTree);
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
      time: options.time ?? start,
      parent: run.parentId ?? undefined,
      tree,
      paths,
      hostname: options.hostname ?? os.hostname(),
      username: user.username,
      uid: user.uid,
      gid: user.gid,
      excludes: options.excludes?.length ? options.excludes : undefined,
      tags: options.tags?.length ? options.tags : undefined,
      programVersion: PROGRAM_VERSION,
      summary,
    };
    const snapshotId = (await repo.repo.saveUnpacked('snapshots', encodeSnapshot(snapshot), { signal })) as SnapshotId;
    return { snapshotId, snapshot, summary, errors: run.errors };
  } finally {
    await run.close();
    helper.close();
    await lock?.release();
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
 * restic's layout of targets in the snapshot: an absolute target keeps its full path below the
 * root, a relative one its relative path ("." puts the folder's contents at the root).
 */
export function buildVirtualTree(targets: string[]): VirtualDir | { target: string } {
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

class BackupRun {
  readonly repo: IndexedRepository;
  readonly writer: BlobWriter;
  readonly helper: SysHelper;
  readonly options: BackupOptions;
  readonly names = new IdNames();
  readonly excludes: PathFilter;
  readonly errors: Array<{ path: string; message: string }> = [];
  readonly stats = { filesNew: 0, filesChanged: 0, filesUnmodified: 0, dirsNew: 0, dirsChanged: 0, dirsUnmodified: 0, bytes: 0 };
  readonly fsLimit = new Semaphore(16);
  readonly fileLimit: Semaphore;
  #pool: FilePool | undefined;
  parentId: SnapshotId | null = null;
  #closed = false;
  #progress: BackupProgress = { filesDone: 0, dirsDone: 0, bytesDone: 0 };

  constructor(repo: IndexedRepository, writer: BlobWriter, helper: SysHelper, options: BackupOptions) {
    this.repo = repo;
    this.writer = writer;
    this.helper = helper;
    this.options = options;
    this.excludes = new PathFilter(options.excludes ?? []);
    this.fileLimit = new Semaphore(Math.max(4, (options.threads ?? os.availableParallelism()) * 4));
  }

  get pool(): FilePool {
    this.#pool ??= new FilePool({
      key: this.repo.repo.masterKeyForWorkers(),
      polynomial: this.repo.config.chunkerPolynomial,
      compress: this.writer.shouldCompress('data', 1),
      mode: this.writer.compression,
      threads: this.options.threads,
    });
    return this.#pool;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool?.close();
  }

  async resolveParent(paths: string[]): Promise<TreeNode[] | undefined> {
    const p = this.options.parent;
    if (p === null) return undefined;
    const found = p === undefined
      ? await findParentSnapshot(this.repo.repo, { hostname: this.options.hostname ?? os.hostname(), paths })
      : await loadSnapshot(this.repo.repo, p);
    if (!found) return undefined;
    this.parentId = found.id;
    return this.loadTree(found.snapshot.tree);
  }

  async loadTree(id: BlobId | undefined): Promise<TreeNode[] | undefined> {
    if (!id) return undefined;
    try {
      return decodeTree(await this.repo.loadBlob('tree', id, { signal: this.options.signal }), id);
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      return undefined; // an unreadable parent only costs re-reading files
    }
  }

  async saveTree(nodes: TreeNode[]): Promise<BlobId> {
    const { id } = await this.writer.saveBlob('tree', encodeTree(nodes));
    return id;
  }

  #report(file?: string): void {
    if (!this.options.onProgress) return;
    this.#progress.currentFile = file;
    this.options.onProgress({ ...this.#progress });
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
      return (await this.saveDirContents(Buffer.from(v.target), parent)).id;
    }
    const nodes: TreeNode[] = [];
    await Promise.all([...v.children].map(async ([name, child]) => {
      const prev = parent?.find((n) => n.name === name);
      if ('target' in child) {
        const node = await this.saveEntry(Buffer.from(child.target), Buffer.from(name), prev);
        if (node) nodes.push(node);
      } else {
        const st = await lstat(child.realPath, { bigint: true });
        const node = await this.nodeFromStat(Buffer.from(name), Buffer.from(child.realPath), st);
        node.subtree = await this.saveVirtual(child, prev?.type === 'dir' ? await this.loadTree(prev.subtree) : undefined);
        nodes.push(node);
      }
    }));
    return this.saveTree(sortByName(nodes));
  }

  async saveDirContents(dir: Buffer, parent: TreeNode[] | undefined): Promise<{ id: BlobId; changed: boolean }> {
    throwIfAborted(this.options.signal);
    const names = await this.fsLimit.run(() => readdir(dir, { encoding: 'buffer' }));
    const prevByName = new Map<string, TreeNode>();
    for (const n of parent ?? []) prevByName.set(n.name, n);
    const nodes = (await Promise.all(names.map(async (raw) => {
      const name = goStringFromBytes(raw);
      return this.saveEntry(Buffer.concat([dir, Buffer.from('/'), raw]), raw, prevByName.get(name));
    }))).filter((n): n is TreeNode => n !== undefined);
    const id = await this.saveTree(sortByName(nodes));
    return { id, changed: true };
  }

  /** One directory entry → its node (contents stored). undefined when excluded or unreadable. */
  async saveEntry(full: Buffer, rawName: Buffer, prev: TreeNode | undefined): Promise<TreeNode | undefined> {
    const fullStr = full.toString('utf8');
    if (!this.excludes.empty && this.excludes.matches(fullStr)) return undefined;
    let st: BigIntStats;
    try {
      st = await this.fsLimit.run(() => lstat(full, { bigint: true }));
    } catch (e) {
      this.recordError(fullStr, e);
      return undefined;
    }
    let node: TreeNode;
    try {
      node = await this.nodeFromStat(rawName, full, st);
    } catch (e) {
      this.recordError(fullStr, e);
      return undefined;
    }
    if (node.type === 'dir') {
      try {
        const prevTree = prev?.type === 'dir' ? await this.loadTree(prev.subtree) : undefined;
        const { id } = await this.saveDirContents(full, prevTree);
        node.subtree = id;
        if (!prev) this.stats.dirsNew++;
        else if (prev.subtree === id) this.stats.dirsUnmodified++;
        else this.stats.dirsChanged++;
        this.#progress.dirsDone++;
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        this.recordError(fullStr, e);
        return undefined;
      }
    } else if (node.type === 'file') {
      const size = Number(st.size);
      if (prev && prev.type === 'file' && unchanged(prev, node) && prev.content?.every((id) => this.writer.has('data', id))) {
        node.content = prev.content;
        this.stats.filesUnmodified++;
        this.stats.bytes += size;
      } else {
        const content = await this.saveFileContent(full, fullStr);
        if (!content) return undefined;
        node.content = content.ids;
        node.size = content.size;
        if (prev) this.stats.filesChanged++;
        else this.stats.filesNew++;
        this.stats.bytes += content.size;
      }
      this.#progress.filesDone++;
      this.#progress.bytesDone += size;
      this.#report(fullStr);
    }
    return node;
  }

  async saveFileContent(full: Buffer, display: string): Promise<{ ids: BlobId[]; size: number } | undefined> {
    return this.fileLimit.run(async () => {
      throwIfAborted(this.options.signal);
      const ids: BlobId[] = [];
      const result = await this.pool.process(full, async (b) => {
        ids.push(b.id as BlobId);
        await this.writer.addSealed('data', b.id as BlobId, b.sealed, b.uncompressedLength, b.plainLength);
      });
      if (result.error) {
        this.recordError(display, Object.assign(new Error(`${display}: ${result.error.message}`), { code: result.error.code }));
        return undefined;
      }
      return { ids, size: result.size };
    });
  }

  async nodeFromStat(rawName: Buffer, full: Buffer, st: BigIntStats): Promise<TreeNode> {
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
    if (type === 'symlink') {
      const target = await readlink(full, { encoding: 'buffer' });
      node.linktarget = goStringFromBytes(target);
    }
    if (type === 'dev' || type === 'chardev') node.device = st.rdev;
    if (this.helper.available && type !== 'socket') {
      const xattrs = await this.helper.listXattrs(full);
      // listxattr order, as restic records it
      if (xattrs.length) node.extendedAttributes = xattrs;
    }
    return node;
  }

  /** A stream backed up as one file at the snapshot root (restic --stdin). Chunked here. */
  async saveStdin(stream: Readable, filename: string): Promise<BlobId> {
    if (!filename || filename.includes('/')) throw new InvalidInputError(`invalid stdin file name ${JSON.stringify(filename)}`);
    const chunker = new Chunker(this.repo.config.chunkerPolynomial);
    chunker.reset();
    const ids: BlobId[] = [];
    let pending: Buffer[] = [];
    let size = 0;
    const emit = async (chunk: Uint8Array) => {
      const { id } = await this.writer.saveBlob('data', chunk);
      ids.push(id);
    };
    for await (const piece of stream) {
      throwIfAborted(this.options.signal);
      const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as string);
      size += buf.length;
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
    return this.saveTree([node]);
  }
}

/** restic's change detection: a file is unchanged when type, mtime, ctime, size and inode agree. */
function unchanged(prev: TreeNode, cur: TreeNode): boolean {
  return (
    prev.type === cur.type &&
    formatGoTime(prev.mtime) === formatGoTime(cur.mtime) &&
    prev.ctime.epochNs === cur.ctime.epochNs &&
    BigInt(prev.size ?? 0) === BigInt(cur.size ?? 0) &&
    BigInt(prev.inode ?? 0) === BigInt(cur.inode ?? 0)
  );
}

function sortByName(nodes: TreeNode[]): TreeNode[] {
  return nodes.sort((a, b) => compareGoStrings(a.name, b.name));
}
