// Changing the tags of snapshots, as restic's `tag` does: the snapshot is written anew with
// the changed tags and `original` set to its first ID (kept when already set), then the old
// file is removed. Under an exclusive lock, as restic takes one.
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, InvalidInputError, StowageError, throwIfAborted } from '../../errors.ts';
import { baseRepository, type AnyRepository } from '../../repository/repository.ts';
import type { SnapshotId } from '../../repository/id.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import { encodeSnapshot, type Snapshot, type SnapshotFilter } from '../model/snapshot.ts';
import { selectSnapshots, type SnapshotSelection } from '../engine/select.ts';

/** The tag change to make: `set`, or `add` and/or `remove`. */
export interface TagChangeSpec {
  /** Replace all tags with these ([] removes every tag). Not together with add/remove. */
  set?: readonly string[];
  /** Tags to add (those already present are not added twice). */
  add?: readonly string[];
  /** Tags to remove. */
  remove?: readonly string[];
}

/** Options of {@link tag}: which snapshots, and the tags to set, add or remove. */
export interface TagOptions extends TagChangeSpec, CallOptions {
  /** Snapshots to change (IDs, prefixes, "latest"); none: every snapshot passing `filter`. */
  snapshots?: readonly string[];
  /** restic's --host/--tag/--path selection. */
  filter?: SnapshotFilter;
  /** Take an exclusive lock (default true). Pass false when the caller holds one. */
  lock?: boolean;
  /** Keep trying this long (ms) while another process holds a lock. */
  retryLock?: number;
  /** Called after each snapshot was rewritten. */
  onChange?: (change: TagChange) => void;
}

/**
 * A snapshot whose tags {@link tag} changed: saved under a new ID, the old one deleted (as restic).
 */
export interface TagChange {
  oldId: SnapshotId;
  newId: SnapshotId;
  tags: string[];
}

/** What {@link tag} changed. */
export interface TagResult {
  /** Snapshots rewritten with new tags. */
  changed: TagChange[];
  /** Snapshots whose tags already were as asked. */
  unchanged: SnapshotId[];
  /** Snapshot references that selected nothing (see selectSnapshots). */
  ignored: SnapshotSelection['ignored'];
  /** Snapshots that could not be rewritten; restic reports them and goes on. */
  failed: Array<{ id: SnapshotId; error: StowageError }>;
}

/**
 * The snapshot with its tags changed as restic changes them, or undefined when nothing changes.
 * `set` always counts as a change; add appends missing tags in order; remove takes out the first
 * occurrence of each tag, moving the last tag into its place (restic's order).
 */
export function applyTagChange(s: Snapshot, spec: TagChangeSpec): Snapshot | undefined {
  checkSpec(spec);
  if (spec.set !== undefined) return { ...s, tags: [...spec.set] };
  const tags = [...(s.tags ?? [])];
  let changed = false;
  for (const t of spec.add ?? []) {
    if (tags.includes(t)) continue;
    tags.push(t);
    changed = true;
  }
  for (const t of spec.remove ?? []) {
    const i = tags.indexOf(t);
    if (i < 0) continue;
    tags[i] = tags[tags.length - 1]!;
    tags.pop();
    changed = true;
  }
  return changed ? { ...s, tags } : undefined;
}

function checkSpec(spec: TagChangeSpec): void {
  const adds = (spec.add?.length ?? 0) + (spec.remove?.length ?? 0);
  if (spec.set === undefined && adds === 0) throw new InvalidInputError('nothing to do: give tags to set, add or remove');
  if (spec.set !== undefined && adds > 0) throw new InvalidInputError('tags to set and tags to add/remove cannot be given at the same time');
  for (const t of [...(spec.set ?? []), ...(spec.add ?? []), ...(spec.remove ?? [])]) {
    if (typeof t !== 'string') throw new InvalidInputError('tags must be strings');
  }
}

/** Changes the tags of the selected snapshots. */
export async function tag(repository: AnyRepository, options: TagOptions): Promise<TagResult> {
  const repo = baseRepository(repository);
  checkSpec(options);
  const signal = options.signal;
  return withOptionalLock(repo, { lock: options.lock, exclusive: true, retryLock: options.retryLock, signal }, async () => {
    const sel = await selectSnapshots(repo, options.snapshots ?? [], options.filter ?? {}, { signal });
    const result: TagResult = { changed: [], unchanged: [], ignored: sel.ignored, failed: [] };
    for (const { id, snapshot } of sel.snapshots) {
      throwIfAborted(signal);
      const next = applyTagChange(snapshot, options);
      // Setting the same tags on an already rewritten snapshot would write the same file again.
      if (!next || (snapshot.original !== undefined && sameTags(snapshot.tags, next.tags))) {
        result.unchanged.push(id);
        continue;
      }
      // The first ID stays the snapshot's identity over all rewrites (copy relies on it).
      next.original ??= id;
      try {
        const newId = (await repo.saveUnpacked('snapshots', encodeSnapshot(next), { signal })) as SnapshotId;
        await repo.backend.remove({ type: 'snapshots', name: id }, { signal });
        const change: TagChange = { oldId: id, newId, tags: next.tags ?? [] };
        result.changed.push(change);
        options.onChange?.(change);
      } catch (e) {
        if (!(e instanceof StowageError) || e instanceof AbortedError) throw e;
        result.failed.push({ id, error: e });
      }
    }
    return result;
  });
}

function sameTags(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length && x.every((t, i) => t === y[i]);
}
