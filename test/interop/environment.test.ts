// restic's environment variables, honoured as restic 0.19.1 honours them, side by side with it:
// - RESTIC_HOST: the hostname `backup` records and the default --host of every snapshot filter
//   (snapshots, stats…); `--host ""` means any host again; RESTIC_READ_CONCURRENCY and
//   --read-concurrency parsed as restic parses them;
// - RESTIC_REPOSITORY_FILE, RESTIC_PASSWORD_FILE, RESTIC_PASSWORD_COMMAND: files read as restic's
//   textfile.Read reads them (UTF-8 BOM dropped, UTF-16 decoded) and trimmed as Go's TrimSpace;
//   a password file and command together, or a repository and a repository file, are refused;
// - RESTIC_REST_USERNAME, RESTIC_REST_PASSWORD and RESTIC_CACERT against a rest-server with TLS
//   and basic auth;
// - STORAGE_EMULATOR_HOST in restic's host:port form (fake-gcs-server): restic initialises the
//   repository there and the CLI works on it with nothing but restic's variables.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Storage } from '@google-cloud/storage';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startFakeGcs } from '../servers/fake-gcs.ts';
import { startRestServer } from '../servers/rest-server.ts';

const PASSWORD = 'environment';
const r19 = resticBin('0.19');
const work = await tmpDir('stowage-env');
const src = path.join(work, 'src');
await mkdir(src, { recursive: true });
await writeFile(path.join(src, 'f'), 'content\n');

test('RESTIC_HOST (backup\'s hostname, the filters\' default host) and RESTIC_READ_CONCURRENCY, as restic 0.19', async () => {
  const repo = path.join(work, 'repo');
  const ropts = { repo, password: PASSWORD, cwd: work };
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, RESTIC_HOST: 'from-env' };
  await resticOk(r19, ['init'], ropts);
  await resticOk(r19, ['backup', src], { ...ropts, env: { RESTIC_HOST: 'from-env' } });
  await resticOk(r19, ['backup', '--host', 'other', src], ropts);
  const ours = await runCli(['backup', '--no-cache', src], { env });
  assert.equal(ours.code, 0, ours.stderr);
  const all = await resticJson<Array<{ id: string; hostname: string }>>(r19, ['snapshots'], ropts);
  assert.deepEqual(all.map((s) => s.hostname).sort(), ['from-env', 'from-env', 'other']);
  for (const args of [['snapshots'], ['snapshots', '--host', ''], ['snapshots', '--host', 'other'], ['stats']]) {
    const theirs = await resticJson<unknown>(r19, args, { ...ropts, env: { RESTIC_HOST: 'from-env' } });
    const mine = await runCli([...args, '--json', '--no-cache'], { env });
    assert.equal(mine.code, 0, mine.stderr);
    assert.deepEqual(JSON.parse(mine.stdout), theirs, args.join(' '));
  }
  const filtered = JSON.parse((await runCli(['snapshots', '--json', '--no-cache'], { env })).stdout) as unknown[];
  assert.equal(filtered.length, 2, 'RESTIC_HOST filters');
  // RESTIC_READ_CONCURRENCY: a number is taken (restic reads that many files at once, Stowage
  // runs that many file workers), anything else refused before the repository is opened.
  const one = await runCli(['backup', '--no-cache', src], { env: { ...env, RESTIC_READ_CONCURRENCY: '1' } });
  assert.equal(one.code, 0, one.stderr);
  for (const [extra, flag] of [[{ RESTIC_READ_CONCURRENCY: 'abc' }, []], [{}, ['--read-concurrency', 'x']]] as const) {
    const theirs = await runRestic(r19, ['backup', ...flag, src], { ...ropts, env: extra });
    const mine = await runCli(['backup', ...flag, '--no-cache', src], { env: { ...env, ...extra } });
    assert.equal(theirs.code, 1);
    assert.equal(mine.code, 1);
    const expected = flag.length ? /invalid argument "x" for "--read-concurrency" flag/ : /invalid value for RESTIC_READ_CONCURRENCY "abc"/;
    assert.match(theirs.stderr, expected);
    // restic's words, the flag's without "Fatal: ".
    assert.equal(mine.stderr, theirs.stderr);
  }
});

