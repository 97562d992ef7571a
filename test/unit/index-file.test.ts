// Index files: the JSON text restic writes, what restic and its old versions wrote, and
// hostile input, which must always end in an IntegrityError naming the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IntegrityError } from '../../src/errors.ts';
import { decodeIndexFile, encodeIndexFile, type IndexPack } from '../../src/repository/index-file.ts';
import type { BlobId, PackId } from '../../src/repository/id.ts';

const FILE = 'index/77aa';
const P1 = '1a'.repeat(32) as PackId;
const P2 = '2b'.repeat(32) as PackId;
const B1 = 'b1'.repeat(32) as BlobId;
const B2 = 'b2'.repeat(32) as BlobId;
const B3 = 'b3'.repeat(32) as BlobId;

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
const bytes = (s: string) => Buffer.from(s, 'utf8');

function namesFile(re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof IntegrityError, `expected IntegrityError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    assert.equal(e.file, FILE);
    assert.ok(e.message.includes(FILE), e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

const PACKS: IndexPack[] = [
  {
    id: P1,
    blobs: [
      { type: 'data', id: B1, offset: 0, length: 38, uncompressedLength: 0 },
      { type: 'data', id: B2, offset: 38, length: 112, uncompressedLength: 511 },
    ],
  },
  { id: P2, blobs: [{ type: 'tree', id: B3, offset: 0, length: 4000, uncompressedLength: 9000 }] },
];

test('encode writes restic\'s exact JSON: compact, Go field order, newline, uncompressed_length only when set', () => {
  const expected =
    `{"packs":[{"id":"${P1}","blobs":[{"id":"${B1}","type":"data","offset":0,"length":38},` +
    `{"id":"${B2}","type":"data","offset":38,"length":112,"uncompressed_length":511}]},` +
    `{"id":"${P2}","blobs":[{"id":"${B3}","type":"tree","offset":0,"length":4000,"uncompressed_length":9000}]}]}\n`;
  assert.equal(text(encodeIndexFile(PACKS)), expected);
  assert.equal(text(encodeIndexFile([])), '{"packs":[]}\n');
  assert.deepEqual(decodeIndexFile(encodeIndexFile(PACKS), FILE), { packs: PACKS, supersedes: [] });
});

test('decodes restic-shaped JSON with supersedes, extra fields and any whitespace', () => {
  const S1 = 'c1'.repeat(32);
  const json = `{
    "supersedes": ["${S1}", "not-an-id"],
    "packs": [ { "id": "${P1}", "future": 1, "blobs": [
      { "id": "${B1}", "type": "data", "offset": 0, "length": 38, "uncompressed_length": 0 },
      { "id": "${B2}", "type": "tree", "offset": 38, "length": 40, "uncompressed_length": null }
    ] } ]
  }`;
  const d = decodeIndexFile(bytes(json), FILE);
  assert.deepEqual(d.supersedes, [S1]);
  assert.deepEqual(d.packs, [{
    id: P1,
    blobs: [
      { type: 'data', id: B1, offset: 0, length: 38, uncompressedLength: 0 },
      { type: 'tree', id: B2, offset: 38, length: 40, uncompressedLength: 0 },
    ],
  }]);
  // No "packs" at all, or null, is an empty index (as Go decodes it).
  assert.deepEqual(decodeIndexFile(bytes('{}'), FILE), { packs: [], supersedes: [] });
  assert.deepEqual(decodeIndexFile(bytes('{"packs":null}'), FILE), { packs: [], supersedes: [] });
});

test('decodes the old index format (a bare array of packs)', () => {
  const json = `[{"id":"${P2}","blobs":[{"id":"${B3}","type":"tree","offset":0,"length":4000}]}]`;
  assert.deepEqual(decodeIndexFile(bytes(json), FILE), {
    packs: [{ id: P2, blobs: [{ type: 'tree', id: B3, offset: 0, length: 4000, uncompressedLength: 0 }] }],
    supersedes: [],
  });
});

test('hostile documents are IntegrityErrors naming the file', () => {
  const blob = (fields: Record<string, unknown>) =>
    JSON.stringify({ packs: [{ id: P1, blobs: [{ id: B1, type: 'data', offset: 0, length: 40, ...fields }] }] });
  const cases: Array<[string, RegExp]> = [
    ['', /not valid JSON/],
    ['{"packs":[', /not valid JSON/],
    ['\xff\xfe', /not valid JSON/],
    ['null', /not a JSON object/],
    ['42', /not a JSON object/],
    ['"packs"', /not a JSON object/],
    ['{"packs":{}}', /"packs" is not an array/],
    ['{"packs":"x"}', /"packs" is not an array/],
    ['{"packs":[null]}', /not an object/],
    ['{"packs":[7]}', /not an object/],
    [`{"packs":[{"blobs":[]}]}`, /invalid pack ID/],
    [`{"packs":[{"id":"${P1.toUpperCase()}","blobs":[]}]}`, /invalid pack ID/],
    [`{"packs":[{"id":"${P1.slice(2)}","blobs":[]}]}`, /invalid pack ID/],
    [`{"packs":[{"id":"${P1}"}]}`, /no blob list/],
    [`{"packs":[{"id":"${P1}","blobs":{}}]}`, /no blob list/],
    [`{"packs":[{"id":"${P1}","blobs":[null]}]}`, /malformed blob/],
    [`{"packs":[{"id":"${P1}","blobs":["${B1}"]}]}`, /malformed blob/],
    [blob({ id: 'zz'.repeat(32) }), /invalid blob ID/],
    [blob({ id: 5 }), /invalid blob ID/],
    [blob({ type: 'snapshot' }), /invalid type/],
    [blob({ type: null }), /invalid type/],
    [blob({ type: ['data'] }), /invalid type/],
    [blob({ length: -1 }), /length/],
    [blob({ length: 31 }), /length 31/],
    [blob({ length: 2 ** 32 }), /length/],
    [blob({ length: 1.5 }), /length/],
    [blob({ length: '40' }), /length/],
    [blob({ length: null }), /length/],
    [blob({ offset: -40 }), /offset/],
    [blob({ offset: 1e300 }), /offset/],
    [blob({ offset: true }), /offset/],
    [blob({ uncompressed_length: -1 }), /uncompressed_length/],
    [blob({ uncompressed_length: 'big' }), /uncompressed_length/],
    [blob({ uncompressed_length: [] }), /uncompressed_length/],
    // Objects that String() cannot turn into text must not escape as a TypeError.
    [blob({ length: { toString: 1 } }), /length/],
    [blob({ offset: { toString: null, valueOf: null } }), /offset/],
  ];
  for (const [json, re] of cases) {
    assert.throws(() => decodeIndexFile(Buffer.from(json, 'latin1'), FILE), namesFile(re), json);
  }
});

// ---- properties --------------------------------------------------------------------------

const hexId = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
const validPacks: fc.Arbitrary<IndexPack[]> = fc.array(
  fc.record({
    id: hexId.map((s) => s as PackId),
    blobs: fc.array(
      fc.record({
        type: fc.constantFrom('data' as const, 'tree' as const),
        id: hexId.map((s) => s as BlobId),
        offset: fc.nat({ max: 0xffffffff }),
        length: fc.integer({ min: 32, max: 0xffffffff }),
        uncompressedLength: fc.oneof(fc.constant(0), fc.nat({ max: 0xffffffff })),
      }, { noNullPrototype: true }),
      { maxLength: 6 },
    ),
  }, { noNullPrototype: true }),
  { maxLength: 5 },
);

test('property: decode(encode(x)) = x, and the text is what JSON.stringify writes in restic\'s field order', () => {
  fc.assert(fc.property(validPacks, (packs) => {
    const enc = encodeIndexFile(packs);
    assert.deepEqual(decodeIndexFile(enc, FILE), { packs, supersedes: [] });
    const goShape = {
      packs: packs.map((p) => ({
        id: p.id,
        blobs: p.blobs.map((b) => ({
          id: b.id, type: b.type, offset: b.offset, length: b.length,
          ...(b.uncompressedLength ? { uncompressed_length: b.uncompressedLength } : {}),
        })),
      })),
    };
    assert.equal(text(enc), JSON.stringify(goShape) + '\n');
  }), { numRuns: 300 });
});

// Any JSON value, plus objects whose toString/valueOf are not functions.
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue() },
  { weight: 2, arbitrary: fc.constantFrom(-1, 31, 2 ** 32, 1.5, 1e308, -0, 'data', 'tree', null, true, {}, []) },
  { weight: 1, arbitrary: fc.record({ toString: fc.jsonValue(), valueOf: fc.jsonValue() }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: hexId },
);
// A valid blob with some of its fields replaced or removed, so the later checks are reached too.
const validBlob = fc.record({
  id: hexId, type: fc.constantFrom('data', 'tree'), offset: fc.nat(), length: fc.integer({ min: 32, max: 1 << 20 }),
  uncompressed_length: fc.nat(),
}, { noNullPrototype: true });
const hostileBlob = fc.tuple(validBlob, fc.dictionary(
  fc.constantFrom('id', 'type', 'offset', 'length', 'uncompressed_length'),
  fc.option(hostileValue, { nil: undefined }),
  { maxKeys: 2, noNullPrototype: true },
)).map(([base, patch]) => {
  const b: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete b[k];
    else b[k] = v;
  }
  return b;
});
const hostilePack = fc.record({
  id: fc.oneof({ weight: 4, arbitrary: hexId }, { weight: 1, arbitrary: hostileValue }),
  blobs: fc.oneof(
    { weight: 4, arbitrary: fc.array(fc.oneof({ weight: 6, arbitrary: hostileBlob }, { weight: 1, arbitrary: hostileValue }), { maxLength: 4 }) },
    { weight: 1, arbitrary: hostileValue },
  ),
}, { requiredKeys: [] });
const hostileDoc = fc.oneof(
  { weight: 1, arbitrary: fc.jsonValue() },
  { weight: 1, arbitrary: fc.array(hostilePack, { maxLength: 3 }) },
  {
    weight: 4,
    arbitrary: fc.record({
      supersedes: fc.oneof(hostileValue, fc.array(fc.oneof(hexId, hostileValue), { maxLength: 3 })),
      packs: fc.oneof({ weight: 4, arbitrary: fc.array(fc.oneof({ weight: 6, arbitrary: hostilePack }, { weight: 1, arbitrary: hostileValue }), { maxLength: 4 }) }, { weight: 1, arbitrary: hostileValue }),
    }, { requiredKeys: [] }),
  },
);

test('property: any JSON document either decodes to a valid index or throws IntegrityError naming the file', () => {
  fc.assert(fc.property(hostileDoc, (doc) => {
    const json = Buffer.from(JSON.stringify(doc) ?? 'undefined');
    let out;
    try {
      out = decodeIndexFile(json, FILE);
    } catch (e) {
      namesFile()(e);
      return;
    }
    for (const p of out.packs) {
      assert.match(p.id, /^[0-9a-f]{64}$/);
      for (const b of p.blobs) {
        assert.match(b.id, /^[0-9a-f]{64}$/);
        assert.ok(b.type === 'data' || b.type === 'tree');
        for (const n of [b.offset, b.length, b.uncompressedLength]) assert.ok(Number.isInteger(n) && n >= 0 && n <= 0xffffffff);
        assert.ok(b.length >= 32);
      }
    }
    for (const s of out.supersedes) assert.match(s, /^[0-9a-f]{64}$/);
  }), { numRuns: 2000 });
});

test('property: arbitrary bytes never throw anything but IntegrityError', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
    try {
      decodeIndexFile(raw, FILE);
    } catch (e) {
      namesFile()(e);
    }
  }), { numRuns: 500 });
});
