// The last step: the snapshot, written once the packs and their index are stored.
import os from 'node:os';
import type { IndexedRepository, BlobWriter } from '../../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../../repository/id.ts';
import { goTimeNow, type GoTime } from '../../../repository/gotime.ts';
import { describeMetadataLoss, type MetadataLoss, type SysHelper } from '../../engine/syshelper.ts';
import { encodeSnapshot, type Snapshot, type SnapshotSummary } from '../../model/snapshot.ts';
import { PROGRAM_VERSION } from '../../../version.ts';
import { safeUser } from './stdin.ts';
import type { BackupRun } from './walk.ts';
import type { BackupOptions, BackupResult } from './types.ts';

/** What the snapshot is made of. */
export interface SnapshotParts {
  run: BackupRun;
  writer: BlobWriter;
  helper: SysHelper;
  options: BackupOptions;
  /** When the backup started. */
  start: GoTime;
  /** The snapshot's time when the caller gave one. */
  time: GoTime | undefined;
  tree: BlobId;
  paths: string[];
}

/** Writes the snapshot (summary, paths, host, user, tags) and returns the backup's result. */
export async function writeSnapshot(repo: IndexedRepository, parts: SnapshotParts): Promise<BackupResult> {
  const { run, writer, helper, options, start, time, tree, paths } = parts;
  const summary = summarize(run, writer, start);
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
  // --skip-if-unchanged: the same tree as the parent's means no new snapshot (restic 0.17+).
  if (options.skipIfUnchanged && run.parentId && run.parentTreeId === tree) {
    return { snapshotId: run.parentId, snapshot, summary, errors: run.errors, skipped: true };
  }
  // --dry-run: the snapshot is sealed for its ID (restic prints one) but not stored.
  const snapshotId = (await repo.repo.saveUnpacked('snapshots', encodeSnapshot(snapshot), { signal: options.signal, dryRun: options.dryRun === true })) as SnapshotId;
  if (options.dryRun) return { snapshotId, snapshot, summary, errors: run.errors, dryRun: true };
  // Once per run: the helper's absence means no xattrs were read (whether files had any, Node
  // cannot tell).
  let metadataLoss: MetadataLoss | undefined;
  if (!options.stdin && !(await helper.ready())) {
    metadataLoss = describeMetadataLoss('backup', ['xattrs'], {}, helper.unavailableReason ?? 'the syscall helper is unavailable');
    repo.logger.warn(metadataLoss.message, { lost: metadataLoss.kinds.join(','), snapshot: snapshotId.slice(0, 8) });
  }
  return { snapshotId, snapshot, summary, errors: run.errors, ...(metadataLoss ? { metadataLoss } : {}) };
}

/** The snapshot's summary: the walk's counts and the writer's. */
function summarize(run: BackupRun, writer: BlobWriter, start: GoTime): SnapshotSummary {
  return {
    backupStart: start,
    backupEnd: goTimeNow(),
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
}
