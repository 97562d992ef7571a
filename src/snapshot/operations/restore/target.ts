// The target folder: what the restore makes and replaces in it.
import { lstat, mkdir, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { WalkTarget } from './walk.ts';

/** The target as the walk and the writers see it: folders made fresh, entries in the way removed. */
export class TargetFolder implements WalkTarget {
  /** Folders this run created: nothing can be in them that needs removing first. */
  readonly #freshDirs = new Set<string>();

  async makeDir(p: Buffer, parent: Buffer): Promise<void> {
    if (this.#freshDirs.has(parent.toString('latin1'))) {
      await mkdir(p, { mode: 0o700 });
      this.#freshDirs.add(p.toString('latin1'));
      return;
    }
    const st = await lstat(p).catch(() => undefined);
    if (st?.isDirectory()) return;
    if (st) await rm(p, { recursive: true, force: true });
    await mkdir(p, { mode: 0o700 });
    this.#freshDirs.add(p.toString('latin1'));
  }

  /** Whether p lies in a folder this run created (so nothing is there yet). */
  inFreshDir(p: Buffer): boolean {
    return this.#freshDirs.has(path.dirname(p.toString('latin1')));
  }

  /** Whether this run created the folder p. */
  isFresh(p: Buffer): boolean {
    return this.#freshDirs.has(p.toString('latin1'));
  }

  /** Takes back a folder made on the way to an include that matched nothing; one that was there before stays. */
  async dropDir(p: Buffer): Promise<void> {
    if (!this.#freshDirs.has(p.toString('latin1'))) return;
    await rm(p, { recursive: true, force: true });
  }

  /** Removes what is at p unless p lies in a folder this run created (then nothing is there). */
  async removeExisting(p: Buffer): Promise<void> {
    if (this.#freshDirs.has(path.dirname(p.toString('latin1')))) return;
    const st = await lstat(p).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) await rm(p, { recursive: true, force: true });
    else await unlink(p);
  }
}
