// Prune against the real restic:
//   (a) a repository restic wrote, half its snapshots forgotten: Stowage prunes it, restic 0.14
//       and 0.19 check it (--read-data), every remaining snapshot restores exactly, and no more
//       unused space is left than restic's own prune leaves on a copy
//   (b) the same for a repository Stowage wrote (pruned with the `stowage prune` CLI)
//   (c) a prune SIGKILLed at many points: restic check passes after `restic unlock`, every
//       remaining snapshot restores, and the next prune completes
//   (d) a prune refuses while a backup holds a shared lock, and waits for it with retryLock
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { LockedError } from '../../src/repository/lock.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { planPrune, prune } from '../../src/snapshot/operations/prune.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticVersions, resticOk, resticJson, runRestic } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { runCli } from '../helpers/cli.ts';

const PASSWORD = 'prune password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const RUNNER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'prune-runner.ts');

/** Six versions of a folder; v1, v3 and v5 are forgotten. See makeVersions for what they share. */
const VERSIONS = [1, 2, 3, 4, 5, 6];
const FORGET = [1, 3, 5];
const KEEP = [2, 4, 6];

/**
 * v_k holds the base files, its own file u_k and rolling files shared with neighbours:
 *   v1: r1   v2: r1 r2   v3: r3   v4: r3 r4   v5: —   v6: r4
 * With v1, v3 and v5 forgotten, the packs of backups 1 and 3 are partly used, that of backup 5
 * (u5 only) is unused, the others are used.
 */
async function makeVersions(root: string): Promise<string[]> {
  const base = { 'a.bin': randomBytes(700_000), 'b.bin': randomBytes(300_000), 'notes.txt': Buffer.from('base notes\n') };
  const rolls = new Map([1, 2, 3, 4].map((k) => [k, randomBytes(250_000 + k * 10_000)]));
  const rollsOf: Record<number, number[]> = { 1: [1], 2: [1, 2], 3: [3], 4: [3, 4], 5: [], 6: [4] };
  const dirs: string[] = [];
  for (const k of VERSIONS) {
    const dir = path.join(root, `v${k}`);
    await mkdir(path.join(dir, 'sub'), { recursive: true });
    for (const [name, bytes] of Object.entries(base)) await writeFile(path.join(dir, name), bytes);
    await writeFile(path.join(dir, `u${k}.bin`), randomBytes(400_000 + k * 30_000));
    await writeFile(path.join(dir, 'sub', `small-${k}.txt`), `version ${k}\n`);
    for (const r of rollsOf[k]!) await writeFile(path.join(dir, `r${r}.bin`), rolls.get(r)!);
    dirs.push(dir);
  }
  return dirs;
}

/** Sum of the sizes of the pack files. */
async function packBytes(repoDir: string): Promise<number> {
  let total = 0;
  for (const shard of await readdir(path.join(repoDir, 'data'))) {
    for (const f of await readdir(path.join(repoDir, 'data', shard))) {
      if (/^[0-9a-f]{64}$/.test(f)) total += (await stat(path.join(repoDir, 'data', shard, f))).size;
    }
  }
  return total;
}

/** Unused, duplicate and unreferenced bytes, as a prune plan (read only) sees them. */
async function wasted(repoDir: string): Promise<number> {
  const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
  const s = (await planPrune(await repo.loadIndex(), { maxUnused: '0%' })).stats;
  return s.bytes.unused + s.bytes.duplicate + s.bytes.unreferenced;
}

interface SnapshotJson {
  id: string;
  paths: string[];
}

/** Restores every snapshot with restic 0.19 and compares it with the folder it was taken of. */
async function assertAllRestore(repoDir: string, work: string, label: string): Promise<number> {
  const bin = resticVersions()[1]!.bin;
  const opts = { repo: repoDir, password: PASSWORD };
  const snaps = await resticJson<SnapshotJson[]>(bin, ['snapshots'], opts);
  for (const s of snaps) {
    const out = await mkdtemp(path.join(work, 'restore-'));
    await resticOk(bin, ['restore', s.id, '--target', out], opts);
    const src = s.paths[0]!;
    assert.deepEqual(await compareTrees(src, path.join(out, src)), [], `${label}: snapshot ${s.id.slice(0, 8)} of ${src} restores exactly`);
    await removeTree(out);
  }
  return snaps.length;
}

async function resticCheck(repoDir: string, readData: boolean, versions = resticVersions()): Promise<void> {
  for (const { bin } of versions) {
    await resticOk(bin, readData ? ['check', '--read-data'] : ['check'], { repo: repoDir, password: PASSWORD });
  }
}

interface RunnerResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The operations (saves and removes) that completed, as the runner logged them. */
  ops: string[];
  /** Milliseconds from the second operation (the first after taking the lock) to the last. */
  opWindowMs: number;
}

