// Imported first by main.ts, before the rest of the CLI runs: when `stowage` is run directly, the
// process replaces itself (process.execve: same PID, file descriptors and environment) with one
// started with a small young generation for the main thread. V8 sizes that only at start-up
// (v8.setFlagsFromString has no effect on a running heap), and with many small files the main
// thread's garbage grows it to 64 MiB per semi-space: measured here, a 20 000-file backup peaks
// at 345 MiB RSS by default and at 261 MiB with --max-semi-space-size=1, at the same CPU time.
// The worker threads get the same through `resourceLimits`. A flag given by the user (on the
// command line or in NODE_OPTIONS) is left alone; STOWAGE_NODE_REEXEC=0 turns this off.
// Only commands that go through many files or blobs do it: the second start parses the CLI's
// modules again (~0.1–0.2 s here), which a short command like `snapshots` should not pay. An
// argument that merely looks like such a command (a path named "backup") costs that start-up only.
// The second start also gets MALLOC_ARENA_MAX=2 (unless the environment sets it): glibc gives each
// thread that allocates (file workers, libuv's pool, V8's helpers) an arena of its own, which
// keeps freed memory resident; with two the same 20 000-file backup peaked at 169–173 MiB where it
// peaked at 176–190 with the default (bench/README.md, "Issue 17, small-file backup"), and glibc's
// mmap and trim thresholds fixed (MALLOC_MMAP_THRESHOLD and MALLOC_TRIM_THRESHOLD below).
import { realpathSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

/** The main thread's semi-space in MiB (V8's default grows to 64 here). */
export const MAIN_SEMI_SPACE_MIB = 1;

const FLAG = '--max-semi-space-size';

/**
 * V8 flags of the re-executed process besides the semi-space: `--optimize-for-size` makes V8 grow
 * its heaps less eagerly (and collect sooner), in every thread; a 20 000-file backup peaked
 * ~25 MiB lower with it, for 5–10% more CPU time (more collections, leaner compiled code;
 * bench/README.md, "Issue 17, small-file backup"). STOWAGE_NODE_REEXEC=0 runs without it.
 */
export const REEXEC_FLAGS: readonly string[] = ['--optimize-for-size'];

/** glibc arenas for the re-executed process (glibc's default is 8 per core). */
export const MALLOC_ARENAS = '2';

/**
 * glibc's mmap threshold for the re-executed process, in bytes: just above the 1 MiB pieces that
 * packs are read in (restore, check, copy, prune), so they come from the heap and are used again
 * once freed, while bigger blocks (ranges, index files) get mappings of their own and leave no
 * freed memory behind. Left alone, glibc raises it after a big block is freed (up to 32 MiB) and
 * keeps that much more resident; at its 128 KiB default every piece was a fresh mapping whose
 * pages the kernel faulted in and zeroed: 0.8–1.1 million page faults per GiB restored or checked
 * (restic: 70 000), 2.7 s of system time for a 1 GiB `check --read-data`. With this threshold
 * and {@link MALLOC_TRIM_THRESHOLD}: check 4.5 → 3.2 s, restore 4.1 → 3.4 s, backup 4.9 → 4.6 s,
 * peak RSS +1–4 MiB (bench/README.md, "Issue 17: page faults and glibc's thresholds").
 */
export const MALLOC_MMAP_THRESHOLD = String(1024 * 1024 + 128 * 1024);

/**
 * glibc's trim threshold for the re-executed process, in bytes: how much freed memory at the top
 * of a heap stays there before it is given back (setting either threshold stops glibc from
 * raising both). 32 MiB, so that pieces freed and taken again at the top of the heap are not
 * given back and faulted in again each time; what stays is bounded by the few pieces in flight.
 */
export const MALLOC_TRIM_THRESHOLD = String(32 * 1024 * 1024);

/**
 * The environment of the re-executed process: `env` with {@link MALLOC_ARENAS},
 * {@link MALLOC_MMAP_THRESHOLD} and {@link MALLOC_TRIM_THRESHOLD}, each unless it sets its own.
 */
export function reexecEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  out.MALLOC_ARENA_MAX ??= MALLOC_ARENAS;
  out.MALLOC_MMAP_THRESHOLD_ ??= MALLOC_MMAP_THRESHOLD;
  out.MALLOC_TRIM_THRESHOLD_ ??= MALLOC_TRIM_THRESHOLD;
  return out;
}

/** Commands that make garbage per file or blob (the others are short). */
const HEAVY = new Set(['backup', 'restore', 'check', 'prune', 'forget', 'copy', 'repair', 'stats', 'dump', 'find', 'diff', 'ls']);

/** Whether this process should re-execute itself with {@link FLAG} (exported for tests). */
export function wantsReexec(argv: readonly string[], execArgv: readonly string[], env: NodeJS.ProcessEnv, mainPath: string): boolean {
  if (env.STOWAGE_NODE_REEXEC === '0') return false;
  if (execArgv.some((a) => a.startsWith(FLAG) || a.startsWith('--max_semi_space_size'))) return false;
  if (/--max[-_]semi[-_]space[-_]size/.test(env.NODE_OPTIONS ?? '')) return false;
  if (!argv.slice(2).some((a) => HEAVY.has(a))) return false;
  try {
    return realpathSync(argv[1] ?? '') === realpathSync(mainPath);
  } catch {
    return false;
  }
}

const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
if (isMainThread && typeof execve === 'function' && process.platform !== 'win32') {
  const main = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './main.ts' : './main.js', import.meta.url));
  if (wantsReexec(process.argv, process.execArgv, process.env, main)) {
    try {
      const flags = [`${FLAG}=${MAIN_SEMI_SPACE_MIB}`, ...REEXEC_FLAGS.filter((f) => !process.execArgv.includes(f))];
      execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)], reexecEnv(process.env));
    } catch {
      // Not possible here (a sandbox that forbids exec): run with V8's default.
    }
  }
}
