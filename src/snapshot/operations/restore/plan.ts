// The restore plan, pure: from the snapshot's entries (at their target paths) and the index, what
// to do — folders to create, files with their blobs grouped by pack and cut into reads, hard
// links, special files. Nothing here touches the file system or the repository.
import { NotFoundError } from '../../../errors.ts';
import type { BlobId, PackId } from '../../../repository/id.ts';
import type { BlobLocation } from '../../../repository/master-index.ts';
import { CRYPTO_OVERHEAD } from '../../../repository/crypto.ts';
import { packRanges, packStreams, type PackStream } from './ranges.ts';
import type { RestoreEntry } from './types.ts';

/**
 * A file whose content is to be written, with what the writing has done so far. One per file of
 * the snapshot, kept for the whole restore: every field is set when it is made (so all files share
 * one shape and no property store), and nothing per blob lives here.
 */
export interface FileTask {
  pending: RestoreEntry;
  /** Blob writes still to do; the file is complete at 0. */
  remaining: number;
  /** The file's length: the plaintext lengths of its blobs. */
  size: number;
  /**
   * The job (index into ContentPlan.jobs) that creates and completes the file, when all its blobs
   * lie in that one job; -1 for a file created up front (its blobs lie in several jobs, one is
   * oversized, it is sparse or written in place); {@link NO_JOB} for one with no blob to write.
   */
  job: number;
  /** Owner and mode were set by the worker that completed the file. */
  ownerModeSet: boolean;
  /** Some content has been written (the file is in work until complete). */
  started: boolean;
  /** Restored sparse (restore --sparse): made its full length up front, all-zero blob beginnings left as holes. */
  sparse: boolean;
  /** The target's file is written in place: only the blobs not already there, then cut to `size` (restore --overwrite). */
  inPlace: boolean;
}

/** FileTask.job of a file no job writes to (no content, or all of it already in place): created up front. */
export const NO_JOB = -2;

/**
 * One blob of a pack and the places (file, offset) it is written to: the first in `file` and
 * `at`, further ones (the same blob in other files, or twice in one) in `more` as pairs. Where it
 * lies is kept as plain numbers, not the index's location object; `id` is the file node's own
 * string and `packId` one string per pack.
 */
export interface PlannedBlob {
  id: BlobId;
  packId: PackId;
  /** Offset and length of the sealed blob in the pack. */
  offset: number;
  length: number;
  /** Plaintext length when compressed, 0 when not (as BlobLocation). */
  uncompressedLength: number;
  /** Plaintext length. */
  size: number;
  file: FileTask;
  at: number;
  /** Further writes: file, offset, file, offset, … (undefined when there are none). */
  more: Array<FileTask | number> | undefined;
  /** Written to every place (the files' unwritten parts are found from the blobs not written). */
  written: boolean;
}

/** Calls fn for every place (file, offset) the blob is written to. */
export function forEachWrite(b: PlannedBlob, fn: (t: FileTask, offset: number) => void): void {
  fn(b.file, b.at);
  const more = b.more;
  if (more) for (let i = 0; i < more.length; i += 2) fn(more[i] as FileTask, more[i + 1] as number);
}

/** One read of a pack: a range holding these blobs (in offset order). */
export interface ReadJob {
  packId: PackId;
  blobs: PlannedBlob[];
}

/** How the files' contents are written. */
export interface ContentPlan {
  /** Files to write (the first name of a hard link), in snapshot order (emptied by the writer once the files are created: from then on a file is reached through its blobs). */
  tasks: FileTask[];
  /** Further names of hard links, each linked to its first name once that is written. */
  links: Array<{ f: RestoreEntry; first: Buffer }>;
  /** Pack ranges, each verified and written by one decode worker: pack by pack in the order files first need the packs. */
  jobs: ReadJob[];
  /** The requests that fetch `jobs`: one per pack unless its needed blobs lie far apart. */
  streams: PackStream[];
  /** Blobs too big for a decode worker: each read and written alone. */
  oversized: PlannedBlob[];
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
  files: readonly RestoreEntry[];
  /** Symlinks, fifos, devices and sockets. */
  specials: readonly RestoreEntry[];
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
  // Per pack: its id (one string for all its blobs) and its needed blobs by offset.
  const packs = new Map<PackId, { packId: PackId; byOffset: Map<number, PlannedBlob> }>();
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
    const inPlace = existing.inPlace?.get(f);
    const task: FileTask = { pending: f, remaining: 0, size: 0, job: NO_JOB, ownerModeSet: false, started: false, sparse: false, inPlace: inPlace !== undefined };
    tasks.push(task);
    const content = node.content ?? [];
    for (let i = 0; i < content.length; i++) {
      const id = content[i]!;
      const loc = lookup(id);
      if (!loc) throw new NotFoundError(`data blob ${id}`);
      const size = loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD;
      if (inPlace?.[i]) {
        task.size += size;
        inPlaceBytes += size;
        continue;
      }
      let pack = packs.get(loc.packId);
      if (!pack) packs.set(loc.packId, (pack = { packId: loc.packId, byOffset: new Map() }));
      const planned = pack.byOffset.get(loc.offset);
      if (!planned) {
        const { offset, length, uncompressedLength } = loc;
        pack.byOffset.set(offset, { id, packId: pack.packId, offset, length, uncompressedLength, size, file: task, at: task.size, more: undefined, written: false });
      } else (planned.more ??= []).push(task, task.size);
      task.size += size;
      task.remaining++;
    }
    totalBytes += task.size;
  }
  const jobs: ReadJob[] = [];
  const oversized: PlannedBlob[] = [];
  for (const { packId, byOffset } of packs.values()) {
    const cut = packRanges(byOffset.values());
    for (const blobs of cut.ranges) jobs.push({ packId, blobs });
    oversized.push(...cut.oversized);
  }
  packs.clear();
  creatingJobs(jobs, oversized);
  // A file written in place is opened and cut to its length up front.
  for (const t of tasks) if (t.inPlace) t.job = -1;
  return { tasks, links, jobs, streams: packStreams(jobs), oversized, totalBytes, inPlaceBytes };
}

/** What the target already has (restore --overwrite): files left as they are, and which blobs of files written in place lie there. */
export interface ExistingContents {
  unchanged?: readonly RestoreEntry[];
  inPlace?: ReadonlyMap<RestoreEntry, readonly boolean[] | undefined>;
}

/**
 * A file whose blobs all lie in one job is created by the worker that writes it (FileTask.job);
 * every other file is created up front (-1), so that no two workers race to create one.
 */
function creatingJobs(jobs: readonly ReadJob[], oversized: readonly PlannedBlob[]): void {
  for (let j = 0; j < jobs.length; j++) {
    for (const b of jobs[j]!.blobs) {
      forEachWrite(b, (t) => {
        if (t.job === NO_JOB) t.job = j;
        else if (t.job !== j) t.job = -1;
      });
    }
  }
  for (const b of oversized) forEachWrite(b, (t) => (t.job = -1));
}

/** The whole plan from the entries a walk collected (`created`: everything, parents first). */
export function planRestore(
  walked: { created: readonly RestoreEntry[]; files: readonly RestoreEntry[]; specials: readonly RestoreEntry[] },
  lookup: (id: BlobId) => BlobLocation | undefined,
  existing: ExistingContents = {},
): RestorePlan {
  return {
    dirs: walked.created.filter((e) => e.node.type === 'dir' && !e.dropped),
    files: walked.files,
    specials: walked.specials,
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
    packs.add(b.packId);
    readBytes += b.length;
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
