// The source repository of the prune benchmark: one restic 0.19.1 repository (compression auto)
// holding one snapshot per version of a deterministic, changing data set. Each measured prune
// works on a copy of it, so both tools prune exactly the same repository.
//
// The data set: `dirs` directories of `filesPerDir` files of 1 KiB to `maxKiB` KiB (one blob each;
// half text, half random, like the small corpus). Within every directory the files take turns:
//   hot    (2 in 10): rewritten in every version, like logs or a database
//   churn  (3 in 10): rewritten once, in one of the even versions 2, 4, 6, 8, 10
//   stable (5 in 10): never change
// The benchmark forgets the older half (versions 1–5). Then version 1's packs are partly used
// (its hot files and 3/5 of its churn files are gone), versions 2 and 4 leave partly used packs
// (hot: gone, churn: kept), and versions 3 and 5, which changed only hot files, leave wholly
// unused packs. With restic's default --max-unused 5 %, prune both deletes and repacks.
//
// Like the corpora, the repository is built once into `<dir>.partial`, renamed into place and
// described by a `<dir>.json` manifest; it is rebuilt only when the manifest or the directory is
// missing. `npx node bench/prune-repo.ts [--quick]` builds it without running the benchmark.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keystream, textLike, xorshift32 } from './corpus.ts';

const MiB = 1024 * 1024;

export interface PruneShape {
  dirs: number;
  filesPerDir: number;
  maxKiB: number;
  versions: number;
}

/** What the manifest records; `repo` is the repository to copy. */
export interface PruneRepo {
  name: string;
  repo: string;
  password: string;
  /** Snapshot IDs, oldest (version 1) first. */
  snapshots: string[];
  /** The older half: what the benchmark forgets before every prune. */
  forget: string[];
  keep: string[];
  /** Bytes of one version of the data set. */
  dataBytes: number;
  files: number;
  /** The repository on disk: pack files and all bytes. */
  packs: number;
  bytes: number;
}

// ~250 MiB per version, ~0.8 GiB backed up over the 10 versions; quick: a quarter of that.
export const FULL_PRUNE: PruneShape = { dirs: 20, filesPerDir: 80, maxKiB: 320, versions: 10 };
export const QUICK_PRUNE: PruneShape = { dirs: 20, filesPerDir: 20, maxKiB: 320, versions: 10 };

export function pruneRepoName(s: PruneShape): string {
  return `prune-${s.versions}v-${s.dirs * s.filesPerDir}files-${s.maxKiB}KiB`;
}

type Kind = 'hot' | 'churn' | 'stable';

function kindOf(k: number): Kind {
  const slot = k % 10;
  return slot < 2 ? 'hot' : slot < 5 ? 'churn' : 'stable';
}

/** The even version (2, 4, …, 10) in which churn file n is rewritten. */
function churnVersion(n: number): number {
  return 2 + 2 * (Math.floor(n / 10) % 5);
}

/** Which generation of its content file n holds in `version` (0 = the original). */
function generation(kind: Kind, n: number, version: number): number {
  if (kind === 'hot') return version;
  if (kind === 'churn') return version >= churnVersion(n) ? churnVersion(n) : 0;
  return 0;
}

interface FileSpec {
  path: string;
  n: number;
  kind: Kind;
  length: number;
  text: boolean;
}

function fileList(dataDir: string, s: PruneShape): FileSpec[] {
  const sizes = xorshift32(424242);
  const files: FileSpec[] = [];
  for (let d = 0; d < s.dirs; d++) {
    for (let k = 0; k < s.filesPerDir; k++) {
      const n = d * s.filesPerDir + k;
      const text = n % 2 === 0;
      const path = join(dataDir, `d${String(d).padStart(2, '0')}`, `f${String(k).padStart(3, '0')}.${text ? 'txt' : 'bin'}`);
      files.push({ path, n, kind: kindOf(k), length: 1024 + (sizes() % ((s.maxKiB - 1) * 1024 + 1)), text });
    }
  }
  return files;
}

