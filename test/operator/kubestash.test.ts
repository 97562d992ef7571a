// KubeStash: the backend a BackupStorage spec and its Secrets give (every provider constructed;
// s3 against a real MinIO, with restic 0.19 writing to the location KubeStash's restic would use),
// the Repository status and a Snapshot's component entry. Field shapes follow
// kubestash/apimachinery v0.29.0 (apis/storage/v1alpha1).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { backendFromKubeStash, kubeStashProvider, kubeStashResticPath } from '../../src/backend/kubestash.ts';
import type { Backend } from '../../src/backend/backend.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { RetryBackend } from '../../src/backend/wrappers/retry.ts';
import { LimitedBackend } from '../../src/backend/wrappers/limits.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { buildKubeStashRepositoryStatus, kubeStashRepositoryStatus, kubeStashSnapshotComponent, upsertCondition } from '../../src/operator/kubestash.ts';
import { formatStashBytes, kubernetesTime } from '../../src/operator/format.ts';
import { resticBin, resticJson, resticOk } from '../helpers/restic.ts';
import { tmpDir, removeTree } from '../helpers/tmp.ts';
import { startMinio, type MinioServer } from '../servers/minio.ts';

const ENC = { RESTIC_PASSWORD: 'kubestash-pw' };

function bare(b: Backend): Backend {
  let cur = b;
  while (cur instanceof RetryBackend || cur instanceof LimitedBackend) cur = (cur as unknown as { inner: Backend }).inner;
  return cur;
}

describe('KubeStash storage → backend (constructed, not contacted)', () => {
  it('picks exactly one provider, agreeing with spec.provider', () => {
    assert.equal(kubeStashProvider({ provider: 'gcs', gcs: { bucket: 'b' } }), 'gcs');
    assert.throws(() => kubeStashProvider({}), /none is set/);
    assert.throws(() => kubeStashProvider({ gcs: { bucket: 'b' }, s3: { endpoint: 'e', bucket: 'b' } }), /found s3 and gcs/);
    assert.throws(() => kubeStashProvider({ provider: 's3', gcs: { bucket: 'b' } }), /provider "s3" but sets gcs/);
  });

  it('lays a component out as <repository path>/repository/v1/<session>/<component>', () => {
    assert.equal(kubeStashResticPath('/demo/pvc/', 'daily', 'pod-0'), 'demo/pvc/repository/v1/daily/pod-0');
    assert.throws(() => kubeStashResticPath('demo', 'a/b', 'dump'), { code: 'INVALID_INPUT' });
    assert.throws(() => kubeStashResticPath('demo/../x', 'daily', 'dump'), { code: 'INVALID_INPUT' });
  });

  it('gcs, azure (account from the spec), b2, swift: locations with prefix and directory; the password from the encryption secret', async () => {
    const dir = 'demo/repository/v1/daily/dump';
    const gcs = await backendFromKubeStash({ storage: { storage: { gcs: { bucket: 'kstash', prefix: '/team', maxConnections: 4, secretName: 'gcs' } } }, storageSecret: {}, encryptionSecret: ENC, directory: dir });
    assert.equal(gcs.provider, 'gcs');
    assert.equal(gcs.password, 'kubestash-pw');
    assert.equal(bare(gcs.backend).location, `gs:kstash:/team/${dir}`);
    assert.equal(gcs.backend.connections, 4);
    const azure = await backendFromKubeStash({
      storage: { azure: { storageAccount: 'acct', container: 'kstash', prefix: 'team', secretName: 'az' } },
      storageSecret: { AZURE_ACCOUNT_KEY: 'c2VjcmV0' },
      encryptionSecret: ENC,
      directory: dir,
    });
    assert.equal(bare(azure.backend).location, `azure:kstash:/team/${dir} (https://acct.blob.core.windows.net)`);
    await assert.rejects(backendFromKubeStash({ storage: { azure: { container: 'kstash' } as never }, storageSecret: { AZURE_ACCOUNT_KEY: 'k' }, encryptionSecret: ENC, directory: dir }), /azure.storageAccount/);
    const b2 = await backendFromKubeStash({ storage: { b2: { bucket: 'kstash', prefix: 'team' } }, storageSecret: { B2_ACCOUNT_ID: 'id', B2_ACCOUNT_KEY: 'key' }, encryptionSecret: ENC, directory: dir });
    assert.equal(bare(b2.backend).location, `b2:kstash:team/${dir}`);
    const swift = await backendFromKubeStash({
      storage: { swift: { container: 'kstash', prefix: 'team' } },
      storageSecret: { ST_AUTH: 'http://swift.example/auth/v1.0', ST_USER: 'u', ST_KEY: 'k' },
      encryptionSecret: ENC,
      directory: dir,
    });
    assert.equal(bare(swift.backend).location, `swift:kstash:/team/${dir}`);
    await assert.rejects(backendFromKubeStash({ storage: { gcs: { bucket: 'kstash' } }, encryptionSecret: { AWS_ACCESS_KEY_ID: 'x' }, directory: dir }), /RESTIC_PASSWORD/);
  });

  it('local: <mountPath>/<directory> (the volume is mounted with its subPath applied)', async () => {
    const root = await tmpDir('stowage-kubestash-local');
    try {
      const { backend } = await backendFromKubeStash(
        { storage: { local: { mountPath: root, subPath: 'ignored-by-restic', persistentVolumeClaim: { claimName: 'nfs' } } }, encryptionSecret: ENC, directory: 'demo/repository/v1/s/c' },
        { raw: true },
      );
      assert.ok(backend instanceof LocalBackend);
      assert.equal(backend.root, path.join(root, 'demo/repository/v1/s/c'));
    } finally {
      await removeTree(root);
    }
  });
});

