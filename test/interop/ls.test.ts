// `stowage ls SNAPSHOT [DIR...]` against restic 0.19.1 (and 0.14's listed lines) on one
// repository restic made: each DIR lists itself and its direct children, --recursive its whole
// subtree, a file path itself, several dirs their union in tree order; paths cleaned as restic
// cleans them; the header, --long, --human-readable, --json, ID:subfolder and the refusal of a
// relative DIR byte for byte; --sort, --reverse and --ncdu too. The library's listTree gives the same paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { listTree, loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'ls interop';
const work = await tmpDir('stowage-ls');
const repoDir = path.join(work, 'repo');
const ropts = { repo: repoDir, password: PASSWORD, cwd: work };
const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC' };
await mkdir(path.join(work, 'src/a/b/c'), { recursive: true });
await mkdir(path.join(work, 'src/d'), { recursive: true });
await writeFile(path.join(work, 'src/a/f1'), '1\n');
await writeFile(path.join(work, 'src/a/b/f2'), '2'.repeat(5000));
await writeFile(path.join(work, 'src/a/b/c/f3'), '3\n');
await writeFile(path.join(work, 'src/a/empty'), '');
await writeFile(path.join(work, 'src/d/f4 <&>'), '4\n');
await symlink('../a/f1', path.join(work, 'src/d/link'));
await writeFile(path.join(work, 'src/top'), 'top\n');
await resticOk(resticBin('0.19'), ['init'], ropts);
// Backed up as the relative "src", so the tree's paths are /src/...
await resticOk(resticBin('0.19'), ['backup', 'src'], ropts);

// Each case: the arguments after `ls`. Kept few: every run starts a process.
const CASES: string[][] = [
  ['latest'],
  ['latest', '/src/a/b', '/src/a'],
  ['latest', '/src/a/b/c/f3', '/src/d', '/src/nonexistent'],
  ['latest', '/src/./a/', '//src/d', '/src/a/../top'],
  ['latest', '--recursive', '/src/a/b', '/src/d'],
  ['latest', '-l', '/src/a', '/src/d'],
  ['latest', '--json', '/src/a', '/src/d'],
  ['--json', 'latest:/src/a', '/b'],
  ['latest', 'src/a'],
  // --sort/--reverse sort the whole listing (ties by path); --ncdu prints ncdu's export.
  ['latest', '-l', '--sort', 'size', '--reverse'],
  ['latest', '--json', '--sort', 'time', '/src/a', '/src/d'],
  ['latest', '-s', 'extension', '--reverse', '--recursive', '/src/a'],
  ['latest', '--ncdu'],
  ['latest', '--ncdu', '/src/a/b', '/src/d'],
  ['latest', '--ncdu', '--reverse'],
  // Refused as restic refuses them, its messages byte for byte (a flag's bad value without "Fatal: ").
  ['latest', '--sort', 'foo'],
  ['latest', '--sort', 'size', '--ncdu'],
];

test('ls SNAPSHOT DIR...: the same output and exit code as restic 0.19.1', async () => {
  for (const args of CASES) {
    const [theirs, ours] = await Promise.all([runRestic(resticBin('0.19'), ['ls', ...args], ropts), runCli(['ls', '--no-cache', ...args], { env })]);
    const what = `ls ${args.join(' ')}`;
    assert.equal(ours.code, theirs.code, `${what}: ${ours.stderr}`);
    assert.equal(ours.stdout, theirs.stdout, what);
    if (theirs.code !== 0) assert.equal(ours.stderr, theirs.stderr, what);
  }
});

test('ls SNAPSHOT DIR: the same paths as restic 0.14 (whose header differs)', async () => {
  const args = ['latest', '/src/a/b', '/src/d'];
  const [theirs, ours] = await Promise.all([resticOk(resticBin('0.14'), ['ls', ...args], ropts), runCli(['ls', '--no-cache', ...args], { env })]);
  assert.deepEqual(ours.stdout.split('\n').slice(1), theirs.stdout.split('\n').slice(1));
});

test('listTree: the dirs and their direct children, or the subtree with recursive; relative dirs refused', async () => {
  const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
  const { snapshot } = await loadSnapshot(repo, 'latest');
  const paths = async (options: Parameters<typeof listTree>[2]) => {
    const out: string[] = [];
    for await (const { path: p } of listTree(repo, snapshot.tree, options)) out.push(p);
    return out;
  };
  assert.deepEqual(await paths({ dirs: ['/src/a'] }), ['/src/a', '/src/a/b', '/src/a/empty', '/src/a/f1']);
  assert.deepEqual(await paths({ dirs: ['/src/a/b'], recursive: true }), ['/src/a/b', '/src/a/b/c', '/src/a/b/c/f3', '/src/a/b/f2']);
  assert.equal((await paths({})).length, 12);
  assert.deepEqual(await paths({ dirs: ['/src/a/../d/', '/src/a/b/c/f3'] }), ['/src/a/b/c/f3', '/src/d', '/src/d/f4 <&>', '/src/d/link']);
  await assert.rejects(paths({ dirs: ['src'] }), InvalidInputError);
});
