// check, repair index and repair snapshots against the real restic:
//   - every index file deleted → `stowage repair index` → restic check --read-data passes and
//     lists the same snapshots; the index equals the one restic's own repair index builds;
//   - a data pack deleted → Stowage's check names the snapshots and files that lose data →
//     `stowage repair index` + `repair snapshots --forget` → restic check passes, the undamaged
//     files restore exactly with restic, and restic's own repairs on an identical copy keep
//     the same files (the same trees, in fact).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticBin, resticJson, resticJsonLines, resticOk, resticVersions, runRestic } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { runCli } from '../helpers/cli.ts';

const PASSWORD = 'check repair password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

interface ResticSnapshot {
  id: string;
  time: string;
  tree: string;
  original?: string;
  tags?: string[];
  paths: string[];
}

interface LsNode {
  path?: string;
  type?: string;
  size?: number;
  struct_type?: string;
}

async function indexEntries(dir: string): Promise<string[]> {
  const repo = await Repository.open(new LocalBackend(dir), { password: PASSWORD });
  const indexed = await repo.loadIndex();
  return [...indexed.index.entries()].map((e) => `${e.type}:${e.id}:${e.packId}:${e.offset}:${e.length}:${e.uncompressedLength}`).sort();
}

async function removeIndexFiles(dir: string): Promise<void> {
  for (const name of await readdir(path.join(dir, 'index'))) await rm(path.join(dir, 'index', name));
}

const env = (repo: string) => ({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });

