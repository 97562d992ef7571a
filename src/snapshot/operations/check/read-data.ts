// Phase 4 (readData / readDataSubset): packs are read whole: hash, header against the index, and
// every blob's MAC, decompression and hash, on decode workers.
import { AbortedError, throwIfAborted } from '../../../errors.ts';
import type { Repository } from '../../../repository/repository.ts';
import type { PackId } from '../../../repository/id.ts';
import { uncachedBackend } from '../../../repository/cache.ts';
import { expectedPackSize, type PackedBlob } from '../../../repository/pack.ts';
import { mapLimit } from '../../../repository/concurrency.ts';
import { DecodePool, ownedBytes, type DecodeBlob } from '../../engine/decode-pool.ts';
import { blobKey, packFile, type CheckContext, type Damage } from './findings.ts';
import { selectPacks } from './subset.ts';
import type { CheckProblem, ReadDataSubset } from './types.ts';

/** What reading found and counted. */
export interface ReadDataResult {
  packsRead: number;
  blobsRead: number;
  bytesRead: number;
  /** Blobs (type:id) found unreadable; the tree phase did not know them. */
  foundByReading: Set<string>;
}

/** A pack's problems, each with the blobs it makes unreadable. */
interface PackVerdict {
  bytes: number;
  problems: Array<{ problem: CheckProblem; bad: PackedBlob[] }>;
}

/**
 * Reads the chosen packs (all, or `subset` of them; only those in `usedPacks` when given) and
 * verifies them. Damaged blobs are marked in `damage`.
 */
export async function readData(
  ctx: CheckContext,
  packs: ReadonlyMap<PackId, PackedBlob[]>,
  { subset, usedPacks, damage }: { subset: ReadDataSubset | undefined; usedPacks: ReadonlySet<string> | undefined; damage: Damage },
): Promise<ReadDataResult> {
  const result: ReadDataResult = { packsRead: 0, blobsRead: 0, bytesRead: 0, foundByReading: new Set() };
  const chosen = choosePacks(ctx, packs, subset, usedPacks);
  // Missing packs are reported already; reading them would only say so again.
  const list = [...chosen].filter((id) => !damage.missingPacks.has(id)).sort();
  if (list.length === 0) return result;
  let done = 0;
  // Packs are verified on worker threads, whole packs in memory: few are read ahead, one for
  // each worker and one more being read.
  const pool = new DecodePool({ key: ctx.repo.masterKeyForWorkers() });
  try {
    await mapLimit(list, pool.capacity / 2 + 1, async (packId) => {
      throwIfAborted(ctx.options.signal);
      const blobs = packs.get(packId as PackId)!;
      const verdict = await verifyTwice(ctx.repo, packId, blobs, pool, ctx.options.signal);
      result.packsRead++;
      result.blobsRead += blobs.length;
      result.bytesRead += verdict.bytes;
      for (const { problem, bad } of verdict.problems) {
        ctx.findings.error(problem);
        if (problem.code === 'PACK_DAMAGED' || problem.code === 'BLOB_DAMAGED') ctx.findings.broken.add(packId);
        for (const b of bad) damage.markBlob(packId, b);
        if (bad.length === 0) continue;
        const keys = bad.map((b) => blobKey(b.type, b.id));
        ctx.findings.packBlobs.set(problem, keys);
        for (const k of keys) result.foundByReading.add(k);
      }
      ctx.progress({ phase: 'read-data', done: ++done, total: list.length, bytes: result.bytesRead });
    });
  } finally {
    await pool.close();
  }
  return result;
}

/** The packs to read, said as restic says it. */
function choosePacks(ctx: CheckContext, packs: ReadonlyMap<PackId, PackedBlob[]>, subset: ReadDataSubset | undefined, usedPacks: ReadonlySet<string> | undefined): Set<string> {
  const sizes = new Map<string, number>();
  for (const [id, blobs] of packs) {
    if (usedPacks && !usedPacks.has(id)) continue;
    sizes.set(id, expectedPackSize(blobs));
  }
  const filtered = usedPacks ? 'filtered ' : '';
  if (!subset) {
    ctx.say(`read all ${filtered}data`);
    return new Set(sizes.keys());
  }
  const chosen = selectPacks(sizes, subset, ctx.options.random);
  const s = subset;
  // restic 0.19.1's line has no closing parenthesis; scripts parse it as it is.
  if (s.kind === 'group') ctx.say(`read group #${s.n} of ${chosen.size} ${filtered}data packs (out of total ${sizes.size} packs in ${s.t} groups`);
  else if (s.kind === 'percent') ctx.say(`read ${s.percent.toFixed(1)}% of ${filtered}packfiles`);
  else {
    // As restic: the size asked for, capped to the packs' total, and its share of them.
    let total = 0;
    for (const size of sizes.values()) total += size;
    const bytes = Math.min(s.bytes, total);
    ctx.say(`read ${bytes} bytes (${(total === 0 ? 100 : (bytes / total) * 100).toFixed(1)}%) of ${filtered}data packs`);
  }
  return chosen;
}

