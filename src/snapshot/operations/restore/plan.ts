// The restore plan, pure: from the snapshot's entries (at their target paths) and the index, what
// to do — folders to create, files with their blobs grouped by pack and cut into reads, hard
// links, special files. Nothing here touches the file system or the repository.
import { NotFoundError } from '../../../errors.ts';
import type { BlobId, PackId } from '../../../repository/id.ts';
import type { BlobLocation } from '../../../repository/master-index.ts';
import { CRYPTO_OVERHEAD } from '../../../repository/crypto.ts';
import { packRanges, packStreams, type PackStream } from './ranges.ts';
import type { RestoreEntry } from './types.ts';

/** A file whose content is to be written, with what the writing has done so far. */
export interface FileTask {
  pending: RestoreEntry;
  /** Blob writes still to do; the file is complete at 0. */
  remaining: number;
  /** The file's length: the plaintext lengths of its blobs. */
  size: number;
  /** Owner and mode were set by the worker that completed the file. */
  ownerModeSet?: boolean;
  /** Offsets of the blobs not written yet. */
  missing: Set<number>;
  /** Some content has been written (the file is in work until complete). */
  started?: boolean;
  /** Restored sparse (restore --sparse): made its full length up front, all-zero blob beginnings left as holes. */
  sparse?: boolean;
  /** The target's file is written in place: only the blobs not already there, then cut to `size` (restore --overwrite). */
  inPlace?: boolean;
}

/** One blob of a pack and the places (file, offset) it is written to. */
export interface PlannedBlob {
  loc: BlobLocation;
  /** Plaintext length. */
  size: number;
  writes: Array<[FileTask, number]>;
}

/** One read of a pack: a range holding these blobs (in offset order). */
export interface ReadJob {
  packId: PackId;
  blobs: PlannedBlob[];
}

/** How the files' contents are written. */
export interface ContentPlan {
  /** Files to write (the first name of a hard link), in snapshot order. */
  tasks: FileTask[];
  /** Further names of hard links, each linked to its first name once that is written. */
  links: Array<{ f: RestoreEntry; first: Buffer }>;
  /** Pack ranges, each verified and written by one decode worker: pack by pack in the order files first need the packs. */
  jobs: ReadJob[];
  /** The requests that fetch `jobs`: one per pack unless its needed blobs lie far apart. */
  streams: PackStream[];
  /** Blobs too big for a decode worker: each read and written alone. */
  oversized: PlannedBlob[];
  /**
   * The job that creates and completes each file whose blobs all lie in one job; -1 for a file
   * created up front (its blobs lie in several jobs, or one is oversized). Files with no content
   * are in no job.
   */
  jobOf: Map<FileTask, number>;
  /** Bytes of content to write (a hard-linked file once), those already in place included. */
  totalBytes: number;
  /** Of `totalBytes`, those already in place in files written in place (counted as restored, as restic counts them). */
  inPlaceBytes: number;
}

/** Everything a restore does, in order: folders, contents, specials, metadata. */
export interface RestorePlan {
  /** Folders to create (the ones kept), parents first. */
  dirs: RestoreEntry[];
  /** Files, every name of a hard link. */
  files: RestoreEntry[];
  /** Symlinks, fifos, devices and sockets. */
  specials: RestoreEntry[];
  contents: ContentPlan;
}

/**
 * Plans the contents: each file's blobs looked up in the index (the first location), grouped by
 * pack and cut into reads; the second and later names of a hard link (same device and inode) are
 * links to the first.
 *
 * @throws NotFoundError when the index has no location for a blob a file needs.
 */
