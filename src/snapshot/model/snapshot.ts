// Snapshot files (snapshots/<id>): the JSON restic's json.Marshal writes (field order and
// omitempty as restic 0.17+, no trailing newline), a validating reader, and the pure queries
// behind `latest`, --host/--tag/--path filters, --group-by and ID prefixes.
import { IntegrityError, InvalidInputError, NotFoundError } from '../../errors.ts';
import { type GoTime, compareGoTime, formatGoTime } from '../../repository/gotime.ts';
import type { BlobId, SnapshotId } from '../../repository/id.ts';
import { compareGoStrings, goJsonString, goMarshalValue, goWellFormedDeep, parseGoJson, setOwn } from './gojson.ts';
import { HEX_ID, UINT32_MAX, readId, readString, readStrings, readTime, readUint32, type Fail } from './json-fields.ts';

/** Backup statistics, written by restic 0.17+ (older versions ignore it). */
export interface SnapshotSummary {
  backupStart: GoTime;
  backupEnd: GoTime;
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  dirsNew: number;
  dirsChanged: number;
  dirsUnmodified: number;
  dataBlobs: number;
  treeBlobs: number;
  /** Bytes of new data before compression and encryption. */
  dataAdded: number;
  /** Bytes of new data as stored in packs. */
  dataAddedPacked: number;
  totalFilesProcessed: number;
  totalBytesProcessed: number;
}

/**
 * A snapshot. Strings are in the Go-string form of gojson.ts. Optional fields are the ones restic
 * writes with omitempty; '' / 0 / [] count as absent.
 */
export interface Snapshot {
  time: GoTime;
  parent?: SnapshotId;
  tree: BlobId;
  /** Backup paths as given (absolute). */
  paths: string[];
  hostname?: string;
  username?: string;
  uid?: number;
  gid?: number;
  excludes?: string[];
  tags?: string[];
  /** The snapshot this one was rewritten from (set on the first rewrite, kept after). */
  original?: SnapshotId;
  /** e.g. "restic 0.17.0"; restic 0.16+. */
  programVersion?: string;
  summary?: SnapshotSummary;
  /**
   * Fields restic does not know that another tool wrote (rustic's `label`, `description`,
   * `delete`, `parents`…), as parsed, in their order. Written back after restic's fields, so
   * rewriting a snapshot (tag, repair) keeps them; restic itself would drop them.
   */
  extra?: Record<string, unknown>;
}

/** The keys restic's Snapshot has (Go matches JSON keys to them without regard to case). */
const KNOWN_KEYS = new Set(['time', 'parent', 'tree', 'paths', 'hostname', 'username', 'uid', 'gid', 'excludes', 'tags', 'original', 'program_version', 'summary']);


// ---------------------------------------------------------------------------------------------
// Encoding

/** The snapshot file's plaintext as restic writes it. Throws InvalidInputError on invalid fields. */
export function encodeSnapshot(s: Snapshot): Uint8Array {
  const bad = (field: string, why: string) => new InvalidInputError(`snapshot ${field} ${why}`);
  const id = (v: unknown, field: string) => {
    if (typeof v !== 'string' || !HEX_ID.test(v)) throw bad(field, `${JSON.stringify(v)?.slice(0, 80)} is not a 64-hex ID`);
    return `"${v.toLowerCase()}"`;
  };
  const strings = (v: unknown, field: string) => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw bad(field, 'must be an array of strings');
    return '[' + (v as string[]).map((x) => goJsonString(x)).join(',') + ']';
  };
  const uint32 = (v: unknown, field: string) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > UINT32_MAX) throw bad(field, 'must be an integer in 0..2^32-1');
    return v;
  };
  const str = (v: unknown, field: string) => {
    if (typeof v !== 'string') throw bad(field, 'must be a string');
    return goJsonString(v);
  };

  const parts = [`{"time":${encodeTime(s.time, 'time', bad)}`];
  if (s.parent !== undefined) parts.push(`,"parent":${id(s.parent, 'parent')}`);
  parts.push(`,"tree":${id(s.tree, 'tree')}`);
  parts.push(`,"paths":${strings(s.paths, 'paths')}`);
  if (s.hostname) parts.push(`,"hostname":${str(s.hostname, 'hostname')}`);
  if (s.username) parts.push(`,"username":${str(s.username, 'username')}`);
  if (s.uid) parts.push(`,"uid":${uint32(s.uid, 'uid')}`);
  if (s.gid) parts.push(`,"gid":${uint32(s.gid, 'gid')}`);
  if (s.excludes?.length) parts.push(`,"excludes":${strings(s.excludes, 'excludes')}`);
  if (s.tags?.length) parts.push(`,"tags":${strings(s.tags, 'tags')}`);
  if (s.original !== undefined) parts.push(`,"original":${id(s.original, 'original')}`);
  if (s.programVersion) parts.push(`,"program_version":${str(s.programVersion, 'programVersion')}`);
  if (s.summary !== undefined) parts.push(`,"summary":${encodeSummary(s.summary, bad)}`);
  for (const [k, v] of Object.entries(s.extra ?? {})) {
    if (KNOWN_KEYS.has(k.toLowerCase())) throw bad(`extra.${k}`, 'is one of restic\'s own fields');
    parts.push(`,${goJsonString(k)}:${goMarshalValue(v)}`);
  }
  parts.push('}');
  return Buffer.from(parts.join(''), 'utf8');
}


