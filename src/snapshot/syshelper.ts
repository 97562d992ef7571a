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
while (my $line = <STDIN>) {
  chomp $line;
  my ($op, @f) = split / /, $line, -1;
  if ($op eq 'L') {
    my $path = unhex($f[0]);
    my $size = syscall($LIST, $path, 0, 0);
    if ($size < 0) { print "ERR " . ($!+0) . "\n"; next; }
    my $names = "\0" x ($size + 1);
    $size = syscall($LIST, $path, $names, $size);
    if ($size < 0) { print "ERR " . ($!+0) . "\n"; next; }
    my @out;
    for my $name (grep { length } split /\0/, substr($names, 0, $size)) {
      my $vs = syscall($GET, $path, $name, 0, 0);
      if ($vs < 0) { next; }
      my $val = "\0" x ($vs + 1);
      $vs = syscall($GET, $path, $name, $val, $vs);
      if ($vs < 0) { next; }
      push @out, unpack('H*', $name) . '=' . unpack('H*', substr($val, 0, $vs));
    }
    print join(' ', 'OK', @out), "\n";
  } elsif ($op eq 'S') {
    my $val = unhex($f[2]);
    my $r = syscall($SET, unhex($f[0]), unhex($f[1]), $val, length($val), 0);
    print $r < 0 ? "ERR " . ($!+0) . "\n" : "OK\n";
  } elsif ($op eq 'T') {
    my $ts = pack('q4', $f[1], $f[2], $f[3], $f[4]);
    my $r = syscall($UTIMENS, -100, unhex($f[0]), $ts, 0x100);
    print $r < 0 ? "ERR " . ($!+0) . "\n" : "OK\n";
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
const ENODATA = os.constants.errno.ENODATA ?? 61;

/** One perl process; call close() when done. */
export class SysHelper {
  readonly #proc: ChildProcessWithoutNullStreams | undefined;
  readonly #queue: Array<(line: string) => void> = [];
  #buf = '';
  #dead: Error | undefined;

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
      this.#proc!.stdin.write(line + '\n');
    });
  }

  /** Extended attributes of a path (not following symlinks); [] when the FS has none. */
  async listXattrs(path: string | Buffer): Promise<Xattr[]> {
    const r = await this.#request(`L ${hex(path)}`);
    if (r.startsWith('ERR')) {
      const errno = Number(r.slice(4));
      if (errno === ENOTSUP || errno === ENODATA) return [];
      throw new SysHelperError('listxattr', String(path), errno);
    }
    const out: Xattr[] = [];
    for (const f of r.split(' ').slice(1)) {
      const [n, v] = f.split('=');
      out.push({ name: Buffer.from(n!, 'hex').toString('utf8'), value: Buffer.from(v ?? '', 'hex') });
    }
    return out;
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

  /** Creates a fifo or a device node (mode includes the S_IF* type bits; dev is st_rdev). */
  async mknod(path: string | Buffer, mode: number, dev: bigint | number): Promise<void> {
    const r = await this.#request(`N ${hex(path)} ${mode} ${dev}`);
    if (r.startsWith('ERR')) throw new SysHelperError('mknod', String(path), Number(r.slice(4)));
  }

  close(): void {
    this.#proc?.stdin.end();
  }
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
