// Crash anywhere: backup, forget+prune and copy run in a
// child process that is SIGKILLed at a seeded random moment. After every kill the repository
// must pass Stowage's structural check once stale locks are gone, every snapshot that existed
// before the run must still be there with all its trees loadable (a forget may remove the ones
// its policy drops), and the same operation run again must complete. Every few kills restic
// 0.19 checks the repository too, and a chosen snapshot is restored and compared with the
// files it was taken from.
//
// STOWAGE_CRASH_SEED replays a campaign (the kill delays and the changes to the source tree; the
// exact point a delay lands on still depends on the machine's speed). STOWAGE_CRASH_KILLS sets
// the number of kills (default 90 — CI's share of the suite's time —, spread over two
// repositories worked on at the same time; longer campaigns: STOWAGE_CRASH_KILLS=600).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomInt } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { seededRandom } from '../../src/backend/wrappers/faulty.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import type { IndexedRepository } from '../../src/repository/repository.ts';
import { listLocks, unlock } from '../../src/repository/lock.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots, type SnapshotEntry } from '../../src/snapshot/engine/select.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import { resticBin, runRestic } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { runInChild, type RunnerOp, type RunnerResult, type RunnerSpec } from './runner.ts';

const PASSWORD = 'crash campaign password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const SEED = process.env.STOWAGE_CRASH_SEED !== undefined ? Number(process.env.STOWAGE_CRASH_SEED) : randomInt(2 ** 31);
const KILLS = Math.max(2, Number(process.env.STOWAGE_CRASH_KILLS ?? 90));
const LANES = 2;
/** restic check (after restic unlock) every this many kills per lane. */
const RESTIC_CHECK_EVERY = 5;
/** A full restore comparison every this many kills per lane; every third one by restic. */
const RESTORE_EVERY = 8;
/** Snapshots a forget keeps (restic --keep-last). */
const KEEP_LAST = 3;
const MIN_DELAY_MS = 20;
const MAX_DELAY_MS = 1500;

/** File path relative to the source root → SHA-256 of its content. */
type Manifest = Map<string, string>;

interface LaneStats {
  kills: number;
  completedBeforeKill: number;
  killsByOp: Record<string, number>;
  resticChecks: number;
  restores: number;
  resticRestores: number;
  snapshotsChecked: number;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function manifestOf(root: string): Promise<Manifest> {
  const out: Manifest = new Map();
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const full = path.join(e.parentPath, e.name);
    out.set(path.relative(root, full), sha256(await readFile(full)));
  }
  return out;
}

function assertSameManifest(actual: Manifest, expected: Manifest, what: string): void {
  const a = [...actual].sort(([x], [y]) => x.localeCompare(y));
  const e = [...expected].sort(([x], [y]) => x.localeCompare(y));
  assert.deepEqual(a, e, `${what}: restored files differ from the source the snapshot was taken of`);
}

/** Loads every tree a snapshot reaches (each once). */
async function loadAllTrees(indexed: IndexedRepository, root: BlobId, seen: Set<string>): Promise<void> {
  const stack = [root];
  while (stack.length) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const n of decodeTree(await indexed.loadBlob('tree', id), id)) if (n.type === 'dir' && n.subtree) stack.push(n.subtree);
  }
}

/** What a hung child was doing: its JavaScript stack and the handles it waited on. */
function hangReport(r: RunnerResult): string {
  if (!r.report) return '';
  try {
    const report = JSON.parse(r.report) as { javascriptStack?: { message?: string; stack?: string[] }; libuv?: Array<{ type: string; is_active: boolean }>; workers?: unknown[] };
    const handles = (report.libuv ?? []).filter((h) => h.is_active).map((h) => h.type);
    return `stack: ${report.javascriptStack?.message ?? ''}\n${(report.javascriptStack?.stack ?? []).join('\n')}\nactive handles: ${handles.join(', ')}; workers: ${report.workers?.length ?? 0}`;
  } catch {
    return r.report.slice(0, 3000);
  }
}

