// Loading index files, strictly (Repository.loadIndex: any bad file fails the load) or
// tolerantly (check and repair: every file on its own, failures returned to judge).
import type { CallOptions } from '../backend/backend.ts';
import { AbortedError, IntegrityError } from '../errors.ts';
import { mapLimit } from './concurrency.ts';
import { decodeIndexFile, type IndexPack } from './index-file.ts';
import { MasterIndex } from './master-index.ts';
import type { Repository } from './repository.ts';

/**
 * One index file's packs, decoded and checked: a v1 repository's index may not claim
 * compression. Bad content is an IntegrityError naming `index/<id>`.
 */
export async function readIndexFile(repo: Repository, id: string, options: CallOptions = {}): Promise<IndexPack[]> {
  const file = `index/${id}`;
  const content = decodeIndexFile(await repo.loadUnpacked('index', id, options), file);
  if (repo.version === 1 && content.packs.some((p) => p.blobs.some((b) => b.uncompressedLength))) {
    throw new IntegrityError('index uses compression, which repository version 1 does not support', { file });
  }
  return content.packs;
}


export interface LoadedIndexFiles {
  index: MasterIndex;
  /** Index file ID → its packs, for the files that loaded. */
  files: Map<string, IndexPack[]>;
  /** Index files that did not load, with why. */
  failures: Array<{ id: string; error: Error }>;
}

/**
 * Loads every index file on its own, so one broken file does not hide the others. Aborts are
 * thrown; every other failure is returned in `failures` for the caller to judge.
 */
export async function loadIndexFiles(
  repo: Repository,
  options: CallOptions & { onProgress?: (done: number, total: number) => void } = {},
): Promise<LoadedIndexFiles> {
  const ids: string[] = [];
  for await (const id of repo.listIds('index', options)) ids.push(id);
  ids.sort();
  const index = new MasterIndex();
  const files = new Map<string, IndexPack[]>();
  const failures: Array<{ id: string; error: Error }> = [];
  let done = 0;
  await mapLimit(ids, Math.max(2, repo.backend.connections), async (id) => {
    try {
      files.set(id, await readIndexFile(repo, id, options));
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      failures.push({ id, error: e instanceof Error ? e : new Error(String(e)) });
    }
    options.onProgress?.(++done, ids.length);
  });
  // Added in ID order, so the master index does not depend on load timing.
  for (const id of [...files.keys()].sort()) for (const p of files.get(id)!) index.addPack(p, false);
  index.compact();
  failures.sort((a, b) => (a.id < b.id ? -1 : 1));
  return { index, files, failures };
}

