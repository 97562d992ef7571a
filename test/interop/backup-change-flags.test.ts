// backup's change-detection flags against restic 0.19.1: restic and `stowage backup` back up the
// same folder, each into its own repository, step by step; after a ctime-only change
// (--ignore-ctime) and after a file replaced by a copy with the same mtime, i.e. a new inode
// (--ignore-inode), both must count the same files new, changed and unmodified — which differs
// from what they count without the flag. --with-atime must store the same access time.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, rename, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'backup change flags interop';

interface Summary {
  files_new: number;
  files_changed: number;
  files_unmodified: number;
}

describe('backup --ignore-ctime, --ignore-inode, --with-atime: as restic 0.19.1', () => {
  const restic = resticBin('0.19');
  let dir: string;
  let theirs: string;
  let ours: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-backup-change-'));
    await mkdir(path.join(dir, 'src'));
    for (const f of ['a', 'b', 'c']) await writeFile(path.join(dir, 'src', f), `${f}\n`);
    // An access time after the mtime and recent: reading the file does not move it (relatime).
    const now = Date.now() / 1000;
    await utimes(path.join(dir, 'src/c'), now - 600, now - 7200);
    theirs = path.join(dir, 'theirs');
    ours = path.join(dir, 'ours');
    for (const repo of [theirs, ours]) await resticOk(restic, ['init'], { repo, password: PASSWORD });
  });
  after(() => removeTree(dir));

  async function both(flags: string[]): Promise<{ ours: Summary; theirs: Summary }> {
    const a = await resticOk(restic, ['backup', '--json', 'src', ...flags], { repo: theirs, password: PASSWORD, cwd: dir });
    const b = await runCli(['backup', '--no-cache', '--json', 'src', ...flags], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD }, cwd: dir });
    assert.equal(b.code, 0, b.stderr);
    const last = (out: string) => {
      const s = JSON.parse(out.trim().split('\n').pop()!) as Summary;
      return { files_new: s.files_new, files_changed: s.files_changed, files_unmodified: s.files_unmodified };
    };
    return { theirs: last(a.stdout), ours: last(b.stdout) };
  }

  it('the same counts at every step', async () => {
    const first = await both(['--with-atime']);
    assert.deepEqual(first.ours, first.theirs);
    assert.deepEqual(first.ours, { files_new: 3, files_changed: 0, files_unmodified: 0 });

    // ctime only: chmod and back.
    const a = path.join(dir, 'src/a');
    const mode = (await stat(a)).mode & 0o7777;
    await chmod(a, 0o600);
    await chmod(a, mode);
    const ctime = await both(['--ignore-ctime']);
    assert.deepEqual(ctime.ours, ctime.theirs);
    assert.deepEqual(ctime.ours, { files_new: 0, files_changed: 0, files_unmodified: 3 });

    // A new inode with the same mtime and size (and so a new ctime).
    const b = path.join(dir, 'src/b');
    await copyFile(b, `${b}.tmp`);
    // touch -r copies the times to the nanosecond (Node's utimes takes float seconds).
    execFileSync('touch', ['-r', b, `${b}.tmp`]);
    await rename(`${b}.tmp`, b);
    const inode = await both(['--ignore-inode']);
    assert.deepEqual(inode.ours, inode.theirs);
    assert.deepEqual(inode.ours, { files_new: 0, files_changed: 0, files_unmodified: 3 });

    // Without the flags the same changes count.
    await chmod(a, 0o600);
    await chmod(a, mode);
    const plain = await both([]);
    assert.deepEqual(plain.ours, plain.theirs);
    assert.deepEqual(plain.ours, { files_new: 0, files_changed: 1, files_unmodified: 2 });
  });

  it('--with-atime stores the access time restic stores', async () => {
    const atime = async (repo: string) => {
      const list = await resticOk(restic, ['snapshots', '--json'], { repo, password: PASSWORD });
      const first = (JSON.parse(list.stdout) as Array<{ id: string }>)[0]!.id;
      const ls = await resticOk(restic, ['ls', '--json', first, '/src/c'], { repo, password: PASSWORD });
      return ls.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { path?: string; atime?: string; mtime?: string }).find((n) => n.path === '/src/c');
    };
    const [x, y] = [await atime(ours), await atime(theirs)];
    assert.equal(x?.atime, y?.atime);
    assert.notEqual(x?.atime, x?.mtime);
  });
});

