// Finding things in snapshots, as restic's `find` does: entries whose path matches a pattern,
// or the places where given blob, tree or pack IDs are used.
import type { CallOptions } from '../../backend/backend.ts';
import { AbortedError, InvalidInputError, StowageError, throwIfAborted } from '../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository, type Repository } from '../../repository/repository.ts';
import type { BlobId, BlobType, PackId, SnapshotId } from '../../repository/id.ts';
import { compareGoTime } from '../../repository/gotime.ts';
import type { PackedBlob } from '../../repository/pack.ts';
import { loadPackHeader } from '../../repository/pack-reader.ts';
import { PathFilter } from '../model/filter.ts';
import type { TreeNode } from '../model/node.ts';
import { decodeTree } from '../model/tree.ts';
import { selectSnapshots, type SnapshotEntry, type SnapshotSelection } from '../engine/select.ts';
import type { SnapshotFilter } from '../model/snapshot.ts';

// ---------------------------------------------------------------------------------------------
// Shared walking

export interface FindCommonOptions extends CallOptions {
  /** Snapshots to search (IDs, prefixes, "latest"); none: all that pass `filter`. */
  snapshots?: readonly string[];
  filter?: SnapshotFilter;
  /** Oldest first (restic --reverse); default newest first. */
  reverse?: boolean;
  /**
   * A tree that cannot be loaded: restic reports it and skips that directory. Without this
   * callback the error is thrown.
   */
  onTreeError?: (e: { treeId: BlobId; snapshotId: SnapshotId; error: unknown }) => void;
}

/** The selected snapshots in restic's find order: newest first, or oldest first with reverse. */
async function findOrder(repo: Repository, options: FindCommonOptions): Promise<SnapshotSelection> {
  const sel = await selectSnapshots(repo, options.snapshots ?? [], options.filter ?? {}, options);
  // restic sorts by time only (a stable sort); equal times stay in list order.
  sel.snapshots.sort((a, b) => (options.reverse ? 1 : -1) * compareGoTime(a.snapshot.time, b.snapshot.time));
  return sel;
}

function joinPath(prefix: string, name: string): string {
  return prefix.endsWith('/') ? prefix + name : `${prefix}/${name}`;
}

