// restore --sparse against restic 0.19.1: restic backs up files with long all-zero stretches (and
// one all zeros, and a small one); `restic restore --sparse` and `stowage restore --sparse` restore
// them into two targets. The contents must be the same bytes, and Stowage's files must take about
// the blocks restic's take (holes where the zeros are), far fewer than their size; without
// --sparse every byte is allocated. A sparse restore (the library's `sparse: true`) over files
// holding other data where the zeros belong must still give the snapshot's contents, written in
// place as restic writes them (no holes).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'restore sparse interop';
const MiB = 1024 * 1024;

/** The files backed up, by name. */
function sourceFiles(): Record<string, Buffer> {
  const zeros = Buffer.alloc(8 * MiB);
  // Random stretches of odd lengths between three 8 MiB runs of zeros.
  const big = Buffer.concat([randomBytes(300_001), zeros, randomBytes(1 * MiB + 7), zeros, randomBytes(123_457), zeros, randomBytes(65_539)]);
  return { big, 'all-zero': Buffer.alloc(5 * MiB + 3), small: Buffer.from('small file\n') };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('restore --sparse: the same contents and holes as restic 0.19.1', () => {
  const restic = resticBin('0.19');
  let dir: string;
  let repo: string;
  const files = sourceFiles();

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-restore-sparse-'));
    await mkdir(path.join(dir, 'src'));
    for (const [name, data] of Object.entries(files)) await writeFile(path.join(dir, 'src', name), data);
    repo = path.join(dir, 'repo');
    await resticOk(restic, ['init'], { repo, password: PASSWORD });
    await resticOk(restic, ['backup', 'src'], { repo, password: PASSWORD, cwd: dir });
  });
  after(() => removeTree(dir));

  /** Per file: [sha256 of its contents, 512-byte blocks allocated]. */
  async function restored(target: string): Promise<Record<string, [string, number]>> {
    const out: Record<string, [string, number]> = {};
    for (const name of Object.keys(files)) {
      const p = path.join(target, 'src', name);
      out[name] = [sha(await readFile(p)), (await stat(p)).blocks];
    }
    return out;
  }

  it('restores sparse as restic does, and without --sparse allocates every byte', async () => {
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    const ours = path.join(dir, 'ours');
    const theirs = path.join(dir, 'theirs');
    const full = path.join(dir, 'full');
    const a = await runCli(['restore', '--no-cache', '--sparse', 'latest', '--target', ours], { env, cwd: dir });
    assert.equal(a.code, 0, a.stderr);
    await resticOk(restic, ['restore', '--sparse', 'latest', '--target', theirs], { repo, password: PASSWORD, cwd: dir });
    const b = await runCli(['restore', '--no-cache', 'latest', '--target', full], { env, cwd: dir });
    assert.equal(b.code, 0, b.stderr);
    const [o, t, f] = [await restored(ours), await restored(theirs), await restored(full)];
    for (const [name, data] of Object.entries(files)) {
      assert.equal(o[name]![0], sha(data), `${name}: stowage --sparse contents`);
      assert.equal(t[name]![0], sha(data), `${name}: restic --sparse contents`);
      assert.equal(f[name]![0], sha(data), `${name}: stowage contents`);
    }
    const sizeBlocks = (name: string) => Math.ceil(files[name]!.length / 512);
    for (const name of ['big', 'all-zero']) {
      const [ob, tb, fb] = [o[name]![1], t[name]![1], f[name]![1]];
      // Logged so a CI run shows the numbers.
      console.log(`${name}: ${files[name]!.length} bytes = ${sizeBlocks(name)} blocks; stowage --sparse ${ob}, restic --sparse ${tb}, stowage ${fb}`);
      assert.ok(tb < sizeBlocks(name) / 2, `${name}: restic's restore is sparse (${tb} blocks)`);
      assert.ok(ob < sizeBlocks(name) / 2, `${name}: ${ob} blocks, not sparse`);
      // Holes where restic has them: within 128 KiB of restic's allocation.
      assert.ok(Math.abs(ob - tb) <= 256, `${name}: ${ob} blocks, restic ${tb}`);
      assert.ok(fb >= sizeBlocks(name) - 8, `${name}: without --sparse ${fb} blocks of ${sizeBlocks(name)}`);
    }
  });

  it('restores sparse over files holding other data where the zeros belong: in place, as restic', async () => {
    const target = path.join(dir, 'over');
    const theirs = path.join(dir, 'over-theirs');
    for (const t of [target, theirs]) {
      await mkdir(path.join(t, 'src'), { recursive: true });
      for (const [name, data] of Object.entries(files)) await writeFile(path.join(t, 'src', name), Buffer.alloc(data.length + 4096, 0xa5));
    }
    const r = await Repository.open(new LocalBackend(repo), { password: PASSWORD });
    const res = await restore(r, 'latest', { target, sparse: true });
    assert.equal(res.filesRestored, Object.keys(files).length);
    await resticOk(restic, ['restore', '--sparse', 'latest', '--target', theirs], { repo, password: PASSWORD });
    const [got, want] = [await restored(target), await restored(theirs)];
    for (const [name, data] of Object.entries(files)) assert.equal(got[name]![0], sha(data), `${name}: contents`);
    // restic writes over a file the target has in place, its blocks kept (no holes punched).
    assert.ok(want.big![1] >= Math.ceil(files.big!.length / 512) - 8, `restic: big ${want.big![1]} blocks`);
    assert.ok(got.big![1] >= Math.ceil(files.big!.length / 512) - 8, `big: ${got.big![1]} blocks, as restic's ${want.big![1]}`);
  });
});
