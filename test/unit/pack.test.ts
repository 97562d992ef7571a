// Pack files: PackWriter output read back by readPackHeader, the exact header bytes restic
// expects, the file size check's formula, and every way a damaged pack must be refused.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { IntegrityError } from '../../src/errors.ts';
import { CRYPTO_OVERHEAD, initCrypto, open, randomKey, seal, type CryptoKey } from '../../src/repository/crypto.ts';
import { compress, decompress } from '../../src/repository/compression.ts';
import type { BlobId, BlobType, PackId } from '../../src/repository/id.ts';
import {
  COMPRESSED_ENTRY_SIZE, EAGER_TAIL, MAX_HEADER_SIZE, PLAIN_ENTRY_SIZE, PackWriter, decodePackHeader,
  encodePackHeader, expectedPackSize, readPackHeader, type PackedBlob,
} from '../../src/repository/pack.ts';

const FILE = 'data/ab/ab0123';
let key: CryptoKey;

before(async () => {
  await initCrypto();
  key = randomKey();
});

function sha(b: Uint8Array): BlobId {
  return createHash('sha256').update(b).digest('hex') as BlobId;
}

interface Made {
  plain: Buffer;
  id: BlobId;
}

/** Builds a pack of `type` from plaintexts; `compressed[i]` says whether blob i is zstd'd. */
function makePack(type: BlobType, plains: Buffer[], compressed: boolean[]) {
  const w = new PackWriter(key, type);
  const made: Made[] = [];
  plains.forEach((plain, i) => {
    const id = sha(plain);
    const payload = compressed[i] ? compress(plain, 'auto') : plain;
    w.add(id, seal(key, payload), compressed[i] ? plain.length : 0);
    made.push({ plain, id });
  });
  const sizeBefore = w.fileSize;
  const out = w.finish();
  return { ...out, made, sizeBefore };
}

/** readPackHeader the way a backend reader calls it: an eager tail, more on demand. */
function readPack(bytes: Uint8Array, file = FILE, tailLen = EAGER_TAIL, k: CryptoKey = key) {
  const reads: number[] = [];
  const tail = bytes.subarray(Math.max(0, bytes.length - tailLen));
  return readPackHeader(k, bytes.length, tail, async (n) => {
    reads.push(n);
    return bytes.subarray(Math.max(0, bytes.length - n));
  }, file).then((blobs) => ({ blobs, reads }));
}

