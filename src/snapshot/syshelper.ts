// Node has no API for extended attributes and sets file times only through a double
// (seconds), which loses the last digits of a nanosecond mtime. Both are single syscalls, so
// fifos and devices need mknod, which Node lacks too. So we ask one long-lived perl process (perl-base is part of every Debian/Ubuntu/RHEL system) to
// make them through perl's `syscall`: llistxattr, lgetxattr, lsetxattr, utimensat, mknodat.
// Requests are pipelined over stdin (hex-encoded fields), answers come back in order.
// Where perl is missing, xattrs are reported unsupported and times fall back to fs.lutimes.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { lutimes } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';

const SYSCALLS: Record<string, { llistxattr: number; lgetxattr: number; lsetxattr: number; utimensat: number; mknodat: number }> = {
  x64: { llistxattr: 195, lgetxattr: 192, lsetxattr: 189, utimensat: 280, mknodat: 259 },
  arm64: { llistxattr: 12, lgetxattr: 9, lsetxattr: 6, utimensat: 88, mknodat: 33 },
};

// AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100. Answers: "OK [fields]" or "ERR errno".
const PERL = String.raw`
use strict; use warnings;
my ($LIST, $GET, $SET, $UTIMENS, $MKNOD) = @ARGV;
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
  constructor(op: string, path: string, errno: number) {
    const code = Object.entries(os.constants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
    super(`${op} ${path}: ${code}`);
    this.errno = errno;
  }
}

const ENOTSUP = os.constants.errno.ENOTSUP ?? 95;
/** Paths per listXattrsMany request, so that no request line gets huge. */
const MANY_PER_REQUEST = 256;
const ENODATA = os.constants.errno.ENODATA ?? 61;

/** One perl process; call close() when done. */
export class SysHelper {
  readonly #proc: ChildProcessWithoutNullStreams | undefined;
  readonly #queue: Array<(line: string) => void> = [];
  #buf = '';
  #dead: Error | undefined;
  #corked = false;

  private constructor(proc: ChildProcessWithoutNullStreams | undefined) {
    this.#proc = proc;
    if (!proc) return;
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d: string) => {
      this.#buf += d;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        this.#queue.shift()?.(line);
      }
    });
    const fail = (e: Error) => {
      this.#dead = e;
      for (const q of this.#queue.splice(0)) q(`ERR ${os.constants.errno.EIO}`);
    };
    proc.on('error', fail);
    proc.on('exit', () => fail(new Error('helper exited')));
    proc.stdin.on('error', () => undefined);
    proc.unref();
    (proc.stdout as unknown as { unref?: () => void }).unref?.();
    (proc.stdin as unknown as { unref?: () => void }).unref?.();
  }

  /** Starts the helper; without perl (or on an unknown CPU) it runs in fallback mode. */
  static start(): SysHelper {
    const nums = SYSCALLS[process.arch];
    const perl = ['/usr/bin/perl', '/bin/perl', '/usr/local/bin/perl'].find((p) => existsSync(p));
    if (!nums || !perl || process.platform !== 'linux') return new SysHelper(undefined);
    const proc = spawn(perl, ['-e', PERL, String(nums.llistxattr), String(nums.lgetxattr), String(nums.lsetxattr), String(nums.utimensat), String(nums.mknodat)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new SysHelper(proc);
  }

  /** Whether exact times and xattrs are available. */
  get available(): boolean {
    return this.#proc !== undefined && !this.#dead;
  }

  #request(line: string): Promise<string> {
    if (!this.#proc || this.#dead) return Promise.resolve(`ERR ${ENOTSUP}`);
    return new Promise((resolve) => {
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
    const r = await this.#request(`L ${hex(path)}`);
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
    const r = await this.#request(`M ${paths.map(hex).join(' ')}`);
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
    const r = await this.#request(`S ${hex(path)} ${hex(name)} ${Buffer.from(value).toString('hex')}`);
    if (r.startsWith('ERR')) throw new SysHelperError('setxattr', String(path), Number(r.slice(4)));
  }

  /** Sets atime and mtime with nanosecond precision, never following a symlink. */
  async setTimes(path: string | Buffer, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    if (!this.available) {
      await lutimes(path, nsToSeconds(atimeNs), nsToSeconds(mtimeNs));
      return;
    }
    const [as, an] = split(atimeNs);
    const [ms, mn] = split(mtimeNs);
    const r = await this.#request(`T ${hex(path)} ${as} ${an} ${ms} ${mn}`);
    if (r.startsWith('ERR')) throw new SysHelperError('utimensat', String(path), Number(r.slice(4)));
  }

  /**
   * setTimes for many paths, in the given order (one request per few hundred): an Error for each
   * path whose times could not be set, undefined where they were.
   */
  async setTimesMany(entries: ReadonlyArray<{ path: string | Buffer; atimeNs: bigint; mtimeNs: bigint }>): Promise<Array<Error | undefined>> {
    if (!this.available) {
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
    const r = await this.#request(`N ${hex(path)} ${mode} ${dev}`);
    if (r.startsWith('ERR')) throw new SysHelperError('mknod', String(path), Number(r.slice(4)));
  }

  close(): void {
    this.#proc?.stdin.end();
  }
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
