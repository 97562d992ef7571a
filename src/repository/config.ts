// The repository config (file "config"): format version, repository ID and the chunker
// polynomial. Stored sealed with the master key and never compressed, not even in v2.
import { IntegrityError, InvalidInputError, UnsupportedError, shownValue } from '../errors.ts';
import { formatPolynomial, isIrreducible, parsePolynomial, randomPolynomial } from './polynomial.ts';
import { isId, randomId } from './id.ts';

/** The repository config (the `config` file), decrypted. */
export interface RepoConfig {
  version: 1 | 2;
  /** 64 hex characters; the repository's identity (restic names its cache directory after it). */
  id: string;
  chunkerPolynomial: bigint;
}

/** The plaintext restic writes: compact JSON in Go field order, no trailing newline. */
export function encodeConfig(cfg: RepoConfig): Uint8Array {
  if (!isId(cfg.id)) throw new InvalidInputError(`config id ${JSON.stringify(cfg.id)?.slice(0, 80)} is not 64 lowercase hex characters`);
  return Buffer.from(
    `{"version":${cfg.version},"id":${JSON.stringify(cfg.id)},"chunker_polynomial":"${formatPolynomial(cfg.chunkerPolynomial)}"}`,
  );
}

/**
 * Parses and checks a config plaintext as restic does on open: version 1 or 2, an irreducible
 * polynomial. The ID must be 64 hex characters (every restic version writes one).
 */
export function decodeConfig(plain: Uint8Array, file = 'config'): RepoConfig {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(plain.buffer, plain.byteOffset, plain.length).toString('utf8'));
  } catch (e) {
    throw new IntegrityError(`config is not valid JSON: ${(e as Error).message}`, { file });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new IntegrityError('config is not a JSON object', { file });
  }
  const o = v as Record<string, unknown>;

  // A missing version reads as 0 in Go and is refused like any other unknown version.
  const version = o.version ?? 0;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 0) {
    throw new IntegrityError(`config version ${shownValue(version, 40)} is not an unsigned integer`, { file });
  }
  if (version !== 1 && version !== 2) {
    throw new UnsupportedError(`unsupported repository version ${version} in ${file} (supported: 1, 2)`);
  }

  if (!isId(o.id)) {
    throw new IntegrityError(`config id ${shownValue(o.id)} is not 64 lowercase hex characters`, { file });
  }

  if (typeof o.chunker_polynomial !== 'string') {
    throw new IntegrityError('config chunker_polynomial is missing or not a string', { file });
  }
  let chunkerPolynomial: bigint;
  try {
    chunkerPolynomial = parsePolynomial(o.chunker_polynomial);
  } catch (e) {
    throw new IntegrityError((e as Error).message, { file });
  }
  // Constants (0 and 1) pass Ben-Or's test vacuously but are not irreducible polynomials.
  if (chunkerPolynomial < 2n || !isIrreducible(chunkerPolynomial)) {
    throw new IntegrityError(`invalid chunker polynomial ${o.chunker_polynomial} (not irreducible)`, { file });
  }
  return { version, id: o.id, chunkerPolynomial };
}

/**
 * A fresh config: random ID and a random irreducible polynomial, as restic init makes; or the
 * given polynomial (restic init --copy-chunker-params), which must be irreducible.
 */
export function newConfig(version: 1 | 2 = 2, chunkerPolynomial?: bigint): RepoConfig {
  if (version !== 1 && version !== 2) throw new InvalidInputError(`repository version must be 1 or 2, got ${String(version)}`);
  if (chunkerPolynomial !== undefined && (typeof chunkerPolynomial !== 'bigint' || chunkerPolynomial < 2n || !isIrreducible(chunkerPolynomial))) {
    throw new InvalidInputError(`chunker polynomial ${String(chunkerPolynomial)} is not an irreducible polynomial`);
  }
  return { version, id: randomId(), chunkerPolynomial: chunkerPolynomial ?? randomPolynomial() };
}
