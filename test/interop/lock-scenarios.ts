// The object-lock scenarios that do not depend on the storage, run on every store that locks
// uploads and keeps versions (S3 Object Lock on MinIO in object-lock.test.ts, B2 File Lock on our
// B2 emulator in b2-file-lock.test.ts). Each store says how to see its objects and how an attacker
// with the backup's own credentials deletes and overwrites them.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend, ObjectRetention } from '../../src/backend/backend.ts';
import { ReadOnlyError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { planPrune, prune } from '../../src/snapshot/operations/prune.ts';
import { extendRetention } from '../../src/snapshot/operations/retention.ts';
import { goTimeToDate } from '../../src/repository/gotime.ts';
import { compareTrees } from '../helpers/compare-trees.ts';

export const PASSWORD = 'object lock password';
export const FAST_KDF = { N: 1024, r: 8, p: 1 };
export const DAY = 86_400_000;

/** A bucket that locks uploads, seen from the test's side. Keys are object names ("repo/data/ab/…"). */
export interface LockedStore {
  /** A backend on the repository `repo` in the bucket, locking uploads GOVERNANCE for this long. */
  backend(lock: { retainDays: number } | { retainSeconds: number }): Backend;
  /** The names whose current version is a file (not deleted or hidden), under a key prefix. */
  currentKeys(prefix: string): Promise<Set<string>>;
  /** The current version's retention, as the store reports it (not through Stowage). */
  retentionOf(key: string): Promise<ObjectRetention | undefined>;
  /** The attacker: deletes a name the way the store's plain delete does. */
  attackDelete(key: string): Promise<void>;
  /** The attacker: writes new bytes under a name. */
  attackPut(key: string, body: Uint8Array): Promise<void>;
}

export async function makeSource(dir: string, tag: string): Promise<string> {
  const src = join(dir, tag);
  await mkdir(join(src, 'sub'), { recursive: true });
  await writeFile(join(src, 'a.bin'), randomBytes(600_000));
  await writeFile(join(src, 'sub', 'b.txt'), `file of ${tag}\n`);
  return src;
}

/**
 * v1 with a day's retention, v2 and v3 with a few seconds; v1 and v2 are then forgotten. Prune
 * within v2's retention deletes nothing and reports every unused pack with its date; after it,
 * v2's packs go and v1's stay. Returns the pack keys of v1 (still locked) and v2 (deleted).
 */
export async function pruneUnderLock(store: LockedStore, work: string): Promise<{ packs1: Set<string>; packs2: Set<string> }> {
  const long = store.backend({ retainDays: 1 });
  const SHORT_S = 4;
  const short = store.backend({ retainSeconds: SHORT_S });
  try {
    const repoLong = await Repository.init(long, { password: PASSWORD, kdf: FAST_KDF });
    const v1 = await backup(await repoLong.loadIndex(), { paths: [await makeSource(work, 'one')] });
    await repoLong.close();
    const packs1 = await store.currentKeys('repo/data/');
    const repo = await Repository.open(short, { password: PASSWORD });
    const v2Start = Date.now();
    const v2 = await backup(await repo.loadIndex(), { paths: [await makeSource(work, 'two')] });
    const packs2 = new Set([...(await store.currentKeys('repo/data/'))].filter((k) => !packs1.has(k)));
    await backup(await repo.loadIndex(), { paths: [await makeSource(work, 'three')] });
    for (const id of [v1.snapshotId, v2.snapshotId]) await short.remove({ type: 'snapshots', name: id });
    assert.ok(packs1.size >= 2 && packs2.size >= 2, `${packs1.size} and ${packs2.size} packs`);

    // Within v2's retention: nothing may go; every unused pack is reported with its date.
    const early = await planPrune(await repo.loadIndex(), { maxUnused: '0' });
    assert.deepEqual([early.remove, early.repack, early.removeUnreferenced], [[], [], []]);
    const r = early.retention!;
    assert.ok(r, 'the plan has a retention report (default on with a locking backend)');
    assert.equal(r.requests, packs1.size + packs2.size, 'one retention read per pack the plan wanted to delete');
    assert.equal(r.locked.packs, packs1.size + packs2.size);
    assert.deepEqual(r.reclaimableNow, { packs: 0, bytes: 0 });
    assert.equal(early.stats.packs.remove, 0);
    assert.equal(early.stats.bytes.removeTotal, 0);
    const soon = r.later.filter((l) => l.retainUntil.getTime() < v2Start + 60_000).map((l) => `repo/${l.file}`);
    const late = r.later.filter((l) => l.retainUntil.getTime() > Date.now() + DAY - 600_000).map((l) => `repo/${l.file}`);
    assert.deepEqual(new Set(soon), packs2);
    assert.deepEqual(new Set(late), packs1);
    assert.ok(r.later.every((l) => l.bytes > 0 && l.mode === 'GOVERNANCE'));

    // After v2's retention: its packs go (delete markers / hidden), v1's stay current.
    const waitMs = Math.max(...r.later.filter((l) => soon.includes(`repo/${l.file}`)).map((l) => l.retainUntil.getTime())) - Date.now() + 1500;
    await new Promise((res) => setTimeout(res, Math.max(0, waitMs)));
    const done = await prune(await repo.loadIndex(), { maxUnused: '0' });
    assert.deepEqual(new Set(done.plan.remove.map((id) => `repo/data/${id.slice(0, 2)}/${id}`)), packs2);
    assert.equal(done.plan.retention!.locked.packs, packs1.size);
    assert.equal(done.plan.retention!.reclaimableNow.packs, packs2.size);
    assert.equal(done.plan.retention!.reclaimableNow.bytes, done.stats.bytes.removeTotal);
    const current = await store.currentKeys('repo/data/');
    for (const k of packs2) assert.ok(!current.has(k), `${k} deleted`);
    for (const k of packs1) assert.ok(current.has(k), `${k} kept`);
    await repo.close();
    return { packs1, packs2 };
  } finally {
    await long.close();
    await short.close();
  }
}

/**
 * Two backups, then an attack with the backup's own credentials: the snapshots deleted, the index
 * files and keys overwritten, junk snapshots written. The live repository no longer opens; the
 * view as of before the attack lists the two snapshots, restores them byte-exact, passes check
 * --read-data and refuses writes. Returns what the caller needs to go on (CLI, copy).
 */
export async function asOfAfterAttack(store: LockedStore, work: string): Promise<{ beforeAttack: Date; ids: string[]; srcs: string[] }> {
  const b = store.backend({ retainDays: 1 });
  const pause = () => new Promise((res) => setTimeout(res, 1200));
  try {
    const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
    const srcs = [await makeSource(work, 'first'), await makeSource(work, 'second')];
    const ids: string[] = [];
    for (const src of srcs) ids.push((await backup(await repo.loadIndex(), { paths: [src], hostname: 'victim' })).snapshotId);
    await repo.close();
    await pause();
    const beforeAttack = new Date();
    await pause();

    for (const k of await store.currentKeys('repo/')) {
      if (k.startsWith('repo/snapshots/')) await store.attackDelete(k);
      if (k.startsWith('repo/index/') || k.startsWith('repo/keys/')) await store.attackPut(k, Buffer.from('{"encrypted":"gone"}'));
    }
    for (let i = 0; i < 3; i++) await store.attackPut(`repo/snapshots/${randomBytes(32).toString('hex')}`, randomBytes(200));
    await assert.rejects(Repository.open(b, { password: PASSWORD }), 'the live repository no longer opens');

    const view = await Repository.open(b, { password: PASSWORD, asOf: beforeAttack });
    const snaps = await listSnapshots(view);
    assert.deepEqual(snaps.map((e) => e.id).sort(), [...ids].sort());
    const indexed = await view.loadIndex();
    for (const [i, id] of ids.entries()) {
      const out = join(work, `restored-${i}`);
      await restore(indexed, snaps.find((e) => e.id === id)!.snapshot.tree, { target: out });
      assert.deepEqual(await compareTrees(srcs[i]!, join(out, srcs[i]!)), [], `snapshot ${id} restores byte-exact`);
    }
    const report = await checkRepository(view, { readData: true });
    assert.deepEqual(report.errors, []);
    await assert.rejects(view.backend.save({ type: 'snapshots', name: 'a'.repeat(64) }, new Uint8Array(1)), ReadOnlyError);
    await view.close();
    return { beforeAttack, ids, srcs };
  } finally {
    await b.close();
  }
}

/**
 * retention extend with keep-last 2 over three snapshots: the two kept get time + 2 days (the
 * default --last-interval 1d), which is longer than the upload's minute; a second run writes nothing.
 */
export async function extendKeepLast(store: LockedStore, work: string): Promise<void> {
  const b = store.backend({ retainSeconds: 60 });
  try {
    const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
    const made: Array<{ id: string; time: number }> = [];
    // One folder (one group for the policy), changed between the backups.
    const src = await makeSource(work, 'kept');
    for (const tag of ['x', 'y', 'z']) {
      await writeFile(join(src, 'own.txt'), `backup ${tag}\n`);
      const r = await backup(await repo.loadIndex(), { paths: [src], hostname: 'lockhost', parent: null });
      made.push({ id: r.snapshotId, time: Date.now() });
    }
    const result = await extendRetention(repo, { policy: { last: 2 } });
    assert.ok(result.extended > 0);
    const snaps = await listSnapshots(repo);
    for (const s of snaps) {
      const r = await store.retentionOf(`repo/snapshots/${s.id}`);
      const kept = made.slice(1).some((m) => m.id === s.id);
      const time = goTimeToDate(s.snapshot.time).getTime();
      if (kept) {
        assert.equal(r?.mode, 'GOVERNANCE');
        assert.equal(Math.floor(r!.retainUntil.getTime() / 1000), Math.floor((time + 2 * DAY) / 1000), `snapshot ${s.id}`);
      } else {
        assert.ok(r && r.retainUntil.getTime() < Date.now() + 120_000, `the forgotten snapshot ${s.id} keeps its upload retention`);
      }
    }
    const again = await extendRetention(repo, { policy: { last: 2 } });
    assert.equal(again.extended, 0);
    assert.equal(again.requests.writes, 0);
    await repo.close();
  } finally {
    await b.close();
  }
}
