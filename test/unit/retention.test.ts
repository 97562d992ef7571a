// Retention planning (restic's ApplyPolicy) as table tests: each rule alone, the "oldest" rule,
// unlimited counts, ISO weeks and zones, keep-within relative to the newest snapshot, keep-tag,
// combinations, groups and ties. The interop test compares the same planner with real restic.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from '../../src/errors.ts';
import { parseGoTime } from '../../src/repository/gotime.ts';
import { sha256Hex, type BlobId, type SnapshotId } from '../../src/repository/id.ts';
import type { SnapshotEntry } from '../../src/snapshot/engine/select.ts';
import {
  type ForgetPlan,
  type PlanRetentionOptions,
  type RetentionPolicy,
  EmptyRetentionPolicyError,
  keepHorizon,
  RemoveAllRefusedError,
  describeRetentionPolicy,
  formatRetentionDuration,
  isEmptyRetentionPolicy,
  normalizeRetentionPolicy,
  parseRetentionDuration,
  planRetention,
  splitTagList,
  stashRetentionPolicy,
} from '../../src/snapshot/model/retention.ts';

const TREE = 'a8b95f4c415e02faa8df3b186845a4872a05f5ce602f661297f28bc935dd588b' as BlobId;

interface Fixture {
  host?: string;
  paths?: string[];
  tags?: string[];
}

// Snapshots are named by a label; the label's hash is the ID, so plans read back as labels.
const labels = new Map<string, string>();
function snap(label: string, time: string, f: Fixture = {}): SnapshotEntry {
  const id = sha256Hex<SnapshotId>(Buffer.from(label));
  labels.set(id, label);
  return { id, snapshot: { time: parseGoTime(time), tree: TREE, paths: f.paths ?? ['/data'], hostname: f.host ?? 'h1', ...(f.tags ? { tags: f.tags } : {}) } };
}

const FAR_FUTURE = new Date('2100-01-01T00:00:00Z');

function plan(list: SnapshotEntry[], policy: RetentionPolicy, options: PlanRetentionOptions = {}): ForgetPlan {
  return planRetention(list, policy, { now: FAR_FUTURE, ...options });
}

/** One group's keep and remove lists as labels, newest first, with each kept snapshot's reasons. */
function single(list: SnapshotEntry[], policy: RetentionPolicy, options: PlanRetentionOptions = {}) {
  const p = plan(list, policy, options);
  assert.equal(p.groups.length, 1, 'expected one group');
  const g = p.groups[0]!;
  return {
    keep: g.keep.map((k) => labels.get(k.id)!),
    remove: g.remove.map((r) => labels.get(r.id)!),
    reasons: Object.fromEntries(g.keep.map((k) => [labels.get(k.id)!, k.matches])),
    counters: g.keep.map((k) => k.counters),
  };
}

describe('parseRetentionDuration', () => {
  const ok: [string, [number, number, number, number]][] = [
    ['1y5m7d2h', [1, 5, 7, 2]],
    ['36h', [0, 0, 0, 36]],
    ['  2d ', [0, 0, 2, 0]],
    ['', [0, 0, 0, 0]],
    ['3m1y', [1, 3, 0, 0]],
    ['2d3d', [0, 0, 3, 0]], // a repeated unit replaces the earlier value, as in restic
    ['-1d', [0, 0, -1, 0]], // parsed; the policy check refuses it
    ['0y0m0d0h', [0, 0, 0, 0]],
  ];
  for (const [s, [years, months, days, hours]] of ok) {
    test(`"${s}"`, () => assert.deepEqual(parseRetentionDuration(s), { years, months, days, hours }));
  }
  for (const s of ['d', '5', '5x', '1.5d', 'y1', '1d 2h', '--1d', '1D']) {
    test(`"${s}" is refused`, () => assert.throws(() => parseRetentionDuration(s), InvalidInputError));
  }
  test('formatting leaves out zero parts in restic order', () => {
    assert.equal(formatRetentionDuration(parseRetentionDuration('2h3m1y')), '1y3m2h');
    assert.equal(formatRetentionDuration(parseRetentionDuration('7d')), '7d');
  });
});

