// `rewrite`, with restic 0.19's semantics: the chosen snapshots are saved anew without the paths
// the exclude patterns match (or with only those the include patterns match), and/or with a new
// host or time, or with a summary recomputed.
//
// Trees: every tree of the snapshot is read and checked to re-encode to its own ID (restic refuses
// a tree it cannot write back unchanged; so do we). A node whose path (absolute inside the
// snapshot, "/src/a/file") an exclude pattern matches is dropped, folders with it. With include
// patterns, folders are always walked, files are kept only when a pattern matches them, and a
// folder left empty is dropped unless a pattern matches the folder itself; a snapshot left with
// nothing is not modified. Only trees whose content changed are stored (the others keep their IDs
// and exist already); the summary's total_files_processed / total_bytes_processed become the
// count and size of the files kept.
//
// Snapshots: a changed snapshot gets `original` = its old ID, the tag "rewrite" (unless forget),
// and the new host/time; every other field is kept. Writes per snapshot: its new trees (packs,
// then index), then the snapshot file, then (forget) the old snapshot file removed — a crash at
// any point leaves a repository `restic check` accepts. Lock: shared (restic's append lock), or
// exclusive with forget; none in a dry run, which writes nothing.
import type { CallOptions } from '../../backend/backend.ts';
import { InvalidInputError, StowageError, throwIfAborted } from '../../errors.ts';
import { baseRepository, sha256hex, type AnyRepository, type BlobWriter, type IndexedRepository } from '../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../repository/id.ts';
import { ZERO_GO_TIME, type GoTime } from '../../repository/gotime.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import { encodeSnapshot, type Snapshot, type SnapshotFilter, type SnapshotSummary } from '../model/snapshot.ts';
import { decodeTree, encodeTree } from '../model/tree.ts';
import type { TreeNode } from '../model/node.ts';
import { PathFilter } from '../model/filter.ts';
import { selectSnapshots, type SnapshotSelection } from '../engine/select.ts';

/** Options of {@link rewrite}. */
export interface RewriteOptions extends CallOptions {
  /** Snapshots to rewrite (IDs, prefixes, "latest"); none: every snapshot passing `filter`. */
  snapshots?: readonly string[];
  /** restic's --host/--tag/--path selection. */
  filter?: SnapshotFilter;
  /** Paths to drop (restic's --exclude patterns). */
  excludes?: readonly string[];
  /** Paths to drop, case ignored (--iexclude). */
  iexcludes?: readonly string[];
  /** Keep only these paths (--include); not together with excludes. */
  includes?: readonly string[];
  /** Keep only these paths, case ignored (--iinclude). */
  iincludes?: readonly string[];
  /** Hostname for the new snapshots (--new-host). */
  newHost?: string;
  /** Time for the new snapshots (--new-time). */
  newTime?: GoTime;
  /** Recompute total_files_processed / total_bytes_processed even without patterns (--snapshot-summary). */
  snapshotSummary?: boolean;
  /** Remove each original once its new snapshot is saved (no "rewrite" tag then). */
  forget?: boolean;
  /** Work out what would change; write and remove nothing (and take no lock). */
  dryRun?: boolean;
  /** Take the lock (default true): shared, exclusive with `forget`. Pass false when the caller holds one. */
  lock?: boolean;
  /** Keep trying this long (ms) while another process holds a lock. */
  retryLock?: number;
  /** Lines as restic prints them (without the per-snapshot header, see onSnapshot). */
  onMessage?: (m: string) => void;
  /** Called before each snapshot is rewritten. */
  onSnapshot?: (entry: SnapshotSelection['snapshots'][number]) => void;
  /** Called for each path left out (restic prints these with -vv). */
  onExclude?: (path: string) => void;
}

