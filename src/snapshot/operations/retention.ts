// retention extend: object lock that follows the forget policy. From the snapshots and the index
// alone (trees are read, data never), each object gets the horizon of the longest-kept snapshot
// that reaches it under the policy (keepHorizon in the model), and its retain-until is extended to
// that horizon — never shortened:
//   snapshots/<id>      the snapshot's own horizon (snapshots the policy removes get none)
//   data/<pack>         the latest horizon of a kept snapshot reaching any blob in it (trees and data)
//   index/<id>          the latest horizon of the packs it lists
//   config, keys/<id>   the latest horizon of all (nothing can be read without them)
// Each object costs one retention read, and one write when it is extended. Safe to run after every
// backup: objects already retained long enough are left alone.
import { retentionOf, type CallOptions, type FileHandle, type ObjectRetention } from '../../backend/backend.ts';
import { describeFile } from '../../backend/backend.ts';
import { NotFoundError, UnsupportedError, throwIfAborted } from '../../errors.ts';
import { mapLimit } from '../../repository/concurrency.ts';
import type { BlobId, PackId } from '../../repository/id.ts';
import { withIndex, type AnyRepository } from '../../repository/repository.ts';
import { listSnapshots } from '../engine/select.ts';
import { keepHorizon, planRetention, type RetentionPolicy } from '../model/retention.ts';
import { snapshotMatches, type SnapshotFilter, type SnapshotGroupBy } from '../model/snapshot.ts';
import { decodeTree } from '../model/tree.ts';

/** Options of {@link extendRetention}. */
export interface ExtendRetentionOptions extends CallOptions {
  /** The forget policy whose kept snapshots set the horizons (keep-tag and 'unlimited' are refused: they have no end). */
  policy: RetentionPolicy;
  /** As forget's (default host and paths). */
  groupBy?: SnapshotGroupBy;
  /** Only these snapshots are considered, as forget's filter. */
  filter?: SnapshotFilter;
  /** The policy's "now" (keep-within; default: now). */
  now?: Date;
  /** keep-last: the assumed time between backups, in ms (default one day); see keepHorizon. */
  lastIntervalMs?: number;
  /** Mode for objects that have no retention yet (default: GOVERNANCE). An existing mode is kept. */
  mode?: 'GOVERNANCE' | 'COMPLIANCE';
  /** Read and report only; set nothing. */
  dryRun?: boolean;
  /** Called as objects are checked. */
  onProgress?: (p: { done: number; total: number }) => void;
}

/** One object and its retention, before and (unless dry run) after. */
export interface ObjectRetentionChange {
  /** "snapshots/<id>", "data/ab/<id>", "index/<id>", "keys/<id>" or "config". */
  file: string;
  /** The horizon the policy asks for. */
  horizon: Date;
  /** Its retention before, if any. */
  before?: ObjectRetention;
  /** The retention set (or, in a dry run, that would be set); absent when it was already long enough. */
  extendedTo?: ObjectRetention;
}

/** What {@link extendRetention} did (or would do). */
export interface ExtendRetentionResult {
  /** True when nothing was changed (`dryRun`). */
  dryRun: boolean;
  /** Every object with a horizon, in a stable order (config, keys, snapshots, index, data; by name). */
  objects: ObjectRetentionChange[];
  /** Objects extended (or to extend). */
  extended: number;
  /** Requests made or planned: retention reads (one per object) and writes (one per extension). */
  requests: { reads: number; writes: number };
  /** Snapshots the policy keeps, with their horizon. */
  snapshots: Array<{ id: string; horizon: Date }>;
}

/**
 * Extends each object's retention (S3 Object Lock) to the horizon of the longest-kept snapshot
 * that reaches it under `policy`. Needs a backend with retention (`retentionOf`), else
 * UnsupportedError. Objects that vanish meanwhile (a concurrent prune) are skipped.
 */
