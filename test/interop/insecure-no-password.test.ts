// `--insecure-no-password` (restic ≥ 0.17) against restic 0.19.1: repositories without a password
// made by either tool are backed up to and restored from by the other; keys without a password
// added with --new-insecure-no-password; copy's --from-insecure-no-password; and an empty
// password without the flag (or the flag with a password) refused with restic's message and
// exit code, --json included. The library's insecureNoPassword opens the same repositories.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const work = await tmpDir('stowage-nopw');
const src = path.join(work, 'src');
await mkdir(src);
await writeFile(path.join(src, 'f'), 'no password\n');
const pwFile = path.join(work, 'pw');
await writeFile(pwFile, 'secret\n');
const emptyFile = path.join(work, 'empty');
await writeFile(emptyFile, '');
const restic = resticBin('0.19');
// No RESTIC_PASSWORD at all for either tool; restic's stdin is closed (it reads nothing there).
const ropts = (repo: string) => ({ repo, password: '', cwd: work });
const cli = (repo: string, args: string[]) => runCli([...args, '--no-cache'], { env: { RESTIC_REPOSITORY: repo }, cwd: work });
const N = '--insecure-no-password';

test('a repository restic 0.19.1 made without a password: Stowage backs up, restic restores', async () => {
  const repo = path.join(work, 'by-restic');
  await resticOk(restic, ['init', N], ropts(repo));
  const b = await cli(repo, ['backup', N, src]);
  assert.equal(b.code, 0, b.stderr);
  await resticOk(restic, ['check', '--read-data', N], ropts(repo));
  const out = path.join(work, 'out-restic');
  await resticOk(restic, ['restore', 'latest', '--target', out, N], ropts(repo));
  assert.equal(await readFile(path.join(out, src, 'f'), 'utf8'), 'no password\n');
  // The library opens it too.
  const r = await Repository.open(new LocalBackend(repo), { password: '', insecureNoPassword: true });
  assert.equal(r.config.version, 2);
});

test('a repository Stowage made without a password: restic 0.19.1 backs up, Stowage restores', async () => {
  const repo = path.join(work, 'by-stowage');
  const i = await cli(repo, ['init', N]);
  assert.equal(i.code, 0, i.stderr);
  await resticOk(restic, ['backup', N, src], ropts(repo));
  const out = path.join(work, 'out-stowage');
  const r = await cli(repo, ['restore', 'latest', '--target', out, N]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(path.join(out, src, 'f'), 'utf8'), 'no password\n');
  await resticOk(restic, ['check', N], ropts(repo));

  // copy from it into a repository with a password, as restic's --from-insecure-no-password.
  const dst = path.join(work, 'copy-dst');
  await resticOk(restic, ['init'], { repo: dst, password: 'secret', cwd: work });
  const c = await runCli(['copy', '--no-cache', '--from-repo', repo, '--from-insecure-no-password'], { env: { RESTIC_REPOSITORY: dst, RESTIC_PASSWORD: 'secret' }, cwd: work });
  assert.equal(c.code, 0, c.stderr);
  const snaps = await resticOk(restic, ['snapshots', '--json'], { repo: dst, password: 'secret', cwd: work });
  assert.equal((JSON.parse(snaps.stdout) as unknown[]).length, 1);
});

test('key add --new-insecure-no-password: a key without a password that restic 0.19.1 opens', async () => {
  const repo = path.join(work, 'key-add');
  await resticOk(restic, ['init'], { repo, password: 'secret', cwd: work });
  const k = await runCli(['key', 'add', '--no-cache', '--new-insecure-no-password'], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'secret' } });
  assert.equal(k.code, 0, k.stderr);
  await resticOk(restic, ['snapshots', N], ropts(repo));
  await assert.rejects(Repository.open(new LocalBackend(repo), { password: '' }), InvalidInputError);
  await assert.rejects(Repository.open(new LocalBackend(repo), { password: 'secret', insecureNoPassword: true }), InvalidInputError);
});

test('refusals: the same message and exit code as restic 0.19.1', async () => {
  const repo = path.join(work, 'by-restic');
  const withPw = path.join(work, 'key-add');
  const cases: Array<{ repo: string; args: string[]; env?: Record<string, string> }> = [
    { repo, args: ['snapshots'] },
    { repo, args: ['snapshots', '--json'] },
    { repo, args: ['snapshots', '--password-file', emptyFile] },
    { repo, args: ['snapshots', N, '--password-file', pwFile] },
    { repo, args: ['snapshots', N], env: { RESTIC_PASSWORD: 'secret' } },
    { repo: path.join(work, 'never'), args: ['init'] },
    { repo: path.join(work, 'never'), args: ['init', N, '--password-file', pwFile] },
    { repo: withPw, args: ['key', 'add', '--new-password-file', emptyFile], env: { RESTIC_PASSWORD: 'secret' } },
    { repo: withPw, args: ['key', 'add', '--new-password-file', pwFile, '--new-insecure-no-password'], env: { RESTIC_PASSWORD: 'secret' } },
  ];
  for (const c of cases) {
    const what = c.args.join(' ');
    const [theirs, ours] = await Promise.all([
      runRestic(restic, c.args, { ...ropts(c.repo), env: c.env }),
      runCli([...c.args, '--no-cache'], { env: { RESTIC_REPOSITORY: c.repo, ...c.env }, cwd: work }),
    ]);
    assert.equal(ours.code, theirs.code, `${what}: ${ours.stderr}`);
    assert.equal(ours.stderr, theirs.stderr, what);
  }
});
