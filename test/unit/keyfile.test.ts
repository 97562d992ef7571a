// Key files and the config file: the two things read before anything else on open.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, scryptSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IntegrityError, InvalidInputError, UnsupportedError } from '../../src/errors.ts';
import { initCrypto, open, randomKey, seal, type CryptoKey } from '../../src/repository/crypto.ts';
import { parseGoTime } from '../../src/repository/gotime.ts';
import {
  DEFAULT_SCRYPT, KEY_SALT_SIZE, checkScryptParams, createKeyFile, decodeMasterKey, deriveUserKey,
  encodeMasterKey, openKeyFile, parseKeyFile, type KeyFileJson,
} from '../../src/repository/keyfile.ts';
import { decodeConfig, encodeConfig, newConfig } from '../../src/repository/config.ts';

const FAST = { N: 1024, r: 8, p: 1 };
const NAME = 'aa'.repeat(32);

before(async () => {
  await initCrypto();
});

function sameKey(a: CryptoKey, b: CryptoKey): void {
  assert.deepEqual(Buffer.from(a.encrypt), Buffer.from(b.encrypt));
  assert.deepEqual(Buffer.from(a.macK), Buffer.from(b.macK));
  assert.deepEqual(Buffer.from(a.macR), Buffer.from(b.macR));
}

/** Asserts an error of `cls` whose message names keys/<NAME> (or the given file). */
function names(cls: new (...a: never[]) => Error, file = `keys/${NAME}`, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.ok(e.message.includes(file), e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

function keyJson(fields: Partial<Record<keyof KeyFileJson, unknown>>, base: KeyFileJson): Uint8Array {
  return Buffer.from(JSON.stringify({ ...base, ...fields }));
}

// Made by restic 0.14.0 (`restic init`, password "correct-horse"), with the config it wrote.
const RESTIC_KEY = '{"created":"2026-11-26T07:52:09.770489086Z","username":"root","hostname":"vm","kdf":"scrypt","N":32768,"r":8,"p":3,"salt":"7qWaEM/Ikm++Rli33oOYMqUfBAIbGXTu7slEVR+lC8C8zqOULDvvqEznGBa81CEWYpmI9VVNsepEeWO1ZsbToQ==","data":"6jvIAwGpdIZ5PD4yfSwEtIsYnmTo+LhSh3CENYdUcOkUq9y7Pj1CSbomMknjNFYb0Mov85QxqynVPKHLrlpKVPiow3f56ud+SN/P/zmG/hU/tvwdjQFq6kZlgu3MybJY5khSXU07YQQPZdYFVx/HwJBy4cQ8LQQWh6AWbL7/FevKGPvVWEehiLSbht1EGPf5/O7yYnq9uUBV9QAaU8/qlw=="}';
const RESTIC_KEY_ID = '87b895146d4bd133ce66cf4f6cd9a343abe8a1dda2fff29d2cd20560998dc686';
const RESTIC_CONFIG = Buffer.from(
  '0273c4070956347272452f042d39773328c05ce8b0567ef23f3854ec7cccb56fa0bf6a51528c5086469828e568cf7067d554e9a1a53adc8559f339338626140ec90ae61d89bcdee7e5a232d5889df42b364498bb6c139d1d39c1683c021a3f4bb3a1bfc150c916512f596a6475f9c7fac0ab8733720ad1c598cd18d38372a86973f31aba9a350f43fc4240779c63b69f82a84d8ca9bcf91e8516f9',
  'hex',
);

test('opens a key file written by restic and decrypts its config', async () => {
  const bytes = Buffer.from(RESTIC_KEY);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), RESTIC_KEY_ID);
  const kf = parseKeyFile(bytes, RESTIC_KEY_ID);
  assert.equal(kf.username, 'root');
  assert.equal(kf.p, 3);
  assert.equal(await openKeyFile('correct-horse2', kf, RESTIC_KEY_ID), null);
  const master = await openKeyFile('correct-horse', kf, RESTIC_KEY_ID);
  assert.ok(master);
  const cfg = decodeConfig(open(master, RESTIC_CONFIG, { file: 'config' }));
  assert.deepEqual(cfg, {
    version: 2,
    id: '9b3afd33d1437295d3a1fef5ca32de2da08aeaaf1345aec2aed95b3f39fec8d8',
    chunkerPolynomial: 0x240b1542cda6d7n,
  });
  // Re-encoding gives restic's plaintext byte for byte.
  assert.deepEqual(Buffer.from(encodeConfig(cfg)), Buffer.from(open(master, RESTIC_CONFIG)));
});

