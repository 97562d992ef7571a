// The requests a command's open, lock and index load make on a real rest-server, as the counting
// proxy sees them: config, keys and the listings at once; one listing of snapshots/ and index/
// per open (the CLI's holdListings), listed again once under a lock; no read of the own lock
// file and no HEAD before its DELETE. Guards the remote bench's request counts (issue 12).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { RestBackend } from '../../src/backend/rest.ts';
import { initCrypto } from '../../src/repository/crypto.ts';
import { Repository } from '../../src/repository/repository.ts';
import { Lock } from '../../src/repository/lock.ts';
import { loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { startRestServer, type RestServer } from '../servers/rest-server.ts';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'stowage rest requests password';
const KDF = { N: 1024, r: 8, p: 1 };

describe('requests of an open, a lock and an index load on rest-server', () => {
  let server: RestServer;
  let proxy: TcpProxy;
  let url: string;
  let cacheDir: string;

  before(async () => {
    await initCrypto();
    server = await startRestServer();
    proxy = await startTcpProxy({ targetPort: server.port });
    url = `${proxy.url}/repo/`;
    const repo = await Repository.init(new RestBackend(url), { password: PASSWORD, kdf: KDF });
    const src = await tmpDir('stowage-rest-requests');
    await mkdir(path.join(src, 'd'));
    await writeFile(path.join(src, 'd', 'f.txt'), 'one');
    await backup(repo, { paths: [src], hostname: 'h' });
    await writeFile(path.join(src, 'd', 'g.txt'), 'two');
    await backup(repo, { paths: [src], hostname: 'h' });
    await repo.close();
    cacheDir = await tmpDir('stowage-rest-requests-cache');
  });
  after(async () => {
    await proxy?.close();
    await server?.stop();
  });

  /** The request lines since the last reset, "METHOD path" without the repository prefix, sorted. */
  const lines = (): string[] => proxy.requests().map((r) => `${r.method} ${r.path.replace('/repo/', '').replace(/[0-9a-f]{64}/g, 'ID')}`).sort();

  it('open (warm cache) + index load + "latest" without a lock: 5 requests, each listing once', async () => {
    // Warm the cache first.
    const first = await Repository.open(new RestBackend(url), { password: PASSWORD, cache: { dir: cacheDir }, holdListings: true });
    await loadSnapshot(await first.loadIndex(), 'latest');
    await first.close();
    proxy.reset();
    const repo = await Repository.open(new RestBackend(url), { password: PASSWORD, cache: { dir: cacheDir }, holdListings: true });
    const latest = await loadSnapshot(await repo.loadIndex(), 'latest');
    assert.equal(latest.snapshot.hostname, 'h');
    await repo.close();
    assert.deepEqual(lines(), ['GET config', 'GET index/', 'GET keys/', 'GET keys/ID', 'GET snapshots/']);
  });

  it('open + lock + index load + "latest" + release: listings once, after the lock; no own-lock read, no HEAD', async () => {
    proxy.reset();
    const repo = await Repository.open(new RestBackend(url), { password: PASSWORD, cache: { dir: cacheDir }, holdListings: true, prefetch: [] });
    const lock = await Lock.acquire(repo, { exclusive: false, settleTime: 0 });
    await loadSnapshot(await repo.loadIndex(), 'latest');
    await lock.release();
    await repo.close();
    assert.deepEqual(lines(), [
      'DELETE locks/ID', 'GET config', 'GET index/', 'GET keys/', 'GET keys/ID', 'GET locks/', 'GET snapshots/', 'POST locks/ID',
    ]);
  });
});
