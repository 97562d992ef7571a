// B2Backend (backblaze-b2 SDK) against the B2 native API emulator (test/servers/b2-emulator.ts,
// itself tested in b2-emulator.test.ts): conformance, versions, token expiry, upload URL
// refresh, a repository round trip, and restic checking the repository after its objects are
// copied to a local folder (restic's b2 backend cannot be pointed at an emulator).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { B2Backend, b2OptionsFromEnv } from '../../src/backend/b2.ts';
import type { B2BackendOptions } from '../../src/backend/b2.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { FILE_TYPES } from '../../src/backend/backend.ts';
import type { FileInfo } from '../../src/backend/backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { backendConformance } from './conformance.ts';
import { startB2Emulator } from '../servers/b2-emulator.ts';
import { resticOk, resticJson, resticVersions } from '../helpers/restic.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { damagedUploadIsRefused, damagedUploadIsStoredWithoutChecksum } from '../helpers/upload-checksum.ts';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';

const emu = await startB2Emulator();
after(() => emu.stop());

const PASSWORD = 'b2-test-password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

let buckets = 0;
function newBucket(): string {
  return `stowage-${process.pid}-${++buckets}-${randomBytes(2).toString('hex')}`;
}

function b2(extra: Partial<B2BackendOptions> = {}): B2Backend {
  return new B2Backend({ bucket: newBucket(), applicationKeyId: emu.keyId, applicationKey: emu.key, authorizeUrl: emu.authorizeUrl, ...extra });
}