test('create + open round trip with the default parameters', async () => {
  const master = randomKey();
  const { bytes, id } = await createKeyFile('pässwörd 🔑', master);
  assert.equal(id, createHash('sha256').update(bytes).digest('hex'));
  const kf = parseKeyFile(bytes, id);
  assert.deepEqual({ N: kf.N, r: kf.r, p: kf.p }, DEFAULT_SCRYPT);
  const opened = await openKeyFile('pässwörd 🔑', kf, id);
  assert.ok(opened);
  sameKey(opened, master);
});

test('a wrong password gives null, not an error', async () => {
  const { bytes, id } = await createKeyFile('right', randomKey(), { params: FAST });
  const kf = parseKeyFile(bytes, id);
  assert.equal(await openKeyFile('wrong', kf, id), null);
  assert.equal(await openKeyFile('', kf, id), null);
  assert.equal(await openKeyFile('right ', kf, id), null);
  assert.ok(await openKeyFile('right', kf, id));
});

test('byte layout: Go field order, compact, no trailing newline', async () => {
  const master = randomKey();
  const created = parseGoTime('2024-01-02T03:04:05.123456789+01:00');
  const { bytes } = await createKeyFile('pw', master, { params: FAST, username: 'alice', hostname: 'box', created });
  const text = Buffer.from(bytes).toString('utf8');
  assert.match(
    text,
    /^\{"created":"2024-01-02T03:04:05\.123456789\+01:00","username":"alice","hostname":"box","kdf":"scrypt","N":1024,"r":8,"p":1,"salt":"[A-Za-z0-9+/]{86}==","data":"[A-Za-z0-9+/]+={0,2}"\}$/,
  );
  assert.ok(!text.endsWith('\n'));
  const kf = JSON.parse(text) as KeyFileJson;
  assert.deepEqual(Object.keys(kf), ['created', 'username', 'hostname', 'kdf', 'N', 'r', 'p', 'salt', 'data']);
  assert.equal(Buffer.from(kf.salt, 'base64').length, KEY_SALT_SIZE);
  // data = IV ‖ sealed master key JSON ‖ MAC
  assert.equal(Buffer.from(kf.data, 'base64').length, encodeMasterKey(master).length + 32);
  // Two keys for the same master key differ (fresh salt and IV).
  const again = await createKeyFile('pw', master, { params: FAST, username: 'alice', hostname: 'box', created });
  assert.notDeepEqual(Buffer.from(again.bytes), Buffer.from(bytes));
});

test('user and host names are written as Go escapes them', async () => {
  const { bytes } = await createKeyFile('pw', randomKey(), { params: FAST, username: 'a<b>&"c"\n', hostname: 'x\u2028y\uD800' });
  const text = Buffer.from(bytes).toString('utf8');
  assert.ok(text.includes('"username":"a\\u003cb\\u003e\\u0026\\"c\\"\\n"'), text);
  assert.ok(text.includes('"hostname":"x\\u2028y\uFFFD"'), text);
  const kf = parseKeyFile(bytes, NAME);
  assert.equal(kf.username, 'a<b>&"c"\n');
});

test('defaults: current user, host name and time', async () => {
  const before = Date.now();
  const { bytes } = await createKeyFile('pw', randomKey(), { params: FAST });
  const kf = parseKeyFile(bytes, NAME);
  assert.equal(typeof kf.username, 'string');
  assert.ok(kf.hostname.length > 0);
  const created = Number(parseGoTime(kf.created).epochNs / 1_000_000n);
  assert.ok(created >= before - 5 && created <= Date.now() + 5);
});

test('deriveUserKey: scrypt(password, salt, 64 bytes) split as encrypt ‖ mac.k ‖ mac.r', async () => {
  const salt = randomBytes(64);
  const k = await deriveUserKey('secret', salt, FAST);
  const dk = scryptSync(Buffer.from('secret'), salt, 64, { N: 1024, r: 8, p: 1 });
  assert.deepEqual(Buffer.from(k.encrypt), dk.subarray(0, 32));
  assert.deepEqual(Buffer.from(k.macK), dk.subarray(32, 48));
  assert.deepEqual(Buffer.from(k.macR), dk.subarray(48, 64));
  await assert.rejects(deriveUserKey('secret', randomBytes(32), FAST), InvalidInputError);
  await assert.rejects(deriveUserKey('secret', salt, { N: 1000, r: 8, p: 1 }), InvalidInputError);
});

