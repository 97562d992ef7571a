// Metrics: Stash's repository and BackupSession host gauges from a real repository and backup,
// rendered as Prometheus text exposition and read back by the strict reader of
// test/helpers/exposition.ts (the 0.0.4 text format: HELP/TYPE once and before a metric's
// samples, samples of a metric together, label values escaped, values Go's ParseFloat accepts),
// and the prom-client adapter scraped from a real prom-client registry.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { forget } from '../../src/snapshot/operations/forget.ts';
import { observeRepository } from '../../src/operator/observe.ts';
import { backupMetrics, PromClientAdapter, repositoryMetrics, toPrometheusText, type MetricSample, type PromClientModule } from '../../src/operator/metrics.ts';
import { removeTree } from '../helpers/tmp.ts';
import { parseExposition, type Parsed } from '../helpers/exposition.ts';

const value = (p: Parsed, name: string, labels?: Record<string, string>) => {
  const found = p.samples.filter((s) => s.name === name && (!labels || Object.entries(labels).every(([k, v]) => s.labels[k] === v)));
  assert.equal(found.length, 1, `one sample of ${name}`);
  return found[0]!.value;
};

describe('metrics', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-metrics-'));
  });
  after(async () => removeTree(dir));

  it('repository and host backup gauges under Stash names, through the text format and back', async () => {
    const repo = await Repository.init(new MemoryBackend(), { password: 'm', version: 2, kdf: { N: 1024, r: 8, p: 1 } });
    const indexed = await repo.loadIndex();
    const src = path.join(dir, 'src');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'a'), randomBytes(30_000));
    await backup(indexed, { paths: [src], hostname: 'db-0' });
    await writeFile(path.join(src, 'b'), Buffer.alloc(50_000, 'b'));
    await writeFile(path.join(src, 'a'), randomBytes(31_000));
    const result = await backup(indexed, { paths: [src], hostname: 'db-0' });
    const cleanup = await forget(indexed, { policy: { last: 1 } });
    const observation = await observeRepository(indexed);
    const labels = { name: 'repo "a"\\b\nc', namespace: 'demo' };
    const samples = [...repositoryMetrics(observation, { labels, lastCleanup: cleanup, legacy: true }), ...backupMetrics([result], { hostname: 'db-0', labels: { invoker_name: 'nightly' }, durationMs: 2500 })];
    const text = toPrometheusText(samples);
    const parsed = parseExposition(text);

    assert.equal(value(parsed, 'stash_appscode_com_repository_integrity'), 1);
    assert.equal(value(parsed, 'stash_appscode_com_repository_size_bytes'), observation.stats!.rawDataSize);
    assert.equal(value(parsed, 'stash_appscode_com_repository_snapshot_count'), 1);
    assert.equal(value(parsed, 'stash_appscode_com_repository_snapshot_cleaned'), 1);
    assert.equal(value(parsed, 'stash_repository_snapshot_count'), 1, 'legacy names too');
    assert.equal(parsed.type.get('stash_appscode_com_repository_size_bytes'), 'gauge');
    assert.deepEqual(parsed.samples[0]!.labels, labels, 'label values escaped and read back');
    const host = { hostname: 'db-0', invoker_name: 'nightly' };
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_backup_success', host), 1);
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_backup_duration_seconds'), 2.5);
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_data_size_bytes'), result.summary.totalBytesProcessed);
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_data_uploaded_bytes'), result.summary.dataAdded);
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_files_total'), 2);
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_files_new'), 1);
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_files_modified'), 1);
    assert.equal(value(parsed, 'stash_appscode_com_backupsession_host_files_unmodified'), 0);
    assert.equal(value(parsed, 'stowage_backup_errors'), 0);
    assert.equal(value(parsed, 'stowage_backup_data_added_packed_bytes'), result.summary.dataAddedPacked);

    // A failed host: success 0 and nothing else; a skipped check: no integrity gauge.
    const failed = parseExposition(toPrometheusText(backupMetrics([], { hostname: 'db-1', error: 'boom' })));
    assert.deepEqual(failed.samples.map((s) => [s.name, s.value]), [['stash_appscode_com_backupsession_host_backup_success', 0]]);
    const unchecked = repositoryMetrics({ ...observation, check: undefined });
    assert.ok(!unchecked.some((s) => s.name.endsWith('_integrity')));
  });

  it('refuses what Prometheus would refuse; writes special values', () => {
    const g = (name: string, labels: Record<string, string> = {}, v = 1): MetricSample => ({ name, help: 'h', type: 'gauge', labels, value: v });
    assert.throws(() => toPrometheusText([g('1bad')]), { code: 'INVALID_INPUT' });
    assert.throws(() => toPrometheusText([g('ok', { 'bad-label': 'x' })]), { code: 'INVALID_INPUT' });
    assert.throws(() => toPrometheusText([g('ok', { __reserved: 'x' })]), { code: 'INVALID_INPUT' });
    assert.throws(() => toPrometheusText([g('ok', { a: '1' }), g('ok', { a: '1' })]), /twice/);
    assert.throws(() => toPrometheusText([g('ok'), { ...g('ok', { a: '2' }), type: 'counter' }]), /two types/);
    const p = parseExposition(toPrometheusText([g('x', { a: '1' }, NaN), g('x', { a: '2' }, Infinity), g('x', { a: '3' }, -Infinity), g('y', {}, 1e21)]));
    assert.ok(Number.isNaN(value(p, 'x', { a: '1' })));
    assert.equal(value(p, 'x', { a: '2' }), Infinity);
    assert.equal(value(p, 'y'), 1e21);
    // The parser is strict: it refuses a metric split in two and a sample before its TYPE's line twice.
    assert.throws(() => parseExposition('a 1\nb 1\na{x="1"} 2\n'), /appears again/);
    assert.throws(() => parseExposition('# TYPE a gauge\n# TYPE a gauge\n'), /second TYPE/);
    assert.throws(() => parseExposition('a{x="\\q"} 1\n'), /bad labels/);
  });

  it('without prom-client, creating an adapter says which package to install (typed), and nothing else needs it', () => {
    // A child process in which resolving prom-client fails, as where it is not installed.
    const script = `
      import { registerHooks } from 'node:module';
      registerHooks({ resolve(spec, ctx, next) {
        if (spec === 'prom-client') throw Object.assign(new Error("Cannot find package 'prom-client'"), { code: 'ERR_MODULE_NOT_FOUND' });
        return next(spec, ctx);
      } });
      const api = await import(${JSON.stringify(new URL('../../src/index.ts', import.meta.url).href)});
      const text = api.toPrometheusText([{ name: 'x', help: 'h', type: 'gauge', labels: {}, value: 1 }]);
      try { await api.PromClientAdapter.create(); console.log(JSON.stringify({ text })); }
      catch (e) { console.log(JSON.stringify({ text, name: e.name, code: e.code, unsupported: e instanceof api.UnsupportedError, message: e.message })); }`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    const result = JSON.parse(out) as { text: string; name?: string; unsupported?: boolean; message?: string };
    assert.equal(result.text, '# HELP x h\n# TYPE x gauge\nx 1\n');
    assert.equal(result.unsupported, true, out);
    assert.match(result.message ?? '', /needs the optional package prom-client \(npm install prom-client\)/);
  });

  it('prom-client adapter, scraped from a real prom-client registry', async () => {
    // prom-client is a devDependency (an optional peer for users): missing here is an error, not a skip.
    const pkg = 'prom-client';
    const real = (await import(pkg).catch((err: Error) => {
      throw new Error(`prom-client is not installed (npm install): ${err.message}`);
    })) as PromClientModule & { Registry: new () => object & { metrics(): Promise<string> } };
    const samples = (v: number): MetricSample[] => [
      { name: 'stash_appscode_com_repository_snapshot_count', help: 'count', type: 'gauge', labels: { name: 'r' }, value: v },
      { name: 'stowage_test_total', help: 'c', type: 'counter', labels: {}, value: v * 2 },
    ];
    const registry = new real.Registry();
    const adapter = await PromClientAdapter.create({ registry });
    adapter.update(samples(3));
    let parsed = parseExposition(await registry.metrics());
    assert.equal(value(parsed, 'stash_appscode_com_repository_snapshot_count', { name: 'r' }), 3);
    assert.equal(parsed.type.get('stash_appscode_com_repository_snapshot_count'), 'gauge');
    assert.equal(value(parsed, 'stowage_test_total'), 6);
    assert.equal(parsed.type.get('stowage_test_total'), 'counter');
    // The next scrape reports the latest update, not a sum or both.
    adapter.update(samples(5));
    parsed = parseExposition(await registry.metrics());
    assert.equal(value(parsed, 'stash_appscode_com_repository_snapshot_count', { name: 'r' }), 5);
    assert.equal(value(parsed, 'stowage_test_total'), 10);
    assert.throws(() => adapter.update([{ ...samples(1)[0]!, labels: { other: 'x' } }]), /registered with type gauge and labels \[name\]/);
    // The module given by the caller (no import of its own), label values that need escaping.
    const other = new real.Registry();
    const fromModule = await PromClientAdapter.create({ promClient: real, registry: other });
    fromModule.update([{ name: 'stowage_x', help: 'x', type: 'gauge', labels: { a: 'q"\\\n' }, value: 1.5 }]);
    assert.deepEqual(parseExposition(await other.metrics()).samples, [{ name: 'stowage_x', labels: { a: 'q"\\\n' }, value: 1.5 }]);
  });
});
