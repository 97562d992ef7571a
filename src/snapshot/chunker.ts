// restic's content-defined chunker: a Rabin fingerprint over a 64-byte window, cut where the
// low 20 bits of the digest are zero, with chunks of 512 KiB .. 8 MiB. Boundaries must match
// restic byte for byte, or nothing deduplicates against restic's own backups.
//
// It is the hottest loop of a backup, so the digest (< 2^53) lives in two int32 halves, the
// tables are Int32Array halves built once per polynomial, and the byte leaving the window is
// read from the input 64 positions back instead of from a ring buffer.
//
// One deviation from restic's formulation, with identical boundaries and cut digests: restic
// starts each chunk with the window [1, 0, …, 0] and digest 1, skips MinSize − 64 bytes, then
// hashes. After 64 hashed bytes the initial 1 has left the window and the digest is the plain
// fingerprint of the last 64 bytes, and no cut is possible before that point. So we start
// hashing from digest 0 with an all-zero window (the zero byte's "out" entry is 0), and correct
// the running digest only when a caller asks for it mid-warm-up (see `digest`).
import { InvalidInputError, UnsupportedError } from '../errors.ts';
import { degree, mulMod, polyMod } from './polynomial.ts';
import type { Polynomial } from './polynomial.ts';

export const WINDOW_SIZE = 64;
export const MIN_SIZE = 512 * 1024;
export const MAX_SIZE = 8 * 1024 * 1024;
/** A cut happens where (digest & SPLIT_MASK) == 0: about one position in 2^20. */
const SPLIT_MASK = (1 << 20) - 1;
/** Bytes at the start of each chunk that are taken without hashing. */
const SKIP_SIZE = MIN_SIZE - WINDOW_SIZE;

/** Degrees the chunker can run: restic's chunker rejects above 53; below 9 the table index breaks. */
const MIN_DEGREE = 9;
const MAX_DEGREE = 53;

interface ChunkerTables {
  /** out[b]: fingerprint of b followed by 63 zero bytes; XOR removes b from the window. */
  readonly outHi: Int32Array;
  readonly outLo: Int32Array;
  /** mod[b]: (b·x^k mod pol) | b·x^k; one XOR reduces the shifted digest by its top byte b. */
  readonly modHi: Int32Array;
  readonly modLo: Int32Array;
  /** k − 8: the top byte of the digest is digest >> shift. */
  readonly shift: number;
  /** x^(8j) mod pol for j = 0..63: restic's leftover initial 1 after j hashed bytes. */
  readonly warmup: readonly bigint[];
}

const tablesByPolynomial = new Map<Polynomial, ChunkerTables>();

function tablesFor(pol: Polynomial): ChunkerTables {
  let t = tablesByPolynomial.get(pol);
  if (t === undefined) {
    t = buildTables(pol);
    tablesByPolynomial.set(pol, t);
  }
  return t;
}

function buildTables(pol: Polynomial): ChunkerTables {
  const k = degree(pol);
  if (k < MIN_DEGREE || k > MAX_DEGREE) {
    throw new UnsupportedError(
      `chunker polynomial ${pol.toString(16)} has degree ${k}; the chunker supports degrees ${MIN_DEGREE}..${MAX_DEGREE} (restic uses 53)`,
    );
  }
  const outHi = new Int32Array(256);
  const outLo = new Int32Array(256);
  const modHi = new Int32Array(256);
  const modLo = new Int32Array(256);
  for (let b = 0; b < 256; b++) {
    let h = polyMod(BigInt(b), pol);
    for (let i = 1; i < WINDOW_SIZE; i++) h = polyMod(h << 8n, pol);
    outHi[b] = Number(h >> 32n) | 0;
    outLo[b] = Number(h & 0xffffffffn) | 0;

    const top = BigInt(b) << BigInt(k);
    const m = polyMod(top, pol) | top;
    modHi[b] = Number(m >> 32n) | 0;
    modLo[b] = Number(m & 0xffffffffn) | 0;
  }
  const x8 = polyMod(1n << 8n, pol);
  const warmup: bigint[] = [1n];
  for (let j = 1; j < WINDOW_SIZE; j++) warmup.push(mulMod(warmup[j - 1], x8, pol));
  return { outHi, outLo, modHi, modLo, shift: k - 8, warmup };
}

