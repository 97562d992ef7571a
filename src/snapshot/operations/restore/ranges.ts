// Pack-range coalescing: which blobs of a pack one read fetches. (To give way to the shared
// pack reader, repository/pack-reader.ts, once there is one.)
import type { BlobLocation } from '../../../repository/master-index.ts';
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
  const sorted = [...blobs].sort((x, y) => x.loc.offset - y.loc.offset);
  const ranges: B[][] = [];
  const oversized: B[] = [];
  let range: B[] = [];
  for (const b of sorted) {
    if (b.loc.length > MAX_JOB_BYTES) {
      oversized.push(b);
      continue;
    }
    const start = range[0]?.loc.offset ?? b.loc.offset;
    const last = range[range.length - 1];
    if (last && (b.loc.offset - (last.loc.offset + last.loc.length) > MAX_GAP || b.loc.offset + b.loc.length - start > MAX_READ)) {
      ranges.push(range);
      range = [];
    }
    range.push(b);
  }
  if (range.length) ranges.push(range);
  return { ranges, oversized };
}
