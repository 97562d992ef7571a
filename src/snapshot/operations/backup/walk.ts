// The walk: targets, folders and their entries turned into nodes, file contents saved by the
// workers (unchanged files reuse the parent's content list), folders saved as trees bottom up.
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import os from 'node:os';
import { AbortedError, InvalidInputError, throwIfAborted } from '../../../errors.ts';
import type { IndexedRepository, BlobWriter } from '../../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../../repository/id.ts';
import { goTimeFromNs } from '../../../repository/gotime.ts';
import { Semaphore } from '../../../repository/concurrency.ts';
import { FilePool } from '../../engine/file-pool.ts';
import type { SysHelper, Xattr } from '../../engine/syshelper.ts';
import { IdNames } from '../../engine/fsmeta.ts';
import { TreeLoader } from '../../engine/tree-loader.ts';
import { findParentSnapshot, listSnapshots, loadSnapshot } from '../../engine/select.ts';
import { latestSnapshot } from '../../model/snapshot.ts';
import { BackupMeter } from '../../engine/progress.ts';
import { PathFilter } from '../../model/filter.ts';
import { goModeFromPosix, nodeTypeFromPosix } from '../../model/mode.ts';
import { goStringFromBytes } from '../../model/gojson.ts';
import type { TreeNode } from '../../model/node.ts';
import { encodeTree } from '../../model/tree.ts';
import { sameNode, sameNodes, sortByName, unchanged } from './same.ts';
import type { VirtualDir } from './sources.ts';
import type { BackupItem, BackupOptions } from './types.ts';
import { entrySize } from '../../../repository/pack.ts';

const SLASH = Buffer.from('/');

/** Files queued for the workers before the walk waits (bounds memory on huge trees). */
const QUEUED_FILES_LIMIT = 4096;
/** Folders listed at once (readdir, lstat, xattrs); waiting for their children holds no place. */
const FOLDERS_AT_ONCE = 8;
/**
 * Parent trees read ahead and decoded before their folders get their turn, at most: a folder's
 * subfolders all start at once and wait for a place to be listed, so reading every subtree ahead
 * held the parent's whole snapshot decoded (~500 bytes a node: ~90 MiB at 200 000 files).
 */
const TREES_AHEAD = 64;
/** lstat calls made in one go before the event loop gets a turn. */
const STATS_AT_ONCE = 256;

/** A folder's previous tree: nodes at hand, or read when the folder gets its turn. */
type ParentTree = TreeNode[] | (() => Promise<TreeNode[] | undefined>) | undefined;

/** An entry of a folder being saved. */
interface Entry {
  /** Its path in the snapshot ("/home/user/x"), as restic's -vv lines name it. */
  sn: string;
  raw: Buffer;
  full: Buffer;
  fullStr: string;
  prev: TreeNode | undefined;
  st?: BigIntStats;
  xattrs?: Xattr[];
}

/**
 * A backup's walk over its sources: every entry turned into a node, files' contents stored by the
 * workers, folders stored as trees bottom up. The counts and errors are read when it is done.
 */
export class BackupRun {
  readonly repo: IndexedRepository;
  readonly writer: BlobWriter;
  readonly helper: SysHelper;
  readonly options: BackupOptions;
  readonly names = new IdNames();
  readonly excludes: PathFilter;
  /** --iexclude patterns, lower-cased (matched against the lower-cased path, as restic). */
  readonly iexcludes: PathFilter;
  /** --exclude-if-present / --exclude-caches markers: a name, and the bytes its file must start with. */
  readonly markers: Array<{ name: string; header?: Buffer }>;
  readonly errors: Array<{ path: string; message: string }> = [];
  readonly stats = { filesNew: 0, filesChanged: 0, filesUnmodified: 0, dirsNew: 0, dirsChanged: 0, dirsUnmodified: 0, bytes: 0 };
  readonly folderLimit = new Semaphore(FOLDERS_AT_ONCE);
  /** Subtrees read ahead ({@link TREES_AHEAD}) whose folders have not had their turn yet. */
  readonly #ahead = new Set<BlobId>();
  readonly trees: TreeLoader;
  #pool: FilePool | undefined;
  parentId: SnapshotId | null = null;
  parentTreeId: BlobId | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Progress: counts, bytes and the files being read. */
  readonly meter: BackupMeter;
  /**
   * With `onItem`: data blobs added by the workers and not yet claimed by the file they came
   * from (a file claims its own when it is done), their plaintext and stored bytes.
   */
  readonly #newBlobs: Map<string, { size: number; packed: number }> | undefined;