/** One repository with its own source folder, worked on by killed and completed child runs. */
class Lane {
  readonly name: string;
  readonly dir: string;
  readonly repoDir: string;
  readonly copyDir: string;
  readonly src: string;
  readonly random: () => number;
  readonly manifests = new Map<string, Manifest>();
  /** Snapshot ID → the tag of the backup that wrote it. */
  readonly known = new Map<string, string>();
  readonly durations: Record<string, number[]> = {};
  readonly stats: LaneStats = { kills: 0, completedBeforeKill: 0, killsByOp: {}, resticChecks: 0, restores: 0, resticRestores: 0, snapshotsChecked: 0 };
  readonly ops: RunnerOp[];
  generation = 0;

  constructor(name: string, dir: string, ops: RunnerOp[]) {
    this.name = name;
    this.dir = dir;
    this.repoDir = path.join(dir, 'repo');
    this.copyDir = path.join(dir, 'copy-dest');
    this.src = path.join(dir, 'src');
    this.random = seededRandom(`${SEED}:${name}`);
    this.ops = ops;
  }

  get hostname(): string {
    return `crash-${this.name}`;
  }

  async setUp(): Promise<void> {
    await mkdir(path.join(this.src, 'sub', 'deeper'), { recursive: true });
    for (let i = 0; i < 8; i++) await writeFile(path.join(this.src, i % 2 ? 'sub' : '', `base-${i}.bin`), this.bytes(500 + Math.floor(this.random() * 40_000)));
    await writeFile(path.join(this.src, 'sub', 'deeper', 'empty'), '');
    await Repository.init(new LocalBackend(this.repoDir), { password: PASSWORD, kdf: FAST_KDF });
    if (this.ops.includes('copy')) await Repository.init(new LocalBackend(this.copyDir), { password: PASSWORD, kdf: FAST_KDF });
    // A few snapshots to protect, and timings for the kill delays.
    for (let i = 0; i < 2; i++) await this.complete(await this.nextSpec('backup'));
    if (this.ops.includes('forget-prune')) {
      for (let i = 0; i < KEEP_LAST; i++) await this.complete(await this.nextSpec('backup'));
      await this.complete(await this.nextSpec('forget-prune'));
    }
    if (this.ops.includes('copy')) await this.complete(await this.nextSpec('copy'));
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = (this.random() * 256) | 0;
    return b;
  }

  /** The spec of the next run; a backup first changes the source (new content for 1–3 files). */
  async nextSpec(op: RunnerOp): Promise<RunnerSpec> {
    switch (op) {
      case 'backup': {
        const gen = ++this.generation;
        await writeFile(path.join(this.src, `gen-${gen % 5}.bin`), this.bytes(1 + Math.floor(this.random() * 120_000)));
        if (gen % 3 === 0) await writeFile(path.join(this.src, 'sub', `base-${(gen % 4) * 2 + 1}.bin`), this.bytes(Math.floor(this.random() * 60_000)));
        if (gen % 7 === 0) await writeFile(path.join(this.src, 'sub', 'deeper', `small-${gen}`), `generation ${gen}\n`);
        const tag = `gen-${gen}`;
        this.manifests.set(tag, await manifestOf(this.src));
        return { op, repo: this.repoDir, password: PASSWORD, paths: [this.src], tag, hostname: this.hostname };
      }
      case 'forget-prune':
        return { op, repo: this.repoDir, password: PASSWORD, keepLast: KEEP_LAST, hostname: this.hostname };
      case 'copy':
        // Lane 0 re-chunks (the destination has its own polynomial); lane 1 copies blobs as they are.
        return { op, repo: this.repoDir, password: PASSWORD, dest: this.copyDir, destPassword: PASSWORD, rechunk: this.name !== 'lane1' };
      default:
        throw new Error(`lane ${this.name}: no kill runs for ${op}`);
    }
  }

  async open(dir = this.repoDir): Promise<Repository> {
    return Repository.open(new LocalBackend(dir), { password: PASSWORD });
  }

