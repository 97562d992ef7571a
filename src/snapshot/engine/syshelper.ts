// Node has no API for extended attributes and sets file times only through a double
// (seconds), which loses the last digits of a nanosecond mtime. Both are single syscalls, so
// fifos and devices need mknod, which Node lacks too. So we ask one long-lived perl process (perl-base is part of every Debian/Ubuntu/RHEL system) to
// make them through perl's `syscall`: llistxattr, lgetxattr, lsetxattr, utimensat, mknodat.
// Requests are pipelined over stdin (hex-encoded fields), answers come back in order.
// Where perl is missing (or cannot start, or the system is not Linux on x64/arm64) the helper
// is unavailable: ready() says so and unavailableReason says why and how to fix it; backup and
// restore then report what they could not preserve once per run (MetadataLoss), times fall back
// to fs.lutimes (about a microsecond) and fifos to coreutils' mkfifo where there is one.
// $STOWAGE_PERL names the perl to run (a path that is not executable turns the helper off).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { lutimes } from 'node:fs/promises';
import { accessSync, constants as fsc, statSync } from 'node:fs';
import { execFile } from 'node:child_process';
import path from 'node:path';
import os from 'node:os';

const SYSCALLS: Record<string, { llistxattr: number; lgetxattr: number; lsetxattr: number; utimensat: number; mknodat: number; lremovexattr: number }> = {
  x64: { llistxattr: 195, lgetxattr: 192, lsetxattr: 189, utimensat: 280, mknodat: 259, lremovexattr: 198 },
  arm64: { llistxattr: 12, lgetxattr: 9, lsetxattr: 6, utimensat: 88, mknodat: 33, lremovexattr: 15 },
};

// AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100. Answers: "OK [fields]" or "ERR errno".
const PERL = String.raw`
use strict; use warnings;
my ($LIST, $GET, $SET, $UTIMENS, $MKNOD, $REMOVE) = @ARGV;
$| = 1;
sub unhex { my $h = shift; return pack('H*', $h); }
sub xattrs {
  my $path = shift;
  my $size = syscall($LIST, $path, 0, 0);
  return (0, $!+0) if $size < 0;
  return (1, []) if $size == 0;
  my $names = "\0" x ($size + 1);
  $size = syscall($LIST, $path, $names, $size);
  return (0, $!+0) if $size < 0;
  my @out;
  for my $name (grep { length } split /\0/, substr($names, 0, $size)) {
    my $vs = syscall($GET, $path, $name, 0, 0);
    next if $vs < 0;
    my $val = "\0" x ($vs + 1);
    $vs = syscall($GET, $path, $name, $val, $vs);
    next if $vs < 0;
    push @out, unpack('H*', $name) . '=' . unpack('H*', substr($val, 0, $vs));
  }
  return (1, \@out);
}
while (my $line = <STDIN>) {
  chomp $line;
  my ($op, @f) = split / /, $line, -1;
  if ($op eq 'L') {
    my ($ok, $list) = xattrs(unhex($f[0]));
    print $ok ? join(' ', 'OK', @$list) . "\n" : "ERR $list\n";
  } elsif ($op eq 'M') {
    # many paths: one field each, "-" for none, "E<errno>", or name=value pairs joined by ","
    my @fields;
    for my $h (@f) {
      my ($ok, $list) = xattrs(unhex($h));
      push @fields, !$ok ? "E$list" : @$list ? join(',', @$list) : '-';
    }
    print join(' ', 'OK', @fields), "\n";
  } elsif ($op eq 'S') {
    my $val = unhex($f[2]);
    my $r = syscall($SET, unhex($f[0]), unhex($f[1]), $val, length($val), 0);
    print $r < 0 ? "ERR " . ($!+0) . "\n" : "OK\n";
  } elsif ($op eq 'R') {
    my $r = syscall($REMOVE, unhex($f[0]), unhex($f[1]));
    print $r < 0 ? "ERR " . ($!+0) . "\n" : "OK\n";
  } elsif ($op eq 'T') {
    my $ts = pack('q4', $f[1], $f[2], $f[3], $f[4]);
    my $r = syscall($UTIMENS, -100, unhex($f[0]), $ts, 0x100);
    print $r < 0 ? "ERR " . ($!+0) . "\n" : "OK\n";
  } elsif ($op eq 'U') {
    # many paths: path as an ms mn per entry; answers one errno (0: done) per entry
    my @res;
    for (my $i = 0; $i + 4 < @f; $i += 5) {
      my $ts = pack('q4', $f[$i+1], $f[$i+2], $f[$i+3], $f[$i+4]);
      my $r = syscall($UTIMENS, -100, unhex($f[$i]), $ts, 0x100);
      push @res, $r < 0 ? ($!+0) : 0;
    }
    print join(' ', 'OK', @res), "\n";
  } elsif ($op eq 'P') {
    print "OK\n";
  } elsif ($op eq 'N') {
    my $r = syscall($MKNOD, -100, unhex($f[0]), $f[1] + 0, $f[2] + 0);
    print $r < 0 ? "ERR " . ($!+0) . "\n" : "OK\n";
  } else { print "ERR 22\n"; }
}
`;

