// Retention planning: which snapshots a `forget` policy keeps and which it removes, with the exact
// semantics of restic's ApplyPolicy as of 0.18 (0.16+ keep the oldest snapshot while a rule still
// has counts left; 0.18+ say "oldest" in its reason). Pure: no I/O, the caller lists the
// snapshots and acts on the plan.
//
// restic's rules, per group (default: same host and same set of paths):
//   - snapshots are ordered newest first and walked once;
//   - keep-last/hourly/daily/weekly/monthly/yearly each keep a snapshot whose bucket (its own
//     number / hour / day / ISO week / month / year, in the snapshot's own zone) differs from the
//     bucket of the previous snapshot that rule kept, until its count runs out (-1: never);
//   - keep-within keeps every snapshot newer than (newest snapshot of the group − duration), and
//     keep-within-<bucket> keeps one per bucket in that range; "newest" ignores future snapshots;
//   - keep-tag keeps snapshots having all tags of any one list;
//   - a snapshot kept by several rules is kept once, with every rule named.
import { InvalidInputError } from '../../errors.ts';
import { type GoTime, ZERO_GO_TIME, compareGoTime, localOffsetMinutes } from '../../repository/gotime.ts';
import type { SnapshotId } from '../../repository/id.ts';
import type { SnapshotEntry } from './snapshot.ts';
import { type SnapshotGroupBy, type SnapshotGroupKey, groupSnapshots, snapshotMatches } from './snapshot.ts';

/** restic's duration for keep-within rules: whole years, months, days and hours ("1y5m7d2h"). */
export interface RetentionDuration {
  years: number;
  months: number;
  days: number;
  hours: number;
}

/**
 * A forget policy. Counts are the number of buckets to keep, -1 for all (restic's "unlimited"),
 * 0 or absent for none. Durations take a RetentionDuration or restic's string form.
 */
export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  within?: RetentionDuration | string;
  withinHourly?: RetentionDuration | string;
  withinDaily?: RetentionDuration | string;
  withinWeekly?: RetentionDuration | string;
  withinMonthly?: RetentionDuration | string;
  withinYearly?: RetentionDuration | string;
  /** keep-tag: keep a snapshot having every tag of at least one list ([''] matches untagged ones). */
  tags?: string[][];
}

/** A policy with every field present and checked. */
export interface NormalizedRetentionPolicy {
  last: number;
  hourly: number;
  daily: number;
  weekly: number;
  monthly: number;
  yearly: number;
  within: RetentionDuration;
  withinHourly: RetentionDuration;
  withinDaily: RetentionDuration;
  withinWeekly: RetentionDuration;
  withinMonthly: RetentionDuration;
  withinYearly: RetentionDuration;
  tags: string[][];
}

