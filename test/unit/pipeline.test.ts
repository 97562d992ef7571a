// The worker pipelines behind backup, restore and check: the file pool (batches, the shared ring
// and its back-pressure, chunks it need not seal), the decode pool (verify, write, owner/mode,
// whole packs), the tree loader, and the node comparison that lets a backup keep an unchanged
// folder's tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IntegrityError, NotFoundError } from '../../src/errors.ts';
import { LockedError } from '../../src/repository/lock.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { open, randomKey, seal } from '../../src/repository/crypto.ts';
import { uninitializedBytes } from '../../src/backend/backend.ts';
import { compress, decompress } from '../../src/repository/compression.ts';
import { PackWriter } from '../../src/repository/pack.ts';
import { Repository } from '../../src/repository/repository.ts';
import { goTimeNow } from '../../src/repository/gotime.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { chunkAll } from '../../src/snapshot/engine/chunker.ts';
import { randomPolynomial } from '../../src/repository/polynomial.ts';
import { FilePool } from '../../src/snapshot/engine/file-pool.ts';
import { RING_SOFT } from '../../src/snapshot/engine/file-worker.ts';
import { DecodePool, ownedBytes } from '../../src/snapshot/engine/decode-pool.ts';
import { TreeLoader } from '../../src/snapshot/engine/tree-loader.ts';
import { backup, sameNodes } from '../../src/snapshot/operations/backup/index.ts';
import { Lock } from '../../src/repository/lock.ts';
import type { TreeNode } from '../../src/snapshot/model/node.ts';
import { decodeTree, encodeTree } from '../../src/snapshot/model/tree.ts';
import { tmpDir } from '../helpers/tmp.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('file pool: every chunk sealed, in file order, through a slow sink; known chunks only hashed', async () => {
  const dir = await tmpDir('stowage-pool');
  const pol = randomPolynomial();
  const key = randomKey();
  // Many small files (batched) and two of several chunks; 10 MiB of random data fills the ring.
  const files: Array<{ path: string; data: Buffer }> = [];
  for (let i = 0; i < 150; i++) files.push({ path: join(dir, `small-${i}`), data: i % 2 ? randomBytes(1 + i * 37) : Buffer.from('text '.repeat(i + 1)) });
  files.push({ path: join(dir, 'big'), data: randomBytes(10 * 1024 * 1024) });
  files.push({ path: join(dir, 'big-copy'), data: Buffer.alloc(0) });
  files[files.length - 1]!.data = files[files.length - 2]!.data;
  files.push({ path: join(dir, 'empty'), data: Buffer.alloc(0) });
  for (const f of files) await writeFile(f.path, f.data);

  const sealed = new Map<string, number>();
  const stored = new Set<string>();
  const pool = new FilePool({
    key, polynomial: pol, compress: true, mode: 'auto', threads: 2,
    // Slow: the workers fill their rings and must wait for room.
    sink: async (id, bytes, ulen, plainLength) => {
      await new Promise((r) => setTimeout(r, 2));
      let plain: Uint8Array = open(key, bytes);
      if (ulen) plain = decompress(plain, ulen, {});
      assert.equal(plain.length, plainLength);
      assert.equal(sha(plain), id, 'the sealed bytes are the chunk with that ID');
      sealed.set(id, (sealed.get(id) ?? 0) + 1);
      stored.add(id);
    },
    has: (id) => stored.has(id),
  });
  try {
    const results = await Promise.all(files.map((f) => pool.process({ path: f.path, size: f.data.length })));
    for (let i = 0; i < files.length; i++) {
      const { data } = files[i]!;
      const want = chunkAll(pol, data).map((c) => sha(data.subarray(c.start, c.start + c.length)));
      assert.equal(results[i]!.size, data.length);
      assert.deepEqual(results[i]!.ids, want, files[i]!.path);
      assert.equal(results[i]!.error, undefined);
    }
    assert.ok(results[files.length - 3]!.ids.length >= 2, 'the big file has several chunks');
    // A worker does not seal a chunk it sealed before; the copy of the big file may go to the
    // other worker (the blob writer then drops the second copy).
    for (const [id, n] of sealed) assert.ok(n <= 2, id);

    // A changed file whose old chunks the repository has: they are hashed, not sealed again.
    const big = files[files.length - 3]!;
    const before = sealed.size;
    const changed = Buffer.concat([big.data, Buffer.from('appended')]);
    await writeFile(big.path, changed);
    const again = await pool.process({ path: big.path, size: changed.length, known: results[files.length - 3]!.ids });
    assert.deepEqual(again.ids, chunkAll(pol, changed).map((c) => sha(changed.subarray(c.start, c.start + c.length))));
    assert.ok(sealed.size - before <= 2, 'only the changed tail is sealed');

    const missing = await pool.process({ path: join(dir, 'no-such-file') });
    assert.equal(missing.error?.code, 'ENOENT');
    assert.deepEqual(missing.ids, []);
  } finally {
    await pool.close();
  }
});

