// SwiftBackend against a real OpenStack Swift (Debian's python3-swift, single node, tempauth):
// the shared conformance suite, Swift specifics (object names, token expiry, Keystone logins),
// a repository round trip, and restic 0.14 / 0.19 reading and writing the same containers.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { SwiftBackend, swiftOptionsFromEnv } from '../../src/backend/swift.ts';
import type { SwiftBackendOptions } from '../../src/backend/swift.ts';
import type { FileInfo } from '../../src/backend/backend.ts';
import { AbortedError, BackendError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { backendConformance } from './conformance.ts';
import { startFakeKeystone, startSwift } from '../servers/swift.ts';
import type { FakeKeystone } from '../servers/swift.ts';
import { resticJson, resticOk, resticVersions } from '../helpers/restic.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { damagedUploadIsRefused, damagedUploadIsStoredWithoutChecksum } from '../helpers/upload-checksum.ts';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';

const swift = await startSwift();
after(() => swift.stop());

const PASSWORD = 'swift-test-password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

let containers = 0;
function newContainer(): string {
  return `stowage-${process.pid}-${++containers}-${randomBytes(3).toString('hex')}`;
}

function v1(extra: Partial<SwiftBackendOptions> = {}): SwiftBackend {
  return new SwiftBackend({ container: newContainer(), authUrl: swift.authUrl, username: swift.user, password: swift.key, ...extra });
}

function newId(): string {
  return randomBytes(32).toString('hex');
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The object names in a container, read directly from Swift (not through the backend). */
async function rawNames(container: string): Promise<string[]> {
  const res = await fetch(`${swift.storageUrl}/${container}?format=json`, { headers: { 'X-Auth-Token': await swift.token() } });
  assert.equal(res.status, 200);
  return ((await res.json()) as Array<{ name: string }>).map((e) => e.name).sort();
}

/** A small folder to back up: a few files, one of them 3 MiB of random bytes, and a subfolder. */
async function makeSource(dir: string): Promise<string> {
  const src = join(dir, 'src');
  await mkdir(join(src, 'sub', 'deeper'), { recursive: true });
  await writeFile(join(src, 'big.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(src, 'hello.txt'), 'hello swift\n');
  await writeFile(join(src, 'empty'), '');
  await writeFile(join(src, 'sub', 'notes.md'), '# notes\n'.repeat(500));
  await writeFile(join(src, 'sub', 'deeper', 'small.bin'), randomBytes(4096));
  return src;
}

backendConformance('swift (Debian python3-swift, tempauth)', async () => ({
  backend: v1({ prefix: '/nested/repo/' }),
  cleanup: async () => {},
}), { streamsFiles: true });

describe('SwiftBackend on a real Swift', () => {
  it('stores objects under restic names below the prefix, and reports a restic-style location', async () => {
    const container = newContainer();
    const b = new SwiftBackend({ container, prefix: 'a//b/', authUrl: swift.authUrl, username: swift.user, password: swift.key });
    assert.equal(b.location, `swift:${container}:/a/b`);
    assert.equal(b.connections, 5);
    await b.create();
    const key = newId();
    const pack = newId();
    await b.save({ type: 'config', name: '' }, new Uint8Array([1, 2, 3]));
    await b.save({ type: 'keys', name: key }, new Uint8Array([4]));
    await b.save({ type: 'data', name: pack }, new Uint8Array([5, 6]));
    assert.deepEqual(await rawNames(container), [`a/b/config`, `a/b/data/${pack.slice(0, 2)}/${pack}`, `a/b/keys/${key}`].sort());
  });

  it('logs in again and repeats the request when the token has expired', async () => {
    const b = v1();
    await b.create();
    const h = { type: 'snapshots' as const, name: newId() };
    await b.save(h, new Uint8Array([9, 8, 7]));
    const oldToken = await swift.token();
    await swift.expireTokens();
    // The old token really is gone: a request with it is refused.
    const res = await fetch(`${swift.storageUrl}`, { method: 'HEAD', headers: { 'X-Auth-Token': oldToken } });
    assert.equal(res.status, 401);
    assert.deepEqual(await b.load(h), new Uint8Array([9, 8, 7]));
    await swift.expireTokens();
    assert.deepEqual(await collect(b.list('snapshots')), [{ name: h.name, size: 3 }]);
    await swift.expireTokens();
    await b.remove(h);
    await assert.rejects(b.stat(h), NotFoundError);
  });

  it('fails with a permanent 401 when a given token expires and there is nothing to log in with', async () => {
    const token = await swift.token();
    const container = newContainer();
    const b = new SwiftBackend({ container, storageUrl: swift.storageUrl, authToken: token });
    await b.create();
    const h = { type: 'keys' as const, name: newId() };
    await b.save(h, new Uint8Array([1]));
    await swift.expireTokens();
    await assert.rejects(b.load(h), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.status, 401);
      assert.equal(err.transient, false);
      assert.ok(err.message.includes(`load keys/${h.name}`), err.message);
      assert.ok(!err.message.includes(token), 'no token in the message');
      return true;
    });
    // With credentials as well, the same given token is replaced after the 401.
    const withCreds = new SwiftBackend({ container, storageUrl: swift.storageUrl, authToken: token, authUrl: swift.authUrl, username: swift.user, password: swift.key });
    assert.deepEqual(await withCreds.load(h), new Uint8Array([1]));
  });

  it('keeps a backup and a check going while tokens are revoked every second', { timeout: 120_000 }, async () => {
    const b = v1({ connections: 8 });
    const dir = await tmpDir('stowage-swift-revoke');
    const src = await makeSource(dir);
    // Count the backend's logins (it calls the global fetch).
    const realFetch = globalThis.fetch;
    let logins = 0;
    globalThis.fetch = (input, init) => {
      if (String(input) === swift.authUrl) logins++;
      return realFetch(input, init);
    };
    // One revocation per second: a request that is refused logs in once more and is repeated,
    // so only two revocations within one request would fail it.
    let timer: NodeJS.Timeout | undefined;
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      await swift.expireTokens();
      timer = setInterval(() => void swift.expireTokens().catch(() => {}), 1000);
      const res = await backup(await repo.loadIndex(), { paths: [src] });
      const report = await checkRepository(repo, { readData: true });
      assert.ok(report.ok, JSON.stringify(report.errors));
      assert.ok(res.snapshotId);
    } finally {
      clearInterval(timer);
      globalThis.fetch = realFetch;
    }
    assert.ok(logins >= 2, `the backend logged in again after the revocation (${logins} logins)`);
  });

  it('refuses a wrong key with a permanent error that does not show the key', async () => {
    const b = v1({ password: 'not-the-key-xyz' });
    await assert.rejects(b.create(), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.status, 401);
      assert.equal(err.transient, false);
      assert.ok(err.message.includes('authentication failed'), err.message);
      assert.ok(!err.message.includes('not-the-key-xyz'), err.message);
      return true;
    });
  });

  it('reports an unreachable server as a transient error', async () => {
    const b = new SwiftBackend({ container: 'c', authUrl: 'http://127.0.0.1:9/auth/v1.0', username: 'u', password: 'p' });
    await assert.rejects(b.stat({ type: 'config', name: '' }), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.transient, true);
      assert.ok(!err.message.includes(':p@'), err.message);
      return true;
    });
  });

  it('gives up on a server that accepts but never answers, as a transient error', async () => {
    const silentSockets: Socket[] = [];
    const silent = createServer((socket) => silentSockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (silent.address() as { port: number }).port;
      const b = new SwiftBackend({ container: 'c', storageUrl: `http://127.0.0.1:${port}/v1/AUTH_x`, authToken: 't', timeoutMs: 300 });
      await assert.rejects(b.stat({ type: 'config', name: '' }), (err: unknown) => {
        assert.ok(err instanceof BackendError, String(err));
        assert.equal(err.transient, true);
        assert.match(err.message, /no complete answer within 0.3 s/);
        return true;
      });
    } finally {
      silent.close();
      for (const socket of silentSockets) socket.destroy();
    }
  });

  it('aborts a request that is waiting for the server', async () => {
    const b = v1();
    await b.create();
    const controller = new AbortController();
    const pending = b.save({ type: 'data', name: newId() }, new Uint8Array(8 * 1024 * 1024), { signal: controller.signal });
    setTimeout(() => controller.abort(), 1);
    await assert.rejects(pending, AbortedError);
  });

  it('maps other HTTP errors to BackendErrors with the status', async () => {
    const b = v1();
    await b.create();
    // Swift allows object names of at most 1024 bytes.
    const h = { type: 'keys' as const, name: 'k'.repeat(1100) };
    await assert.rejects(b.save(h, new Uint8Array([1])), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.status, 400);
      assert.equal(err.transient, false);
      assert.match(err.message, /^save keys\/k+ \(in swift:stowage-[^)]*\): HTTP 400 Bad Request: .*longer than 1024/);
      return true;
    });
  });
});

