import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { IntegrityError, InvalidInputError } from '../../src/errors.ts';
import {
  COMPRESSION_MODES, MAX_UNPACKED_SIZE, compress, compressesDataBlobs, decodeUnpacked, decompress,
  encodeUnpacked, parseCompressionMode,
} from '../../src/repository/compression.ts';

const where = { file: 'data/ab/ab12', blob: 'cd34' };

function sample(n: number): Buffer {
  // Half text-like, half random: compressible but not trivially.
  const b = Buffer.alloc(n);
  const words = ['restic', 'stowage', 'pack', 'blob', 'tree', 'snapshot', '{"name":', '"content":[', '\n'];
  let o = 0;
  let seed = n;
  while (o < n / 2) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    o += b.write(words[seed % words.length]! + String(seed % 1000), o);
  }
  randomBytes(n - Math.floor(n / 2)).copy(b, Math.floor(n / 2));
  return b;
}

function text(n: number): Buffer {
  return sample(n * 2).subarray(0, n);
}

function frameHeader(frame: Uint8Array): { checksum: boolean; singleSegment: boolean; fcsFlag: number; windowBytes?: number } {
  assert.equal(Buffer.from(frame.subarray(0, 4)).readUInt32LE(0), 0xfd2fb528, 'zstd magic');
  const fhd = frame[4]!;
  const singleSegment = ((fhd >> 5) & 1) === 1;
  const out: { checksum: boolean; singleSegment: boolean; fcsFlag: number; windowBytes?: number } = {
    checksum: ((fhd >> 2) & 1) === 1, singleSegment, fcsFlag: fhd >> 6,
  };
  if (!singleSegment) {
    const wd = frame[5]!;
    const base = 2 ** (10 + (wd >> 3));
    out.windowBytes = base + (base / 8) * (wd & 7);
  }
  return out;
}

/** A zstd frame of RLE blocks: `blocks` × 128 KiB of one byte, without a declared size. */
function rleBomb(blocks: number, declaredSize?: bigint): Buffer {
  const head = declaredSize === undefined
    ? Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]) // no FCS, window 128 KiB
    : Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x38]), u64(declaredSize)]);
  const block = (last: boolean) => {
    const h = (128 * 1024) << 3 | 1 << 1 | (last ? 1 : 0); // size, type RLE, last flag
    return Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, 0x41]);
  };
  const parts = [head];
  for (let i = 0; i < blocks; i++) parts.push(block(i === blocks - 1));
  return Buffer.concat(parts);
}

function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

function isIntegrity(re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof IntegrityError, `expected IntegrityError, got ${String(e)}`);
    assert.ok(e.message.includes('data/ab/ab12') && e.message.includes('cd34'), e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

const hasZstdCli = (() => {
  try {
    execFileSync('zstd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('every mode round-trips and writes one frame with size, without checksum', () => {
  const data = sample(300_000);
  const sizes: Record<string, number> = {};
  for (const mode of COMPRESSION_MODES) {
    const z = compress(data, mode);
    const h = frameHeader(z);
    assert.equal(h.checksum, false, `${mode}: no checksum`);
    assert.notEqual(h.fcsFlag === 0 && !h.singleSegment, true, `${mode}: content size declared`);
    assert.ok(z.length < data.length, `${mode} compresses`);
    assert.deepEqual(Buffer.from(decompress(z, data.length, where)), data);
    assert.deepEqual(Buffer.from(decompress(z, undefined, where)), data);
    sizes[mode] = z.length;
  }
  assert.equal(sizes.off, sizes.auto, "'off' compresses what it compresses at the default level");
  const t = text(300_000);
  const [fastest, max] = [compress(t, 'fastest').length, compress(t, 'max').length];
  assert.ok(max < fastest, `max (${max}) beats fastest (${fastest}) on text`);
});

test('empty and tiny inputs', () => {
  for (const data of [Buffer.alloc(0), Buffer.from('x'), Buffer.from('{}')]) {
    const z = compress(data, 'auto');
    assert.deepEqual(Buffer.from(decompress(z, data.length, where)), data);
  }
});

test('the window stays within 8 MiB even at the highest level', () => {
  const data = Buffer.alloc(12 << 20);
  for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i * 2654435761 >>> 0, i);
  const z = compress(data, 'max');
  const h = frameHeader(z);
  assert.equal(h.singleSegment, false);
  assert.ok(h.windowBytes! <= 8 << 20, `window ${h.windowBytes}`);
  assert.deepEqual(Buffer.from(decompress(z, data.length, where)), data);
});

test('frames without a declared content size decode', () => {
  const data = sample(200_000);
  const z = zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 0 } });
  const h = frameHeader(z);
  assert.equal(h.fcsFlag, 0);
  assert.equal(h.singleSegment, false);
  assert.deepEqual(Buffer.from(decompress(z, data.length, where)), data);
  assert.deepEqual(Buffer.from(decompress(z, undefined, where)), data);
});

