// Integrity check, as restic's checker, in four phases:
//   1. every index file loads (each one on its own, so every broken file is named);
//   2. every pack the index names exists with the size the index implies; packs in no index,
//      packs in several index files and packs mixing tree and data blobs are hints;
//   3. every snapshot loads and every tree and data blob it reaches is indexed and readable;
//   4. with readData / readDataSubset, packs are read: hash, header against the index, and
//      every blob's MAC, decompression and hash.
// Every problem says which repository file and blob it is about and which snapshots (and which
// backed-up files) lose data through it. The report is plain JSON an operator can store.
import type { CallOptions } from '../../backend/backend.ts';
import { layoutPath } from '../../backend/backend.ts';
import { AbortedError, IntegrityError, InvalidInputError, throwIfAborted } from '../../errors.ts';
import { IndexedRepository, baseRepository, sha256hex, type AnyRepository, type Repository } from '../../repository/repository.ts';
import type { BlobId, BlobType, PackId } from '../../repository/id.ts';
import { MasterIndex, type BlobLocation } from '../../repository/master-index.ts';
import { decodeIndexFile, type IndexPack } from '../../repository/index-file.ts';
import { expectedPackSize, type PackedBlob } from '../../repository/pack.ts';
import { mapLimit } from '../../repository/concurrency.ts';
import { type GoTime, goTimeNow } from '../../repository/gotime.ts';
import { DecodePool, ownedBytes, type DecodeBlob } from '../engine/decode-pool.ts';
import { decodeSnapshot } from '../model/snapshot.ts';
import { decodeTree, treeProblems } from '../model/tree.ts';
import { loadIndexFiles } from '../../repository/index-loader.ts';

/** Stable codes for every kind of problem check reports. */
export type CheckProblemCode =
  // errors
  | 'INDEX_UNREADABLE' // an index file cannot be loaded, decrypted or parsed
  | 'INDEX_CONFLICT' // a pack is listed with different blobs in several index files
  | 'PACK_MISSING' // a pack the index names does not exist
  | 'PACK_SIZE_MISMATCH' // a pack's file size differs from what the index implies (truncated)
  | 'SNAPSHOT_UNREADABLE' // a snapshot file cannot be loaded or decoded
  | 'TREE_MISSING' // a tree a snapshot reaches is in no index
  | 'TREE_UNREADABLE' // a tree is indexed but cannot be loaded or decoded
  | 'TREE_INVALID' // a tree's nodes break a rule (names, order, content lists, subtrees, types)
  | 'BLOB_MISSING' // a data blob a file refers to is in no index
  | 'PACK_UNREADABLE' // read-data: the pack could not be downloaded
  | 'PACK_DAMAGED' // read-data: pack hash, header or layout does not match the index
  | 'BLOB_DAMAGED' // read-data: a blob fails its MAC, decompression or hash
  | 'PACK_READ_RETRIED' // read-data: the pack verified only on a second read
  // hints
  | 'PACK_UNREFERENCED' // a pack is in no index (prune or repair index takes care of it)
  | 'PACK_DUPLICATE' // a pack is listed in several index files (repair index)
  | 'PACK_MIXED'; // a pack holds tree and data blobs (prune)

/** One error or hint of a {@link CheckReport}: a stable `code`, a message, and what it concerns. */
export interface CheckProblem {
  code: CheckProblemCode;
  message: string;
  /** The repository file: "index/<id>", "data/ab/<id>", "snapshots/<id>". */
  file?: string;
  pack?: string;
  blob?: string;
  /** The tree the problem was found in. */
  tree?: string;
  /** Where in the snapshot (first snapshot that reaches it), e.g. "/home/user/file". */
  path?: string;
  /**
   * Snapshots that lose data through this problem (sorted); [] when none of the trees that could
   * be read refers to what is lost (a tree that cannot be read hides what lies below it).
   */
  snapshots?: readonly string[];
  /** Backed-up files and folders that lose data through this problem (at most 100). */
  files?: readonly string[];
  /** How many more affected files there are beyond `files`. */
  moreFiles?: number;
  /** Index files involved (duplicates and conflicts). */
  indexFiles?: readonly string[];
}

