// S3Backend against a real MinIO (http, and https with a self-signed CA): the shared backend
// conformance suite, S3 specifics (layout, prefixes, bucket creation, storage class, multipart,
// errors, TLS), a repository round trip, and interop with restic 0.14 and 0.19 through MinIO.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, HeadBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { S3Backend } from '../../src/backend/s3.ts';
import type { S3BackendOptions } from '../../src/backend/s3.ts';
import type { Backend, FileInfo } from '../../src/backend/backend.ts';
import { AbortedError, BackendError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { backendConformance } from './conformance.ts';
import { freePort, startMinio } from '../servers/minio.ts';
import type { MinioServer } from '../servers/minio.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticOk, resticVersions } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { damagedUploadIsRefused, damagedUploadIsStoredWithoutChecksum } from '../helpers/upload-checksum.ts';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';

const PASSWORD = 'stowage s3 test password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const MiB = 1024 * 1024;

const minio = await startMinio();
after(() => minio.stop());

let buckets = 0;
/** Bucket names are global per server; each test gets its own. */
function newBucket(tag: string): string {
  return `${tag}-${process.pid}-${++buckets}`;
}

function newId(prefix = ''): string {
  return prefix + randomBytes(32).toString('hex').slice(prefix.length);
}

function backendOn(server: MinioServer, opts: Partial<S3BackendOptions> = {}): S3Backend {
  return new S3Backend({
    endpoint: server.endpoint,
    bucket: newBucket('t'),
    prefix: 'repo',
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    caCert: server.caCert,
    ...opts,
  });
}

function rawClient(server: MinioServer): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Every key in a bucket (all pages). */
async function allKeys(client: S3Client, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const o of page.Contents ?? []) keys.push(o.Key!);
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

function resticEnv(server: MinioServer): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey };
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

backendConformance('S3Backend on MinIO', async () => ({
  // A fresh bucket for each backend, so create() makes it and two backends never share one.
  backend: backendOn(minio, { bucket: newBucket('conf') }),
  // The server's folder goes away with the server.
  cleanup: async () => {},
}), { streamsFiles: true });

