#!/usr/bin/env node
// The `stowage` command: restic's flags, environment and exit codes, on the Stowage library.
import './node-flags.ts';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { StowageError, InvalidInputError, RepositoryNotFoundError, WrongPasswordError, AbortedError } from '../errors.ts';
import { LockedError } from '../repository/lock.ts';
import { parseArgs, Flags, FlagError, formatHelp, parseDuration, type FlagSpec } from './args.ts';
import { commandLoader } from './commands/lazy.ts';
import { cliLogLevel, exitWith, type CommandContext } from './context.ts';
import { consoleLogger, type LogLevel } from '../logger.ts';
import { ProgressReporter, progressIntervalFromEnv } from './progress.ts';
import { versionLine } from './commands/version.ts';
import { checkedPassword, goTrimSpace, readTextFile, resolvePassword } from './secrets.ts';

export const EXIT = { ok: 0, error: 1, partial: 3, noRepository: 10, locked: 11, wrongPassword: 12, interrupted: 130 } as const;

export const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'repo', short: 'r', kind: 'string', arg: 'REPOSITORY', help: 'repository to use (default: $RESTIC_REPOSITORY)' },
  { name: 'repository-file', kind: 'string', arg: 'FILE', help: 'file to read the repository location from ($RESTIC_REPOSITORY_FILE)' },
  { name: 'password-file', short: 'p', kind: 'string', arg: 'FILE', help: 'file to read the password from ($RESTIC_PASSWORD_FILE)' },
  { name: 'password-command', kind: 'string', arg: 'CMD', help: 'command that prints the password ($RESTIC_PASSWORD_COMMAND)' },
  { name: 'insecure-no-password', kind: 'bool', help: 'use an empty password for the repository, must be passed to every command (insecure)' },
  { name: 'key-hint', kind: 'string', arg: 'KEY', help: 'key ID to try first ($RESTIC_KEY_HINT)' },
  { name: 'json', kind: 'bool', help: 'print machine-readable JSON' },
  { name: 'quiet', short: 'q', kind: 'bool', help: 'print only errors' },
  { name: 'verbose', short: 'v', kind: 'bool', counter: true, help: 'print more detail (--verbose=N: restic\'s levels, any N > 0 is on)' },
  { name: 'no-lock', kind: 'bool', help: 'do not lock the repository (read-only commands)' },
  { name: 'retry-lock', kind: 'string', arg: 'DURATION', help: 'retry to lock the repository for this long (e.g. 5m)' },
  { name: 'as-of', kind: 'string', arg: 'TIME', help: 'read the repository as it was at TIME (RFC 3339), read-only, from object versions (S3 versions, B2 file versions, GCS generations, Azure blob versions)' },
  { name: 'no-cache', kind: 'bool', help: 'do not use a local cache' },
  { name: 'cache-dir', kind: 'string', arg: 'DIR', help: 'set the cache folder (default: $RESTIC_CACHE_DIR, $XDG_CACHE_HOME/stowage, ~/.cache/stowage)' },
  { name: 'cleanup-cache', kind: 'bool', help: 'remove caches not used for 30 days' },
  { name: 'compression', kind: 'string', arg: 'MODE', help: 'compression mode: auto, off, fastest, better, max ($RESTIC_COMPRESSION)' },
  { name: 'pack-size', kind: 'string', arg: 'MiB', help: 'target pack size in MiB ($RESTIC_PACK_SIZE)' },
  { name: 'option', short: 'o', kind: 'list', arg: 'KEY=VALUE', help: 'backend option, e.g. s3.connections=10 (repeatable)' },
  { name: 'cacert', kind: 'list', arg: 'FILE', help: 'PEM file of a CA to trust for TLS (repeatable; default: $RESTIC_CACERT)' },
  { name: 'insecure-tls', kind: 'bool', help: 'skip TLS certificate verification (testing only)' },
  { name: 'max-memory', kind: 'string', arg: 'SIZE', help: 'memory for backup, restore and check --read-data to fit in, e.g. 256M: sizes workers, pack buffers, connections ($STOWAGE_MAX_MEMORY; default: the container\'s cgroup limit)' },
  { name: 'limit-upload', kind: 'string', arg: 'KiB/s', help: 'limit uploads to this rate' },
  { name: 'limit-download', kind: 'string', arg: 'KiB/s', help: 'limit downloads to this rate' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show help' },
  { name: 'version', kind: 'bool', help: 'print version information and exit' },
];

