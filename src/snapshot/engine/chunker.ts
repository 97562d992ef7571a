// restic's content-defined chunker: a Rabin fingerprint over a 64-byte window, cut where the
// low 20 bits of the digest are zero, with chunks of 512 KiB .. 8 MiB. Boundaries must match
// restic byte for byte, or nothing deduplicates against restic's own backups.
//
// This is the hottest loop of a backup. The per-byte update is a chain of dependent steps
// (digest → table index → table load → digest), so its speed is set by that chain's latency.
// Two engines compute the same digests:
//  * wasm (default): a small WebAssembly loop, assembled below, with the digest in one i64.
//    It takes two bytes per step: by linearity the digest two bytes on is
//    (d << 16) reduced ⊕ terms that depend only on the data, which halves the chain per byte.
//    The digest between the two bytes is still computed (off the chain) for the cut test.
//  * js (fallback, e.g. under --jitless): one byte per step, the digest in two int32 halves.
// Both read the byte leaving the window from the input, 64 bytes back, instead of keeping a
// ring buffer; the 64 bytes before each input buffer are kept in a small array.
//
// One deviation from restic's formulation, with identical boundaries and cut digests: restic
// starts each chunk with the window [1, 0, …, 0] and digest 1, skips MinSize − 64 bytes, then
// hashes. After 64 hashed bytes the initial 1 has left the window and the digest is the plain
// fingerprint of the last 64 bytes, and no cut is possible before that point. So we start
// hashing from digest 0 with an all-zero window (the zero byte's "out" entry is 0), and correct
// the running digest only when a caller asks for it mid-warm-up (see `digest`).
import { InvalidInputError, UnsupportedError } from '../../errors.ts';
import { degree, mulMod, polyMod } from '../../repository/polynomial.ts';
import type { Polynomial } from '../../repository/polynomial.ts';

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
/** The wasm step finds its second table index at d >> (k − 19), so k must be at least 19. */
const MIN_WASM_DEGREE = 19;

export type ChunkerEngine = 'wasm' | 'js';

// ---------------------------------------------------------------------------------------------
// Tables, built once per polynomial with bigint arithmetic (k = degree, 53 for restic).

interface ChunkerTables {
  readonly degree: number;
  /** x^(8j) mod pol for j = 0..63: restic's leftover initial 1 after j hashed bytes. */
  readonly warmup: readonly bigint[];
  /** out and mod (see buildTables) as int32 halves for the js engine. */
  readonly outHi: Int32Array;
  readonly outLo: Int32Array;
  readonly modHi: Int32Array;
  readonly modLo: Int32Array;
  /** The wasm engine's tables, laid out as in its memory (see WASM_*). */
  readonly wasm: Uint8Array | undefined;
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
  // out[b]: fingerprint of b followed by 63 zero bytes; XOR removes b from the window.
  // mod[b]: (b·x^k mod pol) | b·x^k; one XOR reduces the shifted digest by its top byte b
  // (the b·x^k part cancels the top byte itself).
  const out: bigint[] = [];
  const mod: bigint[] = [];
  for (let b = 0n; b < 256n; b++) {
    let h = polyMod(b, pol);
    for (let i = 1; i < WINDOW_SIZE; i++) h = polyMod(h << 8n, pol);
    out.push(h);
    mod.push(polyMod(b << BigInt(k), pol) | (b << BigInt(k)));
  }
  const x8 = polyMod(1n << 8n, pol);
  const warmup: bigint[] = [1n];
  for (let j = 1; j < WINDOW_SIZE; j++) warmup.push(mulMod(warmup[j - 1], x8, pol));

  const halves = (values: readonly bigint[], high: boolean): Int32Array =>
    Int32Array.from(values, (v) => Number(high ? v >> 32n : v & 0xffffffffn) | 0);
  return {
    degree: k,
    warmup,
    outHi: halves(out, true),
    outLo: halves(out, false),
    modHi: halves(mod, true),
    modLo: halves(mod, false),
    wasm: k >= MIN_WASM_DEGREE ? buildWasmTables(pol, k, out, mod) : undefined,
  };
}

