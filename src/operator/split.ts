// Verifying a repository too large for one pod: `check --read-data-subset i/n` as the parts of
// a Kubernetes Indexed Job. Part i (JOB_COMPLETION_INDEX, from 0) reads the packs whose ID's
// first byte modulo n is i — restic's group i+1 of n — so the n parts together read every pack
// exactly once. Each part holds a shared lock (as `restic check` does), so parts run side by side
// while a prune (exclusive) waits. Their reports are merged into one, from which a status is made.
import type { CallOptions } from '../backend/backend.ts';
import { InvalidInputError } from '../errors.ts';
import { parseGoTime, type GoTime } from '../repository/gotime.ts';
import { withOptionalLock } from '../repository/lock.ts';
import { baseRepository, type AnyRepository } from '../repository/repository.ts';
import { checkRepository, MAX_READ_GROUPS, type CheckOptions, type CheckProblem, type CheckReport } from '../snapshot/operations/check/index.ts';

/** One part of a split check: `index` from 0 (JOB_COMPLETION_INDEX) of `count` parts (the Job's completions). */
export interface CheckPart {
  index: number;
  count: number;
}

/** A part's report, as a part writes it (JSON) for the merge. */
export interface CheckPartReport {
  /** Which part this is. */
  part: CheckPart;
  /** The part's check report (the structural check, and its group of packs read). */
  report: CheckReport;
}

/** The environment variable Kubernetes sets in each pod of an Indexed Job. */
export const JOB_COMPLETION_INDEX = 'JOB_COMPLETION_INDEX';
/** The variable the example manifest sets to the Job's `completions`. */
export const CHECK_PARTS_VARIABLE = 'STOWAGE_CHECK_PARTS';

/** Validates a part: 0 <= index < count <= 256 (restic's group limit). */
export function checkPart(index: number, count: number): CheckPart {
  if (!Number.isInteger(count) || count < 1 || count > MAX_READ_GROUPS) throw new InvalidInputError(`check parts must be an integer from 1 to ${MAX_READ_GROUPS}, got ${count}`);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new InvalidInputError(`check part index must be an integer from 0 to ${count - 1}, got ${index}`);
  return { index, count };
}

/**
 * The part this pod runs: JOB_COMPLETION_INDEX, and the part count from `count` or
 * STOWAGE_CHECK_PARTS. Throws InvalidInputError when either is missing or out of range.
 */
export function checkPartFromEnv(env: Readonly<Record<string, string | undefined>> = process.env, count?: number): CheckPart {
  const rawIndex = env[JOB_COMPLETION_INDEX];
  const rawCount = count !== undefined ? String(count) : env[CHECK_PARTS_VARIABLE];
  if (rawIndex === undefined || !/^\d+$/.test(rawIndex)) throw new InvalidInputError(`${JOB_COMPLETION_INDEX} must be set to the pod's index (an Indexed Job sets it), got ${JSON.stringify(rawIndex)}`);
  if (rawCount === undefined || !/^\d+$/.test(rawCount)) throw new InvalidInputError(`${CHECK_PARTS_VARIABLE} must be set to the number of parts (the Job's completions), got ${JSON.stringify(rawCount)}`);
  return checkPart(Number(rawIndex), Number(rawCount));
}

/** Options of {@link checkRepositoryPart}. */
export interface CheckPartOptions extends Omit<CheckOptions, 'readData' | 'readDataSubset'> {
  /** Hold a shared lock for the check (default true). */
  lock?: boolean;
  /** Keep trying this long (ms) while an exclusive lock is held. */
  retryLock?: number;
}

/**
 * Runs one part: the whole structural check (index, packs, trees) and reading the part's group
 * of packs, under a shared lock. The report says which part it is, for {@link mergeCheckParts}.
 *
 * @throws LockedError when an exclusive lock is held (after `retryLock`); BackendError; AbortedError.
 */
