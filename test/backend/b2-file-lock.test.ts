// B2 File Lock through B2's native API, on our B2 emulator (no B2 server runs locally; the emulator
// follows Backblaze's documentation, see test/servers/b2-emulator.ts):
//   (a) fileLock: create() makes a lock-enabled bucket; every upload but lock files carries the
//       retention headers (the stored versions show mode and date); remove() hides a name and the
//       retained version stays; a retained version cannot be deleted; an existing bucket without
//       File Lock is refused (ObjectLockError); `-o b2.file-lock` is parsed
//   (b) the emulator's File Lock rules: compliance extend-only, governance shortened only with
//       bypassGovernance, default bucket retention, download headers
//   (c) the storage-independent scenarios of test/interop/lock-scenarios.ts (also run on MinIO):
//       prune under lock, point-in-time view after an attack, retention extend (keep-last)
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { B2Backend } from '../../src/backend/b2.ts';
import type { B2BackendOptions } from '../../src/backend/b2.ts';
import { openBackend } from '../../src/backend/location.ts';
import { retentionOf, versionsOf } from '../../src/backend/backend.ts';
import { NotFoundError, ObjectLockError, ReadOnlyError } from '../../src/errors.ts';
import { startB2Emulator } from '../servers/b2-emulator.ts';
import { asOfAfterAttack, extendKeepLast, pruneUnderLock, type LockedStore } from '../interop/lock-scenarios.ts';
import { tmpDir } from '../helpers/tmp.ts';

const emu = await startB2Emulator();
after(() => emu.stop());

let buckets = 0;
function newBucket(): string {
  return `lock-${process.pid}-${++buckets}`;
}

function locked(bucket: string, extra: Partial<B2BackendOptions> = {}): B2Backend {
  return new B2Backend({ bucket, prefix: 'repo', applicationKeyId: emu.keyId, applicationKey: emu.key, authorizeUrl: emu.authorizeUrl, fileLock: { mode: 'GOVERNANCE', retainDays: 1 }, ...extra });
}

function newId(): string {
  return randomBytes(32).toString('hex');
}

