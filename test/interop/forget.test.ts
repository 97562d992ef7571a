// forget against the real restic. One repository holds ~130 snapshots over three years (2 hosts,
// 2 path sets, tags, irregular times in several zones, plus small groups around a DST change,
// across ISO week-years and in the future), written directly as snapshot files that all
// reference one real tree. For each policy, `restic forget --dry-run --json` must agree with
// Stowage: the CLI's JSON equals restic 0.19's group for group, and for a subset the planner
// (with keepOldest: false, as 0.14 had no such rule) keeps and removes the same snapshots for the
// same reasons as restic 0.14. Then a real forget through the Stowage CLI must leave exactly what
// restic predicted, and a library forget with prune must leave a repository both restic versions
// check clean.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { LockedError } from '../../src/repository/lock.ts';
import { goTimeFromNs, parseGoTime } from '../../src/repository/gotime.ts';
import type { BlobId, SnapshotId } from '../../src/repository/id.ts';
import { Lock } from '../../src/repository/lock.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { forget } from '../../src/snapshot/operations/forget.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { type RetentionPolicy, planRetention } from '../../src/snapshot/model/retention.ts';
import { type Snapshot, encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk, runRestic } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'forget interop';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
// Bucket boundaries follow each snapshot's own zone, and keep-within steps on the local calendar:
// restic and the in-process planner must see the same local zone.
process.env.TZ = 'UTC';

interface JsonSnapshot {
  id: string;
  time: string;
  [k: string]: unknown;
}
interface JsonGroup {
  tags: string[] | null;
  host: string;
  paths: string[] | null;
  keep: JsonSnapshot[] | null;
  remove: JsonSnapshot[] | null;
  reasons: { snapshot: JsonSnapshot; matches: string[]; counters?: unknown }[] | null;
}

const groupKey = (g: { host: string; paths: string[] | null; tags: string[] | null }) => JSON.stringify([g.host, g.paths, g.tags]);

function byGroup(groups: JsonGroup[]): Map<string, JsonGroup> {
  const m = new Map(groups.map((g) => [groupKey(g), g]));
  assert.equal(m.size, groups.length, 'group keys are unique');
  return m;
}

// A small deterministic PRNG (mulberry32), so every run builds the same history.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOUR_NS = 3_600_000_000_000n;
const OFFSETS = [0, 0, 0, 60, 120, -300, 330];
const TAG_SETS: string[][] = [[], [], ['daily'], ['daily'], ['important', 'daily'], ['monthly'], ['monthly', 'important']];
const PATH_SETS = [['/srv/app'], ['/srv/db', '/etc']];

/** ~120 snapshots: per host and path set a sparse three-year history and a dense last four days. */
function history(tree: BlobId): Snapshot[] {
  const rand = prng(20240611);
  const pick = <T>(l: readonly T[]) => l[Math.floor(rand() * l.length)]!;
  const out: Snapshot[] = [];
  let serial = 0;
  const add = (epochNs: bigint, host: string, paths: string[]) => {
    // A distinct second per snapshot: restic orders equal times by load order, which varies.
    const t = epochNs + BigInt(serial++) * 1_000_000_000n;
    const tags = pick(TAG_SETS);
    out.push({ time: goTimeFromNs(t, pick(OFFSETS)), tree, paths, hostname: host, username: 'forget', ...(tags.length ? { tags } : {}) });
  };
  const start = parseGoTime('2021-03-01T00:00:00Z').epochNs;
  const end = parseGoTime('2024-06-10T00:00:00Z').epochNs;
  for (const host of ['h1', 'h2']) {
    for (const paths of PATH_SETS) {
      for (let t = start; t < end - 4n * 24n * HOUR_NS; ) {
        add(t, host, paths);
        t += BigInt(Math.floor(6 + rand() * 120 * 24)) * HOUR_NS; // 6 hours to 120 days
      }
      for (let t = end - 4n * 24n * HOUR_NS; t < end; ) {
        add(t, host, paths);
        t += BigInt(Math.floor(1 + rand() * 20)) * HOUR_NS;
      }
    }
  }
  // keep-within steps back on the calendar of the newest snapshot's zone. Newest at 12:00 CEST on
  // 9 June: in Europe/Berlin, where +02:00 is the local zone, 3 months back is 12:00 CET on 9 March
  // (11:00Z); in a fixed +02:00 zone it is 10:00Z. These snapshots sit in that hour.
  for (const time of ['2023-12-01T00:00:00Z', '2024-03-09T11:30:00+01:00', '2024-03-09T10:59:59Z', '2024-03-09T12:00:01+01:00', '2024-06-09T12:00:00+02:00']) {
    out.push({ time: parseGoTime(time), tree, paths: ['/srv/app'], hostname: 'dst' });
  }
  // ISO weeks across new year: 28 Dec 2020 to 3 Jan 2021 is 2020-W53, 30 Dec 2024 is 2025-W01.
  for (const time of ['2020-12-28T12:00:00Z', '2020-12-31T12:00:00Z', '2021-01-03T23:30:00Z', '2021-01-04T00:30:00Z', '2024-12-29T12:00:00Z', '2024-12-30T08:00:00Z']) {
    out.push({ time: parseGoTime(time), tree, paths: ['/srv/app'], hostname: 'weeks', tags: ['monthly'] });
  }
  // A snapshot in the future is not the reference for keep-within, but it is within.
  for (const time of ['2024-01-01T00:00:00Z', '2024-01-05T00:00:00Z', '2099-01-01T00:00:00Z']) {
    out.push({ time: parseGoTime(time), tree, paths: ['/srv/app'], hostname: 'future', tags: ['daily'] });
  }
  return out;
}

