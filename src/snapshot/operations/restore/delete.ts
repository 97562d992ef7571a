// restore --delete, as restic 0.19: in every folder of the snapshot the restore goes into, what
// the target holds under a name the snapshot's folder lacks is removed — if the include/exclude
// selection would restore that path; a folder goes whole (what is inside is not judged again, as
// in restic). Runs after the walk made the
// folders and before any content is written, so restored folders keep their times.
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import { throwIfAborted } from '../../../errors.ts';
import { goStringFromBytes } from '../../model/gojson.ts';
import type { VisitedDir, Walked } from './walk.ts';

const SLASH = Buffer.from('/');

/** Removes what the snapshot does not have; `onDelete` gets each path removed (children first). Returns how many. */
export async function deleteExtraneous(walked: Walked, onDelete: (p: Buffer) => void, signal: AbortSignal | undefined): Promise<number> {
  let count = 0;
  // What is removed goes whole, children reported before their folder (restic judges only the top).
  const removeAll = async (p: Buffer): Promise<void> => {
    throwIfAborted(signal);
    const st = await lstat(p).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      const names = await readdir(p, { encoding: 'buffer' });
      for (const name of names.sort(Buffer.compare)) await removeAll(Buffer.concat([p, SLASH, name]));
      await rmdir(p);
    } else await rm(p, { force: true });
    count++;
    onDelete(p);
  };
  const remove = async (p: Buffer, rel: string): Promise<void> => {
    const st = await lstat(p).catch(() => undefined);
    if (st && walked.select(rel, st.isDirectory()) === 'yes') await removeAll(p);
  };
  for (const dir of walked.visited) {
    const names = await readdir(dir.path, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
    names.sort(Buffer.compare);
    for (const name of names) {
      const goName = goStringFromBytes(name);
      if (dir.names.has(goName)) continue;
      await remove(Buffer.concat([dir.path, SLASH, name]), `${dir.rel}/${goName}`);
    }
  }
  return count;
}

/**
 * What `deleteExtraneous` would remove from one folder, without removing it (a dry run): each
 * path in the order restic reports it, everything in a folder before the folder (its walk of the
 * folder, lexical, turned round).
 */
export async function listExtraneous(dir: VisitedDir, walked: Walked, signal: AbortSignal | undefined): Promise<Array<{ path: Buffer; isDir: boolean }>> {
  const out: Array<{ path: Buffer; isDir: boolean }> = [];
  const walk = async (p: Buffer, into: Array<{ path: Buffer; isDir: boolean }>): Promise<void> => {
    throwIfAborted(signal);
    const st = await lstat(p).catch(() => undefined);
    if (!st) return;
    into.push({ path: p, isDir: st.isDirectory() });
    if (!st.isDirectory()) return;
    const names = await readdir(p, { encoding: 'buffer' });
    for (const name of names.sort(Buffer.compare)) await walk(Buffer.concat([p, SLASH, name]), into);
  };
  const names = await readdir(dir.path, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
  for (const name of names.sort(Buffer.compare)) {
    const goName = goStringFromBytes(name);
    if (dir.names.has(goName)) continue;
    const p = Buffer.concat([dir.path, SLASH, name]);
    const st = await lstat(p).catch(() => undefined);
    if (!st || walked.select(`${dir.rel}/${goName}`, st.isDirectory()) !== 'yes') continue;
    const found: Array<{ path: Buffer; isDir: boolean }> = [];
    await walk(p, found);
    out.push(...found.reverse());
  }
  return out;
}
