import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError } from '../../src/errors.ts';
import { BUDGET_COSTS, MIN_MEMORY_LIMIT, checkMemoryLimit, planBudget, readContainerLimits } from '../../src/memory-budget.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository } from '../../src/repository/repository.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { main } from '../../src/cli/main.ts';
import { tmpDir } from '../helpers/tmp.ts';

const MiB = 1024 * 1024;

/** A fake cgroup tree: `files` maps paths under the root to contents, `membership` is /proc/self/cgroup. */
async function fakeCgroup(membership: string, files: Record<string, string>): Promise<{ root: string; procSelfCgroup: string }> {
  const dir = await tmpDir('stowage-cgroup');
  const root = join(dir, 'sys-fs-cgroup');
  for (const [p, content] of Object.entries(files)) {
    await mkdir(join(root, p, '..'), { recursive: true });
    await writeFile(join(root, p), content + '\n');
  }
  await mkdir(root, { recursive: true });
  const procSelfCgroup = join(dir, 'proc-self-cgroup');
  await writeFile(procSelfCgroup, membership);
  return { root, procSelfCgroup };
}

test('readContainerLimits: cgroup v2 memory.max and cpu.max, the smallest along the path', async () => {
  const paths = await fakeCgroup('0::/kubepods/pod1/ctr\n', {
    'memory.max': 'max',
    'cpu.max': 'max 100000',
    'kubepods/pod1/memory.max': String(512 * MiB),
    'kubepods/pod1/ctr/memory.max': String(256 * MiB),
    'kubepods/pod1/ctr/cpu.max': '150000 100000',
  });
  assert.deepEqual(readContainerLimits(paths), { memoryBytes: 256 * MiB, cpus: 1.5 });
});

test('readContainerLimits: a parent limit binds a child without one; "max" is no limit', async () => {
  const paths = await fakeCgroup('0::/a/b\n', { 'a/memory.max': String(300 * MiB), 'a/b/memory.max': 'max', 'a/b/cpu.max': 'max 100000' });
  assert.deepEqual(readContainerLimits(paths), { memoryBytes: 300 * MiB });
});

test('readContainerLimits: a container that sees the host path but has its own cgroup at the root', async () => {
  const paths = await fakeCgroup('0::/system.slice/docker-abc.scope\n', { 'memory.max': String(128 * MiB), 'cpu.max': '50000 100000' });
  assert.deepEqual(readContainerLimits(paths), { memoryBytes: 128 * MiB, cpus: 0.5 });
});

test('readContainerLimits: cgroup v1 memory and cpu controllers; v1 "unlimited" is no limit', async () => {
  const v1 = await fakeCgroup('12:memory:/docker/abc\n5:cpu,cpuacct:/docker/abc\n0::/\n', {
    'memory/memory.limit_in_bytes': '9223372036854771712',
    'memory/docker/abc/memory.limit_in_bytes': String(200 * MiB),
    'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '200000',
    'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000',
  });
  assert.deepEqual(readContainerLimits(v1), { memoryBytes: 200 * MiB, cpus: 2 });
  const unlimited = await fakeCgroup('4:memory:/x\n1:cpu:/x\n', { 'memory/x/memory.limit_in_bytes': '9223372036854771712', 'cpu/x/cpu.cfs_quota_us': '-1', 'cpu/x/cpu.cfs_period_us': '100000' });
  assert.deepEqual(readContainerLimits(unlimited), {});
});

test('readContainerLimits: no cgroup information at all is no limit', async () => {
  const dir = await tmpDir('stowage-cgroup');
  assert.deepEqual(readContainerLimits({ root: join(dir, 'none'), procSelfCgroup: join(dir, 'missing') }), {});
});

test('planBudget: without a limit, one worker per core (bounded by the CPU quota) and the backend connections', () => {
  assert.deepEqual(planBudget('backup', { connections: 4, cpus: 8, container: {} }), { memoryLimit: undefined, workers: 8, packBuffers: 6, connections: 4 });
  assert.equal(planBudget('backup', { connections: 4, cpus: 8, container: { cpus: 1.5 } }).workers, 2);
  assert.deepEqual(planBudget('restore', { connections: 4, cpus: 8, container: {} }), { memoryLimit: undefined, workers: 8, packBuffers: 6, connections: 4 });
});

