// A repository that stays current: an IndexedRepository opened long ago, while restic 0.19 backs
// up more and prunes, still reads, restores, reports statistics and picks restic's snapshot as a
// backup's parent (refreshing its index when a blob is missing or a pack is gone), refresh()
// loads only what is new and drops what was pruned, a refresh with nothing new costs the two
// LIST requests, and the auto-refresh interval stops on close() and on abort. The same tests run
// on a real rest-server and a real MinIO (S3), one server per kind.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { ObservedBackend, type BackendEvent } from '../../src/backend/wrappers/observe.ts';
import { Repository, sha256hex, type IndexedRepository, type RefreshResult } from '../../src/repository/repository.ts';
import { goTimeFromDate } from '../../src/repository/gotime.ts';
import { encodeTree } from '../../src/snapshot/model/tree.ts';
import { encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import type { TreeNode } from '../../src/snapshot/model/node.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { repositoryStats } from '../../src/snapshot/operations/stats.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { copy } from '../../src/snapshot/operations/copy.ts';
import { diffSnapshots } from '../../src/snapshot/operations/diff.ts';
import { dumpFile } from '../../src/snapshot/operations/dump.ts';
import { findByPattern, findIds } from '../../src/snapshot/operations/find.ts';
import { BlobNotFoundError } from '../../src/errors.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticBin, resticOk, resticJson } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { REMOTE_KINDS, startRemote, type Remote } from '../servers/remote.ts';

const PASSWORD = 'refresh password';
const HOST = 'refresh-host';
const FILES = 205;

for (const kind of REMOTE_KINDS) describe(`a long-open IndexedRepository stays current while restic 0.19 writes (${kind})`, () => {
  let server: Remote;
  let work: string;
  let src: string;
  let location: string;
  let bin: string;
  const events: BackendEvent[] = [];
  const opts = () => ({ repo: location, password: PASSWORD, env: server.env });
  /** An index loaded now, on a backend whose requests are counted in `events`. */
  const openIndexed = async (): Promise<IndexedRepository> => {
    const backend = new ObservedBackend(await server.backend(location), (e) => events.push(e));
    return (await Repository.open(backend, { password: PASSWORD })).loadIndex();
  };
  /** Handles loaded before restic's second backup (each test gets its own stale one). */
  const STALE = ['stats', 'restore', 'backup', 'loadBlob', 'diff', 'find', 'findIds', 'dump', 'copy'] as const;
  const stale: Record<(typeof STALE)[number], IndexedRepository> = {} as never;

  before(async () => {
    bin = resticBin('0.19');
    server = await startRemote(kind);
    work = await mkdtemp(path.join(tmpdir(), 'stowage-refresh-'));
    src = path.join(work, 'src');
    location = server.location('refresh');
    for (let d = 0; d < 5; d++) await mkdir(path.join(src, `d${d}`), { recursive: true });
    for (let i = 0; i < FILES; i++) await writeFile(path.join(src, `d${i % 5}`, `f${i}.txt`), `first version of file ${i}\n`.repeat(1 + (i % 50)));
    await resticOk(bin, ['init'], opts());
    await resticOk(bin, ['backup', '--host', HOST, src], opts());
    for (const k of STALE) stale[k] = await openIndexed();
    // restic backs up more: new contents (new data blobs and trees, in a new index file).
    for (let i = 0; i < FILES; i += 3) await writeFile(path.join(src, `d${i % 5}`, `f${i}.txt`), `second version of file ${i}\n`.repeat(2 + (i % 40)));
    await writeFile(path.join(src, 'added.txt'), 'a file restic saw and the old index did not\n');
    await resticOk(bin, ['backup', '--host', HOST, src], opts());
  });
  after(async () => {
    for (const r of Object.values(stale)) await r?.close();
    await server?.stop();
    if (work) await removeTree(work);
  });

  it('listSnapshots and repositoryStats on the old handle see restic\'s new snapshot (stats refreshes first)', async () => {
    const old = stale.stats;
    assert.equal((await listSnapshots(old)).length, 2);
    const stats = await repositoryStats(old);
    const fresh = await openIndexed();
    try {
      assert.deepEqual(stats, await repositoryStats(fresh));
      assert.equal(stats.snapshotCount, 2);
      assert.equal(stats.totalFileCount, 2 * FILES + 1);
    } finally {
      await fresh.close();
    }
  });

  it('loadBlob of a tree only the new index lists refreshes once; a blob missing after the refresh is a BlobNotFoundError that says so', async () => {
    const old = stale.loadBlob;
    const [, latest] = await listSnapshots(old);
    assert.equal(old.index.has(latest!.snapshot.tree, 'tree'), false, 'the old index lacks restic\'s new tree');
    const before = events.length;
    const tree = await old.loadBlob('tree', latest!.snapshot.tree);
    assert.ok(tree.length > 0);
    const lists = events.slice(before).filter((e) => e.op === 'list').map((e) => e.type).sort();
    assert.deepEqual(lists, ['index', 'snapshots'], 'one refresh');
    const missing = '00'.repeat(32) as BlobId;
    const err = await old.loadBlob('data', missing).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BlobNotFoundError, String(err));
    assert.equal(err.indexRefreshed, true);
    assert.match(err.message, new RegExp(`data blob ${missing} is not in the index, even after the index was refreshed`));
  });

  it('restore latest on the old handle restores restic\'s new snapshot exactly', async () => {
    const target = path.join(work, 'restore-stale');
    const r = await restore(stale.restore, 'latest', { target });
    assert.equal(r.filesRestored, FILES + 1);
    assert.deepEqual(await compareTrees(src, path.join(target, src)), []);
  });

  it('diff, find (by pattern and by ID), dump and copy on old handles see restic\'s new snapshot exactly', async () => {
    const fresh = await openIndexed();
    try {
      const [first, latest] = await listSnapshots(fresh);
      const diff = await diffSnapshots(stale.diff, first!.id, latest!.id);
      assert.deepEqual(diff, await diffSnapshots(fresh, first!.id, latest!.id));
      assert.equal(diff.added.files, 1);

      const hits: string[] = [];
      for await (const h of findByPattern(stale.find, ['added.txt'])) hits.push(`${h.snapshot.id} ${h.path}`);
      assert.deepEqual(hits, [`${latest!.id} ${path.join(src, 'added.txt')}`]);

      let added: string | undefined;
      for await (const h of findByPattern(fresh, ['added.txt'])) added = h.node.content![0];
      const found: string[] = [];
      for await (const f of findIds(stale.findIds, { blobs: [added!] })) found.push(`${f.snapshot.id} ${f.path}`);
      assert.deepEqual(found, [`${latest!.id} ${path.join(src, 'added.txt')}`]);

      const dumped = await dumpFile(stale.dump, 'latest', path.join(src, 'added.txt'));
      const chunks: Buffer[] = [];
      for await (const c of dumped.stream) chunks.push(c as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'a file restic saw and the old index did not\n');

      const dstDir = path.join(work, 'copy-dst');
      const dst = await (await Repository.init(new LocalBackend(dstDir), { password: PASSWORD, kdf: { N: 1024, r: 8, p: 1 } })).loadIndex();
      try {
        const copied = await copy(stale.copy, dst, { snapshots: [latest!.id] });
        assert.equal(copied.copied.length, 1);
        const target = path.join(work, 'restore-copied');
        await restore(dst, 'latest', { target });
        assert.deepEqual(await compareTrees(src, path.join(target, src)), []);
      } finally {
        await dst.close();
      }
    } finally {
      await fresh.close();
    }
  });

  it('a Stowage backup on the old handle takes restic\'s snapshot as parent and its files as unmodified', async () => {
    const snaps = await resticJson<Array<{ id: string }>>(bin, ['snapshots', '--json'], opts());
    const r = await backup(stale.backup, { paths: [src], hostname: HOST });
    assert.deepEqual(r.errors, []);
    assert.equal(r.snapshot.parent, snaps[snaps.length - 1]!.id);
    assert.equal(r.summary.filesUnmodified, FILES + 1);
    assert.equal(r.summary.filesNew + r.summary.filesChanged, 0);
    assert.equal(r.summary.dataBlobs, 0);
  });

  it('copy and diff on a handle that knows a tree but not its data (indexed later) refresh once; a blob still missing is a BlobNotFoundError', async () => {
    // What a handle sees when it loads the index while another client writes: the tree's index
    // file is there, the data's not yet. The snapshot is dated 2000, so it is never "latest".
    const time = goTimeFromDate(new Date('2000-01-01T00:00:00Z'), 0);
    const fileNode = (name: string, content: BlobId[], size: number): TreeNode =>
      ({ name, type: 'file', mode: 0o644, mtime: time, atime: time, ctime: time, uid: 0, gid: 0, size, content });
    const writer = await openIndexed();
    const handles: IndexedRepository[] = [writer];
    const dst = await (await Repository.init(new LocalBackend(path.join(work, 'copy-late')), { password: PASSWORD, kdf: { N: 1024, r: 8, p: 1 } })).loadIndex();
    try {
      const data = Buffer.from('data whose index file came after its tree\'s\n');
      const dataId = sha256hex(data) as BlobId;
      const ghostId = sha256hex(Buffer.from('never written')) as BlobId;
      const w1 = writer.blobWriter();
      const { id: tree } = await w1.saveBlob('tree', encodeTree([fileNode('late.txt', [dataId], data.length)]));
      const { id: ghostTree } = await w1.saveBlob('tree', encodeTree([fileNode('ghost.txt', [ghostId], 13)]));
      await w1.flush();
      const [forCopy, forDiff, forGhost] = [await openIndexed(), await openIndexed(), await openIndexed()];
      handles.push(forCopy, forDiff, forGhost);
      const w2 = writer.blobWriter();
      await w2.saveBlob('data', data);
      await w2.flush();
      const snapshot = (tree: BlobId) => encodeSnapshot({ time, tree, paths: ['/late'], hostname: 'late-host' });
      const late = await writer.repo.saveUnpacked('snapshots', snapshot(tree));
      const ghost = await writer.repo.saveUnpacked('snapshots', snapshot(ghostTree));
      assert.equal(forCopy.index.has(tree, 'tree'), true);
      assert.equal(forCopy.index.has(dataId, 'data'), false, 'the handle lacks the data blob');

      const copied = await copy(forCopy, dst, { snapshots: [late] });
      assert.equal(copied.copied.length, 1);
      const dumped = await dumpFile(dst, copied.copied[0]!.newId, '/late.txt');
      const chunks: Buffer[] = [];
      for await (const c of dumped.stream) chunks.push(c as Buffer);
      assert.deepEqual(Buffer.concat(chunks), data);

      const first = (await listSnapshots(forDiff)).find((e) => e.snapshot.hostname === HOST);
      const diff = await diffSnapshots(forDiff, first!.id, late);
      assert.ok(diff.added.bytes >= data.length, JSON.stringify(diff.added));
      assert.deepEqual(diff, await diffSnapshots(writer, first!.id, late));

      // A blob nobody indexed: one refresh, then BlobNotFoundError (copy and diff alike).
      const isMissing = (e: unknown) => e instanceof BlobNotFoundError && e.indexRefreshed && e.blob === ghostId;
      await assert.rejects(copy(forGhost, dst, { snapshots: [ghost] }), isMissing);
      await assert.rejects(diffSnapshots(forGhost, late, ghost), isMissing);
      const errors: unknown[] = [];
      await diffSnapshots(forGhost, late, ghost, { onError: (e) => errors.push(e) });
      assert.ok(errors.length === 1 && isMissing(errors[0]), String(errors));
      // Gone again, so restic's prune below does not meet a snapshot naming a missing blob.
      for (const id of [late, ghost]) await writer.backend.remove({ type: 'snapshots', name: id });
    } finally {
      await dst.close();
      for (const h of handles) await h.close();
    }
  });

  it('a refresh with nothing new costs the two LIST requests only (a reload costs one per index file more)', async () => {
    const indexed = await openIndexed();
    try {
      let from = events.length;
      const nothing = await indexed.refresh();
      const refreshEvents = events.slice(from);
      assert.deepEqual(nothing, { added: [], removed: [], snapshotsChanged: false, packsAdded: 0, packsRemoved: 0 });
      assert.deepEqual(refreshEvents.map((e) => `${e.op} ${e.type}`).sort(), ['list index', 'list snapshots']);
      from = events.length;
      await indexed.repo.loadIndex();
      const reload = events.slice(from);
      const indexFiles = reload.filter((e) => e.op === 'load' && e.type === 'index').length;
      assert.ok(indexFiles >= 3, `${indexFiles} index files`);
      assert.equal(reload.length, 2 + indexFiles);
      console.log(`no-change refresh: ${refreshEvents.length} requests; reload: ${reload.length} requests (${indexFiles} index files)`);
    } finally {
      await indexed.close();
    }
  });

  it('restic forget --prune removes packs: refresh() drops them, and an exact restore follows (also without refresh, through a vanished pack)', async () => {
    const old = stale.restore; // refreshed by its restore above, before the prune
    const untouched = await openIndexed(); // never refreshed by hand: its reads meet the vanished packs
    try {
      const packsBefore = new Set(old.index.packs().keys());
      await resticOk(bin, ['forget', '--keep-last', '1', '--prune', '--max-unused', '0'], opts());
      const listed = new Set<string>();
      for await (const f of old.backend.list('data')) listed.add(f.name);
      const vanished = [...packsBefore].filter((p) => !listed.has(p));
      assert.ok(vanished.length > 0, 'the prune removed packs');

      const result: RefreshResult = await old.refresh();
      assert.ok(result.removed.length > 0);
      assert.ok(result.added.length > 0);
      assert.equal(result.snapshotsChanged, true);
      assert.ok(result.packsRemoved >= vanished.length);
      assert.deepEqual([...old.index.packs().keys()].filter((p) => !listed.has(p)), [], 'no pruned pack stays in the index');
      const fresh = await openIndexed();
      try {
        assert.deepEqual([...old.index.packs().keys()].sort(), [...fresh.index.packs().keys()].sort());
        assert.equal(old.index.size, fresh.index.size);
      } finally {
        await fresh.close();
      }
      for (const [name, repo] of [['refreshed', old], ['untouched', untouched]] as const) {
        const target = path.join(work, `restore-pruned-${name}`);
        const r = await restore(repo, 'latest', { target });
        assert.equal(r.filesRestored, FILES + 1);
        assert.deepEqual(await compareTrees(src, path.join(target, src)), [], name);
      }
      assert.deepEqual([...untouched.index.packs().keys()].filter((p) => !listed.has(p)), [], 'the vanished pack made it refresh');
    } finally {
      await untouched.close();
    }
  });

  it('startAutoRefresh refreshes on an interval and stops on abort and on close()', async () => {
    const indexed = await openIndexed();
    const results: RefreshResult[] = [];
    const controller = new AbortController();
    indexed.startAutoRefresh(10, { signal: controller.signal, onRefresh: (r) => results.push(r) });
    const ofClose: RefreshResult[] = [];
    indexed.startAutoRefresh(10, { onRefresh: (r) => ofClose.push(r), onError: (e) => assert.fail(String(e)) });
    await waitFor(() => results.length >= 2 && ofClose.length >= 2);
    controller.abort();
    const afterAbort = results.length;
    // The other interval goes on (two more of its refreshes; slow remotes take longer than a fixed wait).
    const closeBefore = ofClose.length;
    await waitFor(() => ofClose.length >= closeBefore + 2);
    assert.equal(results.length, afterAbort, 'no refresh after the abort');
    await indexed.close();
    const afterClose = ofClose.length;
    const lists = events.length;
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(ofClose.length, afterClose, 'no refresh after close()');
    assert.equal(events.length, lists, 'no request after close()');
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
