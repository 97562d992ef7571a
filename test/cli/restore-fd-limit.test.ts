// A restore keeps few files open however many files share a blob: 3000 files with the same
// content (one blob, one pack range, one worker job) restore under a limit of 256 open files
// (a small container's); each worker job keeps at most 32 open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('3000 files sharing one blob restore with at most 256 open files allowed', { timeout: 300_000 }, async () => {
  const work = await tmpDir('stowage-fd-limit');
  const src = path.join(work, 'src');
  await mkdir(src);
  const content = Buffer.alloc(20_000, 'same content in every file\n');
  for (let i = 0; i < 3000; i++) await writeFile(path.join(src, `f${i}`), content);
  const env = { RESTIC_REPOSITORY: path.join(work, 'repo'), RESTIC_PASSWORD: 'fd limit' };
  assert.equal((await runCli(['init'], { env })).code, 0);
  assert.equal((await runCli(['backup', src], { env })).code, 0);

  const target = path.join(work, 'restored');
  // prlimit (util-linux) lowers the soft and hard limit for the restore process alone.
  const child = spawn('prlimit', ['--nofile=256:256', process.execPath, CLI, 'restore', 'latest', '--target', target], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, out);
  const restoredDir = path.join(target, src);
  const names = await readdir(restoredDir);
  assert.equal(names.length, 3000);
  for (const name of [names[0]!, names[1500]!, names[2999]!]) assert.ok((await readFile(path.join(restoredDir, name))).equals(content), name);
});