test('file pool: a stream of small files touches only the start of the ring, though the sink lags', async () => {
  const dir = await tmpDir('stowage-pool-ring');
  const paths: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const path = join(dir, `f-${i}`);
    await writeFile(path, randomBytes(8 * 1024 + ((i * 7919) % (16 * 1024))));
    paths.push(path);
  }
  let low = Infinity;
  let high = 0;
  const pool = new FilePool({
    key: randomKey(), polynomial: randomPolynomial(), compress: false, mode: 'off', threads: 1,
    // Lags behind the worker, so the ring is rarely empty and never starts over on its own.
    sink: async (_id, bytes) => {
      low = Math.min(low, bytes.byteOffset);
      high = Math.max(high, bytes.byteOffset + bytes.length);
      await new Promise((r) => setTimeout(r, 1));
    },
    has: () => false,
  });
  try {
    const results = await Promise.all(paths.map((path) => pool.process({ path, size: 1 })));
    assert.equal(results.length, 1000);
    assert.ok(results.every((r) => r.ids.length === 1 && !r.error));
  } finally {
    await pool.close();
  }
  // ~16 MiB went through a 10 MiB ring; the part touched (and so resident) stays near RING_SOFT.
  assert.ok(high - low <= RING_SOFT + 3 * 1024 * 1024, `ring touched from ${low} to ${high}`);
});

test('decode pool: writes verified blobs where they belong, refuses a damaged one, sets owner and mode', async () => {
  const dir = await tmpDir('stowage-decode');
  const key = randomKey();
  const a = randomBytes(100_000);
  const b = Buffer.from('compressible '.repeat(5000));
  const bz = compress(b, 'auto');
  const sa = seal(key, a);
  const sb = seal(key, bz);
  const bytes = Buffer.concat([sa, sb, sa]);
  bytes[sa.length + sb.length + 50]! ^= 1; // the third copy is damaged
  const file = join(dir, 'out');
  const other = join(dir, 'other');
  const pool = new DecodePool({ key, threads: 2 });
  try {
    const done = await pool.run(bytes, 'data/xx/pack', [
      { at: 0, length: sa.length, uncompressedLength: 0, id: sha(a), writes: [[Buffer.from(file), 0, true], [Buffer.from(other), 10, true]] },
      { at: sa.length, length: sb.length, uncompressedLength: b.length, id: sha(b), writes: [[Buffer.from(file), a.length, true]] },
      { at: sa.length + sb.length, length: sa.length, uncompressedLength: 0, id: sha(a), writes: [[Buffer.from(other), 0, true]] },
    ], { finish: [[Buffer.from(file), -1, 0, 0o640], [Buffer.from(other), -1, 0, 0o600]] });
    assert.deepEqual(done.errors.slice(0, 2), [null, null]);
    assert.match(done.errors[2]!, /MAC/);
    assert.deepEqual(await readFile(file), Buffer.concat([a, b]));
    assert.equal((await stat(file)).mode & 0o777, 0o640);
    // The file with a missing blob keeps its bytes from the good blob, and is left to the caller.
    assert.deepEqual((await readFile(other)).subarray(10), a);
    assert.deepEqual(done.finished, [null, undefined]);

    // A whole pack, given away: every blob checked.
    const w = new PackWriter(key, 'data');
    w.add(sha(a) as BlobId, sa, 0);
    w.add(sha(b) as BlobId, sb, b.length);
    const pack = w.finish();
    // As restore and check fill a range: memory without a zero fill, which can be given away.
    const owned = uninitializedBytes(pack.bytes.length);
    owned.set(pack.bytes);
    assert.ok(!Buffer.isBuffer(owned) && owned.length === pack.bytes.length);
    assert.ok(ownedBytes(owned) && !ownedBytes(pack.bytes), 'a Buffer is never given away');
    const whole = await pool.run(owned, 'data/yy/pack', pack.blobs.map((p) => ({ at: p.offset, length: p.length, uncompressedLength: p.uncompressedLength, id: p.id })), { transfer: true });
    assert.equal(owned.length, 0, 'the bytes moved to the worker');
    assert.deepEqual(whole.errors, [null, null]);
  } finally {
    await pool.close();
  }
});

