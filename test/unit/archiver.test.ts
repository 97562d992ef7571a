// Backup on a MemoryBackend from real temporary trees, checked by restoring and comparing
// everything a restore must keep (compareTrees): contents, types, modes, owners, nanosecond
// mtimes, xattrs, hard links. Also: excludes, change detection against a parent, stdin,
// the layout of relative targets, and aborting.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, link, lstat, mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { AbortedError, InvalidInputError } from '../../src/errors.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { backup, buildVirtualTree, type BackupOptions } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { decodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { makeAwkwardTree } from '../helpers/awkward-tree.ts';
import { tmpDir } from '../helpers/tmp.ts';

const run = promisify(execFile);
const KDF = { N: 1024, r: 8, p: 1 };

before(async () => {
  // Fail early and clearly when the tools the trees need are missing.
  await run('setfattr', ['--version']);
  await run('mkfifo', ['--version']);
});

async function newRepo(version: 1 | 2 = 2): Promise<IndexedRepository> {
  const repo = await Repository.init(new MemoryBackend(), { password: 'pw', kdf: KDF, version });
  return repo.loadIndex();
}

/** Sets atime and mtime to exactly `ns` nanoseconds (touch keeps the nanoseconds; utimes does not). */
async function setMtime(path: string, ns: bigint): Promise<void> {
  await run('touch', ['-h', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, path]);
}

const NS_MTIME = 1_600_000_000_123_456_789n;

// The trees here have hard links, and the restorer can link a second name before the first
// exists when it restores files in parallel (see the todo test in restorer.test.ts); one file
// at a time until that is fixed.
const ONE_AT_A_TIME = { concurrency: 1 };

/**
 * A small tree with every kind of entry: files of several sizes (one of several chunks), an
 * empty file, symlinks, hard links, a fifo, nested folders, special modes, a nanosecond mtime,
 * xattrs, and files the exclude tests leave out. Returns the number of regular files.
 */
async function makeTree(root: string): Promise<number> {
  await mkdir(join(root, 'nested/a/b/c'), { recursive: true });
  await mkdir(join(root, 'cache'));
  await mkdir(join(root, 'empty-dir'));
  await mkdir(join(root, 'setgid-dir'));
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'one'), 'x');
  await writeFile(join(root, 'text.txt'), 'hello world\n'.repeat(1000));
  await writeFile(join(root, 'random-100k'), randomBytes(100_000));
  await writeFile(join(root, 'random-3m'), randomBytes(3 * 1024 * 1024 + 17));
  await writeFile(join(root, 'nested/a/b/c/deep.txt'), 'deep');
  await writeFile(join(root, 'cache/x.tmp'), 'temporary');
  await writeFile(join(root, 'skip.tmp'), 'temporary');
  await writeFile(join(root, 'setuid'), '#!/bin/sh\n');
  await writeFile(join(root, 'private'), 'secret');
  await link(join(root, 'one'), join(root, 'nested/hard-link-to-one'));
  await symlink('text.txt', join(root, 'link-relative'));
  await symlink('/etc/hostname', join(root, 'link-absolute'));
  await symlink('does/not/exist', join(root, 'link-dangling'));
  await run('mkfifo', [join(root, 'fifo')]);
  await run('setfattr', ['-n', 'user.note', '-v', 'on a file', join(root, 'text.txt')]);
  await run('setfattr', ['-n', 'user.bin', '-v', '0x00ff10', join(root, 'nested')]);
  await chmod(join(root, 'setuid'), 0o4755);
  await chmod(join(root, 'setgid-dir'), 0o2750);
  await chmod(join(root, 'private'), 0o600);
  await setMtime(join(root, 'random-100k'), NS_MTIME);
  await setMtime(join(root, 'link-relative'), NS_MTIME + 1n);
  await setMtime(join(root, 'nested/a'), NS_MTIME + 2n);
  return 11; // the hard link counts as a file of its own
}

/** The restored copy of an absolute backup target inside `target`. */
const restoredPath = (target: string, src: string) => join(target, src);

