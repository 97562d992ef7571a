// Quick start: create a repository in a local folder, back up a folder, list the snapshots,
// restore the latest one and compare. Run with `npm run demo` (or `node examples/quickstart.ts
// [SOURCE] [REPO]` after `npm run build`).
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend, Repository, backup, listSnapshots, restore, repositoryStats, formatGoTime } from 'stowage';

const source = path.resolve(process.argv[2] ?? 'src');
const work = await mkdtemp(path.join(tmpdir(), 'stowage-demo-'));
const repoPath = process.argv[3] ?? path.join(work, 'repo');
const password = process.env.RESTIC_PASSWORD ?? 'correct horse battery staple';

const backend = new LocalBackend(repoPath);
const repo = await Repository.init(backend, { password });
console.log(`created repository ${repo.config.id.slice(0, 10)} (format v${repo.version}) at ${backend.location}`);

// Backups need the index (to deduplicate); loadIndex() returns the repository in that state.
const indexed = await repo.loadIndex();
const first = await backup(indexed, { paths: [source], tags: ['demo'] });
console.log(`snapshot ${first.snapshotId.slice(0, 8)}: ${first.summary.filesNew} files, ${first.summary.dataAdded} bytes added`);
const second = await backup(indexed, { paths: [source], tags: ['demo'] });
console.log(`snapshot ${second.snapshotId.slice(0, 8)}: ${second.summary.filesUnmodified} files unchanged, ${second.summary.dataAdded} bytes added`);

for (const { id, snapshot } of await listSnapshots(repo)) {
  console.log(`  ${id.slice(0, 8)}  ${formatGoTime(snapshot.time)}  ${snapshot.hostname}  ${snapshot.paths.join(' ')}`);
}

const target = path.join(work, 'restore');
const result = await restore(indexed, second.snapshot.tree, { target });
console.log(`restored ${result.filesRestored} files (${result.bytesRestored} bytes) to ${target}`);

// An absolute backup path keeps its full path inside the snapshot, as with restic.
const restoredRoot = path.join(target, source);
let same = 0;
for (const name of await readdir(source, { recursive: true })) {
  const a = path.join(source, name);
  const b = path.join(restoredRoot, name);
  try {
    if ((await readFile(a)).equals(await readFile(b))) same++;
    else throw new Error(`${name} differs after restore`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EISDIR') throw e;
  }
}
console.log(`verified ${same} restored files byte for byte`);

const stats = await repositoryStats(indexed);
console.log(`stats: ${stats.snapshotCount} snapshots, restore size ${stats.totalRestoreSize} bytes, stored ${stats.rawDataSize} bytes, ${stats.packCount} packs`);
if (!process.argv[3]) await rm(work, { recursive: true, force: true });
