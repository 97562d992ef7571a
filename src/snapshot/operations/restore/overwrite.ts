// restore --overwrite, as restic 0.19: what becomes of an entry the target already has.
//   always      a file is read and each stretch hashed against its blob: one that matches
//               throughout is left as it is (only its metadata is restored: "unchanged"), one that
//               matches in part has only the other stretches written, in place ("updated");
//               anything else is replaced (the default);
//   if-changed  as always, but a file with the snapshot's size and modification time is taken
//               to match without reading it;
//   if-newer    an entry is replaced only when the snapshot's modification time is later (a
//               file then compared as with always);
//   never       an entry is left as it is.
// Entries left are taken out of the walk's findings before the plan, so neither their contents
// nor (if-newer, never) their metadata are written. Folders are always restored.
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { throwIfAborted } from '../../../errors.ts';
import type { BlobId } from '../../../repository/id.ts';
import { mapLimit } from '../../../repository/concurrency.ts';
import type { RestoreEntry } from './types.ts';
import type { Walked } from './walk.ts';

/** restic's --overwrite behaviours. */
export type OverwriteMode = 'always' | 'if-changed' | 'if-newer' | 'never';

export const OVERWRITE_MODES: readonly OverwriteMode[] = ['always', 'if-changed', 'if-newer', 'never'];

/** What the target's entries mean for the restore (see the top of this file). */
export interface ExistingEntries {
  /** Entries left as they are: files, links and special files. */
  skipped: Set<RestoreEntry>;
  /** Of `skipped`, files whose contents match (always, if-changed): their metadata is still restored. */
  unchanged: RestoreEntry[];
  /**
   * Files the target has as regular files that do not match throughout (restic's "updated"):
   * which of their blobs already lie in place, or undefined where the file is made anew anyway
   * (it has further hard links there).
   */
  updated: Map<RestoreEntry, boolean[] | undefined>;
  /** How many entries `skipped` holds, their files' bytes, and how many are not files (links, specials, further names of hard links). */
  count: number;
  bytes: number;
  others: number;
}

/** The further names of hard links (a name whose inode an earlier file in `files` had). */
export function furtherHardLinks(files: readonly RestoreEntry[]): Set<RestoreEntry> {
  const seen = new Set<string>();
  const further = new Set<RestoreEntry>();
  for (const f of files) {
    const { node } = f;
    if (Number(node.links ?? 1) <= 1 || node.inode === undefined) continue;
    const key = `${node.deviceId ?? 0}:${node.inode}`;
    if (seen.has(key)) further.add(f);
    else seen.add(key);
  }
  return further;
}

/**
 * Looks at what the target has where the walk's files and special files go (walked.files in
 * tree order), and takes what `mode` leaves alone out of `walked`.
 * `blobSize` gives a data blob's plaintext length.
 */
export async function checkExisting(
  walked: Walked,
  mode: OverwriteMode,
  blobSize: (id: BlobId) => number | undefined,
  options: { signal?: AbortSignal | undefined; absent?: (e: RestoreEntry) => boolean } = {},
): Promise<ExistingEntries> {
  const out: ExistingEntries = { skipped: new Set(), unchanged: [], updated: new Map(), count: 0, bytes: 0, others: 0 };
  const further = furtherHardLinks(walked.files);
  // What lies in a folder the restore just made is not looked for.
  const absent = options.absent;
  const entries = [...walked.files, ...walked.specials].filter((e) => !absent?.(e));
  await mapLimit(entries, 8, async (e) => {
    throwIfAborted(options.signal);
    if (mode === 'if-newer' || mode === 'never') {
      const st = await lstat(e.path, { bigint: true }).catch(() => undefined);
      if (!st) return;
      if (mode === 'never' || e.node.mtime.epochNs <= st.mtimeNs) {
        out.skipped.add(e);
        return;
      }
    }
    // A file to overwrite is compared first, whatever the mode (restic's too).
    if (e.node.type !== 'file' || further.has(e)) return;
    const state = await compareFile(e, mode === 'if-changed', blobSize);
    if (state === 'matches') {
      out.skipped.add(e);
      out.unchanged.push(e);
    } else if (state) out.updated.set(e, state.inPlace ? state.matches : undefined);
  });
  for (const e of out.skipped) {
    out.count++;
    if (e.node.type === 'file' && !further.has(e)) out.bytes += Number(e.node.size ?? 0);
    else out.others++;
  }
  // Tree order, as restic reports them.
  const order = new Map(walked.files.map((e, i) => [e, i]));
  out.unchanged.sort((a, b) => order.get(a)! - order.get(b)!);
  if (out.skipped.size > 0) {
    const keep = (list: RestoreEntry[]) => list.filter((e) => !out.skipped.has(e));
    walked.files = keep(walked.files);
    walked.specials = keep(walked.specials);
    walked.created = keep(walked.created);
  }
  return out;
}

/**
 * A file of the snapshot against what the target has at its path: undefined when that is not a
 * regular file (or cannot be read), 'matches' when every blob lies in place and the size is the
 * same, else which blobs do. With trustMtime a file of the same size and mtime matches unread.
 */
async function compareFile(
  e: RestoreEntry,
  trustMtime: boolean,
  blobSize: (id: BlobId) => number | undefined,
): Promise<'matches' | { matches: boolean[]; inPlace: boolean } | undefined> {
  const fh = await open(e.path, fsc.O_RDONLY | fsc.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) return undefined;
    const size = BigInt(e.node.size ?? 0);
    let sizeMatches = st.size === size;
    if (trustMtime && sizeMatches && st.mtimeNs === e.node.mtime.epochNs) return 'matches';
    const content = e.node.content ?? [];
    const matches = content.map(() => false);
    let offset = 0;
    let buf = Buffer.alloc(0);
    for (let i = 0; i < content.length; i++) {
      const length = blobSize(content[i]!);
      if (length === undefined) return undefined;
      if (buf.length < length) buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      if (bytesRead < length) {
        sizeMatches = false;
        break;
      }
      matches[i] = createHash('sha256').update(buf.subarray(0, length)).digest('hex') === content[i];
      offset += length;
    }
    if (sizeMatches && matches.every(Boolean)) return 'matches';
    // A file with further names in the target is made anew, so that they keep what they hold.
    return { matches, inPlace: st.nlink === 1n };
  } finally {
    await fh.close();
  }
}
