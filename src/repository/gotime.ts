// Go's time.Time as restic writes it in JSON (snapshots, nodes, locks, key files): RFC 3339 with
// up to nine fraction digits (trailing zeros dropped) and the zone offset the time was taken in.
// A JS Date holds only milliseconds and no offset, so times are kept as nanoseconds since the Unix
// epoch plus the offset in minutes; that round-trips every timestamp restic writes byte for byte.
import { InvalidInputError } from '../errors.ts';

/**
 * A Go time.Time as restic writes it: the exact instant in nanoseconds and the zone offset it was
 * written in. Every GoTime the library makes or returns is an immutable (frozen) value whose
 * `toJSON()`, `toString()` and Node's `util.inspect` all give the RFC 3339 string restic writes
 * for it ({@link formatGoTime}), so `JSON.stringify(result)` and `${snapshot.time}` print
 * e.g. "2024-01-02T03:04:05.123456789+01:00" with no digit lost. Make one with
 * {@link parseGoTime}, {@link goTimeFromNs} or {@link goTimeFromDate}; a plain object literal is
 * not a GoTime (it would not print or serialise as one).
 */
export interface GoTime {
  /** Nanoseconds since 1970-01-01T00:00:00Z (the instant; the offset does not change it). */
  readonly epochNs: bigint;
  /** Offset of the zone the time is written in, east of UTC, in minutes (-1439..1439). */
  readonly offsetMinutes: number;
  /**
   * The RFC 3339 string restic writes (formatGoTime), which JSON.stringify writes in quotes. A
   * year outside 0..9999, which restic cannot write, comes out in ISO 8601's expanded form
   * (±YYYYYY-…) instead of throwing.
   */
  toJSON(): string;
  /** The same string as toJSON(). */
  toString(): string;
}

const INSPECT = Symbol.for('nodejs.util.inspect.custom');

// The one class behind every GoTime: all constructors below go through makeGoTime.
class GoTimeValue implements GoTime {
  readonly epochNs: bigint;
  readonly offsetMinutes: number;
  constructor(epochNs: bigint, offsetMinutes: number) {
    this.epochNs = epochNs;
    this.offsetMinutes = offsetMinutes + 0; // + 0 turns -0 into 0
    Object.freeze(this);
  }
  toJSON(): string {
    return formatTime(this, true);
  }
  toString(): string {
    return formatTime(this, true);
  }
  [INSPECT](): string {
    return formatTime(this, true);
  }
}

function makeGoTime(epochNs: bigint, offsetMinutes: number): GoTime {
  return new GoTimeValue(epochNs, offsetMinutes);
}

/** Whether v is a GoTime made by this module (and so prints and serialises as RFC 3339). */
export function isGoTime(v: unknown): v is GoTime {
  return v instanceof GoTimeValue;
}

/**
 * t itself when it is a GoTime value, else the same instant and offset as one (for times handed
 * in by callers, which may be plain `{ epochNs, offsetMinutes }` objects). Checks the fields.
 */
export function toGoTime(t: Pick<GoTime, 'epochNs' | 'offsetMinutes'>): GoTime {
  if (t instanceof GoTimeValue) return t;
  if (typeof t?.epochNs !== 'bigint') throw new InvalidInputError('a time must have a bigint epochNs');
  return goTimeFromNs(t.epochNs, t.offsetMinutes);
}

const NS_PER_SECOND = 1_000_000_000n;
const NS_PER_MINUTE = 60n * NS_PER_SECOND;
const NS_PER_DAY = 86_400n * NS_PER_SECOND;
const NS_PER_MS = 1_000_000n;

/** Largest offset RFC 3339 (and Go's strict parser) allows: ±23:59. */
const MAX_OFFSET_MINUTES = 23 * 60 + 59;

/** Go's zero time.Time, which restic writes for unset times: 0001-01-01T00:00:00Z. */
export const ZERO_GO_TIME: GoTime = makeGoTime(-62_135_596_800n * NS_PER_SECOND, 0);

export function isZeroGoTime(t: GoTime): boolean {
  return t.epochNs === ZERO_GO_TIME.epochNs;
}

/**
 * The GoTime for an instant in nanoseconds since the Unix epoch, written in the given zone offset
 * (minutes east of UTC; default: the local zone at that instant). Throws InvalidInputError for an
 * offset that is not a whole number of minutes within ±23:59.
 */
