// Runs the examples as a user would — `node examples/...ts` in a child process, importing the
// built package by its name — each against the real test server of its backend, with only the
// environment its header documents. Each backend example runs twice (the first run initialises the
// repository, the second opens it); afterwards the repository is opened independently, through
// the source, to see that both snapshots landed where the location points. The Stash operator
// example reads Repository and Secret manifests (YAML and JSON) for a local repository and for
// one on MinIO. Needs `npm run build` (npm test does it) and the servers of test/servers/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openBackend } from '../../src/backend/location.ts';
import type { OpenBackendOptions } from '../../src/backend/location.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import type { Backend } from '../../src/backend/backend.ts';
import { formatStashBytes } from '../../src/operator/format.ts';
import { Repository } from '../../src/repository/repository.ts';
import { goTimeFromDate } from '../../src/repository/gotime.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { startMinio } from '../servers/minio.ts';
import type { MinioServer } from '../servers/minio.ts';
import { startRestServer } from '../servers/rest-server.ts';
import type { RestServer } from '../servers/rest-server.ts';
import { startFakeGcs } from '../servers/fake-gcs.ts';
import type { FakeGcsServer } from '../servers/fake-gcs.ts';
import { startAzurite } from '../servers/azurite.ts';
import type { AzuriteServer } from '../servers/azurite.ts';
import { startSwift } from '../servers/swift.ts';
import type { SwiftServer } from '../servers/swift.ts';
import { startB2Emulator } from '../servers/b2-emulator.ts';
import type { B2Emulator } from '../servers/b2-emulator.ts';
import { tmpDir } from '../helpers/tmp.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PASSWORD = 'example password: w/ odd chars @:%';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

const work = await tmpDir('stowage-examples');
// HOME for the children: no ~/.aws, ~/.config/gcloud or the like from the machine running the tests.
const home = path.join(work, 'home');
await mkdir(home);

/** The folder every example backs up: text, a binary file over a chunk boundary, an empty file, a non-ASCII name. */
const source = path.join(work, 'source');
await mkdir(path.join(source, 'sub', 'deeper'), { recursive: true });
await writeFile(path.join(source, 'readme.txt'), 'backed up by an example\n');
await writeFile(path.join(source, 'sub', 'random.bin'), randomBytes(3 * 1024 * 1024 + 17));
await writeFile(path.join(source, 'sub', 'deeper', 'empty'), '');
await writeFile(path.join(source, 'sub', 'grüße ñ.txt'), 'unicode names survive\n');
const sourceFiles = await countFiles(source);

