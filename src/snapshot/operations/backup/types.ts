// The backup's public types: its sources, options and result.
import type { Readable } from 'node:stream';
import type { SnapshotId } from '../../../repository/id.ts';
import type { CompressionMode } from '../../../repository/compression.ts';
import type { GoTime } from '../../../repository/gotime.ts';
import type { MetadataLoss } from '../../engine/syshelper.ts';
import type { BackupProgress } from '../../engine/progress.ts';
import type { Snapshot, SnapshotGroupBy, SnapshotSummary } from '../../model/snapshot.ts';

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
  /** As `excludes`, case ignored (restic's --iexclude); not recorded in the snapshot. */
  iexcludes?: readonly string[];
  /** Leave out anything but folders larger than this many bytes (restic's --exclude-larger-than). */
  excludeLargerThan?: number;
  /**
   * restic's --exclude-if-present `filename[:header]`: a folder holding that file (starting with
   * header, when given) is stored with only that file.
   */
  excludeIfPresent?: readonly string[];
  /** restic's --exclude-caches: the same for folders with a valid CACHEDIR.TAG. */
  excludeCaches?: boolean;
  /** Parent snapshot for change detection; undefined = the latest with the same host and paths; null = none. */
  parent?: string | null;
  /**
   * Compression of data blobs in a v2 repository (default `'auto'`; restic --compression). Ignored
   * in v1.
   */
  compression?: CompressionMode;
  /**
   * Target size of the data packs in bytes (default 16 MiB; restic --pack-size, which takes MiB,
   * 4 to 128). Packs end once this is reached, so they may be a little larger. The memory budget
   * (`memoryLimit`) counts 16 MiB per pack buffer.
   */
  packSize?: number;
  /** The snapshot's time (default: when the backup starts); restic --time. */
  time?: GoTime;
  /** Worker threads for chunking and sealing (default: one per core, or what `memoryLimit` allows). */
  threads?: number;
  /**
   * The memory the backup should fit in, in bytes (at least 64 MiB; `InvalidInputError` else):
   * sizes the worker threads and the data pack buffers (and so the packs stored at once). Default:
   * the container's cgroup memory limit when there is one, else no limit (one worker per core,
   * the backend's connections + 2 pack buffers). The workers are also bounded by the cgroup's
   * CPU quota. A target the sizing aims for, not a cap enforced on every allocation.
   */
  memoryLimit?: number;
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
  /** A file whose mtime and size match the parent's is unchanged whatever its inode and ctime (restic's --ignore-inode). */
  ignoreInode?: boolean;
  /** A file whose mtime, size and inode match the parent's is unchanged whatever its ctime (restic's --ignore-ctime). */
  ignoreCtime?: boolean;
  /** Store each entry's access time (restic's --with-atime); without it the atime recorded is the mtime. */
  withAtime?: boolean;
  /**
   * How the parent is chosen when `parent` is undefined (restic's --group-by): the latest snapshot
   * of this host / holding these paths / with these tags, as far as each is set. Without it, the
   * latest snapshot of this host with exactly these paths.
   */
  groupBy?: SnapshotGroupBy;
  /**
   * Stay on the file systems of the backup targets (restic's --one-file-system): a mount point
   * below them is stored as an empty folder.
   */
  oneFileSystem?: boolean;
  /**
   * Read, chunk and count everything but store nothing and take no lock (restic's --dry-run): the
   * summary tells what would have been added.
   */
  dryRun?: boolean;
  /** Write no snapshot when the tree equals the parent snapshot's (restic's --skip-if-unchanged). */
  skipIfUnchanged?: boolean;
  /** A file or folder that cannot be read is recorded and skipped (restic exit 3). */
  onError?: (path: string, error: Error) => void;
  /**
   * Called once the parent snapshot is chosen, before any file is read: its ID, or undefined when
   * there is none (restic prints "using parent snapshot" then). Not called for `stdin`.
   */
  onParent?: (parent: SnapshotId | undefined) => void;
  /**
   * Called for every file and folder once it is stored or found unchanged, in the order they
   * finish (a folder after its contents), as restic's `backup -vv` prints them. Folders made from
   * the targets' paths (`/home` for `/home/user`) count too; the snapshot root does not.
   */
  onItem?: (item: BackupItem) => void;
}

/** One file or folder done, as restic's `backup -vv` (and its `verbose_status` JSON) reports it. */
export interface BackupItem {
  /** The path in the snapshot, from its root ("/home/user/work.txt"); a folder's ends in "/". */
  path: string;
  type: 'file' | 'dir';
  /**
   * Against the parent snapshot: not in it; in it but its node differs ("modified": metadata,
   * contents or, for a folder, anything below); or the same node.
   */
  action: 'new' | 'modified' | 'unchanged';
  /** Seconds from the start of its saving to its end (0 for an unchanged item). */
  seconds: number;
  /** A file's data blobs that this backup added first: their plaintext bytes. 0 for folders. */
  dataAdded: number;
  /** What the packs hold for those blobs (each sealed blob and its header entry). */
  dataAddedPacked: number;
  /** A folder's tree blob, when this backup added it: its plaintext bytes. 0 for files. */
  treeAdded: number;
  /** What the pack holds for that tree blob (sealed blob and header entry). */
  treeAddedPacked: number;
}

/** What {@link backup} wrote. */
export interface BackupResult {
  /** The new snapshot's ID; with `skipped`, the parent's (which holds the same tree). */
  snapshotId: SnapshotId;
  /** The snapshot as stored (tree, paths, host, tags, summary); with `skipped`, as it would have been. */
  snapshot: Snapshot;
  /** True for a `dryRun`: nothing was written; `snapshotId` is the ID the snapshot would have had. */
  dryRun?: boolean;
  /** True when `skipIfUnchanged` found the parent's tree again and wrote no snapshot. */
  skipped?: boolean;
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