// The scan loops read the tables from these module constants, not from per-chunker arrays:
// V8 then treats the arrays as constants, which frees registers in the loop and measured about
// 25% faster. They hold the tables of one polynomial at a time (normally the only one in the
// process); a chunker with another polynomial copies its tables in before scanning.
const OUT_HI = new Int32Array(256);
const OUT_LO = new Int32Array(256);
const MOD_HI = new Int32Array(256);
const MOD_LO = new Int32Array(256);
let activeTables: ChunkerTables | undefined;

function activate(t: ChunkerTables): void {
  OUT_HI.set(t.outHi);
  OUT_LO.set(t.outLo);
  MOD_HI.set(t.modHi);
  MOD_LO.set(t.modLo);
  activeTables = t;
}

/**
 * The hot loop: rolls buf[j..stop) into the digest (halves in digest[0], digest[1]) and returns
 * the index of the first byte after which the split mask matches, or stop. The byte leaving
 * the window is buf[j − 64], so buf must hold the 64 bytes before j. For shift ≥ 32, where the
 * top byte of the digest lies wholly in the high half (degree 40..53, so every restic polynomial).
 */
function scanHigh(buf: Uint8Array, j: number, stop: number, digest: Int32Array, shift: number): number {
  const hiShift = shift - 32;
  let hi = digest[0];
  let lo = digest[1];
  for (; j < stop; j++) {
    const o = buf[j - WINDOW_SIZE];
    hi ^= OUT_HI[o];
    lo ^= OUT_LO[o];
    const idx = hi >>> hiShift;
    hi = ((hi << 8) | (lo >>> 24)) ^ MOD_HI[idx];
    lo = ((lo << 8) | buf[j]) ^ MOD_LO[idx];
    if ((lo & SPLIT_MASK) === 0) break;
  }
  digest[0] = hi;
  digest[1] = lo;
  return j;
}

/** scanHigh for degree < 40, where the top digest byte straddles the two halves. */
function scanLow(buf: Uint8Array, j: number, stop: number, digest: Int32Array, shift: number): number {
  const loShift = 32 - shift;
  let hi = digest[0];
  let lo = digest[1];
  for (; j < stop; j++) {
    const o = buf[j - WINDOW_SIZE];
    hi ^= OUT_HI[o];
    lo ^= OUT_LO[o];
    const idx = ((hi << loShift) | (lo >>> shift)) & 0xff;
    hi = ((hi << 8) | (lo >>> 24)) ^ MOD_HI[idx];
    lo = ((lo << 8) | buf[j]) ^ MOD_LO[idx];
    if ((lo & SPLIT_MASK) === 0) break;
  }
  digest[0] = hi;
  digest[1] = lo;
  return j;
}

