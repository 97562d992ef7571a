// check, repair index and repair snapshots on small repositories built blob by blob (every blob
// in a pack of its own, so one damaged pack is one damaged blob), on MemoryBackend and
// LocalBackend, with damage injected through the backend: a deleted pack, a flipped byte, a
// truncated pack, deleted or broken index files, a pack listed in two index files.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Backend, CallOptions, FileHandle } from '../../src/backend/backend.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { LockedError } from '../../src/repository/lock.ts';
import { initCrypto } from '../../src/repository/crypto.ts';
import { Repository, type BlobWriter, type IndexedRepository } from '../../src/repository/repository.ts';
import { encodeIndexFile, decodeIndexFile, type IndexPack } from '../../src/repository/index-file.ts';
import { PackWriter } from '../../src/repository/pack.ts';
import { Lock } from '../../src/repository/lock.ts';
import { compareGoTime, parseGoTime } from '../../src/repository/gotime.ts';
import type { BlobId, PackId } from '../../src/repository/id.ts';
import { checkRepository, parseReadDataSubset, selectPacks, type CheckProblem, type CheckReport } from '../../src/snapshot/operations/check/index.ts';
import { repairIndex, repairSnapshots } from '../../src/snapshot/operations/repair.ts';
import { decodeSnapshot, encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { compareNodeNames, decodeTree, encodeTree } from '../../src/snapshot/model/tree.ts';
import type { TreeNode } from '../../src/snapshot/model/node.ts';
import { removeTree } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const PASSWORD = 'check-test';
const TIME = parseGoTime('2024-05-06T07:08:09.123456789Z');

before(async () => {
  await initCrypto();
});

// ---- building repositories ---------------------------------------------------------------

/** A folder: file name → its chunks (each chunk one data blob), or a subfolder. */
interface Spec {
  [name: string]: string[] | Spec;
}

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const blobOf = (chunk: string) => sha(Buffer.from(chunk)) as BlobId;

function fileNode(name: string, content: BlobId[], size: number): TreeNode {
  return { name, type: 'file', mode: 0o644, mtime: TIME, atime: TIME, ctime: TIME, uid: 1000, gid: 1000, size, content };
}

function dirNode(name: string, subtree: BlobId): TreeNode {
  return { name, type: 'dir', mode: 0o20000000755, mtime: TIME, atime: TIME, ctime: TIME, uid: 1000, gid: 1000, content: null, subtree };
}

async function writeTree(w: BlobWriter, spec: Spec): Promise<BlobId> {
  const nodes: TreeNode[] = [];
  for (const name of Object.keys(spec).sort(compareNodeNames)) {
    const v = spec[name]!;
    if (Array.isArray(v)) {
      const ids: BlobId[] = [];
      for (const chunk of v) ids.push((await w.saveBlob('data', Buffer.from(chunk))).id);
      nodes.push(fileNode(name, ids, v.reduce((n, c) => n + Buffer.byteLength(c), 0)));
    } else nodes.push(dirNode(name, await writeTree(w, v)));
  }
  return (await w.saveBlob('tree', encodeTree(nodes))).id;
}

/** The tree blob ID a spec gets (without storing anything). */
function treeIdOf(spec: Spec): BlobId {
  const nodes: TreeNode[] = [];
  for (const name of Object.keys(spec).sort(compareNodeNames)) {
    const v = spec[name]!;
    if (Array.isArray(v)) nodes.push(fileNode(name, v.map(blobOf), v.reduce((n, c) => n + Buffer.byteLength(c), 0)));
    else nodes.push(dirNode(name, treeIdOf(v)));
  }
  return sha(encodeTree(nodes)) as BlobId;
}

/** Stores one snapshot of `spec`, each blob in its own pack, with its own index file. */
async function addSnapshot(repo: Repository, spec: Spec, opts: { host?: string; tags?: string[]; minute?: number } = {}): Promise<string> {
  const indexed = await repo.loadIndex();
  const w = indexed.blobWriter({ packSize: 1 });
  const tree = await writeTree(w, spec);
  await w.flush();
  const time = parseGoTime(`2024-05-06T07:${String(opts.minute ?? 0).padStart(2, '0')}:09Z`);
  return repo.saveUnpacked('snapshots', encodeSnapshot({ time, tree, paths: ['/src'], hostname: opts.host ?? 'host', tags: opts.tags }));
}

// Three snapshots: A and B share the folder "docs"; C shares nothing with them.
const DOCS: Spec = { 'a.txt': ['alpha'], 'b.txt': ['bravo-one', 'bravo-two'], deep: { 'd.txt': ['delta'] } };
const SPEC_A: Spec = { docs: DOCS, 'c.txt': ['charlie'] };
const SPEC_B: Spec = { docs: DOCS, 'e.txt': ['echo'] };
const SPEC_C: Spec = { 'x.txt': ['x-ray'], other: { 'y.txt': ['yankee'] } };

interface Fixture {
  repo: Repository;
  backend: Backend;
  a: string;
  b: string;
  c: string;
  /** Data or tree blob ID → the pack that holds it. */
  packOf: Map<string, string>;
  /** Snapshot (a, b, c) → the index file its blobs were listed in. */
  indexOf: Map<string, string>;
}

async function fixture(backend: Backend, version: 1 | 2 = 2): Promise<Fixture> {
  const repo = await Repository.init(backend, { password: PASSWORD, kdf: KDF, version });
  const indexOf = new Map<string, string>();
  const known = new Set<string>();
  const newIndexFile = async () => {
    const ids: string[] = [];
    for await (const id of repo.listIds('index')) if (!known.has(id)) ids.push(id);
    ids.forEach((id) => known.add(id));
    assert.equal(ids.length, 1);
    return ids[0]!;
  };
  const a = await addSnapshot(repo, SPEC_A, { minute: 1 });
  indexOf.set('a', await newIndexFile());
  const b = await addSnapshot(repo, SPEC_B, { minute: 2 });
  indexOf.set('b', await newIndexFile());
  const c = await addSnapshot(repo, SPEC_C, { minute: 3 });
  indexOf.set('c', await newIndexFile());
  const packOf = new Map<string, string>();
  for (const e of (await repo.loadIndex()).index.entries()) packOf.set(e.id, e.packId);
  return { repo, backend, a, b, c, packOf, indexOf };
}

const dataH = (pack: string): FileHandle => ({ type: 'data', name: pack });
const packFile = (pack: string) => `data/${pack.slice(0, 2)}/${pack}`;

/** Replaces a stored file's bytes (remove + save works on every backend, read-only files too). */
async function rewriteFile(backend: Backend, h: FileHandle, change: (b: Buffer) => Buffer): Promise<void> {
  const bytes = Buffer.from(await backend.load(h));
  await backend.remove(h);
  await backend.save(h, change(bytes));
}

const flipByteAt = (at: number) => (b: Buffer) => {
  const c = Buffer.from(b);
  c[at] = c[at]! ^ 0x40;
  return c;
};

async function listNames(backend: Backend, type: 'data' | 'index' | 'snapshots'): Promise<string[]> {
  const out: string[] = [];
  for await (const f of backend.list(type)) out.push(f.name);
  return out.sort();
}

const byCode = (r: CheckReport, code: CheckProblem['code']) => r.errors.filter((e) => e.code === code);
const hintsByCode = (r: CheckReport, code: CheckProblem['code']) => r.hints.filter((e) => e.code === code);
const sorted = (...ids: string[]) => [...ids].sort();

type BackendKind = 'memory' | 'local';
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await removeTree(d);
});
async function newBackend(kind: BackendKind): Promise<Backend> {
  if (kind === 'memory') return new MemoryBackend();
  const dir = await mkdtemp(path.join(tmpdir(), 'stowage-check-'));
  dirs.push(dir);
  return new LocalBackend(path.join(dir, 'repo'));
}

