// Hostile repositories: trees, snapshots, index files and packs written by an attacker who holds
// the password (Stowage's own writer stores hand-made JSON and bytes). Restoring or checking them
// must end in a typed error or a safe restore — never a write outside the target (a sentinel
// folder next to it must stay untouched) and never unbounded memory (the reads that could blow
// up run in a child process with a 256 MiB heap and must end with a typed error, not an OOM).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { IntegrityError } from '../../src/errors.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { compress } from '../../src/repository/compression.ts';
import { encodeIndexFile } from '../../src/repository/index-file.ts';
import { encodePackHeader, type PackedBlob } from '../../src/repository/pack.ts';
import { goTimeNow } from '../../src/repository/gotime.ts';
import type { BlobId, PackId } from '../../src/repository/id.ts';
import { encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { removeTree } from '../helpers/tmp.ts';
import { runInChild, type RunnerResult } from './runner.ts';

const PASSWORD = 'hostile password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const T = '2024-03-04T05:06:07.123456789Z';
const DIR_MODE = 0x80000000 + 0o755;
const LINK_MODE = 0x08000000 + 0o777;
const MiB = 1024 * 1024;
const HEAP_LIMIT = ['--max-old-space-size=256'];

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

type NodeJson = Record<string, unknown>;

function fileNode(name: string, content: string[], extra: NodeJson = {}): NodeJson {
  return { name, type: 'file', mode: 0o644, mtime: T, atime: T, ctime: T, uid: 0, gid: 0, content, ...extra };
}
function dirNode(name: string, subtree: string, extra: NodeJson = {}): NodeJson {
  return { name, type: 'dir', mode: DIR_MODE, mtime: T, atime: T, ctime: T, uid: 0, gid: 0, subtree, ...extra };
}
function linkNode(name: string, target: string): NodeJson {
  return { name, type: 'symlink', mode: LINK_MODE, mtime: T, atime: T, ctime: T, uid: 0, gid: 0, linktarget: target };
}

/** A fresh repository to fill with hand-made trees, blobs and snapshots. */
class Forge {
  readonly dir: string;
  repo!: Repository;
  indexed!: IndexedRepository;
  writer!: ReturnType<IndexedRepository['blobWriter']>;

  constructor(dir: string) {
    this.dir = dir;
  }

  async init(): Promise<this> {
    this.repo = await Repository.init(new LocalBackend(this.dir), { password: PASSWORD, kdf: FAST_KDF });
    this.indexed = await this.repo.loadIndex();
    this.writer = this.indexed.blobWriter();
    return this;
  }

  async data(bytes: string | Uint8Array): Promise<string> {
    return (await this.writer.saveBlob('data', typeof bytes === 'string' ? Buffer.from(bytes) : bytes)).id;
  }

  /**
   * A tree blob with these nodes as raw JSON (duplicates and all), sorted by name as restic
   * sorts them unless `keepOrder`; or the JSON text itself.
   */
  async tree(nodes: NodeJson[] | string, keepOrder = false): Promise<string> {
    const byName = (a: NodeJson, b: NodeJson) => Buffer.compare(Buffer.from(String(a.name)), Buffer.from(String(b.name)));
    const list = typeof nodes === 'string' || keepOrder ? nodes : [...nodes].sort(byName);
    const text = typeof list === 'string' ? list : `{"nodes":[${list.map((n) => JSON.stringify(n)).join(',')}]}\n`;
    return (await this.writer.saveBlob('tree', Buffer.from(text))).id;
  }

  /** Stores pending blobs with their index, then a snapshot of `tree`; returns its ID. */
  async snapshot(tree: string): Promise<string> {
    await this.writer.flush();
    return this.repo.saveUnpacked('snapshots', encodeSnapshot({ time: goTimeNow(), tree: tree as BlobId, paths: ['/hostile'], hostname: 'attacker' }));
  }

  /** Stores a pack exactly as given and an index that lists `blobs` in it. */
  async rawPack(bytes: Uint8Array, blobs: PackedBlob[]): Promise<PackId> {
    const id = sha256(bytes) as PackId;
    await this.repo.backend.save({ type: 'data', name: id }, bytes);
    await this.repo.saveUnpacked('index', encodeIndexFile([{ id, blobs }]));
    return id;
  }

  /** A sealed (and compressed when ulen > 0) blob in a pack of its own, indexed as given. */
  async loneBlob(type: 'data' | 'tree', id: string, payload: Uint8Array, indexed: { uncompressedLength: number }): Promise<void> {
    const sealed = this.repo.seal(payload);
    const blob: PackedBlob = { type, id: id as BlobId, offset: 0, length: sealed.length, uncompressedLength: indexed.uncompressedLength };
    const header = this.repo.seal(encodePackHeader([blob]));
    const tail = Buffer.alloc(4);
    tail.writeUInt32LE(header.length);
    await this.rawPack(Buffer.concat([sealed, header, tail]), [blob]);
  }
}

/** A zstd frame of RLE blocks that inflates to `total` bytes of `byte`, declaring no size. */
function zstdBomb(total: number, byte = 0): Buffer {
  const BLOCK = 128 * 1024;
  const blocks = Math.ceil(total / BLOCK);
  const out = Buffer.alloc(6 + blocks * 4);
  out.writeUInt32LE(0xfd2fb528, 0);
  out[4] = 0x00; // no content size, no checksum, not single-segment
  out[5] = (17 - 10) << 3; // a 128 KiB window
  for (let i = 0, o = 6; i < blocks; i++, o += 4) {
    const size = Math.min(BLOCK, total - i * BLOCK);
    const header = (size << 3) | (1 << 1) | (i === blocks - 1 ? 1 : 0); // RLE block
    out[o] = header & 0xff;
    out[o + 1] = (header >> 8) & 0xff;
    out[o + 2] = (header >> 16) & 0xff;
    out[o + 3] = byte;
  }
  return out;
}

/** Everything under `root` except `skip`: path → type, size, content hash, link target, nlink. */
async function fingerprint(root: string, skip: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (full === skip) continue;
      const st = await lstat(full);
      const rel = path.relative(root, full);
      if (st.isSymbolicLink()) out.set(rel, `link ${await readlink(full)}`);
      else if (st.isDirectory()) {
        out.set(rel, `dir ${st.mode.toString(8)} ${st.mtimeMs}`);
        await walk(full);
      } else out.set(rel, `file ${st.mode.toString(8)} ${st.size} ${st.nlink} ${st.mtimeMs} ${sha256(await readFile(full))}`);
    }
  };
  await walk(root);
  return out;
}