/** One snapshot as {@link rewrite} handled it. */
export interface RewrittenSnapshot {
  id: SnapshotId;
  /** unchanged; rewritten (a new snapshot replaces it, or would in a dry run); removed (restic's "empty snapshot"). */
  status: 'unchanged' | 'rewritten' | 'removed';
  tree: BlobId;
  /** The rewritten root tree (rewritten only). */
  newTree?: BlobId;
  /** The new snapshot's ID (rewritten, not in a dry run). */
  newId?: SnapshotId;
  /** Whether the old snapshot file was (or in a dry run would be) removed. */
  forgotten: boolean;
  /** Files and their total size in the new tree (when patterns or snapshotSummary were given). */
  files?: { count: number; bytes: number };
}

/** What {@link rewrite} did (or, with `dryRun`, would do). */
export interface RewriteResult {
  /** True when nothing was written (`dryRun`). */
  dryRun: boolean;
  /** Every snapshot selected, oldest first, with what became of it. */
  snapshots: RewrittenSnapshot[];
  /** Snapshots rewritten or removed. */
  modified: number;
  /** References that selected nothing (see selectSnapshots). */
  ignored: SnapshotSelection['ignored'];
  /** Tree blobs stored. */
  treesWritten: number;
}

/** A tree could not be decoded and encoded again to the same bytes (restic refuses it too). */
export class TreeNotReencodableError extends StowageError {
  /** The folder's path inside the snapshot. */
  readonly path: string;
  /** The tree's ID. */
  readonly tree: string;
  constructor(path: string, tree: string) {
    super('UNSUPPORTED', `cannot encode tree ${tree.slice(0, 8)} at ${JSON.stringify(path)} without losing information`);
    this.path = path;
    this.tree = tree;
  }
}

/** Checks the options as restic's rewrite does before opening anything. */
export function checkRewriteOptions(o: RewriteOptions): void {
  const excludes = (o.excludes?.length ?? 0) + (o.iexcludes?.length ?? 0);
  const includes = (o.includes?.length ?? 0) + (o.iincludes?.length ?? 0);
  if (!o.snapshotSummary && excludes === 0 && includes === 0 && !o.newHost && !o.newTime) {
    throw new InvalidInputError('Nothing to do: no excludes/includes provided and no new metadata provided');
  }
  if (excludes > 0 && includes > 0) throw new InvalidInputError('exclude and include patterns are mutually exclusive');
}

/** Rewrites the selected snapshots (see the file comment for the rules). */
export async function rewrite(repository: AnyRepository, options: RewriteOptions): Promise<RewriteResult> {
  checkRewriteOptions(options);
  const repo = baseRepository(repository);
  const lock = options.lock !== false && !options.dryRun;
  return withOptionalLock(repo, { lock, exclusive: options.forget === true, retryLock: options.retryLock, signal: options.signal }, async () => {
    const sel = await selectSnapshots(repo, options.snapshots ?? [], options.filter ?? {}, { signal: options.signal });
    const indexed = await repo.loadIndex({ signal: options.signal });
    const result: RewriteResult = { dryRun: options.dryRun === true, snapshots: [], modified: 0, ignored: sel.ignored, treesWritten: 0 };
    const rules = new Rules(options);
    // Oldest first (restic goes through them in the order its parallel loads finish).
    for (const entry of sel.snapshots) {
      throwIfAborted(options.signal);
      options.onSnapshot?.(entry);
      const done = await rewriteOne(indexed, entry.id, entry.snapshot, rules, options);
      result.treesWritten += done.treesWritten;
      if (done.outcome.status !== 'unchanged') result.modified++;
      result.snapshots.push(done.outcome);
    }
    return result;
  });
}