export async function extendRetention(repository: AnyRepository, options: ExtendRetentionOptions): Promise<ExtendRetentionResult> {
  const { signal } = options;
  const indexed = await withIndex(repository, { signal });
  const repo = indexed.repo;
  const lockApi = retentionOf(repo.backend);
  if (!lockApi) throw new UnsupportedError(`retention extend: ${repo.backend.location} has no object retention (S3 Object Lock)`);

  // Snapshots → horizons, from the policy.
  const all = (await listSnapshots(repo, { signal })).filter((e) => snapshotMatches(e.snapshot, options.filter ?? {}));
  const plan = planRetention(all, options.policy, { groupBy: options.groupBy, now: options.now });
  const byId = new Map(all.map((e) => [e.id as string, e]));
  const snapshots = plan.groups
    .flatMap((g) => g.keep)
    .map((k) => ({ id: k.id as string, horizon: keepHorizon(k, options.policy, { lastIntervalMs: options.lastIntervalMs }) }))
    .sort((a, b) => b.horizon.getTime() - a.horizon.getTime() || a.id.localeCompare(b.id));

  // Trees walked from the longest-kept snapshot down: a tree seen before already carries a horizon
  // at least as late for everything below it, so each tree is read once.
  const blobHorizon = new Map<string, number>();
  const seenTrees = new Set<string>();
  const raise = (key: string, h: number): void => {
    if ((blobHorizon.get(key) ?? -Infinity) < h) blobHorizon.set(key, h);
  };
  for (const s of snapshots) {
    const h = s.horizon.getTime();
    const pending: BlobId[] = [byId.get(s.id)!.snapshot.tree];
    while (pending.length > 0) {
      throwIfAborted(signal);
      const batch: BlobId[] = [];
      for (const t of pending.splice(0, pending.length)) {
        if (seenTrees.has(t)) continue;
        seenTrees.add(t);
        batch.push(t);
      }
      const trees = await mapLimit(batch, Math.max(2, repo.backend.connections), async (t) => ({
        t, nodes: decodeTree(await indexed.loadBlob('tree', t, { signal }), t, { lenient: true }),
      }));
      for (const { t, nodes } of trees) {
        raise(`tree:${t}`, h);
        for (const n of nodes) {
          if (n.type === 'file') for (const c of n.content ?? []) raise(`data:${c}`, h);
          else if (n.type === 'dir' && n.subtree && !seenTrees.has(n.subtree)) pending.push(n.subtree);
        }
      }
    }
  }

  // Packs, index files, config and keys.
  const packHorizon = new Map<PackId, number>();
  for (const e of indexed.index.entries()) {
    const h = blobHorizon.get(`${e.type}:${e.id}`);
    if (h !== undefined && (packHorizon.get(e.packId) ?? -Infinity) < h) packHorizon.set(e.packId, h);
  }
  const targets: Array<{ h: FileHandle; horizon: number }> = [];
  for (const s of snapshots) targets.push({ h: { type: 'snapshots', name: s.id }, horizon: s.horizon.getTime() });
  for (const [indexId, packs] of [...indexed.indexFiles].sort(([a], [b]) => a.localeCompare(b))) {
    let h = -Infinity;
    for (const p of packs) h = Math.max(h, packHorizon.get(p) ?? -Infinity);
    if (h > -Infinity) targets.push({ h: { type: 'index', name: indexId }, horizon: h });
  }
  for (const [packId, h] of [...packHorizon].sort(([a], [b]) => a.localeCompare(b))) targets.push({ h: { type: 'data', name: packId }, horizon: h });
  const latest = Math.max(-Infinity, ...targets.map((t) => t.horizon));
  if (latest > -Infinity) {
    const keys: string[] = [];
    for await (const f of repo.backend.list('keys', { signal })) keys.push(f.name);
    targets.unshift({ h: { type: 'config', name: '' }, horizon: latest }, ...keys.sort().map((name) => ({ h: { type: 'keys' as const, name }, horizon: latest })));
  }

  // Read each retention; extend the short ones.
  const result: ExtendRetentionResult = { dryRun: options.dryRun === true, objects: [], extended: 0, requests: { reads: 0, writes: 0 }, snapshots };
  let done = 0;
  const changes = await mapLimit(targets, Math.max(1, repo.backend.connections), async ({ h, horizon }) => {
    throwIfAborted(signal);
    const change: ObjectRetentionChange = { file: describeFile(h), horizon: new Date(horizon) };
    try {
      result.requests.reads++;
      const before = await lockApi.getRetention(h, { signal });
      if (before) change.before = before;
      if (!before || before.retainUntil.getTime() < horizon) {
        change.extendedTo = { mode: before?.mode ?? options.mode ?? 'GOVERNANCE', retainUntil: new Date(horizon) };
        result.requests.writes++;
        if (!options.dryRun) await lockApi.putRetention(h, change.extendedTo, { signal });
      }
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      return undefined;
    } finally {
      options.onProgress?.({ done: ++done, total: targets.length });
    }
    return change;
  });
  for (const c of changes) {
    if (!c) continue;
    result.objects.push(c);
    if (c.extendedTo) result.extended++;
  }
  return result;
}