export function goTimeFromNs(epochNs: bigint, offsetMinutes: number = localOffsetMinutes(epochNs)): GoTime {
  if (typeof epochNs !== 'bigint') throw new InvalidInputError('epochNs must be a bigint');
  checkOffset(offsetMinutes);
  return makeGoTime(epochNs, offsetMinutes);
}

/** A Date as a GoTime, written in the given offset (default: the local zone at that instant). */
export function goTimeFromDate(date: Date, offsetMinutes?: number): GoTime {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new InvalidInputError('invalid Date (NaN) cannot be a timestamp');
  const epochNs = BigInt(ms) * NS_PER_MS;
  return goTimeFromNs(epochNs, offsetMinutes ?? localOffsetMinutes(epochNs));
}

/** The instant as a Date (sub-millisecond digits are dropped, rounding toward the past). */
export function goTimeToDate(t: GoTime): Date {
  return new Date(Number(floorDiv(t.epochNs, NS_PER_MS)));
}

/** Orders by instant, as Go's Before/After/Equal do; the offset plays no part. */
export function compareGoTime(a: GoTime, b: GoTime): -1 | 0 | 1 {
  return a.epochNs < b.epochNs ? -1 : a.epochNs > b.epochNs ? 1 : 0;
}

/**
 * The local zone's offset at the given instant, in whole minutes. Outside the range a Date can
 * hold there is no zone data, so UTC is used.
 */
export function localOffsetMinutes(epochNs: bigint): number {
  const ms = floorDiv(epochNs, NS_PER_MS);
  if (ms > 8_640_000_000_000_000n || ms < -8_640_000_000_000_000n) return 0;
  // getTimezoneOffset is west-positive and can carry seconds for historic local mean times.
  return Math.trunc(-new Date(Number(ms)).getTimezoneOffset()) + 0;
}

// Date.now() has millisecond resolution, so the current time takes its sub-millisecond digits
// from the monotonic clock, anchored to the wall clock and re-anchored whenever the two drift
// apart (clock adjustments, suspend).
let anchorWallNs = BigInt(Date.now()) * NS_PER_MS;
let anchorMonoNs = process.hrtime.bigint();
const MAX_DRIFT_NS = 2n * NS_PER_MS;

/** The current time with nanosecond digits, in the local zone, like Go's time.Now(). */
export function goTimeNow(): GoTime {
  const wallNs = BigInt(Date.now()) * NS_PER_MS;
  let now = anchorWallNs + (process.hrtime.bigint() - anchorMonoNs);
  const drift = now - wallNs;
  if (drift > MAX_DRIFT_NS || drift < -MAX_DRIFT_NS) {
    anchorWallNs = wallNs;
    anchorMonoNs = process.hrtime.bigint();
    now = wallNs;
  }
  return goTimeFromNs(now, localOffsetMinutes(now));
}

/**
 * Formats like Go's time.Time.MarshalJSON (without the quotes): RFC 3339 with up to nine
 * fraction digits, trailing zeros dropped, 'Z' for a zero offset. Years must lie in 0..9999.
 */
export function formatGoTime(t: GoTime): string {
  return formatTime(t, false);
}

function formatTime(t: Pick<GoTime, 'epochNs' | 'offsetMinutes'>, expandedYears: boolean): string {
  checkOffset(t.offsetMinutes);
  const wall = t.epochNs + BigInt(t.offsetMinutes) * NS_PER_MINUTE;
  const days = floorDiv(wall, NS_PER_DAY);
  const nsOfDay = wall - days * NS_PER_DAY;
  const { year, month, day } = civilFromDays(Number(days));
  let y: string;
  if (year >= 0 && year <= 9999) y = pad(year, 4);
  else if (expandedYears) y = (year < 0 ? '-' : '+') + pad(Math.abs(year), 6);
  else throw new InvalidInputError(`time with year ${year} cannot be written (Go JSON allows years 0..9999)`);
  const secOfDay = Number(nsOfDay / NS_PER_SECOND);
  const frac = Number(nsOfDay % NS_PER_SECOND);
  let s = `${y}-${pad(month, 2)}-${pad(day, 2)}T${pad(Math.floor(secOfDay / 3600), 2)}:` +
    `${pad(Math.floor(secOfDay / 60) % 60, 2)}:${pad(secOfDay % 60, 2)}`;
  if (frac !== 0) s += '.' + pad(frac, 9).replace(/0+$/, '');
  if (t.offsetMinutes === 0) return s + 'Z';
  const abs = Math.abs(t.offsetMinutes);
  return `${s}${t.offsetMinutes < 0 ? '-' : '+'}${pad(Math.floor(abs / 60), 2)}:${pad(abs % 60, 2)}`;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))$/;