async function snapshotCount(repo: IndexedRepository): Promise<number> {
  let n = 0;
  for await (const _ of repo.repo.listIds('snapshots')) n++;
  return n;
}

test('backup then restore gives back the same tree, for repository v1 and v2', async () => {
  for (const version of [1, 2] as const) {
    const base = await tmpDir('stowage-archiver');
    const src = join(base, 'src');
    await mkdir(src);
    const files = await makeTree(src);
    const repo = await newRepo(version);
    const r = await backup(repo, { paths: [src], hostname: 'test-host', tags: ['t1'] });
    assert.deepEqual(r.errors, []);
    assert.equal(r.summary.filesNew, files);
    assert.equal(r.summary.filesChanged, 0);
    assert.equal(r.summary.filesUnmodified, 0);
    assert.equal(r.summary.totalFilesProcessed, files);
    assert.ok(r.summary.dataBlobs >= 6, `${r.summary.dataBlobs} data blobs`);
    assert.deepEqual(r.snapshot.paths, [src]);
    assert.equal(r.snapshot.hostname, 'test-host');
    assert.deepEqual(r.snapshot.tags, ['t1']);
    // The snapshot file says what the result says.
    const stored = decodeSnapshot(await repo.repo.loadUnpacked('snapshots', r.snapshotId), r.snapshotId);
    assert.equal(stored.tree, r.snapshot.tree);

    const target = join(base, 'restore');
    const rr = await restore(repo, r.snapshot.tree, { target, ...ONE_AT_A_TIME });
    assert.deepEqual(rr.warnings, []);
    assert.equal(rr.filesRestored, files);
    assert.deepEqual(await compareTrees(src, restoredPath(target, src)), []);
    const st = await lstat(join(restoredPath(target, src), 'random-100k'), { bigint: true });
    assert.equal(st.mtimeNs, NS_MTIME);
  }
});

test('the awkward tree (hostile names, invalid UTF-8, devices, owners, times, xattrs) round-trips', async () => {
  const base = await tmpDir('stowage-awkward');
  const src = join(base, 'src');
  await mkdir(src);
  await makeAwkwardTree(src, { seed: 'archiver-test' });
  const repo = await newRepo(2);
  const r = await backup(repo, { paths: [src] });
  assert.deepEqual(r.errors, []);
  const target = join(base, 'restore');
  await restore(repo, r.snapshot.tree, { target, ...ONE_AT_A_TIME });
  assert.deepEqual(await compareTrees(src, restoredPath(target, src)), []);
});

test('excludes leave matching files and folders out', async () => {
  const base = await tmpDir('stowage-exclude');
  const src = join(base, 'src');
  await mkdir(src);
  const files = await makeTree(src);
  const repo = await newRepo();
  const excludes = ['*.tmp', `${src}/nested/a`, 'fifo'];
  const r = await backup(repo, { paths: [src], excludes });
  assert.deepEqual(r.snapshot.excludes, excludes);
  assert.equal(r.summary.filesNew, files - 1 /* skip.tmp */ - 1 /* cache/x.tmp */ - 1 /* deep.txt */);
  const target = join(base, 'restore');
  await restore(repo, r.snapshot.tree, { target, ...ONE_AT_A_TIME });
  const out = restoredPath(target, src);
  assert.deepEqual((await readdir(join(out, 'cache'))), []);
  assert.deepEqual((await readdir(join(out, 'nested'))).sort(), ['hard-link-to-one']);
  const gone = (rel: string) => rel === 'skip.tmp' || rel === 'cache/x.tmp' || rel === 'fifo' || rel === 'nested/a';
  assert.deepEqual(await compareTrees(src, out, { exclude: gone, ignoreDirMtimes: true }), []);
});

/** The tree ID of the folder at absolute `path` in the snapshot tree `root`. */
async function subtreeAt(repo: IndexedRepository, root: BlobId, path: string): Promise<BlobId> {
  let id = root;
  for (const name of path.split('/').filter(Boolean)) {
    const node = decodeTree(await repo.loadBlob('tree', id), id).find((n) => n.name === name);
    assert.ok(node?.type === 'dir' && node.subtree, `no folder ${name} in ${id}`);
    id = node.subtree;
  }
  return id;
}

