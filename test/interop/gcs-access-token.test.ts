// $GOOGLE_ACCESS_TOKEN as restic 0.19.1 takes it: the token is the bearer of every request to the
// GCS backend. Both tools talk to fake-gcs-server through a small recording proxy on 127.0.0.1,
// which notes the Authorization header of each request; restic and Stowage share the repository.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Storage } from '@google-cloud/storage';
import { GCSBackend } from '../../src/backend/gcs.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startFakeGcs } from '../servers/fake-gcs.ts';

const PASSWORD = 'gcs token';
const TOKEN = 'ya29.stowage-test-token';
const work = await tmpDir('stowage-gcs-token');
const src = path.join(work, 'src');
await mkdir(src);
await writeFile(path.join(src, 'f'), 'token\n');

const gcs = await startFakeGcs();
const seen: Array<string | undefined> = [];
// Forwards every request to fake-gcs-server, noting its Authorization header.
const proxy = http.createServer((req, res) => {
  seen.push(req.headers.authorization);
  const up = http.request({ host: '127.0.0.1', port: gcs.port, path: req.url, method: req.method, headers: { ...req.headers, host: gcs.host } }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
});
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const proxyHost = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
after(async () => {
  proxy.close();
  await gcs.stop();
});

test('GOOGLE_ACCESS_TOKEN: restic 0.19.1 and Stowage send it as the bearer, and share the repository', async () => {
  const bucket = `token-${process.pid}`;
  await new Storage({ apiEndpoint: gcs.endpoint, projectId: 'stowage-test' }).createBucket(bucket);
  const env = { STORAGE_EMULATOR_HOST: proxyHost, GOOGLE_ACCESS_TOKEN: TOKEN, GOOGLE_PROJECT_ID: 'stowage-test' };
  const ropts = { repo: `gs:${bucket}:/repo`, password: PASSWORD, cwd: work, env };
  await resticOk(resticBin('0.19'), ['init'], ropts);
  assert.ok(seen.length > 0 && seen.every((a) => a === `Bearer ${TOKEN}`), `restic: ${JSON.stringify([...new Set(seen)])}`);

  seen.length = 0;
  const b = await runCli(['backup', '--no-cache', src], { env: { ...env, RESTIC_REPOSITORY: ropts.repo, RESTIC_PASSWORD: PASSWORD } });
  assert.equal(b.code, 0, b.stderr);
  const s = await runCli(['snapshots', '--json', '--no-cache'], { env: { ...env, RESTIC_REPOSITORY: ropts.repo, RESTIC_PASSWORD: PASSWORD } });
  assert.equal(s.code, 0, s.stderr);
  assert.ok(seen.length > 3, String(seen.length));
  assert.deepEqual([...new Set(seen)], [`Bearer ${TOKEN}`], 'Stowage');
  await resticOk(resticBin('0.19'), ['check', '--read-data'], ropts);
});

test('GCSBackend accessToken: an empty one is refused, a token taken', () => {
  new GCSBackend({ bucket: 'stowage-bucket', accessToken: TOKEN });
  assert.throws(() => new GCSBackend({ bucket: 'stowage-bucket', accessToken: '' }), InvalidInputError);
});