class Rules {
  readonly exclude: PathFilter[] = [];
  readonly include: PathFilter[] = [];
  readonly ignoreCase = new WeakSet<PathFilter>();
  readonly walk: boolean;
  constructor(o: RewriteOptions) {
    const add = (list: PathFilter[], patterns: readonly string[] | undefined, icase: boolean) => {
      const pats = (patterns ?? []).map((p) => (icase ? p.toLowerCase() : p));
      const f = new PathFilter(pats);
      if (f.empty) return;
      if (icase) this.ignoreCase.add(f);
      list.push(f);
    };
    add(this.exclude, o.excludes, false);
    add(this.exclude, o.iexcludes, true);
    add(this.include, o.includes, false);
    add(this.include, o.iincludes, true);
    this.walk = this.exclude.length > 0 || this.include.length > 0 || o.snapshotSummary === true;
  }
  #test(list: PathFilter[], path: string): boolean {
    return list.some((f) => f.matches(this.ignoreCase.has(f) ? path.toLowerCase() : path));
  }
  get including(): boolean {
    return this.include.length > 0;
  }
  /** Whether the node at `path` stays (folders are judged again once their content is known). */
  keeps(node: TreeNode, path: string): boolean {
    if (this.including) return node.type === 'dir' || this.#test(this.include, path);
    return !this.#test(this.exclude, path);
  }
  /** With includes: whether a folder left empty stays (a pattern matches it). */
  keepsEmptyDir(path: string): boolean {
    return !this.including || this.#test(this.include, path);
  }
}

interface TreeResult {
  /** The new tree's ID, or null when it is empty and dropped (include mode). */
  id: BlobId | null;
  files: number;
  bytes: number;
}

async function rewriteOne(
  repo: IndexedRepository,
  id: SnapshotId,
  s: Snapshot,
  rules: Rules,
  o: RewriteOptions,
): Promise<{ outcome: RewrittenSnapshot; treesWritten: number }> {
  const say = o.onMessage ?? (() => undefined);
  const outcome: RewrittenSnapshot = { id, status: 'unchanged', tree: s.tree, forgotten: false };
  const writer = o.dryRun ? undefined : repo.blobWriter({ signal: o.signal });
  let newTree: BlobId | null = s.tree;
  let summary: SnapshotSummary | undefined;
  if (rules.walk) {
    try {
      const r = await rewriteTree(repo, writer, rules, s.tree, '/', o);
      if (writer) await writer.flush();
      newTree = r.id;
      outcome.files = { count: r.files, bytes: r.bytes };
      summary = { ...(s.summary ?? emptySummary()), totalFilesProcessed: r.files, totalBytesProcessed: r.bytes };
    } catch (e) {
      await writer?.abandon();
      throw e;
    }
  }
  const treesWritten = writer?.stats.treeBlobs ?? 0;

  if (newTree === null) {
    // restic keeps a snapshot an include filter would empty, unchanged.
    return { outcome, treesWritten };
  }
  const sameSummary = summary === undefined || (s.summary !== undefined && sameSummaries(summary, s.summary));
  if (newTree === s.tree && !o.newHost && !o.newTime && sameSummary) return { outcome, treesWritten };

  outcome.status = 'rewritten';
  outcome.newTree = newTree;
  outcome.forgotten = o.forget === true;
  if (o.dryRun) {
    say('would save new snapshot');
    if (o.forget) say('would remove old snapshot');
    if (o.newTime) say(`would set time to ${goTimeText(o.newTime)}`);
    if (o.newHost) say(`would set hostname to ${o.newHost}`);
    return { outcome, treesWritten };
  }
  // Every other field (parent, paths, tags, excludes, program_version…) stays as it was.
  const next: Snapshot = { ...s, tree: newTree, original: id };
  if (summary) next.summary = summary;
  if (!o.forget && !(s.tags ?? []).includes('rewrite')) next.tags = [...(s.tags ?? []), 'rewrite'];
  if (o.newTime) {
    say(`setting time to ${goTimeText(o.newTime)}`);
    next.time = o.newTime;
  }
  if (o.newHost) {
    say(`setting host to ${o.newHost}`);
    next.hostname = o.newHost;
  }
  outcome.newId = (await repo.repo.saveUnpacked('snapshots', encodeSnapshot(next), { signal: o.signal })) as SnapshotId;
  say(`saved new snapshot ${outcome.newId.slice(0, 8)}`);
  if (o.forget) {
    await repo.backend.remove({ type: 'snapshots', name: id }, { signal: o.signal });
    say(`removed old snapshot ${id.slice(0, 8)}`);
  }
  return { outcome, treesWritten };
}