test('frames from the zstd tool (streamed, so no size, with a checksum) decode', { skip: !hasZstdCli && 'zstd CLI not installed' }, () => {
  const data = sample(500_000);
  const z = execFileSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 64 << 20 });
  const h = frameHeader(z);
  assert.equal(h.fcsFlag, 0, 'streamed input has no declared size');
  assert.equal(h.checksum, true);
  assert.deepEqual(Buffer.from(decompress(z, data.length, where)), data);
  // And our frames decode with the reference tool.
  assert.deepEqual(execFileSync('zstd', ['-q', '-d', '-c'], { input: compress(data, 'better'), maxBuffer: 64 << 20 }), data);
});

test('a run of frames decodes to the concatenation, like Go\'s decoder', () => {
  const a = sample(70_000);
  const b = Buffer.from('second frame');
  const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18]), Buffer.from([3, 0, 0, 0]), Buffer.from('abc')]);
  const stream = Buffer.concat([compress(a, 'fastest'), skippable, compress(b, 'max')]);
  assert.deepEqual(Buffer.from(decompress(stream, a.length + b.length, where)), Buffer.concat([a, b]));
  assert.throws(() => decompress(stream, a.length, where), isIntegrity(/more than/));
});

test('length checks: too short or too long is an IntegrityError', () => {
  const data = sample(10_000);
  const z = compress(data, 'auto');
  assert.throws(() => decompress(z, data.length + 1, where), isIntegrity(/expected 10001/));
  assert.throws(() => decompress(z, data.length - 1, where), isIntegrity(/more than 9999/));
  const noSize = zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 0 } });
  assert.throws(() => decompress(noSize, data.length - 1, where), isIntegrity(/more than 9999/));
  assert.throws(() => decompress(noSize, undefined, where, 100), isIntegrity(/more than 100/));
});

test('hostile input gives IntegrityError, not a crash', () => {
  const z = compress(sample(50_000), 'auto');
  const cases: Buffer[] = [
    Buffer.alloc(0),
    Buffer.from('this is not zstd at all'),
    randomBytes(1000),
    Buffer.from(z.subarray(0, z.length - 10)), // truncated
    Buffer.from(z.subarray(0, 5)), // header only
    Buffer.concat([z, Buffer.from('trailing garbage')]),
  ];
  const flipped = Buffer.from(z);
  flipped[flipped.length >> 1]! ^= 0xff;
  cases.push(flipped);
  for (const c of cases) {
    try {
      const out = decompress(c, 50_000, where);
      // A flipped bit in a literal section can decode to other bytes of the right length; that is
      // what blob hashes catch. Anything else must have thrown.
      assert.equal(c, flipped, 'only the bit-flip case may decode');
      assert.equal(out.length, 50_000);
    } catch (e) {
      isIntegrity()(e);
    }
  }
});