function node(name: string, extra: Partial<TreeNode> = {}): TreeNode {
  const t = goTimeNow();
  return { name, type: 'file', mode: 0o644, mtime: t, atime: t, ctime: t, uid: 1, gid: 2, inode: 7n, size: 3, content: [], ...extra };
}

test('sameNodes: equal when every encoded field is, zero values counted as absent', () => {
  const a = node('a', { content: ['ab'.repeat(32) as BlobId] });
  assert.ok(sameNodes([a], [{ ...a, inode: 7 }]), 'number and bigint of one value');
  assert.ok(sameNodes([a], [{ ...a, user: '', links: 0 }]), 'empty values are left out alike');
  assert.ok(sameNodes([a], decodeTree(encodeTree([a]), 'x')), 'a node and its decoded encoding');
  for (const change of [
    { name: 'b' }, { mode: 0o600 }, { uid: 0 }, { size: 4 }, { inode: 8n }, { user: 'root' }, { links: 2 },
    { mtime: { ...a.mtime, epochNs: a.mtime.epochNs + 1n } }, { mtime: { ...a.mtime, offsetMinutes: a.mtime.offsetMinutes + 60 } },
    { content: [] }, { content: null }, { extendedAttributes: [{ name: 'user.x', value: Buffer.from('1') }] }, { error: 'oops' },
  ] as Array<Partial<TreeNode>>) {
    assert.ok(!sameNodes([a], [{ ...a, ...change }]), JSON.stringify(Object.keys(change)));
  }
  assert.ok(!sameNodes([a], [a, node('b')]));
});

test('tree loader: prefetched trees equal loadBlob\'s; a missing one throws NotFoundError, a damaged one IntegrityError', async () => {
  const backend = new MemoryBackend();
  const repo = await (await Repository.init(backend, { password: 'pw', kdf: { N: 1024, r: 8, p: 1 } })).loadIndex();
  const w = repo.blobWriter();
  const ids: BlobId[] = [];
  for (let i = 0; i < 30; i++) ids.push((await w.saveBlob('tree', encodeTree([node(`f${i}`, { size: i })]))).id);
  await w.flush();
  const loader = new TreeLoader(repo);
  loader.prefetch([...ids, ...ids.slice(0, 3)]);
  for (const id of ids) assert.deepEqual(await loader.load(id), decodeTree(await repo.loadBlob('tree', id), id));
  await assert.rejects(loader.load('cd'.repeat(32) as BlobId), NotFoundError);

  // Damage one tree in its pack: read with its neighbours or alone, it is refused.
  const loc = repo.index.lookup(ids[5]!, 'tree')[0]!;
  const stored = new Uint8Array(await backend.load({ type: 'data', name: loc.packId }));
  stored[loc.offset + 20]! ^= 1;
  await backend.save({ type: 'data', name: loc.packId }, stored);
  const again = new TreeLoader(repo);
  again.prefetch(ids);
  await assert.rejects(again.load(ids[5]!), IntegrityError);
  assert.deepEqual(await again.load(ids[6]!), decodeTree(await repo.loadBlob('tree', ids[6]!), ids[6]!));
});

test('backup reads while the lock is being taken, but stores nothing without it and says why', async () => {
  const dir = await tmpDir('stowage-lockwait');
  for (let i = 0; i < 50; i++) await writeFile(join(dir, `f${i}`), randomBytes(20_000));
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: { N: 1024, r: 8, p: 1 } });
  const indexed = await repo.loadIndex();
  const held = await Lock.acquire(repo, { exclusive: true });
  await assert.rejects(backup(indexed, { paths: [dir] }), LockedError);
  for await (const f of backend.list('data')) assert.fail(`pack ${f.name} stored without the lock`);
  for await (const f of backend.list('snapshots')) assert.fail(`snapshot ${f.name} stored without the lock`);
  await held.release();
  assert.equal((await backup(indexed, { paths: [dir] })).summary.filesNew, 50);
});
