// Polynomials over GF(2) with degree ≤ 63, held in a bigint: bit i is the coefficient of x^i.
// restic stores one per repository (config.chunker_polynomial) and uses it for the Rabin
// fingerprint of the content-defined chunker. Nothing here is on a hot path: these helpers run
// once per repository open (irreducibility check) and once per polynomial (chunker tables).
import { randomBytes } from 'node:crypto';
import { InvalidInputError, StowageError } from '../errors.ts';

export type Polynomial = bigint;

const MAX_U64 = (1n << 64n) - 1n;

/** Number of random candidates tried before giving up, as restic does. */
const RANDOM_POLYNOMIAL_TRIES = 1_000_000;

/** Degree of p (its bit length minus 1); -1 for the zero polynomial. */
export function degree(p: Polynomial): number {
  if (p < 0n) throw new InvalidInputError(`polynomial must be non-negative, got ${p}`);
  if (p === 0n) return -1;
  if (p > MAX_U64) return p.toString(2).length - 1;
  const hi = Number(p >> 32n);
  return hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(Number(p));
}

/** a mod p (the remainder of polynomial division). */
export function polyMod(a: Polynomial, p: Polynomial): Polynomial {
  if (p === 0n) throw new InvalidInputError('polynomial division by zero');
  const dp = degree(p);
  let da = degree(a);
  while (da >= dp) {
    a ^= p << BigInt(da - dp);
    da = degree(a);
  }
  return a;
}

/** a·b mod p: carry-less multiplication with the product reduced at every step. */
export function mulMod(a: Polynomial, b: Polynomial, p: Polynomial): Polynomial {
  a = polyMod(a, p);
  let result = 0n;
  while (b > 0n) {
    if (b & 1n) result ^= a;
    b >>= 1n;
    a = polyMod(a << 1n, p);
  }
  return polyMod(result, p);
}

/** Greatest common divisor by Euclid's algorithm. */
export function polyGcd(a: Polynomial, b: Polynomial): Polynomial {
  while (b !== 0n) {
    [a, b] = [b, polyMod(a, b)];
  }
  return a;
}

/**
 * Ben-Or's irreducibility test, the check restic runs on every repository open:
 * p is irreducible iff gcd(p, x^(2^i) − x mod p) = 1 for every i in 1..⌊deg(p)/2⌋.
 * Like restic's check, it answers true for the degenerate 0 and 1 (the loop is empty); the
 * chunker rejects those separately.
 */
export function isIrreducible(p: Polynomial): boolean {
  if (p < 0n || p > MAX_U64) return false;
  const d = degree(p);
  let xPow = 2n; // x^(2^i) mod p, squared once per step; 2n is the polynomial x
  for (let i = 1; i <= Math.floor(d / 2); i++) {
    xPow = mulMod(xPow, xPow, p);
    if (polyGcd(p, polyMod(xPow ^ 2n, p)) !== 1n) return false;
  }
  return true;
}

/**
 * A fresh random irreducible polynomial of degree 53, drawn the way restic draws it:
 * 8 random bytes read little-endian, masked to 54 bits, bits 53 and 0 set, retried until
 * irreducible (about one candidate in 27 is).
 */
export function randomPolynomial(): Polynomial {
  for (let i = 0; i < RANDOM_POLYNOMIAL_TRIES; i++) {
    let f = randomBytes(8).readBigUInt64LE(0);
    f &= (1n << 54n) - 1n;
    f |= (1n << 53n) | 1n;
    if (isIrreducible(f)) return f;
  }
  throw new StowageError('INTEGRITY', 'no irreducible chunker polynomial found; the random source looks broken');
}

const HEX = /^[0-9a-fA-F]+$/;

/**
 * Parses config.chunker_polynomial: hex digits without 0x, as Go's strconv.ParseUint(s, 16, 64)
 * accepts them (upper case and leading zeros included; restic writes lowercase without).
 */
export function parsePolynomial(hex: string): Polynomial {
  const p = typeof hex === 'string' && HEX.test(hex) ? BigInt('0x' + hex) : -1n;
  if (p < 0n || p > MAX_U64) {
    throw new InvalidInputError(`invalid chunker_polynomial: ${JSON.stringify(hex)?.slice(0, 40)}`);
  }
  return p;
}

/** The config form of a polynomial: lowercase hex, no 0x, no leading zeros (Go FormatUint(p, 16)). */
export function formatPolynomial(p: Polynomial): string {
  if (p < 0n || p > MAX_U64) throw new InvalidInputError(`polynomial ${p} does not fit in 64 bits`);
  return p.toString(16);
}
