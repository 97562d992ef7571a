// `check` limited to snapshots (restic 0.19: `check [snapshotID ...]`, --host, --tag, --path):
// only the selected snapshots' trees are walked, and --read-data reads only the packs they use
// ("read all filtered data"). One restic-made repository with two hosts' snapshots of different
// files; a data pack only host h2's snapshot uses is damaged. Selecting h1 (by host, tag, path or
// ID) passes for restic 0.19.1 and for Stowage alike; selecting h2, or nothing, fails for both
// with the same exit code. restic 0.14 has no snapshot selection for check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { resticBin, resticJson, resticOk, runRestic } from '../helpers/restic.ts';

const PASSWORD = 'check filter test';
const work = await tmpDir('stowage-check-filtered');
const repo = path.join(work, 'repo');
const r19 = resticBin('0.19');
const opts = { repo, password: PASSWORD };

async function packs(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const e of await readdir(path.join(repo, 'data'), { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.set(e.name, (await stat(path.join(e.parentPath, e.name))).size);
  }
  return out;
}

await resticOk(r19, ['init'], opts);
for (const [host, dir] of [['h1', 'a'], ['h2', 'b']] as const) {
  await mkdir(path.join(work, dir));
  for (let i = 0; i < 3; i++) await writeFile(path.join(work, dir, `f${i}`), randomBytes(1 << 20));
}
await resticOk(r19, ['backup', '--host', 'h1', '--tag', 'one', '--pack-size', '4', path.join(work, 'a')], opts);
const before = await packs();
await resticOk(r19, ['backup', '--host', 'h2', '--tag', 'two', '--pack-size', '4', path.join(work, 'b')], opts);
// The largest pack the second backup added holds only its data: damage one byte in its middle.
const added = [...(await packs())].filter(([id]) => !before.has(id)).sort((a, b) => b[1] - a[1]);
const [victim, size] = added[0]!;
{
  const fh = await open(path.join(repo, 'data', victim.slice(0, 2), victim), 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, Math.floor(size / 2));
  b[0]! ^= 0xff;
  await fh.write(b, 0, 1, Math.floor(size / 2));
  await fh.close();
}
const snaps = await resticJson<Array<{ id: string; hostname: string }>>(r19, ['snapshots'], opts);
const h1 = snaps.find((s) => s.hostname === 'h1')!.id;
const h2 = snaps.find((s) => s.hostname === 'h2')!.id;

async function both(args: string[]): Promise<{ restic: number; stowage: number; resticOut: string; stowageOut: string }> {
  const r = await runRestic(r19, ['check', ...args], opts);
  const s = await runCli(['check', ...args], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD } });
  return { restic: r.code, stowage: s.code ?? -1, resticOut: r.stdout + r.stderr, stowageOut: s.stdout + s.stderr };
}

test('check --read-data of snapshots that do not use the damaged pack passes, for restic 0.19.1 and Stowage', async () => {
  for (const args of [['--host', 'h1'], ['--path', path.join(work, 'a')], [h1.slice(0, 8)]]) {
    const r = await both(['--read-data', ...args]);
    assert.equal(r.restic, 0, `restic ${args.join(' ')}: ${r.resticOut}`);
    assert.equal(r.stowage, 0, `stowage ${args.join(' ')}: ${r.stowageOut}`);
    for (const out of [r.resticOut, r.stowageOut]) {
      assert.match(out, /read all filtered data/);
      assert.match(out, /no errors were found/);
    }
  }
  // Without --read-data the pack's header and index entries are intact: no one notices.
  const plain = await both(['--host', 'h2']);
  assert.deepEqual([plain.restic, plain.stowage], [0, 0], plain.stowageOut);
});

test('check --read-data of a snapshot that uses the damaged pack, or of all, fails alike and names the pack', async () => {
  for (const args of [['--tag', 'two'], [h1, h2.slice(0, 8)], []]) {
    const r = await both(['--read-data', ...args]);
    assert.equal(r.restic, 1, `restic ${args.join(' ')}: ${r.resticOut}`);
    assert.equal(r.stowage, 1, `stowage ${args.join(' ')}: ${r.stowageOut}`);
    for (const out of [r.resticOut, r.stowageOut]) {
      assert.match(out, new RegExp(`pack ${victim}`));
      assert.match(out, args.length ? /read all filtered data/ : /read all data/);
    }
  }
});

test('check of a snapshot ID that does not exist: both fail', async () => {
  const r = await both(['ffffffff']);
  assert.notEqual(r.restic, 0, r.resticOut);
  assert.equal(r.stowage, r.restic, `${r.stowageOut}\nrestic: ${r.resticOut}`);
});