/** Loads a tree or, when it cannot be, reports it (restic: "Unable to load tree") and returns undefined. */
async function loadTreeOrReport(
  repo: IndexedRepository,
  treeId: BlobId,
  snapshotId: SnapshotId,
  options: FindCommonOptions,
): Promise<TreeNode[] | undefined> {
  try {
    return decodeTree(await repo.loadBlob('tree', treeId, options), treeId);
  } catch (error) {
    if (error instanceof AbortedError || !options.onTreeError) throw error;
    options.onTreeError({ treeId, snapshotId, error });
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Finding by pattern

/** Options of {@link findByPattern}. */
export interface FindPatternOptions extends FindCommonOptions {
  /** Match patterns and paths in lower case (restic --ignore-case). */
  ignoreCase?: boolean;
  /** Only entries modified at or after this time (restic --oldest). */
  oldest?: Date;
  /** Only entries modified at or before this time (restic --newest). */
  newest?: Date;
}

/** A file or folder {@link findByPattern} found, and the snapshot it is in. */
export interface FindHit {
  snapshot: SnapshotEntry;
  /** "/dir/name" as restic prints it. */
  path: string;
  node: TreeNode;
}

/**
 * restic's matcher for one find pattern: matched against the whole path, component by
 * component; a pattern without a leading '/' may start at any depth, and matching a folder
 * matches everything below it. The empty pattern matches everything.
 */
class FindPattern {
  readonly #filter: PathFilter | undefined;
  constructor(pattern: string) {
    if (pattern === '') return;
    // find takes every pattern literally: '!' (negation in excludes) is dropped by restic's
    // matcher and '#' is no comment here.
    let p = pattern.startsWith('!') ? pattern.slice(1) : pattern;
    if (p.startsWith('#')) p = '\\' + p;
    this.#filter = p === '' ? undefined : new PathFilter([p]);
  }
  matches(path: string): boolean {
    return this.#filter === undefined || this.#filter.matches(path);
  }
  mayContainMatch(path: string): boolean {
    return this.#filter === undefined || this.#filter.mayContainMatch(path);
  }
}

/**
 * Entries whose path matches any of the patterns, snapshot by snapshot (newest first unless
 * `reverse`), each snapshot's tree depth first in name order.
 */
export async function* findByPattern(
  repository: AnyRepository,
  patterns: readonly string[],
  options: FindPatternOptions = {},
): AsyncGenerator<FindHit, SnapshotSelection['ignored']> {
  const repo = await withIndex(repository, options);
  if (patterns.length === 0) throw new InvalidInputError('find needs at least one pattern');
  checkTimeRange(options.oldest, options.newest);
  const pats = patterns.map((p) => new FindPattern(options.ignoreCase ? p.toLowerCase() : p));
  const oldestNs = options.oldest && BigInt(options.oldest.getTime()) * 1_000_000n;
  const newestNs = options.newest && BigInt(options.newest.getTime()) * 1_000_000n;
  const sel = await findOrder(repo.repo, options);

  async function* walk(entry: SnapshotEntry, treeId: BlobId, prefix: string): AsyncGenerator<FindHit> {
    const nodes = await loadTreeOrReport(repo, treeId, entry.id, options);
    if (!nodes) return;
    for (const node of nodes) {
      throwIfAborted(options.signal);
      const path = joinPath(prefix, node.name);
      const normalized = options.ignoreCase ? path.toLowerCase() : path;
      const matched = pats.some((p) => p.matches(normalized));
      // A folder nothing below could match is not entered (restic's ChildMatch).
      const enter = node.type === 'dir' && (matched || pats.some((p) => p.mayContainMatch(normalized)));
      const inRange = (oldestNs === undefined || node.mtime.epochNs >= oldestNs) && (newestNs === undefined || node.mtime.epochNs <= newestNs);
      if (matched && inRange) yield { snapshot: entry, path, node };
      if (enter && node.subtree) yield* walk(entry, node.subtree, path);
    }
  }

  for (const entry of sel.snapshots) yield* walk(entry, entry.snapshot.tree, '/');
  return sel.ignored;
}

function checkTimeRange(oldest: Date | undefined, newest: Date | undefined): void {
  for (const [name, d] of [['oldest', oldest], ['newest', newest]] as const) {
    if (d !== undefined && Number.isNaN(d.getTime())) throw new InvalidInputError(`--${name} is not a valid time`);
  }
  if (oldest && newest && oldest.getTime() > newest.getTime()) throw new InvalidInputError('--oldest must specify a time before --newest');
}

// restic's find --oldest/--newest formats, read in local time.
const FIND_TIME_FORMATS: Array<{ re: RegExp; order: 'ymd' | 'dmy' }> = [
  { re: /^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2})(?::(\d{2}))?)?(?: ([+-])(\d{2})(\d{2})| ([A-Za-z]{3,5}))?$/, order: 'ymd' },
  { re: /^(\d{2})\.(\d{2})\.(\d{4})(?: (\d{2}):(\d{2})(?::(\d{2}))?)?(?: ([+-])(\d{2})(\d{2})| ([A-Za-z]{3,5}))?$/, order: 'dmy' },
];

/**
 * Parses a time as restic's find flags take it: "2006-01-02", "2006-01-02 15:04",
 * "2006-01-02 15:04:05", optionally followed by " -0700" or a zone name, and the same with the
 * date as "02.01.2006". Without an offset the time is local; a zone name other than UTC/GMT is
 * taken as local time.
 */