const SUMMARY_COUNTS: ReadonlyArray<[keyof SnapshotSummary, string, 'uint' | 'int']> = [
  ['filesNew', 'files_new', 'uint'],
  ['filesChanged', 'files_changed', 'uint'],
  ['filesUnmodified', 'files_unmodified', 'uint'],
  ['dirsNew', 'dirs_new', 'uint'],
  ['dirsChanged', 'dirs_changed', 'uint'],
  ['dirsUnmodified', 'dirs_unmodified', 'uint'],
  ['dataBlobs', 'data_blobs', 'int'],
  ['treeBlobs', 'tree_blobs', 'int'],
  ['dataAdded', 'data_added', 'uint'],
  ['dataAddedPacked', 'data_added_packed', 'uint'],
  ['totalFilesProcessed', 'total_files_processed', 'uint'],
  ['totalBytesProcessed', 'total_bytes_processed', 'uint'],
];

function encodeSummary(sum: SnapshotSummary, bad: Fail): string {
  let out = `{"backup_start":${encodeTime(sum.backupStart, 'summary.backupStart', bad)},"backup_end":${encodeTime(sum.backupEnd, 'summary.backupEnd', bad)}`;
  for (const [field, key, kind] of SUMMARY_COUNTS) {
    const v = sum[field];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || (kind === 'uint' && v < 0)) {
      throw bad(`summary.${field}`, `must be ${kind === 'uint' ? 'a non-negative' : 'an'} integer`);
    }
    out += `,"${key}":${v}`;
  }
  return out + '}';
}

