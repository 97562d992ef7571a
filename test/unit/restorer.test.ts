// Restore: include/exclude selection, what a hostile tree or a hostile target folder can and
// cannot make the restorer do, overwriting, and damaged data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IntegrityError } from '../../src/errors.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { goTimeFromNs, goTimeNow } from '../../src/repository/gotime.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { GO_MODE_DIR } from '../../src/snapshot/model/mode.ts';
import type { TreeNode } from '../../src/snapshot/model/node.ts';
import { goStringToBytes } from '../../src/snapshot/model/gojson.ts';
import { encodeTree } from '../../src/snapshot/model/tree.ts';
import { encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { checkNodeName, planRestore, restore } from '../../src/snapshot/operations/restore/index.ts';
import { forEachWrite, NO_JOB, planContents, planRestore as planEntries, summarizePlan, type PlannedBlob } from '../../src/snapshot/operations/restore/plan.ts';
import { MAX_GAP, MAX_READ, STREAM_GAP, packRanges, packStreams } from '../../src/snapshot/operations/restore/ranges.ts';
import { NotFoundError } from '../../src/errors.ts';
import { zeroPrefixLength } from '../../src/snapshot/engine/decode-pool.ts';
import { TREE_BYTES, TreeLoader } from '../../src/snapshot/engine/tree-loader.ts';
import { NO_TARGET, restoreNode, walkRestoreTree } from '../../src/snapshot/operations/restore/walk.ts';
import type { BlobLocation } from '../../src/repository/master-index.ts';
import type { PackId } from '../../src/repository/id.ts';
import { CRYPTO_OVERHEAD } from '../../src/repository/crypto.ts';
import { MAX_JOB_BYTES } from '../../src/snapshot/engine/decode-pool.ts';
import { existsSync } from 'node:fs';
import { compareTrees } from '../helpers/compare-trees.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };

async function newRepo(): Promise<IndexedRepository> {
  const repo = await Repository.init(new MemoryBackend(), { password: 'pw', kdf: KDF });
  return repo.loadIndex();
}

/** Every path below `dir`, relative, sorted; folders end with '/'. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const name of await readdir(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if ((await lstat(join(dir, r))).isDirectory()) {
        out.push(`${r}/`);
        await walk(r);
      } else out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

// ---- selection -------------------------------------------------------------------------------

/** src/{a/{x.txt,y.bin}, b/z.txt, c.txt, d/e/f.txt}, backed up; returns the snapshot tree. */
async function selectionFixture() {
  const base = await tmpDir('stowage-select');
  const src = join(base, 'src');
  await mkdir(join(src, 'a'), { recursive: true });
  await mkdir(join(src, 'b'));
  await mkdir(join(src, 'd/e'), { recursive: true });
  await writeFile(join(src, 'a/x.txt'), 'x');
  await writeFile(join(src, 'a/y.bin'), randomBytes(5000));
  await writeFile(join(src, 'b/z.txt'), 'z');
  await writeFile(join(src, 'c.txt'), 'c');
  await writeFile(join(src, 'd/e/f.txt'), 'f');
  const repo = await newRepo();
  const r = await backup(repo, { paths: [src] });
  return { base, src, repo, tree: r.snapshot.tree };
}

/** Restores `tree` into base/name with the filters; lists the result below the source path. */
async function restoreWith(f: Awaited<ReturnType<typeof selectionFixture>>, name: string, include?: string[], exclude?: string[]) {
  const target = join(f.base, name);
  const r = await restore(f.repo, f.tree, { target, include, exclude });
  const all = await listTree(target);
  // Paths in the snapshot are the absolute source paths; `under` strips that prefix.
  const srcRel = f.src.slice(1);
  const under = all.filter((p) => p.startsWith(`${srcRel}/`) && p !== `${srcRel}/`).map((p) => p.slice(srcRel.length + 1));
  return { r, all, under, srcRel };
}

test('include picks what is restored; folders without a match are not created', async () => {
  const f = await selectionFixture();
  const all = await restoreWith(f, 'everything');
  assert.deepEqual(all.under, ['a/', 'a/x.txt', 'a/y.bin', 'b/', 'b/z.txt', 'c.txt', 'd/', 'd/e/', 'd/e/f.txt']);
  assert.equal(all.r.filesRestored, 5);
  assert.equal(all.r.bytesRestored, 5004);

  const onlyA = await restoreWith(f, 'only-a', [`${f.src}/a`]);
  assert.deepEqual(onlyA.under, ['a/', 'a/x.txt', 'a/y.bin']);
  assert.equal(onlyA.r.filesRestored, 2);
  // The folders leading to the match are there, nothing beside them.
  const a = `${onlyA.srcRel}/a/`;
  assert.ok(onlyA.all.every((p) => a.startsWith(p) || p.startsWith(a)), onlyA.all.join(' '));

  assert.deepEqual((await restoreWith(f, 'txt', ['*.txt'])).under, ['a/', 'a/x.txt', 'b/', 'b/z.txt', 'c.txt', 'd/', 'd/e/', 'd/e/f.txt']);
  assert.deepEqual((await restoreWith(f, 'deep', ['f.txt'])).under, ['d/', 'd/e/', 'd/e/f.txt']);
  assert.deepEqual((await restoreWith(f, 'nothing', ['no-such-name'])).all, []);
  assert.deepEqual((await restoreWith(f, 'negated', ['*.txt', '!c.txt'])).under, ['a/', 'a/x.txt', 'b/', 'b/z.txt', 'd/', 'd/e/', 'd/e/f.txt']);
  // Excluding a folder the walk still has to look into for includes.
  assert.deepEqual((await restoreWith(f, 'both', ['*.txt'], ['b'])).under, ['a/', 'a/x.txt', 'c.txt', 'd/', 'd/e/', 'd/e/f.txt']);
  // An exclude at the top level of the snapshot.
  assert.deepEqual((await restoreWith(f, 'top', undefined, [`/${f.src.split('/')[1]}`])).all, []);
});

// RestoreRun.walk passes `forced` to the children of every selected folder, and a forced walk
// skips the exclude check: without includes every top-level folder is selected, so excludes
// only ever apply to the entries at the snapshot root.
test('exclude leaves matching entries out at any depth', async () => {
  const f = await selectionFixture();
  assert.deepEqual((await restoreWith(f, 'no-txt', undefined, ['*.txt'])).under, ['a/', 'a/y.bin', 'b/', 'd/', 'd/e/']);
  assert.deepEqual((await restoreWith(f, 'no-d', undefined, [`${f.src}/d`])).under, ['a/', 'a/x.txt', 'a/y.bin', 'b/', 'b/z.txt', 'c.txt']);
  assert.deepEqual((await restoreWith(f, 'inc-exc', [`${f.src}/a`], ['*.bin'])).under, ['a/', 'a/x.txt']);
});

test('restoring again over a restored tree puts back changed and removed files', async () => {
  const { base, src, repo, tree } = await selectionFixture();
  const target = join(base, 'again');
  await restore(repo, tree, { target });
  const out = join(target, src);
  await writeFile(join(out, 'c.txt'), 'changed');
  await writeFile(join(out, 'a/extra'), 'not in the snapshot');
  await rm(join(out, 'd'), { recursive: true });
  const progress: number[] = [];
  const res = await restore(repo, tree, { target, onProgress: (p) => progress.push(p.filesDone) });
  // The first event is the plan (nothing done yet), then one per file written: only the changed
  // and the removed ones, the others already hold the snapshot's contents (restic's --overwrite
  // always reads them and leaves them).
  assert.deepEqual(progress, [0, 1, 2]);
  assert.equal(res.filesSkipped, 3);
  assert.deepEqual(await compareTrees(src, out, { exclude: (rel) => rel === 'a/extra', ignoreDirMtimes: true }), []);
  assert.equal(await readFile(join(out, 'a/extra'), 'utf8'), 'not in the snapshot', 'restore does not delete extra files');
});

test('links planted in the target are replaced, never written through', async () => {
  const { base, src, repo, tree } = await selectionFixture();
  const outside = join(base, 'outside');
  await mkdir(outside);
  await writeFile(join(outside, 'victim'), 'keep me');
  const target = join(base, 'planted');
  const out = join(target, src);
  await mkdir(out, { recursive: true });
  await symlink(outside, join(out, 'a')); // a folder in the snapshot
  await symlink(join(outside, 'victim'), join(out, 'c.txt')); // a file in the snapshot
  await restore(repo, tree, { target });
  assert.deepEqual(await readdir(outside), ['victim']);
  assert.equal(await readFile(join(outside, 'victim'), 'utf8'), 'keep me');
  assert.ok((await lstat(join(out, 'a'))).isDirectory());
  assert.ok((await lstat(join(out, 'c.txt'))).isFile());
  assert.deepEqual(await compareTrees(src, out, { ignoreDirMtimes: true }), []);
});

// ---- hostile trees ---------------------------------------------------------------------------

function fileNode(name: string, content: BlobId[], size: number): TreeNode {
  const t = goTimeNow();
  return { name, type: 'file', mode: 0o644, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, size, content };
}

function dirNode(name: string, subtree: BlobId): TreeNode {
  const t = goTimeNow();
  return { name, type: 'dir', mode: (GO_MODE_DIR | 0o755) >>> 0, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, subtree, content: null };
}

/** Tree bytes with one node whose name is `name` (which encodeTree itself would refuse). */
function treeWithName(node: TreeNode, name: string): Uint8Array {
  const placeholder = 'PLACEHOLDER-NAME';
  const json = Buffer.from(encodeTree([{ ...node, name: placeholder }])).toString();
  return Buffer.from(json.replace(`"name":"${placeholder}"`, `"name":${JSON.stringify(name)}`));
}

test('checkNodeName refuses names that leave their folder', () => {
  for (const bad of ['', '.', '..', 'a/b', '/', '../x', 'x\0y']) {
    assert.throws(() => checkNodeName(Buffer.from(bad), 'ab'.repeat(32)), IntegrityError, JSON.stringify(bad));
  }
  for (const ok of ['...', '.hidden', 'a\\b', ' ', 'ü']) checkNodeName(Buffer.from(ok), 'ab'.repeat(32));
});

test('a hostile tree is refused with IntegrityError and nothing is written outside the target', async () => {
  const hostileNames = ['..', '.', '', 'a/b', '../escaped', '../../escaped', 'x\u0000y'];
  for (const where of ['root', 'below'] as const) {
    for (const name of hostileNames) {
      const base = await tmpDir('stowage-hostile');
      const repo = await newRepo();
      const w = repo.blobWriter();
      const payload = Buffer.from('payload that must stay inside the target');
      const { id: dataId } = await w.saveBlob('data', payload);
      // A file, and a folder holding a file, both under the hostile name.
      const { id: inner } = await w.saveBlob('tree', encodeTree([fileNode('escaped', [dataId], payload.length)]));
      const trees: BlobId[] = [];
      for (const node of [fileNode('x', [dataId], payload.length), dirNode('x', inner)]) {
        let { id } = await w.saveBlob('tree', treeWithName(node, name));
        // Below: the hostile tree sits one folder down, under a harmless name.
        if (where === 'below') id = (await w.saveBlob('tree', encodeTree([dirNode('ok', id)]))).id;
        trees.push(id);
      }
      await w.flush();
      for (const tree of trees) {
        const t = goTimeNow();
        const snapshotId = await repo.repo.saveUnpacked('snapshots', encodeSnapshot({ time: t, tree, paths: ['/x'], hostname: 'h' }));
        const { snapshot } = await loadSnapshot(repo.repo, snapshotId);
        const target = join(base, 'inner', 'target');
        await assert.rejects(restore(repo, snapshot.tree, { target }), (e: unknown) => {
          assert.ok(e instanceof IntegrityError, `${JSON.stringify(name)} (${where}): ${String(e)}`);
          return true;
        });
        // Only the target exists, and in it at most the harmless folder.
        assert.deepEqual(await listTree(base), ['inner/', 'inner/target/', ...(where === 'below' ? ['inner/target/ok/'] : [])], JSON.stringify(name));
      }
    }
  }
});

test('a tree with duplicate or unsorted names is refused', async () => {
  const base = await tmpDir('stowage-unsorted');
  const repo = await newRepo();
  const w = repo.blobWriter();
  const { id: dataId } = await w.saveBlob('data', Buffer.from('d'));
  const a = Buffer.from(encodeTree([fileNode('a', [dataId], 1)])).toString();
  const b = Buffer.from(encodeTree([fileNode('b', [dataId], 1)])).toString();
  const node = (s: string) => s.slice('{"nodes":['.length, s.length - ']}\n'.length);
  for (const pair of [[b, a], [a, a]]) {
    const { id } = await w.saveBlob('tree', Buffer.from(`{"nodes":[${node(pair[0]!)},${node(pair[1]!)}]}\n`));
    await w.flush();
    await assert.rejects(restore(repo, id, { target: join(base, 't') }), IntegrityError);
  }
  assert.deepEqual(await listTree(base), ['t/']);
});

test('damaged file data is an IntegrityError naming the blob; no unverified byte is written', async () => {
  const base = await tmpDir('stowage-damaged');
  const src = join(base, 'src');
  await mkdir(src);
  const content = randomBytes(10_000);
  await writeFile(join(src, 'file'), content);
  const backend = new MemoryBackend();
  const repo = await (await Repository.init(backend, { password: 'pw', kdf: KDF })).loadIndex();
  const r = await backup(repo, { paths: [src] });
  const [dataBlob] = [...repo.index.entries()].filter((e) => e.type === 'data');
  const pack = Buffer.from(await backend.load({ type: 'data', name: dataBlob!.packId }));
  pack[dataBlob!.offset + 100]! ^= 1;
  await backend.save({ type: 'data', name: dataBlob!.packId }, pack);
  const target = join(base, 'restore');
  await assert.rejects(restore(repo, r.snapshot.tree, { target }), (e: unknown) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.equal(e.blob, dataBlob!.id);
    return true;
  });
  const restored = await readFile(join(target, src, 'file')).catch(() => Buffer.alloc(0));
  assert.equal(restored.length, 0, 'the damaged blob was not written');
});

