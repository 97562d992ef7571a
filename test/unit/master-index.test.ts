// The master index: bulk loading and compaction, lookups (hits, misses, several copies, type
// filter), blobs a backup adds before the next compact, iteration, and a randomized
// comparison with a plain Map.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { MasterIndex, type BlobLocation } from '../../src/repository/master-index.ts';
import type { IndexPack } from '../../src/repository/index-file.ts';
import type { BlobId, BlobType, PackId } from '../../src/repository/id.ts';
import type { PackedBlob } from '../../src/repository/pack.ts';

function hid<T extends string>(label: string): T {
  return createHash('sha256').update(label).digest('hex') as T;
}

/** A pack of `n` blobs named `${label}/i`, with realistic offsets; every third is a tree. */
function makePack(label: string, n: number, blobIds?: BlobId[]): IndexPack {
  const blobs: PackedBlob[] = [];
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const length = 32 + ((i * 7919) % 5000);
    blobs.push({
      type: i % 3 === 2 ? 'tree' : 'data',
      id: blobIds?.[i] ?? hid<BlobId>(`${label}/${i}`),
      offset,
      length,
      uncompressedLength: i % 2 ? length * 2 : 0,
    });
    offset += length;
  }
  return { id: hid<PackId>(`pack ${label}`), blobs };
}

function loc(p: IndexPack, b: PackedBlob): BlobLocation {
  return { type: b.type, id: b.id, packId: p.id, offset: b.offset, length: b.length, uncompressedLength: b.uncompressedLength };
}

const key = (l: BlobLocation) => `${l.id} ${l.type} ${l.packId} ${l.offset} ${l.length} ${l.uncompressedLength}`;
const sorted = (ls: Iterable<BlobLocation>) => [...ls].map(key).sort();

test('bulk add then compact: every blob is found with its exact location', () => {
  const idx = new MasterIndex();
  const packs = Array.from({ length: 40 }, (_, i) => makePack(`p${i}`, 1 + (i % 17)));
  for (const p of packs) idx.addPack(p, false);
  const total = packs.reduce((s, p) => s + p.blobs.length, 0);
  assert.equal(idx.size, total);
  assert.equal(idx.packCount, 40);
  idx.compact();
  assert.equal(idx.size, total);
  for (const p of packs) {
    assert.ok(idx.hasPack(p.id));
    for (const b of p.blobs) {
      assert.deepEqual(idx.lookup(b.id), [loc(p, b)]);
      assert.deepEqual(idx.lookup(b.id, b.type), [loc(p, b)]);
      assert.deepEqual(idx.lookup(b.id, b.type === 'data' ? 'tree' : 'data'), []);
      assert.equal(idx.has(b.id), true);
      assert.equal(idx.has(b.id, b.type), true);
      assert.equal(idx.has(b.id, b.type === 'data' ? 'tree' : 'data'), false);
    }
  }
  // A second compact with nothing pending changes nothing.
  idx.compact();
  assert.equal(idx.size, total);
  assert.deepEqual(sorted(idx.entries()), sorted(packs.flatMap((p) => p.blobs.map((b) => loc(p, b)))));
});

test('misses: unknown IDs, IDs sharing a bucket with a stored one, and an empty index', () => {
  const empty = new MasterIndex();
  const some = hid<BlobId>('nothing');
  assert.deepEqual(empty.lookup(some), []);
  assert.equal(empty.has(some), false);
  assert.equal(empty.has(some, 'data'), false);
  empty.compact();
  assert.equal(empty.size, 0);
  assert.deepEqual([...empty.entries()], []);

  const p = makePack('x', 10);
  const idx = new MasterIndex();
  idx.addPack(p, false);
  idx.compact();
  for (const b of p.blobs) {
    // Same first two bytes (same bucket), differing later or in the last byte.
    for (const at of [2, 40, 63]) {
      const near = (b.id.slice(0, at) + (b.id[at] === '0' ? '1' : '0') + b.id.slice(at + 1)) as BlobId;
      assert.deepEqual(idx.lookup(near), [], near);
      assert.equal(idx.has(near), false);
    }
  }
  assert.equal(idx.hasPack(hid<PackId>('pack y')), false);
});

