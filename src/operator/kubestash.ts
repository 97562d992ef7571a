// KubeStash (storage.kubestash.com/v1alpha1) status objects: a Repository's `status` and a
// Snapshot's `status.components[<name>]` entry with its `resticStats`, shaped as
// kubestash/apimachinery v0.29.0 declares them (apis/storage/v1alpha1) and filled from one
// observation per restic repository and from backup results.
import type { AnyRepository } from '../repository/repository.ts';
import { InvalidInputError } from '../errors.ts';
import type { SnapshotEntry } from '../snapshot/engine/select.ts';
import type { BackupResult } from '../snapshot/operations/backup/types.ts';
import { backupSpanNs, formatGoDuration, formatStashBytes, kubernetesTime } from './format.ts';
import { observeRepository, type ObserveOptions, type RepositoryObservation } from './observe.ts';

/** A kmodules `Condition` as KubeStash's CRDs declare it. */
export interface KubeStashCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  /** metav1.Time. */
  lastTransitionTime: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
  severity?: string;
}

/** Phases of a Snapshot and of its components. */
export type KubeStashSnapshotPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

/** An entry of a Repository's `status.recentSnapshots`. */
export interface KubeStashSnapshotInfo {
  name?: string;
  phase?: KubeStashSnapshotPhase;
  session?: string;
  size?: string;
  snapshotTime?: string;
}

/** `status` of a KubeStash `Repository`. */
export interface KubeStashRepositoryStatus {
  phase?: 'NotReady' | 'Ready';
  lastBackupTime?: string;
  integrity?: boolean;
  snapshotCount?: number;
  size?: string;
  recentSnapshots?: KubeStashSnapshotInfo[];
  conditions?: KubeStashCondition[];
  componentPaths?: string[];
}

/** One restic repository of a KubeStash Repository (one per session and component) and what was seen in it. */
export interface KubeStashComponentObservation {
  /** Its folder relative to the Repository's path, e.g. "repository/v1/daily/dump". */
  path: string;
  observation: RepositoryObservation;
}

/** KubeStash's condition type and reasons for an initialized Repository. */
export const KUBESTASH_REPOSITORY_INITIALIZED = 'RepositoryInitialized';

/** Options of {@link buildKubeStashRepositoryStatus}. */
export interface KubeStashStatusOptions {
  /** How many snapshots `recentSnapshots` lists, newest first (default 5). */
  recentSnapshots?: number;
  /** The BackupConfiguration session the snapshots belong to (SnapshotInfo.session). */
  session?: string;
  /**
   * The Snapshot object's name for a restic snapshot (KubeStash names them
   * `<repository>-<session>-<timestamp>`); default: the restic snapshot's short ID.
   */
  snapshotName?: (entry: SnapshotEntry, componentPath: string | undefined) => string;
  /** The conditions the Repository has now: kept, with RepositoryInitialized set (its transition time kept when unchanged). */
  conditions?: readonly KubeStashCondition[];
  /** When the RepositoryInitialized condition became true, if it is new (default: the observation's time). */
  now?: Date;
}

/** Options of {@link kubeStashRepositoryStatus}. */
export type KubeStashRepositoryStatusOptions = ObserveOptions & KubeStashStatusOptions & {
  /** The restic repository's path relative to the Repository (listed in `componentPaths`). */
  componentPath?: string;
};

/**
 * A KubeStash Repository's `status` for one restic repository (one component) in one call:
 * check (no data read unless asked), raw-data size and snapshots. For a Repository holding
 * several components, observe each and call {@link buildKubeStashRepositoryStatus}.
 */
export async function kubeStashRepositoryStatus(
  repository: AnyRepository,
  options: KubeStashRepositoryStatusOptions = {},
): Promise<{ status: KubeStashRepositoryStatus; observation: RepositoryObservation }> {
  const observation = await observeRepository(repository, options);
  const status = buildKubeStashRepositoryStatus(options.componentPath !== undefined ? [{ path: options.componentPath, observation }] : observation, options);
  return { status, observation };
}

/**
 * The KubeStash Repository status from its restic repositories' observations (pure): the phase
 * from RepositoryInitialized (true: each was opened), the newest snapshot's time, integrity (every
 * checked one ok), snapshot count (the most any component has: a Snapshot object covers all
 * components of one backup), the raw-data sizes summed and formatted, the newest snapshots.
 */
