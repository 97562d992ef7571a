// A child process that runs one Stowage operation on a local repository, for tests that kill it
// at random points (crash.test.ts) or cap its memory (hostile.test.ts). Started as
//   node test/reliability/runner.ts '<json spec>'
// it prints "ready" once its modules are loaded (so a kill delay measures the operation, not
// Node's start-up), then "done <json>" on success, or "error <json>" with the error's class, code
// and message. Exit codes: 0 done, 1 a StowageError, 2 any other error.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { flushCompileCache } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StowageError } from '../../src/errors.ts';
import { initCrypto } from '../../src/repository/crypto.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { loadSnapshot } from '../../src/snapshot/engine/select.ts';
import type { BlobId } from '../../src/repository/id.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.resolve(HERE, '../../src');

export type RunnerSpec =
  | { op: 'backup'; repo: string; password: string; paths: string[]; tag: string; hostname: string }
  | { op: 'forget-prune'; repo: string; password: string; keepLast: number; hostname: string }
  | { op: 'copy'; repo: string; password: string; dest: string; destPassword: string; rechunk?: boolean }
  | { op: 'restore'; repo: string; password: string; snapshot: string; target: string }
  | { op: 'check'; repo: string; password: string; readData: boolean };

export type RunnerOp = RunnerSpec['op'];

export interface RunnerResult {
  /** Exit code, or null when killed. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds from "ready" to the end (or the kill); undefined when "ready" never came. */
  sinceReadyMs: number | undefined;
  /** Whether the kill timer fired before the process ended on its own. */
  killed: boolean;
  /** Whether the process outlived `timeoutMs`; `report` then holds Node's diagnostic report of it. */
  timedOut: boolean;
  /** Node's diagnostic report (JS stack, active handles) taken when the process timed out. */
  report?: string;
  /** The JSON after "done" or "error". */
  done?: unknown;
  error?: { name: string; code?: string; message: string; maxRss: number };
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** SIGKILL this many ms after the child printed "ready". */
  killAfterReadyMs?: number;
  /** Give up (SIGKILL, and report it) after this long; default 120 s. */
  timeoutMs?: number;
  /** Extra arguments for node, e.g. ['--max-old-space-size=256']. */
  nodeArgs?: string[];
}