function namesFile(file = FILE, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof IntegrityError, `expected IntegrityError, got ${String(e)}`);
    assert.equal(e.code, 'INTEGRITY');
    assert.equal(e.file, file);
    assert.ok(e.message.includes(file), e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

/** A pack file from raw parts: blob region bytes and a plaintext header, sealed here. */
function rawPack(blobRegion: Uint8Array, header: Uint8Array): Buffer {
  const sealed = seal(key, header);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(sealed.length);
  return Buffer.concat([blobRegion, sealed, len]);
}

for (const type of ['data', 'tree'] as const) {
  for (const compressed of [false, true]) {
    test(`${type} pack, ${compressed ? 'compressed' : 'uncompressed'}: write, read the header back, read every blob`, async () => {
      const plains = [Buffer.from('a'.repeat(1000)), randomBytes(5000), Buffer.from('{"nodes":[]}\n'), Buffer.from('x')];
      const p = makePack(type, plains, plains.map(() => compressed));
      assert.equal(p.id, sha(p.bytes), 'pack ID is the SHA-256 of the file');
      assert.equal(p.bytes.length, p.sizeBefore, 'fileSize predicted before finish');
      assert.equal(p.bytes.length, expectedPackSize(p.blobs), 'expectedPackSize equals the real size');

      const { blobs, reads } = await readPack(p.bytes);
      assert.deepEqual(reads, [], 'a 4-entry header fits in the eager tail');
      assert.deepEqual(blobs, p.blobs);
      let offset = 0;
      blobs.forEach((b, i) => {
        assert.equal(b.type, type);
        assert.equal(b.id, p.made[i]!.id);
        assert.equal(b.offset, offset, 'blobs are back to back from offset 0');
        assert.equal(b.uncompressedLength, compressed ? plains[i]!.length : 0);
        offset += b.length;
        let plain = open(key, p.bytes.subarray(b.offset, b.offset + b.length));
        if (b.uncompressedLength) plain = decompress(plain, b.uncompressedLength, {});
        assert.deepEqual(Buffer.from(plain), plains[i]);
      });
    });
  }
}

test('compressed and uncompressed blobs mix in one pack', async () => {
  const plains = [randomBytes(100), Buffer.alloc(3000, 7), randomBytes(10)];
  const p = makePack('data', plains, [false, true, false]);
  const { blobs } = await readPack(p.bytes);
  assert.deepEqual(blobs.map((b) => b.uncompressedLength), [0, 3000, 0]);
  assert.equal(p.bytes.length, expectedPackSize(blobs));
  assert.equal(
    p.bytes.length,
    4 + CRYPTO_OVERHEAD + blobs.reduce((s, b) => s + b.length, 0) + 2 * PLAIN_ENTRY_SIZE + COMPRESSED_ENTRY_SIZE,
  );
});

test('the header bytes are exactly restic\'s: type 0–3, u32le lengths, 37/41-byte entries', async () => {
  const w = new PackWriter(key, 'tree');
  const idA = sha(Buffer.from('A'));
  const idB = sha(Buffer.from('B'));
  w.add(idA, Buffer.alloc(40, 1), 0); // 40 stored bytes, uncompressed
  w.add(idB, Buffer.alloc(0x0102 + 32, 2), 0x01020304); // compressed, plaintext 0x01020304
  const { bytes } = w.finish();
  const hlen = hlenOf(bytes);
  assert.equal(hlen, CRYPTO_OVERHEAD + 37 + 41);
  const header = Buffer.from(open(key, bytes.subarray(bytes.length - 4 - hlen, bytes.length - 4)));
  const expected = Buffer.concat([
    Buffer.from([1]), u32(40), Buffer.from(idA, 'hex'),
    Buffer.from([3]), u32(0x0102 + 32), u32(0x01020304), Buffer.from(idB, 'hex'),
  ]);
  assert.deepEqual(header, expected);
  // Blob bytes are stored verbatim and back to back in front of the header.
  assert.deepEqual(bytes.subarray(0, 40), Buffer.alloc(40, 1));
  assert.deepEqual(bytes.subarray(40, 40 + 0x0122), Buffer.alloc(0x0122, 2));

  const data: PackedBlob[] = [
    { type: 'data', id: idA, offset: 0, length: 33, uncompressedLength: 0 },
    { type: 'data', id: idB, offset: 33, length: 50, uncompressedLength: 9 },
  ];
  const h = Buffer.from(encodePackHeader(data));
  assert.equal(h.length, 37 + 41);
  assert.equal(h[0], 0);
  assert.equal(h[37], 2);
  assert.deepEqual(decodePackHeader(h, FILE), data);
});

/** The header length field: the last 4 bytes of a pack. */
function hlenOf(pack: Uint8Array): number {
  return Buffer.from(pack.buffer, pack.byteOffset, pack.byteLength).readUInt32LE(pack.length - 4);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

test('a header that does not fit in the eager tail is fetched with readMore', async () => {
  const plains = Array.from({ length: 40 }, (_, i) => Buffer.from(`blob ${i}`));
  const p = makePack('data', plains, plains.map(() => false));
  const hlen = hlenOf(p.bytes);
  const { blobs, reads } = await readPack(p.bytes);
  assert.deepEqual(reads, [hlen + 4]);
  assert.equal(blobs.length, 40);
  // The 4-byte minimum tail also works.
  const again = await readPack(p.bytes, FILE, 4);
  assert.deepEqual(again.blobs, blobs);
});

test('a pack with no blobs is a bare sealed header', async () => {
  const p = new PackWriter(key, 'data').finish();
  assert.equal(p.bytes.length, 4 + CRYPTO_OVERHEAD);
  assert.deepEqual((await readPack(p.bytes)).blobs, []);
});

test('a flipped byte anywhere in the sealed header is an IntegrityError naming the file', async () => {
  const p = makePack('data', [randomBytes(50), randomBytes(60)], [false, false]);
  const hlen = hlenOf(p.bytes);
  const start = p.bytes.length - 4 - hlen;
  for (const at of [start, start + 16, start + 20, p.bytes.length - 5]) {
    const bad = Buffer.from(p.bytes);
    bad[at]! ^= 0x01;
    await assert.rejects(readPack(bad), namesFile(FILE, /MAC/));
  }
});

test('the wrong key cannot read a pack header', async () => {
  const p = makePack('tree', [Buffer.from('{}')], [false]);
  await assert.rejects(readPack(p.bytes, FILE, EAGER_TAIL, randomKey()), namesFile());
});

test('truncated packs are refused', async () => {
  const p = makePack('data', [randomBytes(500), randomBytes(700)], [false, false]);
  // Cut at the end (length field gone), in the header, and in the blobs.
  for (const cut of [1, 4, 30, 600]) {
    await assert.rejects(readPack(p.bytes.subarray(0, p.bytes.length - cut)), namesFile());
  }
  // Blob bytes missing at the front: the header is intact but the size disagrees with it.
  await assert.rejects(readPack(p.bytes.subarray(10)), namesFile(FILE, /does not match its header/));
  // Extra bytes in front are just as wrong.
  await assert.rejects(readPack(Buffer.concat([Buffer.alloc(3), p.bytes])), namesFile(FILE, /does not match/));
  // Smaller than an empty header can be.
  await assert.rejects(readPack(Buffer.alloc(35)), namesFile(FILE, /too small/));
  await assert.rejects(readPackHeader(key, 100, new Uint8Array(3), async () => new Uint8Array(0), FILE), namesFile(FILE, /truncated/));
});

test('header length 0, below 32, bigger than the file or over 16 MiB is refused before reading it', async () => {
  const body = randomBytes(200);
  const withLen = (n: number) => Buffer.concat([body, u32(n)]);
  let called = false;
  const never = async (): Promise<Uint8Array> => {
    called = true;
    return new Uint8Array(0);
  };
  for (const n of [0, 31, 201, 0xffffffff]) {
    const bytes = withLen(n);
    await assert.rejects(readPackHeader(key, bytes.length, bytes, never, FILE), namesFile(FILE, /header length \d+ is invalid/));
  }
  // Over restic's 16 MiB limit even when the file would be big enough.
  const size = MAX_HEADER_SIZE + 100;
  await assert.rejects(
    readPackHeader(key, size, u32(MAX_HEADER_SIZE - 3), never, FILE),
    namesFile(FILE, /header length 16777217 is invalid/),
  );
  assert.equal(called, false);
});

test('an unknown blob type byte is refused', async () => {
  for (const t of [4, 5, 0x80, 0xff]) {
    const header = Buffer.concat([Buffer.from([t]), u32(40), randomBytes(32)]);
    const bytes = rawPack(randomBytes(40), header);
    await assert.rejects(readPack(bytes), namesFile(FILE, new RegExp(`unknown blob type ${t}`)));
  }
});

test('malformed header entries are refused', () => {
  const id = randomBytes(32);
  // An entry cut short (type 0 needs 37 bytes, type 2 needs 41).
  assert.throws(() => decodePackHeader(Buffer.concat([Buffer.from([0]), u32(40), id.subarray(0, 31)]), FILE), namesFile(FILE, /truncated/));
  assert.throws(() => decodePackHeader(Buffer.concat([Buffer.from([2]), u32(40), id]), FILE), namesFile(FILE, /truncated/));
  // A stored length below the crypto overhead cannot hold a sealed blob.
  assert.throws(() => decodePackHeader(Buffer.concat([Buffer.from([0]), u32(31), id]), FILE), namesFile(FILE, /length 31/));
  // Offsets are the running sum of lengths.
  const two = decodePackHeader(Buffer.concat([Buffer.from([0]), u32(40), id, Buffer.from([3]), u32(50), u32(70), id]), FILE);
  assert.deepEqual(two.map((b) => [b.type, b.offset, b.length, b.uncompressedLength]), [['data', 0, 40, 0], ['tree', 40, 50, 70]]);
});

test('PackWriter stops accepting blobs exactly where the header would pass 16 MiB', async () => {
  const w = new PackWriter(key, 'data');
  const sealed = Buffer.alloc(CRYPTO_OVERHEAD);
  const id = sha(Buffer.from('same id is fine for the header'));
  // With n compressed entries the next one still fits while n·41 + 41 + 36 ≤ MAX_HEADER_SIZE.
  const fits = Math.floor((MAX_HEADER_SIZE - COMPRESSED_ENTRY_SIZE - CRYPTO_OVERHEAD - 4) / COMPRESSED_ENTRY_SIZE);
  for (let i = 0; i < fits; i++) w.add(id, sealed, 1);
  assert.equal(w.headerFull, false);
  w.add(id, sealed, 1);
  assert.equal(w.headerFull, true);
  const p = w.finish();
  const hlen = hlenOf(p.bytes);
  assert.ok(hlen + 4 <= MAX_HEADER_SIZE);
  const { blobs } = await readPack(p.bytes);
  assert.equal(blobs.length, fits + 1);
  assert.equal(p.bytes.length, expectedPackSize(blobs));
});

test('planPackReads: per pack by offset, cut at the gap and span limits, the same blob once', async () => {
  const { planPackReads } = await import('../../src/repository/pack-reader.ts');
  const P = 'a'.repeat(64) as PackId;
  const Q = 'b'.repeat(64) as PackId;
  const at = (packId: PackId, offset: number, length: number) => ({ packId, offset, length });
  const blobs = [at(Q, 0, 10), at(P, 100, 10), at(P, 0, 10), at(P, 20, 10), at(P, 20, 10), at(P, 1000, 10), at(P, 1010, 500)];
  const reads = planPackReads(blobs, { maxGap: 10, maxSpan: 400 });
  assert.deepEqual(reads.map((r) => [r.packId[0], r.offset, r.length, r.blobs.length]), [
    ['b', 0, 10, 1],
    ['a', 0, 30, 2], // 0 and 20 (gap 10); 20 listed twice is read once
    ['a', 100, 10, 1], // gap 70
    ['a', 1000, 10, 1], // 1010+500 would span 510
    ['a', 1010, 500, 1], // bigger than maxSpan: read alone
  ]);
  const wrapped = planPackReads(blobs.map((loc) => ({ loc })), { maxGap: 10, maxSpan: 400 }, (b) => b.loc);
  assert.deepEqual(wrapped.map((r) => r.blobs.length), [1, 2, 1, 1, 1]);
});