/** The result of {@link checkRepository}: `ok` is false when an error was found. */
export interface CheckReport {
  /** 'ok' when no error was found (hints do not count), as Stash's `integrity`. */
  integrity: 'ok' | 'failed';
  /** True when no error was found (hints do not count). */
  ok: boolean;
  /** Problems that make data unreadable or the repository inconsistent. */
  errors: CheckProblem[];
  /** Things worth tidying that lose no data (e.g. unreferenced packs). */
  hints: CheckProblem[];
  /** Snapshots at least one error affects, sorted. */
  damagedSnapshots: string[];
  /** Packs `restic repair packs` would salvage (restic's broken_packs). */
  brokenPacks: string[];
  /** Whether `repair index` would fix something found. */
  suggestRepairIndex: boolean;
  /** Whether `prune` would fix something found. */
  suggestPrune: boolean;
  /** What data was read: nothing, every pack, or a subset. */
  readData: 'none' | 'all' | 'subset';
  /** Index files checked. */
  indexFiles: number;
  /** Snapshots checked. */
  snapshots: number;
  /** Trees checked. */
  trees: number;
  /** Packs in the repository. */
  packs: number;
  /** Packs read and verified (read-data). */
  packsRead: number;
  /** Blobs read and verified (read-data). */
  blobsRead: number;
  /** Bytes read (read-data). */
  bytesRead: number;
  /** When the check started (local zone, nanoseconds); prints and serialises as RFC 3339. */
  startTime: GoTime;
  /** When the check ended (as `startTime`). */
  endTime: GoTime;
}

/** restic's --read-data-subset: group n of t (by the pack ID's first byte), a percentage, or a size. */
export type ReadDataSubset =
  | { kind: 'group'; n: number; t: number }
  | { kind: 'percent'; percent: number }
  | { kind: 'size'; bytes: number };

/** The phase a check is in, as {@link CheckProgress} reports it. */
export type CheckPhase = 'index' | 'packs' | 'trees' | 'read-data' | 'affected';

/** Progress of a check, reported through `onProgress`. */
export interface CheckProgress {
  phase: CheckPhase;
  done: number;
  /** 0 while unknown; for 'trees' it grows as trees are discovered. */
  total: number;
  /** read-data: bytes read so far. */
  bytes?: number;
}

/** Options of {@link checkRepository}. */
export interface CheckOptions extends CallOptions {
  /** Read every pack. */
  readData?: boolean;
  /** Read a subset of the packs ("2/5", "10%", "500M" or the parsed form). */
  readDataSubset?: string | ReadDataSubset;
  /** Check only these snapshots (full IDs); read-data then reads only the packs they use. */
  snapshotIds?: readonly string[];
  /** Random numbers in [0, 1) for the percentage and size subsets (default Math.random). */
  random?: () => number;
  /** Human-readable progress lines, as restic prints them. */
  onMessage?: (m: string) => void;
  /** Called as each phase advances. */
  onProgress?: (p: CheckProgress) => void;
}

const MAX_LISTED_FILES = 100;
const NULL_ID = '0'.repeat(64);
/** restic's limit for n/t: groups are chosen by the pack ID's first byte. */
export const MAX_READ_GROUPS = 256;

// ---------------------------------------------------------------------------------------------
// --read-data-subset

/** Parses restic's --read-data-subset value: "n/t", "x%" / "x.y%", or a size with a unit suffix. */
export function parseReadDataSubset(s: string): ReadDataSubset {
  const invalid = () => new InvalidInputError(`read-data-subset ${JSON.stringify(s)} is invalid: use n/t, x% or a size like 500M`);
  if (/^[0-9/]+$/.test(s)) {
    // restic reads anything made of digits and '/' as n/t, so a bare number is an error.
    const parts = s.split('/');
    if (parts.length !== 2 || parts.some((p) => p === '')) throw invalid();
    const [n, t] = parts.map(Number) as [number, number];
    if (n === 0 || t === 0 || n > t) {
      throw new InvalidInputError(`read-data-subset n/t: n and t must be positive and n <= t, e.g. 1/2 (got ${s})`);
    }
    if (t > MAX_READ_GROUPS) throw new InvalidInputError(`read-data-subset n/t: t must be at most ${MAX_READ_GROUPS} (got ${s})`);
    return { kind: 'group', n, t };
  }
  if (s.endsWith('%')) {
    const body = s.slice(0, -1);
    const percent = Number(body);
    if (body.trim() === '' || !Number.isFinite(percent)) throw invalid();
    if (percent <= 0 || percent > 100) throw new InvalidInputError(`read-data-subset x%: x must be above 0 and at most 100 (got ${s})`);
    return { kind: 'percent', percent };
  }
  const m = /^(\d+)([bBkKmMgGtT])$/.exec(s);
  if (!m) throw invalid();
  const unit = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as 'b' | 'k' | 'm' | 'g' | 't'];
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw invalid();
  if (bytes <= 0) throw new InvalidInputError(`read-data-subset size must be above 0 (got ${s})`);
  return { kind: 'size', bytes };
}

