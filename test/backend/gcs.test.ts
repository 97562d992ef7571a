// GCSBackend against fake-gcs-server (an emulator of the GCS JSON and XML APIs; there is no
// real GCS server to run locally): the shared backend conformance suite, GCS specifics (layout,
// prefixes, bucket creation, credentials handling, errors, lazy loading, CRC32C checks on a
// server that keeps objects on disk), a repository round trip, and interop with real restic.
//
// restic and fake-gcs-server: restic 0.19.1's gs backend uses Google's Go storage library,
// which sends everything to STORAGE_EMULATOR_HOST when it is set; GOOGLE_ACCESS_TOKEN stands in
// for credentials. Its `init` cannot make a missing bucket with that library (it compares the
// wrapped "bucket doesn't exist" error with ==), so the bucket is made first. restic 0.14's gs
// backend has no endpoint override, so for 0.14 the repository is copied to a local folder and
// checked there.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Storage } from '@google-cloud/storage';
import { GCSBackend } from '../../src/backend/gcs.ts';
import type { GCSBackendOptions } from '../../src/backend/gcs.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { FILE_TYPES } from '../../src/backend/backend.ts';
import type { Backend, FileInfo } from '../../src/backend/backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { backendConformance } from './conformance.ts';
import { startFakeGcs } from '../servers/fake-gcs.ts';
import type { FakeGcsServer } from '../servers/fake-gcs.ts';
import { freePort } from '../servers/minio.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { damagedUploadIsRefused, damagedUploadIsStoredWithoutChecksum } from '../helpers/upload-checksum.ts';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';

const PASSWORD = 'stowage gcs test password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const MiB = 1024 * 1024;

const gcs = await startFakeGcs();
after(() => gcs.stop());

let buckets = 0;
/** Bucket names are global per server; each test gets its own. */
function newBucket(tag: string): string {
  return `${tag}-${process.pid}-${++buckets}`;
}

function newId(prefix = ''): string {
  return prefix + randomBytes(32).toString('hex').slice(prefix.length);
}

function backendOn(server: FakeGcsServer, opts: Partial<GCSBackendOptions> = {}): GCSBackend {
  return new GCSBackend({ apiEndpoint: server.endpoint, projectId: 'stowage-test', bucket: newBucket('t'), prefix: 'repo', ...opts });
}

