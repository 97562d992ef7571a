import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { InvalidInputError } from '../../src/errors.ts';
import type { GoTime } from '../../src/repository/gotime.ts';
import {
  ZERO_GO_TIME, clampGoTimeYear, compareGoTime, formatGoTime, goTimeFromDate, goTimeFromNs, goTimeNow,
  goTimeToDate, isGoTime, isZeroGoTime, localOffsetMinutes, parseGoTime, toGoTime,
} from '../../src/repository/gotime.ts';

const NS = 1_000_000_000n;

test('times restic wrote round-trip byte for byte', () => {
  for (const s of [
    '2026-11-26T07:08:56.139914287Z',
    '2024-01-02T03:04:05.5+01:00',
    '2015-06-27T12:18:51.759239612+02:00',
    '2022-08-25T07:08:54.94855444Z',
    '2023-03-04T05:06:07-03:30',
    '2023-03-04T05:06:07.000000001+14:00',
    '0000-01-01T00:00:00Z',
    '9999-12-31T23:59:59.999999999Z',
    '2020-02-29T12:00:00+05:45',
  ]) {
    assert.equal(formatGoTime(parseGoTime(s)), s);
  }
});

test('the zero time is 0001-01-01T00:00:00Z and round-trips', () => {
  assert.equal(formatGoTime(ZERO_GO_TIME), '0001-01-01T00:00:00Z');
  const parsed = parseGoTime('0001-01-01T00:00:00Z');
  assert.deepEqual(parsed, ZERO_GO_TIME);
  assert.ok(isZeroGoTime(parsed));
  // The same instant written in another zone is still Go's zero time.
  assert.ok(isZeroGoTime(parseGoTime('0001-01-01T01:00:00+01:00')));
  assert.ok(!isZeroGoTime(parseGoTime('0001-01-01T00:00:00.000000001Z')));
});

test('fraction: trailing zeros dropped, no dot for whole seconds', () => {
  assert.equal(formatGoTime(goTimeFromNs(120_000_000n, 0)), '1970-01-01T00:00:00.12Z');
  assert.equal(formatGoTime(goTimeFromNs(5n * NS, 0)), '1970-01-01T00:00:05Z');
  assert.equal(formatGoTime(goTimeFromNs(1n, 0)), '1970-01-01T00:00:00.000000001Z');
  assert.equal(formatGoTime(parseGoTime('2020-01-01T00:00:00.500000000Z')), '2020-01-01T00:00:00.5Z');
});

test('parsing accepts any fraction length, cutting digits beyond nanoseconds', () => {
  assert.equal(parseGoTime('1970-01-01T00:00:00.1Z').epochNs, 100_000_000n);
  assert.equal(parseGoTime('1970-01-01T00:00:00.1234567899Z').epochNs, 123_456_789n);
  assert.equal(parseGoTime('1970-01-01T00:00:00.999999999999999Z').epochNs, 999_999_999n);
});

test('offsets: the wall clock is written in the zone, the instant stays the same', () => {
  const t = goTimeFromNs(0n, 60);
  assert.equal(formatGoTime(t), '1970-01-01T01:00:00+01:00');
  assert.equal(formatGoTime(goTimeFromNs(0n, -210)), '1969-12-31T20:30:00-03:30');
  const a = parseGoTime('2024-01-02T03:04:05.5+01:00');
  const b = parseGoTime('2024-01-02T02:04:05.5Z');
  assert.equal(a.offsetMinutes, 60);
  assert.equal(a.epochNs, b.epochNs);
  assert.equal(compareGoTime(a, b), 0);
  // +00:00 and -00:00 mean UTC, which Go writes as Z.
  assert.equal(formatGoTime(parseGoTime('2024-01-02T03:04:05+00:00')), '2024-01-02T03:04:05Z');
  const negZero = parseGoTime('2024-01-02T03:04:05-00:00');
  assert.ok(Object.is(negZero.offsetMinutes, 0));
  assert.equal(formatGoTime(negZero), '2024-01-02T03:04:05Z');
});