test('symlinks are restored as links with their exact target', async () => {
  const base = await tmpDir('stowage-symlinks');
  const src = join(base, 'src');
  await mkdir(src);
  await symlink('../../../../etc/passwd', join(src, 'up'));
  await symlink('/nonexistent/abs', join(src, 'abs'));
  const repo = await newRepo();
  const r = await backup(repo, { paths: [src] });
  const target = join(base, 'restore');
  await restore(repo, r.snapshot.tree, { target });
  assert.equal(await readlink(join(target, src, 'up')), '../../../../etc/passwd');
  assert.equal(await readlink(join(target, src, 'abs')), '/nonexistent/abs');
});

// Files are restored several at a time; the second name of a hard link is linked to the first
// as soon as the first is *registered*, which can be before the first file exists.
test('hard links restore with the default concurrency', async () => {
  const base = await tmpDir('stowage-hardlinks');
  const src = join(base, 'src');
  await mkdir(src);
  for (let i = 0; i < 40; i++) {
    await writeFile(join(src, `f${i}`), `content ${i}`);
    await link(join(src, `f${i}`), join(src, `f${i}-link`));
  }
  const repo = await newRepo();
  const r = await backup(repo, { paths: [src] });
  for (let k = 0; k < 5; k++) {
    const target = join(base, `restore-${k}`);
    await restore(repo, r.snapshot.tree, { target });
    assert.deepEqual(await compareTrees(src, join(target, src)), []);
  }
});

