// Deterministic benchmark corpora. Every byte follows from fixed keys and seeds, so two machines
// (or two runs) back up exactly the same data:
//   big   : N files of M MiB of AES-256-CTR keystream (incompressible)
//   small : A × B leaf directories with K files each of 1–64 KiB; even-numbered files are
//           text-like (words from a fixed vocabulary, zstd ratio about 3.4), odd ones random
// A corpus is generated once into `<dir>.partial`, renamed into place and described by a
// `<dir>.json` manifest; it is regenerated only when the manifest or the directory is missing.
import { createCipheriv } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';

const MiB = 1024 * 1024;

export interface BigShape {
  kind: 'big';
  files: number;
  mibPerFile: number;
}

export interface SmallShape {
  kind: 'small';
  /** Top-level directories, each holding `inner` leaf directories (names are padded to two digits). */
  outer: number;
  inner: number;
  filesPerLeaf: number;
  /** Largest file in KiB (default 64): sizes are uniform from 1 KiB to this. */
  maxKiB?: number;
}

export type CorpusShape = BigShape | SmallShape;

/** What a generated corpus holds; `path` is the directory to back up. */
export interface Corpus {
  name: string;
  path: string;
  files: number;
  dirs: number;
  bytes: number;
}

export const FULL_BIG: BigShape = { kind: 'big', files: 8, mibPerFile: 128 };
export const FULL_SMALL: SmallShape = { kind: 'small', outer: 20, inner: 20, filesPerLeaf: 50 };
export const QUICK_BIG: BigShape = { kind: 'big', files: 2, mibPerFile: 64 };
export const QUICK_SMALL: SmallShape = { kind: 'small', outer: 20, inner: 20, filesPerLeaf: 5 };
/** `--huge` (issue 17): 10 GiB, the big corpus ten times over (its first 8 files are the big corpus's). */
export const HUGE_BIG: BigShape = { kind: 'big', files: 80, mibPerFile: 128 };
/**
 * `--many` (issue 17): 200 000 files of 1–8 KiB in 2 000 leaf directories of 100 files (20 × 100),
 * about 880 MiB: ten times the small corpus's files in about its bytes, so per-file costs dominate.
 */
export const MANY_SMALL: SmallShape = { kind: 'small', outer: 20, inner: 100, filesPerLeaf: 100, maxKiB: 8 };

/** The directory name encodes the shape, so quick and full corpora live side by side. */
export function corpusName(shape: CorpusShape): string {
  return shape.kind === 'big'
    ? `big-${shape.files}x${shape.mibPerFile}MiB`
    : `small-${shape.outer * shape.inner * shape.filesPerLeaf}files-${shape.outer * shape.inner}dirs${shape.maxKiB !== undefined && shape.maxKiB !== 64 ? `-${shape.maxKiB}KiB` : ''}`;
}

