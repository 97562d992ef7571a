// Progress of backup and restore: totals (from a scan of the backup sources that runs beside the
// backup, as restic's scanner does, or from a snapshot's trees), the percentage, the ETA from
// the recent rate, and which file is in work.
import { lstat, readdir } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { throwIfAborted } from '../../errors.ts';
import type { BlobId } from '../../repository/id.ts';
import type { IndexedRepository } from '../../repository/repository.ts';
import { PathFilter } from '../model/filter.ts';
import { decodeTree } from '../model/tree.ts';

/** What a backup or a restore has in all: regular files, folders and file bytes. */
export interface ProgressTotals {
  files: number;
  dirs: number;
  bytes: number;
}

/** The rate behind the ETA is measured over this much recent time, so an early burst fades. */
const RATE_WINDOW_MS = 10_000;
/** Rate samples are kept at least this far apart (at most RATE_WINDOW_MS / this of them). */
const SAMPLE_SPACING_MS = 100;
/** Below this rate (bytes/s) an ETA would be a wild guess; restic shows none either. */
const MIN_RATE_FOR_ETA = 1024;
/** Files of one folder lstat'ed at once by the scanner. */
const STAT_BATCH = 32;

/**
 * The percentage and the ETA of a run from its counts and totals. The rate is the bytes done
 * over the last ten seconds (over the whole run until then, from its start).
 */
export class ProgressEstimator {
  readonly #now: () => number;
  readonly #samples: Array<{ t: number; bytes: number }>;

  /** `now`: milliseconds on a monotonic clock (default performance.now); the run starts now. */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
    this.#samples = [{ t: now(), bytes: 0 }];
  }

  /**
   * `percent` (0 to 100: by bytes, or by files when the totals have no bytes) and `etaSeconds`
   * (when the rate is at least 1 KiB/s and bytes are left), both absent without totals.
   */
  estimate(done: { files: number; bytes: number }, totals: { files: number; bytes: number } | undefined): { percent?: number; etaSeconds?: number } {
    const t = this.#now();
    const samples = this.#samples;
    if (t - samples[samples.length - 1]!.t >= SAMPLE_SPACING_MS) samples.push({ t, bytes: done.bytes });
    while (samples.length > 2 && t - samples[1]!.t >= RATE_WINDOW_MS) samples.shift();
    if (!totals) return {};
    const percent = totals.bytes > 0 ? Math.min(100, (done.bytes / totals.bytes) * 100) : totals.files > 0 ? Math.min(100, (done.files / totals.files) * 100) : 100;
    const first = samples[0]!;
    const rate = t > first.t ? ((done.bytes - first.bytes) * 1000) / (t - first.t) : 0;
    if (done.bytes >= totals.bytes || rate < MIN_RATE_FOR_ETA) return { percent };
    return { percent, etaSeconds: Math.ceil((totals.bytes - done.bytes) / rate) };
  }
}

// ---- backup ----------------------------------------------------------------------------------

/** A stream (stdin) reports its bytes at least this often… */
const STREAM_REPORT_MS = 100;
/** …or after this many bytes, whichever comes first. */
const STREAM_REPORT_BYTES = 1024 * 1024;

/** Where a backup's totals come from: a scan of its targets beside the backup. */
export interface BackupScan {
  paths: readonly string[];
  excludes?: readonly string[];
  signal?: AbortSignal;
}

/**
 * A backup's progress, sent to `BackupOptions.onProgress`: after every file, after every
 * few hundred KiB a worker has chunked (so a big file moves it), every 100 ms or 1 MiB of a
 * stdin stream, and once when the scan of the sources is complete.
 */
export interface BackupProgress {
  /** Files finished (stored, or found unchanged since the parent snapshot). */
  filesDone: number;
  /** Folders finished. */
  dirsDone: number;
  /** Bytes of file content done: counted as the workers chunk them, so a big file moves it too. */
  bytesDone: number;
  /**
   * The file being read and chunked now; when several are (one per worker), the one whose
   * reading started last. Absent while none is (between files, or when files are unchanged since
   * the parent and not read at all). A stdin backup names its file "/" + filename.
   */
  currentFile?: string;
  /**
   * Totals from the scan of the sources that runs beside the backup (restic's scanner): regular
   * files, folders and file bytes below the targets, as counted so far. Absent without a scan
   * (`scan: false`, or a stdin backup, whose size is unknown until it ends).
   */
  totalFiles?: number;
  totalDirs?: number;
  totalBytes?: number;
  /** Whether the scan has finished: only then are the totals final, and percent and ETA given. */
  totalsComplete: boolean;
  /** How far the backup is, 0 to 100: bytesDone of totalBytes (files when there are no bytes). */
  percent?: number;
  /** Seconds left at the rate of the last ten seconds (absent below 1 KiB/s or when done). */
  etaSeconds?: number;
}

