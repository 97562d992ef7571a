// Which blobs of a pack one read fetches: restore's limits on the shared pack reader.
import type { PackId } from '../../../repository/id.ts';
import { planPackReads, type PackSpan } from '../../../repository/pack-reader.ts';
import { MAX_JOB_BYTES } from '../../engine/decode-pool.ts';

/**
 * Unneeded pack bytes one request reads across to reach the next range of the same pack (restic's
 * limit too): a pack's needed blobs come in one request unless more than this lies between them.
 */
export const STREAM_GAP = 1024 * 1024;

/** Pack bytes read beyond a needed blob to reach the next one in the same read. */
export const MAX_GAP = 512 * 1024;
/**
 * Bytes one decode job holds (a bigger blob is read alone): buffers of a few megabytes are reused
 * by the C allocator, where bigger ones are new memory, zeroed and faulted in, every time. A
 * request may cover many such ranges (see STREAM_GAP); its bytes are handed on range by range.
 */
export const MAX_READ = 4 * 1024 * 1024;

/**
 * Cuts a pack's needed blobs into ranges that one read and one decode worker can take: blobs in
 * offset order, a new range where the gap to the next blob passes MAX_GAP or the range would pass
 * MAX_READ. Blobs over MAX_JOB_BYTES are left out of every range, as `oversized`.
 */
export function packRanges<B extends PackSpan>(blobs: Iterable<B>): { ranges: B[][]; oversized: B[] } {
  const fitting: B[] = [];
  const oversized: B[] = [];
  for (const b of blobs) (b.length > MAX_JOB_BYTES ? oversized : fitting).push(b);
  oversized.sort((x, y) => x.offset - y.offset);
  const reads = planPackReads(fitting, { maxGap: MAX_GAP, maxSpan: MAX_READ });
  return { ranges: reads.map((r) => r.blobs), oversized };
}

/** One request to a pack: from `offset`, `length` bytes, covering the ranges `jobs` (indices, in offset order). */
export interface PackStream {
  packId: PackId;
  offset: number;
  length: number;
  jobs: number[];
}

/**
 * Brings consecutive ranges of one pack (as packRanges cut them, in offset order) into one request
 * wherever at most STREAM_GAP bytes lie between them: a pack whose needed blobs lie close together
 * is one request, however big, as in restic.
 */
export function packStreams(ranges: ReadonlyArray<{ packId: PackId; blobs: ReadonlyArray<PackSpan> }>): PackStream[] {
  const streams: PackStream[] = [];
  let current: PackStream | undefined;
  ranges.forEach((r, j) => {
    const start = r.blobs[0]!.offset;
    const last = r.blobs[r.blobs.length - 1]!;
    const end = last.offset + last.length;
    if (current && current.packId === r.packId && start >= current.offset + current.length && start - (current.offset + current.length) <= STREAM_GAP) {
      current.length = end - current.offset;
      current.jobs.push(j);
      return;
    }
    current = { packId: r.packId, offset: start, length: end - start, jobs: [j] };
    streams.push(current);
  });
  return streams;
}