// ---- check ---------------------------------------------------------------------------------

for (const kind of ['memory', 'local'] as const) {
  describe(`check on ${kind}`, () => {
    test('a sound repository: no errors, counts, every pack read', async () => {
      const f = await fixture(await newBackend(kind));
      const progress: string[] = [];
      const report = await checkRepository(f.repo, { readData: true, onProgress: (p) => progress.push(p.phase) });
      assert.deepEqual(report.errors, []);
      assert.deepEqual(report.hints, []);
      assert.equal(report.ok, true);
      assert.equal(report.integrity, 'ok');
      assert.equal(report.snapshots, 3);
      // A: root, docs, deep; B: root (docs shared); C: root, other.
      assert.equal(report.trees, 6);
      assert.equal(report.indexFiles, 3);
      assert.equal(report.packs, (await listNames(f.backend, 'data')).length);
      assert.equal(report.packsRead, report.packs);
      assert.equal(report.readData, 'all');
      assert.deepEqual(report.damagedSnapshots, []);
      for (const phase of ['index', 'packs', 'trees', 'read-data']) assert.ok(progress.includes(phase), `progress for ${phase}`);
      // The report is plain JSON, its times (GoTime values) as RFC 3339 strings.
      assert.deepEqual(JSON.parse(JSON.stringify(report)), { ...report, startTime: String(report.startTime), endTime: String(report.endTime) });
      assert.ok(compareGoTime(report.startTime, report.endTime) <= 0);
    });

    test('a deleted data pack: named, with the snapshots and the file that lose data', async () => {
      const f = await fixture(await newBackend(kind));
      const pack = f.packOf.get(blobOf('bravo-two'))!;
      await f.backend.remove(dataH(pack));
      const report = await checkRepository(f.repo);
      assert.equal(report.ok, false);
      assert.equal(report.integrity, 'failed');
      assert.equal(report.errors.length, 1, JSON.stringify(report.errors));
      const [e] = byCode(report, 'PACK_MISSING');
      assert.ok(e);
      assert.equal(e.file, packFile(pack));
      assert.equal(e.pack, pack);
      assert.deepEqual(e.snapshots, sorted(f.a, f.b));
      assert.deepEqual(e.files, ['/docs/b.txt']);
      assert.deepEqual(report.damagedSnapshots, sorted(f.a, f.b));
    });

    test('a deleted tree pack: the tree is unreadable at its path, in both snapshots', async () => {
      const f = await fixture(await newBackend(kind));
      const deep = treeIdOf(DOCS.deep as Spec);
      const pack = f.packOf.get(deep)!;
      await f.backend.remove(dataH(pack));
      const report = await checkRepository(f.repo);
      const missing = byCode(report, 'PACK_MISSING');
      assert.equal(missing.length, 1);
      assert.deepEqual(missing[0]!.snapshots, sorted(f.a, f.b));
      assert.deepEqual(missing[0]!.files, ['/docs/deep']);
      const unreadable = byCode(report, 'TREE_UNREADABLE');
      assert.equal(unreadable.length, 1);
      assert.equal(unreadable[0]!.tree, deep);
      assert.equal(unreadable[0]!.path, '/docs/deep');
      assert.deepEqual(unreadable[0]!.snapshots, sorted(f.a, f.b));
      assert.equal(report.errors.length, 2, JSON.stringify(report.errors));
    });

    test('a flipped byte in a data blob: found only by reading, naming pack, blob and snapshot', async () => {
      const f = await fixture(await newBackend(kind));
      const blob = blobOf('charlie');
      const pack = f.packOf.get(blob)!;
      await rewriteFile(f.backend, dataH(pack), flipByteAt(20));
      const structural = await checkRepository(f.repo);
      assert.deepEqual(structural.errors, [], 'the structure is intact');
      const report = await checkRepository(f.repo, { readData: true });
      assert.equal(report.ok, false);
      const damaged = byCode(report, 'BLOB_DAMAGED');
      assert.equal(damaged.length, 1, JSON.stringify(report.errors));
      assert.equal(damaged[0]!.blob, blob);
      assert.equal(damaged[0]!.file, packFile(pack));
      assert.deepEqual(damaged[0]!.snapshots, [f.a]);
      assert.deepEqual(damaged[0]!.files, ['/c.txt']);
      // The pack's hash no longer matches its name.
      const packErr = byCode(report, 'PACK_DAMAGED');
      assert.ok(packErr.some((e) => e.pack === pack && /unexpected pack id/.test(e.message)), JSON.stringify(packErr));
      assert.deepEqual(report.brokenPacks, [pack]);
      assert.deepEqual(report.damagedSnapshots, [f.a]);
    });

    test('a flipped byte in a tree blob: the tree is unreadable and its snapshots are named', async () => {
      const f = await fixture(await newBackend(kind));
      const other = treeIdOf(SPEC_C.other as Spec);
      await rewriteFile(f.backend, dataH(f.packOf.get(other)!), flipByteAt(20));
      const report = await checkRepository(f.repo, { readData: true });
      const t = byCode(report, 'TREE_UNREADABLE');
      assert.equal(t.length, 1);
      assert.equal(t[0]!.path, '/other');
      assert.deepEqual(t[0]!.snapshots, [f.c]);
      const blob = byCode(report, 'BLOB_DAMAGED');
      assert.equal(blob.length, 1);
      assert.deepEqual(blob[0]!.snapshots, [f.c]);
      assert.deepEqual(blob[0]!.files, ['/other']);
    });

    test('a truncated pack: size mismatch, a broken pack, and the snapshots of the cut-off blob', async () => {
      const f = await fixture(await newBackend(kind));
      const pack = f.packOf.get(blobOf('echo'))!;
      const size = (await f.backend.stat(dataH(pack))).size;
      await rewriteFile(f.backend, dataH(pack), (b) => b.subarray(0, 30));
      const report = await checkRepository(f.repo);
      const [e] = byCode(report, 'PACK_SIZE_MISMATCH');
      assert.ok(e, JSON.stringify(report.errors));
      assert.match(e.message, new RegExp(`got 30, expected ${size}`));
      assert.equal(e.file, packFile(pack));
      assert.deepEqual(e.snapshots, [f.b]);
      assert.deepEqual(report.brokenPacks, [pack]);
      // Reading it finds the blob damaged too.
      const read = await checkRepository(f.repo, { readData: true });
      assert.ok(byCode(read, 'BLOB_DAMAGED').some((x) => x.blob === blobOf('echo') && x.snapshots?.[0] === f.b));
    });

    test('a deleted index file: its packs are unreferenced and its snapshot has missing trees', async () => {
      const f = await fixture(await newBackend(kind));
      await f.backend.remove({ type: 'index', name: f.indexOf.get('c')! });
      const report = await checkRepository(f.repo);
      const unreferenced = hintsByCode(report, 'PACK_UNREFERENCED').map((h) => h.pack).sort();
      const cPacks = [...SPEC_C_BLOBS()].map((id) => f.packOf.get(id)!).sort();
      assert.deepEqual(unreferenced, cPacks);
      assert.equal(report.suggestPrune, true);
      const t = byCode(report, 'TREE_MISSING');
      assert.equal(t.length, 1);
      assert.equal(t[0]!.path, '/');
      assert.deepEqual(t[0]!.snapshots, [f.c]);
      assert.deepEqual(report.damagedSnapshots, [f.c]);
    });

    test('every broken index file is reported, not just the first', async () => {
      const f = await fixture(await newBackend(kind));
      const bad1 = f.indexOf.get('a')!;
      const bad2 = f.indexOf.get('c')!;
      await rewriteFile(f.backend, { type: 'index', name: bad1 }, flipByteAt(40));
      await rewriteFile(f.backend, { type: 'index', name: bad2 }, (b) => b.subarray(0, 20));
      const report = await checkRepository(f.repo, { readData: true });
      const broken = byCode(report, 'INDEX_UNREADABLE');
      assert.deepEqual(broken.map((e) => e.file).sort(), [`index/${bad1}`, `index/${bad2}`].sort());
      assert.equal(report.suggestRepairIndex, true);
      assert.equal(report.ok, false);
      // As restic: nothing past the index is checked with a broken index.
      assert.equal(report.packsRead, 0);
    });

    test('a pack listed in two index files is a hint; listed differently, an error', async () => {
      const f = await fixture(await newBackend(kind));
      const pack = f.packOf.get(blobOf('alpha'))! as PackId;
      const indexed = await f.repo.loadIndex();
      const blobs = indexed.index.packs().get(pack)!;
      const dup = await f.repo.saveUnpacked('index', encodeIndexFile([{ id: pack, blobs }]));
      let report = await checkRepository(f.repo, { readData: true });
      assert.deepEqual(report.errors, []);
      const [h] = hintsByCode(report, 'PACK_DUPLICATE');
      assert.ok(h);
      assert.equal(h.pack, pack);
      assert.deepEqual(h.indexFiles, sorted(f.indexOf.get('a')!, dup));
      assert.equal(report.suggestRepairIndex, true);
      assert.equal(report.ok, true);

      await f.backend.remove({ type: 'index', name: dup });
      const other = await f.repo.saveUnpacked('index', encodeIndexFile([{ id: pack, blobs: [{ ...blobs[0]!, id: sha('nothing') as BlobId }] }]));
      report = await checkRepository(f.repo);
      const [c] = byCode(report, 'INDEX_CONFLICT');
      assert.ok(c, JSON.stringify(report.errors));
      assert.deepEqual(c.indexFiles, sorted(f.indexOf.get('a')!, other));
      assert.ok(report.brokenPacks.includes(pack));
    });

    test('tree node problems and a data blob in no index are reported with their path', async () => {
      const f = await fixture(await newBackend(kind));
      const indexed = await f.repo.loadIndex();
      const w = indexed.blobWriter({ packSize: 1 });
      const ghost = sha('never stored') as BlobId;
      // A file with content null is what old restic versions could write; build the JSON by hand.
      const json = Buffer.from(encodeTree([fileNode('ghost.txt', [ghost], 5), fileNode('nil.txt', [], 0)])).toString('utf8').replace('"content":[]', '"content":null');
      assert.match(json, /"content":null/);
      const tree = (await w.saveBlob('tree', Buffer.from(json))).id;
      await w.flush();
      const sid = await f.repo.saveUnpacked('snapshots', encodeSnapshot({ time: TIME, tree, paths: ['/odd'] }));
      const report = await checkRepository(f.repo);
      const missing = byCode(report, 'BLOB_MISSING');
      assert.equal(missing.length, 1);
      assert.equal(missing[0]!.blob, ghost);
      assert.equal(missing[0]!.path, '/ghost.txt');
      assert.deepEqual(missing[0]!.snapshots, [sid]);
      const invalid = byCode(report, 'TREE_INVALID');
      assert.equal(invalid.length, 1);
      assert.match(invalid[0]!.message, /nil\.txt.*nil blob list/);
      assert.deepEqual(invalid[0]!.snapshots, [sid]);
    });

    test('snapshotIds limits the trees checked and the packs read', async () => {
      const f = await fixture(await newBackend(kind));
      await rewriteFile(f.backend, dataH(f.packOf.get(blobOf('alpha'))!), flipByteAt(20));
      const onlyC = await checkRepository(f.repo, { readData: true, snapshotIds: [f.c] });
      assert.deepEqual(onlyC.errors, []);
      assert.equal(onlyC.snapshots, 1);
      assert.equal(onlyC.packsRead, SPEC_C_BLOBS().size);
      const onlyB = await checkRepository(f.repo, { readData: true, snapshotIds: [f.b] });
      assert.deepEqual(byCode(onlyB, 'BLOB_DAMAGED').map((e) => e.snapshots), [[f.b]]);
    });
  });
}