test('scrypt parameter check follows simple-scrypt', () => {
  for (const ok of [DEFAULT_SCRYPT, FAST, { N: 2, r: 1, p: 1 }, { N: 16384, r: 8, p: 10 }, { N: 1 << 20, r: 8, p: 1 }]) {
    assert.doesNotThrow(() => checkScryptParams(ok), JSON.stringify(ok));
  }
  for (const bad of [
    { N: 1, r: 8, p: 1 }, { N: 0, r: 8, p: 1 }, { N: 1000, r: 8, p: 1 }, { N: 3, r: 8, p: 1 }, { N: -1024, r: 8, p: 1 },
    { N: 1024, r: 0, p: 1 }, { N: 1024, r: 8, p: 0 }, { N: 1024.5, r: 8, p: 1 }, { N: 1024, r: 8, p: 1.5 },
    { N: 1 << 21, r: 8, p: 1 }, // N > (2^31 − 1) / 128 / r
    { N: 1024, r: 1 << 23, p: 1 }, // r > 2^31 / 256
    { N: 1024, r: 1024, p: 1 << 20 }, // r·p ≥ 2^30
  ]) {
    assert.throws(() => checkScryptParams(bad), (e: unknown) =>
      e instanceof InvalidInputError && e.message.includes(`N=${bad.N}`), JSON.stringify(bad));
  }
});

test('master key JSON: exact form, round trip, and rejection of bad keys', () => {
  const key: CryptoKey = { encrypt: Buffer.alloc(32, 1), macK: Buffer.alloc(16, 2), macR: Buffer.alloc(16, 3) };
  const json = Buffer.from(encodeMasterKey(key)).toString();
  assert.equal(json, `{"mac":{"k":"${Buffer.alloc(16, 2).toString('base64')}","r":"${Buffer.alloc(16, 3).toString('base64')}"},"encrypt":"${Buffer.alloc(32, 1).toString('base64')}"}`);
  sameKey(decodeMasterKey(Buffer.from(json)), key);
  const where = { file: `keys/${NAME}` };
  const b64 = (n: number, v = 5) => Buffer.alloc(n, v).toString('base64');
  for (const bad of [
    'not json',
    '[]',
    '{"encrypt":"' + b64(32) + '"}',
    JSON.stringify({ mac: { k: b64(16), r: b64(16) }, encrypt: b64(31) }),
    JSON.stringify({ mac: { k: b64(15), r: b64(16) }, encrypt: b64(32) }),
    JSON.stringify({ mac: { k: b64(16), r: 'not base64!' }, encrypt: b64(32) }),
    JSON.stringify({ mac: { k: b64(16, 0), r: b64(16) }, encrypt: b64(32) }),
    JSON.stringify({ mac: { k: b64(16), r: b64(16, 0) }, encrypt: b64(32) }),
    JSON.stringify({ mac: { k: b64(16), r: b64(16) }, encrypt: b64(32, 0) }),
  ]) {
    assert.throws(() => decodeMasterKey(Buffer.from(bad), where), names(IntegrityError), bad);
  }
});

