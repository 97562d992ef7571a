import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { backendFromStash, decodeSecretData, stashKind } from '../../src/backend/stash.ts';
import type { StashBackendSpec, StashSecretData } from '../../src/backend/stash.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { S3Backend } from '../../src/backend/s3.ts';
import { AzureBackend } from '../../src/backend/azure.ts';
import { SwiftBackend } from '../../src/backend/swift.ts';
import { RestBackend } from '../../src/backend/rest.ts';
import { GCSBackend } from '../../src/backend/gcs.ts';
import { B2Backend } from '../../src/backend/b2.ts';
import { RetryBackend } from '../../src/backend/wrappers/retry.ts';
import { LimitedBackend } from '../../src/backend/wrappers/limits.ts';
import type { Backend } from '../../src/backend/backend.ts';
import { Repository } from '../../src/repository/repository.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'stash repository password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

/** The bare backend under the retry and limit wrappers. */
function bare(b: Backend): Backend {
  assert.ok(b instanceof RetryBackend, 'wrapped with retries');
  assert.ok(b.inner instanceof LimitedBackend, 'wrapped with a connection limit');
  return b.inner.inner;
}

describe('backendFromStash: local', () => {
  it('opens mountPath/subPath, and a repository made there can be opened again', async () => {
    const dir = await tmpDir('stowage-stash');
    const spec: StashBackendSpec = {
      storageSecretName: 'local-secret',
      local: { mountPath: join(dir, 'safe', 'backup'), subPath: 'ns/app', hostPath: { path: '/data/stash-test/restic-repo' } },
    };
    const secret: StashSecretData = { RESTIC_PASSWORD: new TextEncoder().encode(PASSWORD) };
    const first = await backendFromStash(spec, secret);
    assert.equal(first.kind, 'local');
    assert.equal(first.password, PASSWORD);
    const local = bare(first.backend);
    assert.ok(local instanceof LocalBackend);
    assert.equal(local.root, join(dir, 'safe', 'backup', 'ns', 'app'));
    assert.equal(first.backend.connections, 4);

    const repo = await Repository.init(first.backend, { password: first.password, kdf: FAST_KDF });
    const saved = await repo.saveUnpacked('snapshots', new TextEncoder().encode('{"x":1}'));
    assert.ok((await readdir(join(dir, 'safe', 'backup', 'ns', 'app'))).includes('config'));

    const again = await backendFromStash(spec, { RESTIC_PASSWORD: PASSWORD });
    const reopened = await Repository.open(again.backend, { password: again.password });
    assert.equal(reopened.config.id, repo.config.id);
    assert.deepEqual(new TextDecoder().decode(await reopened.loadUnpacked('snapshots', saved)), '{"x":1}');
  });

  it('works without a subPath, and as a raw backend when asked', async () => {
    const dir = await tmpDir('stowage-stash');
    const { backend } = await backendFromStash({ local: { mountPath: dir, persistentVolumeClaim: { claimName: 'repo' } } }, { RESTIC_PASSWORD: 'pw' }, { raw: true });
    assert.ok(backend instanceof LocalBackend);
    assert.equal(backend.root, dir);
  });
});

