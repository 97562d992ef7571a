// Backup and restore without the syscall helper (perl): $STOWAGE_PERL pointing at a file that
// does not exist turns the helper off in-process, as a system without perl would.
//
// What the docs (README "Requirements", docs/ARCHITECTURE.md "Dependencies: the syscall
// helper") promise without perl, and what is checked here:
// - backup: the snapshot is made; it holds no extended attributes; BackupResult.metadataLoss
//   names `xattrs` and why (perl not found, how to fix); one warning through the repository's
//   logger, never one per file, never ENOTSUP;
// - restore: never rejects for want of the helper; file contents are exact; times are within a
//   microsecond; fifos are made with coreutils' mkfifo when it is on $PATH, else skipped;
//   devices and xattrs are skipped; RestoreResult.metadataLoss names exactly what the snapshot
//   held and was lost, with counts, and one warning says so through the logger.
// With perl everything is exact (nanosecond times, xattrs, fifos, devices as root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { goTimeFromNs } from '../../src/repository/gotime.ts';
import type { Logger, LogFields } from '../../src/logger.ts';
import type { TreeNode } from '../../src/snapshot/model/node.ts';
import { encodeTree } from '../../src/snapshot/model/tree.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { SysHelper, systemCapabilities } from '../../src/snapshot/engine/syshelper.ts';
import { StowageError } from '../../src/errors.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const MISSING_PERL = '/nonexistent/stowage-test/perl';
const MTIME_NS = 1_700_000_000_123_456_789n;

interface Recorded {
  level: string;
  message: string;
  fields?: LogFields;
}

function recordingLogger(): { logger: Logger; records: Recorded[] } {
  const records: Recorded[] = [];
  const at = (level: string) => (message: string, fields?: LogFields) => void records.push({ level, message, fields });
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, records };
}

async function newRepo(logger?: Logger): Promise<IndexedRepository> {
  const backend = new MemoryBackend();
  await Repository.init(backend, { password: 'pw', kdf: KDF });
  const repo = await Repository.open(backend, { password: 'pw', logger });
  return repo.loadIndex();
}

/** Runs fn with $STOWAGE_PERL (and optionally $PATH) set, restoring both afterwards. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const withoutPerl = <T>(fn: () => Promise<T>) => withEnv({ STOWAGE_PERL: MISSING_PERL }, fn);

/**
 * src/{plain.bin, tagged.txt (xattr user.stowage=hello), fifo, ns.txt (mtime with nanoseconds)},
 * made with the helper (perl is on this machine), and backed up with it.
 */
async function fixture(t: { skip(msg: string): void }) {
  const helper = SysHelper.start();
  if (!(await helper.ready())) {
    helper.close();
    t.skip(`needs perl to make the fixture: ${helper.unavailableReason}`);
    return undefined;
  }
  const base = await tmpDir('stowage-noperl');
  const src = join(base, 'src');
  await mkdir(src);
  const plain = Buffer.alloc(300_000);
  for (let i = 0; i < plain.length; i++) plain[i] = (i * 7919) & 0xff;
  await writeFile(join(src, 'plain.bin'), plain);
  await writeFile(join(src, 'tagged.txt'), 'tagged');
  await writeFile(join(src, 'ns.txt'), 'ns');
  try {
    await helper.setXattr(join(src, 'tagged.txt'), 'user.stowage', Buffer.from('hello'));
    await helper.mknod(join(src, 'fifo'), 0o10644, 0);
    await helper.setTimes(join(src, 'ns.txt'), MTIME_NS, MTIME_NS);
  } catch (e) {
    helper.close();
    t.skip(`the temporary folder's file system refuses: ${(e as Error).message}`);
    return undefined;
  }
  helper.close();
  const repo = await newRepo();
  const res = await backup(repo, { paths: [src] });
  assert.equal(res.metadataLoss, undefined, 'with perl nothing is lost');
  return { base, src, plain, repo, tree: res.snapshot.tree, srcRel: src.slice(1) };
}