test('times before the epoch', () => {
  assert.equal(formatGoTime(goTimeFromNs(-1n, 0)), '1969-12-31T23:59:59.999999999Z');
  assert.equal(parseGoTime('1969-12-31T23:59:59.999999999Z').epochNs, -1n);
  assert.equal(goTimeToDate(goTimeFromNs(-1n, 0)).getTime(), -1);
  assert.equal(goTimeToDate(goTimeFromNs(1_999_999n, 0)).getTime(), 1);
});

test('formatting agrees with Date.toISOString over years 0..9999', () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const min = new Date('0000-01-01T00:00:00Z').getTime();
  const max = new Date('9999-12-31T23:59:59.999Z').getTime();
  for (let i = 0; i < 2000; i++) {
    const ms = Math.floor(min + rand() * (max - min));
    const d = new Date(ms);
    const iso = d.toISOString().replace(/\.000Z$/, 'Z').replace(/(\.\d*?)0+Z$/, '$1Z');
    const t = goTimeFromDate(d, 0);
    assert.equal(formatGoTime(t), iso);
    assert.equal(parseGoTime(iso).epochNs, BigInt(ms) * 1_000_000n);
    assert.equal(goTimeToDate(t).getTime(), ms);
  }
});

test('parsing rejects what Go rejects, naming the string', () => {
  for (const s of [
    '2021-02-29T00:00:00Z', // not a leap year
    '1900-02-29T00:00:00Z', // century, not a leap year
    '2020-13-01T00:00:00Z',
    '2020-00-01T00:00:00Z',
    '2020-04-31T00:00:00Z',
    '2020-01-01T24:00:00Z',
    '2020-01-01T00:60:00Z',
    '2020-01-01T00:00:60Z',
    '2020-01-01T00:00:00+24:00',
    '2020-01-01T00:00:00+01:60',
    '2020-01-01T00:00:00',
    '2020-01-01t00:00:00Z',
    '2020-01-01T00:00:00z',
    '2020-01-01T00:00:00.Z',
    '2020-01-01T00:00:00,5Z',
    '2020-01-01 00:00:00Z',
    '20-01-01T00:00:00Z',
    '+2020-01-01T00:00:00Z',
    '2020-01-01T0:00:00Z',
    '2020-01-01T00:00:00+0100',
    '',
  ]) {
    assert.throws(() => parseGoTime(s), (e: unknown) => {
      assert.ok(e instanceof InvalidInputError, s);
      assert.ok(e.message.includes(JSON.stringify(s)), e.message);
      return true;
    });
  }
  assert.ok(parseGoTime('2000-02-29T00:00:00Z'));
  assert.throws(() => parseGoTime(42 as unknown as string), InvalidInputError);
});

test('formatting rejects years Go cannot write and bad offsets', () => {
  const year10000 = parseGoTime('9999-12-31T23:59:59Z').epochNs + NS;
  assert.throws(() => formatGoTime(goTimeFromNs(year10000, 0)), /year 10000/);
  assert.throws(() => formatGoTime(goTimeFromNs(parseGoTime('0000-01-01T00:00:00Z').epochNs - 1n, 0)), /year -1/);
  // The same instant is still in range when written in a zone west of UTC.
  assert.equal(formatGoTime(goTimeFromNs(year10000, -60)), '9999-12-31T23:00:00-01:00');
  assert.throws(() => goTimeFromNs(0n, 1440), InvalidInputError);
  assert.throws(() => goTimeFromNs(0n, 1.5), InvalidInputError);
  assert.throws(() => formatGoTime({ epochNs: 0n, offsetMinutes: -1440 } as unknown as GoTime), InvalidInputError);
  assert.throws(() => goTimeFromDate(new Date(NaN)), InvalidInputError);
});