// ---- the plan, without a file system ---------------------------------------------------------

const hex = (c: string) => c.repeat(64);
const MiB = 1024 * 1024;

/** A fake index: blob id → its location (sealed length = plaintext + CRYPTO_OVERHEAD). */
function fakeIndex(entries: Array<[id: string, pack: string, offset: number, plain: number]>): (id: BlobId) => BlobLocation | undefined {
  const m = new Map<string, BlobLocation>();
  for (const [id, pack, offset, plain] of entries) {
    m.set(hex(id), { type: 'data', id: hex(id) as BlobId, packId: hex(pack) as PackId, offset, length: plain + CRYPTO_OVERHEAD, uncompressedLength: 0 });
  }
  return (id) => m.get(id);
}

function entry(p: string, node: Partial<TreeNode> & Pick<TreeNode, 'type'>) {
  const t = goTimeNow();
  return { path: Buffer.from(p), node: { name: p.split('/').pop()!, mode: 0o644, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, content: null, ...node } as TreeNode };
}

test('the plan groups each file\'s blobs by pack, writes a shared blob to every place, and links hard links', () => {
  const lookup = fakeIndex([['1', 'a', 0, 100], ['2', 'a', 100 + CRYPTO_OVERHEAD, 50], ['3', 'b', 0, 10]]);
  const f1 = entry('/t/f1', { type: 'file', content: [hex('1'), hex('2'), hex('1')] as BlobId[] });
  const f2 = entry('/t/f2', { type: 'file', content: [hex('3'), hex('2')] as BlobId[], links: 2, inode: 7n, deviceId: 1n });
  const f2b = entry('/t/f2b', { type: 'file', content: [hex('3'), hex('2')] as BlobId[], links: 2, inode: 7n, deviceId: 1n });
  const empty = entry('/t/empty', { type: 'file', content: [] });
  const plan = planContents([f1, f2, f2b, empty], lookup);
  assert.deepEqual(plan.tasks.map((t) => t.pending.path.toString()), ['/t/f1', '/t/f2', '/t/empty']);
  assert.deepEqual(plan.links.map((l) => [l.f.path.toString(), l.first.toString()]), [['/t/f2b', '/t/f2']]);
  assert.equal(plan.totalBytes, 250 + 60);
  // Pack a: blobs 1 and 2 in one read, in offset order; pack b: blob 3.
  assert.deepEqual(plan.jobs.map((j) => [j.packId, j.blobs.map((b) => b.id)]), [[hex('a'), [hex('1'), hex('2')]], [hex('b'), [hex('3')]]]);
  const [t1, t2, tEmpty] = plan.tasks;
  // Blob 1 is written twice into f1 (offsets 0 and 150); blob 2 into f1 at 100 and f2 at 10.
  const writes = (b: PlannedBlob) => {
    const out: Array<[string, number]> = [];
    forEachWrite(b, (t, o) => out.push([t.pending.path.toString(), o]));
    return out;
  };
  assert.deepEqual(writes(plan.jobs[0]!.blobs[0]!), [['/t/f1', 0], ['/t/f1', 150]]);
  assert.deepEqual(writes(plan.jobs[0]!.blobs[1]!), [['/t/f1', 100], ['/t/f2', 10]]);
  assert.deepEqual([t1!.remaining, t1!.size], [3, 250]);
  // Where each blob lies, as plain numbers: no location object kept per blob.
  assert.deepEqual(plan.jobs[0]!.blobs.map((b) => [b.packId, b.offset, b.length, b.uncompressedLength, b.size, b.written]), [
    [hex('a'), 0, 100 + CRYPTO_OVERHEAD, 0, 100, false],
    [hex('a'), 100 + CRYPTO_OVERHEAD, 50 + CRYPTO_OVERHEAD, 0, 50, false],
  ]);
  // f1 lies in one job, which creates it; f2 spans two, so it is created up front; the empty file in none.
  assert.equal(t1!.job, 0);
  assert.equal(t2!.job, -1);
  assert.equal(tEmpty!.job, NO_JOB);
  assert.deepEqual(plan.oversized, []);
});

