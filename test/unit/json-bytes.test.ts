import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonBytes } from '../../src/repository/json-bytes.ts';

test('JsonBytes: grows past its first room, writes UTF-8 exactly, trims only when much is spare', () => {
  const out = new JsonBytes(4);
  const pieces = ['{"a":', '"żółw 🐢"', ',"b":[', ...Array.from({ length: 500 }, (_, i) => `${i},`), '1]}\n'];
  for (const p of pieces) out.write(p);
  const expected = Buffer.from(pieces.join(''), 'utf8');
  assert.deepEqual(Buffer.from(out.bytes()), expected);
  const trimmed = out.trimmed();
  assert.deepEqual(Buffer.from(trimmed), expected);
  // A mostly spare buffer is not kept alive by what is trimmed; the view shares it.
  const roomy = new JsonBytes(1 << 20);
  roomy.write('x');
  assert.equal(roomy.bytes().buffer.byteLength, 1 << 20);
  assert.ok(roomy.trimmed().buffer.byteLength < 1 << 20);

  const full = new JsonBytes(3);
  full.write('abc');
  assert.equal(full.trimmed().byteLength, 3);
  assert.equal(new JsonBytes(0).bytes().byteLength, 0);

  // Grown only when the bytes do not fit, not when the worst case (3 bytes a unit) would not.
  const exact = new JsonBytes(1 << 16);
  exact.write('x'.repeat((1 << 16) - 4096));
  exact.write('y'.repeat(4096));
  assert.equal(exact.bytes().byteLength, 1 << 16);
  assert.equal(exact.bytes().buffer.byteLength, 1 << 16, 'filled exactly, not grown');
  exact.write('z');
  assert.ok(exact.bytes().buffer.byteLength >= 2 << 16);
  assert.equal(Buffer.from(exact.bytes()).toString('latin1', (1 << 16) - 1), 'yz');
});
