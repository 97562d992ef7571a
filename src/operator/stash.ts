// Stash (stash.appscode.com) status objects: a Repository's `status` and a BackupSession's host
// statistics, filled the way Stash fills them (stashed/apimachinery v0.42.1 pkg/restic,
// stashed/stash v0.42.0 pkg/status), from one observation or one backup result.
import type { AnyRepository } from '../repository/repository.ts';
import { InvalidInputError } from '../errors.ts';
import type { BackupResult } from '../snapshot/operations/backup/types.ts';
import type { ForgetResult } from '../snapshot/operations/forget.ts';
import { backupSpanNs, formatGoDuration, formatStashBytes, formatStashSeconds, kubernetesTime } from './format.ts';
import { observeRepository, type ObserveOptions, type RepositoryObservation } from './observe.ts';

/**
 * `status` of a Stash `Repository` (stash.appscode.com/v1alpha1). Fields are left out as Stash's
 * Go types leave them out (omitempty) when there is nothing to say.
 */
export interface StashRepositoryStatus {
  /** The oldest snapshot's time (metav1.Time: RFC 3339, UTC, whole seconds). */
  firstBackupTime?: string;
  /** The newest snapshot's time, or the BackupSession's start when given. */
  lastBackupTime?: string;
  /** Whether `check` found no error; absent when the check was skipped. */
  integrity?: boolean;
  /** `stats --mode raw-data` total size, formatted as Stash formats it ("1.845 MiB"). */
  totalSize?: string;
  snapshotCount?: number;
  /** Snapshots the last forget removed. */
  snapshotsRemovedOnLastCleanup?: number;
}

/** Options of {@link buildStashRepositoryStatus}. */
export interface StashStatusOptions {
  /** The last retention run: its removed snapshots become `snapshotsRemovedOnLastCleanup`. */
  lastCleanup?: ForgetResult;
  /**
   * The BackupSession's creation time, which Stash writes as `lastBackupTime`; without it, the
   * newest snapshot's time.
   */
  backupSessionTime?: Date;
}

/** Options of {@link stashRepositoryStatus}: how to observe, and what to add. */
export type StashRepositoryStatusOptions = ObserveOptions & StashStatusOptions;

/** A Stash Repository status and the observation it was made from (for metrics, logs). */
export interface StashStatusResult {
  /** The status, ready for a status update of the Repository. */
  status: StashRepositoryStatus;
  /** What it was made from: the snapshots, stats and check report. */
  observation: RepositoryObservation;
}

/**
 * A Stash Repository's `status` in one call: check (without reading data unless asked), raw-data
 * size and the snapshot list, from one open repository (an IndexedRepository is reused and
 * refreshed). See docs/operators.md for where each field comes from.
 *
 * @example
 * ```ts
 * const { status } = await stashRepositoryStatus(indexed, { lastCleanup: forgetResult });
 * await k8s.patchNamespacedCustomObjectStatus(…, { status });
 * ```
 */
export async function stashRepositoryStatus(repository: AnyRepository, options: StashRepositoryStatusOptions = {}): Promise<StashStatusResult> {
  const observation = await observeRepository(repository, options);
  return { status: buildStashRepositoryStatus(observation, options), observation };
}

/** The Stash Repository status an observation gives (pure). */
export function buildStashRepositoryStatus(observation: RepositoryObservation, options: StashStatusOptions = {}): StashRepositoryStatus {
  const { snapshots, stats, check } = observation;
  const status: StashRepositoryStatus = {};
  if (snapshots.length > 0) status.firstBackupTime = kubernetesTime(snapshots[0]!.snapshot.time);
  if (options.backupSessionTime) status.lastBackupTime = kubernetesTime(options.backupSessionTime);
  else if (snapshots.length > 0) status.lastBackupTime = kubernetesTime(snapshots[snapshots.length - 1]!.snapshot.time);
  if (check) status.integrity = check.ok;
  if (stats) status.totalSize = formatStashBytes(stats.rawDataSize);
  status.snapshotCount = snapshots.length;
  if (options.lastCleanup) status.snapshotsRemovedOnLastCleanup = removedByCleanup(options.lastCleanup);
  return status;
}

