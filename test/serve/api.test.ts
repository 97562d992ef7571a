// The JSON API of createRepositoryHandler against real repositories — a local folder (the handler
// at the server's root) and a bucket on MinIO (the handler mounted at /backups on a plain
// node:http server) — with Node's fetch as the client and GNU tar, unzip and Python reading the
// downloads.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Backend } from '../../src/backend/s3.ts';
import { createRepositoryHandler } from '../../src/serve/handler.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startMinio, type MinioServer } from '../servers/minio.ts';
import { LONG_NAME, makeFixture, OWN_PAGE, startServer, type Fixture, type Running } from './fixture.ts';

const dirs = { local: await tmpDir('stowage-serve-api-local'), minio: await tmpDir('stowage-serve-api-minio') };

for (const kind of ['local', 'minio'] as const) describe(`the JSON API on a ${kind} repository`, () => {
const dir = dirs[kind];
let fx: Fixture;
let srv: Running;
let minio: MinioServer | undefined;

before(async () => {
  if (kind === 'minio') {
    minio = await startMinio();
    const backend = new S3Backend({ endpoint: minio.endpoint, bucket: `serve-api-${process.pid}`, prefix: 'repo', credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey } });
    fx = await makeFixture(dir, { backend });
  } else fx = await makeFixture(dir);
  srv = await startServer(fx.repo, { basePath: kind === 'minio' ? '/backups' : undefined });
});
after(async () => {
  await srv?.close();
  await fx?.repo.close();
  await minio?.stop();
});

const json = async (path: string, status = 200) => {
  const r = await fetch(srv.base + path);
  assert.equal(r.status, status, `${path}: ${r.status}`);
  return r.json() as Promise<any>;
};
const inSnap = (p: string) => encodeURI(fx.src) + p;

test('snapshots are listed with restic filters (host, tag, path)', async () => {
  const all = await json('/api/snapshots');
  assert.deepEqual(all.map((s: any) => s.id), [fx.first, fx.second]);
  assert.deepEqual((await json('/api/snapshots?host=beta')).map((s: any) => s.id), [fx.second]);
  assert.deepEqual((await json('/api/snapshots?tag=daily')).map((s: any) => s.id), [fx.first]);
  assert.deepEqual((await json('/api/snapshots?path=/nowhere')), []);
  assert.equal((await json(`/api/snapshots/${fx.first.slice(0, 8)}`)).short_id, fx.first.slice(0, 8));
  assert.equal((await json('/api/snapshots/latest')).id, fx.second);
  assert.equal((await json('/api/snapshots/ffffffff', 404)).error.code, 'NOT_FOUND');
});

test('folders are listed at a path; a file path gives its node', async () => {
  const ls = await json(`/api/snapshots/${fx.second}/ls${inSnap('/')}`);
  assert.deepEqual(ls.entries.map((e: any) => `${e.type}:${e.name}`), ['file:added.txt', 'file:big.bin', 'dir:docs', 'file:empty', 'symlink:link']);
  assert.equal(ls.entries[1].size, fx.big.length);
  const deep = await json(`/api/snapshots/${fx.second}/ls${inSnap('/docs/deep')}`);
  assert.deepEqual(deep.entries.map((e: any) => e.name), ['a b%c #ü.txt']);
  assert.equal((await json(`/api/snapshots/${fx.second}/ls${inSnap('/docs/readme.txt')}`)).node.type, 'file');
  assert.equal((await json(`/api/snapshots/${fx.second}/ls${inSnap('/nope')}`, 404)).error.code, 'NOT_FOUND');
});

test('files download whole and by range, with ETag and If-None-Match', async () => {
  const url = `${srv.base}/api/snapshots/${fx.first}/file${inSnap('/big.bin')}`;
  const whole = await fetch(url);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get('accept-ranges'), 'bytes');
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(fx.big));
  const etag = whole.headers.get('etag')!;
  assert.match(etag, /^"[0-9a-f]{32}"$/);
  const size = fx.big.length;
  // Ranges inside one blob, across blob edges, open-ended and suffix ranges.
  for (const [h, a, b] of [['bytes=0-0', 0, 1], ['bytes=1000-2000000', 1000, 2000001], [`bytes=${size - 10}-`, size - 10, size], ['bytes=-4096', size - 4096, size], [`bytes=3000000-${size + 99}`, 3000000, size]] as const) {
    const r = await fetch(url, { headers: { range: h } });
    assert.equal(r.status, 206, h);
    assert.equal(r.headers.get('content-range'), `bytes ${a}-${b - 1}/${size}`);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(fx.big.subarray(a, b)), h);
  }
  const unsat = await fetch(url, { headers: { range: `bytes=${size}-` } });
  assert.equal(unsat.status, 416);
  assert.equal(unsat.headers.get('content-range'), `bytes */${size}`);
  const same = await fetch(url, { headers: { 'if-none-match': etag } });
  assert.equal(same.status, 304);
  const head = await fetch(url, { method: 'HEAD' });
  assert.equal(head.headers.get('content-length'), String(size));
  const dl = await fetch(`${srv.base}/api/snapshots/${fx.first}/file${inSnap('/docs/deep/a%20b%25c%20%23%C3%BC.txt')}?download=1`);
  assert.equal(await dl.text(), 'odd name\n');
  assert.match(dl.headers.get('content-disposition')!, /^attachment; filename\*=UTF-8''a%20b%25c%20%23%C3%BC\.txt$/);
  const empty = await fetch(`${srv.base}/api/snapshots/${fx.first}/file${inSnap('/empty')}`);
  assert.equal((await empty.arrayBuffer()).byteLength, 0);
  assert.equal((await json(`/api/snapshots/${fx.first}/file${inSnap('/docs')}`, 400)).error.code, 'INVALID_INPUT');
});

