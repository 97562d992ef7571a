import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { IntegrityError } from '../../src/errors.ts';
import {
  CRYPTO_OVERHEAD, clampR, initCrypto, isValidKey, open, poly1305Aes, randomKey, seal, verifies,
  type CryptoKey,
} from '../../src/repository/crypto.ts';

const hex = (s: string) => Buffer.from(s, 'hex');

before(async () => {
  await initCrypto();
});

// restic internal/repository/crypto/crypto_int_test.go (format spec §2.4).
const POLY1305_AES_VECTORS = [
  {
    msg: 'f3f6', r: '851fc40c3467ac0be05cc20404f3f700', k: 'ec074c835580741701425b623235add6',
    nonce: 'fb447350c4e868c52ac3275cf9d4327e', mac: 'f4c633c3044fc145f84f335cb81953de',
  },
  {
    msg: '', r: 'a0f3080000f46400d0c7e9076c834403', k: '75deaa25c09f208e1dc4ce6b5cad3fbf',
    nonce: '61ee09218d29b0aaed7e154a2c5509cc', mac: 'dd3fab2251f11ac759f0887129cc2ee7',
  },
  {
    msg: '663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136',
    r: '48443d0bb0d21109c89a100b5ce2c208', k: '6acb5f61a7176dd320c5c1eb2edcdc74',
    nonce: 'ae212a55399729595dea458bc621ff0e', mac: '0ee1c16bb73f0f4fd19881753c01cdbe',
  },
  {
    msg: 'ab0812724a7f1e342742cbed374d94d136c6b8795d45b3819830f2c04491faf0990c62e48b8018b2c3e4a0fa3134cb67fa83e158c994d961c4cb21095c1bf9',
    r: '12976a08c4426d0ce8a82407c4f48207', k: 'e1a5668a4d5b66a5f68cc5424ed5982d',
    nonce: '9ae831e743978d3a23527c7128149e3a', mac: '5154ad0d2cb26e01274fc51148491f1b',
  },
];

const VECTOR_KEY: CryptoKey = {
  encrypt: hex('303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef'),
  macK: hex('ef4d8824cb80b2bcc5fbff8a9b12a42c'),
  macR: hex('cc8d4b948ee0ebfe1d415de921d10353'), // stored unclamped
};
const VECTOR_SEALED = hex('69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf3f75d8c3cc75dddf8750');
const VECTOR_PLAIN = Buffer.from('Dies ist ein Test!');

test('Poly1305-AES vectors', () => {
  for (const v of POLY1305_AES_VECTORS) {
    const key: CryptoKey = { encrypt: new Uint8Array(32), macK: hex(v.k), macR: hex(v.r) };
    assert.equal(Buffer.from(poly1305Aes(key, hex(v.nonce), hex(v.msg))).toString('hex'), v.mac, `msg ${v.msg.slice(0, 16)}`);
  }
});

test('Poly1305-AES: a changed message, nonce or key changes the tag', () => {
  const v = POLY1305_AES_VECTORS[2]!;
  const key: CryptoKey = { encrypt: new Uint8Array(32), macK: hex(v.k), macR: hex(v.r) };
  const msg = hex(v.msg);
  msg[0]! ^= 1;
  assert.notEqual(Buffer.from(poly1305Aes(key, hex(v.nonce), msg)).toString('hex'), v.mac);
  const nonce = hex(v.nonce);
  nonce[15]! ^= 0x80;
  assert.notEqual(Buffer.from(poly1305Aes(key, nonce, hex(v.msg))).toString('hex'), v.mac);
  const k2: CryptoKey = { ...key, macK: Buffer.from(key.macK).fill(7, 0, 1) };
  assert.notEqual(Buffer.from(poly1305Aes(k2, hex(v.nonce), hex(v.msg))).toString('hex'), v.mac);
});

test('restic decryption vector (unclamped r) opens to the known plaintext', () => {
  assert.deepEqual(Buffer.from(open(VECTOR_KEY, VECTOR_SEALED, { file: 'vector' })), VECTOR_PLAIN);
  assert.ok(verifies(VECTOR_KEY, VECTOR_SEALED));
  // Clamping r first gives the same MAC: Poly1305 clamps internally.
  const clamped: CryptoKey = { ...VECTOR_KEY, macR: clampR(VECTOR_KEY.macR) };
  assert.deepEqual(Buffer.from(open(clamped, VECTOR_SEALED)), VECTOR_PLAIN);
});

test('seal with the vector IV reproduces restic\'s bytes exactly', () => {
  const iv = VECTOR_SEALED.subarray(0, 16);
  assert.deepEqual(Buffer.from(seal(VECTOR_KEY, VECTOR_PLAIN, iv)), VECTOR_SEALED);
});