/**
 * Runs the prune runner: killed by itself right after operation `killAfterOps` (0 = never), or
 * by us `killAfterMs` after its second operation (the first after its lock, which is followed by
 * the planning). `opDelayMs` spaces the operations.
 */
function runRunner(repoDir: string, o: { killAfterOps?: number; killAfterMs?: number; opDelayMs?: number } = {}): Promise<RunnerResult> {
  return new Promise((resolve, reject) => {
    const args = [RUNNER, repoDir, PASSWORD, String(o.killAfterOps ?? 0), String(o.opDelayMs ?? 0)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let seen = 0;
    let secondOp = 0;
    let lastOp = 0;
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      const lines = d.match(/^op \d+/gm)?.length ?? 0;
      if (lines === 0) return;
      lastOp = Date.now();
      if (seen < 2 && seen + lines >= 2) {
        secondOp = lastOp;
        if (o.killAfterMs !== undefined) timer = setTimeout(() => child.kill('SIGKILL'), o.killAfterMs);
      }
      seen += lines;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ops: stderr.match(/^op \d+ .*$/gm) ?? [], opWindowMs: lastOp - secondOp });
    });
  });
}

/** Output lines with what varies from run to run (IDs, numbers, sizes, durations) replaced. */
function shapes(text: string): string[] {
  return text.split('\n').map((l) => l
    .replace(/\b[0-9a-f]{8,64}\b/g, 'ID')
    .replace(/\b\d+:\d{2}(:\d{2})?\b/g, 'DUR')
    .replace(/\b\d+(\.\d+)? ?(B|KiB|MiB|GiB|TiB)\b/g, 'SIZE')
    .replace(/\d+(\.\d+)?/g, 'N')
    .replace(/\s+/g, ' ').trim())
    // The helper runs restic with --no-cache, which restic warns about.
    .filter((l) => l && !l.startsWith('warning: running prune without a cache'));
}

