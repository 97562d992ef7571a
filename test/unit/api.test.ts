// The library's everyday surface as a new user meets it (issue 10, "API papercuts"): a file
// streamed out of a snapshot, restore by "latest" / ID / "ID:subfolder", either repository state
// accepted, restic's comma form of tags, close() and `await using`, one program version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MemoryBackend, Repository, backup, restore, dumpFile, listSnapshots, repositoryStats, checkRepository, diffSnapshots,
  InvalidInputError, NotFoundError, VERSION, type Backend,
} from '../../src/index.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };

async function fixture() {
  const base = await tmpDir('stowage-api');
  const src = join(base, 'src');
  await mkdir(join(src, 'sub'), { recursive: true });
  const big = randomBytes(3 * 1024 * 1024 + 17);
  await writeFile(join(src, 'big.bin'), big);
  await writeFile(join(src, 'sub', 'note.txt'), 'hello\n');
  const repo = await Repository.init(new MemoryBackend(), { password: 'pw', kdf: KDF });
  // A plain Repository: calls that need the index load it themselves.
  const first = await backup(repo, { paths: [src], tags: ['nightly', 'db'], hostname: 'h1' });
  const second = await backup(repo, { paths: [src], tags: ['weekly'], hostname: 'h2' });
  return { base, src, big, repo, first, second };
}

test('dumpFile streams a file of a snapshot, verified, and rejects folders and missing paths by name', async () => {
  const { src, big, repo, first } = await fixture();
  const dumped = await dumpFile(repo, 'latest', `${src}/big.bin`);
  assert.equal(dumped.size, big.length);
  assert.equal(dumped.node.type, 'file');
  const chunks: Buffer[] = [];
  for await (const c of dumped.stream) chunks.push(Buffer.from(c));
  assert.ok(Buffer.concat(chunks).equals(big));
  // "ID:subfolder" with the path below it, and an ID prefix.
  const note = await dumpFile(repo, `${first.snapshotId.slice(0, 8)}:${src}`, 'sub/note.txt');
  assert.equal((await note.stream.toArray()).map((b) => Buffer.from(b).toString()).join(''), 'hello\n');
  await assert.rejects(dumpFile(repo, 'latest', `${src}/sub`), InvalidInputError);
  await assert.rejects(dumpFile(repo, 'latest', `${src}/nope.txt`), (e: unknown) => e instanceof NotFoundError && /nope\.txt/.test(e.message));
});

test('restore takes "latest" (filtered), an ID prefix, "ID:subfolder", a snapshot entry or a tree ID', async () => {
  const { base, src, big, repo, first } = await fixture();
  const read = (dir: string, rel: string) => readFile(join(dir, rel));
  const t1 = join(base, 't1');
  await restore(repo, 'latest', { target: t1, snapshotFilter: { hosts: ['h1'] } });
  assert.ok((await read(t1, `${src}/big.bin`)).equals(big));
  const t2 = join(base, 't2');
  await restore(repo, `${first.snapshotId.slice(0, 10)}:${src}/sub`, { target: t2 });
  assert.equal((await read(t2, 'note.txt')).toString(), 'hello\n');
  const [entry] = await listSnapshots(repo, { hosts: ['h2'] });
  const t3 = join(base, 't3');
  await restore(await repo.loadIndex(), entry!, { target: t3 });
  assert.ok((await read(t3, `${src}/big.bin`)).equals(big));
  const t4 = join(base, 't4');
  await restore(repo, entry!.snapshot.tree, { target: t4 }); // a tree ID, as before
  assert.equal((await read(t4, `${src}/sub/note.txt`)).toString(), 'hello\n');
  await assert.rejects(restore(repo, 'latest', { target: join(base, 't5'), snapshotFilter: { hosts: ['none'] } }), NotFoundError);
});

test('either repository state works where the index is (or is not) needed', async () => {
  const { repo } = await fixture();
  const indexed = await repo.loadIndex();
  assert.equal((await repositoryStats(repo)).snapshotCount, 2);
  assert.equal((await listSnapshots(indexed)).length, 2);
  assert.equal((await checkRepository(indexed)).ok, true);
  assert.equal((await diffSnapshots(repo, 'latest', 'latest')).changedFiles, 0);
});

test('tags filter in restic\'s comma form: a string is one AND-group', async () => {
  const { repo } = await fixture();
  assert.equal((await listSnapshots(repo, { tags: ['nightly'] })).length, 1);
  assert.equal((await listSnapshots(repo, { tags: ['nightly,db'] })).length, 1);
  assert.equal((await listSnapshots(repo, { tags: ['nightly,weekly'] })).length, 0);
  assert.equal((await listSnapshots(repo, { tags: ['nightly', 'weekly'] })).length, 2);
  assert.equal((await listSnapshots(repo, { tags: [['db', 'nightly']] })).length, 1);
});

test('close() closes the backend once; `await using` closes it at the end of the block', async () => {
  const backend = new MemoryBackend();
  let closed = 0;
  const counting: Backend = Object.assign(Object.create(backend) as Backend, { close: async () => void closed++ });
  await (await Repository.init(counting, { password: 'pw', kdf: KDF })).close();
  assert.equal(closed, 1);
  {
    await using repo = await Repository.open(counting, { password: 'pw' });
    const indexed = await repo.loadIndex();
    await indexed.close();
    await repo.close(); // idempotent
    assert.equal(closed, 2);
  }
  assert.equal(closed, 2);
  {
    await using _repo = await Repository.open(counting, { password: 'pw' });
  }
  assert.equal(closed, 3);
});

test('one program version: the package, the CLI and what snapshots record', async () => {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(VERSION, pkg.version);
  const { repo } = await fixture();
  const [entry] = await listSnapshots(repo);
  assert.equal(entry!.snapshot.programVersion, `stowage ${pkg.version}`);
});