/**
 * The packs a subset reads, as restic chooses them. Group n of t: packs whose first ID byte
 * modulo t is n-1 (deterministic, so t runs cover every pack once). Percentage: that share of
 * the packs, rounded down but at least one, chosen at random. Size: the percentage that size
 * is of all packs.
 */
export function selectPacks(packs: ReadonlyMap<string, number>, subset: ReadDataSubset, random: () => number = Math.random): Set<string> {
  if (subset.kind === 'group') {
    return new Set([...packs.keys()].filter((id) => parseInt(id.slice(0, 2), 16) % subset.t === subset.n - 1));
  }
  let percent: number;
  if (subset.kind === 'percent') percent = subset.percent;
  else {
    let total = 0;
    for (const size of packs.values()) total += size;
    if (total === 0) return new Set(packs.keys());
    percent = (Math.min(subset.bytes, total) / total) * 100;
  }
  const ids = [...packs.keys()].sort();
  let count = Math.floor(ids.length * (percent / 100));
  if (ids.length > 0 && count < 1) count = 1;
  // Partial Fisher-Yates: the first `count` places get a uniform random choice.
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (ids.length - i));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return new Set(ids.slice(0, count));
}

// ---------------------------------------------------------------------------------------------
// Where blobs cannot be read from

/** Bad places found so far: missing packs, the part of a short pack past its end, blobs that failed. */
class Damage {
  readonly #index: MasterIndex;
  readonly missingPacks = new Set<string>();
  /** Pack → actual size, for packs shorter than the index says. */
  readonly shortPacks = new Map<string, number>();
  readonly #badLocations = new Set<string>();

  constructor(index: MasterIndex) {
    this.#index = index;
  }

  markBlob(packId: string, b: PackedBlob): void {
    this.#badLocations.add(locationKey(packId, b));
  }

  isBad(loc: BlobLocation): boolean {
    if (this.missingPacks.has(loc.packId)) return true;
    const size = this.shortPacks.get(loc.packId);
    if (size !== undefined && loc.offset + loc.length > size) return true;
    return this.#badLocations.has(locationKey(loc.packId, loc));
  }

  /** Indexed, but no stored copy can be read. */
  unavailable(type: BlobType, id: string): boolean {
    if (this.missingPacks.size === 0 && this.shortPacks.size === 0 && this.#badLocations.size === 0) return false;
    const locs = this.#index.lookup(id as BlobId, type);
    return locs.length > 0 && locs.every((l) => this.isBad(l));
  }
}

function locationKey(packId: string, b: { type: BlobType; id: string; offset: number; length: number }): string {
  return `${packId}:${b.type}:${b.id}:${b.offset}:${b.length}`;
}

const blobKey = (type: BlobType, id: string) => `${type}:${id}`;
const packFile = (id: string) => layoutPath({ type: 'data', name: id });
const joinPath = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);

// ---------------------------------------------------------------------------------------------
// The check

/**
 * Checks a repository as `restic check` does: the index files, that every indexed pack exists with
 * the right size, that every snapshot's trees are readable and every blob they need is indexed;
 * with `readData` (or a subset) it also reads packs and verifies every blob. It reports instead of
 * throwing: `ok`, the errors (naming file, blob, the snapshots and files affected) and hints. This
 * is the integrity check; {@link repositoryStats} only counts.
 *
 * @throws BackendError when the storage fails after retries (damaged files are reported, not
 *   thrown).
 * @throws AbortedError when `signal` aborts.
 *
 * @example
 * ```ts
 * const report = await checkRepository(await Repository.open(backend, { password }), { readDataSubset: '10%' });
 * if (!report.ok) for (const e of report.errors) console.error(e.code, e.file ?? '', e.message);
 * ```
 */
export async function checkRepository(repository: AnyRepository, options: CheckOptions = {}): Promise<CheckReport> {
  const repo = baseRepository(repository);
  if (options.readData && options.readDataSubset !== undefined) {
    throw new InvalidInputError('readData and readDataSubset cannot be used together');
  }
  const subset = typeof options.readDataSubset === 'string' ? parseReadDataSubset(options.readDataSubset) : options.readDataSubset;
  return new CheckRun(repo, options, subset).run();
}