test('the plan throws NotFoundError for a blob the index lacks', () => {
  assert.throws(() => planContents([entry('/t/x', { type: 'file', content: [hex('9')] as BlobId[] })], fakeIndex([])), NotFoundError);
});

test('pack ranges: a new read past MAX_GAP or MAX_READ, oversized blobs alone', () => {
  const at = (offset: number, length: number) => ({ packId: hex('a') as PackId, offset, length });
  const a = at(0, 1000), b = at(1000 + MAX_GAP, 1000), c = at(1000 + MAX_GAP + 1000 + MAX_GAP + 1, 1000);
  assert.deepEqual(packRanges([c, a, b]), { ranges: [[a, b], [c]], oversized: [] });
  const big = at(10 * MiB, MAX_JOB_BYTES + 1);
  const d = at(0, 3 * MiB), e = at(3 * MiB, MAX_READ - 3 * MiB), f = at(MAX_READ, 1);
  assert.deepEqual(packRanges([f, big, e, d]), { ranges: [[d, e], [f]], oversized: [big] });
  assert.deepEqual(packRanges([]), { ranges: [], oversized: [] });
});

test('pack streams: one request per pack across ranges, a new one past STREAM_GAP or at another pack', () => {
  const at = (pack: string, offset: number, length: number) => ({ packId: hex(pack) as PackId, offset, length });
  // Three 4 MiB ranges of pack a, back to back: one request for all 12 MiB.
  const a = [0, 1, 2].map((k) => ({ packId: hex('a') as PackId, blobs: [at('a', k * MAX_READ, MAX_READ)] }));
  // Pack b: two ranges STREAM_GAP apart (one request), a third one byte further (another).
  const b1 = { packId: hex('b') as PackId, blobs: [at('b', 0, 100)] };
  const b2 = { packId: hex('b') as PackId, blobs: [at('b', 100 + STREAM_GAP, 100)] };
  const b3 = { packId: hex('b') as PackId, blobs: [at('b', 200 + 2 * STREAM_GAP + 1, 100)] };
  assert.deepEqual(packStreams([...a, b1, b2, b3]), [
    { packId: hex('a'), offset: 0, length: 3 * MAX_READ, jobs: [0, 1, 2] },
    { packId: hex('b'), offset: 0, length: 200 + STREAM_GAP, jobs: [3, 4] },
    { packId: hex('b'), offset: 200 + 2 * STREAM_GAP + 1, length: 100, jobs: [5] },
  ]);
  assert.deepEqual(packStreams([]), []);
});

