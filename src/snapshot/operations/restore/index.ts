// Restore: recreate a snapshot's tree under a target folder.
// Order: folders while walking, then file contents, links and special files, and finally
// metadata from the leaves up (owner, mode, xattrs, times), so writing into a folder never
// disturbs its restored mtime. Every name is checked, and every path is built inside the
// target: a tree cannot make the restorer write anywhere else.
//
// Contents are restored pack by pack, as restic does: every pack is read once, in ranges that
// hold the blobs some file needs, and worker threads (decode-pool.ts) verify each blob — MAC and
// SHA-256 — before they write it to every place in every file that holds it. A blob that fails
// is read again from any other copy the index knows before the restore gives up.
import { chown, lchown, chmod, link, lstat, mkdir, open, rm, symlink, unlink } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import path from 'node:path';
import { AbortedError, IntegrityError, InvalidInputError, NotFoundError, throwIfAborted } from '../../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository } from '../../../repository/repository.ts';
import type { BlobId, PackId } from '../../../repository/id.ts';
import type { BlobLocation } from '../../../repository/master-index.ts';
import { mapLimit, Semaphore } from '../../../repository/concurrency.ts';
import { CRYPTO_OVERHEAD } from '../../../repository/crypto.ts';
import { DecodePool, MAX_JOB_BYTES, ownedBytes, type DecodeBlob } from '../../engine/decode-pool.ts';
import { describeMetadataLoss, findExecutable, mkfifoProgram, SysHelper, type MetadataKind, type MetadataLoss } from '../../engine/syshelper.ts';
import { PathFilter } from '../../model/filter.ts';
import { posixPermissionsFromGo } from '../../model/mode.ts';
import { goStringToBytes } from '../../model/gojson.ts';
import type { TreeNode } from '../../model/node.ts';
import { TreeLoader } from '../../engine/tree-loader.ts';
import { resolveTreeSource, type TreeSource } from '../../engine/select.ts';
import type { SnapshotFilter } from '../../model/snapshot.ts';
import { ProgressEstimator } from '../../engine/progress.ts';

/**
 * A restore's progress, sent to {@link RestoreOptions.onProgress}: once when the snapshot's
 * trees are walked and the contents planned (nothing done yet, the totals known), after every
 * file completed, after every batch of blobs written that completes no file (a range of a pack,
 * at most a few MiB, so a big file moves it), and after every further name of a hard link.
 */
export interface RestoreProgress {
  /** Files complete (every name of a hard link counts). */
  filesDone: number;
  /** Bytes of file content written, counted blob by blob. */
  bytesDone: number;
  /**
   * A file being written: of the files with some but not all of their contents written, the one
   * whose writing started last (contents are written pack by pack, so several can be under way).
   * Absent when none is.
   */
  currentFile?: string;
  /** Files the restore will write (every name of a hard link). */
  totalFiles: number;
  /** Bytes of content it will write (a hard-linked file once). */
  totalBytes: number;
  /** How far the restore is, 0 to 100: bytesDone of totalBytes (files when there are no bytes). */
  percent: number;
  /** Seconds left at the rate of the last ten seconds (absent below 1 KiB/s or when done). */
  etaSeconds?: number;
}

/** Options of {@link restore}: `target` is required. */
export interface RestoreOptions {
  /** Folder to restore into (created if missing). */
  target: string;
  /** Only paths matching these patterns (and the folders leading to them). */
  include?: readonly string[];
  /**
   * Paths matching these patterns are not restored (restic's pattern syntax, as in
   * `BackupOptions.excludes`).
   */
  exclude?: readonly string[];
  /** Restore owners (uid/gid). Default: when running as root. */
  owners?: boolean;
  /**
   * Kept for compatibility; contents are now restored pack by pack (every pack read once, blobs
   * written to all files that need them), so there is no number of files in flight to choose.
   */
  concurrency?: number;
  /** Which snapshot `"latest"` means when the source is `"latest"` (hosts, tags, paths). */
  snapshotFilter?: SnapshotFilter;
  /** Aborts the restore; it rejects with `AbortedError` and what was written stays. */
  signal?: AbortSignal;
  /** Progress events (see {@link RestoreProgress} for when they come). */
  onProgress?: (p: RestoreProgress) => void;
  /**
   * An entry whose metadata could not be applied (e.g. xattrs on a filesystem without them) or
   * that could not be created (a device without the right to make one). What the missing syscall
   * helper costs is not reported here per entry but once, as RestoreResult.metadataLoss.
   */
  onWarning?: (path: string, message: string) => void;
}

