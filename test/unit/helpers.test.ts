// The interop helpers are only worth something if they can fail: the awkward tree must be
// reproducible and match its manifest, and compareTrees must notice every kind of change.

import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, readlink, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AWKWARD_FEATURES, makeAwkwardTree } from '../helpers/awkward-tree.ts';
import type { Manifest } from '../helpers/awkward-tree.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import type { CompareOptions } from '../helpers/compare-trees.ts';
import { tmpDir, withTmpDir } from '../helpers/tmp.ts';
import { CHEAP_KDF, cheapenResticKey, resticJson, resticJsonLines, resticOk, resticVersionOf, resticVersions, runRestic } from '../helpers/restic.ts';
import { AbortedError } from '../../src/errors.ts';

const isRoot = process.getuid?.() === 0;

function sh(cwd: string, cmd: string, ...args: string[]): void {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Sets the mtime (ns since the epoch) of `path` itself, like the tree generator does. */
function setMtime(path: string, ns: bigint): void {
  sh('/', 'touch', '-h', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, path);
}

// Top level, not in the before hook: tmpDir's cleanup would run when the hook ends.
const base = await tmpDir('stowage-helpers');
const original = join(base, 'original');
let manifest: Manifest;

before(async () => {
  await mkdir(original);
  manifest = await makeAwkwardTree(original, { seed: 'alpha' });
});

describe('makeAwkwardTree', () => {
  test('creates every feature (devices and owners need root)', () => {
    const expected = AWKWARD_FEATURES.filter((f) => f !== 'socket' && (isRoot || (f !== 'devices' && f !== 'owners')));
    assert.deepEqual(manifest.skipped.map((s) => s.feature).filter((f) => expected.includes(f)), []);
    const present = new Set(manifest.entries.map((e) => e.feature));
    for (const f of expected) assert.ok(present.has(f), `feature ${f} has entries`);
    assert.ok(manifest.totalFileBytes > 17 * 1024 * 1024, `total ${manifest.totalFileBytes}`);
  });

  test('the manifest describes what is on disk', async () => {
    for (const e of manifest.entries) {
      const path = Buffer.concat([Buffer.from(`${original}/`), e.rawPath]);
      const st = await lstat(path, { bigint: true });
      const where = `${e.path} (${e.type})`;
      assert.equal(st.mtimeNs, e.mtimeNs, `${where} mtime`);
      if (e.type !== 'symlink') assert.equal(Number(st.mode & 0o7777n), e.mode, `${where} mode`);
      if (e.uid !== undefined) assert.equal([st.uid, st.gid].join(':'), `${e.uid}:${e.gid}`, `${where} owner`);
      switch (e.type) {
        case 'file': {
          assert.ok(st.isFile(), where);
          assert.equal(Number(st.size), e.size, `${where} size`);
          const hash = createHash('sha256').update(await readFile(path)).digest('hex');
          assert.equal(hash, e.sha256, `${where} content`);
          if (e.hardLinkTo) {
            const first = await lstat(`${original}/${e.hardLinkTo}`, { bigint: true });
            assert.equal(st.ino, first.ino, `${where} is a hard link of ${e.hardLinkTo}`);
          }
          break;
        }
        case 'dir':
          assert.ok(st.isDirectory(), where);
          break;
        case 'symlink':
          assert.ok(st.isSymbolicLink(), where);
          assert.deepEqual(await readlink(path, { encoding: 'buffer' }), e.targetRaw ?? Buffer.from(e.target ?? ''), `${where} target`);
          break;
        case 'fifo':
          assert.ok(st.isFIFO(), where);
          break;
        case 'chardev':
        case 'blockdev':
          assert.ok(e.type === 'chardev' ? st.isCharacterDevice() : st.isBlockDevice(), where);
          assert.equal(Number(st.rdev >> 8n) & 0xfff, e.rdev?.major, `${where} major`);
          assert.equal(Number(st.rdev & 0xffn), e.rdev?.minor, `${where} minor`);
          break;
        case 'socket':
          assert.ok(st.isSocket(), where);
          break;
      }
    }
    // The root directory has exactly the manifest's top-level entries.
    const top = new Set(manifest.entries.filter((e) => !e.rawPath.includes(0x2f)).map((e) => e.path));
    assert.deepEqual(new Set(await readdir(original)), top);
  });

  test('a non-UTF-8 name and a non-UTF-8 symlink target are in the tree', () => {
    assert.ok(manifest.entries.some((e) => e.rawPath.includes(0xff)), 'a raw 0xff byte in a name');
    assert.ok(manifest.entries.some((e) => e.targetRaw?.includes(0xff)), 'a raw 0xff byte in a symlink target');
  });

  test('the same seed gives an identical tree, another seed a different one', async () => {
    await withTmpDir('stowage-awkward', async (dir) => {
      const again = join(dir, 'again');
      const other = join(dir, 'other');
      await mkdir(again);
      await mkdir(other);
      await makeAwkwardTree(again, { seed: 'alpha' });
      await makeAwkwardTree(other, { seed: 'beta' });
      assert.deepEqual(await compareTrees(original, again), []);
      const diffs = await compareTrees(original, other);
      assert.ok(diffs.some((d) => d.startsWith('"dedup/random-3MiB": content')), diffs.slice(0, 5).join('\n'));
      assert.ok(diffs.some((d) => d.startsWith('"sizes/one-byte": mtime')), diffs.slice(0, 5).join('\n'));
    });
  });

  test('skip leaves features out and an opted-in socket is created', async () => {
    await withTmpDir('stowage-awkward', async (dir) => {
      const m = await makeAwkwardTree(dir, { seed: 'alpha', skip: ['sizes', 'dedup', 'invalid-utf8'], socket: true });
      assert.ok(!m.entries.some((e) => e.feature === 'sizes' || e.feature === 'dedup' || e.feature === 'invalid-utf8'));
      assert.ok(!existsSync(join(dir, 'sizes')));
      assert.ok(!existsSync(join(dir, 'invalid-utf8')));
      assert.ok((await lstat(join(dir, 'special/socket'))).isSocket());
    });
  });
});

describe('compareTrees', () => {
  let copyNo = 0;
  /** A `cp -a` copy of the original tree, changed by `change`, then compared. */
  async function diffAfter(change: (copy: string) => Promise<void> | void, opts?: CompareOptions): Promise<string[]> {
    const copy = join(base, `copy-${++copyNo}`);
    sh(base, 'cp', '-a', '--preserve=all', original, copy);
    await change(copy);
    return compareTrees(original, copy, opts);
  }

  /** Runs `fn` and puts the mtimes of `paths` (inside `root`) back afterwards. */
  async function keepingMtimes(root: string, paths: string[], fn: () => Promise<void> | void): Promise<void> {
    const times = await Promise.all(paths.map(async (p) => (await lstat(join(root, p), { bigint: true })).mtimeNs));
    await fn();
    paths.forEach((p, i) => setMtime(join(root, p), times[i]));
  }

  test('a cp -a --preserve=all copy compares equal', async () => {
    assert.deepEqual(await diffAfter(() => {}), []);
  });

  test('a mode change is reported', async () => {
    const diffs = await diffAfter((c) => chmod(join(c, 'modes/file-0600'), 0o640));
    assert.deepEqual(diffs, ['"modes/file-0600": mode 00600 != 00640']);
  });

  test('a lost setuid bit is reported', async () => {
    const diffs = await diffAfter((c) => chmod(join(c, 'modes/file-4755'), 0o755));
    assert.deepEqual(diffs, ['"modes/file-4755": mode 04755 != 00755']);
  });

  test('an mtime one nanosecond off is reported, also on a symlink', async () => {
    const file = manifest.entries.find((e) => e.path === 'sizes/one-byte')!;
    const link = manifest.entries.find((e) => e.path === 'times/symlink-1970')!;
    const diffs = await diffAfter((c) => {
      setMtime(join(c, file.path), file.mtimeNs + 1n);
      setMtime(join(c, link.path), link.mtimeNs - 1n);
    });
    assert.equal(diffs.length, 2, diffs.join('\n'));
    assert.match(diffs[0], /^"sizes\/one-byte": mtime \d+\.\d{9} != \d+\.\d{9}$/);
    assert.equal(diffs[1], '"times/symlink-1970": mtime 12345.678901234 != 12345.678901233');
  });

  test('a changed byte is reported even when size and mtime are kept', async () => {
    const diffs = await diffAfter((c) =>
      keepingMtimes(c, ['dedup/random-3MiB'], async () => {
        const fh = await open(join(c, 'dedup/random-3MiB'), 'r+');
        const byte = Buffer.alloc(1);
        await fh.read(byte, 0, 1, 1024 * 1024);
        byte[0] ^= 0x01;
        await fh.write(byte, 0, 1, 1024 * 1024);
        await fh.close();
      }),
    );
    assert.equal(diffs.length, 1, diffs.join('\n'));
    assert.match(diffs[0], /^"dedup\/random-3MiB": content 3158073 bytes sha256 [0-9a-f]{16} != 3158073 bytes sha256 [0-9a-f]{16}$/);
  });

  test('changed, removed and added xattrs are reported, on files and directories', async () => {
    const diffs = await diffAfter((c) => {
      sh(c, 'setfattr', '-n', 'user.k', '-v', 'other', 'xattrs/text');
      sh(c, 'setfattr', '-x', 'user.bin', 'xattrs/binary');
      sh(c, 'setfattr', '-n', 'user.new', '-v', '0x00', 'xattrs/sub');
    });
    assert.deepEqual(diffs, [
      '"xattrs/binary": xattr user.bin only in a',
      '"xattrs/sub": xattr user.new only in b',
      '"xattrs/text": xattr user.k 0x76616c7565 != 0x6f74686572',
    ]);
  });

  test('a broken hard link is reported even when content and metadata match', async () => {
    const diffs = await diffAfter((c) =>
      keepingMtimes(c, ['hardlinks/b'], () => {
        sh(c, 'cp', '-a', '--preserve=all', 'hardlinks/b/second-link', 'hardlinks/b/tmp');
        sh(c, 'mv', 'hardlinks/b/tmp', 'hardlinks/b/second-link');
      }),
    );
    assert.equal(diffs.length, 1, diffs.join('\n'));
    assert.equal(
      diffs[0],
      '"hardlinks/a/three-links": hard links in a ["hardlinks/a/three-links", "hardlinks/b/second-link", "hardlinks/third link"]' +
        ' != in b ["hardlinks/a/three-links", "hardlinks/third link"] ["hardlinks/b/second-link"]',
    );
    assert.deepEqual(await compareTrees(original, join(base, `copy-${copyNo}`), { ignoreHardLinks: true }), []);
  });

  test('a changed symlink target is reported', async () => {
    const diffs = await diffAfter((c) =>
      keepingMtimes(c, ['links'], async () => {
        const mtime = (await lstat(join(c, 'links/relative'), { bigint: true })).mtimeNs;
        sh(c, 'ln', '-sfn', 'elsewhere.txt', 'links/relative');
        setMtime(join(c, 'links/relative'), mtime);
      }),
    );
    assert.deepEqual(diffs, ['"links/relative": symlink target "target.txt" != "elsewhere.txt"']);
  });

  test('a file replaced by another type, and added and removed entries are reported', async () => {
    const diffs = await diffAfter((c) =>
      keepingMtimes(c, ['special', 'empty-dir', 'sizes'], async () => {
        sh(c, 'rm', 'special/fifo');
        await writeFile(join(c, 'special/fifo'), '');
        await writeFile(join(c, 'empty-dir/new'), 'x');
        sh(c, 'rm', 'sizes/empty');
      }),
    );
    assert.deepEqual(diffs.filter((d) => !d.startsWith('"special/fifo": ')), ['"empty-dir/new": only in b', '"sizes/empty": only in a']);
    assert.ok(diffs.includes('"special/fifo": type fifo != file'), diffs.join('\n'));
  });

  test('a renamed non-UTF-8 name is reported with its raw bytes', async () => {
    const diffs = await diffAfter((c) =>
      keepingMtimes(c, ['invalid-utf8'], async () => {
        const dir = Buffer.from(`${c}/invalid-utf8/`);
        await rename(Buffer.concat([dir, Buffer.from('bad-\xff\xfe-name.bin', 'latin1')]), Buffer.concat([dir, Buffer.from('bad-\xff\xfd-name.bin', 'latin1')]));
      }),
    );
    assert.deepEqual(diffs, ['"invalid-utf8/bad-\\xff\\xfd-name.bin": only in b', '"invalid-utf8/bad-\\xff\\xfe-name.bin": only in a']);
  });

  test('directory mtimes are compared unless ignoreDirMtimes', async () => {
    const diffs = await diffAfter(async (c) => {
      await writeFile(join(c, 'empty-dir/x'), '');
      sh(c, 'rm', 'empty-dir/x');
    });
    assert.equal(diffs.length, 1, diffs.join('\n'));
    assert.match(diffs[0], /^"empty-dir": mtime /);
    assert.deepEqual(await compareTrees(original, join(base, `copy-${copyNo}`), { ignoreDirMtimes: true }), []);
  });

  test('root metadata is compared unless ignoreRootMetadata', async () => {
    const diffs = await diffAfter((c) => chmod(c, 0o700));
    assert.equal(diffs.length, 1, diffs.join('\n'));
    assert.match(diffs[0], /^\(root\): mode 0\d{4} != 00700$/);
    assert.deepEqual(await compareTrees(original, join(base, `copy-${copyNo}`), { ignoreRootMetadata: true }), []);
  });

  test('exclude leaves a subtree out', async () => {
    const diffs = await diffAfter((c) => chmod(join(c, 'deep/d01/d02/d03'), 0o700), { exclude: (p) => p === 'deep/d01' });
    assert.deepEqual(diffs, []);
  });

  test('owner and device changes are reported (root only)', { skip: !isRoot && 'needs root' }, async () => {
    const diffs = await diffAfter((c) =>
      keepingMtimes(c, ['special', 'special/char-null'], () => {
        sh(c, 'chown', '-h', '4321:8765', 'owners/symlink-1234');
        sh(c, 'rm', 'special/char-null');
        sh(c, 'mknod', '-m', '0666', 'special/char-null', 'c', '1', '5');
      }),
    );
    assert.deepEqual(diffs, ['"owners/symlink-1234": owner 1234:5678 != 4321:8765', '"special/char-null": device 1:3 != 1:5']);
    assert.deepEqual(
      await compareTrees(original, join(base, `copy-${copyNo}`), { ignoreOwnership: true }),
      ['"special/char-null": device 1:3 != 1:5'],
    );
  });
});

describe('tmp helpers', () => {
  let fromTest = '';
  test('tmpDir inside a test is removed when the test ends', async () => {
    fromTest = await tmpDir('stowage-tmp');
    assert.ok((await stat(fromTest)).isDirectory());
  });
  test('(check)', () => {
    assert.ok(fromTest !== '' && !existsSync(fromTest), fromTest);
  });

  test('withTmpDir removes a read-only tree even when fn throws', async () => {
    let seen = '';
    await assert.rejects(
      withTmpDir('stowage-tmp', async (dir) => {
        seen = dir;
        await mkdir(join(dir, 'ro/sub'), { recursive: true });
        await writeFile(join(dir, 'ro/sub/f'), 'x');
        await chmod(join(dir, 'ro/sub'), 0o555);
        await chmod(join(dir, 'ro'), 0o000);
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.ok(seen !== '' && !existsSync(seen), seen);
  });
});

describe('restic helpers', () => {
  test('both restic versions are found and report their versions', () => {
    const found = resticVersions();
    assert.deepEqual(found.map((r) => r.name), ['0.14', '0.19']);
    assert.match(resticVersionOf(found[0].bin), /^0\.14\.\d+$/);
    assert.equal(resticVersionOf(found[1].bin), '0.19.1');
  });

  for (const { name, bin } of resticVersions()) {
    test(`restic ${name}: backup and restore of the awkward tree round-trips`, async () => {
      const dir = await tmpDir('stowage-restic');
      const repo = join(dir, 'repo');
      const target = join(dir, 'restored');
      const opts = { repo, password: 'correct horse' };
      await resticOk(bin, ['init', '--repository-version', '2'], opts);
      const config = await resticJson<{ version: number; chunker_polynomial: string }>(bin, ['cat', 'config'], opts);
      assert.equal(config.version, 2);
      const lines = await resticJsonLines<{ message_type: string; snapshot_id?: string; total_files_processed?: number }>(
        bin, ['backup', '.'], { ...opts, cwd: original },
      );
      const summary = lines.find((l) => l.message_type === 'summary');
      assert.ok(summary?.snapshot_id, JSON.stringify(lines.at(-1)));
      const files = manifest.entries.filter((e) => e.type === 'file').length;
      assert.equal(summary.total_files_processed, files);
      const snapshots = await resticJson<{ short_id: string }[]>(bin, ['snapshots'], opts);
      assert.deepEqual(snapshots.map((s) => s.short_id), [summary.snapshot_id.slice(0, 8)]);

      await resticOk(bin, ['restore', 'latest', '--target', target], opts);
      // restic before 0.17 cannot store a symlink target that is not UTF-8.
      const exclude = name === '0.14' ? (p: string) => p === 'invalid-utf8/link-to-bad-target' : undefined;
      assert.deepEqual(await compareTrees(original, target, { ignoreRootMetadata: true, exclude }), []);

      const wrong = await runRestic(bin, ['snapshots'], { ...opts, password: 'wrong' });
      assert.equal(wrong.code, name === '0.14' ? 1 : 12);
      assert.match(wrong.stderr, /wrong password/);
    });
  }

  test('runRestic feeds stdin, returns binary stdout and enforces its timeout', async () => {
    const { bin } = resticVersions()[1];
    const dir = await tmpDir('stowage-restic');
    const opts = { repo: join(dir, 'repo'), password: 'pw' };
    await resticOk(bin, ['init'], opts);
    // restic's key was re-sealed with the cheap parameters (see the next test).
    const keys = await readdir(join(opts.repo, 'keys'));
    assert.equal(keys.length, 1);
    const kdf = JSON.parse(await readFile(join(opts.repo, 'keys', keys[0]!), 'utf8')) as Record<string, unknown>;
    assert.deepEqual({ N: kdf.N, r: kdf.r, p: kdf.p }, CHEAP_KDF);
    const data = Buffer.from([0x00, 0xff, 0x0a, 0x80, 0x7f]);
    await resticOk(bin, ['backup', '--stdin', '--stdin-filename', 'blob.bin'], { ...opts, input: data });
    const dumped = await resticOk(bin, ['dump', 'latest', '/blob.bin'], opts);
    assert.deepEqual(dumped.stdoutBytes, data);

    const started = Date.now();
    await assert.rejects(
      runRestic(bin, ['snapshots'], { ...opts, env: { RESTIC_PASSWORD: '', RESTIC_PASSWORD_COMMAND: 'sleep 30' }, timeoutMs: 500 }),
      (err: unknown) => err instanceof AbortedError && /timed out after 0.5 s/.test(err.message),
    );
    assert.ok(Date.now() - started < 10_000, 'the timeout did not wait for restic');
  });

  test('a key restic init wrote is re-sealed with cheap scrypt parameters: the same master key, user, host, time and mode', async () => {
    const { bin } = resticVersions()[1];
    const dir = await tmpDir('stowage-restic-kdf');
    // A relative location and a password from RESTIC_PASSWORD in env, as some tests give them.
    const opts = { repo: 'ignored', password: 'not this one', cwd: dir, env: { RESTIC_REPOSITORY: 'repo', RESTIC_PASSWORD: 'pw' } };
    await resticOk(bin, ['init'], { ...opts, keepResticKdf: true });
    const keysDir = join(dir, 'repo', 'keys');
    const [old] = await readdir(keysDir);
    const before = JSON.parse(await readFile(join(keysDir, old!), 'utf8')) as Record<string, unknown>;
    assert.ok((before.N as number) * (before.p as number) > CHEAP_KDF.N * CHEAP_KDF.p, `restic calibrated N=${before.N} p=${before.p}`);
    const master = (await resticOk(bin, ['cat', 'masterkey'], opts)).stdout;
    const mode = (await stat(join(keysDir, old!))).mode;

    await cheapenResticKey(join(dir, 'repo'), 'pw');
    const now = await readdir(keysDir);
    assert.equal(now.length, 1);
    assert.notEqual(now[0], old);
    const after = JSON.parse(await readFile(join(keysDir, now[0]!), 'utf8')) as Record<string, unknown>;
    assert.deepEqual({ N: after.N, r: after.r, p: after.p }, CHEAP_KDF);
    assert.deepEqual([after.created, after.username, after.hostname], [before.created, before.username, before.hostname]);
    assert.equal((await stat(join(keysDir, now[0]!))).mode, mode);
    assert.deepEqual((await readdir(join(dir, 'repo'))).sort(), ['config', 'data', 'index', 'keys', 'locks', 'snapshots'], 'no temporary file is left');
    assert.equal((await resticOk(bin, ['cat', 'masterkey'], opts)).stdout, master, 'restic opens it to the same master key');
    assert.equal((await runRestic(bin, ['cat', 'masterkey'], { ...opts, env: { ...opts.env, RESTIC_PASSWORD: 'other' } })).code, 12);
  });
});
