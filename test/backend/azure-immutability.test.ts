// Azure version-level immutability and the as-of view from blob versions. Azurite implements
// neither (no version IDs on uploads or in listings; Set Blob Immutability Policy answers "Current
// API is not implemented yet"; checked in the first test below), so everything else here is
// tested as the requests @azure/storage-blob sends, against a recording HTTP server on 127.0.0.1
// that answers just enough for the SDK. This checks what we send, not what Azure does with it.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { AzureBackend } from '../../src/backend/azure.ts';
import type { AzureBackendOptions } from '../../src/backend/azure.ts';
import { openBackend } from '../../src/backend/location.ts';
import { retentionOf } from '../../src/backend/backend.ts';
import { NotFoundError, ObjectLockError, ReadOnlyError } from '../../src/errors.ts';
import { startAzurite } from '../servers/azurite.ts';

const ACCOUNT = 'devstoreaccount1';
// Azurite's published development key; the recording server does not check signatures.
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

function newId(): string {
  return randomBytes(32).toString('hex');
}

interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
}

interface StoredVersion {
  versionId: string;
  body: Buffer;
  current: boolean;
}

/** Answers the Blob REST calls the SDK makes here, records each request. */
async function recordingAzure(opts: { containerImmutable: boolean; containerExists?: boolean }) {
  const requests: Recorded[] = [];
  const blobs = new Map<string, StoredVersion[]>();
  const policies = new Map<string, { until: string; mode: string }>();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    requests.push({ method: req.method!, path: decodeURIComponent(url.pathname), query: url.searchParams, headers: req.headers });
    const common = { 'x-ms-request-id': '1', 'x-ms-version': '2025-01-05', etag: '"0x1"', 'last-modified': new Date().toUTCString() };
    const path = decodeURIComponent(url.pathname).slice(`/${ACCOUNT}/rec/`.length);
    if (url.searchParams.get('restype') === 'container' && url.searchParams.get('comp') === 'list') {
      const prefix = url.searchParams.get('prefix') ?? '';
      const withVersions = (url.searchParams.get('include') ?? '').includes('versions');
      let xml = `<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1/${ACCOUNT}" ContainerName="rec"><Prefix>${prefix}</Prefix><Blobs>`;
      for (const [name, versions] of blobs) {
        if (!name.startsWith(prefix)) continue;
        for (const v of versions) {
          if (!withVersions && !v.current) continue;
          xml += `<Blob><Name>${name}</Name><VersionId>${v.versionId}</VersionId>${v.current ? '<IsCurrentVersion>true</IsCurrentVersion>' : ''}<Properties><Last-Modified>${new Date(Date.parse(v.versionId)).toUTCString()}</Last-Modified><Etag>0x1</Etag><Content-Length>${v.body.length}</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>`;
        }
      }
      xml += '</Blobs><NextMarker /></EnumerationResults>';
      res.writeHead(200, { ...common, 'content-type': 'application/xml' });
      return res.end(xml);
    }
    if (url.searchParams.get('restype') === 'container') {
      if (opts.containerExists === false) {
        res.writeHead(404, { ...common, 'x-ms-error-code': 'ContainerNotFound' });
        return res.end();
      }
      res.writeHead(200, { ...common, 'x-ms-immutable-storage-with-versioning-enabled': String(opts.containerImmutable) });
      return res.end();
    }
    if (req.method === 'PUT' && url.searchParams.get('comp') === 'immutabilityPolicies') {
      const p = { until: String(req.headers['x-ms-immutability-policy-until-date']), mode: String(req.headers['x-ms-immutability-policy-mode']) };
      policies.set(path, p);
      res.writeHead(200, { ...common, 'x-ms-immutability-policy-until-date': p.until, 'x-ms-immutability-policy-mode': p.mode });
      return res.end();
    }
    if (req.method === 'PUT') {
      const versionId = new Date().toISOString().replace('Z', '0000Z');
      const list = blobs.get(path) ?? [];
      for (const v of list) v.current = false;
      list.unshift({ versionId, body, current: true });
      blobs.set(path, list);
      if (req.headers['x-ms-immutability-policy-until-date']) {
        policies.set(path, { until: String(req.headers['x-ms-immutability-policy-until-date']), mode: String(req.headers['x-ms-immutability-policy-mode']) });
      }
      res.writeHead(201, { ...common, 'x-ms-version-id': versionId, 'x-ms-request-server-encrypted': 'true' });
      return res.end();
    }
    const versions = blobs.get(path);
    const wanted = url.searchParams.get('versionid');
    const v = wanted ? versions?.find((x) => x.versionId === wanted) : versions?.find((x) => x.current);
    if (!v) {
      res.writeHead(404, { ...common, 'x-ms-error-code': 'BlobNotFound' });
      return res.end();
    }
    const p = policies.get(path);
    const headers: Record<string, string | number> = { ...common, 'x-ms-blob-type': 'BlockBlob', 'content-type': 'application/octet-stream', 'x-ms-version-id': v.versionId };
    if (p) Object.assign(headers, { 'x-ms-immutability-policy-until-date': p.until, 'x-ms-immutability-policy-mode': p.mode });
    const range = /bytes=(\d+)-(\d*)/.exec(String(req.headers['x-ms-range'] ?? req.headers.range ?? ''));
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), v.body.length - 1) : v.body.length - 1;
      const part = v.body.subarray(start, end + 1);
      res.writeHead(206, { ...headers, 'content-length': part.length, 'content-range': `bytes ${start}-${end}/${v.body.length}` });
      return res.end(req.method === 'HEAD' ? undefined : part);
    }
    res.writeHead(200, { ...headers, 'content-length': v.body.length });
    res.end(req.method === 'HEAD' ? undefined : v.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:${port}/${ACCOUNT};`,
    requests,
    blobs,
    stop: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

function backendOn(connectionString: string, extra: Partial<AzureBackendOptions> = {}): AzureBackend {
  return new AzureBackend({ connectionString, container: 'rec', prefix: 'repo', ...extra });
}

describe('Azure version-level immutability', () => {
  it('Azurite implements neither blob versions nor immutability policies (so the tests below use a recording server)', async () => {
    const azurite = await startAzurite();
    after(() => azurite.stop());
    const b = new AzureBackend({ connectionString: azurite.connectionString, container: 'probe', prefix: 'repo' });
    await b.create();
    const h = { type: 'index' as const, name: newId() };
    await b.save(h, randomBytes(10));
    await assert.rejects(b.putRetention(h, { mode: 'GOVERNANCE', retainUntil: new Date(Date.now() + 3_600_000) }), /not implemented/i);
    // Without version IDs in the listing, the view finds nothing.
    const view = b.viewAsOf(new Date());
    await assert.rejects(view.stat(h), NotFoundError);
  });

  it('uploads carry the policy (Unlocked/Locked and the date), putRetention sets it, getRetention reads it', async () => {
    const rec = await recordingAzure({ containerImmutable: true });
    after(() => rec.stop());
    const b = backendOn(rec.connectionString, { immutability: { mode: 'GOVERNANCE', retainDays: 1 } });
    assert.equal(retentionOf(b)?.locksUploads, true);
    await b.create();
    const h = { type: 'snapshots' as const, name: newId() };
    const lock = { type: 'locks' as const, name: newId() };
    const before = Date.now();
    await b.save(h, randomBytes(10));
    await b.save(lock, randomBytes(10));
    const put = rec.requests.find((r) => r.method === 'PUT' && r.path.endsWith(`/snapshots/${h.name}`))!;
    assert.equal(put.headers['x-ms-immutability-policy-mode'], 'Unlocked');
    const until = Date.parse(String(put.headers['x-ms-immutability-policy-until-date']));
    // The header is RFC 1123 (whole seconds).
    assert.ok(until >= before + 86_400_000 - 1000 && until <= Date.now() + 86_400_000, String(put.headers['x-ms-immutability-policy-until-date']));
    const lockPut = rec.requests.find((r) => r.method === 'PUT' && r.path.endsWith(`/locks/${lock.name}`))!;
    assert.equal(lockPut.headers['x-ms-immutability-policy-mode'], undefined, 'lock files get no policy');

    const later = new Date(Math.floor(until / 1000) * 1000 + 86_400_000);
    await b.putRetention(h, { mode: 'COMPLIANCE', retainUntil: later });
    const set = rec.requests.find((r) => r.query.get('comp') === 'immutabilityPolicies')!;
    assert.equal(set.method, 'PUT');
    assert.equal(set.headers['x-ms-immutability-policy-mode'], 'Locked');
    assert.equal(Date.parse(String(set.headers['x-ms-immutability-policy-until-date'])), later.getTime());
    assert.deepEqual(await b.getRetention(h), { mode: 'COMPLIANCE', retainUntil: later });
    assert.equal(await b.getRetention(lock), undefined);
  });

  it('a multipart (staged blocks) upload carries the policy on Put Block List', async () => {
    const rec = await recordingAzure({ containerImmutable: true });
    after(() => rec.stop());
    const b = backendOn(rec.connectionString, { immutability: { mode: 'COMPLIANCE', retainSeconds: 600 }, singlePutThreshold: 1024, uploadChecksums: false });
    const h = { type: 'data' as const, name: newId() };
    await b.save(h, randomBytes(3000));
    const commit = rec.requests.find((r) => r.query.get('comp') === 'blocklist');
    assert.ok(commit, 'a Put Block List was sent');
    assert.equal(commit.headers['x-ms-immutability-policy-mode'], 'Locked');
    assert.ok(commit.headers['x-ms-immutability-policy-until-date']);
  });

  it('create() refuses a container without version-level immutability, and a missing one (ObjectLockError)', async () => {
    const plain = await recordingAzure({ containerImmutable: false });
    after(() => plain.stop());
    await assert.rejects(backendOn(plain.connectionString, { immutability: { mode: 'GOVERNANCE', retainDays: 1 } }).create(), (e: unknown) => e instanceof ObjectLockError && /version-level immutability/.test(e.message));
    const missing = await recordingAzure({ containerImmutable: false, containerExists: false });
    after(() => missing.stop());
    await assert.rejects(backendOn(missing.connectionString, { immutability: { mode: 'GOVERNANCE', retainDays: 1 } }).create(), (e: unknown) => e instanceof ObjectLockError && /cannot create/.test(e.message));
    assert.equal(missing.requests.filter((r) => r.method === 'PUT').length, 0, 'no container is created without immutability');
  });

  it('the as-of view lists versions (include=versions) and reads the one it picks by versionid', async () => {
    const rec = await recordingAzure({ containerImmutable: true });
    after(() => rec.stop());
    const b = backendOn(rec.connectionString);
    const snap = { type: 'snapshots' as const, name: newId() };
    await b.save(snap, Buffer.from('the good snapshot'));
    await new Promise((r) => setTimeout(r, 20));
    const asOf = new Date();
    await new Promise((r) => setTimeout(r, 20));
    // The attack: the snapshot overwritten, a junk one added.
    await b.save(snap, Buffer.from('junk'));
    const junk = { type: 'snapshots' as const, name: newId() };
    await b.save(junk, Buffer.from('junk'));
    const view = b.viewAsOf(asOf);
    const listed = [];
    for await (const f of view.list('snapshots')) listed.push(f);
    assert.deepEqual(listed, [{ name: snap.name, size: 'the good snapshot'.length }]);
    const list = rec.requests.find((r) => r.query.get('comp') === 'list')!;
    assert.equal(list.query.get('include'), 'versions');
    assert.equal(list.query.get('prefix'), 'repo/snapshots/');
    assert.equal(Buffer.from(await view.load(snap)).toString(), 'the good snapshot');
    const read = rec.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/snapshots/${snap.name}`)).at(-1)!;
    assert.equal(read.query.get('versionid'), rec.blobs.get(`repo/snapshots/${snap.name}`)!.at(-1)!.versionId);
    await assert.rejects(view.stat(junk), NotFoundError);
    await assert.rejects(view.save(junk, new Uint8Array(1)), ReadOnlyError);
  });

  it('-o azure.immutability gives the backend its policy', async () => {
    const backend = await openBackend('azure:rec:/repo', { extended: { 'azure.immutability': 'compliance:1d' }, env: { AZURE_ACCOUNT_NAME: ACCOUNT, AZURE_ACCOUNT_KEY: KEY } });
    assert.equal(retentionOf(backend)?.locksUploads, true);
    await backend.close();
  });
});
