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
});
