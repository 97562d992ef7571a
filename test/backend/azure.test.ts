// AzureBackend against azurite (http, and https with a self-signed CA): the shared backend
// conformance suite, Azure specifics (layout, prefixes, container creation, access tiers,
// credentials: key, SAS, connection string; errors, TLS, lazy loading), a repository round
// trip, and interop with real restic.
//
// restic and azurite: restic's azure backend builds https://<account>.blob.<suffix>/<container>
// (https only, account in the host name), which no local name resolves. restic 0.19.1 reaches
// azurite through AZURE_ENDPOINT_SUFFIX="x@127.0.0.1:<port>/devstoreaccount1": the text before
// "@" becomes URL user info, so the request goes to azurite's path-style URL. It also needs
// `-o azure.access-tier=Hot`, because without a tier restic sends an empty x-ms-access-tier
// header, which azurite refuses (400 InvalidHeaderValue). restic 0.14 has no endpoint setting
// at all, so for 0.14 the repository is copied to a local folder and checked there.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  BlobServiceClient,
  ContainerSASPermissions,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
} from '@azure/storage-blob';
import { AzureBackend } from '../../src/backend/azure.ts';
import type { AzureBackendOptions } from '../../src/backend/azure.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { FILE_TYPES } from '../../src/backend/backend.ts';
import type { Backend, FileInfo } from '../../src/backend/backend.ts';
import { BackendError, IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { backendConformance } from './conformance.ts';
import { startAzurite } from '../servers/azurite.ts';
import type { AzuriteServer } from '../servers/azurite.ts';
import { freePort } from '../servers/minio.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { damagedUploadIsRefused, damagedUploadIsStoredWithoutChecksum } from '../helpers/upload-checksum.ts';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';

const PASSWORD = 'stowage azure test password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const MiB = 1024 * 1024;

const azurite = await startAzurite();
after(() => azurite.stop());

let containers = 0;
/** Container names are per account; each test gets its own. */
function newContainer(tag: string): string {
  return `${tag}-${process.pid}-${++containers}`;
}

function newId(prefix = ''): string {
  return prefix + randomBytes(32).toString('hex').slice(prefix.length);
}

function backendOn(server: AzuriteServer, opts: Partial<AzureBackendOptions> = {}): AzureBackend {
  return new AzureBackend({
    endpoint: server.endpoint,
    accountName: server.accountName,
    accountKey: server.accountKey,
    container: newContainer('t'),
    prefix: 'repo',
    caCert: server.caCert,
    ...opts,
  });
}

function rawService(server: AzuriteServer): BlobServiceClient {
  return new BlobServiceClient(server.endpoint, new StorageSharedKeyCredential(server.accountName, server.accountKey));
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

async function allBlobs(service: BlobServiceClient, container: string): Promise<string[]> {
  const names: string[] = [];
  for await (const item of service.getContainerClient(container).listBlobsFlat()) names.push(item.name);
  return names.sort();
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

backendConformance('AzureBackend on azurite', async () => ({
  // A fresh container for each backend, so create() makes it and two backends never share one.
  backend: backendOn(azurite, { container: newContainer('conf') }),
  // The blobs go away with the in-memory server.
  cleanup: async () => {},
}), { streamsFiles: true });

describe('AzureBackend on azurite', () => {
  let raw: BlobServiceClient;
  before(() => {
    raw = rawService(azurite);
  });

  it("stores files under the prefix in restic's layout", async () => {
    const b = backendOn(azurite, { prefix: '/backups/host-a/' });
    assert.equal(b.prefix, 'backups/host-a');
    await b.create();
    const pack = newId('ab');
    const key = newId();
    await b.save({ type: 'data', name: pack }, new Uint8Array([1, 2, 3]));
    await b.save({ type: 'keys', name: key }, new Uint8Array([4]));
    await b.save({ type: 'config', name: '' }, new Uint8Array([5, 6]));
    assert.deepEqual(await allBlobs(raw, b.container), [`backups/host-a/config`, `backups/host-a/data/ab/${pack}`, `backups/host-a/keys/${key}`].sort());
    const props = await raw.getContainerClient(b.container).getBlobClient(`backups/host-a/data/ab/${pack}`).getProperties();
    assert.equal(props.contentType, 'application/octet-stream');
    assert.equal(props.blobType, 'BlockBlob');
  });

  it('creates a missing container, idempotently; lists nothing and finds nothing before', async () => {
    const b = backendOn(azurite);
    assert.equal(await raw.getContainerClient(b.container).exists(), false);
    assert.deepEqual(await collect(b.list('keys')), []);
    assert.deepEqual(await collect(b.list('config')), []);
    await assert.rejects(b.stat({ type: 'config', name: '' }), NotFoundError);
    await assert.rejects(b.load({ type: 'keys', name: newId() }), NotFoundError);
    await b.create();
    assert.equal(await raw.getContainerClient(b.container).exists(), true);
    await b.create();
    // A container made by someone else beforehand is used as it is.
    const existing = newContainer('pre');
    await raw.getContainerClient(existing).create();
    const c = backendOn(azurite, { container: existing, prefix: '' });
    await c.create();
    await c.save({ type: 'locks', name: newId() }, new Uint8Array(1));
    const names = await allBlobs(raw, existing);
    assert.equal(names.length, 1);
    assert.match(names[0]!, /^locks\/[0-9a-f]{64}$/);
  });

  it('keeps repositories under different prefixes of one container apart', async () => {
    const container = newContainer('shared');
    const [root, sib, sibling] = ['', 'sib', 'sibling'].map((prefix) => backendOn(azurite, { container, prefix }));
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

  it('ignores blobs outside the layout: packs outside their shard, names that are not IDs', async () => {
    const b = backendOn(azurite);
    await b.create();
    const good = newId('12');
    await b.save({ type: 'data', name: good }, new Uint8Array(7));
    const container = raw.getContainerClient(b.container);
    for (const name of [`repo/data/${newId()}`, `repo/data/34/${newId('56')}`, `repo/data/12/${good}.tmp`, `repo/data/12/sub/${newId('12')}`]) {
      await container.getBlockBlobClient(name).upload('x', 1);
    }
    assert.deepEqual(await collect(b.list('data')), [{ name: good, size: 7 }]);
  });

  it('checks a whole download against the MD5 stored with the blob', async () => {
    const b = backendOn(azurite);
    await b.create();
    const h = { type: 'index' as const, name: newId() };
    const data = randomBytes(5000);
    await b.save(h, data);
    assert.deepEqual(await b.load(h), new Uint8Array(data));
    // The stored MD5 no longer matches the bytes, as after damage at rest.
    const blob = raw.getContainerClient(b.container).getBlobClient(`repo/index/${h.name}`);
    await blob.setHTTPHeaders({ blobContentType: 'application/octet-stream', blobContentMD5: createHash('md5').update('other bytes').digest() });
    await assert.rejects(b.load(h), (err: unknown) => {
      assert.ok(err instanceof IntegrityError, String(err));
      assert.equal(err.file, `index/${h.name}`);
      return true;
    });
    // A range cannot be checked against the whole blob's MD5, so it is served.
    assert.deepEqual(await b.load(h, { offset: 10, length: 20 }), new Uint8Array(data.subarray(10, 30)));
  });

  it('applies Hot/Cool/Cold to every file, and Archive to data packs only', async () => {
    for (const tier of ['Cool', 'Archive'] as const) {
      const b = backendOn(azurite, { accessTier: tier });
      await b.create();
      const pack = { type: 'data' as const, name: newId() };
      const index = { type: 'index' as const, name: newId() };
      await b.save(pack, randomBytes(100));
      await b.save(index, randomBytes(100));
      const container = raw.getContainerClient(b.container);
      const packProps = await container.getBlobClient(`repo/data/${pack.name.slice(0, 2)}/${pack.name}`).getProperties();
      const indexProps = await container.getBlobClient(`repo/index/${index.name}`).getProperties();
      assert.equal(packProps.accessTier, tier, `${tier}: data pack`);
      if (tier === 'Archive') assert.notEqual(indexProps.accessTier, 'Archive', 'index stays readable');
      else assert.equal(indexProps.accessTier, tier, `${tier}: index`);
    }
  });

  it('works with a connection string and with a container SAS, neither of which shows in location or errors', async () => {
    const container = newContainer('creds');
    const byString = new AzureBackend({ connectionString: azurite.connectionString, container, prefix: 'r' });
    assert.ok(!byString.location.includes(azurite.accountKey), byString.location);
    assert.ok(byString.location.includes(azurite.endpoint), byString.location);
    await byString.create();
    const h = { type: 'keys' as const, name: newId() };
    await byString.save(h, new Uint8Array([9, 8, 7]));

    const sas = generateBlobSASQueryParameters(
      {
        containerName: container,
        permissions: ContainerSASPermissions.parse('racwdl'),
        expiresOn: new Date(Date.now() + 3600_000),
      },
      new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey),
    ).toString();
    const bySas = new AzureBackend({ endpoint: azurite.endpoint, sasToken: `?${sas}`, container, prefix: 'r' });
    const signature = new URLSearchParams(sas).get('sig')!;
    assert.ok(!bySas.location.includes(signature), bySas.location);
    await bySas.create();
    assert.deepEqual(await bySas.load(h), new Uint8Array([9, 8, 7]));
    assert.deepEqual(await collect(bySas.list('keys')), [{ name: h.name, size: 3 }]);
    // The SAS covers only this container: another one is refused, and the message has no signature.
    const elsewhere = new AzureBackend({ endpoint: azurite.endpoint, sasToken: sas, container: newContainer('other'), prefix: 'r' });
    await assert.rejects(elsewhere.save({ type: 'keys', name: newId() }, new Uint8Array(1)), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.transient, false);
      assert.equal(err.status, 403);
      assert.ok(!err.message.includes(signature), err.message);
      return true;
    });
  });

  it('reports a wrong account key as a permanent 403 that does not contain the key', async () => {
    const wrongKey = Buffer.from('not the key of this account, 64 bytes long...........').toString('base64');
    const b = backendOn(azurite, { accountKey: wrongKey });
    // create() is not in the list: azurite answers a bad key with 403 AuthorizationFailure (Azure
    // itself with AuthenticationFailed), which is also what a SAS without read rights on the
    // container gets, and that create() has to accept (as restic does).
    for (const call of [() => b.stat({ type: 'config', name: '' }), () => b.save({ type: 'keys', name: newId() }, new Uint8Array(1)), () => collect(b.list('keys'))]) {
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
        assert.equal(err.transient, false);
        assert.equal(err.status, 403);
        assert.ok(!err.message.includes(wrongKey), err.message);
        assert.ok(err.message.includes(b.location), err.message);
        return true;
      });
    }
  });

  it('reports a missing container on save as a permanent 404 naming the file', async () => {
    const b = backendOn(azurite);
    const h = { type: 'keys' as const, name: newId() };
    await assert.rejects(b.save(h, new Uint8Array(1)), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.transient, false);
      assert.equal(err.status, 404);
      assert.ok(err.message.startsWith(`save keys/${h.name}`), err.message);
      assert.match(err.message, /ContainerNotFound/);
      return true;
    });
  });

  it('reports a server that does not answer as a transient error', async () => {
    const b = backendOn(azurite, { endpoint: `http://127.0.0.1:${await freePort()}/devstoreaccount1` });
    await assert.rejects(b.stat({ type: 'config', name: '' }), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.transient, true);
      assert.equal(err.status, undefined);
      assert.match(err.message, /ECONNREFUSED/);
      return true;
    });
  });

  it('describes its location without credentials, and checks its options', () => {
    const key = Buffer.from('secret account key').toString('base64');
    const b = new AzureBackend({ accountName: 'acct', accountKey: key, container: 'backups', prefix: 'host/repo' });
    assert.equal(b.location, 'azure:backups:/host/repo (https://acct.blob.core.windows.net)');
    assert.equal(b.connections, 5);
    assert.equal(
      new AzureBackend({ accountName: 'acct', sasToken: 'sv=2020&sig=SECRETSIG', container: 'c-1', endpointSuffix: 'core.chinacloudapi.cn', connections: 9 }).location,
      'azure:c-1:/ (https://acct.blob.core.chinacloudapi.cn)',
    );
    const bad: Array<Partial<AzureBackendOptions>> = [
      { accountName: 'a', accountKey: key, container: '' },
      { accountName: 'a', accountKey: key, container: 'UPPER' },
      { accountName: 'a', accountKey: key, container: 'a--b' },
      { accountName: 'a', accountKey: key, container: 'ok', prefix: 'a/../b' },
      { accountName: 'a', accountKey: key, container: 'ok', connections: 0 },
      { accountName: 'a', accountKey: key, container: 'ok', accessTier: 'Frozen' as never },
      { accountName: 'a', container: 'ok' },
      { accountKey: key, container: 'ok' },
      { accountName: 'a', accountKey: key, sasToken: 'sig=x', container: 'ok' },
      { accountName: 'a', accountKey: key, container: 'ok', singlePutThreshold: 256 * 1024 * 1024 + 1 },
      { accountName: 'a', accountKey: key, container: 'ok', singlePutThreshold: 0 },
    ];
    for (const opts of bad) {
      assert.throws(() => new AzureBackend(opts as AzureBackendOptions), (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, `${JSON.stringify(opts)}: ${String(err)}`);
        assert.ok(!err.message.includes(key), err.message);
        return true;
      });
    }
  });

  it('loads @azure/storage-blob only when first used', async () => {
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
      const { AzureBackend } = await import(${JSON.stringify(resolve(import.meta.dirname, '../../src/backend/azure.ts'))});
      const b = new AzureBackend({ endpoint: ${JSON.stringify(azurite.endpoint)}, accountName: ${JSON.stringify(azurite.accountName)}, accountKey: ${JSON.stringify(azurite.accountKey)}, container: 'lazy-check' });
      const before = seen.some((s) => s.startsWith('@azure/'));
      await b.create();
      console.log(JSON.stringify({ before, after: seen.some((s) => s.startsWith('@azure/')) }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    assert.deepEqual(JSON.parse(stdout), { before: false, after: true });
  });

  it('round trip: init, backup, restore, stats and check --read-data', async () => {
    const work = await tmpDir('stowage-azure-rt');
    await roundTrip(backendOn(azurite), await makeSourceTree(work), work);
  });
});