function newId(): string {
  return randomBytes(32).toString('hex');
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

async function makeSource(dir: string): Promise<string> {
  const src = join(dir, 'src');
  await mkdir(join(src, 'sub', 'deeper'), { recursive: true });
  await writeFile(join(src, 'big.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(src, 'hello.txt'), 'hello b2\n');
  await writeFile(join(src, 'empty'), '');
  await writeFile(join(src, 'sub', 'notes.md'), '# notes\n'.repeat(500));
  await writeFile(join(src, 'sub', 'deeper', 'small.bin'), randomBytes(4096));
  return src;
}

/** Copies every listed file of one backend to another (the restic layout on both sides). */
async function copyRepository(from: { list: B2Backend['list']; load: B2Backend['load'] }, to: { create(): Promise<void>; save: B2Backend['save'] }): Promise<number> {
  await to.create();
  let n = 0;
  for (const type of FILE_TYPES) {
    for await (const f of from.list(type)) {
      const h = { type, name: f.name };
      await to.save(h, await from.load(h));
      n++;
    }
  }
  return n;
}

backendConformance('b2 (native API v2 emulator)', async () => ({
  backend: b2({ prefix: '/restic/repo/' }),
  cleanup: async () => {},
}), { streamsFiles: true, serverInProcess: true });

describe('B2Backend on the B2 emulator', () => {
  it('stores files under restic names below the prefix, and reports a restic-style location', async () => {
    const bucket = newBucket();
    const b = b2({ bucket, prefix: 'x//y/' });
    assert.equal(b.location, `b2:${bucket}:x/y`);
    assert.equal(b.connections, 5);
    await b.create();
    const key = newId();
    const pack = newId();
    await b.save({ type: 'config', name: '' }, new Uint8Array([1]));
    await b.save({ type: 'keys', name: key }, new Uint8Array([2]));
    await b.save({ type: 'data', name: pack }, new Uint8Array([3]));
    assert.deepEqual(emu.versions(bucket).map((v) => v.fileName), [`x/y/config`, `x/y/data/${pack.slice(0, 2)}/${pack}`, `x/y/keys/${key}`].sort());
    assert.ok(emu.versions(bucket).every((v) => v.contentType === 'application/octet-stream'));
  });

  it('removes every version of a name, and treats a hidden name as missing', async () => {
    const bucket = newBucket();
    const b = b2({ bucket });
    await b.create();
    const h = { type: 'index' as const, name: newId() };
    await b.save(h, new Uint8Array([1]));
    await b.save(h, new Uint8Array([1]));
    await b.save(h, new Uint8Array([1]));
    assert.equal(emu.versions(bucket).length, 3);
    await b.remove(h);
    assert.deepEqual(emu.versions(bucket), [], 'no older version comes back');
    await assert.rejects(b.stat(h), NotFoundError);
    await assert.rejects(b.remove(h), NotFoundError);

    // A name whose latest version is a hide marker does not exist for readers; remove clears it.
    await b.save(h, new Uint8Array([5, 5]));
    const auth = (await (await fetch(emu.authorizeUrl, { headers: { Authorization: `Basic ${Buffer.from(`${emu.keyId}:${emu.key}`).toString('base64')}` } })).json()) as { authorizationToken: string; apiUrl: string };
    const bucketId = (await (await fetch(`${auth.apiUrl}/b2api/v2/b2_list_buckets`, { method: 'POST', headers: { Authorization: auth.authorizationToken }, body: JSON.stringify({ accountId: emu.accountId, bucketName: bucket }) })).json()) as { buckets: Array<{ bucketId: string }> };
    const hide = await fetch(`${auth.apiUrl}/b2api/v2/b2_hide_file`, { method: 'POST', headers: { Authorization: auth.authorizationToken }, body: JSON.stringify({ bucketId: bucketId.buckets[0]!.bucketId, fileName: `index/${h.name}` }) });
    assert.equal(hide.status, 200);
    await assert.rejects(b.stat(h), NotFoundError);
    await assert.rejects(b.load(h), NotFoundError);
    assert.deepEqual(await collect(b.list('index')), []);
    await assert.rejects(b.remove(h), NotFoundError);
    assert.deepEqual(emu.versions(bucket), []);
  });

  it('authorizes again when tokens expire, also in the middle of a listing', async () => {
    const b = b2();
    await b.create();
    const stored = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const name = newId();
      stored.set(name, i);
      await b.save({ type: 'snapshots', name }, new Uint8Array([i]));
    }
    const before = emu.calls.b2_authorize_account ?? 0;
    emu.expireAllTokens();
    assert.deepEqual((await collect(b.list('snapshots'))).map((f) => f.name), [...stored.keys()].sort());
    assert.equal(emu.calls.b2_authorize_account, before + 1, 'one new authorization');
    // Upload tokens expired too: the save gets a new upload URL.
    const extra = newId();
    await b.save({ type: 'snapshots', name: extra }, new Uint8Array([99]));
    stored.set(extra, 99);
    emu.expireTokensAfter(2);
    try {
      assert.equal((await collect(b.list('snapshots'))).length, 31);
      for (const [name, value] of stored) assert.deepEqual(await b.load({ type: 'snapshots', name }), new Uint8Array([value]));
    } finally {
      emu.expireTokensAfter(undefined);
    }
  });

  it('gets a new upload URL after a 503, and reports a second 503 as transient', async () => {
    const bucket = newBucket();
    const b = b2({ bucket });
    await b.create();
    const h = { type: 'data' as const, name: newId() };
    await b.save(h, new Uint8Array([1, 2, 3])); // an upload URL is now pooled
    const uploadsBefore = emu.calls.b2_upload_file ?? 0;
    const urlsBefore = emu.calls.b2_get_upload_url ?? 0;
    emu.failNextUploads(1);
    const h2 = { type: 'data' as const, name: newId() };
    await b.save(h2, new Uint8Array([4]));
    assert.equal(emu.calls.b2_upload_file, uploadsBefore + 2);
    assert.equal(emu.calls.b2_get_upload_url, urlsBefore + 1, 'the busy URL was replaced');
    assert.deepEqual(await b.load(h2), new Uint8Array([4]));

    emu.failNextUploads(2);
    const h3 = { type: 'data' as const, name: newId() };
    await assert.rejects(b.save(h3, new Uint8Array([5])), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.transient, true);
      assert.match(err.message, /^save data\/.* HTTP 503 service_unavailable/);
      return true;
    });
    await assert.rejects(b.stat(h3), NotFoundError);
    await b.save(h3, new Uint8Array([5]));
    assert.deepEqual(await b.load(h3), new Uint8Array([5]));
  });

  it('verifies whole downloads against the stored SHA-1', async () => {
    const bucket = newBucket();
    const b = b2({ bucket });
    await b.create();
    const h = { type: 'keys' as const, name: newId() };
    await b.save(h, new Uint8Array([1, 2, 3, 4]));
    emu.corrupt(bucket, `keys/${h.name}`);
    await assert.rejects(b.load(h), (err: unknown) => {
      assert.ok(err instanceof IntegrityError, String(err));
      assert.equal(err.file, `keys/${h.name}`);
      return true;
    });
    // A range cannot be checked against the whole file's SHA-1; the pack's MACs catch it instead.
    assert.equal((await b.load(h, { offset: 1, length: 2 })).length, 2);
  });

  it('refuses a wrong key with a permanent 401 that does not show the key', async () => {
    const b = b2({ applicationKey: 'wrong-key-value-123' });
    await assert.rejects(b.create(), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.status, 401);
      assert.equal(err.transient, false);
      assert.match(err.message, /authorization failed for b2:/);
      assert.ok(!err.message.includes('wrong-key-value-123'), err.message);
      assert.equal(err.cause, undefined, 'the SDK error with its Authorization header is not kept');
      return true;
    });
  });

  it('works with a key restricted to the bucket and refuses a key for another bucket', async () => {
    const restricted = await startB2Emulator({
      keys: [
        { keyId: 'master', key: 'master-secret' },
        { keyId: 'bucket-key', key: 'bucket-secret', bucketName: 'only-this-bucket' },
      ],
    });
    try {
      const opts = { authorizeUrl: restricted.authorizeUrl };
      await new B2Backend({ bucket: 'only-this-bucket', applicationKeyId: 'master', applicationKey: 'master-secret', ...opts }).create();
      const b = new B2Backend({ bucket: 'only-this-bucket', prefix: 'repo', applicationKeyId: 'bucket-key', applicationKey: 'bucket-secret', ...opts });
      await b.create();
      const h = { type: 'locks' as const, name: newId() };
      await b.save(h, new Uint8Array([7]));
      assert.deepEqual(await collect(b.list('locks')), [{ name: h.name, size: 1 }]);
      await b.remove(h);
      const wrong = new B2Backend({ bucket: 'another-bucket', applicationKeyId: 'bucket-key', applicationKey: 'bucket-secret', ...opts });
      await assert.rejects(wrong.stat({ type: 'config', name: '' }), (err: unknown) => err instanceof BackendError && err.status === 401 && !err.transient);
    } finally {
      await restricted.stop();
    }
  });

  it('lists nothing and finds nothing in a bucket that does not exist', async () => {
    const b = b2();
    for (const type of FILE_TYPES) assert.deepEqual(await collect(b.list(type)), []);
    await assert.rejects(b.stat({ type: 'keys', name: newId() }), NotFoundError);
    await assert.rejects(b.save({ type: 'keys', name: newId() }, new Uint8Array([1])), (err: unknown) => err instanceof BackendError && !err.transient && /does not exist/.test(err.message));
  });

  it('gives up on a service that accepts but never answers, as a transient error', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (silent.address() as { port: number }).port;
      const b = new B2Backend({ bucket: 'some-bucket', applicationKeyId: 'id', applicationKey: 'key', authorizeUrl: `http://127.0.0.1:${port}/b2api/v2/b2_authorize_account`, timeoutMs: 300 });
      await assert.rejects(b.create(), (err: unknown) => {
        assert.ok(err instanceof BackendError, String(err));
        assert.equal(err.transient, true);
        assert.match(err.message, /no answer within 0.3 s/);
        return true;
      });
    } finally {
      silent.close();
      for (const socket of sockets) socket.destroy();
    }
  });

  it('reports an unreachable service as transient and honours an aborted signal', async () => {
    const b = new B2Backend({ bucket: 'some-bucket', applicationKeyId: 'id', applicationKey: 'key', authorizeUrl: 'http://127.0.0.1:9/b2api/v2/b2_authorize_account' });
    await assert.rejects(b.create(), (err: unknown) => err instanceof BackendError && err.transient);
    const ok = b2();
    await ok.create();
    const controller = new AbortController();
    const pending = ok.save({ type: 'data', name: newId() }, new Uint8Array(4 * 1024 * 1024), { signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, AbortedError);
  });
});