describe('S3Backend on MinIO', () => {
  let raw: S3Client;
  before(() => {
    raw = rawClient(minio);
  });
  after(() => raw.destroy());

  it("stores files under the prefix in restic's layout", async () => {
    const b = backendOn(minio, { prefix: '/backups/host-a/' });
    try {
      assert.equal(b.prefix, 'backups/host-a');
      await b.create();
      const pack = newId('ab');
      const key = newId();
      await b.save({ type: 'data', name: pack }, new Uint8Array([1, 2, 3]));
      await b.save({ type: 'keys', name: key }, new Uint8Array([4]));
      await b.save({ type: 'config', name: '' }, new Uint8Array([5, 6]));
      assert.deepEqual(await allKeys(raw, b.bucket), [`backups/host-a/config`, `backups/host-a/data/ab/${pack}`, `backups/host-a/keys/${key}`].sort());
    } finally {
      await b.close();
    }
  });

  it('creates a missing bucket, idempotently; lists nothing and finds nothing before', async () => {
    const b = backendOn(minio);
    try {
      await assert.rejects(raw.send(new HeadBucketCommand({ Bucket: b.bucket })), (err: { $metadata?: { httpStatusCode?: number } }) => err.$metadata?.httpStatusCode === 404);
      assert.deepEqual(await collect(b.list('keys')), []);
      await assert.rejects(b.stat({ type: 'config', name: '' }), NotFoundError);
      await b.create();
      await raw.send(new HeadBucketCommand({ Bucket: b.bucket }));
      await b.create();
      // A bucket made by someone else beforehand is used as it is.
      const existing = newBucket('pre');
      await raw.send(new CreateBucketCommand({ Bucket: existing }));
      const c = backendOn(minio, { bucket: existing, prefix: '' });
      await c.create();
      await c.save({ type: 'locks', name: newId() }, new Uint8Array(1));
      assert.equal((await allKeys(raw, existing)).length, 1);
      assert.match((await allKeys(raw, existing))[0]!, /^locks\/[0-9a-f]{64}$/);
      await c.close();
    } finally {
      await b.close();
    }
  });

  it('keeps repositories under different prefixes of one bucket apart', async () => {
    const bucket = newBucket('shared');
    const [root, sib, sibling] = ['', 'sib', 'sibling'].map((prefix) => backendOn(minio, { bucket, prefix }));
    try {
      await root!.create();
      const ids = [newId(), newId(), newId()];
      await root!.save({ type: 'snapshots', name: ids[0]! }, new Uint8Array(1));
      await sib!.save({ type: 'snapshots', name: ids[1]! }, new Uint8Array(2));
      await sibling!.save({ type: 'snapshots', name: ids[2]! }, new Uint8Array(3));
      assert.deepEqual(await collect(root!.list('snapshots')), [{ name: ids[0], size: 1 }]);
      assert.deepEqual(await collect(sib!.list('snapshots')), [{ name: ids[1], size: 2 }]);
      assert.deepEqual(await collect(sibling!.list('snapshots')), [{ name: ids[2], size: 3 }]);
      await assert.rejects(sib!.stat({ type: 'snapshots', name: ids[2]! }), NotFoundError);
    } finally {
      for (const b of [root, sib, sibling]) await b!.close();
    }
  });

  it('applies the storage class to data packs only', async () => {
    const b = backendOn(minio, { storageClass: 'REDUCED_REDUNDANCY' });
    try {
      await b.create();
      const pack = { type: 'data' as const, name: newId() };
      const index = { type: 'index' as const, name: newId() };
      await b.save(pack, randomBytes(100));
      await b.save(index, randomBytes(100));
      const packHead = await raw.send(new HeadObjectCommand({ Bucket: b.bucket, Key: b.keyOf(pack) }));
      const indexHead = await raw.send(new HeadObjectCommand({ Bucket: b.bucket, Key: b.keyOf(index) }));
      assert.equal(packHead.StorageClass, 'REDUCED_REDUNDANCY');
      assert.notEqual(indexHead.StorageClass, 'REDUCED_REDUNDANCY');
    } finally {
      await b.close();
    }
  });

  it('uploads files above the multipart threshold in parts, and smaller ones in one PUT', async () => {
    const b = backendOn(minio, { multipartThreshold: 5 * MiB });
    try {
      await b.create();
      const big = { type: 'data' as const, name: newId() };
      const small = { type: 'data' as const, name: newId() };
      const bigData = randomBytes(13 * MiB);
      const smallData = randomBytes(5 * MiB);
      await b.save(big, bigData);
      await b.save(small, smallData);
      // A multipart object's ETag ends in "-<parts>": 13 MiB in 5 MiB parts is 3.
      const bigHead = await raw.send(new HeadObjectCommand({ Bucket: b.bucket, Key: b.keyOf(big) }));
      const smallHead = await raw.send(new HeadObjectCommand({ Bucket: b.bucket, Key: b.keyOf(small) }));
      assert.match(bigHead.ETag!, /-3"?$/);
      assert.doesNotMatch(smallHead.ETag!, /-\d+"?$/);
      assert.ok(Buffer.from(await b.load(big)).equals(bigData));
      assert.ok(Buffer.from(await b.load(big, { offset: 5 * MiB - 10, length: 20 })).equals(bigData.subarray(5 * MiB - 10, 5 * MiB + 10)));
      assert.ok(Buffer.from(await b.load(small)).equals(smallData));
    } finally {
      await b.close();
    }
  });

  it('leaves neither an object nor an unfinished multipart upload when a multipart save is aborted', async () => {
    const b = backendOn(minio, { multipartThreshold: 5 * MiB });
    try {
      await b.create();
      const h = { type: 'data' as const, name: newId() };
      const controller = new AbortController();
      const save = b.save(h, randomBytes(16 * MiB), { signal: controller.signal });
      // Let the upload start and send a part or so before pulling the plug.
      setTimeout(() => controller.abort(), 30);
      const outcome = await save.then(() => 'completed', (err: unknown) => (err instanceof AbortedError ? 'aborted' : err));
      if (outcome === 'completed') {
        assert.equal((await b.stat(h)).size, 16 * MiB);
      } else {
        assert.equal(outcome, 'aborted');
        await assert.rejects(b.stat(h), NotFoundError);
      }
      const pending = await raw.send(new ListMultipartUploadsCommand({ Bucket: b.bucket }));
      assert.deepEqual(pending.Uploads ?? [], [], 'no unfinished multipart upload is left behind');
    } finally {
      await b.close();
    }
  });

  it('reports wrong credentials as a permanent error that does not contain the secret', async () => {
    const secret = 'wrong-secret-ZQ8v1x9Lm2';
    const b = backendOn(minio, { credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: secret } });
    try {
      for (const call of [() => b.create(), () => b.save({ type: 'keys', name: newId() }, new Uint8Array(1)), () => collect(b.list('keys'))]) {
        await assert.rejects(call(), (err: unknown) => {
          assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
          assert.equal(err.transient, false);
          assert.equal(err.status, 403);
          assert.ok(!err.message.includes(secret), err.message);
          assert.ok(err.message.includes(b.location), err.message);
          return true;
        });
      }
    } finally {
      await b.close();
    }
  });

  it('reports a missing bucket on save as a permanent error naming the bucket', async () => {
    const b = backendOn(minio);
    try {
      const h = { type: 'keys' as const, name: newId() };
      await assert.rejects(b.save(h, new Uint8Array(1)), (err: unknown) => {
        assert.ok(err instanceof BackendError, String(err));
        assert.equal(err.transient, false);
        assert.equal(err.status, 404);
        assert.ok(err.message.startsWith(`save keys/${h.name}`), err.message);
        assert.ok(err.message.includes(`bucket ${b.bucket} does not exist`), err.message);
        return true;
      });
    } finally {
      await b.close();
    }
  });

  it('reports a server that does not answer as a transient error', async () => {
    const b = backendOn(minio, { endpoint: `http://127.0.0.1:${await freePort()}` });
    try {
      await assert.rejects(b.stat({ type: 'config', name: '' }), (err: unknown) => {
        assert.ok(err instanceof BackendError, String(err));
        assert.equal(err.transient, true);
        assert.match(err.message, /ECONNREFUSED/);
        return true;
      });
    } finally {
      await b.close();
    }
  });

  it('describes its location without credentials, and checks its options', () => {
    const b = new S3Backend({
      endpoint: 'https://s3.example.com:9000/',
      bucket: 'backups',
      prefix: 'host/repo',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'super-secret-key' },
    });
    assert.equal(b.location, 's3:https://s3.example.com:9000/backups/host/repo');
    assert.equal(b.connections, 5);
    assert.equal(new S3Backend({ bucket: 'b', region: 'eu-west-1' }).location, 's3:s3.eu-west-1.amazonaws.com/b');
    assert.equal(new S3Backend({ bucket: 'b', connections: 9 }).connections, 9);
    const bad: Array<Partial<S3BackendOptions>> = [
      { bucket: '' },
      { bucket: 'a/b' },
      { bucket: 'b', endpoint: 'ftp://host' },
      { bucket: 'b', endpoint: 'not a url' },
      { bucket: 'b', endpoint: 'https://key:Sup3rS3cr3t@host' },
      { bucket: 'b', prefix: 'a/../b' },
      { bucket: 'b', connections: 0 },
      { bucket: 'b', multipartThreshold: MiB },
      { bucket: 'b', credentials: { accessKeyId: 'x', secretAccessKey: '' } },
    ];
    for (const opts of bad) {
      assert.throws(() => new S3Backend(opts as S3BackendOptions), (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, `${JSON.stringify(opts)}: ${String(err)}`);
        assert.ok(!err.message.includes('Sup3rS3cr3t'), err.message);
        return true;
      });
    }
  });

  it('round trip: init, backup, restore, stats and check --read-data', async () => {
    const work = await tmpDir('stowage-s3-rt');
    const b = backendOn(minio);
    try {
      await roundTrip(b, await makeSourceTree(work), work);
    } finally {
      await b.close();
    }
  });
});