test('a zstd bomb is stopped at the bound without materialising it', () => {
  const bomb = rleBomb(8192); // 1 GiB of 'A' in 32 KiB of input, no declared size
  assert.ok(bomb.length < 40_000);
  const before = process.memoryUsage().rss;
  assert.throws(() => decompress(bomb, 1 << 20, where), isIntegrity(/more than 1048576/));
  assert.throws(() => decodeUnpacked(Buffer.concat([Buffer.from([2]), bomb]), 2, where, 4 << 20), isIntegrity(/more than 4194304/));
  assert.ok(process.memoryUsage().rss - before < 256 << 20, 'memory stayed bounded');
  // A small bomb under the bound really decodes, so the frame above is valid zstd.
  const small = decompress(rleBomb(3), undefined, where);
  assert.equal(small.length, 3 * 128 * 1024);
  assert.ok(small.every((b) => b === 0x41));
});

test('a declared size over the bound fails before decoding', () => {
  const declared = rleBomb(1, 3n << 30n); // claims 3 GiB
  assert.throws(
    () => decodeUnpacked(Buffer.concat([Buffer.from([2]), declared]), 2, where),
    isIntegrity(new RegExp(`declares 3221225472 bytes, more than ${MAX_UNPACKED_SIZE}`)),
  );
  assert.throws(() => decompress(declared, 1000, where), isIntegrity(/declares/));
});

test('unpacked files: v2 writes 0x02 ‖ zstd, reads both forms; v1 is plain JSON', () => {
  const json = Buffer.from(JSON.stringify({ packs: [], note: 'x'.repeat(1000) }));
  const v2 = encodeUnpacked(json, 2);
  assert.equal(v2[0], 0x02);
  assert.ok(v2.length < json.length);
  frameHeader(v2.subarray(1));
  assert.deepEqual(Buffer.from(decodeUnpacked(v2, 2, where)), json);
  assert.deepEqual(Buffer.from(decodeUnpacked(encodeUnpacked(json, 2, 'max'), 2, where)), json);
  // 'off' only concerns data blobs: unpacked files are still compressed.
  assert.equal(encodeUnpacked(json, 2, 'off')[0], 0x02);
  // Raw JSON in a v2 repository (older writers) passes through.
  assert.equal(decodeUnpacked(json, 2, where), json);
  const arr = Buffer.from('[{"id":"x"}]');
  assert.equal(decodeUnpacked(arr, 2, where), arr);
  // v1: nothing is interpreted.
  assert.equal(encodeUnpacked(json, 1), json);
  assert.equal(decodeUnpacked(v2, 1, where), v2);
  // Empty stays empty.
  assert.equal(decodeUnpacked(new Uint8Array(0), 2, where).length, 0);
});

test('unpacked files: an unknown encoding byte or broken zstd is an IntegrityError', () => {
  for (const first of [0x00, 0x01, 0x03, 0x20, 0x22, 0xff]) {
    const plain = Buffer.concat([Buffer.from([first]), Buffer.from('{"a":1}')]);
    assert.throws(() => decodeUnpacked(plain, 2, where), isIntegrity(/unsupported encoding format/));
  }
  assert.throws(() => decodeUnpacked(Buffer.from([0x02]), 2, where), isIntegrity(/empty zstd/));
  assert.throws(() => decodeUnpacked(Buffer.from([0x02, 1, 2, 3, 4, 5, 6]), 2, where), isIntegrity(/invalid zstd/));
});

test('compression mode helpers', () => {
  for (const m of COMPRESSION_MODES) assert.equal(parseCompressionMode(m), m);
  assert.throws(() => parseCompressionMode('maximum'), (e: unknown) => e instanceof InvalidInputError && /"maximum"/.test(e.message));
  assert.equal(compressesDataBlobs('auto', 2), true);
  assert.equal(compressesDataBlobs('max', 2), true);
  assert.equal(compressesDataBlobs('off', 2), false);
  assert.equal(compressesDataBlobs('auto', 1), false);
});