function SPEC_C_BLOBS(): Set<string> {
  return new Set([treeIdOf(SPEC_C), treeIdOf(SPEC_C.other as Spec), blobOf('x-ray'), blobOf('yankee')]);
}

// ---- read-data subsets ---------------------------------------------------------------------

describe('read-data subsets', () => {
  test('parsing follows restic', () => {
    assert.deepEqual(parseReadDataSubset('2/5'), { kind: 'group', n: 2, t: 5 });
    assert.deepEqual(parseReadDataSubset('12.5%'), { kind: 'percent', percent: 12.5 });
    assert.deepEqual(parseReadDataSubset('100%'), { kind: 'percent', percent: 100 });
    assert.deepEqual(parseReadDataSubset('500M'), { kind: 'size', bytes: 500 * 1024 * 1024 });
    assert.deepEqual(parseReadDataSubset('3k'), { kind: 'size', bytes: 3072 });
    assert.deepEqual(parseReadDataSubset('10B'), { kind: 'size', bytes: 10 });
    for (const bad of ['0/2', '3/2', '1/0', '1/257', '1/2/3', '5', '0%', '100.1%', 'x%', '%', '0G', '5Q', '', '-1M', '1.5G']) {
      assert.throws(() => parseReadDataSubset(bad), InvalidInputError, bad);
    }
  });

  // 512 packs, two for every value of the first byte.
  const packs = new Map<string, number>();
  for (let i = 0; i < 512; i++) packs.set((i % 256).toString(16).padStart(2, '0') + sha(String(i)).slice(2), 1000 + i);

  test('n/t: group n holds the packs whose first byte is n-1 modulo t; the groups cover every pack once', () => {
    for (const t of [1, 3, 7, 256]) {
      const seen = new Map<string, number>();
      for (let n = 1; n <= t; n++) {
        const chosen = selectPacks(packs, { kind: 'group', n, t });
        for (const id of chosen) {
          assert.equal(parseInt(id.slice(0, 2), 16) % t, n - 1);
          seen.set(id, (seen.get(id) ?? 0) + 1);
        }
        // Deterministic: the same group again gives the same packs.
        assert.deepEqual([...selectPacks(packs, { kind: 'group', n, t })].sort(), [...chosen].sort());
      }
      assert.equal(seen.size, packs.size);
      assert.ok([...seen.values()].every((c) => c === 1));
    }
  });

  test('x%: that share rounded down, at least one, chosen by the random source', () => {
    let calls = 0;
    const rnd = () => (calls++ * 0.6180339887) % 1;
    const ten = selectPacks(packs, { kind: 'percent', percent: 10 }, rnd);
    assert.equal(ten.size, 51);
    for (const id of ten) assert.ok(packs.has(id));
    assert.equal(selectPacks(packs, { kind: 'percent', percent: 0.01 }).size, 1);
    assert.equal(selectPacks(packs, { kind: 'percent', percent: 100 }).size, 512);
    assert.equal(selectPacks(new Map(), { kind: 'percent', percent: 50 }).size, 0);
    // Another random source picks other packs.
    const other = selectPacks(packs, { kind: 'percent', percent: 10 }, () => 0.999);
    assert.notDeepEqual([...other].sort(), [...ten].sort());
  });

  test('a size: the share of the total pack size it is', () => {
    let total = 0;
    for (const s of packs.values()) total += s;
    assert.equal(selectPacks(packs, { kind: 'size', bytes: Math.floor(total / 4) - 1 }).size, 127); // floor(512 × 24.99…%)
    assert.equal(selectPacks(packs, { kind: 'size', bytes: total / 4 }).size, 128);
    assert.equal(selectPacks(packs, { kind: 'size', bytes: total * 10 }).size, 512);
    assert.equal(selectPacks(packs, { kind: 'size', bytes: 1 }).size, 1);
  });

  test('check reads exactly the packs of the group, and groups 1/2 + 2/2 read them all', async () => {
    const f = await fixture(new MemoryBackend());
    const all = await listNames(f.backend, 'data');
    let read = 0;
    for (const n of [1, 2]) {
      const expected = all.filter((id) => parseInt(id.slice(0, 2), 16) % 2 === n - 1).length;
      const report = await checkRepository(f.repo, { readDataSubset: `${n}/2` });
      assert.equal(report.readData, 'subset');
      assert.equal(report.packsRead, expected);
      read += report.packsRead;
    }
    assert.equal(read, all.length);
    const pct = await checkRepository(f.repo, { readDataSubset: '50%', random: () => 0 });
    assert.equal(pct.packsRead, Math.floor(all.length / 2));
    await assert.rejects(checkRepository(f.repo, { readData: true, readDataSubset: '1/2' }), InvalidInputError);
  });

  test('a damaged pack is found by the group that holds it and not by the others', async () => {
    const f = await fixture(new MemoryBackend());
    const pack = f.packOf.get(blobOf('delta'))!;
    await rewriteFile(f.backend, dataH(pack), flipByteAt(20));
    const t = 4;
    const n = (parseInt(pack.slice(0, 2), 16) % t) + 1;
    const hit = await checkRepository(f.repo, { readDataSubset: `${n}/${t}` });
    assert.ok(byCode(hit, 'BLOB_DAMAGED').some((e) => e.pack === pack && e.snapshots?.length === 2));
    const miss = await checkRepository(f.repo, { readDataSubset: `${(n % t) + 1}/${t}` });
    assert.deepEqual(miss.errors, []);
  });
});