describe('restic and Stowage share repositories through MinIO', () => {
  it('restic 0.14 and 0.19 check --read-data and restore what Stowage wrote (s3:http)', async () => {
    const work = await tmpDir('stowage-s3-interop-a');
    const src = await makeSourceTree(work);
    const b = backendOn(minio, { prefix: 'stowage/repo' });
    // Which way the packs of data blobs go: from their temporary files through the driver's saveFile
    // (streamed, never whole in memory), not as bytes through save.
    const sent = { saveFile: 0, save: 0 };
    const saveFile = b.saveFile.bind(b);
    const save = b.save.bind(b);
    b.saveFile = (h, file, options) => {
      if (h.type === 'data') sent.saveFile++;
      return saveFile(h, file, options);
    };
    b.save = (h, data, options) => {
      if (h.type === 'data') sent.save++;
      return save(h, data, options);
    };
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [src] });
      assert.deepEqual(res.errors, []);
      let packs = 0;
      for await (const _ of b.list('data')) packs++;
      assert.ok(packs > 0);
      // The data blobs' packs went through saveFile; the one pack of tree blobs is built in memory
      // (tree packs are small, and the cache keeps them).
      assert.deepEqual(sent, { saveFile: packs - 1, save: 1 }, 'every pack of data blobs went through saveFile');
      for (const { name, bin } of resticVersions()) {
        const opts = { repo: `s3:${minio.endpoint}/${b.bucket}/stowage/repo`, password: PASSWORD, env: resticEnv(minio) };
        await resticOk(bin, ['check', '--read-data'], opts);
        const out = join(work, `restic-${name}`);
        await resticOk(bin, ['restore', res.snapshotId, '--target', out], opts);
        assert.deepEqual(await compareTrees(src, join(out, src)), [], `restic ${name} restore`);
      }
    } finally {
      await b.close();
    }
  });

  it('Stowage checks and restores what restic 0.14 and 0.19 wrote (s3:http)', async () => {
    const work = await tmpDir('stowage-s3-interop-b');
    const src = await makeSourceTree(work);
    for (const { name, bin } of resticVersions()) {
      const bucket = newBucket(`restic-${name.replace('.', '')}`);
      const opts = { repo: `s3:${minio.endpoint}/${bucket}/restic-repo`, password: PASSWORD, env: resticEnv(minio) };
      await resticOk(bin, ['init'], opts);
      await resticOk(bin, ['backup', src], opts);
      const b = backendOn(minio, { bucket, prefix: 'restic-repo' });
      try {
        await assertStowageReads(b, src, join(work, `stowage-${name}`), `restic ${name}`);
      } finally {
        await b.close();
      }
    }
  });
});