class CheckRun {
  readonly repo: Repository;
  readonly options: CheckOptions;
  readonly subset: ReadDataSubset | undefined;
  readonly say: (m: string) => void;
  readonly progress: (p: CheckProgress) => void;
  readonly report: CheckReport;
  readonly broken = new Set<string>();

  indexed!: IndexedRepository;
  damage!: Damage;
  /** Every indexed pack with its blobs (sorted by offset), built once. */
  packs!: Map<PackId, PackedBlob[]>;
  /** Pack problems and the blobs (type:id) they make unreadable, to find who loses data. */
  readonly packBlobs = new Map<CheckProblem, string[]>();

  // The tree graph of the checked snapshots.
  /** Tree → the trees that list it as a subtree (one entry per listing). */
  readonly parents = new Map<string, string[]>();
  /** Tree → the path it was first reached at. */
  readonly treePath = new Map<string, string>();
  /** Root tree → the snapshots that have it. */
  readonly rootsOf = new Map<string, string[]>();
  /** Trees that loaded and decoded. */
  readonly loadedTrees = new Set<string>();
  /** Unreadable blobs (type:id) that checked trees refer to: the trees and the paths. */
  readonly refs = new Map<string, { trees: Set<string>; files: string[]; count: number }>();
  /** Blobs (type:id) read-data found unreadable; the structure phase did not know them. */
  readonly foundByReading = new Set<string>();
  /** Packs holding blobs the selected snapshots use (only with snapshotIds). */
  usedPacks: Set<string> | undefined;

  constructor(repo: Repository, options: CheckOptions, subset: ReadDataSubset | undefined) {
    this.repo = repo;
    this.options = options;
    this.subset = subset;
    this.say = options.onMessage ?? (() => undefined);
    this.progress = options.onProgress ?? (() => undefined);
    const start = goTimeNow();
    this.report = {
      integrity: 'ok', ok: true, errors: [], hints: [], damagedSnapshots: [], brokenPacks: [],
      suggestRepairIndex: false, suggestPrune: false,
      readData: options.readData ? 'all' : subset ? 'subset' : 'none',
      indexFiles: 0, snapshots: 0, trees: 0, packs: 0, packsRead: 0, blobsRead: 0, bytesRead: 0,
      startTime: start, endTime: start,
    };
  }

  error(p: CheckProblem): CheckProblem {
    this.report.errors.push(p);
    return p;
  }

  async run(): Promise<CheckReport> {
    if (await this.checkIndex()) {
      await this.checkPacks();
      await this.checkStructure();
      if (this.report.readData !== 'none') {
        await this.readData();
        await this.findReferences();
      }
      this.attribute();
    }
    return this.finish();
  }

  // ---- phase 1: index ----------------------------------------------------------------------

  /** Loads the index; false when an index file is broken (restic stops there too). */
  async checkIndex(): Promise<boolean> {
    const o = this.options;
    this.say('load indexes');
    const loaded = await loadIndexFiles(this.repo, { signal: o.signal, onProgress: (done, total) => this.progress({ phase: 'index', done, total }) });
    this.report.indexFiles = loaded.files.size + loaded.failures.length;
    for (const f of loaded.failures) {
      this.error({ code: 'INDEX_UNREADABLE', message: `error loading index ${f.id}: ${f.error.message}`, file: `index/${f.id}` });
    }
    const indexFiles = new Map<string, PackId[]>();
    for (const [id, packs] of loaded.files) indexFiles.set(id, packs.map((p) => p.id));
    this.indexed = new IndexedRepository(this.repo, loaded.index, indexFiles);
    this.damage = new Damage(loaded.index);
    this.packs = loaded.index.packs();

    // Which index files list each pack, and with which blobs.
    const listedIn = new Map<string, Map<string, string>>(); // pack → index file → hash of its blob list
    for (const [id, packs] of loaded.files) {
      for (const p of packs) {
        let m = listedIn.get(p.id);
        if (!m) listedIn.set(p.id, (m = new Map()));
        m.set(id, packBlobsHash(p.blobs));
      }
    }
    for (const [pack, m] of listedIn) {
      if (m.size < 2) continue;
      const indexFiles = [...m.keys()].sort();
      if (new Set(m.values()).size > 1) {
        this.error({ code: 'INDEX_CONFLICT', message: `pack ${pack} has different data in indexes: ${indexFiles.join(', ')}`, pack, file: packFile(pack), indexFiles });
        this.broken.add(pack);
      } else {
        this.report.hints.push({ code: 'PACK_DUPLICATE', message: `pack ${pack} contained in several indexes: ${indexFiles.join(', ')}`, pack, file: packFile(pack), indexFiles });
        this.report.suggestRepairIndex = true;
      }
    }
    for (const [pack, blobs] of this.packs) {
      if (blobs.some((b) => b.type === 'tree') && blobs.some((b) => b.type === 'data')) {
        this.report.hints.push({ code: 'PACK_MIXED', message: `pack ${pack} contains a mix of tree and data blobs`, pack, file: packFile(pack) });
        this.report.suggestPrune = true;
      }
    }
    if (loaded.failures.length > 0) {
      this.report.suggestRepairIndex = true;
      this.say('the repository index is damaged and must be repaired ("repair index")');
      return false;
    }
    return true;
  }

