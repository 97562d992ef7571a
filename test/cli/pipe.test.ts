// `stowage ls latest | head`: when the reader of stdout goes away, the command ends normally
// (exit 0, no stack trace) instead of crashing on EPIPE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('a closed stdout ends `ls` quietly with exit 0', { timeout: 120_000 }, async () => {
  const work = await tmpDir('stowage-cli-pipe');
  const src = path.join(work, 'src');
  await mkdir(src);
  // Enough names that the listing outgrows a pipe's buffer (64 KiB) after the reader has gone.
  for (let i = 0; i < 3000; i++) await writeFile(path.join(src, `a-rather-long-file-name-to-fill-the-pipe-${i}.txt`), '');
  const env = { RESTIC_REPOSITORY: path.join(work, 'repo'), RESTIC_PASSWORD: 'pipe test' };
  assert.equal((await runCli(['init'], { env })).code, 0);
  assert.equal((await runCli(['backup', src], { env })).code, 0);

  const child = spawn(process.execPath, [CLI, 'ls', 'latest'], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // Read the first chunk, then close the pipe, as `head -1` does.
  child.stdout.once('data', () => child.stdout.destroy());
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  assert.equal(signal, null);
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /EPIPE|Error/);
});