// The policies compared, as restic flags and as the planner's policy (for the 0.14 subset).
const POLICIES: { flags: string[]; policy: RetentionPolicy; groupBy?: { host?: boolean; paths?: boolean; tags?: boolean }; v014?: boolean }[] = [
  { flags: ['-l', '5'], policy: { last: 5 }, v014: true },
  { flags: ['-d', '7', '-w', '4', '-m', '12', '-y', '1'], policy: { daily: 7, weekly: 4, monthly: 12, yearly: 1 }, v014: true },
  { flags: ['--keep-hourly', '24', '--keep-daily', '10'], policy: { hourly: 24, daily: 10 }, v014: true },
  { flags: ['--keep-within', '6m'], policy: { within: '6m' }, v014: true },
  { flags: ['--keep-tag', 'important,daily', '--keep-tag', 'monthly', '-l', '2'], policy: { tags: [['important', 'daily'], ['monthly']], last: 2 }, v014: true },
  { flags: ['-m', '6', '--group-by', 'host'], policy: { monthly: 6 }, groupBy: { host: true }, v014: true },
  { flags: ['-w', 'unlimited'], policy: { weekly: -1 } },
  { flags: ['-m', '100', '-y', '10'], policy: { monthly: 100, yearly: 10 } },
  { flags: ['--keep-within-daily', '1m', '--keep-within-weekly', '6m', '--keep-within-monthly', '2y', '--keep-within-yearly', '10y'], policy: { withinDaily: '1m', withinWeekly: '6m', withinMonthly: '2y', withinYearly: '10y' } },
  { flags: ['--keep-within', '1y2m3d4h', '-w', '6'], policy: { within: '1y2m3d4h', weekly: 6 } },
  { flags: ['--keep-within-hourly', '3d', '-H', '48'], policy: { withinHourly: '3d', hourly: 48 } },
  { flags: ['-d', '3', '--group-by', 'tags'], policy: { daily: 3 }, groupBy: { tags: true } },
  { flags: ['-y', '2', '-d', '2', '--group-by', ''], policy: { yearly: 2, daily: 2 }, groupBy: {} },
  { flags: ['-l', '3', '--host', 'h2', '--tag', 'daily'], policy: { last: 3 } },
];

