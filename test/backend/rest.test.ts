// RestBackend against restic's real rest-server: the shared backend conformance suite, the REST
// specifics (layout, API v1/v2, upload verification, append-only, basic auth, TLS), a repository
// round trip, interop with restic 0.14 and 0.19 through the server, and error mapping against a
// small stub for the answers rest-server never gives (5xx, cut-off bodies, ignored ranges).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { mkdir, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RestBackend } from '../../src/backend/rest.ts';
import type { RestBackendOptions } from '../../src/backend/rest.ts';
import type { Backend, FileInfo } from '../../src/backend/backend.ts';
import { BackendError, IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { backendConformance } from './conformance.ts';
import { wrapBackend } from '../../src/backend/wrappers/stack.ts';
import { describeFile, loadPieces } from '../../src/backend/backend.ts';
import type { BackendEvent } from '../../src/backend/wrappers/observe.ts';
import { startRestServer } from '../servers/rest-server.ts';
import type { RestServer } from '../servers/rest-server.ts';
import { freePort } from '../servers/minio.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticOk, resticVersions } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { damagedUploadIsRefused, damagedUploadIsStoredWithoutChecksum } from '../helpers/upload-checksum.ts';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';

const PASSWORD = 'stowage rest test password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const MiB = 1024 * 1024;

// The conformance suite saves random bytes under random names, which a verifying server refuses.
const unverified = await startRestServer({ noVerifyUpload: true });
// Everything else runs against rest-server as deployed: names must be the SHA-256 of the bytes.
const server = await startRestServer();
after(() => Promise.all([unverified.stop(), server.stop()]));

let repos = 0;
function newRepoUrl(s: RestServer, tag = 'r'): string {
  return `${s.url}/${tag}-${++repos}/`;
}

function newId(prefix = ''): string {
  return prefix + randomBytes(32).toString('hex').slice(prefix.length);
}

/** Bytes and the name rest-server accepts for them. */
function contentFile(size: number): { name: string; data: Buffer } {
  const data = randomBytes(size);
  return { name: createHash('sha256').update(data).digest('hex'), data };
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function isBackendError(status: number | undefined, transient: boolean, check?: (message: string) => void) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
    assert.equal(err.status, status, err.message);
    assert.equal(err.transient, transient, err.message);
    check?.(err.message);
    return true;
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

/** Stowage opens a repository, finds its one snapshot, checks all data and restores it. */
async function assertStowageReads(b: Backend, src: string, out: string, what: string): Promise<void> {
  const repo = await Repository.open(b, { password: PASSWORD });
  const snaps = await listSnapshots(repo);
  assert.equal(snaps.length, 1, what);
  const report = await checkRepository(repo, { readData: true });
  assert.deepEqual(report.errors, [], what);
  assert.equal(report.packsRead, report.packs, what);
  await restore(await repo.loadIndex(), snaps[0]!.snapshot.tree, { target: out });
  assert.deepEqual(await compareTrees(src, join(out, src)), [], what);
}

backendConformance('RestBackend on rest-server', async () => ({
  backend: new RestBackend(newRepoUrl(unverified, 'conf')),
  // The server's folder goes away with the server.
  cleanup: async () => {},
}), { idNamesOnly: true, streamsFiles: true });

describe('RestBackend on rest-server', () => {
  it("creates restic's folders with POST /?create=true; files land where rest-server keeps them", async () => {
    const url = newRepoUrl(server);
    const b = new RestBackend(url);
    try {
      await b.create();
      await b.create();
      const dir = join(server.dataDir, new URL(url).pathname);
      assert.deepEqual((await readdir(dir)).sort(), ['data', 'index', 'keys', 'locks', 'snapshots']);
      assert.equal((await readdir(join(dir, 'data'))).length, 256);
      const pack = contentFile(1000);
      await b.save({ type: 'data', name: pack.name }, pack.data);
      await b.save({ type: 'config', name: '' }, new Uint8Array([1, 2]));
      assert.equal((await stat(join(dir, 'data', pack.name.slice(0, 2), pack.name))).size, 1000);
      assert.equal((await stat(join(dir, 'config'))).size, 2);
    } finally {
      await b.close();
    }
  });

  it('lists with API v1 (names, then a HEAD per file) the same as with v2 (names and sizes)', async () => {
    const url = newRepoUrl(server);
    const v2 = new RestBackend(url);
    const v1 = new RestBackend(url, { apiVersion: 1 });
    try {
      await v2.create();
      for (let i = 0; i < 12; i++) {
        const f = contentFile(10 + i);
        await v2.save({ type: i % 2 ? 'data' : 'index', name: f.name }, f.data);
      }
      for (const type of ['data', 'index', 'keys'] as const) {
        const listed = await collect(v2.list(type));
        assert.equal(listed.length, type === 'keys' ? 0 : 6);
        assert.deepEqual(await collect(v1.list(type)), listed, `list ${type}`);
      }
    } finally {
      await v1.close();
      await v2.close();
    }
  });

  it('saving a file that exists with the same bytes succeeds (a retried upload)', async () => {
    const b = new RestBackend(newRepoUrl(server));
    try {
      await b.create();
      const f = contentFile(5000);
      await b.save({ type: 'snapshots', name: f.name }, f.data);
      await b.save({ type: 'snapshots', name: f.name }, f.data);
      assert.deepEqual(await collect(b.list('snapshots')), [{ name: f.name, size: 5000 }]);
    } finally {
      await b.close();
    }
  });

  it('reports bytes that do not match their name (upload verification) as a permanent error', async () => {
    const b = new RestBackend(newRepoUrl(server));
    try {
      await b.create();
      const h = { type: 'data' as const, name: newId() };
      await assert.rejects(b.save(h, randomBytes(100)), isBackendError(400, false, (m) => assert.ok(m.startsWith(`save data/${h.name.slice(0, 2)}/${h.name}`), m)));
      await assert.rejects(b.stat(h), NotFoundError);
    } finally {
      await b.close();
    }
  });

  it('refuses names the protocol does not allow with a permanent error that says why', async () => {
    const b = new RestBackend(newRepoUrl(server));
    try {
      await b.create();
      await assert.rejects(b.save({ type: 'keys', name: 'not-an-id' }, randomBytes(10)), isBackendError(404, false, (m) => assert.match(m, /64-hex/)));
    } finally {
      await b.close();
    }
  });

  it('reports a server that does not answer as a transient error', async () => {
    const b = new RestBackend(`http://127.0.0.1:${await freePort()}/repo/`);
    try {
      await assert.rejects(b.stat({ type: 'config', name: '' }), isBackendError(undefined, true, (m) => assert.match(m, /ECONNREFUSED/)));
    } finally {
      await b.close();
    }
  });

  it('describes its location without the password, and checks its options', () => {
    const b = new RestBackend('https://alice:pa%3Ass@backup.example.com:8000/host/repo');
    assert.equal(b.location, 'rest:https://alice@backup.example.com:8000/host/repo/');
    assert.equal(b.connections, 5);
    assert.equal(new RestBackend('http://h/r/', { username: 'bob', password: 'x', connections: 2 }).location, 'rest:http://bob@h/r/');
    assert.equal(new RestBackend('http://h/r/', { connections: 2 }).connections, 2);
    for (const [url, opts] of [
      ['ftp://h/r/', {}],
      ['not a url', {}],
      ['http://u:secret@h/r/?x=1', {}],
      ['http://h/r/', { connections: 0 }],
      ['http://h/r/', { apiVersion: 3 }],
    ] as Array<[string, RestBackendOptions]>) {
      assert.throws(() => new RestBackend(url, opts), (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, `${url}: ${String(err)}`);
        assert.ok(!err.message.includes('secret'), err.message);
        return true;
      });
    }
  });

  it('round trip: init, backup, restore, stats and check --read-data', async () => {
    const work = await tmpDir('stowage-rest-rt');
    const src = await makeSourceTree(work);
    const b = new RestBackend(newRepoUrl(server));
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [src], hostname: 'round-trip' });
      assert.deepEqual(res.errors, []);
      const reopened = await Repository.open(b, { password: PASSWORD });
      const indexed = await reopened.loadIndex();
      const stats = await repositoryStats(indexed);
      assert.equal(stats.snapshotCount, 1);
      assert.equal(stats.totalFileCount, 5);
      assert.equal(stats.totalRestoreSize, 19 + 8 * 500 + 3 * MiB + MiB);
      await assertStowageReads(b, src, join(work, 'restored'), 'Stowage round trip');
    } finally {
      await b.close();
    }
  });
});