/** What each count rule had left after a kept snapshot was counted; zero counts are left out, as restic's JSON does. */
export interface RetentionCounters {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

/** A snapshot in a {@link ForgetPlan}: its ID and time. */
export interface PlannedSnapshot {
  id: SnapshotId;
  /** The snapshot's time as written in the repository; prints and serialises as that RFC 3339 string. */
  time: GoTime;
}

/** A snapshot the policy keeps, with the rules that keep it. */
export interface KeptSnapshot extends PlannedSnapshot {
  /** Every rule that keeps it, in restic's words ("daily snapshot", "within 1y", "has tags [a]", …). */
  matches: string[];
  counters: RetentionCounters;
}

/**
 * One group of snapshots (by host and paths, by default) and what the policy keeps and removes in
 * it.
 */
export interface RetentionGroup {
  /** restic's group key: the fields not grouped by are '' / null. */
  key: SnapshotGroupKey;
  /** Newest first, as restic evaluates them. */
  keep: KeptSnapshot[];
  /** Newest first. */
  remove: PlannedSnapshot[];
}

/** What a retention policy keeps and removes, per group (from {@link planRetention}). */
export interface ForgetPlan {
  groups: RetentionGroup[];
  /** IDs of every snapshot kept / removed, over all groups. */
  keep: SnapshotId[];
  remove: SnapshotId[];
}

/** Options of {@link planRetention}. */
export interface PlanRetentionOptions {
  /** Default: host and paths, as restic's forget. */
  groupBy?: SnapshotGroupBy;
  /** Snapshots at or after this instant do not count as a group's newest for keep-within (default: now). */
  now?: Date;
  /**
   * restic's --unsafe-allow-remove-all: an empty policy removes every snapshot instead of being
   * refused. (restic also requires a snapshot filter for this; forget() checks that.)
   */
  allowRemoveAll?: boolean;
  /**
   * Keep the oldest snapshot of a group while a rule still has counts left (restic 0.16+, the
   * default). false plans as restic 0.14/0.15, which did not.
   */
  keepOldest?: boolean;
}

/** forget without any keep rule: restic refuses ("no policy was specified"). */
export class EmptyRetentionPolicyError extends InvalidInputError {
  constructor() {
    super('no retention policy was specified (no keep rule), no snapshots will be removed; removing every snapshot needs allowRemoveAll (--unsafe-allow-remove-all) and a snapshot filter');
  }
}

/** A non-empty policy that would remove every snapshot of a group: restic refuses this too. */
export class RemoveAllRefusedError extends InvalidInputError {
  /** The group that would be emptied. */
  readonly group: SnapshotGroupKey;
  constructor(group: SnapshotGroupKey) {
    super(`refusing to delete the last snapshot of snapshot group ${describeGroupKey(group)}: the policy keeps none of them`);
    this.group = group;
  }
}

// ---------------------------------------------------------------------------------------------
// Durations

const ZERO_DURATION: RetentionDuration = Object.freeze({ years: 0, months: 0, days: 0, hours: 0 });

/**
 * Parses restic's retention duration: numbers each followed by y, m, d or h ("1y5m7d2h", "36h").
 * Surrounding whitespace is ignored and '' is the zero duration. As in restic, a repeated unit
 * replaces the earlier value and a number may be negative (forget then refuses it).
 */
export function parseRetentionDuration(input: string): RetentionDuration {
  const d = { years: 0, months: 0, days: 0, hours: 0 };
  const bad = (why: string) => new InvalidInputError(`invalid duration ${JSON.stringify(input)}: ${why}`);
  let s = input.trim();
  while (s !== '') {
    const m = /^(-?)(\d*)/.exec(s)!;
    if (m[2] === '') throw bad('no number found');
    const num = Number(m[1] + m[2]);
    if (!Number.isSafeInteger(num)) throw bad(`number ${m[1]}${m[2]} is too large`);
    s = s.slice(m[0].length);
    if (s === '') throw bad(`no unit found after number ${num}`);
    const unit = s[0];
    if (unit === 'y') d.years = num;
    else if (unit === 'm') d.months = num;
    else if (unit === 'd') d.days = num;
    else if (unit === 'h') d.hours = num;
    else throw bad(`invalid unit ${JSON.stringify(String.fromCodePoint(s.codePointAt(0)!))} found after number ${num}`);
    s = s.slice(1);
  }
  return d;
}

/** restic's spelling of a duration ("1y2m", zero parts left out). */
export function formatRetentionDuration(d: RetentionDuration): string {
  return (d.years ? `${d.years}y` : '') + (d.months ? `${d.months}m` : '') + (d.days ? `${d.days}d` : '') + (d.hours ? `${d.hours}h` : '');
}

function isZeroDuration(d: RetentionDuration): boolean {
  return d.years === 0 && d.months === 0 && d.days === 0 && d.hours === 0;
}

// ---------------------------------------------------------------------------------------------
// Policies

const COUNT_FIELDS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
const WITHIN_FIELDS = ['within', 'withinHourly', 'withinDaily', 'withinWeekly', 'withinMonthly', 'withinYearly'] as const;

/** Checks a policy and fills in every field. Throws InvalidInputError naming the bad field. */
export function normalizeRetentionPolicy(policy: RetentionPolicy): NormalizedRetentionPolicy {
  if (policy === null || typeof policy !== 'object') throw new InvalidInputError('retention policy must be an object');
  const out = { tags: [] } as unknown as NormalizedRetentionPolicy;
  for (const f of COUNT_FIELDS) {
    const v = policy[f] ?? 0;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) {
      throw new InvalidInputError(`retention policy ${f} must be a whole number ≥ 0, or -1 for unlimited (got ${JSON.stringify(v)})`);
    }
    out[f] = v;
  }
  for (const f of WITHIN_FIELDS) {
    const v = policy[f];
    let d: RetentionDuration;
    if (v === undefined) d = { ...ZERO_DURATION };
    else if (typeof v === 'string') d = parseRetentionDuration(v);
    else if (v !== null && typeof v === 'object') d = { years: v.years ?? 0, months: v.months ?? 0, days: v.days ?? 0, hours: v.hours ?? 0 };
    else throw new InvalidInputError(`retention policy ${f} must be a duration such as "1y5m7d2h"`);
    for (const part of ['years', 'months', 'days', 'hours'] as const) {
      if (!Number.isSafeInteger(d[part]) || d[part] < 0) {
        throw new InvalidInputError(`retention policy ${f} must not have negative or fractional ${part} (got ${JSON.stringify(d[part])})`);
      }
    }
    out[f] = d;
  }
  const tags = policy.tags ?? [];
  if (!Array.isArray(tags) || tags.some((l) => !Array.isArray(l) || l.some((t) => typeof t !== 'string'))) {
    throw new InvalidInputError('retention policy tags must be a list of tag lists (string[][])');
  }
  out.tags = tags.map((l) => [...l]);
  return out;
}