test('clampGoTimeYear moves the year into 0..9999 and keeps the rest', () => {
  const inRange = parseGoTime('2024-05-06T07:08:09.1+02:00');
  assert.equal(clampGoTimeYear(inRange), inRange);
  // Year 12024 → 9999, same month, day, time and zone.
  const future = goTimeFromDate(new Date(Date.UTC(12024, 4, 6, 7, 8, 9, 123)), 0);
  assert.throws(() => formatGoTime(future), /year 12024/);
  assert.equal(formatGoTime(clampGoTimeYear(future)), '9999-05-06T07:08:09.123Z');
  // 29 February of a leap year (12000) becomes 1 March in 9999, as Go's AddDate normalises it.
  const leapDay12000 = goTimeFromDate(new Date(Date.UTC(12000, 1, 29, 9, 0, 0)), 60);
  assert.equal(formatGoTime(clampGoTimeYear(leapDay12000)), '9999-03-01T10:00:00+01:00');
  // Negative years go to year 0 (a leap year, so 29 February survives).
  const past = goTimeFromDate(new Date(Date.UTC(-4, 1, 29, 1, 2, 3)), 0);
  assert.throws(() => formatGoTime(past), /year -4/);
  assert.equal(formatGoTime(clampGoTimeYear(past)), '0000-02-29T01:02:03Z');
  // The year counts in the time's own zone: 10000-01-01T00:30Z written at -01:00 is year 9999.
  const edge = parseGoTime('9999-12-31T23:30:00-01:00');
  assert.equal(clampGoTimeYear(edge), edge);
  // Far outside, as a corrupt stat could give.
  const huge = goTimeFromNs(-(1n << 62n) * 1000n, 0);
  const clamped = formatGoTime(clampGoTimeYear(huge));
  assert.match(clamped, /^0000-/);
});

test('goTimeFromDate keeps the given zone or uses the local one', () => {
  const d = new Date('2024-07-01T12:00:00.250Z');
  assert.equal(formatGoTime(goTimeFromDate(d, 120)), '2024-07-01T14:00:00.25+02:00');
  assert.equal(goTimeFromDate(d).offsetMinutes, -d.getTimezoneOffset() + 0);
  assert.equal(localOffsetMinutes(BigInt(d.getTime()) * 1_000_000n), -d.getTimezoneOffset() + 0);
});

test('compareGoTime orders by instant', () => {
  const a = goTimeFromNs(1n, 0);
  const b = goTimeFromNs(2n, -600);
  assert.equal(compareGoTime(a, b), -1);
  assert.equal(compareGoTime(b, a), 1);
  assert.equal(compareGoTime(a, goTimeFromNs(1n, 300)), 0);
});

test('goTimeNow has nanosecond digits, the local zone and follows the wall clock', () => {
  const samples = [];
  for (let i = 0; i < 20; i++) {
    const before = BigInt(Date.now()) * 1_000_000n;
    const t = goTimeNow();
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    assert.ok(t.epochNs >= before - 3_000_000n && t.epochNs <= after + 3_000_000n, 'close to Date.now()');
    assert.equal(t.offsetMinutes, localOffsetMinutes(t.epochNs));
    samples.push(t.epochNs);
  }
  // Not all twenty samples can sit on whole milliseconds if sub-millisecond digits are real.
  assert.ok(samples.some((ns) => ns % 1_000_000n !== 0n));
  assert.match(formatGoTime(goTimeNow()), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/);
});

