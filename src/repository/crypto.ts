// restic's authenticated encryption: AES-256-CTR, then Poly1305-AES over the ciphertext.
// Stored form: IV(16) ‖ ciphertext ‖ MAC(16). The IV doubles as the Poly1305-AES nonce.
import { createCipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import sodium from 'libsodium-wrappers-sumo';
import { IntegrityError } from '../errors.ts';

export const IV_SIZE = 16;
export const MAC_SIZE = 16;
export const CRYPTO_OVERHEAD = IV_SIZE + MAC_SIZE;

/** A key set: AES-256 key plus the Poly1305-AES key (k for the nonce, r for the polynomial). */
export interface CryptoKey {
  readonly encrypt: Uint8Array; // 32 bytes
  readonly macK: Uint8Array; // 16 bytes
  readonly macR: Uint8Array; // 16 bytes (clamped by Poly1305 itself)
}

let sodiumReady = false;
/** Loads the WASM Poly1305. Called by Repository.open/init; cheap after the first time. */
export async function initCrypto(): Promise<void> {
  if (sodiumReady) return;
  await sodium.ready;
  sodiumReady = true;
}

function ensureReady(): void {
  if (!sodiumReady) throw new Error('initCrypto() must be awaited before using crypto');
}

export function randomKey(): CryptoKey {
  const b = randomBytes(64);
  return { encrypt: b.subarray(0, 32), macK: b.subarray(32, 48), macR: clampR(b.subarray(48, 64)) };
}

/** Returns r with Poly1305's clamp applied (restic ≤ 0.14 stored it clamped; both forms are valid). */
export function clampR(r: Uint8Array): Uint8Array {
  const c = Buffer.from(r);
  c[3]! &= 15; c[7]! &= 15; c[11]! &= 15; c[15]! &= 15;
  c[4]! &= 252; c[8]! &= 252; c[12]! &= 252;
  return c;
}

export function isValidKey(k: CryptoKey): boolean {
  const nonZero = (b: Uint8Array) => b.some((x) => x !== 0);
  return k.encrypt.length === 32 && k.macK.length === 16 && k.macR.length === 16 &&
    nonZero(k.encrypt) && nonZero(k.macK) && nonZero(k.macR);
}

/** Poly1305-AES: r ‖ AES-128_k(nonce) is the one-time key. */
export function poly1305Aes(key: CryptoKey, nonce: Uint8Array, message: Uint8Array): Uint8Array {
  ensureReady();
  const ecb = createCipheriv('aes-128-ecb', key.macK, null);
  ecb.setAutoPadding(false);
  const s = ecb.update(nonce);
  const oneTime = new Uint8Array(32);
  oneTime.set(key.macR, 0);
  oneTime.set(s, 16);
  return sodium.crypto_onetimeauth(message, oneTime);
}

function ctr(key: CryptoKey, iv: Uint8Array, input: Uint8Array, out: Uint8Array, outOffset: number): void {
  const c = createCipheriv('aes-256-ctr', key.encrypt, iv);
  // Feed in slices: one huge update() allocates a huge temporary; 64 KiB slices stay in cache.
  const SLICE = 1 << 16;
  let o = outOffset;
  for (let i = 0; i < input.length; i += SLICE) {
    const part = c.update(input.subarray(i, Math.min(input.length, i + SLICE)));
    out.set(part, o);
    o += part.length;
  }
  const fin = c.final();
  if (fin.length) out.set(fin, o);
}

/** Encrypts and authenticates: returns IV ‖ ciphertext ‖ MAC. */
export function seal(key: CryptoKey, plaintext: Uint8Array, iv: Uint8Array = randomBytes(IV_SIZE)): Uint8Array {
  const out = Buffer.allocUnsafe(plaintext.length + CRYPTO_OVERHEAD);
  out.set(iv, 0);
  ctr(key, iv, plaintext, out, IV_SIZE);
  const ct = out.subarray(IV_SIZE, IV_SIZE + plaintext.length);
  out.set(poly1305Aes(key, iv, ct), IV_SIZE + plaintext.length);
  return out;
}

/**
 * Verifies and decrypts IV ‖ ciphertext ‖ MAC. A MAC mismatch or a short input throws
 * IntegrityError naming `where`; no unverified byte is ever returned.
 */
export function open(key: CryptoKey, sealed: Uint8Array, where: { file?: string; blob?: string } = {}): Uint8Array {
  if (sealed.length < CRYPTO_OVERHEAD) {
    throw new IntegrityError(`ciphertext too short (${sealed.length} bytes)`, where);
  }
  const iv = sealed.subarray(0, IV_SIZE);
  const ct = sealed.subarray(IV_SIZE, sealed.length - MAC_SIZE);
  const mac = sealed.subarray(sealed.length - MAC_SIZE);
  if (iv.every((b) => b === 0)) throw new IntegrityError('all-zero nonce', where);
  if (!macEquals(poly1305Aes(key, iv, ct), mac)) {
    throw new IntegrityError('ciphertext verification failed (MAC mismatch)', where);
  }
  const out = Buffer.allocUnsafe(ct.length);
  ctr(key, iv, ct, out, 0);
  return out;
}

/** True when the MAC verifies; used by key search, where a mismatch means "wrong password". */
export function verifies(key: CryptoKey, sealed: Uint8Array): boolean {
  if (sealed.length < CRYPTO_OVERHEAD) return false;
  const iv = sealed.subarray(0, IV_SIZE);
  const ct = sealed.subarray(IV_SIZE, sealed.length - MAC_SIZE);
  return macEquals(poly1305Aes(key, iv, ct), sealed.subarray(sealed.length - MAC_SIZE));
}

function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