/** True when the policy has no keep rule at all. */
export function isEmptyRetentionPolicy(policy: RetentionPolicy | NormalizedRetentionPolicy): boolean {
  const p = normalizeRetentionPolicy(policy);
  return p.tags.length === 0 && COUNT_FIELDS.every((f) => p[f] === 0) && WITHIN_FIELDS.every((f) => isZeroDuration(p[f]));
}

/** restic's "Applying Policy" text, e.g. "keep 7 daily snapshots, all snapshots within 1y of the newest". */
export function describeRetentionPolicy(policy: RetentionPolicy): string {
  const p = normalizeRetentionPolicy(policy);
  const names = { last: 'latest', hourly: 'hourly', daily: 'daily', weekly: 'weekly', monthly: 'monthly', yearly: 'yearly' };
  const counts = COUNT_FIELDS.filter((f) => p[f] !== 0).map((f) => (p[f] === -1 ? `all ${names[f]}` : `${p[f]} ${names[f]}`));
  const withins = (['withinHourly', 'withinDaily', 'withinWeekly', 'withinMonthly', 'withinYearly'] as const)
    .filter((f) => !isZeroDuration(p[f]))
    .map((f) => `${f.slice(6).toLowerCase()} snapshots within ${formatRetentionDuration(p[f])}`);
  let s = counts.length ? `${counts.join(', ')} snapshots` : '';
  if (withins.length) s += (s ? ', ' : '') + withins.join(', ');
  if (p.tags.length) s += (s ? ' and ' : '') + `all snapshots with tags [${p.tags.map(formatTagList).join(' ')}]`;
  if (!isZeroDuration(p.within)) s += (s ? ' and ' : '') + `all snapshots within ${formatRetentionDuration(p.within)} of the newest`;
  return s ? `keep ${s}` : 'remove';
}

/** Go's %v of a restic TagList: "[a, b]". */
function formatTagList(l: readonly string[]): string {
  return `[${l.join(', ')}]`;
}

/** restic's SnapshotGroupKey.String(): "host h1, path [/a /b], tags [x]". */
export function describeGroupKey(key: SnapshotGroupKey): string {
  const parts: string[] = [];
  if (key.hostname) parts.push(`host ${key.hostname}`);
  if (key.paths?.length) parts.push(`path [${key.paths.join(' ')}]`);
  if (key.tags?.length) parts.push(`tags [${key.tags.join(' ')}]`);
  return `"${parts.join(', ')}"`;
}

/**
 * Maps Stash's RetentionPolicy (keepLast … keepYearly, keepTags, prune, dryRun) to a policy.
 * Each keepTags entry is one tag list, "a,b" meaning both tags, as restic's --keep-tag.
 */
