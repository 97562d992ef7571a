// The master index: bulk loading and compaction, lookups (hits, misses, several copies, type
// filter), blobs a backup adds before the next compact, iteration, exact locations at the edges
// of its compact encoding (huge lengths, odd offsets, long packs), invalid input, the memory
// budget, and a randomized comparison with a plain Map.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { MasterIndex, type BlobLocation } from '../../src/repository/master-index.ts';
import { InvalidInputError } from '../../src/errors.ts';
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
  assert.ok(idx.memoryBytes() >= 48_000 * 30, 'at least the 30 bytes of each ID that the bucket table does not stand for');
});

/** A deterministic xorshift generator, so the tests below always see the same data. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

test('memory: at most 40 bytes per blob for a large index, pack IDs and bucket table included', () => {
  // The benchmark's mix: ~16 blobs per pack, lengths up to 4 MB, every other blob compressed.
  const random = rng(7);
  const idx = new MasterIndex();
  const sample: Array<{ p: IndexPack; b: PackedBlob }> = [];
  let total = 0;
  for (let i = 0; i < 20_000; i++) {
    const n = 12 + Math.floor(random() * 9);
    const blobs: PackedBlob[] = [];
    let offset = 0;
    for (let k = 0; k < n; k++) {
      const length = 32 + Math.floor(random() * 4_000_000);
      blobs.push({ type: k === 0 ? 'tree' : 'data', id: hid<BlobId>(`mem ${i}/${k}`), offset, length, uncompressedLength: k % 2 ? length + 100 : 0 });
      offset += length;
    }
    const p: IndexPack = { id: hid<PackId>(`mem pack ${i}`), blobs };
    idx.addPack(p, false);
    total += n;
    if (i % 97 === 0) sample.push({ p, b: blobs[i % n]! });
  }
  idx.compact();
  assert.equal(idx.size, total);
  const perBlob = idx.memoryBytes() / total;
  assert.ok(perBlob <= 40, `${perBlob.toFixed(2)} bytes per blob`);
  assert.ok(perBlob >= 30, `${perBlob.toFixed(2)} bytes per blob cannot hold the IDs`);
  for (const { p, b } of sample) assert.deepEqual(idx.lookup(b.id), [loc(p, b)]);
});

test('exact lengths and uncompressed lengths of any size, outliers among small ones', () => {
  const idx = new MasterIndex();
  const packs: IndexPack[] = [];
  // Mostly small blobs, so the packed columns are narrow and the big values overflow them.
  for (let i = 0; i < 200; i++) packs.push(makePack(`small ${i}`, 5));
  const U32 = 0xffffffff;
  const odd: Array<[number, number]> = [
    // [length, uncompressedLength]
    [0xffffff, 0], [0x1000000, 0x1000000], [0x1000000, 0x1000001], [2 ** 31, 2 ** 31 - 1],
    [U32 - 5, 0], [U32 - 5, U32], [40, U32], [U32 - 10, 1], [33, 33], [100, 99], [1000, 64 * 1024 * 1024],
  ];
  // One per pack, each at offset 0, so offsets stay within u32.
  odd.forEach(([length, ulen], i) => {
    const blob: PackedBlob = { type: i % 2 ? 'tree' : 'data', id: hid<BlobId>(`odd blob ${i}`), offset: 0, length, uncompressedLength: ulen };
    packs.push({ id: hid<PackId>(`odd ${i}`), blobs: [blob] });
  });
  for (const p of packs) idx.addPack(p, false);
  idx.compact();
  for (const p of packs) for (const b of p.blobs) assert.deepEqual(idx.lookup(b.id), [loc(p, b)]);
  assert.deepEqual(sorted(idx.entries()), sorted(packs.flatMap((p) => p.blobs.map((b) => loc(p, b)))));
});

test('exact offsets: gaps, packs not starting at 0, offsets near 2^32, long packs', () => {
  const idx = new MasterIndex();
  const packs: IndexPack[] = [];
  // 300 back-to-back blobs: offsets are summed from checkpoints inside the pack.
  packs.push(makePack('long', 300));
  // Gaps and overlaps (an index may say anything; it must come back as it was).
  const gappy: PackedBlob[] = [];
  for (let i = 0, offset = 1000; i < 150; i++) {
    const length = 100 + i;
    gappy.push({ type: 'data', id: hid<BlobId>(`gap ${i}`), offset, length, uncompressedLength: 0 });
    offset += length + (i % 7 === 0 ? 13 : 0) - (i % 11 === 5 ? 50 : 0);
  }
  packs.push({ id: hid<PackId>('gappy'), blobs: gappy });
  // The end of a 4 GiB pack.
  packs.push({
    id: hid<PackId>('high'),
    blobs: [
      { type: 'data', id: hid<BlobId>('high 0'), offset: 0xffffff00, length: 0x80, uncompressedLength: 0 },
      { type: 'tree', id: hid<BlobId>('high 1'), offset: 0xffffff80, length: 0x7f, uncompressedLength: 0x1000 },
    ],
  });
  for (const p of packs) idx.addPack(p, false);
  idx.compact();
  for (const p of packs) for (const b of p.blobs) assert.deepEqual(idx.lookup(b.id), [loc(p, b)], b.id);
  const grouped = idx.packs();
  for (const p of packs) assert.deepEqual(grouped.get(p.id), [...p.blobs].sort((a, b) => a.offset - b.offset));
});

test('IDs that share long prefixes, and an ID stored many times, are all found', () => {
  const idx = new MasterIndex();
  const withPrefix = (prefix: string, i: number) => (prefix + hid<string>(`prefix ${prefix} ${i}`).slice(prefix.length)) as BlobId;
  // 300 share three bytes (a long run for the sort), 100 share two (a full bucket), 20 share
  // three bytes with a different neighbour (a short run).
  const ids = [
    ...Array.from({ length: 300 }, (_, i) => withPrefix('abcdef', i)),
    ...Array.from({ length: 100 }, (_, i) => withPrefix('abcd', i)),
    ...Array.from({ length: 20 }, (_, i) => withPrefix('abce01', i)),
  ];
  const packs: IndexPack[] = [];
  for (let i = 0; i < ids.length; i += 10) packs.push(makePack(`prefix pack ${i}`, 10, ids.slice(i, i + 10)));
  // One blob in 100 packs: a run of 100 equal IDs.
  const common = withPrefix('abcdef', 1000);
  for (let i = 0; i < 100; i++) packs.push(makePack(`common ${i}`, 1, [common]));
  for (const p of packs) idx.addPack(p, false);
  idx.compact();
  for (const p of packs.slice(0, 42)) for (const b of p.blobs) assert.deepEqual(idx.lookup(b.id), [loc(p, b)], b.id);
  assert.deepEqual(sorted(idx.lookup(common)), sorted(packs.slice(42).map((p) => loc(p, p.blobs[0]!))));
  // Near misses inside the run.
  for (const id of ids.slice(0, 50)) assert.equal(idx.has((id.slice(0, 63) + (id[63] === '0' ? '1' : '0')) as BlobId), false);
});

test('pack numbers stay put across compacts; packs added since the last compact are found', () => {
  const idx = new MasterIndex();
  const first = Array.from({ length: 50 }, (_, i) => makePack(`n${i}`, 1 + (i % 3)));
  for (const p of first) idx.addPack(p, false);
  idx.compact();
  const names = Array.from({ length: idx.packCount }, (_, n) => idx.packIdOf(n));
  assert.deepEqual(names, first.map((p) => p.id));
  const later = Array.from({ length: 10 }, (_, i) => makePack(`later${i}`, 2));
  for (const p of later) idx.addPack(p);
  // An empty pack is known, but lists nothing.
  const empty: IndexPack = { id: hid<PackId>('empty pack'), blobs: [] };
  idx.addPack(empty, false);
  for (const p of [...first, ...later, empty]) assert.equal(idx.hasPack(p.id), true, p.id);
  assert.equal(idx.hasPack(hid<PackId>('never added')), false);
  assert.equal(idx.packCount, 61);
  idx.compact();
  assert.deepEqual(Array.from({ length: 61 }, (_, n) => idx.packIdOf(n)), [...first, ...later, empty].map((p) => p.id));
  for (const p of [...first, ...later, empty]) assert.equal(idx.hasPack(p.id), true, p.id);
  assert.equal(idx.packs().has(empty.id), false);
  assert.throws(() => idx.packIdOf(61), InvalidInputError);

  // Pack IDs that share their first four bytes land on the same hash slot: found by probing,
  // before and after a compact, and a missing one with the same start is not found.
  const alike = (i: number) => `deadbeef${hid<string>(`alike ${i}`).slice(8)}` as PackId;
  for (let i = 0; i < 20; i++) idx.addPack({ id: alike(i), blobs: [] }, i % 2 === 0);
  for (let i = 0; i < 20; i++) assert.equal(idx.packIdOf(61 + i), alike(i));
  for (let i = 0; i < 20; i++) assert.equal(idx.hasPack(alike(i)), true);
  assert.equal(idx.hasPack(alike(20)), false);
  idx.compact();
  for (let i = 0; i < 20; i++) assert.equal(idx.hasPack(alike(i)), true);
  assert.equal(idx.hasPack(alike(20)), false);
  assert.equal(idx.packCount, 81);
});

test('invalid input is refused with InvalidInputError, naming the blob or pack, and adds nothing', () => {
  const idx = new MasterIndex();
  const good = makePack('good', 3);
  idx.addPack(good, false);
  const blob = (over: Partial<PackedBlob>): IndexPack => ({ id: hid<PackId>('bad pack'), blobs: [good.blobs[0]!, { ...good.blobs[1]!, ...over }] });
  const bad: Array<[IndexPack, RegExp]> = [
    [blob({ id: 'abc' as BlobId }), /"abc"/],
    [blob({ id: `${'0'.repeat(62)}zz` as BlobId }), /zz/],
    [blob({ offset: -1 }), /offset/],
    [blob({ length: 1.5 }), /length/],
    [blob({ uncompressedLength: 2 ** 32 }), /length/],
    [blob({ type: 'blob' as BlobType }), /type/],
    [{ id: 'not a pack' as PackId, blobs: [] }, /not a pack/],
  ];
  for (const [p, message] of bad) {
    assert.throws(() => idx.addPack(p, false), (e: unknown) => e instanceof InvalidInputError && message.test(e.message));
    assert.equal(idx.size, 3);
    assert.equal(idx.packCount, 1);
    assert.equal(idx.hasPack(p.id), false);
  }
  idx.compact();
  assert.equal(idx.size, 3);
  for (const b of good.blobs) assert.deepEqual(idx.lookup(b.id), [loc(good, b)]);
  // Lookups of strings that are no ID find nothing rather than throw.
  for (const s of ['', 'abc', 'z'.repeat(64), good.blobs[0]!.id.slice(0, 63)]) {
    assert.deepEqual(idx.lookup(s as BlobId), []);
    assert.equal(idx.has(s as BlobId), false);
    assert.equal(idx.hasPack(s as PackId), false);
  }
});

// ---- randomized comparison with a plain model -------------------------------------------

type Op =
  | { kind: 'add'; pack: number; blobs: Array<{ id: number; type: BlobType; length: number; ulen: number; gap: number }>; lookupNow: boolean }
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
      // Mostly small, sometimes past what 24 bits or the chosen column width can hold.
      length: fc.oneof(
        { weight: 5, arbitrary: fc.integer({ min: 32, max: 200 }) },
        { weight: 1, arbitrary: fc.constantFrom(0xffffff, 0x1000000, 0xfffffff0) },
      ),
      ulen: fc.constantFrom(0, 0, 500, 1, 0xffffffff),
      // Space left before the blob (0 mostly: blobs follow each other).
      gap: fc.constantFrom(0, 0, 0, 1, 4096),
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
          offset = (offset + b.gap) % 2 ** 32;
          const pb: PackedBlob = { type: b.type, id: BLOB_IDS[b.id]!, offset, length: b.length, uncompressedLength: b.ulen };
          offset = (offset + b.length) % 2 ** 32; // past 4 GiB it wraps, so offsets go out of order
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

test('removePacks drops exactly those packs, rebuilt from memory: the same as an index loaded without them', () => {
  const packs = Array.from({ length: 40 }, (_, i) => makePack(`rm${i}`, 1 + ((i * 37) % 90)));
  // A blob stored twice: its copy in a kept pack must survive the other's removal.
  (packs[5]!.blobs as PackedBlob[]).push({ ...packs[6]!.blobs[0]!, offset: 1_000_000 });
  const idx = new MasterIndex();
  for (const p of packs.slice(0, 30)) idx.addPack(p, false);
  idx.compact();
  // Staged (not yet compacted) packs, some added with lookupNow, are kept or removed too.
  for (const p of packs.slice(30, 35)) idx.addPack(p, true);
  for (const p of packs.slice(35)) idx.addPack(p, false);
  const gone = new Set([0, 6, 7, 13, 29, 31, 39]);
  const dropped = idx.removePacks([...gone].map((i) => packs[i]!.id).concat([hid<PackId>('pack not indexed')]));
  assert.equal(dropped, gone.size);
  assert.equal(idx.removePacks([packs[0]!.id]), 0, 'removing again drops nothing');

  const want = new MasterIndex();
  for (const [i, p] of packs.entries()) if (!gone.has(i)) want.addPack(p, false);
  want.compact();
  assert.equal(idx.size, want.size);
  assert.equal(idx.packCount, want.packCount);
  assert.deepEqual(idx.packs(), want.packs());
  for (const [i, p] of packs.entries()) {
    assert.equal(idx.hasPack(p.id), !gone.has(i));
    for (const b of p.blobs) assert.deepEqual(idx.lookup(b.id, b.type), want.lookup(b.id, b.type));
  }
  assert.deepEqual(idx.lookup(packs[6]!.blobs[0]!.id).map((l) => l.packId), [packs[5]!.id]);
  // Still usable: packs added afterwards are found, and removing every pack empties it.
  const late = makePack('late', 12);
  idx.addPack(late, true);
  assert.deepEqual(idx.lookup(late.blobs[3]!.id), [loc(late, late.blobs[3]!)]);
  idx.compact();
  assert.deepEqual(idx.lookup(late.blobs[3]!.id), [loc(late, late.blobs[3]!)]);
  const all = idx.packCount;
  assert.equal(idx.removePacks([...packs.filter((_, i) => !gone.has(i)), late].map((p) => p.id)), all);
  assert.equal(idx.size, 0);
  assert.equal(idx.packCount, 0);
  assert.deepEqual(idx.lookup(late.blobs[3]!.id), []);
  assert.equal(idx.has(packs[1]!.blobs[0]!.id), false);
});