/** What {@link restore} wrote. */
export interface RestoreResult {
  /** Files written (all kinds but folders). */
  filesRestored: number;
  /** Folders created. */
  dirsRestored: number;
  /** Bytes of file contents written. */
  bytesRestored: number;
  /** Metadata that could not be applied (also reported to `onWarning`). */
  warnings: Array<{ path: string; message: string }>;
  /**
   * Set when the syscall helper (perl) is unavailable and the snapshot held what needs it: which
   * kinds of metadata were not (fully) restored, for how many entries, why and how to fix it.
   * The same line is logged once as a warning through the repository's logger. Fifos are then
   * made with the `mkfifo` program where there is one (and are not counted as lost).
   */
  metadataLoss?: MetadataLoss;
}

interface Pending {
  path: Buffer;
  node: TreeNode;
  /** A folder made on the way to an include that matched nothing below it, removed again. */
  dropped?: boolean;
}

/** Rejects names that could leave the folder they belong to. */
export function checkNodeName(name: Uint8Array, treeId: string): void {
  const s = Buffer.from(name);
  if (s.length === 0 || s.equals(Buffer.from('.')) || s.equals(Buffer.from('..')) || s.includes(0x2f) || s.includes(0)) {
    throw new IntegrityError(`tree contains an unsafe name ${JSON.stringify(s.toString('utf8'))}`, { blob: treeId });
  }
}

/**
 * Restores a snapshot (`"latest"`, an ID or unique prefix, `"ID:subfolder"`, an entry of
 * `listSnapshots`) or a tree ID into `target`: files, folders, symlinks, hard links,
 * fifos and devices, with modes (setuid, sticky), owners (as root), nanosecond times and extended
 * attributes. Every blob is verified before it is written, and no name can lead outside `target`.
 * Contents are restored pack by pack on worker threads, each needed range read once. Existing
 * entries in the way are replaced.
 *
 * @throws IntegrityError when stored data does not verify.
 * @throws NotFoundError when no snapshot matches `source`, or the index lacks a blob the tree needs.
 * @throws AbortedError when `signal` aborts.
 *
 * @example
 * ```ts
 * await restore(repo, 'latest', { target: '/tmp/restore', include: ['/etc/nginx'], snapshotFilter: { hosts: ['web-1'] } });
 * ```
 */
export async function restore(repository: AnyRepository, source: TreeSource, options: RestoreOptions): Promise<RestoreResult> {
  const repo = await withIndex(repository, { signal: options.signal });
  const treeId = await resolveTreeSource(repo, source, { ...options.snapshotFilter, signal: options.signal });
  const r = new RestoreRun(repo, options);
  try {
    await r.run(treeId);
    r.reportLoss();
    return r.result;
  } finally {
    r.helper.close();
  }
}

/** Pack bytes read beyond a needed blob to reach the next one in the same read. */
const MAX_GAP = 512 * 1024;
/**
 * Bytes read at once (a bigger blob is read alone): reads of a few megabytes are reused by the C
 * allocator, where bigger ones are new memory, zeroed and faulted in, every time.
 */
const MAX_READ = 4 * 1024 * 1024;
/** Entries whose times go to the helper in one request. */
const TIMES_PER_BATCH = 256;

/** One blob of a pack and the places (file, offset) it is written to. */
interface PlannedBlob {
  loc: BlobLocation;
  /** Plaintext length. */
  size: number;
  writes: Array<[FileTask, number]>;
}

/** A file whose content is being written. */
interface FileTask {
  pending: Pending;
  /** Blob writes still to do; the file is complete at 0. */
  remaining: number;
  size: number;
  /** Owner and mode were set by the worker that completed the file. */
  ownerModeSet?: boolean;
  /** Offsets of the blobs not written yet. */
  missing: Set<number>;
  /** Some content has been written (the file is in work until complete). */
  started?: boolean;
}

