// Secrets: with a recognisable password, AWS secret key, Azure account key, B2 key, REST password
// (in the URL), Swift key, GCS private key and SAS token, errors of every kind are triggered —
// wrong password, bad locations, incomplete credentials, servers refusing the credentials (stub
// HTTP servers on 127.0.0.1), lock conflicts, damaged data — through the library and the CLI
// (stderr and --json). No secret may appear in any message, stack, JSON or inspected error, in
// ObservedBackend events, or in any backend's `location`.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { chmod, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { openBackend, parseLocation, describeLocation, type OpenBackendOptions } from '../../src/backend/location.ts';
import type { BackendEvent } from '../../src/backend/wrappers/observe.ts';
import { ObservedBackend } from '../../src/backend/wrappers/observe.ts';
import { S3Backend } from '../../src/backend/s3.ts';
import { GCSBackend } from '../../src/backend/gcs.ts';
import { AzureBackend } from '../../src/backend/azure.ts';
import { SwiftBackend } from '../../src/backend/swift.ts';
import { B2Backend } from '../../src/backend/b2.ts';
import { RestBackend } from '../../src/backend/rest.ts';
import type { Backend } from '../../src/backend/backend.ts';
import { StowageError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { encodeLock } from '../../src/repository/lock.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { runCli } from '../helpers/cli.ts';
import { removeTree } from '../helpers/tmp.ts';

const FAST_KDF = { N: 1024, r: 8, p: 1 };
/** Every secret holds "Secr3t", so a partial leak (a redaction that stops early) is caught too. */
const S = {
  password: 'pw-Secr3t-Zq8v1x/+=@',
  awsKeyId: 'AKIAEXAMPLEKEYID',
  aws: 'aws-Secr3t-wJalrXUtnFEMIK7MDENGbPxRfiCY',
  azure: Buffer.from('azure-Secr3t-account-key-material-0123456789').toString('base64'),
  sas: 'sv=2022-11-02&ss=b&srt=sco&sp=rl&sig=sas-Secr3t-signature',
  b2Id: '0051234567890ab0000000001',
  b2: 'K005-b2-Secr3t-applicationkey',
  rest: 'rest-Secr3t-p4ssw0rd',
  swift: 'swift-Secr3t-k3y-material',
  gcs: '-----BEGIN PRIVATE KEY-----\ngcs-Secr3t-private-key\n-----END PRIVATE KEY-----\n',
};

/** Every form a secret could leak in: as is, URL-encoded, base64 (plain and inside HTTP Basic). */
const FORBIDDEN: Array<[string, string]> = [['the marker "Secr3t"', 'Secr3t']];
for (const [name, value] of Object.entries(S)) {
  if (name === 'awsKeyId' || name === 'b2Id') continue;
  FORBIDDEN.push([name, value], [`${name} (URL-encoded)`, encodeURIComponent(value)], [`${name} (base64)`, Buffer.from(value).toString('base64')]);
}
for (const [user, secret] of [['user', S.rest], [S.b2Id, S.b2], ['acct:user', S.swift], ['', S.password]]) {
  FORBIDDEN.push([`HTTP Basic of ${user}`, Buffer.from(`${user}:${secret}`).toString('base64')]);
}
FORBIDDEN.push(['Azure key (decoded)', Buffer.from(S.azure, 'base64').toString('latin1')]);

let sinksChecked = 0;

function assertNoSecret(text: string, where: string): void {
  sinksChecked++;
  const found = FORBIDDEN.filter(([, v]) => v.length >= 6 && text.includes(v)).map(([n]) => n);
  assert.deepEqual(found, [], `${where} leaks ${found.join(', ')}:\n${text.slice(0, 3000)}`);
}

/** Every way an error gets logged: message, stack, String, JSON, util.inspect with its causes. */
function assertErrorClean(err: unknown, where: string): void {
  assert.ok(err !== undefined, `${where}: expected an error`);
  const e = err as Error;
  assertNoSecret(String(e?.message), `${where} (message)`);
  assertNoSecret(String(e?.stack), `${where} (stack)`);
  assertNoSecret(String(err), `${where} (String)`);
  let json = '';
  try {
    json = JSON.stringify(err) ?? '';
  } catch {
    json = '';
  }
  assertNoSecret(json, `${where} (JSON)`);
  assertNoSecret(inspect(err, { depth: 8 }), `${where} (util.inspect)`);
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => assert.fail('expected a failure'), (e: unknown) => e);
}