describe('B2 upload checksums (the emulator, through a proxy that flips one byte of the body)', () => {
  let proxy: TcpProxy;
  let backend: B2Backend;
  before(async () => {
    proxy = await startTcpProxy({ targetPort: Number(new URL(emu.url).port) });
    // Uploads go to the upload URL the emulator hands out: make that the proxy's.
    emu.advertise(proxy.url);
    backend = b2();
    await backend.create();
  });
  after(async () => {
    emu.advertise(undefined);
    await backend.close();
    await proxy.close();
  });
  const match = (req: { method: string; path: string }): boolean => req.method === 'POST' && req.path.includes('b2_upload_file');

  it('the emulator refuses a damaged upload (X-Bz-Content-Sha1, 400, transient); the retry stores it intact', async () => {
    const { error, request } = await damagedUploadIsRefused({ backend, proxy, match });
    assert.match(request.headers['x-bz-content-sha1'] ?? '', /^[0-9a-f]{40}$/);
    assert.equal(error.status, 400);
    assert.match(error.message, /Checksum did not match data received/);
  });

  it('saveFile: an upload streamed from a local file carries the SHA-1 of a first pass and its Content-Length; the emulator refuses it damaged, the retry stores it', async () => {
    const { error, request } = await damagedUploadIsRefused({ backend, proxy, match, fromFile: true });
    assert.match(request.headers['x-bz-content-sha1'] ?? '', /^[0-9a-f]{40}$/);
    assert.equal(request.headers['content-length'], String(96 * 1024));
    assert.equal(error.status, 400);
  });

  it('without the checksum (do_not_verify) the damaged bytes are stored', async () => {
    const unchecked = b2({ bucket: backend.bucket, uploadChecksums: false });
    try {
      const request = await damagedUploadIsStoredWithoutChecksum({ backend: unchecked, proxy, match });
      assert.equal(request.headers['x-bz-content-sha1'], 'do_not_verify');
    } finally {
      await unchecked.close();
    }
  });
});

