// The Indexed Job split of `check --read-data-subset i/n`: examples/check-part.ts run as three
// processes side by side on one repository (as three pods would), each under a shared lock. The
// storage requests each process logs (STOWAGE_LOG_LEVEL=debug) are counted: every pack must be
// read whole exactly once over all processes, each by the process whose group it is in. Then the
// example merges the three reports into one Stash status. Needs `npm run build`.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { Lock, LockedError } from '../../src/repository/lock.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { checkPartFromEnv, checkRepositoryPart, mergeCheckParts, type CheckPartReport } from '../../src/operator/split.ts';
import { formatStashBytes } from '../../src/operator/format.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { removeTree } from '../helpers/tmp.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PASSWORD = 'split check';
const PARTS = 3;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runExample(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'examples/check-part.ts'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Whole-pack loads in a process's debug log: data files loaded from offset 0 for their full size. */
function wholePackReads(stderr: string, sizes: ReadonlyMap<string, number>): string[] {
  const reads: string[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('debug: backend load ')) continue;
    const fields = Object.fromEntries(line.split(' ').slice(3).map((kv) => kv.split('=') as [string, string]));
    if (fields.type !== 'data' || fields.offset !== undefined) continue;
    if (Number(fields.bytes) === sizes.get(fields.name!)) reads.push(fields.name!);
  }
  return reads;
}

describe('check split over an Indexed Job', () => {
  let dir: string;
  let repoDir: string;
  const sizes = new Map<string, number>();
  let snapshotCount = 0;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-check-split-'));
    repoDir = path.join(dir, 'repo');
    const src = path.join(dir, 'src');
    await mkdir(src, { recursive: true });
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, version: 2, kdf: { N: 1024, r: 8, p: 1 } });
    const indexed = await repo.loadIndex();
    // Each backup writes at least one data pack and one tree pack; pack IDs are random, so back up
    // until every group holds a pack (or the test would not show the split), at least 8 times.
    const groups = () => new Set([...sizes.keys()].map((id) => parseInt(id.slice(0, 2), 16) % PARTS));
    for (let i = 0; i < 8 || groups().size < PARTS; i++) {
      assert.ok(i < 40, 'packs in every group after 40 backups');
      await writeFile(path.join(src, `f${i}`), randomBytes(20_000 + i));
      await backup(indexed, { paths: [src], hostname: 'h' });
      sizes.clear();
      for (const sub of await readdir(path.join(repoDir, 'data'))) {
        for (const f of await readdir(path.join(repoDir, 'data', sub))) sizes.set(f, (await stat(path.join(repoDir, 'data', sub, f))).size);
      }
    }
    snapshotCount = (await readdir(path.join(repoDir, 'snapshots'))).length;
  });
  after(async () => removeTree(dir));

  it('parts from the environment; merges refuse missing, doubled and mixed parts', () => {
    assert.deepEqual(checkPartFromEnv({ JOB_COMPLETION_INDEX: '2', STOWAGE_CHECK_PARTS: '4' }), { index: 2, count: 4 });
    assert.throws(() => checkPartFromEnv({ STOWAGE_CHECK_PARTS: '4' }), /JOB_COMPLETION_INDEX/);
    assert.throws(() => checkPartFromEnv({ JOB_COMPLETION_INDEX: '4', STOWAGE_CHECK_PARTS: '4' }), { code: 'INVALID_INPUT' });
    assert.throws(() => checkPartFromEnv({ JOB_COMPLETION_INDEX: '0', STOWAGE_CHECK_PARTS: '257' }), /1 to 256/);
    assert.throws(() => mergeCheckParts([]), /no check part/);
  });

  it('three processes side by side read every pack exactly once; the merge gives one status', async () => {
    const reports = path.join(dir, 'reports');
    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD, STOWAGE_CHECK_PARTS: String(PARTS), STOWAGE_REPORT_DIR: reports, STOWAGE_LOG_LEVEL: 'debug' };
    const runs = await Promise.all([...Array(PARTS).keys()].map((i) => runExample([], { ...env, JOB_COMPLETION_INDEX: String(i) })));
    const seen = new Map<string, number>();
    runs.forEach((run, i) => {
      assert.equal(run.code, 0, `part ${i}: ${run.stderr.split('\n').filter((l) => !l.startsWith('debug')).join('\n')}`);
      assert.match(run.stderr, /^info: lock acquired lock=[0-9a-f]{64} exclusive=false$/m, 'the part took a shared lock');
      assert.match(run.stderr, /^debug: lock released /m, 'and released it');
      const reads = wholePackReads(run.stderr, sizes);
      const mine = [...sizes.keys()].filter((id) => parseInt(id.slice(0, 2), 16) % PARTS === i).sort();
      assert.deepEqual([...reads].sort(), mine, `part ${i} reads its group's packs, each once`);
      for (const id of reads) seen.set(id, (seen.get(id) ?? 0) + 1);
    });
    assert.deepEqual([...seen.keys()].sort(), [...sizes.keys()].sort(), 'together every pack');
    assert.ok([...seen.values()].every((n) => n === 1), 'no pack twice');
    assert.deepEqual(await readdir(path.join(repoDir, 'locks')), [], 'every lock released');

    const parts = await Promise.all((await readdir(reports)).map(async (f) => JSON.parse(await readFile(path.join(reports, f), 'utf8')) as CheckPartReport));
    assert.throws(() => mergeCheckParts(parts.slice(1)), /missing/);
    assert.throws(() => mergeCheckParts([...parts, parts[0]!]), /twice/);
    assert.equal(mergeCheckParts(parts.slice(1), { allowPartial: true }).readData, 'subset');
    const merged = await runExample(['--merge', reports], { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD });
    assert.equal(merged.code, 0, merged.stderr);
    const out = JSON.parse(merged.stdout) as { status: { integrity: boolean; totalSize: string; snapshotCount: number }; check: { readData: string; packs: number; packsRead: number; errors: number } };
    const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
    const stats = await repositoryStats(repo);
    assert.deepEqual(out, {
      status: { ...out.status, integrity: true, totalSize: formatStashBytes(stats.rawDataSize), snapshotCount },
      check: { readData: 'all', packs: sizes.size, packsRead: sizes.size, bytesRead: [...sizes.values()].reduce((a, b) => a + b, 0), errors: 0 },
    } as unknown as typeof out);
  });

  it('a damaged pack is found by its part, once in the merge; an exclusive lock stops a part', async () => {
    const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
    const victim = [...sizes.keys()].sort()[0]!;
    const file = path.join(repoDir, 'data', victim.slice(0, 2), victim);
    const bytes = await readFile(file);
    bytes[10] ^= 0xff;
    await writeFile(file, bytes);
    const parts = [];
    for (let i = 0; i < PARTS; i++) parts.push(await checkRepositoryPart(repo, { index: i, count: PARTS }));
    const owner = parseInt(victim.slice(0, 2), 16) % PARTS;
    parts.forEach((p, i) => assert.equal(p.report.errors.some((e) => e.pack === victim), i === owner, `part ${i}`));
    const merged = mergeCheckParts(parts);
    assert.equal(merged.ok, false);
    assert.equal(merged.errors.filter((e) => e.pack === victim && e.code === 'PACK_DAMAGED').length, 1);

    const exclusive = await Lock.acquire(repo, { exclusive: true });
    try {
      await assert.rejects(checkRepositoryPart(repo, { index: 0, count: PARTS }), LockedError);
    } finally {
      await exclusive.release();
    }
  });
});
