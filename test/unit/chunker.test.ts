import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Chunker, chunkAll, MAX_SIZE, MIN_SIZE } from '../../src/snapshot/engine/chunker.ts';
import type { ChunkerEngine } from '../../src/snapshot/engine/chunker.ts';
import { degree, isIrreducible, polyMod, randomPolynomial } from '../../src/repository/polynomial.ts';
import type { Polynomial } from '../../src/repository/polynomial.ts';
import { InvalidInputError, UnsupportedError } from '../../src/errors.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const ENGINES: ChunkerEngine[] = ['wasm', 'js'];
const TEST_POL = 0x3da3358b4dc173n;
const DESIGN_POL = 0x25b468838dcb75n;

interface Chunk {
  start: number;
  length: number;
  cut: bigint;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Spec §11.7 input: xorshift32 from 0x12345678, each state written as 4 bytes little-endian. */
function xorshiftBytes(length: number, seed = 0x12345678): Uint8Array {
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let x = seed;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view.setUint32(i, x >>> 0, true);
  }
  return out;
}

/** Feeds data to a chunker in buffers of the given sizes (cycled), as a file reader would. */
function chunkInBuffers(pol: Polynomial, data: Uint8Array, sizes: number[], engine?: ChunkerEngine): Chunk[] {
  const chunker = new Chunker(pol, { engine });
  const chunks: Chunk[] = [];
  let chunkStart = 0;
  let pos = 0;
  for (let s = 0; pos < data.length; s++) {
    // a copy, so that no buffer can see bytes outside itself
    const buf = data.slice(pos, pos + sizes[s % sizes.length]);
    let at = 0;
    for (;;) {
      const end = chunker.next(buf, at);
      if (end < 0) break;
      chunks.push({ start: chunkStart, length: pos + end - chunkStart, cut: chunker.lastCut });
      chunkStart = pos + end;
      at = end;
    }
    pos += buf.length;
  }
  if (chunkStart < data.length) chunks.push({ start: chunkStart, length: data.length - chunkStart, cut: chunker.digest });
  return chunks;
}

/**
 * Reference: spec §11 transcribed literally with bigint and a ring-buffer window, slow but
 * obviously faithful. Used to cross-check the fast chunker where no published vectors exist.
 */
function referenceChunks(pol: Polynomial, data: Uint8Array): Chunk[] {
  const k = BigInt(degree(pol));
  const shift = k - 8n;
  const out: bigint[] = [];
  const mod: bigint[] = [];
  for (let b = 0n; b < 256n; b++) {
    let h = polyMod(b, pol);
    for (let i = 1; i < 64; i++) h = polyMod(h << 8n, pol);
    out.push(h);
    mod.push(polyMod(b << k, pol) | (b << k));
  }
  const mask = (1n << 20n) - 1n;
  const u64 = (1n << 64n) - 1n;
  const window = new Uint8Array(64);
  let wpos = 0;
  let digest = 0n;
  const slide = (b: number): void => {
    const o = window[wpos];
    window[wpos] = b;
    wpos = (wpos + 1) % 64;
    digest ^= out[o];
    const idx = Number(digest >> shift);
    digest = (((digest << 8n) | BigInt(b)) & u64) ^ mod[idx];
  };
  const reset = (): void => {
    window.fill(0);
    wpos = 0;
    digest = 0n;
    slide(1);
  };

  const chunks: Chunk[] = [];
  let start = 0;
  while (start < data.length) {
    reset();
    let count = Math.min(MIN_SIZE - 64, data.length - start);
    let cut = false;
    while (start + count < data.length) {
      slide(data[start + count]);
      count++;
      if (((digest & mask) === 0n || count >= MAX_SIZE) && count >= MIN_SIZE) {
        cut = true;
        break;
      }
    }
    chunks.push({ start, length: count, cut: digest });
    start += count;
    if (!cut) break;
  }
  return chunks;
}

/** First irreducible polynomial of the given degree at or after a pseudo-random start. */
function irreducibleOfDegree(d: number, seed: number): Polynomial {
  let p = (1n << BigInt(d)) | (BigInt(seed) & ((1n << BigInt(d)) - 1n)) | 1n;
  while (!isIrreducible(p)) p += 2n;
  assert.equal(degree(p), d);
  return p;
}

function assertSameChunks(actual: Chunk[], expected: Chunk[], what: string): void {
  assert.deepEqual(
    actual.map((c) => [c.start, c.length, c.cut.toString(16)]),
    expected.map((c) => [c.start, c.length, c.cut.toString(16)]),
    what,
  );
}

