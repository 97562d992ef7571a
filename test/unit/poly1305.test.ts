// The WebAssembly Poly1305 (one lane and two SIMD lanes) against a plain bigint reference:
// every message length around the block and pairing boundaries, keys with every r bit the clamp
// allows, the reused r limbs, and messages inside and outside the thread's workspace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { poly1305, workspace } from '../../src/repository/poly1305.ts';

/** RFC 8439 §2.5 written out with bigints. */
function reference(message: Uint8Array, r: Uint8Array, s: Uint8Array): string {
  const le = (b: Uint8Array) => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    return v;
  };
  const p = (1n << 130n) - 5n;
  const rc = le(r) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
  let h = 0n;
  for (let o = 0; o < message.length; o += 16) {
    const block = message.subarray(o, Math.min(message.length, o + 16));
    h = ((h + le(block) + (1n << BigInt(8 * block.length))) * rc) % p;
  }
  const tag = (h + le(s)) & ((1n << 128n) - 1n);
  return tag.toString(16).padStart(32, '0').match(/../g)!.reverse().join('');
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('every length up to 40 blocks, outside and inside the workspace', () => {
  const r = randomBytes(16);
  const s = randomBytes(16);
  const space = workspace(40 * 16 + 64);
  for (let n = 0; n <= 40 * 16 + 17; n++) {
    const msg = randomBytes(n);
    const want = reference(msg, r, s);
    assert.equal(hex(poly1305(msg, r, s)), want, `length ${n}`);
    if (n <= 40 * 16 + 32) {
      // At an odd offset too: the two-lane loads are unaligned.
      space.set(msg, 3);
      assert.equal(hex(poly1305(space.subarray(3, 3 + n), r, s)), want, `length ${n} in place`);
    }
  }
});

test('extreme keys and messages: all-ones r and s, all-ones and all-zero data', () => {
  const ones = Buffer.alloc(16, 0xff);
  const zeros = Buffer.alloc(16, 0);
  for (const r of [ones, zeros, randomBytes(16)]) {
    for (const s of [ones, zeros]) {
      for (const fill of [0xff, 0x00]) {
        for (const n of [1, 15, 16, 17, 128, 129, 1000, 65_536 + 15]) {
          const msg = Buffer.alloc(n, fill);
          assert.equal(hex(poly1305(msg, r, s)), reference(msg, r, s), `r ${hex(r).slice(0, 4)} fill ${fill} length ${n}`);
        }
      }
    }
  }
});

test('the kept r limbs follow a change of r; long messages cross the scratch slices', () => {
  const msg = randomBytes(200_001);
  const a = randomBytes(16);
  const b = randomBytes(16);
  const s = randomBytes(16);
  for (const r of [a, a, b, a, b, b]) assert.equal(hex(poly1305(msg, r, s)), reference(msg, r, s));
  // The same r with another s (as every message of one key has).
  assert.equal(hex(poly1305(msg, a, b)), reference(msg, a, b));
});

test('agrees with libsodium (crypto_onetimeauth) on random keys and lengths up to 1 MiB', async () => {
  const { default: sodium } = await import('libsodium-wrappers-sumo');
  await sodium.ready;
  for (let i = 0; i < 200; i++) {
    const n = i < 100 ? i * 7 : Math.floor(Math.random() * (1 << 20));
    const msg = randomBytes(n);
    const key = randomBytes(32);
    const r = key.subarray(0, 16);
    const s = key.subarray(16);
    assert.equal(hex(poly1305(msg, r, s)), hex(sodium.crypto_onetimeauth(msg, key)), `length ${n}`);
  }
});