  // ---- phase 2: packs ----------------------------------------------------------------------

  async checkPacks(): Promise<void> {
    this.say('check all packs');
    const stored = new Map<string, number>();
    for await (const f of this.repo.backend.list('data', { signal: this.options.signal })) stored.set(f.name, f.size);
    const packs = this.packs;
    this.report.packs = packs.size;
    for (const [packId, blobs] of packs) {
      const size = stored.get(packId);
      const expected = expectedPackSize(blobs);
      if (size === undefined) {
        const p = this.error({ code: 'PACK_MISSING', message: `pack ${packId}: does not exist`, pack: packId, file: packFile(packId) });
        this.damage.missingPacks.add(packId);
        this.packBlobs.set(p, blobs.map((b) => blobKey(b.type, b.id)));
      } else if (size !== expected) {
        const p = this.error({
          code: 'PACK_SIZE_MISMATCH', message: `pack ${packId}: unexpected file size: got ${size}, expected ${expected}`, pack: packId, file: packFile(packId),
        });
        this.broken.add(packId);
        if (size < expected) {
          this.damage.shortPacks.set(packId, size);
          this.packBlobs.set(p, blobs.filter((b) => b.offset + b.length > size).map((b) => blobKey(b.type, b.id)));
        }
      }
    }
    let unreferenced = 0;
    for (const id of [...stored.keys()].sort()) {
      if (packs.has(id as PackId)) continue;
      unreferenced++;
      this.report.hints.push({ code: 'PACK_UNREFERENCED', message: `pack ${id}: not referenced in any index`, pack: id, file: packFile(id) });
    }
    if (unreferenced > 0) this.report.suggestPrune = true;
    this.progress({ phase: 'packs', done: 1, total: 1 });
  }

  // ---- phase 3: snapshots, trees, blobs ----------------------------------------------------

