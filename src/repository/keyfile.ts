// restic key files (keys/<id>): plaintext JSON holding scrypt parameters, a salt and the master
// key sealed with the key derived from the password. The file name is the SHA-256 of its bytes,
// so the bytes are assembled by hand in Go's field order and compact form.
import { scrypt as scryptCallback, randomBytes } from 'node:crypto';
import { hostname as osHostname, userInfo } from 'node:os';
import { IntegrityError, InvalidInputError, UnsupportedError } from '../errors.ts';
import { CRYPTO_OVERHEAD, IV_SIZE, initCrypto, isValidKey, open, seal, verifies, type CryptoKey } from './crypto.ts';
import { formatGoTime, goTimeNow, parseGoTime, type GoTime } from './gotime.ts';
import { sha256Hex, type KeyId } from './id.ts';

/** A key file as stored, field for field (Go struct order). `salt` and `data` are base64. */
export interface KeyFileJson {
  created: string;
  username: string;
  hostname: string;
  kdf: string;
  N: number;
  r: number;
  p: number;
  salt: string;
  data: string;
}

/** scrypt's cost parameters for a key file, as restic stores them (`N`, `r`, `p`). */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** What restic's calibration settles on for a 60 MiB / 500 ms budget on most machines. */
export const DEFAULT_SCRYPT: Readonly<ScryptParams> = Object.freeze({ N: 32768, r: 8, p: 1 });

/** restic refuses any other salt length. */
export const KEY_SALT_SIZE = 64;

const MAX_INT32 = 2 ** 31 - 1;

/**
 * The parameter check restic applies (simple-scrypt's Check), plus the power-of-two N that the
 * scrypt implementation itself requires. Throws InvalidInputError naming the values.
 */
export function checkScryptParams(params: ScryptParams): void {
  const { N, r, p } = params;
  const ok =
    [N, r, p].every((v) => Number.isSafeInteger(v)) &&
    N > 1 && N <= MAX_INT32 && (N & (N - 1)) === 0 &&
    r >= 1 && r <= MAX_INT32 &&
    p >= 1 && p <= MAX_INT32 &&
    r * p < 2 ** 30 &&
    r <= Math.floor(Math.floor(MAX_INT32 / 128) / p) &&
    r <= Math.floor(MAX_INT32 / 256) &&
    N <= Math.floor(Math.floor(MAX_INT32 / 128) / r);
  if (!ok) throw new InvalidInputError(`invalid scrypt parameters N=${N}, r=${r}, p=${p}`);
}

function scryptAsync(password: Uint8Array, salt: Uint8Array, params: ScryptParams): Promise<Buffer> {
  const { N, r, p } = params;
  // OpenSSL needs room for the N-block table plus the p blocks being mixed.
  const maxmem = 128 * r * (N + 2) + 128 * r * p + (1 << 20);
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, 64, { N, r, p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * The user key: scrypt(password, salt) → 64 bytes, split into the AES key (32), the MAC's k (16)
 * and r (16).
 */
export async function deriveUserKey(password: string, salt: Uint8Array, params: ScryptParams): Promise<CryptoKey> {
  if (salt.length !== KEY_SALT_SIZE) {
    throw new InvalidInputError(`scrypt salt must be ${KEY_SALT_SIZE} bytes, got ${salt.length}`);
  }
  checkScryptParams(params);
  let dk: Buffer;
  try {
    dk = await scryptAsync(Buffer.from(password, 'utf8'), salt, params);
  } catch (e) {
    // Node refuses a few parameter sets Go accepts (for r = 1 it needs N < 2^16).
    throw new UnsupportedError(`scrypt with N=${params.N}, r=${params.r}, p=${params.p} failed: ${(e as Error).message}`);
  }
  return { encrypt: dk.subarray(0, 32), macK: dk.subarray(32, 48), macR: dk.subarray(48, 64) };
}

/** The master key's JSON as restic writes it: {"mac":{"k":…,"r":…},"encrypt":…}. */
export function encodeMasterKey(key: CryptoKey): Uint8Array {
  const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64');
  return Buffer.from(`{"mac":{"k":"${b64(key.macK)}","r":"${b64(key.macR)}"},"encrypt":"${b64(key.encrypt)}"}`);
}

/** Parses the master key JSON; anything malformed or all-zero is an IntegrityError. */
export function decodeMasterKey(json: Uint8Array, where: { file?: string } = {}): CryptoKey {
  const bad = (why: string) => new IntegrityError(`invalid master key: ${why}`, where);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.length).toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  const mac = isObject(v) ? v.mac : undefined;
  if (!isObject(v) || !isObject(mac)) throw bad('expected {"mac":{"k","r"},"encrypt"}');
  const field = (x: unknown, name: string, size: number) => {
    const b = typeof x === 'string' ? decodeBase64(x) : undefined;
    if (!b || b.length !== size) throw bad(`${name} must be ${size} bytes of base64`);
    return b;
  };
  const key: CryptoKey = {
    encrypt: field(v.encrypt, 'encrypt', 32),
    macK: field(mac.k, 'mac.k', 16),
    macR: field(mac.r, 'mac.r', 16),
  };
  if (!isValidKey(key)) throw bad('a key part is all zero');
  return key;
}

export interface CreateKeyFileOptions {
  params?: ScryptParams;
  /** Defaults to the current OS user, as restic does. */
  username?: string;
  /** Defaults to the machine's host name. */
  hostname?: string;
  /** Defaults to now, in the local zone. */
  created?: GoTime;
}

/** A new key file for `masterKey`, openable with `password`. The ID is the SHA-256 of the bytes. */
export async function createKeyFile(
  password: string,
  masterKey: CryptoKey,
  opts: CreateKeyFileOptions = {},
): Promise<{ bytes: Uint8Array; id: KeyId }> {
  if (!isValidKey(masterKey)) throw new InvalidInputError('master key is invalid (wrong sizes or an all-zero part)');
  const params = opts.params ?? DEFAULT_SCRYPT;
  await initCrypto();
  const salt = randomBytes(KEY_SALT_SIZE);
  const userKey = await deriveUserKey(password, salt, params);
  const data = seal(userKey, encodeMasterKey(masterKey));
  const text =
    `{"created":"${formatGoTime(opts.created ?? goTimeNow())}"` +
    `,"username":${goJsonString(opts.username ?? currentUsername())}` +
    `,"hostname":${goJsonString(opts.hostname ?? osHostname())}` +
    `,"kdf":"scrypt","N":${params.N},"r":${params.r},"p":${params.p}` +
    `,"salt":"${salt.toString('base64')}","data":"${Buffer.from(data).toString('base64')}"}`;
  const bytes = Buffer.from(text, 'utf8');
  return { bytes, id: sha256Hex<KeyId>(bytes) };
}

/**
 * Parses and checks a key file the way restic does before trying a password: valid JSON,
 * kdf "scrypt", a 64-byte salt, valid scrypt parameters, a parseable time and sealed data of
 * plausible length. Failures name keys/<name>.
 */
export function parseKeyFile(bytes: Uint8Array, name: string): KeyFileJson {
  const file = `keys/${name}`;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'));
  } catch (e) {
    throw new IntegrityError(`key file is not valid JSON: ${(e as Error).message}`, { file });
  }
  if (!isObject(v)) throw new IntegrityError('key file is not a JSON object', { file });
  // Missing fields take Go's zero values, as restic's decoder gives them.
  const str = (k: string, zero: string): string => {
    const x = v[k];
    if (x === undefined || x === null) return zero;
    if (typeof x !== 'string') throw new IntegrityError(`key file field "${k}" is not a string`, { file });
    return x;
  };
  const int = (k: string): number => {
    const x = v[k];
    if (x === undefined || x === null) return 0;
    if (typeof x !== 'number' || !Number.isSafeInteger(x)) {
      throw new IntegrityError(`key file field "${k}" is not an integer`, { file });
    }
    return x;
  };
  const keyFile: KeyFileJson = {
    created: str('created', '0001-01-01T00:00:00Z'),
    username: str('username', ''),
    hostname: str('hostname', ''),
    kdf: str('kdf', ''),
    N: int('N'),
    r: int('r'),
    p: int('p'),
    salt: str('salt', ''),
    data: str('data', ''),
  };
  validateKeyFile(keyFile, name);
  return keyFile;
}