describe('policy checks', () => {
  test('an empty policy is refused with a typed error, and allowRemoveAll removes everything', () => {
    const list = [snap('e1', '2024-01-01T00:00:00Z'), snap('e2', '2024-01-02T00:00:00Z')];
    assert.throws(() => plan(list, {}), EmptyRetentionPolicyError);
    assert.throws(() => plan(list, { last: 0, within: '0d', tags: [] }), EmptyRetentionPolicyError);
    const all = single(list, {}, { allowRemoveAll: true });
    assert.deepEqual(all.keep, []);
    assert.deepEqual(all.remove, ['e2', 'e1']);
  });
  test('counts below -1, fractions, negative durations and bad tag lists are refused', () => {
    assert.throws(() => normalizeRetentionPolicy({ last: -2 }), /last/);
    assert.throws(() => normalizeRetentionPolicy({ daily: 1.5 }), /daily/);
    assert.throws(() => normalizeRetentionPolicy({ within: '-1d' }), /within/);
    assert.throws(() => normalizeRetentionPolicy({ withinWeekly: { years: 0, months: -1, days: 0, hours: 0 } }), /withinWeekly/);
    assert.throws(() => normalizeRetentionPolicy({ tags: ['a'] as unknown as string[][] }), /tags/);
    assert.equal(normalizeRetentionPolicy({ last: -1 }).last, -1);
  });
  test('isEmptyRetentionPolicy', () => {
    assert.equal(isEmptyRetentionPolicy({}), true);
    assert.equal(isEmptyRetentionPolicy({ tags: [['']] }), false);
    assert.equal(isEmptyRetentionPolicy({ withinHourly: '1h' }), false);
    assert.equal(isEmptyRetentionPolicy({ yearly: -1 }), false);
  });
  test('the policy description is restic\'s "Applying Policy" text', () => {
    assert.equal(
      describeRetentionPolicy({ daily: 5, tags: [['a', 'b'], ['']], within: '1y2m', withinDaily: '3d' }),
      'keep 5 daily snapshots, daily snapshots within 3d and all snapshots with tags [[a, b] []] and all snapshots within 1y2m of the newest',
    );
    assert.equal(describeRetentionPolicy({ last: -1, weekly: 4 }), 'keep all latest, 4 weekly snapshots');
    assert.equal(describeRetentionPolicy({}), 'remove');
  });
  test('splitTagList trims and keeps empty tags', () => {
    assert.deepEqual(splitTagList(' a , b'), ['a', 'b']);
    assert.deepEqual(splitTagList(''), ['']);
  });
});

