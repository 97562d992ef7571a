// Format details restic 0.15–0.19 settled, checked on repositories restic 0.19.1 made:
// - an empty lock file (an upload cut short on a backend without atomic writes) is ignored, as
//   restic ≥ 0.15.1 ignores it: backups go on, unlock leaves it, unlock --remove-all removes it;
// - lock and snapshot files above Stowage's size caps are refused before they are decrypted or
//   inflated further (SizeLimitError naming the file) — restic has no such cap;
// - fields other tools write into snapshots (rustic's label, description, delete, parents) are
//   kept when Stowage rewrites the snapshot (tag), and left out of what `snapshots --json` shows,
//   as restic shows them;
// - a v1 repository whose index splits one pack's entries over two files and repeats one file
//   (what restic < 0.10 could leave) reads as one index: restore, stats and list equal restic's,
//   a refresh adds the second half, and `repair index` writes an index restic 0.19 checks clean.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { SizeLimitError } from '../../src/errors.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { listLocks } from '../../src/repository/lock.ts';
import { readIndexFile } from '../../src/repository/index-loader.ts';
import { encodeIndexFile } from '../../src/repository/index-file.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'format details';
const work = await tmpDir('stowage-format');
const src = path.join(work, 'src');
await mkdir(src, { recursive: true });
await writeFile(path.join(src, 'big'), randomBytes(2_700_000));
await writeFile(path.join(src, 'small'), 'small\n');
// Two more small files, so the data pack holds at least three blobs however the big file chunks
// (restic's chunker polynomial is random: 2.7 MB is one chunk about one time in ten).
await writeFile(path.join(src, 'small-2'), 'small 2\n');
await writeFile(path.join(src, 'small-3'), 'small 3\n');
const r19 = resticBin('0.19');

async function makeRepo(name: string, version: '1' | '2') {
  const dir = path.join(work, name);
  const ropts = { repo: dir, password: PASSWORD, cwd: work };
  await resticOk(r19, ['init', '--repository-version', version], ropts);
  await resticOk(r19, ['backup', '--host', 'h', src], ropts);
  return { dir, ropts, env: { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: PASSWORD } };
}
const v2 = await makeRepo('v2', '2');
const open = (dir: string) => Repository.open(new LocalBackend(dir), { password: PASSWORD });
const cli = (args: string[], env: Record<string, string>) => runCli([...args, '--no-cache'], { env });

test('an empty lock file is ignored as restic ≥ 0.15.1 ignores it; unlock --remove-all removes it', async () => {
  const empty = createHash('sha256').update('').digest('hex');
  await mkdir(path.join(v2.dir, 'locks'), { recursive: true });
  await writeFile(path.join(v2.dir, 'locks', empty), '');
  const ours = await cli(['backup', '--host', 'h', src], v2.env);
  assert.equal(ours.code, 0, ours.stderr);
  assert.equal((await runRestic(r19, ['backup', '--host', 'h', src], v2.ropts)).code, 0, 'restic 0.19 backs up beside it too');
  assert.equal((await cli(['unlock'], v2.env)).code, 0);
  assert.deepEqual(await readdir(path.join(v2.dir, 'locks')), [empty], 'unlock leaves it, as restic\'s does');
  assert.equal((await cli(['list', 'locks'], v2.env)).stdout, `${empty}\n`);
  assert.equal((await cli(['unlock', '--remove-all'], v2.env)).code, 0);
  assert.deepEqual(await readdir(path.join(v2.dir, 'locks')), []);
});

test('lock files over 1 MiB and snapshots inflating past 64 MiB are refused, naming the file', async () => {
  const repo = await open(v2.dir);
  // A lock file 1 byte over the cap: refused from the listing's size, before it is read.
  const big = randomBytes((1 << 20) + 1);
  const lockId = createHash('sha256').update(big).digest('hex');
  await writeFile(path.join(v2.dir, 'locks', lockId), big);
  await assert.rejects(listLocks(repo), (e: unknown) => e instanceof SizeLimitError && e.file === `locks/${lockId}` && e.limit === 1 << 20 && e.size === big.length);
  const backup = await cli(['backup', '--host', 'h', src], v2.env);
  assert.equal(backup.code, 1);
  assert.match(backup.stderr, new RegExp(`larger than the 1048576 bytes accepted \\(file locks/${lockId}\\)`));
  await rm(path.join(v2.dir, 'locks', lockId));
  // A snapshot of 70 MiB of JSON whitespace, stored compressed in a few KiB: refused while inflating.
  const latest = await loadSnapshot(repo, 'latest');
  const json = `{"time":"2024-01-01T00:00:00Z","tree":"${latest.snapshot.tree}","paths":["/x"]${' '.repeat(70 << 20)}}`;
  const bombId = await repo.saveUnpacked('snapshots', Buffer.from(json));
  try {
    assert.ok((await readFile(path.join(v2.dir, 'snapshots', bombId))).length < 1 << 20);
    await assert.rejects(loadSnapshot(repo, bombId), (e: unknown) => e instanceof SizeLimitError && e.file === `snapshots/${bombId}` && e.limit === 64 << 20);
    const snaps = await cli(['snapshots'], v2.env);
    assert.equal(snaps.code, 1);
    assert.match(snaps.stderr, new RegExp(`more than 67108864 .*\\(file snapshots/${bombId}\\)`));
  } finally {
    await rm(path.join(v2.dir, 'snapshots', bombId));
  }
});