describe('forget agrees with restic', () => {
  let work: string;
  let repoDir: string;
  let repo: Repository;
  let allIds: string[];
  const opts = () => ({ repo: repoDir, password: PASSWORD });
  const cliEnv = (dir: string, extra: Record<string, string> = {}) => ({ RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC', ...extra });

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-forget-'));
    repoDir = path.join(work, 'repo');
    const src = path.join(work, 'src');
    await mkdir(src);
    await writeFile(path.join(src, 'file.txt'), 'the one tree every snapshot shares\n');
    repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, version: 2, kdf: FAST_KDF });
    const made = await backup(await repo.loadIndex(), { paths: [src], hostname: 'seed' });
    await repo.backend.remove({ type: 'snapshots', name: made.snapshotId });
    const snaps = history(made.snapshot.tree);
    allIds = [];
    for (const s of snaps) allIds.push(await repo.saveUnpacked('snapshots', encodeSnapshot(s)));
    assert.ok(snaps.length >= 60 && snaps.length <= 150, `history has ${snaps.length} snapshots`);
  });
  after(async () => {
    await removeTree(work);
  });

  it('restic 0.19 and the Stowage CLI print the same `forget --dry-run --json` for every policy', async () => {
    const bin = resticBin('0.19');
    for (const { flags } of POLICIES) {
      const expected = await resticJson<JsonGroup[]>(bin, ['forget', '--dry-run', ...flags], opts());
      const res = await runCli(['forget', '--dry-run', '--json', ...flags], { env: cliEnv(repoDir) });
      assert.equal(res.code, 0, `stowage forget ${flags.join(' ')}: ${res.stderr}`);
      const got = byGroup(JSON.parse(res.stdout) as JsonGroup[]);
      const want = byGroup(expected);
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), `groups for ${flags.join(' ')}`);
      for (const [key, g] of want) assert.deepEqual(got.get(key), g, `group ${key} for ${flags.join(' ')}`);
      // The policy must actually choose: something kept and, overall, something removed.
      assert.ok(expected.some((g) => g.remove?.length) || flags.includes('unlimited'), `policy ${flags.join(' ')} removes something`);
    }
  });

  it('the planner keeps and removes what restic 0.14 does, for the same reasons', async () => {
    const bin = resticBin('0.14');
    const entries = await listSnapshots(repo);
    for (const { flags, policy, groupBy } of POLICIES.filter((p) => p.v014)) {
      const expected = byGroup(await resticJson<JsonGroup[]>(bin, ['forget', '--dry-run', ...flags], opts()));
      const plan = planRetention(entries, policy, { groupBy, keepOldest: false });
      assert.equal(plan.groups.length, expected.size, `group count for ${flags.join(' ')}`);
      for (const g of plan.groups) {
        const want = expected.get(groupKey({ host: g.key.hostname, paths: g.key.paths, tags: g.key.tags }));
        assert.ok(want, `restic has group ${JSON.stringify(g.key)}`);
        assert.deepEqual(g.keep.map((k) => k.id), (want.keep ?? []).map((s) => s.id), `kept in ${JSON.stringify(g.key)} for ${flags.join(' ')}`);
        assert.deepEqual(g.remove.map((r) => r.id), (want.remove ?? []).map((s) => s.id), `removed in ${JSON.stringify(g.key)} for ${flags.join(' ')}`);
        // 0.14's reasons carry no snapshot ID; they are in the order of `keep`.
        assert.deepEqual(g.keep.map((k) => k.matches), (want.reasons ?? []).map((r) => r.matches));
        assert.deepEqual(g.keep.map((k) => k.counters), (want.reasons ?? []).map((r) => r.counters));
      }
    }
  });

  it('keep-within across DST in a local zone (TZ=Europe/Berlin) agrees with restic 0.19', async () => {
    const bin = resticBin('0.19');
    for (const flags of [['--keep-within', '3m'], ['--keep-within', '1m3d5h', '--keep-within-daily', '3m'], ['--keep-within-hourly', '3m', '-d', '5']]) {
      const expected = byGroup(await resticJson<JsonGroup[]>(bin, ['forget', '--dry-run', ...flags], { ...opts(), env: { TZ: 'Europe/Berlin' } }));
      const res = await runCli(['forget', '--dry-run', '--json', ...flags], { env: cliEnv(repoDir, { TZ: 'Europe/Berlin' }) });
      assert.equal(res.code, 0, res.stderr);
      const got = byGroup(JSON.parse(res.stdout) as JsonGroup[]);
      for (const [key, g] of expected) assert.deepEqual(got.get(key), g, `group ${key} for ${flags.join(' ')} in Europe/Berlin`);
    }
    // The zone decides here: in UTC the +02:00 newest is a fixed zone and keeps the whole hour.
    const dstKey = groupKey({ host: 'dst', paths: ['/srv/app'], tags: null });
    const removedIn = async (tz: string) => {
      const res = await runCli(['forget', '--dry-run', '--json', '--keep-within', '3m'], { env: cliEnv(repoDir, { TZ: tz }) });
      return (byGroup(JSON.parse(res.stdout) as JsonGroup[]).get(dstKey)!.remove ?? []).map((s) => s.time);
    };
    assert.deepEqual(await removedIn('Europe/Berlin'), ['2024-03-09T10:59:59Z', '2024-03-09T11:30:00+01:00', '2023-12-01T00:00:00Z']);
    assert.deepEqual(await removedIn('UTC'), ['2023-12-01T00:00:00Z']);
  });

  it('refusals match restic: no policy, and a policy that would empty a group', async () => {
    const bin = resticBin('0.19');
    for (const flags of [[], ['--keep-tag', 'no-such-tag']]) {
      const r = await runRestic(bin, ['forget', '--dry-run', ...flags], opts());
      const s = await runCli(['forget', '--dry-run', ...flags], { env: cliEnv(repoDir) });
      assert.equal(r.code, 1);
      assert.equal(s.code, 1, s.stderr);
      assert.match(s.stderr, flags.length ? /refusing to delete the last snapshot/ : /no retention policy was specified/);
    }
    // A keep flag's bad value: pflag's message byte for byte (no "Fatal: ").
    for (const flags of [['--keep-daily', 'x'], ['--keep-last', '-1']]) {
      const [r, s] = await Promise.all([runRestic(bin, ['forget', '--dry-run', ...flags], opts()), runCli(['forget', '--dry-run', ...flags], { env: cliEnv(repoDir) })]);
      assert.equal(r.code, 1);
      assert.equal(s.code, 1);
      assert.equal(s.stderr, r.stderr, flags.join(' '));
    }
    // --unsafe-allow-remove-all needs a filter, then removes everything the filter selects.
    assert.equal((await runCli(['forget', '--dry-run', '--unsafe-allow-remove-all'], { env: cliEnv(repoDir) })).code, 1);
    const flags = ['--unsafe-allow-remove-all', '--host', 'h1', '--tag', 'monthly'];
    const want = byGroup(await resticJson<JsonGroup[]>(bin, ['forget', '--dry-run', ...flags], opts()));
    const res = await runCli(['forget', '--dry-run', '--json', ...flags], { env: cliEnv(repoDir) });
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(byGroup(JSON.parse(res.stdout) as JsonGroup[]), want);
  });

  it('a real forget through the Stowage CLI leaves what restic predicted', async () => {
    const copy = path.join(work, 'copy-policy');
    await cp(repoDir, copy, { recursive: true });
    const flags = ['-d', '7', '-w', '5', '-m', '6', '--keep-tag', 'important'];
    const predicted = await resticJson<JsonGroup[]>(resticBin('0.19'), ['forget', '--dry-run', ...flags], opts());
    const removed = new Set(predicted.flatMap((g) => (g.remove ?? []).map((s) => s.id)));
    assert.ok(removed.size > 10, `policy removes ${removed.size}`);
    const res = await runCli(['forget', ...flags], { env: cliEnv(copy) });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /keep \d+ snapshots:/);
    for (const { name, bin } of [{ name: '0.19', bin: resticBin('0.19') }, { name: '0.14', bin: resticBin('0.14') }]) {
      const left = await resticJson<JsonSnapshot[]>(bin, ['snapshots'], { repo: copy, password: PASSWORD });
      assert.deepEqual(left.map((s) => s.id).sort(), allIds.filter((id) => !removed.has(id)).sort(), `restic ${name} sees the predicted snapshots`);
      await resticOk(bin, ['check'], { repo: copy, password: PASSWORD });
    }
    assert.deepEqual(await readdir(path.join(copy, 'locks')), [], 'no lock left behind');
  });

  it('explicit IDs are removed as given; a filter without "latest" is refused', async () => {
    const copy = path.join(work, 'copy-ids');
    await cp(repoDir, copy, { recursive: true });
    const [a, b] = [allIds[3]!, allIds[40]!];
    const refused = await runCli(['forget', a.slice(0, 10), '--host', 'h1'], { env: cliEnv(copy) });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /explicit snapshot IDs/);
    const res = await runCli(['forget', a.slice(0, 10), b, a], { env: cliEnv(copy) });
    assert.equal(res.code, 0, res.stderr);
    const left = await resticJson<JsonSnapshot[]>(resticBin('0.19'), ['snapshots'], { repo: copy, password: PASSWORD });
    assert.deepEqual(left.map((s) => s.id).sort(), allIds.filter((id) => id !== a && id !== b).sort());
    // "latest" honours the filter.
    const c = await Repository.open(new LocalBackend(copy), { password: PASSWORD });
    const latestH2Db = (await listSnapshots(c, { hosts: ['h2'], paths: ['/srv/db'] })).at(-1)!;
    const r2 = await forget(c, { ids: ['latest'], filter: { hosts: ['h2'], paths: ['/srv/db'] } });
    assert.deepEqual(r2.removed, [latestH2Db.id]);
    assert.deepEqual(r2.groups, []);
  });
});

