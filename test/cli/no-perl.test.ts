// The CLI on a system without perl: every perl is hidden in a private mount namespace
// (`unshare -m`, a bind mount of /dev/null over it, so it is no longer an executable file), as
// on a distroless or Alpine image. Skipped where unshare or mount is not permitted.
//
// What README's "Requirements" promises without perl, checked here: backup still makes the
// snapshot and prints one warning that xattrs are not backed up; restore exits 0, prints one
// warning naming what it could not restore (xattrs, nanosecond times), why (perl not found) and
// how to fix it, never ENOTSUP; contents are byte-exact, the fifo is made with mkfifo, times are
// within a microsecond.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, runCli, type CliResult } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

/** Every perl the helper could find, resolved (hiding the target hides each link to it). */
function perls(): string[] {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => path.isAbsolute(d)), '/usr/bin', '/bin', '/usr/local/bin'];
  return [...new Set(dirs.map((d) => path.join(d, 'perl')).filter((p) => existsSync(p)).map((p) => realpathSync(p)))];
}

const HIDE = 'for p in "$STOWAGE_TEST_HIDE"; do mount --bind /dev/null "$p" || exit 99; done; exec "$@"';

/** The CLI in a mount namespace where every perl is /dev/null. */
function runWithoutPerl(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const hidden = perls();
    const script = HIDE.replace('"$STOWAGE_TEST_HIDE"', hidden.map((p) => `'${p}'`).join(' ') || '');
    const child = spawn('unshare', ['-m', 'sh', '-c', script, 'sh', process.execPath, CLI, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Why this test cannot run here, or undefined. */
function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux mount namespaces';
  if (perls().length === 0) return 'no perl to hide (the unit tests cover a missing perl)';
  const probe = spawnSync('unshare', ['-m', 'sh', '-c', `mount --bind /dev/null '${perls()[0]}' && test ! -x '${perls()[0]}'`], { stdio: 'pipe' });
  if (probe.error || probe.status !== 0) return `unshare -m with a bind mount is not permitted here (${probe.error?.message ?? probe.stderr.toString().trim()})`;
  for (const tool of ['setfattr', 'mkfifo', 'touch']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  return undefined;
}

test('backup and restore without perl: one warning each naming what is lost and why; no crash; contents exact', { timeout: 300_000 }, async (t) => {
  const reason = cannotRun();
  if (reason) {
    t.skip(reason);
    return;
  }
  const work = await tmpDir('stowage-cli-noperl');
  const src = path.join(work, 'src');
  await mkdir(src);
  const content = Buffer.alloc(200_000);
  for (let i = 0; i < content.length; i++) content[i] = (i * 31 + 7) & 0xff;
  await writeFile(path.join(src, 'data.bin'), content);
  await writeFile(path.join(src, 'tagged.txt'), 'tagged');
  try {
    execFileSync('setfattr', ['-n', 'user.stowage', '-v', 'hello', path.join(src, 'tagged.txt')], { stdio: 'pipe' });
  } catch (e) {
    t.skip(`the temporary folder has no user xattrs: ${(e as Error).message}`);
    return;
  }
  execFileSync('mkfifo', [path.join(src, 'pipe')]);
  await writeFile(path.join(src, 'ns.txt'), 'ns');
  execFileSync('touch', ['-h', '-d', '@1700000000.123456789', path.join(src, 'ns.txt')]);
  const env = { RESTIC_REPOSITORY: path.join(work, 'repo'), RESTIC_PASSWORD: 'no perl' };
  assert.equal((await runCli(['init'], { env })).code, 0);
  // With perl: the snapshot holds the xattr, and nothing is said about perl.
  const withPerl = await runCli(['backup', src], { env });
  assert.equal(withPerl.code, 0, withPerl.stderr);
  assert.doesNotMatch(withPerl.stderr, /perl/);

  // Backup without perl: a snapshot all the same, one warning.
  const b = await runWithoutPerl(['backup', '--force', src], env);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /snapshot [0-9a-f]{8} saved/);
  const bWarns = b.stderr.split('\n').filter((l) => l.startsWith('warn:'));
  assert.equal(bWarns.length, 1, b.stderr);
  assert.match(bWarns[0]!, /^warn: backup: extended attributes are not backed up: perl not found .*install perl/);
  assert.doesNotMatch(b.stderr, /ENOTSUP/);

  // Restore (of the snapshot made with perl) without perl.
  const target = path.join(work, 'restored');
  const r = await runWithoutPerl(['restore', withPerl.stdout.match(/snapshot ([0-9a-f]{8}) saved/)![1]!, '--target', target], env);
  assert.equal(r.code, 0, r.stderr);
  const rWarns = r.stderr.split('\n').filter((l) => l.startsWith('warn:'));
  assert.equal(rWarns.length, 1, r.stderr);
  assert.match(rWarns[0]!, /^warn: restore: extended attributes not restored \(1 entry\); times restored to about a microsecond instead of the nanosecond \(\d+ entries\): perl not found .*install perl .* or set STOWAGE_PERL/);
  assert.doesNotMatch(r.stderr, /ENOTSUP|ignoring error|Error:/);
  const out = path.join(target, src);
  assert.deepEqual(await readFile(path.join(out, 'data.bin')), content);
  assert.equal(await readFile(path.join(out, 'tagged.txt'), 'utf8'), 'tagged');
  assert.ok((await lstat(path.join(out, 'pipe'))).isFIFO(), 'the fifo is made by mkfifo');
  const mtime = (await lstat(path.join(out, 'ns.txt'), { bigint: true })).mtimeNs;
  const off = mtime - 1_700_000_000_123_456_789n;
  assert.ok(off > -1000n && off < 1000n, `mtime within a microsecond (off by ${off} ns)`);
});
