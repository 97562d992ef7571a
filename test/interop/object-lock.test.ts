// S3 Object Lock on a real MinIO (a versioned, lock-enabled bucket):
//   (a) every upload but lock files carries the retention; restic 0.19 checks, backs up, forgets
//       and prunes on the same bucket without an error; deletes became delete markers; retention
//       extend gives restic's unlocked snapshot a retention
//   (b) a locked version cannot be deleted (DeleteObject with its VersionId) nor overwritten (a new
//       version appears, the old one stays readable)
// (c) and (e) are the storage-independent scenarios of lock-scenarios.ts, run here on MinIO (and on
// B2 File Lock in test/backend/b2-file-lock.test.ts), followed by the restic and CLI steps.
//   (c) prune under lock: packs still retained are neither deleted nor repacked; the plan reports
//       them (with their dates), what is reclaimable now, and the retention reads it made; once
//       a retention has passed the next prune deletes the pack; restic 0.19 checks the result
//   (d) retention extend follows a daily/weekly/monthly policy: restic 0.19's forget --dry-run says
//       which snapshots it keeps and why, the test computes each rule's horizon with its own
//       calendar code and each object's horizon from the blobs each kept snapshot reaches; MinIO's
//       retention per object must be max(before, horizon) after the CLI run, unchanged after the
//       dry run, and a second run extends nothing
//   (e) point-in-time recovery: an attacker with the backup's own credentials deletes the
//       snapshots, overwrites the index files and keys and writes junk snapshots; the view as of
//       before the attack (Repository.open asOf, CLI --as-of) restores byte-exact and passes check,
//       `copy --from-as-of` into a clean repository gives one restic 0.19 checks with --read-data
//   (f) a multipart upload carries the retention
//   (g) create() and the first upload refuse a bucket without Object Lock (ObjectLockError)
//   (h) `-o s3.object-lock` is parsed, and the stowage CLI locks what it uploads
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateBucketCommand, DeleteObjectCommand, GetBucketVersioningCommand, GetObjectCommand, HeadObjectCommand, ListObjectVersionsCommand,
  PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import type { ObjectVersion } from '@aws-sdk/client-s3';
import { S3Backend } from '../../src/backend/s3.ts';
import type { S3BackendOptions } from '../../src/backend/s3.ts';
import { parseObjectLockOption } from '../../src/backend/location.ts';
import { InvalidInputError, ObjectLockError } from '../../src/errors.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { findUsedBlobs } from '../../src/snapshot/operations/prune.ts';
import { extendRetention } from '../../src/snapshot/operations/retention.ts';
import { goTimeFromDate } from '../../src/repository/gotime.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { startMinio } from '../servers/minio.ts';
import { asOfAfterAttack, DAY, FAST_KDF, makeSource, PASSWORD, pruneUnderLock, type LockedStore } from './lock-scenarios.ts';
import { resticBin, resticJson, resticOk } from '../helpers/restic.ts';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';


const minio = await startMinio();
after(() => minio.stop());

let buckets = 0;
function newBucket(tag: string): string {
  return `${tag}-${process.pid}-${++buckets}`;
}

const creds = { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey };
const client = new S3Client({ endpoint: minio.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: creds });
after(() => client.destroy());

function lockedBackend(bucket: string, opts: Partial<S3BackendOptions> = {}): S3Backend {
  return new S3Backend({ endpoint: minio.endpoint, bucket, prefix: 'repo', credentials: creds, objectLock: { mode: 'GOVERNANCE', retainDays: 1 }, ...opts });
}

function resticEnv(): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
}

async function allVersions(bucket: string, prefix: string): Promise<{ versions: ObjectVersion[]; markers: string[] }> {
  const versions: ObjectVersion[] = [];
  const markers: string[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
    versions.push(...(page.Versions ?? []));
    for (const m of page.DeleteMarkers ?? []) markers.push(m.Key!);
    if (!page.IsTruncated) break;
    keyMarker = page.NextKeyMarker;
    versionMarker = page.NextVersionIdMarker;
  }
  return { versions, markers };
}