function encodeTime(t: GoTime, field: string, bad: Fail): string {
  if (typeof t?.epochNs !== 'bigint') throw bad(field, 'must be a GoTime');
  return '"' + formatGoTime(t) + '"';
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Reads a snapshot file's plaintext (the JSON). Unknown keys are ignored and null reads as the
 * zero value, as in restic. Throws IntegrityError naming snapshots/<id> when it is not JSON, not
 * an object, has no tree, or a field has the wrong type or an invalid value.
 */
export function decodeSnapshot(bytes: Uint8Array, id: string): Snapshot {
  const file = `snapshots/${id}`;
  const bad: Fail = (field, why) => new IntegrityError(`snapshot ${field} ${why}`, { file });
  let doc: unknown;
  try {
    doc = parseGoJson(bytes);
  } catch (err) {
    throw new IntegrityError('snapshot is not valid JSON', { file }, { cause: err });
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new IntegrityError('snapshot is not a JSON object', { file });
  const o = doc as Record<string, unknown>;

  if (o.tree == null) throw bad('tree', 'is missing');
  const s: Snapshot = {
    time: readTime(o.time, 'time', bad),
    tree: readId(o.tree, 'tree', bad) as BlobId,
    paths: readStrings(o.paths, 'paths', bad) ?? [],
  };
  if (o.parent != null) s.parent = readId(o.parent, 'parent', bad) as SnapshotId;
  const hostname = readString(o.hostname, 'hostname', bad);
  if (hostname) s.hostname = hostname;
  const username = readString(o.username, 'username', bad);
  if (username) s.username = username;
  const uid = readUint32(o.uid, 'uid', bad);
  if (uid) s.uid = uid;
  const gid = readUint32(o.gid, 'gid', bad);
  if (gid) s.gid = gid;
  const excludes = readStrings(o.excludes, 'excludes', bad);
  if (excludes?.length) s.excludes = excludes;
  const tags = readStrings(o.tags, 'tags', bad);
  if (tags?.length) s.tags = tags;
  if (o.original != null) s.original = readId(o.original, 'original', bad) as SnapshotId;
  const programVersion = readString(o.program_version, 'program_version', bad);
  if (programVersion) s.programVersion = programVersion;
  if (o.summary != null) s.summary = readSummary(o.summary, bad);
  for (const [k, v] of Object.entries(o)) {
    if (KNOWN_KEYS.has(k.toLowerCase())) continue;
    s.extra ??= {};
    setOwn(s.extra, k, goWellFormedDeep(v));
  }
  return s;
}

function readSummary(v: unknown, bad: Fail): SnapshotSummary {
  if (typeof v !== 'object' || Array.isArray(v)) throw bad('summary', 'is not an object');
  const o = v as Record<string, unknown>;
  const sum = {
    backupStart: readTime(o.backup_start, 'summary.backup_start', bad),
    backupEnd: readTime(o.backup_end, 'summary.backup_end', bad),
  } as SnapshotSummary;
  for (const [field, key, kind] of SUMMARY_COUNTS) {
    const x = o[key] ?? 0;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || (kind === 'uint' && x < 0)) {
      throw bad(`summary.${key}`, `is not ${kind === 'uint' ? 'a non-negative' : 'an'} integer below 2^53`);
    }
    (sum as unknown as Record<string, number>)[field] = x;
  }
  return sum;
}






// ---------------------------------------------------------------------------------------------
// Queries. They take bare snapshots or entries that carry one as `snapshot` (e.g. {id, snapshot}).

/** A snapshot, or anything that holds one as `snapshot` (such as a SnapshotEntry). */
export type SnapshotLike = Snapshot | { readonly snapshot: Snapshot };

function snap(x: SnapshotLike): Snapshot {
  return 'snapshot' in x ? x.snapshot : x;
}

/** A snapshot with its ID, as listings return them. */
export interface SnapshotEntry {
  id: SnapshotId;
  snapshot: Snapshot;
}

/** restic's --host / --tag / --path selection; an empty filter passes every snapshot. */
export interface SnapshotFilter {
  /** Keep snapshots whose hostname is one of these (none given: any). */
  hosts?: readonly string[];
  /**
   * OR of AND-groups: keep a snapshot that has every tag of at least one group (none given: any).
   * `--tag a,b --tag c` is `[['a','b'],['c']]`, or in restic's comma form `['a,b', 'c']` (a string
   * is one group, split at commas). A group starting with '' matches untagged snapshots.
   */
  tags?: readonly (string | readonly string[])[];
  /** Keep snapshots whose paths include every one of these (exact strings; make them absolute first). */
  paths?: readonly string[];
}

/** True when the snapshot passes the filter, with restic's semantics. */
export function snapshotMatches(s: Snapshot, filter: SnapshotFilter): boolean {
  if (filter.hosts?.length && !filter.hosts.includes(s.hostname ?? '')) return false;
  if (filter.tags?.length && !filter.tags.some((group) => hasAllTags(s, group))) return false;
  if (filter.paths?.length) {
    const have = new Set(s.paths);
    if (!filter.paths.every((p) => have.has(p))) return false;
  }
  return true;
}

function hasAllTags(s: Snapshot, tagGroup: string | readonly string[]): boolean {
  const group = typeof tagGroup === 'string' ? tagGroup.split(',') : tagGroup;
  const tags = s.tags ?? [];
  for (const tag of group) {
    // restic: an empty tag matches a snapshot without tags, and decides at once.
    if (tag === '' && tags.length === 0) return true;
    if (!tags.includes(tag)) return false;
  }
  return true;
}

/** The snapshots that pass `filter`, in the given order. */
export function filterSnapshots<T extends SnapshotLike>(list: readonly T[], filter: SnapshotFilter): T[] {
  return list.filter((x) => snapshotMatches(snap(x), filter));
}

/**
 * The snapshot `latest` means: among those passing the filter (and not after `notAfter`, when
 * given), the one with the greatest time. With equal times the one later in the list wins, as in
 * restic, where the one read last wins. undefined when none passes.
 */
export function latestSnapshot<T extends SnapshotLike>(
  list: readonly T[],
  filter: SnapshotFilter & { notAfter?: GoTime } = {},
): T | undefined {
  let latest: T | undefined;
  for (const x of list) {
    const s = snap(x);
    if (filter.notAfter !== undefined && compareGoTime(s.time, filter.notAfter) > 0) continue;
    if (latest !== undefined && compareGoTime(s.time, snap(latest).time) < 0) continue;
    if (!snapshotMatches(s, filter)) continue;
    latest = x;
  }
  return latest;
}

/** What snapshots are grouped by (restic --group-by): host, paths, tags, or a mix. */
export interface SnapshotGroupBy {
  host?: boolean;
  paths?: boolean;
  tags?: boolean;
}

/** What a group shares. Fields not grouped by are '' / null, as in restic's key. */
export interface SnapshotGroupKey {
  hostname: string;
  paths: string[] | null;
  tags: string[] | null;
}

/** Snapshots that share a group key. */
export interface SnapshotGroup<T> {
  key: SnapshotGroupKey;
  /** restic's group key: json.Marshal of {hostname, paths, tags}, paths and tags sorted. */
  keyJson: string;
  snapshots: T[];
}

/** restic's group key of one snapshot. */
export function snapshotGroupKey(s: Snapshot, groupBy: SnapshotGroupBy): SnapshotGroupKey {
  const sorted = (l: readonly string[]) => [...l].sort(compareGoStrings);
  return {
    hostname: groupBy.host ? (s.hostname ?? '') : '',
    paths: groupBy.paths ? sorted(s.paths) : null,
    tags: groupBy.tags && s.tags?.length ? sorted(s.tags) : null,
  };
}

export function snapshotGroupKeyJson(key: SnapshotGroupKey): string {
  const list = (l: string[] | null) => (l === null ? 'null' : '[' + l.map((x) => goJsonString(x)).join(',') + ']');
  return `{"hostname":${goJsonString(key.hostname)},"paths":${list(key.paths)},"tags":${list(key.tags)}}`;
}

/**
 * Groups as `--group-by` does (forget defaults to host+paths). Groups come in the order their
 * first snapshot appears, snapshots in list order. With nothing to group by, one group holds all.
 */
export function groupSnapshots<T extends SnapshotLike>(list: readonly T[], groupBy: SnapshotGroupBy): SnapshotGroup<T>[] {
  const groups = new Map<string, SnapshotGroup<T>>();
  for (const x of list) {
    const key = snapshotGroupKey(snap(x), groupBy);
    const keyJson = snapshotGroupKeyJson(key);
    let g = groups.get(keyJson);
    if (g === undefined) {
      g = { key, keyJson, snapshots: [] };
      groups.set(keyJson, g);
    }
    g.snapshots.push(x);
  }
  return [...groups.values()];
}

/**
 * The one snapshot ID starting with `prefix` (a full ID is its own prefix). Several → an
 * InvalidInputError listing them; none → NotFoundError.
 */
export function findSnapshotByPrefix(ids: Iterable<string>, prefix: string): SnapshotId {
  if (prefix === '') throw new InvalidInputError('empty snapshot ID prefix');
  const matches: string[] = [];
  for (const id of ids) if (id.startsWith(prefix)) matches.push(id);
  if (matches.length === 1) return matches[0] as SnapshotId;
  if (matches.length === 0) throw new NotFoundError(`snapshot with ID prefix ${JSON.stringify(prefix)}`);
  const shown = matches.slice(0, 10).join(', ') + (matches.length > 10 ? `, … (${matches.length} in all)` : '');
  throw new InvalidInputError(`snapshot ID prefix ${JSON.stringify(prefix)} is ambiguous: ${shown}`);
}
