// Poly1305 (RFC 8439 §2.5) in a small WebAssembly module, assembled below. It replaces a general
// crypto library whose WASM heap cost every thread ~20 MiB and took each message as a copy.
//
// The block function is poly1305-donna's 32-bit form: the accumulator h and the key r in five
// 26-bit limbs, products in i64 (each < 2^59, so nothing overflows). The final reduction mod
// 2^130 − 5 and the addition of s run once per message, in JS.
//
// Every thread has one module instance with one memory: besides the state and a scratch area,
// the memory can hold a workspace that callers use for their own bytes (`workspace`). Bytes
// already in the memory are authenticated where they lie; anything else is copied through the
// scratch area in slices. A thread that asks for a workspace gets a shared memory, which can be
// handed to another thread (the file workers put sealed blobs there for the main thread to pack).

/** The part of the WebAssembly JS API used here (the compile target's lib has no typings for it). */
interface WebAssemblyApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}

const PAGE = 65536;
/** h0..h4 (i64) at 0, r0..r4 at 40, 5·r1..5·r4 at 80; r²'s limbs at 112, 5·r² (1..4) at 152. */
const STATE = 0;
const R2 = 112;
const S2 = 152;
/** One padded final block. */
const PAD = 256;
/** Below this many blocks the two-lane function is not worth its set-up. */
const MIN_PAIRED_BLOCKS = 8;
/** Messages outside the memory pass through here. */
const SCRATCH = 1024;
const SCRATCH_SIZE = 64 * 1024;
/** Callers' workspace starts here (page aligned). */
const WORKSPACE = 2 * PAGE;
/** A shared memory cannot move, so its maximum is reserved (as address space only) up front. */
const MAX_PAGES = 65536;

const MASK26 = 0x3ffffff;
const HIBIT_N = BigInt(1 << 24);

interface Engine {
  memory: WasmMemory;
  bytes: Uint8Array;
  words: Uint32Array;
  blocks: (m: number, end: number, hibit: bigint) => void;
  /** Two blocks per step on two SIMD lanes (even block count, full blocks); absent without SIMD. */
  pairs: ((m: number, end: number) => void) | undefined;
  /** The r whose limbs (and r²'s) are in memory, to skip recomputing them for the same key. */
  keyR: Uint8Array;
  keyR2: boolean;
}

let engine: Engine | null | undefined; // null: no WebAssembly here (node --jitless)
let engineShared = false;

/**
 * This thread's engine. Its memory is private until a workspace is asked for: copies into a
 * SharedArrayBuffer go through V8's slower race-safe copy, so only a thread that shares its
 * memory pays for that.
 */
function getEngine(shared = false): Engine | null {
  if (engine !== undefined && (engineShared || !shared)) return engine;
  engine = null;
  const api = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;
  if (!api) return null;
  // A shared memory cannot move, so its maximum is reserved up front; a private one grows.
  const memory = new api.Memory({ initial: WORKSPACE / PAGE, maximum: MAX_PAGES, shared });
  let exports: Record<string, unknown>;
  try {
    exports = new api.Instance(new api.Module(assembleModule(true, shared)), { env: { memory } }).exports;
  } catch {
    // No WebAssembly SIMD here: the one-lane function alone.
    exports = new api.Instance(new api.Module(assembleModule(false, shared)), { env: { memory } }).exports;
  }
  engine = {
    memory,
    bytes: new Uint8Array(memory.buffer),
    words: new Uint32Array(memory.buffer),
    blocks: exports.blocks as Engine['blocks'],
    pairs: exports.pairs as Engine['pairs'],
    keyR: new Uint8Array(16),
    keyR2: false,
  };
  engine.keyR.fill(0xff); // no key yet
  engineShared = shared;
  return engine;
}

/**
 * A view of `size` bytes of this thread's Poly1305 memory (a SharedArrayBuffer), where messages
 * are authenticated without a copy. Each call returns the same region, grown if needed; a
 * thread has one workspace, and its owner decides how to use it.
 */
