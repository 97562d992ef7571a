// Blobs go into packs in a random order across two open packs, as restic ≥ 0.18 assigns them
// (its mitigation of chunk-size fingerprinting, restic #5291): a file's consecutive chunks do not
// fill one pack after another, so which chunks share a pack (and so the chunk boundaries) cannot
// be read off pack sizes. Deduplication is unchanged: a second backup and restic 0.19.1's backup of
// the same files add no data, and restic 0.19.1 and 0.14 check --read-data pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend, Repository, decodeTree, loadSnapshot } from '../../src/index.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { resticBin, resticJsonLines, resticOk } from '../helpers/restic.ts';

const PASSWORD = 'pack order test';
const work = await tmpDir('stowage-pack-order');
const repo = path.join(work, 'repo');
const src = path.join(work, 'src');
await mkdir(src);
await writeFile(path.join(src, 'big'), randomBytes(32 << 20));
const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };

test('a file\'s chunks are spread over two open packs at random, not stored pack after pack in file order', async () => {
  assert.equal((await runCli(['init'], { env })).code, 0);
  const b = await runCli(['backup', src, '--no-cache'], { env });
  assert.equal(b.code, 0, b.stderr);

  await using r = await Repository.open(new LocalBackend(repo), { password: PASSWORD });
  const indexed = await r.loadIndex();
  const { snapshot } = await loadSnapshot(indexed, 'latest');
  // Down the source path to the file.
  const load = async (id: BlobId) => decodeTree(await indexed.loadBlob('tree', id), id);
  let nodes = await load(snapshot.tree as BlobId);
  for (const name of src.split('/').filter(Boolean)) nodes = await load(nodes.find((n) => n.name === name)!.subtree!);
  const content = nodes.find((n) => n.name === 'big')!.content!;
  const packs = content.map((id) => indexed.index.lookup(id, 'data')[0]!.packId);
  // Runs of consecutive chunks in the same pack. Filled one after another (the old way, and
  // restic < 0.18), each pack is one run; spread at random, some pack holds two runs or more.
  let runs = 1;
  for (let i = 1; i < packs.length; i++) if (packs[i] !== packs[i - 1]) runs++;
  const distinct = new Set(packs).size;
  assert.ok(content.length >= 8, `${content.length} chunks`);
  assert.ok(runs > distinct, `${content.length} chunks in ${distinct} packs form ${runs} runs: file order`);
  // Every pack but the last two still reaches the target size (16 MiB).
  const all = indexed.index.packs();
  const sizes = [...new Set(packs)].map((p) => all.get(p)!.reduce((s, x) => s + x.length, 0));
  assert.ok(sizes.filter((s) => s >= 16 << 20).length >= distinct - 2, `pack sizes ${sizes.join(' ')}`);
});

test('deduplication is kept: a second backup and restic 0.19.1\'s add no data; restic check --read-data passes', async () => {
  const again = await runCli(['backup', src, '--no-cache', '--json'], { env });
  assert.equal(again.code, 0, again.stderr);
  const ours = again.stdout.trim().split('\n').map((l) => JSON.parse(l) as { message_type: string; data_blobs?: number }).find((m) => m.message_type === 'summary')!;
  assert.equal(ours.data_blobs, 0);
  const r19 = resticBin('0.19');
  const theirs = (await resticJsonLines<{ message_type: string; data_blobs?: number }>(r19, ['backup', src], { repo, password: PASSWORD })).find((m) => m.message_type === 'summary')!;
  assert.equal(theirs.data_blobs, 0, 'restic finds every chunk already stored');
  await resticOk(r19, ['check', '--read-data'], { repo, password: PASSWORD });
  await resticOk(resticBin('0.14'), ['check', '--read-data'], { repo, password: PASSWORD });
});

test('the packs left open at the end are merged (as restic): a small backup stores its chunks in one data pack', async () => {
  const small = path.join(work, 'small');
  await mkdir(small);
  // Each below the chunker's minimum size: one chunk each, which would land in either open pack.
  for (let i = 0; i < 4; i++) await writeFile(path.join(small, `f${i}`), randomBytes(300_000));
  const dataPacks = async () => {
    await using r = await Repository.open(new LocalBackend(repo), { password: PASSWORD });
    const out = new Set<string>();
    for (const [id, blobs] of (await r.loadIndex()).index.packs()) if (blobs.some((b) => b.type === 'data')) out.add(id);
    return out;
  };
  const before = await dataPacks();
  const b = await runCli(['backup', small, '--no-cache'], { env });
  assert.equal(b.code, 0, b.stderr);
  const added = [...(await dataPacks())].filter((p) => !before.has(p));
  assert.equal(added.length, 1, `the 4 chunks went into ${added.length} packs`);
});