/**
 * Tries `password` on one key file. Returns the master key, or null when the MAC does not verify
 * (the password is not the one for this key). Anything else wrong with the key is an error, which
 * stops a key search as it does in restic.
 */
export async function openKeyFile(password: string, keyFile: KeyFileJson, name: string): Promise<CryptoKey | null> {
  const file = `keys/${name}`;
  const { salt, data } = validateKeyFile(keyFile, name);
  await initCrypto();
  const userKey = await deriveUserKey(password, salt, { N: keyFile.N, r: keyFile.r, p: keyFile.p });
  if (!verifies(userKey, data)) return null;
  const masterJson = open(userKey, data, { file });
  return decodeMasterKey(masterJson, { file });
}

/** Checks a key file's fields; returns the decoded salt and sealed data. */
function validateKeyFile(k: KeyFileJson, name: string): { salt: Uint8Array; data: Uint8Array } {
  const file = `keys/${name}`;
  try {
    parseGoTime(k.created);
  } catch {
    throw new IntegrityError(`key file has an invalid "created" time ${JSON.stringify(k.created)?.slice(0, 60)}`, { file });
  }
  if (k.kdf !== 'scrypt') {
    throw new UnsupportedError(`key file ${file} uses KDF ${JSON.stringify(k.kdf)}; the only supported KDF is scrypt`);
  }
  const salt = typeof k.salt === 'string' ? decodeBase64(k.salt) : undefined;
  if (!salt) throw new IntegrityError('key file salt is not valid base64', { file });
  if (salt.length !== KEY_SALT_SIZE) {
    throw new IntegrityError(`key file salt is ${salt.length} bytes, expected ${KEY_SALT_SIZE}`, { file });
  }
  try {
    checkScryptParams({ N: k.N, r: k.r, p: k.p });
  } catch (e) {
    throw new IntegrityError(`key file has ${(e as Error).message}`, { file });
  }
  const data = typeof k.data === 'string' ? decodeBase64(k.data) : undefined;
  if (!data) throw new IntegrityError('key file data is not valid base64', { file });
  if (data.length < CRYPTO_OVERHEAD) {
    throw new IntegrityError(`key file data is too short (${data.length} bytes)`, { file });
  }
  if (data.subarray(0, IV_SIZE).every((b) => b === 0)) {
    throw new IntegrityError('key file data has an all-zero nonce', { file });
  }
  return { salt, data };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard padded base64 as Go's encoding/json reads []byte; undefined if malformed. */
function decodeBase64(s: string): Uint8Array | undefined {
  return BASE64.test(s) ? Buffer.from(s, 'base64') : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function currentUsername(): string {
  try {
    return userInfo().username;
  } catch {
    return ''; // no passwd entry (containers): restic leaves it empty too
  }
}

/**
 * A JSON string as Go's encoding/json writes it: HTML-sensitive characters and the JS line
 * separators escaped, unpaired surrogates (impossible in Go strings) replaced with U+FFFD.
 */
function goJsonString(s: string): string {
  const wellFormed = s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  return JSON.stringify(wellFormed).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
