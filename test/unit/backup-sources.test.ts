// What a backup does when its source fails: a command whose output is backed up (restic's
// --stdin-from-command) that exits non-zero, a stream that errors, and paths that do not exist.
// A failed source must never end as a good-looking snapshot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AbortedError, CommandFailedError, InvalidInputError, SourceNotFoundError, StdinError, StowageError } from '../../src/errors.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };

async function newRepo(backend = new MemoryBackend()): Promise<IndexedRepository> {
  const repo = await Repository.init(backend, { password: 'pw', kdf: KDF });
  return repo.loadIndex();
}

async function snapshotCount(repo: IndexedRepository): Promise<number> {
  let n = 0;
  for await (const _ of repo.repo.listIds('snapshots')) n++;
  return n;
}

/** The content of the one file of a stdin snapshot, restored. */
async function restoredFile(repo: IndexedRepository, tree: Parameters<typeof restore>[1], name: string): Promise<Buffer> {
  const target = await tmpDir('stowage-stdin-restore');
  await restore(repo, tree, { target });
  return readFile(join(target, name));
}

test('a command that exits 2 half-way: CommandFailedError with its exit code and stderr, no snapshot', async () => {
  const repo = await newRepo();
  const err = await backup(repo, {
    stdin: { command: 'sh', args: ['-c', 'echo partial; echo "dump: lost connection" >&2; exit 2'], filename: 'db.sql' },
  }).then(
    () => assert.fail('the backup of a failed command must reject'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CommandFailedError, String(err));
  assert.ok(err instanceof StdinError && err instanceof StowageError);
  assert.equal(err.code, 'COMMAND_FAILED');
  assert.equal(err.command, 'sh');
  assert.equal(err.exitCode, 2);
  assert.equal(err.signal, null);
  assert.equal(err.filename, 'db.sql');
  assert.match(err.stderr, /dump: lost connection/);
  assert.match(err.message, /sh exited with status 2/);
  assert.equal(await snapshotCount(repo), 0);
});

test('a command that succeeds: its output is the file; stderr lines go to onStderr', async () => {
  const repo = await newRepo();
  const lines: string[] = [];
  const script = 'printf "CREATE TABLE t;\\n"; echo "warning: 1" >&2; printf "INSERT 1;\\n"; echo "warning: 2" >&2';
  const r = await backup(repo, { stdin: { command: 'sh', args: ['-c', script], filename: 'db.sql', onStderr: (l) => lines.push(l) } });
  assert.deepEqual(r.snapshot.paths, ['/db.sql']);
  assert.deepEqual(r.errors, []);
  assert.equal((await restoredFile(repo, r.snapshot.tree, 'db.sql')).toString(), 'CREATE TABLE t;\nINSERT 1;\n');
  assert.deepEqual(lines, ['warning: 1', 'warning: 2']);
  // Without a file name it is "stdin", as restic's.
  const plain = await backup(repo, { stdin: { command: 'echo', args: ['hello'] } });
  assert.deepEqual(plain.snapshot.paths, ['/stdin']);
  assert.equal((await restoredFile(repo, plain.snapshot.tree, 'stdin')).toString(), 'hello\n');
  assert.equal(await snapshotCount(repo), 2);
});

test('a command that cannot start, or is killed by a signal, fails the backup; the stderr kept is bounded', async () => {
  const repo = await newRepo();
  const missing = await backup(repo, { stdin: { command: 'no-such-command-stowage' } }).catch((e: unknown) => e);
  assert.ok(missing instanceof CommandFailedError, String(missing));
  assert.equal(missing.exitCode, null);
  assert.equal((missing.cause as NodeJS.ErrnoException).code, 'ENOENT');

  // 100 KiB on stderr, then killed: only the tail is kept.
  const killed = await backup(repo, {
    stdin: { command: 'sh', args: ['-c', 'head -c 100000 /dev/zero | tr "\\0" x >&2; echo THE-END >&2; kill -9 $$'] },
  }).catch((e: unknown) => e);
  assert.ok(killed instanceof CommandFailedError, String(killed));
  assert.equal(killed.signal, 'SIGKILL');
  assert.match(killed.message, /killed by signal SIGKILL/);
  assert.ok(killed.stderr.length <= 4096, `stderr tail of ${killed.stderr.length} characters`);
  assert.match(killed.stderr, /THE-END\n$/);
  assert.equal(await snapshotCount(repo), 0);
});

test('aborting a command backup kills the command and rejects with AbortedError', async () => {
  const repo = await newRepo();
  const dir = await tmpDir('stowage-stdin-abort');
  const pidFile = join(dir, 'pid');
  const ac = new AbortController();
  const started = Date.now();
  const run = backup(repo, { signal: ac.signal, stdin: { command: 'sh', args: ['-c', `echo $$ > ${pidFile}; echo begun; exec sleep 60`] } });
  // Abort once the command is running.
  for (let i = 0; i < 200; i++) {
    if ((await readFile(pidFile, 'utf8').catch(() => '')).endsWith('\n')) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  ac.abort();
  await assert.rejects(run, AbortedError);
  assert.ok(Date.now() - started < 30_000, 'did not wait for the command to end by itself');
  const pid = Number(await readFile(pidFile, 'utf8'));
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the command was killed');
  assert.equal(await snapshotCount(repo), 0);
});

test('a stream that errors: StdinError with the cause, no snapshot', async () => {
  const repo = await newRepo();
  const cause = new Error('disk gone');
  async function* failing() {
    yield Buffer.from('first part\n');
    throw cause;
  }
  const err = await backup(repo, { stdin: { stream: Readable.from(failing()), filename: 'x.bin' } }).catch((e: unknown) => e);
  assert.ok(err instanceof StdinError, String(err));
  assert.ok(!(err instanceof CommandFailedError));
  assert.equal(err.code, 'STDIN_FAILED');
  assert.equal(err.filename, 'x.bin');
  assert.equal(err.cause, cause);
  assert.match(err.message, /x\.bin.*disk gone/);
  assert.equal(await snapshotCount(repo), 0);
});

test('a failed dump whose packs were stored leaves the repository consistent for the next backup', async () => {
  // More than two packs (16 MiB each) of content, so packs are stored before the command fails.
  const dir = await tmpDir('stowage-stdin-packs');
  const big = join(dir, 'big');
  await writeFile(big, randomBytes(40 * 1024 * 1024));
  const backend = new MemoryBackend();
  const repo = await newRepo(backend);
  await assert.rejects(backup(repo, { stdin: { command: 'sh', args: ['-c', `cat ${big}; exit 2`] } }), CommandFailedError);
  assert.equal(await snapshotCount(repo), 0);
  // The same content again, with the same repository object: it may reuse what the failed run
  // stored only if the index on the backend lists it too.
  const ok = await backup(repo, { stdin: { command: 'cat', args: [big] } });
  const fresh = await Repository.open(backend, { password: 'pw' });
  const report = await checkRepository(fresh);
  assert.deepEqual(report.errors, []);
  const indexed = await fresh.loadIndex();
  assert.deepEqual(await restoredFile(indexed, ok.snapshot.tree, 'stdin'), await readFile(big));
});

test('a stream stays a valid source, and a command needs a name', async () => {
  const repo = await newRepo();
  const r = await backup(repo, { stdin: { stream: Readable.from(['a', 'b']) } });
  assert.deepEqual(r.snapshot.paths, ['/stdin']);
  const nodes = decodeTree(await repo.loadBlob('tree', r.snapshot.tree), r.snapshot.tree);
  assert.equal(Number(nodes[0]!.size), 2);
  await assert.rejects(backup(repo, { stdin: { command: '' } }), InvalidInputError);
});

test('no source path exists: SourceNotFoundError names them, nothing is stored', async () => {
  const base = await tmpDir('stowage-missing');
  const repo = await newRepo();
  const reported: string[] = [];
  const a = join(base, 'nope-a');
  const b = join(base, 'nope-b');
  const err = await backup(repo, { paths: [a, b], onError: (p) => reported.push(p) }).catch((e: unknown) => e);
  assert.ok(err instanceof SourceNotFoundError, String(err));
  assert.ok(err instanceof InvalidInputError, 'a kind of invalid input (exit 1 in the CLI)');
  assert.deepEqual(err.paths, [a, b]);
  assert.match(err.message, /nope-a.*nope-b/);
  assert.deepEqual(reported, [a, b]);
  assert.equal(await snapshotCount(repo), 0);
  let packs = 0;
  for await (const _ of repo.repo.listIds('data')) packs++;
  assert.equal(packs, 0);
});

test('some source paths missing: each is reported, the rest is backed up, the snapshot lists only those', async () => {
  const base = await tmpDir('stowage-some-missing');
  const src = join(base, 'src');
  await mkdir(src);
  await writeFile(join(src, 'ok'), 'fine');
  const missing = join(base, 'missing');
  const repo = await newRepo();
  const reported: Array<[string, string]> = [];
  const r = await backup(repo, { paths: [missing, src], onError: (p, e) => reported.push([p, e.message]) });
  assert.deepEqual(reported, [[missing, `${missing} does not exist, skipping`]]);
  assert.deepEqual(r.errors, [{ path: missing, message: `${missing} does not exist, skipping` }]);
  assert.deepEqual(r.snapshot.paths, [src], 'the missing path is not one of the snapshot\'s paths');
  const root = decodeTree(await repo.loadBlob('tree', r.snapshot.tree), r.snapshot.tree);
  assert.deepEqual(root.map((n) => n.name), [base.split('/')[1]]);
  assert.equal(r.summary.filesNew, 1);
  assert.equal(await snapshotCount(repo), 1);
});
