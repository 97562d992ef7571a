// forget: removes snapshots chosen by a retention policy (planned by retention.ts) or given by ID,
// under an exclusive lock as restic does. Only the snapshot files go; the data they referenced
// stays until a prune, which `prune: true` runs right after, under the same lock.
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, InvalidInputError, throwIfAborted } from '../../errors.ts';
import { mapLimit } from '../../repository/concurrency.ts';
import type { SnapshotId } from '../../repository/id.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import { baseRepository, type AnyRepository, type Repository } from '../../repository/repository.ts';
import { prune, type PruneOptions, type PruneResult } from './prune.ts';
import { listSnapshots, type SnapshotEntry } from '../engine/select.ts';
import { type ForgetPlan, type RetentionGroup, type RetentionPolicy, EmptyRetentionPolicyError, isEmptyRetentionPolicy, planRetention } from '../model/retention.ts';
import { type SnapshotFilter, type SnapshotGroupBy, findSnapshotByPrefix, latestSnapshot, snapshotMatches } from '../model/snapshot.ts';

/**
 * Options of {@link forget}: a retention policy or explicit IDs, and optionally a prune afterwards.
 */
export interface ForgetOptions extends CallOptions {
  /** The keep rules. Ignored when `ids` are given. */
  policy?: RetentionPolicy;
  /** Default: host and paths. */
  groupBy?: SnapshotGroupBy;
  /** Only these snapshots are considered (hosts / tags / paths, restic's semantics). */
  filter?: SnapshotFilter;
  /**
   * Remove exactly these snapshots (full IDs, unique prefixes, or "latest", which honours the
   * filter) instead of applying a policy. A filter without "latest" is refused, as in restic.
   */
  ids?: readonly string[];
  /** Plan only: nothing is removed. */
  dryRun?: boolean;
  /** restic's --unsafe-allow-remove-all: an empty policy removes every snapshot that passes the filter (a filter is required). */
  unsafeAllowRemoveAll?: boolean;
  /** Take an exclusive lock for the whole run (default true; restic does so even for a dry run). */
  lock?: boolean;
  /** How long to retry while another process holds a lock (ms). */
  retryLock?: number;
  /** keep-within reference: snapshots at or after this instant are not a group's newest (default: now). */
  now?: Date;
  /**
   * Prune after removing snapshots (restic forget --prune), when any were removed: true, or the
   * prune options. With dryRun the prune is a dry run that plans as if they were gone.
   */
  prune?: boolean | ForgetPruneOptions;
  /** Called with the plan and the snapshots it covers before anything is removed. */
  onPlan?: (plan: ForgetPlan, snapshots: readonly SnapshotEntry[]) => void | Promise<void>;
  /** Called after each snapshot file removal (or failure). */
  onProgress?: (progress: { done: number; total: number }) => void;
}

/** Prune settings for forget; the lock, dry run and signal come from the forget. */
export type ForgetPruneOptions = Omit<PruneOptions, 'lock' | 'retryLock' | 'dryRun' | 'signal' | 'ignoreSnapshots'>;

/** A snapshot {@link forget} could not remove, with the error message. */
export interface ForgetFailure {
  id: SnapshotId;
  error: string;
}

/** What {@link forget} did (or, with `dryRun`, would do). */
export interface ForgetResult {
  /** True when nothing was removed (`dryRun`). */
  dryRun: boolean;
  /** The policy's plan per group; empty when explicit IDs were given. */
  groups: RetentionGroup[];
  /** Snapshots removed (dry run: that would be removed), in plan order. */
  removed: SnapshotId[];
  /** Snapshot files that could not be removed (restic then exits with status 3). */
  failed: ForgetFailure[];
  /** The prune's result, when `prune` was asked for and snapshots were removed. */
  prune?: PruneResult;
}

/**
 * Plans and (unless dryRun) removes snapshots. Throws EmptyRetentionPolicyError without any keep
 * rule (unless unsafeAllowRemoveAll with a filter), RemoveAllRefusedError when a policy would
 * empty a group, LockedError when the repository is locked, AbortedError on abort.
 */
