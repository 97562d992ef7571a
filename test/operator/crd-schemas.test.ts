// Every status object the builders produce, checked against the CRDs' published OpenAPI v3
// schemas for `status` as Kubernetes would enforce them with strict field validation: types,
// formats (date-time, int32, int64), enums, required fields, and no unknown field. The schemas'
// relevant parts are recorded in test/fixtures/crd-status-schemas.json (source and version named
// there); the validator is a small JSON-schema subset written here.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import type { BackupResult } from '../../src/snapshot/operations/backup/types.ts';
import { forget, type ForgetResult } from '../../src/snapshot/operations/forget.ts';
import { observeRepository, type RepositoryObservation } from '../../src/operator/observe.ts';
import { buildStashRepositoryStatus, stashHostBackupStats } from '../../src/operator/stash.ts';
import { buildKubeStashRepositoryStatus, kubeStashSnapshotComponent } from '../../src/operator/kubestash.ts';
import { removeTree } from '../helpers/tmp.ts';

interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean';
  format?: string;
  enum?: unknown[];
  properties?: Record<string, Schema>;
  additionalProperties?: Schema;
  items?: Schema;
  required?: string[];
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/crd-status-schemas.json', import.meta.url), 'utf8')) as Record<string, { source: string; schema: Schema }>;
const schema = (key: string): Schema => {
  const entry = fixtures[key];
  assert.ok(entry && /v\d+\.\d+\.\d+ \(commit [0-9a-f]{40}\)/.test(entry.source), `fixture ${key} names its source and version`);
  return entry.schema;
};

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Problems of `value` against `s` (empty when valid). Unknown fields are refused. */
function validate(s: Schema, value: unknown, at = '$'): string[] {
  const bad = (why: string) => [`${at}: ${why}`];
  if (s.enum && !s.enum.includes(value)) return bad(`${JSON.stringify(value)} is not one of ${JSON.stringify(s.enum)}`);
  switch (s.type) {
    case 'object': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('not an object');
      const errors: string[] = [];
      for (const r of s.required ?? []) if (!(r in value)) errors.push(`${at}: required field ${r} missing`);
      for (const [k, v] of Object.entries(value)) {
        const sub = s.properties?.[k] ?? s.additionalProperties;
        if (!sub) errors.push(`${at}: unknown field ${k}`);
        else errors.push(...validate(sub, v, `${at}.${k}`));
      }
      return errors;
    }
    case 'array':
      if (!Array.isArray(value)) return bad('not an array');
      return s.items ? value.flatMap((v, i) => validate(s.items!, v, `${at}[${i}]`)) : [];
    case 'string':
      if (typeof value !== 'string') return bad('not a string');
      if (s.format === 'date-time' && (!RFC3339.test(value) || Number.isNaN(Date.parse(value)))) return bad(`${value} is not an RFC 3339 date-time`);
      return [];
    case 'integer': {
      if (typeof value !== 'number' || !Number.isInteger(value)) return bad('not an integer');
      if (s.format === 'int32' && (value < -(2 ** 31) || value >= 2 ** 31)) return bad('out of int32 range');
      if (s.format === 'int64' && !Number.isSafeInteger(value)) return bad('not exactly an int64');
      return [];
    }
    case 'boolean':
      return typeof value === 'boolean' ? [] : bad('not a boolean');
    default:
      return [];
  }
}

const assertValid = (key: string, value: unknown) => {
  // A JSON round trip first: what goes to the API server is the JSON text.
  const json = JSON.parse(JSON.stringify(value));
  assert.deepEqual(validate(schema(key), json), [], `${key}: ${JSON.stringify(json)}`);
};

