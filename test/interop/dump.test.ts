// `stowage dump` of folders against restic 0.19.1 on one repository restic wrote: the tar of a
// folder, of the whole snapshot and of `ID:subfolder` is byte for byte restic's (entry names,
// types, modes, owners, rounded times, PAX records for long and non-ASCII names, long link
// targets, xattrs and ACLs; hard links as copies; the folder's own fifo as an empty file, deeper
// ones left out); the zip has restic's entries, header fields and contents (only the deflated
// bytes differ: Go's compressor is not zlib); errors, exit codes and --target as restic's; the
// library's dump() streams the same tar and stops on abort.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmod, chown, link, mkdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { AbortedError } from '../../src/errors.ts';
import { Repository, withIndex } from '../../src/repository/repository.ts';
import { dump } from '../../src/snapshot/operations/dump.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'dump interop';
const work = await tmpDir('stowage-dump');
const src = path.join(work, 'src');
const repoDir = path.join(work, 'repo');
const out = path.join(work, 'out');
const ropts = { repo: repoDir, password: PASSWORD, cwd: work };
const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC' };
const restic = resticBin('0.19');

const deep = path.join(src, 'sub', 'd'.repeat(60), 'e'.repeat(30)); // a path ustar splits into prefix and name
await mkdir(deep, { recursive: true });
await mkdir(path.join(src, 'empty'));
await writeFile(path.join(src, 'a.txt'), 'hello\n');
await writeFile(path.join(src, 'empty.txt'), '');
await writeFile(path.join(deep, 'f.txt'), 'deep\n');
await writeFile(path.join(src, 'sub', 'n'.repeat(110) + '.txt'), 'long name\n');
await writeFile(path.join(src, 'naïve ü €.txt'), 'ü\n');
const big = Buffer.alloc(3 * 1024 * 1024);
for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
await writeFile(path.join(src, 'sub', 'big.bin'), big);
await link(path.join(src, 'a.txt'), path.join(src, 'hard.txt'));
await symlink('a.txt', path.join(src, 'link'));
await symlink('/nowhere/' + 'z'.repeat(120), path.join(src, 'sub', 'longlink'));
execFileSync('mkfifo', [path.join(src, 'fifo'), path.join(src, 'sub', 'deepfifo')]);
await chmod(path.join(src, 'sub', 'big.bin'), 0o4755);
await chmod(path.join(src, 'empty'), 0o1777);
await chmod(path.join(src, 'empty.txt'), 0o400);
if (process.getuid?.() === 0) await chown(path.join(src, 'sub', 'big.bin'), 1234, 2345);
await utimes(path.join(src, 'a.txt'), new Date('2020-01-02T03:04:05.700Z'), new Date('2020-01-02T03:04:05.700Z')); // rounds up
await utimes(path.join(src, 'empty.txt'), new Date('1965-06-07T08:09:10Z'), new Date('1965-06-07T08:09:10Z')); // PAX mtime
spawnSync('setfattr', ['-n', 'user.note', '-v', 'hi there', path.join(src, 'a.txt')]);
// user::rw- user:1000:r-- group::r-- mask::r-- other::---
const acl = '0x02000000' + '0100060000000000' + '02000400e8030000' + '0400040000000000' + '1000040000000000' + '2000000000000000';
spawnSync('setfattr', ['-n', 'system.posix_acl_access', '-v', acl, path.join(src, 'sub', 'n'.repeat(110) + '.txt')]);
await mkdir(out);
await resticOk(restic, ['init'], ropts);
const summary = (await resticOk(restic, ['backup', '--json', src], ropts)).stdout.trim().split('\n').pop()!;
const first = (JSON.parse(summary) as { snapshot_id: string }).snapshot_id.slice(0, 8);
// A second snapshot whose times are stored at +05:30: the zip's MS-DOS times are that zone's wall clock.
await resticOk(restic, ['backup', '--tag', 'kolkata', path.join(src, 'sub')], { ...ropts, env: { TZ: 'Asia/Kolkata' } });

/** Every header field of every entry (tar) as Python's tarfile reads them, with a hash of the content. */
function tarMembers(file: string): string[] {
  const py = `import tarfile, sys, hashlib
t = tarfile.open(sys.argv[1])
for m in t.getmembers():
    body = hashlib.sha1(t.extractfile(m).read()).hexdigest()[:12] if m.isfile() else ''
    print(repr((m.name, m.type, oct(m.mode), m.uid, m.gid, m.uname, m.gname, m.mtime, m.size, m.linkname, sorted(m.pax_headers.items()), body)))`;
  return execFileSync('python3', ['-c', py, file], { encoding: 'utf8' }).trim().split('\n');
}

/** Every field of every zip entry but the compressed bytes, with the content's hash. */
function zipMembers(file: string): string[] {
  const py = `import zipfile, sys, hashlib
z = zipfile.ZipFile(sys.argv[1])
for i in z.infolist():
    print(repr((i.filename, i.flag_bits, i.compress_type, i.date_time, i.create_system, i.create_version, i.extract_version, oct(i.external_attr), i.extra.hex(), i.CRC, i.file_size, hashlib.sha1(z.read(i)).hexdigest()[:12])))`;
  return execFileSync('python3', ['-c', py, file], { encoding: 'utf8' }).trim().split('\n');
}