// ---- repair index --------------------------------------------------------------------------

/** Every index entry as a comparable string. */
async function indexEntries(repo: Repository): Promise<string[]> {
  const indexed = await repo.loadIndex();
  return [...indexed.index.entries()].map((e) => `${e.type}:${e.id}:${e.packId}:${e.offset}:${e.length}:${e.uncompressedLength}`).sort();
}

/** A MemoryBackend that records saves and removes in order. */
class RecordingBackend extends MemoryBackend {
  readonly ops: string[] = [];
  override async save(h: FileHandle, data: Uint8Array, options?: CallOptions): Promise<void> {
    await super.save(h, data, options);
    this.ops.push(`save ${h.type}/${h.name}`);
  }
  override async remove(h: FileHandle, options?: CallOptions): Promise<void> {
    await super.remove(h, options);
    this.ops.push(`remove ${h.type}/${h.name}`);
  }
}

for (const kind of ['memory', 'local'] as const) {
  describe(`repair index on ${kind}`, () => {
    test('with every index file deleted, the index is rebuilt from the packs exactly', async () => {
      const f = await fixture(await newBackend(kind));
      const before = await indexEntries(f.repo);
      for (const id of await listNames(f.backend, 'index')) await f.backend.remove({ type: 'index', name: id });
      const result = await repairIndex(f.repo);
      const packs = await listNames(f.backend, 'data');
      assert.deepEqual(result.packsAdded, packs);
      assert.equal(result.packsRead, packs.length);
      assert.deepEqual(result.packsFailed, []);
      assert.equal(result.packs, packs.length);
      assert.deepEqual(await listNames(f.backend, 'index'), [...result.indexFilesWritten].sort());
      assert.deepEqual(await indexEntries(f.repo), before);
      const report = await checkRepository(f.repo, { readData: true });
      assert.deepEqual(report.errors, []);
      assert.deepEqual(report.hints, []);
      assert.equal(await listNames(f.backend, 'index').then((l) => l.length), 1);
    });

    test('broken index, missing, truncated and unindexed packs: each handled and reported', async () => {
      const f = await fixture(await newBackend(kind));
      const brokenIndex = f.indexOf.get('c')!; // C's packs become unindexed
      await rewriteFile(f.backend, { type: 'index', name: brokenIndex }, flipByteAt(50));
      const missing = f.packOf.get(blobOf('alpha'))!;
      await f.backend.remove(dataH(missing));
      const truncated = f.packOf.get(blobOf('echo'))!;
      await rewriteFile(f.backend, dataH(truncated), (b) => b.subarray(0, b.length - 3));
      const oldIndexFiles = await listNames(f.backend, 'index');

      const messages: string[] = [];
      const result = await repairIndex(f.repo, { onMessage: (m) => messages.push(m) });
      assert.deepEqual(result.invalidIndexFiles.map((x) => x.id), [brokenIndex]);
      assert.deepEqual(result.packsRemoved, [missing]);
      assert.deepEqual(result.packsReindexed, [truncated]);
      assert.deepEqual(result.packsFailed.map((x) => x.pack), [truncated]);
      assert.deepEqual(result.packsAdded, [...SPEC_C_BLOBS()].map((id) => f.packOf.get(id)!).sort());
      assert.deepEqual(result.indexFilesRemoved, oldIndexFiles);
      assert.ok(messages.some((m) => m.includes(`removing invalid index ${brokenIndex}`)));
      assert.ok(messages.some((m) => m.includes(`removing not found pack file ${missing}`)));

      const report = await checkRepository(f.repo);
      // Only what is really lost remains: alpha (pack gone) and echo (pack cut); C is whole again.
      assert.deepEqual(byCode(report, 'BLOB_MISSING').map((e) => e.blob).sort(), sorted(blobOf('alpha'), blobOf('echo')));
      assert.deepEqual(report.errors.filter((e) => e.code !== 'BLOB_MISSING'), []);
      assert.deepEqual(report.damagedSnapshots, sorted(f.a, f.b));
      assert.deepEqual(hintsByCode(report, 'PACK_UNREFERENCED').map((h) => h.pack), [truncated]);
    });

    test('a pack in two index files ends up in one', async () => {
      const f = await fixture(await newBackend(kind));
      const pack = f.packOf.get(blobOf('alpha'))! as PackId;
      const blobs = (await f.repo.loadIndex()).index.packs().get(pack)!;
      await f.repo.saveUnpacked('index', encodeIndexFile([{ id: pack, blobs }]));
      await repairIndex(f.repo);
      let listings = 0;
      for (const id of await listNames(f.backend, 'index')) {
        const content = decodeIndexFile(await f.repo.loadUnpacked('index', id), id);
        listings += content.packs.filter((p) => p.id === pack).length;
      }
      assert.equal(listings, 1);
      const report = await checkRepository(f.repo);
      assert.deepEqual(report.hints, []);
      assert.deepEqual(report.errors, []);
    });

    test('readAllPacks replaces index entries that only look right', async () => {
      const f = await fixture(await newBackend(kind));
      // An index file whose entry for one pack names the wrong blob (same length, same pack size).
      const pack = f.packOf.get(blobOf('x-ray'))! as PackId;
      const idxFile = f.indexOf.get('c')!;
      const content = decodeIndexFile(await f.repo.loadUnpacked('index', idxFile), idxFile);
      const wrong = sha('wrong') as BlobId;
      const packs: IndexPack[] = content.packs.map((p) => (p.id === pack ? { id: p.id, blobs: [{ ...p.blobs[0]!, id: wrong }] } : p));
      await f.backend.remove({ type: 'index', name: idxFile });
      await f.repo.saveUnpacked('index', encodeIndexFile(packs));

      const trusting = await repairIndex(f.repo);
      assert.equal(trusting.packsRead, 0);
      assert.equal((await f.repo.loadIndex()).index.has(wrong, 'data'), true, 'sizes match, so the entry is kept');
      const thorough = await repairIndex(f.repo, { readAllPacks: true });
      assert.equal(thorough.packsRead, (await listNames(f.backend, 'data')).length);
      const indexed = await f.repo.loadIndex();
      assert.equal(indexed.index.has(wrong, 'data'), false);
      assert.equal(indexed.index.lookup(blobOf('x-ray'), 'data')[0]?.packId, pack);
      assert.deepEqual((await checkRepository(f.repo, { readData: true })).errors, []);
    });
  });
}

