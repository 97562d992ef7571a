// `stowage backup` when its source fails, with restic 0.19's exit codes: a command given with
// --stdin-from-command that exits non-zero (exit 1, no snapshot), and paths that do not exist
// (none: exit 1, no snapshot; some: a warning each, the snapshot, exit 3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

// One repository for the file (top-level: tmpDir's cleanup then runs when the file ends).
const work = await tmpDir('stowage-cli-sources');
const env = { RESTIC_REPOSITORY: path.join(work, 'repo'), RESTIC_PASSWORD: 'sources test' };
const init = await runCli(['init'], { env });
assert.equal(init.code, 0, init.stderr);

async function snapshots(): Promise<Array<{ paths: string[]; id: string }>> {
  const r = await runCli(['snapshots', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Array<{ paths: string[]; id: string }>;
}

test('--stdin-from-command: a command that exits 2 gives exit 1, its name and status, and no snapshot', async () => {
  const before = (await snapshots()).length;
  const r = await runCli(['backup', '--stdin-filename', 'db.sql', '--stdin-from-command', '--', 'sh', '-c', 'echo partial; echo "dump: lost connection" >&2; exit 2'], { env });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /sh exited with status 2/);
  assert.match(r.stderr, /subprocess sh: dump: lost connection/, 'the command\'s stderr is shown, as restic shows it');
  assert.doesNotMatch(r.stdout, /saved/);
  assert.equal((await snapshots()).length, before);
});

test('--stdin-from-command: the output of a command that succeeds is the snapshot\'s file', async () => {
  const r = await runCli(['backup', '--stdin-filename', 'db.sql', '--stdin-from-command', '--', 'sh', '-c', 'printf "CREATE TABLE t;\\n"'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /snapshot [0-9a-f]{8} saved/);
  const dumped = await runCli(['dump', 'latest', '/db.sql'], { env });
  assert.equal(dumped.code, 0, dumped.stderr);
  assert.equal(dumped.stdout, 'CREATE TABLE t;\n');
  assert.deepEqual((await snapshots()).at(-1)!.paths, ['/db.sql']);
  // Without a command there is nothing to run.
  const none = await runCli(['backup', '--stdin-from-command'], { env });
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no command/);
});

test('backup of paths none of which exists: exit 1, each named, no snapshot', async () => {
  const before = (await snapshots()).length;
  const a = path.join(work, 'nope-a');
  const b = path.join(work, 'nope-b');
  const r = await runCli(['backup', a, b], { env });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`${a} does not exist, skipping`));
  assert.match(r.stderr, new RegExp(`${b} does not exist, skipping`));
  assert.match(r.stderr, /Fatal: all source directories\/files do not exist/);
  assert.doesNotMatch(r.stdout, /saved/);
  assert.equal((await snapshots()).length, before);
});

test('backup of paths some of which do not exist: a warning each, the snapshot of the rest, exit 3', async () => {
  const src = path.join(work, 'src');
  await mkdir(src, { recursive: true });
  await writeFile(path.join(src, 'file'), 'content');
  const missing = path.join(work, 'missing');
  const r = await runCli(['backup', src, missing], { env });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, new RegExp(`${missing} does not exist, skipping`));
  assert.match(r.stderr, /Warning: at least one source file could not be read/);
  assert.match(r.stdout, /snapshot [0-9a-f]{8} saved/);
  assert.deepEqual((await snapshots()).at(-1)!.paths, [src]);
});