/** Returns the corpus under `root`, generating it first if it is missing or incomplete. */
export function ensureCorpus(root: string, shape: CorpusShape, log: (s: string) => void = () => {}): Corpus {
  const name = corpusName(shape);
  const path = join(root, name);
  const manifest = `${path}.json`;
  if (existsSync(manifest) && existsSync(path)) return JSON.parse(readFileSync(manifest, 'utf8')) as Corpus;

  const partial = `${path}.partial`;
  rmSync(partial, { recursive: true, force: true });
  rmSync(path, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  log(`generating corpus ${name} in ${path} …`);
  const t0 = performance.now();
  const made = shape.kind === 'big' ? writeBig(partial, shape) : writeSmall(partial, shape);
  renameSync(partial, path);
  const corpus: Corpus = { name, path, ...made };
  writeFileSync(manifest, JSON.stringify(corpus, null, 2) + '\n');
  log(`generated ${name}: ${corpus.files} files, ${(corpus.bytes / MiB).toFixed(1)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return corpus;
}

/** AES-256-CTR keystream under a key derived from `seed`; zero IV. */
export function keystream(seed: number, length: number): Buffer {
  const key = Buffer.alloc(32);
  key.writeUInt32LE(seed >>> 0, 0);
  key.write('restic-perf-corpus', 4);
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** xorshift32: small, fast and identical on every platform. */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

const VOCABULARY = (
  'the of and to in is for on that with as by this from be are at or it an was not which have has but were ' +
  'repository snapshot backup restore chunk blob pack index tree data file directory encrypt key nonce ' +
  'config lock prune check forget policy retention hash content size offset length error warning info ' +
  'function return const let var if else while for switch case break continue class import export default ' +
  '0 1 2 3 4 5 6 7 8 9 10 42 100 255 1024 4096 65536 true false null undefined'
).split(' ');

/** Words from the vocabulary separated by spaces, with a newline once a line passes 72 columns. */
export function textLike(seed: number, length: number): Buffer {
  const next = xorshift32(seed);
  const out = Buffer.allocUnsafe(length);
  let i = 0;
  let column = 0;
  while (i < length) {
    const word = VOCABULARY[next() % VOCABULARY.length]!;
    for (let k = 0; k < word.length && i < length; k++) out[i++] = word.charCodeAt(k);
    column += word.length + 1;
    if (i < length) {
      if (column > 72) {
        out[i++] = 10;
        column = 0;
      } else out[i++] = 32;
    }
  }
  return out;
}

function writeBig(dir: string, shape: BigShape): Omit<Corpus, 'name' | 'path'> {
  for (let f = 0; f < shape.files; f++) {
    const fd = openSync(join(dir, `big-${f}.bin`), 'w');
    try {
      // Seeds per MiB are independent of the file size, so a quick corpus is a prefix of the full one.
      for (let c = 0; c < shape.mibPerFile; c++) writeSync(fd, keystream(f * 1000 + c + 1, MiB));
    } finally {
      closeSync(fd);
    }
  }
  return { files: shape.files, dirs: 1, bytes: shape.files * shape.mibPerFile * MiB };
}

function writeSmall(dir: string, shape: SmallShape): Omit<Corpus, 'name' | 'path'> {
  const sizes = xorshift32(12345);
  let n = 0;
  let bytes = 0;
  const maxKiB = shape.maxKiB ?? 64;
  if (!Number.isInteger(maxKiB) || maxKiB < 1) throw new Error(`maxKiB must be a whole number ≥ 1, got ${maxKiB}`);
  for (let a = 0; a < shape.outer; a++) {
    for (let b = 0; b < shape.inner; b++) {
      const leaf = join(dir, `d${String(a).padStart(2, '0')}`, `s${String(b).padStart(2, '0')}`);
      mkdirSync(leaf, { recursive: true });
      for (let k = 0; k < shape.filesPerLeaf; k++, n++) {
        const length = 1024 + (sizes() % ((maxKiB - 1) * 1024 + 1));
        const text = n % 2 === 0;
        const content = text ? textLike(n + 1, length) : keystream(100000 + n, length);
        writeFileSync(join(leaf, `f${String(k).padStart(2, '0')}.${text ? 'txt' : 'bin'}`), content);
        bytes += length;
      }
    }
  }
  return { files: n, dirs: 1 + shape.outer + shape.outer * shape.inner, bytes };
}

// `node bench/corpus.ts [dir] [--quick] [--huge] [--many]` generates the corpora without running the benchmark.
if (import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const root = args.find((a) => !a.startsWith('--')) ?? join(process.env.STOWAGE_BENCH_DIR || '/tmp/stowage-bench', 'corpus');
  const shapes: CorpusShape[] = quick ? [QUICK_BIG, QUICK_SMALL] : [FULL_BIG, FULL_SMALL];
  if (args.includes('--huge')) shapes.push(HUGE_BIG);
  if (args.includes('--many')) shapes.push(MANY_SMALL);
  for (const shape of shapes) {
    const c = ensureCorpus(root, shape, (s) => console.log(s));
    console.log(`${c.name}: ${c.path}, ${c.files} files, ${(c.bytes / MiB).toFixed(1)} MiB`);
  }
}
