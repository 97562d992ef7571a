// The library's progress events while the work is under way: backup with totals from its own
// scan, percentage and ETA, and the file in work; a stdin backup's bytes as they flow; a
// restore's bytes blob batch by blob batch, with totals known from the start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { backup, type BackupProgress } from '../../src/snapshot/operations/backup/index.ts';
import { restore, type RestoreProgress } from '../../src/snapshot/operations/restore/index.ts';
import { ProgressEstimator } from '../../src/snapshot/engine/progress.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const MiB = 1024 * 1024;

async function newRepo(): Promise<IndexedRepository> {
  return (await Repository.init(new MemoryBackend(), { password: 'pw', kdf: KDF })).loadIndex();
}

function assertNonDecreasing(events: Array<{ bytesDone: number; filesDone: number }>): void {
  for (let i = 1; i < events.length; i++) {
    assert.ok(events[i]!.bytesDone >= events[i - 1]!.bytesDone, `bytesDone went back at event ${i}`);
    assert.ok(events[i]!.filesDone >= events[i - 1]!.filesDone, `filesDone went back at event ${i}`);
  }
}

test('backup progress: totals from the scan, percent and ETA, and the file being read as the current file', async () => {
  const src = await tmpDir('progress-backup');
  await mkdir(join(src, 'd'));
  const size = 40 * MiB;
  const file = join(src, 'd', 'big.bin');
  await writeFile(file, randomBytes(size));
  const repo = await newRepo();
  const events: BackupProgress[] = [];
  const r = await backup(repo, { paths: [src], onProgress: (p) => events.push(p) });
  assertNonDecreasing(events);

  // While the only file is read: bytes move, and it is the current file.
  const within = events.filter((p) => p.filesDone === 0 && p.bytesDone > 0);
  assert.ok(within.length >= 2, `events within the file: ${JSON.stringify(events.slice(0, 6))}`);
  assert.ok(within.at(-1)!.bytesDone > within[0]!.bytesDone, 'bytes increase within the file');
  for (const p of within) assert.equal(p.currentFile, file);

  // The scan (a few lstat calls) is done long before 40 MiB are chunked.
  const known = within.filter((p) => p.totalsComplete);
  assert.ok(known.length >= 1, 'totals complete while the file is read');
  for (const p of known) {
    assert.deepEqual([p.totalFiles, p.totalDirs, p.totalBytes], [1, 2, size]);
    assert.equal(typeof p.percent, 'number');
    assert.ok(p.percent! > 0 && (p.percent! < 100 || p.bytesDone === size), `percent ${p.percent}`);
    assert.ok(Math.abs(p.percent! - (p.bytesDone / size) * 100) < 1e-9);
  }
  assert.ok(known.some((p) => typeof p.etaSeconds === 'number' && p.etaSeconds >= 0), `an ETA: ${JSON.stringify(known.slice(0, 3))}`);

  const last = events.at(-1)!;
  assert.deepEqual([last.filesDone, last.bytesDone, last.totalsComplete, last.totalBytes, last.percent, last.etaSeconds], [1, size, true, size, 100, undefined]);
  assert.equal(last.currentFile, undefined, 'nothing in work once the file is done');
  assert.equal(r.summary.totalBytesProcessed, size);

  // scan: false: the same counts, no totals.
  const unscanned: BackupProgress[] = [];
  await backup(repo, { paths: [src], parent: null, scan: false, onProgress: (p) => unscanned.push(p) });
  assert.ok(unscanned.length >= 2);
  for (const p of unscanned) assert.deepEqual([p.totalsComplete, p.totalBytes, p.percent, p.etaSeconds], [false, undefined, undefined, undefined]);
  assert.deepEqual([unscanned.at(-1)!.filesDone, unscanned.at(-1)!.bytesDone], [1, size]);
});