describe('status objects against the CRDs\' status schemas', () => {
  let observation: RepositoryObservation;
  let empty: RepositoryObservation;
  let results: BackupResult[];
  let cleanup: ForgetResult;
  let dir: string;
  after(async () => removeTree(dir));
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-crd-'));
    const src = path.join(dir, 'src');
    await mkdir(src, { recursive: true });
    const repo = await Repository.init(new MemoryBackend(), { password: 'crd', version: 2, kdf: { N: 1024, r: 8, p: 1 } });
    const indexed = await repo.loadIndex();
    empty = await observeRepository(indexed);
    results = [];
    for (let i = 0; i < 3; i++) {
      await writeFile(path.join(src, `f${i}`), randomBytes(10_000));
      results.push(await backup(indexed, { paths: [src], hostname: 'h' }));
    }
    cleanup = await forget(indexed, { policy: { last: 2 } });
    observation = await observeRepository(indexed, { check: { readData: true } });
  });

  it('the validator refuses unknown fields, wrong types and formats, enums and missing required fields', () => {
    const s = schema('storage.kubestash.com/v1alpha1/Repository.status');
    assert.match(validate(s, { phase: 'Ready', sizeBytes: 1 }).join(), /unknown field sizeBytes/);
    assert.match(validate(s, { snapshotCount: '2' }).join(), /not an integer/);
    assert.match(validate(s, { snapshotCount: 2 ** 31 }).join(), /int32/);
    assert.match(validate(s, { lastBackupTime: '2025-01-07 02:00:05' }).join(), /date-time/);
    assert.match(validate(s, { phase: 'Running' }).join(), /not one of/);
    assert.match(validate(s, { conditions: [{ type: 'X', status: 'True' }] }).join(), /required field lastTransitionTime/);
    assert.deepEqual(validate(s, { phase: 'Ready', conditions: [{ type: 'X', status: 'True', lastTransitionTime: '2025-01-07T02:00:05Z' }] }), []);
  });

  it('Stash Repository.status and BackupSession host stats', () => {
    const key = 'stash.appscode.com/v1alpha1/Repository.status';
    assertValid(key, buildStashRepositoryStatus(observation, { lastCleanup: cleanup, backupSessionTime: new Date() }));
    assertValid(key, buildStashRepositoryStatus({ ...observation, check: undefined, stats: undefined }));
    assertValid(key, buildStashRepositoryStatus(empty));
    const host = 'stash.appscode.com/v1beta1/BackupSession.status.targets[].stats[]';
    assertValid(host, stashHostBackupStats(results.map((result) => ({ result })), { hostname: 'h' }));
    assertValid(host, stashHostBackupStats([], { hostname: 'h', durationMs: 5, error: 'failed' }));
  });

  it('KubeStash Repository.status and Snapshot components', () => {
    const key = 'storage.kubestash.com/v1alpha1/Repository.status';
    const status = buildKubeStashRepositoryStatus([{ path: 'repository/v1/daily/dump', observation }, { path: 'repository/v1/daily/manifest', observation: empty }], { session: 'daily' });
    assert.equal(status.recentSnapshots?.length, 2);
    assertValid(key, status);
    assertValid(key, buildKubeStashRepositoryStatus(empty));
    const component = 'storage.kubestash.com/v1alpha1/Snapshot.status.components{}';
    const made = kubeStashSnapshotComponent(results.map((result) => ({ result })), { path: 'repository/v1/daily/dump', observation });
    assertValid(component, made);
    assertValid(component, { dump: made }.dump);
    assertValid(component, kubeStashSnapshotComponent([], { path: 'repository/v1/daily/dump', error: new Error('x'), durationMs: 1 }));
    // The flat layout is for KubeStash before v0.28: valid there, refused by v0.29.0's schema.
    const flat = kubeStashSnapshotComponent([{ result: results[0]! }], { path: 'p', resticStatsLayout: 'flat' });
    for (const item of flat.resticStats!) assertValid('storage.kubestash.com/v1alpha1/Snapshot.status.components{}.resticStats[] (before v0.28)', item);
    assert.match(validate(schema(component), JSON.parse(JSON.stringify(flat))).join(), /unknown field id/);
  });
});