test('restore without perl: contents exact, fifo through mkfifo, one warning naming xattrs and nanosecond times', async (t) => {
  const f = await fixture(t);
  if (!f) return;
  const { logger, records } = recordingLogger();
  const repo = await newRepo(logger);
  // The same snapshot's blobs, read through a repository that logs.
  const snap = await backup(repo, { paths: [f.src] });
  const target = join(f.base, 'restored');
  const res = await withoutPerl(() => restore(repo, snap.snapshot.tree, { target }));
  const out = join(target, f.srcRel);

  assert.deepEqual(await readFile(join(out, 'plain.bin')), f.plain);
  assert.equal(await readFile(join(out, 'tagged.txt'), 'utf8'), 'tagged');
  assert.ok((await lstat(join(out, 'fifo'))).isFIFO(), 'the fifo is made by mkfifo');
  const st = await lstat(join(out, 'ns.txt'), { bigint: true });
  const diff = st.mtimeNs - MTIME_NS;
  assert.ok(diff > -1000n && diff < 1000n, `mtime within a microsecond (off by ${diff} ns)`);
  assert.throws(() => execFileSync('getfattr', ['--only-values', '-n', 'user.stowage', join(out, 'tagged.txt')], { stdio: 'pipe' }));

  assert.deepEqual(res.metadataLoss?.kinds, ['xattrs', 'nanosecond-times']);
  // Every entry whose times have digits below the microsecond (on ext4: nearly all of them).
  assert.equal(res.metadataLoss?.entries.xattrs, 1);
  assert.ok(res.metadataLoss!.entries['nanosecond-times']! >= 1);
  assert.match(res.metadataLoss!.reason, /perl not found: .*STOWAGE_PERL/);
  assert.match(res.metadataLoss!.message, /extended attributes not restored \(1 entry\).*microsecond.*perl not found/);
  assert.deepEqual(res.warnings, [], 'no warning per entry');
  const warns = records.filter((r) => r.level === 'warn');
  assert.equal(warns.length, 1);
  assert.equal(warns[0]!.message, res.metadataLoss!.message);
  assert.doesNotMatch(warns[0]!.message, /ENOTSUP/);
});

test('restore without perl and without mkfifo: the fifo is skipped and named, the rest restored', async (t) => {
  const f = await fixture(t);
  if (!f) return;
  const target = join(f.base, 'restored-nomkfifo');
  const res = await withEnv({ STOWAGE_PERL: MISSING_PERL, PATH: '' }, () => restore(f.repo, f.tree, { target }));
  const out = join(target, f.srcRel);
  assert.deepEqual(await readFile(join(out, 'plain.bin')), f.plain);
  await assert.rejects(lstat(join(out, 'fifo')), { code: 'ENOENT' });
  assert.deepEqual(res.metadataLoss?.kinds, ['xattrs', 'nanosecond-times', 'fifos']);
  assert.equal(res.metadataLoss?.entries.fifos, 1);
  assert.match(res.metadataLoss!.message, /fifos not created \(1 fifo\)/);
  assert.deepEqual(res.warnings, []);
});

test('restore with perl: xattrs, nanosecond times and the fifo are exact, nothing reported lost', async (t) => {
  const f = await fixture(t);
  if (!f) return;
  const target = join(f.base, 'restored-perl');
  const res = await restore(f.repo, f.tree, { target });
  const out = join(target, f.srcRel);
  assert.equal(res.metadataLoss, undefined);
  assert.equal((await lstat(join(out, 'ns.txt'), { bigint: true })).mtimeNs, MTIME_NS);
  assert.ok((await lstat(join(out, 'fifo'))).isFIFO());
  const helper = SysHelper.start();
  try {
    assert.deepEqual((await helper.listXattrs(join(out, 'tagged.txt'))).map((x) => [x.name, Buffer.from(x.value).toString()]), [['user.stowage', 'hello']]);
  } finally {
    helper.close();
  }
});

test('backup without perl: the snapshot is made without xattrs, and one warning says why', async (t) => {
  const f = await fixture(t);
  if (!f) return;
  const { logger, records } = recordingLogger();
  const repo = await newRepo(logger);
  const res = await withoutPerl(() => backup(repo, { paths: [f.src] }));
  assert.equal(res.summary.totalFilesProcessed, 3);
  assert.deepEqual(res.errors, []);
  assert.deepEqual(res.metadataLoss?.kinds, ['xattrs']);
  assert.match(res.metadataLoss!.message, /^backup: extended attributes are not backed up: perl not found/);
  assert.match(res.metadataLoss!.reason, /install perl .* or set STOWAGE_PERL/);
  const warns = records.filter((r) => r.level === 'warn');
  assert.equal(warns.length, 1);
  assert.doesNotMatch(warns[0]!.message, /ENOTSUP/);
  // The tagged file is in the snapshot, without its attribute.
  const { loadSnapshot } = await import('../../src/snapshot/engine/select.ts');
  const { findSubtree } = await import('../../src/cli/context.ts');
  const snap = await loadSnapshot(repo.repo, res.snapshotId);
  const treeId = await findSubtree(repo, snap.snapshot.tree, f.src);
  const { decodeTree } = await import('../../src/snapshot/model/tree.ts');
  const nodes = decodeTree(await repo.loadBlob('tree', treeId), treeId);
  const tagged = nodes.find((n) => n.name === 'tagged.txt');
  assert.ok(tagged);
  assert.equal(tagged.extendedAttributes, undefined);
  assert.ok(nodes.find((n) => n.name === 'fifo' && n.type === 'fifo'), 'the fifo is recorded (lstat needs no helper)');
});

