// The restore's public types, and what its modules pass around.
import type { MetadataLoss } from '../../engine/syshelper.ts';
import type { TreeNode } from '../../model/node.ts';
import type { SnapshotFilter } from '../../model/snapshot.ts';
import type { OverwriteMode } from './overwrite.ts';
import type { VerifyResult } from './verify.ts';

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
  /** As `include`, case ignored (restic's --iinclude). */
  iinclude?: readonly string[];
  /** As `exclude`, case ignored (restic's --iexclude). */
  iexclude?: readonly string[];
  /**
   * What becomes of an entry the target has already (restic's --overwrite): `always` (default)
   * replaces it, but a file is read first: one whose contents are the snapshot's is left (only
   * its metadata restored), one that holds some of the snapshot's blobs in place has only the
   * others written, in place; `if-changed` as `always`, but a file with the snapshot's size and
   * mtime is taken to match unread; `if-newer` replaces only when the snapshot's mtime is later
   * (a file compared as with `always`); `never` leaves it. Folders are always restored.
   */
  overwrite?: OverwriteMode;
  /**
   * Only the extended attributes whose names match these patterns are set (restic's
   * --include-xattr; its pattern syntax, a name matched like a path: `user.*`). Default: all.
   */
  includeXattrs?: readonly string[];
  /** The extended attributes whose names match these patterns are not set (restic's --exclude-xattr); not with `includeXattrs`. */
  excludeXattrs?: readonly string[];
  /**
   * Restore files sparse, as restic's --sparse: a file holding the all-zero chunk (a stretch of
   * zeros of at least 512 KiB), or of one blob, is made its full length first and the all-zero
   * beginning of each of its blobs is not written, so the file system can leave holes there.
   */
  sparse?: boolean;
  /** Read every file written back and check it against its blobs (restic's --verify; files `overwrite` left alone are not read). */
  verify?: boolean;
  /**
   * Remove what the target holds that the snapshot does not, in the folders restored, where the
   * include/exclude selection would restore it (restic's --delete).
   */
  delete?: boolean;
  /** Each path `delete` removed (children before their folder). */
  onDelete?: (path: string) => void;
  /** Restore owners (uid/gid). Default: when running as root. */
  owners?: boolean;
  /**
   * Owners by the user and group names the snapshot recorded, as restic ≥ 0.17's
   * `--ownership-by-name`: each name looked up in this machine's /etc/passwd and /etc/group, a name
   * not found there (or none recorded) giving 0, as restic gives it; the recorded uid and gid are
   * not used. Takes effect where owners are restored (`owners`).
   */
  ownershipByName?: boolean;
  /**
   * Kept for compatibility; contents are now restored pack by pack (every pack read once, blobs
   * written to all files that need them), so there is no number of files in flight to choose.
   */
  concurrency?: number;
  /**
   * The memory the restore should fit in, in bytes (at least 64 MiB; `InvalidInputError` else):
   * sizes the decode worker threads and the packs read at once. Default: the container's cgroup
   * memory limit when there is one, else no limit (one worker per core, the backend's
   * connections). The workers are also bounded by the cgroup's CPU quota.
   */
  memoryLimit?: number;
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
  /** Regular files written (hard-linked names included). */
  filesRestored: number;
  /** Symlinks, fifos and devices made (absent when there were none). */
  othersRestored?: number;
  /** Folders created. */
  dirsRestored: number;
  /** Bytes of file contents written (as restic counts them: those a file written in place already held included). */
  bytesRestored: number;
  /** What `verify` found (absent without it). */
  verified?: VerifyResult;
  /**
   * Entries left as they were: by `overwrite`, or files whose contents were already the
   * snapshot's (absent with `always` when there were none).
   */
  filesSkipped?: number;
  /** Bytes of the files among them (absent with `filesSkipped`). */
  bytesSkipped?: number;
  /** Files and folders removed by `delete` (absent without it). */
  deleted?: number;
  /** Folders among `dirsRestored` made only on the way to included entries (absent when none). */
  dirsOnTheWay?: number;
  /** Links, fifos and devices among `filesSkipped` (absent when none). */
  othersSkipped?: number;
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

/** What a restore reads of an entry's tree node (walk.ts's restoreNode keeps only these). */
export type RestoreNode = Pick<
  TreeNode,
  'type' | 'mode' | 'mtime' | 'atime' | 'uid' | 'gid' | 'size' | 'links' | 'inode' | 'deviceId' | 'content' | 'extendedAttributes' | 'linktarget' | 'linktargetRaw' | 'device'
>;

/** An entry of the snapshot to restore, at its path in the target. */
export interface RestoreEntry {
  /** The path in the target (bytes: names need not be UTF-8). */
  readonly path: Buffer;
  node: RestoreNode;
  /** A folder made on the way to an include that matched nothing below it, removed again. */
  dropped?: boolean;
  /** A folder made only on the way to included entries below it (not itself included). */
  onTheWay?: boolean;
  /** A folder's entries, in tree order. */
  children?: RestoreEntry[];
}
