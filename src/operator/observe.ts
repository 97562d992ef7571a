// One look at a repository for an operator: its snapshots, its size as `restic stats --mode
// raw-data` counts it, and (unless skipped) its integrity as `restic check` finds it. Every status
// builder (Stash, KubeStash) and the metrics are made from this one observation, so an operator
// that exports several pays for one walk and one check.
import type { CallOptions } from '../backend/backend.ts';
import { AbortedError } from '../errors.ts';
import type { AnyRepository } from '../repository/repository.ts';
import { listSnapshots, type SnapshotEntry } from '../snapshot/engine/select.ts';
import { checkRepository, type CheckReport, type ReadDataSubset } from '../snapshot/operations/check/index.ts';
import { repositoryStats, type RepositoryStats } from '../snapshot/operations/stats.ts';

/** How {@link observeRepository} checks integrity. */
export interface ObserveCheckOptions {
  /** Read every pack (restic check --read-data). Stash does not: its check reads no data. */
  readData?: boolean;
  /** Read a subset ("1/5", "10%", "500M"); see {@link checkRepository}. */
  readDataSubset?: string | ReadDataSubset;
}

/** Options of {@link observeRepository}. */
export interface ObserveOptions extends CallOptions {
  /**
   * Check integrity (default true: `check` without reading data, as Stash runs it); false skips
   * the check (the status then says nothing about integrity); an object reads data too.
   */
  check?: boolean | ObserveCheckOptions;
  /**
   * A check report made elsewhere — e.g. the merged parts of an Indexed Job
   * ({@link mergeCheckParts}) — used instead of running a check here.
   */
  checkReport?: CheckReport;
}

/** What {@link observeRepository} saw. */
export interface RepositoryObservation {
  /** Every snapshot, oldest first. */
  snapshots: SnapshotEntry[];
  /** Sizes and counts (raw-data size among them); undefined when they could not be computed. */
  stats?: RepositoryStats;
  /** Why `stats` is missing (e.g. a damaged index or a missing tree). */
  statsError?: string;
  /** The integrity check's report; undefined when the check was skipped. */
  check?: CheckReport;
  /** When the observation was made. */
  observedAt: Date;
}

/**
 * Observes a repository the way Stash fills a Repository's status after a backup: `check` (no
 * data read unless asked; Stash runs `restic check --no-lock`), `stats --mode raw-data` and the
 * snapshot list, from one open repository. Pass an {@link IndexedRepository} to reuse its index
 * across calls: it is refreshed first, so another client's backups and prunes are seen.
 *
 * Takes no lock, as Stash runs these commands with `--no-lock`. A damaged repository still gives
 * an observation: the check reports the damage, and `stats` is left out with `statsError`.
 *
 * @throws BackendError when the storage fails after retries; AbortedError on abort.
 */
export async function observeRepository(repository: AnyRepository, options: ObserveOptions = {}): Promise<RepositoryObservation> {
  const { check = true, checkReport, signal } = options;
  let report = checkReport;
  if (report === undefined && check !== false) {
    const how = check === true ? {} : check;
    report = await checkRepository(repository, { signal, ...how });
  }
  let stats: RepositoryStats | undefined;
  let statsError: string | undefined;
  try {
    stats = await repositoryStats(repository, { signal });
  } catch (err) {
    if (err instanceof AbortedError) throw err;
    // A damaged repository may not give its size; with a check that found the damage the status
    // still goes out (integrity false) without it. Without such a check the error is the news.
    if (report === undefined || report.ok) throw err;
    statsError = (err as Error).message;
  }
  return {
    snapshots: await listSnapshots(repository, { signal }),
    ...(stats ? { stats } : {}),
    ...(statsError !== undefined ? { statsError } : {}),
    ...(report ? { check: report } : {}),
    observedAt: new Date(),
  };
}