test('RESTIC_PACK_SIZE and --pack-size: backup makes packs of that size; bad values refused with restic 0.19.1\'s messages', async () => {
  const repo = path.join(work, 'repo-pack-size');
  const ropts = { repo, password: PASSWORD, cwd: work };
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
  await resticOk(r19, ['init'], ropts);
  const big = path.join(work, 'big');
  await mkdir(big);
  await writeFile(path.join(big, 'random'), randomBytes(9 << 20));
  /** The data packs (files above 1 MiB) of the repository. */
  const packs = async () => {
    const sizes: number[] = [];
    for (const e of await readdir(path.join(repo, 'data'), { recursive: true, withFileTypes: true })) {
      if (e.isFile()) sizes.push((await stat(path.join(e.parentPath, e.name))).size);
    }
    return sizes.filter((n) => n > 1 << 20).length;
  };
  // 9 MiB in packs of 4 MiB: at least two (one with the default 16 MiB).
  const ours = await runCli(['backup', '--no-cache', big], { env: { ...env, RESTIC_PACK_SIZE: '4' } });
  assert.equal(ours.code, 0, ours.stderr);
  assert.ok(await packs() >= 2, `${await packs()} data packs`);
  for (const [extra, flag] of [
    [{ RESTIC_PACK_SIZE: 'abc' }, []], [{ RESTIC_PACK_SIZE: '99999999999' }, []], [{ RESTIC_PACK_SIZE: '2' }, []],
    [{}, ['--pack-size', 'x']], [{}, ['--pack-size', '200']], [{ RESTIC_PACK_SIZE: 'abc' }, ['--pack-size', '1']],
  ] as const) {
    const [theirs, mine] = await Promise.all([
      runRestic(r19, ['snapshots', ...flag], { ...ropts, env: extra }),
      runCli(['snapshots', ...flag, '--no-cache'], { env: { ...env, ...extra } }),
    ]);
    const what = `${JSON.stringify(extra)} ${flag.join(' ')}`;
    assert.equal(theirs.code, 1, what);
    assert.equal(mine.code, 1, what);
    assert.equal(mine.stderr, theirs.stderr, what);
  }
  // 0 is the default; the flag wins over the variable.
  for (const [extra, flag] of [[{ RESTIC_PACK_SIZE: '0' }, []], [{ RESTIC_PACK_SIZE: 'abc' }, ['--pack-size', '5']]] as const) {
    const mine = await runCli(['snapshots', ...flag, '--no-cache'], { env: { ...env, ...extra } });
    assert.equal(mine.code, 0, mine.stderr);
  }
});

test('RESTIC_REPOSITORY_FILE, RESTIC_PASSWORD_FILE and RESTIC_PASSWORD_COMMAND read as restic 0.19 reads them', async () => {
  const repo = path.join(work, 'repo-files');
  await resticOk(r19, ['init'], { repo, password: 'pw with inner space', cwd: work });
  const file = (name: string, bytes: Buffer | string) => writeFile(path.join(work, name), bytes).then(() => path.join(work, name));
  const repoFile = await file('repo.txt', `\ufeff  ${repo} \r\n`);
  const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(' pw with inner space\r\n', 'utf16le')]);
  const cases: Array<Record<string, string>> = [
    { RESTIC_REPOSITORY_FILE: repoFile, RESTIC_PASSWORD_FILE: await file('pw-bom.txt', '\ufeffpw with inner space  \r\n') },
    { RESTIC_REPOSITORY_FILE: repoFile, RESTIC_PASSWORD_FILE: await file('pw-utf16.txt', utf16) },
    { RESTIC_REPOSITORY_FILE: repoFile, RESTIC_PASSWORD_COMMAND: 'printf "\\t pw with inner space \\n\\n"' },
  ];
  for (const env of cases) {
    const theirs = await runRestic(r19, ['snapshots', '--json'], { repo: '', password: '', cwd: work, env: { ...env, RESTIC_REPOSITORY: '', RESTIC_PASSWORD: '' } });
    const mine = await runCli(['snapshots', '--json', '--no-cache'], { env });
    assert.equal(theirs.code, 0, `${JSON.stringify(env)}: ${theirs.stderr}`);
    assert.equal(mine.code, 0, `${JSON.stringify(env)}: ${mine.stderr}`);
    assert.equal(mine.stdout, theirs.stdout);
  }
  const refused: Array<[Record<string, string>, RegExp]> = [
    [{ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD_FILE: cases[0]!.RESTIC_PASSWORD_FILE!, RESTIC_PASSWORD_COMMAND: 'echo x' }, /Password file and command are mutually exclusive options/],
    [{ RESTIC_REPOSITORY: repo, RESTIC_REPOSITORY_FILE: repoFile, RESTIC_PASSWORD: 'x' }, /Options -r and --repository-file are mutually exclusive/],
    [{ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD_FILE: path.join(work, 'no-such-file') }, /no-such-file does not exist/],
  ];
  for (const [env, message] of refused) {
    const theirs = await runRestic(r19, ['snapshots'], { repo: '', password: '', cwd: work, env: { RESTIC_REPOSITORY: '', RESTIC_PASSWORD: '', ...env } });
    const mine = await runCli(['snapshots', '--no-cache'], { env });
    assert.equal(theirs.code, 1, theirs.stderr);
    assert.equal(mine.code, 1, mine.stderr);
    assert.match(theirs.stderr, message);
    assert.match(mine.stderr, message);
  }
});