export function stashRetentionPolicy(obj: {
  name?: string;
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepTags?: string[];
  prune?: boolean;
  dryRun?: boolean;
}): { policy: RetentionPolicy; prune: boolean; dryRun: boolean } {
  if (obj === null || typeof obj !== 'object') throw new InvalidInputError('Stash retention policy must be an object');
  const policy: RetentionPolicy = {};
  const counts = [['keepLast', 'last'], ['keepHourly', 'hourly'], ['keepDaily', 'daily'], ['keepWeekly', 'weekly'], ['keepMonthly', 'monthly'], ['keepYearly', 'yearly']] as const;
  for (const [from, to] of counts) {
    const v = obj[from];
    if (v === undefined || v === null || v === 0) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) {
      throw new InvalidInputError(`Stash retention policy ${from} must be a whole number ≥ 0, or -1 for unlimited (got ${JSON.stringify(v)})`);
    }
    policy[to] = v;
  }
  if (obj.keepTags != null) {
    if (!Array.isArray(obj.keepTags) || obj.keepTags.some((t) => typeof t !== 'string')) {
      throw new InvalidInputError('Stash retention policy keepTags must be a list of strings');
    }
    if (obj.keepTags.length) policy.tags = obj.keepTags.map(splitTagList);
  }
  return { policy, prune: obj.prune === true, dryRun: obj.dryRun === true };
}

/** restic's tag list from one flag value: split at commas, whitespace trimmed, empty tags kept. */
export function splitTagList(s: string): string[] {
  return s.split(',').map((t) => t.trim());
}

// ---------------------------------------------------------------------------------------------
// Planning

const NS_PER_MS = 1_000_000n;
const NS_PER_MINUTE = 60_000_000_000n;
const NS_PER_HOUR = 3_600_000_000_000n;
const NS_PER_DAY = 86_400_000_000_000n;
const MS_PER_DAY = 86_400_000;

type Bucker = (w: WallClock, nr: number) => number;

// The bucket functions of restic's policy: equal values share a bucket.
const always: Bucker = (_w, nr) => nr;
const ymdh: Bucker = (w) => w.year * 1_000_000 + w.month * 10_000 + w.day * 100 + w.hour;
const ymd: Bucker = (w) => w.year * 10_000 + w.month * 100 + w.day;
const yw: Bucker = (w) => w.isoYear * 100 + w.isoWeek;
const ym: Bucker = (w) => w.year * 100 + w.month;
const y: Bucker = (w) => w.year;

/**
 * Plans a forget: groups the snapshots, then applies the policy to each group as restic does.
 * Groups come in the order their first snapshot appears in `snapshots`. Snapshots with equal
 * times keep their order in `snapshots` (restic's order for those depends on load order).
 * Throws EmptyRetentionPolicyError for an empty policy (unless allowRemoveAll) and
 * RemoveAllRefusedError when a non-empty policy keeps nothing of a group.
 */
export function planRetention(snapshots: readonly SnapshotEntry[], policy: RetentionPolicy, options: PlanRetentionOptions = {}): ForgetPlan {
  const p = normalizeRetentionPolicy(policy);
  const empty = isEmptyRetentionPolicy(p);
  if (empty && !options.allowRemoveAll) throw new EmptyRetentionPolicyError();
  const nowNs = BigInt((options.now ?? new Date()).getTime()) * NS_PER_MS;
  const plan: ForgetPlan = { groups: [], keep: [], remove: [] };
  for (const g of groupSnapshots(snapshots, options.groupBy ?? { host: true, paths: true })) {
    const group = applyPolicy(g.snapshots, p, nowNs, g.key, options.keepOldest !== false);
    if (!empty && group.keep.length === 0) throw new RemoveAllRefusedError(g.key);
    plan.groups.push(group);
    plan.keep.push(...group.keep.map((k) => k.id));
    plan.remove.push(...group.remove.map((r) => r.id));
  }
  return plan;
}

