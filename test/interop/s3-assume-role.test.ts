// RESTIC_AWS_ASSUME_ROLE_* (restic ≥ 0.18) on MinIO, whose STS API answers AssumeRole for an
// access key: restic 0.19.1 and Stowage each call AssumeRole (seen through a recording proxy in
// front of MinIO on 127.0.0.1) and then sign every S3 request with the temporary key and its
// session token, not with the key they were given; both share the repository.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { S3Backend } from '../../src/backend/s3.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startMinio } from '../servers/minio.ts';

const PASSWORD = 'assume role';
const work = await tmpDir('stowage-assume-role');
const src = path.join(work, 'src');
await mkdir(src);
await writeFile(path.join(src, 'f'), 'assumed\n');

const minio = await startMinio();
const minioUrl = new URL(minio.endpoint);
interface Seen { method: string; body: string; auth: string; token: boolean }
const seen: Seen[] = [];
// Forwards every request to MinIO (the Host header kept, so signatures stay valid), noting it.
const proxy = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    seen.push({ method: req.method ?? '', body: body.toString('latin1').slice(0, 300), auth: req.headers.authorization ?? '', token: req.headers['x-amz-security-token'] !== undefined });
    const up = http.request({ host: minioUrl.hostname, port: minioUrl.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    up.end(body);
  });
});
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
after(async () => {
  proxy.close();
  await minio.stop();
});

const env = {
  AWS_ACCESS_KEY_ID: minio.accessKeyId,
  AWS_SECRET_ACCESS_KEY: minio.secretAccessKey,
  RESTIC_AWS_ASSUME_ROLE_ARN: 'arn:minio:iam:::role/stowage-test',
  RESTIC_AWS_ASSUME_ROLE_SESSION_NAME: 'stowage-session',
  RESTIC_AWS_ASSUME_ROLE_STS_ENDPOINT: endpoint,
};
const repo = `s3:${endpoint}/assume-role/repo`;

/** What the requests since the last call show: AssumeRole calls, and S3 requests by which key. */
function take() {
  const list = seen.splice(0);
  const assumed = list.filter((s) => s.body.includes('Action=AssumeRole'));
  const s3 = list.filter((s) => !s.body.includes('Action=AssumeRole'));
  return {
    assumed: assumed.length,
    assumedWithOwnKey: assumed.every((s) => s.auth.includes(`Credential=${minio.accessKeyId}/`) && s.auth.includes('/sts/aws4_request')),
    s3: s3.length,
    s3WithTempKey: s3.every((s) => s.token && !s.auth.includes(`Credential=${minio.accessKeyId}/`)),
  };
}

test('RESTIC_AWS_ASSUME_ROLE_*: restic 0.19.1 and Stowage assume the role on MinIO and share the repository', async () => {
  await resticOk(resticBin('0.19'), ['init'], { repo, password: PASSWORD, cwd: work, env });
  const r = take();
  assert.ok(r.assumed >= 1 && r.assumedWithOwnKey && r.s3 > 0 && r.s3WithTempKey, `restic: ${JSON.stringify(r)}`);

  const cliEnv = { ...env, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
  const b = await runCli(['backup', '--no-cache', src], { env: cliEnv });
  assert.equal(b.code, 0, b.stderr);
  const ours = take();
  assert.equal(ours.assumed, 1, JSON.stringify(ours));
  assert.ok(ours.assumedWithOwnKey && ours.s3 > 3 && ours.s3WithTempKey, `Stowage: ${JSON.stringify(ours)}`);

  await resticOk(resticBin('0.19'), ['check', '--read-data'], { repo, password: PASSWORD, cwd: work, env });
  // A role MinIO refuses (a bad session policy): Stowage fails at once, naming the STS call
  // (restic 0.19.1 retries its Stat for minutes, so it is not run here).
  const badEnv = { ...env, RESTIC_AWS_ASSUME_ROLE_POLICY: '{not json' };
  const mine = await runCli(['snapshots', '--no-cache'], { env: { ...cliEnv, ...badEnv }, timeoutMs: 60_000 });
  assert.equal(mine.code, 1, mine.stderr);
  assert.match(mine.stderr, /STS AssumeRole/);
});

test('S3Backend assumeRole: refused without an access key or a role ARN', () => {
  assert.throws(() => new S3Backend({ bucket: 'stowage-bucket', endpoint, assumeRole: { roleArn: 'arn:x' } }), InvalidInputError);
  assert.throws(() => new S3Backend({ bucket: 'stowage-bucket', endpoint, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, assumeRole: { roleArn: '' } }), InvalidInputError);
});
