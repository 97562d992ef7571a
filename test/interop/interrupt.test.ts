// SIGINT in the middle of a long command, as restic 0.19.1 answers it: exit 130 after a clean
// stop — no lock left, no snapshot, the packs already uploaded unreferenced (restic check says
// "additional files" and passes, for Stowage's interrupted backup as for restic's own), and the
// next backup succeeds. Uploads and downloads are slowed with --limit-upload/--limit-download and
// the signal is sent once a pack is in the repository, so the stop falls mid-way every time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { resticBin, runRestic, resticOk } from '../helpers/restic.ts';

const PASSWORD = 'interrupt test';
const work = await tmpDir('stowage-interrupt');
const src = path.join(work, 'src');
await mkdir(src);
for (let i = 0; i < 24; i++) await writeFile(path.join(src, `f${i}`), randomBytes(1 << 20));
const r19 = resticBin('0.19');

async function count(dir: string): Promise<number> {
  let n = 0;
  // Finished files only (a temporary file being written has another name).
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) if (e.isFile() && /^[0-9a-f]{64}$/.test(e.name)) n++;
  return n;
}

/** Runs a command, sends SIGINT once `ready()` holds, and returns its exit code and output. */
function interrupt(cmd: string, args: string[], env: Record<string, string>, ready: () => Promise<boolean>): Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let exited = false;
    const poll = async (): Promise<void> => {
      while (!exited) {
        if (await ready()) {
          child.kill('SIGINT');
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      exited = true;
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    });
    void poll();
  });
}

async function interruptedBackup(tool: 'stowage' | 'restic', repo: string): Promise<void> {
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(work, 'cache') };
  if (tool === 'stowage') assert.equal((await runCli(['init'], { env })).code, 0);
  else await resticOk(r19, ['init'], { repo, password: PASSWORD });
  const args = ['backup', src, '--no-cache', '--pack-size', '4', '--limit-upload', '8192'];
  const cmd = tool === 'stowage' ? process.execPath : r19;
  const r = await interrupt(cmd, tool === 'stowage' ? [CLI, ...args] : args, env, async () => (await count(path.join(repo, 'data'))) >= 1);
  assert.equal(r.code, 130, `${tool}: ${r.stderr}`);
  assert.match(r.stderr, /signal interrupt received, cleaning up/, tool);
  assert.doesNotMatch(r.stdout, /snapshot \w+ saved/, tool);
  assert.deepEqual(await readdir(path.join(repo, 'locks')), [], `${tool} left no lock`);
  assert.deepEqual(await readdir(path.join(repo, 'snapshots')), [], `${tool} wrote no snapshot`);
  const packs = await count(path.join(repo, 'data'));
  assert.ok(packs >= 1 && packs < 6, `${tool} stopped mid-way (${packs} packs of 6)`);
}

test('backup interrupted by SIGINT: exit 130, no lock, no snapshot, restic check passes as after restic\'s own; the next backup succeeds', async () => {
  const ours = path.join(work, 'ours');
  const theirs = path.join(work, 'theirs');
  await interruptedBackup('stowage', ours);
  await interruptedBackup('restic', theirs);
  for (const repo of [ours, theirs]) {
    const c = await runRestic(r19, ['check'], { repo, password: PASSWORD });
    assert.equal(c.code, 0, `${repo}: ${c.stdout}${c.stderr}`);
    // Packs without an index are what both leave behind: restic calls them additional files.
    assert.match(c.stdout + c.stderr, /\d+ additional files were found in the repo/, repo);
    assert.match(c.stdout, /no errors were found/);
  }
  const env = { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD };
  const again = await runCli(['backup', src, '--no-cache'], { env });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /snapshot \w+ saved/);
  await resticOk(r19, ['check', '--read-data'], { repo: ours, password: PASSWORD });
  const ours14 = await runRestic(resticBin('0.14'), ['check'], { repo: ours, password: PASSWORD });
  assert.equal(ours14.code, 0, ours14.stderr);
});

test('restore interrupted by SIGINT: exit 130, the lock removed', async () => {
  const repo = path.join(work, 'ours');
  const target = path.join(work, 'target');
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
  const r = await interrupt(process.execPath, [CLI, 'restore', 'latest', '--target', target, '--no-cache', '--limit-download', '2048'], env, async () => (await readdir(target).catch(() => [])).length >= 1);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /signal interrupt received, cleaning up/);
  assert.deepEqual(await readdir(path.join(repo, 'locks')), []);
});
