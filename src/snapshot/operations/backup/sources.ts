// The sources of a backup: which targets exist, and where each lands in the snapshot.
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { InvalidInputError, SourceNotFoundError } from '../../../errors.ts';
import type { BackupOptions } from './types.ts';

/** A folder level created from the target paths (e.g. "home" and "user" for /home/user/docs). */
export interface VirtualDir {
  realPath: string;
  children: Map<string, VirtualDir | { target: string }>;
}

/**
 * The targets that exist, and an error entry for each that does not (reported to onError as
 * found). Throws SourceNotFoundError when none exists.
 */
export async function existingTargets(
  targets: readonly string[],
  onError: BackupOptions['onError'],
): Promise<{ present: string[]; missing: Array<{ path: string; message: string }> }> {
  const present: string[] = [];
  const missing: Array<{ path: string; message: string }> = [];
  for (const t of targets) {
    try {
      await lstat(t);
      present.push(t);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const message = code === 'ENOENT' || code === 'ENOTDIR' ? `${t} does not exist, skipping` : `${t} cannot be accessed, skipping: ${(e as Error).message}`;
      missing.push({ path: t, message });
      onError?.(t, Object.assign(new Error(message, { cause: e }), { code }));
    }
  }
  if (present.length === 0) throw new SourceNotFoundError(missing.map((m) => m.path));
  return { present, missing };
}

/**
 * restic's layout of targets in the snapshot: an absolute target keeps its full path below the
 * root, a relative one its relative path ("." puts the folder's contents at the root).
 */
export function buildVirtualTree(targets: readonly string[]): VirtualDir | { target: string } {
  const root: VirtualDir = { realPath: '', children: new Map() };
  for (const t of targets) {
    const abs = path.resolve(t);
    const rel = path.isAbsolute(t) ? abs.slice(1) : path.normalize(t);
    const comps = rel.split('/').filter((c) => c !== '' && c !== '.');
    while (comps[0] === '..') comps.shift();
    if (comps.length === 0) {
      if (targets.length > 1) throw new InvalidInputError(`target ${t} is the snapshot root and cannot be combined with other targets`);
      return { target: abs };
    }
    let dir = root;
    let real = path.isAbsolute(t) ? '' : abs.slice(0, abs.length - comps.join('/').length - 1);
    for (let i = 0; i < comps.length; i++) {
      const c = comps[i]!;
      real = real + '/' + c;
      const last = i === comps.length - 1;
      const existing = dir.children.get(c);
      if (last) {
        if (existing) throw new InvalidInputError(`targets overlap at ${real}`);
        dir.children.set(c, { target: abs });
      } else if (!existing) {
        const next: VirtualDir = { realPath: real, children: new Map() };
        dir.children.set(c, next);
        dir = next;
      } else if ('target' in existing) {
        throw new InvalidInputError(`targets overlap at ${real}`);
      } else dir = existing;
    }
  }
  return root;
}