test('a folder downloads as a tar that GNU tar extracts to the same files', async () => {
  const r = await fetch(`${srv.base}/api/snapshots/${fx.first}/tar${inSnap('/')}`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/x-tar');
  const tarFile = join(dir, 'out.tar');
  await writeFile(tarFile, Buffer.from(await r.arrayBuffer()));
  const out = join(dir, 'untar');
  await mkdir(out);
  execFileSync('tar', ['-xf', tarFile, '-C', out]);
  const root = join(out, 'src');
  assert.ok((await readFile(join(root, 'big.bin'))).equals(fx.big));
  assert.equal(await readFile(join(root, 'docs', 'readme.txt'), 'utf8'), 'hello from stowage\n');
  assert.equal(await readFile(join(root, 'docs', 'deep', 'a b%c #ü.txt'), 'utf8'), 'odd name\n');
  assert.equal((await readFile(join(root, 'empty'))).length, 0);
  assert.equal(await readFile(join(root, 'docs', 'long', LONG_NAME), 'utf8'), 'long name\n');
  assert.equal(await readlink(join(root, 'link')), 'docs/readme.txt');
  const listing = execFileSync('tar', ['-tvf', tarFile], { encoding: 'utf8' });
  assert.match(listing, /src\/docs\/deep\/a b%c #ü\.txt/);
});

test('a folder downloads as a zip that unzip and Python zipfile read (CRCs checked)', async () => {
  const r = await fetch(`${srv.base}/api/snapshots/${fx.first}/zip${inSnap('/')}`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/zip');
  const zipFile = join(dir, 'out.zip');
  await writeFile(zipFile, Buffer.from(await r.arrayBuffer()));
  execFileSync('python3', ['-c', 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None', zipFile]);
  const out = join(dir, 'unzip');
  await mkdir(out);
  execFileSync('unzip', ['-q', zipFile, '-d', out]);
  const root = join(out, 'src');
  assert.ok((await readFile(join(root, 'big.bin'))).equals(fx.big));
  assert.equal(await readFile(join(root, 'docs', 'deep', 'a b%c #ü.txt'), 'utf8'), 'odd name\n');
  assert.equal(await readFile(join(root, 'docs', 'long', LONG_NAME), 'utf8'), 'long name\n');
  assert.equal((await readFile(join(root, 'empty'))).length, 0);
  assert.equal(await readlink(join(root, 'link')), 'docs/readme.txt');
});

test('diff of two snapshots, find by name, stats', async () => {
  const d = await json(`/api/diff?from=${fx.first}&to=${fx.second.slice(0, 8)}`);
  const changes = d.changes.map((c: any) => `${c.modifier} ${c.path.slice(fx.src.length)}`);
  assert.deepEqual(changes, ['+ /added.txt', 'M /docs/readme.txt']);
  assert.equal(d.added.files, 1);
  const f = await json(`/api/find?name=*.txt&snapshot=${fx.first}`);
  assert.deepEqual(f.hits.map((h: any) => h.path.slice(fx.src.length)).sort(), ['/docs/deep/a b%c #ü.txt', '/docs/readme.txt']);
  const s = await json('/api/stats');
  assert.equal(s.snapshotCount, 2);
  assert.equal((await json('/api/find', 400)).error.code, 'INVALID_INPUT');
});

test('write methods are refused with 405 and nothing changes', async () => {
  for (const method of ['PUT', 'POST', 'DELETE', 'PATCH', 'MKCOL', 'MOVE']) {
    const r = await fetch(`${srv.base}/api/snapshots/${fx.first}`, { method, body: method === 'MKCOL' || method === 'MOVE' || method === 'DELETE' ? undefined : 'x' });
    assert.equal(r.status, 405, method);
    assert.match(r.headers.get('allow')!, /GET/);
  }
  assert.equal((await json('/api/snapshots')).length, 2);
});

test('a folder of many small files (read ahead in runs of one pack) tars byte for byte', async () => {
  const many = join(dir, 'many');
  await mkdir(many);
  const want = new Map<string, Buffer>();
  for (let i = 0; i < 600; i++) {
    const body = Buffer.from(`file ${i} `.repeat(1 + (i % 37)));
    want.set(`f${String(i).padStart(4, '0')}`, body);
    await writeFile(join(many, `f${String(i).padStart(4, '0')}`), body);
  }
  const { backup } = await import('../../src/snapshot/operations/backup/index.ts');
  const id = (await backup(fx.repo, { paths: [many], hostname: 'many' })).snapshotId;
  const r = await fetch(`${srv.base}/api/snapshots/${id}/tar${encodeURI(many)}`);
  await writeFile(join(dir, 'many.tar'), Buffer.from(await r.arrayBuffer()));
  const out = join(dir, 'many-out');
  await mkdir(out);
  execFileSync('tar', ['-xf', join(dir, 'many.tar'), '-C', out]);
  for (const [name, body] of want) assert.ok((await readFile(join(out, 'many', name))).equals(body), name);
  assert.equal((await readdir(join(out, 'many'))).length, 600);
  // The contents were decoded by the engine's decode workers.
  assert.ok(srv.handler.stats().decodeWorkers >= 1);
  assert.equal(srv.handler.stats().memoryInUse, 0);
  // Three tars and a zip at once within a 1 MiB budget (segments of the next files wait for
  // room; none waits holding any), with workers and without: the same bytes, the budget kept.
  // (Not backend-specific: the local run only.)
  if (kind !== 'local') return;
  const tight = await startServer(fx.repo, { memoryLimit: 1024 * 1024, decodeThreads: 1 });
  const here = await startServer(fx.repo, { memoryLimit: 1024 * 1024, decodeThreads: 0 });
  try {
    const whole = await readFile(join(dir, 'many.tar'));
    const urls = [tight.base, tight.base, here.base].map((b) => `${b}/api/snapshots/${id}/tar${encodeURI(many)}`);
    const [zip, ...tars] = await Promise.all([`${tight.base}/api/snapshots/${id}/zip${encodeURI(many)}`, ...urls].map(async (u) => Buffer.from(await (await fetch(u)).arrayBuffer())));
    for (const t of tars) assert.ok(t.equals(whole));
    assert.equal(zip.readUInt32LE(0), 0x04034b50);
    for (const s of [tight.handler.stats(), here.handler.stats()]) {
      assert.ok(s.memoryPeak <= s.memoryLimit, `peak ${s.memoryPeak}`);
      assert.equal(s.memoryInUse, 0);
    }
    assert.equal(tight.handler.stats().decodeWorkers, 1);
    assert.equal(here.handler.stats().decodeWorkers, 0);
  } finally {
    await tight.close();
    await here.close();
  }
});

test('mounted below a prefix: only the prefix is answered; the address without its slash is redirected', { skip: kind !== 'minio' }, async () => {
  assert.equal(await (await fetch(srv.origin + '/')).text(), OWN_PAGE);
  // The operator's router hands /backupsX/… to the handler too (a plain startsWith): the handler refuses it.
  for (const path of ['/backupsX/api/snapshots', '/backupsX', '/backup/api/snapshots']) {
    const r = await fetch(srv.origin + path);
    assert.equal(r.status, 404, path);
    assert.doesNotMatch(await r.text(), /snapshot|api/i, path);
  }
  const bare = await fetch(srv.base + '?x=1', { redirect: 'manual' });
  assert.equal(bare.status, 308);
  assert.equal(bare.headers.get('location'), '/backups/?x=1');
  const page = await fetch(srv.base + '/');
  assert.match(page.headers.get('content-type')!, /text\/html/);
  assert.match(await page.text(), /<script src="app.js">/);
  assert.equal((await fetch(srv.base + '/app.js')).status, 200);
  assert.equal((await json('/api/snapshots')).length >= 2, true);
});

test('an Express-style mount (req.url stripped, req.originalUrl kept) answers with the prefix in WebDAV hrefs', { skip: kind !== 'local' }, async () => {
  const handler = createRepositoryHandler(fx.repo, { basePath: '/mnt/repo/', webdav: true });
  const server = createServer((req, res) => {
    if (!req.url?.startsWith('/mnt/repo')) return void res.writeHead(404).end();
    Object.assign(req, { originalUrl: req.url, url: req.url.slice('/mnt/repo'.length) || '/' });
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    assert.equal(((await (await fetch(`${origin}/mnt/repo/api/snapshots`)).json()) as unknown[]).length >= 2, true);
    const dav = await (await fetch(`${origin}/mnt/repo/dav/`, { method: 'PROPFIND', headers: { depth: '1' } })).text();
    assert.match(dav, /<D:href>\/mnt\/repo\/dav\/ids\/<\/D:href>/);
  } finally {
    await handler.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  for (const bad of ['backups', '/a//b', '/a/../b', '/a b', '/%2e%2e', '/a?b']) {
    assert.throws(() => createRepositoryHandler(fx.repo, { basePath: bad }), (e: any) => e.code === 'INVALID_INPUT' && e.message.includes('basePath'), bad);
  }
  assert.throws(() => createRepositoryHandler(fx.repo, { decodeThreads: -1 }), (e: any) => e.code === 'INVALID_INPUT' && e.message.includes('decodeThreads'));
});
});
