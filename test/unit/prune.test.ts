// Prune on a MemoryBackend: how packs are classified and chosen (restic's rules), what the
// execution leaves behind, and that an abort at any phase leaves a sound repository.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AbortedError, IntegrityError, InvalidInputError } from '../../src/errors.ts';
import { LockedError } from '../../src/repository/lock.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository, sha256hex, type IndexedRepository } from '../../src/repository/repository.ts';
import { goTimeNow } from '../../src/repository/gotime.ts';
import type { BlobId, BlobType, PackId } from '../../src/repository/id.ts';
import { compress } from '../../src/repository/compression.ts';
import { encodePackHeader, type PackedBlob } from '../../src/repository/pack.ts';
import { encodeIndexFile } from '../../src/repository/index-file.ts';
import { Lock } from '../../src/repository/lock.ts';
import { GO_MODE_DIR } from '../../src/snapshot/model/mode.ts';
import type { TreeNode } from '../../src/snapshot/model/node.ts';
import { encodeTree, decodeTree } from '../../src/snapshot/model/tree.ts';
import { encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import {
  BlobHandleSet, executePrune, findUsedBlobs, parseMaxUnused, parseSize, planPrune, prune, type PrunePhase, type PrunePlan,
} from '../../src/snapshot/operations/prune.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const HEADER = 4 + 32; // header length field + crypto overhead
const ENTRY = 37; // uncompressed header entry
const ENTRY_Z = 41; // compressed header entry

interface Blob {
  type: BlobType;
  id: BlobId;
  plain: Uint8Array;
}

function dataBlob(size: number): Blob {
  const plain = randomBytes(size);
  return { type: 'data', id: sha256hex(plain) as BlobId, plain };
}

function treeBlob(nodes: TreeNode[]): Blob {
  const plain = encodeTree(nodes);
  return { type: 'tree', id: sha256hex(plain) as BlobId, plain };
}

function fileNode(name: string, content: Blob[]): TreeNode {
  const t = goTimeNow();
  const size = content.reduce((s, b) => s + b.plain.length, 0);
  return { name, type: 'file', mode: 0o644, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, size, content: content.map((b) => b.id) };
}

function dirNode(name: string, subtree: Blob): TreeNode {
  const t = goTimeNow();
  return { name, type: 'dir', mode: (GO_MODE_DIR | 0o755) >>> 0, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, subtree: subtree.id, content: null };
}

interface StoredPack {
  id: PackId;
  blobs: PackedBlob[];
  size: number;
  /** Bytes of the pack that belong to no blob (header, length field, crypto overhead). */
  header: number;
}

/** A repository in memory, with packs built blob by blob (so any layout can be made). */
class Fixture {
  readonly backend = new MemoryBackend();
  repo!: Repository;

  static async create(version: 1 | 2 = 1): Promise<Fixture> {
    const f = new Fixture();
    f.repo = await Repository.init(f.backend, { password: 'pw', kdf: KDF, version });
    return f;
  }

  /** Stores a pack of these blobs; `index: false` leaves it out of the index, `compress` compresses (v2). */
  async pack(blobs: Blob[], opts: { index?: boolean; compress?: boolean } = {}): Promise<StoredPack> {
    const parts: Uint8Array[] = [];
    const entries: PackedBlob[] = [];
    let offset = 0;
    for (const b of blobs) {
      const payload = opts.compress ? compress(b.plain, 'auto') : b.plain;
      const sealed = this.repo.seal(payload);
      entries.push({ type: b.type, id: b.id, offset, length: sealed.length, uncompressedLength: opts.compress ? b.plain.length : 0 });
      parts.push(sealed);
      offset += sealed.length;
    }
    const sealedHeader = this.repo.seal(encodePackHeader(entries));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(sealedHeader.length);
    const bytes = Buffer.concat([...parts, sealedHeader, len]);
    const id = sha256hex(bytes) as PackId;
    await this.backend.save({ type: 'data', name: id }, bytes);
    if (opts.index !== false) await this.repo.saveUnpacked('index', encodeIndexFile([{ id, blobs: entries }]));
    return { id, blobs: entries, size: bytes.length, header: bytes.length - offset };
  }

  async snapshot(root: Blob): Promise<string> {
    return this.repo.saveUnpacked('snapshots', encodeSnapshot({ time: goTimeNow(), tree: root.id, paths: ['/src'], hostname: 'h' }));
  }

  async packFiles(): Promise<string[]> {
    const out: string[] = [];
    for await (const f of this.backend.list('data')) out.push(f.name);
    return out.sort();
  }

  async indexFiles(): Promise<string[]> {
    const out: string[] = [];
    for await (const id of this.repo.listIds('index')) out.push(id);
    return out.sort();
  }

  indexed(): Promise<IndexedRepository> {
    return this.repo.loadIndex();
  }
}

const stored = (b: Blob) => b.plain.length + 32;

/**
 * The basic layout: A = [d1 d2] fully used, B = [d3 d4] partly used, C = [d5] unused,
 * T = [root sub] trees, U = [d6] not in any index. Each pack has its own index file, unless
 * `sharedIndex`: then one index file lists A and C (so the kept A must be indexed anew).
 */
async function basicFixture(version: 1 | 2 = 1, sharedIndex = false) {
  const f = await Fixture.create(version);
  const [d1, d2, d3, d4, d5, d6] = [1000, 2000, 3000, 4000, 5000, 6000].map(dataBlob) as [Blob, Blob, Blob, Blob, Blob, Blob];
  const sub = treeBlob([fileNode('f3', [d3])]);
  const root = treeBlob([fileNode('f1', [d1, d2]), dirNode('s', sub)]);
  const A = await f.pack([d1, d2], { index: !sharedIndex });
  const B = await f.pack([d3, d4]);
  const C = await f.pack([d5], { index: !sharedIndex });
  if (sharedIndex) await f.repo.saveUnpacked('index', encodeIndexFile([A, C]));
  const T = await f.pack([root, sub], { compress: version === 2 });
  const U = await f.pack([d6], { index: false });
  await f.snapshot(root);
  return { f, d: { d1, d2, d3, d4, d5, d6 }, root, sub, A, B, C, T, U };
}

/** Every blob the snapshots reach loads and verifies. */
async function assertSnapshotsReadable(indexed: IndexedRepository): Promise<number> {
  let blobs = 0;
  for await (const sid of indexed.repo.listIds('snapshots')) {
    const snap = JSON.parse(Buffer.from(await indexed.repo.loadUnpacked('snapshots', sid)).toString()) as { tree: BlobId };
    const stack = [snap.tree];
    while (stack.length) {
      const t = stack.pop()!;
      const nodes = decodeTree(await indexed.loadBlob('tree', t), t);
      blobs++;
      for (const n of nodes) {
        for (const c of n.content ?? []) {
          await indexed.loadBlob('data', c);
          blobs++;
        }
        if (n.subtree) stack.push(n.subtree);
      }
    }
  }
  return blobs;
}

async function assertSound(f: Fixture): Promise<void> {
  const report = await checkRepository(f.repo, { readData: true });
  assert.deepEqual(report.errors, [], 'check --read-data finds no error');
  await assertSnapshotsReadable(await f.indexed());
}

describe('prune options', () => {
  it('parses sizes and --max-unused as restic does', () => {
    assert.equal(parseSize('10M', 'x'), 10 * 1024 * 1024);
    assert.equal(parseSize('3k', 'x'), 3072);
    assert.equal(parseSize('7', 'x'), 7);
    assert.equal(parseSize('2b', 'x'), 2);
    assert.equal(parseSize('1T', 'x'), 1024 ** 4);
    assert.throws(() => parseSize('1.5M', 'x'), InvalidInputError);
    assert.throws(() => parseSize('ten', 'x'), InvalidInputError);
    assert.throws(() => parseSize('-5', 'x'), InvalidInputError);
    assert.equal(parseMaxUnused('5%')(1900), 100);
    assert.equal(parseMaxUnused(undefined)(1900), 100);
    assert.equal(parseMaxUnused('50%')(1000), 1000);
    assert.equal(parseMaxUnused('0%')(1000), 0);
    assert.equal(parseMaxUnused('unlimited')(1), Infinity);
    assert.equal(parseMaxUnused('10M')(1), 10 * 1024 * 1024);
    assert.equal(parseMaxUnused(123)(1), 123);
    assert.throws(() => parseMaxUnused('100%'), /below 100%/);
    assert.throws(() => parseMaxUnused('-1%'), /positive/);
    assert.throws(() => parseMaxUnused('x%'), InvalidInputError);
    assert.throws(() => parseMaxUnused(''), InvalidInputError);
  });

  it('BlobHandleSet keeps data and tree handles apart and survives growth', () => {
    const set = new BlobHandleSet();
    const ids = Array.from({ length: 5000 }, () => randomBytes(32).toString('hex'));
    for (const id of ids) assert.equal(set.add('data', id), true);
    for (const id of ids.slice(0, 100)) assert.equal(set.add('tree', id), true);
    assert.equal(set.add('data', ids[0]!), false);
    assert.equal(set.size, 5100);
    assert.ok(set.has('data', ids[4999]!));
    assert.ok(!set.has('tree', ids[4999]!));
    assert.ok(set.set('tree', ids[5]!, 7));
    assert.equal(set.get('tree', ids[5]!), 7);
    assert.equal(set.get('data', ids[5]!), 0);
    assert.equal(set.get('data', randomBytes(32).toString('hex')), undefined);
    assert.equal(set.countValue(7), 1);
    assert.equal([...set.entries()].length, 5100);
    assert.ok(set.memoryBytes() < 5100 * 34 * 4, 'about 34 bytes per slot');
    assert.throws(() => set.add('data', 'zz'), InvalidInputError);
  });
});

describe('planPrune classifies packs as restic does', () => {
  it('used, partly used, unused and unreferenced packs; small partly used packs are repacked', async () => {
    const { f, d, root, sub, A, B, C, T, U } = await basicFixture();
    const plan = await planPrune(await f.indexed());
    const s = plan.stats;
    assert.deepEqual(s.packs, { used: 2, unused: 1, partlyUsed: 1, unreferenced: 1, total: 5, keep: 2, repack: 1, remove: 1, removeTotal: 2 });
    const usedBytes = stored(d.d1) + stored(d.d2) + stored(d.d3) + stored(root) + stored(sub);
    assert.equal(s.blobs.used, 5);
    assert.equal(s.blobs.unused, 2);
    assert.equal(s.blobs.duplicate, 0);
    assert.equal(s.blobs.total, 7);
    // The statistics count blobs only (as restic's); a pack's size to repack includes its header.
    assert.equal(s.bytes.used, usedBytes);
    assert.equal(s.bytes.unused, stored(d.d4) + stored(d.d5));
    assert.equal(s.bytes.unreferenced, U.size);
    assert.equal(s.bytes.total, usedBytes + stored(d.d4) + stored(d.d5) + U.size);
    assert.equal(A.size + C.size + T.size, stored(d.d1) + stored(d.d2) + stored(d.d5) + stored(root) + stored(sub) + A.header + C.header + T.header);
    assert.equal(s.blobs.repack, 2);
    assert.equal(s.blobs.repackRemove, 1);
    assert.equal(s.bytes.repack, B.size);
    assert.equal(s.bytes.repackRemove, stored(d.d4));
    assert.equal(s.blobs.remove, 1);
    assert.equal(s.bytes.remove, stored(d.d5));
    assert.equal(s.blobs.removeTotal, 2);
    assert.equal(s.blobs.remaining, 5);
    assert.equal(s.bytes.removeTotal, stored(d.d4) + stored(d.d5) + U.size);
    assert.equal(s.bytes.remaining, s.bytes.total - s.bytes.removeTotal);
    assert.equal(s.bytes.remainingUnused, 0);
    assert.equal(s.bytes.uncompressed, 0, 'v1 reports no uncompressed data');
    assert.deepEqual(plan.removeUnreferenced, [U.id]);
    assert.deepEqual(plan.repack, [B.id]);
    assert.deepEqual(plan.remove, [C.id]);
    assert.deepEqual(plan.forgetMissing, []);
    assert.equal(plan.targetPackSize, Math.floor((4 * 1024 * 1024 * 4) / 5));
    // Only d3 must be copied out of B.
    assert.deepEqual([...plan.keepBlobs.entries()].filter((e) => e.value === 1).map((e) => e.id), [d.d3.id]);
    assert.deepEqual(plan.snapshots.length, 1);
    assert.deepEqual(plan.indexFiles, await f.indexFiles());
    // The plan is plain data.
    assert.doesNotThrow(() => JSON.stringify(plan));
  });

  it('takes the used blobs from getUsedBlobs when given (restic\'s PlanPrune), findUsedBlobs by default', async () => {
    const { f, d } = await basicFixture();
    const indexed = await f.indexed();
    const calls: number[] = [];
    const plan = await planPrune(indexed, {
      getUsedBlobs: async (ix, roots, o) => {
        calls.push(roots.length);
        return findUsedBlobs(ix, roots, o);
      },
    });
    assert.deepEqual(calls, [1]);
    assert.deepEqual(plan.stats, (await planPrune(indexed)).stats);
    // A blob the set leaves out is pruned: here d3, the one blob B still holds.
    const without = await planPrune(indexed, {
      getUsedBlobs: async (ix, roots, o) => {
        const used = await findUsedBlobs(ix, roots, o);
        const rest = new BlobHandleSet();
        for (const e of used.entries()) if (e.id !== d.d3.id) rest.add(e.type, e.id);
        return rest;
      },
    });
    assert.equal(without.stats.blobs.used, plan.stats.blobs.used - 1);
  });

  it('--max-unused decides whether a large enough partly used pack is repacked', async () => {
    const { f, d, B } = await basicFixture();
    const indexed = await f.indexed();
    // repackSmallerThan 1 byte: no pack counts as small, so only --max-unused decides.
    const plan = (maxUnused: string | number) => planPrune(indexed, { maxUnused, repackSmallerThan: 1 });
    assert.deepEqual((await plan('unlimited')).repack, []);
    assert.deepEqual((await plan('0%')).repack, [B.id]);
    // After removing C, d4 is the unused rest: kept when strictly below the limit.
    assert.deepEqual((await plan(stored(d.d4) + 1)).repack, []);
    assert.deepEqual((await plan(stored(d.d4))).repack, [B.id]);
    const kept = await plan('unlimited');
    assert.equal(kept.stats.bytes.remainingUnused, stored(d.d4));
    assert.equal(kept.stats.packs.keep, 3);
    assert.equal(kept.keepBlobs.size, 0, 'no blob set is kept when nothing is repacked');
  });

  it('repacks the packs with the most unused space first, within --max-repack-size', async () => {
    const f = await Fixture.create();
    const [u1, x1, u2, x2] = [1000, 9000, 9000, 1000].map(dataBlob) as [Blob, Blob, Blob, Blob];
    const root = treeBlob([fileNode('a', [u1]), fileNode('b', [u2])]);
    const P = await f.pack([u1, x1]); // 90 % unused
    const Q = await f.pack([u2, x2]); // 10 % unused
    await f.pack([root]);
    await f.snapshot(root);
    const indexed = await f.indexed();
    // Limit 2000: after P the unused rest (x2) is below it, so Q stays.
    const p1 = await planPrune(indexed, { maxUnused: 2000, repackSmallerThan: 1 });
    assert.deepEqual(p1.repack, [P.id]);
    assert.equal(p1.stats.bytes.remainingUnused, stored(x2));
    const all = await planPrune(indexed, { maxUnused: '0%', repackSmallerThan: 1 });
    assert.deepEqual(new Set(all.repack), new Set([P.id, Q.id]));
    // --max-repack-size: a pack that would reach the limit is kept.
    assert.deepEqual((await planPrune(indexed, { maxUnused: '0%', repackSmallerThan: 1, maxRepackSize: P.size })).repack, []);
    assert.deepEqual((await planPrune(indexed, { maxUnused: '0%', repackSmallerThan: 1, maxRepackSize: P.size + 1 })).repack, [P.id]);
    assert.deepEqual((await planPrune(indexed, { maxUnused: '0%', repackSmallerThan: 1, maxRepackSize: '1M' })).repack.length, 2);
  });

  it('--repack-cacheable-only keeps data packs and repacks tree packs', async () => {
    const f = await Fixture.create();
    const [u, x] = [100, 200].map(dataBlob) as [Blob, Blob];
    const root = treeBlob([fileNode('a', [u])]);
    const oldRoot = treeBlob([fileNode('b', [x])]);
    const D = await f.pack([u, x]);
    const T = await f.pack([root, oldRoot]);
    await f.snapshot(root);
    const plan = await planPrune(await f.indexed(), { repackCacheableOnly: true, maxUnused: '0%' });
    assert.deepEqual(plan.repack, [T.id]);
    assert.equal(plan.stats.packs.keep, 1);
    assert.ok(!plan.repack.includes(D.id));
  });

  it('repacks small fully used packs only when there are at least 10 of them', async () => {
    // The tree pack is small and fully used too: 8 or 9 data packs make 9 or 10 small packs.
    for (const count of [8, 9]) {
      const f = await Fixture.create();
      const blobs = Array.from({ length: count }, () => dataBlob(500));
      const root = treeBlob(blobs.map((b, i) => fileNode(`f${String(i).padStart(2, '0')}`, [b])));
      for (const b of blobs) await f.pack([b]);
      await f.pack([root]);
      await f.snapshot(root);
      const plan = await planPrune(await f.indexed());
      assert.equal(plan.repack.length, count === 9 ? 10 : 0, `${count} small data packs + 1 tree pack`);
      assert.equal(plan.stats.packs.keep, count === 9 ? 0 : 9);
      // --repack-small (restic 0.14-0.16) and --repack-smaller-than set the threshold explicitly.
      assert.equal((await planPrune(await f.indexed(), { repackSmall: true })).targetPackSize, Math.floor((16 * 1024 * 1024) / 5) * 4);
      assert.equal((await planPrune(await f.indexed(), { repackSmallerThan: '1M' })).targetPackSize, 1024 * 1024);
      await assert.rejects(planPrune(await f.indexed(), { repackSmallerThan: '17M' }), /exceeds/);
    }
  });

  it('counts one copy of a duplicate blob as used and prefers a pack of only duplicates', async () => {
    const f = await Fixture.create();
    const [d1, d2] = [1000, 2000].map(dataBlob) as [Blob, Blob];
    const root = treeBlob([fileNode('a', [d1])]);
    const P1 = await f.pack([d1, d2]); // d1 and the unused d2
    const P2 = await f.pack([d1]); // only the duplicate: what an interrupted prune leaves
    await f.pack([root]);
    await f.snapshot(root);
    const plan = await planPrune(await f.indexed());
    assert.equal(plan.stats.blobs.duplicate, 1);
    assert.equal(plan.stats.bytes.duplicate, stored(d1));
    assert.equal(plan.stats.blobs.used, 2);
    assert.deepEqual(plan.remove, [P1.id], 'the pack whose copy was not chosen holds nothing used');
    assert.deepEqual(plan.repack, []);
    assert.ok(!plan.remove.includes(P2.id));
    const result = await executePrune(await f.indexed(), plan);
    assert.equal(result.packsRemoved, 1);
    await assertSound(f);
  });

  it('repacks a pack that mixes trees and data, and a v2 pack of uncompressed trees', async () => {
    const f = await Fixture.create(2);
    const d1 = dataBlob(3000);
    const sub = treeBlob([fileNode('x', [d1])]);
    const root = treeBlob([dirNode('d', sub)]);
    const M = await f.pack([d1, sub], { compress: true });
    const T = await f.pack([root]); // uncompressed tree in a v2 repository
    await f.snapshot(root);
    const plan = await planPrune(await f.indexed(), { maxUnused: 'unlimited' });
    assert.deepEqual(new Set(plan.repack), new Set([M.id, T.id]));
    assert.equal(plan.stats.bytes.uncompressed, 0, 'the uncompressed pack is repacked, so nothing stays uncompressed');
    const result = await executePrune(await f.indexed(), plan);
    assert.equal(result.packsWritten, 2, 'one data and one tree pack');
    await assertSound(f);
    const indexed = await f.indexed();
    for (const [, blobs] of indexed.index.packs()) {
      assert.equal(new Set(blobs.map((b) => b.type)).size, 1, 'no mixed pack remains');
      for (const b of blobs) if (b.type === 'tree') assert.ok(b.uncompressedLength > 0, 'trees are compressed now');
    }
    assert.deepEqual((await planPrune(indexed, { maxUnused: 'unlimited' })).repack, [], 'nothing left to repack');
  });

  it('forgets missing packs nothing needs, and refuses when a needed pack is missing', async () => {
    const f = await Fixture.create();
    const [d1, d2] = [100, 200].map(dataBlob) as [Blob, Blob];
    const root = treeBlob([fileNode('a', [d1])]);
    await f.pack([d1]);
    const gone = await f.pack([d2]);
    await f.pack([root]);
    await f.snapshot(root);
    await f.backend.remove({ type: 'data', name: gone.id });
    const warnings: string[] = [];
    const plan = await planPrune(await f.indexed(), { onMessage: (m, level) => level === 'warning' && warnings.push(m) });
    assert.deepEqual(plan.forgetMissing, [gone.id]);
    assert.ok(warnings.some((w) => w.includes(gone.id)));
    await executePrune(await f.indexed(), plan);
    const indexed = await f.indexed();
    assert.ok(!indexed.index.hasPack(gone.id), 'the missing pack is no longer indexed');
    await assertSound(f);

    const g = await Fixture.create();
    const needed = await g.pack([d1]);
    await g.pack([root]);
    await g.snapshot(root);
    await g.backend.remove({ type: 'data', name: needed.id });
    await assert.rejects(planPrune(await g.indexed()), (e: unknown) => e instanceof IntegrityError && e.message.includes(needed.id) && /missing/.test(e.message));
  });

  it('refuses when a needed pack has the wrong size or a used blob is not indexed', async () => {
    const f = await Fixture.create();
    const [d1, d2] = [100, 200].map(dataBlob) as [Blob, Blob];
    const root = treeBlob([fileNode('a', [d1])]);
    const P = await f.pack([d1]);
    await f.pack([root]);
    await f.snapshot(root);
    const bytes = await f.backend.load({ type: 'data', name: P.id });
    await f.backend.save({ type: 'data', name: P.id }, Buffer.concat([bytes, Buffer.from([0])]));
    await assert.rejects(planPrune(await f.indexed()), (e: unknown) => e instanceof IntegrityError && /does not match real size/.test(e.message) && e.file === `data/${P.id.slice(0, 2)}/${P.id}`);

    const g = await Fixture.create();
    const root2 = treeBlob([fileNode('a', [d1, d2])]);
    await g.pack([d1]);
    await g.pack([root2]);
    await g.snapshot(root2);
    await assert.rejects(planPrune(await g.indexed()), (e: unknown) => e instanceof IntegrityError && e.message.includes(d2.id) && /not in the index/.test(e.message));
  });
});

describe('executePrune', () => {
  it('removes what no snapshot uses and keeps every used blob', async () => {
    const { f, A, B, C, T, U } = await basicFixture();
    const indexBefore = await f.indexFiles();
    const phases: PrunePhase[] = [];
    const result = await prune(await f.indexed(), { onProgress: (p) => phases.push(p.phase) });
    assert.equal(result.dryRun, false);
    assert.equal(result.packsWritten, 1);
    assert.equal(result.packsRemoved, 3);
    assert.deepEqual(result.failedRemovals, []);
    const packs = await f.packFiles();
    for (const gone of [B, C, U]) assert.ok(!packs.includes(gone.id), 'obsolete pack deleted');
    for (const kept of [A, T]) assert.ok(packs.includes(kept.id), 'fully used pack kept');
    assert.equal(packs.length, 3);
    // The index files of A and T stay as they were; those of B and C are replaced.
    const indexAfter = await f.indexFiles();
    assert.equal(result.indexFilesRemoved.length, 2);
    for (const id of result.indexFilesRemoved) assert.ok(indexBefore.includes(id) && !indexAfter.includes(id));
    for (const id of result.indexFilesWritten) assert.ok(indexAfter.includes(id));
    assert.equal(indexAfter.length, 3, 'A, T and the repacked pack');
    for (const p of ['snapshots', 'trees', 'packs', 'unreferenced', 'repack', 'delete-index', 'delete-packs'] as const) assert.ok(phases.includes(p), `progress for ${p}`);
    await assertSound(f);
    const report = await checkRepository(f.repo, {});
    assert.deepEqual(report.hints, [], 'no unreferenced pack is left');
    const again = await planPrune(await f.indexed(), { maxUnused: '0%' });
    assert.equal(again.stats.bytes.unused + again.stats.bytes.duplicate + again.stats.bytes.unreferenced, 0);
  });

  it('--dry-run changes nothing', async () => {
    const { f } = await basicFixture();
    const before = [await f.packFiles(), await f.indexFiles()];
    const result = await prune(await f.indexed(), { dryRun: true });
    assert.equal(result.dryRun, true);
    assert.equal(result.stats.packs.repack, 1);
    assert.deepEqual([await f.packFiles(), await f.indexFiles()], before);
    assert.deepEqual(await Lock.acquire(f.repo, { exclusive: true, settleTime: 0 }).then((l) => l.release()), undefined, 'the lock was released');
  });

  it('an abort in any phase leaves a sound repository that the next prune cleans up', async () => {
    const phases: PrunePhase[] = ['unreferenced', 'repack', 'index', 'delete-index', 'delete-packs'];
    for (const [phase, sharedIndex] of phases.flatMap((p) => [[p, false], [p, true]] as const)) {
      const { f, A } = await basicFixture(1, sharedIndex);
      const controller = new AbortController();
      const run = prune(await f.indexed(), {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.phase === phase) controller.abort();
        },
      });
      // The last deletions run in parallel: an abort there may come after all of them.
      if (phase === 'delete-packs') await run.catch((e: unknown) => assert.ok(e instanceof AbortedError, String(e)));
      else await assert.rejects(run, AbortedError, `aborted in ${phase}`);
      await assertSound(f);
      const locks: string[] = [];
      for await (const id of f.repo.listIds('locks')) locks.push(id);
      assert.deepEqual(locks, [], `the lock is released after an abort in ${phase}`);
      await prune(await f.indexed());
      await assertSound(f);
      const after = await planPrune(await f.indexed(), { maxUnused: '0%' });
      assert.equal(after.stats.bytes.unused + after.stats.bytes.duplicate + after.stats.bytes.unreferenced, 0, `clean after an abort in ${phase}`);
      assert.equal((await f.packFiles()).length, 3);
      assert.ok((await f.indexed()).index.hasPack(A.id));
    }
  });

  it('never copies a damaged blob: uses an intact copy, or stops before deleting anything', async () => {
    const f = await Fixture.create();
    const [d1, d2, d3] = [3000, 2000, 2500].map(dataBlob) as [Blob, Blob, Blob];
    const root = treeBlob([fileNode('a', [d1])]);
    const P = await f.pack([d1, d2]);
    const Q = await f.pack([d1, d3]);
    await f.pack([root]);
    await f.snapshot(root);
    const plan = await planPrune(await f.indexed());
    assert.equal(plan.repack.length, 1, 'one copy of d1 is repacked, the pack of the other is removed');
    const source = plan.repack[0] === P.id ? P : Q;
    const other = source === P ? Q : P;
    assert.deepEqual(plan.remove, [other.id]);
    const damage = async (pack: StoredPack) => {
      const bytes = Buffer.from(await f.backend.load({ type: 'data', name: pack.id }));
      bytes[pack.blobs[0]!.offset + 40]! ^= 1;
      await f.backend.save({ type: 'data', name: pack.id }, bytes);
    };
    await damage(source);
    await executePrune(await f.indexed(), plan);
    await assertSound(f);

    // Both copies damaged: the prune stops during repacking, and nothing is deleted.
    const g = await Fixture.create();
    const P2 = await g.pack([d1, d2]);
    await g.pack([root]);
    await g.snapshot(root);
    const before = [await g.packFiles(), await g.indexFiles()];
    const bytes = Buffer.from(await g.backend.load({ type: 'data', name: P2.id }));
    bytes[50]! ^= 1;
    await g.backend.save({ type: 'data', name: P2.id }, bytes);
    await assert.rejects(prune(await g.indexed()), (e: unknown) => e instanceof IntegrityError && e.blob === d1.id && e.file === `data/${P2.id.slice(0, 2)}/${P2.id}`);
    const after = await g.packFiles();
    for (const p of before[0]!) assert.ok(after.includes(p), 'no pack was deleted');
    const indexes = await g.indexFiles();
    for (const i of before[1]!) assert.ok(indexes.includes(i), 'no index file was deleted');
  });

  it('refuses a plan made before the repository changed', async () => {
    const { f, d, root } = await basicFixture();
    const indexed = await f.indexed();
    const plan: PrunePlan = await planPrune(indexed);
    // A new snapshot that uses d4, which the plan would drop.
    await f.snapshot(treeBlob([fileNode('again', [d.d4]), dirNode('old', root)]));
    await assert.rejects(executePrune(indexed, plan), (e: unknown) => e instanceof InvalidInputError && /changed since/.test(e.message));
    assert.equal((await f.packFiles()).length, 5, 'nothing was deleted');
  });

  it('waits for (retryLock) or refuses (LockedError) while another process holds a lock', async () => {
    const { f } = await basicFixture();
    const shared = await Lock.acquire(f.repo, { exclusive: false, settleTime: 0 });
    await assert.rejects(prune(await f.indexed()), LockedError);
    assert.equal((await f.packFiles()).length, 5, 'nothing was deleted');
    setTimeout(() => void shared.release(), 300);
    const result = await prune(await f.indexed(), { retryLock: 10_000 });
    assert.equal(result.packsRemoved, 3);
    await assertSound(f);
  });

  it('reloads the index when it changed between loading and locking', async () => {
    const { f, d } = await basicFixture();
    const stale = await f.indexed();
    // A backup that finished meanwhile: a new pack, its index and a snapshot using d4 and d7.
    const d7 = dataBlob(700);
    await f.pack([d7]);
    const root2 = treeBlob([fileNode('n', [d.d4, d7])]);
    await f.pack([root2]);
    await f.snapshot(root2);
    await prune(stale);
    await assertSound(f);
    const indexed = await f.indexed();
    assert.ok(indexed.index.has(d7.id, 'data') && indexed.index.has(d.d4.id, 'data'));
  });
});