function rawStorage(server: FakeGcsServer): Storage {
  return new Storage({ apiEndpoint: server.endpoint, projectId: 'stowage-test', retryOptions: { autoRetry: false } });
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

async function allObjects(storage: Storage, bucket: string): Promise<string[]> {
  const [files] = await storage.bucket(bucket).getFiles();
  return files.map((f) => f.name).sort();
}

/** A service account key that looks real (a fresh RSA key); the emulator never checks it. */
function fakeServiceAccount(): { client_email: string; private_key: string; project_id: string; type: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    type: 'service_account',
    project_id: 'stowage-test',
    client_email: 'backup@stowage-test.iam.gserviceaccount.com',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** A small folder with the usual shapes: text, nested folders, an empty file, 3 MiB of random bytes. */
async function makeSourceTree(dir: string): Promise<string> {
  const src = join(dir, 'src');
  await mkdir(join(src, 'nested', 'deeper'), { recursive: true });
  await writeFile(join(src, 'hello.txt'), 'hello from stowage\n');
  await writeFile(join(src, 'nested', 'deeper', 'notes.md'), '# notes\n'.repeat(500));
  await writeFile(join(src, 'nested', 'empty'), '');
  await writeFile(join(src, 'random-3mib.bin'), randomBytes(3 * MiB));
  await writeFile(join(src, 'repeated.bin'), Buffer.alloc(MiB, 'abcdefgh'));
  return src;
}

/** Stowage: init, back up `src`, restore it, and check stats and `check --read-data`. */
async function roundTrip(backend: Backend, src: string, work: string): Promise<void> {
  const repo = await Repository.init(backend, { password: PASSWORD, kdf: FAST_KDF });
  const res = await backup(await repo.loadIndex(), { paths: [src], hostname: 'round-trip' });
  assert.deepEqual(res.errors, []);

  // Open again from the server, so nothing is read from memory.
  const reopened = await Repository.open(backend, { password: PASSWORD });
  const indexed = await reopened.loadIndex();
  const snaps = await listSnapshots(reopened);
  assert.deepEqual(snaps.map((s) => s.id), [res.snapshotId]);
  const out = join(work, 'restored');
  await restore(indexed, snaps[0]!.snapshot.tree, { target: out });
  assert.deepEqual(await compareTrees(src, join(out, src)), []);

  const stats = await repositoryStats(indexed);
  assert.equal(stats.snapshotCount, 1);
  assert.equal(stats.totalFileCount, 5);
  assert.equal(stats.totalRestoreSize, 19 + 8 * 500 + 0 + 3 * MiB + MiB);
  assert.ok(stats.packCount >= 1);
  const report = await checkRepository(reopened, { readData: true });
  assert.deepEqual(report.errors, []);
  assert.ok(report.ok);
  assert.equal(report.packsRead, report.packs);
}

/** Stowage opens a repository restic wrote, finds its one snapshot, checks all data and restores it. */
async function assertStowageReads(b: Backend, src: string, out: string, what: string): Promise<void> {
  const repo = await Repository.open(b, { password: PASSWORD });
  const snaps = await listSnapshots(repo);
  assert.equal(snaps.length, 1, what);
  const report = await checkRepository(repo, { readData: true });
  assert.deepEqual(report.errors, [], what);
  await restore(await repo.loadIndex(), snaps[0]!.snapshot.tree, { target: out });
  assert.deepEqual(await compareTrees(src, join(out, src)), [], what);
}

/** Copies every repository file through `from` (list + load) into a local folder in restic's layout. */
async function copyToLocal(from: Backend, dir: string): Promise<number> {
  const to = new LocalBackend(dir);
  await to.create();
  let copied = 0;
  for (const type of FILE_TYPES) {
    for await (const info of from.list(type)) {
      const h = { type, name: info.name };
      const data = await from.load(h);
      assert.equal(data.length, info.size, `${type}/${info.name}: listed size`);
      await to.save(h, data);
      copied++;
    }
  }
  return copied;
}

backendConformance('GCSBackend on fake-gcs-server', async () => ({
  // A fresh bucket for each backend, so create() makes it and two backends never share one.
  backend: backendOn(gcs, { bucket: newBucket('conf') }),
  // The objects go away with the in-memory server.
  cleanup: async () => {},
}), { streamsFiles: true });

describe('GCSBackend on fake-gcs-server', () => {
  let raw: Storage;
  before(() => {
    raw = rawStorage(gcs);
  });

  it("stores files under the prefix in restic's layout", async () => {
    const b = backendOn(gcs, { prefix: '/backups/host-a/' });
    assert.equal(b.prefix, 'backups/host-a');
    await b.create();
    const pack = newId('ab');
    const key = newId();
    await b.save({ type: 'data', name: pack }, new Uint8Array([1, 2, 3]));
    await b.save({ type: 'keys', name: key }, new Uint8Array([4]));
    await b.save({ type: 'config', name: '' }, new Uint8Array([5, 6]));
    assert.deepEqual(await allObjects(raw, b.bucket), [`backups/host-a/config`, `backups/host-a/data/ab/${pack}`, `backups/host-a/keys/${key}`].sort());
    const [metadata] = await raw.bucket(b.bucket).file(`backups/host-a/data/ab/${pack}`).getMetadata();
    assert.equal(metadata.contentType, 'application/octet-stream');
    assert.equal(metadata.contentEncoding ?? '', '', 'stored as is, not gzipped');
  });

  it('creates a missing bucket, idempotently; lists nothing and finds nothing before', async () => {
    const b = backendOn(gcs);
    assert.deepEqual(await raw.bucket(b.bucket).exists(), [false]);
    assert.deepEqual(await collect(b.list('keys')), []);
    assert.deepEqual(await collect(b.list('config')), []);
    await assert.rejects(b.stat({ type: 'config', name: '' }), NotFoundError);
    await assert.rejects(b.load({ type: 'keys', name: newId() }), NotFoundError);
    await b.create();
    assert.deepEqual(await raw.bucket(b.bucket).exists(), [true]);
    await b.create();
    // A bucket made by someone else beforehand is used as it is.
    const existing = newBucket('pre');
    await raw.createBucket(existing);
    const c = backendOn(gcs, { bucket: existing, prefix: '' });
    await c.create();
    await c.save({ type: 'locks', name: newId() }, new Uint8Array(1));
    const names = await allObjects(raw, existing);
    assert.equal(names.length, 1);
    assert.match(names[0]!, /^locks\/[0-9a-f]{64}$/);
  });

  it('keeps repositories under different prefixes of one bucket apart', async () => {
    const bucket = newBucket('shared');
    const [root, sib, sibling] = ['', 'sib', 'sibling'].map((prefix) => backendOn(gcs, { bucket, prefix }));
    await root!.create();
    const ids = [newId(), newId(), newId()];
    await root!.save({ type: 'snapshots', name: ids[0]! }, new Uint8Array(1));
    await sib!.save({ type: 'snapshots', name: ids[1]! }, new Uint8Array(2));
    await sibling!.save({ type: 'snapshots', name: ids[2]! }, new Uint8Array(3));
    assert.deepEqual(await collect(root!.list('snapshots')), [{ name: ids[0], size: 1 }]);
    assert.deepEqual(await collect(sib!.list('snapshots')), [{ name: ids[1], size: 2 }]);
    assert.deepEqual(await collect(sibling!.list('snapshots')), [{ name: ids[2], size: 3 }]);
    await assert.rejects(sib!.stat({ type: 'snapshots', name: ids[2]! }), NotFoundError);
  });

  it('ignores objects outside the layout: packs outside their shard, names that are not IDs', async () => {
    const b = backendOn(gcs);
    await b.create();
    const good = newId('12');
    await b.save({ type: 'data', name: good }, new Uint8Array(7));
    const bucket = raw.bucket(b.bucket);
    for (const name of [`repo/data/${newId()}`, `repo/data/34/${newId('56')}`, `repo/data/12/${good}.tmp`, `repo/data/12/sub/${newId('12')}`]) {
      await bucket.file(name).save('x', { resumable: false });
    }
    assert.deepEqual(await collect(b.list('data')), [{ name: good, size: 7 }]);
  });

  it('stops a running load when the signal fires', async () => {
    const b = backendOn(gcs);
    await b.create();
    const h = { type: 'data' as const, name: newId() };
    await b.save(h, randomBytes(20 * MiB));
    const controller = new AbortController();
    const load = b.load(h, { signal: controller.signal });
    setTimeout(() => controller.abort(), 5);
    await assert.rejects(load, AbortedError);
    const listing = collect(b.list('data', { signal: AbortSignal.timeout(1) }));
    // Either the listing finished within 1 ms or it was cut short; it never hangs or lies. Under
    // load the connection the aborted load left may be reset before the 1 ms pass: that comes as
    // a transient BackendError (retried by the retry wrapper), which is no lie either.
    await listing.then(
      (infos) => assert.deepEqual(infos, [{ name: h.name, size: 20 * MiB }]),
      (err: unknown) => assert.ok(err instanceof AbortedError || (err instanceof BackendError && err.transient), String(err)),
    );
  });

  it('accepts a service account key as an object, as JSON text and as a key file', async () => {
    const key = fakeServiceAccount();
    const dir = await tmpDir('stowage-gcs-key');
    const keyFile = join(dir, 'key.json');
    await writeFile(keyFile, JSON.stringify(key), { mode: 0o600 });
    const bucket = newBucket('creds');
    const byObject = backendOn(gcs, { bucket, credentials: key, projectId: undefined });
    const byText = backendOn(gcs, { bucket, credentials: JSON.stringify(key) });
    const byFile = backendOn(gcs, { bucket, keyFilename: keyFile });
    await byObject.create();
    const h = { type: 'keys' as const, name: newId() };
    await byText.save(h, new Uint8Array([3, 2, 1]));
    assert.deepEqual(await byFile.load(h), new Uint8Array([3, 2, 1]));
    for (const b of [byObject, byText, byFile]) assert.ok(!b.location.includes('PRIVATE KEY'), b.location);
  });

  it('rejects malformed credentials without quoting the private key', async () => {
    const key = fakeServiceAccount();
    const broken = JSON.stringify(key).slice(0, -5);
    const secretLine = key.private_key.split('\n')[1]!;
    const cases: Array<Partial<GCSBackendOptions>> = [{ credentials: broken }, { credentials: JSON.stringify({ private_key: key.private_key }) }];
    const dir = await tmpDir('stowage-gcs-badkey');
    await writeFile(join(dir, 'broken.json'), broken);
    cases.push({ keyFilename: join(dir, 'broken.json') }, { keyFilename: join(dir, 'missing.json') });
    for (const opts of cases) {
      const b = backendOn(gcs, opts);
      await assert.rejects(b.stat({ type: 'config', name: '' }), (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, `${Object.keys(opts)[0]}: ${String(err)}`);
        assert.ok(!err.message.includes(secretLine), err.message);
        assert.ok(!err.message.includes('PRIVATE KEY'), err.message);
        return true;
      });
    }
  });

  it('reports a missing bucket on save as a permanent 404 naming the file', async () => {
    const b = backendOn(gcs);
    const h = { type: 'keys' as const, name: newId() };
    await assert.rejects(b.save(h, new Uint8Array(1)), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.transient, false);
      assert.equal(err.status, 404);
      assert.ok(err.message.startsWith(`save keys/${h.name}`), err.message);
      assert.ok(err.message.includes(b.location), err.message);
      return true;
    });
  });

  it('reports a server that does not answer as a transient error', async () => {
    const b = backendOn(gcs, { apiEndpoint: `http://127.0.0.1:${await freePort()}` });
    for (const call of [() => b.stat({ type: 'config', name: '' }), () => b.load({ type: 'index', name: newId() })]) {
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(err instanceof BackendError, String(err));
        assert.equal(err.transient, true);
        assert.equal(err.status, undefined);
        assert.match(err.message, /ECONNREFUSED/);
        return true;
      });
    }
  });

  it('describes its location without credentials, and checks its options', () => {
    const key = fakeServiceAccount();
    const b = new GCSBackend({ bucket: 'backups', prefix: 'host/repo', credentials: key });
    assert.equal(b.location, 'gs:backups:/host/repo');
    assert.equal(b.connections, 5);
    assert.equal(new GCSBackend({ bucket: 'b-1', apiEndpoint: 'http://127.0.0.1:4443/', connections: 9 }).location, 'gs:b-1:/ (http://127.0.0.1:4443)');
    const bad: Array<Partial<GCSBackendOptions>> = [
      { bucket: '' },
      { bucket: 'UPPER' },
      { bucket: 'a/b' },
      { bucket: 'ok', prefix: 'a/../b' },
      { bucket: 'ok', connections: 0 },
      { bucket: 'ok', apiEndpoint: 'ftp://host' },
      { bucket: 'ok', apiEndpoint: 'http://host/storage/v1' },
      { bucket: 'ok', credentials: key, keyFilename: '/k.json' },
    ];
    for (const opts of bad) {
      assert.throws(() => new GCSBackend(opts as GCSBackendOptions), (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, `${JSON.stringify(opts).slice(0, 80)}: ${String(err)}`);
        assert.ok(!err.message.includes('PRIVATE KEY'), err.message);
        return true;
      });
    }
  });

  it('loads @google-cloud/storage only when first used', async () => {
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
      const { GCSBackend } = await import(${JSON.stringify(resolve(import.meta.dirname, '../../src/backend/gcs.ts'))});
      const b = new GCSBackend({ apiEndpoint: ${JSON.stringify(gcs.endpoint)}, projectId: 'stowage-test', bucket: 'lazy-check' });
      const before = seen.some((s) => s.startsWith('@google-cloud/'));
      await b.create();
      console.log(JSON.stringify({ before, after: seen.some((s) => s.startsWith('@google-cloud/')) }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    assert.deepEqual(JSON.parse(stdout), { before: false, after: true });
  });

  it('round trip: init, backup, restore, stats and check --read-data', async () => {
    const work = await tmpDir('stowage-gcs-rt');
    await roundTrip(backendOn(gcs), await makeSourceTree(work), work);
  });
});