describe('RestBackend: restore reads each pack with one request', () => {
  it('restores 40 MiB in 16 MiB packs with one ranged GET per data pack, each byte of it once', async () => {
    const work = await tmpDir('stowage-rest-one-read');
    const src = join(work, 'src');
    await mkdir(join(src, 'small'), { recursive: true });
    for (let i = 0; i < 13; i++) await writeFile(join(src, `big-${i}.bin`), randomBytes(3 * MiB + i));
    for (let i = 0; i < 40; i++) await writeFile(join(src, 'small', `f${i}.txt`), `small file ${i}\n`.repeat(i + 1));
    const events: BackendEvent[] = [];
    const b = wrapBackend(new RestBackend(newRepoUrl(server)), { observe: (e) => events.push(e) });
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [src], hostname: 'one-read' });
      assert.deepEqual(res.errors, []);
      const indexed = await (await Repository.open(b, { password: PASSWORD })).loadIndex();
      const dataPacks = new Map<string, number>();
      for (const [packId, blobs] of indexed.index.packs()) {
        if (blobs.some((x) => x.type === 'data')) dataPacks.set(packId, 0);
      }
      assert.ok(dataPacks.size >= 3, `${dataPacks.size} data packs`);
      events.length = 0;
      await restore(indexed, res.snapshotId, { target: join(work, 'out') });
      assert.deepEqual(await compareTrees(src, join(work, 'out', src)), []);
      let bytes = 0;
      for (const e of events) {
        if (e.op !== 'load' || e.type !== 'data' || !dataPacks.has(e.name!)) continue;
        assert.equal(e.error, undefined);
        dataPacks.set(e.name!, dataPacks.get(e.name!)! + 1);
        bytes += e.bytes!;
      }
      assert.deepEqual([...dataPacks.values()], [...dataPacks.values()].map(() => 1), 'one request per data pack');
      const packBytes = [...indexed.index.packs()].filter(([id]) => dataPacks.has(id)).reduce((n, [, blobs]) => n + blobs.reduce((m, x) => m + x.length, 0), 0);
      assert.ok(bytes <= packBytes, `${bytes} bytes read for ${packBytes} bytes of blobs`);
    } finally {
      await b.close();
    }
  });
});