export function workspace(size: number): Uint8Array {
  const e = getEngine(true);
  if (!e) {
    if (!fallbackSpace || fallbackSpace.length < size) fallbackSpace = new Uint8Array(new SharedArrayBuffer(size));
    return fallbackSpace.subarray(0, size);
  }
  const need = WORKSPACE + size;
  if (need > e.bytes.length) {
    e.memory.grow(Math.ceil((need - e.bytes.length) / PAGE));
    e.bytes = new Uint8Array(e.memory.buffer);
    e.words = new Uint32Array(e.memory.buffer);
  }
  return new Uint8Array(e.memory.buffer, WORKSPACE, size);
}

/**
 * Poly1305 one-time authenticator of `message` with the 32-byte key r ‖ s (r is clamped here).
 * The message may lie anywhere; bytes inside this thread's workspace are read in place.
 */
export function poly1305(message: Uint8Array, r: Uint8Array, s: Uint8Array): Uint8Array {
  const e = getEngine();
  if (!e) return poly1305BigInt(message, r, s);
  const n = message.length;
  const full = n - (n % 16);
  setKey(e, r, full >= MIN_PAIRED_BLOCKS * 16);
  if (message.buffer === e.memory.buffer) {
    const at = message.byteOffset;
    if (full > 0) absorb(e, at, at + full);
  } else {
    for (let o = 0; o < full; o += SCRATCH_SIZE) {
      const len = Math.min(SCRATCH_SIZE, full - o);
      e.bytes.set(message.subarray(o, o + len), SCRATCH);
      absorb(e, SCRATCH, SCRATCH + len);
    }
  }
  if (full < n) {
    // The last partial block: its bytes, a 1, zeros, and no 2^128 bit.
    e.bytes.fill(0, PAD, PAD + 16);
    e.bytes.set(message.subarray(full), PAD);
    e.bytes[PAD + n - full] = 1;
    e.blocks(PAD, PAD + 16, 0n);
  }
  return finish(e, s);
}

/** Full blocks in [at, end): pairs on the SIMD lanes, an odd first block alone. */
function absorb(e: Engine, at: number, end: number): void {
  const blocks = (end - at) / 16;
  if (!e.pairs || blocks < MIN_PAIRED_BLOCKS) {
    e.blocks(at, end, HIBIT_N);
    return;
  }
  if (blocks % 2 === 1) {
    e.blocks(at, at + 16, HIBIT_N);
    at += 16;
  }
  e.pairs(at, end);
}

/**
 * Puts r's limbs (and 5·r's) into the state and clears h; with `paired`, r²'s too. The r part of
 * restic's keys is the same for every message, so its limbs are kept while r stays the same.
 */
function setKey(e: Engine, r: Uint8Array, paired: boolean): void {
  const w = e.words;
  const base = STATE / 4;
  for (let i = 0; i < 10; i++) w[base + i] = 0; // h = 0
  let same = true;
  for (let i = 0; i < 16; i++) {
    if (e.keyR[i] !== r[i]) {
      same = false;
      break;
    }
  }
  if (!same) {
    e.keyR.set(r.subarray(0, 16));
    e.keyR2 = false;
    setLimbs(e, r);
  }
  if (paired && !e.keyR2) {
    setSquareLimbs(e);
    e.keyR2 = true;
  }
}

/** r² mod 2^130 − 5 in five 26-bit limbs, and 5× limbs 1..4, for the two-lane function. */
function setSquareLimbs(e: Engine): void {
  const w = e.words;
  let r = 0n;
  for (let i = 4; i >= 0; i--) r = (r << 26n) | BigInt(w[(STATE + 40) / 4 + 2 * i]!);
  let sq = (r * r) % ((1n << 130n) - 5n);
  const put = (at: number, v: number) => {
    w[at / 4] = v;
    w[at / 4 + 1] = 0;
  };
  for (let i = 0; i < 5; i++) {
    const limb = Number(sq & 0x3ffffffn);
    sq >>= 26n;
    put(R2 + 8 * i, limb);
    if (i > 0) put(S2 + 8 * (i - 1), limb * 5);
  }
}

