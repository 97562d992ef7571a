// `repair packs PACKID...` against restic 0.19.1's own, on two identical copies of a restic-made
// repository whose data pack has one blob damaged (one byte flipped): both keep a copy of the pack
// as pack-<id> in the current folder, name the same lost blob, salvage the same blobs (restic's
// `list blobs` equal afterwards), delete the pack; restic check then fails alike (the blob is not
// in the index), and after `repair snapshots --forget` restic 0.19.1 and 0.14 check --read-data pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, open, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';

const PASSWORD = 'repair packs test';
const work = await tmpDir('stowage-repair-packs');
const r19 = resticBin('0.19');
const base = path.join(work, 'base');
const src = path.join(work, 'src');
await mkdir(src);
for (let i = 0; i < 4; i++) await writeFile(path.join(src, `f${i}`), randomBytes(700_000));
await writeFile(path.join(src, 'small'), 'kept\n');
await resticOk(r19, ['init'], { repo: base, password: PASSWORD });
await resticOk(r19, ['backup', src], { repo: base, password: PASSWORD });

async function packs(repo: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const e of await readdir(path.join(repo, 'data'), { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.set(e.name, (await stat(path.join(e.parentPath, e.name))).size);
  }
  return out;
}
// The data pack (the largest): one byte in its middle flipped, inside one of its blobs.
const [victim, size] = [...(await packs(base))].sort((a, b) => b[1] - a[1])[0]!;
{
  const file = path.join(base, 'data', victim.slice(0, 2), victim);
  const fh = await open(file, 'r+').catch(async () => {
    const { chmod } = await import('node:fs/promises');
    await chmod(file, 0o600);
    return open(file, 'r+');
  });
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, Math.floor(size / 2));
  b[0]! ^= 0xff;
  await fh.write(b, 0, 1, Math.floor(size / 2));
  await fh.close();
}
const damaged = await readFile(path.join(base, 'data', victim.slice(0, 2), victim));
const blobsBefore = (await resticOk(r19, ['list', 'blobs'], { repo: base, password: PASSWORD })).stdout.trim().split('\n').sort();

const ours = path.join(work, 'ours');
const theirs = path.join(work, 'theirs');
await cp(base, ours, { recursive: true });
await cp(base, theirs, { recursive: true });
const env = (repo: string) => ({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });

test('check names the damaged pack and suggests repair packs, as restic', async () => {
  const c = await runCli(['check', '--read-data'], { env: env(ours) });
  assert.equal(c.code, 1);
  assert.match(c.stderr, new RegExp(`stowage repair packs ${victim}\nstowage repair snapshots --forget`));
  const r = await runRestic(r19, ['check', '--read-data'], { repo: theirs, password: PASSWORD });
  assert.match(r.stderr, new RegExp(`restic repair packs ${victim}\nrestic repair snapshots --forget`));
});

test('repair packs salvages what restic 0.19.1 salvages; repair snapshots --forget then leaves a repository restic checks clean', async () => {
  const oursCwd = path.join(work, 'ours-cwd');
  const theirsCwd = path.join(work, 'theirs-cwd');
  await mkdir(oursCwd);
  await mkdir(theirsCwd);
  const s = await runCli(['repair', 'packs', victim], { env: env(ours), cwd: oursCwd });
  const r = await runRestic(r19, ['repair', 'packs', victim], { repo: theirs, password: PASSWORD, cwd: theirsCwd });
  assert.equal(s.code, 0, s.stderr);
  assert.equal(r.code, 0, r.stderr);
  // restic's progress lines, in its order.
  const lines = ['saving backup copies of pack files to current folder', 'salvaging intact data from specified pack files', 'rebuilding index', 'removing salvaged pack files'];
  const at = lines.map((l) => s.stdout.indexOf(l));
  assert.ok(at.every((i, k) => i >= 0 && (k === 0 || i > at[k - 1]!)), s.stdout);
  for (const l of lines) assert.match(r.stdout, new RegExp(l));
  // The same blob lost, named by both.
  const lost = (out: string) => [...out.matchAll(/failed to load blob ([0-9a-f]{64})/g)].map((m) => m[1]);
  assert.equal(lost(r.stderr).length, 1, r.stderr);
  assert.deepEqual(lost(s.stderr), lost(r.stderr));
  assert.match(s.stderr, /Use `stowage repair snapshots --forget` to remove the corrupted data blobs from all snapshots/);
  // The copy of the pack, byte for byte.
  assert.deepEqual(await readFile(path.join(oursCwd, `pack-${victim}`)), damaged);
  assert.deepEqual(await readFile(path.join(theirsCwd, `pack-${victim}`)), damaged);
  // The same blobs indexed afterwards: all but the lost one; the pack gone.
  const list = async (repo: string) => (await resticOk(r19, ['list', 'blobs'], { repo, password: PASSWORD })).stdout.trim().split('\n').sort();
  const after = await list(ours);
  assert.deepEqual(after, await list(theirs));
  assert.deepEqual(after, blobsBefore.filter((l) => !l.endsWith(lost(r.stderr)[0]!)));
  assert.ok(!(await packs(ours)).has(victim));
  // restic check: the lost blob is missing from the index, in both.
  const checks = await Promise.all([ours, theirs].map((repo) => runRestic(r19, ['check'], { repo, password: PASSWORD })));
  for (const c of checks) {
    assert.equal(c.code, 1);
    assert.match(c.stderr, new RegExp(`blob ${lost(r.stderr)[0]} not found in index`));
  }
  // A second run does not overwrite the copy (restic: O_EXCL), and the pack is gone anyway.
  const again = await runCli(['repair', 'packs', victim], { env: env(ours), cwd: oursCwd });
  assert.equal(again.code, 1);

  // repair snapshots --forget, as restic documents: then restic checks clean, 0.19.1 and 0.14.
  const rs = await runCli(['repair', 'snapshots', '--forget'], { env: env(ours) });
  assert.equal(rs.code, 0, rs.stderr);
  assert.match(rs.stdout, /removed missing content/);
  await resticOk(r19, ['check', '--read-data'], { repo: ours, password: PASSWORD });
  await resticOk(resticBin('0.14'), ['check', '--read-data'], { repo: ours, password: PASSWORD });
  const restored = path.join(work, 'restored');
  await resticOk(r19, ['restore', 'latest', '--target', restored], { repo: ours, password: PASSWORD });
  assert.equal(await readFile(path.join(restored, src, 'small'), 'utf8'), 'kept\n');
});

test('repair packs refuses what is not a pack ID, and nothing', async () => {
  const bad = await runCli(['repair', 'packs', 'abc'], { env: env(ours) });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /invalid pack ID "abc"/);
  const none = await runCli(['repair', 'packs'], { env: env(ours) });
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no ids specified/);
});