  async checkStructure(): Promise<void> {
    const o = this.options;
    this.say('check snapshots, trees and blobs');
    let ids: string[] = [];
    for await (const id of this.repo.listIds('snapshots', o)) ids.push(id);
    if (o.snapshotIds) {
      const wanted = new Set(o.snapshotIds);
      ids = ids.filter((id) => wanted.has(id));
      for (const id of wanted) {
        if (!ids.includes(id)) this.error({ code: 'SNAPSHOT_UNREADABLE', message: `snapshot ${id}: does not exist`, file: `snapshots/${id}`, snapshots: [id] });
      }
      this.usedPacks = new Set();
    }
    ids.sort();
    this.report.snapshots = ids.length;
    const roots = await mapLimit(ids, 8, async (sid) => {
      try {
        return decodeSnapshot(await this.repo.loadUnpacked('snapshots', sid, o), sid).tree;
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        this.error({ code: 'SNAPSHOT_UNREADABLE', message: `snapshot ${sid}: ${(e as Error).message}`, file: `snapshots/${sid}`, snapshots: [sid] });
        return undefined;
      }
    });
    let frontier: string[] = [];
    ids.forEach((sid, i) => {
      const root = roots[i];
      if (!root) return;
      const owners = this.rootsOf.get(root);
      if (owners) owners.push(sid);
      else {
        this.rootsOf.set(root, [sid]);
        if (!this.treePath.has(root)) {
          this.treePath.set(root, '/');
          frontier.push(root);
        }
      }
      if (this.damage.unavailable('tree', root)) this.noteRef(blobKey('tree', root), root, '/');
    });

    // Breadth first, a level at a time, with several trees loading at once.
    const concurrency = Math.max(2, this.repo.backend.connections);
    let discovered = frontier.length;
    while (frontier.length > 0) {
      const next: string[] = [];
      await mapLimit(frontier, concurrency, async (tree) => {
        throwIfAborted(o.signal);
        const nodes = await this.loadTree(tree);
        this.progress({ phase: 'trees', done: ++this.report.trees, total: discovered });
        if (!nodes) return;
        const dir = this.treePath.get(tree)!;
        for (const node of nodes) {
          const path = joinPath(dir, node.name);
          if (node.type === 'file') {
            node.content?.forEach((c) => {
              if (c === NULL_ID) return; // reported by treeProblems
              this.usePacks('data', c);
              if (!this.indexed.index.has(c, 'data')) {
                this.error({
                  code: 'BLOB_MISSING', message: `tree ${tree}: file ${JSON.stringify(node.name)} blob ${c} not found in index`,
                  tree, blob: c, path, files: [path],
                });
              } else if (this.damage.unavailable('data', c)) this.noteRef(blobKey('data', c), tree, path);
            });
          } else if (node.type === 'dir' && node.subtree !== undefined && node.subtree !== NULL_ID) {
            const sub = node.subtree;
            const p = this.parents.get(sub);
            if (p) p.push(tree);
            else this.parents.set(sub, [tree]);
            if (!this.treePath.has(sub)) {
              this.treePath.set(sub, path);
              next.push(sub);
              discovered++;
            }
            if (this.damage.unavailable('tree', sub)) this.noteRef(blobKey('tree', sub), tree, path);
          }
        }
      });
      frontier = next;
    }
  }

  usePacks(type: BlobType, id: string): void {
    if (!this.usedPacks) return;
    for (const loc of this.indexed.index.lookup(id as BlobId, type)) this.usedPacks.add(loc.packId);
  }

  /** Loads and decodes a tree, reporting why it cannot; undefined then. */
  async loadTree(tree: string) {
    const path = this.treePath.get(tree);
    this.usePacks('tree', tree);
    if (!this.indexed.index.has(tree as BlobId, 'tree')) {
      this.error({ code: 'TREE_MISSING', message: `tree ${tree}: not found in index`, tree, blob: tree, path });
      return undefined;
    }
    let nodes;
    try {
      nodes = decodeTree(await this.indexed.loadBlob('tree', tree as BlobId, this.options), tree, { lenient: true });
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      this.error({ code: 'TREE_UNREADABLE', message: `tree ${tree}: ${(e as Error).message}`, tree, blob: tree, path });
      return undefined;
    }
    this.loadedTrees.add(tree);
    for (const p of treeProblems(nodes, tree)) this.error({ code: 'TREE_INVALID', message: p.message, tree, blob: tree, path });
    return nodes;
  }

  noteRef(key: string, tree: string, path: string): void {
    let r = this.refs.get(key);
    if (!r) this.refs.set(key, (r = { trees: new Set(), files: [], count: 0 }));
    r.trees.add(tree);
    // A file that holds the blob several times is one affected file.
    if (r.files[r.files.length - 1] === path) return;
    r.count++;
    if (r.files.length < MAX_LISTED_FILES) r.files.push(path);
  }

  // ---- phase 4: read data ------------------------------------------------------------------

