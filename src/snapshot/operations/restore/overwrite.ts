// restore --overwrite, as restic 0.19: what becomes of an entry the target already has.
//   always      it is replaced (the default);
//   if-changed  a regular file with the snapshot's size and modification time is left as it is;
//   if-newer    it is replaced only when the snapshot's modification time is later;
//   never       it is left as it is.
// Entries left are taken out of the walk's findings before the plan, so neither their contents
// nor their metadata are written. Folders are always restored.
import { lstat } from 'node:fs/promises';
import type { RestoreEntry } from './types.ts';
import type { Walked } from './walk.ts';

/** restic's --overwrite behaviours. */
export type OverwriteMode = 'always' | 'if-changed' | 'if-newer' | 'never';

export const OVERWRITE_MODES: readonly OverwriteMode[] = ['always', 'if-changed', 'if-newer', 'never'];

/** Takes the entries the mode leaves alone out of `walked`; returns how many (`others`: not files), and the files' bytes. */
export async function skipExisting(walked: Walked, mode: OverwriteMode): Promise<{ count: number; bytes: number; others: number }> {
  if (mode === 'always') return { count: 0, bytes: 0, others: 0 };
  const skipped = new Set<RestoreEntry>();
  for (const e of [...walked.files, ...walked.specials]) {
    const st = await lstat(e.path, { bigint: true }).catch(() => undefined);
    if (!st || st.isDirectory()) continue;
    const node = e.node;
    let leave: boolean;
    if (mode === 'never') leave = true;
    else if (mode === 'if-newer') leave = node.mtime.epochNs <= st.mtimeNs;
    else leave = node.type === 'file' && st.isFile() && st.size === BigInt(node.size ?? 0) && st.mtimeNs === node.mtime.epochNs;
    if (leave) skipped.add(e);
  }
  if (skipped.size === 0) return { count: 0, bytes: 0, others: 0 };
  const keep = (list: RestoreEntry[]) => list.filter((e) => !skipped.has(e));
  walked.files = keep(walked.files);
  walked.specials = keep(walked.specials);
  walked.created = keep(walked.created);
  let bytes = 0;
  let others = 0;
  for (const e of skipped) {
    if (e.node.type === 'file') bytes += Number(e.node.size ?? 0);
    else others++;
  }
  return { count: skipped.size, bytes, others };
}