function joinHalves(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * Streaming chunker for one file at a time. Feed the file's bytes in buffers of any size; the
 * boundaries do not depend on how the input is split.
 */
export class Chunker {
  readonly polynomial: Polynomial;
  readonly #t: ChunkerTables;
  readonly #scan: typeof scanHigh;

  /** Bytes of the current chunk still to take without hashing. */
  #skip = SKIP_SIZE;
  /** Length of the current chunk so far. */
  #count = 0;
  /** Our digest (see the header comment) as int32 halves [high, low]. */
  readonly #digest = new Int32Array(2);
  /**
   * [0, 64): the 64 bytes of the current chunk before the next byte to hash (zeros when hashing
   * starts); [64, 128): room for the first bytes of the next buffer, so that the scan loop can
   * find every byte leaving the window 64 positions back.
   */
  readonly #head = new Uint8Array(2 * WINDOW_SIZE);
  #cutHi = 0;
  #cutLo = 0;

  constructor(pol: Polynomial) {
    this.polynomial = pol;
    this.#t = tablesFor(pol);
    this.#scan = this.#t.shift >= 32 ? scanHigh : scanLow;
  }

  /** Start a new file (resets all state). */
  reset(): void {
    this.#startChunk();
    this.#cutHi = 0;
    this.#cutLo = 0;
  }

  /** The digest at the last cut (restic's Chunk.Cut). */
  get lastCut(): bigint {
    return joinHalves(this.#cutHi, this.#cutLo);
  }

  /**
   * restic's running digest of the current chunk: what restic reports as "cut" for the final,
   * end-of-input chunk.
   */
  get digest(): bigint {
    const hashed = this.#count - SKIP_SIZE;
    if (hashed <= 0) return 1n;
    const d = joinHalves(this.#digest[0], this.#digest[1]);
    return hashed < WINDOW_SIZE ? d ^ this.#t.warmup[hashed] : d;
  }

  /** Bytes taken into the current chunk so far. */
  get pending(): number {
    return this.#count;
  }

  /**
   * Scans buf[offset..). Returns the index just after the current chunk's last byte if a
   * boundary falls inside, else -1 (all of buf[offset..] belongs to the current chunk). After a
   * boundary the chunker is ready for the next chunk: call again with offset = returned index.
   */
  next(buf: Uint8Array, offset = 0): number {
    const end = buf.length;
    if (!(offset >= 0 && offset <= end && Number.isInteger(offset))) {
      throw new InvalidInputError(`chunker offset ${offset} is outside the buffer of ${end} bytes`);
    }
    let start = offset;
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, end - start);
      this.#skip -= n;
      this.#count += n;
      start += n;
    }
    if (start === end) return -1;
    if (activeTables !== this.#t) activate(this.#t);

    const scan = this.#scan;
    const shift = this.#t.shift;
    const digest = this.#digest;
    const head = this.#head;
    const count0 = this.#count;
    // Bytes up to `stop` may be hashed; a chunk reaching MAX_SIZE is cut at its last byte.
    const stop = Math.min(end, start + (MAX_SIZE - count0));
    // A cut is allowed once the chunk holds MIN_SIZE bytes; that is at most 63 bytes in.
    const firstCut = start + Math.max(0, MIN_SIZE - count0 - 1);

    // The first (up to) 64 bytes, scanned in `head` after the 64 bytes that leave the window.
    const headLen = Math.min(WINDOW_SIZE, stop - start);
    for (let i = 0; i < headLen; i++) head[WINDOW_SIZE + i] = buf[start + i];
    let h = WINDOW_SIZE;
    for (;;) {
      h = scan(head, h, WINDOW_SIZE + headLen, digest, shift);
      if (h === WINDOW_SIZE + headLen || start + (h - WINDOW_SIZE) >= firstCut) break;
      h++; // a mask match before MIN_SIZE is not a cut
    }
    let j = start + (h - WINDOW_SIZE);

    // The rest, where the byte leaving the window is in buf itself.
    if (h === 2 * WINDOW_SIZE) j = scan(buf, j, stop, digest, shift);

    if (j < stop || count0 + (stop - start) === MAX_SIZE) {
      this.#cutHi = digest[0];
      this.#cutLo = digest[1];
      this.#startChunk();
      return j < stop ? j + 1 : stop;
    }

    this.#count = count0 + (end - start);
    const n = end - start;
    if (n >= WINDOW_SIZE) {
      head.set(buf.subarray(end - WINDOW_SIZE, end));
    } else {
      head.copyWithin(0, n, n + WINDOW_SIZE); // the previous tail shifted, then this buffer's bytes
    }
    return -1;
  }

  #startChunk(): void {
    this.#skip = SKIP_SIZE;
    this.#count = 0;
    this.#digest.fill(0);
    this.#head.fill(0, 0, WINDOW_SIZE);
  }
}

/** All chunks of a whole buffer, the last one being the end-of-input remainder. */
export function chunkAll(pol: Polynomial, data: Uint8Array): Array<{ start: number; length: number; cut: bigint }> {
  const chunker = new Chunker(pol);
  const chunks: Array<{ start: number; length: number; cut: bigint }> = [];
  let start = 0;
  while (start < data.length) {
    const end = chunker.next(data, start);
    if (end < 0) {
      chunks.push({ start, length: data.length - start, cut: chunker.digest });
      break;
    }
    chunks.push({ start, length: end - start, cut: chunker.lastCut });
    start = end;
  }
  return chunks;
}
