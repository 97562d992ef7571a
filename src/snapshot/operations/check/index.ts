// Integrity check, as restic's checker, in phases, each a module of this folder:
//   1. index-files.ts: every index file loads (each one on its own, so every broken file is
//      named); packs in several index files and packs mixing tree and data blobs are hints;
//   2. packs.ts: every pack the index names exists with the size the index implies; packs in no
//      index are hints;
//   3. trees.ts: every snapshot loads and every tree and data blob it reaches is indexed and
//      readable;
//   4. read-data.ts: with readData / readDataSubset, packs are read: hash, header against the
//      index, and every blob's MAC, decompression and hash;
//   5. report.ts: who loses data through each problem, and the report.
// Every problem says which repository file and blob it is about and which snapshots (and which
// backed-up files) lose data through it. The report is plain JSON an operator can store.
import { InvalidInputError } from '../../../errors.ts';
import { baseRepository, type AnyRepository } from '../../../repository/repository.ts';
import { goTimeNow } from '../../../repository/gotime.ts';
import { checkMemoryLimit } from '../../../memory-budget.ts';
import { Findings, References, type CheckContext } from './findings.ts';
import { checkIndexFiles } from './index-files.ts';
import { checkPacks } from './packs.ts';
import { checkSnapshotsAndTrees } from './trees.ts';
import { readData } from './read-data.ts';
import { attribute, findReferences, finishReport, type CheckCounts } from './report.ts';
import { parseReadDataSubset } from './subset.ts';
import type { CheckOptions, CheckReport } from './types.ts';

export type { CheckProblemCode, CheckProblem, CheckReport, ReadDataSubset, CheckPhase, CheckProgress, CheckOptions } from './types.ts';
export { parseReadDataSubset, selectPacks, MAX_READ_GROUPS } from './subset.ts';

/**
 * Checks a repository as `restic check` does: the index files, that every indexed pack exists with
 * the right size, that every snapshot's trees are readable and every blob they need is indexed;
 * with `readData` (or a subset) it also reads packs and verifies every blob. It reports instead of
 * throwing: `ok`, the errors (naming file, blob, the snapshots and files affected) and hints. This
 * is the integrity check; {@link repositoryStats} only counts.
 *
 * @throws BackendError when the storage fails after retries (damaged files are reported, not
 *   thrown).
 * @throws AbortedError when `signal` aborts.
 * @throws InvalidInputError for `readData` with `readDataSubset`, or a `memoryLimit` below 64 MiB.
 *
 * @example
 * ```ts
 * const report = await checkRepository(await Repository.open(backend, { password }), { readDataSubset: '10%' });
 * if (!report.ok) for (const e of report.errors) console.error(e.code, e.file ?? '', e.message);
 * ```
 */
export async function checkRepository(repository: AnyRepository, options: CheckOptions = {}): Promise<CheckReport> {
  const repo = baseRepository(repository);
  if (options.readData && options.readDataSubset !== undefined) {
    throw new InvalidInputError('readData and readDataSubset cannot be used together');
  }
  checkMemoryLimit(options.memoryLimit);
  const subset = typeof options.readDataSubset === 'string' ? parseReadDataSubset(options.readDataSubset) : options.readDataSubset;
  const startTime = goTimeNow();
  const ctx: CheckContext = {
    repo, options, findings: new Findings(),
    say: options.onMessage ?? (() => undefined),
    progress: options.onProgress ?? (() => undefined),
  };
  const counts: CheckCounts = {
    readData: options.readData ? 'all' : subset ? 'subset' : 'none',
    indexFiles: 0, snapshots: 0, trees: 0, packs: 0, packsRead: 0, blobsRead: 0, bytesRead: 0,
  };
  const index = await checkIndexFiles(ctx);
  counts.indexFiles = index.indexFiles;
  // A broken index file stops the check there, as in restic.
  if (!index.ok) return finishReport(ctx, counts, startTime);
  const { indexed, damage, packs } = index;
  counts.packs = await checkPacks(ctx, packs, damage);
  const refs = new References();
  const graph = await checkSnapshotsAndTrees(ctx, indexed, damage, refs);
  counts.snapshots = graph.snapshots;
  counts.trees = graph.trees;
  if (counts.readData !== 'none') {
    const read = await readData(ctx, packs, { subset, usedPacks: graph.usedPacks, damage });
    counts.packsRead = read.packsRead;
    counts.blobsRead = read.blobsRead;
    counts.bytesRead = read.bytesRead;
    await findReferences(ctx, indexed, { graph, damage, refs, foundByReading: read.foundByReading });
  }
  attribute(ctx.findings, graph, damage, refs);
  return finishReport(ctx, counts, startTime);
}
