// With --json, a fatal error ends with restic's documented `exit_error` message on stderr
// ({"message_type":"exit_error","code":N,"message":"…"}), compared with restic 0.19.1 on the same
// repository: wrong password (12), no repository (10), locked (11), and a backup with a missing
// source (3, the snapshot still written, the same message as restic's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Lock } from '../../src/repository/lock.ts';
import { Repository } from '../../src/repository/repository.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'exit errors';
const r19 = resticBin('0.19');
const work = await tmpDir('stowage-exit-error');
const repo = path.join(work, 'repo');
const ropts = { repo, password: PASSWORD, cwd: work };
const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
const src = path.join(work, 'src');
await mkdir(src, { recursive: true });
await writeFile(path.join(src, 'f'), 'f\n');
await resticOk(r19, ['init'], ropts);

interface ExitError { message_type: string; code: number; message: string }
function lastJson(stderr: string): ExitError {
  const line = stderr.trim().split('\n').at(-1)!;
  return JSON.parse(line) as ExitError;
}

async function both(args: string[], over: { password?: string; repo?: string } = {}) {
  const theirs = await runRestic(r19, [...args, '--json'], { ...ropts, ...over });
  const ours = await runCli([...args, '--json', '--no-cache'], { env: { RESTIC_REPOSITORY: over.repo ?? repo, RESTIC_PASSWORD: over.password ?? PASSWORD } });
  return { theirs, ours };
}

test('--json fatal errors: exit_error with restic\'s code for a wrong password, a missing repository, a lock', async () => {
  const cases: Array<[string[], { password?: string; repo?: string }, number]> = [
    [['snapshots'], { password: 'wrong' }, 12],
    [['snapshots'], { repo: path.join(work, 'nothing-here') }, 10],
  ];
  for (const [args, over, code] of cases) {
    const { theirs, ours } = await both(args, over);
    assert.equal(theirs.code, code, theirs.stderr);
    assert.equal(ours.code, code, ours.stderr);
    const t = lastJson(theirs.stderr);
    const o = lastJson(ours.stderr);
    assert.deepEqual({ message_type: o.message_type, code: o.code }, { message_type: t.message_type, code: t.code });
    assert.equal(o.message_type, 'exit_error');
    assert.equal(typeof o.message, 'string');
  }
  const r = await Repository.open(new LocalBackend(repo), { password: PASSWORD });
  const lock = await Lock.acquire(r, { exclusive: true });
  try {
    const { theirs, ours } = await both(['backup', src]);
    assert.equal(theirs.code, 11);
    assert.equal(ours.code, 11, ours.stderr);
    assert.deepEqual(lastJson(ours.stderr).code, lastJson(theirs.stderr).code);
  } finally {
    await lock.release();
  }
});

test('backup --json of a missing source: exit 3, restic\'s exit_error message, the snapshot written', async () => {
  const missing = path.join(work, 'missing');
  const { theirs, ours } = await both(['backup', '--host', 'h', src, missing]);
  assert.equal(theirs.code, 3, theirs.stderr);
  assert.equal(ours.code, 3, ours.stderr);
  assert.deepEqual(lastJson(ours.stderr), lastJson(theirs.stderr));
  const snaps = await resticJson<Array<{ paths: string[] }>>(r19, ['snapshots'], ropts);
  assert.equal(snaps.length, 2, 'both backups wrote their snapshot');
  assert.ok(snaps.every((s) => s.paths.length === 1 && s.paths[0] === src));
  // Without --json the same line is plain text.
  const plain = await runCli(['backup', '--no-cache', src, missing], { env });
  assert.equal(plain.code, 3);
  assert.match(plain.stderr, /^Warning: at least one source file could not be read$/m);
});
