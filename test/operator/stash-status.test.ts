// Stash Repository status and BackupSession host stats. The size must equal what
// `restic stats --mode raw-data --json` (0.19) reports on the same repository — one written by
// restic 0.19, one by Stowage with a forget in between — and the formats must be Stash's
// (stashed/apimachinery v0.42.1 pkg/restic/util.go), Go's (time.Duration.String) and
// Kubernetes' (metav1.Time).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { forget } from '../../src/snapshot/operations/forget.ts';
import { stashRepositoryStatus, stashHostBackupStats, buildStashRepositoryStatus } from '../../src/operator/stash.ts';
import { formatGoDuration, formatStashBytes, formatStashSeconds, kubernetesTime } from '../../src/operator/format.ts';
import { parseGoTime } from '../../src/repository/gotime.ts';
import { resticBin, resticJson, resticOk } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'stash status';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

interface RawDataStats {
  total_size: number;
  snapshots_count: number;
}

describe('Stash formats', () => {
  it('formats sizes as Stash does: strictly above a unit, three decimals', () => {
    assert.equal(formatStashBytes(0), '0 B');
    assert.equal(formatStashBytes(1024), '1024 B');
    assert.equal(formatStashBytes(1025), '1.001 KiB');
    assert.equal(formatStashBytes(1024 * 1024), '1024.000 KiB');
    assert.equal(formatStashBytes(1934622), '1.845 MiB');
    assert.equal(formatStashBytes(3 * 2 ** 30 + 1), '3.000 GiB');
    assert.equal(formatStashBytes(2 ** 41), '2.000 TiB');
    assert.throws(() => formatStashBytes(-1), { code: 'INVALID_INPUT' });
  });
  it('formats processing times and Go durations', () => {
    assert.equal(formatStashSeconds(0), '0:00');
    assert.equal(formatStashSeconds(65.9), '1:05');
    assert.equal(formatStashSeconds(3 * 3600 + 7), '3:00:07');
    assert.equal(formatGoDuration(0n), '0s');
    assert.equal(formatGoDuration(1_500n), '1.5µs');
    assert.equal(formatGoDuration(250_000_000n), '250ms');
    assert.equal(formatGoDuration(1_500_000_000n), '1.5s');
    assert.equal(formatGoDuration(62_500_000_000n), '1m2.5s');
    assert.equal(formatGoDuration(3_600_000_000_000n), '1h0m0s');
    assert.equal(formatGoDuration(-2_000_000_000n), '-2s');
    assert.equal(kubernetesTime(parseGoTime('2025-01-07T03:00:05.987654321+01:00')), '2025-01-07T02:00:05Z');
  });
});