describe('Swift upload checksums (real Swift, through a proxy that flips one byte of the body)', () => {
  let proxy: TcpProxy;
  let backend: SwiftBackend;
  before(async () => {
    const storage = new URL(swift.storageUrl);
    proxy = await startTcpProxy({ targetPort: Number(storage.port) });
    // The storage URL tempauth hands out points at Swift itself: go to the proxy instead.
    backend = new SwiftBackend({ container: newContainer(), storageUrl: `${proxy.url}${storage.pathname}`, authToken: await swift.token() });
    await backend.create();
  });
  after(async () => {
    await backend.close();
    await proxy.close();
  });
  const match = (req: { method: string; path: string }): boolean => req.method === 'PUT' && req.path.includes('/data/');

  it('Swift refuses a damaged PUT (ETag, 422, transient); the retry stores it intact', async () => {
    const { error, request } = await damagedUploadIsRefused({ backend, proxy, match });
    assert.match(request.headers.etag ?? '', /^[0-9a-f]{32}$/);
    assert.equal(error.status, 422);
  });

  it('saveFile: a PUT streamed from a local file carries the ETag of a first pass and its Content-Length; Swift refuses it damaged, the retry stores it', async () => {
    const { error, request } = await damagedUploadIsRefused({ backend, proxy, match, fromFile: true });
    assert.match(request.headers.etag ?? '', /^[0-9a-f]{32}$/);
    assert.equal(request.headers['content-length'], String(96 * 1024));
    assert.equal(error.status, 422);
  });

  it('without the ETag the damaged bytes are stored', async () => {
    const storage = new URL(swift.storageUrl);
    const unchecked = new SwiftBackend({ container: backend.container, storageUrl: `${proxy.url}${storage.pathname}`, authToken: await swift.token(), uploadChecksums: false });
    try {
      const request = await damagedUploadIsStoredWithoutChecksum({ backend: unchecked, proxy, match });
      assert.equal(request.headers.etag, undefined);
    } finally {
      await unchecked.close();
    }
  });
});