describe('GCS upload checksums (fake-gcs-server, through a proxy that flips one byte of the body)', () => {
  let proxy: TcpProxy;
  let backend: GCSBackend;
  before(async () => {
    proxy = await startTcpProxy({ targetPort: gcs.port });
    backend = backendOn(gcs, { apiEndpoint: proxy.url });
    await backend.create();
  });
  after(async () => {
    await backend.close();
    await proxy.close();
  });
  // The multipart upload (chunked): its body holds the metadata part, then the file's bytes, so
  // byte 64 Ki of the body is one of the 96 KiB file's.
  const match = (req: { method: string; path: string }): boolean => req.method === 'POST' && req.path.includes('/upload/');
  const offset = 64 * 1024;

  it('the server refuses a damaged upload (md5Hash and crc32c in the metadata); the retry stores it intact', async () => {
    const { error } = await damagedUploadIsRefused({ backend, proxy, match, offset });
    assert.equal(error.status, 400, `refused by the server, not by the SDK's check afterwards: ${error.message}`);
    // fake-gcs-server compares the MD5 (its message names it); whether it would compare the
    // CRC32C alone is not shown here. Real GCS checks both.
    assert.match(error.message, /doesn't match calculated MD5 hash/);
  });

  it('saveFile: an upload streamed from a local file carries the md5Hash of a first pass; the server refuses it damaged, the retry stores it', async () => {
    const { error } = await damagedUploadIsRefused({ backend, proxy, match, offset, fromFile: true });
    assert.equal(error.status, 400, error.message);
    assert.match(error.message, /doesn't match calculated MD5 hash/);
  });

  it('without the checksums the damaged bytes are stored', async () => {
    const unchecked = backendOn(gcs, { apiEndpoint: proxy.url, bucket: backend.bucket, uploadChecksums: false });
    try {
      await damagedUploadIsStoredWithoutChecksum({ backend: unchecked, proxy, match, offset });
    } finally {
      await unchecked.close();
    }
  });
});

describe('GCSBackend on fake-gcs-server with objects on disk', () => {
  let onDisk: FakeGcsServer;
  before(async () => {
    onDisk = await startFakeGcs({ filesystem: true });
  });
  after(() => onDisk?.stop());

  it('checks a whole download against the stored CRC32C', async () => {
    const b = backendOn(onDisk);
    await b.create();
    const h = { type: 'index' as const, name: newId() };
    const data = randomBytes(5000);
    await b.save(h, data);
    assert.deepEqual(await b.load(h), new Uint8Array(data));
    // Flip one byte of the stored object, as damage at rest would; its metadata stays.
    const stored = join(onDisk.dataDir!, b.bucket, 'repo', 'index', h.name);
    const fh = await open(stored, 'r+');
    await fh.write(Buffer.from([data[100]! ^ 0xff]), 0, 1, 100);
    await fh.close();
    await assert.rejects(b.load(h), (err: unknown) => {
      assert.ok(err instanceof IntegrityError, String(err));
      assert.equal(err.file, `index/${h.name}`);
      return true;
    });
    // A range cannot be checked against the whole object's CRC32C, so it is served as stored.
    const range = await b.load(h, { offset: 90, length: 20 });
    assert.equal(range[10], data[100]! ^ 0xff);
  });
});

describe('restic and Stowage share repositories through fake-gcs-server', () => {
  function resticOpts(bucket: string, prefix: string): Parameters<typeof resticOk>[2] {
    return {
      repo: `gs:${bucket}:/${prefix}`,
      password: PASSWORD,
      env: { STORAGE_EMULATOR_HOST: gcs.host, GOOGLE_ACCESS_TOKEN: 'emulator-needs-no-token', GOOGLE_PROJECT_ID: 'stowage-test' },
    };
  }

  it('restic 0.19 checks --read-data and restores what Stowage wrote; restic 0.14 checks a local copy', async () => {
    const work = await tmpDir('stowage-gcs-interop-a');
    const src = await makeSourceTree(work);
    const b = backendOn(gcs, { prefix: 'stowage/repo' });
    const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
    const res = await backup(await repo.loadIndex(), { paths: [src] });
    assert.deepEqual(res.errors, []);

    const opts = resticOpts(b.bucket, 'stowage/repo');
    await resticOk(resticBin('0.19'), ['check', '--read-data'], opts);
    const out = join(work, 'restic-0.19');
    await resticOk(resticBin('0.19'), ['restore', res.snapshotId, '--target', out], opts);
    assert.deepEqual(await compareTrees(src, join(out, src)), [], 'restic 0.19 restore through fake-gcs-server');

    // restic 0.14 cannot reach the emulator: copy the objects (through GCSBackend) and check the copy.
    const copy = join(work, 'local-copy');
    assert.ok((await copyToLocal(b, copy)) >= 5);
    const local = { repo: copy, password: PASSWORD };
    await resticOk(resticBin('0.14'), ['check', '--read-data'], local);
    const out14 = join(work, 'restic-0.14');
    await resticOk(resticBin('0.14'), ['restore', res.snapshotId, '--target', out14], local);
    assert.deepEqual(await compareTrees(src, join(out14, src)), [], 'restic 0.14 restore of the local copy');
  });

  it('Stowage checks and restores what restic 0.19 wrote through fake-gcs-server', async () => {
    const work = await tmpDir('stowage-gcs-interop-b');
    const src = await makeSourceTree(work);
    const bucket = newBucket('restic');
    await rawStorage(gcs).createBucket(bucket);
    const opts = resticOpts(bucket, 'restic-repo');
    await resticOk(resticBin('0.19'), ['init'], opts);
    await resticOk(resticBin('0.19'), ['backup', src], opts);
    await assertStowageReads(backendOn(gcs, { bucket, prefix: 'restic-repo' }), src, join(work, 'stowage'), 'restic 0.19 via fake-gcs-server');
  });
});
