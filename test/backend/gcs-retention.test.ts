// GCS object retention and point-in-time recovery from generations.
//   (a) on fake-gcs-server (a real implementation of the JSON API, not ours): a versioned bucket
//       keeps generations; the as-of scenario of test/interop/lock-scenarios.ts (an attack with
//       the backup's own credentials, the view from before it restores byte-exact) runs on it;
//       the retention an upload carries and the one putRetention sets are stored and read back.
//       fake-gcs-server does not report object retention on buckets and does not refuse deleting
//       a retained object, so create()'s check and the enforcement are not tested on it.
//   (b) against a recording HTTP server on 127.0.0.1: the exact requests @google-cloud/storage
//       sends for create() (enableObjectRetention, versioning), a retained upload (retention in
//       the multipart metadata), putRetention (a PATCH with retention and no
//       overrideUnlockedRetention), and create()'s refusal of a bucket without object retention.
//       This checks what we send, not what GCS does with it.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { Storage } from '@google-cloud/storage';
import { GCSBackend } from '../../src/backend/gcs.ts';
import type { GCSBackendOptions } from '../../src/backend/gcs.ts';
import { retentionOf, versionsOf } from '../../src/backend/backend.ts';
import { ObjectLockError } from '../../src/errors.ts';
import { startFakeGcs } from '../servers/fake-gcs.ts';
import { asOfAfterAttack, type LockedStore } from '../interop/lock-scenarios.ts';
import { tmpDir } from '../helpers/tmp.ts';

const gcs = await startFakeGcs();
after(() => gcs.stop());
const storage = new Storage({ apiEndpoint: gcs.endpoint, projectId: 'stowage-test', retryOptions: { autoRetry: false } });

let buckets = 0;
async function versionedBucket(): Promise<string> {
  const name = `ret-${process.pid}-${++buckets}`;
  await storage.createBucket(name, { versioning: { enabled: true } });
  return name;
}

function backend(bucket: string, opts: Partial<GCSBackendOptions> = {}): GCSBackend {
  return new GCSBackend({ apiEndpoint: gcs.endpoint, projectId: 'stowage-test', bucket, prefix: 'repo', ...opts });
}

function newId(): string {
  return randomBytes(32).toString('hex');
}

describe('GCS generations and object retention on fake-gcs-server', () => {
  it('point-in-time recovery from generations: the view as of before an attack restores byte-exact', async () => {
    const bucket = await versionedBucket();
    const b = storage.bucket(bucket);
    const store: LockedStore = {
      // Versioning only: fake-gcs-server does not report object retention on a bucket, so create() would refuse objectRetention.
      backend: () => backend(bucket),
      currentKeys: async (prefix) => new Set((await b.getFiles({ prefix }))[0].map((f) => f.name)),
      retentionOf: async () => undefined,
      attackDelete: async (key) => {
        await b.file(key).delete();
      },
      attackPut: async (key, body) => {
        await b.file(key).save(Buffer.from(body), { resumable: false });
      },
    };
    await asOfAfterAttack(store, await tmpDir('stowage-gcs-asof'));
    assert.ok(versionsOf(backend(bucket)));
  });

  it('stores the retention of each upload but lock files, and putRetention extends it', async () => {
    const bucket = await versionedBucket();
    const b = backend(bucket, { objectRetention: { mode: 'GOVERNANCE', retainDays: 1 } });
    assert.equal(retentionOf(b)?.locksUploads, true);
    const started = Date.now();
    const snap = { type: 'snapshots' as const, name: newId() };
    const lock = { type: 'locks' as const, name: newId() };
    await b.save(snap, randomBytes(100));
    await b.save(lock, randomBytes(100));
    const [meta] = await storage.bucket(bucket).file(`repo/snapshots/${snap.name}`).getMetadata();
    assert.equal(meta.retention?.mode, 'Unlocked');
    const until = new Date(meta.retention!.retainUntilTime!).getTime();
    assert.ok(until >= started + 86_400_000 - 5000 && until <= Date.now() + 86_400_000);
    assert.equal((await storage.bucket(bucket).file(`repo/locks/${lock.name}`).getMetadata())[0].retention, undefined);
    const r = (await b.getRetention(snap))!;
    assert.equal(r.mode, 'GOVERNANCE');
    assert.equal(r.retainUntil.getTime(), until);
    const later = new Date(until + 86_400_000);
    await b.putRetention(snap, { mode: 'GOVERNANCE', retainUntil: later });
    assert.equal((await b.getRetention(snap))!.retainUntil.getTime(), later.getTime());
    assert.equal(await b.getRetention(lock), undefined);
  });
});

interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  body: string;
}