function setLimbs(e: Engine, r: Uint8Array): void {
  const le32 = (o: number) => (r[o]! | (r[o + 1]! << 8) | (r[o + 2]! << 16) | (r[o + 3]! << 24)) >>> 0;
  // Clamping folded into the limb masks, as poly1305-donna does.
  const r0 = le32(0) & 0x3ffffff;
  const r1 = (le32(3) >>> 2) & 0x3ffff03;
  const r2 = (le32(6) >>> 4) & 0x3ffc0ff;
  const r3 = (le32(9) >>> 6) & 0x3f03fff;
  const r4 = (le32(12) >>> 8) & 0x00fffff;
  const w = e.words;
  const base = STATE / 4;
  // i64 slots: low word = value, high word = 0.
  const put = (slot: number, v: number) => {
    w[base + 2 * slot] = v;
    w[base + 2 * slot + 1] = 0;
  };
  [r0, r1, r2, r3, r4].forEach((v, i) => put(5 + i, v));
  [r1, r2, r3, r4].forEach((v, i) => put(10 + i, v * 5));
}

/** Fully reduces h mod 2^130 − 5, adds s mod 2^128 and returns the tag. */
function finish(e: Engine, s: Uint8Array): Uint8Array {
  const w = e.words;
  const base = STATE / 4;
  // Limbs are below 2^32 after every block; their high words are zero.
  let h0 = w[base]!;
  let h1 = w[base + 2]!;
  let h2 = w[base + 4]!;
  let h3 = w[base + 6]!;
  let h4 = w[base + 8]!;
  let c = h1 >>> 26; h1 &= MASK26;
  h2 += c; c = h2 >>> 26; h2 &= MASK26;
  h3 += c; c = h3 >>> 26; h3 &= MASK26;
  h4 += c; c = h4 >>> 26; h4 &= MASK26;
  h0 += c * 5; c = h0 >>> 26; h0 &= MASK26;
  h1 += c;
  // g = h + 5 − 2^130; take g when it is not negative (h ≥ p), without a branch.
  let g0 = h0 + 5; c = g0 >>> 26; g0 &= MASK26;
  let g1 = h1 + c; c = g1 >>> 26; g1 &= MASK26;
  let g2 = h2 + c; c = g2 >>> 26; g2 &= MASK26;
  let g3 = h3 + c; c = g3 >>> 26; g3 &= MASK26;
  const g4 = (h4 + c - (1 << 26)) | 0;
  const keepH = g4 >> 31; // −1 when g < 0
  h0 = (h0 & keepH) | (g0 & ~keepH);
  h1 = (h1 & keepH) | (g1 & ~keepH);
  h2 = (h2 & keepH) | (g2 & ~keepH);
  h3 = (h3 & keepH) | (g3 & ~keepH);
  h4 = (h4 & keepH) | (g4 & ~keepH);
  const words = [
    (h0 | (h1 << 26)) >>> 0,
    ((h1 >>> 6) | (h2 << 20)) >>> 0,
    ((h2 >>> 12) | (h3 << 14)) >>> 0,
    ((h3 >>> 18) | (h4 << 8)) >>> 0,
  ];
  const tag = Buffer.allocUnsafe(16);
  let carry = 0;
  for (let i = 0; i < 4; i++) {
    const o = 4 * i;
    const si = (s[o]! | (s[o + 1]! << 8) | (s[o + 2]! << 16) | (s[o + 3]! << 24)) >>> 0;
    const f = words[i]! + si + carry;
    tag.writeUInt32LE(f >>> 0, o);
    carry = f > 0xffffffff ? 1 : 0;
  }
  return tag;
}

let fallbackSpace: Uint8Array | undefined;