/** restic's ApplyPolicy on one group. */
function applyPolicy(list: readonly SnapshotEntry[], p: NormalizedRetentionPolicy, nowNs: bigint, key: SnapshotGroupKey, keepOldest: boolean): RetentionGroup {
  // Newest first; Array.prototype.sort is stable, like Go's sort.Stable.
  const sorted = [...list].sort((a, b) => compareGoTime(b.snapshot.time, a.snapshot.time));
  const group: RetentionGroup = { key, keep: [], remove: [] };
  if (sorted.length === 0) return group;

  const buckets: { count: number; bucker: Bucker; last: number; reason: string }[] = [
    { count: p.last, bucker: always, last: -1, reason: 'last snapshot' },
    { count: p.hourly, bucker: ymdh, last: -1, reason: 'hourly snapshot' },
    { count: p.daily, bucker: ymd, last: -1, reason: 'daily snapshot' },
    { count: p.weekly, bucker: yw, last: -1, reason: 'weekly snapshot' },
    { count: p.monthly, bucker: ym, last: -1, reason: 'monthly snapshot' },
    { count: p.yearly, bucker: y, last: -1, reason: 'yearly snapshot' },
  ];
  const bucketsWithin: { within: RetentionDuration; bucker: Bucker; last: number; reason: string }[] = [
    { within: p.withinHourly, bucker: ymdh, last: -1, reason: 'hourly within' },
    { within: p.withinDaily, bucker: ymd, last: -1, reason: 'daily within' },
    { within: p.withinWeekly, bucker: yw, last: -1, reason: 'weekly within' },
    { within: p.withinMonthly, bucker: ym, last: -1, reason: 'monthly within' },
    { within: p.withinYearly, bucker: y, last: -1, reason: 'yearly within' },
  ];

  // keep-within counts back from the group's newest snapshot that is not in the future.
  const latest = latestTimestamp(sorted, nowNs);
  const thresholdOf = (d: RetentionDuration) => (isZeroDuration(d) ? 0n : subtractDuration(latest, d));
  const withinThreshold = thresholdOf(p.within);
  const bucketThresholds = bucketsWithin.map((b) => thresholdOf(b.within));
  // With keepOldest off no position is "the oldest".
  const oldest = keepOldest ? sorted.length - 1 : -1;

  sorted.forEach((cur, nr) => {
    const matches: string[] = [];
    const time = cur.snapshot.time;
    const wall = wallClock(time);

    // Tags are not counted.
    for (const l of p.tags) {
      if (snapshotMatches(cur.snapshot, { tags: [l] })) matches.push(`has tags ${formatTagList(l)}`);
    }

    if (!isZeroDuration(p.within) && time.epochNs > withinThreshold) matches.push(`within ${formatRetentionDuration(p.within)}`);

    for (const b of buckets) {
      if (b.count === 0) continue;
      const val = b.bucker(wall, nr);
      // The oldest snapshot is kept while a rule has counts left: that keeps the longest history.
      if (val !== b.last || nr === oldest) {
        matches.push(val === b.last ? `oldest ${b.reason}` : b.reason);
        b.last = val;
        if (b.count > 0) b.count--;
      }
    }

    bucketsWithin.forEach((b, i) => {
      if (isZeroDuration(b.within) || !(time.epochNs > bucketThresholds[i]!)) return;
      const val = b.bucker(wall, nr);
      if (val !== b.last || nr === oldest) {
        matches.push(`${val === b.last ? 'oldest ' : ''}${b.reason} ${formatRetentionDuration(b.within)}`);
        b.last = val;
      }
    });

    const planned: PlannedSnapshot = { id: cur.id, time };
    if (matches.length === 0) {
      group.remove.push(planned);
      return;
    }
    const counters: RetentionCounters = {};
    COUNT_FIELDS.forEach((f, i) => {
      if (buckets[i]!.count !== 0) counters[f] = buckets[i]!.count;
    });
    group.keep.push({ ...planned, matches, counters });
  });
  return group;
}

/** The newest snapshot time strictly before now; Go's zero time when there is none. */
function latestTimestamp(list: readonly SnapshotEntry[], nowNs: bigint): GoTime {
  let latest = ZERO_GO_TIME;
  for (const { snapshot } of list) {
    if (snapshot.time.epochNs > latest.epochNs && snapshot.time.epochNs < nowNs) latest = snapshot.time;
  }
  return latest;
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  isoYear: number;
  isoWeek: number;
}