test('a second backup with a parent reads no unchanged file; a changed file is read again', async () => {
  const base = await tmpDir('stowage-parent');
  const src = join(base, 'src');
  await mkdir(src);
  const files = await makeTree(src);
  const repo = await newRepo();
  const first = await backup(repo, { paths: [src], hostname: 'h' });

  const second = await backup(repo, { paths: [src], hostname: 'h' });
  assert.equal(second.snapshot.parent, first.snapshotId, 'the latest snapshot of the same host and paths');
  assert.equal(second.summary.filesUnmodified, files);
  assert.equal(second.summary.filesNew, 0);
  assert.equal(second.summary.filesChanged, 0);
  assert.equal(second.summary.dataBlobs, 0);
  // The target's tree is the same blob. The folders above it (/, /tmp, …) are recorded too, as
  // restic records them, and another program creating a file in /tmp between the two backups
  // changes /tmp's node: then their small trees are new, and only those.
  const [srcFirst, srcSecond] = [await subtreeAt(repo, first.snapshot.tree, src), await subtreeAt(repo, second.snapshot.tree, src)];
  assert.equal(srcSecond, srcFirst);
  if (second.snapshot.tree === first.snapshot.tree) assert.equal(second.summary.dataAdded, 0);
  else assert.ok(second.summary.treeBlobs <= src.split('/').length - 1, `${second.summary.treeBlobs} new trees`);
  assert.equal(second.summary.totalBytesProcessed, first.summary.totalBytesProcessed);

  // Another host's snapshot is no parent: everything is read (and deduplicated).
  const otherHost = await backup(repo, { paths: [src], hostname: 'other' });
  assert.equal(otherHost.snapshot.parent, undefined);
  assert.equal(otherHost.summary.filesNew, files);
  assert.equal(otherHost.summary.dataBlobs, 0);
  // parent: null forces a full read too.
  const forced = await backup(repo, { paths: [src], hostname: 'h', parent: null });
  assert.equal(forced.summary.filesNew, files);
  assert.equal(forced.snapshot.parent, undefined);

  await appendFile(join(src, 'text.txt'), 'one more line\n');
  const third = await backup(repo, { paths: [src], hostname: 'h', parent: second.snapshotId });
  assert.equal(third.snapshot.parent, second.snapshotId);
  assert.equal(third.summary.filesChanged, 1);
  assert.equal(third.summary.filesUnmodified, files - 1);
  assert.equal(third.summary.dataBlobs, 1);
  // The file's new content and the trees from its folder up (restic counts both).
  const grown = (await lstat(join(src, 'text.txt'))).size;
  assert.ok(third.summary.treeBlobs > 0 && third.summary.dataAdded > grown && third.summary.dataAdded < grown + 64 * 1024, String(third.summary.dataAdded));
  const target = join(base, 'restore');
  await restore(repo, third.snapshot.tree, { target, ...ONE_AT_A_TIME });
  assert.deepEqual(await compareTrees(src, restoredPath(target, src)), []);
});

