// Back up a folder to a repository in another folder (a second disk, an NFS or SMB mount, a
// Kubernetes volume), list the snapshots, print the repository's size, then restore the latest
// snapshot into a temporary folder and compare it byte for byte with the original.
//
//   RESTIC_REPOSITORY=/srv/restic-repo RESTIC_PASSWORD=… node examples/backends/local.ts [FOLDER]
//
// `local:/srv/restic-repo` means the same, as with restic. A missing folder is created and a
// missing repository initialised. FOLDER defaults to the examples folder; run `npm run build` first.

import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openBackend, Repository, RepositoryNotFoundError, backup, formatGoTime, listSnapshots, repositoryStats, restore } from 'stowage';
import type { Backend } from 'stowage';

const { RESTIC_REPOSITORY: location, RESTIC_PASSWORD: password } = process.env;
if (!location || !password) {
  console.error('set RESTIC_REPOSITORY and RESTIC_PASSWORD (see the top of this file)');
  process.exit(2);
}
const source = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..'));

// A plain path (or local:path) opens a LocalBackend; nothing else needs configuring.
const backend = await openBackend(location);
try {
  const repo = await openOrInit(backend, password);
  // Backing up and restoring need the index: to deduplicate, and to find the blobs.
  const indexed = await repo.loadIndex();
  const { snapshotId, summary } = await backup(indexed, { paths: [source], tags: ['example'] });
  console.log(`snapshot ${snapshotId.slice(0, 8)} of ${source}: ${summary.filesNew} new files, ${summary.dataAdded} bytes added`);

  const snapshots = await listSnapshots(repo);
  for (const { id, snapshot } of snapshots) console.log(`  ${id.slice(0, 8)}  ${formatGoTime(snapshot.time)}  ${snapshot.paths.join(' ')}`);
  const stats = await repositoryStats(indexed);
  console.log(`${stats.snapshotCount} snapshots, ${stats.totalRestoreSize} bytes to restore, ${stats.rawDataSize} bytes stored in ${stats.packCount} packs`);

  // The latest snapshot of this folder: the repository may hold backups of other folders too.
  const latest = snapshots.filter((s) => s.snapshot.paths.includes(source)).at(-1)!;
  const target = await mkdtemp(path.join(tmpdir(), 'stowage-restore-'));
  try {
    await restore(indexed, latest.snapshot.tree, { target });
    // An absolute path is kept whole inside the snapshot, as restic does.
    const { files, bytes } = await compareFolders(source, path.join(target, source));
    console.log(`ok local ${backend.location}: snapshot ${latest.id.slice(0, 8)} restored and verified, ${files} files (${bytes} bytes); ${snapshots.length} snapshots in the repository`);
  } finally {
    await rm(target, { recursive: true, force: true });
  }
} finally {
  await backend.close();
}

/** Opens the repository, or initialises one when the location holds none (like `restic init`). */
async function openOrInit(backend: Backend, password: string): Promise<Repository> {
  try {
    return await Repository.open(backend, { password });
  } catch (err) {
    if (!(err instanceof RepositoryNotFoundError)) throw err;
    console.log(`no repository at ${backend.location} yet: initialising one`);
    return Repository.init(backend, { password });
  }
}

/** Compares every regular file below `original` with the file of the same name below `copy`. */
async function compareFolders(original: string, copy: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(original, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const name = path.relative(original, path.join(entry.parentPath, entry.name));
    const [a, b] = await Promise.all([readFile(path.join(original, name)), readFile(path.join(copy, name))]);
    if (!a.equals(b)) throw new Error(`${name} differs after the restore`);
    files++;
    bytes += a.length;
  }
  return { files, bytes };
}