// The children share one compile cache (Node's module compile cache: the type-stripped source
// and V8's code cache, checked against each module's content), so only the first child pays for
// compiling src/: a start takes ~0.1 s of CPU instead of ~0.3 s, twice per kill of a campaign.
let compileCache: string | undefined;
function compileCacheDir(): string {
  if (!compileCache) {
    const dir = mkdtempSync(path.join(tmpdir(), 'stowage-runner-cache-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    compileCache = dir;
  }
  return compileCache;
}

/** Runs one spec in a child process on the same Node binary as the test. */
export function runInChild(spec: RunnerSpec, options: RunOptions = {}): Promise<RunnerResult> {
  return new Promise((resolve, reject) => {
    // On a timeout, SIGUSR2 first makes Node write a report of what the process is stuck on.
    const reportDir = mkdtempSync(path.join(tmpdir(), 'stowage-runner-'));
    const diagnostics = ['--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${reportDir}`];
    const child = spawn(process.execPath, [...diagnostics, ...(options.nodeArgs ?? []), fileURLToPath(import.meta.url), JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', NODE_COMPILE_CACHE: compileCacheDir() },
    });
    let stdout = '';
    let stderr = '';
    let readyAt: number | undefined;
    let killed = false;
    let killer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const timeout = setTimeout(() => {
      timedOut = true;
      child.kill('SIGUSR2');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    }, options.timeoutMs ?? 120_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (readyAt === undefined && /^ready$/m.test(stdout)) {
        readyAt = performance.now();
        if (options.killAfterReadyMs !== undefined) {
          killer = setTimeout(() => {
            killed = child.exitCode === null && child.signalCode === null;
            child.kill('SIGKILL');
          }, options.killAfterReadyMs);
        }
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      clearTimeout(killer);
      const result: RunnerResult = {
        code, signal, killed: killed && signal === 'SIGKILL' && !timedOut, timedOut, stdout, stderr,
        sinceReadyMs: readyAt === undefined ? undefined : performance.now() - readyAt,
      };
      if (timedOut) {
        const reports = readdirSync(reportDir);
        if (reports.length) result.report = readFileSync(path.join(reportDir, reports[0]!), 'utf8');
      }
      rmSync(reportDir, { recursive: true, force: true });
      const done = /^done (.*)$/m.exec(stdout);
      if (done) result.done = JSON.parse(done[1]!);
      const error = /^error (.*)$/m.exec(stdout);
      if (error) result.error = JSON.parse(error[1]!) as RunnerResult['error'];
      resolve(result);
    });
  });
}

// ---- the child's side -----------------------------------------------------------------------

async function openRepo(dir: string, password: string): Promise<Repository> {
  return Repository.open(new LocalBackend(dir), { password });
}

async function run(spec: RunnerSpec): Promise<unknown> {
  switch (spec.op) {
    case 'backup': {
      const repo = await openRepo(spec.repo, spec.password);
      const r = await backup(await repo.loadIndex(), { paths: spec.paths, tags: [spec.tag], hostname: spec.hostname });
      return { snapshotId: r.snapshotId };
    }
    case 'forget-prune': {
      const { forget } = (await import(pathToFileURL(path.join(SRC, 'snapshot/operations/forget.ts')).href)) as typeof import('../../src/snapshot/operations/forget.ts');
      const repo = await openRepo(spec.repo, spec.password);
      // maxUnused 0 makes every partly used pack a repack candidate: the riskiest path.
      const r = await forget(repo, { policy: { last: spec.keepLast }, filter: { hosts: [spec.hostname] }, prune: { maxUnused: 0 } });
      return { removed: r.removed, packsRemoved: r.prune?.packsRemoved ?? 0, packsWritten: r.prune?.packsWritten ?? 0 };
    }
    case 'copy': {
      const { copy } = (await import(pathToFileURL(path.join(SRC, 'snapshot/operations/copy.ts')).href)) as typeof import('../../src/snapshot/operations/copy.ts');
      const src = await openRepo(spec.repo, spec.password);
      const dst = await openRepo(spec.dest, spec.destPassword);
      const r = await copy(await src.loadIndex(), await dst.loadIndex(), { rechunk: spec.rechunk });
      return { copied: r.copied.length, skipped: r.skipped.length, rechunked: r.rechunked };
    }
    case 'restore': {
      const repo = await openRepo(spec.repo, spec.password);
      const entry = await loadSnapshot(repo, spec.snapshot);
      const r = await restore(await repo.loadIndex(), entry.snapshot.tree as BlobId, { target: spec.target });
      return { files: r.filesRestored, bytes: r.bytesRestored, maxRss: peakRss() };
    }
    case 'check': {
      const repo = await openRepo(spec.repo, spec.password);
      const r = await checkRepository(repo, { readData: spec.readData });
      return { ok: r.ok, errors: r.errors.map((e) => e.message), maxRss: peakRss() };
    }
  }
}

/** Peak resident memory of this process so far, in bytes. */
function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

function errorJson(e: unknown): { name: string; code?: string; message: string; maxRss: number } {
  const maxRss = peakRss();
  if (e instanceof StowageError) return { name: e.name, code: e.code, message: e.message, maxRss };
  if (e instanceof Error) return { name: e.name, message: e.message, maxRss };
  return { name: typeof e, message: String(e), maxRss };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await initCrypto();
  const spec = JSON.parse(process.argv[2] ?? '{}') as RunnerSpec;
  // Written now, not at exit: most children are killed.
  flushCompileCache();
  process.stdout.write('ready\n');
  try {
    const result = await run(spec);
    process.stdout.write(`done ${JSON.stringify(result ?? null)}\n`);
    process.exitCode = 0;
  } catch (e) {
    process.stdout.write(`error ${JSON.stringify(errorJson(e))}\n`);
    process.exitCode = e instanceof StowageError ? 1 : 2;
  }
}