test('a GoTime prints and serialises as its RFC 3339 string: toJSON, toString, template strings, util.inspect', () => {
  for (const s of [
    '2015-06-27T12:18:51.759239612+02:00',
    '2023-03-04T05:06:07.000000001-03:30',
    '2024-01-02T03:04:05Z',
    '0001-01-01T00:00:00Z',
    '9999-12-31T23:59:59.999999999+14:00',
  ]) {
    const t = parseGoTime(s);
    assert.equal(t.toJSON(), s);
    assert.equal(t.toString(), s);
    assert.equal(`${t}`, s);
    assert.equal(String(t), s);
    assert.equal(JSON.stringify(t), JSON.stringify(s));
    assert.equal(JSON.stringify({ t }), `{"t":${JSON.stringify(s)}}`);
    assert.equal(inspect(t), s);
    assert.equal(inspect({ t }), `{ t: ${s} }`);
    // Round trip: parse(format(t)) is the same instant and offset, down to the nanosecond.
    const back = parseGoTime(JSON.parse(JSON.stringify(t)) as string);
    assert.equal(back.epochNs, t.epochNs);
    assert.equal(back.offsetMinutes, t.offsetMinutes);
    assert.deepEqual(back, t);
  }
  assert.equal(`${ZERO_GO_TIME}`, '0001-01-01T00:00:00Z');
  assert.equal(JSON.stringify(goTimeFromNs(1n, 330)), '"1970-01-01T05:30:00.000000001+05:30"');
  assert.equal(JSON.stringify(goTimeFromDate(new Date(Date.UTC(2020, 0, 2, 3, 4, 5, 6)), -60)), '"2020-01-02T02:04:05.006-01:00"');
  assert.equal(String(clampGoTimeYear(goTimeFromNs(parseGoTime('9999-06-01T00:00:00Z').epochNs + 366n * 86_400n * NS, 0))), '9999-06-01T00:00:00Z');
});

test('every GoTime is a frozen value made by the factory; plain objects are rebuilt by toGoTime', () => {
  const made = [parseGoTime('2024-01-02T03:04:05.5+01:00'), goTimeFromNs(5n, 0), goTimeFromDate(new Date(0), 0), goTimeNow(), ZERO_GO_TIME, clampGoTimeYear(goTimeFromNs(0n, 0))];
  for (const t of made) {
    assert.ok(isGoTime(t));
    assert.ok(Object.isFrozen(t));
    assert.throws(() => {
      (t as { epochNs: bigint }).epochNs = 1n;
    }, TypeError);
  }
  assert.ok(!isGoTime({ epochNs: 0n, offsetMinutes: 0 }));
  const plain = { epochNs: 1_500_000_000n, offsetMinutes: -90 };
  const t = toGoTime(plain);
  assert.ok(isGoTime(t));
  assert.equal(`${t}`, '1969-12-31T22:30:01.5-01:30');
  assert.equal(toGoTime(t), t);
  assert.throws(() => toGoTime({ epochNs: 0n, offsetMinutes: 1440 }), InvalidInputError);
  assert.throws(() => toGoTime({ epochNs: 5 as unknown as bigint, offsetMinutes: 0 }), InvalidInputError);
  // -0 is stored as 0 (deepEqual would otherwise tell them apart).
  assert.ok(Object.is(goTimeFromNs(0n, -0).offsetMinutes, 0));
  // Comparing, ordering and equality keep working on the fields.
  assert.equal(compareGoTime(parseGoTime('2024-01-01T01:00:00+01:00'), parseGoTime('2024-01-01T00:00:00Z')), 0);
});

test('a year restic cannot write prints in ISO 8601 expanded form instead of throwing; formatGoTime still refuses it', () => {
  const year10000 = goTimeFromNs(parseGoTime('9999-12-31T00:00:00Z').epochNs + 86_400n * NS + 7n, 0);
  assert.equal(`${year10000}`, '+010000-01-01T00:00:00.000000007Z');
  assert.equal(JSON.stringify(year10000), '"+010000-01-01T00:00:00.000000007Z"');
  assert.throws(() => formatGoTime(year10000), /year 10000/);
  const yearMinus1 = goTimeFromNs(parseGoTime('0000-01-01T00:00:00Z').epochNs - 1n, 0);
  assert.equal(inspect(yearMinus1), '-000001-12-31T23:59:59.999999999Z');
});