class RestoreRun {
  readonly repo: IndexedRepository;
  readonly options: RestoreOptions;
  readonly target: string;
  readonly helper = SysHelper.start();
  readonly include: PathFilter;
  readonly exclude: PathFilter;
  readonly owners: boolean;
  readonly files: Pending[] = [];
  readonly specials: Pending[] = [];
  /** Everything created, in creation order (parents before children). */
  readonly created: Pending[] = [];
  readonly result: RestoreResult = { filesRestored: 0, dirsRestored: 0, bytesRestored: 0, warnings: [] };
  /** Folders this run created: nothing can be in them that needs removing first. */
  readonly freshDirs = new Set<string>();
  readonly trees: TreeLoader;
  readonly #estimator = new ProgressEstimator();
  readonly #totals = { files: 0, bytes: 0 };
  /** Files whose writing started, in that order; complete ones leave from the top when seen. */
  readonly #started: FileTask[] = [];
  /** Progress events sent so far. */
  #reports = 0;

  constructor(repo: IndexedRepository, options: RestoreOptions) {
    this.repo = repo;
    this.options = options;
    this.target = path.resolve(options.target);
    this.include = new PathFilter(options.include ?? []);
    this.exclude = new PathFilter(options.exclude ?? []);
    this.owners = options.owners ?? process.getuid?.() === 0;
    this.trees = new TreeLoader(repo, options.signal);
  }

  /** Entries that lost something to the missing helper, per kind. */
  readonly lost: Partial<Record<MetadataKind, number>> = {};
  /** Whether the helper runs (set once it has answered, before anything is restored). */
  helperOk = false;
  #mkfifo: string | undefined | null = null;

  lose(kind: MetadataKind): void {
    this.lost[kind] = (this.lost[kind] ?? 0) + 1;
  }

  /** One warning for all the helper's absence cost this run. */
  reportLoss(): void {
    const kinds = (['xattrs', 'nanosecond-times', 'fifos', 'devices'] as const).filter((k) => this.lost[k]);
    if (kinds.length === 0) return;
    const loss = describeMetadataLoss('restore', kinds, this.lost, this.helper.unavailableReason ?? 'the syscall helper is unavailable');
    this.result.metadataLoss = loss;
    this.repo.logger.warn(loss.message, { lost: kinds.join(','), target: this.target });
  }

  warn(p: Buffer, message: string): void {
    const ps = p.toString('utf8');
    this.result.warnings.push({ path: ps, message });
    this.options.onWarning?.(ps, message);
  }

  async run(treeId: BlobId): Promise<void> {
    await mkdir(this.target, { recursive: true });
    this.helperOk = await this.helper.ready();
    await this.walk(treeId, Buffer.from(this.target), '');
    // Files get their owner, mode and times as soon as they are complete, while others are
    // still being written; links, special files and folders after all contents.
    await this.writeContents();
    for (const s of this.specials) {
      if (await this.createSpecial(s)) this.finishEntry(s, true);
    }
    await this.metadataDone();
    await this.finishDirs();
  }

  selected(rel: string, isDir: boolean, insideIncluded: boolean): 'yes' | 'no' | 'descend' {
    if (!this.exclude.empty && this.exclude.matches(rel)) return 'no';
    if (insideIncluded || this.include.empty || this.include.matches(rel)) return 'yes';
    return isDir && this.include.mayContainMatch(rel) ? 'descend' : 'no';
  }

  /**
   * Creates the folders of a tree and collects its files and special files. Names are checked
   * before anything of the folder is made; subfolders are walked concurrently (their trees are
   * read together), and a failure lets every branch in flight finish before it is reported.
   */
  async walk(treeId: BlobId, dir: Buffer, rel: string, forced = false): Promise<boolean> {
    throwIfAborted(this.options.signal);
    if (this.#walkFailed) return false;
    const nodes = await this.trees.load(treeId);
    const names = nodes.map((node) => {
      const nameBytes = Buffer.from(goStringToBytes(node.name));
      checkNodeName(nameBytes, treeId);
      return nameBytes;
    });
    // The subfolders' trees, read together while this folder is made.
    this.trees.prefetch(nodes.filter((n) => n.type === 'dir' && n.subtree).map((n) => n.subtree!));
    let any = false;
    const branches: Array<Promise<void>> = [];
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i]!;
      const childRel = `${rel}/${node.name}`;
      const sel = this.selected(childRel, node.type === 'dir', forced);
      if (sel === 'no') continue;
      const p = Buffer.concat([dir, SLASH, names[i]!]);
      if (node.type === 'dir') {
        if (!node.subtree) throw new IntegrityError(`folder ${childRel} has no subtree`, { blob: treeId });
        if (this.#walkFailed) break;
        await this.makeDir(p, dir);
        const entry: Pending = { path: p, node };
        this.created.push(entry);
        if (sel === 'yes') any = true;
        branches.push(this.walk(node.subtree, p, childRel, sel === 'yes').then(
          async (had) => {
            if (sel === 'descend' && !had) {
              // Only created on the way to a match that was not there: take it back.
              entry.dropped = true;
              await rm(p, { recursive: true, force: true });
              return;
            }
            any = true;
            this.result.dirsRestored++;
          },
          (e: unknown) => {
            this.#walkFailed = true;
            throw e;
          },
        ));
      } else if (node.type === 'file') {
        this.files.push({ path: p, node });
        this.created.push({ path: p, node });
        any = true;
      } else {
        this.specials.push({ path: p, node });
        this.created.push({ path: p, node });
        any = true;
      }
    }
    const settled = await Promise.allSettled(branches);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return any;
  }