test('stdin backup progress: bytes as they are read, before the stream ends, without totals', async () => {
  const repo = await newRepo();
  const pieces = 96;
  const pieceSize = 64 * 1024; // 6 MiB in all
  let ended = false;
  const stream = Readable.from((async function* () {
    for (let i = 0; i < pieces; i++) yield randomBytes(pieceSize);
    ended = true;
  })());
  const events: Array<BackupProgress & { ended: boolean }> = [];
  await backup(repo, { stdin: { stream, filename: 'dump.sql' }, onProgress: (p) => events.push({ ...p, ended }) });
  assertNonDecreasing(events);
  const before = events.filter((p) => !p.ended);
  assert.ok(before.length >= 2 && before.at(-1)!.bytesDone > before[0]!.bytesDone && before[0]!.bytesDone > 0, `events before the end: ${before.length}`);
  for (const p of before) {
    assert.equal(p.filesDone, 0);
    assert.equal(p.currentFile, '/dump.sql');
    assert.deepEqual([p.totalsComplete, p.totalFiles, p.totalBytes, p.percent], [false, undefined, undefined, undefined]);
  }
  const last = events.at(-1)!;
  assert.deepEqual([last.filesDone, last.bytesDone, last.currentFile], [1, pieces * pieceSize, undefined]);
});

test('restore progress: bytes move within a big file, with the totals from the start, percent and the file being written', async () => {
  const src = await tmpDir('progress-restore-src');
  const size = 32 * MiB;
  await writeFile(join(src, 'big.bin'), randomBytes(size));
  await writeFile(join(src, 'small.txt'), 'small\n');
  const repo = await newRepo();
  const { snapshot } = await backup(repo, { paths: [src] });
  const target = await tmpDir('progress-restore-dst');
  const events: RestoreProgress[] = [];
  const res = await restore(repo, snapshot.tree, { target, onProgress: (p) => events.push(p) });
  assertNonDecreasing(events);

  const totalBytes = snapshot.summary!.totalBytesProcessed;
  const totalFiles = snapshot.summary!.totalFilesProcessed;
  assert.deepEqual([totalFiles, totalBytes], [2, size + 6]);
  for (const p of events) assert.deepEqual([p.totalFiles, p.totalBytes], [totalFiles, totalBytes]);
  // First: the plan, nothing done.
  assert.deepEqual([events[0]!.filesDone, events[0]!.bytesDone, events[0]!.percent], [0, 0, 0]);

  const bigFile = join(target, src, 'big.bin');
  const within = events.filter((p) => p.bytesDone > 0 && p.currentFile === bigFile);
  assert.ok(within.length >= 2, `events while the big file is written: ${JSON.stringify(events.slice(0, 6))}`);
  for (let i = 1; i < within.length; i++) assert.ok(within[i]!.bytesDone > within[i - 1]!.bytesDone, 'bytes increase');
  for (const p of within) {
    assert.ok(p.bytesDone < totalBytes);
    assert.ok(p.percent > 0 && p.percent < 100);
  }
  const last = events.at(-1)!;
  assert.deepEqual([last.filesDone, last.bytesDone, last.percent, last.currentFile], [2, totalBytes, 100, undefined]);
  assert.deepEqual([res.filesRestored, res.bytesRestored], [2, totalBytes]);
});

test('the estimator: percent by bytes (by files without bytes), ETA from the rate of the last ten seconds', () => {
  let t = 0;
  const e = new ProgressEstimator(() => t);
  assert.deepEqual(e.estimate({ files: 0, bytes: 0 }, undefined), {});
  t = 1000;
  assert.deepEqual(e.estimate({ files: 1, bytes: 10 * MiB }, { files: 4, bytes: 40 * MiB }), { percent: 25, etaSeconds: 3 });
  assert.deepEqual(e.estimate({ files: 2, bytes: 0 }, { files: 4, bytes: 0 }), { percent: 50 });
  // A burst, then 1 MiB/s for 30 s: the burst has left the window.
  for (let i = 1; i <= 30; i++) {
    t += 1000;
    e.estimate({ files: 1, bytes: 10 * MiB + i * MiB }, { files: 4, bytes: 100 * MiB });
  }
  const { etaSeconds } = e.estimate({ files: 1, bytes: 40 * MiB }, { files: 4, bytes: 100 * MiB });
  assert.ok(etaSeconds! >= 58 && etaSeconds! <= 62, `eta ${etaSeconds}`);
  assert.deepEqual(e.estimate({ files: 4, bytes: 100 * MiB }, { files: 4, bytes: 100 * MiB }), { percent: 100 });
});
