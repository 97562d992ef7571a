import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describeLocation, openBackend, openLocation, parseLocation, redactLocation } from '../../src/backend/location.ts';
import type { OpenBackendOptions, ParsedLocation } from '../../src/backend/location.ts';
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
import { InvalidInputError, StowageError, UnsupportedError } from '../../src/errors.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('parseLocation', () => {
  const cases: Array<[string, ParsedLocation]> = [
    // local
    ['/srv/restic-repo', { kind: 'local', path: '/srv/restic-repo' }],
    ['./repo', { kind: 'local', path: resolve('repo') }],
    ['repo', { kind: 'local', path: resolve('repo') }],
    ['local:/mnt/nfs/repo', { kind: 'local', path: '/mnt/nfs/repo' }],
    ['local:rel/repo', { kind: 'local', path: resolve('rel/repo') }],
    ['/data/a:b', { kind: 'local', path: '/data/a:b' }],
    // s3, URL form
    ['s3:https://minio.example.com:9000/bucket/some/prefix', { kind: 's3', endpoint: 'https://minio.example.com:9000', bucket: 'bucket', prefix: 'some/prefix' }],
    ['s3:http://127.0.0.1:9000/bucket', { kind: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'bucket', prefix: '' }],
    ['s3:http://127.0.0.1:9000/bucket/', { kind: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'bucket', prefix: '' }],
    ['s3:https://host/bucket//a/./b/', { kind: 's3', endpoint: 'https://host', bucket: 'bucket', prefix: 'a/b' }],
    ['s3:HTTPS://Host.Example/b/p', { kind: 's3', endpoint: 'https://host.example', bucket: 'b', prefix: 'p' }],
    // s3, host form: https by default
    ['s3:s3.amazonaws.com/bucket/prefix', { kind: 's3', endpoint: 'https://s3.amazonaws.com', bucket: 'bucket', prefix: 'prefix' }],
    ['s3:s3.amazonaws.com/bucket', { kind: 's3', endpoint: 'https://s3.amazonaws.com', bucket: 'bucket', prefix: '' }],
    ['s3:s3.eu-west-1.amazonaws.com/b/x/y/z', { kind: 's3', endpoint: 'https://s3.eu-west-1.amazonaws.com', bucket: 'b', prefix: 'x/y/z' }],
    ['s3:minio.local:9000/bucket/p', { kind: 's3', endpoint: 'https://minio.local:9000', bucket: 'bucket', prefix: 'p' }],
    ['s3://s3.amazonaws.com/bucket/p', { kind: 's3', endpoint: 'https://s3.amazonaws.com', bucket: 'bucket', prefix: 'p' }],
    // gs, azure, swift
    ['gs:bucket:/', { kind: 'gs', bucket: 'bucket', prefix: '' }],
    ['gs:bucket:', { kind: 'gs', bucket: 'bucket', prefix: '' }],
    ['gs:my-bucket:/a/b/', { kind: 'gs', bucket: 'my-bucket', prefix: 'a/b' }],
    ['gs:bucket:prefix', { kind: 'gs', bucket: 'bucket', prefix: 'prefix' }],
    ['azure:container:/', { kind: 'azure', container: 'container', prefix: '' }],
    ['azure:backups:/cluster-a/ns', { kind: 'azure', container: 'backups', prefix: 'cluster-a/ns' }],
    ['swift:container:/', { kind: 'swift', container: 'container', prefix: '' }],
    ['swift:c:/deep/er/', { kind: 'swift', container: 'c', prefix: 'deep/er' }],
    // b2: the prefix is optional, and Stash writes it with a slash
    ['b2:bucket-name', { kind: 'b2', bucket: 'bucket-name', prefix: '' }],
    ['b2:bucket-name:prefix/x', { kind: 'b2', bucket: 'bucket-name', prefix: 'prefix/x' }],
    ['b2:bucket-name:/prefix', { kind: 'b2', bucket: 'bucket-name', prefix: 'prefix' }],
    ['b2:Bucket-42:', { kind: 'b2', bucket: 'Bucket-42', prefix: '' }],
    // rest: a trailing slash is added, credentials are split off and decoded
    ['rest:http://127.0.0.1:8000/', { kind: 'rest', url: 'http://127.0.0.1:8000/' }],
    ['rest:http://host:8000/repo', { kind: 'rest', url: 'http://host:8000/repo/' }],
    ['rest:https://alice:s3cr%40t@backup.example.com:8000/repo/', { kind: 'rest', url: 'https://backup.example.com:8000/repo/', username: 'alice', password: 's3cr@t' }],
    ['rest:https://bob@host/', { kind: 'rest', url: 'https://host/', username: 'bob' }],
  ];
  for (const [location, expected] of cases) {
    it(`reads ${location}`, () => {
      assert.deepEqual(parseLocation(location), expected);
    });
  }

  const invalid: Array<[string, RegExp]> = [
    ['', /non-empty/],
    ['local:', /no path/],
    ['s3:', /no valid host/],
    ['s3:host', /no bucket/],
    ['s3:host/', /no bucket/],
    ['s3:https://host', /no bucket/],
    ['s3:https://host/', /no bucket/],
    ['s3:https://key:secret@host/bucket', /must not contain credentials/],
    ['s3:https://host/bucket?x=1', /query/],
    ['s3:https://host/bucket/../../etc', /must not leave/],
    ['gs:bucket', /no ":" after the bucket/],
    ['gs::/prefix', /no bucket name/],
    ['azure:container', /no ":" after the container/],
    ['swift:container', /no ":"/],
    ['swift:container:prefix', /must start with "\/"/],
    ['b2:', /no bucket name/],
    ['b2:short', /at least 6/],
    ['b2:' + 'x'.repeat(51), /at most 50/],
    ['b2:under_score', /only letters, digits/],
    ['rest:ftp://host/', /only http and https/],
    ['rest:not a url', /not a valid URL/],
    ['rest:http://host/repo?x=1', /query/],
    ['sftp:user@host:/srv/repo', /scheme "sftp" is not supported/],
    ['rclone:remote:path', /scheme "rclone" is not supported/],
    ['ftp://host/repo', /scheme "ftp" is not supported/],
  ];
  for (const [location, message] of invalid) {
    it(`rejects ${JSON.stringify(location)}`, () => {
      assert.throws(
        () => parseLocation(location),
        (err: unknown) => {
          assert.ok(err instanceof InvalidInputError, String(err));
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  it('lists every supported form for an unknown scheme', () => {
    assert.throws(() => parseLocation('webdav:host/x'), (err: unknown) => {
      assert.ok(err instanceof InvalidInputError);
      for (const form of ['local:/path', 's3:https://', 'gs:bucket:/', 'azure:container:/', 'swift:container:/', 'b2:bucket', 'rest:http']) {
        assert.ok(err.message.includes(form), `${form} in ${err.message}`);
      }
      return true;
    });
  });

  it('never puts a password from the location into an error', () => {
    for (const location of ['rest:gopher://alice:hunter2@host/', 's3:https://alice:hunter2@host/bucket', 'rest:http://alice:hunter2@host/r?x']) {
      assert.throws(
        () => parseLocation(location),
        (err: unknown) => {
          assert.ok(err instanceof StowageError);
          assert.ok(!err.message.includes('hunter2'), err.message);
          return true;
        },
      );
    }
    assert.equal(redactLocation('rest:https://alice:hunter2@host:8000/'), 'rest:https://alice:***@host:8000/');
    assert.equal(redactLocation('rest:https://:hunter2@host/'), 'rest:https://:***@host/');
    assert.equal(redactLocation('s3:s3.amazonaws.com/bucket'), 's3:s3.amazonaws.com/bucket');
  });

  it('writes parsed locations back in restic notation, without the password', () => {
    for (const location of ['s3:https://host:9000/bucket/p', 'gs:b:/p/q', 'azure:cont:/', 'swift:c:/x', 'b2:bucket-name:p', 'rest:https://alice@host/repo/']) {
      assert.equal(describeLocation(parseLocation(location)), location);
    }
    assert.equal(describeLocation(parseLocation('rest:https://alice:pw@host/repo')), 'rest:https://alice@host/repo/');
    assert.equal(describeLocation(parseLocation('/srv/x')), '/srv/x');
  });
});

/** Opens without wrappers, with no environment but what the test gives. */
function open(location: string, options: OpenBackendOptions = {}): Promise<Backend> {
  return openBackend(location, { env: {}, raw: true, ...options });
}

describe('openBackend', () => {
  it('wraps the backend with retries and a connection limit unless raw', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stowage-location-'));
    try {
      const wrapped = await openBackend(`local:${dir}`, { env: {} });
      assert.ok(wrapped instanceof RetryBackend);
      assert.ok(wrapped.inner instanceof LimitedBackend);
      assert.ok(wrapped.inner.inner instanceof LocalBackend);
      assert.equal(wrapped.location, dir);
      assert.equal(wrapped.connections, 4);
      const raw = await openBackend(dir, { raw: true });
      assert.ok(raw instanceof LocalBackend);
      const noRetry = await openBackend(dir, { retry: false });
      assert.ok(noRetry instanceof LimitedBackend);
      // A round trip through the wrappers.
      await wrapped.create();
      await wrapped.save({ type: 'config', name: '' }, new Uint8Array([1, 2]));
      assert.deepEqual(await raw.load({ type: 'config', name: '' }), new Uint8Array([1, 2]));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes connections from -o <kind>.connections, overridden by the connections option', async () => {
    assert.equal((await open('/x', { extended: { 'local.connections': '7' } })).connections, 7);
    assert.equal((await open('/x', { extended: { 'local.connections': '7' }, connections: 3 })).connections, 3);
    assert.equal((await openBackend('/x', { extended: { 'local.connections': '4' } })).connections, 4);
    assert.equal((await open('s3:host/b', { extended: { 's3.connections': '12' } })).connections, 12);
    assert.equal((await open('rest:http://h/', { extended: { 'rest.connections': '9' } })).connections, 9);
    for (const bad of ['0', '-1', '1.5', 'many', '']) {
      await assert.rejects(open('/x', { extended: { 'local.connections': bad } }), InvalidInputError);
    }
  });

  it('rejects unknown -o options, listing the valid ones; ignores options of other backends', async () => {
    await assert.rejects(open('s3:host/b', { extended: { 's3.conections': '3' } }), (err: unknown) => {
      assert.ok(err instanceof InvalidInputError);
      for (const key of ['s3.connections', 's3.region', 's3.storage-class', 's3.bucket-lookup']) assert.ok(err.message.includes(key), err.message);
      return true;
    });
    await assert.rejects(open('/x', { extended: { connections: '3' } }), /valid options for a local repository: local\.connections/);
    await assert.rejects(open('/x', { extended: { 'foo.bar': '3' } }), InvalidInputError);
    await assert.rejects(open('s3:host/b', { extended: { 's3.list-objects-v1': 'true' } }), UnsupportedError);
    // restic applies only the options of the repository's own backend.
    const b = await open('/x', { extended: { 's3.region': 'eu-west-1', 'azure.access-tier': 'Cool', 'sftp.command': 'ssh x', 'S3.Connections': '1' } });
    assert.equal(b.connections, 4);
  });

  it('opens S3 with credentials, region and options from restic variables', async () => {
    const env = { AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG', AWS_DEFAULT_REGION: 'eu-central-1' };
    const b = await open('s3:http://127.0.0.1:9000/bucket/repo', { env, extended: { 's3.storage-class': 'STANDARD_IA', 's3.bucket-lookup': 'path' } });
    assert.ok(b instanceof S3Backend);
    assert.equal(b.bucket, 'bucket');
    assert.equal(b.prefix, 'repo');
    assert.equal(b.location, 's3:http://127.0.0.1:9000/bucket/repo');
    assert.equal(b.connections, 5);
    assert.ok(!b.location.includes('AKIA') && !b.location.includes('wJalr'));

    // AWS: no endpoint, the SDK picks the regional one; the region from -o, the env or the host.
    const aws = await open('s3:s3.amazonaws.com/bucket/p', { env: { ...env, AWS_DEFAULT_REGION: undefined } });
    assert.equal(aws.location, 's3:s3.us-east-1.amazonaws.com/bucket/p');
    const regional = await open('s3:s3.eu-west-3.amazonaws.com/bucket', { env: {} });
    assert.equal(regional.location, 's3:s3.eu-west-3.amazonaws.com/bucket');
    const fromEnv = await open('s3:s3.amazonaws.com/bucket', { env: { AWS_REGION: 'ap-south-1' } });
    assert.equal(fromEnv.location, 's3:s3.ap-south-1.amazonaws.com/bucket');
    const fromOption = await open('s3:s3.amazonaws.com/bucket', { env: { AWS_DEFAULT_REGION: 'ap-south-1' }, extended: { 's3.region': 'sa-east-1' } });
    assert.equal(fromOption.location, 's3:s3.sa-east-1.amazonaws.com/bucket');

    await assert.rejects(open('s3:host/b', { env: { AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE' } }), /must be set together/);
    await assert.rejects(open('s3:host/b', { extended: { 's3.bucket-lookup': 'sideways' } }), /auto, dns or path/);
  });

  it('reads CA certificates from files for S3 and REST, and refuses TLS options where they cannot apply', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stowage-location-'));
    try {
      const ca = join(dir, 'ca.pem');
      await writeFile(ca, PEM);
      const notPem = join(dir, 'x.pem');
      await writeFile(notPem, 'hello');
      assert.ok((await open('s3:https://host/b', { cacert: ca })) instanceof S3Backend);
      assert.ok((await open('rest:https://host/', { cacert: [ca, ca], insecureTls: true })) instanceof RestBackend);
      assert.ok((await open('rest:https://host/', { caCertPem: new TextEncoder().encode(PEM) })) instanceof RestBackend);
      await assert.rejects(open('s3:https://host/b', { cacert: join(dir, 'missing.pem') }), /cannot read CA certificate file/);
      await assert.rejects(open('s3:https://host/b', { cacert: notPem }), /holds no PEM certificate/);
      const azureEnv = { AZURE_ACCOUNT_NAME: 'acct', AZURE_ACCOUNT_KEY: 'a2V5' };
      await assert.rejects(open('azure:cont:/', { env: azureEnv, cacert: ca }), UnsupportedError);
      await assert.rejects(open('azure:cont:/', { env: azureEnv, insecureTls: true }), UnsupportedError);
      // Local folders have no TLS: the options do not matter there.
      assert.ok((await open('/x', { insecureTls: true })) instanceof LocalBackend);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('opens Azure with account, key or SAS, endpoint suffix and access tier', async () => {
    const b = await open('azure:backups:/cluster/ns', {
      env: { AZURE_ACCOUNT_NAME: 'acct', AZURE_ACCOUNT_KEY: 'c2VjcmV0LWtleQ==', AZURE_ENDPOINT_SUFFIX: 'core.chinacloudapi.cn' },
      extended: { 'azure.access-tier': 'cool', 'azure.connections': '8' },
    });
    assert.ok(b instanceof AzureBackend);
    assert.equal(b.container, 'backups');
    assert.equal(b.prefix, 'cluster/ns');
    assert.equal(b.connections, 8);
    assert.ok(b.location.startsWith('azure:backups:/cluster/ns'), b.location);
    assert.ok(!b.location.includes('c2VjcmV0'), b.location);
    const sas = await open('azure:cont:/', { env: { AZURE_ACCOUNT_NAME: 'acct', AZURE_ACCOUNT_SAS: '?sv=2022&sig=abc' } });
    assert.ok(sas instanceof AzureBackend);
    assert.ok(!sas.location.includes('sig=abc'));
    await assert.rejects(open('azure:cont:/', { env: { AZURE_ACCOUNT_NAME: 'acct' } }), /AZURE_ACCOUNT_KEY or AZURE_ACCOUNT_SAS/);
    await assert.rejects(open('azure:cont:/', { env: { AZURE_ACCOUNT_KEY: 'a2V5' } }), /AZURE_ACCOUNT_NAME/);
    await assert.rejects(open('azure:cont:/', { env: { AZURE_ACCOUNT_NAME: 'a', AZURE_ACCOUNT_KEY: 'k' }, extended: { 'azure.access-tier': 'Lukewarm' } }), /Hot, Cool, Cold, Archive/);
    // Credentials given directly (e.g. azurite's connection string) replace the environment's.
    const direct = await open('azure:cont:/', {
      env: { AZURE_ACCOUNT_NAME: 'acct', AZURE_ACCOUNT_KEY: 'a2V5' },
      overrides: { azure: { connectionString: 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;' } },
    });
    assert.ok(direct instanceof AzureBackend);
  });

  it('opens Swift with the OS_* / ST_* variables', async () => {
    const v1 = await open('swift:container:/repo', { env: { ST_AUTH: 'http://127.0.0.1:8080/auth/v1.0', ST_USER: 'test:tester', ST_KEY: 'testing' }, extended: { 'swift.connections': '3' } });
    assert.ok(v1 instanceof SwiftBackend);
    assert.equal(v1.connections, 3);
    assert.ok(v1.location.includes('container') && !v1.location.includes('testing'), v1.location);
    const token = await open('swift:c:/', { env: { OS_STORAGE_URL: 'https://swift.example.com/v1/AUTH_x', OS_AUTH_TOKEN: 'tok' } });
    assert.ok(token instanceof SwiftBackend);
  });

  it('opens GCS with the project, a key file from GOOGLE_APPLICATION_CREDENTIALS, region and connections', async () => {
    const b = await open('gs:stash-backup:/cluster/a', {
      env: { GOOGLE_PROJECT_ID: 'my-project', GOOGLE_APPLICATION_CREDENTIALS: '/var/secrets/key.json' },
      extended: { 'gs.region': 'EU', 'gs.connections': '6' },
    });
    assert.ok(b instanceof GCSBackend);
    assert.equal(b.bucket, 'stash-backup');
    assert.equal(b.prefix, 'cluster/a');
    assert.equal(b.connections, 6);
    assert.equal(b.location, 'gs:stash-backup:/cluster/a');
    // A key given directly replaces the file named in the environment instead of clashing with it.
    const direct = await open('gs:bucket:/', { env: { GOOGLE_APPLICATION_CREDENTIALS: '/x.json' }, overrides: { gs: { credentials: '{"client_email":"a@b","private_key":"k"}' } } });
    assert.ok(direct instanceof GCSBackend);
    await assert.rejects(open('gs:bucket:/', { insecureTls: true }), UnsupportedError);
    await assert.rejects(open('gs:bucket:/', { extended: { 'gs.storage-class': 'x' } }), /gs\.region/);
  });

  it('opens B2 with B2_ACCOUNT_ID and B2_ACCOUNT_KEY', async () => {
    const b = await open('b2:bucket-name:repo/x', { env: { B2_ACCOUNT_ID: '0012345', B2_ACCOUNT_KEY: 'K001secret' }, extended: { 'b2.connections': '10' } });
    assert.ok(b instanceof B2Backend);
    assert.equal(b.bucket, 'bucket-name');
    assert.equal(b.prefix, 'repo/x');
    assert.equal(b.connections, 10);
    assert.ok(!b.location.includes('K001secret'));
    await assert.rejects(open('b2:bucket-name', { env: { B2_ACCOUNT_ID: '0012345' } }), /set B2_ACCOUNT_ID and B2_ACCOUNT_KEY/);
    const direct = await open('b2:bucket-name', { overrides: { b2: { applicationKeyId: 'id', applicationKey: 'key' } } });
    assert.ok(direct instanceof B2Backend);
  });

  it('opens REST with credentials from the URL, else from RESTIC_REST_USERNAME/PASSWORD', async () => {
    const inUrl = await open('rest:https://alice:pw1@host:8000/repo', { env: { RESTIC_REST_USERNAME: 'eve', RESTIC_REST_PASSWORD: 'pw2' } });
    assert.ok(inUrl instanceof RestBackend);
    assert.equal(inUrl.location, 'rest:https://alice@host:8000/repo/');
    const fromEnv = await open('rest:https://host:8000/repo/', { env: { RESTIC_REST_USERNAME: 'eve', RESTIC_REST_PASSWORD: 'pw2' } });
    assert.equal(fromEnv.location, 'rest:https://eve@host:8000/repo/');
    const anonymous = await open('rest:http://127.0.0.1:8000/');
    assert.equal(anonymous.location, 'rest:http://127.0.0.1:8000/');
  });

  it('lets overrides set backend options directly', async () => {
    const b = await open('/x', { overrides: { local: { connections: 11 } } });
    assert.equal(b.connections, 11);
    const parsed = parseLocation('s3:https://host/b/p');
    const s3 = await openLocation(parsed, { env: {}, raw: true, overrides: { s3: { prefix: 'other' } } });
    assert.ok(s3 instanceof S3Backend);
    assert.equal(s3.prefix, 'other');
  });
});