/** The calendar fields of a time in its own zone, which is what restic's Go time values use. */
function wallClock(t: GoTime): WallClock {
  const wallNs = t.epochNs + BigInt(t.offsetMinutes) * NS_PER_MINUTE;
  const days = floorDiv(wallNs, NS_PER_DAY);
  const date = new Date(Number(days) * MS_PER_DAY);
  const hour = Number((wallNs - days * NS_PER_DAY) / NS_PER_HOUR);
  // ISO 8601 week: the week (Monday to Sunday) belongs to the year its Thursday is in.
  const isoDow = date.getUTCDay() === 0 ? 7 : date.getUTCDay();
  const thursday = new Date((Number(days) + 4 - isoDow) * MS_PER_DAY);
  const isoYear = thursday.getUTCFullYear();
  const jan1 = new Date(0);
  jan1.setUTCFullYear(isoYear, 0, 1);
  const isoWeek = Math.floor((thursday.getTime() - jan1.getTime()) / MS_PER_DAY / 7) + 1;
  return { year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate(), hour, isoYear, isoWeek };
}

/**
 * Go's t.AddDate(-years, -months, -days).Add(-hours) as an instant. The calendar step happens on
 * the wall clock of t's zone; a time whose offset is the local zone's is in Go's Local location,
 * so the result takes the local offset in force at the new date (across DST changes), as Go's
 * time.Date resolves it. Other offsets are fixed zones ('Z' is UTC).
 */
function subtractDuration(t: GoTime, d: RetentionDuration): bigint {
  const offsetNs = BigInt(t.offsetMinutes) * NS_PER_MINUTE;
  const wallNs = t.epochNs + offsetNs;
  const days = floorDiv(wallNs, NS_PER_DAY);
  const nsOfDay = wallNs - days * NS_PER_DAY;
  const date = new Date(Number(days) * MS_PER_DAY);
  // Date.setUTCFullYear normalises month and day overflow the way Go's time.Date does.
  const moved = new Date(0);
  moved.setUTCFullYear(date.getUTCFullYear() - d.years, date.getUTCMonth() - d.months, date.getUTCDate() - d.days);
  const newWallNs = BigInt(Math.round(moved.getTime() / MS_PER_DAY)) * NS_PER_DAY + nsOfDay;
  const isLocal = t.offsetMinutes !== 0 && t.offsetMinutes === localOffsetMinutes(t.epochNs);
  let instant = newWallNs - offsetNs;
  if (isLocal) {
    // Go: guess the zone from the wall time read as UTC, then correct if the result lies in
    // another zone period.
    let off = BigInt(localOffsetMinutes(newWallNs)) * NS_PER_MINUTE;
    const utc = newWallNs - off;
    const offAtUtc = BigInt(localOffsetMinutes(utc)) * NS_PER_MINUTE;
    if (offAtUtc !== off) off = offAtUtc;
    instant = newWallNs - off;
  }
  return instant - BigInt(d.hours) * NS_PER_HOUR;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && (a < 0n) !== (b < 0n) ? q - 1n : q;
}

// ---- keep horizons (retention that follows the policy) --------------------------------------------

/** Options of {@link keepHorizon}. */
export interface KeepHorizonOptions {
  /**
   * How far apart backups are assumed for keep-last, in ms (default one day): a snapshot kept as one
   * of the last N is assumed kept N intervals past its time.
   */
  lastIntervalMs?: number;
}

const MS_PER_HOUR = 3_600_000;

/**
 * Until when `policy` may still keep a snapshot it keeps now (the latest instant over the rules
 * that keep it), assuming backups go on at least once per bucket of each rule:
 *   - keep-hourly/daily/weekly/monthly/yearly N: a snapshot kept for its bucket b (hour, day, ISO
 *     week from Monday, month, year, on the wall clock of the snapshot's own offset) is dropped once
 *     a snapshot lands in bucket b+N, at the latest when bucket b+N ends: that end is the horizon;
 *   - keep-last N: the snapshot's time + N × `lastIntervalMs`;
 *   - keep-within D and keep-within-<bucket> D: the snapshot's time + D (a calendar step on its
 *     wall clock, fixed offset).
 * Rules that keep a snapshot with no end (keep-tag, an 'unlimited' count) throw InvalidInputError:
 * a retain-until date needs an end. Pure: the caller gets `kept` from {@link planRetention}.
 */