export function parseFindTime(s: string): Date {
  for (const { re, order } of FIND_TIME_FORMATS) {
    const m = re.exec(s.trim());
    if (!m) continue;
    const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const [year, month, day] = order === 'ymd' ? [a, b, c] : [c, b, a];
    const [hour, minute, second] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) break;
    let d: Date;
    if (m[7] !== undefined) {
      const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
      d = new Date(Date.UTC(year, month - 1, day, hour, minute, second) - offset * 60_000);
    } else if (m[10] !== undefined && /^(UTC|GMT)$/i.test(m[10])) {
      d = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
    } else {
      d = new Date(year, month - 1, day, hour, minute, second);
    }
    if (d.getDate() !== day && m[7] === undefined && m[10] === undefined) break; // e.g. 31 February
    return d;
  }
  throw new InvalidInputError(`unable to parse time: ${JSON.stringify(s)}`);
}

// ---------------------------------------------------------------------------------------------
// Finding blob, tree and pack IDs

/** Options of {@link findIds}: the blob and tree IDs to look for. */
export interface FindIdsOptions extends FindCommonOptions {
  /** Data blob IDs: full, or the 8-character short form restic prints. */
  blobs?: readonly string[];
  /** Tree blob IDs, full or short. */
  trees?: readonly string[];
  /** Pack IDs, full or short: their blobs are searched (read from the pack headers, else the index). */
  packs?: readonly string[];
}

/** Where {@link findIds} found a blob or tree: the snapshot and path. */
export interface FoundObject {
  kind: 'blob' | 'tree';
  /** The full ID. */
  id: BlobId;
  /** Where it is used: the file (blob) or the directory, "/" for a root tree. */
  path: string;
  /** The tree holding the file (blobs only). */
  parentTree?: BlobId;
  snapshot: SnapshotEntry;
}

/** What {@link findIds} found. */
export interface FindIdsResult {
  /** Snapshot references that selected nothing, with the reason. */
  ignored: SnapshotSelection['ignored'];
  /** The IDs searched for, short forms expanded where they were found. */
  blobs: string[];
  /** The tree IDs searched for, short forms expanded where they were found. */
  trees: string[];
  /** Packs found only in the index, not in the repository (restic warns about them). */
  packsOnlyInIndex: PackId[];
}

/**
 * Where the given IDs are used, snapshot by snapshot, as restic's `find --blob/--tree/--pack`
 * reports them, including its shortcut: once as many trees were found as were asked for (and no
 * blobs are asked for), each further snapshot's walk ends at its first hit.
 */