test('planBudget: workers, pack buffers and connections derived from the limit', () => {
  // 256 MiB on 8 cores: 96 for Node and the index, 2 workers of 40, 3 pack buffers of 25 (two filling, one stored).
  assert.deepEqual(planBudget('backup', { memoryLimit: 256 * MiB, connections: 4, cpus: 8, container: {} }), { memoryLimit: 256 * MiB, workers: 2, packBuffers: 3, connections: 1 });
  assert.deepEqual(planBudget('backup', { memoryLimit: 512 * MiB, connections: 4, cpus: 2, container: {} }), { memoryLimit: 512 * MiB, workers: 2, packBuffers: 6, connections: 4 });
  // The minimum: one worker, two buffers (the two packs being filled; one is stored when full).
  assert.deepEqual(planBudget('backup', { memoryLimit: MIN_MEMORY_LIMIT, connections: 4, cpus: 8, container: {} }), { memoryLimit: MIN_MEMORY_LIMIT, workers: 1, packBuffers: 2, connections: 1 });
  // The container's limit when none is given; the option wins over it.
  assert.equal(planBudget('backup', { connections: 4, cpus: 8, container: { memoryBytes: 256 * MiB } }).memoryLimit, 256 * MiB);
  assert.equal(planBudget('backup', { memoryLimit: 1024 * MiB, connections: 4, cpus: 8, container: { memoryBytes: 256 * MiB } }).workers, 8);
  const r = planBudget('restore', { memoryLimit: 256 * MiB, connections: 4, cpus: 8, container: {} });
  assert.ok(r.workers * BUDGET_COSTS.decodeWorker + r.connections * BUDGET_COSTS.restoreStream + BUDGET_COSTS.base <= 256 * MiB, JSON.stringify(r));
  assert.ok(r.workers >= 1 && r.connections >= 1);
  // Whatever the limit, the plan fits it (from the smallest plan's 186 MiB up).
  for (let mib = 192; mib <= 2048; mib += 16) {
    const p = planBudget('backup', { memoryLimit: mib * MiB, connections: 4, cpus: 16, container: {} });
    assert.ok(BUDGET_COSTS.base + p.workers * BUDGET_COSTS.fileWorker + p.packBuffers * BUDGET_COSTS.packBuffer <= mib * MiB, `${mib} MiB: ${JSON.stringify(p)}`);
  }
});

test('planBudget check: one decode worker fewer than cores (the main thread hashes), as many packs read at once, within the limit', () => {
  assert.deepEqual(planBudget('check', { connections: 4, cpus: 2, container: {} }), { memoryLimit: undefined, workers: 1, packBuffers: 0, connections: 1 });
  assert.deepEqual(planBudget('check', { connections: 4, cpus: 8, container: {} }), { memoryLimit: undefined, workers: 7, packBuffers: 0, connections: 4 });
  assert.deepEqual(planBudget('check', { connections: 4, cpus: 1, container: {} }), { memoryLimit: undefined, workers: 1, packBuffers: 0, connections: 1 });
  assert.deepEqual(planBudget('check', { memoryLimit: MIN_MEMORY_LIMIT, connections: 4, cpus: 8, container: {} }), { memoryLimit: MIN_MEMORY_LIMIT, workers: 1, packBuffers: 0, connections: 1 });
  for (let mib = 160; mib <= 1024; mib += 16) {
    const p = planBudget('check', { memoryLimit: mib * MiB, connections: 8, cpus: 16, container: {} });
    assert.ok(BUDGET_COSTS.base + p.workers * BUDGET_COSTS.decodeWorker + p.connections * BUDGET_COSTS.checkStream <= mib * MiB, `${mib} MiB: ${JSON.stringify(p)}`);
    assert.ok(p.connections <= p.workers);
  }
});

