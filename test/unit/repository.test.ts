// The repository: init/open (v1, v2, on memory and on disk), keys, unpacked files, the index,
// and the BlobWriter that packs blobs and writes the index after its packs.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  BackendError, IntegrityError, InvalidInputError, NotFoundError, RepositoryExistsError, RepositoryNotFoundError,
  WrongPasswordError,
} from '../../src/errors.ts';
import type { Backend, CallOptions, FileHandle, LocalFile } from '../../src/backend/backend.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { initCrypto } from '../../src/repository/crypto.ts';
import { Repository } from '../../src/repository/repository.ts';
import { decodeIndexFile } from '../../src/repository/index-file.ts';
import { PackWriter, expectedPackSize, readPackHeader } from '../../src/repository/pack.ts';
import type { BlobId, BlobType, PackId } from '../../src/repository/id.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };

before(async () => {
  await initCrypto();
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function init(version: 1 | 2 = 2, backend: Backend = new MemoryBackend()) {
  const repo = await Repository.init(backend, { password: 'secret', kdf: KDF, version });
  return { repo, backend };
}

async function names(repo: Repository, type: 'keys' | 'index' | 'snapshots' | 'locks' | 'data'): Promise<string[]> {
  const out: string[] = [];
  for await (const id of repo.listIds(type)) out.push(id);
  return out.sort();
}

/** A MemoryBackend that records the order of saves and can fail chosen ones. */
class RecordingBackend extends MemoryBackend {
  readonly saves: FileHandle[] = [];
  failSave: ((h: FileHandle, n: number) => boolean) | undefined;
  #dataSaves = 0;
  override async save(h: FileHandle, data: Uint8Array, options?: CallOptions): Promise<void> {
    if (h.type === 'data' && this.failSave?.(h, ++this.#dataSaves)) {
      throw new BackendError(`injected failure saving data/${h.name}`, { transient: false });
    }
    await super.save(h, data, options);
    this.saves.push(h);
  }
}

// ---- init / open --------------------------------------------------------------------------

for (const version of [1, 2] as const) {
  test(`init then open, repository version ${version}`, async () => {
    const { repo, backend } = await init(version);
    assert.equal(repo.version, version);
    assert.match(repo.config.id, /^[0-9a-f]{64}$/);
    assert.deepEqual(await names(repo, 'keys'), [repo.keyId]);
    const again = await Repository.open(backend, { password: 'secret' });
    assert.deepEqual(again.config, repo.config);
    assert.equal(again.keyId, repo.keyId);
    assert.equal(again.version, version);
  });
}

test('init and open on disk (LocalBackend)', async () => {
  const dir = await tmpDir('stowage-repo');
  const { repo } = await init(2, new LocalBackend(dir));
  const top = (await readdir(dir)).sort();
  for (const d of ['config', 'data', 'index', 'keys', 'locks', 'snapshots']) assert.ok(top.includes(d), `${d} in ${top.join(',')}`);
  const again = await Repository.open(new LocalBackend(dir), { password: 'secret' });
  assert.deepEqual(again.config, repo.config);
  await assert.rejects(Repository.open(new LocalBackend(`${dir}/nothing-here`), { password: 'secret' }), RepositoryNotFoundError);
});

test('open with a wrong or empty password', async () => {
  const { backend } = await init();
  await assert.rejects(Repository.open(backend, { password: 'Secret' }), (e: unknown) => {
    assert.ok(e instanceof WrongPasswordError);
    assert.equal(e.code, 'WRONG_PASSWORD');
    assert.ok(!e.message.includes('Secret'), 'the password is never in the message');
    return true;
  });
  await assert.rejects(Repository.open(backend, { password: '' }), InvalidInputError);
});

test('open where there is no config: RepositoryNotFoundError naming the location', async () => {
  const backend = new MemoryBackend();
  await assert.rejects(Repository.open(backend, { password: 'x' }), (e: unknown) => {
    assert.ok(e instanceof RepositoryNotFoundError);
    assert.equal(e.location, backend.location);
    assert.ok(e.message.includes(backend.location));
    return true;
  });
});

test('init where a repository exists: RepositoryExistsError, nothing changed', async () => {
  const { repo, backend } = await init();
  await assert.rejects(Repository.init(backend, { password: 'other', kdf: KDF }), RepositoryExistsError);
  assert.deepEqual(await names(repo, 'keys'), [repo.keyId]);
  await Repository.open(backend, { password: 'secret' });
});

// ---- keys ---------------------------------------------------------------------------------

test('addKey, listKeys, removeKey: every key opens the same repository', async () => {
  const { repo, backend } = await init();
  const second = await repo.addKey('second', { kdf: KDF, username: 'ann', hostname: 'box' });
  const keys = await repo.listKeys();
  assert.equal(keys.length, 2);
  assert.deepEqual(keys.find((k) => k.current)!.id, repo.keyId);
  const other = keys.find((k) => !k.current)!;
  assert.equal(other.id, second);
  assert.equal(other.username, 'ann');
  assert.equal(other.hostname, 'box');
  const viaSecond = await Repository.open(backend, { password: 'second' });
  assert.equal(viaSecond.keyId, second);
  assert.deepEqual(viaSecond.config, repo.config);
  // The key a repository was opened with cannot be removed through it.
  await assert.rejects(repo.removeKey(repo.keyId), InvalidInputError);
  await assert.rejects(viaSecond.removeKey(second.slice(0, 8)), InvalidInputError);
  // Another key can, also by a unique prefix.
  await repo.removeKey(second.slice(0, 10));
  assert.deepEqual(await names(repo, 'keys'), [repo.keyId]);
  await assert.rejects(Repository.open(backend, { password: 'second' }), WrongPasswordError);
  await assert.rejects(repo.removeKey('ff'.repeat(32)), NotFoundError);
  await assert.rejects(repo.removeKey('not hex'), InvalidInputError);
});

test('changePassword: the old password stops working, the new one works', async () => {
  const { repo, backend } = await init();
  const oldId = repo.keyId;
  const newId = await repo.changePassword('new password', { kdf: KDF });
  assert.notEqual(newId, oldId);
  assert.equal(repo.keyId, newId);
  assert.deepEqual(await names(repo, 'keys'), [newId]);
  await assert.rejects(Repository.open(backend, { password: 'secret' }), WrongPasswordError);
  const reopened = await Repository.open(backend, { password: 'new password' });
  assert.equal(reopened.keyId, newId);
  assert.deepEqual((await repo.listKeys()).map((k) => [k.id, k.current]), [[newId, true]]);
  await assert.rejects(repo.removeKey(newId), InvalidInputError);
});

// ---- unpacked files -----------------------------------------------------------------------

for (const version of [1, 2] as const) {
  test(`saveUnpacked / loadUnpacked, v${version}: named by the hash, sealed ${version === 1 ? 'plain JSON' : 'as 0x02 + zstd'}`, async () => {
    const { repo } = await init(version);
    const json = Buffer.from(JSON.stringify({ hello: 'world', list: Array.from({ length: 50 }, (_, i) => i) }));
    const id = await repo.saveUnpacked('snapshots', json);
    const stored = await repo.backend.load({ type: 'snapshots', name: id });
    assert.equal(sha(stored), id);
    const plain = repo.open(stored, {});
    if (version === 1) assert.deepEqual(Buffer.from(plain), json);
    else {
      assert.equal(plain[0], 0x02);
      assert.ok(plain.length < json.length, 'compressed');
    }
    assert.deepEqual(Buffer.from(await repo.loadUnpacked('snapshots', id)), json);
  });
}

test('an unpacked file under another name, or damaged, is an IntegrityError naming it', async () => {
  const { repo, backend } = await init();
  const id = await repo.saveUnpacked('snapshots', Buffer.from('{"a":1}'));
  const stored = await backend.load({ type: 'snapshots', name: id });
  const other = 'cd'.repeat(32);
  await backend.save({ type: 'snapshots', name: other }, stored);
  await assert.rejects(repo.loadUnpacked('snapshots', other), (e: unknown) => {
    assert.ok(e instanceof IntegrityError);
    assert.equal(e.file, `snapshots/${other}`);
    assert.match(e.message, /SHA-256/);
    return true;
  });
  // Re-named consistently but with a flipped byte: the MAC catches it.
  const bad = Buffer.from(stored);
  bad[20]! ^= 1;
  const badId = sha(bad);
  await backend.save({ type: 'snapshots', name: badId }, bad);
  await assert.rejects(repo.loadUnpacked('snapshots', badId), (e: unknown) => {
    assert.ok(e instanceof IntegrityError);
    assert.ok(e.message.includes(`snapshots/${badId}`));
    return true;
  });
  await assert.rejects(repo.loadUnpacked('snapshots', 'ee'.repeat(32)), NotFoundError);
});

// ---- blobs ----------------------------------------------------------------------------------

async function indexed(version: 1 | 2 = 2, backend: Backend = new MemoryBackend()) {
  const { repo } = await init(version, backend);
  return { repo, backend, idx: await repo.loadIndex() };
}

async function readAllIndexFiles(repo: Repository) {
  const out: Array<{ id: string; packs: PackId[] }> = [];
  for (const id of await names(repo, 'index')) {
    out.push({ id, packs: decodeIndexFile(await repo.loadUnpacked('index', id), `index/${id}`).packs.map((p) => p.id) });
  }
  return out;
}

test('saveBlob dedups within a run, across runs, and after reopening', async () => {
  const { repo, backend, idx } = await indexed();
  const w = idx.blobWriter();
  const data = randomBytes(3000);
  const first = await w.saveBlob('data', data);
  // Stored: the sealed blob (random bytes stay uncompressed: 3000 + 16 IV + 16 MAC, maybe a
  // zstd frame) and its header entry (37 or 41 bytes).
  assert.equal(first.id, sha(data));
  assert.equal(first.added, true);
  assert.ok(first.stored >= 3000 + 32 + 37 && first.stored <= 3000 + 32 + 41 + 64, `stored ${first.stored}`);
  assert.deepEqual(await w.saveBlob('data', data), { id: sha(data), added: false, stored: 0 });
  assert.equal(w.has('data', first.id), true);
  await w.flush();
  assert.equal(w.stats.dataBlobs, 1);
  assert.equal(w.stats.packs, 1);
  // A second writer on the same index knows it.
  const w2 = idx.blobWriter();
  assert.deepEqual(await w2.saveBlob('data', data), { id: first.id, added: false, stored: 0 });
  await w2.flush();
  assert.equal(w2.stats.packs, 0);
  assert.equal(w2.stats.indexFiles, 0, 'nothing new, no index file');
  // So does a fresh index loaded from the backend.
  const reopened = await (await Repository.open(backend, { password: 'secret' })).loadIndex();
  assert.equal(reopened.index.has(first.id, 'data'), true);
  assert.deepEqual(await reopened.blobWriter().saveBlob('data', data), { id: first.id, added: false, stored: 0 });
  assert.equal((await names(repo, 'data')).length, 1);
});

for (const version of [1, 2] as const) {
  test(`flush writes the packs, then one index file listing them; blobs load back (v${version})`, async () => {
    const backend = new RecordingBackend();
    const { repo, idx } = await indexed(version, backend);
    backend.saves.length = 0;
    const w = idx.blobWriter();
    const blobs: Array<{ type: BlobType; plain: Buffer }> = [];
    for (let i = 0; i < 30; i++) blobs.push({ type: 'data', plain: i % 2 ? randomBytes(200 + i * 37) : Buffer.alloc(1000 + i, i) });
    for (let i = 0; i < 5; i++) blobs.push({ type: 'tree', plain: Buffer.from(`{"nodes":[{"name":"n${i}"}]}\n`) });
    blobs.push({ type: 'data', plain: Buffer.alloc(0) }); // the empty blob
    for (const b of blobs) await w.saveBlob(b.type, b.plain);
    assert.equal(backend.saves.length, 0, 'nothing is stored before packs fill or flush');
    await w.flush();

    const kinds = backend.saves.map((h) => h.type);
    assert.deepEqual(kinds, ['data', 'data', 'index'], 'two packs (data and tree), then the index');
    const [indexFile] = await readAllIndexFiles(repo);
    assert.deepEqual(new Set(indexFile!.packs), new Set(backend.saves.filter((h) => h.type === 'data').map((h) => h.name)));
    assert.deepEqual(w.writtenIndexFiles, [indexFile!.id]);
    assert.deepEqual(idx.indexFiles.get(indexFile!.id)?.sort(), [...indexFile!.packs].sort());

    // Data and tree blobs never share a pack; every pack has the size its index entries imply.
    const packs = idx.index.packs();
    for (const [packId, list] of packs) {
      assert.equal(new Set(list.map((b) => b.type)).size, 1, `pack ${packId} mixes types`);
      const bytes = await backend.load({ type: 'data', name: packId });
      assert.equal(bytes.length, expectedPackSize(list));
      const header = await readPackHeader(repo.masterKeyForWorkers(), bytes.length, bytes, async () => bytes, packId);
      assert.deepEqual(header, list);
      for (const b of list) {
        if (version === 1) assert.equal(b.uncompressedLength, 0, 'v1 never compresses');
        else if (b.type === 'tree') assert.ok(b.uncompressedLength > 0, 'v2 compresses trees');
      }
    }
    // Every blob reads back, verified, from this index and from a freshly loaded one.
    const fresh = await (await Repository.open(backend, { password: 'secret' })).loadIndex();
    for (const r of [idx, fresh]) {
      for (const b of blobs) assert.deepEqual(Buffer.from(await r.loadBlob(b.type, sha(b.plain) as BlobId)), b.plain);
    }
    await assert.rejects(fresh.loadBlob('tree', sha(blobs[0]!.plain) as BlobId), NotFoundError);
  });
}

test('compression off stores data blobs plain but still compresses trees (v2)', async () => {
  const { idx } = await indexed(2);
  const w = idx.blobWriter({ compression: 'off' });
  const d = await w.saveBlob('data', Buffer.alloc(5000, 1));
  const t = await w.saveBlob('tree', Buffer.from('{"nodes":[]}\n'));
  await w.flush();
  assert.equal(idx.index.lookup(d.id)[0]!.uncompressedLength, 0);
  assert.equal(idx.index.lookup(t.id)[0]!.uncompressedLength, 13);
  assert.equal(idx.blobWriter().shouldCompress('data', 10), true);
  assert.equal(w.shouldCompress('data', 10), false);
  assert.equal(w.shouldCompress('tree', 0), false, 'a zero-length blob cannot be marked compressed');
});

test('packs are finished once they reach packSize', async () => {
  const backend = new RecordingBackend();
  const { idx } = await indexed(2, backend);
  const packSize = 4096;
  const packSizes: number[] = [];
  const w = idx.blobWriter({ packSize, compression: 'off', onPack: (_id, list) => packSizes.push(list.reduce((s, b) => s + b.length, 0)) });
  for (let i = 0; i < 40; i++) await w.saveBlob('data', randomBytes(700));
  await w.flush();
  // 40 blobs of 732 stored bytes, 6 per full pack (4392 ≥ 4096). Two packs are open at once (blobs
  // go to either at random, as restic ≥ 0.18); at the end they are merged if that stays below
  // packSize: one left-over pack, or two that together hold 6 blobs or more.
  const full = packSizes.filter((n) => n === 6 * 732);
  const rest = packSizes.filter((n) => n !== 6 * 732).map((n) => n / 732).sort();
  assert.equal(full.length * 6 + rest.reduce((a, b) => a + b, 0), 40);
  assert.ok(rest.length <= 2 && rest.every((n) => Number.isInteger(n) && n < 6), `left-over packs of ${rest.join(', ')} blobs`);
  if (rest.length === 2) assert.ok(rest[0]! + rest[1]! >= 6, `packs of ${rest.join(' and ')} blobs should have been merged`);
  assert.equal(w.stats.packs, packSizes.length);
  assert.equal(idx.index.packs().size, packSizes.length);
  assert.equal(backend.saves.filter((h) => h.type === 'index').length, 1);
});

test('a long run: blobs of stored packs are compacted into the index, not held per blob until the end', async () => {
  // 70 000 blobs of 8 bytes in packs of ~4 KiB: past the 65 536 staged blobs at which the
  // BlobWriter compacts the index (the Map of staged IDs and the run's own set then stay small).
  const { idx } = await indexed(1);
  const w = idx.blobWriter({ packSize: 4096 });
  const ids: string[] = [];
  const bytes = randomBytes(8 * 70_000);
  for (let i = 0; i < 70_000; i++) ids.push((await w.saveBlob('data', bytes.subarray(8 * i, 8 * i + 8))).id);
  assert.ok(idx.index.stagedSize < 65_536, `${idx.index.stagedSize} blobs still staged`);
  assert.ok(idx.index.has(ids[0] as BlobId, 'data') && w.has('data', ids[0] as BlobId));
  await w.flush();
  assert.equal(w.stats.dataBlobs, 70_000);
  for (const id of [ids[0]!, ids[35_000]!, ids[69_999]!]) assert.deepEqual(await idx.loadBlob('data', id as BlobId), bytes.subarray(8 * ids.indexOf(id), 8 * ids.indexOf(id) + 8));
  assert.equal(idx.index.size, 70_000);
});

test('a pack whose upload fails: flush rejects and no index names it', async () => {
  const backend = new RecordingBackend();
  const { repo, idx } = await indexed(2, backend);
  let failed: string | undefined;
  backend.failSave = (h, n) => {
    if (n !== 2) return false;
    failed = h.name;
    return true;
  };
  const w = idx.blobWriter({ packSize: 2048, compression: 'off' });
  const saved: BlobId[] = [];
  let thrown: unknown;
  try {
    for (let i = 0; i < 20; i++) saved.push((await w.saveBlob('data', randomBytes(600))).id);
    await w.flush();
  } catch (e) {
    thrown = e;
  }
  assert.ok(thrown instanceof BackendError, String(thrown));
  assert.ok(failed);
  // Later calls keep failing with the same error.
  await assert.rejects(w.saveBlob('data', randomBytes(10)), BackendError);
  await assert.rejects(w.flush(), BackendError);
  for (const f of await readAllIndexFiles(repo)) assert.ok(!f.packs.includes(failed as PackId), `index ${f.id} names the failed pack`);
  assert.equal(idx.index.hasPack(failed as PackId), false);
  // Whatever an index names exists.
  const stored = new Set(await names(repo, 'data'));
  for (const f of await readAllIndexFiles(repo)) for (const p of f.packs) assert.ok(stored.has(p));
});

test('loadBlob tries every copy; a damaged blob is an IntegrityError naming pack and blob', async () => {
  const { repo, backend, idx } = await indexed(2);
  const plain = randomBytes(2000);
  const w = idx.blobWriter();
  const { id } = await w.saveBlob('data', plain);
  await w.flush();
  const [first] = idx.index.lookup(id);
  // A second copy in a pack of its own.
  const pw = new PackWriter(repo.masterKeyForWorkers(), 'data');
  pw.add(id, repo.seal(plain), 0);
  const copy = pw.finish();
  await backend.save({ type: 'data', name: copy.id }, copy.bytes);
  idx.index.addPack({ id: copy.id, blobs: copy.blobs });
  assert.equal(idx.index.lookup(id).length, 2);

  const damage = async (packId: string, at: number) => {
    const bytes = Buffer.from(await backend.load({ type: 'data', name: packId }));
    bytes[at]! ^= 0x40;
    await backend.save({ type: 'data', name: packId }, bytes);
  };
  await damage(first!.packId, first!.offset + 20);
  assert.deepEqual(Buffer.from(await idx.loadBlob('data', id)), plain, 'the intact copy is used');
  await damage(copy.id, 20);
  await assert.rejects(idx.loadBlob('data', id), (e: unknown) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.equal(e.blob, id);
    assert.match(e.file!, /^data\/[0-9a-f]{2}\/[0-9a-f]{64}$/);
    return true;
  });
});

test('decodeBlob refuses a truncated blob and one whose content does not match its ID', async () => {
  const { repo, idx } = await indexed(1);
  const plain = Buffer.from('some blob');
  const loc = { type: 'data' as const, id: sha(plain) as BlobId, packId: 'ab'.repeat(32) as PackId, offset: 0, length: plain.length + 32, uncompressedLength: 0 };
  const sealed = repo.seal(plain);
  assert.deepEqual(Buffer.from(idx.decodeBlob(loc, sealed)), plain);
  assert.throws(() => idx.decodeBlob(loc, sealed.subarray(1)), /truncated/);
  const other = repo.seal(Buffer.from('other blob'));
  assert.throws(() => idx.decodeBlob({ ...loc, length: other.length }, other), (e: unknown) => {
    assert.ok(e instanceof IntegrityError);
    assert.match(e.message, /does not match its ID/);
    assert.equal(e.blob, loc.id);
    return true;
  });
});

test('a v1 repository refuses an index that uses compression', async () => {
  const { repo } = await init(1);
  const json = `{"packs":[{"id":"${'ab'.repeat(32)}","blobs":[{"id":"${'cd'.repeat(32)}","type":"data","offset":0,"length":40,"uncompressed_length":9}]}]}\n`;
  const id = await repo.saveUnpacked('index', Buffer.from(json));
  await assert.rejects(repo.loadIndex(), (e: unknown) => e instanceof IntegrityError && e.message.includes(`index/${id}`));
});

// restic keys its index by (type, ID): a tree blob and a data blob with the same bytes are two
// blobs. The BlobWriter's in-run set is keyed by ID only, so the second is dropped when both
// are saved in one run (e.g. a file whose content is exactly an empty tree, `{"nodes":[]}\n`,
// next to an empty folder): the snapshot then names a tree that no index lists.
test('a data blob and a tree blob with the same bytes in one run are both stored', async () => {
  const { idx } = await indexed(2);
  const w = idx.blobWriter();
  const bytes = Buffer.from('{"nodes":[]}\n');
  await w.saveBlob('data', bytes);
  const tree = await w.saveBlob('tree', bytes);
  await w.flush();
  assert.equal(tree.added, true);
  assert.deepEqual(Buffer.from(await idx.loadBlob('tree', tree.id)), bytes);
});


test('BlobWriter: blobs waiting for a pack buffer all go on when one is free, even if the first one woken finds a pack to join', async () => {
  // One pack buffer. A big blob fills a pack whose save is held; two small blobs wait. When the
  // save ends, the first waiter starts a new pack; the second must join it (it once waited on
  // for a buffer nobody would free, and the writer hung).
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  class HeldSaves extends MemoryBackend {
    override async save(h: FileHandle, data: Uint8Array, options?: CallOptions): Promise<void> {
      if (h.type === 'data') await gate;
      return super.save(h, data, options);
    }
  }
  const repo = await Repository.init(new HeldSaves(), { password: 'pw', kdf: KDF, version: 1 });
  const indexed = await repo.loadIndex();
  const writer = indexed.blobWriter({ packSize: 1000, packBuffers: 1 });
  await writer.saveBlob('data', randomBytes(2000));
  const waiting = [writer.saveBlob('data', randomBytes(10)), writer.saveBlob('data', randomBytes(10))];
  open();
  const hung = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a blob waited forever for a pack buffer')), 5000).unref());
  await Promise.race([Promise.all(waiting), hung]);
  await Promise.race([writer.flush(), hung]);
  assert.equal(writer.stats.dataBlobs, 3);
  assert.equal(writer.stats.packs, 2, 'the two small blobs share the second pack');
});

test('BlobWriter: on a backend that saves local files, data packs are written to temporary files and stored from them; tree packs, index files and other backends stay in memory', async () => {
  const temp = await tmpDir('stowage-spill');
  const repoDir = await tmpDir('stowage-spill-repo');
  class FileSaves extends LocalBackend {
    readonly fromFiles: { type: string; inTemp: boolean; size: number; onDisk: number }[] = [];
    readonly fromBytes: string[] = [];
    override async saveFile(h: FileHandle, file: LocalFile, options?: CallOptions): Promise<void> {
      this.fromFiles.push({ type: h.type, inTemp: dirname(file.path) === temp, size: file.size, onDisk: (await stat(file.path)).size });
      return super.saveFile(h, file, options);
    }
    override async save(h: FileHandle, data: Uint8Array, options?: CallOptions): Promise<void> {
      this.fromBytes.push(h.type);
      return super.save(h, data, options);
    }
  }
  const backend = new FileSaves(repoDir);
  const { repo } = await init(2, backend);
  const indexed = await repo.loadIndex();
  const writer = indexed.blobWriter({ packSize: 64 * 1024, tempDir: temp, compression: 'off' });
  const blobs = Array.from({ length: 12 }, () => randomBytes(30_000));
  const ids = [];
  for (const b of blobs) ids.push((await writer.saveBlob('data', b)).id);
  const tree = await writer.saveBlob('tree', Buffer.from('{"nodes":[]}\n'));
  await writer.flush();
  assert.ok(backend.fromFiles.length >= 4, `data packs saved from files: ${backend.fromFiles.length}`);
  for (const f of backend.fromFiles) {
    assert.equal(f.type, 'data');
    assert.ok(f.inTemp, 'the file is in the temporary folder');
    assert.equal(f.onDisk, f.size);
  }
  assert.equal(backend.fromFiles.length, writer.stats.packs - 1, 'every data pack, the tree pack not');
  assert.deepEqual(backend.fromBytes.filter((t) => t === 'data'), ['data'], 'one pack saved from memory: the tree pack');
  assert.deepEqual(await readdir(temp), [], 'the temporary files are removed once stored');
  const reopened = await (await Repository.open(new LocalBackend(repoDir), { password: 'secret' })).loadIndex();
  for (let i = 0; i < blobs.length; i++) assert.equal(sha(await reopened.loadBlob('data', ids[i]!)), sha(blobs[i]!));
  assert.equal((await reopened.loadBlob('tree', tree.id)).length, 13);

  // A backend without saveFile (memory), and tempDir false, keep packs in memory; a folder that
  // cannot be written to falls back to memory too.
  for (const [what, make, tempDir] of [
    ['memory backend', () => new MemoryBackend(), temp],
    ['tempDir false', () => new FileSaves(repoDir), false],
    ['missing folder', () => new FileSaves(repoDir), join(temp, 'missing')],
  ] as const) {
    const b = make();
    const r = b instanceof MemoryBackend ? (await init(2, b)).repo : await Repository.open(b, { password: 'secret' });
    const w = (await r.loadIndex()).blobWriter({ packSize: 64 * 1024, tempDir, compression: 'off' });
    for (const blob of blobs.slice(0, 4)) await w.saveBlob('data', Buffer.concat([blob, Buffer.from(what)]));
    await w.flush();
    assert.ok(w.stats.packs >= 2, what);
    if (b instanceof FileSaves) assert.equal(b.fromFiles.length, 0, what);
    assert.deepEqual(await readdir(temp), [], what);
  }
});
