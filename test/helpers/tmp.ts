// Temporary directories for tests, always removed afterwards, even when the tree inside
// has read-only directories or files without any permission bits.

import { after } from 'node:test';
import { chmod, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const pending = new Set<string>();

// Last resort for directories whose `after` hook never ran (a crashed test file).
process.once('exit', () => {
  for (const dir of pending) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Nothing useful to do while the process exits.
    }
  }
});

async function makeTmp(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  pending.add(dir);
  return dir;
}

/** Removes `dir` recursively; as non-root, first grants the owner rights it needs to. */
export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    await grantOwnerAccess(dir);
    await rm(dir, { recursive: true, force: true });
  }
  pending.delete(dir);
}

// Paths stay Buffers so names that are not valid UTF-8 are reached too.
async function grantOwnerAccess(dir: string | Buffer): Promise<void> {
  await chmod(dir, 0o700).catch(() => {});
  const names = await readdir(dir, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
  for (const name of names) {
    const path = Buffer.concat([Buffer.from(dir), Buffer.from('/'), name]);
    const st = await lstat(path).catch(() => null);
    if (st?.isDirectory()) await grantOwnerAccess(path);
  }
}

/** Runs `fn` with a fresh temporary directory and removes the directory afterwards. */
export async function withTmpDir<T>(prefix: string, fn: (dir: string) => Promise<T> | T): Promise<T> {
  const dir = await makeTmp(prefix);
  try {
    return await fn(dir);
  } finally {
    await removeTree(dir);
  }
}

/**
 * A fresh temporary directory, removed through node:test's `after` hook: called inside a
 * test it goes when that test ends; called in a `describe` body or at the top level of a
 * file (top-level await) it goes when that suite or file ends. Do not call it inside a
 * `before` hook: node:test runs an `after` registered there as soon as the hook returns.
 */
export async function tmpDir(prefix = 'stowage-test'): Promise<string> {
  const dir = await makeTmp(prefix);
  after(() => removeTree(dir));
  return dir;
}
