// Readers of the JSON fields that snapshots and tree nodes share, with Go's rules: a missing or
// null field is the zero value, a wrong type is an error naming the field (`bad` builds it, so
// each format says where: "snapshot …", "node … of tree …").
import { shownValue } from '../../errors.ts';
import { type GoTime, ZERO_GO_TIME, parseGoTime } from '../../repository/gotime.ts';
import { goWellFormed } from './gojson.ts';

/** Builds the error for a field that does not read: the caller's IntegrityError or InvalidInputError. */
export type Fail = (field: string, why: string) => Error;

/** A 64-hex ID as restic writes them (either case is read). */
export const HEX_ID = /^[0-9a-fA-F]{64}$/;
/** Largest uint32: uid, gid, mode. */
export const UINT32_MAX = 0xffff_ffff;

/** A string field (undefined when missing); invalid UTF-16 is made well-formed as Go does. */
export function readString(v: unknown, field: string, bad: Fail): string | undefined {
  if (v == null) return undefined;
  if (typeof v !== 'string') throw bad(field, 'is not a string');
  return goWellFormed(v);
}

/** A []string field (undefined when missing); Go reads a null element as "". */
export function readStrings(v: unknown, field: string, bad: Fail): string[] | undefined {
  if (v == null) return undefined;
  if (!Array.isArray(v)) throw bad(field, 'is not an array');
  return v.map((x) => readString(x, field, bad) ?? '');
}

/** A uint32 field (0 when missing). */
export function readUint32(v: unknown, field: string, bad: Fail): number {
  if (v == null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > UINT32_MAX) throw bad(field, 'is not an unsigned 32-bit integer');
  return v;
}

/** A time.Time field (Go's zero time when missing). */
export function readTime(v: unknown, field: string, bad: Fail): GoTime {
  if (v == null) return ZERO_GO_TIME;
  if (typeof v !== 'string') throw bad(field, 'is not a time string');
  try {
    return parseGoTime(v);
  } catch {
    throw bad(field, `${JSON.stringify(v).slice(0, 40)} is not an RFC 3339 time`);
  }
}

/** A 64-hex ID field, lower-cased. */
export function readId(v: unknown, field: string, bad: Fail): string {
  if (typeof v !== 'string' || !HEX_ID.test(v)) throw bad(field, `${shownValue(v)} is not a 64-hex ID`);
  return v.toLowerCase();
}