/** The bucket as lock-scenarios.ts sees it; the attacker uses the S3 API with the backup's credentials. */
function minioStore(bucket: string): LockedStore {
  return {
    backend: (lock) => lockedBackend(bucket, { objectLock: { mode: 'GOVERNANCE', ...lock } }),
    currentKeys: (prefix) => currentKeys(bucket, prefix),
    retentionOf: async (key) => {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return head.ObjectLockMode && head.ObjectLockRetainUntilDate ? { mode: head.ObjectLockMode as 'GOVERNANCE' | 'COMPLIANCE', retainUntil: head.ObjectLockRetainUntilDate } : undefined;
    },
    attackDelete: async (key) => {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    attackPut: async (key, body) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
  };
}

async function currentKeys(bucket: string, prefix: string): Promise<Set<string>> {
  const { versions } = await allVersions(bucket, prefix);
  return new Set(versions.filter((v) => v.IsLatest).map((v) => v.Key!));
}

async function isDeleted(bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return false;
  } catch (e) {
    if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return true;
    throw e;
  }
}

describe('S3 Object Lock on MinIO', () => {
  it('locks every upload but lock files; restic 0.19 checks, backs up, forgets and prunes on the bucket', async () => {
    const work = await tmpDir('stowage-lock-a');
    const bucket = newBucket('lock');
    const b = lockedBackend(bucket);
    const started = Date.now();
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [await makeSource(work, 'one')] });
      assert.deepEqual(res.errors, []);
      await repo.close();

      const versioning = await client.send(new GetBucketVersioningCommand({ Bucket: bucket }));
      assert.equal(versioning.Status, 'Enabled');
      const { versions } = await allVersions(bucket, 'repo/');
      const byType = new Map<string, number>();
      for (const v of versions) {
        const type = v.Key!.split('/')[1]!;
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId }));
        if (type === 'locks') {
          assert.equal(head.ObjectLockMode, undefined, `${v.Key} must not be locked`);
        } else {
          assert.equal(head.ObjectLockMode, 'GOVERNANCE', `${v.Key}`);
          const until = head.ObjectLockRetainUntilDate!.getTime();
          assert.ok(until >= started + DAY - 5000 && until <= Date.now() + DAY + 5000, `${v.Key} retained until ${head.ObjectLockRetainUntilDate?.toISOString()}`);
        }
        byType.set(type, (byType.get(type) ?? 0) + 1);
      }
      for (const type of ['config', 'keys', 'index', 'snapshots', 'data', 'locks']) assert.ok(byType.get(type), `a ${type} version exists`);

      const opts = { repo: `s3:${minio.endpoint}/${bucket}/repo`, password: PASSWORD, env: resticEnv() };
      const restic = resticBin('0.19');
      await resticOk(restic, ['check', '--read-data'], opts);
      await resticOk(restic, ['backup', await makeSource(work, 'two')], opts);
      await resticOk(restic, ['forget', res.snapshotId], opts);
      await resticOk(restic, ['prune', '--max-unused', '0'], opts);
      await resticOk(restic, ['check', '--read-data'], opts);
      const snaps = await resticJson<Array<{ id: string; time: string }>>(restic, ['snapshots'], opts);
      assert.equal(snaps.length, 1);

      // The forgotten snapshot is a delete marker over its locked version, which is still there.
      const after = await allVersions(bucket, 'repo/snapshots/');
      const gone = `repo/snapshots/${res.snapshotId}`;
      assert.ok(after.markers.includes(gone), 'forget left a delete marker');
      const kept = after.versions.find((v) => v.Key === gone);
      assert.ok(kept, 'the forgotten snapshot version is still stored');
      const old = await client.send(new GetObjectCommand({ Bucket: bucket, Key: gone, VersionId: kept.VersionId }));
      assert.ok((await old.Body!.transformToByteArray()).length > 0);

      // restic's own snapshot carries no retention; retention extend gives it one (GOVERNANCE, time + 5 days for keep-last 5).
      const resticSnap = `repo/snapshots/${snaps[0]!.id}`;
      assert.equal((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: resticSnap }))).ObjectLockMode, undefined);
      const reopened = await Repository.open(b, { password: PASSWORD });
      const ext = await extendRetention(reopened, { policy: { last: 5 } });
      await reopened.close();
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: resticSnap }));
      assert.equal(head.ObjectLockMode, 'GOVERNANCE');
      const snapTime = new Date(snaps[0]!.time).getTime();
      assert.equal(Math.floor(head.ObjectLockRetainUntilDate!.getTime() / 1000), Math.floor((snapTime + 5 * DAY) / 1000));
      assert.ok(ext.objects.some((o) => `repo/${o.file}` === resticSnap && o.before === undefined && o.extendedTo?.mode === 'GOVERNANCE'));
    } finally {
      await b.close();
    }
  });

  it('a locked version cannot be deleted, and an overwrite leaves it in place', async () => {
    const bucket = newBucket('worm');
    const b = lockedBackend(bucket);
    try {
      await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF }).then((r) => r.close());
      const key = 'repo/config';
      const original = await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray();
      const { versions } = await allVersions(bucket, key);
      assert.equal(versions.length, 1);
      const versionId = versions[0]!.VersionId!;

      await assert.rejects(client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId })), (e: Error & { name: string }) => {
        // MinIO answers InvalidRequest ("Object is WORM protected and cannot be overwritten"), AWS AccessDenied.
        assert.ok(['AccessDenied', 'InvalidRequest'].includes(e.name), `${e.name}: ${e.message}`);
        assert.match(e.message, /WORM|retention|locked|Access Denied/i);
        return true;
      });
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('junk config') }));
      const now = await allVersions(bucket, key);
      assert.equal(now.versions.length, 2, 'the overwrite is a new version');
      const old = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
      assert.deepEqual(Buffer.from(await old.Body!.transformToByteArray()), Buffer.from(original));
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
      assert.equal(head.ObjectLockMode, 'GOVERNANCE');
    } finally {
      await b.close();
    }
  });

  it('prune keeps packs under retention, reports them, and deletes them once the retention has passed', async () => {
    const work = await tmpDir('stowage-lock-prune');
    const bucket = newBucket('prune');
    const { packs1, packs2 } = await pruneUnderLock(minioStore(bucket), work);
    for (const k of packs2) assert.ok(await isDeleted(bucket, k), `${k} deleted`);
    for (const k of packs1) assert.ok(!(await isDeleted(bucket, k)), `${k} kept`);

    const opts = { repo: `s3:${minio.endpoint}/${bucket}/repo`, password: PASSWORD, env: resticEnv() };
    await resticOk(resticBin('0.19'), ['check', '--read-data'], opts);

    // The CLI reports the same through -o s3.object-lock (prune --dry-run --json).
    const env = { ...resticEnv(), RESTIC_PASSWORD: PASSWORD, RESTIC_REPOSITORY: opts.repo, HOME: work };
    const cli = await runCli(['-o', 's3.object-lock=governance:1d', 'prune', '--dry-run', '--json', '--no-cache'], { env });
    assert.equal(cli.code, 0, cli.stderr);
    const summary = JSON.parse(cli.stdout.trim().split('\n').pop()!) as { retention: { requests: number; locked: { packs: number }; later: Array<{ file: string }> } };
    assert.equal(summary.retention.locked.packs, packs1.size);
    assert.deepEqual(new Set(summary.retention.later.map((l) => `repo/${l.file}`)), packs1);
    const text = await runCli(['-o', 's3.object-lock=governance:1d', 'prune', '--dry-run', '--no-cache'], { env });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`object retention: ${summary.retention.requests} retention reads`));
    assert.match(text.stdout, new RegExp(`locked \\(kept\\): +${packs1.size} packs / `));
    assert.match(text.stdout, /reclaimable from \d{4}-\d{2}-\d{2}: /);
  });

  it('retention extend sets each object to the horizon of the longest-kept snapshot reaching it (daily 3, weekly 2, monthly 2)', async () => {
    const work = await tmpDir('stowage-lock-extend');
    const bucket = newBucket('extend');
    const b = lockedBackend(bucket, { objectLock: { mode: 'GOVERNANCE', retainSeconds: 120 } });
    const now = Date.now();
    try {
      // Eight snapshots of one folder, oldest first, at fake times; shared.bin is in all of them.
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const src = join(work, 'src');
      await mkdir(src);
      await writeFile(join(src, 'shared.bin'), randomBytes(50_000));
      for (const daysAgo of [64, 33, 15, 9, 5, 2, 1, 0.1]) {
        await writeFile(join(src, 'own.bin'), randomBytes(20_000));
        const time = goTimeFromDate(new Date(now - daysAgo * DAY), 0);
        const r = await backup(await repo.loadIndex(), { paths: [src], time, hostname: 'lockhost', parent: null });
        assert.deepEqual(r.errors, []);
      }

      // Which snapshots the policy keeps and why: restic's own forget.
      const flags = ['--keep-daily', '3', '--keep-weekly', '2', '--keep-monthly', '2'];
      const opts = { repo: `s3:${minio.endpoint}/${bucket}/repo`, password: PASSWORD, env: resticEnv() };
      const groups = await resticJson<Array<{ reasons: Array<{ snapshot: { id: string; time: string; tree: string }; matches: string[] }> }>>(
        resticBin('0.19'), ['forget', '--dry-run', ...flags], opts);
      assert.equal(groups.length, 1);
      const reasons = groups[0]!.reasons;
      assert.ok(reasons.length >= 4 && reasons.length < 8, `${reasons.length} kept`);
      // The test's own calendar: a snapshot kept for its bucket b is dropped at the latest when b+N ends.
      const startOfDay = (t: Date) => Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate());
      const ruleEnd: Record<string, (t: Date) => number> = {
        'daily snapshot': (t) => startOfDay(t) + 4 * DAY,
        'weekly snapshot': (t) => startOfDay(t) - ((t.getUTCDay() + 6) % 7) * DAY + 3 * 7 * DAY,
        'monthly snapshot': (t) => Date.UTC(t.getUTCFullYear(), t.getUTCMonth() + 3, 1),
      };
      const snapHorizon = new Map<string, number>();
      for (const r of reasons) {
        const t = new Date(r.snapshot.time);
        const ends = r.matches.map((m) => ruleEnd[m.replace(/^oldest /, '')]!(t));
        snapHorizon.set(r.snapshot.id, Math.max(...ends));
      }

      // Each object's expected horizon: the blobs each kept snapshot reaches, through the index.
      const indexed = await repo.loadIndex();
      const expected = new Map<string, number>();
      const raise = (key: string, h: number) => expected.set(key, Math.max(expected.get(key) ?? -Infinity, h));
      for (const r of reasons) {
        const h = snapHorizon.get(r.snapshot.id)!;
        raise(`repo/snapshots/${r.snapshot.id}`, h);
        const used = await findUsedBlobs(indexed, [r.snapshot.tree as BlobId]);
        for (const e of indexed.index.entries()) if (used.has(e.type, e.id)) raise(`repo/data/${e.packId.slice(0, 2)}/${e.packId}`, h);
      }
      for (const [indexId, packs] of indexed.indexFiles) {
        const hs = packs.map((p) => expected.get(`repo/data/${p.slice(0, 2)}/${p}`) ?? -Infinity);
        if (Math.max(...hs) > -Infinity) raise(`repo/index/${indexId}`, Math.max(...hs));
      }
      const latest = Math.max(...expected.values());
      const current = await currentKeys(bucket, 'repo/');
      for (const k of current) if (k === 'repo/config' || k.startsWith('repo/keys/')) raise(k, latest);
      await repo.close();

      const retentionOfAll = async (): Promise<Map<string, number>> => {
        const out = new Map<string, number>();
        for (const k of await currentKeys(bucket, 'repo/')) {
          if (k.startsWith('repo/locks/')) continue;
          const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: k }));
          out.set(k, Math.floor(head.ObjectLockRetainUntilDate!.getTime() / 1000));
        }
        return out;
      };
      const before = await retentionOfAll();
      const toExtend = [...expected].filter(([k, h]) => Math.floor(h / 1000) > before.get(k)!).length;
      assert.ok(toExtend >= expected.size - 1 && expected.size < before.size, `${toExtend} of ${expected.size} to extend, ${before.size} objects`);

      // Dry run (library): reads every object's retention, changes nothing.
      const repo2 = await Repository.open(b, { password: PASSWORD });
      const policy = { daily: 3, weekly: 2, monthly: 2 };
      const dry = await extendRetention(repo2, { policy, dryRun: true });
      assert.deepEqual(await retentionOfAll(), before);
      assert.deepEqual(dry.requests, { reads: expected.size, writes: toExtend });
      assert.deepEqual(new Map(dry.objects.map((o) => [`repo/${o.file}`, o.horizon.getTime()])), expected);

      // The CLI's dry run prints each change and the cost, and changes nothing either.
      const env = { ...resticEnv(), RESTIC_PASSWORD: PASSWORD, RESTIC_REPOSITORY: opts.repo, HOME: work };
      const dryCli = await runCli(['retention', 'extend', ...flags, '--dry-run', '--no-cache'], { env });
      assert.equal(dryCli.code, 0, dryCli.stderr);
      assert.equal(dryCli.stdout.split('\n').filter((l) => l.startsWith('would extend ')).length, toExtend);
      assert.match(dryCli.stdout, new RegExp(`${expected.size} objects, ${toExtend} to extend; requests: ${expected.size} retention reads, ${toExtend} retention writes \\(to make\\)`));
      assert.deepEqual(await retentionOfAll(), before);

      // The CLI applies it.
      const run = await runCli(['retention', 'extend', ...flags, '--no-cache'], { env });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`${expected.size} objects, ${toExtend} extended; requests: ${expected.size} retention reads, ${toExtend} retention writes`));
      const after = await retentionOfAll();
      for (const [k, was] of before) {
        const h = expected.get(k);
        assert.equal(after.get(k), h === undefined ? was : Math.max(was, Math.floor(h / 1000)), `${k}: horizon ${h === undefined ? 'none' : new Date(h).toISOString()}`);
      }

      // Never shortens, nothing left to do.
      const again = await extendRetention(repo2, { policy });
      assert.equal(again.extended, 0);
      assert.deepEqual(again.requests, { reads: expected.size, writes: 0 });
      await repo2.close();
    } finally {
      await b.close();
    }
  });

  it('point-in-time recovery: the view as of before an attack restores byte-exact, and copies into a clean repository', async () => {
    const work = await tmpDir('stowage-lock-asof');
    const bucket = newBucket('asof');
    {
      const { beforeAttack, ids, srcs } = await asOfAfterAttack(minioStore(bucket), work);

      // The CLI: --as-of lists the snapshots; copy --from-as-of fills a clean repository restic checks.
      const env = { ...resticEnv(), RESTIC_PASSWORD: PASSWORD, HOME: work };
      const from = `s3:${minio.endpoint}/${bucket}/repo`;
      const listed = await runCli(['-r', from, '--as-of', beforeAttack.toISOString(), 'snapshots', '--json', '--no-cache'], { env });
      assert.equal(listed.code, 0, listed.stderr);
      assert.deepEqual((JSON.parse(listed.stdout) as Array<{ id: string }>).map((s) => s.id).sort(), [...ids].sort());
      const clean = `s3:${minio.endpoint}/${newBucket('clean')}/repo`;
      assert.equal((await runCli(['-r', clean, 'init'], { env })).code, 0);
      const copied = await runCli(['-r', clean, 'copy', '--from-repo', from, '--from-as-of', beforeAttack.toISOString(), '--no-cache'], {
        env: { ...env, RESTIC_FROM_PASSWORD: PASSWORD },
      });
      assert.equal(copied.code, 0, copied.stderr);
      const opts = { repo: clean, password: PASSWORD, env: resticEnv() };
      await resticOk(resticBin('0.19'), ['check', '--read-data'], opts);
      const cleanSnaps = await resticJson<Array<{ paths: string[] }>>(resticBin('0.19'), ['snapshots'], opts);
      assert.deepEqual(cleanSnaps.map((s) => s.paths[0]).sort(), [...srcs].sort());
      const out = join(work, 'restic-restore');
      await resticOk(resticBin('0.19'), ['restore', 'latest', '--path', srcs[1]!, '--target', out], opts);
      assert.deepEqual(await compareTrees(srcs[1]!, join(out, srcs[1]!)), []);
    }
  });

  it('a multipart upload carries the retention too', async () => {
    const bucket = newBucket('parts');
    const b = lockedBackend(bucket, { multipartThreshold: 5 * 1024 * 1024 });
    try {
      await b.create();
      const name = randomBytes(32).toString('hex');
      await b.save({ type: 'data', name }, randomBytes(6 * 1024 * 1024));
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `repo/data/${name.slice(0, 2)}/${name}` }));
      assert.equal(head.ContentLength, 6 * 1024 * 1024);
      assert.match(head.ETag ?? '', /-2"$/, 'uploaded in two parts');
      assert.equal(head.ObjectLockMode, 'GOVERNANCE');
      assert.ok(head.ObjectLockRetainUntilDate!.getTime() > Date.now() + DAY - 60_000);
      // The same from a local file (saveFile: each part read from the file as it is sent, its
      // Content-MD5, which Object Lock requires even with checksums off, from a first pass).
      const unchecked = lockedBackend(bucket, { multipartThreshold: 5 * 1024 * 1024, uploadChecksums: false });
      const dir = await tmpDir('stowage-lock-file');
      try {
        const data = randomBytes(6 * 1024 * 1024 + 5);
        await writeFile(join(dir, 'pack'), data);
        const fromFile = randomBytes(32).toString('hex');
        await unchecked.saveFile({ type: 'data', name: fromFile }, { path: join(dir, 'pack'), size: data.length });
        const fileHead = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `repo/data/${fromFile.slice(0, 2)}/${fromFile}` }));
        assert.equal(fileHead.ContentLength, data.length);
        assert.match(fileHead.ETag ?? '', /-2"$/, 'uploaded in two parts');
        assert.equal(fileHead.ObjectLockMode, 'GOVERNANCE');
        assert.ok(Buffer.from(await unchecked.load({ type: 'data', name: fromFile })).equals(data));
      } finally {
        await unchecked.close();
      }
    } finally {
      await b.close();
    }
  });

  it('create() refuses an existing bucket without Object Lock', async () => {
    const bucket = newBucket('plain');
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const b = lockedBackend(bucket);
    try {
      await assert.rejects(b.create(), (e: unknown) => {
        assert.ok(e instanceof ObjectLockError, String(e));
        assert.equal(e.code, 'OBJECT_LOCK');
        assert.equal(e.bucket, bucket);
        assert.match(e.message, /does not have Object Lock enabled/);
        return true;
      });
      // Without create(): the first locked upload says the same, naming the file.
      await assert.rejects(b.save({ type: 'data', name: 'ab'.repeat(32) }, new Uint8Array(10)), (e: unknown) => {
        assert.ok(e instanceof ObjectLockError, String(e));
        assert.equal(e.file, `data/ab/${'ab'.repeat(32)}`);
        assert.match(e.message, /does not have Object Lock enabled/);
        return true;
      });
    } finally {
      await b.close();
    }
  });

  it('-o s3.object-lock: parsed, and the stowage CLI locks what it uploads', async () => {
    assert.deepEqual(parseObjectLockOption('governance:30d'), { mode: 'GOVERNANCE', retainSeconds: 30 * 86_400 });
    assert.deepEqual(parseObjectLockOption('COMPLIANCE:2'), { mode: 'COMPLIANCE', retainSeconds: 2 * 86_400 });
    assert.deepEqual(parseObjectLockOption('governance:90s'), { mode: 'GOVERNANCE', retainSeconds: 90 });
    for (const bad of ['governance', 'shared:1d', 'governance:0d', 'governance:1w']) assert.throws(() => parseObjectLockOption(bad), InvalidInputError, bad);

    const work = await tmpDir('stowage-lock-cli');
    const bucket = newBucket('cli');
    const env = { ...resticEnv(), RESTIC_PASSWORD: PASSWORD, RESTIC_REPOSITORY: `s3:${minio.endpoint}/${bucket}/repo`, HOME: work };
    const lock = ['-o', 's3.object-lock=compliance:2h'];
    const init = await runCli([...lock, 'init'], { env });
    assert.equal(init.code, 0, init.stderr);
    const run = await runCli([...lock, 'backup', '--json', await makeSource(work, 'cli')], { env });
    assert.equal(run.code, 0, run.stderr);
    const { versions } = await allVersions(bucket, 'repo/');
    const snapshots = versions.filter((v) => v.Key!.startsWith('repo/snapshots/'));
    assert.equal(snapshots.length, 1);
    for (const v of versions.filter((v) => !v.Key!.startsWith('repo/locks/'))) {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId }));
      assert.equal(head.ObjectLockMode, 'COMPLIANCE', v.Key);
      const left = head.ObjectLockRetainUntilDate!.getTime() - Date.now();
      assert.ok(left > 7_000_000 && left <= 7_200_000, `${v.Key}: ${left} ms left`);
    }
  });
});