describe('B2Backend options', () => {
  it('validates its options and maps B2_ACCOUNT_ID / B2_ACCOUNT_KEY', () => {
    const base = { applicationKeyId: 'id', applicationKey: 'k' };
    assert.throws(() => new B2Backend({ ...base, bucket: 'ab' }), InvalidInputError);
    assert.throws(() => new B2Backend({ ...base, bucket: 'has_underscore' }), InvalidInputError);
    assert.throws(() => new B2Backend({ bucket: 'good-bucket', applicationKeyId: '', applicationKey: 'k' }), InvalidInputError);
    assert.throws(() => new B2Backend({ ...base, bucket: 'good-bucket', prefix: '../x' }), InvalidInputError);
    assert.throws(() => new B2Backend({ ...base, bucket: 'good-bucket', connections: 0 }), InvalidInputError);
    assert.equal(new B2Backend({ ...base, bucket: 'good-bucket', applicationKey: 'very-secret' }).location, 'b2:good-bucket:');
    assert.deepEqual(b2OptionsFromEnv({ B2_ACCOUNT_ID: 'a', B2_ACCOUNT_KEY: 'b' }), { applicationKeyId: 'a', applicationKey: 'b' });
    assert.deepEqual(b2OptionsFromEnv({ B2_ACCOUNT_ID: 'a' }), {});
  });
});