export interface Xattr {
  name: string;
  value: Uint8Array;
}

export class SysHelperError extends Error {
  readonly errno: number;
  /** detail replaces the errno's name in the message (e.g. why the helper is not running). */
  constructor(op: string, path: string, errno: number, detail?: string) {
    const code = detail ?? Object.entries(os.constants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
    super(`${op} ${path}: ${code}`);
    this.errno = errno;
  }
}

const ENOTSUP = os.constants.errno.ENOTSUP ?? 95;
/** Paths per listXattrsMany request, so that no request line gets huge. */
const MANY_PER_REQUEST = 256;
const ENODATA = os.constants.errno.ENODATA ?? 61;
/** What #request answers when there is no helper to ask. */
const UNAVAILABLE = 'UNAVAILABLE';

/** How to get the helper running, appended to every reason it is not. */
const PERL_FIX = 'install perl (Debian/Ubuntu: perl-base, Alpine: apk add perl, RHEL: dnf install perl) or set STOWAGE_PERL to its path';
const PERL_PLACES = ['/usr/bin/perl', '/bin/perl', '/usr/local/bin/perl'];

/** Options of SysHelper.start and systemCapabilities. */
export interface SysHelperOptions {
  /** The perl to run. Default: $STOWAGE_PERL, else the first perl on $PATH, /usr/bin, /bin or /usr/local/bin. */
  perl?: string;
  /** Environment read for STOWAGE_PERL and PATH (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** Whether p is an executable regular file (what spawn can run). */
function executable(p: string): boolean {
  try {
    accessSync(p, fsc.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The first executable `name` on $PATH (then in `extra`), or undefined. */
export function findExecutable(name: string, env: NodeJS.ProcessEnv = process.env, extra: string[] = []): string | undefined {
  const dirs = (env.PATH ?? '').split(path.delimiter).filter((d) => path.isAbsolute(d));
  return [...dirs.map((d) => path.join(d, name)), ...extra].find(executable);
}

/** The perl to run, or why there is none. */
function locatePerl(options: SysHelperOptions): { perl: string } | { reason: string } {
  const env = options.env ?? process.env;
  const wanted = options.perl ?? (env.STOWAGE_PERL || undefined);
  if (wanted !== undefined) {
    return executable(wanted) ? { perl: wanted } : { reason: `perl not found: ${wanted} (from ${options.perl !== undefined ? 'the perl option' : '$STOWAGE_PERL'}) is not an executable file; ${PERL_FIX}` };
  }
  const perl = findExecutable('perl', env, PERL_PLACES);
  return perl ? { perl } : { reason: `perl not found (looked on $PATH and in ${PERL_PLACES.join(', ')}); ${PERL_FIX}` };
}

/**
 * One perl process; call close() when done. Without perl it is unavailable (ready() resolves
 * false): listing xattrs, setting them and mknod then fail with unavailableReason, and setTimes
 * falls back to fs.lutimes.
 */
export class SysHelper {
  readonly #proc: ChildProcessWithoutNullStreams | undefined;
  readonly #queue: Array<(line: string) => void> = [];
  #buf = '';
  #dead: Error | undefined;
  #corked = false;
  #reason: string | undefined;
  readonly #ready: Promise<boolean>;
  /** The perl that runs, when one was found. */
  readonly perl: string | undefined;

  private constructor(proc: ChildProcessWithoutNullStreams | undefined, perl: string | undefined, reason: string | undefined) {
    this.#proc = proc;
    this.perl = perl;
    this.#reason = reason;
    if (!proc) {
      this.#ready = Promise.resolve(false);
      return;
    }
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d: string) => {
      this.#buf += d;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        this.#queue.shift()?.(line);
        if (this.#queue.length === 0) this.#holdLoop(false);
      }
    });
    let started = false;
    const fail = (e: Error) => {
      if (this.#dead) return;
      this.#dead = e;
      // Dead before its first answer: perl is there but cannot run (not executable, broken).
      if (!started) this.#reason = `perl (${perl}) could not be started: ${(e as NodeJS.ErrnoException).code ?? e.message}; ${PERL_FIX}`;
      for (const q of this.#queue.splice(0)) q(`ERR ${os.constants.errno.EIO}`);
      this.#holdLoop(false);
    };
    proc.on('error', fail);
    proc.on('exit', (code, signal) => fail(new Error(`helper exited (${signal ?? `code ${code}`})`)));
    proc.stdin.on('error', () => undefined);
    proc.stderr.resume();
    proc.unref();
    (proc.stdout as unknown as { unref?: () => void }).unref?.();
    (proc.stdin as unknown as { unref?: () => void }).unref?.();
    (proc.stderr as unknown as { unref?: () => void }).unref?.();
    // The first answer says that perl runs and understands the program.
    this.#ready = this.#request('P').then((r) => {
      started = r === 'OK';
      return started;
    });
  }

  /**
   * Starts the helper. Without perl, on a system other than Linux on x64/arm64, or when perl
   * cannot start, it is unavailable (see ready() and unavailableReason).
   */
  static start(options: SysHelperOptions = {}): SysHelper {
    const nums = SYSCALLS[process.arch];
    if (process.platform !== 'linux' || !nums) {
      return new SysHelper(undefined, undefined, `the syscall helper runs on Linux on x64 and arm64 only (this is ${process.platform} on ${process.arch})`);
    }
    const found = locatePerl(options);
    if ('reason' in found) return new SysHelper(undefined, undefined, found.reason);
    const proc = spawn(found.perl, ['-e', PERL, String(nums.llistxattr), String(nums.lgetxattr), String(nums.lsetxattr), String(nums.utimensat), String(nums.mknodat), String(nums.lremovexattr)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new SysHelper(proc, found.perl, undefined);
  }

  /** Resolves true once the helper answers, false when it is unavailable (then unavailableReason says why). */
  ready(): Promise<boolean> {
    return this.#ready;
  }

  /** Whether exact times and xattrs are available (settled once ready() has resolved). */
  get available(): boolean {
    return this.#proc !== undefined && !this.#dead;
  }

  /**
   * Why the helper is unavailable, with how to fix it (settled once ready() has resolved);
   * undefined while it runs.
   */
  get unavailableReason(): string | undefined {
    if (this.available) return undefined;
    return this.#reason ?? `the syscall helper stopped: ${this.#dead?.message ?? 'unknown'}`;
  }

  /**
   * The helper never keeps Node running by itself (it is unref'd), except while an answer is
   * awaited: then its stdout holds the event loop, so that a caller waiting only for the helper
   * (as at the start of a backup) is not left with a loop that ends under it.
   */
  #holdLoop(hold: boolean): void {
    const out = this.#proc?.stdout as unknown as { ref?: () => void; unref?: () => void } | undefined;
    if (hold) out?.ref?.();
    else out?.unref?.();
  }

  /** A request's answer once the helper has started; UNAVAILABLE without it. */
  async #call(line: string): Promise<string> {
    await this.#ready;
    return this.#request(line);
  }

  /** The error of an operation the helper could not run because it is unavailable. */
  #unavailable(op: string, path: string | Buffer): SysHelperError {
    return new SysHelperError(op, String(path), ENOTSUP, `not possible without the syscall helper: ${this.unavailableReason}`);
  }

  #request(line: string): Promise<string> {
    if (!this.#proc || this.#dead) return Promise.resolve(UNAVAILABLE);
    return new Promise((resolve) => {
      if (this.#queue.length === 0) this.#holdLoop(true);
      this.#queue.push(resolve);
      const stdin = this.#proc!.stdin;
      // Requests made in the same tick go out in one write.
      if (!this.#corked) {
        this.#corked = true;
        stdin.cork();
        process.nextTick(() => {
          this.#corked = false;
          stdin.uncork();
        });
      }
      stdin.write(line + '\n');
    });
  }

  /** Extended attributes of a path (not following symlinks); [] when the FS has none. */
  async listXattrs(path: string | Buffer): Promise<Xattr[]> {
    const r = await this.#call(`L ${hex(path)}`);
    if (r === UNAVAILABLE) throw this.#unavailable('listxattr', path);
    if (r.startsWith('ERR')) return xattrsOrThrow(Number(r.slice(4)), path);
    return parseXattrs(r.split(' ').slice(1));
  }

  /**
   * listXattrs for many paths in one request (a folder's entries): one answer per path, in
   * order, an Error where the listing failed.
   */
  async listXattrsMany(paths: ReadonlyArray<string | Buffer>): Promise<Array<Xattr[] | Error>> {
    if (paths.length === 0) return [];
    if (paths.length > MANY_PER_REQUEST) {
      const parts: Array<Promise<Array<Xattr[] | Error>>> = [];
      for (let i = 0; i < paths.length; i += MANY_PER_REQUEST) parts.push(this.listXattrsMany(paths.slice(i, i + MANY_PER_REQUEST)));
      return (await Promise.all(parts)).flat();
    }
    const r = await this.#call(`M ${paths.map(hex).join(' ')}`);
    if (r === UNAVAILABLE) return paths.map((p) => this.#unavailable('listxattr', p));
    if (r.startsWith('ERR')) {
      const errno = Number(r.slice(4));
      return paths.map((p) => errorOrEmpty(errno, p));
    }
    const fields = r.split(' ').slice(1);
    return paths.map((p, i) => {
      const f = fields[i] ?? `E${os.constants.errno.EIO}`;
      if (f === '-') return [];
      if (f.startsWith('E')) return errorOrEmpty(Number(f.slice(1)), p);
      return parseXattrs(f.split(','));
    });
  }

  async setXattr(path: string | Buffer, name: string, value: Uint8Array): Promise<void> {
    const r = await this.#call(`S ${hex(path)} ${hex(name)} ${Buffer.from(value).toString('hex')}`);
    if (r === UNAVAILABLE) throw this.#unavailable('setxattr', path);
    if (r.startsWith('ERR')) throw new SysHelperError('setxattr', String(path), Number(r.slice(4)));
  }

  /** Removes an extended attribute (not following symlinks). */
  async removeXattr(path: string | Buffer, name: string): Promise<void> {
    const r = await this.#call(`R ${hex(path)} ${hex(name)}`);
    if (r === UNAVAILABLE) throw this.#unavailable('removexattr', path);
    if (r.startsWith('ERR')) throw new SysHelperError('removexattr', String(path), Number(r.slice(4)));
  }

  /** Sets atime and mtime with nanosecond precision, never following a symlink. */
  async setTimes(path: string | Buffer, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    if (!(await this.#ready) || !this.available) {
      await lutimes(path, nsToSeconds(atimeNs), nsToSeconds(mtimeNs));
      return;
    }
    const [as, an] = split(atimeNs);
    const [ms, mn] = split(mtimeNs);
    const r = await this.#call(`T ${hex(path)} ${as} ${an} ${ms} ${mn}`);
    if (r === UNAVAILABLE) return lutimes(path, nsToSeconds(atimeNs), nsToSeconds(mtimeNs));
    if (r.startsWith('ERR')) throw new SysHelperError('utimensat', String(path), Number(r.slice(4)));
  }

  /**
   * setTimes for many paths, in the given order (one request per few hundred): an Error for each
   * path whose times could not be set, undefined where they were.
   */
  async setTimesMany(entries: ReadonlyArray<{ path: string | Buffer; atimeNs: bigint; mtimeNs: bigint }>): Promise<Array<Error | undefined>> {
    if (!(await this.#ready) || !this.available) {
      const out: Array<Error | undefined> = [];
      for (const e of entries) out.push(await this.setTimes(e.path, e.atimeNs, e.mtimeNs).then(() => undefined, (err: Error) => err));
      return out;
    }
    const parts: Array<Promise<Array<Error | undefined>>> = [];
    for (let i = 0; i < entries.length; i += MANY_PER_REQUEST) {
      const group = entries.slice(i, i + MANY_PER_REQUEST);
      const fields = group.map((e) => [hex(e.path), ...split(e.atimeNs), ...split(e.mtimeNs)].join(' '));
      parts.push(this.#request(`U ${fields.join(' ')}`).then((r) => {
        const codes = r.startsWith('ERR') ? group.map(() => r.slice(4)) : r.split(' ').slice(1);
        return group.map((e, j) => {
          const errno = Number(codes[j] ?? os.constants.errno.EIO);
          return errno === 0 ? undefined : new SysHelperError('utimensat', String(e.path), errno);
        });
      }));
    }
    return (await Promise.all(parts)).flat();
  }

  /** Creates a fifo or a device node (mode includes the S_IF* type bits; dev is st_rdev). */
  async mknod(path: string | Buffer, mode: number, dev: bigint | number): Promise<void> {
    const r = await this.#call(`N ${hex(path)} ${mode} ${dev}`);
    if (r === UNAVAILABLE) throw this.#unavailable('mknod', path);
    if (r.startsWith('ERR')) throw new SysHelperError('mknod', String(path), Number(r.slice(4)));
  }

  close(): void {
    this.#proc?.stdin.end();
  }
}

/** Metadata that needs the syscall helper (or, for fifos, the helper or coreutils' mkfifo). */
export type MetadataKind = 'xattrs' | 'nanosecond-times' | 'fifos' | 'devices';

/**
 * What a backup or restore could not preserve because the syscall helper (perl) is unavailable;
 * reported once per run, as `metadataLoss` of BackupResult and RestoreResult and as one warning
 * through the repository's logger.
 *
 * - backup: `xattrs` (extended attributes are not read, so the snapshot has none; a backup
 *   cannot tell whether files had any, so this is reported on every backup without the helper);
 * - restore: only what the snapshot held and this restore skipped: `xattrs` (not set),
 *   `nanosecond-times` (times set with fs.lutimes, accurate to about a microsecond),
 *   `fifos` (not created: neither the helper nor a `mkfifo` program), `devices` (not created).
 */
export interface MetadataLoss {
  /** What was not (fully) preserved. */
  kinds: MetadataKind[];
  /**
   * Entries affected, per kind (restore only; a backup cannot know which files had xattrs).
   * For `xattrs`, the number of files and folders whose attributes were not set.
   */
  entries: Partial<Record<MetadataKind, number>>;
  /** Why, and how to fix it (e.g. "perl not found (…); install perl … or set STOWAGE_PERL to its path"). */
  reason: string;
  /** The warning as one line: what was lost, why and how to fix it. */
  message: string;
}

/** What this system can preserve on backup and restore (see systemCapabilities). */
export interface SystemCapabilities {
  /** The perl the syscall helper runs; undefined when the helper is unavailable. */
  perl?: string;
  /** Why the helper is unavailable and how to fix it; undefined when it runs. */
  reason?: string;
  /** Extended attributes are backed up and restored. */
  xattrs: boolean;
  /** File times are restored to the nanosecond (else to about a microsecond). */
  nanosecondTimes: boolean;
  /** How fifos are restored: by the helper, by the `mkfifo` program, or not at all (false). */
  fifos: 'helper' | 'mkfifo' | false;
  /** Block and character devices can be restored: the helper runs and this process is root. */
  devices: boolean;
}

/**
 * What backup and restore can preserve here: Node has no calls for extended attributes, mknod
 * or nanosecond utimes, so Stowage runs one perl process for them (Linux on x64 and arm64).
 * Starts that helper once to see whether it runs, and stops it. `perl` (or $STOWAGE_PERL)
 * names the perl to try.
 */
export async function systemCapabilities(options: SysHelperOptions = {}): Promise<SystemCapabilities> {
  const helper = SysHelper.start(options);
  try {
    const ok = await helper.ready();
    const mkfifo = ok ? undefined : findExecutable('mkfifo', options.env);
    return {
      perl: ok ? helper.perl : undefined,
      reason: ok ? undefined : helper.unavailableReason,
      xattrs: ok,
      nanosecondTimes: ok,
      fifos: ok ? 'helper' : mkfifo ? 'mkfifo' : false,
      devices: ok && process.getuid?.() === 0,
    };
  } finally {
    helper.close();
  }
}

/** Describes a loss in one line: what, how many, why, how to fix. */
export function describeMetadataLoss(operation: 'backup' | 'restore', kinds: MetadataKind[], entries: Partial<Record<MetadataKind, number>>, reason: string): MetadataLoss {
  const count = (k: MetadataKind, one: string, many: string) => {
    const n = entries[k];
    return n === undefined ? '' : ` (${n} ${n === 1 ? one : many})`;
  };
  const parts = kinds.map((k) => {
    switch (k) {
      case 'xattrs':
        return operation === 'backup' ? 'extended attributes are not backed up' : `extended attributes not restored${count(k, 'entry', 'entries')}`;
      case 'nanosecond-times':
        return `times restored to about a microsecond instead of the nanosecond${count(k, 'entry', 'entries')}`;
      case 'fifos':
        return `fifos not created${count(k, 'fifo', 'fifos')}`;
      case 'devices':
        return `device nodes not created${count(k, 'device', 'devices')}`;
    }
  });
  return { kinds, entries, reason, message: `${operation}: ${parts.join('; ')}: ${reason}` };
}

/** Creates a fifo with coreutils' mkfifo (0600), for when the helper is unavailable. */
export function mkfifoProgram(program: string, p: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(program, ['-m', '600', '--', p], { timeout: 30_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`mkfifo: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

function parseXattrs(pairs: string[]): Xattr[] {
  const out: Xattr[] = [];
  for (const f of pairs) {
    const [n, v] = f.split('=');
    out.push({ name: Buffer.from(n!, 'hex').toString('utf8'), value: Buffer.from(v ?? '', 'hex') });
  }
  return out;
}

/** No xattr support (or none there) is an empty list; any other errno is an error. */
function errorOrEmpty(errno: number, path: string | Buffer): Xattr[] | Error {
  if (errno === ENOTSUP || errno === ENODATA) return [];
  return new SysHelperError('listxattr', String(path), errno);
}

function xattrsOrThrow(errno: number, path: string | Buffer): Xattr[] {
  const r = errorOrEmpty(errno, path);
  if (r instanceof Error) throw r;
  return r;
}

function hex(p: string | Buffer): string {
  return (typeof p === 'string' ? Buffer.from(p, 'utf8') : p).toString('hex');
}

function split(ns: bigint): [string, string] {
  let s = ns / 1_000_000_000n;
  let n = ns % 1_000_000_000n;
  if (n < 0n) {
    n += 1_000_000_000n;
    s -= 1n;
  }
  return [s.toString(), n.toString()];
}

function nsToSeconds(ns: bigint): number {
  return Number(ns) / 1e9;
}
