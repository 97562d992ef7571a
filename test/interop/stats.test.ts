// `stowage stats` against restic on the same repository: every mode, with snapshot selection
// (IDs, latest, --host, --tag, --path, and a filter given beside IDs), --json compared as the
// exact line restic 0.19.1 prints (so every field, its value, its absence and the key order) and
// the text report compared line by line (the elapsed time of the status line aside). The
// repository (v2, compressed) holds folders, hard links, duplicate files, an empty file, a
// symlink and a file of several chunks, in three snapshots from two hosts: two by restic, one by
// Stowage. A small v1 repository checks raw-data without compression. restic 0.14 has the same
// four modes: its JSON must match too, but for raw-data, where 0.14 prints total_file_count 0
// and knows nothing of compression.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, link, mkdir, symlink, writeFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'stats interop';
const work = await tmpDir('stowage-stats');
const src = path.join(work, 'src');
const repo = path.join(work, 'repo');
const r19 = resticBin('0.19');
const r14 = resticBin('0.14');
const ropts = { repo, password: PASSWORD, cwd: work };
const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC' };

// Deterministic bytes: a compressible half and an incompressible half, ~2.5 MiB (several chunks).
function bigFile(): Buffer {
  const b = Buffer.alloc(2_600_000);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i++) {
    if (i < b.length / 2) b[i] = (i >> 7) & 0xff;
    else {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      b[i] = x & 0xff;
    }
  }
  return b;
}

await mkdir(path.join(src, 'dir/sub'), { recursive: true });
await mkdir(path.join(src, 'other'), { recursive: true });
await writeFile(path.join(src, 'big.bin'), bigFile());
await writeFile(path.join(src, 'dir/sub/deep.txt'), 'deep\n');
await writeFile(path.join(src, 'dir/dup1.txt'), 'the same content\n');
await writeFile(path.join(src, 'other/dup2.txt'), 'the same content\n');
await writeFile(path.join(src, 'empty'), '');
await writeFile(path.join(src, 'linked'), 'x'.repeat(1000));
await link(path.join(src, 'linked'), path.join(src, 'dir/linked-too'));
await symlink('big.bin', path.join(src, 'sym'));

await resticOk(r19, ['init'], ropts);
await resticOk(r19, ['backup', '--host', 'alpha', '--tag', 'one', src], ropts);
await appendFile(path.join(src, 'dir/sub/deep.txt'), 'deeper\n');
await writeFile(path.join(src, 'other/new.txt'), 'the same content\n');
await resticOk(r19, ['backup', '--host', 'beta', '--tag', 'two', src], ropts);
await rm(path.join(src, 'other/dup2.txt'));
await writeFile(path.join(src, 'other/more.txt'), 'more\n');
const own = await runCli(['backup', '--host', 'alpha', '--tag', 'three', '--no-cache', src], { env });
assert.equal(own.code, 0, own.stderr);
const ids = (await resticJson<Array<{ id: string; hostname: string }>>(r19, ['snapshots'], ropts)).map((s) => s.id);
assert.equal(ids.length, 3);

const MODES = ['restore-size', 'files-by-contents', 'blobs-per-file', 'raw-data'];
const SELECTIONS: string[][] = [
  [],
  ['latest'],
  ['--host', 'alpha'],
  ['--tag', 'two'],
  ['--path', src],
  [ids[0]!.slice(0, 8), ids[2]!],
  ['latest', '--host', 'beta'],
];

async function both(args: string[], where = ropts, cliEnv = env) {
  const theirs = await runRestic(r19, args, where);
  const ours = await runCli([...args, '--no-cache'], { env: cliEnv });
  return { theirs, ours };
}

test('stats --json: every mode, and each selection in two modes, prints restic 0.19\'s line', async () => {
  // Every mode over all snapshots; each selection in the mode after and the mode before its turn
  // (a process costs about a second on a loaded machine, so not every pair).
  const runs: Array<[string, string[]]> = MODES.map((m) => [m, []]);
  SELECTIONS.slice(1).forEach((sel, i) => runs.push([MODES[i % 4]!, sel], [MODES[(i + 3) % 4]!, sel]));
  for (const [mode, sel] of runs) {
    const args = ['stats', '--mode', mode, ...sel, '--json'];
    const { theirs, ours } = await both(args);
    assert.equal(theirs.code, 0, theirs.stderr);
    assert.equal(ours.code, 0, `${args.join(' ')}: ${ours.stderr}`);
    assert.equal(ours.stdout, theirs.stdout, args.join(' '));
  }
});