describe('SwiftBackend with Keystone logins (a Keystone stand-in in front of the real Swift)', () => {
  let keystone: FakeKeystone;
  before(async () => {
    keystone = await startFakeKeystone(swift);
  });
  after(() => keystone?.stop());

  async function roundTrip(opts: Omit<SwiftBackendOptions, 'container'>): Promise<void> {
    const b = new SwiftBackend({ container: newContainer(), ...opts });
    await b.create();
    const h = { type: 'index' as const, name: newId() };
    const data = randomBytes(5000);
    await b.save(h, data);
    assert.deepEqual(await b.load(h, { offset: 100, length: 50 }), new Uint8Array(data.subarray(100, 150)));
    assert.deepEqual(await collect(b.list('index')), [{ name: h.name, size: 5000 }]);
  }

  it('v3 password login with a project scope, picking the region and public interface from the catalog', async () => {
    const before = keystone.calls.v3;
    await roundTrip({ authUrl: keystone.v3Url, username: keystone.user.name, password: keystone.user.password, userDomainName: 'Default', projectName: keystone.user.project, projectDomainName: 'Default', region: keystone.region });
    assert.equal(keystone.calls.v3, before + 1, 'one login for all requests');
  });

  it('v3 password login by user and project IDs', () =>
    roundTrip({ authUrl: keystone.v3Url, authVersion: 3, userId: keystone.user.id, password: keystone.user.password, projectId: keystone.user.projectId, region: keystone.region }));

  it('v3 application credential by ID and by name', async () => {
    await roundTrip({ authUrl: keystone.v3Url, applicationCredentialId: keystone.appCredential.id, applicationCredentialSecret: keystone.appCredential.secret, region: keystone.region });
    await roundTrip({
      authUrl: keystone.v3Url,
      applicationCredentialName: keystone.appCredential.name,
      applicationCredentialSecret: keystone.appCredential.secret,
      username: keystone.user.name,
      userDomainName: 'Default',
      region: keystone.region,
    });
  });

  it('v2 tenant login, from the OS_* environment names', async () => {
    const env = {
      OS_AUTH_URL: keystone.v2Url,
      OS_USERNAME: keystone.user.name,
      OS_PASSWORD: keystone.user.password,
      OS_TENANT_NAME: keystone.user.project,
      OS_REGION_NAME: keystone.region,
    };
    const before = keystone.calls.v2;
    await roundTrip(swiftOptionsFromEnv(env));
    assert.equal(keystone.calls.v2, before + 1);
  });

  it('logs in to Keystone again after Swift rejects the token', async () => {
    const b = new SwiftBackend({ container: newContainer(), authUrl: keystone.v3Url, username: keystone.user.name, password: keystone.user.password, projectName: keystone.user.project, region: keystone.region });
    await b.create();
    const before = keystone.calls.v3;
    await swift.expireTokens();
    const h = { type: 'locks' as const, name: newId() };
    await b.save(h, new Uint8Array([42]));
    assert.equal(keystone.calls.v3, before + 1);
    assert.deepEqual(await b.load(h), new Uint8Array([42]));
  });

  it('names region and interface when the catalog has no matching endpoint', async () => {
    const b = new SwiftBackend({ container: 'c', authUrl: keystone.v3Url, username: keystone.user.name, password: keystone.user.password, projectName: keystone.user.project, region: 'Atlantis' });
    await assert.rejects(b.create(), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.equal(err.transient, false);
      assert.match(err.message, /no object-store endpoint for region Atlantis, interface public/);
      assert.match(err.message, /RegionOne\/public/);
      return true;
    });
  });

  it('refuses a wrong password or secret with a permanent 401 that shows neither', async () => {
    for (const opts of [
      { authUrl: keystone.v3Url, username: keystone.user.name, password: 'wrong-pw-123', projectName: keystone.user.project },
      { authUrl: keystone.v3Url, applicationCredentialId: keystone.appCredential.id, applicationCredentialSecret: 'wrong-secret-456' },
      { authUrl: keystone.v2Url, username: keystone.user.name, password: 'wrong-pw-123', projectName: keystone.user.project },
    ]) {
      const b = new SwiftBackend({ container: 'c', ...opts });
      await assert.rejects(b.stat({ type: 'config', name: '' }), (err: unknown) => {
        assert.ok(err instanceof BackendError, String(err));
        assert.equal(err.status, 401);
        assert.equal(err.transient, false);
        assert.ok(!/wrong-(pw|secret)/.test(err.message), err.message);
        return true;
      });
    }
  });
});

