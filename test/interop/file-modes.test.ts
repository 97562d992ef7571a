// The modes of what restic 0.19.1 and Stowage write, stat'ed side by side: a new local repository
// (folders 0700, files 0400); a group-accessible one (made group-readable as restic's docs say,
// `chmod -R g+rX`), where both write files 0440 (data, index, snapshots, keys, locks) and make
// folders 0770 less the umask; and a restore target (with its missing parents) made 0700, an
// existing one left as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { Lock } from '../../src/repository/lock.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'file modes';
const work = await tmpDir('stowage-modes');
const src = path.join(work, 'src');
await mkdir(src);
await writeFile(path.join(src, 'f'), 'modes\n');
const envOf = (repo: string) => ({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
const mode = async (p: string) => ((await stat(p)).mode & 0o7777).toString(8);

/** Mode of every file and folder below dir, by path relative to it. */
async function modes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = path.join(e.parentPath, e.name);
    out.set(path.relative(dir, p), await mode(p));
  }
  return out;
}

/** The modes of the entries that are new in `after`, grouped by top folder and kind: "data file" → {"440"}. */
function newModes(before: Map<string, string>, after: Map<string, string>, dirs: Set<string>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [p, m] of after) {
    if (before.has(p)) continue;
    const key = `${p.split('/')[0]} ${dirs.has(p) ? 'dir' : 'file'}`;
    out.set(key, (out.get(key) ?? new Set()).add(m));
  }
  return out;
}

async function dirSet(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) if (e.isDirectory()) out.add(path.relative(dir, path.join(e.parentPath, e.name)));
  return out;
}

/** Removes the empty data/XX folders, so the next backup has to make the ones it needs. */
async function dropEmptyDataDirs(repo: string): Promise<void> {
  for (const d of await readdir(path.join(repo, 'data'))) await rmdir(path.join(repo, 'data', d)).catch(() => {});
}