  async readData(): Promise<void> {
    const o = this.options;
    const all = this.packs;
    const sizes = new Map<string, number>();
    for (const [id, blobs] of all) {
      if (this.usedPacks && !this.usedPacks.has(id)) continue;
      sizes.set(id, expectedPackSize(blobs));
    }
    const filtered = this.usedPacks ? 'filtered ' : '';
    let chosen: Set<string>;
    if (!this.subset) {
      chosen = new Set(sizes.keys());
      this.say(`read all ${filtered}data`);
    } else {
      chosen = selectPacks(sizes, this.subset, o.random);
      const s = this.subset;
      if (s.kind === 'group') this.say(`read group #${s.n} of ${chosen.size} ${filtered}data packs (out of total ${sizes.size} packs in ${s.t} groups)`);
      else if (s.kind === 'percent') this.say(`read ${s.percent.toFixed(1)}% of ${filtered}packfiles`);
      else this.say(`read ${s.bytes} bytes of ${filtered}data packs`);
    }
    // Missing packs are reported already; reading them would only say so again.
    const list = [...chosen].filter((id) => !this.damage.missingPacks.has(id)).sort();
    if (list.length === 0) return;
    let done = 0;
    // Packs are verified on worker threads, whole packs in memory: few are read ahead, one for
    // each worker and one more being read.
    const pool = new DecodePool({ key: this.repo.masterKeyForWorkers() });
    try {
      await mapLimit(list, pool.capacity / 2 + 1, async (packId) => {
        throwIfAborted(o.signal);
        const blobs = all.get(packId as PackId)!;
        let result = await this.verifyPack(packId, blobs, pool);
        if (result.problems.length > 0) {
          // A second read tells damage in storage from damage in transit (restic does the same).
          const again = await this.verifyPack(packId, blobs, pool);
          if (again.problems.length === 0) {
            result = {
              ...again,
              problems: [{
                problem: {
                  code: 'PACK_READ_RETRIED', pack: packId, file: packFile(packId),
                  message: `pack ${packId}: check successful on second attempt, original error: ${result.problems.map((p) => p.problem.message).join('; ')}`,
                },
                bad: [],
              }],
            };
          } else result = again;
        }
        this.report.packsRead++;
        this.report.blobsRead += blobs.length;
        this.report.bytesRead += result.bytes;
        for (const { problem, bad } of result.problems) {
          this.error(problem);
          if (problem.code === 'PACK_DAMAGED' || problem.code === 'BLOB_DAMAGED') this.broken.add(packId);
          for (const b of bad) this.damage.markBlob(packId, b);
          if (bad.length === 0) continue;
          const keys = bad.map((b) => blobKey(b.type, b.id));
          this.packBlobs.set(problem, keys);
          for (const k of keys) this.foundByReading.add(k);
        }
        this.progress({ phase: 'read-data', done: ++done, total: list.length, bytes: this.report.bytesRead });
      });
    } finally {
      await pool.close();
    }
  }

  /**
   * Reads one pack and verifies everything in it; `bad` lists the blobs that cannot be read.
   * A decode worker hashes the pack, checks every blob and reads the header; the results are
   * compared with the index here.
   */
  async verifyPack(packId: string, blobs: PackedBlob[], pool: DecodePool): Promise<{ bytes: number; problems: Array<{ problem: CheckProblem; bad: PackedBlob[] }> }> {
    const file = packFile(packId);
    type Found = { problem: CheckProblem; bad: PackedBlob[] };
    const problems: Found[] = [];
    const packProblem = (message: string) => problems.push({ problem: { code: 'PACK_DAMAGED', message: `pack ${packId}: ${message}`, pack: packId, file }, bad: [] });
    let bytes: Uint8Array;
    try {
      bytes = await this.repo.backend.load({ type: 'data', name: packId }, { signal: this.options.signal });
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      return { bytes: 0, problems: [{ problem: { code: 'PACK_UNREADABLE', message: `pack ${packId}: download error: ${(e as Error).message}`, pack: packId, file }, bad: blobs }] };
    }
    const size = bytes.length;
    let end = 0;
    for (const b of blobs) {
      if (b.offset !== end) {
        packProblem('index for pack contains gaps / overlapping blobs');
        break;
      }
      end = b.offset + b.length;
    }
    const jobBlobs: DecodeBlob[] = blobs.map((b) => ({ at: b.offset, length: b.length, uncompressedLength: b.uncompressedLength, id: b.id }));
    // A fresh buffer from the backend moves to the worker as it is.
    const done = await pool.run(bytes, file, jobBlobs, { transfer: ownedBytes(bytes), wholePack: true });
    if (done.packHash !== packId) packProblem(`unexpected pack id ${done.packHash}`);
    blobs.forEach((b, i) => {
      const message = done.errors[i];
      if (message !== null && message !== undefined) {
        problems.push({ problem: { code: 'BLOB_DAMAGED', message: `pack ${packId}: blob ${b.id}: ${message}`, pack: packId, file, blob: b.id }, bad: [b] });
      }
    });
    if (typeof done.header === 'string') packProblem(done.header);
    else {
      const key = (b: PackedBlob) => `${b.type}:${b.id}:${b.offset}:${b.length}:${b.uncompressedLength}`;
      const inPack = done.header ?? [];
      const inHeader = new Set(inPack.map(key));
      const inIndex = new Set(blobs.map(key));
      for (const b of inPack) if (!inIndex.has(key(b))) packProblem(`blob ${b.id} is not contained in index or position is incorrect`);
      for (const b of blobs) if (!inHeader.has(key(b))) packProblem(`blob ${b.id} of the index is not in the pack header or its position is incorrect`);
    }
    return { bytes: size, problems };
  }