const xorshift16MiB = xorshiftBytes(16 * MiB);

// Spec §11.7, generated with restic/chunker v0.4.0: [start, length, cut, sha256].
const XORSHIFT_VECTORS: Array<[Polynomial, Array<[number, number, string, string]>]> = [
  [
    TEST_POL,
    [
      [0, 1158221, '0016f604f9800000', 'eeb951cf4d74e5a2c1071352149fe43acab12569bced5196d749dd2ebc74fe9b'],
      [1158221, 2662417, '00008adeb0900000', '26d2c83e85dd5b9f79d6c80fe6ccd1a6dc49c73d7181c15196b6b75687814250'],
      [3820638, 1617608, '0008ac1e3aa00000', '1d61c7c42a5bbdb3f587dc519eab51d615bc9a22614449b1ee15b0c687aa4801'],
      [5438246, 1441592, '000f0c8865d00000', 'ecb3193b51106119550eb092f3c3c41666c5be80a2043347e2046283dc9a4f32'],
      [6879838, 751876, '0012e72da0000000', '8305d6baf45cec8cddaa88902692bbade35ba8133451ac931879f42eabcb7906'],
      [7631714, 2223328, '000b75d3e5200000', '98a7ce683f11f39d56b1e267252a189d40dbbd9282cfdeed3d01a4ae3ffbbdbe'],
      [9855042, 942411, '001e4f2cd3c00000', 'f15f27430a171a740c6b459ff53dc5fdd7435f36344806add9bbf1455fb42272'],
      [10797453, 1436895, '0012db6838f00000', 'a1a31ba6dede8847ba307c4b53aa96aca50a845ec3b9ca725a648a461c82f450'],
      [12234348, 4542868, '00128b7d6b6a3461', '052405aeff0dce732225dcc18b1a5c8e68a16675a40c3233b26b6706200adaa0'],
    ],
  ],
  [
    DESIGN_POL,
    [
      [0, 832037, '0002565bb7500000', '82b3cd0a9c3d3c063254da76207457789a4363d0747c2444cfd96a6b336d97f2'],
      [832037, 991218, '001e899674400000', '4bfe94320294b895a99cb27cd4fda0b7ef0dddb9ff2a0eb5385295e5a5cf6859'],
      [1823255, 1461546, '00044bb9a7300000', 'be8a8ec97c8ddfa49ee18552d27a82c2e188fd4b8e6d2548676bcee0eff9b447'],
      [3284801, 946223, '0014b56bbaa00000', '97bdb58e50cacdea153c8f89654afe59cafff1021ed35416473ac0a6fbe1dfa9'],
      [4231024, 648695, '0006cfda58800000', 'ab94ff79a12f395768d7f4d0187f3a4f74e5cb88933c5afe483a3b349dd0903a'],
      [4879719, 2511943, '0008ff27b2f00000', 'e803bc8ff1294ab61016fc18ea5f49a1220e333c4d54bd943c34607b3f55bfa2'],
      [7391662, 1643215, '0004cd93a1b00000', '547763f8172c3456abb49c7b42be92886a25a477266a46d4f55bc1018358cc8a'],
      [9034877, 1459711, '000237581df00000', '8454c01c9ae566dd604d15389d3b84f26a0385fc9f013b4c6f6fb0bd24f91be1'],
      [10494588, 576805, '001a4acaa0700000', '1a8f469723fbeb1525c7abcab2c32dba29339c68f368c06d83d3d1241482faba'],
      [11071393, 1129722, '000f77d8bb600000', '14cc1e833c60bbcdcc4718f9110c46e2a7d568db32b405ab01229e61c57c1c4c'],
      [12201115, 3273690, '0010c81042e00000', '1d8ee3c7b77194288a069412dcff2ac6bcf1f0341cc33ff4e0484652b9f31fc2'],
      [15474805, 586450, '000309c784200000', 'fc06054e1802e833dff75296ae2805727efbeab677a64ae1cec67f273452ac40'],
      [16061255, 715961, '000970c568c5e5fa', '73a1e50fa63e6f50eb10e6cf625b6ced7b0d7e6579662b8eb3eb950fab1cfd3a'],
    ],
  ],
];

