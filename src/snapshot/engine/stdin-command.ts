// A command whose standard output is backed up as one file (restic's --stdin-from-command),
// e.g. a database dump. It is run without a shell. Its output is only as good as its exit status,
// so `exited` is awaited after the last byte: a dump that fails half-way must fail the backup.
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { CommandFailedError } from '../../errors.ts';

/** How much of the command's standard error is kept for the error (its end). */
export const STDERR_TAIL_BYTES = 4096;
/** How long a command gets to end after SIGTERM before it is killed. */
const KILL_GRACE_MS = 5000;

/** A started command: its output to read, then its exit to await. */
export interface RunningCommand {
  /** The command's standard output. */
  stdout: Readable;
  /** Resolves when the command ended with status 0; rejects with CommandFailedError otherwise. */
  exited: Promise<void>;
  /** Ends the command if it still runs (SIGTERM, then SIGKILL); true when it had to. */
  kill(): boolean;
}

/**
 * Starts `command` with `args` (no shell, standard input empty) and keeps the end of its
 * standard error; `filename` only names the file in the error.
 */
export function startCommand(opts: {
  command: string;
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
  filename: string;
  onStderr?: (line: string) => void;
}): RunningCommand {
  const child = spawn(opts.command, opts.args ?? [], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let tail = Buffer.alloc(0);
  let partialLine = '';
  child.stderr.on('data', (d: Buffer) => {
    tail = Buffer.concat([tail, d]);
    if (tail.length > STDERR_TAIL_BYTES) tail = tail.subarray(tail.length - STDERR_TAIL_BYTES);
    if (opts.onStderr) {
      const lines = (partialLine + d.toString('utf8')).split('\n');
      partialLine = lines.pop()!;
      for (const line of lines) opts.onStderr(line);
    }
  });
  let ended = false;
  const exited = new Promise<void>((resolve, reject) => {
    const fail = (exitCode: number | null, signal: NodeJS.Signals | null, cause?: unknown): void => {
      reject(new CommandFailedError({ command: opts.command, filename: opts.filename, exitCode, signal, stderr: tail.toString('utf8') }, { cause }));
    };
    child.once('error', (e) => {
      ended = true;
      fail(null, null, e);
    });
    // 'close': exited and its output read to the end (stderr's last line included).
    child.once('close', (code, signal) => {
      ended = true;
      if (partialLine && opts.onStderr) opts.onStderr(partialLine);
      if (code === 0) resolve();
      else fail(code, signal);
    });
  });
  exited.catch(() => undefined); // read by the caller after the output; not unhandled meanwhile
  return {
    stdout: child.stdout,
    exited,
    kill: () => {
      if (ended || child.exitCode !== null || child.signalCode !== null) return false;
      if (!child.kill('SIGTERM')) return false; // never started, or gone already
      const hard = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
      hard.unref();
      child.once('close', () => clearTimeout(hard));
      return true;
    },
  };
}
