// The server under hostile input: a repository whose trees hold names no file system allows
// ('..', '.', '', 'a/b', NUL, a 10000-byte name), hostile request paths, 200 concurrent range
// requests against a small memory budget, and clients that walk away mid-download.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { goTimeFromNs } from '../../src/repository/gotime.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { encodeNode, type TreeNode } from '../../src/snapshot/model/node.ts';
import { encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { makeFixture, startServer, type Fixture, type Running } from './fixture.ts';

const dir = await tmpDir('stowage-serve-safety');
let fx: Fixture;
let srv: Running;
let hostile: string;
const MEMORY = 12 * 1024 * 1024;

/** A tree written as bytes, so names encodeTree refuses can be stored (as a damaged or hostile repository would). */
async function hostileSnapshot(): Promise<string> {
  const repo = fx.repo;
  const w = repo.blobWriter();
  const secret = (await w.saveBlob('data', Buffer.from('secret\n'))).id;
  const t = goTimeFromNs(1_700_000_000_000_000_000n, 0);
  const file = (name: string, content: BlobId[] = [secret]): TreeNode => ({ name, type: 'file', mode: 0o644, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, size: 7, content });
  const inner = Buffer.from(`{"nodes":[${encodeNode(file('escaped.txt'))}]}\n`);
  const innerId = (await w.saveBlob('tree', inner)).id;
  const dirNode = (name: string): TreeNode => ({ name, type: 'dir', mode: 0x8000_01ed, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, content: null, subtree: innerId });
  const nodes = [
    encodeNode(file('EMPTY')).replace('"name":"EMPTY"', '"name":""'),
    encodeNode(file('.')),
    encodeNode(dirNode('..')),
    encodeNode(file('../../etc/passwd')),
    encodeNode(file('a/b')),
    encodeNode(file('nul\u0000name')),
    encodeNode(file('L'.repeat(10000))),
    encodeNode(file('ok.txt')),
  ];
  const root = (await w.saveBlob('tree', Buffer.from(`{"nodes":[${nodes.join(',')}]}\n`))).id;
  await w.flush();
  return repo.repo.saveUnpacked('snapshots', encodeSnapshot({ time: t, tree: root, paths: ['/hostile'], hostname: '..', tags: ['a/b', 'ok'] }));
}

before(async () => {
  fx = await makeFixture(dir, { bigBytes: 24 * 1024 * 1024 });
  hostile = await hostileSnapshot();
  srv = await startServer(fx.repo, { webdav: true, memoryLimit: MEMORY });
});
after(async () => {
  await srv.close();
  await fx.repo.close();
});

/** A request with the path exactly as given (fetch would normalise '..' away). */
function raw(path: string, method = 'GET', headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const { hostname, port } = new URL(srv.base);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('hostile names in a tree are never listed, served, archived or copied', async () => {
  const ls = JSON.parse((await raw(`/api/snapshots/${hostile}/ls/`)).body.toString());
  assert.deepEqual(ls.entries.map((e: any) => e.name), ['ok.txt']);
  assert.equal(ls.hidden, 7);
  const tar = await raw(`/api/snapshots/${hostile}/tar/`);
  assert.equal(tar.status, 200);
  await writeFile(join(dir, 'hostile.tar'), tar.body);
  const listed = execFileSync('tar', ['-tf', join(dir, 'hostile.tar')], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listed, [`snapshot-${hostile.slice(0, 8)}/`, `snapshot-${hostile.slice(0, 8)}/ok.txt`]);
  const dav = (await raw(`/dav/ids/${hostile.slice(0, 8)}/`, 'PROPFIND', { depth: '1' })).body.toString();
  assert.deepEqual([...dav.matchAll(/<D:href>([^<]*)<\/D:href>/g)].map((m) => m[1]), [`/dav/ids/${hostile.slice(0, 8)}/`, `/dav/ids/${hostile.slice(0, 8)}/ok.txt`]);
  // The host '..' and the tag 'a/b' are no folders; the tag 'ok' is.
  const hosts = (await raw('/dav/hosts/', 'PROPFIND', { depth: '1' })).body.toString();
  assert.doesNotMatch(hosts, /hosts\/\.\.\//);
  const tags = (await raw('/dav/tags/', 'PROPFIND', { depth: '1' })).body.toString();
  assert.match(tags, /tags\/ok\//);
  assert.doesNotMatch(tags, /tags\/a/);
  // rclone copies only the safe file, inside its target.
  const target = join(dir, 'rclone-hostile', 'inner');
  await mkdir(target, { recursive: true });
  await promisify(execFile)('rclone', ['copy', `:webdav,url='${srv.base}/dav',vendor=other:ids/${hostile.slice(0, 8)}`, target], { env: { ...process.env, RCLONE_CONFIG: join(dir, 'rc.conf') } });
  assert.deepEqual(await readdir(join(dir, 'rclone-hostile'), { recursive: true }), ['inner', 'inner/ok.txt']);
});

test('hostile request paths are refused before any lookup', async () => {
  const base = `/api/snapshots/${hostile}/file`;
  for (const p of ['/..', '/../../etc/passwd', '/%2e%2e', '/%2E%2E/ok.txt', '/a%2Fb', '/nul%00name', '/.', '/' + 'L'.repeat(5000), '/%zz']) {
    const r = await raw(base + p);
    assert.equal(r.status, 400, p);
    assert.doesNotMatch(r.body.toString(), /secret/);
  }
  for (const p of ['/dav/ids/..', '/dav/ids/%2e%2e/', '/dav/../api/stats', '/dav/snapshots/latest/%00']) {
    assert.equal((await raw(p, 'PROPFIND', { depth: '0' })).status, 400, p);
  }
  assert.equal((await raw(base + '/ok.txt')).body.toString(), 'secret\n');
  // A whole URL longer than Node's header limit is refused by node:http itself.
  assert.equal((await raw(base + '/' + 'x'.repeat(20000)).catch(() => ({ status: 431 }))).status, 431);
});

test('200 concurrent range requests: right bytes, no error, blob memory within the budget', async () => {
  const url = `${srv.base}/api/snapshots/${fx.first}/file${encodeURI(fx.src)}/big.bin`;
  const size = fx.big.length;
  const rssBefore = process.memoryUsage().rss;
  const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const start = Math.floor(((i * 7919) % 1000) / 1000 * (size - 300_000));
    const end = start + 1000 + ((i * 104729) % 250_000);
    const r = await fetch(url, { headers: { range: `bytes=${start}-${end - 1}` } });
    const body = Buffer.from(await r.arrayBuffer());
    return r.status === 206 && body.equals(fx.big.subarray(start, end));
  }));
  assert.equal(results.filter(Boolean).length, 200);
  const s = srv.handler.stats();
  assert.ok(s.memoryPeak <= MEMORY, `peak ${s.memoryPeak} > ${MEMORY}`);
  assert.ok(s.memoryPeak > MEMORY / 2, `the budget was exercised (peak ${s.memoryPeak})`);
  assert.equal(s.memoryInUse, 0);
  const grew = process.memoryUsage().rss - rssBefore;
  assert.ok(grew < 400 * 1024 * 1024, `RSS grew by ${grew} bytes`);
});

test('a client that walks away mid-download frees its response and its memory', async () => {
  const { hostname, port } = new URL(srv.base);
  const path = `/api/snapshots/${fx.first}/file${encodeURI(fx.src)}/big.bin`;
  await new Promise<void>((resolve, reject) => {
    const req = request({ hostname, port, path }, (res) => {
      res.pause(); // read nothing: the server fills the socket and waits for it to drain
      res.once('readable', async () => {
        try {
          await waitFor(() => srv.handler.stats().memoryInUse > 0, 'the stalled response to hold blob memory');
          assert.equal(srv.handler.stats().activeResponses, 1);
          req.destroy();
          await waitFor(() => srv.handler.stats().activeResponses === 0 && srv.handler.stats().memoryInUse === 0, 'the response and its memory to be freed');
          resolve();
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', () => {});
    req.end();
  });
  // The server goes on answering.
  assert.equal((await fetch(`${srv.base}/api/snapshots`)).status, 200);
});

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}: ${JSON.stringify(srv.handler.stats())}`);
}

test('a damaged blob is never served: its tar is cut off, the decode workers and the budget go on', async () => {
  const folder = join(dir, 'damaged');
  await mkdir(join(folder, 'sub'), { recursive: true });
  for (let i = 0; i < 40; i++) await writeFile(join(folder, 'sub', `f${i}`), `file ${i} `.repeat(20 + i));
  await writeFile(join(folder, 'victim'), 'this content will be damaged in its pack\n'.repeat(10));
  const { backup } = await import('../../src/snapshot/operations/backup/index.ts');
  const { decodeTree } = await import('../../src/snapshot/model/tree.ts');
  const id = (await backup(fx.repo, { paths: [folder], hostname: 'damaged' })).snapshotId;
  // The victim's blob, found from the snapshot's trees, flipped in its pack file.
  const node = await (async () => {
    let tree = (JSON.parse(Buffer.from(await fx.repo.repo.loadUnpacked('snapshots', id)).toString()) as any).tree;
    for (const part of folder.split('/').filter(Boolean)) tree = decodeTree(await fx.repo.loadBlob('tree', tree), tree).find((n) => n.name === part)!.subtree;
    return decodeTree(await fx.repo.loadBlob('tree', tree), tree).find((n) => n.name === 'victim')!;
  })();
  const loc = fx.repo.index.lookup(node.content![0]!, 'data')[0]!;
  const packPath = join(fx.repoDir, 'data', loc.packId.slice(0, 2), loc.packId);
  await chmod(packPath, 0o644);
  const pack = await readFile(packPath);
  pack[loc.offset + 20] ^= 0xff;
  await writeFile(packPath, pack);
  const url = (p: string) => `${srv.base}/api/snapshots/${id}/tar${encodeURI(folder)}${p}`;
  await assert.rejects(fetch(url('')).then((r) => r.arrayBuffer()));
  await waitFor(() => srv.handler.stats().activeResponses === 0 && srv.handler.stats().memoryInUse === 0, 'the cut response to free its memory');
  // The folder beside it (same packs, other blobs) still downloads whole.
  const tar = Buffer.from(await (await fetch(url('/sub'))).arrayBuffer());
  assert.ok(tar.includes(Buffer.from('file 39 file 39 ')));
  assert.ok(srv.handler.stats().decodeWorkers >= 1);
});