test('the whole plan keeps the folders that hold something, and sums up as a dry run', () => {
  const lookup = fakeIndex([['1', 'a', 0, 100], ['2', 'b', 0, 20 * MiB]]);
  const dir = entry('/t/d', { type: 'dir' });
  const dropped = { ...entry('/t/x', { type: 'dir' }), dropped: true };
  const f = entry('/t/d/f', { type: 'file', content: [hex('1')] as BlobId[] });
  const big = entry('/t/big', { type: 'file', content: [hex('2')] as BlobId[] });
  const link = entry('/t/l', { type: 'symlink', linktarget: 'd/f' });
  const plan = planEntries({ created: [dir, dropped, f, big, link], files: [f, big], specials: [link] }, lookup);
  assert.deepEqual(plan.dirs, [dir]);
  assert.deepEqual(summarizePlan(plan), {
    dirs: 1, files: 2, hardLinks: 0, specials: 1, bytes: 100 + 20 * MiB, packs: 2, reads: 1, requests: 2,
    readBytes: 100 + CRYPTO_OVERHEAD + 20 * MiB + CRYPTO_OVERHEAD, oversizedBlobs: 1,
  });
});

test('planRestore reads the snapshot and the index, and leaves the target alone', async () => {
  const f = await selectionFixture();
  const target = join(f.base, 'never-made');
  const all = await planRestore(f.repo, f.tree, { target });
  assert.deepEqual([all.files, all.specials, all.hardLinks, all.bytes], [5, 0, 0, 5004]);
  assert.ok(all.reads >= 1 && all.packs >= 1 && all.readBytes >= all.bytes);
  const filters = { include: [`${f.src}/a`], exclude: ['*.bin'] };
  const some = await planRestore(f.repo, f.tree, filters);
  assert.deepEqual([some.files, some.bytes], [1, 1]);
  assert.equal(existsSync(target), false);
  // The same counts as a restore writes.
  const done = await restore(f.repo, f.tree, { target: join(f.base, 'out-all') });
  assert.deepEqual([done.dirsRestored, done.filesRestored, done.bytesRestored], [all.dirs, all.files, all.bytes]);
  const doneSome = await restore(f.repo, f.tree, { target: join(f.base, 'out-some'), ...filters });
  assert.deepEqual([doneSome.dirsRestored, doneSome.filesRestored, doneSome.bytesRestored], [some.dirs, some.files, some.bytes]);
  assert.equal(all.dirs - some.dirs, 3); // b, d, d/e
});