async function usage(): Promise<string> {
  const { COMMANDS } = await import('./commands/index.ts');
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(12)} ${c.summary}`).join('\n');
  return `stowage — encrypted, deduplicated backups in restic's repository format\n\nUsage: stowage [flags] COMMAND [args]\n\nCommands:\n${cmds}\n\n` +
    `Run "stowage COMMAND --help" for a command's flags.\n\n` + formatHelp('stowage [flags] COMMAND', 'Global flags:', GLOBAL_FLAGS).split('\n').slice(4).join('\n');
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  // The command is the first argument that is not a flag (or a flag's value).
  let cmdIndex = -1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) {
      cmdIndex = i;
      break;
    }
    const spec = GLOBAL_FLAGS.find((f) => a === `--${f.name}` || a === `-${f.short}`);
    if (spec && spec.kind !== 'bool') i++;
  }
  if (cmdIndex < 0) {
    if (argv.includes('--version')) {
      process.stdout.write(versionLine() + '\n');
      return EXIT.ok;
    }
    process.stdout.write(await usage());
    return argv.includes('--help') || argv.includes('-h') ? EXIT.ok : EXIT.error;
  }
  const name = argv[cmdIndex]!;
  const load = commandLoader(name);
  if (!load) {
    process.stderr.write(`unknown command "${name}" for "stowage"\nRun 'stowage --help' for usage.\n`);
    return EXIT.error;
  }
  const cmd = await load();
  const specs = [...GLOBAL_FLAGS, ...cmd.flags];
  let flags: Flags;
  try {
    flags = new Flags(parseArgs([...argv.slice(0, cmdIndex), ...argv.slice(cmdIndex + 1)], specs));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\nRun 'stowage ${name} --help' for usage.\n`);
    return EXIT.error;
  }
  if (flags.bool('help')) {
    process.stdout.write(formatHelp(`stowage ${name} ${cmd.usage}`, cmd.summary, [...cmd.flags, ...GLOBAL_FLAGS]));
    return EXIT.ok;
  }
  if (flags.bool('version')) {
    process.stdout.write(versionLine() + '\n');
    return EXIT.ok;
  }
  let logLevel: LogLevel | 'silent';
  try {
    logLevel = cliLogLevel({ quiet: flags.bool('quiet'), verbose: flags.bool('verbose'), env });
  } catch (e) {
    process.stderr.write(`Fatal: ${(e as Error).message}\n`);
    return EXIT.error;
  }
  const controller = new AbortController();
  // As restic: one line on stderr, then the command stops cleanly (locks removed, nothing
  // half-written visible) and exits 130.
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\rsignal ${sig === 'SIGINT' ? 'interrupt' : 'terminated'} received, cleaning up\n`);
    controller.abort(new AbortedError('interrupted'));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // The status line of the running command, if any: taken off the terminal before other output.
  let status: ProgressReporter | undefined;
  const err = (s: string): void => {
    status?.clear();
    process.stderr.write(s);
  };
  const ctx: CommandContext = {
    flags,
    env,
    signal: controller.signal,
    json: flags.bool('json'),
    quiet: flags.bool('quiet'),
    verbose: flags.bool('verbose'),
    verbosity: flags.bool('quiet') ? 0 : flags.count('verbose'),
    out: (s) => {
      status?.clear();
      process.stdout.write(s);
    },
    err,
    logger: consoleLogger(logLevel, { write: (line) => err(line + '\n') }),
    progress: (operation) => {
      status?.finish();
      status = new ProgressReporter({ operation, json: ctx.json, quiet: ctx.quiet, jsonOut: (line) => process.stdout.write(line), intervalMs: progressIntervalFromEnv(env) });
      return status;
    },
    repoLocation: () => repoLocation(flags, env),
    password: () => password(flags, env),
    retryLock: () => {
      const d = flags.string('retry-lock');
      return d ? parseDuration(d) : 0;
    },
  };
  try {
    return await cmd.run(ctx);
  } catch (e) {
    status?.finish();
    return reportError(e, ctx);
  } finally {
    status?.finish();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function reportError(e: unknown, ctx: CommandContext): number {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof WrongPasswordError) return exitWith(ctx, EXIT.wrongPassword, `Fatal: ${msg}`);
  if (e instanceof RepositoryNotFoundError) return exitWith(ctx, EXIT.noRepository, `Fatal: ${msg}; create one with "stowage init"`);
  if (e instanceof LockedError) return exitWith(ctx, EXIT.locked, `Fatal: unable to create lock in backend: ${msg}\nthe "unlock" command can remove stale locks`);
  if (e instanceof AbortedError) return exitWith(ctx, EXIT.interrupted, `Fatal: ${msg}`);
  if (e instanceof FlagError) return exitWith(ctx, EXIT.error, msg);
  if (e instanceof StowageError) return exitWith(ctx, EXIT.error, `Fatal: ${msg}`);
  return exitWith(ctx, EXIT.error, `Fatal: ${msg}${ctx.verbose && e instanceof Error ? '\n' + e.stack : ''}`);
}


function repoLocation(flags: Flags, env: NodeJS.ProcessEnv): string {
  const r = flags.string('repo') ?? env.RESTIC_REPOSITORY;
  const f = flags.string('repository-file') ?? env.RESTIC_REPOSITORY_FILE;
  if (r && f) throw new InvalidInputError('Options -r and --repository-file are mutually exclusive, please specify only one');
  if (r) return r;
  if (f) return goTrimSpace(readTextFile(f));
  throw new InvalidInputError('Please specify repository location (-r or --repository-file, or $RESTIC_REPOSITORY)');
}

function password(flags: Flags, env: NodeJS.ProcessEnv): string {
  const pw = resolvePassword(flags.string('password-file') ?? env.RESTIC_PASSWORD_FILE, flags.string('password-command') ?? env.RESTIC_PASSWORD_COMMAND, env.RESTIC_PASSWORD);
  return checkedPassword(pw, flags.bool('insecure-no-password'), 'insecure-no-password');
}

function invokedDirectly(): boolean {
  try {
    return pathToFileURL(realpathSync(process.argv[1] ?? '')).href === import.meta.url;
  } catch {
    return false;
  }
}
if (invokedDirectly()) {
  // `stowage ls latest | head`: once the reader has gone, output is dropped and the command ends
  // as it would have (a backup still finishes and releases its lock) instead of crashing.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      stream.write = () => true;
    });
  }
  let finished = false;
  main(process.argv.slice(2)).then((code) => {
    finished = true;
    process.exitCode = code;
  });
  // Node ends a process whose event loop has nothing left to do even while a command still waits
  // (a wait that nothing will end: a bug). That must not look like success.
  process.on('exit', () => {
    if (finished || process.exitCode) return;
    process.stderr.write('Fatal: internal error: the command stopped before it finished (a wait that nothing ends); what it had not yet written was not written. Please report this.\n');
    process.exitCode = EXIT.error;
  });
}