describe('SwiftBackend options', () => {
  it('maps restic and Stash environment names, OS_* before ST_*', () => {
    assert.deepEqual(swiftOptionsFromEnv({ ST_AUTH: 'http://h/auth/v1.0', ST_USER: 'acct:user', ST_KEY: 'k' }), { authUrl: 'http://h/auth/v1.0', username: 'acct:user', password: 'k', authVersion: 1 });
    assert.deepEqual(
      swiftOptionsFromEnv({
        OS_AUTH_URL: 'https://keystone/v3',
        OS_USERNAME: 'u',
        OS_PASSWORD: 'p',
        OS_PROJECT_NAME: 'proj',
        OS_USER_DOMAIN_NAME: 'ud',
        OS_PROJECT_DOMAIN_NAME: 'pd',
        OS_REGION_NAME: 'r1',
        OS_INTERFACE: 'internal',
        ST_USER: 'ignored',
      }),
      { authUrl: 'https://keystone/v3', username: 'u', password: 'p', projectName: 'proj', userDomainName: 'ud', projectDomainName: 'pd', region: 'r1', interface: 'internal' },
    );
    assert.deepEqual(swiftOptionsFromEnv({ OS_APPLICATION_CREDENTIAL_ID: 'id', OS_APPLICATION_CREDENTIAL_SECRET: 's', OS_AUTH_URL: 'https://k/v3' }), {
      authUrl: 'https://k/v3',
      applicationCredentialId: 'id',
      applicationCredentialSecret: 's',
    });
    assert.deepEqual(swiftOptionsFromEnv({ OS_STORAGE_URL: 'https://s/v1/AUTH_x', OS_AUTH_TOKEN: 't', OS_TENANT_ID: 'tid' }), { storageUrl: 'https://s/v1/AUTH_x', authToken: 't', projectId: 'tid' });
    assert.deepEqual(swiftOptionsFromEnv({ OS_ENDPOINT_TYPE: 'publicURL', OS_IDENTITY_API_VERSION: '2' }), { interface: 'public', authVersion: 2 });
    assert.throws(() => swiftOptionsFromEnv({ OS_INTERFACE: 'sideways' }), InvalidInputError);
  });

  it('rejects options it cannot work with, without echoing secrets', () => {
    assert.throws(() => new SwiftBackend({ container: '' } as SwiftBackendOptions), InvalidInputError);
    assert.throws(() => new SwiftBackend({ container: 'a/b', storageUrl: 'http://s', authToken: 't' }), InvalidInputError);
    assert.throws(() => new SwiftBackend({ container: 'c' }), /needs an authUrl/);
    assert.throws(() => new SwiftBackend({ container: 'c', authUrl: 'http://h/auth/v1.0', username: 'u' }), /needs password/);
    assert.throws(() => new SwiftBackend({ container: 'c', authUrl: 'http://h/v3', applicationCredentialId: 'x' }), /applicationCredentialSecret/);
    assert.throws(() => new SwiftBackend({ container: 'c', prefix: 'a/../b', storageUrl: 'http://s', authToken: 't' }), InvalidInputError);
    assert.throws(() => new SwiftBackend({ container: 'c', storageUrl: 'ftp://s', authToken: 't' }), /http or https/);
    assert.throws(
      () => new SwiftBackend({ container: 'c', authUrl: 'http://user:hunter2@h/auth/v1.0', username: 'u', password: 'p', connections: 0 }),
      (err: unknown) => err instanceof InvalidInputError && !err.message.includes('hunter2'),
    );
    const b = new SwiftBackend({ container: 'c', storageUrl: 'http://s/v1/AUTH_x', authToken: 'secret-token' });
    assert.equal(b.location, 'swift:c:/');
    assert.ok(!b.location.includes('secret-token'));
  });
});

