// ZstdDecoder: one kept context decodes frame after frame exactly as zstdDecompressSync does, and
// anything unexpected (a cut frame, a frame larger than said, garbage) answers undefined without
// spoiling the frames after it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { ZstdDecoder } from '../../src/repository/zstd-decoder.ts';

const frames = Array.from({ length: 300 }, (_, i) => {
  const plain = Buffer.from(randomBytes(20 + (i % 97) * 7).toString('hex').repeat(1 + (i % 4)));
  return { plain, frame: zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 1 } }) };
});

test('frames decode one after the other with one context, each into a buffer of its own', () => {
  const d = new ZstdDecoder();
  for (const { plain, frame } of frames) {
    const out = d.decompress(frame, plain.length)!;
    assert.ok(out.equals(plain));
    assert.equal(out.byteOffset, 0);
    assert.equal(out.buffer.byteLength, plain.length);
  }
});

test('a cut frame, a frame larger than said and garbage give undefined; the next frames still decode', () => {
  const d = new ZstdDecoder();
  const [a, b, c] = frames.slice(10, 13).map((f) => f);
  assert.equal(d.decompress(a!.frame.subarray(0, a!.frame.length - 5), a!.plain.length), undefined);
  assert.ok(d.decompress(b!.frame, b!.plain.length)!.equals(b!.plain));
  assert.equal(d.decompress(c!.frame, c!.plain.length - 1), undefined);
  assert.ok(d.decompress(a!.frame, a!.plain.length)!.equals(a!.plain));
  assert.equal(d.decompress(randomBytes(64), 100), undefined);
  assert.ok(d.decompress(c!.frame, c!.plain.length)!.equals(c!.plain));
  assert.equal(d.decompress(c!.frame, 0), undefined);
});