  /** Runs a spec to the end; it must succeed. */
  async complete(spec: RunnerSpec): Promise<RunnerResult> {
    const r = await runInChild(spec, { timeoutMs: 90_000 });
    assert.equal(r.code, 0, `lane ${this.name}: ${spec.op} must complete${r.timedOut ? ' (it hung for 90 s)' : ''}: ${r.stdout}\n${r.stderr}\n${hangReport(r)}`);
    this.noteDuration(spec.op, r.sinceReadyMs);
    await this.afterCompleted(spec);
    return r;
  }

  noteDuration(op: string, ms: number | undefined): void {
    if (ms === undefined) return;
    (this.durations[op] ??= []).push(ms);
  }

  /** A kill delay within how long the operation usually runs, so most runs die mid-way. */
  killDelay(op: string): number {
    const seen = [...(this.durations[op] ?? [MAX_DELAY_MS])].sort((a, b) => a - b);
    const typical = seen[Math.floor(seen.length * 0.6)] ?? MAX_DELAY_MS;
    const upper = Math.max(MIN_DELAY_MS + 50, Math.min(MAX_DELAY_MS, typical));
    return Math.round(MIN_DELAY_MS + this.random() * (upper - MIN_DELAY_MS));
  }

  pickOp(snapshots: number): RunnerOp {
    const r = this.random();
    if (this.ops.includes('copy') && r < 0.15) return 'copy';
    if (this.ops.includes('forget-prune') && r < 0.45 && snapshots > KEEP_LAST) return 'forget-prune';
    return 'backup';
  }

  /** What a completed run must have done. */
  async afterCompleted(spec: RunnerSpec): Promise<void> {
    const repo = await this.open();
    const snaps = await listSnapshots(repo);
    this.learn(snaps);
    if (spec.op === 'backup') {
      assert.ok(snaps.some((s) => s.snapshot.tags?.includes(spec.tag)), `lane ${this.name}: completed backup ${spec.tag} has its snapshot`);
    } else if (spec.op === 'forget-prune') {
      assert.equal(snaps.length, KEEP_LAST, `lane ${this.name}: a completed forget keeps exactly ${KEEP_LAST} snapshots`);
    } else if (spec.op === 'copy') {
      // Every source snapshot has its copy: same time and tags (trees differ when re-chunked).
      const copied = await listSnapshots(await this.open(this.copyDir));
      this.learn(copied);
      const key = (s: SnapshotEntry) => `${s.snapshot.time.epochNs}:${(s.snapshot.tags ?? []).join(',')}`;
      const have = new Set(copied.map(key));
      for (const s of snaps) assert.ok(have.has(key(s)), `lane ${this.name}: snapshot ${s.id} was copied`);
    }
  }

  /** Records snapshots (and their tags) that appeared, including those a killed run finished. */
  learn(snaps: SnapshotEntry[]): void {
    for (const s of snaps) {
      if (this.known.has(s.id)) continue;
      const tag = s.snapshot.tags?.find((t) => this.manifests.has(t));
      assert.ok(tag, `lane ${this.name}: snapshot ${s.id} carries a backup tag`);
      this.known.set(s.id, tag);
    }
  }