async function countFiles(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    files++;
    bytes += (await stat(path.join(e.parentPath, e.name))).size;
  }
  return { files, bytes };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node <example> ...args` from the project root, with exactly `env` (plus PATH and HOME). */
function runExample(example: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [example, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: home, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function describeRun(run: Run): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

/** Secrets handed to an example must not appear in anything it prints. */
function assertNoSecrets(run: Run, env: Record<string, string>): void {
  for (const [name, value] of Object.entries(env)) {
    if (!/PASSWORD|SECRET|_KEY$/.test(name) || value.length < 6) continue;
    assert.ok(!run.stdout.includes(value) && !run.stderr.includes(value), `${name} appears in the output:\n${describeRun(run)}`);
  }
}

/** Checks the summary line and returns the location it names. */
function assertSummary(run: Run, kind: string, snapshots: number): string {
  assert.equal(run.code, 0, describeRun(run));
  const re = new RegExp(`^ok ${kind} (.+): snapshot ([0-9a-f]{8}) restored and verified, (\\d+) files \\((\\d+) bytes\\); (\\d+) snapshots in the repository$`, 'm');
  const m = re.exec(run.stdout);
  assert.ok(m, `no summary line for ${kind}:\n${describeRun(run)}`);
  assert.equal(Number(m[3]), sourceFiles.files, 'files verified');
  assert.equal(Number(m[4]), sourceFiles.bytes, 'bytes verified');
  assert.equal(Number(m[5]), snapshots, 'snapshots in the repository');
  // The snapshot it restored is the one it listed last.
  const listed = [...run.stdout.matchAll(/^ {2}([0-9a-f]{8}) {2}\S+ {2}(.+)$/gm)];
  assert.equal(listed.length, snapshots, describeRun(run));
  assert.equal(listed.at(-1)![1], m[2]);
  assert.equal(listed.at(-1)![2], source);
  return m[1];
}

interface BackendCase {
  /** RESTIC_REPOSITORY */
  location: string;
  /** The credentials and emulator settings the example's header documents. */
  env: Record<string, string>;
  /** How the source opens the same repository, to check it independently of the example. */
  open: () => Promise<Backend>;
}

/** Two runs of examples/backends/<kind>.ts, then the repository as the source sees it. */
async function roundTrip(kind: string, c: BackendCase): Promise<string> {
  const env = { RESTIC_REPOSITORY: c.location, RESTIC_PASSWORD: PASSWORD, ...c.env };
  const example = `examples/backends/${kind}.ts`;

  const first = await runExample(example, [source], env);
  assert.match(first.stdout, /^no repository at .+ yet: initialising one$/m, describeRun(first));
  const shown = assertSummary(first, kind, 1);
  assertNoSecrets(first, env);

  const second = await runExample(example, [source], env);
  assert.doesNotMatch(second.stdout, /initialising/, describeRun(second));
  assert.equal(assertSummary(second, kind, 2), shown);
  assertNoSecrets(second, env);

  const backend = await c.open();
  try {
    const repo = await Repository.open(backend, { password: PASSWORD });
    const snapshots = await listSnapshots(repo);
    assert.deepEqual(
      snapshots.map((s) => s.snapshot.paths),
      [[source], [source]],
    );
    assert.deepEqual(snapshots.map((s) => s.snapshot.tags), [['example'], ['example']]);
    const report = await checkRepository(repo, { readData: true });
    assert.deepEqual(report.errors, []);
  } finally {
    await backend.close();
  }
  return shown;
}

/** The environment as openBackend sees it, for the independent check. */
function opener(location: string, env: Record<string, string>, options: OpenBackendOptions = {}): () => Promise<Backend> {
  return () => openBackend(location, { env, ...options });
}

function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

describe('examples/backends/local.ts', () => {
  it('initialises a folder repository, backs up, restores and verifies; the second run opens it', async () => {
    const location = `local:${path.join(work, 'local-repo')}`;
    const shown = await roundTrip('local', { location, env: {}, open: opener(location, {}) });
    assert.equal(shown, path.join(work, 'local-repo'));
  });

  it('exits with 2 and names the variables when RESTIC_REPOSITORY or RESTIC_PASSWORD is missing', async () => {
    const run = await runExample('examples/backends/local.ts', [source], { RESTIC_PASSWORD: PASSWORD });
    assert.equal(run.code, 2, describeRun(run));
    assert.match(run.stderr, /set RESTIC_REPOSITORY and RESTIC_PASSWORD/);
  });

  it('backs up the examples folder when no folder is given', async () => {
    const location = path.join(work, 'local-default');
    const run = await runExample('examples/backends/local.ts', [], { RESTIC_REPOSITORY: location, RESTIC_PASSWORD: PASSWORD });
    assert.equal(run.code, 0, describeRun(run));
    const examples = await countFiles(path.join(ROOT, 'examples'));
    assert.match(run.stdout, new RegExp(`^ok local .+ restored and verified, ${examples.files} files \\(${examples.bytes} bytes\\); 1 snapshots in the repository$`, 'm'));
    assert.match(run.stdout, new RegExp(`^snapshot [0-9a-f]{8} of ${path.join(ROOT, 'examples')}:`, 'm'));
  });
});

describe('S3 on MinIO: examples/backends/s3.ts and examples/stash-operator.ts', () => {
  let minio: MinioServer;
  before(async () => {
    minio = await startMinio();
  });
  after(() => minio?.stop());

  it('s3.ts creates the bucket, initialises, backs up, restores and verifies; the second run opens it', async () => {
    const env = { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
    const location = `s3:${minio.endpoint}/${uniqueName('examples')}/some/prefix`;
    const shown = await roundTrip('s3', { location, env, open: opener(location, env) });
    assert.equal(shown, location);
  });

  it('stash-operator.ts reports the status of a Stash s3 repository from JSON manifests', async () => {
    const bucket = uniqueName('stash');
    const env = { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
    // Stash's restic joins endpoint, bucket and prefix: s3:<endpoint>/<bucket>/<prefix>.
    const backend = await openBackend(`s3:${minio.endpoint}/${bucket}/demo/app`, { env });
    const times = ['2025-03-01T01:00:00.250Z', '2025-03-02T01:00:09.999Z'];
    await makeRepository(backend, times);
    const stats = await repositoryStats(await (await Repository.open(backend, { password: PASSWORD })).loadIndex());
    await backend.close();

    const dir = path.join(work, 'stash-s3');
    await mkdir(dir);
    const repositoryFile = path.join(dir, 'repository.json');
    const secretFile = path.join(dir, 'secret.json');
    await writeFile(
      repositoryFile,
      JSON.stringify({
        apiVersion: 'stash.appscode.com/v1alpha1',
        kind: 'Repository',
        metadata: { name: 'minio-repo', namespace: 'demo' },
        spec: { backend: { storageSecretName: 'minio-secret', s3: { endpoint: minio.endpoint, bucket, prefix: '/demo/app' } } },
      }),
    );
    const data = { RESTIC_PASSWORD: PASSWORD, AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
    await writeFile(
      secretFile,
      JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'minio-secret', namespace: 'demo' }, data: base64Values(data) }),
    );

    const run = await runExample('examples/stash-operator.ts', [repositoryFile, secretFile], {});
    assert.equal(run.code, 0, describeRun(run));
    assert.deepEqual(JSON.parse(run.stdout), {
      integrity: true,
      totalSize: resticBytes(stats.rawDataSize),
      snapshotCount: 2,
      firstBackupTime: '2025-03-01T01:00:00Z',
      lastBackupTime: '2025-03-02T01:00:09Z',
    });
    assertNoSecrets(run, data);
  });
});

describe('examples/stash-operator.ts on a local repository (YAML manifests)', () => {
  const dir = path.join(work, 'stash-local');
  const repositoryFile = path.join(dir, 'repository.yaml');
  const secretFile = path.join(dir, 'secret.yaml');

  /** A Repository as people write them: comments, a hostPath volume, a list, quoted strings. */
  async function writeManifests(subPath: string, secretName = 'local-secret'): Promise<void> {
    await mkdir(dir, { recursive: true });
    await writeFile(
      repositoryFile,
      [
        '# written by hand, as in the Stash docs',
        'apiVersion: stash.appscode.com/v1alpha1',
        'kind: Repository',
        'metadata:',
        '  name: local-repo',
        '  namespace: demo',
        '  finalizers:',
        '  - stash',
        'spec:',
        '  backend:',
        '    local:',
        `      mountPath: "${dir}"`,
        `      subPath: ${subPath}   # the repository folder below the mount`,
        '      hostPath:',
        '        path: /data/stash-test/restic-repo',
        `    storageSecretName: ${secretName}`,
        '  usagePolicy:',
        '    allowedNamespaces:',
        '      from: Same',
        '',
      ].join('\n'),
    );
    const data = base64Values({ RESTIC_PASSWORD: PASSWORD });
    await writeFile(
      secretFile,
      ['apiVersion: v1', 'kind: Secret', 'metadata:', '  name: local-secret', '  namespace: demo', 'type: Opaque', 'data:', `  RESTIC_PASSWORD: ${data.RESTIC_PASSWORD}`, ''].join('\n'),
    );
  }

  it('reports integrity, size, snapshot count and first/last backup time; lost packs turn integrity false', async () => {
    const repoDir = path.join(dir, 'repo');
    const backend = new LocalBackend(repoDir);
    await makeRepository(backend, ['2025-01-05T02:00:07.5Z', '2025-01-06T02:00:03Z', '2025-01-07T02:00:05.123456789Z']);
    const stats = await repositoryStats(await (await Repository.open(backend, { password: PASSWORD })).loadIndex());
    await writeManifests('repo');

    const run = await runExample('examples/stash-operator.ts', [repositoryFile, secretFile], {});
    assert.equal(run.code, 0, describeRun(run));
    const status = JSON.parse(run.stdout);
    assert.deepEqual(status, {
      integrity: true,
      totalSize: resticBytes(stats.rawDataSize),
      snapshotCount: 3,
      firstBackupTime: '2025-01-05T02:00:07Z',
      lastBackupTime: '2025-01-07T02:00:05Z',
    });
    // The random file alone is over 3 MiB, so restic's format shows MiB with three decimals.
    assert.match(status.totalSize, /^3\.\d{3} MiB$/);

    // Stash records a failed `restic check` as integrity: false; the problems go to stderr. With
    // the packs gone the trees cannot be walked, so there is no size, but the rest is reported.
    const packs: string[] = [];
    for await (const f of backend.list('data')) packs.push(f.name);
    for (const name of packs) await backend.remove({ type: 'data', name });
    const damaged = await runExample('examples/stash-operator.ts', [repositoryFile, secretFile], {});
    assert.equal(damaged.code, 0, describeRun(damaged));
    assert.deepEqual(JSON.parse(damaged.stdout), {
      integrity: false,
      snapshotCount: 3,
      firstBackupTime: '2025-01-05T02:00:07Z',
      lastBackupTime: '2025-01-07T02:00:05Z',
    });
    assert.match(damaged.stderr, new RegExp(`^integrity: pack ${packs[0]}`, 'm'));
    assert.match(damaged.stderr, /^size: .*does not exist/m);
  });

  it('leaves the backup times out while the repository has no snapshot', async () => {
    await makeRepository(new LocalBackend(path.join(dir, 'empty')), []);
    await writeManifests('empty');
    const run = await runExample('examples/stash-operator.ts', [repositoryFile, secretFile], {});
    assert.equal(run.code, 0, describeRun(run));
    assert.deepEqual(JSON.parse(run.stdout), { integrity: true, totalSize: '0 B', snapshotCount: 0 });
  });

  it('refuses a Secret other than the one the Repository names', async () => {
    await writeManifests('repo', 'another-secret');
    const run = await runExample('examples/stash-operator.ts', [repositoryFile, secretFile], {});
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /is Secret local-secret, but the Repository names another-secret/);
    assert.equal(run.stdout, '');
  });
});