/** The same function with bigint arithmetic, for runtimes without WebAssembly (slow, rare). */
function poly1305BigInt(message: Uint8Array, rBytes: Uint8Array, sBytes: Uint8Array): Uint8Array {
  const le = (b: Uint8Array) => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    return v;
  };
  const p = (1n << 130n) - 5n;
  const r = le(rBytes) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
  let h = 0n;
  for (let o = 0; o < message.length; o += 16) {
    const block = message.subarray(o, Math.min(message.length, o + 16));
    h = ((h + le(block) + (1n << BigInt(8 * block.length))) * r) % p;
  }
  let tag = (h + le(sBytes)) & ((1n << 128n) - 1n);
  const out = Buffer.allocUnsafe(16);
  for (let i = 0; i < 16; i++) {
    out[i] = Number(tag & 0xffn);
    tag >>= 8n;
  }
  return out;
}

/**
 * The module: imports env.memory (shared) and exports
 *   blocks(m, end, hibit): absorbs the 16-byte blocks in [m, end) into the state at STATE; hibit
 *     is 2^24 (the 2^128 bit in limb 4) for full blocks and 0 for the padded last block.
 *   pairs(m, end) (with `simd`): the same for an even number of full blocks, two at a time. Lane
 *     A takes blocks 1, 3, 5, …, lane B blocks 2, 4, 6, …, each multiplied by r² per step; the
 *     last step multiplies A by r² and B by r, and the two lanes add up to h. Products are
 *     i64x2.extmul_low_i32x4_u of 26-bit limbs, which stay below 2^59 as in the scalar code.
 */
