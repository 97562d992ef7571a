// ZstdEncoder keeps one zstd context: from one call to the next, for every mode, its frames must
// decode back, declare their content size, and be as small as compress()'s (zstd may size a
// table differently for a reused context, so a few bytes either way).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { compress, decompress, COMPRESSION_MODES } from '../../src/repository/compression.ts';
import { ZstdEncoder } from '../../src/repository/zstd-encoder.ts';

function text(n: number): Buffer {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  const out: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = words[(i * 7 + (i >> 3)) % words.length]!;
    out.push(w);
    len += w.length + 1;
  }
  return Buffer.from(out.join(' ')).subarray(0, n);
}

/** The frame content size a zstd frame header declares, if any. */
function declaredSize(frame: Uint8Array): number | undefined {
  const fhd = frame[4]!;
  const fcs = [frame[4]! & 0x20 ? 1 : 0, 2, 4, 8][fhd >> 6]!;
  if (fcs === 0) return undefined;
  const at = 5 + (fhd & 0x20 ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  const v = Buffer.from(frame).readUIntLE(at, Math.min(fcs, 6));
  return fcs === 2 ? v + 256 : v;
}

test('frames like compress()\'s, mode by mode, call after call', () => {
  const inputs = [Buffer.alloc(0), Buffer.from('x'), text(1000), randomBytes(5000), text(70_000), Buffer.alloc(300_000, 7), randomBytes(1 << 20), text(3 << 20)];
  for (const mode of COMPRESSION_MODES) {
    if (mode === 'max') continue; // level 19 is slow; its parameters take the same path
    const encoder = new ZstdEncoder(mode);
    for (const input of [...inputs, ...inputs.slice().reverse()]) {
      if (input.length === 0) continue;
      const frame = Buffer.from(encoder.compress(input));
      const fresh = compress(input, mode);
      const what: string = `mode ${mode}, ${input.length} bytes`;
      assert.ok(Math.abs(frame.length - fresh.length) <= Math.max(16, fresh.length / 100), `${what}: ${frame.length} vs ${fresh.length}`);
      assert.equal(declaredSize(frame), input.length, what);
      assert.deepEqual(Buffer.from(decompress(frame, input.length, {})), input, what);
    }
    encoder.close();
  }
});

test('a result is only valid until the next call, and a closed encoder still works', () => {
  const encoder = new ZstdEncoder('auto');
  const a = text(10_000);
  const first = Buffer.from(encoder.compress(a));
  encoder.compress(randomBytes(10_000));
  assert.deepEqual(Buffer.from(decompress(first, a.length, {})), a);
  encoder.close();
  const b = text(20_000);
  assert.deepEqual(Buffer.from(decompress(encoder.compress(b), b.length, {})), b);
});
