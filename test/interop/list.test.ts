// `stowage list` against restic 0.19.1 and 0.14 on the same repository: snapshots, index, packs,
// keys, locks and blobs print the same lines (compared sorted: restic lists index files in
// parallel). The repository has snapshots by restic and by Stowage, two keys, a lock held while
// listing (list locks takes none, so it shows exactly that one), and a pack no index names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { Lock } from '../../src/repository/lock.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'list interop';
const work = await tmpDir('stowage-list');
const src = path.join(work, 'src');
const repoDir = path.join(work, 'repo');
const ropts = { repo: repoDir, password: PASSWORD, cwd: work };
const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD };
await mkdir(path.join(src, 'd'), { recursive: true });
await writeFile(path.join(src, 'd/a'), 'a\n');
await writeFile(path.join(src, 'b'), 'b'.repeat(5000));
await resticOk(resticBin('0.19'), ['init'], ropts);
await resticOk(resticBin('0.19'), ['backup', src], ropts);
await writeFile(path.join(src, 'c'), 'c\n');
const own = await runCli(['backup', '--no-cache', src], { env });
assert.equal(own.code, 0, own.stderr);
const pw2 = path.join(work, 'pw2');
await writeFile(pw2, 'second\n');
await resticOk(resticBin('0.19'), ['key', 'add', '--new-password-file', pw2], ropts);
// A pack no index names (a backup cut off before its index): list packs shows it, list blobs not.
const stray = 'ab'.repeat(32);
await mkdir(path.join(repoDir, 'data', 'ab'), { recursive: true });
await writeFile(path.join(repoDir, 'data', 'ab', stray), 'not really a pack');

const sorted = (s: string) => s.split('\n').filter((l) => l !== '').sort();

test('list snapshots, index, packs, keys, locks and blobs: restic 0.19\'s and 0.14\'s lines', async () => {
  const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
  const lock = await Lock.acquire(repo, { exclusive: false });
  try {
    for (const kind of ['snapshots', 'index', 'packs', 'keys', 'locks', 'blobs']) {
      const ours = await runCli(['list', kind, '--no-cache'], { env });
      assert.equal(ours.code, 0, `${kind}: ${ours.stderr}`);
      for (const v of ['0.19', '0.14'] as const) {
        const theirs = await runRestic(resticBin(v), ['list', kind], ropts);
        assert.equal(theirs.code, 0, theirs.stderr);
        assert.deepEqual(sorted(ours.stdout), sorted(theirs.stdout), `list ${kind} (restic ${v})`);
      }
      const n = sorted(ours.stdout).length;
      const expected = { snapshots: 2, index: 2, packs: 5, keys: 2, locks: 1, blobs: -1 }[kind]!;
      if (expected >= 0) assert.equal(n, expected, `${kind}: ${ours.stdout}`);
      else assert.ok(sorted(ours.stdout).every((l) => /^(data|tree) [0-9a-f]{64}$/.test(l)) && n >= 6, ours.stdout);
    }
  } finally {
    await lock.release();
  }
});

test('list without a type or with an unknown one: exit 1 with restic\'s message', async () => {
  for (const [args, message] of [[[], 'accepts 1 arg(s), received 0'], [['foo'], 'invalid argument "foo" for']] as const) {
    const theirs = await runRestic(resticBin('0.19'), ['list', ...args], ropts);
    const ours = await runCli(['list', ...args, '--no-cache'], { env });
    assert.equal(theirs.code, 1);
    assert.equal(ours.code, 1);
    assert.ok(theirs.stderr.includes(message), theirs.stderr);
    assert.ok(ours.stderr.includes(message), ours.stderr);
  }
});
