// `stowage serve` as a user runs it: HTTPS from cert/key files, basic auth from an htpasswd file
// ({SHA} entries) and a bearer token; bad credentials get one and the same 401 whatever the path
// or method; --base-path puts all of it below a prefix; SIGINT stops it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { request } from 'node:https';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseListen } from '../../src/cli/commands/serve.ts';
import { CLI } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { selfSignedCert } from '../servers/minio.ts';
import { makeFixture, PASSWORD, type Fixture } from './fixture.ts';

const dir = await tmpDir('stowage-serve-cli');
let fx: Fixture;
let child: ChildProcess;
let base: string;
let ca: string;

before(async () => {
  fx = await makeFixture(dir, { bigBytes: 1024 * 1024 });
  await fx.repo.close();
  await selfSignedCert(join(dir, 'cert.pem'), join(dir, 'key.pem'));
  ca = await readFile(join(dir, 'cert.pem'), 'utf8');
  const sha = createHash('sha1').update('s3cret pass').digest('base64');
  await writeFile(join(dir, 'htpasswd'), `# users\nalice:{SHA}${sha}\n`);
  await writeFile(join(dir, 'token'), 'tok-123456\n');
  child = spawn(process.execPath, [CLI, 'serve', '--json', '--webdav', '--web', '--listen', '127.0.0.1:0', '--base-path', '/backups/', '--htpasswd-file', join(dir, 'htpasswd'), '--token-file', join(dir, 'token'), '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem'), '--no-cache'], {
    env: { PATH: process.env.PATH ?? '', HOME: dir, RESTIC_REPOSITORY: fx.repoDir, RESTIC_PASSWORD: PASSWORD },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8');
  for await (const chunk of child.stdout!) {
    out += chunk;
    const line = out.split('\n').find((l) => l.includes('"serving"'));
    if (line) {
      base = JSON.parse(line).url;
      break;
    }
  }
  assert.match(base, /^https:\/\/127\.0\.0\.1:\d+\/backups$/);
});
after(async () => {
  if (child.exitCode === null) {
    child.kill('SIGKILL');
    await once(child, 'close');
  }
});

function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(base + path, { method, headers, ca }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
const basic = (user: string, pass: string) => ({ authorization: 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64') });

test('--listen parses HOST:PORT, [v6]:PORT and :PORT', () => {
  assert.deepEqual(parseListen('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(parseListen('[::1]:80'), { host: '::1', port: 80 });
  assert.deepEqual(parseListen(':9'), { host: '::', port: 9 });
  assert.throws(() => parseListen('8080'), /HOST:PORT/);
  assert.throws(() => parseListen('h:99999'), /HOST:PORT/);
});

test('HTTPS with basic auth ({SHA}) or a bearer token', async () => {
  const ok = await get('/api/snapshots', basic('alice', 's3cret pass'));
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).length, 2);
  assert.equal((await get('/api/snapshots', { authorization: 'Bearer tok-123456' })).status, 200);
  const dav = await get('/dav/ids/', { ...basic('alice', 's3cret pass'), depth: '1' }, 'PROPFIND');
  assert.equal(dav.status, 207);
  assert.match(dav.body, /<D:href>\/backups\/dav\/ids\/<\/D:href>/);
  // --base-path: nothing is answered outside it.
  const root = base.slice(0, -'/backups'.length);
  base = root;
  try {
    assert.equal((await get('/api/snapshots', basic('alice', 's3cret pass'))).status, 404);
  } finally {
    base = root + '/backups';
  }
});

test('bad credentials get the same 401 for existing and missing paths and for any method', async () => {
  const snap = `/api/snapshots/${fx.first}/file${encodeURI(fx.src)}/docs/readme.txt`;
  const answers = [];
  for (const cred of [{}, basic('alice', 'wrong'), basic('mallory', 's3cret pass'), { authorization: 'Bearer nope' }, { authorization: 'Basic !!!' }]) {
    for (const [path, method] of [[snap, 'GET'], ['/api/snapshots/ffffffff', 'GET'], ['/dav/ids/', 'PROPFIND'], ['/no/such/thing', 'GET'], [snap, 'PUT'], ['/', 'DELETE']] as const) {
      const r = await get(path, cred, method);
      answers.push(JSON.stringify({ s: r.status, b: r.body, a: r.headers['www-authenticate'], t: r.headers['content-type'], l: r.headers['content-length'] }));
    }
  }
  assert.equal(new Set(answers).size, 1, answers.join('\n'));
  assert.equal(JSON.parse(answers[0]!).s, 401);
  // With credentials, write methods are refused, not attempted.
  assert.equal((await get(snap, basic('alice', 's3cret pass'), 'PUT')).status, 405);
});

test('SIGINT stops the server with exit code 0', async () => {
  child.kill('SIGINT');
  const [code] = await once(child, 'close');
  assert.equal(code, 0);
});

test('htpasswd entries other than {SHA} are refused when read, naming the line', async () => {
  const { createAuthenticator } = await import('../../src/serve/auth.ts');
  assert.throws(() => createAuthenticator({ htpasswd: 'bob:$2y$05$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234' }), (e: any) => e.code === 'UNSUPPORTED' && /line 1.*bcrypt/.test(e.message));
  assert.throws(() => createAuthenticator({ htpasswd: '\ncarol:$apr1$xyz$abc' }), /line 2.*Apache MD5/);
  assert.throws(() => createAuthenticator({ htpasswd: 'nocolon' }), /line 1/);
  assert.equal(createAuthenticator({}).enabled, false);
});
