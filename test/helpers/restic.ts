// Runs the real restic binaries the interop tests compare Stowage against.
//
// Two versions are required: Debian 12's restic 0.14 (the oldest writer of repository
// format v2 we support) and restic 0.19 (built by .ci/install-tools.sh). CI must exercise
// both, so a missing binary is an error, never a skip.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import { AbortedError, InvalidInputError, NotFoundError, StowageError } from '../../src/errors.ts';
import { parseGoTime } from '../../src/repository/gotime.ts';
import { createKeyFile, openKeyFile, parseKeyFile } from '../../src/repository/keyfile.ts';

export type ResticName = '0.14' | '0.19';

export interface ResticBinary {
  name: ResticName;
  bin: string;
}

const LOCATIONS: { name: ResticName; envVar: string; fallback: string }[] = [
  { name: '0.14', envVar: 'STOWAGE_RESTIC_014', fallback: '/usr/bin/restic' },
  { name: '0.19', envVar: 'STOWAGE_RESTIC_019', fallback: '/var/cache/stowage/bin/restic' },
];

let found: ResticBinary[] | undefined;

/**
 * Both restic binaries, oldest first. Throws if one is missing or reports another version
 * than its name says (e.g. an env var pointing at the wrong build).
 */
export function resticVersions(): ResticBinary[] {
  found ??= LOCATIONS.map(({ name, envVar, fallback }) => {
    const bin = process.env[envVar] || fallback;
    const where = `restic ${name} binary ${bin} (set ${envVar}; .ci/install-tools.sh installs it)`;
    if (!existsSync(bin)) throw new NotFoundError(where);
    const version = resticVersionOf(bin);
    if (!version.startsWith(`${name}.`)) {
      throw new InvalidInputError(`${where} reports version ${version}, expected ${name}.x`);
    }
    return { name, bin };
  });
  return found;
}

/** The binary for one version name. */
export function resticBin(name: ResticName): string {
  const entry = resticVersions().find((r) => r.name === name);
  if (!entry) throw new NotFoundError(`restic ${name} binary`);
  return entry.bin;
}

/** The version `bin version` reports, e.g. "0.19.1". */
export function resticVersionOf(bin: string): string {
  const out = execFileSync(bin, ['version'], { encoding: 'utf8', timeout: 30_000 });
  const m = /^restic (\d+\.\d+\.\d+)/.exec(out);
  if (!m) throw new InvalidInputError(`unexpected output of "${bin} version": ${out.trim()}`);
  return m[1];
}

export interface RunResticOptions {
  /** Repository location (RESTIC_REPOSITORY), e.g. a local directory. */
  repo: string;
  /** Repository password (RESTIC_PASSWORD). */
  password: string;
  /** Extra environment variables; they override the defaults set here. */
  env?: Record<string, string>;
  /** Bytes fed to restic's stdin (e.g. for `backup --stdin`); stdin is closed otherwise. */
  input?: string | Buffer;
  cwd?: string;
  /** Milliseconds before restic is killed and the call fails; default 120 s. */
  timeoutMs?: number;
  /**
   * For `init`: keep the key restic wrote, with the scrypt parameters restic calibrates (about
   * half a second of CPU at every open). By default a repository made by `restic init` in a local
   * folder gets its key re-sealed with cheap parameters instead (see cheapenResticKey).
   */
  keepResticKdf?: boolean;
  /**
   * A restic cache directory to use. Without it restic runs with --no-cache, so no cached
   * index or snapshot can hide what Stowage wrote to the repository.
   */
  cacheDir?: string;
}

export interface ResticResult {
  /** Exit code (restic: 0 ok, 1 fatal, 3 incomplete backup, 10 no repo, 11 locked, 12 wrong password). */
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes, for commands like `cat blob` or `dump` whose output is binary. */
  stdoutBytes: Buffer;
}