/** A pack that fails is read a second time: that tells damage in storage from damage in transit (restic does the same). */
async function verifyTwice(repo: Repository, packId: string, blobs: PackedBlob[], pool: DecodePool, signal: AbortSignal | undefined): Promise<PackVerdict> {
  const first = await verifyPack(repo, packId, blobs, pool, signal);
  if (first.problems.length === 0) return first;
  const again = await verifyPack(repo, packId, blobs, pool, signal);
  if (again.problems.length > 0) return again;
  return {
    ...again,
    problems: [{
      problem: {
        code: 'PACK_READ_RETRIED', pack: packId, file: packFile(packId),
        message: `pack ${packId}: check successful on second attempt, original error: ${first.problems.map((p) => p.problem.message).join('; ')}`,
      },
      bad: [],
    }],
  };
}

/**
 * Reads one pack and verifies everything in it; `bad` lists the blobs that cannot be read.
 * A decode worker hashes the pack, checks every blob and reads the header; the results are
 * compared with the index here.
 */
async function verifyPack(repo: Repository, packId: string, blobs: PackedBlob[], pool: DecodePool, signal: AbortSignal | undefined): Promise<PackVerdict> {
  const file = packFile(packId);
  const problems: PackVerdict['problems'] = [];
  const packProblem = (message: string) => problems.push({ problem: { code: 'PACK_DAMAGED', message: `pack ${packId}: ${message}`, pack: packId, file }, bad: [] });
  let bytes: Uint8Array;
  try {
    // The stored pack, not a cached copy: the point is to find damage in storage.
    bytes = await uncachedBackend(repo.backend).load({ type: 'data', name: packId }, { signal });
  } catch (e) {
    if (e instanceof AbortedError) throw e;
    return { bytes: 0, problems: [{ problem: { code: 'PACK_UNREADABLE', message: `pack ${packId}: download error: ${(e as Error).message}`, pack: packId, file }, bad: blobs }] };
  }
  const size = bytes.length;
  let end = 0;
  for (const b of blobs) {
    if (b.offset !== end) {
      packProblem('index for pack contains gaps / overlapping blobs');
      break;
    }
    end = b.offset + b.length;
  }
  const jobBlobs: DecodeBlob[] = blobs.map((b) => ({ at: b.offset, length: b.length, uncompressedLength: b.uncompressedLength, id: b.id }));
  // A fresh buffer from the backend moves to the worker as it is.
  const done = await pool.run(bytes, file, jobBlobs, { transfer: ownedBytes(bytes), wholePack: true });
  if (done.packHash !== packId) packProblem(`unexpected pack id ${done.packHash}`);
  blobs.forEach((b, i) => {
    const message = done.errors[i];
    if (message !== null && message !== undefined) {
      problems.push({ problem: { code: 'BLOB_DAMAGED', message: `pack ${packId}: blob ${b.id}: ${message}`, pack: packId, file, blob: b.id }, bad: [b] });
    }
  });
  if (typeof done.header === 'string') packProblem(done.header);
  else {
    const key = (b: PackedBlob) => `${b.type}:${b.id}:${b.offset}:${b.length}:${b.uncompressedLength}`;
    const inPack = done.header ?? [];
    const inHeader = new Set(inPack.map(key));
    const inIndex = new Set(blobs.map(key));
    for (const b of inPack) if (!inIndex.has(key(b))) packProblem(`blob ${b.id} is not contained in index or position is incorrect`);
    for (const b of blobs) if (!inHeader.has(key(b))) packProblem(`blob ${b.id} of the index is not in the pack header or its position is incorrect`);
  }
  return { bytes: size, problems };
}