describe('backup --group-by: the parent restic 0.19.1 chooses', () => {
  const restic = resticBin('0.19');
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-backup-groupby-'));
    await mkdir(path.join(dir, 'src/x'), { recursive: true });
    await mkdir(path.join(dir, 'src/y'), { recursive: true });
    await writeFile(path.join(dir, 'src/x/f'), 'f\n');
  });
  after(() => removeTree(dir));

  it('host,tags and paths choose as restic does (checked by each snapshot\'s parent field)', async () => {
    const repo = path.join(dir, 'repo');
    const opts = { repo, password: PASSWORD, cwd: dir };
    await resticOk(restic, ['init'], opts);
    // Three candidates: tag t1 on x, tag t2 on x and y (newest), and no tag on x.
    await resticOk(restic, ['backup', '--host', 'h', '--tag', 't1', 'src/x'], opts);
    await resticOk(restic, ['backup', '--host', 'h', 'src/x'], opts);
    await resticOk(restic, ['backup', '--host', 'h', '--tag', 't2', 'src/x', 'src/y'], opts);
    const ids = async () => new Map((JSON.parse((await resticOk(restic, ['snapshots', '--json'], opts)).stdout) as Array<{ id: string; parent?: string; tags?: string[] }>).map((s) => [s.id, s]));
    for (const flags of [['--group-by', 'host,tags', '--tag', 't1'], ['--group-by', 'paths'], ['--group-by', 'host', '--tag', 't1'], ['--group-by', 'host,paths,tags']]) {
      const before = await ids();
      await resticOk(restic, ['backup', '--host', 'h', 'src/x', ...flags], opts);
      const mid = await ids();
      const theirs = [...mid.values()].find((s) => !before.has(s.id))!;
      // Restic's new snapshot would be a candidate for ours: remove it so both choose among the same.
      await resticOk(restic, ['forget', theirs.id], opts);
      const res = await runCli(['backup', '--no-cache', '--host', 'h', 'src/x', ...flags], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD }, cwd: dir });
      assert.equal(res.code, 0, res.stderr);
      const ours = [...(await ids()).values()].find((s) => !before.has(s.id))!;
      assert.ok(ours.parent, flags.join(' '));
      assert.equal(ours.parent, theirs.parent, flags.join(' '));
      await resticOk(restic, ['forget', ours.id], opts);
    }
  });
});

describe('backup --one-file-system: the entries restic 0.19.1 keeps', () => {
  const restic = resticBin('0.19');
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-backup-ofs-'));
  });
  after(() => removeTree(dir));

  // /dev holds mount points (/dev/pts, /dev/shm) on other file systems in every Linux container.
  it('/dev: mount points kept empty, their contents left out', async () => {
    const entries = async (repo: string) => {
      const res = await resticOk(restic, ['ls', '--json', 'latest'], { repo, password: PASSWORD });
      return res.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { struct_type: string; path?: string; type?: string })
        .filter((n) => n.struct_type === 'node').map((n) => `${n.path} ${n.type}`).sort();
    };
    const theirs = path.join(dir, 'theirs');
    const ours = path.join(dir, 'ours');
    for (const repo of [theirs, ours]) await resticOk(restic, ['init'], { repo, password: PASSWORD });
    await resticOk(restic, ['backup', '/dev', '--one-file-system'], { repo: theirs, password: PASSWORD });
    const res = await runCli(['backup', '--no-cache', '/dev', '--one-file-system'], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD } });
    assert.equal(res.code, 0, res.stderr);
    const list = await entries(ours);
    assert.deepEqual(list, await entries(theirs));
    assert.ok(list.includes('/dev/pts dir'));
    assert.ok(!list.some((l) => l.startsWith('/dev/pts/')));
  });
});