async function snapshotsOf(bin: string, repo: string): Promise<ResticSnapshot[]> {
  const list = await resticJson<ResticSnapshot[]>(bin, ['snapshots'], { repo, password: PASSWORD });
  return list.sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** What `restic ls` shows of a snapshot: path, type and size of every entry. */
async function listing(bin: string, repo: string, id: string): Promise<string[]> {
  const lines = await resticJsonLines<LsNode>(bin, ['ls', id], { repo, password: PASSWORD });
  return lines.filter((l) => l.struct_type === 'node').map((l) => `${l.type} ${l.path} ${l.size ?? ''}`).sort();
}

/** Output lines with IDs, numbers and durations replaced (sorted when the order means nothing). */
function outputShape(text: string, sorted: boolean): string[] {
  const lines = text.split('\n').map((l) => l
    .replace(/\b[0-9a-f]{8,64}\b/g, 'ID')
    .replace(/\b\d+:\d{2}(:\d{2})?\b/g, 'DUR')
    .replace(/\d+(\.\d+)?/g, 'N')
    .replace(/\s+/g, ' ').trim()).filter(Boolean);
  return sorted ? lines.sort() : lines;
}

describe('check and repair with the real restic', () => {
  let work: string;
  let src: string;
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-check-repair-'));
    src = path.join(work, 'src');
    await mkdir(path.join(src, 'dir/sub'), { recursive: true });
    // About 11 MiB: with 4 MiB packs, several data packs, so losing one loses some files only.
    for (const [name, size] of [['big1.bin', 3 << 20], ['big2.bin', 3 << 20], ['big3.bin', 3 << 20], ['dir/mid.bin', 1536 << 10]] as const) {
      await writeFile(path.join(src, name), randomBytes(size));
    }
    for (let i = 0; i < 20; i++) await writeFile(path.join(src, `dir/sub/small-${i}.txt`), `small file ${i}\n`.repeat(i + 1));
  });
  after(async () => {
    await removeTree(work);
  });

  it('the CLI refuses invalid --read-data-subset values before opening the repository, as restic', async () => {
    for (const bad of ['0/2', '3/2', '1/300', '5', '0%', 'abc']) {
      const ours = await runCli(['check', '--read-data-subset', bad], { env: env(path.join(work, 'does-not-exist')) });
      assert.equal(ours.code, 1, bad);
      assert.match(ours.stderr, /read-data-subset/, bad);
      const theirs = await runRestic(resticBin('0.19'), ['check', '--read-data-subset', bad], { repo: path.join(work, 'does-not-exist'), password: PASSWORD });
      assert.equal(theirs.code, 1, `restic refuses ${bad} too`);
    }
  });

  it('check --read-data-subset n/t prints restic 0.19.1\'s "read group" line as it is (no closing parenthesis)', async () => {
    const repo = path.join(work, 'subset');
    await resticOk(resticBin('0.19'), ['init'], { repo, password: PASSWORD });
    await resticOk(resticBin('0.19'), ['backup', path.join(src, 'dir/sub')], { repo, password: PASSWORD });
    const groupLine = (out: string) => out.split('\n').find((l) => l.startsWith('read group'));
    const theirs = await runRestic(resticBin('0.19'), ['check', '--read-data-subset', '1/3'], { repo, password: PASSWORD });
    const ours = await runCli(['check', '--read-data-subset', '1/3'], { env: env(repo) });
    assert.equal(theirs.code, 0, theirs.stderr);
    assert.equal(ours.code, 0, ours.stderr);
    assert.ok(groupLine(theirs.stdout), theirs.stdout);
    assert.equal(groupLine(ours.stdout), groupLine(theirs.stdout));
  });

  for (const writer of ['stowage', 'restic'] as const) {
    it(`repair index of a ${writer}-written repository whose index files were all deleted`, async () => {
      const dir = path.join(work, `noindex-${writer}`);
      const r019 = resticBin('0.19');
      if (writer === 'stowage') {
        const repo = await Repository.init(new LocalBackend(dir), { password: PASSWORD, kdf: FAST_KDF });
        await backup(await repo.loadIndex(), { paths: [src], hostname: 'h1' });
        await backup(await repo.loadIndex(), { paths: [path.join(src, 'dir')], hostname: 'h2' });
      } else {
        await resticOk(r019, ['init'], { repo: dir, password: PASSWORD });
        await resticOk(r019, ['backup', '--pack-size', '4', '--host', 'h1', src], { repo: dir, password: PASSWORD });
        await resticOk(r019, ['backup', '--pack-size', '4', '--host', 'h2', path.join(src, 'dir')], { repo: dir, password: PASSWORD });
      }
      const snapshotsBefore = await snapshotsOf(r019, dir);
      const entriesBefore = await indexEntries(dir);
      await removeIndexFiles(dir);
      const copy = `${dir}-restic`;
      await cp(dir, copy, { recursive: true });

      const res = await runCli(['repair', 'index'], { env: env(dir) });
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /adding pack file to index/);
      for (const { name, bin } of resticVersions()) {
        const check = await runRestic(bin, ['check', '--read-data'], { repo: dir, password: PASSWORD });
        assert.equal(check.code, 0, `restic ${name} check: ${check.stdout}\n${check.stderr}`);
        const ids = (list: ResticSnapshot[]) => list.map((s) => `${s.id} ${s.tree} ${s.time}`);
        assert.deepEqual(ids(await snapshotsOf(bin, dir)), ids(snapshotsBefore), `restic ${name} lists the same snapshots`);
      }
      assert.deepEqual(await indexEntries(dir), entriesBefore);

      // restic's own repair builds the same index.
      await resticOk(r019, ['repair', 'index'], { repo: copy, password: PASSWORD });
      assert.deepEqual(await indexEntries(copy), await indexEntries(dir));
      const stowageCheck = await runCli(['check', '--read-data', '--json'], { env: env(dir) });
      assert.equal(stowageCheck.code, 0, stowageCheck.stderr);
      assert.deepEqual(JSON.parse(stowageCheck.stdout), { message_type: 'summary', num_errors: 0, broken_packs: null, suggest_repair_index: false, suggest_prune: false });
    });
  }

  it('a lost data pack: check names what is lost; repair snapshots keeps what restic keeps', async () => {
    const r019 = resticBin('0.19');
    const dir = path.join(work, 'lost-pack');
    const opts = { repo: dir, password: PASSWORD, cwd: src };
    await resticOk(r019, ['init'], opts);
    await resticOk(r019, ['backup', '--pack-size', '4', '.'], opts);
    // The second snapshot changes one file and adds one; the rest is shared.
    await writeFile(path.join(src, 'big3.bin'), randomBytes(3 << 20));
    await writeFile(path.join(src, 'new.txt'), 'new in the second snapshot\n');
    await resticOk(r019, ['backup', '--pack-size', '4', '.'], opts);
    const original = (await snapshotsOf(r019, dir)).sort((a, b) => (a.time < b.time ? -1 : 1)); // oldest first
    assert.equal(original.length, 2);

    // Lose the data pack that holds the start of big1.bin (in both snapshots).
    const repo = await Repository.open(new LocalBackend(dir), { password: PASSWORD });
    const indexed = await repo.loadIndex();
    const root = decodeTree(await indexed.loadBlob('tree', original[0]!.tree as BlobId), original[0]!.tree);
    const big1 = root.find((n) => n.name === 'big1.bin')!;
    const pack = indexed.index.lookup(big1.content![0]!, 'data')[0]!.packId;
    await rm(path.join(dir, 'data', pack.slice(0, 2), pack));

    const report = await checkRepository(repo);
    const [lost] = report.errors.filter((e) => e.code === 'PACK_MISSING');
    assert.ok(lost, JSON.stringify(report.errors));
    assert.equal(lost.pack, pack);
    assert.deepEqual(lost.snapshots, original.map((s) => s.id).sort());
    assert.ok(lost.files?.includes('/big1.bin'), JSON.stringify(lost.files));
    assert.deepEqual(report.damagedSnapshots, original.map((s) => s.id).sort());
    // The files the latest snapshot loses.
    const latestOnly = await checkRepository(repo, { snapshotIds: [original[1]!.id] });
    const damagedFiles = new Set(latestOnly.errors.find((e) => e.code === 'PACK_MISSING')!.files!.map((f) => f.slice(1)));
    assert.ok(damagedFiles.has('big1.bin'));
    // restic agrees that the repository is damaged; Stowage's --json has restic's shape.
    const resticCheck = await runRestic(r019, ['check', '--json'], { repo: dir, password: PASSWORD });
    assert.notEqual(resticCheck.code, 0);
    const cliCheck = await runCli(['check', '--json'], { env: env(dir) });
    assert.equal(cliCheck.code, 1);
    const summary = JSON.parse(cliCheck.stdout) as Record<string, unknown>;
    const resticSummary = JSON.parse(resticCheck.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(summary).sort(), Object.keys(resticSummary).sort());
    assert.equal(summary.message_type, 'summary');
    assert.ok((summary.num_errors as number) > 0);
    const errorLines = cliCheck.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(errorLines.every((l) => l.message_type === 'error' && typeof l.message === 'string'));
    assert.ok(errorLines.some((l) => l.code === 'PACK_MISSING' && l.pack === pack));

    // Two identical copies: one repaired by Stowage (CLI), one by restic 0.19.
    const byRestic = `${dir}-restic`;
    await cp(dir, byRestic, { recursive: true });
    for (const args of [['repair', 'index'], ['repair', 'snapshots', '--forget']]) {
      const res = await runCli(args, { env: env(dir) });
      assert.equal(res.code, 0, `stowage ${args.join(' ')}: ${res.stderr}`);
      const theirs = await resticOk(r019, args, { repo: byRestic, password: PASSWORD });
      // restic's lines (its counters' last states, "snapshot ID of [PATHS] at TIME by USER@HOST",
      // each snapshot's outcome after it); restic takes the snapshots in listing order.
      const sorted = args[1] === 'snapshots';
      assert.deepEqual(outputShape(res.stdout, sorted), outputShape(theirs.stdout, sorted), `stowage ${args.join(' ')} prints restic's lines`);
      if (args[1] === 'index') assert.match(res.stderr, /^removing not found pack file [0-9a-f]{64}$/m);
    }

    for (const { name, bin } of resticVersions()) {
      const check = await runRestic(bin, ['check', '--read-data'], { repo: dir, password: PASSWORD });
      assert.equal(check.code, 0, `restic ${name} check after Stowage's repair: ${check.stdout}\n${check.stderr}`);
    }
    assert.deepEqual((await checkRepository(repo, { readData: true })).errors, []);

    const ours = await snapshotsOf(r019, dir);
    const theirs = await snapshotsOf(r019, byRestic);
    assert.equal(ours.length, 2);
    const byOriginal = (list: ResticSnapshot[]) => new Map(list.map((s) => [s.original, s]));
    const oursByOriginal = byOriginal(ours);
    const theirsByOriginal = byOriginal(theirs);
    for (const o of original) {
      const a = oursByOriginal.get(o.id);
      const b = theirsByOriginal.get(o.id);
      assert.ok(a && b, `both repaired snapshot ${o.id}`);
      assert.equal(a.tags, undefined, 'no tag with --forget');
      assert.deepEqual(await listing(r019, dir, a.id), await listing(r019, byRestic, b.id), `the same files are kept for ${o.id}`);
      assert.equal(a.tree, b.tree, 'the repaired trees are byte-identical to restic\'s');
      // The snapshot files hold the same JSON (their IDs differ: encryption is randomised).
      const cat = async (repo: string, id: string) => JSON.parse((await resticOk(r019, ['cat', 'snapshot', id], { repo, password: PASSWORD })).stdout) as unknown;
      assert.deepEqual(await cat(dir, a.id), await cat(byRestic, b.id));
    }

    // restic restores the repaired latest snapshot: undamaged files exactly, damaged ones shorter.
    const latest = ours.find((s) => s.original === original[1]!.id)!;
    const out = path.join(work, 'restore-repaired');
    await resticOk(r019, ['restore', latest.id, '--target', out], { repo: dir, password: PASSWORD });
    const diffs = await compareTrees(src, out, { ignoreRootMetadata: true, ignoreDirMtimes: true, exclude: (rel) => damagedFiles.has(rel) });
    assert.deepEqual(diffs, []);
    for (const f of damagedFiles) {
      assert.ok((await stat(path.join(out, f))).size < (await stat(path.join(src, f))).size, `${f} lost data`);
    }
  });
});