test('repair index writes the new index files before it deletes the old ones', async () => {
  const backend = new RecordingBackend();
  const f = await fixture(backend);
  const old = await listNames(backend, 'index');
  backend.ops.length = 0;
  const result = await repairIndex(f.repo, { readAllPacks: true, lock: false });
  const indexOps = backend.ops.filter((o) => o.includes(' index/'));
  const lastSave = Math.max(...indexOps.map((o, i) => (o.startsWith('save') ? i : -1)));
  const firstRemove = indexOps.findIndex((o) => o.startsWith('remove'));
  assert.ok(lastSave >= 0 && firstRemove > lastSave, indexOps.join('\n'));
  assert.deepEqual(result.indexFilesRemoved, old);
});

test('repair index splits the index into files of at most 50 000 blobs', async () => {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, { password: PASSWORD, kdf: KDF });
  const key = repo.masterKeyForWorkers();
  // Three packs of 25 000 tiny blobs: two fit in one index file, the third needs another.
  // Only the pack headers are read here, so the blobs need not be really sealed (that is slow).
  const fakeSealed = Buffer.alloc(40);
  for (let p = 0; p < 3; p++) {
    const w = new PackWriter(key, 'data');
    for (let i = 0; i < 25_000; i++) w.add(sha(`${p}:${i}`) as BlobId, fakeSealed, 0);
    const { id, bytes } = w.finish();
    await backend.save({ type: 'data', name: id }, bytes);
  }
  const result = await repairIndex(repo);
  assert.equal(result.blobs, 75_000);
  assert.equal(result.indexFilesWritten.length, 2);
  const sizes: number[] = [];
  for (const id of result.indexFilesWritten) {
    const content = decodeIndexFile(await repo.loadUnpacked('index', id), id);
    sizes.push(content.packs.reduce((n, p) => n + p.blobs.length, 0));
  }
  assert.deepEqual(sizes.sort(), [25_000, 50_000]);
  assert.equal((await repo.loadIndex()).index.size, 75_000);
});

