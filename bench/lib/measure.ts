// Runs one child process under GNU time and returns what the kernel accounted for it: CPU user
// and system seconds and peak resident set size (from wait4's rusage, which GNU time prints).
// Wall time is taken here with a monotonic clock, at millisecond resolution (GNU time's %e
// only has centiseconds, which is coarse for a half-second re-backup).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';

export const GNU_TIME = '/usr/bin/time';

export interface Usage {
  wallSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  /** user + system, summed over the process and every child it waited for. */
  cpuSeconds: number;
  peakRssMiB: number;
  exitCode: number;
}

/**
 * Makes sure GNU time is installed, installing the Debian package `time` if it is not.
 * Throws an Error that says what to do when it cannot.
 */
export function ensureGnuTime(log: (s: string) => void): void {
  if (existsSync(GNU_TIME)) return;
  log(`${GNU_TIME} is missing; installing the Debian package "time" …`);
  const r = spawnSync('apt-get', ['install', '-y', 'time'], { stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(GNU_TIME)) {
    throw new Error(`${GNU_TIME} is required to measure CPU time and peak RSS; install it with "apt-get install -y time"`);
  }
}

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  /** The child's stdout and stderr are appended here. */
  logFile: string;
  /** Where GNU time writes its line; overwritten. */
  timeFile: string;
  cwd?: string;
}

/** Runs `command args…` to completion under GNU time. Never throws on a non-zero exit. */
export async function measure(command: string, args: readonly string[], opts: RunOptions): Promise<Usage> {
  rmSync(opts.timeFile, { force: true });
  const log = openSync(opts.logFile, 'a');
  try {
    const t0 = performance.now();
    const exitCode = await new Promise<number>((resolve, reject) => {
      const child = spawn(GNU_TIME, ['-f', '%e %U %S %M %x', '-o', opts.timeFile, command, ...args], {
        env: opts.env,
        cwd: opts.cwd,
        stdio: ['ignore', log, log],
      });
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
    const wallSeconds = (performance.now() - t0) / 1000;
    return { wallSeconds, ...parseTimeFile(readFileSync(opts.timeFile, 'utf8'), exitCode) };
  } finally {
    closeSync(log);
  }
}

/**
 * Reads GNU time's output: `%e %U %S %M %x` on the last line. When the command fails, GNU time
 * writes "Command exited with non-zero status N" (or "Command terminated by signal N") first.
 */
export function parseTimeFile(text: string, exitCode: number): Omit<Usage, 'wallSeconds'> {
  const lines = text.trim().split('\n');
  const fields = lines[lines.length - 1]!.trim().split(/\s+/);
  const [, user, sys, maxRssKiB, status] = fields.map(Number);
  if (fields.length !== 5 || [user, sys, maxRssKiB].some((v) => !Number.isFinite(v))) {
    throw new Error(`unexpected output from ${GNU_TIME}: ${JSON.stringify(text)}`);
  }
  return {
    userSeconds: user!,
    systemSeconds: sys!,
    cpuSeconds: user! + sys!,
    peakRssMiB: maxRssKiB! / 1024,
    exitCode: Number.isFinite(status) && status !== 0 ? status! : exitCode,
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