test('a re-backup reads the parent\'s trees as folders get their turn, not all of a wide level at once', async () => {
  // 2 folders of 120 folders of one file. The subfolders of a folder all start at once and wait
  // for a place to be listed; their previous trees used to be read and decoded at that start, so
  // the whole parent snapshot's trees were held (~90 MiB at 200 000 files).
  const base = await tmpDir('stowage-wide-parent');
  const src = join(base, 'src');
  for (let t = 0; t < 2; t++) {
    for (let i = 0; i < 120; i++) {
      await mkdir(join(src, `t${t}`, `d${i}`), { recursive: true });
      await writeFile(join(src, `t${t}`, `d${i}`, 'f'), `${t}/${i}`);
    }
  }
  const repo = await newRepo();
  await backup(repo, { paths: [src], hostname: 'h', scan: false });
  await writeFile(join(src, 't1', 'd119', 'f'), 'changed');
  const { TreeLoader } = await import('../../src/snapshot/engine/tree-loader.ts');
  const proto = TreeLoader.prototype;
  const { prefetch, load } = proto;
  // Trees read (or being read) for folders not done yet: read ahead or loaded, minus folders done.
  const touched = new Set<string>();
  let done = 0;
  let most = 0;
  const note = () => (most = Math.max(most, touched.size - done));
  proto.prefetch = function (ids) {
    for (const id of ids) touched.add(id);
    note();
    return prefetch.call(this, ids);
  };
  proto.load = function (id) {
    touched.add(id);
    note();
    return load.call(this, id);
  };
  try {
    const second = await backup(repo, { paths: [src], hostname: 'h', scan: false, onItem: (item) => item.type === 'dir' && done++ });
    assert.equal(second.summary.filesChanged, 1);
    assert.equal(second.summary.filesUnmodified, 239);
    assert.equal(second.summary.dirsUnmodified + second.summary.dirsChanged, done);
  } finally {
    proto.prefetch = prefetch;
    proto.load = load;
  }
  assert.ok(touched.size >= 240, `${touched.size} trees read`);
  // 64 read ahead, 8 folders being listed, a few loaded ones finishing: measured 87 (was every tree, 240+).
  assert.ok(most <= 120, `${most} trees read for folders not done yet`);
});

test('stdin is stored as one file at the snapshot root', async () => {
  const base = await tmpDir('stowage-stdin');
  const repo = await newRepo();
  const parts = [Buffer.from('header\n'), randomBytes(9 * 1024 * 1024), Buffer.from('x'.repeat(70_000)), Buffer.from('end')];
  const r = await backup(repo, { stdin: { stream: Readable.from(parts), filename: 'db.dump' } });
  assert.deepEqual(r.snapshot.paths, ['/db.dump']);
  assert.equal(r.summary.filesNew, 1);
  assert.equal(r.summary.totalBytesProcessed, Buffer.concat(parts).length);
  const nodes = decodeTree(await repo.loadBlob('tree', r.snapshot.tree), r.snapshot.tree);
  assert.deepEqual(nodes.map((n) => [n.name, n.type, Number(n.size)]), [['db.dump', 'file', Buffer.concat(parts).length]]);
  // More than the chunker's 8 MiB maximum, so at least two chunks whatever the (random) polynomial.
  assert.ok(nodes[0]!.content!.length >= 2, 'chunked');
  await restore(repo, r.snapshot.tree, { target: base });
  assert.deepEqual(await readFile(join(base, 'db.dump')), Buffer.concat(parts));
  // Strings from a text stream work too; a file name with a slash does not.
  const text = await backup(repo, { stdin: { stream: Readable.from(['a', 'b']), filename: 'x.txt' } });
  assert.equal(text.summary.totalBytesProcessed, 2);
  await assert.rejects(backup(repo, { stdin: { stream: Readable.from(['a']), filename: 'a/b' } }), InvalidInputError);
  await assert.rejects(backup(repo, { stdin: { stream: Readable.from(['a']), filename: '' } }), InvalidInputError);
});