describe('KubeStash s3 on MinIO: restic 0.19 and Stowage at the same location; statuses', () => {
  let minio: MinioServer;
  let dir: string;
  before(async () => {
    minio = await startMinio();
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-kubestash-'));
  });
  after(async () => {
    await minio?.stop();
    await removeTree(dir);
  });

  it('opens the repository restic made where KubeStash points it, and builds the status and a component', async () => {
    const storage = { storage: { provider: 's3' as const, s3: { endpoint: minio.endpoint, bucket: 'kubestash', prefix: 'cluster-a', region: 'us-east-1', secretName: 's3-secret' } } };
    const storageSecret = { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
    const directory = kubeStashResticPath('demo/app', 'daily', 'dump');
    // restic as KubeStash runs it: RESTIC_REPOSITORY=s3:<endpoint>/<bucket>/<prefix>/<directory>.
    const bin = resticBin('0.19');
    const opts = { repo: `s3:${minio.endpoint}/kubestash/cluster-a/${directory}`, password: ENC.RESTIC_PASSWORD, env: { ...storageSecret, AWS_DEFAULT_REGION: 'us-east-1' } };
    await resticOk(bin, ['init'], opts);
    const src = path.join(dir, 'src');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'a'), randomBytes(50_000));
    await resticOk(bin, ['backup', '--host', 'app', src], opts);

    const { backend, password } = await backendFromKubeStash({ storage, storageSecret, encryptionSecret: ENC, directory });
    try {
      const indexed = await (await Repository.open(backend, { password })).loadIndex();
      assert.equal(indexed.repo.config.id.length, 64);
      await writeFile(path.join(src, 'b'), Buffer.alloc(80_000, 'kubestash '));
      const result = await backup(indexed, { paths: [src], hostname: 'app' });

      const componentPath = 'repository/v1/daily/dump';
      const { status, observation } = await kubeStashRepositoryStatus(indexed, { componentPath, session: 'daily', now: new Date('2026-01-01T00:00:00Z') });
      const restic = await resticJson<{ total_size: number }>(bin, ['stats', '--mode', 'raw-data', '--json'], opts);
      assert.equal(observation.stats?.rawDataSize, restic.total_size);
      assert.equal(status.size, formatStashBytes(restic.total_size));
      assert.equal(status.phase, 'Ready');
      assert.equal(status.integrity, true);
      assert.equal(status.snapshotCount, 2);
      assert.equal(status.lastBackupTime, kubernetesTime(result.snapshot.time));
      assert.deepEqual(status.componentPaths, [componentPath]);
      assert.equal(status.recentSnapshots?.length, 2);
      assert.deepEqual(status.recentSnapshots![0], { name: result.snapshotId.slice(0, 8), phase: 'Succeeded', session: 'daily', snapshotTime: kubernetesTime(result.snapshot.time) });
      assert.deepEqual(status.conditions, [
        { type: 'RepositoryInitialized', status: 'True', reason: 'RepositoryInitializationSucceeded', message: 'the restic repository was opened', lastTransitionTime: '2026-01-01T00:00:00Z' },
      ]);
      // An unchanged condition keeps its transition time.
      const again = buildKubeStashRepositoryStatus([{ path: componentPath, observation }], { conditions: status.conditions, now: new Date('2026-02-01T00:00:00Z'), recentSnapshots: 1 });
      assert.equal(again.conditions![0]!.lastTransitionTime, '2026-01-01T00:00:00Z');
      assert.equal(again.recentSnapshots!.length, 1);
      assert.equal(upsertCondition([{ type: 'X', status: 'False', lastTransitionTime: 't0' }], { type: 'X', status: 'True', lastTransitionTime: 't1' })[0]!.lastTransitionTime, 't1');

      const component = kubeStashSnapshotComponent([{ result }], { path: componentPath, observation, durationMs: 1500 });
      assert.deepEqual(component, {
        path: componentPath,
        phase: 'Succeeded',
        size: formatStashBytes(restic.total_size),
        duration: '1.5s',
        integrity: true,
        driver: 'Restic',
        resticStats: [{
          summary: {
            id: result.snapshotId,
            uploaded: formatStashBytes(result.summary.dataAdded),
            hostPath: src,
            size: formatStashBytes(result.summary.totalBytesProcessed),
            startTime: kubernetesTime(result.summary.backupStart),
            endTime: kubernetesTime(result.summary.backupEnd),
          },
        }],
      });
      const flat = kubeStashSnapshotComponent([{ result, hostPath: '/data' }], { path: componentPath, resticStatsLayout: 'flat', error: 'boom' });
      assert.equal(flat.phase, 'Failed');
      assert.equal(flat.error, 'boom');
      assert.equal((flat.resticStats![0] as { hostPath: string }).hostPath, '/data');
    } finally {
      await backend.close();
    }
  });
});