test('memoryLimit: a bad value is an InvalidInputError, before anything is read', async () => {
  for (const bad of [0, -1, 1.5, Number.NaN, MIN_MEMORY_LIMIT - 1, '256M' as unknown as number]) assert.throws(() => checkMemoryLimit(bad), InvalidInputError);
  const repo = await Repository.init(new MemoryBackend(), { password: 'pw', kdf: { N: 1024, r: 8, p: 1 } });
  // An existing source: the only thing wrong is the limit, and nothing is stored.
  const src = await tmpDir('stowage-budget-src');
  await writeFile(join(src, 'a'), 'x');
  await assert.rejects(backup(repo, { paths: [src], memoryLimit: 1000 }), (e: Error) => e instanceof InvalidInputError && /memoryLimit/.test(e.message));
  const snapshots: string[] = [];
  for await (const id of repo.listIds('snapshots')) snapshots.push(id);
  assert.deepEqual(snapshots, []);
  await assert.rejects(restore(repo, 'latest', { target: '/nonexistent-target', memoryLimit: -5 }), (e: Error) => e instanceof InvalidInputError && /memoryLimit/.test(e.message));
});

test('CLI: --max-memory and $STOWAGE_MAX_MEMORY take restic sizes; a bad one is an error (exit 1)', async () => {
  const dir = await tmpDir('stowage-maxmem');
  const env = { RESTIC_REPOSITORY: join(dir, 'repo'), RESTIC_PASSWORD: 'pw' };
  const out: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  const writeOut = process.stdout.write.bind(process.stdout);
  process.stderr.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    assert.equal(await main(['init'], env), 0);
    await mkdir(join(dir, 'src'));
    await writeFile(join(dir, 'src', 'a'), 'hello');
    assert.equal(await main(['--max-memory', '10x', 'backup', join(dir, 'src')], env), 1);
    assert.equal(await main(['--max-memory', '1M', 'backup', join(dir, 'src')], env), 1);
    assert.equal(await main(['backup', join(dir, 'src')], { ...env, STOWAGE_MAX_MEMORY: 'lots' }), 1);
    assert.equal(await main(['--max-memory', '200M', 'backup', join(dir, 'src')], env), 0);
  } finally {
    process.stderr.write = write;
    process.stdout.write = writeOut;
  }
  assert.match(out.join(''), /--max-memory/);
  assert.match(out.join(''), /STOWAGE_MAX_MEMORY/);
});