describe('Stash Repository status against restic 0.19 stats --mode raw-data', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-stash-status-'));
  });
  after(async () => removeTree(dir));

  async function sourceTree(name: string, files: number): Promise<string> {
    const src = path.join(dir, name);
    await mkdir(path.join(src, 'sub'), { recursive: true });
    for (let i = 0; i < files; i++) {
      // Half random (incompressible), half repetitive: raw-data counts the stored (compressed) sizes.
      const bytes = i % 2 ? randomBytes(40_000 + i * 1000) : Buffer.alloc(60_000 + i, `line ${i}\n`);
      await writeFile(path.join(src, i % 3 ? 'sub' : '', `f${i}`), bytes);
    }
    return src;
  }

  it('a repository written by restic 0.19: size equals raw-data total_size, integrity true', async () => {
    const bin = resticBin('0.19');
    const repoDir = path.join(dir, 'restic-repo');
    const opts = { repo: repoDir, password: PASSWORD };
    await resticOk(bin, ['init'], opts);
    const src = await sourceTree('src-restic', 8);
    await resticOk(bin, ['backup', '--host', 'app', src], opts);
    await writeFile(path.join(src, 'f-new'), randomBytes(30_000));
    await resticOk(bin, ['backup', '--host', 'app', src], opts);
    const restic = await resticJson<RawDataStats>(bin, ['stats', '--mode', 'raw-data', '--json'], opts);

    const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
    const { status, observation } = await stashRepositoryStatus(repo);
    assert.equal(observation.stats?.rawDataSize, restic.total_size);
    assert.equal(status.totalSize, formatStashBytes(restic.total_size));
    assert.equal(status.integrity, true);
    assert.equal(observation.check?.readData, 'none', 'Stash checks without reading data');
    assert.equal(status.snapshotCount, 2);
    assert.equal(status.snapshotCount, restic.snapshots_count);
    const times = observation.snapshots.map((s) => kubernetesTime(s.snapshot.time));
    assert.equal(status.firstBackupTime, times[0]);
    assert.equal(status.lastBackupTime, times[1]);
    assert.ok(!('snapshotsRemovedOnLastCleanup' in status));
  });

  it('a repository written by Stowage, after a forget, reused open: size equals raw-data, removed counted', async () => {
    const bin = resticBin('0.19');
    const repoDir = path.join(dir, 'stowage-repo');
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, version: 2, kdf: FAST_KDF });
    const indexed = await repo.loadIndex();
    const src = await sourceTree('src-stowage', 10);
    const results = [];
    for (let i = 0; i < 3; i++) {
      await writeFile(path.join(src, `round${i}`), randomBytes(20_000 + i));
      results.push(await backup(indexed, { paths: [src], hostname: 'app' }));
    }
    const cleanup = await forget(indexed, { policy: { last: 2 } });
    assert.equal(cleanup.removed.length, 1);

    const { status, observation } = await stashRepositoryStatus(indexed, { lastCleanup: cleanup, check: { readData: true } });
    const restic = await resticJson<RawDataStats>(bin, ['stats', '--mode', 'raw-data', '--json'], { repo: repoDir, password: PASSWORD });
    assert.equal(observation.stats?.rawDataSize, restic.total_size);
    assert.equal(status.totalSize, formatStashBytes(restic.total_size));
    assert.equal(status.snapshotCount, 2);
    assert.equal(status.snapshotsRemovedOnLastCleanup, 1);
    assert.equal(status.integrity, true);
    assert.equal(observation.check?.readData, 'all');

    // Skipping the check leaves integrity out; a session time becomes lastBackupTime.
    const session = new Date('2026-01-02T03:04:05.678Z');
    const { status: quick } = await stashRepositoryStatus(indexed, { check: false, backupSessionTime: session });
    assert.ok(!('integrity' in quick));
    assert.equal(quick.lastBackupTime, '2026-01-02T03:04:05Z');
    assert.equal(quick.totalSize, status.totalSize);

    // Host stats of the BackupSession, from the last backup's result.
    const last = results[2]!;
    const host = stashHostBackupStats([{ result: last }], { hostname: 'app', durationMs: 62_500 });
    assert.equal(host.phase, 'Succeeded');
    assert.equal(host.duration, '1m2.5s');
    assert.deepEqual(host.snapshots![0], {
      name: last.snapshotId,
      path: src,
      totalSize: formatStashBytes(last.summary.totalBytesProcessed),
      uploaded: formatStashBytes(last.summary.dataAdded),
      processingTime: formatStashSeconds(Number(last.summary.backupEnd.epochNs - last.summary.backupStart.epochNs) / 1e9),
      fileStats: { totalFiles: 13, newFiles: 1, modifiedFiles: 0, unmodifiedFiles: 12 },
    });
    const failed = stashHostBackupStats([], { hostname: 'app', durationMs: 10, error: new Error('disk gone') });
    assert.deepEqual(failed, { hostname: 'app', phase: 'Failed', duration: '10ms', error: 'disk gone' });

    // A pack gone: integrity false; the status still goes out.
    const packs = [];
    for (const sub of await readdir(path.join(repoDir, 'data'))) for (const f of await readdir(path.join(repoDir, 'data', sub))) packs.push(path.join(repoDir, 'data', sub, f));
    await rm(packs[0]!, { force: true });
    const { status: broken, observation: seen } = await stashRepositoryStatus(indexed);
    assert.equal(broken.integrity, false);
    assert.ok(seen.check!.errors.some((e) => e.code === 'PACK_MISSING'));
    assert.equal(buildStashRepositoryStatus(seen).integrity, false);
  });
});