describe('S3 upload checksums (MinIO, through a proxy that flips one byte of the body)', () => {
  let proxy: TcpProxy;
  let backend: S3Backend;
  before(async () => {
    proxy = await startTcpProxy({ targetPort: minio.port });
    backend = backendOn(minio, { endpoint: proxy.url });
    await backend.create();
  });
  after(async () => {
    await backend.close();
    await proxy.close();
  });
  const match = (req: { method: string; path: string }): boolean => req.method === 'PUT' && req.path.includes('/data/');

  it('MinIO refuses a damaged PutObject (BadDigest, transient); the retry stores the bytes intact', async () => {
    const { error, request } = await damagedUploadIsRefused({ backend, proxy, match });
    // What the SDK sent: our Content-MD5, and no x-amz-checksum-* (requestChecksumCalculation WHEN_REQUIRED).
    assert.match(request.headers['content-md5'] ?? '', /^[A-Za-z0-9+/]{22}==$/);
    assert.deepEqual(Object.keys(request.headers).filter((k) => k.startsWith('x-amz-checksum') || k === 'x-amz-sdk-checksum-algorithm'), []);
    // MinIO checks both the signed payload SHA-256 and the Content-MD5; either may answer first.
    assert.match(error.message, /BadDigest|XAmzContentSHA256Mismatch/);
    assert.equal(error.status, 400);
  });

  it('saveFile: a PutObject and an UploadPart streamed from a local file carry their Content-MD5; MinIO refuses them damaged, the retry stores them', async () => {
    const { request, error } = await damagedUploadIsRefused({ backend, proxy, match, fromFile: true });
    assert.match(request.headers['content-md5'] ?? '', /^[A-Za-z0-9+/]{22}==$/);
    // A stream's payload is not signed, so the Content-MD5 is what refused it.
    assert.equal(request.headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD');
    assert.match(error.message, /BadDigest/);
    assert.equal(request.headers['content-length'], String(96 * 1024));
    const multipart = backendOn(minio, { endpoint: proxy.url, multipartThreshold: 5 * MiB, bucket: newBucket('mpf') });
    await multipart.create();
    try {
      const from = proxy.requests().length;
      const part = await damagedUploadIsRefused({ backend: multipart, proxy, match: (r) => match(r) && r.path.includes('partNumber=2'), size: 11 * MiB, fromFile: true });
      assert.match(part.request.headers['content-md5'] ?? '', /==$/);
      // 11 MiB in 5 MiB parts: the damaged second part fails the upload, which the retry makes
      // again from the file (parts 1, 2, then 1, 2, 3).
      const parts = proxy.requests().slice(from).filter((r) => r.method === 'PUT' && r.path.includes('partNumber='));
      assert.deepEqual(parts.map((r) => r.headers['content-length']).sort(), [1, 5, 5, 5, 5].map((n) => String(n * MiB)).sort(), 'two parts, then three');
    } finally {
      await multipart.close();
    }
  });

  it('MinIO refuses a damaged UploadPart of a multipart save too', async () => {
    const multipart = backendOn(minio, { endpoint: proxy.url, multipartThreshold: 5 * MiB, bucket: newBucket('mp') });
    await multipart.create();
    try {
      const { request } = await damagedUploadIsRefused({ backend: multipart, proxy, match: (r) => match(r) && r.path.includes('partNumber=2'), size: 6 * MiB });
      assert.match(request.headers['content-md5'] ?? '', /==$/);
    } finally {
      await multipart.close();
    }
  });

  it('Content-MD5 alone catches the damage (payload unsigned); without it the damage is stored', async () => {
    // The SDK signs a buffer body's SHA-256 (x-amz-content-sha256), which MinIO verifies too, so
    // the first test's refusal may come from either check. Here the driver's client sends
    // UNSIGNED-PAYLOAD instead, as SDKs do for streams and minio-go over https.
    const unsignedOn = async (opts: Partial<S3BackendOptions>): Promise<S3Backend> => {
      const b = backendOn(minio, { endpoint: proxy.url, ...opts });
      const { client } = await (b as unknown as { connect(): Promise<{ client: S3Client }> }).connect();
      client.middlewareStack.add(
        (next) => async (args) => {
          (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
          return next(args);
        },
        { step: 'build', name: 'stowageTestUnsignedPayload' },
      );
      return b;
    };
    const unsigned = await unsignedOn({ bucket: newBucket('unsigned') });
    const unchecked = await unsignedOn({ bucket: unsigned.bucket, uploadChecksums: false });
    await unsigned.create();
    try {
      const refused = await damagedUploadIsRefused({ backend: unsigned, proxy, match });
      assert.equal(refused.request.headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD');
      assert.match(refused.error.message, /BadDigest/);
      const stored = await damagedUploadIsStoredWithoutChecksum({ backend: unchecked, proxy, match });
      assert.equal(stored.headers['content-md5'], undefined);
    } finally {
      await unsigned.close();
      await unchecked.close();
    }
  });
});

describe('S3Backend over TLS (MinIO https, self-signed certificate)', () => {
  let tls: MinioServer;
  before(async () => {
    tls = await startMinio({ tls: true });
  });
  after(() => tls?.stop());

  it('connects with the CA certificate, refuses without it (permanently), and accepts insecureTls', async () => {
    const bucket = newBucket('tls');
    const trusted = backendOn(tls, { bucket });
    const untrusted = backendOn(tls, { bucket, caCert: undefined });
    const insecure = backendOn(tls, { bucket, caCert: undefined, insecureTls: true });
    try {
      await trusted.create();
      const h = { type: 'keys' as const, name: newId() };
      await trusted.save(h, new Uint8Array([1, 2, 3]));
      await assert.rejects(untrusted.create(), (err: unknown) => {
        assert.ok(err instanceof BackendError, String(err));
        assert.equal(err.transient, false);
        assert.match(err.message, /self[- ]signed|certificate/i);
        return true;
      });
      await insecure.create();
      assert.deepEqual(await collect(insecure.list('keys')), [{ name: h.name, size: 3 }]);
      assert.ok(trusted.location.startsWith('s3:https://127.0.0.1:'));
    } finally {
      for (const b of [trusted, untrusted, insecure]) await b.close();
    }
  });

  it('assumeRole: the STS call trusts the same CA certificate (and insecureTls) as the S3 requests', async () => {
    const bucket = newBucket('tls-sts');
    const assumeRole = { roleArn: 'arn:minio:iam:::role/stowage-test', stsEndpoint: tls.endpoint };
    const trusted = backendOn(tls, { bucket, assumeRole });
    const insecure = backendOn(tls, { bucket, caCert: undefined, insecureTls: true, assumeRole });
    const untrusted = backendOn(tls, { bucket, caCert: undefined, assumeRole });
    try {
      await trusted.create();
      const h = { type: 'keys' as const, name: newId() };
      await trusted.save(h, new Uint8Array([4, 5]));
      assert.deepEqual(await collect(insecure.list('keys')), [{ name: h.name, size: 2 }]);
      await assert.rejects(collect(untrusted.list('keys')), (err: unknown) => {
        assert.match(String((err as Error).message), /STS AssumeRole at https:.*(self[- ]signed|certificate)/i);
        return true;
      });
    } finally {
      for (const b of [trusted, insecure, untrusted]) await b.close();
    }
  });

  it('restic reads what Stowage wrote, and Stowage what restic wrote, over https with --cacert', async () => {
    const work = await tmpDir('stowage-s3-tls-interop');
    const src = await makeSourceTree(work);
    const ours = backendOn(tls, { prefix: 'from-stowage' });
    try {
      const repo = await Repository.init(ours, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [src] });
      for (const { name, bin } of resticVersions()) {
        const opts = { repo: `s3:${tls.endpoint}/${ours.bucket}/from-stowage`, password: PASSWORD, env: resticEnv(tls) };
        await resticOk(bin, ['--cacert', tls.caCertFile!, 'check', '--read-data'], opts);
        const out = join(work, `restic-${name}`);
        await resticOk(bin, ['--cacert', tls.caCertFile!, 'restore', res.snapshotId, '--target', out], opts);
        assert.deepEqual(await compareTrees(src, join(out, src)), [], `restic ${name} restore over https`);

        const bucket = newBucket(`tls-${name.replace('.', '')}`);
        const theirs = { repo: `s3:${tls.endpoint}/${bucket}/from-restic`, password: PASSWORD, env: resticEnv(tls) };
        await resticOk(bin, ['--cacert', tls.caCertFile!, 'init'], theirs);
        await resticOk(bin, ['--cacert', tls.caCertFile!, 'backup', src], theirs);
        const b = backendOn(tls, { bucket, prefix: 'from-restic' });
        try {
          await assertStowageReads(b, src, join(work, `stowage-${name}`), `restic ${name} over https`);
        } finally {
          await b.close();
        }
      }
    } finally {
      await ours.close();
    }
  });
});

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