export async function checkRepositoryPart(repository: AnyRepository, part: CheckPart, options: CheckPartOptions = {}): Promise<CheckPartReport> {
  const { index, count } = checkPart(part.index, part.count);
  const { lock, retryLock, ...check } = options;
  const repo = baseRepository(repository);
  const report = await withOptionalLock(repo, { exclusive: false, lock, retryLock, signal: options.signal }, () =>
    checkRepository(repository, { ...check, readDataSubset: { kind: 'group', n: index + 1, t: count } }),
  );
  return { part: { index, count }, report };
}

/** Options of {@link mergeCheckParts}. */
export interface MergeCheckPartsOptions extends CallOptions {
  /** Merge although some parts are missing (the result then says readData 'subset'); default: refuse. */
  allowPartial?: boolean;
}

/**
 * One report from the parts' reports (as returned, or as parsed from their JSON): problems
 * de-duplicated (the structural ones every part finds once), packs, blobs and bytes read summed,
 * the earliest start and latest end. `readData` is 'all' when every part 0..n-1 is there exactly
 * once. Throws InvalidInputError on parts of different splits, a part twice, or missing parts
 * (unless `allowPartial`).
 */
export function mergeCheckParts(parts: readonly CheckPartReport[], options: MergeCheckPartsOptions = {}): CheckReport {
  if (parts.length === 0) throw new InvalidInputError('no check part to merge');
  const count = parts[0]!.part.count;
  const seen = new Set<number>();
  for (const { part } of parts) {
    checkPart(part.index, part.count);
    if (part.count !== count) throw new InvalidInputError(`check parts of different splits: ${count} and ${part.count} parts`);
    if (seen.has(part.index)) throw new InvalidInputError(`check part ${part.index} of ${count} is given twice`);
    seen.add(part.index);
  }
  const complete = seen.size === count;
  if (!complete && !options.allowPartial) {
    const missing = [...Array(count).keys()].filter((i) => !seen.has(i));
    throw new InvalidInputError(`check parts missing: ${missing.join(', ')} of ${count}`);
  }
  const reports = parts.map((p) => p.report);
  const dedupe = (lists: CheckProblem[][]): CheckProblem[] => {
    const out = new Map<string, CheckProblem>();
    for (const p of lists.flat()) {
      const key = JSON.stringify([p.code, p.file, p.pack, p.blob, p.tree, p.message]);
      if (!out.has(key)) out.set(key, p);
    }
    return [...out.values()];
  };
  const union = (lists: string[][]) => [...new Set(lists.flat())].sort();
  const time = (t: GoTime | string): GoTime => (typeof t === 'string' ? parseGoTime(t) : t);
  const starts = reports.map((r) => time(r.startTime));
  const ends = reports.map((r) => time(r.endTime));
  const errors = dedupe(reports.map((r) => r.errors));
  const sum = (f: (r: CheckReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  const max = (f: (r: CheckReport) => number) => Math.max(...reports.map(f));
  return {
    integrity: errors.length === 0 ? 'ok' : 'failed',
    ok: errors.length === 0,
    errors,
    hints: dedupe(reports.map((r) => r.hints)),
    damagedSnapshots: union(reports.map((r) => r.damagedSnapshots)),
    brokenPacks: union(reports.map((r) => r.brokenPacks)),
    suggestRepairIndex: reports.some((r) => r.suggestRepairIndex),
    suggestPrune: reports.some((r) => r.suggestPrune),
    readData: complete && reports.every((r) => r.readData !== 'none') ? 'all' : 'subset',
    indexFiles: max((r) => r.indexFiles),
    snapshots: max((r) => r.snapshots),
    trees: max((r) => r.trees),
    packs: max((r) => r.packs),
    packsRead: sum((r) => r.packsRead),
    blobsRead: sum((r) => r.blobsRead),
    bytesRead: sum((r) => r.bytesRead),
    startTime: starts.reduce((a, b) => (b.epochNs < a.epochNs ? b : a)),
    endTime: ends.reduce((a, b) => (b.epochNs > a.epochNs ? b : a)),
  };
}