test('stats counts what the test repository holds (so the comparison covers each case)', async () => {
  const one = (mode: string, sel: string[]) => resticJson<Record<string, number>>(r19, ['stats', '--mode', mode, ...sel], ropts);
  // restore-size counts every node; the hard link's size once per snapshot.
  // (the folders above src are nodes of the snapshot too)
  const first = await one('restore-size', [ids[0]!]);
  assert.equal(first.total_file_count, 11 + src.split('/').length - 1);
  assert.equal(first.total_size, 2_600_000 + 5 + 17 * 2 + 1000);
  // raw-data in a v2 repository reports compression.
  const raw = await one('raw-data', []);
  assert.ok(raw.compression_ratio! > 1 && raw.compression_progress! > 0 && raw.compression_space_saving! > 0, JSON.stringify(raw));
});

test('stats text report: the same lines as restic 0.19 (status line by its shape), ignored references on stderr', async () => {
  // restic's last status line counts the snapshot it walked last, in the order its parallel
  // listing returned them; Stowage walks them oldest first. So that line is compared by shape.
  const time = (s: string) => s.replace(/^\[\d+:\d\d\] +(100\.00%)?  \d+ \/ \d+ snapshots(, \d+ files)?(, \d+ blobs)?, [\d.]+ [KMG]?i?B$/m, '[status]');
  for (const mode of MODES) {
    const { theirs, ours } = await both(['stats', '--mode', mode]);
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(time(ours.stdout), time(theirs.stdout), mode);
  }
  const { theirs, ours } = await both(['stats', ids[1]!.slice(0, 8), 'deadbeef', '--host', 'alpha']);
  assert.equal(ours.code, theirs.code);
  assert.equal(time(ours.stdout), time(theirs.stdout));
  for (const line of ['Ignoring "deadbeef": ', 'Ignoring "filters": explicit snapshot ids are given']) {
    assert.ok(theirs.stderr.includes(line), theirs.stderr);
    assert.ok(ours.stderr.includes(line), ours.stderr);
  }
  const bad = await both(['stats', '--mode', 'bogus']);
  assert.equal(bad.theirs.code, 1);
  assert.equal(bad.ours.code, 1);
  assert.match(bad.ours.stderr, /unknown counting mode: bogus/);
});

test('stats --json equals restic 0.14\'s where 0.14 counts the same (all but raw-data\'s compression)', async () => {
  for (const mode of MODES) {
    for (const sel of [[]]) {
      const args = ['stats', '--mode', mode, ...sel];
      const theirs = await resticJson<Record<string, number>>(r14, args, ropts);
      const ours = await runCli([...args, '--json', '--no-cache'], { env });
      assert.equal(ours.code, 0, ours.stderr);
      const o = JSON.parse(ours.stdout) as Record<string, number>;
      if (mode === 'raw-data') {
        for (const k of ['total_size', 'total_blob_count', 'snapshots_count']) assert.equal(o[k], theirs[k], `${args.join(' ')} ${k}`);
      } else assert.deepEqual(o, theirs, args.join(' '));
    }
  }
});

test('stats raw-data and blobs-per-file in a v1 repository: no compression fields, as restic 0.19', async () => {
  const v1 = path.join(work, 'repo-v1');
  const v1opts = { repo: v1, password: PASSWORD, cwd: work };
  const v1env = { ...env, RESTIC_REPOSITORY: v1 };
  await resticOk(r19, ['init', '--repository-version', '1'], v1opts);
  await resticOk(r19, ['backup', '--host', 'alpha', path.join(src, 'dir')], v1opts);
  const own1 = await runCli(['backup', '--no-cache', path.join(src, 'other')], { env: v1env });
  assert.equal(own1.code, 0, own1.stderr);
  for (const mode of ['raw-data', 'blobs-per-file']) {
    const { theirs, ours } = await both(['stats', '--mode', mode, '--json'], v1opts, v1env);
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout, mode);
    assert.doesNotMatch(ours.stdout, /compression/);
  }
});