describe('B2Backend: repository round trip', () => {
  it('backs up, restores, counts and checks a repository while tokens keep expiring', { timeout: 120_000 }, async () => {
    const dir = await tmpDir('stowage-b2-repo');
    const src = await makeSource(dir);
    const bucket = newBucket();
    const b = b2({ bucket, prefix: 'backups/host1' });
    const authsBefore = emu.calls.b2_authorize_account ?? 0;
    emu.expireTokensAfter(5);
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [src] });
      const reopened = await Repository.open(b2({ bucket, prefix: 'backups/host1' }), { password: PASSWORD });
      const indexed = await reopened.loadIndex();
      const out = join(dir, 'out');
      await restore(indexed, res.snapshot.tree, { target: out });
      assert.deepEqual(await compareTrees(src, join(out, src)), []);
      const stats = await repositoryStats(indexed);
      assert.equal(stats.snapshotCount, 1);
      assert.equal(stats.totalFileCount, 5);
      const report = await checkRepository(reopened, { readData: true });
      assert.ok(report.ok, JSON.stringify(report.errors));
    } finally {
      emu.expireTokensAfter(undefined);
    }
    assert.ok((emu.calls.b2_authorize_account ?? 0) - authsBefore > 3, 'tokens did expire and were renewed');
  });
});

describe('B2Backend and restic (objects copied to a local folder)', () => {
  const restics = resticVersions();

  it('restic checks (--read-data) and restores what Stowage wrote to B2', { timeout: 180_000 }, async () => {
    const dir = await tmpDir('stowage-b2-to-restic');
    const src = await makeSource(dir);
    const b = b2({ prefix: 'stowage' });
    const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
    const res = await backup(await repo.loadIndex(), { paths: [src], hostname: 'b2-host' });
    const local = join(dir, 'copy');
    const copied = await copyRepository(b, new LocalBackend(local));
    assert.ok(copied >= 5);
    for (const { name, bin } of restics) {
      const opts = { repo: local, password: PASSWORD };
      await resticOk(bin, ['check', '--read-data'], opts);
      const snaps = await resticJson<Array<{ id: string }>>(bin, ['snapshots'], opts);
      assert.deepEqual(snaps.map((s) => s.id), [res.snapshotId]);
      const out = join(dir, `restored-by-${name}`);
      await resticOk(bin, ['restore', 'latest', '--target', out], opts);
      assert.deepEqual(await compareTrees(src, join(out, src)), [], `restic ${name} restore`);
    }
  });

  it('Stowage reads what restic wrote, after its files are copied into B2', { timeout: 180_000 }, async () => {
    const dir = await tmpDir('stowage-restic-to-b2');
    const src = await makeSource(dir);
    for (const { name, bin } of restics) {
      const local = join(dir, `restic-${name}`);
      await resticOk(bin, ['init'], { repo: local, password: PASSWORD });
      await resticOk(bin, ['backup', src], { repo: local, password: PASSWORD });
      const b = b2({ prefix: `restic-${name}` });
      await copyRepository(new LocalBackend(local), b);
      const repo = await Repository.open(b, { password: PASSWORD });
      const report = await checkRepository(repo, { readData: true });
      assert.ok(report.ok, `restic ${name}: ${JSON.stringify(report.errors)}`);
      const snaps = await listSnapshots(repo);
      assert.equal(snaps.length, 1);
      const out = join(dir, `restored-from-${name}`);
      await restore(await repo.loadIndex(), snaps[0]!.snapshot.tree, { target: out });
      assert.deepEqual(await compareTrees(src, join(out, src)), []);
    }
  });
});
