import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LocalBackend, fsErrorToStowage } from '../../src/backend/local.ts';
import { openBackend, parseLocation } from '../../src/backend/location.ts';
import type { FileInfo } from '../../src/backend/backend.ts';
import { AbortedError, BackendError, InvalidInputError, NotFoundError, StowageError } from '../../src/errors.ts';
import { backendConformance } from './conformance.ts';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'stowage-local-'));
}

backendConformance('LocalBackend', async () => {
  const dir = await tempDir();
  return { backend: new LocalBackend(join(dir, 'repo')), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

function newId(prefix = ''): string {
  return prefix + randomBytes(32).toString('hex').slice(prefix.length);
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out;
}

/** Every path below `dir` (files and folders), relative to it. */
async function walk(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

describe('LocalBackend on disk', () => {
  let dir: string;
  let root: string;
  let backend: LocalBackend;
  before(async () => {
    dir = await tempDir();
    root = join(dir, 'repo');
    backend = new LocalBackend(root);
    await backend.create();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("creates restic's folders: keys, snapshots, index, locks and data/00..ff", async () => {
    assert.deepEqual((await readdir(root)).sort(), ['data', 'index', 'keys', 'locks', 'snapshots']);
    const shards = (await readdir(join(root, 'data'))).sort();
    assert.equal(shards.length, 256);
    assert.equal(shards[0], '00');
    assert.equal(shards[255], 'ff');
    assert.ok(shards.every((s) => /^[0-9a-f]{2}$/.test(s)));
  });

  it("writes files where restic does, read-only (0400), with no temp files left", async () => {
    const pack = newId('ab');
    const key = newId();
    await backend.save({ type: 'data', name: pack }, new Uint8Array([1, 2, 3]));
    await backend.save({ type: 'keys', name: key }, new Uint8Array([4]));
    await backend.save({ type: 'config', name: '' }, new Uint8Array([5, 6]));
    for (const [path, size] of [[`data/ab/${pack}`, 3], [`keys/${key}`, 1], ['config', 2]] as const) {
      const st = await stat(join(root, path));
      assert.ok(st.isFile(), path);
      assert.equal(st.size, size, path);
      assert.equal(st.mode & 0o777, 0o400, `${path} is read-only`);
    }
    assert.deepEqual((await walk(root)).filter((p) => p.includes('.tmp-')), []);
  });

  it('removes read-only files', async () => {
    const h = { type: 'snapshots' as const, name: newId() };
    await backend.save(h, new Uint8Array([9]));
    assert.equal((await stat(join(root, 'snapshots', h.name))).mode & 0o777, 0o400);
    await backend.remove(h);
    await assert.rejects(stat(join(root, 'snapshots', h.name)), { code: 'ENOENT' });
  });

  it('creates a missing data/XX folder on save, and a missing repository folder', async () => {
    await rm(join(root, 'data', 'cd'), { recursive: true });
    const h = { type: 'data' as const, name: newId('cd') };
    await backend.save(h, new Uint8Array([7, 7]));
    assert.deepEqual(await backend.load(h), new Uint8Array([7, 7]));

    const bare = new LocalBackend(join(dir, 'never-created'));
    const k = { type: 'keys' as const, name: newId() };
    await bare.save(k, new Uint8Array([1]));
    assert.ok((await stat(join(dir, 'never-created', 'keys', k.name))).isFile());
  });

  it('leaves no temp file when the rename fails, and names the file in the error', async () => {
    // A non-empty folder where the file should go makes rename() fail, even as root.
    const name = newId();
    await mkdir(join(root, 'keys', name));
    await writeFile(join(root, 'keys', name, 'blocker'), 'x');
    await assert.rejects(backend.save({ type: 'keys', name }, randomBytes(1000)), (err: unknown) => {
      assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
      assert.equal(err.transient, false);
      assert.ok(err.message.startsWith(`save keys/${name}`), err.message);
      return true;
    });
    assert.deepEqual((await readdir(join(root, 'keys'))).filter((n) => n.startsWith('.')), []);
    await rm(join(root, 'keys', name), { recursive: true });
  });

  it('leaves no temp file when a save is aborted mid-way', async () => {
    const h = { type: 'data' as const, name: newId('5e') };
    const controller = new AbortController();
    // save() runs until its first await (opening the temp file) before the abort lands.
    const save = backend.save(h, randomBytes(12 * 1024 * 1024), { signal: controller.signal });
    controller.abort();
    await assert.rejects(save, AbortedError);
    assert.deepEqual(await readdir(join(root, 'data', '5e')), []);
    await assert.rejects(backend.stat(h), NotFoundError);
  });

  it('lists only ID-named regular files: no temp files, folders, or strays in data/', async () => {
    const d = await tempDir();
    try {
      const b = new LocalBackend(d);
      await b.create();
      const id = newId('12');
      await b.save({ type: 'keys', name: id }, new Uint8Array(4));
      await b.save({ type: 'data', name: id }, new Uint8Array(6));
      await writeFile(join(d, 'keys', '.tmp-0123456789abcdef'), 'partial');
      await mkdir(join(d, 'keys', newId()));
      await writeFile(join(d, 'data', newId()), 'not in a shard folder');
      await writeFile(join(d, 'data', '12', `.tmp-${newId().slice(0, 16)}`), 'partial');
      assert.deepEqual(await collect(b.list('keys')), [{ name: id, size: 4 }]);
      assert.deepEqual(await collect(b.list('data')), [{ name: id, size: 6 }]);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it('reports a file that is a folder as a permanent backend error naming it', async () => {
    const name = newId();
    await mkdir(join(root, 'index', name));
    await assert.rejects(backend.load({ type: 'index', name }), (err: unknown) => {
      assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
      assert.equal(err.transient, false);
      assert.match(err.message, new RegExp(`^load index/${name}.*EISDIR`));
      return true;
    });
    await assert.rejects(backend.stat({ type: 'index', name }), NotFoundError);
    assert.deepEqual(await collect(backend.list('index')), []);
  });

  it('keeps sibling folders with a common prefix apart', async () => {
    const a = new LocalBackend(join(dir, 'sib'));
    const b = new LocalBackend(join(dir, 'sibling'));
    await a.create();
    await b.create();
    const h = { type: 'locks' as const, name: newId() };
    await a.save(h, new Uint8Array([1]));
    assert.deepEqual(await collect(b.list('locks')), []);
    await assert.rejects(b.stat(h), NotFoundError);
  });
});

describe('LocalBackend options', () => {
  it('resolves its location to an absolute path and defaults to 4 connections', () => {
    const b = new LocalBackend('some/relative/repo');
    assert.equal(b.location, resolve('some/relative/repo'));
    assert.equal(b.connections, 4);
    assert.equal(new LocalBackend('/x', { connections: 6 }).connections, 6);
  });

  it('rejects an empty path and bad connection counts', () => {
    assert.throws(() => new LocalBackend(''), InvalidInputError);
    assert.throws(() => new LocalBackend('/x', { connections: 0 }), InvalidInputError);
    assert.throws(() => new LocalBackend('/x', { connections: 1.5 }), InvalidInputError);
  });
});

describe('fsErrorToStowage', () => {
  const osError = (code: string, syscall = 'write'): Error =>
    Object.assign(new Error(`${code}: simulated, ${syscall}`), { code, syscall });

  it('maps ENOENT to NotFoundError for reads and removes, not for saves', () => {
    for (const op of ['load', 'stat', 'remove']) {
      const err = fsErrorToStowage(osError('ENOENT', 'open'), op, 'keys/abc');
      assert.ok(err instanceof NotFoundError, op);
      assert.equal(err.file, 'keys/abc');
    }
    const save = fsErrorToStowage(osError('ENOENT', 'open'), 'save', 'keys/abc');
    assert.ok(save instanceof BackendError);
    assert.equal(save.transient, false);
  });

  it('marks full, read-only and permission errors permanent', () => {
    for (const code of ['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EISDIR']) {
      const err = fsErrorToStowage(osError(code), 'save', 'data/ab/ab12', '/srv/repo');
      assert.ok(err instanceof BackendError, code);
      assert.equal(err.transient, false, code);
      assert.ok(err.message.startsWith(`save data/ab/ab12 (in /srv/repo): ${code}`), err.message);
      assert.ok(err.cause instanceof Error);
    }
  });

  it('marks I/O hiccups and descriptor exhaustion transient', () => {
    for (const code of ['EIO', 'EAGAIN', 'EMFILE', 'ENFILE', 'EBUSY', 'ESTALE', 'ETIMEDOUT']) {
      const err = fsErrorToStowage(osError(code), 'load', 'index/ff00');
      assert.ok(err instanceof BackendError, code);
      assert.equal(err.transient, true, code);
      assert.ok(err.message.startsWith(`load index/ff00: ${code}`), err.message);
    }
  });

  it('passes StowageErrors through and turns AbortError into AbortedError', () => {
    const own = new NotFoundError('keys/x');
    assert.equal(fsErrorToStowage(own, 'load', 'keys/x'), own);
    const abort = Object.assign(new Error('The operation was aborted'), { code: 'ABORT_ERR', name: 'AbortError' });
    assert.ok(fsErrorToStowage(abort, 'save', 'keys/x') instanceof AbortedError);
    const odd = fsErrorToStowage('a string', 'list', 'keys');
    assert.ok(odd instanceof StowageError && odd.code === 'BACKEND');
  });
});

describe('parseLocation and openBackend', () => {
  it('reads plain paths and local: locations as local folders', () => {
    assert.deepEqual(parseLocation('/srv/restic-repo'), { kind: 'local', path: '/srv/restic-repo' });
    assert.deepEqual(parseLocation('./repo'), { kind: 'local', path: resolve('repo') });
    assert.deepEqual(parseLocation('../up/repo'), { kind: 'local', path: resolve('../up/repo') });
    assert.deepEqual(parseLocation('repo'), { kind: 'local', path: resolve('repo') });
    assert.deepEqual(parseLocation('local:/mnt/nfs/repo'), { kind: 'local', path: '/mnt/nfs/repo' });
    assert.deepEqual(parseLocation('local:rel/repo'), { kind: 'local', path: resolve('rel/repo') });
    assert.deepEqual(parseLocation('/data/a:b'), { kind: 'local', path: '/data/a:b' });
    assert.equal(parseLocation('C:\\backups\\repo').kind, 'local');
  });

  it('rejects unknown schemes, naming the location and the supported ones', () => {
    for (const location of ['ftp://host/repo', 'sftp:user@host:/srv/repo', 'rclone:remote:path']) {
      assert.throws(
        () => parseLocation(location),
        (err: unknown) => {
          assert.ok(err instanceof InvalidInputError, location);
          assert.ok(err.message.includes(JSON.stringify(location)), err.message);
          assert.ok(err.message.includes('local:'), err.message);
          return true;
        },
      );
    }
  });

  it('never puts a password from the location into the error', () => {
    assert.throws(
      () => parseLocation('webdav://alice:s3cr3t-pw@backup.example.com:8000/repo'),
      (err: unknown) => {
        assert.ok(err instanceof InvalidInputError);
        assert.ok(!err.message.includes('s3cr3t-pw'), err.message);
        assert.ok(err.message.includes('alice:***@backup.example.com'), err.message);
        return true;
      },
    );
  });

  it('rejects empty locations', () => {
    assert.throws(() => parseLocation(''), InvalidInputError);
    assert.throws(() => parseLocation('   '), InvalidInputError);
    assert.throws(() => parseLocation('local:'), InvalidInputError);
  });

  it('opens a LocalBackend for a path, passing the connection count', async () => {
    const dir = await tempDir();
    try {
      const b = await openBackend(`local:${dir}`, { connections: 3, raw: true });
      assert.ok(b instanceof LocalBackend);
      assert.equal(b.location, dir);
      assert.equal(b.connections, 3);
      assert.equal((await openBackend(dir, { raw: true })).connections, 4);
      // Wrapped (retry + connection limit) by default; the location and limit show through.
      const wrapped = await openBackend(dir);
      assert.ok(!(wrapped instanceof LocalBackend));
      assert.equal(wrapped.location, dir);
      assert.equal(wrapped.connections, 4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
