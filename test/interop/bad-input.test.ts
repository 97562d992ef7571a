// Bad input and crashes: wrong password, flipped bytes and truncated or missing files of every
// kind, and a backup killed at several points — each followed by what restic says about it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, stat, truncate, writeFile, rm, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { IntegrityError, WrongPasswordError } from '../../src/errors.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { listSnapshots, loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { resticVersions, runRestic } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { runCli } from '../helpers/cli.ts';

const PASSWORD = 'bad input password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

async function filesOf(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

async function flipByte(file: string, at: number): Promise<void> {
  await chmod(file, 0o600);
  const b = await readFile(file);
  b[Math.min(at, b.length - 1)]! ^= 0x40;
  await writeFile(file, b);
}

describe('bad input and crashes', () => {
  let work: string;
  let src: string;
  let pristine: string;
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-bad-'));
    src = path.join(work, 'src');
    await mkdir(path.join(src, 'sub'), { recursive: true });
    await writeFile(path.join(src, 'random.bin'), randomBytes(3 * 1024 * 1024 + 17));
    await writeFile(path.join(src, 'sub', 'text.txt'), 'hello '.repeat(50_000));
    await writeFile(path.join(src, 'small'), 'x');
    pristine = path.join(work, 'pristine');
    const repo = await Repository.init(new LocalBackend(pristine), { password: PASSWORD, kdf: FAST_KDF });
    await backup(await repo.loadIndex(), { paths: [src] });
  });
  after(async () => {
    await removeTree(work);
  });

  /** A fresh copy of the pristine repository to damage. */
  async function copyRepo(name: string): Promise<string> {
    const dir = path.join(work, name);
    await cp(pristine, dir, { recursive: true });
    return dir;
  }

  it('a wrong password is a typed error, exit code 12, and writes nothing', async () => {
    const dir = await copyRepo('wrong-password');
    const before = await filesOf(dir);
    await assert.rejects(Repository.open(new LocalBackend(dir), { password: 'nope' }), WrongPasswordError);
    const r = await runCli(['snapshots'], { env: { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: 'nope' } });
    assert.equal(r.code, 12, r.stderr);
    assert.match(r.stderr, /wrong password/);
    const b = await runCli(['backup', src], { env: { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: 'nope' } });
    assert.equal(b.code, 12);
    assert.deepEqual(await filesOf(dir), before);
  });

  it('a missing repository is exit code 10', async () => {
    const r = await runCli(['snapshots'], { env: { RESTIC_REPOSITORY: path.join(work, 'nothing-here'), RESTIC_PASSWORD: PASSWORD } });
    assert.equal(r.code, 10, r.stderr);
  });

  it('a flipped byte in a pack is found by check (naming the pack and blob) and restore refuses the file', async () => {
    const dir = await copyRepo('flipped-pack');
    const packs = (await filesOf(dir)).filter((f) => f.startsWith('data/'));
    const repo = await Repository.open(new LocalBackend(dir), { password: PASSWORD });
    const indexed = await repo.loadIndex();
    // Damage the pack that holds random.bin's first data blob, in the blob's middle.
    const snap = (await listSnapshots(repo))[0]!;
    const packOf = new Map<string, { pack: string; offset: number }>();
    for (const e of indexed.index.entries()) packOf.set(e.id, { pack: e.packId, offset: e.offset });
    // The longest data blob (random.bin is cut into chunks of at least 512 KiB; how long the
    // longest is depends on the repository's random polynomial), damaged in its middle.
    let target: { pack: string; offset: number } | undefined;
    let longest = 0;
    for (const e of indexed.index.entries()) {
      if (e.type === 'data' && e.length > longest) {
        longest = e.length;
        target = { pack: e.packId, offset: e.offset + Math.floor(e.length / 2) };
      }
    }
    assert.ok(target && longest > 500_000, 'a large data blob exists');
    const packFile = packs.find((p) => p.endsWith(target!.pack))!;
    await flipByte(path.join(dir, packFile), target.offset);

    const report = await checkRepository(repo, { readData: true });
    assert.equal(report.ok, false);
    assert.ok(report.errors.some((e) => e.file === packFile && e.blob), JSON.stringify(report.errors));
    for (const { name, bin } of resticVersions()) {
      const r = await runRestic(bin, ['check', '--read-data'], { repo: dir, password: PASSWORD });
      assert.notEqual(r.code, 0, `restic ${name} check must fail too`);
    }
    const out = path.join(work, 'restore-flipped');
    await assert.rejects(restore(indexed, snap.snapshot.tree, { target: out }), (e: unknown) => e instanceof IntegrityError && e.file === packFile);
    // Nothing unverified was written: the damaged file holds at most the blobs before the damage.
    const restored = path.join(out, src, 'random.bin');
    const size = await stat(restored).then((s) => s.size, () => 0);
    const original = await readFile(path.join(src, 'random.bin'));
    if (size > 0) assert.ok((await readFile(restored)).equals(original.subarray(0, size)), 'restored bytes are a verified prefix');
    const cli = await runCli(['restore', 'latest', '--target', path.join(work, 'restore-flipped-cli')], { env: { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: PASSWORD } });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, new RegExp(target.pack));
  });

  it('every damaged or missing file of every type is detected and named', async () => {
    const cases: Array<{ what: string; pick: (files: string[]) => string; damage: (f: string) => Promise<void> }> = [
      { what: 'flipped snapshot', pick: (f) => f.find((x) => x.startsWith('snapshots/'))!, damage: (f) => flipByte(f, 40) },
      { what: 'flipped index', pick: (f) => f.find((x) => x.startsWith('index/'))!, damage: (f) => flipByte(f, 40) },
      { what: 'truncated index', pick: (f) => f.find((x) => x.startsWith('index/'))!, damage: async (f) => { await chmod(f, 0o600); await truncate(f, 20); } },
      { what: 'truncated pack', pick: (f) => f.find((x) => x.startsWith('data/'))!, damage: async (f) => { await chmod(f, 0o600); await truncate(f, (await stat(f)).size - 100); } },
      { what: 'missing pack', pick: (f) => f.find((x) => x.startsWith('data/'))!, damage: (f) => rm(f) },
      { what: 'flipped pack header', pick: (f) => f.find((x) => x.startsWith('data/'))!, damage: async (f) => flipByte(f, (await stat(f)).size - 10) },
    ];
    for (const c of cases) {
      const dir = await copyRepo(`damage-${c.what.replace(/ /g, '-')}`);
      const file = c.pick(await filesOf(dir));
      await c.damage(path.join(dir, file));
      const repo = await Repository.open(new LocalBackend(dir), { password: PASSWORD });
      const report = await checkRepository(repo, { readData: true });
      assert.equal(report.ok, false, `${c.what}: check must fail`);
      const named = report.errors.some((e) => e.file === file || e.message.includes(path.basename(file)));
      assert.ok(named, `${c.what}: no error names ${file}: ${JSON.stringify(report.errors)}`);
    }
    // Key and config: open fails with a typed error that names the file.
    const dir = await copyRepo('damage-key');
    const key = (await filesOf(dir)).find((x) => x.startsWith('keys/'))!;
    await flipByte(path.join(dir, key), 30);
    await assert.rejects(Repository.open(new LocalBackend(dir), { password: PASSWORD }), (e: unknown) => e instanceof IntegrityError && e.message.includes(path.basename(key)));
    const dir2 = await copyRepo('damage-config');
    await flipByte(path.join(dir2, 'config'), 20);
    await assert.rejects(Repository.open(new LocalBackend(dir2), { password: PASSWORD }), (e: unknown) => e instanceof IntegrityError && e.message.includes('config'));
    const dir3 = await copyRepo('damage-snapshot-load');
    const snapFile = (await filesOf(dir3)).find((x) => x.startsWith('snapshots/'))!;
    await flipByte(path.join(dir3, snapFile), 50);
    const repo3 = await Repository.open(new LocalBackend(dir3), { password: PASSWORD });
    await assert.rejects(loadSnapshot(repo3, 'latest'), (e: unknown) => e instanceof IntegrityError && e.file === snapFile);
  });

  it('a backup killed at any point leaves a repository restic accepts, and the next backup completes', async () => {
    const big = path.join(work, 'big-src');
    await mkdir(big);
    for (let i = 0; i < 12; i++) await writeFile(path.join(big, `f${i}.bin`), randomBytes(4 * 1024 * 1024));
    const dir = path.join(work, 'killed');
    const env = { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: PASSWORD };
    assert.equal((await runCli(['init'], { env })).code, 0);
    const { bin } = resticVersions()[1]!;
    let killed = 0;
    for (const ms of [150, 400, 700, 1000, 1500]) {
      const r = await runCli(['backup', big], { env, killAfterMs: ms });
      if (r.signal === 'SIGKILL') killed++;
      // restic refuses to work while a lock is present; a killed process leaves a stale one.
      await runRestic(bin, ['unlock'], { repo: dir, password: PASSWORD });
      const check = await runRestic(bin, ['check'], { repo: dir, password: PASSWORD });
      assert.equal(check.code, 0, `after a kill at ${ms} ms: ${check.stdout}\n${check.stderr}`);
    }
    assert.ok(killed >= 2, `at least two runs were killed mid-way (${killed})`);
    const done = await runCli(['backup', big], { env });
    assert.equal(done.code, 0, done.stderr);
    const check = await runRestic(bin, ['check', '--read-data'], { repo: dir, password: PASSWORD });
    assert.equal(check.code, 0, check.stderr);
  });
});