export function buildKubeStashRepositoryStatus(
  observed: RepositoryObservation | readonly KubeStashComponentObservation[],
  options: KubeStashStatusOptions = {},
): KubeStashRepositoryStatus {
  const components: readonly KubeStashComponentObservation[] = Array.isArray(observed)
    ? (observed as readonly KubeStashComponentObservation[])
    : [{ path: '', observation: observed as RepositoryObservation }];
  if (components.length === 0) throw new InvalidInputError('a KubeStash Repository status needs at least one observation');
  const recent = options.recentSnapshots ?? 5;
  if (!Number.isInteger(recent) || recent < 0) throw new InvalidInputError(`recentSnapshots must be a non-negative integer, got ${recent}`);
  const now = options.now ?? components[0]!.observation.observedAt;

  const all = components.flatMap((c) => c.observation.snapshots.map((entry) => ({ entry, path: c.path })));
  all.sort((a, b) => (a.entry.snapshot.time.epochNs < b.entry.snapshot.time.epochNs ? 1 : a.entry.snapshot.time.epochNs > b.entry.snapshot.time.epochNs ? -1 : 0));
  const checked = components.filter((c) => c.observation.check !== undefined);
  const sized = components.filter((c) => c.observation.stats !== undefined);

  const conditions = upsertCondition(options.conditions ?? [], {
    type: KUBESTASH_REPOSITORY_INITIALIZED,
    status: 'True',
    reason: 'RepositoryInitializationSucceeded',
    message: 'the restic repository was opened',
    lastTransitionTime: kubernetesTime(now),
  });
  const status: KubeStashRepositoryStatus = {
    phase: conditions.some((c) => c.type === KUBESTASH_REPOSITORY_INITIALIZED && c.status === 'True') ? 'Ready' : 'NotReady',
  };
  if (all.length > 0) status.lastBackupTime = kubernetesTime(all[0]!.entry.snapshot.time);
  if (checked.length > 0) status.integrity = checked.every((c) => c.observation.check!.ok);
  status.snapshotCount = Math.max(...components.map((c) => c.observation.snapshots.length));
  if (sized.length === components.length) status.size = formatStashBytes(sized.reduce((n, c) => n + c.observation.stats!.rawDataSize, 0));
  if (recent > 0 && all.length > 0) {
    status.recentSnapshots = all.slice(0, recent).map(({ entry, path }) => ({
      name: options.snapshotName ? options.snapshotName(entry, path || undefined) : entry.id.slice(0, 8),
      phase: 'Succeeded' as const,
      ...(options.session ? { session: options.session } : {}),
      snapshotTime: kubernetesTime(entry.snapshot.time),
    }));
  }
  status.conditions = conditions;
  const paths = components.map((c) => c.path).filter((p) => p !== '');
  if (paths.length > 0) status.componentPaths = [...new Set(paths)].sort();
  return status;
}

/** Sets a condition as kmodules' SetCondition does: replaced by type, its transition time kept while its status stays. */
export function upsertCondition(conditions: readonly KubeStashCondition[], next: KubeStashCondition): KubeStashCondition[] {
  const out = conditions.map((c) => ({ ...c }));
  const i = out.findIndex((c) => c.type === next.type);
  if (i < 0) return [...out, { ...next }];
  const keepTime = out[i]!.status === next.status;
  out[i] = { ...next, lastTransitionTime: keepTime ? out[i]!.lastTransitionTime : next.lastTransitionTime };
  return out;
}

// ---- Snapshot.status.components[<name>] ----------------------------------------------------------

/** `resticStats[].summary` (KubeStash v0.28+). */
export interface KubeStashResticSummary {
  id?: string;
  uploaded?: string;
  hostPath?: string;
  size?: string;
  startTime?: string;
  endTime?: string;
}

/** One `resticStats` entry: KubeStash v0.28+ nests the summary; before, its fields were the entry itself. */
export type KubeStashResticStats = { summary?: KubeStashResticSummary } | KubeStashResticSummary;

/** A Snapshot's `status.components[<name>]` for the Restic driver. */
export interface KubeStashComponent {
  path?: string;
  phase?: KubeStashSnapshotPhase;
  /** The component's restic repository size (raw-data), formatted. */
  size?: string;
  /** Go duration string. */
  duration?: string;
  integrity?: boolean;
  error?: string;
  driver?: 'Restic';
  resticStats?: KubeStashResticStats[];
}

/** One backup of a component: its result and the path it backed up. */
export interface KubeStashBackupEntry {
  result: BackupResult;
  /** Default: the snapshot's only path, or its paths joined by ",". */
  hostPath?: string;
}

/** Options of {@link kubeStashSnapshotComponent}. */
export interface KubeStashComponentOptions {
  /** The component's path relative to the Repository ({@link kubeStashResticPath} without the repository path). */
  path: string;
  /** The component's restic repository after the backup: size and integrity. */
  observation?: RepositoryObservation;
  /** The component's whole backup time in ms; default: the backups' own span. */
  durationMs?: number;
  /** The error that failed the component: phase Failed. */
  error?: Error | string;
  /** `'summary'` (KubeStash v0.28 and later, the default) or `'flat'` (before v0.28). */
  resticStatsLayout?: 'summary' | 'flat';
}

/**
 * A Snapshot's component entry from the backups that made it (usually one per host path):
 * `resticStats` with each snapshot's ID, uploaded and processed sizes, path and times, and the
 * repository's size and integrity from an observation after the backup.
 */
export function kubeStashSnapshotComponent(entries: readonly KubeStashBackupEntry[], options: KubeStashComponentOptions): KubeStashComponent {
  if (typeof options.path !== 'string' || options.path === '') throw new InvalidInputError('a KubeStash component needs its path');
  const out: KubeStashComponent = { path: options.path, phase: options.error === undefined ? 'Succeeded' : 'Failed' };
  const obs = options.observation;
  if (obs?.stats) out.size = formatStashBytes(obs.stats.rawDataSize);
  const ns = backupSpanNs(entries, options.durationMs);
  if (ns !== undefined) out.duration = formatGoDuration(ns);
  if (obs?.check) out.integrity = obs.check.ok;
  if (options.error !== undefined) out.error = typeof options.error === 'string' ? options.error : options.error.message;
  out.driver = 'Restic';
  if (entries.length > 0) {
    out.resticStats = entries.map(({ result, hostPath }) => {
      const s = result.summary;
      const paths = result.snapshot.paths;
      const summary: KubeStashResticSummary = {
        id: result.snapshotId,
        uploaded: formatStashBytes(s.dataAdded),
        hostPath: hostPath ?? (paths.length === 1 ? paths[0] : paths.join(',')),
        size: formatStashBytes(s.totalBytesProcessed),
        startTime: kubernetesTime(s.backupStart),
        endTime: kubernetesTime(s.backupEnd),
      };
      return options.resticStatsLayout === 'flat' ? summary : { summary };
    });
  }
  return out;
}
