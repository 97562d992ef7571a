// Temporary pack files a killed backup leaves behind (issue 17): a CLI backup on a local
// repository is SIGKILLed while it writes its packs to $TMPDIR; the next backup with the same
// folder removes what the dead process left, and never a file of a live process (nor one of
// another host or PID namespace, nor one named as before, until it is a day old).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { STALE_TEMP_PACK_MS, tempPackOwner } from '../../src/repository/temp-packs.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { removeTree } from '../helpers/tmp.ts';

let root: string;
let env: Record<string, string>;
const hex = (n: number) => randomBytes(n).toString('hex');

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'stowage-temp-packs-'));
  await mkdir(path.join(root, 'tmp'));
  await mkdir(path.join(root, 'src'));
  // Incompressible, so packs fill and are written to files as blobs arrive.
  for (let i = 0; i < 4; i++) await writeFile(path.join(root, 'src', `f${i}`), randomBytes(8 * 1024 * 1024));
  await mkdir(path.join(root, 'small'));
  await writeFile(path.join(root, 'small', 'a'), 'a small file');
  const repo = await Repository.init(new LocalBackend(path.join(root, 'repo')), { password: 'pw', kdf: { N: 1024, r: 8, p: 1 } });
  await repo.close();
  env = { RESTIC_REPOSITORY: path.join(root, 'repo'), RESTIC_PASSWORD: 'pw', TMPDIR: path.join(root, 'tmp'), RESTIC_CACHE_DIR: path.join(root, 'cache') };
});

after(async () => {
  await removeTree(root);
});

const packFiles = async () => (await readdir(path.join(root, 'tmp'))).filter((n) => n.startsWith('stowage-pack-')).sort();

/** Starts a CLI backup and SIGKILLs it as soon as it has a temporary pack file; returns its PID. */
async function killMidway(): Promise<number> {
  const child = spawn(process.execPath, [CLI, 'backup', path.join(root, 'src')], { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env }, stdio: 'ignore' });
  const closed = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
  const deadline = Date.now() + 60_000;
  while ((await packFiles()).length === 0) {
    assert.ok(Date.now() < deadline, 'the backup made no temporary pack file');
    if (child.exitCode !== null) assert.fail('the backup ended before it was killed');
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill('SIGKILL');
  assert.equal(await closed, 'SIGKILL');
  return child.pid!;
}

test('the next backup removes the pack files a killed backup left, and no file of a live process', async () => {
  const dead = await killMidway();
  const left = await packFiles();
  assert.ok(left.length > 0 && left.every((n) => n.startsWith(`stowage-pack-${dead}-${tempPackOwner()}-`)), left.join(' '));

  // A live process's file (here a sleeping child's), and files this host cannot judge by PID.
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  try {
    const old = (Date.now() - STALE_TEMP_PACK_MS - 60_000) / 1000;
    const live = `stowage-pack-${sleeper.pid}-${tempPackOwner()}-${hex(8)}`;
    const otherFresh = `stowage-pack-${dead}-00000000-${hex(8)}`;
    const otherOld = `stowage-pack-${dead}-00000001-${hex(8)}`;
    const legacyFresh = `stowage-pack-${hex(8)}`;
    const legacyOld = `stowage-pack-${hex(8)}`;
    const unrelated = 'stowage-pack-notes';
    for (const n of [live, otherFresh, otherOld, legacyFresh, legacyOld, unrelated]) await writeFile(path.join(root, 'tmp', n), 'x');
    for (const n of [otherOld, legacyOld, unrelated]) await utimes(path.join(root, 'tmp', n), old, old);

    const next = await runCli(['backup', path.join(root, 'small')], { env });
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(await packFiles(), [live, otherFresh, legacyFresh, unrelated].sort());
  } finally {
    sleeper.kill('SIGKILL');
  }
});