async function both(args: string[], name: string): Promise<{ theirs: string; ours: string }> {
  const theirs = path.join(out, `restic-${name}`);
  const ours = path.join(out, `stowage-${name}`);
  const [, r] = await Promise.all([resticOk(restic, ['dump', ...args, '--target', theirs], ropts), runCli(['dump', '--no-cache', ...args, '--target', ours], { env })]);
  assert.equal(r.code, 0, r.stderr);
  return { theirs, ours };
}

test('tar of a folder, of the whole snapshot and of ID:subfolder: restic 0.19.1\'s bytes', async () => {
  const cases: Array<[string, string[]]> = [['folder.tar', [first, src]], ['all.tar', [first, '/']], ['sub.tar', [`${first}:${src}`, '/sub']], ['rootsub.tar', [`${first}:${src}`, '/']]];
  const made = await Promise.all(cases.map(([name, args]) => both(args, name)));
  for (const [i, [name]] of cases.entries()) {
    const { theirs, ours } = made[i]!;
    assert.deepEqual(tarMembers(ours), tarMembers(theirs), name);
    assert.ok((await readFile(ours)).equals(await readFile(theirs)), `${name}: byte for byte`);
  }
  const members = tarMembers(path.join(out, 'stowage-rootsub.tar')).join('\n');
  const wanted = ["'fifo', b'0'", "'hard.txt', b'0'", 'SCHILY.xattr.user.note', 'SCHILY.acl.access', "'link', b'2'", "'mtime', '-"];
  for (const want of wanted) assert.ok(members.includes(want), `${want} in\n${members}`);
  assert.ok(!members.includes('deepfifo'), 'a fifo below the folder is left out, as restic');
});

test('zip of a folder and of the snapshot: restic 0.19.1\'s entries and fields (deflated bytes aside)', async () => {
  const cases = [
    ['folder.zip', ['-a', 'zip', first, src]],
    ['all.zip', ['--archive', 'zip', `${first}:${src}`, '/']],
    ['zone.zip', ['-a', 'zip', 'latest', '/']],
  ] as const;
  const made = await Promise.all(cases.map(([name, args]) => both([...args], name)));
  for (const [i, [name]] of cases.entries()) {
    const { theirs, ours } = made[i]!;
    assert.deepEqual(zipMembers(ours), zipMembers(theirs), name);
    execFileSync('python3', ['-c', 'import sys, zipfile; assert zipfile.ZipFile(sys.argv[1]).testzip() is None', ours]);
  }
});

test('errors and exit codes as restic\'s', async () => {
  const cases: string[][] = [
    [first, '/nope'], [first, `${src}/a.txt/x`], [first, `${src}/link`], [first, `${src}/fifo`],
    ['-a', 'rar', first, '/'], [first], [first, ''], ['--target', path.join(work, 'no', 'such', 'x.tar'), first, '/'],
  ];
  const runs = await Promise.all(cases.map((args) => Promise.all([runRestic(restic, ['dump', ...args], ropts), runCli(['dump', '--no-cache', ...args], { env })])));
  for (const [i, args] of cases.entries()) {
    const [theirs, ours] = runs[i]!;
    assert.equal(ours.code, theirs.code, `${args.join(' ')}: ${ours.stderr}`);
    assert.equal(ours.stderr.trim().split('\n').pop(), theirs.stderr.trim().split('\n').pop(), args.join(' '));
  }
  // A file still dumps as its bytes, with or without --target.
  const { theirs, ours } = await both([first, `${src}/sub/big.bin`], 'big.bin');
  assert.ok((await readFile(ours)).equals(await readFile(theirs)));
  assert.ok((await readFile(ours)).equals(big));
});

test('library: dump() streams restic\'s tar, and stops with AbortedError on abort', async () => {
  const repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
  const indexed = await withIndex(repo);
  const theirs = await resticOk(restic, ['dump', first, src], ropts);
  for (const decodeThreads of [0, 2]) {
    const dumped = await dump(indexed, first, src, { decodeThreads, memoryLimit: 1024 * 1024 });
    assert.equal(dumped.kind, 'tar');
    const chunks: Buffer[] = [];
    for await (const c of dumped.stream) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(theirs.stdoutBytes), `decodeThreads ${decodeThreads}`);
  }
  const file = await dump(indexed, first, `${src}/a.txt`);
  assert.equal(file.kind, 'file');
  file.stream.destroy();
  const controller = new AbortController();
  const aborted = await dump(indexed, 'latest', '/', { signal: controller.signal, archive: 'zip' });
  controller.abort();
  await assert.rejects(async () => {
    for await (const _ of aborted.stream) void _;
  }, AbortedError);
  await repo.close();
});

test('a reader that goes away (`dump … | head`) ends the dump quietly', async () => {
  const child = spawn(process.execPath, [CLI, 'dump', '--no-cache', first, '/'], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  await once(child.stdout, 'data');
  child.stdout.destroy();
  const [code] = await once(child, 'close');
  assert.equal(stderr, '');
  assert.equal(code, 0);
});