/** The mode of the lock file restic 0.19.1 holds while `backup --stdin` waits for its input. */
async function resticLockMode(repo: string): Promise<string> {
  const child = spawn(resticBin('0.19'), ['backup', '--stdin', '--no-cache', '-q'], { env: { ...process.env, ...envOf(repo) }, stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    for (let i = 0; i < 300; i++) {
      // restic writes "<id>-tmp-…" first, renames it to <id>, then makes it read-only.
      const lock = (await readdir(path.join(repo, 'locks'))).find((n) => /^[0-9a-f]{64}$/.test(n));
      if (lock) {
        await new Promise((r) => setTimeout(r, 300));
        return await mode(path.join(repo, 'locks', lock));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('restic took no lock');
  } finally {
    const done = new Promise((r) => child.once('close', r));
    child.stdin.end('x');
    await done;
  }
}

test('a new repository: restic 0.19.1\'s and Stowage\'s init make the same modes (0700 folders, 0400 files)', async () => {
  const theirs = path.join(work, 'init-restic');
  const ours = path.join(work, 'init-stowage');
  await resticOk(resticBin('0.19'), ['init'], { repo: theirs, password: PASSWORD });
  const r = await runCli(['init'], { env: envOf(ours) });
  assert.equal(r.code, 0, r.stderr);
  const [a, b] = [await modes(theirs), await modes(ours)];
  const shape = (m: Map<string, string>) => [...m].map(([p, v]) => `${p.replace(/[0-9a-f]{64}/, 'ID')} ${v}`).sort();
  assert.deepEqual(shape(b), shape(a));
  assert.equal(a.get('config'), '400');
  assert.equal(a.get('data'), '700');
});

test('a group-accessible repository: both write files 0440 and folders 0770 less the umask', async () => {
  const repo = path.join(work, 'group');
  const ropts = { repo, password: PASSWORD, cwd: work };
  await resticOk(resticBin('0.19'), ['init'], ropts);
  // restic's docs: make the repository group-accessible.
  const chmodRX = async (p: string) => {
    const st = await stat(p);
    await chmod(p, (st.mode & 0o7777) | (st.isDirectory() ? 0o050 : 0o040));
    if (st.isDirectory()) for (const e of await readdir(p)) await chmodRX(path.join(p, e));
  };
  await chmodRX(repo);

  await dropEmptyDataDirs(repo);
  let before = await modes(repo);
  await resticOk(resticBin('0.19'), ['backup', src], ropts);
  const pw = path.join(work, 'pw');
  await writeFile(pw, 'another\n');
  await resticOk(resticBin('0.19'), ['key', 'add', '--new-password-file', pw], ropts);
  const restics = newModes(before, await modes(repo), await dirSet(repo));
  const resticLock = await resticLockMode(repo);

  await writeFile(path.join(src, 'g'), 'more data for Stowage\n');
  // Large enough that its pack is written to a temporary file and stored from it (saveFile).
  await writeFile(path.join(src, 'h'), randomBytes(3 << 20));
  await dropEmptyDataDirs(repo);
  before = await modes(repo);
  const b = await runCli(['backup', '--no-cache', src], { env: envOf(repo) });
  assert.equal(b.code, 0, b.stderr);
  const k = await runCli(['key', 'add', '--no-cache', '--new-password-file', pw], { env: envOf(repo) });
  assert.equal(k.code, 0, k.stderr);
  const ours = newModes(before, await modes(repo), await dirSet(repo));
  const rep = await Repository.open(new LocalBackend(repo), { password: PASSWORD });
  const lock = await Lock.acquire(rep, { exclusive: false });
  const ourLock = await mode(path.join(repo, 'locks', (await readdir(path.join(repo, 'locks')))[0]!));
  await lock.release();

  const umask = process.umask();
  const groupDir = (0o770 & ~umask).toString(8);
  const expected = new Map([['data dir', new Set([groupDir])], ['data file', new Set(['440'])], ['index file', new Set(['440'])], ['snapshots file', new Set(['440'])], ['keys file', new Set(['440'])]]);
  assert.deepEqual(restics, expected, 'restic 0.19.1');
  assert.deepEqual(ours, expected, 'Stowage');
  assert.equal(resticLock, '440');
  assert.equal(ourLock, '440');
  // restic 0.19.1 reads and checks what Stowage wrote with the group modes.
  await resticOk(resticBin('0.19'), ['check', '--read-data'], ropts);
});

test('restore: a new target and its missing parents are made 0700 as by restic 0.19.1; an existing one is left alone', async () => {
  const repo = path.join(work, 'restore');
  const ropts = { repo, password: PASSWORD, cwd: work };
  await resticOk(resticBin('0.19'), ['init'], ropts);
  await resticOk(resticBin('0.19'), ['backup', src], ropts);
  const theirs = path.join(work, 'restore-restic');
  const ours = path.join(work, 'restore-stowage');
  await resticOk(resticBin('0.19'), ['restore', 'latest', '--target', path.join(theirs, 'x/y')], ropts);
  const r = await runCli(['restore', '--no-cache', 'latest', '--target', path.join(ours, 'x/y')], { env: envOf(repo) });
  assert.equal(r.code, 0, r.stderr);
  for (const sub of ['', 'x', 'x/y']) assert.equal(await mode(path.join(ours, sub)), await mode(path.join(theirs, sub)), sub || 'target root');
  assert.equal(await mode(path.join(ours, 'x/y')), '700');
  // The snapshot's own folders keep their modes.
  const inner = path.join('x/y', src);
  assert.equal(await mode(path.join(ours, inner)), await mode(path.join(theirs, inner)));

  for (const dir of [theirs, ours]) {
    await mkdir(path.join(dir, 'existing'));
    await chmod(path.join(dir, 'existing'), 0o751);
  }
  await resticOk(resticBin('0.19'), ['restore', 'latest', '--target', path.join(theirs, 'existing')], ropts);
  const e = await runCli(['restore', '--no-cache', 'latest', '--target', path.join(ours, 'existing')], { env: envOf(repo) });
  assert.equal(e.code, 0, e.stderr);
  assert.equal(await mode(path.join(theirs, 'existing')), '751');
  assert.equal(await mode(path.join(ours, 'existing')), '751');
});