test('rustic\'s snapshot fields survive `stowage tag`; snapshots --json shows restic\'s fields, as restic 0.19', async () => {
  const repo = await open(v2.dir);
  const base = await loadSnapshot(repo, 'latest');
  const raw = JSON.parse(Buffer.from(await repo.loadUnpacked('snapshots', base.id)).toString()) as Record<string, unknown>;
  const extra = { label: 'nightly', description: 'the <db> & more\n', delete: { After: '2030-01-01T00:00:00Z' }, parents: [base.id] };
  const rusticId = await repo.saveUnpacked('snapshots', Buffer.from(JSON.stringify({ ...raw, ...extra })));
  const tagged = await cli(['tag', '--add', 'kept', rusticId.slice(0, 8), '--json'], v2.env);
  assert.equal(tagged.code, 0, tagged.stderr);
  const newId = (JSON.parse(tagged.stdout.split('\n')[0]!) as { new_snapshot_id: string }).new_snapshot_id;
  const after = JSON.parse(Buffer.from(await repo.loadUnpacked('snapshots', newId)).toString()) as Record<string, unknown>;
  assert.deepEqual({ label: after.label, description: after.description, delete: after.delete, parents: after.parents }, extra);
  assert.deepEqual(after.tags, [...((raw.tags as string[] | undefined) ?? []), 'kept']);
  assert.equal(after.original, rusticId);
  const theirs = await resticJson<Array<Record<string, unknown>>>(r19, ['snapshots', newId], v2.ropts);
  const ours = await cli(['snapshots', newId, '--json'], v2.env);
  assert.equal(ours.code, 0, ours.stderr);
  assert.deepEqual(JSON.parse(ours.stdout), theirs);
});

test('a v1 index with one pack split over two files and a duplicated file reads as restic 0.19 reads it', async () => {
  const v1 = await makeRepo('v1', '1');
  const repo = await open(v1.dir);
  const [indexId] = await readdir(path.join(v1.dir, 'index'));
  const packs = await readIndexFile(repo, indexId!);
  const data = packs.find((p) => p.blobs.length >= 3 && p.blobs.every((b) => b.type === 'data'))!;
  assert.ok(data, 'a data pack of several blobs');
  const k = Math.floor(data.blobs.length / 2);
  const firstHalf = packs.map((p) => (p === data ? { id: p.id, blobs: p.blobs.slice(0, k) } : p));
  const secondHalf = [{ id: data.id, blobs: data.blobs.slice(k) }];
  await repo.saveUnpacked('index', encodeIndexFile(firstHalf));
  await rm(path.join(v1.dir, 'index', indexId!));
  // Loaded now, the index lacks the second half; a refresh after the other files appear adds it.
  const indexed = await repo.loadIndex();
  const late = secondHalf[0]!.blobs[0]!.id as BlobId;
  assert.equal(indexed.index.lookup(late).length, 0);
  await repo.saveUnpacked('index', encodeIndexFile(secondHalf));
  await writeFile(path.join(v1.dir, 'index', 'ff'.repeat(32) + '.tmp'), ''); // not an index file: ignored by both
  const dupDir = path.join(v1.dir, 'index');
  const secondId = (await readdir(dupDir)).find((n) => n !== indexId && /^[0-9a-f]{64}$/.test(n) && n !== (indexed.indexFiles.keys().next().value as string))!;
  // The duplicate: the second half again, under another name (an index file with `supersedes` differs in bytes).
  const dup = JSON.parse(Buffer.from(await repo.loadUnpacked('index', secondId)).toString()) as { packs: unknown[]; supersedes?: string[] };
  await repo.saveUnpacked('index', Buffer.from(JSON.stringify({ supersedes: [], packs: dup.packs })));
  await indexed.refresh();
  assert.equal(indexed.index.lookup(late).length, 1, 'the split half is added by a refresh, once');
  await rm(path.join(v1.dir, 'index', 'ff'.repeat(32) + '.tmp'));

  // Read as restic reads it.
  const sorted = (s: string) => s.split('\n').filter(Boolean).sort();
  for (const args of [['list', 'blobs'], ['stats', '--mode', 'raw-data', '--json'], ['stats', '--mode', 'blobs-per-file', '--json']]) {
    const theirs = await resticOk(r19, args, v1.ropts);
    const ours = await cli(args, v1.env);
    assert.equal(ours.code, 0, ours.stderr);
    assert.deepEqual(sorted(ours.stdout), sorted(theirs.stdout), args.join(' '));
  }
  const out = path.join(work, 'restored');
  const restored = await cli(['restore', 'latest', '--target', out], v1.env);
  assert.equal(restored.code, 0, restored.stderr);
  assert.ok((await readFile(path.join(out, src, 'big'))).equals(await readFile(path.join(src, 'big'))));

  // Rewritten by Stowage: one entry per blob, and restic 0.19 checks it clean.
  const repaired = await cli(['repair', 'index'], v1.env);
  assert.equal(repaired.code, 0, repaired.stderr);
  const check = await runRestic(r19, ['check'], v1.ropts);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const blobs = sorted((await resticOk(r19, ['list', 'blobs'], v1.ropts)).stdout);
  assert.equal(new Set(blobs).size, blobs.length, 'no blob listed twice');
  assert.ok(blobs.includes(`data ${late}`));
});