describe('count rules alone', () => {
  const five = () => [
    snap('c1', '2024-01-01T10:00:00Z'),
    snap('c2', '2024-01-02T10:00:00Z'),
    snap('c3', '2024-01-03T10:00:00Z'),
    snap('c4', '2024-01-04T10:00:00Z'),
    snap('c5', '2024-01-05T10:00:00Z'),
  ];
  test('keep-last 3 keeps the three newest, counting down', () => {
    const r = single(five(), { last: 3 });
    assert.deepEqual(r.keep, ['c5', 'c4', 'c3']);
    assert.deepEqual(r.remove, ['c2', 'c1']);
    assert.deepEqual(r.reasons.c5, ['last snapshot']);
    assert.deepEqual(r.counters, [{ last: 2 }, { last: 1 }, {}]);
  });
  test('keep-last larger than the list keeps all, the oldest as a plain "last snapshot"', () => {
    const r = single(five(), { last: 10 });
    assert.deepEqual(r.keep, ['c5', 'c4', 'c3', 'c2', 'c1']);
    assert.deepEqual(r.reasons.c1, ['last snapshot']);
    assert.deepEqual(r.counters.at(-1), { last: 5 });
  });
  test('keep-last unlimited keeps all with counter -1', () => {
    const r = single(five(), { last: -1 });
    assert.equal(r.keep.length, 5);
    assert.deepEqual(r.counters[0], { last: -1 });
  });
  test('input order does not matter: snapshots are evaluated newest first', () => {
    assert.deepEqual(single(five().reverse(), { last: 2 }).keep, ['c5', 'c4']);
  });

  const days = () => [
    snap('d1a', '2024-01-01T08:00:00Z'),
    snap('d1b', '2024-01-01T20:00:00Z'),
    snap('d2a', '2024-01-02T09:00:00Z'),
    snap('d3a', '2024-01-03T07:00:00Z'),
    snap('d3b', '2024-01-03T23:59:59Z'),
  ];
  test('keep-daily keeps the newest snapshot of each day', () => {
    const r = single(days(), { daily: 2 });
    assert.deepEqual(r.keep, ['d3b', 'd2a']);
    assert.deepEqual(r.remove, ['d3a', 'd1b', 'd1a']);
  });
  test('with counts left at the end the oldest snapshot is kept too, marked "oldest"', () => {
    const r = single(days(), { daily: 5 });
    assert.deepEqual(r.keep, ['d3b', 'd2a', 'd1b', 'd1a']);
    assert.deepEqual(r.reasons.d1a, ['oldest daily snapshot']);
    assert.deepEqual(r.remove, ['d3a']);
    assert.deepEqual(r.counters, [{ daily: 4 }, { daily: 3 }, { daily: 2 }, { daily: 1 }]);
  });
  test('an oldest snapshot in a bucket of its own is a plain keep', () => {
    const list = [snap('o1', '2024-01-01T08:00:00Z'), snap('o2', '2024-01-02T08:00:00Z'), snap('o2b', '2024-01-02T09:00:00Z')];
    const r = single(list, { daily: 5 });
    assert.deepEqual(r.keep, ['o2b', 'o1']);
    assert.deepEqual(r.reasons.o1, ['daily snapshot']);
  });
  test('keepOldest: false plans as restic 0.14/0.15, which never kept the oldest extra', () => {
    const r = single(days(), { daily: 5, withinDaily: '10d' }, { keepOldest: false });
    assert.deepEqual(r.keep, ['d3b', 'd2a', 'd1b']);
    assert.deepEqual(r.remove, ['d3a', 'd1a']);
  });
  test('with the count used up the oldest is not kept', () => {
    const r = single(days(), { daily: 3 });
    assert.deepEqual(r.keep, ['d3b', 'd2a', 'd1b']);
    assert.deepEqual(r.remove, ['d3a', 'd1a']);
  });
  test('keep-daily unlimited keeps one per day and the oldest', () => {
    const r = single(days(), { daily: -1 });
    assert.deepEqual(r.keep, ['d3b', 'd2a', 'd1b', 'd1a']);
    assert.deepEqual(r.counters[0], { daily: -1 });
  });
  test('keep-hourly buckets by hour', () => {
    const list = [
      snap('h1', '2024-01-01T10:05:00Z'),
      snap('h2', '2024-01-01T10:55:00Z'),
      snap('h3', '2024-01-01T11:00:00Z'),
      snap('h4', '2024-01-02T10:30:00Z'),
    ];
    assert.deepEqual(single(list, { hourly: 3 }).keep, ['h4', 'h3', 'h2']);
  });
  test('keep-weekly uses ISO weeks (Monday to Sunday, the year of the Thursday)', () => {
    const list = [
      snap('w2020-53a', '2020-12-31T12:00:00Z'), // Thursday, 2020-W53
      snap('w2020-53b', '2021-01-01T12:00:00Z'), // Friday, still 2020-W53
      snap('w2021-01', '2021-01-04T12:00:00Z'), // Monday, 2021-W01
      snap('w2024-52', '2024-12-29T12:00:00Z'), // Sunday, 2024-W52
      snap('w2025-01a', '2024-12-30T12:00:00Z'), // Monday, 2025-W01
      snap('w2025-01b', '2025-01-05T12:00:00Z'), // Sunday, 2025-W01
      snap('w2025-02', '2025-01-06T12:00:00Z'), // Monday, 2025-W02
    ];
    const r = single(list, { weekly: 4 });
    assert.deepEqual(r.keep, ['w2025-02', 'w2025-01b', 'w2024-52', 'w2021-01']);
    assert.deepEqual(single(list, { weekly: 10 }).keep, ['w2025-02', 'w2025-01b', 'w2024-52', 'w2021-01', 'w2020-53b', 'w2020-53a']);
    assert.deepEqual(single(list, { weekly: 10 }).reasons['w2020-53a'], ['oldest weekly snapshot']);
  });
  test('keep-monthly and keep-yearly', () => {
    const list = [
      snap('m1', '2022-05-01T00:00:00Z'),
      snap('m2', '2023-02-10T00:00:00Z'),
      snap('m3', '2023-02-20T00:00:00Z'),
      snap('m4', '2023-12-31T23:00:00Z'),
      snap('m5', '2024-01-01T01:00:00Z'),
    ];
    assert.deepEqual(single(list, { monthly: 2 }).keep, ['m5', 'm4']);
    assert.deepEqual(single(list, { monthly: 3 }).keep, ['m5', 'm4', 'm3']);
    assert.deepEqual(single(list, { yearly: 2 }).keep, ['m5', 'm4']);
    assert.deepEqual(single(list, { yearly: 5 }).keep, ['m5', 'm4', 'm1']);
  });
  test('buckets use the wall clock of the zone each snapshot was taken in', () => {
    // a is 2024-02-29T22:30Z but 1 March in its own zone; b is the later instant, in February.
    const list = [snap('tz-a', '2024-03-01T00:30:00+02:00'), snap('tz-b', '2024-02-29T23:00:00Z')];
    const r = single(list, { monthly: 2 });
    assert.deepEqual(r.keep, ['tz-b', 'tz-a']);
    assert.deepEqual(r.reasons['tz-a'], ['monthly snapshot']); // not "oldest": a different month
    const d = single([snap('tz-c', '2024-06-10T23:30:00-05:00'), snap('tz-d', '2024-06-11T03:00:00Z')], { daily: 1 });
    // 2024-06-11T04:30Z is the newer instant, and still 10 June where it was taken.
    assert.deepEqual(d.keep, ['tz-c']);
  });
  test('all count rules together count independently', () => {
    const list = [
      snap('a0', '2023-03-01T10:00:00Z'),
      snap('a1', '2023-06-01T10:00:00Z'),
      snap('a2', '2024-01-15T10:00:00Z'),
      snap('a3', '2024-02-15T10:00:00Z'),
      snap('a4', '2024-02-16T10:00:00Z'),
      snap('a5', '2024-02-16T11:00:00Z'),
    ];
    const r = single(list, { last: 1, hourly: 2, daily: 2, monthly: 2, yearly: 2 });
    assert.deepEqual(r.keep, ['a5', 'a4', 'a3', 'a2', 'a1']);
    assert.deepEqual(r.reasons.a5, ['last snapshot', 'hourly snapshot', 'daily snapshot', 'monthly snapshot', 'yearly snapshot']);
    assert.deepEqual(r.reasons.a4, ['hourly snapshot']);
    assert.deepEqual(r.reasons.a3, ['daily snapshot']);
    assert.deepEqual(r.reasons.a2, ['monthly snapshot']); // same year as a5
    assert.deepEqual(r.reasons.a1, ['yearly snapshot']);
    assert.deepEqual(r.remove, ['a0']); // every count used up: no "oldest" keep
    assert.deepEqual(r.counters[0], { hourly: 1, daily: 1, monthly: 1, yearly: 1 });
  });
});