/** Snapshots a forget removed (a dry run removed none). */
export function removedByCleanup(result: ForgetResult): number {
  return result.dryRun ? 0 : result.removed.length;
}

// ---- BackupSession host statistics (stash.appscode.com/v1beta1) ---------------------------------

/** Stash's `FileStats` of one snapshot. */
export interface StashFileStats {
  totalFiles?: number;
  newFiles?: number;
  modifiedFiles?: number;
  unmodifiedFiles?: number;
}

/** Stash's `SnapshotStats`: one snapshot a host's backup made. */
export interface StashSnapshotStats {
  /** The snapshot ID. */
  name?: string;
  /** The path backed up (Stash backs up each path as its own snapshot), or the stdin file name. */
  path?: string;
  /** Bytes processed, formatted ("12.500 MiB"). */
  totalSize?: string;
  /** Bytes added to the repository (before compression), formatted. */
  uploaded?: string;
  /** restic's total duration, "m:ss". */
  processingTime?: string;
  fileStats?: StashFileStats;
}

/** Stash's `HostBackupStats`: one host's part of a BackupSession. */
export interface StashHostBackupStats {
  hostname?: string;
  phase?: 'Succeeded' | 'Failed';
  snapshots?: StashSnapshotStats[];
  /** Go duration string of the host's whole backup ("1m2.5s"). */
  duration?: string;
  error?: string;
}

/** One backup of a host: its result and the path Stash would name it by. */
export interface StashBackupEntry {
  result: BackupResult;
  /** Default: the snapshot's only path, or its paths joined by ",". */
  path?: string;
}

/** Options of {@link stashHostBackupStats}. */
export interface StashHostStatsOptions {
  /** The host (Stash: the workload or pod name the backups ran as). */
  hostname: string;
  /** The host's backup time in ms (Stash: from before the first backup to after the last). Default: the backups' own span. */
  durationMs?: number;
  /** The error that failed the host's backup: phase Failed. */
  error?: Error | string;
}

/** One snapshot's statistics as Stash extracts them from `restic backup --json`'s summary. */
export function stashSnapshotStats(entry: StashBackupEntry): StashSnapshotStats {
  const { result } = entry;
  const s = result.summary;
  const seconds = Number(s.backupEnd.epochNs - s.backupStart.epochNs) / 1e9;
  const paths = result.snapshot.paths;
  return {
    name: result.snapshotId,
    path: entry.path ?? (paths.length === 1 ? paths[0] : paths.join(',')),
    totalSize: formatStashBytes(s.totalBytesProcessed),
    uploaded: formatStashBytes(s.dataAdded),
    processingTime: formatStashSeconds(Math.max(0, seconds)),
    fileStats: {
      totalFiles: s.totalFilesProcessed,
      newFiles: s.filesNew,
      modifiedFiles: s.filesChanged,
      unmodifiedFiles: s.filesUnmodified,
    },
  };
}

/**
 * A host's entry of a BackupSession's `status.targets[].stats`, from the backups it ran: a
 * snapshot entry per backup, the phase, the duration as a Go duration string, and the error.
 */
export function stashHostBackupStats(entries: readonly StashBackupEntry[], options: StashHostStatsOptions): StashHostBackupStats {
  if (!options.hostname) throw new InvalidInputError('stashHostBackupStats needs the hostname');
  const out: StashHostBackupStats = { hostname: options.hostname };
  out.phase = options.error === undefined ? 'Succeeded' : 'Failed';
  if (entries.length > 0) out.snapshots = entries.map(stashSnapshotStats);
  const ns = backupSpanNs(entries, options.durationMs);
  if (ns !== undefined) out.duration = formatGoDuration(ns);
  if (options.error !== undefined) out.error = typeof options.error === 'string' ? options.error : options.error.message;
  return out;
}