describe('SwiftBackend: repository round trip', () => {
  it('backs up, restores, counts and checks a repository in Swift', { timeout: 120_000 }, async () => {
    const dir = await tmpDir('stowage-swift-repo');
    const src = await makeSource(dir);
    const b = v1({ prefix: 'backups/host1' });
    const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
    const res = await backup(await repo.loadIndex(), { paths: [src] });

    const reopened = await Repository.open(v1({ container: b.container, prefix: 'backups/host1' }), { password: PASSWORD });
    const indexed = await reopened.loadIndex();
    const out = join(dir, 'out');
    await restore(indexed, res.snapshot.tree, { target: out });
    assert.deepEqual(await compareTrees(src, join(out, src)), []);
    const stats = await repositoryStats(indexed);
    assert.equal(stats.snapshotCount, 1);
    assert.equal(stats.totalFileCount, 5);
    assert.ok(stats.totalRestoreSize >= 3 * 1024 * 1024);
    const report = await checkRepository(reopened, { readData: true });
    assert.ok(report.ok, JSON.stringify(report.errors));
    assert.ok(report.packsRead > 0);
  });
});

describe('SwiftBackend and restic through the same Swift', () => {
  const restics = resticVersions();

  it('restic checks (--read-data) and restores what Stowage wrote', { timeout: 180_000 }, async () => {
    const dir = await tmpDir('stowage-swift-to-restic');
    const src = await makeSource(dir);
    const container = newContainer();
    const b = v1({ container, prefix: 'stowage-repo' });
    const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
    const res = await backup(await repo.loadIndex(), { paths: [src], hostname: 'swift-host' });
    for (const { name, bin } of restics) {
      const opts = { repo: `swift:${container}:/stowage-repo`, password: PASSWORD, env: swift.env };
      await resticOk(bin, ['check', '--read-data'], opts);
      const snaps = await resticJson<Array<{ id: string; hostname: string }>>(bin, ['snapshots'], opts);
      assert.deepEqual(snaps.map((s) => s.id), [res.snapshotId], `restic ${name} lists the snapshot`);
      const out = join(dir, `restored-by-${name}`);
      await resticOk(bin, ['restore', 'latest', '--target', out], opts);
      assert.deepEqual(await compareTrees(src, join(out, src)), [], `restic ${name} restore`);
    }
  });

  it('Stowage reads, checks and restores what restic wrote', { timeout: 180_000 }, async () => {
    const dir = await tmpDir('stowage-restic-to-swift');
    const src = await makeSource(dir);
    const container = newContainer();
    for (const { name, bin } of restics) {
      const prefix = `restic-${name}`;
      const opts = { repo: `swift:${container}:/${prefix}`, password: PASSWORD, env: swift.env };
      await resticOk(bin, ['init'], opts);
      await resticOk(bin, ['backup', src, '--host', 'restic-host'], opts);

      const repo = await Repository.open(v1({ container, prefix }), { password: PASSWORD });
      const report = await checkRepository(repo, { readData: true });
      assert.ok(report.ok, `restic ${name}: ${JSON.stringify(report.errors)}`);
      const snaps = await listSnapshots(repo);
      assert.equal(snaps.length, 1);
      const out = join(dir, `restored-from-${name}`);
      await restore(await repo.loadIndex(), snaps[0]!.snapshot.tree, { target: out });
      assert.deepEqual(await compareTrees(src, join(out, src)), [], `Stowage restore of restic ${name}'s repository`);
    }
  });
});