for (const [pol, rows] of XORSHIFT_VECTORS) {
  for (const engine of ENGINES) {
    test(`xorshift32 vectors for polynomial ${pol.toString(16)} (restic/chunker), ${engine} engine`, () => {
      const chunks = chunkAll(pol, xorshift16MiB, { engine });
      assert.deepEqual(
        chunks.map((c) => [c.start, c.length, c.cut.toString(16).padStart(16, '0'), sha256(xorshift16MiB.subarray(c.start, c.start + c.length))]),
        rows,
      );
    });
  }
}

test('zero input splits into chunks of exactly MinSize with cut 0', () => {
  for (const engine of ENGINES) {
    const chunks = chunkAll(TEST_POL, new Uint8Array(4 * MIN_SIZE), { engine });
    assert.equal(chunks.length, 4);
    for (const [i, c] of chunks.entries()) {
      assert.equal(c.start, i * MIN_SIZE);
      assert.equal(c.length, 524288);
      assert.equal(c.cut, 0n);
    }
    // zeros again, but in buffers that end exactly where a chunk ends
    assertSameChunks(chunkInBuffers(TEST_POL, new Uint8Array(4 * MIN_SIZE), [MIN_SIZE - 64, 64], engine), chunks, engine);
  }
  assert.equal(sha256(new Uint8Array(MIN_SIZE)), '07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541');
});

for (const engine of ENGINES) {
  test(`boundaries do not depend on how the input is split into buffers, ${engine} engine`, () => {
    boundariesIndependentOfBuffers(engine);
  });
}

function boundariesIndependentOfBuffers(engine: ChunkerEngine): void {
  const whole = chunkAll(TEST_POL, xorshift16MiB, { engine });
  const splits: Array<[string, number[]]> = [
    ['63', [63]],
    ['64', [64]],
    ['65', [65]],
    ['4096', [4096]],
    ['odd sizes', [1, 7, 100_003, 63, 64, 65, 1, 524_161, 2 * MiB + 1, 33, 8191]],
    ['1 MiB', [MiB]],
    ['a buffer larger than MaxSize', [9 * MiB]],
  ];
  for (const [name, sizes] of splits) {
    assertSameChunks(chunkInBuffers(TEST_POL, xorshift16MiB, sizes, engine), whole, `buffers of ${name}`);
  }
  // one byte at a time, over a prefix that still holds two cuts and a remainder
  const prefix = xorshift16MiB.subarray(0, 4 * MiB);
  assertSameChunks(chunkInBuffers(TEST_POL, prefix, [1], engine), chunkAll(TEST_POL, prefix, { engine }), 'buffers of 1 byte');
}

test('matches a literal bigint transcription of the algorithm on other polynomials', () => {
  const data = xorshiftBytes(5 * MiB, 0x9e3779b9);
  const polynomials = [
    randomPolynomial(),
    irreducibleOfDegree(47, 0x1234567),
    irreducibleOfDegree(40, 0x7654321), // smallest degree of the fast loop variant
    irreducibleOfDegree(39, 0xabcdef), // top digest byte straddles the two 32-bit halves
    irreducibleOfDegree(31, 0x5555),
    irreducibleOfDegree(20, 0x123), // the whole digest fits in the split mask
    irreducibleOfDegree(19, 0x321), // the smallest degree of the wasm engine
  ];
  for (const pol of polynomials) {
    const expected = referenceChunks(pol, data);
    assert.ok(expected.length >= 2, `polynomial ${pol.toString(16)} should cut 5 MiB of random data`);
    for (const engine of ENGINES) {
      const what = `polynomial ${pol.toString(16)}, ${engine} engine`;
      assertSameChunks(chunkAll(pol, data, { engine }), expected, `${what}, whole`);
      assertSameChunks(chunkInBuffers(pol, data, [65_537, 63, 1], engine), expected, `${what}, buffers`);
    }
  }
});

test('polynomials of degree below 19 fall back to the js engine', () => {
  const pol = irreducibleOfDegree(15, 0x77);
  const data = xorshiftBytes(3 * MiB, 0x1234);
  assert.equal(new Chunker(pol).engine, 'js');
  assert.throws(() => new Chunker(pol, { engine: 'wasm' }), UnsupportedError);
  assertSameChunks(chunkAll(pol, data), referenceChunks(pol, data), 'degree 15');
  assert.equal(new Chunker(TEST_POL).engine, 'wasm');
});