function assembleModule(simd: boolean, shared: boolean): Uint8Array {
  const uleb = (n: number): number[] => {
    const out: number[] = [];
    do {
      const low = n & 0x7f;
      n >>>= 7;
      out.push(n !== 0 ? low | 0x80 : low);
    } while (n !== 0);
    return out;
  };
  const sleb = (n: number): number[] => {
    const out: number[] = [];
    for (;;) {
      const low = n & 0x7f;
      n = Math.floor(n / 128);
      if ((n === 0 && (low & 0x40) === 0) || (n === -1 && (low & 0x40) !== 0)) return [...out, low];
      out.push(low | 0x80);
    }
  };
  const vector = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const name = (s: string): number[] => [...uleb(s.length), ...[...s].map((ch) => ch.charCodeAt(0))];

  const I32 = 0x7f;
  const I64 = 0x7e;
  const VOID = 0x40;
  const [block, loop, end, br, brIf] = [0x02, 0x03, 0x0b, 0x0c, 0x0d];
  const get = (l: number): number[] => [0x20, l];
  const set = (l: number): number[] => [0x21, l];
  const i32 = (n: number): number[] => [0x41, ...sleb(n)];
  const i64 = (n: number): number[] => [0x42, ...sleb(n)];
  const load32u = (offset: number): number[] => [0x35, 0, ...uleb(offset)]; // i64.load32_u, align 1
  const load64 = (offset: number): number[] => [0x29, 3, ...uleb(offset)];
  const store64 = (offset: number): number[] => [0x37, 3, ...uleb(offset)];
  const [i32Add, i32GeU] = [0x6a, 0x4f];
  const [i64Add, i64Mul, i64And, i64Or, i64ShrU] = [0x7c, 0x7e, 0x83, 0x84, 0x88];

  // params m, end (i32), hibit (i64); locals h0..h4, r0..r4, s1..s4, d0..d4, c (i64)
  const M = 0;
  const END = 1;
  const HI = 2;
  const h = [3, 4, 5, 6, 7];
  const r = [8, 9, 10, 11, 12];
  const s = [0, 13, 14, 15, 16]; // s[0] unused
  const d = [17, 18, 19, 20, 21];
  const C = 22;

  const loadState: number[] = [];
  for (let i = 0; i < 5; i++) loadState.push(...i32(0), ...load64(STATE + 8 * i), ...set(h[i]!));
  for (let i = 0; i < 5; i++) loadState.push(...i32(0), ...load64(STATE + 40 + 8 * i), ...set(r[i]!));
  for (let i = 1; i < 5; i++) loadState.push(...i32(0), ...load64(STATE + 80 + 8 * (i - 1)), ...set(s[i]!));
  const storeState: number[] = [];
  for (let i = 0; i < 5; i++) storeState.push(...i32(0), ...get(h[i]!), ...store64(STATE + 8 * i));

  // h_i += limb i of the block at m
  const absorb: number[] = [];
  const shifts = [0, 2, 4, 6, 8];
  for (let i = 0; i < 5; i++) {
    absorb.push(...get(h[i]!), ...get(M), ...load32u(3 * i));
    if (shifts[i]) absorb.push(...i64(shifts[i]!), i64ShrU);
    if (i < 4) absorb.push(...i64(MASK26), i64And);
    else absorb.push(...get(HI), i64Or);
    absorb.push(i64Add, ...set(h[i]!));
  }
  // d_k = Σ h_i · (r_{k−i} or 5·r_{k−i+5})
  const multiply: number[] = [];
  for (let k = 0; k < 5; k++) {
    for (let i = 0; i < 5; i++) {
      const j = k - i;
      multiply.push(...get(h[i]!), ...get(j >= 0 ? r[j]! : s[j + 5]!), i64Mul);
      if (i > 0) multiply.push(i64Add);
    }
    multiply.push(...set(d[k]!));
  }
  // carry: c = d_k >> 26, h_k = d_k & mask, d_{k+1} += c; then h0 += 5c, and one more step
  const carry: number[] = [];
  for (let k = 0; k < 5; k++) {
    if (k > 0) carry.push(...get(d[k]!), ...get(C), i64Add, ...set(d[k]!));
    carry.push(...get(d[k]!), ...i64(26), i64ShrU, ...set(C));
    carry.push(...get(d[k]!), ...i64(MASK26), i64And, ...set(h[k]!));
  }
  carry.push(...get(h[0]!), ...get(C), ...i64(5), i64Mul, i64Add, ...set(h[0]!));
  carry.push(...get(h[1]!), ...get(h[0]!), ...i64(26), i64ShrU, i64Add, ...set(h[1]!));
  carry.push(...get(h[0]!), ...i64(MASK26), i64And, ...set(h[0]!));

  const body = [
    ...vector([[20, I64]]),
    ...loadState,
    block, VOID,
      loop, VOID,
        ...get(M), ...get(END), i32GeU, brIf, 1,
        ...absorb,
        ...multiply,
        ...carry,
        ...get(M), ...i32(16), i32Add, ...set(M),
        br, 0,
      end,
    end,
    ...storeState,
    end,
  ];

  const functions = [body];
  const types = [[0]];
  const exportList = [[...name('blocks'), 0x00, 0]];
  if (simd) {
    functions.push(assemblePairs(get, set, i32, block, loop, end, br, brIf, i32Add, i32GeU, VOID, uleb, vector));
    types.push([1]);
    exportList.push([...name('pairs'), 0x00, 1]);
  }
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    // type 0: (i32, i32, i64) → (), type 1: (i32, i32) → ()
    ...section(1, vector([[0x60, ...vector([[I32], [I32], [I64]]), ...vector([])], [0x60, ...vector([[I32], [I32]]), ...vector([])]])),
    // import env.memory: initial and maximum pages, shared (flag 3) or not (flag 1)
    ...section(2, vector([[...name('env'), ...name('memory'), 0x02, shared ? 0x03 : 0x01, ...uleb(WORKSPACE / PAGE), ...uleb(MAX_PAGES)]])),
    ...section(3, vector(types)),
    ...section(7, vector(exportList)),
    ...section(10, vector(functions.map((f) => [...uleb(f.length), ...f]))),
  ]);
}