describe('Azure upload checksums (azurite, through a proxy that flips one byte of the body)', () => {
  let proxy: TcpProxy;
  let backend: AzureBackend;
  before(async () => {
    proxy = await startTcpProxy({ targetPort: azurite.port });
    backend = backendOn(azurite, { endpoint: `${proxy.url}/${azurite.accountName}` });
    await backend.create();
  });
  after(async () => {
    await backend.close();
    await proxy.close();
  });
  const match = (req: { method: string; path: string }): boolean => req.method === 'PUT' && req.path.includes('/data/');

  it('azurite refuses a damaged Put Blob (Content-MD5, 400, transient); the retry stores it intact', async () => {
    const { error, request } = await damagedUploadIsRefused({ backend, proxy, match });
    assert.match(request.headers['content-md5'] ?? '', /^[A-Za-z0-9+/]{22}==$/);
    assert.equal(error.status, 400);
    // Azure's code is Md5Mismatch; azurite answers InvalidOperation with this message.
    assert.match(error.message, /Provided contentMD5 doesn't match/);
  });

  it('saveFile: a Put Blob streamed from a local file carries its Content-MD5 and Content-Length; azurite refuses it damaged, the retry stores it', async () => {
    const { error, request } = await damagedUploadIsRefused({ backend, proxy, match, fromFile: true });
    assert.match(request.headers['content-md5'] ?? '', /^[A-Za-z0-9+/]{22}==$/);
    assert.equal(request.headers['content-length'], String(96 * 1024));
    assert.equal(error.status, 400);
  });

  // Put Block (…?comp=block&blockid=…), not Put Block List (comp=blocklist).
  const putBlock = (req: { method: string; path: string }): boolean => match(req) && /[?&]comp=block(&|$)/.test(req.path);

  it('a large upload goes as staged blocks, each with its Content-MD5: azurite refuses a damaged Put Block; the retry stores it intact', async () => {
    // 700 KiB over a 256 KiB threshold: three blocks, the first damaged.
    const staged = backendOn(azurite, { endpoint: `${proxy.url}/${azurite.accountName}`, container: backend.container, singlePutThreshold: 256 * 1024 });
    try {
      const from = proxy.requests().length;
      const { error, request } = await damagedUploadIsRefused({ backend: staged, proxy, match: putBlock, size: 700 * 1024 });
      assert.match(request.headers['content-md5'] ?? '', /^[A-Za-z0-9+/]{22}==$/);
      assert.equal(error.status, 400);
      assert.match(error.message, /Provided contentMD5 doesn't match|Md5Mismatch/);
      const sent = proxy.requests().slice(from);
      assert.equal(sent.filter((r) => putBlock(r)).length, 4, 'three blocks, the damaged one twice');
      assert.equal(sent.filter((r) => /comp=blocklist/.test(r.path)).length, 1, 'one commit');
    } finally {
      await staged.close();
    }
  });

  it('without checksums a damaged staged block is stored', async () => {
    const staged = backendOn(azurite, { endpoint: `${proxy.url}/${azurite.accountName}`, container: backend.container, singlePutThreshold: 256 * 1024, uploadChecksums: false });
    try {
      const request = await damagedUploadIsStoredWithoutChecksum({ backend: staged, proxy, match: putBlock, size: 700 * 1024 });
      assert.equal(request.headers['content-md5'], undefined);
    } finally {
      await staged.close();
    }
  });

  it('without the Content-MD5 the damaged bytes are stored', async () => {
    const unchecked = backendOn(azurite, { endpoint: `${proxy.url}/${azurite.accountName}`, container: backend.container, uploadChecksums: false });
    try {
      const request = await damagedUploadIsStoredWithoutChecksum({ backend: unchecked, proxy, match });
      assert.equal(request.headers['content-md5'], undefined);
    } finally {
      await unchecked.close();
    }
  });
});

describe('restic and Stowage share repositories through azurite (https)', () => {
  let tls: AzuriteServer;
  before(async () => {
    tls = await startAzurite({ tls: true, oauth: true });
  });
  after(() => tls?.stop());

  /** restic 0.19's view of the account: see the top of this file for why it looks like this. */
  function resticOpts(container: string, prefix: string): { args: string[]; opts: Parameters<typeof resticOk>[2] } {
    return {
      args: ['--cacert', tls.caCertFile!, '-o', 'azure.access-tier=Hot'],
      opts: {
        repo: `azure:${container}:/${prefix}`,
        password: PASSWORD,
        env: {
          AZURE_ACCOUNT_NAME: tls.accountName,
          AZURE_ACCOUNT_KEY: tls.accountKey,
          AZURE_ENDPOINT_SUFFIX: `x@127.0.0.1:${tls.port}/${tls.accountName}`,
        },
      },
    };
  }

  it('trusts the CA it is given, and refuses an unknown certificate permanently unless insecureTls', async () => {
    const trusted = backendOn(tls);
    await trusted.create();
    const h = { type: 'keys' as const, name: newId() };
    await trusted.save(h, new Uint8Array([1, 2, 3]));
    const untrusted = backendOn(tls, { container: trusted.container, caCert: undefined });
    await assert.rejects(untrusted.stat(h), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.transient, false);
      assert.match(err.message, /self[- ]signed|certificate/i);
      return true;
    });
    const insecure = backendOn(tls, { container: trusted.container, caCert: undefined, insecureTls: true });
    assert.deepEqual(await insecure.stat(h), { name: h.name, size: 3 });
  });

  it('authenticates with an Azure AD token credential', async () => {
    // An unsigned token with the claims azurite checks (audience, issuer, lifetime).
    const now = Math.floor(Date.now() / 1000);
    const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const claims = { aud: 'https://storage.azure.com', iss: 'https://sts.windows.net/00000000-0000-0000-0000-000000000001/', iat: now - 60, nbf: now - 60, exp: now + 3600 };
    const token = `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`;
    const scopes: string[] = [];
    const credential = {
      getToken: async (scope: string | string[]) => {
        scopes.push(...[scope].flat());
        return { token, expiresOnTimestamp: (now + 3600) * 1000 };
      },
    };
    const b = new AzureBackend({ endpoint: tls.endpoint, credential, container: newContainer('aad'), caCert: tls.caCert });
    await b.create();
    const h = { type: 'snapshots' as const, name: newId() };
    await b.save(h, new Uint8Array([4, 2]));
    assert.deepEqual(await b.load(h), new Uint8Array([4, 2]));
    assert.ok(scopes.includes('https://storage.azure.com/.default'), scopes.join(', '));
    const expired = { getToken: async () => ({ token: `${part({ alg: 'none' })}.${part({ ...claims, exp: now - 10 })}.`, expiresOnTimestamp: Date.now() + 60_000 }) };
    const refused = new AzureBackend({ endpoint: tls.endpoint, credential: expired, container: b.container, caCert: tls.caCert });
    await assert.rejects(refused.stat(h), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.status, 403);
      assert.equal(err.transient, false);
      assert.match(err.message, /403 AuthenticationFailed/);
      assert.ok(!err.message.includes(token.slice(0, 40)), err.message);
      return true;
    });
  });

  it('restic 0.19 checks --read-data and restores what Stowage wrote; restic 0.14 checks a local copy', async () => {
    const work = await tmpDir('stowage-azure-interop-a');
    const src = await makeSourceTree(work);
    const b = backendOn(tls, { prefix: 'stowage/repo' });
    const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
    const res = await backup(await repo.loadIndex(), { paths: [src] });
    assert.deepEqual(res.errors, []);

    const { args, opts } = resticOpts(b.container, 'stowage/repo');
    await resticOk(resticBin('0.19'), [...args, 'check', '--read-data'], opts);
    const out = join(work, 'restic-0.19');
    await resticOk(resticBin('0.19'), [...args, 'restore', res.snapshotId, '--target', out], opts);
    assert.deepEqual(await compareTrees(src, join(out, src)), [], 'restic 0.19 restore through azurite');

    // restic 0.14 cannot reach azurite: copy the blobs (through AzureBackend) and check the copy.
    const copy = join(work, 'local-copy');
    assert.ok((await copyToLocal(b, copy)) >= 5);
    const local = { repo: copy, password: PASSWORD };
    await resticOk(resticBin('0.14'), ['check', '--read-data'], local);
    const out14 = join(work, 'restic-0.14');
    await resticOk(resticBin('0.14'), ['restore', res.snapshotId, '--target', out14], local);
    assert.deepEqual(await compareTrees(src, join(out14, src)), [], 'restic 0.14 restore of the local copy');
  });

  it('Stowage checks and restores what restic 0.19 wrote through azurite', async () => {
    const work = await tmpDir('stowage-azure-interop-b');
    const src = await makeSourceTree(work);
    const container = newContainer('restic');
    const { args, opts } = resticOpts(container, 'restic-repo');
    await resticOk(resticBin('0.19'), [...args, 'init'], opts);
    await resticOk(resticBin('0.19'), [...args, 'backup', src], opts);
    await assertStowageReads(backendOn(tls, { container, prefix: 'restic-repo' }), src, join(work, 'stowage'), 'restic 0.19 via azurite');
  });
});