test('the end-of-input digest is restic running digest, also before and during warm-up', () => {
  // Remainders ending in the skip phase (digest 1), during the 64-byte warm-up while restic's
  // initial 1 is still in the window, at MinSize, and after it.
  const data = xorshiftBytes(MIN_SIZE + 100, 0xdeadbeef);
  for (const length of [1, 1000, MIN_SIZE - 64, MIN_SIZE - 63, MIN_SIZE - 30, MIN_SIZE - 1, MIN_SIZE, MIN_SIZE + 100]) {
    const input = data.subarray(0, length);
    const expected = referenceChunks(TEST_POL, input);
    for (const engine of ENGINES) {
      assertSameChunks(chunkAll(TEST_POL, input, { engine }), expected, `length ${length}, ${engine}`);
      assertSameChunks(chunkInBuffers(TEST_POL, input, [MIN_SIZE - 40, 7], engine), expected, `length ${length}, ${engine}, buffers`);
    }
  }
  assert.equal(chunkAll(TEST_POL, new Uint8Array(1000))[0].cut, 1n);
  assert.deepEqual(chunkAll(TEST_POL, new Uint8Array(0)), []);
});

test('a chunk is cut at MaxSize when the mask never matches', () => {
  // 64 bytes of 0xff hash to a value whose low 20 bits are not zero, so a run of 0xff never cuts.
  let windowDigest = 0n;
  for (let i = 0; i < 64; i++) windowDigest = polyMod((windowDigest << 8n) | 0xffn, TEST_POL);
  assert.notEqual(windowDigest & 0xfffffn, 0n);

  const data = new Uint8Array(2 * MAX_SIZE + 12345).fill(0xff);
  const expected = [
    { start: 0, length: MAX_SIZE, cut: windowDigest },
    { start: MAX_SIZE, length: MAX_SIZE, cut: windowDigest },
    { start: 2 * MAX_SIZE, length: 12345, cut: 1n },
  ];
  for (const engine of ENGINES) {
    assertSameChunks(chunkAll(TEST_POL, data, { engine }), expected, `${engine}, whole`);
    assertSameChunks(chunkInBuffers(TEST_POL, data, [MiB + 3, 61], engine), expected, `${engine}, buffers`);
    // a cut forced exactly at the end of a buffer
    assertSameChunks(chunkInBuffers(TEST_POL, data, [MAX_SIZE], engine), expected, `${engine}, MaxSize buffers`);
  }
});

for (const engine of ENGINES) {
  test(`reset starts a new file, and chunkers of different polynomials can interleave, ${engine} engine`, () => {
    resetAndInterleave(engine);
  });
}

function resetAndInterleave(engine: ChunkerEngine): void {
  const data = xorshift16MiB.subarray(0, 6 * MiB);
  const a = new Chunker(TEST_POL, { engine });
  const b = new Chunker(DESIGN_POL, { engine });
  a.next(xorshiftBytes(MIN_SIZE + 1000, 42)); // leave a in the middle of a chunk
  a.reset();
  const cutsA: number[] = [];
  const cutsB: number[] = [];
  const step = 100_000;
  for (let pos = 0; pos < data.length; pos += step) {
    const buf = data.subarray(pos, pos + step);
    for (const [chunker, cuts] of [
      [a, cutsA],
      [b, cutsB],
    ] as const) {
      for (let at = chunker.next(buf); at >= 0; at = chunker.next(buf, at)) cuts.push(pos + at);
    }
  }
  const ends = (pol: Polynomial): number[] =>
    chunkAll(pol, data)
      .slice(0, -1)
      .map((c) => c.start + c.length);
  assert.deepEqual(cutsA, ends(TEST_POL));
  assert.deepEqual(cutsB, ends(DESIGN_POL));
  assert.notDeepEqual(cutsA, cutsB);
}

test('rejects unusable polynomials and offsets', () => {
  assert.throws(() => new Chunker(0n), UnsupportedError);
  assert.throws(() => new Chunker(0x1fn), UnsupportedError);
  assert.throws(() => new Chunker((1n << 60n) | 1n), UnsupportedError);
  assert.throws(() => new Chunker(TEST_POL, { engine: 'asm' as ChunkerEngine }), InvalidInputError);
  const chunker = new Chunker(TEST_POL);
  const buf = new Uint8Array(10);
  assert.throws(() => chunker.next(buf, 11), InvalidInputError);
  assert.throws(() => chunker.next(buf, -1), InvalidInputError);
  assert.throws(() => chunker.next(buf, 1.5), InvalidInputError);
  assert.equal(chunker.next(buf, 10), -1);
  assert.equal(chunker.pending, 0);
  assert.equal(chunker.next(buf, 3), -1);
  assert.equal(chunker.pending, 7);
});