test('parseKeyFile rejects broken key files, naming the file', async () => {
  const { bytes } = await createKeyFile('pw', randomKey(), { params: FAST });
  const base = parseKeyFile(bytes, NAME);
  const cases: Array<[Uint8Array, new (...a: never[]) => Error, RegExp]> = [
    [Buffer.from('{"created":'), IntegrityError, /not valid JSON/],
    [Buffer.from('[1,2]'), IntegrityError, /not a JSON object/],
    [keyJson({ kdf: 'argon2' }, base), UnsupportedError, /only supported KDF is scrypt/],
    [keyJson({ kdf: undefined }, base), UnsupportedError, /only supported KDF is scrypt/],
    [keyJson({ salt: randomBytes(32).toString('base64') }, base), IntegrityError, /salt is 32 bytes, expected 64/],
    [keyJson({ salt: randomBytes(65).toString('base64') }, base), IntegrityError, /salt is 65 bytes/],
    [keyJson({ salt: 'not*base64' }, base), IntegrityError, /salt is not valid base64/],
    [keyJson({ salt: null }, base), IntegrityError, /salt is 0 bytes/],
    [keyJson({ N: 1000 }, base), IntegrityError, /invalid scrypt parameters N=1000/],
    [keyJson({ r: 0 }, base), IntegrityError, /invalid scrypt parameters/],
    [keyJson({ p: undefined }, base), IntegrityError, /invalid scrypt parameters/],
    [keyJson({ N: '1024' }, base), IntegrityError, /"N" is not an integer/],
    [keyJson({ N: 1024.5 }, base), IntegrityError, /"N" is not an integer/],
    [keyJson({ username: 7 }, base), IntegrityError, /"username" is not a string/],
    [keyJson({ created: 'yesterday' }, base), IntegrityError, /invalid "created" time/],
    [keyJson({ data: randomBytes(31).toString('base64') }, base), IntegrityError, /data is too short/],
    [keyJson({ data: Buffer.concat([Buffer.alloc(16), randomBytes(40)]).toString('base64') }, base), IntegrityError, /all-zero nonce/],
  ];
  for (const [b, cls, re] of cases) {
    assert.throws(() => parseKeyFile(b, NAME), names(cls, `keys/${NAME}`, re), Buffer.from(b).toString().slice(0, 80));
  }
  // Missing informational fields take Go's zero values.
  const minimal = keyJson({ created: undefined, username: undefined, hostname: undefined }, base);
  const kf = parseKeyFile(minimal, NAME);
  assert.equal(kf.created, '0001-01-01T00:00:00Z');
  assert.equal(kf.username, '');
  assert.equal(kf.hostname, '');
  assert.ok(await openKeyFile('pw', kf, NAME));
});

test('openKeyFile: a key that decrypts to garbage or a zero key is an IntegrityError, not "wrong password"', async () => {
  const salt = randomBytes(64);
  const userKey = await deriveUserKey('pw', salt, FAST);
  const make = (plain: Uint8Array): KeyFileJson => ({
    created: '2024-01-01T00:00:00Z', username: 'u', hostname: 'h', kdf: 'scrypt', ...FAST,
    salt: salt.toString('base64'), data: Buffer.from(seal(userKey, plain)).toString('base64'),
  });
  await assert.rejects(openKeyFile('pw', make(Buffer.from('garbage')), NAME), names(IntegrityError, `keys/${NAME}`, /master key/));
  const zero: CryptoKey = { encrypt: new Uint8Array(32), macK: new Uint8Array(16), macR: new Uint8Array(16) };
  await assert.rejects(openKeyFile('pw', make(encodeMasterKey(zero)), NAME), names(IntegrityError, `keys/${NAME}`, /all zero/));
  // The same files with another password are simply not ours.
  assert.equal(await openKeyFile('other', make(Buffer.from('garbage')), NAME), null);
  // A hand-built object is checked like a parsed one.
  await assert.rejects(openKeyFile('pw', { ...make(Buffer.from('x')), kdf: 'pbkdf2' }, NAME), UnsupportedError);
});

test('createKeyFile refuses an invalid master key', async () => {
  await assert.rejects(
    createKeyFile('pw', { encrypt: new Uint8Array(32), macK: randomBytes(16), macR: randomBytes(16) }, { params: FAST }),
    InvalidInputError,
  );
  await assert.rejects(createKeyFile('pw', randomKey(), { params: { N: 100, r: 8, p: 1 } }), InvalidInputError);
});

// ---- config ----

test('config: encodes exactly as restic writes it and round-trips', () => {
  const cfg = { version: 2 as const, id: 'df18fc0d04f3fb3b6e2ccb6e3bc4e55f2111c1ff71de3d1aea5a02438acbb83f', chunkerPolynomial: 0x25db4707e03b51n };
  const text = '{"version":2,"id":"df18fc0d04f3fb3b6e2ccb6e3bc4e55f2111c1ff71de3d1aea5a02438acbb83f","chunker_polynomial":"25db4707e03b51"}';
  assert.equal(Buffer.from(encodeConfig(cfg)).toString(), text);
  assert.deepEqual(decodeConfig(Buffer.from(text)), cfg);
  const v1 = { ...cfg, version: 1 as const };
  assert.deepEqual(decodeConfig(encodeConfig(v1)), v1);
  // Go's ParseUint accepts upper case and leading zeros; unknown fields are ignored.
  const loose = decodeConfig(Buffer.from('{"version":1,"id":"' + cfg.id + '","chunker_polynomial":"0025DB4707E03B51","extra":true}'));
  assert.equal(loose.chunkerPolynomial, cfg.chunkerPolynomial);
});