describe('backendFromStash: cloud kinds (constructed, not contacted)', () => {
  it('s3: endpoint URL, bucket and prefix; AWS keys; region; insecureTLS; CA_CERT_DATA', async () => {
    const { backend, kind } = await backendFromStash(
      { storageSecretName: 's3-secret', s3: { endpoint: 'https://minio.example.com:9000/', bucket: 'stash-backup', prefix: '/demo/deployment', region: 'eu-west-1', insecureTLS: true } },
      { RESTIC_PASSWORD: 'pw', AWS_ACCESS_KEY_ID: 'minio', AWS_SECRET_ACCESS_KEY: 'minio-secret-key', CA_CERT_DATA: PEM },
    );
    assert.equal(kind, 's3');
    const s3 = bare(backend);
    assert.ok(s3 instanceof S3Backend);
    assert.equal(s3.bucket, 'stash-backup');
    assert.equal(s3.prefix, 'demo/deployment');
    assert.equal(s3.location, 's3:https://minio.example.com:9000/stash-backup/demo/deployment');
    assert.ok(!s3.location.includes('minio-secret-key'));
  });

  it('s3: the AWS endpoint, with the region from the spec', async () => {
    const { backend } = await backendFromStash(
      { s3: { endpoint: 's3.amazonaws.com', bucket: 'stash-qa', prefix: 'demo', region: 'us-west-2' } },
      { RESTIC_PASSWORD: 'pw', AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 'secret' },
    );
    const s3 = bare(backend);
    assert.equal(s3.location, 's3:s3.us-west-2.amazonaws.com/stash-qa/demo');
  });

  it('gcs: bucket, prefix, maxConnections; the JSON key from the secret', async () => {
    const key = JSON.stringify({ type: 'service_account', project_id: 'p', client_email: 'stash@p.iam.gserviceaccount.com', private_key: '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n' });
    const { backend, kind } = await backendFromStash(
      { gcs: { bucket: 'stash-backup', prefix: '/demo', maxConnections: 7 } },
      { RESTIC_PASSWORD: 'pw', GOOGLE_PROJECT_ID: 'p', GOOGLE_SERVICE_ACCOUNT_JSON_KEY: new TextEncoder().encode(key) },
    );
    assert.equal(kind, 'gcs');
    const gcs = bare(backend);
    assert.ok(gcs instanceof GCSBackend);
    assert.equal(gcs.bucket, 'stash-backup');
    assert.equal(gcs.prefix, 'demo');
    assert.equal(gcs.connections, 7);
    assert.ok(!gcs.location.includes('PRIVATE'));
    // Without maxConnections restic's default applies; Go's zero value means "unset".
    const dflt = await backendFromStash({ gcs: { bucket: 'stash-backup', maxConnections: 0 } }, { RESTIC_PASSWORD: 'pw' });
    assert.equal(dflt.backend.connections, 5);
  });

  it('b2: bucket, prefix (written with a slash, as Stash does), keys, maxConnections', async () => {
    const { backend } = await backendFromStash(
      { b2: { bucket: 'stash-backup', prefix: 'demo/app', maxConnections: 2 } },
      { RESTIC_PASSWORD: 'pw', B2_ACCOUNT_ID: '0012345', B2_ACCOUNT_KEY: 'K001secret' },
    );
    const b2 = bare(backend);
    assert.ok(b2 instanceof B2Backend);
    assert.equal(b2.bucket, 'stash-backup');
    assert.equal(b2.prefix, 'demo/app');
    assert.equal(b2.connections, 2);
    assert.ok(!b2.location.includes('K001secret'));
  });

  it('azure: container, prefix, account from the secret, maxConnections', async () => {
    const { backend } = await backendFromStash(
      { azure: { container: 'stashqa', prefix: 'demo', maxConnections: 3 } },
      { RESTIC_PASSWORD: 'pw', AZURE_ACCOUNT_NAME: 'myaccount', AZURE_ACCOUNT_KEY: 'c2VjcmV0' },
    );
    const azure = bare(backend);
    assert.ok(azure instanceof AzureBackend);
    assert.equal(azure.container, 'stashqa');
    assert.equal(azure.prefix, 'demo');
    assert.equal(azure.connections, 3);
    assert.equal(backend.connections, 3);
    await assert.rejects(backendFromStash({ azure: { container: 'stashqa' } }, { RESTIC_PASSWORD: 'pw', AZURE_ACCOUNT_NAME: 'a' }), /AZURE_ACCOUNT_KEY/);
  });

  it('swift: container and prefix, keystone or v1 credentials from the secret', async () => {
    const v3 = await backendFromStash(
      { swift: { container: 'stash-backup', prefix: '/demo' } },
      {
        RESTIC_PASSWORD: 'pw',
        OS_AUTH_URL: 'https://keystone.example.com:5000/v3',
        OS_USERNAME: 'admin',
        OS_PASSWORD: 'keystone-secret',
        OS_REGION_NAME: 'RegionOne',
        OS_USER_DOMAIN_NAME: 'Default',
        OS_PROJECT_NAME: 'demo',
        OS_PROJECT_DOMAIN_NAME: 'Default',
      },
    );
    const swift = bare(v3.backend);
    assert.ok(swift instanceof SwiftBackend);
    assert.equal(swift.connections, 5);
    assert.ok(swift.location.includes('stash-backup') && !swift.location.includes('keystone-secret'), swift.location);
    const v1 = await backendFromStash({ swift: { container: 'c' } }, { RESTIC_PASSWORD: 'pw', ST_AUTH: 'http://127.0.0.1:8080/auth/v1.0', ST_USER: 'test:tester', ST_KEY: 'testing' });
    assert.ok(bare(v1.backend) instanceof SwiftBackend);
  });

  it('rest: the URL, with REST_SERVER_USERNAME/PASSWORD replacing any user in it', async () => {
    const { backend } = await backendFromStash(
      { rest: { url: 'https://old:gone@rest.example.com:8000/stash/demo' } },
      { RESTIC_PASSWORD: 'pw', REST_SERVER_USERNAME: 'stash', REST_SERVER_PASSWORD: 'rest-secret', CA_CERT_DATA: PEM },
    );
    const rest = bare(backend);
    assert.ok(rest instanceof RestBackend);
    assert.equal(rest.location, 'rest:https://stash@rest.example.com:8000/stash/demo/');
    const anonymous = await backendFromStash({ rest: { url: 'http://127.0.0.1:8000/' } }, { RESTIC_PASSWORD: 'pw' });
    assert.equal(anonymous.backend.location, 'rest:http://127.0.0.1:8000/');
  });
});