export function planContents(files: readonly RestoreEntry[], lookup: (id: BlobId) => BlobLocation | undefined, existing: ExistingContents = {}): ContentPlan {
  const firstNames = new Map<string, Buffer>();
  // A file left as it is holds its hard links' contents: they are linked to it.
  for (const f of existing.unchanged ?? []) {
    if (Number(f.node.links ?? 1) > 1 && f.node.inode !== undefined) firstNames.set(`${f.node.deviceId ?? 0}:${f.node.inode}`, f.path);
  }
  let inPlaceBytes = 0;
  const links: ContentPlan['links'] = [];
  const tasks: FileTask[] = [];
  const packs = new Map<PackId, Map<number, PlannedBlob>>();
  let totalBytes = 0;
  for (const f of files) {
    const { node } = f;
    if (Number(node.links ?? 1) > 1 && node.inode !== undefined) {
      const key = `${node.deviceId ?? 0}:${node.inode}`;
      const first = firstNames.get(key);
      if (first) {
        links.push({ f, first });
        continue;
      }
      firstNames.set(key, f.path);
    }
    const task: FileTask = { pending: f, remaining: 0, size: 0, missing: new Set() };
    tasks.push(task);
    const inPlace = existing.inPlace?.get(f);
    if (inPlace) task.inPlace = true;
    for (const [i, id] of (node.content ?? []).entries()) {
      const loc = lookup(id);
      if (!loc) throw new NotFoundError(`data blob ${id}`);
      const size = loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD;
      if (inPlace?.[i]) {
        task.size += size;
        inPlaceBytes += size;
        continue;
      }
      let blobs = packs.get(loc.packId);
      if (!blobs) packs.set(loc.packId, (blobs = new Map()));
      let planned = blobs.get(loc.offset);
      if (!planned) blobs.set(loc.offset, (planned = { loc, size, writes: [] }));
      planned.writes.push([task, task.size]);
      task.missing.add(task.size);
      task.size += size;
      task.remaining++;
    }
    totalBytes += task.size;
  }
  const jobs: ReadJob[] = [];
  const oversized: PlannedBlob[] = [];
  for (const [packId, byOffset] of packs) {
    const cut = packRanges(byOffset.values());
    for (const blobs of cut.ranges) jobs.push({ packId, blobs });
    oversized.push(...cut.oversized);
  }
  const jobOf = creatingJobs(jobs, oversized);
  // A file written in place is opened and cut to its length up front.
  for (const t of tasks) if (t.inPlace) jobOf.set(t, -1);
  return { tasks, links, jobs, streams: packStreams(jobs), oversized, jobOf, totalBytes, inPlaceBytes };
}

/** What the target already has (restore --overwrite): files left as they are, and which blobs of files written in place lie there. */
export interface ExistingContents {
  unchanged?: readonly RestoreEntry[];
  inPlace?: ReadonlyMap<RestoreEntry, readonly boolean[] | undefined>;
}

/**
 * A file whose blobs all lie in one job is created by the worker that writes it; every other file
 * is created up front (-1), so that no two workers race to create one.
 */
function creatingJobs(jobs: readonly ReadJob[], oversized: readonly PlannedBlob[]): Map<FileTask, number> {
  const jobOf = new Map<FileTask, number>();
  for (let j = 0; j < jobs.length; j++) {
    for (const b of jobs[j]!.blobs) {
      for (const [t] of b.writes) {
        const seen = jobOf.get(t);
        if (seen === undefined) jobOf.set(t, j);
        else if (seen !== j) jobOf.set(t, -1);
      }
    }
  }
  for (const b of oversized) for (const [t] of b.writes) jobOf.set(t, -1);
  return jobOf;
}

/** The whole plan from the entries a walk collected (`created`: everything, parents first). */
export function planRestore(
  walked: { created: readonly RestoreEntry[]; files: readonly RestoreEntry[]; specials: readonly RestoreEntry[] },
  lookup: (id: BlobId) => BlobLocation | undefined,
  existing: ExistingContents = {},
): RestorePlan {
  return {
    dirs: walked.created.filter((e) => e.node.type === 'dir' && !e.dropped),
    files: [...walked.files],
    specials: [...walked.specials],
    contents: planContents(walked.files, lookup, existing),
  };
}

/** What a restore would do, in numbers: {@link planRestore}'s answer (restic's `restore --dry-run`). */
export interface RestorePlanSummary {
  /** Folders it would create. */
  dirs: number;
  /** Files it would write (every name of a hard link). */
  files: number;
  /** Of `files`, further names of hard links (linked, not written). */
  hardLinks: number;
  /** Symlinks, fifos, devices and sockets. */
  specials: number;
  /** Bytes of file content it would write (a hard-linked file once). */
  bytes: number;
  /** Packs it would read from. */
  packs: number;
  /** Ranges of packs, each verified and written by a worker. */
  reads: number;
  /** Requests that fetch those ranges (one per pack unless its needed blobs lie far apart), and one per oversized blob. */
  requests: number;
  /** Bytes of pack data those requests fetch (gaps between needed blobs included). */
  readBytes: number;
  /** Blobs too big for one read, each read alone. */
  oversizedBlobs: number;
}

/** The plan in numbers. */
export function summarizePlan(plan: RestorePlan): RestorePlanSummary {
  const { contents } = plan;
  const packs = new Set<string>();
  let readBytes = 0;
  for (const s of contents.streams) {
    packs.add(s.packId);
    readBytes += s.length;
  }
  for (const b of contents.oversized) {
    packs.add(b.loc.packId);
    readBytes += b.loc.length;
  }
  return {
    dirs: plan.dirs.length,
    files: plan.files.length,
    hardLinks: contents.links.length,
    specials: plan.specials.length,
    bytes: contents.totalBytes,
    packs: packs.size,
    reads: contents.jobs.length,
    requests: contents.streams.length + contents.oversized.length,
    readBytes,
    oversizedBlobs: contents.oversized.length,
  };
}