test('config: newConfig makes a valid config with a random ID and an irreducible polynomial', () => {
  const a = newConfig(2);
  const b = newConfig(1);
  assert.equal(a.version, 2);
  assert.equal(b.version, 1);
  assert.match(a.id, /^[0-9a-f]{64}$/);
  assert.notEqual(a.id, b.id);
  assert.equal(a.chunkerPolynomial.toString(2).length - 1, 53);
  assert.deepEqual(decodeConfig(encodeConfig(a)), a);
  assert.equal(newConfig().version, 2);
  assert.throws(() => newConfig(3 as 2), InvalidInputError);
});

test('config: rejects what restic rejects, naming the file', () => {
  const id = 'ab'.repeat(32);
  const cfg = (o: object) => Buffer.from(JSON.stringify({ version: 2, id, chunker_polynomial: '25db4707e03b51', ...o }));
  const cases: Array<[Uint8Array, new (...a: never[]) => Error, RegExp]> = [
    [Buffer.from('{"version":'), IntegrityError, /not valid JSON/],
    [Buffer.from('null'), IntegrityError, /not a JSON object/],
    [cfg({ version: 3 }), UnsupportedError, /unsupported repository version 3/],
    [cfg({ version: 0 }), UnsupportedError, /unsupported repository version 0/],
    [cfg({ version: undefined }), UnsupportedError, /unsupported repository version 0/],
    [cfg({ version: -1 }), IntegrityError, /not an unsigned integer/],
    [cfg({ version: 1.5 }), IntegrityError, /not an unsigned integer/],
    [cfg({ version: '2' }), IntegrityError, /not an unsigned integer/],
    [cfg({ id: 'abc' }), IntegrityError, /config id "abc"/],
    [cfg({ id: 'AB'.repeat(32) }), IntegrityError, /config id/],
    [cfg({ id: undefined }), IntegrityError, /config id/],
    [cfg({ chunker_polynomial: undefined }), IntegrityError, /chunker_polynomial is missing/],
    [cfg({ chunker_polynomial: 0x25db4707e03b51 }), IntegrityError, /chunker_polynomial is missing or not a string/],
    [cfg({ chunker_polynomial: '0x25db4707e03b51' }), IntegrityError, /chunker_polynomial/],
    [cfg({ chunker_polynomial: '' }), IntegrityError, /chunker_polynomial/],
    [cfg({ chunker_polynomial: '1ffffffffffffffff' }), IntegrityError, /chunker_polynomial/],
    [cfg({ chunker_polynomial: '20000000000001' }), IntegrityError, /not irreducible/],
    [cfg({ chunker_polynomial: '1' }), IntegrityError, /not irreducible/],
    [cfg({ chunker_polynomial: '0' }), IntegrityError, /not irreducible/],
  ];
  for (const [b, cls, re] of cases) {
    assert.throws(() => decodeConfig(b, 'config'), names(cls, 'config', re), Buffer.from(b).toString());
  }
  assert.throws(() => encodeConfig({ version: 2, id: 'xyz', chunkerPolynomial: 0x25db4707e03b51n }), InvalidInputError);
});

// ---- interoperability with the real restic, when it is installed ----

const resticBin = (() => {
  try {
    execFileSync('restic', ['version'], { stdio: 'ignore' });
    return 'restic';
  } catch {
    return undefined;
  }
})();

test('restic opens a repository whose key file and config were made here', { skip: !resticBin && 'restic not installed' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-keyfile-'));
  try {
    const master = randomKey();
    const cfg = newConfig(2);
    const { bytes, id } = await createKeyFile('from stowage', master, { params: FAST });
    for (const d of ['keys', 'data', 'index', 'snapshots', 'locks']) mkdirSync(join(dir, d));
    writeFileSync(join(dir, 'keys', id), bytes);
    writeFileSync(join(dir, 'config'), seal(master, encodeConfig(cfg)));
    const out = execFileSync(resticBin!, ['--repo', dir, '--no-cache', 'cat', 'config'], {
      env: { ...process.env, RESTIC_PASSWORD: 'from stowage' },
      encoding: 'utf8',
    });
    const shown = JSON.parse(out) as { version: number; id: string; chunker_polynomial: string };
    assert.deepEqual(shown, { version: 2, id: cfg.id, chunker_polynomial: cfg.chunkerPolynomial.toString(16) });
    // A wrong password is refused by restic too.
    assert.throws(() => execFileSync(resticBin!, ['--repo', dir, '--no-cache', 'cat', 'config'], {
      env: { ...process.env, RESTIC_PASSWORD: 'nope' }, stdio: 'pipe',
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