test('buildVirtualTree: absolute targets keep their path, relative ones their relative path', () => {
  const abs = buildVirtualTree(['/srv/a', '/srv/b/c', '/etc']);
  assert.ok(!('target' in abs));
  assert.deepEqual([...abs.children.keys()].sort(), ['etc', 'srv']);
  const srv = abs.children.get('srv')!;
  assert.ok(!('target' in srv));
  assert.equal(srv.realPath, '/srv');
  assert.deepEqual(srv.children.get('a'), { target: '/srv/a' });
  const b = srv.children.get('b')!;
  assert.ok(!('target' in b));
  assert.deepEqual(b.children.get('c'), { target: '/srv/b/c' });

  const cwd = process.cwd();
  const rel = buildVirtualTree(['docs/x', './y']);
  assert.ok(!('target' in rel));
  const docs = rel.children.get('docs')!;
  assert.ok(!('target' in docs));
  assert.equal(docs.realPath, join(cwd, 'docs'));
  assert.deepEqual(docs.children.get('x'), { target: join(cwd, 'docs/x') });
  assert.deepEqual(rel.children.get('y'), { target: join(cwd, 'y') });
  // Leading ".." are dropped from the stored path.
  const up = buildVirtualTree(['../up']);
  assert.ok(!('target' in up));
  assert.deepEqual(up.children.get('up'), { target: join(cwd, '../up') });
  // "." alone: the folder's contents are the root.
  assert.deepEqual(buildVirtualTree(['.']), { target: cwd });
  assert.throws(() => buildVirtualTree(['.', 'x']), InvalidInputError);
  assert.throws(() => buildVirtualTree(['/a', '/a/b']), InvalidInputError);
  assert.throws(() => buildVirtualTree(['/a/b', '/a']), InvalidInputError);
  assert.throws(() => buildVirtualTree(['/a', '/a']), InvalidInputError);
});

test('relative targets: "." stores the folder\'s contents at the root, "src" a folder src', async () => {
  const base = await tmpDir('stowage-relative');
  const src = join(base, 'src');
  await mkdir(src);
  await makeTree(src);
  const repo = await newRepo();
  const cwd = process.cwd();
  let dot, named;
  try {
    process.chdir(src);
    dot = await backup(repo, { paths: ['.'] });
    process.chdir(base);
    named = await backup(repo, { paths: ['src'] });
  } finally {
    process.chdir(cwd);
  }
  assert.deepEqual(dot.snapshot.paths, [src], 'paths are stored absolute');
  assert.deepEqual(named.snapshot.paths, [src]);
  const rootNames = async (tree: BlobId) => decodeTree(await repo.loadBlob('tree', tree), tree).map((n) => n.name);
  assert.ok((await rootNames(dot.snapshot.tree)).includes('random-3m'));
  assert.deepEqual(await rootNames(named.snapshot.tree), ['src']);

  const t1 = join(base, 'restore-dot');
  await restore(repo, dot.snapshot.tree, { target: t1, ...ONE_AT_A_TIME });
  assert.deepEqual(await compareTrees(src, t1, { ignoreRootMetadata: true }), []);
  const t2 = join(base, 'restore-named');
  await restore(repo, named.snapshot.tree, { target: t2, ...ONE_AT_A_TIME });
  assert.deepEqual(await compareTrees(src, join(t2, 'src')), []);
  assert.equal(relative(base, join(t2, 'src')), 'restore-named/src');
});

test('an aborted backup rejects with AbortedError and writes no snapshot', async () => {
  const base = await tmpDir('stowage-abort');
  const src = join(base, 'src');
  await mkdir(src);
  for (let i = 0; i < 30; i++) await writeFile(join(src, `f${i}`), randomBytes(200_000));
  const repo = await newRepo();

  const early = new AbortController();
  early.abort();
  await assert.rejects(backup(repo, { paths: [src], signal: early.signal }), AbortedError);

  const ac = new AbortController();
  const opts: BackupOptions = { paths: [src], signal: ac.signal, onProgress: (p) => { if (p.filesDone >= 1) ac.abort(); } };
  await assert.rejects(backup(repo, opts), AbortedError);
  assert.equal(await snapshotCount(repo), 0);
  // The repository is still usable afterwards.
  const r = await backup(repo, { paths: [src] });
  assert.equal(r.summary.filesNew, 30);
  assert.equal(await snapshotCount(repo), 1);
});

test('an unreadable entry is reported and skipped, the rest is backed up', async () => {
  const base = await tmpDir('stowage-errors');
  const src = join(base, 'src');
  await mkdir(src);
  await writeFile(join(src, 'ok'), 'fine');
  const reported: string[] = [];
  const repo = await newRepo();
  await assert.rejects(backup(repo, { paths: [] }), InvalidInputError);
  // A target that does not exist is an error entry, not a crash.
  const r = await backup(repo, { paths: [src, join(base, 'missing')], onError: (p) => reported.push(p) });
  assert.deepEqual(reported, [join(base, 'missing')]);
  assert.deepEqual(r.errors.map((e) => e.path), [join(base, 'missing')]);
  assert.equal(r.summary.filesNew, 1);
});