test('restore frees each piece of a pack read once it is copied out (a local read is its own buffer)', async () => {
  const base = await tmpDir('stowage-pieces');
  const src = join(base, 'src');
  await mkdir(src);
  const content = randomBytes(3 * 1024 * 1024 + 123);
  await writeFile(join(src, 'big.bin'), content);
  const pieces: Uint8Array[] = [];
  class Pieces extends MemoryBackend {
    override async *loadStream(h: Parameters<MemoryBackend['load']>[0], options: { offset?: number; length: number; signal?: AbortSignal }): AsyncGenerator<Uint8Array> {
      const all = await this.load(h, options);
      for (let at = 0; at < all.length; at += 256 * 1024) {
        const piece = new Uint8Array(all.subarray(at, at + 256 * 1024)); // its own buffer, as a local read's
        pieces.push(piece);
        yield piece;
      }
    }
  }
  const repo = await (await Repository.init(new Pieces(), { password: 'pw', kdf: KDF })).loadIndex();
  const r = await backup(repo, { paths: [src], compression: 'off' });
  await restore(repo, r.snapshot.tree, { target: join(base, 'out') });
  assert.ok(Buffer.from(await readFile(join(base, 'out', src.slice(1), 'big.bin'))).equals(content));
  assert.ok(pieces.length >= 12, `pieces read: ${pieces.length}`);
  assert.deepEqual(pieces.filter((p) => p.byteLength !== 0).length, 0, 'every piece was freed after its bytes were copied');
});