describe('prune interop with the real restic', () => {
  let work: string;
  let dirs: string[];
  /** A Stowage-written repository with v1, v3, v5 forgotten, not yet pruned. */
  let stowageBase: string;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-prune-'));
    dirs = await makeVersions(path.join(work, 'src'));
  });
  after(async () => {
    await removeTree(work);
  });

  it('(a) Stowage prunes repositories restic wrote, as well as restic does', async (t) => {
    for (const { name, bin, version } of [
      { ...resticVersions()[0]!, version: 1 },
      { ...resticVersions()[1]!, version: 2 },
    ]) {
      const repoDir = path.join(work, `restic-${name}`);
      const opts = { repo: repoDir, password: PASSWORD };
      await resticOk(bin, ['init', '--repository-version', String(version)], opts);
      const ids: string[] = [];
      for (const dir of dirs) {
        const out = await resticOk(bin, ['backup', '--json', '--host', 'h', dir], opts);
        ids.push((JSON.parse(out.stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id);
      }
      await resticOk(bin, ['forget', ...FORGET.map((k) => ids[k - 1]!)], opts);
      const theirs = path.join(work, `restic-${name}-restic-pruned`);
      await cp(repoDir, theirs, { recursive: true });

      const before = await wasted(repoDir);
      assert.ok(before > 0, 'forgetting left unused data');
      const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
      const result = await prune(await repo.loadIndex());
      assert.ok(result.stats.packs.repack > 0, `restic ${name}: partly used packs were repacked`);
      assert.ok(result.stats.packs.remove > 0, `restic ${name}: an unused pack was removed`);
      assert.deepEqual(result.failedRemovals, []);

      await resticOk(resticVersions()[1]!.bin, ['prune'], { repo: theirs, password: PASSWORD });

      await resticCheck(repoDir, true);
      assert.equal(await assertAllRestore(repoDir, work, `restic ${name} repository`), KEEP.length);
      const [ours, restics] = [await wasted(repoDir), await wasted(theirs)];
      const [oursBytes, resticsBytes] = [await packBytes(repoDir), await packBytes(theirs)];
      t.diagnostic(`restic ${name} (v${version}): unused ${before} → Stowage ${ours}, restic ${restics}; packs ${oursBytes} vs ${resticsBytes} bytes`);
      assert.ok(ours <= restics, `restic ${name}: Stowage leaves ${ours} unused bytes, restic ${restics}`);
      assert.ok(oursBytes < resticsBytes * 1.01, 'and stores no more than restic, headers aside');
    }
  });

  it('(b) the `stowage prune` CLI prunes a repository Stowage wrote', async () => {
    const repoDir = path.join(work, 'stowage');
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, kdf: FAST_KDF });
    const indexed = await repo.loadIndex();
    const ids: string[] = [];
    for (const dir of dirs) ids.push((await backup(indexed, { paths: [dir], hostname: 'h' })).snapshotId);
    for (const k of FORGET) await repo.backend.remove({ type: 'snapshots', name: ids[k - 1]! });
    stowageBase = path.join(work, 'stowage-base');
    await cp(repoDir, stowageBase, { recursive: true });
    const theirs = path.join(work, 'stowage-restic-pruned');
    await cp(repoDir, theirs, { recursive: true });

    const env = { RESTIC_PASSWORD: PASSWORD, RESTIC_REPOSITORY: repoDir };
    const dry = await runCli(['prune', '--dry-run', '-v'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /Would have made the following changes:/);
    assert.match(dry.stdout, /to repack: +\d+ blobs \/ /);
    assert.match(dry.stdout, /unused size after prune: /);
    assert.match(dry.stdout, /partly used packs: +[1-9]/);
    const json = await runCli(['prune', '--dry-run', '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    const summary = JSON.parse(json.stdout) as { message_type: string; blobs: Record<string, number>; bytes: Record<string, number>; packfiles: Record<string, number> };
    assert.equal(summary.message_type, 'summary');
    assert.ok(summary.packfiles.partly_used! > 0 && summary.packfiles.unused! > 0 && summary.bytes.repack_remove! > 0);
    assert.equal(await wasted(repoDir), await wasted(stowageBase), 'a dry run changes nothing');
    const noLock = await runCli(['prune', '--no-lock'], { env });
    assert.equal(noLock.code, 1);
    assert.match(noLock.stderr, /--no-lock is only applicable in combination with --dry-run/);

    const resticDry = await resticOk(resticVersions()[1]!.bin, ['prune', '--dry-run'], { repo: theirs, password: PASSWORD });
    const plainDry = await runCli(['prune', '--dry-run'], { env });
    assert.deepEqual(shapes(plainDry.stdout), shapes(resticDry.stdout), 'prune --dry-run prints restic 0.19\'s lines');
    const run = await runCli(['prune'], { env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /repacking packs\n/);
    assert.match(run.stdout, /removing \d+ old packs\n/);
    assert.match(run.stdout, /done\n$/);
    const resticRun = await resticOk(resticVersions()[1]!.bin, ['prune'], { repo: theirs, password: PASSWORD });
    // restic's lines in restic's order, its counters' last states included.
    assert.deepEqual(shapes(run.stdout), shapes(resticRun.stdout), 'prune prints restic 0.19\'s lines');

    await resticCheck(repoDir, true);
    assert.equal(await assertAllRestore(repoDir, work, 'Stowage repository'), KEEP.length);
    const [ours, restics] = [await wasted(repoDir), await wasted(theirs)];
    assert.ok(ours <= restics, `Stowage leaves ${ours} unused bytes, restic ${restics}`);
    assert.equal(ours, 0);
  });

  it('(b2) `forget --prune` prints restic 0.19\'s prune lines in its order', async () => {
    assert.ok(stowageBase, 'runs after (b)');
    const ours = path.join(work, 'forget-prune-ours');
    const theirs = path.join(work, 'forget-prune-theirs');
    await cp(stowageBase, ours, { recursive: true });
    await cp(stowageBase, theirs, { recursive: true });
    const args = ['forget', '--keep-last', '1', '--group-by', 'host', '--prune'];
    const run = await runCli(args, { env: { RESTIC_PASSWORD: PASSWORD, RESTIC_REPOSITORY: ours } });
    assert.equal(run.code, 0, run.stderr);
    const resticRun = await resticOk(resticVersions()[1]!.bin, args, { repo: theirs, password: PASSWORD });
    // From the snapshots' deletion counter on (the tables are compared in forget's tests).
    const tail = (out: string): string[] => {
      const lines = shapes(out);
      return lines.slice(lines.findIndex((l) => l.endsWith('files deleted')));
    };
    assert.ok(tail(resticRun.stdout).length > 10);
    assert.deepEqual(tail(run.stdout), tail(resticRun.stdout));
  });

  it('(c) a prune killed at any point leaves a repository restic accepts, and the next prune completes', async (t) => {
    assert.ok(stowageBase, 'runs after (b)');
    // A full run first, to count its operations (saves and removes) and time them.
    const OP_DELAY = 30;
    const full = path.join(work, 'crash-full');
    await cp(stowageBase, full, { recursive: true });
    const done = await runRunner(full, { opDelayMs: OP_DELAY });
    assert.equal(done.code, 0, done.stderr);
    const ops = done.ops.length;
    assert.ok(ops >= 8, `a prune with repacking makes several changes (${ops})`);
    t.diagnostic(`the operations of a full run:\n${done.ops.join('\n')}`);
    for (const kind of ['save data/', 'save index/', 'remove index/', 'remove data/']) {
      assert.ok(done.ops.some((op) => op.includes(kind)), `the prune does "${kind}"`);
    }

    // Kill right after the first and the last operation of each run of one kind (save data, save
    // index, remove index, remove data, …): every state between two kinds of change, and one in the
    // middle of each run of removals (the crash campaign in test/reliability kills prunes at random
    // moments besides). And twice by the clock between operations (possibly in the middle of one).
    const kindOf = (op: string) => op.replace(/^op \d+ /, '').split('/')[0]!;
    const points = [...new Set(done.ops.flatMap((op, i) => {
      const k = kindOf(op);
      const first = i === 0 || kindOf(done.ops[i - 1]!) !== k;
      const last = i === done.ops.length - 1 || kindOf(done.ops[i + 1]!) !== k;
      return (first || last) && i + 1 < ops ? [i + 1] : [];
    }))];
    const kills: Array<{ ops?: number; ms?: number }> = [
      ...points.map((k) => ({ ops: k })),
      ...[0.35, 0.7].map((f) => ({ ms: Math.round(done.opWindowMs * f) })),
    ];
    const bin = resticVersions()[1]!.bin;
    for (const kill of kills) {
      const label = kill.ops !== undefined ? `killed after operation ${kill.ops} of ${ops}` : `killed ${kill.ms} ms into ${done.opWindowMs} ms of operations`;
      const repoDir = path.join(work, `crash-${kill.ops ?? 0}-${kill.ms ?? 0}`);
      await cp(stowageBase, repoDir, { recursive: true });
      const r = await runRunner(repoDir, { killAfterOps: kill.ops, killAfterMs: kill.ms, opDelayMs: OP_DELAY });
      if (kill.ops !== undefined) assert.equal(r.signal, 'SIGKILL', `${label}: ${r.stderr}`);
      t.diagnostic(`${label}: ${r.signal ?? `exit ${r.code}`} after "${r.ops.at(-1) ?? 'no operation'}"`);
      const opts = { repo: repoDir, password: PASSWORD };
      await resticOk(bin, ['unlock'], opts);
      const check = await runRestic(bin, ['check', '--read-data'], opts);
      assert.equal(check.code, 0, `${label}: restic check: ${check.stdout}\n${check.stderr}`);
      assert.equal(await assertAllRestore(repoDir, work, label), KEEP.length);
      // The next prune completes and leaves a clean repository.
      const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
      await prune(await repo.loadIndex());
      assert.equal(await wasted(repoDir), 0, `${label}: nothing unused after the following prune`);
      await resticOk(bin, ['check'], opts);
      await removeTree(repoDir);
    }
    // restic 0.14 accepts the result of an uninterrupted run too.
    await resticCheck(full, true);
  });

  it('(d) a prune refuses while a backup holds a shared lock, and waits for it with retryLock', async () => {
    const repoDir = path.join(work, 'locked');
    // The log says when a lock is held (past the wait in which a newcomer's lock makes it back off).
    const acquired: string[] = [];
    const quiet = () => undefined;
    const logger = { debug: quiet, warn: quiet, error: quiet, info: (m: string, f?: Record<string, unknown>) => void (m === 'lock acquired' && acquired.push(String(f?.lock))) };
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, kdf: FAST_KDF, logger });
    await backup(await repo.loadIndex(), { paths: [dirs[0]!], hostname: 'h' });
    const stale = await repo.loadIndex();
    acquired.length = 0;

    // A backup from a stream that is still being written holds its shared lock.
    const stream = new PassThrough();
    const content = randomBytes(900_000);
    stream.write(content.subarray(0, 100_000));
    const running = backup(await repo.loadIndex(), { stdin: { stream, filename: 'stream.bin' }, hostname: 'h' });
    const lockIds = async () => {
      const out: string[] = [];
      for await (const id of repo.listIds('locks')) out.push(id);
      return out;
    };
    // The backup takes its lock while it starts reading; wait until it holds it.
    for (let waited = 0; acquired.length === 0; waited += 20) {
      assert.ok(waited < 30_000, 'the backup took its lock');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(await lockIds(), acquired);

    await assert.rejects(prune(stale), LockedError);
    const waiting = prune(stale, { retryLock: 30_000 });
    await new Promise((r) => setTimeout(r, 500));
    stream.end(content.subarray(100_000));
    const backedUp = await running;
    const result = await waiting;
    assert.equal(result.dryRun, false);
    assert.deepEqual(await lockIds(), [], 'both locks are released');

    // The snapshot the backup finished while the prune waited is intact.
    const bin = resticVersions()[1]!.bin;
    await resticOk(bin, ['check', '--read-data'], { repo: repoDir, password: PASSWORD });
    const dumped = await resticOk(bin, ['dump', backedUp.snapshotId, '/stream.bin'], { repo: repoDir, password: PASSWORD });
    assert.ok(dumped.stdoutBytes.equals(content), 'the streamed file restores exactly');
    assert.equal((await listSnapshots(repo)).length, 2);
  });
});