export async function forget(repository: AnyRepository, options: ForgetOptions = {}): Promise<ForgetResult> {
  const repo = baseRepository(repository);
  const filter = options.filter ?? {};
  const filterGiven = Boolean(filter.hosts?.length || filter.tags?.length || filter.paths?.length);
  const policy = options.policy ?? {};
  // Refuse before taking the lock: these need no repository access.
  if (!options.ids?.length && isEmptyRetentionPolicy(policy)) {
    if (!options.unsafeAllowRemoveAll) throw new EmptyRetentionPolicyError();
    if (!filterGiven) throw new InvalidInputError('removing every snapshot (unsafeAllowRemoveAll) needs a snapshot filter (hosts, tags or paths)');
  }
  return withOptionalLock(repo, { lock: options.lock, exclusive: true, retryLock: options.retryLock, signal: options.signal }, () =>
    forgetLocked(repo, options, filter, filterGiven, policy));
}

async function forgetLocked(repo: Repository, options: ForgetOptions, filter: SnapshotFilter, filterGiven: boolean, policy: RetentionPolicy): Promise<ForgetResult> {
  const signal = options.signal;
  const all = await listSnapshots(repo, { signal });
  let plan: ForgetPlan;
  let covered: SnapshotEntry[];
  if (options.ids?.length) {
    covered = resolveIds(all, options.ids, filter, filterGiven);
    plan = { groups: [], keep: [], remove: covered.map((e) => e.id) };
  } else {
    covered = all.filter((e) => snapshotMatches(e.snapshot, filter));
    plan = planRetention(covered, policy, { groupBy: options.groupBy, now: options.now, allowRemoveAll: options.unsafeAllowRemoveAll });
  }
  throwIfAborted(signal);
  await options.onPlan?.(plan, covered);

  const result: ForgetResult = { dryRun: options.dryRun === true, groups: plan.groups, removed: [], failed: [] };
  if (options.dryRun) {
    result.removed = [...plan.remove];
    await pruneAfter(repo, options, result, plan.remove);
    return result;
  }
  const total = plan.remove.length;
  let done = 0;
  const outcomes = await mapLimit(plan.remove, Math.max(1, repo.backend.connections), async (id) => {
    throwIfAborted(signal);
    try {
      await repo.backend.remove({ type: 'snapshots', name: id }, { signal });
      return undefined;
    } catch (e) {
      if (e instanceof AbortedError || signal?.aborted) throw e;
      return { id, error: e instanceof Error ? e.message : String(e) };
    } finally {
      options.onProgress?.({ done: ++done, total });
    }
  });
  plan.remove.forEach((id, i) => {
    const failure = outcomes[i];
    if (failure) result.failed.push(failure);
    else result.removed.push(id);
  });
  // As restic: a failed removal ends the run before the prune.
  if (result.failed.length === 0) await pruneAfter(repo, options, result, []);
  return result;
}

async function pruneAfter(repo: Repository, options: ForgetOptions, result: ForgetResult, ignoreSnapshots: SnapshotId[]): Promise<void> {
  if (!options.prune || result.removed.length === 0) return;
  const extra = options.prune === true ? {} : options.prune;
  const indexed = await repo.loadIndex({ signal: options.signal });
  result.prune = await prune(indexed, { ...extra, lock: false, dryRun: options.dryRun === true, ignoreSnapshots, signal: options.signal });
}

/** restic's FindAll for explicit IDs: prefixes resolved, duplicates dropped, "latest" once. */
function resolveIds(all: readonly SnapshotEntry[], refs: readonly string[], filter: SnapshotFilter, filterGiven: boolean): SnapshotEntry[] {
  const byId = new Map(all.map((e) => [e.id as string, e]));
  const out = new Map<string, SnapshotEntry>();
  let usedFilter = false;
  for (const ref of refs) {
    if (ref === 'latest') {
      if (usedFilter) continue;
      usedFilter = true;
      const latest = latestSnapshot(all, filter);
      if (!latest) throw new InvalidInputError(`no snapshot matched the given filter for "latest" (hosts ${JSON.stringify(filter.hosts ?? [])}, tags ${JSON.stringify(filter.tags ?? [])}, paths ${JSON.stringify(filter.paths ?? [])})`);
      out.set(latest.id, latest);
      continue;
    }
    if (ref.includes(':')) throw new InvalidInputError(`snapshot ${JSON.stringify(ref)}: the <snapshot>:<subfolder> syntax is not allowed here`);
    if (!/^[0-9a-fA-F]{1,64}$/.test(ref)) throw new InvalidInputError(`invalid snapshot ID ${JSON.stringify(ref)}`);
    const id = findSnapshotByPrefix(byId.keys(), ref.toLowerCase());
    out.set(id, byId.get(id)!);
  }
  if (!usedFilter && filterGiven) {
    throw new InvalidInputError('explicit snapshot IDs are given: the host, tag and path filters would be ignored (they only apply to "latest")');
  }
  return [...out.values()];
}