  /** One kill: run, kill, verify, then complete the same operation. Returns false when the run ended before the kill. */
  async killOnce(): Promise<boolean> {
    const repo = await this.open();
    const before = await listSnapshots(repo);
    const op = this.pickOp(before.length);
    const destBefore = op === 'copy' ? await listSnapshots(await this.open(this.copyDir)) : undefined;
    const spec = await this.nextSpec(op);
    const delay = this.killDelay(op);
    const r = await runInChild(spec, { killAfterReadyMs: delay, timeoutMs: 90_000 });
    if (!r.killed) {
      assert.equal(r.code, 0, `lane ${this.name}: ${op} (not killed) failed${r.timedOut ? ' (it hung for 90 s)' : ''}: ${r.stdout}\n${r.stderr}\n${hangReport(r)}`);
      this.stats.completedBeforeKill++;
      this.noteDuration(op, r.sinceReadyMs);
      await this.afterCompleted(spec);
      return false;
    }
    this.stats.kills++;
    this.stats.killsByOp[op] = (this.stats.killsByOp[op] ?? 0) + 1;
    const n = this.stats.kills;
    const where = `lane ${this.name}, kill ${n} (${op} killed ${delay} ms after start, seed ${SEED})`;

    // Stale locks (the killed process's) go; then nothing may be locked.
    await unlock(repo);
    assert.deepEqual(await listLocks(repo), [], `${where}: a lock survives unlock`);
    const report = await checkRepository(repo);
    assert.ok(report.ok, `${where}: check fails: ${JSON.stringify(report.errors.slice(0, 5))}`);

    // Every earlier snapshot is still there (unless a forget was allowed to drop it) with all its trees.
    const after = await listSnapshots(repo);
    this.learn(after);
    const present = new Map(after.map((s) => [s.id, s]));
    const mayGo = new Set(op === 'forget-prune' ? [...before].sort((a, b) => b.snapshot.time.epochNs > a.snapshot.time.epochNs ? 1 : -1).slice(KEEP_LAST).map((s) => s.id) : []);
    const indexed = await repo.loadIndex();
    const trees = new Set<string>();
    for (const s of before) {
      if (!present.has(s.id)) {
        assert.ok(mayGo.has(s.id), `${where}: snapshot ${s.id} vanished`);
        continue;
      }
      await loadAllTrees(indexed, s.snapshot.tree, trees);
      this.stats.snapshotsChecked++;
    }
    if (op === 'copy') {
      const dest = await this.open(this.copyDir);
      await unlock(dest);
      assert.deepEqual(await listLocks(dest), [], `${where}: a lock survives unlock in the copy destination`);
      const destReport = await checkRepository(dest);
      assert.ok(destReport.ok, `${where}: the copy destination fails check: ${JSON.stringify(destReport.errors.slice(0, 5))}`);
      const destAfter = await listSnapshots(dest);
      this.learn(destAfter);
      const destPresent = new Set(destAfter.map((s) => s.id));
      const destIndexed = await dest.loadIndex();
      const destTrees = new Set<string>();
      for (const s of destBefore ?? []) {
        assert.ok(destPresent.has(s.id), `${where}: snapshot ${s.id} vanished from the copy destination`);
        await loadAllTrees(destIndexed, s.snapshot.tree, destTrees);
        this.stats.snapshotsChecked++;
      }
    }

    if (n % RESTIC_CHECK_EVERY === 0) {
      const bin = resticBin('0.19');
      for (const dir of op === 'copy' ? [this.repoDir, this.copyDir] : [this.repoDir]) {
        const u = await runRestic(bin, ['unlock'], { repo: dir, password: PASSWORD });
        assert.equal(u.code, 0, `${where}: restic unlock: ${u.stderr}`);
        const c = await runRestic(bin, ['check'], { repo: dir, password: PASSWORD });
        assert.equal(c.code, 0, `${where}: restic check fails:\n${c.stdout}\n${c.stderr}`);
      }
      this.stats.resticChecks++;
    }
    if (n % RESTORE_EVERY === 0) {
      const candidates = before.filter((s) => present.has(s.id));
      const chosen = candidates[Math.floor(this.random() * candidates.length)];
      if (chosen) await this.restoreAndCompare(indexed, chosen, Math.floor(n / RESTORE_EVERY) % 3 === 0, where);
    }

    // The same operation, run again, completes.
    await this.complete(spec);
    return true;
  }