test('the same blob in two packs: both locations are returned, the type filter picks', () => {
  const shared = hid<BlobId>('shared');
  const a = makePack('a', 3, [hid('a0'), shared, hid('a2')]);
  const b = makePack('b', 2, [shared, hid('b1')]);
  const idx = new MasterIndex();
  idx.addPack(a, false);
  idx.addPack(b, false);
  idx.compact();
  const all = idx.lookup(shared);
  assert.equal(all.length, 2);
  assert.deepEqual(sorted(all), sorted([loc(a, a.blobs[1]!), loc(b, b.blobs[0]!)]));
  // A blob ID stored as data in one pack and as a tree in another.
  const asTree = { id: hid<PackId>('pack tree'), blobs: [{ type: 'tree' as BlobType, id: shared, offset: 0, length: 99, uncompressedLength: 0 }] };
  idx.addPack(asTree, false);
  idx.compact();
  assert.equal(idx.lookup(shared).length, 3);
  assert.deepEqual(idx.lookup(shared, 'tree'), [loc(asTree, asTree.blobs[0]!)]);
  assert.equal(idx.lookup(shared, 'data').length, 2);
});

test('the same pack listed by two index files is merged: exact duplicates are dropped', () => {
  const p = makePack('twice', 6);
  const idx = new MasterIndex();
  idx.addPack(p, false);
  idx.addPack(makePack('other', 4), false);
  idx.addPack(p, false);
  idx.compact();
  assert.equal(idx.size, 10);
  for (const b of p.blobs) assert.deepEqual(idx.lookup(b.id), [loc(p, b)]);
  // packs() must list each blob once, or check would compute a wrong pack size.
  assert.deepEqual(idx.packs().get(p.id), p.blobs);
  // Also when the duplicate arrives after a compact.
  idx.addPack(p, false);
  idx.compact();
  assert.equal(idx.size, 10);
  assert.deepEqual(idx.packs().get(p.id), p.blobs);
});

test('blobs added with lookupNow are found before compact, alongside the compacted table', () => {
  const idx = new MasterIndex();
  const base = makePack('base', 20);
  idx.addPack(base, false);
  idx.compact();
  const fresh = makePack('fresh', 5);
  idx.addPack(fresh); // lookupNow defaults to true
  assert.equal(idx.size, 25);
  for (const b of fresh.blobs) {
    assert.deepEqual(idx.lookup(b.id), [loc(fresh, b)]);
    assert.equal(idx.has(b.id), true);
    assert.equal(idx.has(b.id, b.type), true);
  }
  // A blob both in the table and pending: both locations.
  const again = makePack('again', 1, [base.blobs[4]!.id]);
  idx.addPack(again, true);
  assert.equal(idx.lookup(base.blobs[4]!.id).length, 2);
  // Pending entries appear in entries() and packs() too.
  assert.deepEqual(sorted(idx.entries()), sorted([base, fresh, again].flatMap((p) => p.blobs.map((b) => loc(p, b)))));
  assert.deepEqual(idx.packs().get(fresh.id), fresh.blobs);
  idx.compact();
  assert.equal(idx.size, 26);
  for (const b of fresh.blobs) assert.deepEqual(idx.lookup(b.id), [loc(fresh, b)]);
  assert.equal(idx.lookup(base.blobs[4]!.id).length, 2);
});

test('entries() and packs() list everything; packs() groups by pack in offset order', () => {
  const packs = [makePack('e1', 7), makePack('e2', 1), makePack('e3', 12)];
  const idx = new MasterIndex();
  // Added in reverse order within a pack: packs() must still come back sorted by offset.
  for (const p of packs) idx.addPack({ id: p.id, blobs: [...p.blobs].reverse() }, false);
  idx.compact();
  assert.deepEqual(sorted(idx.entries()), sorted(packs.flatMap((p) => p.blobs.map((b) => loc(p, b)))));
  const grouped = idx.packs();
  assert.equal(grouped.size, 3);
  for (const p of packs) assert.deepEqual(grouped.get(p.id), p.blobs);
  assert.deepEqual(new Set([0, 1, 2].map((n) => idx.packIdOf(n))), new Set(packs.map((p) => p.id)));
});

test('many packs and blobs: the growth of every internal array keeps all entries', () => {
  const idx = new MasterIndex();
  const packs = Array.from({ length: 3000 }, (_, i) => makePack(`g${i}`, 16));
  packs.forEach((p, i) => idx.addPack(p, i % 2 === 0));
  idx.compact();
  assert.equal(idx.size, 48_000);
  assert.equal(idx.packCount, 3000);
  for (const p of packs) for (const b of p.blobs) assert.deepEqual(idx.lookup(b.id), [loc(p, b)]);
  assert.ok(idx.memoryBytes() >= 48_000 * (32 + 16), 'at least the ID and four u32 per blob');
});