function buildWasmTables(pol: Polynomial, k: number, out: readonly bigint[], mod: readonly bigint[]): Uint8Array {
  const u64 = (1n << 64n) - 1n;
  const bytes = new Uint8Array(WASM_TABLES_SIZE);
  const view = new DataView(bytes.buffer);
  for (let b = 0; b < 256; b++) {
    // mod16[a]: reduces the top byte a of (d << 16), at bits k+8..k+15 (cut to 64 bits, as is d << 16).
    const top16 = BigInt(b) << BigInt(k + 8);
    view.setBigUint64(WASM_OUT + 8 * b, out[b], true);
    view.setBigUint64(WASM_MOD + 8 * b, mod[b], true);
    view.setBigUint64(WASM_MOD16 + 8 * b, (polyMod(top16, pol) | top16) & u64, true);
    // out8[b], out16[b]: out[b] moved on by one and two bytes, reduced
    view.setBigUint64(WASM_OUT8 + 8 * b, polyMod(out[b] << 8n, pol), true);
    view.setBigUint64(WASM_OUT16 + 8 * b, polyMod(out[b] << 16n, pol), true);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Engines. `scan(buf, j, stop, digest, t)` rolls buf[j..stop) into the digest (int32 halves
// [high, low]) and stops early only just after a byte where the split mask matches. It returns
// the index after the last byte hashed. buf[j − 64 .. j) must hold the bytes before j.

type Scan = (buf: Uint8Array, j: number, stop: number, digest: Int32Array, t: ChunkerTables) => number;

// The js loop reads the tables from these module constants, not from per-chunker arrays: V8
// then treats the arrays as constants, which frees registers and measured about 25% faster.
// They hold one polynomial's tables at a time; a chunker with another one copies its tables in.
const OUT_HI = new Int32Array(256);
const OUT_LO = new Int32Array(256);
const MOD_HI = new Int32Array(256);
const MOD_LO = new Int32Array(256);
let jsTables: ChunkerTables | undefined;

const scanJs: Scan = (buf, j, stop, digest, t) => {
  if (jsTables !== t) {
    OUT_HI.set(t.outHi);
    OUT_LO.set(t.outLo);
    MOD_HI.set(t.modHi);
    MOD_LO.set(t.modLo);
    jsTables = t;
  }
  const shift = t.degree - 8; // the top byte of the digest is digest >> shift
  return shift >= 32 ? scanJsHigh(buf, j, stop, digest, shift - 32) : scanJsLow(buf, j, stop, digest, shift);
};

/** The js loop when the digest's top byte lies in the high half (degree ≥ 40, so restic's 53). */
function scanJsHigh(buf: Uint8Array, j: number, stop: number, digest: Int32Array, hiShift: number): number {
  let hi = digest[0];
  let lo = digest[1];
  while (j < stop) {
    const o = buf[j - WINDOW_SIZE];
    hi ^= OUT_HI[o];
    lo ^= OUT_LO[o];
    const idx = hi >>> hiShift;
    hi = ((hi << 8) | (lo >>> 24)) ^ MOD_HI[idx];
    lo = ((lo << 8) | buf[j]) ^ MOD_LO[idx];
    j++;
    if ((lo & SPLIT_MASK) === 0) break;
  }
  digest[0] = hi;
  digest[1] = lo;
  return j;
}

/** The js loop when the digest's top byte straddles the two halves (degree < 40). */
function scanJsLow(buf: Uint8Array, j: number, stop: number, digest: Int32Array, shift: number): number {
  const loShift = 32 - shift;
  let hi = digest[0];
  let lo = digest[1];
  while (j < stop) {
    const o = buf[j - WINDOW_SIZE];
    hi ^= OUT_HI[o];
    lo ^= OUT_LO[o];
    const idx = ((hi << loShift) | (lo >>> shift)) & 0xff;
    hi = ((hi << 8) | (lo >>> 24)) ^ MOD_HI[idx];
    lo = ((lo << 8) | buf[j]) ^ MOD_LO[idx];
    j++;
    if ((lo & SPLIT_MASK) === 0) break;
  }
  digest[0] = hi;
  digest[1] = lo;
  return j;
}

// Wasm memory layout: five tables of 256 u64, the digest, then the 64 window bytes and a
// segment of input copied in from the caller's buffer.
const WASM_OUT = 0;
const WASM_MOD = 2048;
const WASM_MOD16 = 4096;
const WASM_OUT8 = 6144;
const WASM_OUT16 = 8192;
const WASM_TABLES_SIZE = 10240;
const WASM_DIGEST = 10240;
const WASM_WINDOW = 10304;
const WASM_SEGMENT = 64 * 1024;
const WASM_PAGES = Math.ceil((WASM_WINDOW + WINDOW_SIZE + WASM_SEGMENT) / 65536);

interface WasmEngine {
  readonly memory: Uint8Array;
  readonly digest: Int32Array; // [low, high] of the i64 at WASM_DIGEST
  /** scan(q, qEnd, shiftA, shiftC): hashes the bytes q+64 .. qEnd+64 (q is the byte leaving). */
  readonly scan: (q: number, qEnd: number, shiftA: number, shiftC: number) => number;
  tables: ChunkerTables | undefined;
}

/** The part of the WebAssembly JS API used here (the compile target's lib has no typings for it). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

let wasmEngine: WasmEngine | null | undefined; // null: WebAssembly is not available here

function getWasmEngine(): WasmEngine | null {
  if (wasmEngine === undefined) {
    wasmEngine = null;
    const api = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly; // absent under node --jitless
    if (api !== undefined) {
      const { exports } = new api.Instance(new api.Module(assembleScanModule()));
      const memory = (exports.memory as { buffer: ArrayBuffer }).buffer;
      wasmEngine = {
        memory: new Uint8Array(memory),
        digest: new Int32Array(memory, WASM_DIGEST, 2),
        scan: exports.scan as WasmEngine['scan'],
        tables: undefined,
      };
    }
  }
  return wasmEngine;
}

const scanWasm: Scan = (buf, j, stop, digest, t) => {
  const w = getWasmEngine()!;
  if (w.tables !== t) {
    w.memory.set(t.wasm!, 0);
    w.tables = t;
  }
  // Shifts that give the digest's top byte, and the byte below it, already multiplied by 8.
  const shiftA = t.degree - 11;
  const shiftC = t.degree - 19;
  w.digest[0] = digest[1];
  w.digest[1] = digest[0];
  while (j < stop) {
    const n = Math.min(WASM_SEGMENT, stop - j);
    w.memory.set(buf.subarray(j - WINDOW_SIZE, j + n), WASM_WINDOW);
    const hashed = w.scan(WASM_WINDOW, WASM_WINDOW + n, shiftA, shiftC) - WASM_WINDOW;
    j += hashed;
    if (hashed < n) break;
  }
  digest[0] = w.digest[1];
  digest[1] = w.digest[0];
  return j;
};

/**
 * The wasm module: memory (exported) and
 *   scan(q, qEnd, shiftA, shiftC) → q after the last byte hashed.
 * The byte entering the window is at q + 64 and the byte leaving it at q. For restic's degree
 * 53, a = (d >> 45) is the top byte and c = (d >> 37) & 255 the next; the code takes them
 * pre-multiplied by 8 ((d >> shiftA) & 0x7f8) as byte offsets into the tables.
 * Two bytes (leaving o1, o2; entering b1, b2) per step, from digest d:
 *   d1 = (d << 8 | b1) ⊕ MOD[a] ⊕ OUT8[o1]                                  (tested for a cut)
 *   d2 = (d << 16) ⊕ MOD16[a] ⊕ MOD[c] ⊕ OUT16[o1] ⊕ OUT8[o2] ⊕ (b1 << 8 | b2)
 * The terms that depend on d are XORed last, to keep the dependency chain short.
 * An odd last byte takes restic's one-byte step: d ^= OUT[o]; d = (d << 8 | b) ⊕ MOD[top byte].
 */
function assembleScanModule(): Uint8Array {
  const uleb = (n: number): number[] => {
    const bytes: number[] = [];
    do {
      const low = n & 0x7f;
      n >>>= 7;
      bytes.push(n !== 0 ? low | 0x80 : low);
    } while (n !== 0);
    return bytes;
  };
  const sleb = (n: number): number[] => {
    const bytes: number[] = [];
    for (;;) {
      const low = n & 0x7f;
      n >>= 7;
      if ((n === 0 && (low & 0x40) === 0) || (n === -1 && (low & 0x40) !== 0)) return [...bytes, low];
      bytes.push(low | 0x80);
    }
  };
  const vector = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const name = (s: string): number[] => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];

  const I32 = 0x7f;
  const I64 = 0x7e;
  const VOID = 0x40;
  const [block, loop, if_, end, br, brIf] = [0x02, 0x03, 0x04, 0x0b, 0x0c, 0x0d];
  const get = (local: number): number[] => [0x20, local];
  const set = (local: number): number[] => [0x21, local];
  const i32 = (n: number): number[] => [0x41, ...sleb(n)];
  const i64 = (n: number): number[] => [0x42, ...sleb(n)];
  const loadByte = (offset: number): number[] => [0x2d, 0, ...uleb(offset)]; // i32.load8_u
  const loadU64 = (offset: number): number[] => [0x29, 3, ...uleb(offset)]; // i64.load
  const storeU64 = (offset: number): number[] => [0x37, 3, ...uleb(offset)]; // i64.store
  const [i32Add, i32Sub, i32And, i32Or, i32Shl, i32LtU] = [0x6a, 0x6b, 0x71, 0x72, 0x74, 0x49];
  const [i64Eqz, i64And, i64Or, i64Xor, i64Shl, i64ShrU] = [0x50, 0x83, 0x84, 0x85, 0x86, 0x88];
  const [i32WrapI64, i64ExtendI32U] = [0xa7, 0xad];

  // params q, qEnd, shiftA, shiftC; locals d, d1 (i64), a, o1 (i32)
  const [q, qEnd, shiftA, shiftC, d, d1, a, o1] = [0, 1, 2, 3, 4, 5, 6, 7];
  const tableOffset = (shift: number): number[] => [
    ...get(d), ...get(shift), i64ExtendI32U, i64ShrU, i32WrapI64, ...i32(0x7f8), i32And,
  ];
  const isCut = (local: number): number[] => [...get(local), ...i64(SPLIT_MASK), i64And, i64Eqz];
  const advance = (n: number): number[] => [...get(q), ...i32(n), i32Add, ...set(q)];

  // Branch depths: inside the pair loop, 0 = loop start, 1 = "pairs done", 2 = "exit".
  const body = [
    ...vector([[2, I64], [2, I32]]), // locals d, d1: i64; a, o1: i32
    ...i32(0), ...loadU64(WASM_DIGEST), ...set(d),
    block, VOID, // exit
      block, VOID, // pairs done
        loop, VOID, // one pair of bytes per turn
          ...get(qEnd), ...get(q), i32Sub, ...i32(2), i32LtU, brIf, 1, // fewer than 2 left
          ...tableOffset(shiftA), ...set(a),
          ...get(q), ...loadByte(0), ...i32(3), i32Shl, ...set(o1),
          // d1 = OUT8[o1] ⊕ b1 ⊕ (d << 8) ⊕ MOD[a]
          ...get(o1), ...loadU64(WASM_OUT8),
          ...get(q), ...loadByte(64), i64ExtendI32U, i64Xor,
          ...get(d), ...i64(8), i64Shl, i64Xor,
          ...get(a), ...loadU64(WASM_MOD), i64Xor,
          ...set(d1),
          // d = OUT16[o1] ⊕ OUT8[o2] ⊕ (b1 << 8 | b2) ⊕ (d << 16) ⊕ (MOD[c] ⊕ MOD16[a])
          ...get(o1), ...loadU64(WASM_OUT16),
          ...get(q), ...loadByte(1), ...i32(3), i32Shl, ...loadU64(WASM_OUT8), i64Xor,
          ...get(q), ...loadByte(64), ...i32(8), i32Shl, ...get(q), ...loadByte(65), i32Or, i64ExtendI32U, i64Xor,
          ...get(d), ...i64(16), i64Shl, i64Xor,
          ...tableOffset(shiftC), ...loadU64(WASM_MOD),
          ...get(a), ...loadU64(WASM_MOD16), i64Xor,
          i64Xor,
          ...set(d),
          ...isCut(d1), if_, VOID, // cut after the first byte of the pair
            ...get(d1), ...set(d), ...advance(1), br, 3, // (depth + 1 inside the if)
          end,
          ...advance(2),
          ...isCut(d), brIf, 2,
          br, 0,
        end,
      end,
      // an odd last byte: d ^= OUT[o]; d = (d << 8 | b) ⊕ MOD[top byte]
      ...get(q), ...get(qEnd), i32LtU, if_, VOID,
        ...get(d), ...get(q), ...loadByte(0), ...i32(3), i32Shl, ...loadU64(WASM_OUT), i64Xor, ...set(d),
        ...tableOffset(shiftA), ...loadU64(WASM_MOD),
        ...get(d), ...i64(8), i64Shl, ...get(q), ...loadByte(64), i64ExtendI32U, i64Or, i64Xor,
        ...set(d),
        ...advance(1),
      end,
    end,
    ...i32(0), ...get(d), ...storeU64(WASM_DIGEST),
    ...get(q),
    end,
  ];

  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, vector([[0x60, ...vector([[I32], [I32], [I32], [I32]]), ...vector([[I32]])]])), // type
    ...section(3, vector([[0]])), // function 0 has type 0
    ...section(5, vector([[0x00, ...uleb(WASM_PAGES)]])), // memory
    ...section(7, vector([[...name('memory'), 0x02, 0], [...name('scan'), 0x00, 0]])), // exports
    ...section(10, vector([[...uleb(body.length), ...body]])), // code
  ]);
}