/** The raw native API with the master key, as an attacker holding the backup's key would call it. */
async function api(op: string, body: Record<string, unknown>): Promise<{ status: number; json: any }> {
  const auth = (await (await fetch(emu.authorizeUrl, { headers: { Authorization: `Basic ${Buffer.from(`${emu.keyId}:${emu.key}`).toString('base64')}` } })).json()) as { authorizationToken: string; apiUrl: string };
  const res = await fetch(`${auth.apiUrl}/b2api/v2/${op}`, { method: 'POST', headers: { Authorization: auth.authorizationToken }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

async function bucketId(bucket: string): Promise<string> {
  return (await api('b2_list_buckets', { accountId: emu.accountId, bucketName: bucket })).json.buckets[0].bucketId;
}

/** The bucket as lock-scenarios.ts sees it; the attacker is a plain B2Backend with the same key. */
function b2Store(bucket: string): LockedStore {
  const attacker = new B2Backend({ bucket, prefix: 'repo', applicationKeyId: emu.keyId, applicationKey: emu.key, authorizeUrl: emu.authorizeUrl });
  after(() => attacker.close());
  const handle = (key: string) => {
    const parts = key.split('/');
    return parts[1] === 'config' ? { type: 'config' as const, name: '' } : { type: parts[1] as 'snapshots' | 'index' | 'keys', name: parts.at(-1)! };
  };
  return {
    backend: (lock) => locked(bucket, { fileLock: { mode: 'GOVERNANCE', ...lock } }),
    currentKeys: async (prefix) => {
      const latest = new Map<string, string>();
      for (const v of emu.versions(bucket)) if (!latest.has(v.fileName)) latest.set(v.fileName, v.action);
      return new Set([...latest].filter(([k, action]) => k.startsWith(prefix) && action === 'upload').map(([k]) => k));
    },
    retentionOf: async (key) => {
      const r = emu.versions(bucket).find((v) => v.fileName === key)?.retention;
      return r ? { mode: r.mode === 'governance' ? 'GOVERNANCE' : 'COMPLIANCE', retainUntil: new Date(r.retainUntilTimestamp) } : undefined;
    },
    // The attacker's plain remove tries to delete the versions, is refused, and hides the name.
    attackDelete: (key) => attacker.remove(handle(key)),
    attackPut: (key, body) => attacker.save(handle(key), body),
  };
}

describe('B2 File Lock (native API) on the B2 emulator', () => {
  it('locks every upload but lock files, hides on remove, and a retained version cannot be deleted', async () => {
    const bucket = newBucket();
    const b = locked(bucket);
    const started = Date.now();
    try {
      await b.create();
      const bucketInfo = (await api('b2_list_buckets', { accountId: emu.accountId, bucketName: bucket })).json.buckets[0];
      assert.equal(bucketInfo.fileLockConfiguration.value.isFileLockEnabled, true);
      const files = { config: { type: 'config' as const, name: '' }, snap: { type: 'snapshots' as const, name: newId() }, lock: { type: 'locks' as const, name: newId() }, pack: { type: 'data' as const, name: newId() } };
      for (const h of Object.values(files)) await b.save(h, randomBytes(100));
      for (const v of emu.versions(bucket)) {
        if (v.fileName.startsWith('repo/locks/')) assert.equal(v.retention, null, `${v.fileName} must not be locked`);
        else {
          assert.equal(v.retention?.mode, 'governance', v.fileName);
          assert.ok(v.retention.retainUntilTimestamp >= started + 86_400_000 - 5000 && v.retention.retainUntilTimestamp <= Date.now() + 86_400_000, v.fileName);
        }
      }
      assert.equal(b.locksUploads, true);
      assert.equal(retentionOf(b), b);
      assert.equal(versionsOf(b), b);
      const r = await b.getRetention(files.snap);
      assert.equal(r?.mode, 'GOVERNANCE');

      // A retained version cannot be deleted (the attacker's b2_delete_file_version), not even by the backend's key.
      const snapVersion = emu.versions(bucket).find((v) => v.fileName === `repo/snapshots/${files.snap.name}`)!;
      const refused = await api('b2_delete_file_version', { fileName: snapVersion.fileName, fileId: snapVersion.fileId });
      assert.equal(refused.status, 401);
      assert.equal(refused.json.code, 'access_denied');

      // remove() hides (a hide marker over the retained version); lock files lose every version.
      await b.remove(files.snap);
      await assert.rejects(b.stat(files.snap), NotFoundError);
      const snapVersions = emu.versions(bucket).filter((v) => v.fileName === `repo/snapshots/${files.snap.name}`);
      assert.deepEqual(snapVersions.map((v) => v.action), ['hide', 'upload']);
      await assert.rejects(b.remove(files.snap), NotFoundError, 'hidden already: missing');
      await b.remove(files.lock);
      assert.equal(emu.versions(bucket).filter((v) => v.fileName.startsWith('repo/locks/')).length, 0);

      // An overwrite is a new version; the retained one stays readable by fileId.
      await b.save(files.config, Buffer.from('junk'));
      const configs = emu.versions(bucket).filter((v) => v.fileName === 'repo/config');
      assert.equal(configs.length, 2);

      // A plain backend (no fileLock) on a bucket whose versions are retained hides instead of failing.
      const plain = new B2Backend({ bucket, prefix: 'repo', applicationKeyId: emu.keyId, applicationKey: emu.key, authorizeUrl: emu.authorizeUrl });
      await plain.remove(files.pack);
      await assert.rejects(plain.stat(files.pack), NotFoundError);
      assert.deepEqual(emu.versions(bucket).filter((v) => v.fileName.includes(files.pack.name)).map((v) => v.action), ['hide', 'upload']);
      await plain.close();
    } finally {
      await b.close();
    }
  });

  it('refuses an existing bucket without File Lock, and a locked upload to it (ObjectLockError)', async () => {
    const bucket = newBucket();
    const plain = new B2Backend({ bucket, applicationKeyId: emu.keyId, applicationKey: emu.key, authorizeUrl: emu.authorizeUrl });
    await plain.create();
    const b = locked(bucket);
    try {
      await assert.rejects(b.create(), (e: unknown) => e instanceof ObjectLockError && e.bucket === bucket && /does not have File Lock enabled/.test(e.message));
      await assert.rejects(b.save({ type: 'data', name: newId() }, new Uint8Array(10)), (e: unknown) => e instanceof ObjectLockError && /File Lock/.test(e.message));
      // b2_update_bucket turns it on once; then both work.
      const res = await api('b2_update_bucket', { accountId: emu.accountId, bucketId: await bucketId(bucket), fileLockEnabled: true });
      assert.equal(res.status, 200);
      await b.create();
      await b.save({ type: 'data', name: newId() }, new Uint8Array(10));
    } finally {
      await b.close();
      await plain.close();
    }
  });

  it('extends retentions, never shortens COMPLIANCE, and shortens GOVERNANCE only with bypassGovernance', async () => {
    const bucket = newBucket();
    const b = locked(bucket, { fileLock: { mode: 'COMPLIANCE', retainSeconds: 600 } });
    try {
      await b.create();
      const h = { type: 'index' as const, name: newId() };
      await b.save(h, randomBytes(50));
      const before = (await b.getRetention(h))!;
      assert.equal(before.mode, 'COMPLIANCE');
      const later = new Date(before.retainUntil.getTime() + 3_600_000);
      await b.putRetention(h, { mode: 'COMPLIANCE', retainUntil: later });
      assert.equal((await b.getRetention(h))!.retainUntil.getTime(), later.getTime());
      // Without a getRetention before it, putRetention looks the fileId up itself.
      const latest = new Date(later.getTime() + 1000);
      await b.putRetention(h, { mode: 'COMPLIANCE', retainUntil: latest });
      assert.equal(emu.versions(bucket)[0]!.retention?.retainUntilTimestamp, latest.getTime());
      await assert.rejects(b.putRetention(h, { mode: 'COMPLIANCE', retainUntil: later }), /access_denied/);
      await assert.rejects(b.putRetention(h, { mode: 'GOVERNANCE', retainUntil: new Date(latest.getTime() + 1000) }), /access_denied/);

      const g = { type: 'keys' as const, name: newId() };
      const gov = locked(bucket, { fileLock: { mode: 'GOVERNANCE', retainSeconds: 600 } });
      await gov.save(g, randomBytes(50));
      const v = emu.versions(bucket).find((x) => x.fileName === `repo/keys/${g.name}`)!;
      const shorter = { mode: 'governance', retainUntilTimestamp: Date.now() + 60_000 };
      assert.equal((await api('b2_update_file_retention', { fileName: v.fileName, fileId: v.fileId, fileRetention: shorter })).status, 401);
      assert.equal((await api('b2_update_file_retention', { fileName: v.fileName, fileId: v.fileId, fileRetention: shorter, bypassGovernance: true })).status, 200);
      assert.equal((await api('b2_delete_file_version', { fileName: v.fileName, fileId: v.fileId, bypassGovernance: true })).status, 200);
      await gov.close();
    } finally {
      await b.close();
    }
  });

  it('applies a bucket default retention to uploads without one, and reports retention on downloads', async () => {
    const bucket = newBucket();
    const plain = new B2Backend({ bucket, prefix: 'repo', applicationKeyId: emu.keyId, applicationKey: emu.key, authorizeUrl: emu.authorizeUrl });
    const b = locked(bucket);
    try {
      await b.create();
      const set = await api('b2_update_bucket', { accountId: emu.accountId, bucketId: await bucketId(bucket), defaultRetention: { mode: 'governance', period: { duration: 2, unit: 'days' } } });
      assert.equal(set.status, 200);
      assert.deepEqual(set.json.fileLockConfiguration.value.defaultRetention, { mode: 'governance', period: { duration: 2, unit: 'days' } });
      const h = { type: 'snapshots' as const, name: newId() };
      await plain.save(h, randomBytes(10));
      const r = (await b.getRetention(h))!;
      assert.equal(r.mode, 'GOVERNANCE');
      assert.ok(Math.abs(r.retainUntil.getTime() - (Date.now() + 2 * 86_400_000)) < 10_000);
      const auth = (await (await fetch(emu.authorizeUrl, { headers: { Authorization: `Basic ${Buffer.from(`${emu.keyId}:${emu.key}`).toString('base64')}` } })).json()) as { authorizationToken: string; downloadUrl: string };
      const dl = await fetch(`${auth.downloadUrl}/file/${bucket}/repo/snapshots/${h.name}`, { headers: { Authorization: auth.authorizationToken } });
      assert.equal(dl.headers.get('x-bz-file-retention-mode'), 'governance');
      assert.equal(Number(dl.headers.get('x-bz-file-retention-retain-until-timestamp')), r.retainUntil.getTime());
    } finally {
      await b.close();
      await plain.close();
    }
  });

  it('-o b2.file-lock gives the backend its fileLock', async () => {
    const backend = await openBackend(`b2:${newBucket()}:repo`, { extended: { 'b2.file-lock': 'compliance:2h' }, env: { B2_ACCOUNT_ID: emu.keyId, B2_ACCOUNT_KEY: emu.key }, overrides: { b2: { authorizeUrl: emu.authorizeUrl } } });
    try {
      const b2 = retentionOf(backend);
      assert.ok(b2?.locksUploads);
    } finally {
      await backend.close();
    }
  });

  it('prune keeps packs under retention, reports them, and deletes (hides) them once the retention has passed', async () => {
    await pruneUnderLock(b2Store(newBucket()), await tmpDir('stowage-b2lock-prune'));
  });

  it('point-in-time recovery from file versions: the view as of before an attack restores byte-exact', async () => {
    const bucket = newBucket();
    await asOfAfterAttack(b2Store(bucket), await tmpDir('stowage-b2lock-asof'));
    // The view read versions by fileId and wrote nothing.
    assert.ok((emu.calls.b2_download_file_by_id ?? 0) > 0);
    const view = locked(bucket).viewAsOf(new Date());
    await assert.rejects(view.save({ type: 'index', name: newId() }, new Uint8Array(1)), ReadOnlyError);
  });

  it('retention extend follows keep-last on B2 (b2_update_file_retention), and a second run writes nothing', async () => {
    await extendKeepLast(b2Store(newBucket()), await tmpDir('stowage-b2lock-extend'));
  });
});