// A throwaway RESTIC_CACHE_DIR so nothing is ever written to the user's ~/.cache, even
// by commands that ignore --no-cache.
let scratchCache: string | undefined;
function scratchCacheDir(): string {
  if (!scratchCache) {
    const dir = mkdtempSync(join(tmpdir(), 'stowage-restic-cache-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    scratchCache = dir;
  }
  return scratchCache;
}

function resticEnv(opts: RunResticOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // Inherit the environment minus restic's own settings, so a developer's RESTIC_* cannot
  // leak into a test.
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('RESTIC_') && !k.startsWith('AWS_') && !k.startsWith('GOOGLE_')) env[k] = v;
  }
  env.RESTIC_REPOSITORY = opts.repo;
  env.RESTIC_PASSWORD = opts.password;
  env.RESTIC_CACHE_DIR = opts.cacheDir ?? scratchCacheDir();
  // Stable, parseable output regardless of the machine's locale and terminal.
  env.LC_ALL = 'C.UTF-8';
  env.TZ = 'UTC';
  env.RESTIC_PROGRESS_FPS = '0.016';
  return { ...env, ...opts.env };
}

const runningGroups = new Set<number>();
// A test file that is torn down mid-run must not leave restic processes behind.
process.once('exit', () => {
  for (const group of runningGroups) killGroup(group);
});