describe('RestBackend: saveFile of a file cut short while it is sent', () => {
  it('is an IntegrityError naming both files, the request is cut off, and rest-server stores nothing', async () => {
    // A slow link (4 MiB/s), so the upload is still reading the file when it is truncated.
    const proxy = await startTcpProxy({ targetPort: unverified.port, bytesPerSecond: 4 * MiB });
    const b = new RestBackend(`${proxy.url}/cut-${++repos}/`);
    const dir = await tmpDir('stowage-rest-cut');
    try {
      await b.create();
      const path = join(dir, 'pack');
      const size = 32 * MiB;
      await writeFile(path, randomBytes(size));
      const h = { type: 'data' as const, name: newId() };
      const started = Date.now();
      const save = b.saveFile(h, { path, size });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await truncate(path, MiB);
      await assert.rejects(save, (err: unknown) => {
        assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${String(err)}`);
        assert.ok(err.message.includes(path) && err.message.includes(describeFile(h)), err.message);
        return true;
      });
      assert.ok(Date.now() - started < 5000, 'the upload was cut off, not sent to its end');
      await assert.rejects(b.stat(h), NotFoundError);
    } finally {
      await b.close();
      await proxy.close();
    }
  });
});

describe('RestBackend: a stream read to its end keeps its connection', () => {
  it('reads a range 5 times through the wrappers over one kept-alive connection', async () => {
    const proxy = await startTcpProxy({ targetPort: unverified.port });
    const b = wrapBackend(new RestBackend(`${proxy.url}/keep-alive-${++repos}/`));
    try {
      await b.create();
      const h = { type: 'data' as const, name: newId() };
      const data = randomBytes(3 * MiB);
      await b.save(h, data);
      proxy.reset();
      for (let i = 0; i < 5; i++) {
        const pieces: Uint8Array[] = [];
        for await (const piece of loadPieces(b, h, { offset: 1000, length: 2 * MiB })) pieces.push(piece);
        assert.ok(Buffer.concat(pieces).equals(data.subarray(1000, 1000 + 2 * MiB)));
      }
      assert.deepEqual([proxy.stats().requests, proxy.stats().connections], [5, 0], 'five requests on the connection the save opened');
    } finally {
      await b.close();
      await proxy.close();
    }
  });
});

describe('restic and Stowage share repositories through rest-server', () => {
  it('restic 0.14 and 0.19 check --read-data and restore what Stowage wrote (rest:http)', async () => {
    const work = await tmpDir('stowage-rest-interop-a');
    const src = await makeSourceTree(work);
    const url = newRepoUrl(server, 'from-stowage');
    const b = new RestBackend(url);
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [src] });
      assert.deepEqual(res.errors, []);
      for (const { name, bin } of resticVersions()) {
        const opts = { repo: `rest:${url}`, password: PASSWORD };
        await resticOk(bin, ['check', '--read-data'], opts);
        const out = join(work, `restic-${name}`);
        await resticOk(bin, ['restore', res.snapshotId, '--target', out], opts);
        assert.deepEqual(await compareTrees(src, join(out, src)), [], `restic ${name} restore`);
      }
    } finally {
      await b.close();
    }
  });

  it('Stowage checks and restores what restic 0.14 and 0.19 wrote (rest:http), with API v1 and v2', async () => {
    const work = await tmpDir('stowage-rest-interop-b');
    const src = await makeSourceTree(work);
    for (const { name, bin } of resticVersions()) {
      const url = newRepoUrl(server, `from-restic-${name}`);
      const opts = { repo: `rest:${url}`, password: PASSWORD };
      await resticOk(bin, ['init'], opts);
      await resticOk(bin, ['backup', src], opts);
      for (const apiVersion of [2, 1] as const) {
        const b = new RestBackend(url, { apiVersion });
        try {
          await assertStowageReads(b, src, join(work, `stowage-${name}-v${apiVersion}`), `restic ${name}, API v${apiVersion}`);
        } finally {
          await b.close();
        }
      }
    }
  });
});

describe('REST upload checks (rest-server, through a proxy that flips one byte of the body)', () => {
  // The REST protocol sends no checksum: rest-server checks a file's bytes against its name.
  let proxy: TcpProxy;
  let unverifiedProxy: TcpProxy;
  before(async () => {
    proxy = await startTcpProxy({ targetPort: server.port });
    unverifiedProxy = await startTcpProxy({ targetPort: unverified.port });
  });
  after(async () => {
    await proxy.close();
    await unverifiedProxy.close();
  });
  const match = (req: { method: string; path: string }): boolean => req.method === 'POST' && req.path.includes('/data/');
  const through = async (p: TcpProxy): Promise<RestBackend> => {
    const b = new RestBackend(`${p.url}/ck-${++repos}/`);
    await b.create();
    return b;
  };

  it('saveFile: a damaged upload streamed from a local file (Content-Length body) is refused and retried the same way', async () => {
    const backend = await through(proxy);
    try {
      const { error, request } = await damagedUploadIsRefused({ backend, proxy, match, fromFile: true });
      assert.equal(error.status, 400);
      assert.match(error.message, /damaged on the way/);
      assert.equal(request.headers['content-length'], String(96 * 1024));
    } finally {
      await backend.close();
    }
  });

  it('rest-server refuses a damaged upload (400, transient: the bytes match their name here); the retry stores it intact', async () => {
    const backend = await through(proxy);
    try {
      const { error } = await damagedUploadIsRefused({ backend, proxy, match });
      assert.equal(error.status, 400);
      assert.match(error.message, /damaged on the way/);
    } finally {
      await backend.close();
    }
  });

  it('a rest-server that does not verify uploads stores the damaged bytes', async () => {
    const backend = await through(unverifiedProxy);
    try {
      await damagedUploadIsStoredWithoutChecksum({ backend, proxy: unverifiedProxy, match });
    } finally {
      await backend.close();
    }
  });
});

describe('RestBackend on an append-only rest-server', () => {
  let appendOnly: RestServer;
  before(async () => {
    appendOnly = await startRestServer({ appendOnly: true });
  });
  after(() => appendOnly?.stop());

  it('backs up; removing data fails with a permanent 403, removing a lock works', async () => {
    const work = await tmpDir('stowage-rest-append-only');
    const src = await makeSourceTree(work);
    const url = newRepoUrl(appendOnly);
    const b = new RestBackend(url);
    try {
      const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
      const res = await backup(await repo.loadIndex(), { paths: [src] });
      assert.deepEqual(res.errors, []);
      const packs = await collect(b.list('data'));
      assert.ok(packs.length >= 1);
      const pack = { type: 'data' as const, name: packs[0]!.name };
      await assert.rejects(b.remove(pack), isBackendError(403, false, (m) => {
        assert.ok(m.startsWith(`remove data/${pack.name.slice(0, 2)}/${pack.name}`), m);
        assert.match(m, /append-only/);
      }));
      assert.deepEqual(await b.stat(pack), { name: pack.name, size: packs[0]!.size });
      const snapshot = { type: 'snapshots' as const, name: res.snapshotId };
      await assert.rejects(b.remove(snapshot), isBackendError(403, false));
      const lock = contentFile(50);
      await b.save({ type: 'locks', name: lock.name }, lock.data);
      await b.remove({ type: 'locks', name: lock.name });
      await assert.rejects(b.stat({ type: 'locks', name: lock.name }), NotFoundError);
      // A retried upload of a file that exists is still fine.
      const again = await b.load(pack);
      await b.save(pack, again);
      // restic reads it all back.
      const { bin } = resticVersions()[1]!;
      await resticOk(bin, ['check', '--read-data'], { repo: `rest:${url}`, password: PASSWORD });
    } finally {
      await b.close();
    }
  });
});

describe('RestBackend with basic auth (htpasswd)', () => {
  let authed: RestServer;
  before(async () => {
    authed = await startRestServer({ auth: true });
  });
  after(() => authed?.stop());

  it('authenticates from the URL or the options; a wrong password is a permanent 401 that does not show it', async () => {
    const path = `/auth-${++repos}/`;
    const user = encodeURIComponent(authed.username!);
    const pass = encodeURIComponent(authed.password!);
    const fromUrl = new RestBackend(`http://${user}:${pass}@127.0.0.1:${authed.port}${path}`);
    const fromOptions = new RestBackend(`${authed.url}${path}`, { username: authed.username, password: authed.password });
    const wrong = new RestBackend(`${authed.url}${path}`, { username: authed.username, password: 'Wr0ng-pass-Zx' });
    const anonymous = new RestBackend(`${authed.url}${path}`);
    try {
      assert.ok(!fromUrl.location.includes(authed.password!) && !fromUrl.location.includes(pass), fromUrl.location);
      assert.equal(fromUrl.location, `rest:http://${user}@127.0.0.1:${authed.port}${path}`);
      await fromUrl.create();
      await Repository.init(fromOptions, { password: PASSWORD, kdf: FAST_KDF });
      const f = contentFile(64);
      await fromUrl.save({ type: 'index', name: f.name }, f.data);
      assert.deepEqual(await collect(fromOptions.list('index')), [{ name: f.name, size: 64 }]);
      const check = (m: string): void => {
        assert.ok(!m.includes('Wr0ng-pass-Zx'), m);
        assert.match(m, /401/);
      };
      await assert.rejects(wrong.load({ type: 'index', name: f.name }), isBackendError(401, false, check));
      await assert.rejects(collect(wrong.list('index')), isBackendError(401, false, check));
      await assert.rejects(anonymous.stat({ type: 'index', name: f.name }), isBackendError(401, false));
      // restic opens what Stowage created, with the same URL.
      const { bin } = resticVersions()[1]!;
      const repoUrl = `rest:http://${user}:${pass}@127.0.0.1:${authed.port}${path}`;
      const config = JSON.parse((await resticOk(bin, ['cat', 'config'], { repo: repoUrl, password: PASSWORD })).stdout) as { version: number };
      assert.equal(config.version, 2);
    } finally {
      for (const b of [fromUrl, fromOptions, wrong, anonymous]) await b.close();
    }
  });
});

describe('RestBackend over TLS (self-signed certificate)', () => {
  let tls: RestServer;
  before(async () => {
    tls = await startRestServer({ tls: true });
  });
  after(() => tls?.stop());

  it('connects with the CA certificate, refuses without it (permanently), and accepts insecureTls', async () => {
    const url = newRepoUrl(tls);
    const trusted = new RestBackend(url, { caCert: tls.caCert });
    const untrusted = new RestBackend(url);
    const insecure = new RestBackend(url, { insecureTls: true });
    try {
      await trusted.create();
      const f = contentFile(99);
      await trusted.save({ type: 'index', name: f.name }, f.data);
      await assert.rejects(untrusted.stat({ type: 'index', name: f.name }), isBackendError(undefined, false, (m) => assert.match(m, /self[- ]signed|certificate/i)));
      assert.deepEqual(await collect(insecure.list('index')), [{ name: f.name, size: 99 }]);
      // restic reads what Stowage wrote over https with --cacert.
      const work = await tmpDir('stowage-rest-tls');
      const src = await makeSourceTree(work);
      const repoUrl = newRepoUrl(tls);
      const b = new RestBackend(repoUrl, { caCert: Buffer.from(tls.caCert!) });
      try {
        const repo = await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF });
        await backup(await repo.loadIndex(), { paths: [src] });
        for (const { bin } of resticVersions()) {
          await resticOk(bin, ['--cacert', tls.caCertFile!, 'check', '--read-data'], { repo: `rest:${repoUrl}`, password: PASSWORD });
        }
      } finally {
        await b.close();
      }
    } finally {
      for (const b of [trusted, untrusted, insecure]) await b.close();
    }
  });
});

describe('RestBackend error mapping (stub server for answers rest-server does not give)', () => {
  let stub: Server;
  let base: string;
  let handler: (req: IncomingMessage, res: ServerResponse) => void = () => {};
  before(async () => {
    stub = createServer((req, res) => handler(req, res));
    await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
    const addr = stub.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/repo/`;
  });
  after(() => new Promise<void>((resolve) => stub.close(() => resolve())));

  const h = { type: 'data' as const, name: newId() };

  it('maps 500, 503, 429 and 408 to transient errors and 507, 400 and 403 to permanent ones', async () => {
    const b = new RestBackend(base);
    try {
      for (const [status, transient] of [[500, true], [503, true], [429, true], [408, true], [507, false], [400, false], [403, false]] as const) {
        handler = (_req, res) => {
          res.writeHead(status).end('nope');
        };
        await assert.rejects(b.load(h), isBackendError(status, transient, (m) => assert.ok(m.startsWith(`load data/`), m)));
      }
    } finally {
      await b.close();
    }
  });

  it('turns a body cut off mid-way into a transient error, and a missing file into NotFoundError', async () => {
    const b = new RestBackend(base);
    try {
      handler = (_req, res) => {
        res.writeHead(200, { 'Content-Length': '1000' });
        res.write(Buffer.alloc(10));
        setTimeout(() => res.destroy(), 20);
      };
      await assert.rejects(b.load(h), isBackendError(undefined, true));
      handler = (_req, res) => {
        res.writeHead(404).end();
      };
      await assert.rejects(b.load(h), NotFoundError);
      await assert.rejects(b.stat(h), NotFoundError);
      await assert.rejects(b.remove(h), NotFoundError);
      // A missing type folder lists as empty, as restic treats it.
      assert.deepEqual(await collect(b.list('keys')), []);
    } finally {
      await b.close();
    }
  });

  it('cuts the range out when a server ignores Range, and rejects a short ranged answer', async () => {
    const file = randomBytes(1000);
    const b = new RestBackend(base);
    try {
      handler = (_req, res) => {
        res.writeHead(200, { 'Content-Length': String(file.length) }).end(file);
      };
      assert.ok(Buffer.from(await b.load(h, { offset: 100, length: 50 })).equals(file.subarray(100, 150)));
      await assert.rejects(b.load(h, { offset: 990, length: 20 }), IntegrityError);
      handler = (_req, res) => {
        res.writeHead(206, { 'Content-Range': 'bytes 100-149/1000', 'Content-Length': '40' }).end(file.subarray(100, 140));
      };
      await assert.rejects(b.load(h, { offset: 100, length: 50 }), (err: unknown) => {
        assert.ok(err instanceof IntegrityError, String(err));
        assert.equal(err.file, `data/${h.name.slice(0, 2)}/${h.name}`);
        return true;
      });
    } finally {
      await b.close();
    }
  });

  it('rejects a malformed listing with a permanent error', async () => {
    const b = new RestBackend(base);
    try {
      handler = (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/vnd.x.restic.rest.v2' }).end('{"not":"a list"}');
      };
      await assert.rejects(collect(b.list('index')), isBackendError(200, false, (m) => assert.match(m, /malformed listing/)));
    } finally {
      await b.close();
    }
  });
});