test('repair index and repair snapshots take an exclusive lock', async () => {
  const f = await fixture(new MemoryBackend());
  const held = await Lock.acquire(f.repo, { exclusive: false, settleTime: 0 });
  try {
    await assert.rejects(repairIndex(f.repo), LockedError);
    await assert.rejects(repairSnapshots(f.repo), LockedError);
    // A dry run changes nothing and takes no lock, as in restic.
    const dry = await repairSnapshots(f.repo, { dryRun: true });
    assert.equal(dry.modified, 0);
  } finally {
    await held.release();
  }
});

// ---- repair snapshots ----------------------------------------------------------------------

async function treeOfSnapshot(repo: Repository, id: string) {
  return decodeSnapshot(await repo.loadUnpacked('snapshots', id), id);
}

async function nodesAt(indexed: IndexedRepository, tree: BlobId, dir: string[]): Promise<TreeNode[]> {
  let t = tree;
  for (const name of dir) t = decodeTree(await indexed.loadBlob('tree', t), t).find((n) => n.name === name)!.subtree!;
  return decodeTree(await indexed.loadBlob('tree', t), t);
}

for (const kind of ['memory', 'local'] as const) {
  describe(`repair snapshots on ${kind}`, () => {
    test('a lost data pack: the file keeps its other blobs, the snapshots are replaced (--forget)', async () => {
      const f = await fixture(await newBackend(kind));
      await f.backend.remove(dataH(f.packOf.get(blobOf('bravo-two'))!));
      await repairIndex(f.repo);
      const result = await repairSnapshots(f.repo, { forget: true });
      assert.equal(result.modified, 2);
      const byId = new Map(result.snapshots.map((s) => [s.id, s]));
      assert.equal(byId.get(f.c)!.status, 'unchanged');
      for (const id of [f.a, f.b]) {
        const s = byId.get(id)!;
        assert.equal(s.status, 'rewritten');
        assert.equal(s.forgotten, true);
        assert.deepEqual(s.changes, [{ kind: 'content-removed', path: '/docs/b.txt', detail: '1 of 2 data blobs missing' }]);
      }
      const snaps = await listNames(f.backend, 'snapshots');
      assert.deepEqual(snaps, sorted(f.c, byId.get(f.a)!.newId!, byId.get(f.b)!.newId!));
      const indexed = await f.repo.loadIndex();
      for (const old of [f.a, f.b]) {
        const s = await treeOfSnapshot(f.repo, byId.get(old)!.newId!);
        assert.equal(s.original, old);
        assert.equal(s.tags, undefined, 'no "repaired" tag with --forget, as restic');
        const docs = await nodesAt(indexed, s.tree, ['docs']);
        const b = docs.find((n) => n.name === 'b.txt')!;
        assert.deepEqual(b.content, [blobOf('bravo-one')]);
        assert.equal(b.size, 'bravo-one'.length);
        assert.deepEqual(docs.find((n) => n.name === 'a.txt')!.content, [blobOf('alpha')]);
      }
      const report = await checkRepository(f.repo, { readData: true });
      assert.deepEqual(report.errors, []);
    });

    test('without --forget the repaired snapshot is tagged "repaired" and the original stays', async () => {
      const f = await fixture(await newBackend(kind));
      await f.backend.remove(dataH(f.packOf.get(blobOf('x-ray'))!));
      await repairIndex(f.repo);
      const result = await repairSnapshots(f.repo, { snapshotIds: [f.c.slice(0, 10)] });
      assert.equal(result.snapshots.length, 1);
      const [s] = result.snapshots;
      assert.equal(s!.status, 'rewritten');
      assert.equal(s!.forgotten, false);
      const repaired = await treeOfSnapshot(f.repo, s!.newId!);
      assert.deepEqual(repaired.tags, ['repaired']);
      assert.equal(repaired.original, f.c);
      assert.equal(repaired.hostname, 'host');
      assert.deepEqual(repaired.time, (await treeOfSnapshot(f.repo, f.c)).time);
      assert.ok((await listNames(f.backend, 'snapshots')).includes(f.c));
    });

    test('a lost subtree becomes an empty folder; a lost root tree removes the snapshot', async () => {
      const f = await fixture(await newBackend(kind));
      await f.backend.remove(dataH(f.packOf.get(treeIdOf(DOCS.deep as Spec))!));
      await f.backend.remove(dataH(f.packOf.get(treeIdOf(SPEC_C))!));
      await repairIndex(f.repo);
      const result = await repairSnapshots(f.repo, { forget: true });
      const byId = new Map(result.snapshots.map((s) => [s.id, s]));
      assert.equal(byId.get(f.c)!.status, 'removed');
      assert.equal(byId.get(f.c)!.changes[0]!.kind, 'root-unreadable');
      assert.deepEqual(byId.get(f.a)!.changes.map((c) => [c.kind, c.path]), [['dir-replaced', '/docs/deep']]);
      const indexed = await f.repo.loadIndex();
      const deep = await nodesAt(indexed, (await treeOfSnapshot(f.repo, byId.get(f.a)!.newId!)).tree, ['docs', 'deep']);
      assert.deepEqual(deep, []);
      assert.ok(!(await listNames(f.backend, 'snapshots')).includes(f.c));
      const report = await checkRepository(f.repo);
      assert.deepEqual(report.errors, []);
    });

    test('a dry run changes nothing and says what would change', async () => {
      const f = await fixture(await newBackend(kind));
      await f.backend.remove(dataH(f.packOf.get(blobOf('delta'))!));
      await repairIndex(f.repo);
      const files = async () => [...(await listNames(f.backend, 'data')), ...(await listNames(f.backend, 'index')), ...(await listNames(f.backend, 'snapshots'))];
      const before = await files();
      const messages: string[] = [];
      const result = await repairSnapshots(f.repo, { dryRun: true, forget: true, onMessage: (m) => messages.push(m) });
      assert.deepEqual(await files(), before);
      assert.equal(result.dryRun, true);
      assert.equal(result.modified, 2);
      assert.equal(result.treesWritten, 0);
      for (const s of result.snapshots.filter((x) => x.status === 'rewritten')) {
        assert.equal(s.newId, undefined);
        assert.ok(s.newTree);
        assert.deepEqual(s.changes.map((c) => c.path), ['/docs/deep/d.txt']);
      }
      assert.ok(messages.some((m) => m.includes('file "/docs/deep/d.txt": removed missing content')));
      assert.ok(messages.some((m) => m.includes('would modify 2 snapshots')));
      // The real run produces the trees the dry run announced.
      const real = await repairSnapshots(f.repo, { forget: true });
      assert.deepEqual(real.snapshots.map((s) => s.newTree), result.snapshots.map((s) => s.newTree));
    });

    test('damagedBlobs from check --read-data: files lose the damaged blobs', async () => {
      const f = await fixture(await newBackend(kind));
      await rewriteFile(f.backend, dataH(f.packOf.get(blobOf('yankee'))!), flipByteAt(20));
      const report = await checkRepository(f.repo, { readData: true });
      const damaged = byCode(report, 'BLOB_DAMAGED').map((e) => e.blob!);
      assert.deepEqual(damaged, [blobOf('yankee')]);
      const result = await repairSnapshots(f.repo, { damagedBlobs: damaged, forget: true });
      assert.equal(result.modified, 1);
      const [s] = result.snapshots.filter((x) => x.status === 'rewritten');
      assert.equal(s!.id, f.c);
      assert.deepEqual(s!.changes.map((c) => [c.kind, c.path]), [['content-removed', '/other/y.txt']]);
      const indexed = await f.repo.loadIndex();
      const y = (await nodesAt(indexed, (await treeOfSnapshot(f.repo, s!.newId!)).tree, ['other'])).find((n) => n.name === 'y.txt')!;
      assert.deepEqual(y.content, []);
      assert.equal(y.size, undefined, 'size 0 is left out, as restic writes it');
    });

    test('a sound repository is left alone', async () => {
      const f = await fixture(await newBackend(kind));
      const before = await listNames(f.backend, 'snapshots');
      const result = await repairSnapshots(f.repo, { forget: true });
      assert.equal(result.modified, 0);
      assert.ok(result.snapshots.every((s) => s.status === 'unchanged' && s.changes.length === 0));
      assert.equal(result.treesWritten, 0);
      assert.deepEqual(await listNames(f.backend, 'snapshots'), before);
    });
  });
}

test('repair snapshots: a file whose size is wrong is fixed; the filter picks snapshots', async () => {
  const f = await fixture(new MemoryBackend());
  const indexed = await f.repo.loadIndex();
  const w = indexed.blobWriter();
  const id = (await w.saveBlob('data', Buffer.from('0123456789'))).id;
  const tree = (await w.saveBlob('tree', encodeTree([fileNode('wrong-size', [id], 99)]))).id;
  await w.flush();
  const sid = await f.repo.saveUnpacked('snapshots', encodeSnapshot({ time: TIME, tree, paths: ['/w'], hostname: 'other-host' }));
  const result = await repairSnapshots(f.repo, { filter: { hosts: ['other-host'] }, forget: true });
  assert.deepEqual(result.snapshots.map((s) => s.id), [sid]);
  assert.deepEqual(result.snapshots[0]!.changes, [{ kind: 'size-fixed', path: '/wrong-size', detail: 'size 99 → 10' }]);
  const repaired = await treeOfSnapshot(f.repo, result.snapshots[0]!.newId!);
  const [node] = decodeTree(await (await f.repo.loadIndex()).loadBlob('tree', repaired.tree), repaired.tree);
  assert.equal(node!.size, 10);
});