/**
 * Parses an RFC 3339 time the way Go's time.Time.UnmarshalJSON does: any number of fraction
 * digits (beyond nine they are cut off, not rounded), 'Z' or ±HH:MM, field ranges checked.
 */
export function parseGoTime(s: string): GoTime {
  const m = typeof s === 'string' ? RFC3339.exec(s) : null;
  const bad = (why: string) => new InvalidInputError(`invalid time ${JSON.stringify(s)?.slice(0, 60)}: ${why}`);
  if (!m) throw bad('not an RFC 3339 timestamp');
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12) throw bad('month out of range');
  if (day < 1 || day > daysInMonth(year, month)) throw bad('day out of range');
  if (hour > 23) throw bad('hour out of range');
  if (minute > 59) throw bad('minute out of range');
  if (second > 59) throw bad('second out of range');
  const frac = m[7] === undefined ? 0n : BigInt(m[7].slice(0, 9).padEnd(9, '0'));
  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const oh = Number(m[10]), om = Number(m[11]);
    if (oh > 23) throw bad('zone offset hour out of range');
    if (om > 59) throw bad('zone offset minute out of range');
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om) + 0;
  }
  const wallSeconds = BigInt(daysFromCivil(year, month, day)) * 86_400n + BigInt(hour * 3600 + minute * 60 + second);
  const epochNs = wallSeconds * NS_PER_SECOND + frac - BigInt(offsetMinutes) * NS_PER_MINUTE;
  return makeGoTime(epochNs, offsetMinutes);
}

/**
 * restic's FixTime for node times: a year below 0 becomes 0 and a year above 9999 becomes 9999,
 * counted in the time's own zone, everything else kept (so 29 February of a leap year moved to
 * 9999 becomes 1 March, as Go's AddDate normalises it).
 */
export function clampGoTimeYear(t: GoTime): GoTime {
  const offsetNs = BigInt(t.offsetMinutes) * NS_PER_MINUTE;
  const wall = t.epochNs + offsetNs;
  const days = floorDiv(wall, NS_PER_DAY);
  const { year, month, day } = civilFromDays(Number(days));
  if (year >= 0 && year <= 9999) return t;
  const target = year < 0 ? 0 : 9999;
  // Day overflow carries into the next month, as in Go's time.Date.
  const newDays = daysFromCivil(target, month, 1) + (day - 1);
  const newWall = BigInt(newDays) * NS_PER_DAY + (wall - days * NS_PER_DAY);
  return makeGoTime(newWall - offsetNs, t.offsetMinutes);
}

function checkOffset(offsetMinutes: number): void {
  if (!Number.isInteger(offsetMinutes) || Math.abs(offsetMinutes) > MAX_OFFSET_MINUTES) {
    throw new InvalidInputError(`zone offset ${offsetMinutes} minutes is outside ±23:59`);
  }
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && (a < 0n) !== (b < 0n) ? q - 1n : q;
}

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

function daysInMonth(year: number, month: number): number {
  return month === 2 ? (isLeap(year) ? 29 : 28) : [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
}

// Proleptic Gregorian calendar <-> days since 1970-01-01 (Howard Hinnant's algorithms), valid
// for every year including 0 and negative ones, which Go's calendar also uses.
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

/**
 * Go's time.Time.String() for a time read from JSON: "2006-01-02 15:04:05.999999999 -0700 MST".
 * A zero offset prints as UTC; other offsets repeat the offset where Go would print a zone name
 * it does not know.
 */
export function goTimeString(t: GoTime): string {
  const rfc = formatGoTime(t); // 2006-01-02T15:04:05.999999999Z07:00
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:\d{2})$/.exec(rfc);
  if (!m) return rfc;
  const zone = m[3] === 'Z' ? '+0000 UTC' : `${m[3]!.replace(':', '')} ${m[3]!.replace(':', '')}`;
  return `${m[1]} ${m[2]} ${zone}`;
}