describe('backendFromStash: invalid input', () => {
  it('needs exactly one kind', () => {
    assert.throws(() => stashKind({}), /exactly one of local, s3, gcs, azure, swift, b2, rest; none is set/);
    assert.throws(() => stashKind({ s3: { endpoint: 'x', bucket: 'b' }, gcs: { bucket: 'b' } }), /found s3 and gcs/);
    assert.equal(stashKind({ b2: { bucket: 'bucket' } }), 'b2');
  });

  it('needs RESTIC_PASSWORD, and the fields each kind requires', async () => {
    const pw = { RESTIC_PASSWORD: 'pw' };
    const cases: Array<[StashBackendSpec, StashSecretData, RegExp]> = [
      [{ local: { mountPath: '/repo' } }, {}, /no RESTIC_PASSWORD/],
      [{ local: { mountPath: '/repo' } }, { RESTIC_PASSWORD: '' }, /no RESTIC_PASSWORD/],
      [{ local: { mountPath: '' } }, pw, /local\.mountPath must be a non-empty string/],
      [{ s3: { endpoint: 's3.amazonaws.com', bucket: '' } }, pw, /s3\.bucket/],
      [{ s3: { bucket: 'b' } as never }, pw, /s3\.endpoint/],
      [{ gcs: { bucket: 'b', prefix: 5 } as never }, pw, /gcs\.prefix must be a string/],
      [{ gcs: { bucket: 'b', maxConnections: 1.5 } }, pw, /gcs\.maxConnections must be a positive integer/],
      [{ azure: { container: '' } }, pw, /azure\.container/],
      [{ swift: {} as never }, pw, /swift\.container/],
      [{ b2: { bucket: 'bucket-name' } }, pw, /no B2_ACCOUNT_ID/],
      [{ b2: { bucket: 'bucket-name' } }, { ...pw, B2_ACCOUNT_ID: 'id' }, /no B2_ACCOUNT_KEY/],
      [{ b2: { bucket: 'b' } }, { ...pw, B2_ACCOUNT_ID: 'id', B2_ACCOUNT_KEY: 'k' }, /Stash b2 backend spec: .*at least 6/],
      [{ rest: { url: 'ftp://host/' } }, pw, /only http and https/],
      [{ local: { mountPath: '/repo' } }, { RESTIC_PASSWORD: 42 as never }, /RESTIC_PASSWORD must be a string or bytes/],
    ];
    for (const [spec, secret, message] of cases) {
      await assert.rejects(backendFromStash(spec, secret), (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, String(err));
        assert.match(err.message, message);
        return true;
      });
    }
  });

  it('never puts secrets into errors', async () => {
    const secret = { RESTIC_PASSWORD: 'top-secret-pw', AZURE_ACCOUNT_NAME: 'acct', AZURE_ACCOUNT_KEY: 'azure-secret-key' };
    await assert.rejects(backendFromStash({ azure: { container: 'x' } }, secret), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.ok(!err.message.includes('top-secret-pw') && !err.message.includes('azure-secret-key'), err.message);
      return true;
    });
  });
});

describe('decodeSecretData', () => {
  it("decodes a Secret's base64 data", () => {
    const key = new Uint8Array(randomBytes(16));
    const decoded = decodeSecretData({ RESTIC_PASSWORD: Buffer.from('pw\n').toString('base64'), KEY: Buffer.from(key).toString('base64') });
    assert.equal(new TextDecoder().decode(decoded.RESTIC_PASSWORD), 'pw\n');
    assert.deepEqual(decoded.KEY, key);
    assert.throws(() => decodeSecretData({ X: 'not base64!' }), InvalidInputError);
  });
});