test('a backup under a small memoryLimit completes and its peak RSS stays below the default one', async () => {
  const dir = await tmpDir('stowage-budget');
  await mkdir(join(dir, 'src'));
  for (let i = 0; i < 12; i++) await writeFile(join(dir, 'src', `f${i}`), randomBytes(8 * MiB));
  const child = fileURLToPath(new URL('../helpers/budget-child.ts', import.meta.url));
  const run = (limit: string, repo: string) => {
    const r = spawnSync(process.execPath, [child, join(dir, 'src'), join(dir, repo), limit], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { filesNew: number; maxRSS: number };
  };
  const small = run(String(MIN_MEMORY_LIMIT), 'small');
  assert.equal(small.filesNew, 12);
  // Measured here: ~187 MiB with a 64 MiB budget (one worker, two pack buffers), ~288 MiB by
  // default on 2 cores (two workers, five pack buffers); Node and its modules alone take ~80.
  assert.ok(small.maxRSS < 230 * MiB, `peak RSS ${(small.maxRSS / MiB).toFixed(0)} MiB`);
});

test('CLI: run directly, it re-executes itself (same PID) with a small main-thread young generation', async () => {
  const dir = await tmpDir('stowage-reexec');
  const log = join(dir, 'log');
  const preload = join(dir, 'preload.mjs');
  await writeFile(preload, `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(log)}, JSON.stringify({ pid: process.pid, execArgv: process.execArgv, arenas: process.env.MALLOC_ARENA_MAX ?? null, mmap: process.env.MALLOC_MMAP_THRESHOLD_ ?? null, trim: process.env.MALLOC_TRIM_THRESHOLD_ ?? null }) + '\\n');\n`);
  const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
  const run = (extra: NodeJS.ProcessEnv, command = 'backup') => {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: `--import=${preload}`, ...extra };
    for (const name of ['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_']) if (!(name in extra)) delete env[name];
    const r = spawnSync(process.execPath, [cli, command, '--help'], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage/);
  };
  const { readFile, rm } = await import('node:fs/promises');
  const starts = async () => (await readFile(log, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { pid: number; execArgv: string[]; arenas: string | null; mmap: string | null; trim: string | null });
  run({});
  const [first, second, ...rest] = await starts();
  assert.equal(rest.length, 0);
  assert.ok(!first!.execArgv.some((a) => a.startsWith('--max-semi-space-size')));
  assert.ok(second!.execArgv.includes('--max-semi-space-size=1'), JSON.stringify(second));
  assert.ok(second!.execArgv.includes('--optimize-for-size'), JSON.stringify(second));
  assert.equal(second!.pid, first!.pid);
  // And with two glibc arenas (fewer threads' freed memory kept resident) unless the user set it.
  assert.equal(first!.arenas, null);
  assert.equal(second!.arenas, '2');
  // And glibc's mmap and trim thresholds fixed (not raised after a big block is freed): 1 MiB pieces
  // from the heap, kept at its top.
  assert.deepEqual([first!.mmap, first!.trim], [null, null]);
  assert.deepEqual([second!.mmap, second!.trim], [String(1024 * 1024 + 128 * 1024), String(32 * 1024 * 1024)]);
  await rm(log);
  run({ MALLOC_ARENA_MAX: '4', MALLOC_TRIM_THRESHOLD_: '65536' });
  assert.deepEqual((await starts()).map((s) => [s.arenas, s.mmap, s.trim]), [['4', null, '65536'], ['4', String(1024 * 1024 + 128 * 1024), '65536']]);
  // Turned off, or a size the user chose: started once, as given.
  await rm(log);
  run({ STOWAGE_NODE_REEXEC: '0' });
  assert.equal((await starts()).length, 1);
  await rm(log);
  run({ NODE_OPTIONS: `--import=${preload} --max-semi-space-size=8` });
  assert.equal((await starts()).length, 1);
  // A short command starts once.
  await rm(log);
  run({}, 'snapshots');
  assert.equal((await starts()).length, 1);
});

test('a restore under the smallest memoryLimit reads one pack at a time and restores every byte', async () => {
  const dir = await tmpDir('stowage-budget-restore');
  const { readFile } = await import('node:fs/promises');
  await mkdir(join(dir, 'src'));
  // Incompressible files over several 16 MiB packs, so that a restore has packs to read at once.
  const files = Array.from({ length: 6 }, () => randomBytes(8 * MiB));
  for (const [i, b] of files.entries()) await writeFile(join(dir, 'src', `f${i}`), b);
  // Counts the pack reads in flight (a stream is in flight until it has been read to the end).
  const local = new LocalBackend(join(dir, 'repo'), { connections: 4 });
  let inFlight = 0;
  let most = 0;
  const counted = new Proxy(local, {
    get(target, prop, receiver) {
      if (prop === 'loadStream') {
        return (h: Parameters<NonNullable<LocalBackend['loadStream']>>[0], o: Parameters<NonNullable<LocalBackend['loadStream']>>[1]) => {
          const inner = target.loadStream!(h, o);
          return (async function* () {
            inFlight++;
            most = Math.max(most, inFlight);
            try {
              yield* inner;
            } finally {
              inFlight--;
            }
          })();
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const repo = await (await Repository.init(counted, { password: 'pw', kdf: { N: 1024, r: 8, p: 1 } })).loadIndex();
  try {
    const { snapshotId } = await backup(repo, { paths: [join(dir, 'src')], memoryLimit: MIN_MEMORY_LIMIT, scan: false, compression: 'off' });
    most = 0;
    const res = await restore(repo, snapshotId, { target: join(dir, 'out'), memoryLimit: MIN_MEMORY_LIMIT });
    assert.equal(res.filesRestored, 6);
    for (const [i, b] of files.entries()) assert.ok((await readFile(join(dir, 'out', dir, 'src', `f${i}`))).equals(b), `f${i}`);
    assert.equal(most, 1, 'packs read at once under a 64 MiB budget');
    // Without a budget, the backend's four connections are used.
    most = 0;
    await restore(repo, snapshotId, { target: join(dir, 'out2') });
    assert.ok(most > 1, `packs read at once without a budget: ${most}`);
  } finally {
    await repo.close();
  }
});