function killGroup(group: number): void {
  try {
    process.kill(-group, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/**
 * scrypt parameters for the key of a repository `restic init` made: the smallest restic accepts.
 * restic calibrates its own to ~0.5 s of scrypt on the machine (N=32768, r=8, p≈7 here), which every
 * later restic or Stowage command pays again to open the repository; the tests run restic
 * thousands of times. Opening keys with restic's calibrated parameters stays covered by
 * test/unit/keyfile.test.ts (a key restic wrote) and the tests that pass `keepResticKdf`.
 */
export const CHEAP_KDF = Object.freeze({ N: 1024, r: 8, p: 1 });

/** Where an `init` call puts the repository, if it is a local folder and restic's password is known. */
function localInitTarget(args: readonly string[], opts: RunResticOptions): { dir: string; password: string } | undefined {
  // `init` must be the command, not an option's value: only options (and their values) before it.
  const at = args.indexOf('init');
  if (at < 0 || !args.slice(0, at).every((a, i) => a.startsWith('-') || args[i - 1]?.startsWith('-'))) return undefined;
  const env = opts.env ?? {};
  if (env.RESTIC_REPOSITORY_FILE || env.RESTIC_PASSWORD_FILE || env.RESTIC_PASSWORD_COMMAND) return undefined;
  if (args.some((a) => /^--(repository-file|password-file|password-command)(=|$)/.test(a))) return undefined;
  let repo = env.RESTIC_REPOSITORY ?? opts.repo;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '-r' || args[i] === '--repo') repo = args[i + 1] ?? repo;
    else if (args[i].startsWith('--repo=')) repo = args[i].slice('--repo='.length);
  }
  if (repo.startsWith('local:')) repo = repo.slice('local:'.length);
  else if (/^[a-z0-9]+:/i.test(repo)) return undefined; // a remote backend
  const password = args.includes('--insecure-no-password') ? '' : (env.RESTIC_PASSWORD ?? opts.password);
  return { dir: isAbsolute(repo) ? repo : resolvePath(opts.cwd ?? process.cwd(), repo), password };
}

/**
 * Re-seals the only key of a local repository `restic init` just made with CHEAP_KDF: the same
 * master key, user, host and creation time; the new key file is written before the old one goes.
 */
export async function cheapenResticKey(dir: string, password: string): Promise<void> {
  const keysDir = join(dir, 'keys');
  const names = await readdir(keysDir);
  if (names.length !== 1) return;
  const [old] = names;
  const json = parseKeyFile(await readFile(join(keysDir, old)), old);
  if (json.N === CHEAP_KDF.N && json.r === CHEAP_KDF.r && json.p === CHEAP_KDF.p) return;
  const master = await openKeyFile(password, json, old);
  if (!master) throw new InvalidInputError(`the key restic wrote in ${dir} does not open with the test's password`);
  const kf = await createKeyFile(password, master, {
    params: CHEAP_KDF,
    username: json.username,
    hostname: json.hostname,
    created: parseGoTime(json.created),
  });
  // With the old file's mode (restic's 0400, or 0440 in a group-accessible repository); a
  // temporary name keeps a half-written key unlisted.
  const { mode } = await stat(join(keysDir, old));
  const tmp = join(dir, `.cheap-key-${kf.id}`);
  await writeFile(tmp, kf.bytes, { mode: mode & 0o777 });
  await rename(tmp, join(keysDir, kf.id));
  await unlink(join(keysDir, old));
}

/**
 * Runs `bin args…` against `opts.repo`; resolves with the exit code and output, never rejects on a
 * non-zero exit. A successful `init` of a local repository gets a cheap key (see CHEAP_KDF) unless
 * `opts.keepResticKdf`.
 */
export async function runRestic(bin: string, args: readonly string[], opts: RunResticOptions): Promise<ResticResult> {
  const res = await spawnRestic(bin, args, opts);
  const target = res.code === 0 && !opts.keepResticKdf ? localInitTarget(args, opts) : undefined;
  if (target) await cheapenResticKey(target.dir, target.password);
  return res;
}

function spawnRestic(bin: string, args: readonly string[], opts: RunResticOptions): Promise<ResticResult> {
  const fullArgs = opts.cacheDir ? [...args] : [...args, '--no-cache'];
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const what = `restic ${[...args].slice(0, 2).join(' ')} (${bin})`;
  return new Promise((resolve, reject) => {
    // restic runs in its own process group so a timeout also ends what it started
    // (e.g. a password command) instead of leaving it holding our pipes open.
    const child = spawn(bin, fullArgs, {
      cwd: opts.cwd,
      env: resticEnv(opts),
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const group = child.pid;
    if (group !== undefined) runningGroups.add(group);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (group !== undefined) killGroup(group);
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new StowageError('BACKEND', `${what} could not be started: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (group !== undefined) runningGroups.delete(group);
      const stdoutBytes = Buffer.concat(out);
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) {
        reject(new AbortedError(`${what} timed out after ${timeoutMs / 1000} s; stderr: ${stderr.slice(-2000)}`));
        return;
      }
      resolve({
        code: code ?? 128 + (signal ? osConstants.signals[signal] : 0),
        stdout: stdoutBytes.toString('utf8'),
        stderr,
        stdoutBytes,
      });
    });
    if (opts.input !== undefined && child.stdin) {
      // restic may exit before reading all input (e.g. on a wrong password).
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input);
    }
  });
}

/** Like runRestic, but fails (with restic's stderr in the message) unless restic exits 0. */
export async function resticOk(bin: string, args: readonly string[], opts: RunResticOptions): Promise<ResticResult> {
  const res = await runRestic(bin, args, opts);
  if (res.code !== 0) {
    throw new StowageError('BACKEND', `restic ${args.join(' ')} (${bin}) exited ${res.code}: ${res.stderr.trim().slice(-4000)}`);
  }
  return res;
}

/** Runs a restic command with --json that prints one JSON document (snapshots, ls-less commands, cat config…) and parses it. */
export async function resticJson<T = unknown>(bin: string, args: readonly string[], opts: RunResticOptions): Promise<T> {
  const res = await resticOk(bin, [...args, '--json'], opts);
  try {
    return JSON.parse(res.stdout) as T;
  } catch (e) {
    throw new InvalidInputError(`restic ${args.join(' ')} --json printed no single JSON document: ${res.stdout.slice(0, 500)}`, { cause: e });
  }
}

/**
 * Runs a restic command with --json that prints one JSON object per line (ls, backup,
 * restore, find) and parses every non-empty line.
 */
export async function resticJsonLines<T = unknown>(bin: string, args: readonly string[], opts: RunResticOptions): Promise<T[]> {
  const res = await resticOk(bin, [...args, '--json'], opts);
  return res.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      try {
        return JSON.parse(line) as T;
      } catch (e) {
        throw new InvalidInputError(`restic ${args.join(' ')} --json line ${i + 1} is not JSON: ${line.slice(0, 300)}`, { cause: e });
      }
    });
}
