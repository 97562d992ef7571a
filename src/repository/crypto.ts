// restic's authenticated encryption: AES-256-CTR, then Poly1305-AES over the ciphertext.
// Stored form: IV(16) ‖ ciphertext ‖ MAC(16). The IV doubles as the Poly1305-AES nonce.
// AES runs in Node's OpenSSL (AES-NI); Poly1305 in a small WebAssembly module (poly1305.ts)
// that authenticates bytes in its own memory without copying them.
import { createCipheriv, createSecretKey, randomBytes, randomFillSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { IntegrityError } from '../errors.ts';
import { poly1305 } from './poly1305.ts';

export const IV_SIZE = 16;
export const MAC_SIZE = 16;
export const CRYPTO_OVERHEAD = IV_SIZE + MAC_SIZE;

/** A key set: AES-256 key plus the Poly1305-AES key (k for the nonce, r for the polynomial). */
export interface CryptoKey {
  readonly encrypt: Uint8Array; // 32 bytes
  readonly macK: Uint8Array; // 16 bytes
  readonly macR: Uint8Array; // 16 bytes (clamped by Poly1305 itself)
}

/**
 * Kept for callers that prepared the former WASM library; Poly1305 now needs no preparation.
 * Compiles the module once so that the first seal does not pay for it.
 */
export async function initCrypto(): Promise<void> {
  poly1305(new Uint8Array(0), new Uint8Array(16), new Uint8Array(16));
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

// Importing raw key bytes costs ~10 µs per cipher; a KeyObject made once per key costs nothing.
const keyObjects = new WeakMap<Uint8Array, KeyObject>();
function keyObject(bytes: Uint8Array): KeyObject {
  let k = keyObjects.get(bytes);
  if (!k) {
    k = createSecretKey(bytes);
    keyObjects.set(bytes, k);
  }
  return k;
}

/** Poly1305-AES: r ‖ AES-128_k(nonce) is the one-time key. */
export function poly1305Aes(key: CryptoKey, nonce: Uint8Array, message: Uint8Array): Uint8Array {
  const ecb = createCipheriv('aes-128-ecb', keyObject(key.macK), null);
  ecb.setAutoPadding(false);
  const s = ecb.update(nonce);
  return poly1305(message, key.macR, s);
}

/** AES-CTR slices: big enough to amortise the call, small enough to stay in cache. */
const CTR_SLICE = 256 * 1024;

function ctr(key: CryptoKey, iv: Uint8Array, input: Uint8Array, out: Uint8Array, outOffset: number): void {
  const c = createCipheriv('aes-256-ctr', keyObject(key.encrypt), iv);
  let o = outOffset;
  for (let i = 0; i < input.length; i += CTR_SLICE) {
    const part = c.update(input.subarray(i, Math.min(input.length, i + CTR_SLICE)));
    out.set(part, o);
    o += part.length;
    discard(part);
  }
  const fin = c.final();
  if (fin.length) out.set(fin, o);
}

/**
 * Whether a backend's answer can be given away. Backends return fresh buffers; a Node Buffer is
 * left alone all the same, since Buffer's slice() makes views and a store that keeps Buffers
 * (the in-memory backend does) could hand out one of its own.
 */
export function ownedBytes(b: Uint8Array): boolean {
  return !Buffer.isBuffer(b) && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer;
}

/**
 * Frees a buffer's memory now instead of at the next garbage collection. The caller must be its
 * only user. Only a buffer that spans its whole ArrayBuffer is freed (never a slice of Node's
 * shared pool). Without this, every thread that encrypts keeps tens of megabytes of dead
 * buffers around: V8 collects external memory only once 64 MiB of it has piled up.
 */
export function discard(b: Uint8Array): void {
  const ab = b.buffer as ArrayBufferLike & { transfer?: (length: number) => ArrayBuffer; detached?: boolean };
  if (b.byteOffset === 0 && ab.byteLength === b.byteLength && ab instanceof ArrayBuffer && !ab.detached) ab.transfer?.(0);
}

// IVs come from a pool of random bytes: one 16-byte randomBytes call costs as much as sealing
// a few kilobytes, and small blobs are many.
const ivPool = Buffer.allocUnsafe(IV_SIZE * 256);
let ivPoolUsed = ivPool.length;

/** Writes a fresh random IV to `out` (every IV is used once). */
function fillIv(out: Uint8Array): void {
  if (ivPoolUsed === ivPool.length) {
    randomFillSync(ivPool);
    ivPoolUsed = 0;
  }
  out.set(ivPool.subarray(ivPoolUsed, ivPoolUsed + IV_SIZE));
  ivPoolUsed += IV_SIZE;
}

/** Encrypts and authenticates: returns IV ‖ ciphertext ‖ MAC. */
export function seal(key: CryptoKey, plaintext: Uint8Array, iv?: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(plaintext.length + CRYPTO_OVERHEAD);
  sealInto(key, plaintext, out, iv);
  return out;
}

/**
 * seal() into `out`, which must hold plaintext.length + CRYPTO_OVERHEAD bytes. When `out` lies in
 * this thread's Poly1305 workspace, the ciphertext is authenticated where it is written.
 */
export function sealInto(key: CryptoKey, plaintext: Uint8Array, out: Uint8Array, iv?: Uint8Array): number {
  const n = plaintext.length + CRYPTO_OVERHEAD;
  if (out.length < n) throw new RangeError(`seal needs ${n} bytes of output, got ${out.length}`);
  if (iv) out.set(iv, 0);
  else {
    fillIv(out);
    iv = Buffer.from(out.buffer, out.byteOffset, IV_SIZE);
  }
  ctr(key, iv, plaintext, out, IV_SIZE);
  const ct = out.subarray(IV_SIZE, IV_SIZE + plaintext.length);
  out.set(poly1305Aes(key, iv, ct), IV_SIZE + plaintext.length);
  return n;
}

/**
 * Verifies and decrypts IV ‖ ciphertext ‖ MAC. A MAC mismatch or a short input throws
 * IntegrityError naming `where`; no unverified byte is ever returned.
 */
export function open(key: CryptoKey, sealed: Uint8Array, where: { file?: string; blob?: string } = {}): Uint8Array {
  const out = Buffer.allocUnsafe(Math.max(0, sealed.length - CRYPTO_OVERHEAD));
  openInto(key, sealed, out, where);
  return out;
}

/**
 * open() into `out` (at least sealed.length − CRYPTO_OVERHEAD bytes); returns the plaintext
 * length. Nothing is written to `out` unless the MAC verifies.
 */
export function openInto(key: CryptoKey, sealed: Uint8Array, out: Uint8Array, where: { file?: string; blob?: string } = {}): number {
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
  ctr(key, iv, ct, out, 0);
  return ct.length;
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
