// The temporary files data packs are built in (BlobWriter's `tempDir`): their names say which
// process writes them, so that files a killed process left behind can be told from files a live
// one still writes, and removed by the next BlobWriter that uses the same folder.
//
// A name is `stowage-pack-<pid>-<owner>-<random>`: the writer's process ID, and `owner`, 8 hex
// digits of a hash of the host name and the PID namespace, so a PID is only judged where it means
// the same process (another container sharing the folder has its own namespace, where PID 7 is
// someone else). A file is removed when its owner is this host and namespace and its process is
// gone; a file of another owner, or named as before the owner was part of the name
// (`stowage-pack-<random>`), only once nobody has written to it for STALE_TEMP_PACK_MS. A file
// whose process is alive is never removed here.
import { createHash, randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { lstat, readdir, unlink } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';

/** The prefix of every temporary pack file. */
export const TEMP_PACK_PREFIX = 'stowage-pack-';
/** A temporary pack file of another host or namespace (or an older name) unchanged this long is left over. */
export const STALE_TEMP_PACK_MS = 24 * 60 * 60 * 1000;

const NAMED = /^stowage-pack-(\d+)-([0-9a-f]{8})-[0-9a-f]{16}$/;
const LEGACY = /^stowage-pack-[0-9a-f]{16}$/;

let ownerToken: string | undefined;

/** This host and PID namespace, as 8 hex digits. */
export function tempPackOwner(): string {
  if (ownerToken === undefined) {
    let ns = '';
    try {
      ns = readlinkSync('/proc/self/ns/pid');
    } catch {
      // No /proc (not Linux): the host name alone.
    }
    ownerToken = createHash('sha256').update(`${os.hostname()}\0${ns}`).digest('hex').slice(0, 8);
  }
  return ownerToken;
}

/** A new temporary pack file name for this process. */
export function tempPackName(): string {
  return `${TEMP_PACK_PREFIX}${process.pid}-${tempPackOwner()}-${randomBytes(8).toString('hex')}`;
}

/** Whether a process with this ID exists (one of another user counts). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Options of {@link sweepTempPacks} (for tests). */
export interface SweepOptions {
  /** The time to judge ages by (default now). */
  now?: number;
  /** Whether a process is alive (default: signal 0). */
  alive?: (pid: number) => boolean;
}

/**
 * Removes the temporary pack files in `dir` that no live process writes: those of this host and
 * namespace whose process is gone, and other ones (another owner, the older name) unchanged for
 * {@link STALE_TEMP_PACK_MS}. Files it cannot judge or remove are left alone; a folder that cannot
 * be read is nothing to sweep. Returns the names removed.
 */
export async function sweepTempPacks(dir: string, options: SweepOptions = {}): Promise<string[]> {
  const now = options.now ?? Date.now();
  const alive = options.alive ?? processAlive;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const owner = tempPackOwner();
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(TEMP_PACK_PREFIX)) continue;
    const m = NAMED.exec(name);
    if (!m && !LEGACY.test(name)) continue;
    const path = join(dir, name);
    let stale: boolean;
    if (m && m[2] === owner) {
      const pid = Number(m[1]);
      stale = pid !== process.pid && !alive(pid);
    } else {
      const st = await lstat(path).catch(() => undefined);
      stale = st !== undefined && st.isFile() && now - st.mtimeMs >= STALE_TEMP_PACK_MS;
    }
    if (!stale) continue;
    try {
      const st = await lstat(path);
      if (!st.isFile()) continue;
      await unlink(path);
      removed.push(name);
    } catch {
      // Gone meanwhile, or not ours to remove (another user's file in a shared folder).
    }
  }
  return removed;
}
