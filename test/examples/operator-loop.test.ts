// Runs examples/operator-loop.ts as an operator would run it — a child process importing the
// built package, against a repository on a real MinIO — for a few refresh rounds: the first
// status and /metrics, rounds with nothing new (no recompute), a backup by another client (the
// test) picked up by the next refresh, and a clean stop on SIGTERM. Needs `npm run build`.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { openBackend } from '../../src/backend/location.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { startMinio, type MinioServer } from '../servers/minio.ts';
import { removeTree } from '../helpers/tmp.ts';
import { parseExposition } from '../helpers/exposition.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PASSWORD = 'operator loop';

interface Event {
  event: string;
  iteration?: number;
  port?: number;
  reason?: string;
  status?: { snapshotCount?: number; integrity?: boolean; totalSize?: string };
  message?: string;
}

describe('examples/operator-loop.ts on MinIO', () => {
  let minio: MinioServer;
  let dir: string;
  let child: ChildProcess | undefined;
  before(async () => {
    minio = await startMinio();
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-operator-loop-'));
  });
  after(async () => {
    child?.kill('SIGKILL');
    await minio?.stop();
    await removeTree(dir);
  });

  it('serves the status and metrics, recomputes only after a change, stops on SIGTERM', async () => {
    const env = { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
    const location = `s3:${minio.endpoint}/operator-loop/demo/app`;
    const backend = await openBackend(location, { env });
    const repo = await Repository.init(backend, { password: PASSWORD, version: 2, kdf: { N: 1024, r: 8, p: 1 } });
    const src = path.join(dir, 'src');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'a'), randomBytes(40_000));
    await backup(repo, { paths: [src], hostname: 'app' });

    child = spawn(process.execPath, [path.join(ROOT, 'examples/operator-loop.ts')], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '', HOME: dir, ...env, RESTIC_REPOSITORY: location, RESTIC_PASSWORD: PASSWORD,
        STOWAGE_INTERVAL_MS: '300', STOWAGE_METRICS_PORT: '0', STOWAGE_LABELS: 'name=app-repo,namespace=demo',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child!.on('close', resolve));
    const events: Event[] = [];
    const waiters: Array<{ match: (e: Event) => boolean; resolve: (e: Event) => void }> = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as Event;
      events.push(e);
      for (const w of waiters.splice(0)) (w.match(e) ? w.resolve(e) : waiters.push(w));
    });
    const next = (match: (e: Event) => boolean, what: string) =>
      Promise.race([
        new Promise<Event>((resolve) => waiters.push({ match, resolve })),
        exited.then((code) => Promise.reject(new Error(`the example exited (${code}) waiting for ${what}: ${stderr}`))),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events)}`)), 60_000).unref()),
      ]);

    const listening = await next((e) => e.event === 'listening', 'listening');
    const first = await next((e) => e.event === 'status', 'the first status');
    assert.equal(first.reason, 'start');
    assert.equal(first.status?.snapshotCount, 1);
    assert.equal(first.status?.integrity, true);
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${listening.port}/metrics`);
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      return parseExposition(await res.text());
    };
    const metric = (p: ReturnType<typeof parseExposition>, name: string) => {
      const s = p.samples.find((x) => x.name === name);
      assert.ok(s, `${name} exported`);
      assert.deepEqual(s.labels, { name: 'app-repo', namespace: 'demo' });
      return s.value;
    };
    let parsed = await scrape();
    assert.equal(metric(parsed, 'stash_appscode_com_repository_snapshot_count'), 1);
    assert.equal(metric(parsed, 'stash_appscode_com_repository_integrity'), 1);

    // Two rounds with nothing new: refreshed, not recomputed.
    await next((e) => e.event === 'unchanged', 'an unchanged round');
    await next((e) => e.event === 'unchanged', 'a second unchanged round');
    parsed = await scrape();
    assert.equal(metric(parsed, 'stowage_operator_status_recomputes_total'), 1);
    assert.ok(metric(parsed, 'stowage_operator_refreshes_total') >= 2);

    // Another client backs up: the next refresh sees new snapshots and index files.
    await writeFile(path.join(src, 'b'), randomBytes(30_000));
    await backup(repo, { paths: [src], hostname: 'app' });
    // A round may fall between the backup's index upload and its snapshot (data, index, then
    // snapshot): that round recomputes for the index, and its recompute may already count the new
    // snapshot (it lists snapshots itself), so no later round needs to.
    const second = await next((e) => e.event === 'status' && e.status?.snapshotCount === 2, 'the status after a backup');
    assert.match(second.reason ?? '', /snapshots|index/);
    const recomputes = events.filter((e) => e.event === 'status');
    assert.ok(recomputes.length <= 3, JSON.stringify(events));
    for (const e of recomputes.slice(1, -1)) assert.match(e.reason ?? '', /index/);
    parsed = await scrape();
    assert.equal(metric(parsed, 'stash_appscode_com_repository_snapshot_count'), 2);
    assert.equal(metric(parsed, 'stowage_operator_status_recomputes_total'), recomputes.length);
    const status = (await (await fetch(`http://127.0.0.1:${listening.port}/status`)).json()) as { status: { snapshotCount: number } };
    assert.equal(status.status.snapshotCount, 2);
    assert.ok(!events.some((e) => e.event === 'error'), JSON.stringify(events));

    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    child = undefined;
    await backend.close();
  });
});