test('zeroPrefixLength: the all-zero beginning restore --sparse leaves unwritten', () => {
  assert.equal(zeroPrefixLength(new Uint8Array(0)), 0);
  assert.equal(zeroPrefixLength(new Uint8Array([1, 0, 0])), 0);
  assert.equal(zeroPrefixLength(new Uint8Array(3)), 3);
  // Across the 64 KiB blocks it compares at once, and ending inside one.
  for (const at of [1, 65_535, 65_536, 65_537, 200_000]) {
    const b = new Uint8Array(300_000);
    b[at] = 7;
    assert.equal(zeroPrefixLength(b), at, `non-zero byte at ${at}`);
  }
  assert.equal(zeroPrefixLength(new Uint8Array(200_001)), 200_001);
});

test('the walk keeps what a restore reads of each node, and makes a file\'s path from its folder\'s and its name', async () => {
  const t = goTimeNow();
  const later = goTimeFromNs(t.epochNs + 1n, 0);
  const node = { name: 'f\u{dcff}', type: 'file', mode: 0o640, mtime: t, atime: t, ctime: later, uid: 7, gid: 8, user: 'u', group: 'g', size: 3, links: 1, inode: 5, content: [hex('1') as BlobId] } as TreeNode;
  const slim = restoreNode(node);
  // A plain file: no name, ctime, user or group; inode and device only for hard links.
  assert.deepEqual(Object.keys(slim).sort(), ['atime', 'content', 'gid', 'mode', 'mtime', 'size', 'type', 'uid']);
  assert.equal(slim.content, node.content);
  const xattrs = [{ name: 'user.a', value: new Uint8Array([1]) }];
  const linked = restoreNode({ ...node, links: 2, deviceId: 9, extendedAttributes: xattrs });
  assert.deepEqual([linked.links, linked.inode, linked.deviceId, linked.extendedAttributes], [2, 5, 9, xattrs]);
  const link = restoreNode({ ...node, type: 'symlink', linktarget: 'x', linktargetRaw: new Uint8Array([0xff]), content: null });
  assert.deepEqual([link.type, link.linktarget, link.linktargetRaw], ['symlink', 'x', new Uint8Array([0xff])]);
  assert.equal(restoreNode({ ...node, type: 'dev', device: 0x801, content: null }).device, 0x801);
  // Walked: the file's path is built from its folder's bytes and its own (not UTF-8 here).
  const repo = await newRepo();
  const w = repo.blobWriter();
  const { id: tree } = await w.saveBlob('tree', encodeTree([node]));
  await w.flush();
  const walked = await walkRestoreTree(new TreeLoader(repo, undefined, TREE_BYTES), tree, Buffer.from('/t/d'), {}, NO_TARGET);
  assert.deepEqual(walked.files.map((e) => e.path), [Buffer.from([...Buffer.from('/t/d/f'), 0xff])]);
  // The names of the folders visited are kept only for --delete.
  assert.equal(walked.visited[0]!.names.size, 0);
  const deleting = await walkRestoreTree(new TreeLoader(repo, undefined, TREE_BYTES), tree, Buffer.from('/t/d'), { delete: true }, NO_TARGET);
  assert.deepEqual([...deleting.visited[0]!.names], [node.name]);
});

