// Which blobs of a pack one read fetches: restore's limits on the shared pack reader.
import type { BlobLocation } from '../../../repository/master-index.ts';
import { planPackReads } from '../../../repository/pack-reader.ts';
import { MAX_JOB_BYTES } from '../../engine/decode-pool.ts';

/** Pack bytes read beyond a needed blob to reach the next one in the same read. */
export const MAX_GAP = 512 * 1024;
/**
 * Bytes read at once (a bigger blob is read alone): reads of a few megabytes are reused by the C
 * allocator, where bigger ones are new memory, zeroed and faulted in, every time.
 */
export const MAX_READ = 4 * 1024 * 1024;

/**
 * Cuts a pack's needed blobs into ranges that one read and one decode worker can take: blobs in
 * offset order, a new range where the gap to the next blob passes MAX_GAP or the range would pass
 * MAX_READ. Blobs over MAX_JOB_BYTES are left out of every range, as `oversized`.
 */
export function packRanges<B extends { loc: BlobLocation }>(blobs: Iterable<B>): { ranges: B[][]; oversized: B[] } {
  const fitting: B[] = [];
  const oversized: B[] = [];
  for (const b of blobs) (b.loc.length > MAX_JOB_BYTES ? oversized : fitting).push(b);
  oversized.sort((x, y) => x.loc.offset - y.loc.offset);
  const reads = planPackReads(fitting, { maxGap: MAX_GAP, maxSpan: MAX_READ }, (b) => b.loc);
  return { ranges: reads.map((r) => r.blobs), oversized };
}