describe('hostile repositories', () => {
  let work: string;
  let caseNo = 0;
  const figures: string[] = [];
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-hostile-'));
  });
  after(async () => {
    if (figures.length) console.log(`hostile: ${figures.join('; ')}`);
    await removeTree(work);
  });

  /**
   * A case folder with a sentinel (a folder with a file, next to the target's parents) and a
   * target two levels down; returns a check that nothing outside the target changed.
   */
  async function arena(): Promise<{ root: string; target: string; sentinel: string; untouched: () => Promise<void> }> {
    const root = path.join(work, `case-${++caseNo}`);
    const sentinel = path.join(root, 'sentinel');
    const target = path.join(root, 'a', 'b', 'target');
    await mkdir(sentinel, { recursive: true });
    // The target exists beforehand: creating it would change its parent, which is outside.
    await mkdir(target, { recursive: true });
    await writeFile(path.join(sentinel, 'keep.txt'), 'the sentinel must not change\n');
    const before = await fingerprint(root, target);
    return {
      root, target, sentinel,
      untouched: async () => assert.deepEqual(await fingerprint(root, target), before, 'nothing outside the target changed'),
    };
  }

  async function forge(name: string): Promise<Forge> {
    return new Forge(path.join(work, `repo-${name}-${++caseNo}`)).init();
  }

  async function restoreSnapshotTree(f: Forge, tree: string, target: string): Promise<unknown> {
    await f.writer.flush();
    const indexed = await f.repo.loadIndex();
    return restore(indexed, tree as BlobId, { target }).then(() => undefined, (e: unknown) => e);
  }

  describe('names that leave the folder they belong to', () => {
    const unsafe: Array<[string, string]> = [
      ['..', 'parent'], ['.', 'self'], ['', 'empty'], ['/', 'slash'], ['a/b', 'slash inside'], ['../escaped', 'parent prefix'],
      ['/etc/escaped', 'absolute'], ['x\u0000y', 'NUL'], ['..\u0000', 'NUL after ..'],
    ];
    for (const [name, label] of unsafe) {
      for (const as of ['file', 'dir'] as const) {
        it(`a ${as} named ${JSON.stringify(name)} (${label}) is refused, at the top and nested`, async () => {
          const f = await forge('names');
          const payload = await f.data('escaped!\n');
          const inner = await f.tree([fileNode('escaped.txt', [payload])]);
          const evil = as === 'file' ? fileNode(name, [payload]) : dirNode(name, inner);
          const top = await f.tree([evil]);
          const nested = await f.tree([dirNode('ok', top)]);
          for (const tree of [top, nested]) {
            const a = await arena();
            const err = await restoreSnapshotTree(f, tree, a.target);
            assert.ok(err instanceof IntegrityError, `restore must fail with IntegrityError, got ${String(err)}`);
            assert.equal((err as IntegrityError).blob, top, `the error names the hostile tree: ${(err as Error).message}`);
            await a.untouched();
          }
        });
      }
    }

    it('duplicate and unsorted names are refused', async () => {
      const f = await forge('dups');
      const a1 = await f.data('one');
      const a2 = await f.data('two');
      for (const nodes of [[fileNode('same', [a1]), fileNode('same', [a2])], [fileNode('same', [a1]), dirNode('same', await f.tree([]))], [fileNode('b', [a1]), fileNode('a', [a2])]]) {
        const a = await arena();
        const err = await restoreSnapshotTree(f, await f.tree(nodes, true), a.target);
        assert.ok(err instanceof IntegrityError, String(err));
        await a.untouched();
      }
    });
  });

  describe('links that point outside', () => {
    it('symlinks to absolute and escaping targets are restored as links and never written through', async () => {
      const a = await arena();
      const f = await forge('links');
      const payload = await f.data('written through a link?\n');
      const tree = await f.tree([
        linkNode('abs', a.sentinel),
        linkNode('abs-file', path.join(a.sentinel, 'keep.txt')),
        linkNode('up', '../../../sentinel'),
        dirNode('sub', await f.tree([linkNode('upper', '../../../../sentinel/keep.txt')])),
        fileNode('zz-after', [payload]),
      ]);
      assert.equal(await restoreSnapshotTree(f, tree, a.target), undefined);
      assert.equal(await readlink(path.join(a.target, 'abs')), a.sentinel);
      assert.equal(await readlink(path.join(a.target, 'up')), '../../../sentinel');
      await a.untouched();
    });

    it('a second restore cannot write through a link the first one created (dir and file of the same name)', async () => {
      const a = await arena();
      const f = await forge('relink');
      const payload = await f.data('pwned\n');
      const first = await f.tree([linkNode('x', a.sentinel), linkNode('y', path.join(a.sentinel, 'keep.txt')), linkNode('z', a.sentinel)]);
      // Hard links "through" the old link: one name inside x/, the other at the top.
      const linked = { inode: 5, device_id: 1, links: 2 };
      const second = await f.tree([
        dirNode('x', await f.tree([fileNode('pwned.txt', [payload]), fileNode('keep.txt', [payload]), fileNode('h1', [payload], linked)])),
        fileNode('h2', [payload], linked),
        fileNode('y', [payload]),
        dirNode('z', await f.tree([dirNode('deeper', await f.tree([fileNode('pwned.txt', [payload])]))])),
      ]);
      assert.equal(await restoreSnapshotTree(f, first, a.target), undefined);
      assert.equal(await restoreSnapshotTree(f, second, a.target), undefined);
      assert.ok((await lstat(path.join(a.target, 'x'))).isDirectory(), 'the link was replaced by a folder');
      assert.equal(await readFile(path.join(a.target, 'y'), 'utf8'), 'pwned\n');
      assert.equal((await stat(path.join(a.target, 'x', 'h1'))).ino, (await stat(path.join(a.target, 'h2'))).ino, 'the hard link joins the two names inside the target');
      await a.untouched();
    });

    it('links planted in the target beforehand are replaced, not followed', async () => {
      const a = await arena();
      await symlink(a.sentinel, path.join(a.target, 'dir'));
      await symlink(path.join(a.sentinel, 'keep.txt'), path.join(a.target, 'file'));
      const f = await forge('planted');
      const payload = await f.data('overwritten?\n');
      const tree = await f.tree([dirNode('dir', await f.tree([fileNode('keep.txt', [payload]), fileNode('new.txt', [payload])])), fileNode('file', [payload])]);
      assert.equal(await restoreSnapshotTree(f, tree, a.target), undefined);
      await a.untouched();
    });

    it('hard links only ever join files of this restore: an inode of a file outside is not linked to', async () => {
      const a = await arena();
      const keep = path.join(a.sentinel, 'keep.txt');
      const st = await stat(keep);
      const f = await forge('hardlinks');
      const one = await f.data('first content\n');
      const two = await f.data('second content, different\n');
      const outside = { inode: Number(st.ino), device_id: Number(st.dev), links: 2 };
      const tree = await f.tree([
        // The inode and device of the sentinel file, and a link count that says "linked".
        fileNode('aliases-outside', [one], { ...outside, size: 14 }),
        // Two files claiming one inode with different contents: an inode collision.
        fileNode('collide-1', [one], { inode: 77, device_id: 1, links: 2, size: 14 }),
        fileNode('collide-2', [two], { inode: 77, device_id: 1, links: 2, size: 27 }),
        // A symlink and a file sharing an inode.
        linkNode('link-77', a.sentinel),
        fileNode('m-1', [one], { inode: 78, device_id: 1, links: 3 }),
      ]);
      assert.equal(await restoreSnapshotTree(f, tree, a.target), undefined);
      assert.equal((await stat(keep)).nlink, 1, 'the sentinel file gained no link');
      assert.equal(await readFile(path.join(a.target, 'aliases-outside'), 'utf8'), 'first content\n');
      const c1 = await stat(path.join(a.target, 'collide-1'));
      const c2 = await stat(path.join(a.target, 'collide-2'));
      // As restic: names with one (device, inode) become one file (whichever content came first).
      assert.equal(c1.ino, c2.ino);
      await a.untouched();
    });
  });

  /** Runs a restore of `snapshot` (or a check) in a child with a 256 MiB heap; it must end in a typed error. */
  async function inSmallHeap(f: Forge, what: { restore: string } | { check: true }, target: string): Promise<RunnerResult> {
    const spec = 'restore' in what
      ? { op: 'restore' as const, repo: f.dir, password: PASSWORD, snapshot: what.restore, target }
      : { op: 'check' as const, repo: f.dir, password: PASSWORD, readData: true };
    const r = await runInChild(spec, { nodeArgs: HEAP_LIMIT, timeoutMs: 120_000 });
    assert.notEqual(r.signal, 'SIGKILL', `the child hung: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /heap out of memory|Allocation failed/i, 'no out-of-memory crash');
    return r;
  }

  function typedFailure(r: RunnerResult, pattern: RegExp, label: string): void {
    assert.equal(r.code, 1, `${label}: exits with a typed error (code 1), got ${r.code}: ${r.stdout}\n${r.stderr.slice(0, 2000)}`);
    assert.ok(r.error && r.error.code, `${label}: a StowageError: ${r.stdout}`);
    assert.match(r.error.message, pattern, label);
    figures.push(`${label}: ${r.error.name} at ${(r.error.maxRss / MiB).toFixed(0)} MiB peak RSS`);
  }

  describe('sizes and counts that could exhaust memory (child process, 256 MiB heap)', () => {
    it('a zstd bomb in a snapshot file (128 KiB inflating to 4 GiB) is refused at the unpacked-file limit', { timeout: 180_000 }, async () => {
      const f = await forge('unpacked-bomb');
      const sealed = f.repo.seal(Buffer.concat([Buffer.from([0x02]), zstdBomb(4 * 1024 * MiB, 0x7b)]));
      const name = sha256(sealed);
      await f.repo.backend.save({ type: 'snapshots', name }, sealed);
      const a = await arena();
      const r = await inSmallHeap(f, { restore: name }, a.target);
      typedFailure(r, /decompresses to more than/, 'snapshot zstd bomb');
      // Bounded, though by a generous limit: the 1 GiB an unpacked file may inflate to.
      assert.ok(r.error!.maxRss < 1600 * MiB, `peak RSS ${(r.error!.maxRss / MiB).toFixed(0)} MiB`);
      await a.untouched();
    });

    it('a zstd bomb in a tree blob is cut off at the length the index declares', { timeout: 180_000 }, async () => {
      const f = await forge('blob-bomb');
      const claimed = 64 * MiB;
      const id = sha256(Buffer.from('the tree the bomb pretends to be'));
      await f.loneBlob('tree', id, zstdBomb(2 * 1024 * MiB, 0x20), { uncompressedLength: claimed });
      const snap = await f.snapshot(id);
      const a = await arena();
      const r = await inSmallHeap(f, { restore: snap }, a.target);
      typedFailure(r, /decompresses to more than 67108864 bytes/, 'tree blob zstd bomb');
      assert.ok(r.error!.maxRss < claimed + 400 * MiB, `peak RSS ${(r.error!.maxRss / MiB).toFixed(0)} MiB`);
      await a.untouched();
    });

    it('a data blob declaring 4 GiB at offset 10^9 is refused before anything is allocated', async () => {
      const f = await forge('huge-offset');
      const real = Buffer.from('real data');
      const id = sha256(real);
      const sealed = f.repo.seal(real);
      const blob: PackedBlob = { type: 'data', id: id as BlobId, offset: 0, length: sealed.length, uncompressedLength: 0 };
      const header = f.repo.seal(encodePackHeader([blob]));
      const tail = Buffer.alloc(4);
      tail.writeUInt32LE(header.length);
      const pack = Buffer.concat([sealed, header, tail]);
      const packId = sha256(pack);
      await f.repo.backend.save({ type: 'data', name: packId }, pack);
      // The index lies: the blob is a billion bytes in and four gigabytes long.
      await f.repo.saveUnpacked('index', encodeIndexFile([{ id: packId as PackId, blobs: [{ ...blob, offset: 1e9, length: 2 ** 32 - 1, uncompressedLength: 2 ** 32 - 1 }] }]));
      const tree = await f.tree([fileNode('huge', [id])]);
      const snap = await f.snapshot(tree);
      const a = await arena();
      const r = await inSmallHeap(f, { restore: snap }, a.target);
      typedFailure(r, /past the end/, 'index offset 10^9, length 4 GiB');
      assert.ok(r.error!.maxRss < 400 * MiB);
      const c = await inSmallHeap(f, { check: true }, a.target);
      assert.equal(c.code, 0, c.stderr);
      assert.equal((c.done as { ok: boolean }).ok, false, 'check reports the lying index');
      await a.untouched();
    });

    it('pack headers claiming 4 GiB, or blobs far past the pack, are reported by check', { timeout: 120_000 }, async () => {
      const f = await forge('pack-header');
      const real = Buffer.from('blob in a pack with a lying header');
      const id = sha256(real) as BlobId;
      const sealed = f.repo.seal(real);
      const blob: PackedBlob = { type: 'data', id, offset: 0, length: sealed.length, uncompressedLength: 0 };
      const header = f.repo.seal(encodePackHeader([blob]));
      // Header length field: 0xFFFFFFFF.
      const fourGiB = Buffer.alloc(4);
      fourGiB.writeUInt32LE(0xffffffff);
      const p1 = await f.rawPack(Buffer.concat([sealed, header, fourGiB]), [blob]);
      // A header whose entries claim 4 GiB blobs, 100 000 of them (a 3.7 MB header).
      const many: PackedBlob[] = Array.from({ length: 100_000 }, (_, i) => ({ type: 'data', id: sha256(Buffer.from(`fake ${i}`)) as BlobId, offset: 0, length: 2 ** 32 - 1, uncompressedLength: 2 ** 32 - 1 }));
      const bigHeader = f.repo.seal(encodePackHeader(many));
      const bigLen = Buffer.alloc(4);
      bigLen.writeUInt32LE(bigHeader.length);
      const p2 = await f.rawPack(Buffer.concat([sealed, bigHeader, bigLen]), [blob]);
      const a = await arena();
      const c = await inSmallHeap(f, { check: true }, a.target);
      assert.equal(c.code, 0, `check completes with a report: ${c.stdout}\n${c.stderr}`);
      const report = c.done as { ok: boolean; errors: string[]; maxRss: number };
      assert.equal(report.ok, false);
      for (const p of [p1, p2]) assert.ok(report.errors.some((e) => e.includes(p)), `an error names pack ${p}: ${JSON.stringify(report.errors)}`);
      figures.push(`pack headers claiming 4 GiB: check reports both at ${(report.maxRss / MiB).toFixed(0)} MiB peak RSS`);
      // The same, in process: errors are typed and name the pack.
      const inProcess = await checkRepository(f.repo, { readData: true });
      assert.ok(inProcess.errors.some((e) => e.file?.endsWith(p1) && /header/.test(e.message)), JSON.stringify(inProcess.errors));
    });

    it('an index with 200 000 entries for packs that do not exist loads in bounded memory and fails check', { timeout: 180_000 }, async () => {
      const f = await forge('many-entries');
      const packs = Array.from({ length: 200 }, (_, p) => ({
        id: sha256(Buffer.from(`pack ${p}`)) as PackId,
        blobs: Array.from({ length: 1000 }, (_, b) => ({ type: 'data' as const, id: sha256(Buffer.from(`blob ${p} ${b}`)) as BlobId, offset: b * 100, length: 100, uncompressedLength: 0 })),
      }));
      await f.repo.saveUnpacked('index', encodeIndexFile(packs));
      const a = await arena();
      const c = await inSmallHeap(f, { check: true }, a.target);
      assert.equal(c.code, 0, c.stderr.slice(0, 2000));
      const report = c.done as { ok: boolean; errors: string[]; maxRss: number };
      assert.equal(report.ok, false);
      figures.push(`200 000 index entries: check ${report.errors.length} errors at ${(report.maxRss / MiB).toFixed(0)} MiB peak RSS`);
    });

    it('JSON nested 100 000 deep in a snapshot, an index and a tree is a typed error', { timeout: 120_000 }, async () => {
      const deep = '['.repeat(100_000) + ']'.repeat(100_000);
      const H = 'a'.repeat(64);
      // Snapshot with nested paths.
      const f1 = await forge('deep-snapshot');
      const snap = await f1.repo.saveUnpacked('snapshots', Buffer.from(`{"time":"${T}","tree":${deep},"paths":${deep}}`));
      const a1 = await arena();
      typedFailure(await inSmallHeap(f1, { restore: snap }, a1.target), /snapshot/, 'snapshot JSON nested 100 000 deep');
      // Index with a nested offset.
      const f2 = await forge('deep-index');
      const good = await f2.tree([]);
      const snap2 = await f2.snapshot(good);
      await f2.repo.saveUnpacked('index', Buffer.from(`{"packs":[{"id":"${H}","blobs":[{"id":"${H}","type":"data","offset":${deep},"length":40}]}]}`));
      const a2 = await arena();
      typedFailure(await inSmallHeap(f2, { restore: snap2 }, a2.target), /index/, 'index JSON nested 100 000 deep');
      // Tree with a nested generic attribute and a nested subtree ID.
      const f3 = await forge('deep-tree');
      for (const node of [`{"name":"x","type":"file","content":[],"generic_attributes":{"a":${deep}}}`, `{"name":"x","type":"dir","subtree":${deep}}`]) {
        const tree = await f3.tree(`{"nodes":[${node}]}`);
        const snap3 = await f3.snapshot(tree);
        const a3 = await arena();
        typedFailure(await inSmallHeap(f3, { restore: snap3 }, a3.target), /tree/, 'tree JSON nested 100 000 deep');
        await a3.untouched();
      }
    });

    it('a valid but wide tree (40 000 entries in one folder, all with the same content, 8 MiB of JSON) restores within the 256 MiB heap', { timeout: 180_000 }, async () => {
      // Trees are decoded whole, as restic does, so the heap a tree needs grows with its size:
      // 40 000 entries fit in 256 MiB; 250 000 (50 MiB of JSON) do not.
      const f = await forge('wide-tree');
      const empty = await f.data(new Uint8Array(0));
      const parts: string[] = [];
      for (let i = 0; i < 40_000; i++) parts.push(JSON.stringify(fileNode(`f${String(i).padStart(7, '0')}`, [empty])));
      const text = Buffer.from(`{"nodes":[${parts.join(',')}]}\n`);
      const id = sha256(text);
      await f.loneBlob('tree', id, compress(text, 'auto'), { uncompressedLength: text.length });
      const snap = await f.snapshot(id);
      const a = await arena();
      const r = await inSmallHeap(f, { restore: snap }, a.target);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr.slice(0, 2000)}`);
      const done = r.done as { files: number; maxRss: number };
      assert.equal(done.files, 40_000);
      figures.push(`tree of ${(text.length / MiB).toFixed(1)} MiB (40 000 entries) restored at ${(done.maxRss / MiB).toFixed(0)} MiB peak RSS`);
      await a.untouched();
    });
  });
});