  async restoreAndCompare(indexed: IndexedRepository, entry: SnapshotEntry, withRestic: boolean, where: string): Promise<void> {
    const target = await mkdtemp(path.join(this.dir, 'restore-'));
    try {
      if (withRestic) {
        const r = await runRestic(resticBin('0.19'), ['restore', entry.id, '--target', target], { repo: this.repoDir, password: PASSWORD });
        assert.equal(r.code, 0, `${where}: restic restore of ${entry.id}: ${r.stderr}`);
        this.stats.resticRestores++;
      } else {
        await restore(indexed, entry.snapshot.tree, { target });
        this.stats.restores++;
      }
      const tag = this.known.get(entry.id)!;
      assertSameManifest(await manifestOf(path.join(target, this.src)), this.manifests.get(tag)!, `${where}: snapshot ${entry.id} (${tag})`);
    } finally {
      await removeTree(target);
    }
  }

  /** At the end: every snapshot restores exactly, and both checkers read all data. */
  async finalCheck(): Promise<void> {
    for (const dir of this.ops.includes('copy') ? [this.repoDir, this.copyDir] : [this.repoDir]) {
      const repo = await this.open(dir);
      const report = await checkRepository(repo, { readData: true });
      assert.ok(report.ok, `lane ${this.name}: final check --read-data of ${dir}: ${JSON.stringify(report.errors.slice(0, 5))}`);
      const c = await runRestic(resticBin('0.19'), ['check', '--read-data'], { repo: dir, password: PASSWORD });
      assert.equal(c.code, 0, `lane ${this.name}: final restic check --read-data of ${dir}:\n${c.stdout}\n${c.stderr}`);
    }
    for (const dir of this.ops.includes('copy') ? [this.repoDir, this.copyDir] : [this.repoDir]) {
      const repo = await this.open(dir);
      const indexed = await repo.loadIndex();
      for (const s of await listSnapshots(repo)) await this.restoreAndCompare(indexed, s, false, `lane ${this.name}, final, ${path.basename(dir)}`);
    }
  }
}

describe(`crash anywhere (seed ${SEED}, replay with STOWAGE_CRASH_SEED=${SEED})`, () => {
  let work: string;
  const ops: RunnerOp[] = ['backup'];
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-crash-'));
    ops.push('forget-prune', 'copy');
  });
  after(async () => {
    await removeTree(work);
  });

  it(`survives ${KILLS} SIGKILLs at random points`, { timeout: 15 * 60_000 }, async () => {
    const started = performance.now();
    const lanes = Array.from({ length: LANES }, (_, i) => new Lane(`lane${i}`, path.join(work, `lane${i}`), ops));
    await Promise.all(lanes.map(async (lane) => {
      await mkdir(lane.dir, { recursive: true });
      await lane.setUp();
    }));
    const quota = Math.ceil(KILLS / LANES);
    await Promise.all(lanes.map(async (lane) => {
      let attempts = 0;
      while (lane.stats.kills < quota) {
        assert.ok(++attempts < quota * 4, `lane ${lane.name}: only ${lane.stats.kills} of ${attempts} runs were killed mid-way`);
        await lane.killOnce();
      }
    }));
    await Promise.all(lanes.map((l) => l.finalCheck()));

    const total = (k: keyof LaneStats) => lanes.reduce((n, l) => n + (l.stats[k] as number), 0);
    const byOp: Record<string, number> = {};
    for (const l of lanes) for (const [op, n] of Object.entries(l.stats.killsByOp)) byOp[op] = (byOp[op] ?? 0) + n;
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    console.log(
      `crash: ${total('kills')} kills survived (${Object.entries(byOp).map(([op, n]) => `${op} ${n}`).join(', ')}), ` +
        `${total('completedBeforeKill')} runs ended before their kill, ${total('snapshotsChecked')} snapshot checks, ` +
        `${total('resticChecks')} restic checks, ${total('restores')} Stowage and ${total('resticRestores')} restic restores compared, ` +
        `seed ${SEED}, ${seconds} s`,
    );
    assert.ok(total('kills') >= KILLS, `${total('kills')} kills, wanted ${KILLS}`);
    // With the default number of kills every operation is hit many times over.
    if (KILLS >= 100) for (const op of ops) assert.ok((byOp[op] ?? 0) > 0, `some ${op} runs were killed`);
  });
});