test('RESTIC_REST_USERNAME/PASSWORD and RESTIC_CACERT reach a rest-server with TLS and auth, as restic 0.19', async () => {
  const server = await startRestServer({ tls: true, auth: true });
  after(() => server.stop());
  const location = `rest:${server.url}/env-repo/`;
  const restEnv = { RESTIC_REST_USERNAME: server.username!, RESTIC_REST_PASSWORD: server.password!, RESTIC_CACERT: server.caCertFile! };
  const ropts = { repo: location, password: PASSWORD, cwd: work, env: restEnv };
  await resticOk(r19, ['init'], ropts);
  const env = { ...restEnv, RESTIC_REPOSITORY: location, RESTIC_PASSWORD: PASSWORD };
  const ours = await runCli(['backup', '--host', 'h', '--no-cache', src], { env });
  assert.equal(ours.code, 0, ours.stderr);
  const theirs = await resticJson<Array<{ id: string }>>(r19, ['snapshots'], ropts);
  const mine = await runCli(['snapshots', '--json', '--no-cache'], { env });
  assert.equal(mine.code, 0, mine.stderr);
  assert.deepEqual(JSON.parse(mine.stdout), theirs);
  assert.equal(theirs.length, 1);
  // Without the CA the certificate is refused; a wrong password for the server is refused.
  const { RESTIC_CACERT: _ca, ...noCa } = env;
  assert.equal((await runCli(['snapshots', '--no-cache'], { env: noCa })).code, 1);
  assert.equal((await runCli(['snapshots', '--no-cache'], { env: { ...env, RESTIC_REST_PASSWORD: 'wrong' } })).code, 1);
});

test('STORAGE_EMULATOR_HOST=host:port (restic\'s form) reaches fake-gcs-server from the CLI', async () => {
  const gcs = await startFakeGcs();
  after(() => gcs.stop());
  const bucket = `env-${process.pid}`;
  await new Storage({ apiEndpoint: gcs.endpoint, projectId: 'stowage-test' }).createBucket(bucket);
  const gcsEnv = { STORAGE_EMULATOR_HOST: gcs.host, GOOGLE_ACCESS_TOKEN: 'emulator-needs-no-token', GOOGLE_PROJECT_ID: 'stowage-test' };
  const ropts = { repo: `gs:${bucket}:/repo`, password: PASSWORD, cwd: work, env: gcsEnv };
  await resticOk(r19, ['init'], ropts);
  await resticOk(r19, ['backup', '--host', 'h', src], ropts);
  const env = { ...gcsEnv, RESTIC_REPOSITORY: ropts.repo, RESTIC_PASSWORD: PASSWORD };
  const ours = await runCli(['backup', '--host', 'h', '--no-cache', src], { env });
  assert.equal(ours.code, 0, ours.stderr);
  const theirs = await resticJson<Array<{ id: string }>>(r19, ['snapshots'], ropts);
  const mine = await runCli(['snapshots', '--json', '--no-cache'], { env });
  assert.equal(mine.code, 0, mine.stderr);
  assert.deepEqual(JSON.parse(mine.stdout), theirs);
  assert.equal(theirs.length, 2);
});