function joinHalves(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

// ---------------------------------------------------------------------------------------------

export interface ChunkerOptions {
  /**
   * 'wasm' (the default when WebAssembly is available and the degree is at least 19) or 'js'.
   * Both give identical chunks; 'js' is slower.
   */
  engine?: ChunkerEngine;
}

/**
 * Streaming chunker for one file at a time. Feed the file's bytes in buffers of any size; the
 * boundaries do not depend on how the input is split.
 */
export class Chunker {
  readonly polynomial: Polynomial;
  readonly engine: ChunkerEngine;
  readonly #t: ChunkerTables;
  readonly #scan: Scan;

  /** Bytes of the current chunk still to take without hashing. */
  #skip = SKIP_SIZE;
  /** Length of the current chunk so far. */
  #count = 0;
  /** Our digest (see the header comment) as int32 halves [high, low]. */
  readonly #digest = new Int32Array(2);
  /**
   * [0, 64): the 64 bytes of the current chunk before the next byte to hash (zeros when hashing
   * starts); [64, 128): room for the first bytes of the next buffer, so that the scan can find
   * every byte leaving the window 64 positions back.
   */
  readonly #head = new Uint8Array(2 * WINDOW_SIZE);
  #cutHi = 0;
  #cutLo = 0;

  constructor(pol: Polynomial, options: ChunkerOptions = {}) {
    this.polynomial = pol;
    this.#t = tablesFor(pol);
    const wasmUsable = this.#t.wasm !== undefined && getWasmEngine() !== null;
    const engine = options.engine ?? (wasmUsable ? 'wasm' : 'js');
    if (engine !== 'wasm' && engine !== 'js') throw new InvalidInputError(`unknown chunker engine ${String(engine)}`);
    if (engine === 'wasm' && !wasmUsable) {
      const why = this.#t.wasm === undefined ? `polynomials of degree ${this.#t.degree}` : 'this runtime (no WebAssembly)';
      throw new UnsupportedError(`the wasm chunker engine is not available for ${why}`);
    }
    this.engine = engine;
    this.#scan = engine === 'wasm' ? scanWasm : scanJs;
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

    const scan = this.#scan;
    const t = this.#t;
    const digest = this.#digest;
    const head = this.#head;
    const count0 = this.#count;
    // Bytes up to `stop` may be hashed; a chunk reaching MAX_SIZE is cut at its last byte.
    const stop = Math.min(end, start + (MAX_SIZE - count0));
    // A cut is allowed once the chunk holds MIN_SIZE bytes, that is, after byte firstCut − 1
    // at the earliest; this is at most 64 bytes in.
    const firstCut = start + Math.max(1, MIN_SIZE - count0);

    // The first (up to) 64 bytes, scanned in `head` after the 64 bytes that leave the window.
    const headLen = Math.min(WINDOW_SIZE, stop - start);
    for (let i = 0; i < headLen; i++) head[WINDOW_SIZE + i] = buf[start + i];
    let h = WINDOW_SIZE;
    do {
      h = scan(head, h, WINDOW_SIZE + headLen, digest, t);
    } while (h < WINDOW_SIZE + headLen && start + (h - WINDOW_SIZE) < firstCut); // too early to cut
    let j = start + (h - WINDOW_SIZE);
    // A scan that ends early stopped at a mask match; one that ends at its stop may have too.
    let maskCut = h < WINDOW_SIZE + headLen || (j >= firstCut && (digest[1] & SPLIT_MASK) === 0);

    // The rest, where the byte leaving the window is in buf itself.
    if (!maskCut && j < stop) {
      j = scan(buf, j, stop, digest, t);
      maskCut = j < stop || (digest[1] & SPLIT_MASK) === 0;
    }

    if (maskCut || count0 + (j - start) === MAX_SIZE) {
      this.#cutHi = digest[0];
      this.#cutLo = digest[1];
      this.#startChunk();
      return j;
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
export function chunkAll(
  pol: Polynomial,
  data: Uint8Array,
  options?: ChunkerOptions,
): Array<{ start: number; length: number; cut: bigint }> {
  const chunker = new Chunker(pol, options);
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