// A file whose bytes are exactly an empty tree next to an empty folder: one blob ID, two blob
// types. restic stores both; Stowage's BlobWriter keys its in-run set by ID only and drops one,
// so the snapshot names a blob no index lists.
test('a file with the bytes of an empty tree next to an empty folder survives backup', async () => {
  const base = await tmpDir('stowage-sameid');
  const src = join(base, 'src');
  await mkdir(join(src, 'empty'), { recursive: true });
  await writeFile(join(src, 'tree.json'), '{"nodes":[]}\n');
  const repo = await newRepo();
  const r = await backup(repo, { paths: [src] });
  const target = join(base, 'restore');
  await restore(repo, r.snapshot.tree, { target });
  assert.deepEqual(await compareTrees(src, restoredPath(target, src)), []);
});

test('progress moves within a big file and ends at the bytes backed up; restore counts every hard-linked name', async () => {
  const repo = await newRepo();
  const src = await tmpDir('progress-src');
  const big = randomBytes(24 * 1024 * 1024);
  await writeFile(join(src, 'big.bin'), big);
  const seen: Array<{ filesDone: number; bytesDone: number }> = [];
  await backup(repo, { paths: [src], hostname: 'h', onProgress: (p) => seen.push({ filesDone: p.filesDone, bytesDone: p.bytesDone }) });
  // Before the only file is done, the byte count has moved (it is not one jump at the end).
  const within = seen.filter((p) => p.filesDone === 0 && p.bytesDone > 0);
  assert.ok(within.length >= 2, `progress inside the big file: ${JSON.stringify(seen.slice(0, 8))}`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.bytesDone >= seen[i - 1]!.bytesDone, 'bytesDone never goes back');
  assert.deepEqual(seen[seen.length - 1], { filesDone: 1, bytesDone: big.length });

  const linked = await tmpDir('progress-links');
  await writeFile(join(linked, 'small.txt'), 'small\n');
  await link(join(linked, 'small.txt'), join(linked, 'small-link.txt'));
  const r = await backup(repo, { paths: [linked], hostname: 'h' });
  const target = await tmpDir('progress-dst');
  const restored: number[] = [];
  const result = await restore(repo, r.snapshot.tree, { target, onProgress: (p) => restored.push(p.filesDone) });
  assert.equal(result.filesRestored, 2);
  assert.equal(restored[restored.length - 1], 2, 'the last progress event counts the hard link too');
});

test('a wide folder goes to the workers a few thousand files at a time, not all at once', async () => {
  // One folder of 6,000 files: queued all at once, 6,000 jobs (each with a promise and its
  // entry's stat) waited at the pool together; 250,000 of them cost ~340 MiB of peak RSS and made
  // the pool's queue quadratic.
  const base = await tmpDir('stowage-wide');
  const src = join(base, 'src');
  await mkdir(src);
  const files = 6000;
  for (let i = 0; i < files; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, files - i) }, (_, k) => writeFile(join(src, `f${i + k}`), i + k === 7 ? 'x' : '')));
  }
  const { FilePool } = await import('../../src/snapshot/engine/file-pool.ts');
  const original = FilePool.prototype.process;
  let peak = 0;
  FilePool.prototype.process = function (this: InstanceType<typeof FilePool>, job) {
    peak = Math.max(peak, this.pending + 1);
    return original.call(this, job);
  };
  try {
    const r = await backup(await newRepo(), { paths: [src], hostname: 'h' });
    assert.equal(r.summary.filesNew, files);
  } finally {
    FilePool.prototype.process = original;
  }
  assert.ok(peak > 0, 'the files went through the pool');
  assert.ok(peak <= 4096 + 512, `at most ~4096 files queued at once, saw ${peak}`);
});