// ---- randomized comparison with a plain model -------------------------------------------

type Op =
  | { kind: 'add'; pack: number; blobs: Array<{ id: number; type: BlobType; length: number; ulen: number }>; lookupNow: boolean }
  | { kind: 'readd'; which: number; lookupNow: boolean }
  | { kind: 'compact' };

// Few distinct IDs, so collisions, duplicates and shared buckets are common.
const BLOB_IDS = Array.from({ length: 24 }, (_, i) => {
  const h = hid<string>(`m${i}`);
  // Half of them share the first two bytes with another one.
  return (i % 2 ? hid<string>(`m${i - 1}`).slice(0, 4) + h.slice(4) : h) as BlobId;
});
const PACK_IDS = Array.from({ length: 6 }, (_, i) => hid<PackId>(`mp${i}`));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({
    kind: fc.constant('add' as const),
    pack: fc.nat({ max: PACK_IDS.length - 1 }),
    blobs: fc.array(fc.record({
      id: fc.nat({ max: BLOB_IDS.length - 1 }),
      type: fc.constantFrom('data' as const, 'tree' as const),
      length: fc.integer({ min: 32, max: 200 }),
      ulen: fc.constantFrom(0, 0, 500, 0xffffffff),
    }, { noNullPrototype: true }), { maxLength: 6 }),
    lookupNow: fc.boolean(),
  }, { noNullPrototype: true }) },
  // The same pack again, as when two index files list it.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('readd' as const), which: fc.nat(), lookupNow: fc.boolean() }, { noNullPrototype: true }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'compact' as const }) },
);

test('property: lookups match a Map model through any sequence of adds and compacts', () => {
  fc.assert(fc.property(fc.array(opArb, { maxLength: 25 }), fc.boolean(), (ops, finalCompact) => {
    const idx = new MasterIndex();
    // The model: visible locations by ID; bulk adds stay hidden until a compact.
    const visible = new Map<string, BlobLocation[]>();
    let hidden: BlobLocation[] = [];
    let all: BlobLocation[] = [];
    const show = (l: BlobLocation) => {
      const list = visible.get(l.id) ?? [];
      list.push(l);
      visible.set(l.id, list);
    };
    const compactModel = () => {
      for (const l of hidden) show(l);
      hidden = [];
      // Exact duplicates disappear on compact.
      for (const [id, list] of visible) visible.set(id, [...new Map(list.map((l) => [key(l), l])).values()]);
      all = [...visible.values()].flat();
    };
    const addOffsets = new Map<number, number>();
    const added: IndexPack[] = [];
    for (const op of [...ops, ...(finalCompact ? [{ kind: 'compact' } as const] : [])]) {
      if (op.kind === 'compact') {
        idx.compact();
        compactModel();
        continue;
      }
      let pack: IndexPack;
      if (op.kind === 'readd') {
        if (added.length === 0) continue;
        pack = added[op.which % added.length]!;
      } else {
        let offset = addOffsets.get(op.pack) ?? 0;
        const blobs = op.blobs.map((b) => {
          const pb: PackedBlob = { type: b.type, id: BLOB_IDS[b.id]!, offset, length: b.length, uncompressedLength: b.ulen };
          offset += b.length;
          return pb;
        });
        addOffsets.set(op.pack, offset);
        pack = { id: PACK_IDS[op.pack]!, blobs };
        added.push(pack);
      }
      idx.addPack(pack, op.lookupNow);
      const locs = pack.blobs.map((b) => loc(pack, b));
      all.push(...locs);
      if (op.lookupNow) locs.forEach(show);
      else hidden.push(...locs);
    }
    for (const id of BLOB_IDS) {
      const want = visible.get(id) ?? [];
      assert.deepEqual(sorted(idx.lookup(id)), sorted(want));
      for (const t of ['data', 'tree'] as const) {
        assert.deepEqual(sorted(idx.lookup(id, t)), sorted(want.filter((l) => l.type === t)));
        assert.equal(idx.has(id, t), want.some((l) => l.type === t));
      }
      assert.equal(idx.has(id), want.length > 0);
    }
    assert.equal(idx.size, all.length);
    assert.deepEqual(sorted(idx.entries()), sorted(all));
  }), { numRuns: 400 });
});