async function rewriteTree(repo: IndexedRepository, writer: BlobWriter | undefined, rules: Rules, tree: BlobId, path: string, o: CallOptions & Pick<RewriteOptions, 'onExclude'>): Promise<TreeResult> {
  throwIfAborted(o.signal);
  const nodes = decodeTree(await repo.loadBlob('tree', tree, { signal: o.signal }), tree);
  if (sha256hex(encodeTree(nodes)) !== tree) throw new TreeNotReencodableError(path, tree);
  const kept: TreeNode[] = [];
  let files = 0;
  let bytes = 0;
  for (const node of nodes) {
    const p = path === '/' ? '/' + node.name : `${path}/${node.name}`;
    if (!rules.keeps(node, p)) {
      o.onExclude?.(p);
      continue;
    }
    if (node.type !== 'dir') {
      if (node.type === 'file') {
        files++;
        bytes += Number(node.size ?? 0);
      }
      kept.push(node);
      continue;
    }
    // A folder without a subtree reads as the null ID, which no index holds (as restic).
    const sub = await rewriteTree(repo, writer, rules, node.subtree ?? ('0'.repeat(64) as BlobId), p, o);
    files += sub.files;
    bytes += sub.bytes;
    if (sub.id === null) {
      if (!rules.keepsEmptyDir(p)) continue;
      kept.push({ ...node, subtree: await saveTree(writer, []) });
    } else kept.push(sub.id === node.subtree ? node : { ...node, subtree: sub.id });
  }
  if (kept.length === 0 && rules.including) return { id: null, files, bytes };
  if (kept.length === nodes.length && kept.every((n, i) => n === nodes[i])) return { id: tree, files, bytes };
  return { id: await saveTree(writer, kept), files, bytes };
}

/** Stores a tree unless the index has it (nothing is stored in a dry run); its ID either way. */
async function saveTree(writer: BlobWriter | undefined, nodes: TreeNode[]): Promise<BlobId> {
  const bytes = encodeTree(nodes);
  if (!writer) return sha256hex(bytes) as BlobId;
  return (await writer.saveBlob('tree', bytes)).id;
}

/** Go's zero SnapshotSummary (restic starts from it for a snapshot that has none). */
function emptySummary(): SnapshotSummary {
  return {
    backupStart: ZERO_GO_TIME, backupEnd: ZERO_GO_TIME,
    filesNew: 0, filesChanged: 0, filesUnmodified: 0, dirsNew: 0, dirsChanged: 0, dirsUnmodified: 0,
    dataBlobs: 0, treeBlobs: 0, dataAdded: 0, dataAddedPacked: 0, totalFilesProcessed: 0, totalBytesProcessed: 0,
  };
}

function sameSummaries(a: SnapshotSummary, b: SnapshotSummary): boolean {
  for (const k of Object.keys(a) as Array<keyof SnapshotSummary>) {
    const x = a[k];
    const y = b[k];
    if (typeof x === 'object' && typeof y === 'object') {
      if (x.epochNs !== y.epochNs || x.offsetMinutes !== y.offsetMinutes) return false;
    } else if (x !== y) return false;
  }
  return true;
}

/** Go's time.Time.String() form ("2006-01-02 15:04:05.999999999 -0700 MST"), as restic prints it. */
function goTimeText(t: GoTime): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:\d{2})$/.exec(t.toString());
  if (!m) return t.toString();
  return `${m[1]} ${m[2]} ${m[3] === 'Z' ? '+0000 UTC' : `${m[3]!.replace(':', '')} ${m[3]!.replace(':', '')}`}`;
}