test('restore without perl: a device node is skipped and named, never a rejection', async () => {
  const repo = await newRepo();
  // Whole microseconds: fs.lutimes sets them well enough, so only the device is lost.
  const now = goTimeFromNs(1_700_000_000_000_000_000n);
  const base = (name: string, type: TreeNode['type']): TreeNode => ({ name, type, mode: 0o644, mtime: now, atime: now, ctime: now, uid: 0, gid: 0, content: null });
  const nodes: TreeNode[] = [
    { ...base('null', 'chardev'), device: (1 << 8) | 3 },
    { ...base('x.txt', 'file'), content: [] },
  ];
  const w = repo.blobWriter();
  const { id: leaf } = await w.saveBlob('tree', encodeTree(nodes));
  await w.flush();
  const target = await tmpDir('stowage-noperl-dev');
  let res;
  try {
    res = await withoutPerl(() => restore(repo, leaf, { target }));
  } catch (e) {
    assert.ok(e instanceof StowageError, `a rejection must be a StowageError: ${String(e)}`);
    throw e;
  }
  await assert.rejects(lstat(join(target, 'null')), { code: 'ENOENT' });
  assert.ok((await lstat(join(target, 'x.txt'))).isFile());
  assert.deepEqual(res.metadataLoss?.kinds, ['devices']);
  assert.match(res.metadataLoss!.message, /device nodes not created \(1 device\)/);
});

test('systemCapabilities names what a missing perl costs, and why', async () => {
  const none = await systemCapabilities({ perl: MISSING_PERL });
  assert.equal(none.xattrs, false);
  assert.equal(none.nanosecondTimes, false);
  assert.equal(none.devices, false);
  assert.equal(none.perl, undefined);
  assert.match(none.reason!, /perl not found: \/nonexistent\/stowage-test\/perl \(from the perl option\) is not an executable file; install perl/);
  assert.equal(none.fifos, 'mkfifo');
  assert.equal((await systemCapabilities({ perl: MISSING_PERL, env: { PATH: '' } })).fifos, false);
  // A perl that cannot run (not a program): unavailable, with the reason.
  const notRunnable = await systemCapabilities({ perl: '/dev/null' });
  assert.equal(notRunnable.xattrs, false);
  const helper = SysHelper.start();
  const hasPerl = await helper.ready();
  helper.close();
  if (hasPerl) {
    const full = await systemCapabilities();
    assert.equal(full.xattrs, true);
    assert.equal(full.fifos, 'helper');
    assert.equal(full.reason, undefined);
    assert.ok(full.perl);
  }
});

test('a perl that exits at once is reported as not started, not as ENOTSUP', async () => {
  const dir = await tmpDir('stowage-badperl');
  const fake = join(dir, 'perl');
  await writeFile(fake, '#!/bin/sh\nexit 127\n', { mode: 0o755 });
  const helper = SysHelper.start({ perl: fake });
  try {
    assert.equal(await helper.ready(), false);
    assert.match(helper.unavailableReason!, /could not be started: helper exited \(code 127\); install perl/);
    await assert.rejects(helper.setXattr(join(dir, 'perl'), 'user.x', Buffer.from('1')), /setxattr .*: not possible without the syscall helper: perl .* could not be started/);
    // Times still work, through fs.lutimes.
    await helper.setTimes(fake, 1_000_000_000_000_000_000n, 1_000_000_000_000_000_000n);
    assert.equal((await lstat(fake)).mtimeMs, 1_000_000_000_000);
  } finally {
    helper.close();
  }
});