describe('forget with prune, and locking', () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-forget-prune-'));
  });
  after(async () => {
    await removeTree(work);
  });

  it('forget removes the snapshots and prune their data; restic 0.19 and 0.14 check the result clean', async () => {
    const repoDir = path.join(work, 'repo');
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, version: 2, kdf: FAST_KDF });
    const made: SnapshotId[] = [];
    for (let i = 0; i < 3; i++) {
      const dir = path.join(work, `src${i}`);
      await mkdir(dir);
      // Distinct, incompressible content per backup, so each backup's data is its own.
      await writeFile(path.join(dir, 'data.bin'), Buffer.from(Array.from({ length: 200_000 }, (_, j) => (Math.imul(j + 1, 2654435761 + i * 97) >>> 13) & 255)));
      const r = await backup(await repo.loadIndex(), { paths: [dir], hostname: 'p', time: parseGoTime(`2024-0${i + 1}-01T00:00:00Z`) });
      made.push(r.snapshotId);
    }
    // Grouped by host only, keep-last 1 keeps the newest backup and forgets the two others.
    const dry = await forget(repo, { policy: { last: 1 }, groupBy: { host: true }, dryRun: true, prune: true });
    assert.deepEqual([...dry.removed].sort(), [made[0]!, made[1]!].sort());
    assert.equal(dry.prune?.dryRun, true);
    assert.ok(dry.prune!.stats.blobs.remove + dry.prune!.stats.blobs.repackRemove >= 2, 'the dry-run prune plans as if the snapshots were gone');
    assert.equal((await listSnapshots(repo)).length, 3, 'a dry run changes nothing');

    const real = await forget(repo, { policy: { last: 1 }, groupBy: { host: true }, prune: { maxUnused: '0%' } });
    assert.deepEqual([...real.removed].sort(), [made[0]!, made[1]!].sort());
    assert.deepEqual(real.failed, []);
    assert.equal(real.prune?.dryRun, false);
    assert.ok(real.prune!.stats.blobs.removeTotal >= 2, 'prune removed the forgotten data');
    assert.deepEqual((await listSnapshots(repo)).map((e) => e.id), [made[2]!]);
    for (const name of ['0.19', '0.14'] as const) {
      await resticOk(resticBin(name), ['check', '--read-data'], { repo: repoDir, password: PASSWORD });
    }
  });

  it('forget waits for, then fails on, an exclusive lock held elsewhere; lock:false skips locking', async () => {
    const repoDir = path.join(work, 'locked');
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, version: 2, kdf: FAST_KDF });
    const tree = 'a8b95f4c415e02faa8df3b186845a4872a05f5ce602f661297f28bc935dd588b' as BlobId;
    for (const t of ['2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z']) {
      await repo.saveUnpacked('snapshots', encodeSnapshot({ time: parseGoTime(t), tree, paths: ['/x'], hostname: 'l' }));
    }
    const held = await Lock.acquire(repo, { exclusive: false, settleTime: 0 });
    try {
      await assert.rejects(forget(repo, { policy: { last: 1 }, retryLock: 0 }), LockedError);
      assert.equal((await listSnapshots(repo)).length, 2);
      const r = await forget(repo, { policy: { last: 1 }, lock: false });
      assert.equal(r.removed.length, 1);
    } finally {
      await held.release();
    }
    const ids: string[] = [];
    for await (const id of repo.listIds('locks')) ids.push(id);
    assert.deepEqual(ids, []);
  });
});