  constructor(repo: IndexedRepository, writer: BlobWriter, helper: SysHelper, options: BackupOptions) {
    this.repo = repo;
    this.writer = writer;
    this.helper = helper;
    this.options = options;
    this.excludes = new PathFilter(options.excludes ?? []);
    this.iexcludes = new PathFilter((options.iexcludes ?? []).map((p) => p.toLowerCase()));
    this.markers = markerRules(options);
    this.trees = new TreeLoader(repo, options.signal);
    const scan = options.stdin || options.scan === false ? undefined : { paths: options.paths ?? [], excludes: options.excludes, signal: options.signal };
    this.meter = new BackupMeter(options.onProgress, scan);
    if (options.onItem) this.#newBlobs = new Map();
  }

  /** Reports a finished file or folder to `onItem`. */
  item(item: BackupItem): void {
    this.options.onItem?.(item);
  }

  /** The new blobs among a file's content: their bytes, taken out of the unclaimed ones. */
  #claim(ids: readonly string[]): { size: number; packed: number } {
    const sum = { size: 0, packed: 0 };
    if (!this.#newBlobs) return sum;
    for (const id of ids) {
      const b = this.#newBlobs.get(id);
      if (!b) continue;
      sum.size += b.size;
      sum.packed += b.packed;
      this.#newBlobs.delete(id);
    }
    return sum;
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
      sink: this.#newBlobs
        ? async (id, sealed, ulen, plainLength) => {
          const packed = sealed.length + entrySize({ uncompressedLength: ulen });
          const added = await this.writer.addSealed('data', id as BlobId, sealed, ulen, plainLength);
          if (added) this.#newBlobs?.set(id, { size: plainLength, packed });
          return added;
        }
        : (id, sealed, ulen, plainLength) => this.writer.addSealed('data', id as BlobId, sealed, ulen, plainLength),
      has: (id) => this.writer.has('data', id as BlobId),
      // Bytes count as they are chunked, so a big file moves the progress (and its ETA) too.
      onBytes: this.options.onProgress
        ? (n, reading, worker) => {
            this.meter.bytesDone += n;
            if (reading) this.meter.reading(worker, typeof reading.path === 'string' ? reading.path : Buffer.from(reading.path).toString('utf8'));
            this.meter.report();
          }
        : undefined,
    });
    return this.#pool;
  }

  close(): Promise<void> {
    if (!this.#closing) {
      this.#closed = true;
      this.#closing = Promise.all([this.#pool?.close(), this.meter.close()]).then(() => undefined);
    }
    return this.#closing;
  }

  async resolveParent(paths: string[]): Promise<TreeNode[] | undefined> {
    const tree = await this.#findParent(paths);
    this.options.onParent?.(this.parentId ?? undefined);
    return tree;
  }

  async #findParent(paths: string[]): Promise<TreeNode[] | undefined> {
    const p = this.options.parent;
    if (p === null) return undefined;
    const hostname = this.options.hostname ?? os.hostname();
    const g = this.options.groupBy;
    // With --group-by, restic's filter: the latest snapshot (not after the backup's time) of this
    // host, holding all these paths, carrying all these tags — as far as each is grouped by.
    const found = p !== undefined
      ? await loadSnapshot(this.repo.repo, p)
      : g
        ? latestSnapshot(await listSnapshots(this.repo.repo, { signal: this.options.signal }), {
          ...(g.host ? { hosts: [hostname] } : {}),
          ...(g.paths ? { paths } : {}),
          ...(g.tags ? { tags: [[...(this.options.tags ?? [])]] } : {}),
          ...(this.options.time ? { notAfter: this.options.time } : {}),
        })
        : await findParentSnapshot(this.repo.repo, { hostname, paths });
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
    return (await this.storeTree(nodes)).id;
  }

  /** Stores a tree unless known: its ID, and its plaintext and stored bytes when added (else 0). */
  async storeTree(nodes: TreeNode[]): Promise<SavedTree> {
    const plain = encodeTree(nodes);
    const { id, added, stored } = await this.writer.saveBlob('tree', plain);
    return { id, size: added ? plain.length : 0, stored };
  }

  /** Counts a folder done against its parent's node and reports it (restic's Node.Equals decides). */
  dirDone(sn: string, prev: TreeNode | undefined, node: TreeNode, tree: SavedTree, started: number): void {
    const action = !prev ? 'new' : sameNode(prev, node) ? 'unchanged' : 'modified';
    if (action === 'new') this.stats.dirsNew++;
    else if (action === 'unchanged') this.stats.dirsUnmodified++;
    else this.stats.dirsChanged++;
    this.meter.dirsDone++;
    if (this.options.onItem) {
      this.item({ path: sn + '/', type: 'dir', action, seconds: (performance.now() - started) / 1000, dataAdded: 0, dataAddedPacked: 0, treeAdded: tree.size, treeAddedPacked: tree.stored });
    }
  }

  recordError(p: string, e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    this.errors.push({ path: p, message: err.message });
    this.options.onError?.(p, err);
  }

  /**
   * Saves a level of folders made from target paths (their metadata comes from the real folders).
   * `sn`: the level's path in the snapshot ('' for the root).
   */
  async saveVirtual(v: VirtualDir | { target: string }, parent: TreeNode[] | undefined, sn = ''): Promise<SavedTree> {
    if ('target' in v) {
      // "." (or a lone relative folder): its contents are the root.
      const st = await lstat(v.target, { bigint: true });
      if (!st.isDirectory()) throw new InvalidInputError(`${v.target} is not a folder`);
      return (await this.saveDirContents(Buffer.from(v.target), parent, this.parentTreeId, '')).tree;
    }
    const nodes: TreeNode[] = [];
    const targets: Entry[] = [];
    await Promise.all([...v.children].map(async ([name, child]) => {
      const prev = parent?.find((n) => n.name === name);
      const childSn = sn + '/' + name;
      if ('target' in child) {
        const full = Buffer.from(child.target);
        targets.push({ sn: childSn, raw: Buffer.from(name), full, fullStr: child.target, prev });
      } else {
        const started = performance.now();
        const st = await lstat(child.realPath, { bigint: true });
        const node = this.nodeFromStat(Buffer.from(name), Buffer.from(child.realPath), st, await this.xattrsOf(Buffer.from(child.realPath)));
        const tree = await this.saveVirtual(child, prev?.type === 'dir' ? await this.loadTree(prev.subtree) : undefined, childSn);
        node.subtree = tree.id;
        // restic counts (and -vv lists) these folders as any other.
        this.dirDone(childSn, prev, node, tree, started);
        nodes.push(node);
      }
    }));
    nodes.push(...(await this.saveEntries(targets.filter((t) => !this.isExcluded(t.fullStr)))));
    return this.storeTree(sortByName(nodes));
  }

  #devices: Promise<Set<bigint>> | undefined;

  /** The devices of the backup targets (--one-file-system). */
  targetDevices(): Promise<Set<bigint>> {
    this.#devices ??= Promise.all((this.options.paths ?? []).map((p) => lstat(p, { bigint: true }).then((st) => st.dev, () => undefined)))
      .then((devs) => new Set(devs.filter((d): d is bigint => d !== undefined)));
    return this.#devices;
  }

  /** Whether an --exclude or --iexclude pattern matches the path. */
  isExcluded(fullStr: string): boolean {
    return (!this.excludes.empty && this.excludes.matches(fullStr)) || (!this.iexcludes.empty && this.iexcludes.matches(fullStr.toLowerCase()));
  }

  /** The name of the marker file a folder holds (its header checked), if any. */
  async markerIn(dir: Buffer, names: Buffer[]): Promise<Buffer | undefined> {
    for (const m of this.markers) {
      const raw = names.find((n) => n.toString('utf8') === m.name);
      if (!raw) continue;
      if (!m.header) return raw;
      const head = await readHead(Buffer.concat([dir, SLASH, raw]), m.header.length);
      if (head?.equals(m.header)) return raw;
    }
    return undefined;
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
  async saveDirContents(dir: Buffer, parentTree: ParentTree, parentId: BlobId | undefined, sn: string): Promise<{ id: BlobId; changed: boolean; tree: SavedTree }> {
    throwIfAborted(this.options.signal);
    const entries: Entry[] = [];
    let parent = typeof parentTree === 'function' ? undefined : parentTree;
    await this.folderLimit.run(async () => {
      // Pace the walk: let the workers catch up before listing more.
      if (this.#pool) await this.#pool.room(QUEUED_FILES_LIMIT);
      // The previous tree is read only now: a folder waiting for its turn holds none.
      if (typeof parentTree === 'function') parent = await parentTree();
      const names = await readdir(dir, { encoding: 'buffer' });
      const prevByName = new Map<string, TreeNode>();
      for (const n of parent ?? []) prevByName.set(n.name, n);
      // A folder holding a marker (--exclude-if-present, --exclude-caches) keeps only the marker.
      const marker = await this.markerIn(dir, names);
      for (const raw of names) {
        if (marker && !raw.equals(marker)) continue;
        const full = Buffer.concat([dir, SLASH, raw]);
        const fullStr = full.toString('utf8');
        if (this.isExcluded(fullStr)) continue;
        const name = goStringFromBytes(raw);
        entries.push({ sn: sn + '/' + name, raw, full, fullStr, prev: prevByName.get(name) });
      }
      await this.statEntries(entries);
      if (this.options.oneFileSystem) {
        // restic's --one-file-system: only the file systems of the backup targets; a folder on
        // another one (a mount point) is kept, empty, when the folder holding it is on one of them.
        const devices = await this.targetDevices();
        const here = devices.has((await lstat(dir, { bigint: true })).dev);
        for (let i = entries.length - 1; i >= 0; i--) {
          const st = entries[i]!.st;
          if (st && !devices.has(st.dev) && !(here && st.isDirectory())) entries.splice(i, 1);
        }
      }
      const max = this.options.excludeLargerThan;
      if (max !== undefined) {
        // restic's --exclude-larger-than: anything but a folder above the size is left out.
        for (let i = entries.length - 1; i >= 0; i--) {
          const st = entries[i]!.st;
          if (st && !st.isDirectory() && st.size > BigInt(max)) entries.splice(i, 1);
        }
      }
    });
    const nodes = sortByName(await this.saveEntries(entries));
    throwIfAborted(this.options.signal);
    if (parentId && parent && sameNodes(nodes, parent)) return { id: parentId, changed: false, tree: { id: parentId, size: 0, stored: 0 } };
    const tree = await this.storeTree(nodes);
    return { id: tree.id, changed: true, tree };
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
    // The previous trees of the subfolders, read together while the files are looked at: the
    // first ones now, the next as the subfolders get their turn, at most TREES_AHEAD in all.
    const subtrees: BlobId[] = [];
    for (const e of entries) {
      if (e.st?.isDirectory() && e.prev?.type === 'dir' && e.prev.subtree) subtrees.push(e.prev.subtree);
    }
    let next = 0;
    const readAhead = () => {
      const ids: BlobId[] = [];
      while (next < subtrees.length && this.#ahead.size < TREES_AHEAD) {
        const id = subtrees[next++]!;
        if (this.#ahead.has(id)) continue; // read ahead for another folder; this one reads it alone
        this.#ahead.add(id);
        ids.push(id);
      }
      if (ids.length) this.trees.prefetch(ids);
    };
    readAhead();
    // A wide folder's files go to the workers QUEUED_FILES_LIMIT at a time: queueing all of them
    // at once held a job, a promise and a pending node per file (250 000 in one folder: ~370 MiB).
    const started: Array<Promise<TreeNode | undefined>> = [];
    for (let i = 0; i < entries.length; i++) {
      if (i > 0 && i % QUEUED_FILES_LIMIT === 0 && this.#pool) await this.#pool.room(QUEUED_FILES_LIMIT);
      const e = entries[i]!;
      // Its stat, names and paths are let go once its node is made (only saveEntry holds them).
      (entries as Array<Entry | undefined>)[i] = undefined;
      const node = e.st ? this.saveEntry(e, readAhead) : Promise.resolve(undefined);
      node.catch(() => undefined); // reported by Promise.all below, not as unhandled while pacing
      started.push(node);
    }
    const nodes = await Promise.all(started);
    return nodes.filter((n): n is TreeNode => n !== undefined);
  }

  /** One directory entry → its node (contents stored). undefined when unreadable. */
  async saveEntry(e: Entry, readAhead?: () => void): Promise<TreeNode | undefined> {
    const { full, fullStr } = e;
    const st = e.st!;
    let node: TreeNode;
    try {
      node = this.nodeFromStat(e.raw, full, st, e.xattrs);
      if (node.type === 'symlink') node.linktarget = goStringFromBytes(await readlink(full, { encoding: 'buffer' }));
    } catch (err) {
      this.recordError(fullStr, err);
      // A subtree read ahead for it no longer counts against the others' read-ahead.
      if (e.prev?.type === 'dir' && e.prev.subtree) this.#ahead.delete(e.prev.subtree);
      return undefined;
    }
    if (node.type === 'dir') return this.saveDir(e, node, readAhead);
    if (node.type === 'file') return this.saveFile(e, node, Number(st.size));
    return node;
  }

  /** A folder's node gets the tree of its contents (the parent's when nothing changed). */
  async saveDir(e: Entry, node: TreeNode, readAhead?: () => void): Promise<TreeNode | undefined> {
    const { full, fullStr, prev } = e;
    const started = performance.now();
    try {
      const subtree = prev?.type === 'dir' ? prev.subtree : undefined;
      const load = subtree ? () => {
        this.#ahead.delete(subtree);
        readAhead?.();
        return this.loadTree(subtree);
      } : undefined;
      const { id, tree } = await this.saveDirContents(full, load, subtree, e.sn);
      node.subtree = id;
      this.dirDone(e.sn, prev, node, tree, started);
      return node;
    } catch (err) {
      if (err instanceof AbortedError) throw err;
      this.recordError(fullStr, err);
      return undefined;
    }
  }

  /**
   * A file's node gets its content list: the parent's when the file is unchanged and the
   * repository has every blob, else the workers read, chunk and store it.
   */
  async saveFile(e: Entry, node: TreeNode, size: number): Promise<TreeNode | undefined> {
    const { full, fullStr, prev } = e;
    const started = performance.now();
    let action: BackupItem['action'];
    let added = { size: 0, packed: 0 };
    // restic's --ignore-inode ignores the ctime too; --ignore-ctime only the ctime.
    const ignore = { ctime: this.options.ignoreCtime === true || this.options.ignoreInode === true, inode: this.options.ignoreInode === true };
    if (prev && prev.type === 'file' && unchanged(prev, node, ignore) && prev.content?.every((id) => this.writer.has('data', id))) {
      node.content = prev.content;
      this.stats.filesUnmodified++;
      this.stats.bytes += size;
      action = 'unchanged';
    } else {
      throwIfAborted(this.options.signal);
      // The previous version's blobs that the repository has need hashing, not sealing.
      const known = prev?.type === 'file' ? prev.content?.filter((id) => this.writer.has('data', id)) : undefined;
      const result = await this.pool.process({ path: full, size, known });
      if (result.error) {
        this.meter.finished(fullStr);
        this.recordError(fullStr, Object.assign(new Error(`${fullStr}: ${result.error.message}`), { code: result.error.code }));
        return undefined;
      }
      node.content = result.ids as BlobId[];
      node.size = result.size;
      added = this.#claim(result.ids);
      // As restic: a file read again whose node comes out the same is unchanged.
      action = !prev ? 'new' : sameNode(prev, node) ? 'unchanged' : 'modified';
      if (action === 'new') this.stats.filesNew++;
      else if (action === 'unchanged') this.stats.filesUnmodified++;
      else this.stats.filesChanged++;
      this.stats.bytes += result.size;
    }
    if (this.options.onItem) {
      this.item({ path: e.sn, type: 'file', action, seconds: (performance.now() - started) / 1000, dataAdded: added.size, dataAddedPacked: added.packed, treeAdded: 0, treeAddedPacked: 0 });
    }
    this.meter.filesDone++;
    // A file read by the workers has had its bytes counted as they were chunked.
    if (node.content === prev?.content) this.meter.bytesDone += size;
    this.meter.finished(fullStr);
    this.meter.report();
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
      // restic stores the access time only with --with-atime (else the mtime again).
      atime: this.options.withAtime ? goTimeFromNs(st.atimeNs) : mtime,
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
}

/** A tree as stored: its ID, and its plaintext and stored bytes when this backup added it (else 0). */
export interface SavedTree {
  id: BlobId;
  size: number;
  stored: number;
}

/** The CACHEDIR.TAG signature (https://bford.info/cachedir/), as restic's --exclude-caches checks it. */
const CACHEDIR_TAG = { name: 'CACHEDIR.TAG', header: Buffer.from('Signature: 8a477f597d28d172789f06886806bc55') };

function markerRules(options: BackupOptions): Array<{ name: string; header?: Buffer }> {
  const rules: Array<{ name: string; header?: Buffer }> = [];
  if (options.excludeCaches) rules.push(CACHEDIR_TAG);
  for (const spec of options.excludeIfPresent ?? []) {
    const colon = spec.indexOf(':');
    const name = colon < 0 ? spec : spec.slice(0, colon);
    if (name === '') throw new InvalidInputError(`invalid --exclude-if-present ${JSON.stringify(spec)}: no file name`);
    rules.push(colon < 0 || colon === spec.length - 1 ? { name } : { name, header: Buffer.from(spec.slice(colon + 1)) });
  }
  return rules;
}

/** The first `n` bytes of a file (fewer when it is shorter); undefined when it cannot be read. */
async function readHead(p: Buffer, n: number): Promise<Buffer | undefined> {
  const fh = await open(p, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}