  /** Scans the checked trees again for references to blobs read-data found damaged. */
  async findReferences(): Promise<void> {
    const wanted = new Set([...this.foundByReading].filter((k) => !this.refs.has(k)));
    if (wanted.size === 0) return;
    for (const [root] of this.rootsOf) {
      const k = blobKey('tree', root);
      if (wanted.has(k) && this.damage.unavailable('tree', root)) this.noteRef(k, root, '/');
    }
    const trees = [...this.loadedTrees];
    let done = 0;
    await mapLimit(trees, Math.max(2, this.repo.backend.connections), async (tree) => {
      throwIfAborted(this.options.signal);
      let nodes;
      try {
        nodes = decodeTree(await this.indexed.loadBlob('tree', tree as BlobId, this.options), tree, { lenient: true });
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        return; // reported when it was first read
      }
      const dir = this.treePath.get(tree)!;
      for (const node of nodes) {
        const path = joinPath(dir, node.name);
        if (node.type === 'file') {
          for (const c of node.content ?? []) {
            const k = blobKey('data', c);
            if (wanted.has(k) && this.damage.unavailable('data', c)) this.noteRef(k, tree, path);
          }
        } else if (node.type === 'dir' && node.subtree) {
          const k = blobKey('tree', node.subtree);
          if (wanted.has(k) && this.damage.unavailable('tree', node.subtree)) this.noteRef(k, tree, path);
        }
      }
      this.progress({ phase: 'affected', done: ++done, total: trees.length });
    });
  }

  // ---- who loses data ----------------------------------------------------------------------

  readonly #snapshotsOfTree = new Map<string, Set<string>>();

  /** The snapshots from which a tree is reachable. */
  snapshotsOfTree(tree: string): Set<string> {
    const cached = this.#snapshotsOfTree.get(tree);
    if (cached) return cached;
    const out = new Set<string>();
    const seen = new Set<string>([tree]);
    const stack = [tree];
    while (stack.length > 0) {
      const t = stack.pop()!;
      for (const s of this.rootsOf.get(t) ?? []) out.add(s);
      for (const p of this.parents.get(t) ?? []) {
        if (!seen.has(p)) {
          seen.add(p);
          stack.push(p);
        }
      }
    }
    this.#snapshotsOfTree.set(tree, out);
    return out;
  }

  attribute(): void {
    for (const p of this.report.errors) {
      if (p.tree !== undefined && p.snapshots === undefined) p.snapshots = [...this.snapshotsOfTree(p.tree)].sort();
    }
    for (const [p, keys] of this.packBlobs) {
      const snaps = new Set<string>();
      const files: string[] = [];
      let total = 0;
      for (const k of new Set(keys)) {
        const [type, id] = k.split(':') as [BlobType, string];
        const r = this.refs.get(k);
        if (!r || !this.damage.unavailable(type, id)) continue;
        for (const t of r.trees) for (const s of this.snapshotsOfTree(t)) snaps.add(s);
        total += r.count;
        for (const f of r.files) if (files.length < MAX_LISTED_FILES) files.push(f);
      }
      p.snapshots = [...snaps].sort();
      if (files.length > 0) p.files = files;
      if (total > files.length) p.moreFiles = total - files.length;
    }
  }

  finish(): CheckReport {
    const r = this.report;
    const damaged = new Set<string>();
    for (const p of r.errors) for (const s of p.snapshots ?? []) damaged.add(s);
    r.damagedSnapshots = [...damaged].sort();
    r.brokenPacks = [...this.broken].sort();
    r.ok = r.errors.length === 0;
    r.integrity = r.ok ? 'ok' : 'failed';
    r.endTime = goTimeNow();
    if (r.ok) this.say('no errors were found');
    return r;
  }
}

/** Identifies a pack's blob list, to tell a duplicate listing from a conflicting one. */
function packBlobsHash(blobs: readonly PackedBlob[]): string {
  const lines = blobs.map((b) => `${b.type}:${b.id}:${b.offset}:${b.length}:${b.uncompressedLength}`).sort();
  return sha256hex(Buffer.from(lines.join('\n')));
}