/** The body of pairs(m, end); see assembleModule. */
function assemblePairs(
  get: (l: number) => number[],
  set: (l: number) => number[],
  i32: (n: number) => number[],
  block: number, loop: number, end: number, br: number, brIf: number, i32Add: number, i32GeU: number, VOID: number,
  uleb: (n: number) => number[],
  vector: (items: number[][]) => number[],
): number[] {
  const V128 = 0x7b;
  const simd = (op: number, ...imm: number[]): number[] => [0xfd, ...uleb(op), ...imm];
  const i32Load = (offset: number): number[] => [0x28, 2, ...uleb(offset)];
  const load32Zero = (offset: number): number[] => simd(0x5c, 0, ...uleb(offset)); // v128.load32_zero, align 1
  const load32Lane = (offset: number, lane: number): number[] => simd(0x56, 0, ...uleb(offset), lane);
  const load64Zero = (offset: number): number[] => simd(0x5d, 3, ...uleb(offset));
  const splat32 = simd(0x11);
  const replaceLane32 = (lane: number): number[] => simd(0x1c, lane);
  const extractLane64 = (lane: number): number[] => simd(0x1d, lane);
  const v128Const = (lanes32: number[]): number[] => {
    const bytes: number[] = [];
    for (const v of lanes32) bytes.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
    return simd(0x0c, ...bytes);
  };
  // [a.lo32, b.lo32, a.lo32, b.lo32] from an i64x2 [a, b] (shuffled with itself): the low words
  // into the lanes extmul reads
  const lowWords = simd(0x0d, 0, 1, 2, 3, 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11);
  const and = simd(0x4e);
  const or = simd(0x50);
  const i32x4Add = simd(0xae);
  const i32x4ShrU = simd(0xad);
  const i64x2Add = simd(0xce);
  const i64x2Shl = simd(0xcb);
  const i64x2ShrU = simd(0xcd);
  const extmul = simd(0xde);
  const [i64Add, i64And, i64ShrU, i64Mul] = [0x7c, 0x83, 0x88, 0x7e];
  const i64 = (n: number): number[] => {
    const out: number[] = [0x42];
    for (;;) {
      const low = n & 0x7f;
      n = Math.floor(n / 128);
      if (n === 0 && (low & 0x40) === 0) return [...out, low];
      out.push(low | 0x80);
    }
  };

  // params m, end; v128 locals: h (5: i64x2 limbs), x (5: i32x4 multiplicands), R (5), S (5, 0 unused), d (5), c, t
  const M = 0;
  const END = 1;
  let next = 2;
  const take = (n: number) => Array.from({ length: n }, () => next++);
  const h = take(5);
  const x = take(5);
  const R = take(5);
  const S = take(5);
  const d = take(5);
  const [C, T] = take(2);
  // scalar i64 locals for the final sum
  const hs = take(5);
  const CS = next++;
  const v128Locals = 27;

  const mask26 = v128Const([0x3ffffff, 0x3ffffff, 0x3ffffff, 0x3ffffff]);
  const mask26x2 = v128Const([0x3ffffff, 0, 0x3ffffff, 0]);
  const hibit = v128Const([1 << 24, 1 << 24, 1 << 24, 1 << 24]);

  // x_k = lowWords(h_k) + limb k of blocks m (lane 0) and m + 16 (lane 1)
  const absorbPair: number[] = [];
  const shifts = [0, 2, 4, 6, 8];
  for (let k = 0; k < 5; k++) {
    // load32_lane takes the address below the vector on the stack
    absorbPair.push(...get(M), ...get(M), ...load32Zero(3 * k), ...load32Lane(16 + 3 * k, 1), ...set(T));
    absorbPair.push(...get(T));
    if (shifts[k]) absorbPair.push(...i32(shifts[k]!), ...i32x4ShrU);
    if (k < 4) absorbPair.push(...mask26, ...and);
    else absorbPair.push(...hibit, ...or);
    absorbPair.push(...get(h[k]!), ...get(h[k]!), ...lowWords, ...i32x4Add, ...set(x[k]!));
  }
  // d_k = Σ x_i · (R_{k−i} or S_{k−i+5}), per lane
  const multiply: number[] = [];
  for (let k = 0; k < 5; k++) {
    for (let i = 0; i < 5; i++) {
      const j = k - i;
      multiply.push(...get(x[i]!), ...get(j >= 0 ? R[j]! : S[j + 5]!), ...extmul);
      if (i > 0) multiply.push(...i64x2Add);
    }
    multiply.push(...set(d[k]!));
  }
  // the scalar carry, per lane: h_k = d_k mod 2^26, carries up, the top one times 5 into h_0
  const carry: number[] = [];
  for (let k = 0; k < 5; k++) {
    if (k > 0) carry.push(...get(d[k]!), ...get(C), ...i64x2Add, ...set(d[k]!));
    carry.push(...get(d[k]!), ...i32(26), ...i64x2ShrU, ...set(C));
    carry.push(...get(d[k]!), ...mask26x2, ...and, ...set(h[k]!));
  }
  carry.push(...get(h[0]!), ...get(C), ...i64x2Add, ...get(C), ...i32(2), ...i64x2Shl, ...i64x2Add, ...set(h[0]!));
  carry.push(...get(h[1]!), ...get(h[0]!), ...i32(26), ...i64x2ShrU, ...i64x2Add, ...set(h[1]!));
  carry.push(...get(h[0]!), ...mask26x2, ...and, ...set(h[0]!));

  const body: number[] = [...vector([[v128Locals, V128], [6, 0x7e]])];
  // h: lane A from the state, lane B zero
  for (let k = 0; k < 5; k++) body.push(...i32(0), ...load64Zero(STATE + 8 * k), ...set(h[k]!));
  // R, S: r² in both lanes
  for (let k = 0; k < 5; k++) body.push(...i32(0), ...i32Load(R2 + 8 * k), ...splat32, ...set(R[k]!));
  for (let k = 1; k < 5; k++) body.push(...i32(0), ...i32Load(S2 + 8 * (k - 1)), ...splat32, ...set(S[k]!));
  body.push(...absorbPair, ...get(M), ...i32(32), i32Add, ...set(M));
  body.push(
    block, VOID,
      loop, VOID,
        ...get(M), ...get(END), i32GeU, brIf, 1,
        ...multiply, ...carry, ...absorbPair,
        ...get(M), ...i32(32), i32Add, ...set(M),
        br, 0,
      end,
    end,
  );
  // last step: lane B by r instead of r²
  for (let k = 0; k < 5; k++) body.push(...get(R[k]!), ...i32(0), ...i32Load(STATE + 40 + 8 * k), ...replaceLane32(1), ...set(R[k]!));
  for (let k = 1; k < 5; k++) body.push(...get(S[k]!), ...i32(0), ...i32Load(STATE + 80 + 8 * (k - 1)), ...replaceLane32(1), ...set(S[k]!));
  body.push(...multiply, ...carry);
  // h = lane A + lane B, carried as after a scalar block, back into the state
  for (let k = 0; k < 5; k++) body.push(...get(h[k]!), ...extractLane64(0), ...get(h[k]!), ...extractLane64(1), i64Add, ...set(hs[k]!));
  for (let k = 0; k < 5; k++) {
    if (k > 0) body.push(...get(hs[k]!), ...get(CS), i64Add, ...set(hs[k]!));
    body.push(...get(hs[k]!), ...i64(26), i64ShrU, ...set(CS));
    body.push(...get(hs[k]!), ...i64(0x3ffffff), i64And, ...set(hs[k]!));
  }
  body.push(...get(hs[0]!), ...get(CS), ...i64(5), i64Mul, i64Add, ...set(hs[0]!));
  body.push(...get(hs[1]!), ...get(hs[0]!), ...i64(26), i64ShrU, i64Add, ...set(hs[1]!));
  body.push(...get(hs[0]!), ...i64(0x3ffffff), i64And, ...set(hs[0]!));
  for (let k = 0; k < 5; k++) body.push(...i32(0), ...get(hs[k]!), 0x37, 3, ...uleb(STATE + 8 * k));
  body.push(end);
  return body;
}