export async function* findIds(repository: AnyRepository, options: FindIdsOptions): AsyncGenerator<FoundObject, FindIdsResult> {
  const repo = await withIndex(repository, options);
  const kinds = [options.blobs, options.trees, options.packs].filter((x) => x !== undefined).length;
  if (kinds === 0) throw new InvalidInputError('find: give blob, tree or pack IDs');
  if (kinds > 1) throw new InvalidInputError('cannot have several ID types');
  // IDs are compared as given, as restic does: anything else than a full or an 8-character
  // short ID simply never matches.
  let blobIds: Set<string> | undefined = options.blobs && new Set(options.blobs);
  let treeIds: Set<string> | undefined = options.trees && new Set(options.trees);
  let packsOnlyInIndex: PackId[] = [];
  if (options.packs) {
    const found = await packsToBlobs(repo, [...options.packs], options);
    blobIds = found.blobs;
    treeIds = found.trees;
    packsOnlyInIndex = found.onlyInIndex;
  }
  const sel = await findOrder(repo.repo, options);
  let itemsFound = 0;
  const done = Symbol('find done');

  // restic accepts either the full ID or exactly its 8-character short form.
  const wanted = (set: Set<string> | undefined, id: string) => set !== undefined && (set.has(id) || set.has(id.slice(0, 8)));
  const treeHit = (id: BlobId, path: string, entry: SnapshotEntry): FoundObject | undefined => {
    if (!wanted(treeIds, id)) return undefined;
    return { kind: 'tree', id, path, snapshot: entry };
  };
  const afterTreeHit = () => {
    itemsFound++;
    return itemsFound >= treeIds!.size && blobIds === undefined;
  };

  async function* walk(entry: SnapshotEntry, treeId: BlobId, prefix: string): AsyncGenerator<FoundObject, typeof done | void> {
    const nodes = await loadTreeOrReport(repo, treeId, entry.id, options);
    if (!nodes) return;
    for (const node of nodes) {
      throwIfAborted(options.signal);
      const path = joinPath(prefix, node.name);
      if (node.type === 'dir' && node.subtree) {
        const hit = treeIds && treeHit(node.subtree, path, entry);
        if (hit) {
          yield hit;
          if (afterTreeHit()) return done;
        }
        if ((yield* walk(entry, node.subtree, path)) === done) return done;
        continue;
      }
      if (node.type === 'file' && blobIds && node.content) {
        for (const id of node.content) {
          if (!wanted(blobIds, id)) continue;
          if (!blobIds.has(id)) {
            blobIds.delete(id.slice(0, 8));
            blobIds.add(id);
          }
          yield { kind: 'blob', id, path, parentTree: treeId, snapshot: entry };
        }
      }
    }
  }

  for (const entry of sel.snapshots) {
    const root = entry.snapshot.tree;
    const rootHit = treeIds && treeHit(root, '/', entry);
    if (rootHit) {
      yield rootHit;
      if (afterTreeHit()) continue;
    }
    yield* walk(entry, root, '/');
  }
  return { ignored: sel.ignored, blobs: [...(blobIds ?? [])], trees: [...(treeIds ?? [])], packsOnlyInIndex };
}

/** The blobs of the given packs: from the pack headers, else (pack file gone) from the index. */
async function packsToBlobs(
  repo: IndexedRepository,
  packs: string[],
  options: CallOptions,
): Promise<{ blobs: Set<string>; trees: Set<string>; onlyInIndex: PackId[] }> {
  const remaining = new Set(packs);
  const blobs = new Set<string>();
  const trees = new Set<string>();
  const add = (list: readonly PackedBlob[]) => {
    for (const b of list) (b.type === 'tree' ? trees : blobs).add(b.id);
  };
  for await (const f of repo.backend.list('data', options)) {
    if (remaining.size === 0) break;
    const key = remaining.has(f.name) ? f.name : remaining.has(f.name.slice(0, 8)) ? f.name.slice(0, 8) : undefined;
    if (key === undefined) continue;
    remaining.delete(key);
    add(await loadPackHeader(repo.backend, repo.repo.masterKeyForWorkers(), f.name as PackId, f.size, options));
  }
  const onlyInIndex: PackId[] = [];
  if (remaining.size > 0) {
    for (const [packId, list] of repo.index.packs()) {
      const key = remaining.has(packId) ? packId : remaining.has(packId.slice(0, 8)) ? packId.slice(0, 8) : undefined;
      if (key === undefined) continue;
      // restic files every blob the index lists for a missing pack under the blob IDs.
      for (const b of list) blobs.add(b.id);
      onlyInIndex.push(packId);
    }
    for (const id of onlyInIndex) {
      remaining.delete(id);
      remaining.delete(id.slice(0, 8));
    }
  }
  if (remaining.size > 0) throw new StowageError('NOT_FOUND', `unable to find pack(s): [${[...remaining].sort().join(' ')}]`);
  return { blobs, trees, onlyInIndex };
}

/** Where a blob is stored, for `find --show-pack-id`: every index entry with its pack. */
export function blobPacks(repo: IndexedRepository, type: BlobType, id: BlobId): Array<{ packId: PackId; offset: number; length: number; uncompressedLength: number }> {
  return repo.index.lookup(id, type).map((l) => ({ packId: l.packId, offset: l.offset, length: l.length, uncompressedLength: l.uncompressedLength }));
}