test('the walk reads each folder\'s tree node by node: names, owners by name, and a damaged tree refused before any of it is made', async () => {
  const t = goTimeNow();
  const file = (name: string, user?: string): TreeNode => ({ name, type: 'file', mode: 0o644, mtime: t, atime: t, ctime: t, uid: 7, gid: 8, user, group: user, size: 0, content: [] });
  const repo = await newRepo();
  const w = repo.blobWriter();
  const { id: empty } = await w.saveBlob('tree', encodeTree([]));
  const names = ['ascii', 'nobody-owned', 'raw\u{dcff}', 'r\u00e4nd', 'z\u{1f600}'];
  const { id: tree } = await w.saveBlob('tree', encodeTree([
    file('ascii', 'root'),
    { ...file('d'), type: 'dir', mode: GO_MODE_DIR + 0o755, content: null, subtree: empty },
    file('nobody-owned', 'daemon'),
    file('raw\u{dcff}'),
    file('r\u00e4nd', 'no-such-user-here'),
    file('z\u{1f600}'),
  ]));
  // A folder whose tree is damaged after its first node (a folder): nothing of it may be made.
  const dirNode = Buffer.from(encodeTree([{ ...file('sub'), type: 'dir', mode: GO_MODE_DIR + 0o755, content: null, subtree: empty }])).toString();
  const damaged = Buffer.from(dirNode.replace(']}', ',{"name":"x","type":"bogus"}]}'));
  const { id: bad } = await w.saveBlob('tree', damaged);
  await w.flush();

  const walked = await walkRestoreTree(new TreeLoader(repo, undefined, TREE_BYTES), tree, Buffer.from('/t'), { ownershipByName: true, delete: true }, NO_TARGET);
  assert.deepEqual(walked.files.map((e) => e.path), names.map((n) => Buffer.concat([Buffer.from('/t/'), goStringToBytes(n)])));
  assert.deepEqual(walked.files.map((e) => [e.node.uid, e.node.gid]), [[0, 0], [1, 1], [0, 0], [0, 0], [0, 0]]);
  assert.deepEqual(walked.created.filter((e) => e.node.type === 'dir').map((e) => e.path.toString()), ['/t/d']);
  assert.deepEqual([...walked.visited[0]!.names], ['ascii', 'd', ...names.slice(1)]);
  // without owners by name, the ids recorded
  const plain = await walkRestoreTree(new TreeLoader(repo, undefined, TREE_BYTES), tree, Buffer.from('/t'), {}, NO_TARGET);
  assert.deepEqual(plain.files.map((e) => [e.node.uid, e.node.gid]), names.map(() => [7, 8]));

  const made: string[] = [];
  const target = { makeDir: async (p: Buffer) => void made.push(p.toString()), dropDir: async () => undefined };
  await assert.rejects(walkRestoreTree(new TreeLoader(repo, undefined, TREE_BYTES), bad, Buffer.from('/t'), {}, target), (err: unknown) => err instanceof IntegrityError && err.message.includes(bad));
  assert.deepEqual(made, []);
});