/** A GCS JSON API stand-in that records each request and answers just enough for the SDK. */
async function recordingGcs(bucketRetention: boolean): Promise<{ endpoint: string; requests: Recorded[]; stop(): Promise<void> }> {
  const requests: Recorded[] = [];
  let bucketExists = false;
  const objects = new Map<string, Record<string, unknown>>();
  const read = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('latin1');
  };
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const body = await read(req);
    requests.push({ method: req.method!, path: url.pathname, query: url.searchParams, body });
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const bucketMeta = () => ({ name: 'rec-bucket', versioning: { enabled: true }, ...(bucketRetention ? { objectRetention: { mode: 'Enabled' } } : {}) });
    if (req.method === 'GET' && url.pathname === '/storage/v1/b/rec-bucket') return bucketExists ? json(200, bucketMeta()) : json(404, { error: { code: 404, message: 'Not Found' } });
    if (req.method === 'POST' && url.pathname === '/storage/v1/b') {
      bucketExists = true;
      return json(200, bucketMeta());
    }
    if (req.method === 'POST' && url.pathname === '/upload/storage/v1/b/rec-bucket/o') {
      // multipart/related: the JSON metadata part first.
      const meta = JSON.parse(body.slice(body.indexOf('{'), body.indexOf('}\r\n') + 1)) as Record<string, unknown>;
      const stored = { ...meta, bucket: 'rec-bucket', generation: '1', size: '10', timeCreated: new Date().toISOString() };
      objects.set(String(meta.name ?? url.searchParams.get('name')), { ...stored, name: meta.name ?? url.searchParams.get('name') });
      return json(200, stored);
    }
    const m = /^\/storage\/v1\/b\/rec-bucket\/o\/(.+)$/.exec(url.pathname);
    if (m) {
      const name = decodeURIComponent(m[1]!);
      const o = objects.get(name);
      if (!o) return json(404, { error: { code: 404, message: 'No such object' } });
      if (req.method === 'PATCH') Object.assign(o, JSON.parse(body));
      return json(200, o);
    }
    json(501, { error: { code: 501, message: `not recorded: ${req.method} ${url.pathname}` } });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

describe('GCS object retention: the requests @google-cloud/storage sends (recording server)', () => {
  it('create() asks for object retention and versioning; uploads carry the retention; putRetention PATCHes without overrideUnlockedRetention', async () => {
    const rec = await recordingGcs(true);
    const b = new GCSBackend({ apiEndpoint: rec.endpoint, projectId: 'p', bucket: 'rec-bucket', prefix: 'repo', uploadChecksums: false, objectRetention: { mode: 'COMPLIANCE', retainSeconds: 3600 } });
    try {
      await b.create();
      const made = rec.requests.find((r) => r.method === 'POST' && r.path === '/storage/v1/b')!;
      assert.equal(made.query.get('enableObjectRetention'), 'true');
      assert.deepEqual(JSON.parse(made.body).versioning, { enabled: true });

      const h = { type: 'index' as const, name: newId() };
      const before = Date.now();
      await b.save(h, randomBytes(10));
      const upload = rec.requests.find((r) => r.path === '/upload/storage/v1/b/rec-bucket/o')!;
      assert.equal(upload.query.get('uploadType'), 'multipart');
      const meta = JSON.parse(upload.body.slice(upload.body.indexOf('{'), upload.body.indexOf('}\r\n') + 1));
      assert.equal(upload.query.get('name'), `repo/index/${h.name}`, 'the object name goes in the query');
      assert.equal(meta.retention.mode, 'Locked');
      const until = Date.parse(meta.retention.retainUntilTime);
      assert.ok(until >= before + 3_600_000 && until <= Date.now() + 3_600_000);

      const later = new Date(until + 60_000);
      await b.putRetention(h, { mode: 'COMPLIANCE', retainUntil: later });
      const patch = rec.requests.find((r) => r.method === 'PATCH')!;
      assert.equal(patch.path, `/storage/v1/b/rec-bucket/o/${encodeURIComponent(`repo/index/${h.name}`)}`);
      assert.deepEqual(JSON.parse(patch.body), { retention: { mode: 'Locked', retainUntilTime: later.toISOString() } });
      assert.equal(patch.query.get('overrideUnlockedRetention'), null, 'extending never needs the override');
      assert.deepEqual(await b.getRetention(h), { mode: 'COMPLIANCE', retainUntil: later });
    } finally {
      await rec.stop();
    }
  });

  it('create() refuses a bucket without object retention (ObjectLockError)', async () => {
    const rec = await recordingGcs(false);
    const b = new GCSBackend({ apiEndpoint: rec.endpoint, projectId: 'p', bucket: 'rec-bucket', objectRetention: { mode: 'GOVERNANCE', retainDays: 1 } });
    try {
      await assert.rejects(b.create(), (e: unknown) => e instanceof ObjectLockError && e.bucket === 'rec-bucket' && /object retention/.test(e.message));
    } finally {
      await rec.stop();
    }
  });
});
