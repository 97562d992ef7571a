// WebDAV with a client nobody here wrote: rclone (Debian's package) lists, copies, reads ranges
// and checks a snapshot served from a repository in a local folder (the handler at the server's
// root) and one on MinIO (mounted at /backups on a plain node:http server), against restic 0.19's
// restore of the same snapshot, byte for byte.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, lstat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { S3Backend } from '../../src/backend/s3.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startMinio, type MinioServer } from '../servers/minio.ts';
import { LONG_NAME, makeFixture, PASSWORD, startServer, type Fixture, type Running } from './fixture.ts';

const run = promisify(execFile);
const dirs = { local: await tmpDir('stowage-serve-dav-local'), minio: await tmpDir('stowage-serve-dav-minio') };

for (const kind of ['local', 'minio'] as const) describe(`WebDAV on a ${kind} repository`, () => {
const dir = dirs[kind];
let minio: MinioServer | undefined;
let fx: Fixture;
let srv: Running;
const bucket = `serve-${process.pid}`;

before(async () => {
  if (kind === 'minio') {
    minio = await startMinio();
    const backend = new S3Backend({ endpoint: minio.endpoint, bucket, prefix: 'repo', credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey } });
    fx = await makeFixture(dir, { backend });
  } else fx = await makeFixture(dir);
  srv = await startServer(fx.repo, { webdav: true, basePath: kind === 'minio' ? '/backups' : undefined });
});
after(async () => {
  await srv?.close();
  await fx?.repo.close();
  await minio?.stop();
});

const rclone = async (...args: string[]) => {
  const env = { ...process.env, RCLONE_CONFIG: join(dir, 'rclone.conf'), RCLONE_CONFIG_DAV_TYPE: 'webdav', RCLONE_CONFIG_DAV_URL: `${srv.base}/dav`, RCLONE_CONFIG_DAV_VENDOR: 'other' };
  const { stdout } = await run('rclone', args, { env, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
};

async function regularFiles(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if ((await lstat(p)).isFile()) out.set(relative(root, p), await readFile(p));
    }
  };
  await walk(root);
  return out;
}

test('rclone lists the restic mount layout', async () => {
  const top = JSON.parse(await rclone('lsjson', 'dav:')).map((e: any) => `${e.IsDir ? 'd' : 'f'}:${e.Path}`);
  assert.deepEqual(top.sort(), ['d:hosts', 'd:ids', 'd:snapshots', 'd:tags']);
  const [first, second] = [fx.first, fx.second];
  const times = JSON.parse(await rclone('lsjson', 'dav:snapshots')).map((e: any) => e.Path).sort();
  // restic's mount names: the time to the second in the snapshot's offset, "-1" for a second one.
  const entries = (await (await fetch(`${srv.base}/api/snapshots`)).json()) as any[];
  const expected: string[] = [];
  for (const t of entries.map((e) => String(e.time).replace(/\.\d+/, ''))) {
    let name = t;
    for (let i = 1; expected.includes(name); i++) name = `${t}-${i}`;
    expected.push(name);
  }
  assert.deepEqual(times, [...expected, 'latest'].sort());
  assert.deepEqual(JSON.parse(await rclone('lsjson', 'dav:ids')).map((e: any) => e.Path).sort(), [first.slice(0, 8), second.slice(0, 8)].sort());
  assert.deepEqual(JSON.parse(await rclone('lsjson', 'dav:hosts')).map((e: any) => e.Path).sort(), ['alpha', 'beta']);
  assert.deepEqual(JSON.parse(await rclone('lsjson', 'dav:tags/daily')).map((e: any) => e.Path).length, 2); // one time + latest
  const inside = JSON.parse(await rclone('lsjson', '-R', `dav:ids/${first.slice(0, 8)}${fx.src}`));
  const files = inside.filter((e: any) => !e.IsDir).map((e: any) => `${e.Path}:${e.Size}`).sort();
  assert.deepEqual(files, [`big.bin:${fx.big.length}`, 'docs/deep/a b%c #ü.txt:9', `docs/long/${LONG_NAME}:10`, 'docs/readme.txt:19', 'empty:0']);
});

test('rclone copy of a snapshot equals restic 0.19 restore of it, byte for byte', async () => {
  const restored = join(dir, 'restic-restore');
  const opts = minio
    ? { repo: `s3:${minio.endpoint}/${bucket}/repo`, password: PASSWORD, env: { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey } }
    : { repo: fx.repoDir, password: PASSWORD };
  await resticOk(resticBin('0.19'), ['restore', fx.first, '--target', restored], opts);
  const copied = join(dir, 'rclone-copy');
  await rclone('copy', `dav:ids/${fx.first.slice(0, 8)}${fx.src}`, copied);
  const want = await regularFiles(join(restored, fx.src));
  const got = await regularFiles(copied);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [p, b] of want) assert.ok(got.get(p)!.equals(b), p);
  // rclone check --download reads every file again through the server and compares the bytes.
  await rclone('check', '--download', '--exclude', 'link', `dav:ids/${fx.first.slice(0, 8)}${fx.src}`, join(restored, fx.src));
  // Ranged reads (rclone cat --offset/--count sends Range).
  const part = await run('rclone', ['cat', '--offset', '1048570', '--count', '20', `dav:snapshots/latest${fx.src}/big.bin`], {
    env: { ...process.env, RCLONE_CONFIG: join(dir, 'rclone.conf'), RCLONE_CONFIG_DAV_TYPE: 'webdav', RCLONE_CONFIG_DAV_URL: `${srv.base}/dav`, RCLONE_CONFIG_DAV_VENDOR: 'other' },
    encoding: 'buffer',
  });
  assert.ok(part.stdout.equals(fx.big.subarray(1048570, 1048590)));
});

test('PROPFIND answers depth 0 and 1, refuses infinity; write methods are 405', async () => {
  const url = `${srv.base}/dav/ids/${fx.first.slice(0, 8)}${encodeURI(fx.src)}/docs/`;
  const d0 = await fetch(url, { method: 'PROPFIND', headers: { depth: '0' } });
  assert.equal(d0.status, 207);
  assert.equal(((await d0.text()).match(/<D:response>/g) ?? []).length, 1);
  const d1 = await fetch(url, { method: 'PROPFIND', headers: { depth: '1' } });
  const body = await d1.text();
  // hrefs are absolute paths, with the mount prefix when there is one.
  assert.ok(body.includes(`<D:href>${new URL(url).pathname}deep/</D:href>`), body.slice(0, 600));
  assert.match(body, /<D:getcontentlength>19<\/D:getcontentlength>/);
  assert.equal((await fetch(url, { method: 'PROPFIND' })).status, 403);
  const opts = await fetch(`${srv.base}/dav/`, { method: 'OPTIONS' });
  assert.equal(opts.headers.get('dav'), '1');
  for (const method of ['PUT', 'DELETE', 'MKCOL', 'MOVE', 'COPY', 'PROPPATCH', 'LOCK']) {
    assert.equal((await fetch(url + 'x', { method })).status, 405, method);
  }
  await writeFile(join(dir, 'upload.txt'), 'x');
  await assert.rejects(rclone('copyto', '--retries', '1', '--low-level-retries', '1', join(dir, 'upload.txt'), `dav:ids/${fx.first.slice(0, 8)}/upload.txt`), /405|Method Not Allowed|read-only/);
});
});