export function keepHorizon(kept: KeptSnapshot, policy: RetentionPolicy, options: KeepHorizonOptions = {}): Date {
  const p = normalizeRetentionPolicy(policy);
  const interval = options.lastIntervalMs ?? MS_PER_DAY;
  if (!(Number.isFinite(interval) && interval > 0)) throw new InvalidInputError('lastIntervalMs must be a positive number');
  const epochMs = Number(kept.time.epochNs / NS_PER_MS);
  const offsetMs = kept.time.offsetMinutes * 60_000;
  const wallMs = epochMs + offsetMs;
  const dayStart = Math.floor(wallMs / MS_PER_DAY) * MS_PER_DAY;
  const forever = (reason: string): never => {
    throw new InvalidInputError(
      `snapshot ${kept.id.slice(0, 8)} is kept by "${reason}", which has no end; a retain-until date needs one (leave keep-tag and 'unlimited' counts out of this policy)`,
    );
  };
  const bucketEnd = (unit: 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly', n: number, reason: string): number => {
    if (n < 0) forever(reason);
    const d = new Date(dayStart);
    let wallEnd: number;
    switch (unit) {
      case 'hourly':
        wallEnd = Math.floor(wallMs / MS_PER_HOUR) * MS_PER_HOUR + (n + 1) * MS_PER_HOUR;
        break;
      case 'daily':
        wallEnd = dayStart + (n + 1) * MS_PER_DAY;
        break;
      case 'weekly': {
        const isoDow = d.getUTCDay() === 0 ? 7 : d.getUTCDay();
        wallEnd = dayStart - (isoDow - 1) * MS_PER_DAY + (n + 1) * 7 * MS_PER_DAY;
        break;
      }
      case 'monthly':
        wallEnd = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + n + 1, 1);
        break;
      case 'yearly':
        wallEnd = Date.UTC(d.getUTCFullYear() + n + 1, 0, 1);
        break;
    }
    return wallEnd - offsetMs;
  };
  const plus = (dur: RetentionDuration): number => {
    const d = new Date(dayStart);
    const moved = Date.UTC(d.getUTCFullYear() + dur.years, d.getUTCMonth() + dur.months, d.getUTCDate() + dur.days);
    return moved + (wallMs - dayStart) + dur.hours * MS_PER_HOUR - offsetMs;
  };
  let horizon = -Infinity;
  for (const match of kept.matches) {
    const reason = match.startsWith('oldest ') ? match.slice('oldest '.length) : match;
    let h: number;
    if (reason.startsWith('has tags')) h = forever(reason);
    else if (reason === 'last snapshot') h = p.last < 0 ? forever(reason) : epochMs + p.last * interval;
    else if (reason === 'hourly snapshot') h = bucketEnd('hourly', p.hourly, reason);
    else if (reason === 'daily snapshot') h = bucketEnd('daily', p.daily, reason);
    else if (reason === 'weekly snapshot') h = bucketEnd('weekly', p.weekly, reason);
    else if (reason === 'monthly snapshot') h = bucketEnd('monthly', p.monthly, reason);
    else if (reason === 'yearly snapshot') h = bucketEnd('yearly', p.yearly, reason);
    else if (reason.startsWith('within ')) h = plus(p.within);
    else if (reason.startsWith('hourly within ')) h = plus(p.withinHourly);
    else if (reason.startsWith('daily within ')) h = plus(p.withinDaily);
    else if (reason.startsWith('weekly within ')) h = plus(p.withinWeekly);
    else if (reason.startsWith('monthly within ')) h = plus(p.withinMonthly);
    else if (reason.startsWith('yearly within ')) h = plus(p.withinYearly);
    else throw new InvalidInputError(`snapshot ${kept.id.slice(0, 8)}: unknown keep reason ${JSON.stringify(match)}`);
    horizon = Math.max(horizon, h);
  }
  if (horizon === -Infinity) throw new InvalidInputError(`snapshot ${kept.id.slice(0, 8)} is kept by no rule`);
  return new Date(horizon);
}