describe('keep-within rules', () => {
  test('keep-within keeps snapshots strictly newer than newest − duration', () => {
    const list = [
      snap('k1', '2024-05-09T12:00:00Z'),
      snap('k2', '2024-05-09T12:00:01Z'),
      snap('k3', '2024-05-10T12:00:00Z'),
    ];
    const r = single(list, { within: '1d' });
    assert.deepEqual(r.keep, ['k3', 'k2']);
    assert.deepEqual(r.remove, ['k1']);
    assert.deepEqual(r.reasons.k3, ['within 1d']);
    assert.deepEqual(r.counters, [{}, {}]);
  });
  test('months step on the calendar and overflow as Go does (31 March − 1 month = 2 March)', () => {
    const list = [
      snap('m1', '2024-03-01T12:00:00Z'),
      snap('m2', '2024-03-02T10:00:00Z'),
      snap('m3', '2024-03-02T10:00:01Z'),
      snap('m4', '2024-03-31T10:00:00Z'),
    ];
    assert.deepEqual(single(list, { within: '1m' }).keep, ['m4', 'm3']);
    // Hours come off after the calendar step.
    assert.deepEqual(single(list, { within: '1m1h' }).keep, ['m4', 'm3', 'm2']);
    assert.deepEqual(single(list, { within: { years: 0, months: 0, days: 28, hours: 24 } }).keep, ['m4', 'm3']);
  });
  test('the reference is the newest snapshot of the group that is not in the future', () => {
    const list = [snap('f1', '2024-01-01T00:00:00Z'), snap('f2', '2024-01-05T00:00:00Z'), snap('f3', '2030-01-01T00:00:00Z')];
    const r = single(list, { within: '2d' }, { now: new Date('2025-01-01T00:00:00Z') });
    // Relative to f2 (f3 is in the future); f3 is newer than the limit and kept as well.
    assert.deepEqual(r.keep, ['f3', 'f2']);
    assert.deepEqual(r.remove, ['f1']);
    // Everything in the future: the reference is Go's zero time and everything is within.
    assert.deepEqual(single(list, { within: '1d' }, { now: new Date('2000-01-01T00:00:00Z') }).keep, ['f3', 'f2', 'f1']);
  });
  test('keep-within-daily keeps one per day inside the range, and the oldest when it is inside', () => {
    const list = [
      snap('x0', '2024-04-01T12:00:00Z'), // outside 3d
      snap('x1', '2024-04-08T08:00:00Z'),
      snap('x2', '2024-04-08T18:00:00Z'),
      snap('x3', '2024-04-09T09:00:00Z'),
      snap('x4', '2024-04-10T10:00:00Z'),
      snap('x5', '2024-04-10T11:00:00Z'),
    ];
    const r = single(list, { withinDaily: '3d' });
    assert.deepEqual(r.keep, ['x5', 'x3', 'x2']);
    assert.deepEqual(r.reasons.x5, ['daily within 3d']);
    const inside = single(list.slice(1), { withinDaily: '3d' });
    assert.deepEqual(inside.keep, ['x5', 'x3', 'x2', 'x1']);
    assert.deepEqual(inside.reasons.x1, ['oldest daily within 3d']);
  });
  test('keep-within-hourly, -weekly, -monthly and -yearly bucket like their count rules', () => {
    const list = [
      snap('y1', '2021-03-01T00:00:00Z'),
      snap('y2', '2022-07-01T00:00:00Z'),
      snap('y3', '2022-08-01T00:00:00Z'),
      snap('y4', '2023-06-05T10:10:00Z'), // Monday
      snap('y5', '2023-06-07T10:20:00Z'), // same ISO week
      snap('y6', '2023-06-07T10:40:00Z'), // same hour
    ];
    assert.deepEqual(single(list, { withinYearly: '2y' }).keep, ['y6', 'y3']);
    assert.deepEqual(single(list, { withinMonthly: '1y' }).keep, ['y6', 'y3', 'y2']);
    assert.deepEqual(single(list, { withinWeekly: '1m' }).keep, ['y6']);
    assert.deepEqual(single(list, { withinHourly: '3d' }).keep, ['y6', 'y4']);
    assert.deepEqual(single(list, { withinYearly: '5y' }).reasons.y1, ['yearly within 5y']);
  });
  test('in the local zone, a day back crosses a DST change on the wall clock (Go Local location)', () => {
    const saved = process.env.TZ;
    process.env.TZ = 'Europe/Berlin';
    try {
      assert.equal(new Date('2024-03-31T12:00:00Z').getTimezoneOffset(), -120, 'Node has the Europe/Berlin zone');
      // Newest at 12:00 CEST on 31 March; one day back is 12:00 CET on 30 March = 11:00Z.
      const list = [snap('dst1', '2024-03-30T10:59:59Z'), snap('dst2', '2024-03-30T11:00:01Z'), snap('dst3', '2024-03-31T12:00:00+02:00')];
      assert.deepEqual(single(list, { within: '1d' }).keep, ['dst3', 'dst2']);
      // A fixed zone (not the local one) steps 24 hours of wall clock in that fixed offset.
      const fixed = [snap('fx1', '2024-03-30T09:59:59Z'), snap('fx2', '2024-03-30T10:00:01Z'), snap('fx3', '2024-03-31T15:00:00+05:00')];
      assert.deepEqual(single(fixed, { within: '1d' }).keep, ['fx3', 'fx2']);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});

describe('keep-tag', () => {
  const list = () => [
    snap('t-none', '2024-01-01T00:00:00Z'),
    snap('t-a', '2024-01-02T00:00:00Z', { tags: ['a'] }),
    snap('t-ab', '2024-01-03T00:00:00Z', { tags: ['b', 'a'] }),
    snap('t-c', '2024-01-04T00:00:00Z', { tags: ['c'] }),
  ];
  test('a tag list needs all its tags; several lists are OR-ed, each matching one named', () => {
    const r = single(list(), { tags: [['a', 'b'], ['c']] });
    assert.deepEqual(r.keep, ['t-c', 't-ab']);
    assert.deepEqual(r.reasons['t-ab'], ['has tags [a, b]']);
    const both = single(list(), { tags: [['a'], ['b']] });
    assert.deepEqual(both.reasons['t-ab'], ['has tags [a]', 'has tags [b]']);
    assert.deepEqual(both.keep, ['t-ab', 't-a']);
  });
  test('an empty tag matches untagged snapshots', () => {
    assert.deepEqual(single(list(), { tags: [['']] }).keep, ['t-none']);
  });
  test('a tag-only policy that keeps nothing of a group is refused', () => {
    assert.throws(() => plan(list(), { tags: [['zz']] }), (e: unknown) => e instanceof RemoveAllRefusedError && /host h1, path \[\/data\]/.test(e.message));
  });
  test('tags combine with other rules in restic\'s reason order', () => {
    const r = single(list(), { tags: [['c']], within: '1d', last: 1, withinDaily: '1d' });
    assert.deepEqual(r.reasons['t-c'], ['has tags [c]', 'within 1d', 'last snapshot', 'daily within 1d']);
    assert.deepEqual(r.keep, ['t-c']);
  });
});

describe('groups and ties', () => {
  const list = () => [
    snap('g1', '2024-01-01T00:00:00Z', { host: 'h1', paths: ['/a', '/b'] }),
    snap('g2', '2024-01-02T00:00:00Z', { host: 'h2', paths: ['/a', '/b'] }),
    snap('g3', '2024-01-03T00:00:00Z', { host: 'h1', paths: ['/b', '/a'], tags: ['x'] }),
    snap('g4', '2024-01-04T00:00:00Z', { host: 'h1', paths: ['/c'], tags: ['x'] }),
    snap('g5', '2024-01-05T00:00:00Z', { host: 'h2', paths: ['/a', '/b'], tags: ['x'] }),
  ];
  const grouped = (p: ForgetPlan) => p.groups.map((g) => ({ key: g.key, keep: g.keep.map((k) => labels.get(k.id)), remove: g.remove.map((r) => labels.get(r.id)) }));
  test('by default, host and (sorted) paths form the groups; each gets its own plan', () => {
    assert.deepEqual(grouped(plan(list(), { last: 1 })), [
      { key: { hostname: 'h1', paths: ['/a', '/b'], tags: null }, keep: ['g3'], remove: ['g1'] },
      { key: { hostname: 'h2', paths: ['/a', '/b'], tags: null }, keep: ['g5'], remove: ['g2'] },
      { key: { hostname: 'h1', paths: ['/c'], tags: null }, keep: ['g4'], remove: [] },
    ]);
  });
  test('group by tags only, and no grouping at all', () => {
    assert.deepEqual(grouped(plan(list(), { last: 1 }, { groupBy: { tags: true } })), [
      { key: { hostname: '', paths: null, tags: null }, keep: ['g2'], remove: ['g1'] },
      { key: { hostname: '', paths: null, tags: ['x'] }, keep: ['g5'], remove: ['g4', 'g3'] },
    ]);
    const one = plan(list(), { last: 2 }, { groupBy: {} });
    assert.equal(one.groups.length, 1);
    assert.deepEqual(one.keep.map((id) => labels.get(id)), ['g5', 'g4']);
    assert.deepEqual(one.remove.map((id) => labels.get(id)), ['g3', 'g2', 'g1']);
  });
  test('snapshots with the same time keep their input order', () => {
    const same = [snap('tie1', '2024-01-01T00:00:00Z'), snap('tie2', '2024-01-01T00:00:00Z'), snap('tie0', '2023-12-31T00:00:00Z')];
    assert.deepEqual(single(same, { last: 1 }).keep, ['tie1']);
    assert.deepEqual(single([same[1]!, same[0]!, same[2]!], { last: 1 }).keep, ['tie2']);
    // Same day: the first is the day's snapshot, the other goes.
    const d = single(same, { daily: 3 });
    assert.deepEqual(d.keep, ['tie1', 'tie0']);
    assert.deepEqual(d.remove, ['tie2']);
  });
  test('an empty list plans nothing', () => {
    assert.deepEqual(plan([], { last: 1 }), { groups: [], keep: [], remove: [] });
  });
  test('kept entries carry the time as written', () => {
    const p = plan([snap('tt', '2024-01-01T01:02:03.5+05:30')], { last: 1 });
    assert.equal(String(p.groups[0]!.keep[0]!.time), '2024-01-01T01:02:03.5+05:30');
  });
});

describe('stashRetentionPolicy', () => {
  test('maps Stash fields to a policy, prune and dry run', () => {
    assert.deepEqual(
      stashRetentionPolicy({ name: 'p', keepLast: 5, keepHourly: 0, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, keepYearly: -1, keepTags: ['a,b', 'c'], prune: true, dryRun: false }),
      { policy: { last: 5, daily: 7, weekly: 4, monthly: 12, yearly: -1, tags: [['a', 'b'], ['c']] }, prune: true, dryRun: false },
    );
    assert.deepEqual(stashRetentionPolicy({ keepDaily: 1, dryRun: true }), { policy: { daily: 1 }, prune: false, dryRun: true });
    assert.throws(() => stashRetentionPolicy({ keepLast: -3 }), /keepLast/);
    assert.throws(() => stashRetentionPolicy({ keepTags: [1] as unknown as string[] }), /keepTags/);
  });
});

describe('keepHorizon (retention that follows the policy)', () => {
  const kept = (time: string, matches: string[]) => ({ id: sha256Hex(new TextEncoder().encode('k')) as SnapshotId, time: parseGoTime(time), matches, counters: {} });
  const iso = (d: Date) => d.toISOString();

  test('bucket rules end when bucket b+N ends, on the snapshot\'s wall clock', () => {
    // 2024-03-13 is a Wednesday.
    const t = '2024-03-13T10:30:00Z';
    assert.equal(iso(keepHorizon(kept(t, ['daily snapshot']), { daily: 3 })), '2024-03-17T00:00:00.000Z');
    assert.equal(iso(keepHorizon(kept(t, ['hourly snapshot']), { hourly: 2 })), '2024-03-13T13:00:00.000Z');
    assert.equal(iso(keepHorizon(kept(t, ['weekly snapshot']), { weekly: 2 })), '2024-04-01T00:00:00.000Z');
    assert.equal(iso(keepHorizon(kept(t, ['monthly snapshot']), { monthly: 11 })), '2025-03-01T00:00:00.000Z');
    assert.equal(iso(keepHorizon(kept(t, ['yearly snapshot']), { yearly: 1 })), '2026-01-01T00:00:00.000Z');
    // The latest of several rules; "oldest" counts as its rule.
    assert.equal(iso(keepHorizon(kept(t, ['daily snapshot', 'oldest monthly snapshot']), { daily: 7, monthly: 1 })), '2024-05-01T00:00:00.000Z');
    // A Sunday belongs to the week that began on the Monday before.
    assert.equal(iso(keepHorizon(kept('2024-03-17T23:00:00Z', ['weekly snapshot']), { weekly: 1 })), '2024-03-25T00:00:00.000Z');
    // +02:00: the day ends at midnight local time, 22:00 UTC.
    assert.equal(iso(keepHorizon(kept('2024-03-13T23:30:00+02:00', ['daily snapshot']), { daily: 1 })), '2024-03-14T22:00:00.000Z');
  });

  test('keep-within adds the duration, keep-last N intervals', () => {
    const t = '2024-01-31T12:00:00Z';
    assert.equal(iso(keepHorizon(kept(t, ['within 1m2d']), { within: '1m2d' })), '2024-03-04T12:00:00.000Z');
    assert.equal(iso(keepHorizon(kept(t, ['daily within 10d']), { withinDaily: '10d' })), '2024-02-10T12:00:00.000Z');
    assert.equal(iso(keepHorizon(kept(t, ['last snapshot']), { last: 5 })), '2024-02-05T12:00:00.000Z');
    assert.equal(iso(keepHorizon(kept(t, ['last snapshot']), { last: 5 }, { lastIntervalMs: 3_600_000 })), '2024-01-31T17:00:00.000Z');
  });

  test('rules with no end are refused', () => {
    const t = '2024-01-31T12:00:00Z';
    assert.throws(() => keepHorizon(kept(t, ['has tags [a]']), { tags: [['a']] }), InvalidInputError);
    assert.throws(() => keepHorizon(kept(t, ['daily snapshot']), { daily: -1 }), /no end/);
  });
});