/** Writes every file whose content differs from the previous version; returns how many. */
function writeVersion(files: readonly FileSpec[], version: number): number {
  let written = 0;
  for (const f of files) {
    const g = generation(f.kind, f.n, version);
    if (version > 1 && g === generation(f.kind, f.n, version - 1)) continue;
    // Distinct seeds per file and generation, apart from the corpora's.
    const seed = 0x50000000 + f.n * 16 + g;
    mkdirSync(join(f.path, '..'), { recursive: true });
    // A new inode, as an editor or a database would leave it, so the change cannot be missed.
    writeFileSync(`${f.path}.tmp`, f.text ? textLike(seed, f.length) : keystream(seed, f.length));
    renameSync(`${f.path}.tmp`, f.path);
    written++;
  }
  return written;
}

function restic(bin: string, env: NodeJS.ProcessEnv, args: string[]): string {
  const r = spawnSync(bin, args, { env, encoding: 'utf8', maxBuffer: 256 * MiB });
  if (r.status !== 0) throw new Error(`restic ${args.join(' ')} failed (${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
  return r.stdout;
}

/** Pack files and total bytes of a local repository. */
export function repoSize(repo: string): { packs: number; bytes: number } {
  let packs = 0;
  let bytes = 0;
  for (const e of readdirSync(repo, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    bytes += statSync(join(e.parentPath, e.name)).size;
    if (e.parentPath.startsWith(join(repo, 'data'))) packs++;
  }
  return { packs, bytes };
}

/** Returns the prune source repository under `root`, building it with `resticBin` if needed. */
export function ensurePruneRepo(root: string, shape: PruneShape, resticBin: string, password: string, log: (s: string) => void = () => {}): PruneRepo {
  const name = pruneRepoName(shape);
  const dir = join(root, name);
  const manifest = `${dir}.json`;
  if (existsSync(manifest) && existsSync(dir)) return JSON.parse(readFileSync(manifest, 'utf8')) as PruneRepo;

  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  log(`building the prune repository ${name} in ${dir} (${shape.versions} restic backups) …`);
  const t0 = performance.now();
  const repo = join(partial, 'repo');
  const dataDir = join(partial, 'data');
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RESTIC_')) env[k] = v;
  Object.assign(env, { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: password });

  restic(resticBin, env, ['init', '--no-cache']);
  const files = fileList(dataDir, shape);
  const snapshots: string[] = [];
  for (let v = 1; v <= shape.versions; v++) {
    const written = writeVersion(files, v);
    // Fixed host and times: the same snapshots on every machine, one day apart, in order.
    const time = `2025-01-${String(v).padStart(2, '0')} 12:00:00`;
    const out = restic(resticBin, env, ['backup', '--no-cache', '--json', '--compression', 'auto', '--host', 'stowage-bench', '--time', time, dataDir]);
    const summary = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((m) => m.message_type === 'summary');
    if (!summary) throw new Error(`restic backup of version ${v} printed no summary`);
    // The first backup sees every file as new, later ones exactly the files just rewritten.
    const seen = v === 1 ? summary.files_new : summary.files_changed;
    if (seen !== written) throw new Error(`restic backup of version ${v} saw ${String(seen)} new/changed files, ${written} were written`);
    snapshots.push(String(summary.snapshot_id));
    log(`  version ${v}: ${written} files written, snapshot ${String(summary.snapshot_id).slice(0, 8)}`);
  }
  rmSync(dataDir, { recursive: true, force: true });
  renameSync(partial, dir);

  const half = Math.floor(shape.versions / 2);
  const result: PruneRepo = {
    name,
    repo: join(dir, 'repo'),
    password,
    snapshots,
    forget: snapshots.slice(0, half),
    keep: snapshots.slice(half),
    dataBytes: files.reduce((sum, f) => sum + f.length, 0),
    files: files.length,
    ...repoSize(join(dir, 'repo')),
  };
  writeFileSync(manifest, JSON.stringify(result, null, 2) + '\n');
  log(`built ${name}: ${result.packs} packs, ${(result.bytes / MiB).toFixed(1)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

// `node bench/prune-repo.ts [--quick]` builds the repository without running the benchmark.
if (import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const quick = process.argv.includes('--quick');
  const root = join(process.env.STOWAGE_BENCH_DIR || '/tmp/stowage-bench', 'prune');
  const r = ensurePruneRepo(root, quick ? QUICK_PRUNE : FULL_PRUNE, '/var/cache/stowage/bin/restic', 'stowage-bench', (s) => console.log(s));
  console.log(`${r.name}: ${r.repo}, ${r.snapshots.length} snapshots, ${r.packs} packs, ${(r.bytes / MiB).toFixed(1)} MiB`);
}
