// restore's selection and --delete flags against restic 0.19.1: restic backs up a small folder;
// for each set of flags, two identical targets (holding files the snapshot lacks, and a changed
// one) are restored into, one by `stowage restore`, one by `restic restore`, and must end up the
// same: the same paths, the same file contents, and (with --delete) the same paths reported deleted.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, open, readFile, readdir, lstat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { findNodeByPath, loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { verifyFiles } from '../../src/snapshot/operations/restore/verify.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

const PASSWORD = 'restore flags interop';

/** Every path below dir (relative), with a file's content. */
async function listing(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(path.join(dir, rel))).sort()) {
    const p = path.join(rel, name);
    const st = await lstat(path.join(dir, p));
    if (st.isDirectory()) out.push(`${p}/`, ...(await listing(dir, p)));
    else out.push(`${p} = ${await readFile(path.join(dir, p), 'utf8')}`);
  }
  return out;
}

describe('restore --delete and the pattern flags: the same target as restic 0.19.1', () => {
  const restic = resticBin('0.19');
  let dir: string;
  let repo: string;
  let seed: string;
  let n = 0;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-restore-flags-'));
    const src = path.join(dir, 'src');
    for (const d of ['a/b', 'c', 'd/e', 'empty']) await mkdir(path.join(src, d), { recursive: true });
    await writeFile(path.join(src, 'a/b/Secret.TXT'), 'secret\n');
    await writeFile(path.join(src, 'a/keep.txt'), 'keep\n');
    await writeFile(path.join(src, 'c/app.log'), 'log\n');
    await writeFile(path.join(src, 'd/e/q.txt'), 'q\n');
    await writeFile(path.join(src, 'top'), 'top\n');
    // Big enough for several blobs (restic's chunker cuts at 512 KiB to 8 MiB): --overwrite
    // writes only the blobs that differ.
    const big = Buffer.alloc(3 << 20);
    for (let i = 0, x = 7; i < big.length; i++) big[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    await writeFile(path.join(src, 'big.bin'), big);
    // Extended attributes of three namespaces on a file and a folder (we run as root).
    for (const p of ['a', 'a/keep.txt']) {
      for (const [name, value] of [['user.one', '1'], ['user.two', '2'], ['security.s', 'S'], ['trusted.t', 'T']]) {
        await execFileP('setfattr', ['-n', name, '-v', value, path.join(src, p)]);
      }
    }
    repo = path.join(dir, 'repo');
    await resticOk(restic, ['init'], { repo, password: PASSWORD });
    await resticOk(restic, ['backup', 'src'], { repo, password: PASSWORD, cwd: dir });
    // What the targets hold before each restore: extra files and folders at several depths.
    seed = path.join(dir, 'seed');
    for (const d of ['src/a/extra', 'src/new/deep', 'other', 'src/c']) await mkdir(path.join(seed, d), { recursive: true });
    await writeFile(path.join(seed, 'src/a/extra/f'), 'f\n');
    await writeFile(path.join(seed, 'src/new/deep/g.txt'), 'g\n');
    await writeFile(path.join(seed, 'other/o.LOG'), 'o\n');
    await writeFile(path.join(seed, 'rootfile'), 'r\n');
    await writeFile(path.join(seed, 'src/c/stale.log'), 's\n');
    await writeFile(path.join(seed, 'src/top'), 'changed\n');
    await writeFile(path.join(dir, 'include-list'), '\ufeff# case-blind\n\n  /SRC/${PART}  \n*.TXT\n');
    await writeFile(path.join(dir, 'exclude-list'), '/src/c\n');
  });
  after(() => removeTree(dir));

  async function compare(args: string[]): Promise<void> {
    const i = ++n;
    const ours = path.join(dir, `ours-${i}`);
    const theirs = path.join(dir, `theirs-${i}`);
    await cp(seed, ours, { recursive: true });
    await cp(seed, theirs, { recursive: true });
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, PART: 'a' };
    const a = await runCli(['restore', '--no-cache', '-v', 'latest', '--target', ours, ...args], { env, cwd: dir });
    assert.equal(a.code, 0, `stowage restore ${args.join(' ')}: ${a.stderr}`);
    const b = await resticOk(restic, ['restore', '-vv', 'latest', '--target', theirs, ...args], { repo, password: PASSWORD, cwd: dir, env: { PART: 'a' } });
    assert.deepEqual(await listing(ours), await listing(theirs), args.join(' '));
    const deleted = (out: string, root: string) => out.split('\n').filter((l) => l.startsWith('deleted ')).map((l) => path.relative(root, l.replace(/^deleted\s+/, ''))).sort();
    assert.deepEqual(deleted(a.stdout, ours), deleted(b.stdout, theirs), `deleted paths with ${args.join(' ')}`);
  }

  it('--delete removes what the snapshot lacks', () => compare(['--delete']));
  it('--delete with --include removes only inside the selection', () => compare(['--delete', '--include', '/src/a']));
  it('--delete with --iexclude and --exclude-file: excluded paths stay, an extra folder goes whole', () => compare(['--delete', '--iexclude', '*.LOG', '--exclude-file', path.join(dir, 'exclude-list')]));
  it('--iinclude-file (BOM, comment, $VAR) and --iinclude', () => compare(['--iinclude-file', path.join(dir, 'include-list'), '--iinclude', '/SRC/D']));
  it('--include-file', () => compare(['--include-file', path.join(dir, 'exclude-list')]));
  // Each mode against the same target: a file as the snapshot has it (restored earlier, so the
  // same size and mtime), one changed but with an older mtime, one changed with a newer mtime.
  for (const mode of ['always', 'if-changed', 'if-newer', 'never']) {
    it(`--overwrite ${mode}: the same files replaced and left (contents and mtimes)`, async () => {
      const i = ++n;
      const base = path.join(dir, `overwrite-${i}`);
      const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
      await resticOk(restic, ['restore', 'latest', '--target', base], { repo, password: PASSWORD });
      // Same size, other content, same mtime: only a content check would see it (restic's
      // if-changed does not look, and neither do we).
      await writeFile(path.join(base, 'src/a/keep.txt'), 'KEEP\n');
      const keepTime = (await lstat(path.join(dir, 'src/a/keep.txt'))).mtime;
      await utimes(path.join(base, 'src/a/keep.txt'), keepTime, keepTime);
      await writeFile(path.join(base, 'src/top'), 'older\n');
      await utimes(path.join(base, 'src/top'), new Date('2001-01-01T00:00:00Z'), new Date('2001-01-01T00:00:00Z'));
      await writeFile(path.join(base, 'src/c/app.log'), 'newer\n');
      await utimes(path.join(base, 'src/c/app.log'), new Date('2099-01-01T00:00:00Z'), new Date('2099-01-01T00:00:00Z'));
      // The snapshot's contents with another mode: only metadata to restore.
      await chmod(path.join(base, 'src/d/e/q.txt'), 0o600);
      // One byte changed near the end, and a tail added: the first blobs are in place.
      const bigFh = await open(path.join(base, 'src/big.bin'), 'r+');
      await bigFh.write(Buffer.from('X'), 0, 1, (3 << 20) - 10);
      await bigFh.write(Buffer.from('tail'), 0, 4, 3 << 20);
      await bigFh.close();
      const ours = `${base}-ours`;
      const theirs = `${base}-theirs`;
      await cp(base, ours, { recursive: true, preserveTimestamps: true });
      await cp(base, theirs, { recursive: true, preserveTimestamps: true });
      const inodes = async (root: string) => Promise.all(['src/big.bin', 'src/top', 'src/d/e/q.txt'].map(async (f) => (await lstat(path.join(root, f))).ino));
      const [oursBefore, theirsBefore] = [await inodes(ours), await inodes(theirs)];
      const a = await runCli(['restore', '--no-cache', 'latest', '--target', ours, '--overwrite', mode], { env });
      assert.equal(a.code, 0, a.stderr);
      const b = await resticOk(restic, ['restore', 'latest', '--target', theirs, '--overwrite', mode], { repo, password: PASSWORD });
      const withTimes = async (root: string) => {
        const out: string[] = [];
        for (const f of ['src/a/keep.txt', 'src/top', 'src/c/app.log', 'src/d/e/q.txt', 'src/big.bin']) {
          const st = await lstat(path.join(root, f), { bigint: true });
          const content = f === 'src/big.bin' ? `${st.size} bytes` : await readFile(path.join(root, f), 'utf8');
          out.push(`${f} = ${content} @ ${st.mtimeNs} mode ${(st.mode & 0o7777n).toString(8)}`);
        }
        return out;
      };
      assert.deepEqual(await withTimes(ours), await withTimes(theirs));
      assert.deepEqual(await listing(ours), await listing(theirs));
      // Files are rewritten in place (the same inode) where restic does so, made anew where it does.
      const same = (before: bigint[] | number[], after: bigint[] | number[]) => before.map((x, k) => x === after[k]);
      assert.deepEqual(same(oursBefore, await inodes(ours)), same(theirsBefore, await inodes(theirs)), 'inodes kept');
      // restic's summary: what it wrote, and what it found already there ("skipped").
      const summary = (out: string) => out.split('\n').find((l) => l.startsWith('Summary:'))?.replace(/ in \d+:\d+/, ' in DUR');
      assert.equal(summary(a.stdout), summary(b.stdout));
      if (mode === 'always') assert.match(summary(b.stdout) ?? '', /, skipped \d+ files\/dirs/);
    });
  }

  it('a read-only file of the target written in place (not as root): made writable first, as restic does', { skip: process.getuid?.() !== 0 ? 'needs root to run as nobody' : false }, async () => {
    // A folder nobody (65534) owns, with a copy of the repository and a target restic made.
    const home = await mkdtemp(path.join(tmpdir(), 'stowage-restore-ro-'));
    try {
      await cp(repo, path.join(home, 'repo'), { recursive: true });
      await resticOk(restic, ['restore', 'latest', '--target', path.join(home, 't')], { repo, password: PASSWORD });
      const f = path.join(home, 't/src/big.bin');
      const fh = await open(f, 'r+');
      await fh.write(Buffer.from('X'), 0, 1, (3 << 20) - 10);
      await fh.close();
      await chmod(f, 0o444);
      await execFileP('chown', ['-R', '65534:65534', home]);
      await chmod(home, 0o755);
      const env = { ...process.env, RESTIC_REPOSITORY: path.join(home, 'repo'), RESTIC_PASSWORD: PASSWORD, XDG_CACHE_HOME: path.join(home, 'cache') };
      const args = ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, CLI, 'restore', 'latest', '--target', path.join(home, 't')];
      await execFileP('setpriv', args, { env });
      assert.deepEqual(await readFile(f), await readFile(path.join(dir, 'src/big.bin')));
      assert.equal((await lstat(f)).mode & 0o777, 0o644);
    } finally {
      await removeTree(home);
    }
  });

  it('--verify: the files written are read back (as many as restic verifies); one that does not match is reported', async () => {
    const i = ++n;
    const ours = path.join(dir, `verify-${i}-ours`);
    const theirs = path.join(dir, `verify-${i}-theirs`);
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    const a = await runCli(['restore', '--no-cache', 'latest', '--target', ours, '--verify', '--include', '/src/a'], { env });
    assert.equal(a.code, 0, a.stderr);
    const b = await resticOk(restic, ['restore', 'latest', '--target', theirs, '--verify', '--include', '/src/a'], { repo, password: PASSWORD });
    const count = (out: string) => /finished verifying (\d+) files/.exec(out)?.[1];
    assert.equal(count(a.stdout), count(b.stdout));
    assert.equal(count(a.stdout), '2');
    // restic's line names the time taken: "finished verifying 2 files in DIR (took 12ms)".
    const took = (out: string, dir: string) => out.split('\n').find((l) => l.startsWith('finished verifying'))?.replace(dir, 'DIR').replace(/\(took (\d+(\.\d+)?(ms|s)|0s)\)$/, '(took DUR)');
    assert.equal(took(a.stdout, ours), took(b.stdout, theirs));
    assert.equal(took(a.stdout, ours), 'finished verifying 2 files in DIR (took DUR)');
    // Files --overwrite leaves alone are not verified (a changed one does not fail the restore).
    await writeFile(path.join(ours, 'src/a/keep.txt'), 'KEEP\n');
    const c = await runCli(['restore', '--no-cache', 'latest', '--target', ours, '--verify', '--overwrite', 'never'], { env });
    assert.equal(c.code, 0, c.stderr);
    assert.equal(count(c.stdout), '4', 'the four files not there before are written and verified');
    // A file that does not match its blobs (changed after the restore wrote it) is reported.
    const r = await Repository.open(new LocalBackend(repo), { password: PASSWORD });
    try {
      const indexed = await r.loadIndex();
      const snap = await loadSnapshot(r, 'latest');
      const node = await findNodeByPath(indexed, snap.snapshot.tree, 'src/a/keep.txt', 'latest');
      const entry = { path: Buffer.from(path.join(ours, 'src/a/keep.txt')), node };
      assert.deepEqual((await verifyFiles(indexed, [entry], undefined)).errors.length, 1);
      await writeFile(path.join(ours, 'src/a/keep.txt'), 'keep\n');
      const clean = await verifyFiles(indexed, [entry], undefined);
      assert.deepEqual({ files: clean.files, errors: clean.errors }, { files: 1, errors: [] });
      await writeFile(path.join(ours, 'src/a/keep.txt'), 'keep\nmore\n');
      assert.match((await verifyFiles(indexed, [entry], undefined)).errors[0]!.message, /size/);
    } finally {
      await r.backend.close();
    }
  });

  it('the summary line: "Restored N / M files/dirs (SIZE / SIZE)" where restic counts in and finishes apart', async () => {
    // Folders made on the way to an include are finished but not counted in; a link --overwrite
    // leaves is counted in but not finished.
    const src = path.join(dir, 'sum', 'src2');
    await mkdir(path.join(src, 's'), { recursive: true });
    await writeFile(path.join(src, 'a'), 'a\n');
    await writeFile(path.join(src, 's/b'), 'b\n');
    await symlink('a', path.join(src, 'l'));
    const repo2 = path.join(dir, 'sum', 'repo');
    await resticOk(restic, ['init'], { repo: repo2, password: PASSWORD });
    await resticOk(restic, ['backup', 'src2'], { repo: repo2, password: PASSWORD, cwd: path.join(dir, 'sum') });
    const env = { RESTIC_REPOSITORY: repo2, RESTIC_PASSWORD: PASSWORD };
    const summary = (out: string) => out.split('\n').find((l) => l.startsWith('Summary:'))?.replace(/ in \d+:\d+/, ' in DUR');
    const cases: Array<{ args: string[]; into: string; want: string }> = [
      { args: ['--include', '/src2/s/b'], into: 'included', want: 'Summary: Restored 3 / 1 files/dirs (2 B / 2 B) in DUR' },
      { args: [], into: 'all', want: 'Summary: Restored 5 files/dirs (4 B) in DUR' },
      { args: ['--overwrite', 'if-newer'], into: 'all', want: 'Summary: Restored 2 / 3 files/dirs (0 B / 0 B) in DUR, skipped 3 files/dirs 4 B' },
      { args: ['--overwrite', 'never'], into: 'all', want: 'Summary: Restored 2 / 3 files/dirs (0 B / 0 B) in DUR, skipped 3 files/dirs 4 B' },
    ];
    for (const { args, into, want } of cases) {
      const ours = path.join(dir, 'sum', `ours-${into}`);
      const theirs = path.join(dir, 'sum', `theirs-${into}`);
      const a = await runCli(['restore', '--no-cache', 'latest', '--target', ours, ...args], { env });
      assert.equal(a.code, 0, a.stderr);
      const b = await resticOk(restic, ['restore', 'latest', '--target', theirs, ...args], { repo: repo2, password: PASSWORD });
      assert.equal(summary(b.stdout), want, `restic ${args.join(' ')}`);
      assert.equal(summary(a.stdout), summary(b.stdout), args.join(' '));
    }
    // --json's summary: restic's keys and counts (Go leaves out what is 0).
    const jsonSummary = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((m) => m.message_type === 'summary') ?? {};
    const noTime = (m: Record<string, unknown>) => JSON.stringify(Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'seconds_elapsed')));
    for (const args of [['--include', '/src2/s/b'], ['--overwrite', 'never']]) {
      const a = await runCli(['restore', '--no-cache', '--json', 'latest', '--target', path.join(dir, 'sum', 'json-ours'), ...args], { env });
      assert.equal(a.code, 0, a.stderr);
      const b = await resticOk(restic, ['restore', '--json', 'latest', '--target', path.join(dir, 'sum', 'json-theirs'), ...args], { repo: repo2, password: PASSWORD });
      assert.equal(noTime(jsonSummary(a.stdout)), noTime(jsonSummary(b.stdout)), `--json ${args.join(' ')}`);
    }
  });

  it('--include-xattr and --exclude-xattr: the same extended attributes as restic sets', async () => {
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    // Every xattr below root, paths relative, in order.
    const xattrs = async (root: string) => {
      const { stdout } = await execFileP('getfattr', ['-R', '-d', '-m', '-', '--absolute-names', root]);
      return stdout.split(root).join('ROOT');
    };
    const cases = [[], ['--include-xattr', 'user.*', '--include-xattr', 'security.*'], ['--exclude-xattr', 'user.*'], ['--exclude-xattr', 'user.one', '--exclude-xattr', 'trusted.*']];
    for (const args of cases) {
      const i = ++n;
      const ours = path.join(dir, `xattr-${i}-ours`);
      const theirs = path.join(dir, `xattr-${i}-theirs`);
      const a = await runCli(['restore', '--no-cache', 'latest', '--target', ours, ...args], { env });
      assert.equal(a.code, 0, a.stderr);
      await resticOk(restic, ['restore', 'latest', '--target', theirs, ...args], { repo, password: PASSWORD });
      const want = await xattrs(theirs);
      assert.equal((await xattrs(ours)).split('ROOT').join(''), want.split('ROOT').join(''), args.join(' '));
      if (args.length === 0) assert.match(want, /trusted\.t="T"[^]*user\.two="2"/);
    }
    // Over a target holding the snapshot's folder and file (left as they are) with xattrs the
    // snapshot lacks: restic removes those its selection covers (user.extra), keeps the others.
    const args = ['--exclude-xattr', 'user.kept'];
    const [ours, theirs] = [path.join(dir, 'xattr-over-ours'), path.join(dir, 'xattr-over-theirs')];
    for (const t of [ours, theirs]) {
      await resticOk(restic, ['restore', 'latest', '--target', t], { repo, password: PASSWORD });
      for (const p of ['src/a', 'src/a/keep.txt']) {
        for (const name of ['user.extra', 'user.kept']) await execFileP('setfattr', ['-n', name, '-v', 'x', path.join(t, p)]);
      }
    }
    const a = await runCli(['restore', '--no-cache', 'latest', '--target', ours, ...args], { env });
    assert.equal(a.code, 0, a.stderr);
    await resticOk(restic, ['restore', 'latest', '--target', theirs, ...args], { repo, password: PASSWORD });
    const want = await xattrs(theirs);
    assert.equal((await xattrs(ours)).split('ROOT').join(''), want.split('ROOT').join(''), 'over a restored target');
    assert.ok(want.includes('user.kept') && !want.includes('user.extra'), want);

    // Refused by both: the two flags together, and a malformed pattern.
    for (const [args, message] of [[['--include-xattr', 'user.*', '--exclude-xattr', 'user.one'], /exclude and include xattr patterns are mutually exclusive/], [['--exclude-xattr', 'user.[a'], /--exclude-xattr: invalid pattern\(s\) provided:\nuser\.\[a/]] as const) {
      const a = await runCli(['restore', '--no-cache', 'latest', '--target', path.join(dir, 'never'), ...args], { env });
      const b = await runRestic(restic, ['restore', 'latest', '--target', path.join(dir, 'never'), ...args], { repo, password: PASSWORD });
      assert.equal(b.code, 1, b.stderr);
      assert.match(b.stderr, message);
      assert.equal(a.code, 1, a.stderr);
      assert.match(a.stderr, message);
    }
  });

  it('include and exclude together are refused, as by restic', async () => {
    const res = await runCli(['restore', '--no-cache', 'latest', '--target', path.join(dir, 'never'), '-i', 'a', '--iexclude', 'b'], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD } });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /mutually exclusive/);
  });

  it('a bad --overwrite is refused with restic 0.19.1\'s message (pflag\'s: no "Fatal: ")', async () => {
    const args = ['restore', 'latest', '--target', path.join(dir, 'never'), '--overwrite', 'sometimes'];
    const [theirs, ours] = await Promise.all([
      runRestic(resticBin('0.19'), args, { repo, password: PASSWORD }),
      runCli([...args, '--no-cache'], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD } }),
    ]);
    assert.equal(theirs.code, 1);
    assert.equal(ours.code, 1);
    assert.equal(ours.stderr, theirs.stderr);
  });

  it('--dry-run with --verify, and --target / --delete without a filter, are refused with restic\'s messages', async () => {
    // Both refuse before opening the repository; a repository that is not there (and --dry-run)
    // keeps a wrong answer from touching "/".
    const none = path.join(dir, 'no-repo');
    for (const args of [['--target', path.join(dir, 'never'), '--dry-run', '--verify'], ['--target', '/', '--delete', '--dry-run']]) {
      const a = await runCli(['restore', '--no-cache', 'latest', ...args], { env: { RESTIC_REPOSITORY: none, RESTIC_PASSWORD: PASSWORD } });
      const b = await runRestic(restic, ['restore', 'latest', ...args], { repo: none, password: PASSWORD });
      assert.equal(b.code, 1, b.stderr);
      assert.equal(a.code, 1, a.stderr);
      const fatal = (err: string) => err.split('\n').find((l) => l.startsWith('Fatal: '));
      assert.equal(fatal(a.stderr), fatal(b.stderr), args.join(' '));
    }
  });
});
