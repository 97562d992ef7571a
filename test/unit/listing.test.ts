// One listing of snapshots/ and index/ per open (or per refresh): the open's listings are shared
// by the cache, the index load and the command; a lock taken makes them be listed again; a
// refresh lists again; this process's own saves and removes are seen without a listing. Counted
// with the observe wrapper on the storage, so every backend call is one event.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backend/backend.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { ObservedBackend, type BackendEvent } from '../../src/backend/wrappers/observe.ts';
import { initCrypto } from '../../src/repository/crypto.ts';
import { Repository } from '../../src/repository/repository.ts';
import { Lock, withLockAndIndex } from '../../src/repository/lock.ts';
import { ListingBackend } from '../../src/repository/listing.ts';
import { listSnapshots, loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const PASSWORD = 'secret';

before(async () => {
  await initCrypto();
});

/** The storage, seen through a counter of its calls. */
function counted(inner: Backend): { backend: ObservedBackend; events: BackendEvent[]; count: (op: string, type?: string) => number; reset: () => void } {
  const events: BackendEvent[] = [];
  const backend = new ObservedBackend(inner, (e) => events.push(e));
  return {
    backend,
    events,
    count: (op, type) => events.filter((e) => e.op === op && (type === undefined || e.type === type)).length,
    reset: () => void events.splice(0),
  };
}

/** A repository with two snapshots (two backups of a small folder), on memory. */
async function repositoryWithSnapshots(): Promise<MemoryBackend> {
  const mem = new MemoryBackend();
  const repo = await Repository.init(mem, { password: PASSWORD, kdf: KDF });
  const src = await tmpDir('stowage-listing');
  await writeFile(path.join(src, 'a.txt'), 'one');
  await backup(repo, { paths: [src], hostname: 'h' });
  await writeFile(path.join(src, 'b.txt'), 'two');
  await backup(repo, { paths: [src], hostname: 'h' });
  return mem;
}

test('open with a cache + index load + "latest": config, keys, each listing once', async () => {
  const mem = await repositoryWithSnapshots();
  const c = counted(mem);
  const cacheDir = await tmpDir('stowage-listing-cache');
  const repo = await Repository.open(c.backend, { password: PASSWORD, cache: { dir: cacheDir }, holdListings: true });
  const indexed = await repo.loadIndex();
  const latest = await loadSnapshot(indexed, 'latest');
  assert.equal((await listSnapshots(repo)).length, 2);
  assert.equal(latest.snapshot.hostname, 'h');
  assert.equal(c.count('list', 'snapshots'), 1, 'snapshots/ listed once');
  assert.equal(c.count('list', 'index'), 1, 'index/ listed once');
  assert.equal(c.count('list', 'keys'), 1);
  assert.equal(c.count('load', 'config'), 1);
  assert.equal(c.count('stat'), 0, 'nothing is asked with a stat (HEAD)');
  // A second open with the warm cache: listings and config/key reads only.
  c.reset();
  const again = await Repository.open(c.backend, { password: PASSWORD, cache: { dir: cacheDir }, holdListings: true });
  await loadSnapshot(await again.loadIndex(), 'latest');
  assert.deepEqual(
    c.events.map((e) => `${e.op} ${e.type}`).sort(),
    ['list index', 'list keys', 'list snapshots', 'load config', 'load keys'],
  );
});

test('holdListings without a cache or prefetch lists on first use, once per type', async () => {
  const mem = await repositoryWithSnapshots();
  const c = counted(mem);
  const repo = await Repository.open(c.backend, { password: PASSWORD, holdListings: true, prefetch: [] });
  assert.equal(c.count('list', 'snapshots') + c.count('list', 'index'), 0, 'nothing listed before it is wanted');
  const indexed = await repo.loadIndex();
  await loadSnapshot(indexed, 'latest');
  await listSnapshots(indexed);
  assert.equal(c.count('list', 'snapshots'), 1);
  assert.equal(c.count('list', 'index'), 1);
});

test('a lock taken makes the listings be made again, once, after it is held; the own lock is not read', async () => {
  const mem = await repositoryWithSnapshots();
  const c = counted(mem);
  const repo = await Repository.open(c.backend, { password: PASSWORD, holdListings: true });
  assert.equal(c.count('list', 'snapshots'), 1);
  c.reset();
  const lock = await Lock.acquire(repo, { exclusive: false, settleTime: 0 });
  assert.equal(c.count('load', 'locks'), 0, 'its own lock file is not read back');
  const indexed = await repo.loadIndex();
  await loadSnapshot(indexed, 'latest');
  assert.equal(c.count('list', 'snapshots'), 1, 'snapshots/ listed again under the lock, once');
  assert.equal(c.count('list', 'index'), 1, 'index/ listed again under the lock, once');
  c.reset();
  await lock.release();
  assert.deepEqual(c.events.map((e) => `${e.op} ${e.type}`), ['remove locks']);
});

test('a file another client writes is seen after refresh (not before); own saves and removes at once', async () => {
  const mem = await repositoryWithSnapshots();
  const c = counted(mem);
  const repo = await Repository.open(c.backend, { password: PASSWORD, holdListings: true });
  const indexed = await repo.loadIndex();
  assert.equal((await listSnapshots(repo)).length, 2);
  // Another client: a third snapshot, written to the storage directly.
  const other = await Repository.open(mem, { password: PASSWORD });
  const [first] = await listSnapshots(other);
  const copy = await other.loadUnpacked('snapshots', first!.id);
  const { decodeSnapshot, encodeSnapshot } = await import('../../src/snapshot/model/snapshot.ts');
  const s = decodeSnapshot(copy, first!.id);
  const theirs = await other.saveUnpacked('snapshots', encodeSnapshot({ ...s, hostname: 'other' }));
  assert.equal((await listSnapshots(repo)).length, 2, 'the listing of the open is used until a refresh');
  const r = await indexed.refresh();
  assert.equal(r.snapshotsChanged, true);
  assert.equal((await listSnapshots(repo)).length, 3);
  assert.equal(c.count('list', 'snapshots'), 2, 'the open and the refresh');
  // Own writes and removes are in the held listing without another request.
  const mine = await repo.saveUnpacked('snapshots', encodeSnapshot({ ...s, hostname: 'mine' }));
  assert.ok((await listSnapshots(repo)).some((e) => e.id === mine));
  await repo.backend.remove({ type: 'snapshots', name: theirs });
  assert.ok(!(await listSnapshots(repo)).some((e) => e.id === theirs));
  assert.equal(c.count('list', 'snapshots'), 2);
  assert.ok(repo.backend instanceof ListingBackend);
});

test('without holdListings (the default) every listing asks the backend, as a long-lived handle needs', async () => {
  const mem = await repositoryWithSnapshots();
  const c = counted(mem);
  const repo = await Repository.open(c.backend, { password: PASSWORD });
  await loadSnapshot(await repo.loadIndex(), 'latest');
  assert.equal(c.count('list', 'snapshots'), 2, 'the index load and "latest"');
  assert.ok(!(repo.backend instanceof ListingBackend));
});

test('a listing aborted by one caller is made again for another', async () => {
  const mem = await repositoryWithSnapshots();
  const c = counted(mem);
  const listing = new ListingBackend(c.backend);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(listing.prefetch(['snapshots'], { signal: ac.signal }), { name: 'AbortedError' });
  const [names] = await listing.prefetch(['snapshots']);
  assert.equal(names!.length, 2);
});

for (const when of ['read', 'unreadable'] as const) {
  test(`withLockAndIndex: an index file the cache holds that a prune removed before the lock was held (${when === 'read' ? 'after the early load read it' : 'unreadable from the cache'}) is not in the index fn gets; nothing listed before the lock`, async () => {
    const mem = await repositoryWithSnapshots();
    const indexFiles: string[] = [];
    for await (const f of mem.list('index')) indexFiles.push(f.name);
    assert.ok(indexFiles.length >= 2);
    const gone = indexFiles[0]!;
    const cacheDir = await tmpDir('stowage-listing-lock-cache');
    const warm = await Repository.open(mem, { password: PASSWORD, cache: { dir: cacheDir } });
    await warm.loadIndex();
    if (when === 'unreadable') {
      // The cache's copy is damaged and the backend's is gone: the early load cannot read it.
      const file = path.join(warm.cache!.dir, 'index', gone.slice(0, 2), gone);
      await writeFile(file, 'damaged');
      await mem.remove({ type: 'index', name: gone });
    }
    // Another client's prune ends while our lock is taken (when the lock check lists locks/,
    // after the early load has read the cache's index files).
    class PruneMeanwhile extends ObservedBackend {
      override async *list(type: Parameters<Backend['list']>[0], options?: Parameters<Backend['list']>[1]) {
        if (when === 'read' && type === 'locks') await mem.remove({ type: 'index', name: gone }).catch(() => undefined);
        yield* super.list(type, options);
      }
    }
    const events: BackendEvent[] = [];
    const repo = await Repository.open(new PruneMeanwhile(mem, (e) => events.push(e)), { password: PASSWORD, holdListings: true, cache: { dir: cacheDir }, prefetch: [] });
    const seen = await withLockAndIndex(repo, { exclusive: false, settleTime: 50 }, async (indexed) => [...indexed.indexFiles.keys()]);
    assert.ok(!seen.includes(gone), 'the removed index file is not in the index');
    assert.equal(seen.length, indexFiles.length - 1);
    // Listed only after the lock is held: one of each, as a load under the lock.
    const lists = events.filter((e) => e.op === 'list').map((e) => e.type);
    assert.deepEqual(lists.slice(0, 2), ['keys', 'locks']);
    assert.deepEqual(lists.slice(2).sort(), ['index', 'snapshots']);
  });
}