test('seal/open round trip for several sizes, random IVs', () => {
  const key = randomKey();
  assert.ok(isValidKey(key));
  for (const n of [0, 1, 15, 16, 17, 1000, 65_535, 65_536, 65_537, 300_001]) {
    const plain = randomBytes(n);
    const sealed = seal(key, plain);
    assert.equal(sealed.length, n + CRYPTO_OVERHEAD);
    assert.deepEqual(Buffer.from(open(key, sealed)), plain);
    if (n > 0) assert.notDeepEqual(Buffer.from(sealed.subarray(16, 16 + n)), plain, 'ciphertext differs from plaintext');
  }
  const a = seal(key, Buffer.from('same'));
  const b = seal(key, Buffer.from('same'));
  assert.notDeepEqual(Buffer.from(a.subarray(0, 16)), Buffer.from(b.subarray(0, 16)), 'fresh IV each time');
});

test('CTR matches one-shot AES-256-CTR across slice boundaries and counter wrap-around', () => {
  const key = randomKey();
  const plain = randomBytes(200_000);
  for (const iv of [randomBytes(16), Buffer.alloc(16, 0xff), Buffer.concat([randomBytes(8), Buffer.alloc(8, 0xff)])]) {
    const sealed = seal(key, plain, iv);
    const c = createCipheriv('aes-256-ctr', key.encrypt, iv);
    const expected = Buffer.concat([c.update(plain), c.final()]);
    assert.deepEqual(Buffer.from(sealed.subarray(16, 16 + plain.length)), expected);
  }
  // Wrap-around: the block after ff…ff uses counter 00…00, a 128-bit big-endian increment (as Go's CTR).
  const ivMax = Buffer.alloc(16, 0xff);
  const sealed = seal(key, Buffer.alloc(32), ivMax);
  const ecb = createCipheriv('aes-256-ecb', key.encrypt, null);
  ecb.setAutoPadding(false);
  const stream = ecb.update(Buffer.concat([ivMax, Buffer.alloc(16)]));
  assert.deepEqual(Buffer.from(sealed.subarray(16, 48)), stream);
});

test('a flipped bit anywhere is an IntegrityError naming the file', () => {
  const key = randomKey();
  const sealed = seal(key, Buffer.from('some plaintext that matters'));
  for (const pos of [0, 15, 16, 20, sealed.length - 17, sealed.length - 16, sealed.length - 1]) {
    const bad = Buffer.from(sealed);
    bad[pos]! ^= 0x01;
    assert.throws(() => open(key, bad, { file: 'snapshots/abcd' }), (e: unknown) => {
      assert.ok(e instanceof IntegrityError);
      assert.equal(e.code, 'INTEGRITY');
      assert.equal(e.file, 'snapshots/abcd');
      assert.match(e.message, /snapshots\/abcd/);
      assert.match(e.message, /MAC/);
      return true;
    });
    assert.equal(verifies(key, bad), false);
  }
  // A different key fails the same way, and names the blob too.
  assert.throws(() => open(randomKey(), sealed, { file: 'data/aa/aa11', blob: 'bb22' }), (e: unknown) =>
    e instanceof IntegrityError && e.blob === 'bb22' && /data\/aa\/aa11/.test(e.message) && /bb22/.test(e.message));
});

test('input shorter than IV + MAC is an IntegrityError', () => {
  const key = randomKey();
  for (const n of [0, 1, 16, 31]) {
    assert.throws(() => open(key, randomBytes(n), { file: 'index/ee' }), (e: unknown) =>
      e instanceof IntegrityError && /too short/.test(e.message) && /index\/ee/.test(e.message));
    assert.equal(verifies(key, randomBytes(n)), false);
  }
  // Exactly 32 bytes is a valid empty plaintext.
  assert.equal(open(key, seal(key, new Uint8Array(0))).length, 0);
});

test('an all-zero IV is rejected on open, even with a correct MAC', () => {
  const key = randomKey();
  const sealed = seal(key, Buffer.from('zero nonce'), new Uint8Array(16));
  assert.ok(verifies(key, sealed), 'the MAC itself is valid');
  assert.throws(() => open(key, sealed, { file: 'locks/ff' }), (e: unknown) =>
    e instanceof IntegrityError && /nonce/.test(e.message) && /locks\/ff/.test(e.message));
});

test('key helpers: clampR, isValidKey, randomKey', () => {
  const r = clampR(Buffer.alloc(16, 0xff));
  assert.equal(Buffer.from(r).toString('hex'), 'ffffff0ffcffff0ffcffff0ffcffff0f');
  const k = randomKey();
  assert.equal(k.encrypt.length, 32);
  assert.equal(k.macK.length, 16);
  assert.deepEqual(Buffer.from(clampR(k.macR)), Buffer.from(k.macR), 'random keys store a clamped r');
  assert.equal(isValidKey({ ...k, encrypt: new Uint8Array(32) }), false);
  assert.equal(isValidKey({ ...k, macK: new Uint8Array(16) }), false);
  assert.equal(isValidKey({ ...k, macR: new Uint8Array(16) }), false);
  assert.equal(isValidKey({ ...k, encrypt: new Uint8Array(16).fill(1) }), false);
});