// ---- stub servers that refuse every credential -----------------------------------------------

type StubKind = 'rest' | 's3' | 'azure' | 'swift' | 'b2';

interface Stub {
  url: string;
  requests: number;
  close(): Promise<void>;
}

/**
 * An HTTP server answering every request as the service would when the credentials are wrong.
 * With `echo`, it also sends back what it received (headers and URL), as a careless proxy or a
 * verbose server does: whatever ends up in an error message must still be clean.
 */
async function stubServer(kind: StubKind, echo: boolean): Promise<Stub> {
  const stub = { url: '', requests: 0, close: async () => undefined };
  const server = http.createServer((req, res) => {
    stub.requests++;
    req.resume();
    const echoed = echo ? ` (echo: ${req.method} ${req.url} ${JSON.stringify(req.headers)})` : '';
    const xml = (code: string, message: string) => `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}${escapeXml(echoed)}</Message><RequestId>stub</RequestId></Error>`;
    switch (kind) {
      case 'rest':
        res.writeHead(401, { 'Content-Type': 'text/plain' }).end(`Unauthorized${echoed}`);
        break;
      case 's3':
        res.writeHead(403, { 'Content-Type': 'application/xml' }).end(xml('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'));
        break;
      case 'azure':
        res.writeHead(403, { 'Content-Type': 'application/xml', 'x-ms-error-code': 'AuthenticationFailed' }).end(xml('AuthenticationFailed', 'Server failed to authenticate the request.'));
        break;
      case 'swift':
        res.writeHead(401, { 'Content-Type': 'text/html' }).end(`<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized.${echoed}</p></html>`);
        break;
      case 'b2':
        res.writeHead(401, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: 401, code: 'bad_auth_token', message: `Invalid authorization token${echoed}` }));
        break;
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stub.close = () => new Promise<undefined>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve(undefined));
  });
  return stub;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The location, environment and backend overrides that point each backend at its stub. */
function stubTarget(kind: StubKind, url: string): { location: string; env: Record<string, string>; overrides?: OpenBackendOptions['overrides'] } {
  const port = new URL(url).port;
  switch (kind) {
    case 'rest':
      return { location: `rest:http://user:${S.rest}@127.0.0.1:${port}/repo/`, env: {} };
    case 's3':
      return { location: `s3:${url}/bucket/prefix`, env: { AWS_ACCESS_KEY_ID: S.awsKeyId, AWS_SECRET_ACCESS_KEY: S.aws } };
    case 'azure':
      return {
        location: 'azure:container:/prefix',
        env: { AZURE_ACCOUNT_NAME: 'devstoreaccount1', AZURE_ACCOUNT_KEY: S.azure },
        overrides: { azure: { endpoint: `${url}/devstoreaccount1` } },
      };
    case 'swift':
      return { location: 'swift:container:/prefix', env: { ST_AUTH: `${url}/auth/v1.0`, ST_USER: 'acct:user', ST_KEY: S.swift } };
    case 'b2':
      return { location: 'b2:stowage-bucket:prefix', env: { B2_ACCOUNT_ID: S.b2Id, B2_ACCOUNT_KEY: S.b2 }, overrides: { b2: { authorizeUrl: `${url}/b2api/v2/b2_authorize_account` } } };
  }
}

// ---- the tests ----------------------------------------------------------------------------------