  #walkFailed = false;

  async makeDir(p: Buffer, parent: Buffer): Promise<void> {
    if (this.freshDirs.has(parent.toString('latin1'))) {
      await mkdir(p, { mode: 0o700 });
      this.freshDirs.add(p.toString('latin1'));
      return;
    }
    const st = await lstat(p).catch(() => undefined);
    if (st?.isDirectory()) return;
    if (st) await rm(p, { recursive: true, force: true });
    await mkdir(p, { mode: 0o700 });
    this.freshDirs.add(p.toString('latin1'));
  }

  /** Removes what is at p unless p lies in a folder this run created (then nothing is there). */
  async removeExisting(p: Buffer): Promise<void> {
    if (this.freshDirs.has(path.dirname(p.toString('latin1')))) return;
    const st = await lstat(p).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) await rm(p, { recursive: true, force: true });
    else await unlink(p);
  }

  /**
   * Writes the contents of every file: plans which pack holds each blob, reads the packs in the
   * order the files first need them, and lets the decode workers verify and write. The second
   * and later names of a hard link are linked to the first once it is complete.
   */
  async writeContents(): Promise<void> {
    const signal = this.options.signal;
    const firstNames = new Map<string, Buffer>();
    const links: Array<{ f: Pending; first: Buffer }> = [];
    const tasks: FileTask[] = [];
    const packs = new Map<PackId, Map<number, PlannedBlob>>();
    const oversized: PlannedBlob[] = [];
    for (const f of this.files) {
      const { node } = f;
      if (Number(node.links ?? 1) > 1 && node.inode !== undefined) {
        const key = `${node.deviceId ?? 0}:${node.inode}`;
        const first = firstNames.get(key);
        if (first) {
          links.push({ f, first });
          continue;
        }
        firstNames.set(key, f.path);
      }
      const task: FileTask = { pending: f, remaining: 0, size: 0, missing: new Set() };
      tasks.push(task);
      for (const id of node.content ?? []) {
        const loc = this.repo.index.lookup(id, 'data')[0];
        if (!loc) throw new NotFoundError(`data blob ${id}`);
        let blobs = packs.get(loc.packId);
        if (!blobs) packs.set(loc.packId, (blobs = new Map()));
        const size = loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD;
        let planned = blobs.get(loc.offset);
        if (!planned) blobs.set(loc.offset, (planned = { loc, size, writes: [] }));
        planned.writes.push([task, task.size]);
        task.missing.add(task.size);
        task.size += size;
        task.remaining++;
      }
      this.#totals.bytes += task.size;
    }
    this.#totals.files = this.files.length;
    this.report();

    // Cut each pack's needed blobs into ranges that one read and one worker slot can take.
    const pool = packs.size > 0 ? new DecodePool({ key: this.repo.repo.masterKeyForWorkers() }) : undefined;
    const jobs: Array<{ packId: PackId; blobs: PlannedBlob[] }> = [];
    for (const [packId, byOffset] of packs) {
      const sorted = [...byOffset.values()].sort((x, y) => x.loc.offset - y.loc.offset);
      let range: PlannedBlob[] = [];
      for (const b of sorted) {
        if (b.loc.length > MAX_JOB_BYTES) {
          oversized.push(b);
          continue;
        }
        const start = range[0]?.loc.offset ?? b.loc.offset;
        const last = range[range.length - 1];
        if (last && (b.loc.offset - (last.loc.offset + last.loc.length) > MAX_GAP || b.loc.offset + b.loc.length - start > MAX_READ)) {
          jobs.push({ packId, blobs: range });
          range = [];
        }
        range.push(b);
      }
      if (range.length) jobs.push({ packId, blobs: range });
    }
    // A file whose blobs all lie in one range is created by the worker that writes it; every
    // other file is created here first, so that no two workers race to create one.
    const jobOf = new Map<FileTask, number>();
    for (let j = 0; j < jobs.length; j++) {
      for (const b of jobs[j]!.blobs) {
        for (const [t] of b.writes) {
          const seen = jobOf.get(t);
          if (seen === undefined) jobOf.set(t, j);
          else if (seen !== j) jobOf.set(t, -1);
        }
      }
    }
    for (const b of oversized) for (const [t] of b.writes) jobOf.set(t, -1);
    await mapLimit(tasks, 32, async (t) => {
      await this.removeExisting(t.pending.path);
      const j = jobOf.get(t);
      if (j !== undefined && j >= 0) return;
      // O_NOFOLLOW | O_EXCL: never write through a link that appeared in the target.
      const fh = await open(t.pending.path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      await fh.close();
      if (t.remaining === 0) this.fileDone(t);
    });

    if (pool) {
      try {
        const reads = new Semaphore(Math.max(1, this.repo.backend.connections));
        await runSettled(jobs, pool.capacity + 1, async (job, j) => {
          throwIfAborted(signal);
          const first = job.blobs[0]!.loc;
          const last = job.blobs[job.blobs.length - 1]!.loc;
          const length = last.offset + last.length - first.offset;
          let bytes: Uint8Array | undefined;
          try {
            bytes = await reads.run(() => this.repo.backend.load({ type: 'data', name: job.packId }, { signal, offset: first.offset, length }));
          } catch (e) {
            if (e instanceof AbortedError) throw e;
          }
          const reports = this.#reports;
          if (!bytes || bytes.length !== length) {
            for (const b of job.blobs) await this.restoreAlone(b);
            if (this.#reports === reports) this.report();
            return;
          }
          const decodeBlobs: DecodeBlob[] = job.blobs.map((b) => ({
            at: b.loc.offset - first.offset,
            length: b.loc.length,
            uncompressedLength: b.loc.uncompressedLength,
            id: b.loc.id,
            writes: b.writes.map(([t, offset]) => [t.pending.path, offset, jobOf.get(t) === j] as [Uint8Array, number, boolean]),
          }));
          // The files this job creates and completes get their owner and mode from the worker.
          const finishing = [...new Set(job.blobs.flatMap((b) => b.writes.map(([t]) => t)))].filter((t) => jobOf.get(t) === j);
          const finish = finishing.map((t): [Uint8Array, number, number, number] => {
            const { node, path: fp } = t.pending;
            return [fp, this.owners ? node.uid : -1, node.gid, node.mode === undefined ? -1 : posixPermissionsFromGo(node.mode)];
          });
          // A fresh buffer from the backend moves to the worker as it is.
          const done = await pool.run(bytes, packFile(job.packId), decodeBlobs, { transfer: ownedBytes(bytes), finish });
          if (done.writeError) {
            throw Object.assign(new Error(`${done.writeError.path}: ${done.writeError.message}`), { code: done.writeError.code });
          }
          finishing.forEach((t, k) => {
            const r = done.finished?.[k];
            if (r === undefined) return;
            t.ownerModeSet = true;
            if (r !== null) this.warn(t.pending.path, `owner/mode: ${r}`);
          });
          for (let i = 0; i < job.blobs.length; i++) {
            const b = job.blobs[i]!;
            if (done.errors[i] === null) this.blobWritten(b);
            else await this.restoreAlone(b);
          }
          // Bytes move within big files too, not only when a file completes.
          if (this.#reports === reports) this.report();
        });
        for (const b of oversized) {
          const reports = this.#reports;
          await this.restoreAlone(b);
          if (this.#reports === reports) this.report();
        }
      } catch (e) {
        // Blobs are written in pack order, not file order: a file left incomplete is cut where
        // its first missing blob starts, so that what is left is its verified beginning, with no
        // holes. O_NOFOLLOW: nothing outside the target is touched.
        for (const t of tasks) {
          if (t.remaining === 0 || t.missing.size === 0) continue;
          const fh = await open(t.pending.path, fsc.O_WRONLY | fsc.O_NOFOLLOW).catch(() => undefined);
          let cut = Infinity;
          for (const offset of t.missing) cut = Math.min(cut, offset);
          await fh?.truncate(cut).catch(() => undefined);
          await fh?.close();
        }
        throw e;
      } finally {
        await pool.close();
      }
    }

    // A second name of a hard link shares the first's inode, owner, mode and times.
    for (const { f, first } of links) {
      await this.removeExisting(f.path);
      await link(first, f.path);
      this.result.filesRestored++;
      this.report();
    }
  }

  /**
   * A blob the workers could not verify (or too big for them): read again from every copy the
   * index knows (loadBlob throws IntegrityError naming it when none is intact), then written here.
   */
  async restoreAlone(b: PlannedBlob): Promise<void> {
    const plain = await this.repo.loadBlob('data', b.loc.id, { signal: this.options.signal });
    for (const [t, offset] of b.writes) {
      const fh = await open(t.pending.path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
      try {
        for (let o = 0; o < plain.length; ) o += (await fh.write(plain, o, plain.length - o, offset + o)).bytesWritten;
      } finally {
        await fh.close();
      }
    }
    this.blobWritten(b);
  }

  blobWritten(b: PlannedBlob): void {
    for (const [t, offset] of b.writes) {
      if (!t.started) {
        t.started = true;
        this.#started.push(t);
      }
      this.result.bytesRestored += b.size;
      t.missing.delete(offset);
      if (--t.remaining === 0) this.fileDone(t);
    }
  }

  fileDone(t: FileTask): void {
    const { node, path: p } = t.pending;
    if (node.size !== undefined && BigInt(t.size) !== BigInt(node.size)) {
      this.warn(p, `restored ${t.size} bytes, snapshot says ${node.size}`);
    }
    this.result.filesRestored++;
    this.report();
    this.finishEntry(t.pending, !t.ownerModeSet);
  }

  /** Sends a progress event with the counts as they are. */
  report(): void {
    const onProgress = this.options.onProgress;
    if (!onProgress) return;
    this.#reports++;
    const done = { files: this.result.filesRestored, bytes: this.result.bytesRestored };
    const { percent, etaSeconds } = this.#estimator.estimate(done, this.#totals);
    const p: RestoreProgress = { filesDone: done.files, bytesDone: done.bytes, totalFiles: this.#totals.files, totalBytes: this.#totals.bytes, percent: percent ?? 0 };
    // The file whose writing started last among those not complete.
    const started = this.#started;
    while (started.length > 0 && started[started.length - 1]!.remaining === 0) started.pop();
    const current = started[started.length - 1];
    if (current) p.currentFile = current.pending.path.toString('utf8');
    if (etaSeconds !== undefined) p.etaSeconds = etaSeconds;
    onProgress(p);
  }

  // ---- metadata ------------------------------------------------------------------------------

  readonly #metaLimit = new Semaphore(16);
  readonly #metaTasks = new Set<Promise<void>>();
  #times: Pending[] = [];

  /**
   * Owner and mode (unless already set), xattrs and then times of a complete file or special
   * file, in the background. Times go to the helper in batches, each entry after its other
   * metadata, so nothing changes an mtime once it is set.
   */
  finishEntry(e: Pending, ownerMode: boolean): void {
    if (e.node.type === 'socket') return;
    const task = this.#metaLimit.run(async () => {
      await this.applyOwnerModeXattrs(e, ownerMode);
      this.#times.push(e);
      if (this.#times.length >= TIMES_PER_BATCH) await this.#flushTimes();
    });
    this.#metaTasks.add(task);
    void task.finally(() => this.#metaTasks.delete(task)).catch(() => undefined);
  }

  async #flushTimes(): Promise<void> {
    const batch = this.#times;
    this.#times = [];
    if (batch.length === 0) return;
    if (!this.helperOk) {
      // fs.lutimes takes seconds as a double: the digits below a microsecond are lost.
      for (const e of batch) if (e.node.mtime.epochNs % 1000n !== 0n || e.node.atime.epochNs % 1000n !== 0n) this.lose('nanosecond-times');
    }
    const results = await this.helper.setTimesMany(batch.map((e) => ({ path: e.path, atimeNs: e.node.atime.epochNs, mtimeNs: e.node.mtime.epochNs })));
    results.forEach((err, i) => {
      if (err) this.warn(batch[i]!.path, `times: ${err.message}`);
    });
  }

  /** Waits for the metadata of every file and special file. */
  async metadataDone(): Promise<void> {
    while (this.#metaTasks.size > 0) await Promise.all([...this.#metaTasks]);
    await this.#flushTimes();
  }

  /** Folders last, deepest first: owner, mode and xattrs, then times in that order. */
  async finishDirs(): Promise<void> {
    const dirs: Pending[] = [];
    for (let i = this.created.length - 1; i >= 0; i--) {
      const e = this.created[i]!;
      if (e.node.type === 'dir' && !e.dropped) dirs.push(e);
    }
    await Promise.all(dirs.map((e) => this.#metaLimit.run(() => this.applyOwnerModeXattrs(e, true))));
    this.#times = dirs;
    await this.#flushTimes();
  }

  /**
   * Makes a symlink, fifo or device; false when it was not made (then it gets no metadata). A
   * fifo or device that cannot be made is a warning, as in restic, never the restore's end.
   */
  async createSpecial(s: Pending): Promise<boolean> {
    const { node } = s;
    switch (node.type) {
      case 'symlink': {
        await this.removeExisting(s.path);
        const target = goStringToBytes(node.linktarget ?? '');
        await symlink(target, s.path);
        return true;
      }
      case 'fifo':
        if (!this.helperOk) return this.mkfifoWithoutHelper(s);
        await this.removeExisting(s.path);
        return this.tryMknod(s, fsc.S_IFIFO | 0o600, 0);
      case 'dev':
      case 'chardev':
        if (!this.helperOk) {
          this.lose('devices');
          return false;
        }
        await this.removeExisting(s.path);
        return this.tryMknod(s, (node.type === 'dev' ? fsc.S_IFBLK : fsc.S_IFCHR) | 0o600, BigInt(node.device ?? 0));
      case 'socket':
        await this.removeExisting(s.path);
        return false; // sockets belong to a running process; restic does not recreate them either
      default:
        await this.removeExisting(s.path);
        this.warn(s.path, `cannot restore a node of type ${node.type}`);
        return false;
    }
  }

  async tryMknod(s: Pending, mode: number, dev: bigint | number): Promise<boolean> {
    try {
      await this.helper.mknod(s.path, mode, dev);
      return true;
    } catch (err) {
      this.warn(s.path, (err as Error).message);
      return false;
    }
  }

  /** Node cannot make a fifo; coreutils' mkfifo can (a name must be valid UTF-8 to pass it on). */
  async mkfifoWithoutHelper(s: Pending): Promise<boolean> {
    if (this.#mkfifo === null) this.#mkfifo = findExecutable('mkfifo');
    const asText = s.path.toString('utf8');
    if (!this.#mkfifo || !Buffer.from(asText, 'utf8').equals(s.path)) {
      this.lose('fifos');
      return false;
    }
    await this.removeExisting(s.path);
    try {
      await mkfifoProgram(this.#mkfifo, asText);
      return true;
    } catch (err) {
      this.warn(s.path, (err as Error).message);
      return false;
    }
  }

  async applyOwnerModeXattrs(e: Pending, ownerMode: boolean): Promise<void> {
    const { node, path: p } = e;
    const isLink = node.type === 'symlink';
    if (ownerMode) {
      try {
        if (this.owners) await (isLink ? lchown : chown)(p, node.uid, node.gid);
        // chmod after chown: chown clears setuid/setgid.
        if (!isLink && node.mode !== undefined) await chmod(p, posixPermissionsFromGo(node.mode));
      } catch (err) {
        this.warn(p, `owner/mode: ${(err as Error).message}`);
      }
    }
    if (!this.helperOk) {
      if (node.extendedAttributes?.length) this.lose('xattrs');
      return;
    }
    for (const x of node.extendedAttributes ?? []) {
      try {
        await this.helper.setXattr(p, x.name, x.value);
      } catch (err) {
        this.warn(p, `xattr ${x.name}: ${(err as Error).message}`);
      }
    }
  }
}

const SLASH = Buffer.from('/');

/**
 * fn over items, at most `limit` at once. After a failure no new item starts, and the ones under
 * way finish before the first failure is thrown (so nothing is still writing when it is).
 */
async function runSettled<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failure) throw failure.error;
}

function packFile(packId: string): string {
  return `data/${packId.slice(0, 2)}/${packId}`;
}

export { AbortedError, InvalidInputError };
