import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  degree,
  formatPolynomial,
  isIrreducible,
  mulMod,
  parsePolynomial,
  polyGcd,
  polyMod,
  randomPolynomial,
} from '../../src/repository/polynomial.ts';
import { InvalidInputError } from '../../src/errors.ts';

/** Carry-less product, no reduction (operands small enough not to matter). */
function clmul(a: bigint, b: bigint): bigint {
  let r = 0n;
  for (let i = 0n; b >> i > 0n; i++) if ((b >> i) & 1n) r ^= a << i;
  return r;
}

/** Irreducible by trial division with every polynomial of degree 1..deg/2. */
function irreducibleByTrialDivision(p: bigint): boolean {
  const d = degree(p);
  for (let q = 2n; degree(q) <= d / 2; q++) {
    if (polyMod(p, q) === 0n) return false;
  }
  return true;
}

test('degree is the bit length minus one', () => {
  assert.equal(degree(0n), -1);
  assert.equal(degree(1n), 0);
  assert.equal(degree(2n), 1);
  assert.equal(degree(0x3da3358b4dc173n), 53);
  assert.equal(degree(1n << 63n), 63);
  assert.equal(degree((1n << 64n) - 1n), 63);
  assert.equal(degree(1n << 70n), 70);
});

test('polyMod, mulMod and gcd follow GF(2)[x] arithmetic', () => {
  // (x+1)^2 = x^2 + 1 over GF(2)
  assert.equal(clmul(3n, 3n), 5n);
  assert.equal(mulMod(3n, 3n, 1n << 10n), 5n);
  // x^4 mod (x^4 + x + 1) = x + 1
  assert.equal(polyMod(0x10n, 0x13n), 0x3n);
  // mulMod equals reducing the full carry-less product
  const p = 0x25b468838dcb75n;
  for (const [a, b] of [
    [0x1234567890abcn, 0xfedcba987654n],
    [p - 1n, p - 2n],
    [(1n << 53n) - 1n, 3n],
  ]) {
    assert.equal(mulMod(a, b, p), polyMod(clmul(a, b), p));
  }
  // gcd((x+1)(x^2+x+1), (x+1)^2) = x + 1
  assert.equal(polyGcd(clmul(3n, 7n), 5n), 3n);
  assert.throws(() => polyMod(5n, 0n), InvalidInputError);
});

test('the known restic polynomials are irreducible and 0x20000000000001 is not', () => {
  assert.equal(isIrreducible(0x3da3358b4dc173n), true);
  assert.equal(isIrreducible(0x25b468838dcb75n), true);
  assert.equal(isIrreducible(0x20000000000001n), false);
  // a product of two irreducibles is reducible
  assert.equal(isIrreducible(clmul(0x13n, 0x25n)), false);
});

test('Ben-Or agrees with trial division for every polynomial of degree 2..11', () => {
  let irreducible = 0;
  for (let p = 4n; p < 1n << 12n; p++) {
    const expected = irreducibleByTrialDivision(p);
    assert.equal(isIrreducible(p), expected, `polynomial ${p.toString(16)}`);
    if (expected) irreducible++;
  }
  // number of irreducible binary polynomials of degree 2..11 (OEIS A001037)
  assert.equal(irreducible, 1 + 2 + 3 + 6 + 9 + 18 + 30 + 56 + 99 + 186);
});

test('random polynomials are irreducible, of degree 53, as restic draws them', () => {
  const seen = new Set<bigint>();
  for (let i = 0; i < 5; i++) {
    const p = randomPolynomial();
    assert.equal(degree(p), 53);
    assert.equal(p & 1n, 1n);
    assert.equal(isIrreducible(p), true);
    seen.add(p);
  }
  assert.equal(seen.size, 5);
});

test('format and parse use the config form (Go FormatUint / ParseUint base 16)', () => {
  assert.equal(formatPolynomial(0x25db4707e03b51n), '25db4707e03b51');
  assert.equal(formatPolynomial(0xabcn), 'abc');
  assert.equal(parsePolynomial('25db4707e03b51'), 0x25db4707e03b51n);
  assert.equal(parsePolynomial('3DA3358B4DC173'), 0x3da3358b4dc173n);
  assert.equal(parsePolynomial('00000000000000000abc'), 0xabcn);
  assert.equal(parsePolynomial('ffffffffffffffff'), (1n << 64n) - 1n);
  for (let i = 0; i < 3; i++) {
    const p = randomPolynomial();
    assert.equal(parsePolynomial(formatPolynomial(p)), p);
  }
  for (const bad of ['', '0x25db', 'xyz', '-1', '12 34', '10000000000000000', ' 25db']) {
    assert.throws(() => parsePolynomial(bad), InvalidInputError, bad);
  }
  assert.throws(() => parsePolynomial(42 as unknown as string), InvalidInputError);
  assert.throws(() => formatPolynomial(1n << 64n), InvalidInputError);
});