describe('no secret leaks through errors, events or locations', () => {
  let work: string;
  let repoDir: string;
  let src: string;
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-secrets-'));
    repoDir = path.join(work, 'repo');
    src = path.join(work, 'src');
    await mkdir(src);
    await writeFile(path.join(src, 'file.bin'), Buffer.alloc(200_000, 7));
    const repo = await Repository.init(new LocalBackend(repoDir), { password: S.password, kdf: FAST_KDF });
    await backup(await repo.loadIndex(), { paths: [src] });
  });
  after(async () => {
    console.log(`secrets: ${sinksChecked} outputs checked for ${FORBIDDEN.length} forbidden strings, no secret found`);
    await removeTree(work);
  });

  const cliEnv = (extra: Record<string, string>) => ({ RESTIC_PASSWORD: S.password, ...extra });

  async function cliClean(args: string[], env: Record<string, string>, where: string, expectCode?: number): Promise<void> {
    for (const json of [false, true]) {
      const r = await runCli(json ? ['--json', ...args] : args, { env, timeoutMs: 60_000 });
      const label = `${where} (CLI${json ? ' --json' : ''}, exit ${r.code})`;
      assert.notEqual(r.code, 0, `${label}: must fail: ${r.stderr}`);
      if (expectCode !== undefined) assert.equal(r.code, expectCode, `${label}: ${r.stderr}`);
      assertNoSecret(r.stdout, `${label} stdout`);
      assertNoSecret(r.stderr, `${label} stderr`);
    }
    const verbose = await runCli(['-v', ...args], { env, timeoutMs: 60_000 });
    assertNoSecret(verbose.stdout + verbose.stderr, `${where} (CLI -v)`);
  }

  it('a wrong password', async () => {
    const err = await failure(Repository.open(new LocalBackend(repoDir), { password: `wrong-${S.password}` }));
    assert.ok(err instanceof StowageError);
    assertErrorClean(err, 'wrong password');
    await cliClean(['snapshots'], { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: `wrong-${S.password}` }, 'wrong password', 12);
    // A password command that prints the secret and then fails.
    const script = path.join(work, 'password.sh');
    await writeFile(script, `printf '%s' '${S.password}'\necho 'oops ${S.password}' >&2\nexit 3\n`);
    const r = await runCli(['snapshots'], { env: { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD_COMMAND: `sh ${script}` } });
    assert.notEqual(r.code, 0);
    // The command's own stderr is passed through as restic does; Stowage adds nothing from stdout.
    assertNoSecret(r.stdout, 'failing password command stdout');
    assertNoSecret(r.stderr.replace(`oops ${S.password}\n`, ''), 'failing password command stderr (besides its own)');
  });

  it('malformed locations and incomplete credentials', async () => {
    const locations = [
      `rest:http://user:${S.rest}@127.0.0.1:99999/`,
      `rest:ftp://user:${S.rest}@host/`,
      `rest:http://user:${S.rest}@host/repo?x=1`,
      `rest:http://user:${S.rest}%zz@host/`,
      `rest:http://user:p@ss-${S.rest}@host:99999/`,
      `s3:https://${S.awsKeyId}:${S.aws}@host/bucket`,
      `s3:https://host/bucket?X-Amz-Signature=${S.aws}`,
      `nosuch://user:${S.rest}@host/`,
    ];
    for (const location of locations) {
      const err = await failure(openBackend(location, { env: {} }));
      assert.ok(err instanceof StowageError, `${location}: ${String(err)}`);
      assertErrorClean(err, `location ${location.slice(0, 12)}…`);
      await cliClean(['snapshots'], { RESTIC_REPOSITORY: location }, `location ${location.slice(0, 12)}…`);
    }
    const incomplete: Array<[string, Record<string, string>]> = [
      ['s3:https://host/bucket', { AWS_SECRET_ACCESS_KEY: S.aws }],
      ['b2:stowage-bucket:x', { B2_ACCOUNT_KEY: S.b2 }],
      ['azure:container:/', { AZURE_ACCOUNT_KEY: S.azure }],
      ['swift:container:/', { ST_KEY: S.swift }],
    ];
    for (const [location, env] of incomplete) {
      const err = await failure(openBackend(location, { env }).then((b) => Repository.open(b, { password: S.password })));
      assert.ok(err instanceof StowageError, `${location}: ${String(err)}`);
      assertErrorClean(err, `incomplete credentials for ${location}`);
      await cliClean(['snapshots'], { RESTIC_REPOSITORY: location, ...env }, `incomplete credentials for ${location}`);
    }
    // The REST constructor on its own, with a password it cannot decode.
    assertErrorClean(await failure(Promise.resolve().then(() => new RestBackend(`http://user:${S.rest}%@host/`))), 'RestBackend with bad percent-encoding');
  });

  for (const echo of [false, true]) {
    for (const kind of ['rest', 's3', 'azure', 'swift', 'b2'] as StubKind[]) {
      it(`${kind}: a server that refuses the credentials${echo ? ' and echoes the request back' : ''}`, { timeout: 120_000 }, async () => {
        const stub = await stubServer(kind, echo);
        try {
          const target = stubTarget(kind, stub.url);
          const events: BackendEvent[] = [];
          const backend = await openBackend(target.location, { env: target.env, overrides: target.overrides, observe: (e) => events.push(e), retry: false });
          const err = await failure(Repository.open(backend, { password: S.password }));
          assert.ok(err instanceof StowageError, `${kind}: ${String(err)}`);
          assert.ok(stub.requests > 0, `${kind}: the stub was asked`);
          assertErrorClean(err, `${kind} auth failure${echo ? ' (echo)' : ''}`);
          assert.ok(events.length > 0 && events.some((e) => e.error), `${kind}: the failure was observed`);
          assertNoSecret(JSON.stringify(events), `${kind} ObservedBackend events`);
          assertNoSecret(backend.location, `${kind} location`);
          // Logging the backend itself (its SDK client is set up by now) shows no credentials either.
          assertNoSecret(inspect(backend, { depth: 6 }), `${kind} backend (util.inspect)`);
          await backend.close();
          // The CLI reaches every backend whose endpoint the environment can name.
          if (kind !== 'azure' && kind !== 'b2') await cliClean(['snapshots'], cliEnv({ RESTIC_REPOSITORY: target.location, ...target.env }), `${kind} auth failure${echo ? ' (echo)' : ''}`);
        } finally {
          await stub.close();
        }
      });
    }
  }

  it('a lock held by another process', async () => {
    const repo = await Repository.open(new LocalBackend(repoDir), { password: S.password });
    // A live process on this host (the test itself) holds an exclusive lock.
    const lockId = await repo.saveUnpacked('locks', encodeLock({ time: new Date().toISOString(), exclusive: true, hostname: hostname(), username: 'other', pid: process.pid }));
    try {
      const err = await failure(backup(await repo.loadIndex(), { paths: [src] }));
      assert.ok(err instanceof StowageError && err.code === 'LOCKED', String(err));
      assertErrorClean(err, 'lock conflict');
      await cliClean(['backup', src], { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: S.password }, 'lock conflict', 11);
    } finally {
      await repo.backend.remove({ type: 'locks', name: lockId });
    }
  });

  it('damaged data', async () => {
    const dir = path.join(work, 'damaged');
    const repo = await Repository.init(new LocalBackend(dir), { password: S.password, kdf: FAST_KDF });
    await backup(await repo.loadIndex(), { paths: [src] });
    const dataDir = path.join(dir, 'data');
    for (const sub of await readdir(dataDir)) {
      for (const f of await readdir(path.join(dataDir, sub))) {
        const file = path.join(dataDir, sub, f);
        const b = await readFile(file);
        b[40]! ^= 0xff;
        await chmod(file, 0o600);
        await writeFile(file, b);
      }
    }
    const snap = (await listSnapshots(repo))[0]!;
    const err = await failure(restore(await repo.loadIndex(), snap.snapshot.tree, { target: path.join(work, 'restore-damaged') }));
    assert.ok(err instanceof StowageError && err.code === 'INTEGRITY', String(err));
    assertErrorClean(err, 'integrity error');
    await cliClean(['restore', 'latest', '--target', path.join(work, 'restore-damaged-cli')], { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: S.password }, 'integrity error');
    await cliClean(['check', '--read-data'], { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: S.password }, 'check of damaged data');
  });

  it('every backend class keeps its secrets out of `location` and out of its own errors', async () => {
    const backends: Array<[string, () => Backend]> = [
      ['S3', () => new S3Backend({ bucket: 'bucket', endpoint: 'http://127.0.0.1:9000', credentials: { accessKeyId: S.awsKeyId, secretAccessKey: S.aws, sessionToken: `token-${S.aws}` } })],
      ['GCS', () => new GCSBackend({ bucket: 'bucket', prefix: 'p', projectId: 'project', credentials: { client_email: 'x@y.iam.gserviceaccount.com', private_key: S.gcs } as never })],
      ['GCS (key as text)', () => new GCSBackend({ bucket: 'bucket', credentials: JSON.stringify({ client_email: 'x@y', private_key: S.gcs }) })],
      ['Azure (key)', () => new AzureBackend({ container: 'container', accountName: 'account', accountKey: S.azure })],
      ['Azure (SAS)', () => new AzureBackend({ container: 'container', accountName: 'account', sasToken: S.sas })],
      ['Azure (connection string)', () => new AzureBackend({ container: 'container', connectionString: `DefaultEndpointsProtocol=https;AccountName=account;AccountKey=${S.azure};EndpointSuffix=core.windows.net` })],
      ['Azure (endpoint with SAS)', () => new AzureBackend({ container: 'container', endpoint: `https://account.blob.core.windows.net/?${S.sas}`, sasToken: S.sas })],
      ['Swift (v1)', () => new SwiftBackend({ container: 'c', authUrl: 'http://127.0.0.1:8080/auth/v1.0', username: 'acct:user', password: S.swift })],
      ['Swift (token)', () => new SwiftBackend({ container: 'c', storageUrl: 'http://127.0.0.1:8080/v1/AUTH_acct', authToken: `tok-${S.swift}` })],
      ['Swift (Keystone)', () => new SwiftBackend({ container: 'c', authUrl: 'http://127.0.0.1:5000/v3', username: 'u', password: S.swift, projectName: 'p', userDomainName: 'Default' })],
      ['B2', () => new B2Backend({ bucket: 'stowage-bucket', applicationKeyId: S.b2Id, applicationKey: S.b2 })],
      ['REST (URL)', () => new RestBackend(`http://user:${S.rest}@127.0.0.1:8000/repo/`)],
      ['REST (options)', () => new RestBackend('http://127.0.0.1:8000/repo/', { username: 'user', password: S.rest })],
    ];
    for (const [name, make] of backends) {
      const b = make();
      assertNoSecret(b.location, `${name} location`);
      assertNoSecret(new ObservedBackend(b, () => undefined).location, `${name} observed location`);
      assertNoSecret(inspect(b, { depth: 6 }), `${name} (util.inspect)`);
      await b.close();
    }
    // Credentials that are not valid JSON: the parser's message would quote them.
    const broken = new GCSBackend({ bucket: 'bucket', credentials: `{"private_key": "${S.gcs}", broken` });
    assertErrorClean(await failure(broken.stat({ type: 'config', name: '' })), 'GCS with broken credentials');
    // Wrapped by openBackend (retry, limits, observe): the location is still clean.
    const wrapped = await openBackend(`rest:http://user:${S.rest}@127.0.0.1:8000/repo/`, { env: {} });
    assertNoSecret(wrapped.location, 'wrapped REST location');
    assertNoSecret(describeLocation(parseLocation(`rest:https://user:${S.rest}@host/repo/`)), 'describeLocation of a REST location');
    await wrapped.close();
  });
});
