// Every result the public API returns serialises with plain JSON.stringify, and times in it come
// out as the RFC 3339 strings restic wrote (nanoseconds and zone offset kept), in JSON as much as
// in template strings and util.inspect. The list of APIs is checked against src/index.ts, so a new
// export has to be sorted into "returns a result" (and called here) or "does not" (with a reason).
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import * as api from '../../src/index.ts';
import {
  Lock, MemoryBackend, Repository, backup, checkRepository, copy, decodeTree, diffSnapshots, executeCopy, executePrune,
  filterSnapshots, findByPattern, findIds, findParentSnapshot, findUsedBlobs, forget, groupSnapshots, isGoTime,
  latestPerGroup, latestSnapshot, listLocks, listSnapshots, loadSnapshot, parseGoTime, planCopy, planPrune,
  planRetention, planRestore, prune, repairIndex, repairPacks, repairSnapshots, repositoryStats, restore, tag, unlock, walkTree, listTree,
  dump, dumpFile, resolveSnapshotRef, findNodeByPath, scanTotals, treeTotals, systemCapabilities, runtimeSupport,
  type BlobId, type IndexedRepository, type SnapshotEntry, type TreeNode,
} from '../../src/index.ts';
import { encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { encodeTree } from '../../src/snapshot/model/tree.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const PASSWORD = 'json safe';
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Exported functions that return data, each called below with its result checked. Keep this in
 * step with src/index.ts: the first test fails for an export in neither list.
 */
const RESULT_FUNCTIONS = [
  'backup', 'restore', 'planRestore', 'listSnapshots', 'loadSnapshot', 'findParentSnapshot', 'latestPerGroup', 'walkTree', 'listTree',
  'repositoryStats', 'checkRepository', 'forget', 'planRetention', 'planPrune', 'executePrune', 'prune',
  'findUsedBlobs', 'planCopy', 'executeCopy', 'copy', 'tag', 'diffSnapshots', 'findByPattern', 'findIds',
  'repairIndex', 'repairPacks', 'repairSnapshots', 'listLocks', 'unlock', 'decodeTree', 'groupSnapshots', 'filterSnapshots',
  'latestSnapshot', 'dump', 'dumpFile', 'resolveSnapshotRef', 'findNodeByPath', 'scanTotals', 'treeTotals',
  'systemCapabilities', 'runtimeSupport', 'listCaches', 'removeOldCaches', 'snapshotStats', 'listFiles', 'listBlobs',
  'observeRepository', 'stashRepositoryStatus', 'buildStashRepositoryStatus', 'stashHostBackupStats', 'stashSnapshotStats',
  'kubeStashRepositoryStatus', 'buildKubeStashRepositoryStatus', 'kubeStashSnapshotComponent', 'upsertCondition',
  'repositoryMetrics', 'backupMetrics', 'checkRepositoryPart', 'mergeCheckParts',
  'rewrite', 'recover', 'planBudget', 'readContainerLimits',
] as const;

/** Exported functions that return no repository data (why, for each). */
const NOT_RESULTS: Record<string, string> = {
  b2OptionsFromEnv: 'backend options from the environment',
  checkMemoryLimit: 'the option given, validated',
  checkRewriteOptions: 'nothing (throws for bad options)',
  createRepositoryHandler: 'a request handler',
  retentionOf: 'the retention calls of a backend',
  versionsOf: 'the version calls of a backend',
  keepHorizon: 'a Date',
  extendRetention: 'plain data (Dates, numbers, names); needs an Object Lock backend, serialised by `retention extend --json` in test/interop/object-lock.test.ts',
  swiftOptionsFromEnv: 'backend options from the environment',
  backendFromStash: 'a backend',
  backendFromKubeStash: 'a backend',
  kubeStashProvider: 'a string',
  kubeStashResticPath: 'a path',
  formatStashBytes: 'a string',
  formatStashSeconds: 'a string',
  formatGoDuration: 'a string',
  kubernetesTime: 'a string',
  toPrometheusText: 'a string',
  removedByCleanup: 'a number',
  checkPart: 'the part given, validated',
  checkPartFromEnv: 'the part from the environment',
  openBackend: 'a backend',
  openLocation: 'a backend',
  wrapBackend: 'a backend',
  uncachedBackend: 'a backend',
  defaultCacheDir: 'a path',
  decodeSecretData: 'secrets given by the caller',
  consoleLogger: 'a logger',
  logObserver: 'an observer',
  formatFields: 'a string',
  shownValue: 'a string',
  describeRetentionPolicy: 'a string',
  redactLocation: 'a string',
  findSnapshotByPrefix: 'an ID string',
  stashKind: 'a string',
  isRetryableError: 'a boolean',
  isStale: 'a boolean',
  isGoTime: 'a boolean',
  throwIfAborted: 'nothing',
  withLock: "the callback's value",
  parseLocation: 'parses caller input (no times)',
  parseMaxUnused: 'parses caller input',
  parseReadDataSubset: 'parses caller input',
  parseRetentionDuration: 'parses caller input',
  stashRetentionPolicy: 'parses caller input',
  formatGoTime: 'a time string (gotime.test.ts)',
  parseGoTime: 'a GoTime (gotime.test.ts)',
  goTimeFromNs: 'a GoTime (gotime.test.ts)',
  goTimeFromDate: 'a GoTime (gotime.test.ts)',
  goTimeToDate: 'a Date',
  addSuppressed: 'the error it was given',
  assertRuntime: 'nothing (throws)',
  baseRepository: 'a repository object',
  withIndex: 'a repository object',
  parseSnapshotRef: 'parses caller input',
  resolveTreeSource: 'a tree ID',
  findTreeByPath: 'a tree ID',
};

/** Methods of the exported repository classes that return data with times: called below. */
const RESULT_METHODS = ['Repository.listKeys'];
/** The other methods (why). */
const OTHER_METHODS: Record<string, string> = {
  'Repository.version': 'a number', 'Repository.cache': 'a backend', 'Repository.addKey': 'a key ID', 'Repository.removeKey': 'nothing',
  'Repository.changePassword': 'a key ID', 'Repository.saveUnpacked': 'an ID', 'Repository.loadUnpacked': 'bytes',
  'Repository.listIds': 'IDs', 'Repository.refreshListings': 'IDs', 'Repository.resolveId': 'an ID', 'Repository.seal': 'bytes', 'Repository.open': 'bytes',
  'Repository.masterKeyForWorkers': 'key material', 'Repository.loadIndex': 'a repository object',
  'IndexedRepository.backend': 'a backend', 'IndexedRepository.config': 'the config (no times)',
  'IndexedRepository.logger': 'a logger', 'IndexedRepository.loadBlob': 'bytes', 'IndexedRepository.locateBlob': 'index locations (IDs and numbers)', 'IndexedRepository.decodeBlob': 'bytes',
  'IndexedRepository.blobWriter': 'a writer',
  'Repository.close': 'nothing', 'IndexedRepository.close': 'nothing', 'Repository.closed': 'a boolean',
  'IndexedRepository.refresh': 'index file IDs, counts and a boolean (no times)',
  'IndexedRepository.startAutoRefresh': 'a stop function', 'IndexedRepository.retryAfterRefresh': 'what its callback returns',
};

const BIG_INODE = 2n ** 63n + 1n;

/** Every object in the graph that looks like a time must be a GoTime value (made by the factory). */
function assertTimesAreGoTimes(value: unknown, where: string, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if ('epochNs' in value) {
    assert.ok(isGoTime(value), `${where}: a time that is not a GoTime value`);
    return;
  }
  if (value instanceof Uint8Array || value instanceof Error) return;
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  for (const [k, v] of entries) assertTimesAreGoTimes(v, `${where}.${String(k)}`, seen);
}

/** JSON.stringify works, and a JSON.parse of it has no "[object Object]" and no empty object for a time. */
function assertJson(value: unknown, where: string): unknown {
  assertTimesAreGoTimes(value, where);
  let text: string | undefined;
  assert.doesNotThrow(() => (text = JSON.stringify(value)), where);
  assert.ok(text === undefined || !text.includes('[object Object]'), where);
  return text === undefined ? undefined : JSON.parse(text);
}

const work = await tmpDir('stowage-json-safe');

describe('results are JSON-safe and print times as restic writes them', () => {
  const results = new Map<string, unknown>();
  let repo: Repository;
  let indexed: IndexedRepository;
  /** The "time" string of each snapshot file as stored, by snapshot ID. */
  const storedTimes = new Map<string, string>();
  let bigSnapshot: string;
  let bigMtime: string;
  let restoreDir: string;

  async function stored(id: string): Promise<Record<string, unknown>> {
    return JSON.parse(Buffer.from(await repo.loadUnpacked('snapshots', id)).toString('utf8')) as Record<string, unknown>;
  }
  async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
    const out: T[] = [];
    for await (const x of it) out.push(x);
    return out;
  }

  before(async () => {
    const dir = work;
    const data = path.join(dir, 'data');
    restoreDir = path.join(dir, 'restore');
    await mkdir(path.join(data, 'sub'), { recursive: true });
    await writeFile(path.join(data, 'a.txt'), 'hello\n');
    await writeFile(path.join(data, 'sub', 'b.txt'), 'world\n');
    repo = await Repository.init(new MemoryBackend(), { password: PASSWORD, kdf: KDF });
    indexed = await repo.loadIndex();
    results.set('backup', await backup(indexed, { paths: [data], hostname: 'h', threads: 1 }));
    await writeFile(path.join(data, 'a.txt'), 'hello again\n');
    // A time with nanoseconds and an offset that is not whole hours.
    const second = await backup(indexed, { paths: [data], hostname: 'h', threads: 1, time: parseGoTime('2023-05-06T07:08:09.000000123+05:45') });
    results.set('backup (time given)', second);

    // A hand-made snapshot whose only node has an inode above 2^53 and a nanosecond mtime.
    bigMtime = '2022-02-03T04:05:06.987654321-03:30';
    const node: TreeNode = {
      name: 'big', type: 'file', mode: 0o644, mtime: parseGoTime(bigMtime), atime: parseGoTime(bigMtime), ctime: parseGoTime(bigMtime),
      uid: 0, gid: 0, inode: BIG_INODE, size: 0, content: [],
    };
    const writer = indexed.blobWriter();
    const { id: tree } = await writer.saveBlob('tree', encodeTree([node]));
    await writer.flush();
    bigSnapshot = await repo.saveUnpacked('snapshots', encodeSnapshot({ time: parseGoTime('2021-01-01T00:00:00.5Z'), tree, paths: ['/big'], hostname: 'other' }));
    indexed = await repo.loadIndex();
    for (const e of await listSnapshots(repo)) storedTimes.set(e.id, (await stored(e.id)).time as string);
  });

  it('every export of src/index.ts is either called here or listed as returning no data', () => {
    const functions = Object.entries(api).filter(([, v]) => typeof v === 'function' && !/^class\b/.test(Function.prototype.toString.call(v))).map(([k]) => k);
    const unsorted = functions.filter((k) => !(RESULT_FUNCTIONS as readonly string[]).includes(k) && !(k in NOT_RESULTS));
    assert.deepEqual(unsorted, [], 'new exports: add them to RESULT_FUNCTIONS (and call them) or to NOT_RESULTS');
    const methods = (['Repository', 'IndexedRepository'] as const).flatMap((c) =>
      Object.getOwnPropertyNames(api[c].prototype).filter((m) => m !== 'constructor').map((m) => `${c}.${m}`));
    assert.deepEqual(methods.filter((m) => !RESULT_METHODS.includes(m) && !(m in OTHER_METHODS)), [], 'new methods: sort them');
  });

  it('lookups, dumps, scans and capability reports serialise; times print as stored', async () => {
    const entry = await loadSnapshot(repo, bigSnapshot);
    const ref = await resolveSnapshotRef(indexed, bigSnapshot);
    const refJson = assertJson(ref, 'resolveSnapshotRef') as { snapshot: { snapshot: { time: string } } };
    assert.equal(refJson.snapshot.snapshot.time, storedTimes.get(bigSnapshot));
    const node = await findNodeByPath(indexed, entry.snapshot.tree, 'big', 'test');
    const nodeJson = assertJson(node, 'findNodeByPath') as { mtime: string };
    assert.equal(nodeJson.mtime, bigMtime);
    const { stream, ...dumped } = await dumpFile(indexed, bigSnapshot, 'big');
    stream.destroy();
    const dumpedJson = assertJson(dumped, 'dumpFile') as { node: { mtime: string }; size: number };
    assert.equal(dumpedJson.node.mtime, bigMtime);
    assert.equal(dumpedJson.size, 0);
    const { stream: archived, ...folder } = await dump(indexed, bigSnapshot, '/');
    archived.destroy();
    assert.equal((assertJson(folder, 'dump') as { kind: string }).kind, 'tar');
    const cacheBase = await mkdtemp(path.join(tmpdir(), 'stowage-json-cache-'));
    try {
      await mkdir(path.join(cacheBase, 'cd'.repeat(32), 'index'), { recursive: true });
      const caches = assertJson(await api.listCaches(cacheBase, { sizes: true }), 'listCaches') as Array<{ id: string; lastUsed: string }>;
      assert.equal(caches[0]!.id, 'cd'.repeat(32));
      assert.equal(typeof caches[0]!.lastUsed, 'string');
      assertJson(await api.removeOldCaches(cacheBase, 0), 'removeOldCaches');
    } finally {
      await rm(cacheBase, { recursive: true, force: true });
    }
    assertJson(await scanTotals([work]), 'scanTotals');
    assertJson(await treeTotals(indexed, entry.snapshot.tree), 'treeTotals');
    assertJson(await systemCapabilities(), 'systemCapabilities');
    assertJson(runtimeSupport(), 'runtimeSupport');
  });

  it('snapshot times print and serialise as the snapshot file says, in results of every kind', async () => {
    const second = results.get('backup (time given)') as Awaited<ReturnType<typeof backup>>;
    const raw = await stored(second.snapshotId);
    assert.equal(raw.time, '2023-05-06T07:08:09.000000123+05:45');
    const json = assertJson(second, 'backup') as { snapshot: { time: string; summary: { backupStart: string; backupEnd: string } } };
    assert.equal(json.snapshot.time, raw.time);
    const rawSummary = raw.summary as Record<string, string>;
    assert.equal(json.snapshot.summary.backupStart, rawSummary.backup_start);
    assert.equal(json.snapshot.summary.backupEnd, rawSummary.backup_end);
    assert.equal(`${second.snapshot.time}`, raw.time);
    assert.equal(String(second.snapshot.summary!.backupStart), rawSummary.backup_start);
    assert.equal(inspect(second.snapshot.time), raw.time);
    assert.match(inspect(second.snapshot), /time: 2023-05-06T07:08:09\.000000123\+05:45/);
    const first = results.get('backup') as Awaited<ReturnType<typeof backup>>;
    assert.equal((assertJson(first, 'backup') as { snapshot: { time: string } }).snapshot.time, storedTimes.get(first.snapshotId));

    const checkEntries = (entries: readonly SnapshotEntry[], where: string) => {
      const parsed = assertJson(entries, where) as Array<{ id: string; snapshot: { time: string } }>;
      assert.ok(parsed.length > 0, where);
      for (const e of parsed) assert.equal(e.snapshot.time, storedTimes.get(e.id), `${where}: ${e.id}`);
      for (const e of entries) assert.equal(`${e.snapshot.time}`, storedTimes.get(e.id));
    };
    const list = await listSnapshots(repo);
    checkEntries(list, 'listSnapshots');
    checkEntries([await loadSnapshot(repo, second.snapshotId.slice(0, 8))], 'loadSnapshot');
    checkEntries([(await findParentSnapshot(repo, { hostname: 'h', paths: second.snapshot.paths }))!], 'findParentSnapshot');
    checkEntries(latestPerGroup(list, 1), 'latestPerGroup');
    checkEntries(filterSnapshots(list, { hosts: ['h'] }), 'filterSnapshots');
    checkEntries([latestSnapshot(list)!], 'latestSnapshot');
    const groups = groupSnapshots(list, { host: true });
    assertJson(groups, 'groupSnapshots');
    for (const g of groups) checkEntries(g.snapshots, 'groupSnapshots');

    const plan = planRetention(list, { last: 1 });
    const planJson = assertJson(plan, 'planRetention') as { groups: Array<{ keep: Array<{ id: string; time: string }>; remove: Array<{ id: string; time: string }> }> };
    for (const g of planJson.groups) for (const p of [...g.keep, ...g.remove]) assert.equal(p.time, storedTimes.get(p.id));
    for (const g of plan.groups) for (const p of [...g.keep, ...g.remove]) assert.equal(`${p.time}`, storedTimes.get(p.id));
  });

  it('repositoryStats: first and last backup are GoTime values printing the snapshot times', async () => {
    const stats = await repositoryStats(indexed);
    const json = assertJson(stats, 'repositoryStats') as { firstBackup: string; lastBackup: string };
    const sorted = [...(await listSnapshots(repo))];
    const oldest = storedTimes.get(sorted[0]!.id)!;
    const newest = storedTimes.get(sorted[sorted.length - 1]!.id)!;
    assert.equal(json.firstBackup, oldest);
    assert.equal(json.lastBackup, newest);
    assert.equal(`${stats.firstBackup}`, oldest);
    assert.ok(isGoTime(stats.lastBackup));
    const empty = await repositoryStats(await (await Repository.init(new MemoryBackend(), { password: PASSWORD, kdf: KDF })).loadIndex());
    assert.equal(JSON.stringify({ f: empty.firstBackup, l: empty.lastBackup }), '{"f":null,"l":null}');
  });

  it('snapshotStats, listFiles and listBlobs: plain numbers and strings', async () => {
    for (const mode of api.STATS_MODES) {
      const json = assertJson(await api.snapshotStats(indexed, { mode }), `snapshotStats ${mode}`) as { snapshotsCount: number; totalSize: number };
      assert.equal(json.snapshotsCount, (await listSnapshots(repo)).length);
      assert.ok(json.totalSize > 0, mode);
    }
    const files = await collect(api.listFiles(repo, 'snapshots'));
    assert.deepEqual(assertJson(files, 'listFiles'), files);
    const blobs = await collect(api.listBlobs(repo));
    assert.deepEqual(assertJson(blobs, 'listBlobs'), blobs);
    assert.ok(blobs.length > 0);
  });

  it('nodes: times as stored, a uint64 above 2^53 as an exact JSON number', async () => {
    const entry = await loadSnapshot(repo, bigSnapshot);
    const walked = await collect(walkTree(indexed, entry.snapshot.tree));
    const hits = await collect(findByPattern(indexed, ['big']));
    const decoded = decodeTree(await indexed.loadBlob('tree', entry.snapshot.tree), entry.snapshot.tree);
    for (const [where, node] of [['walkTree', walked[0]!.node], ['findByPattern', hits[0]!.node], ['decodeTree', decoded[0]!]] as const) {
      assert.equal(node.inode, BIG_INODE, where);
      const text = JSON.stringify(node);
      assert.match(text, new RegExp(`"inode":${BIG_INODE}[,}]`), where);
      assert.match(text, new RegExp(`"mtime":"${bigMtime.replace(/[.+]/g, '\\$&')}"`), where);
      assert.equal(`${node.mtime}`, bigMtime, where);
    }
    assertJson(walked, 'walkTree');
    assertJson(await collect(listTree(indexed, entry.snapshot.tree, { dirs: ['/'] })), 'listTree');
    assertJson(hits, 'findByPattern');
    assertJson(decoded, 'decodeTree');
    // Small values stay numbers, and nodes with nothing big have no toJSON of their own.
    const small = await collect(walkTree(indexed, (await listSnapshots(repo, { hosts: ['h'] }))[0]!.snapshot.tree));
    for (const { node } of small) {
      assert.ok(typeof node.inode !== 'bigint' && typeof node.deviceId !== 'bigint');
      assert.ok(!Object.hasOwn(node, 'toJSON'));
    }
  });

  it('keys, locks and check report carry GoTime values that print as stored', async () => {
    const keys = await repo.listKeys();
    const keysJson = assertJson(keys, 'listKeys') as Array<{ id: string; created: string }>;
    for (const k of keysJson) {
      const file = JSON.parse(Buffer.from(await repo.backend.load({ type: 'keys', name: k.id })).toString('utf8')) as { created: string };
      assert.equal(k.created, file.created);
      assert.match(k.created, RFC3339);
    }
    assert.equal(`${keys[0]!.created}`, keysJson[0]!.created);

    const lock = await Lock.acquire(repo, { exclusive: false, settleTime: 0 });
    try {
      const locks = await listLocks(repo);
      const locksJson = assertJson(locks, 'listLocks') as Array<{ id: string; time: string }>;
      assert.equal(locksJson.length, 1);
      const file = JSON.parse(Buffer.from(await repo.loadUnpacked('locks', locksJson[0]!.id)).toString('utf8')) as { time: string };
      assert.equal(locksJson[0]!.time, file.time);
      assert.equal(`${locks[0]!.time}`, file.time);
    } finally {
      await lock.release();
    }
    assertJson(await unlock(repo), 'unlock');

    const report = await checkRepository(repo);
    const reportJson = assertJson(report, 'checkRepository') as { startTime: string; endTime: string };
    assert.equal(report.ok, true);
    assert.match(reportJson.startTime, RFC3339);
    assert.equal(reportJson.endTime, `${report.endTime}`);
    assert.equal(String(parseGoTime(reportJson.endTime)), reportJson.endTime);
  });

  it('restore, diff, find by ID, copy, tag, repair, forget and prune results serialise', async () => {
    const list = await listSnapshots(repo, { hosts: ['h'] });
    const [a, b] = [list[0]!, list[1]!];
    assertJson(await restore(indexed, b.snapshot.tree, { target: restoreDir }), 'restore');
    assertJson(await planRestore(indexed, b.snapshot.tree), 'planRestore');
    const diff = await diffSnapshots(indexed, a.id, b.id);
    const diffJson = assertJson(diff, 'diffSnapshots') as { source: { snapshot: { id: string; snapshot: { time: string } } } };
    assert.equal(diffJson.source.snapshot.snapshot.time, storedTimes.get(a.id));

    const found: unknown[] = [];
    const it = findIds(indexed, { trees: [b.snapshot.tree] });
    let step = await it.next();
    while (!step.done) {
      found.push(step.value);
      step = await it.next();
    }
    const foundJson = assertJson(found, 'findIds') as Array<{ snapshot: { id: string; snapshot: { time: string } } }>;
    assert.ok(foundJson.length > 0);
    for (const f of foundJson) assert.equal(f.snapshot.snapshot.time, storedTimes.get(f.snapshot.id));
    assertJson(step.value, 'findIds (result)');

    const dst = await (await Repository.init(new MemoryBackend(), { password: PASSWORD, kdf: KDF })).loadIndex();
    const copyPlan = await planCopy(indexed, dst, { snapshots: [a.id] });
    const copyPlanJson = assertJson(copyPlan, 'planCopy') as { items: Array<{ source: { snapshot: { time: string } } }> };
    assert.equal(copyPlanJson.items[0]!.source.snapshot.time, storedTimes.get(a.id));
    assertJson(await executeCopy(indexed, dst, copyPlan), 'executeCopy');
    assertJson(await copy(indexed, dst), 'copy');
    const copied = await listSnapshots(dst.repo);
    assert.deepEqual(copied.map((e) => `${e.snapshot.time}`).sort(), [...storedTimes.values()].sort());

    assertJson(await tag(repo, { snapshots: [a.id], add: ['x'] }), 'tag');
    assertJson(await repairIndex(repo), 'repairIndex');
    indexed = await repo.loadIndex();
    assertJson(await repairSnapshots(repo, { dryRun: true }), 'repairSnapshots');
    const blobs = await findUsedBlobs(indexed, [b.snapshot.tree as BlobId]);
    assertJson(blobs, 'findUsedBlobs');
    const forgotten = await forget(repo, { policy: { last: 1 }, dryRun: true });
    const forgetJson = assertJson(forgotten, 'forget') as { groups: Array<{ keep: Array<{ id: string; time: string }> }> };
    for (const g of forgetJson.groups) for (const k of g.keep) assert.match(k.time, RFC3339);
    const prunePlan = await planPrune(indexed);
    assertJson(prunePlan, 'planPrune');
    assertJson(await executePrune(indexed, prunePlan), 'executePrune');
    assertJson(await prune(await repo.loadIndex(), { dryRun: true }), 'prune');
    // An intact pack: its blobs move to a new pack, the repository stays whole.
    const somePack = [...(await repo.loadIndex()).index.packs().keys()][0]!;
    const salvaged = assertJson(await repairPacks(repo, [somePack]), 'repairPacks') as { lost: unknown[]; packsRemoved: string[] };
    assert.deepEqual([salvaged.lost, salvaged.packsRemoved], [[], [somePack]]);
  });
  it('operator statuses, metrics and check parts serialise', async () => {
    const observation = await api.observeRepository(indexed);
    const obsJson = assertJson(observation, 'observeRepository') as { snapshots: Array<{ id: string; snapshot: { time: string } }>; check: { startTime: string } };
    for (const e of obsJson.snapshots) assert.match(e.snapshot.time, RFC3339);
    assert.ok(obsJson.snapshots.some((e) => storedTimes.has(e.id)));
    for (const e of obsJson.snapshots) if (storedTimes.has(e.id)) assert.equal(e.snapshot.time, storedTimes.get(e.id));
    assert.match(obsJson.check.startTime, RFC3339);
    assertJson(await api.stashRepositoryStatus(indexed, { check: false }), 'stashRepositoryStatus');
    assertJson(api.buildStashRepositoryStatus(observation), 'buildStashRepositoryStatus');
    const result = results.get('backup') as Awaited<ReturnType<typeof backup>>;
    assertJson(api.stashHostBackupStats([{ result }], { hostname: 'h' }), 'stashHostBackupStats');
    assertJson(api.stashSnapshotStats({ result }), 'stashSnapshotStats');
    assertJson(await api.kubeStashRepositoryStatus(indexed, { check: false }), 'kubeStashRepositoryStatus');
    assertJson(api.buildKubeStashRepositoryStatus(observation), 'buildKubeStashRepositoryStatus');
    assertJson(api.kubeStashSnapshotComponent([{ result }], { path: 'repository/v1/s/c', observation }), 'kubeStashSnapshotComponent');
    assertJson(api.upsertCondition([], { type: 'T', status: 'True', lastTransitionTime: '2025-01-01T00:00:00Z' }), 'upsertCondition');
    assertJson(api.repositoryMetrics(observation), 'repositoryMetrics');
    assertJson(api.backupMetrics([result], { hostname: 'h' }), 'backupMetrics');
    const part = await api.checkRepositoryPart(repo, { index: 0, count: 1 });
    const partJson = assertJson(part, 'checkRepositoryPart') as api.CheckPartReport;
    // A part's JSON (as a pod writes it) merges as well as the object does.
    assertJson(api.mergeCheckParts([partJson]), 'mergeCheckParts');
  });
  it('rewrite, recover and the memory budget serialise', async () => {
    assertJson(await api.rewrite(indexed, { snapshots: [bigSnapshot], excludes: ['/nothing-matches-this'], dryRun: true }), 'rewrite');
    assertJson(await api.recover(indexed), 'recover');
    const limits = api.readContainerLimits();
    assertJson(limits, 'readContainerLimits');
    assertJson(api.planBudget('backup', { memoryLimit: 256 * 1024 * 1024, connections: 5, container: limits }), 'planBudget');
  });
});