/**
 * A backup's progress: the counts, the totals from a scan that runs beside the backup (started
 * here, stopped by close), the files in work, and the events. Nothing is scanned or reported
 * without an `onProgress`.
 */
export class BackupMeter {
  filesDone = 0;
  dirsDone = 0;
  bytesDone = 0;
  readonly #onProgress: ((p: BackupProgress) => void) | undefined;
  readonly #estimator = new ProgressEstimator();
  #totals: ProgressTotals | undefined;
  #totalsComplete = false;
  #scan: Promise<void> | undefined;
  readonly #stopScan = new AbortController();
  #closed = false;
  /** The file each reader (a worker, or the stream) is in, and when it started there. */
  readonly #reading = new Map<number | string, { path: string; seq: number }>();
  #seq = 0;
  #lastReport = -Infinity;
  #bytesAtReport = 0;

  constructor(onProgress: ((p: BackupProgress) => void) | undefined, scan: BackupScan | undefined) {
    this.#onProgress = onProgress;
    if (!onProgress || !scan || scan.paths.length === 0) return;
    const totals: ProgressTotals = { files: 0, dirs: 0, bytes: 0 };
    this.#totals = totals;
    const signal = scan.signal ? AbortSignal.any([scan.signal, this.#stopScan.signal]) : this.#stopScan.signal;
    this.#scan = scanInto(scan.paths, totals, { excludes: scan.excludes, signal }).then(
      () => {
        this.#totalsComplete = true;
        this.report();
      },
      () => undefined, // an estimate only: without it there is no percentage
    );
  }

  /** `path` is being read by `reader` (a worker's number, or a name); it stays current until finished. */
  reading(reader: number | string, path: string): void {
    if (!this.#onProgress || this.#reading.get(reader)?.path === path) return;
    this.#reading.set(reader, { path, seq: ++this.#seq });
  }

  /** `path` is done: no longer in work. */
  finished(path: string): void {
    for (const [reader, r] of this.#reading) if (r.path === path) this.#reading.delete(reader);
  }

  /** The most recently started file that is not finished. */
  get currentFile(): string | undefined {
    let current: { path: string; seq: number } | undefined;
    for (const r of this.#reading.values()) if (!current || r.seq > current.seq) current = r;
    return current?.path;
  }

  /** Bytes of a stream read: reported every 100 ms or 1 MiB. */
  streamed(bytes: number, path: string): void {
    if (!this.#onProgress) return;
    this.bytesDone += bytes;
    this.reading(path, path);
    if (this.bytesDone - this.#bytesAtReport >= STREAM_REPORT_BYTES || performance.now() - this.#lastReport >= STREAM_REPORT_MS) this.report();
  }

  /** Sends an event with the counts as they are (nothing once closed). */
  report(): void {
    if (!this.#onProgress || this.#closed) return;
    this.#lastReport = performance.now();
    this.#bytesAtReport = this.bytesDone;
    const totals = this.#totals;
    const complete = this.#totalsComplete;
    const { percent, etaSeconds } = this.#estimator.estimate({ files: this.filesDone, bytes: this.bytesDone }, complete ? totals : undefined);
    const p: BackupProgress = { filesDone: this.filesDone, dirsDone: this.dirsDone, bytesDone: this.bytesDone, totalsComplete: complete };
    const currentFile = this.currentFile;
    if (currentFile !== undefined) p.currentFile = currentFile;
    if (totals) {
      p.totalFiles = totals.files;
      p.totalDirs = totals.dirs;
      p.totalBytes = totals.bytes;
    }
    if (percent !== undefined) p.percent = percent;
    if (etaSeconds !== undefined) p.etaSeconds = etaSeconds;
    this.#onProgress(p);
  }

  /** Stops the scan (waiting for it) and the events. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopScan.abort();
    await this.#scan;
  }
}

// ---- totals ----------------------------------------------------------------------------------

/** Options of {@link scanTotals}. */
export interface ScanOptions {
  /** Exclude patterns, matched as backup matches them (restic's --exclude). */
  excludes?: readonly string[];
  /** Stops the scan; it rejects with `AbortedError`. */
  signal?: AbortSignal;
  /** Folders read at once (default 8). */
  concurrency?: number;
}

/**
 * Counts the regular files, folders and file bytes below the backup targets with lstat, as
 * restic's scanner does, so the status can show a percentage and an ETA (a backup with
 * `onProgress` runs it by itself). Unreadable entries are skipped (the backup reports them).
 * Paths are handled as bytes, so odd names are counted too.
 */
export async function scanTotals(paths: readonly string[], options: ScanOptions = {}): Promise<ProgressTotals> {
  const totals: ProgressTotals = { files: 0, dirs: 0, bytes: 0 };
  await scanInto(paths, totals, options);
  return totals;
}

/** scanTotals, counting into `totals` as it goes (so they can be read while it runs). */
export async function scanInto(paths: readonly string[], totals: ProgressTotals, options: ScanOptions = {}): Promise<void> {
  const filter = new PathFilter(options.excludes ?? []);
  const excluded = (p: Buffer): boolean => !filter.empty && filter.matches(p.toString('utf8'));
  const dirs: Buffer[] = [];
  for (const target of paths) {
    const p = Buffer.from(target);
    if (excluded(p)) continue;
    const st = await lstat(p).catch(() => undefined);
    if (st?.isDirectory()) {
      totals.dirs++;
      dirs.push(p);
    } else if (st?.isFile()) {
      totals.files++;
      totals.bytes += st.size;
    }
  }
  const scanDir = async (dir: Buffer): Promise<void> => {
    throwIfAborted(options.signal);
    let entries: Dirent<Buffer>[];
    try {
      entries = await readdir(dir, { encoding: 'buffer', withFileTypes: true });
    } catch {
      return;
    }
    const toStat: Buffer[] = [];
    for (const e of entries) {
      const p = Buffer.concat([dir, Buffer.from('/'), e.name]);
      if (excluded(p)) continue;
      if (e.isDirectory()) {
        totals.dirs++;
        dirs.push(p);
      } else if (e.isFile() || !(e.isSymbolicLink() || e.isFIFO() || e.isSocket() || e.isBlockDevice() || e.isCharacterDevice())) {
        // Files for their size, and entries some filesystems list without a type.
        toStat.push(p);
      }
    }
    for (let i = 0; i < toStat.length; i += STAT_BATCH) {
      throwIfAborted(options.signal);
      const stats = await Promise.all(toStat.slice(i, i + STAT_BATCH).map((p) => lstat(p).catch(() => undefined)));
      stats.forEach((st, j) => {
        if (st?.isFile()) {
          totals.files++;
          totals.bytes += st.size;
        } else if (st?.isDirectory()) {
          totals.dirs++;
          dirs.push(toStat[i + j]!);
        }
      });
    }
  };
  await drain(dirs, options.concurrency ?? 8, scanDir);
}

/** Options of {@link treeTotals}. */
export interface TreeTotalsOptions {
  /** restore's include and exclude patterns, applied as restore applies them. */
  include?: readonly string[];
  /** Paths matching these are not counted (restore's exclude patterns). */
  exclude?: readonly string[];
  /** Stops the count; it rejects with `AbortedError`. */
  signal?: AbortSignal;
  /** Trees loaded at once (default 8). */
  concurrency?: number;
}

/**
 * Counts what a restore of `treeId` will write: files (every name, hard links included),
 * folders, and file bytes (a hard-linked file once, as restore writes it once). A restore
 * reports these totals itself; this is for knowing them without restoring.
 */
export async function treeTotals(repo: IndexedRepository, treeId: BlobId, options: TreeTotalsOptions = {}): Promise<ProgressTotals> {
  const include = new PathFilter(options.include ?? []);
  const exclude = new PathFilter(options.exclude ?? []);
  const totals: ProgressTotals = { files: 0, dirs: 0, bytes: 0 };
  const linked = new Set<string>();
  interface Pending {
    tree: BlobId;
    rel: string;
    inside: boolean;
  }
  const queue: Pending[] = [{ tree: treeId, rel: '', inside: false }];
  await drain(queue, options.concurrency ?? 8, async ({ tree, rel, inside }) => {
    throwIfAborted(options.signal);
    const nodes = decodeTree(await repo.loadBlob('tree', tree, { signal: options.signal }), tree);
    for (const node of nodes) {
      const childRel = `${rel}/${node.name}`;
      if (!exclude.empty && exclude.matches(childRel)) continue;
      const selected = inside || include.empty || include.matches(childRel);
      if (node.type === 'dir') {
        if (!node.subtree) continue;
        if (!selected && !include.mayContainMatch(childRel)) continue;
        if (selected) totals.dirs++;
        queue.push({ tree: node.subtree, rel: childRel, inside: selected });
      } else if (node.type === 'file' && selected) {
        totals.files++;
        if (Number(node.links ?? 1) > 1 && node.inode !== undefined) {
          const key = `${node.deviceId ?? 0}:${node.inode}`;
          if (linked.has(key)) continue;
          linked.add(key);
        }
        totals.bytes += Number(node.size ?? 0);
      }
    }
  });
  return totals;
}

/** Runs `work` on every item of `queue`, which the work may grow, with at most `limit` at once. */
async function drain<T>(queue: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let failure: unknown;
  let running = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (failure === undefined && running < limit && queue.length > 0) {
        const item = queue.pop()!;
        running++;
        work(item).then(
          () => {
            running--;
            pump();
          },
          (e: unknown) => {
            running--;
            failure ??= e;
            pump();
          },
        );
      }
      if (running === 0 && (queue.length === 0 || failure !== undefined)) resolve();
    };
    pump();
  });
  if (failure !== undefined) throw failure;
}