describe('examples/backends/rest.ts on rest-server (basic auth, TLS)', () => {
  let server: RestServer;
  before(async () => {
    server = await startRestServer({ auth: true, tls: true });
  });
  after(() => server?.stop());

  it('creates and initialises the repository on the server, backs up, restores and verifies', async () => {
    const env = { RESTIC_REST_USERNAME: server.username!, RESTIC_REST_PASSWORD: server.password!, RESTIC_CACERT: server.caCertFile! };
    const location = `rest:${server.url}/example-repo/`;
    const shown = await roundTrip('rest', { location, env, open: opener(location, env, { cacert: server.caCertFile }) });
    // The user name is shown, the password never (assertNoSecrets).
    assert.equal(shown, `rest:${server.url.replace('://', `://${server.username}@`)}/example-repo/`);
    assert.ok((await stat(path.join(server.dataDir, 'example-repo', 'config'))).isFile());
  });
});

describe('examples/backends/gcs.ts on fake-gcs-server', () => {
  let gcs: FakeGcsServer;
  before(async () => {
    gcs = await startFakeGcs();
  });
  after(() => gcs?.stop());

  it('reaches the emulator through STORAGE_EMULATOR_HOST, creates the bucket, backs up, restores and verifies', async () => {
    // host:port, as restic takes it (Google's Node SDK would misread this form).
    const env = { STORAGE_EMULATOR_HOST: gcs.host, GOOGLE_PROJECT_ID: 'stowage-test' };
    const location = `gs:${uniqueName('examples')}:/restic`;
    const shown = await roundTrip('gcs', { location, env, open: opener(location, env, { overrides: { gs: { apiEndpoint: gcs.endpoint } } }) });
    assert.equal(shown, `${location} (${gcs.endpoint})`);
  });
});

describe('examples/backends/azure.ts on azurite', () => {
  let azurite: AzuriteServer;
  before(async () => {
    azurite = await startAzurite();
  });
  after(() => azurite?.stop());

  it('reaches azurite through STOWAGE_AZURE_ENDPOINT, creates the container, backs up, restores and verifies', async () => {
    const env = { AZURE_ACCOUNT_NAME: azurite.accountName, AZURE_ACCOUNT_KEY: azurite.accountKey, STOWAGE_AZURE_ENDPOINT: azurite.endpoint };
    const location = `azure:${uniqueName('examples')}:/restic`;
    const shown = await roundTrip('azure', { location, env, open: opener(location, env, { overrides: { azure: { endpoint: azurite.endpoint } } }) });
    assert.ok(shown.startsWith(location), shown);
  });
});

describe('examples/backends/swift.ts on OpenStack Swift (tempauth)', () => {
  let swift: SwiftServer;
  before(async () => {
    swift = await startSwift();
  });
  after(() => swift?.stop());

  it('logs in with ST_AUTH/ST_USER/ST_KEY, creates the container, backs up, restores and verifies', async () => {
    const location = `swift:${uniqueName('examples')}:/restic`;
    const shown = await roundTrip('swift', { location, env: swift.env, open: opener(location, swift.env) });
    assert.equal(shown, location);
  });
});

describe('examples/backends/b2.ts on the B2 emulator', () => {
  let emu: B2Emulator;
  before(async () => {
    emu = await startB2Emulator();
  });
  after(() => emu?.stop());

  it('authorizes through STOWAGE_B2_AUTHORIZE_URL, creates the bucket, backs up, restores and verifies', async () => {
    const env = { B2_ACCOUNT_ID: emu.keyId, B2_ACCOUNT_KEY: emu.key, STOWAGE_B2_AUTHORIZE_URL: emu.authorizeUrl };
    const bucket = uniqueName('examples');
    const location = `b2:${bucket}:restic`;
    const shown = await roundTrip('b2', { location, env, open: opener(location, env, { overrides: { b2: { authorizeUrl: emu.authorizeUrl } } }) });
    assert.equal(shown, location);
    assert.ok(emu.versions(bucket).some((v) => v.fileName === 'restic/config'));
  });
});

// ---- helpers for the Stash example ------------------------------------------------------------

/** A repository with one snapshot of `source` per time (none: just initialised). */
async function makeRepository(backend: Backend, times: string[]): Promise<void> {
  const repo = await Repository.init(backend, { password: PASSWORD, kdf: FAST_KDF });
  const indexed = await repo.loadIndex();
  for (const time of times) {
    const res = await backup(indexed, { paths: [source], time: goTimeFromDate(new Date(time)) });
    assert.deepEqual(res.errors, []);
  }
}

function base64Values(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
}

/** restic's FormatBytes, which Stash shows as status.totalSize (written out here, not taken from the example). */
/** Stash's size format (stashed/apimachinery pkg/restic/util.go): strictly above a unit, three decimals. */
function resticBytes(n: number): string {
  return formatStashBytes(n);
}
