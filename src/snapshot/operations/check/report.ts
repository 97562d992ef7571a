// The last phase: who loses data. Problems are attributed to the snapshots (and backed-up files)
// that reach what they make unreadable, and the report is assembled.
import { AbortedError, throwIfAborted } from '../../../errors.ts';
import type { IndexedRepository } from '../../../repository/repository.ts';
import type { BlobId, BlobType } from '../../../repository/id.ts';
import { mapLimit } from '../../../repository/concurrency.ts';
import { goTimeNow, type GoTime } from '../../../repository/gotime.ts';
import { decodeTree } from '../../model/tree.ts';
import { MAX_LISTED_FILES, blobKey, joinPath, type CheckContext, type Damage, type Findings, type References } from './findings.ts';
import type { TreeGraph } from './trees.ts';
import type { CheckReport } from './types.ts';

/** Scans the checked trees again for references to blobs read-data found damaged. */
export async function findReferences(
  ctx: CheckContext,
  indexed: IndexedRepository,
  { graph, damage, refs, foundByReading }: { graph: TreeGraph; damage: Damage; refs: References; foundByReading: ReadonlySet<string> },
): Promise<void> {
  const wanted = new Set([...foundByReading].filter((k) => !refs.has(k)));
  if (wanted.size === 0) return;
  for (const [root] of graph.rootsOf) {
    const k = blobKey('tree', root);
    if (wanted.has(k) && damage.unavailable('tree', root)) refs.note(k, root, '/');
  }
  const trees = [...graph.loadedTrees];
  let done = 0;
  await mapLimit(trees, Math.max(2, ctx.repo.backend.connections), async (tree) => {
    throwIfAborted(ctx.options.signal);
    let nodes;
    try {
      nodes = decodeTree(await indexed.loadBlob('tree', tree as BlobId, ctx.options), tree, { lenient: true });
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      return; // reported when it was first read
    }
    const dir = graph.treePath.get(tree)!;
    for (const node of nodes) {
      const path = joinPath(dir, node.name);
      if (node.type === 'file') {
        for (const c of node.content ?? []) {
          const k = blobKey('data', c);
          if (wanted.has(k) && damage.unavailable('data', c)) refs.note(k, tree, path);
        }
      } else if (node.type === 'dir' && node.subtree) {
        const k = blobKey('tree', node.subtree);
        if (wanted.has(k) && damage.unavailable('tree', node.subtree)) refs.note(k, tree, path);
      }
    }
    ctx.progress({ phase: 'affected', done: ++done, total: trees.length });
  });
}

/** The snapshots from which a tree is reachable, remembered per tree. */
class SnapshotsOfTree {
  readonly #graph: TreeGraph;
  readonly #cache = new Map<string, Set<string>>();

  constructor(graph: TreeGraph) {
    this.#graph = graph;
  }

  of(tree: string): Set<string> {
    const cached = this.#cache.get(tree);
    if (cached) return cached;
    const out = new Set<string>();
    const seen = new Set<string>([tree]);
    const stack = [tree];
    while (stack.length > 0) {
      const t = stack.pop()!;
      for (const s of this.#graph.rootsOf.get(t) ?? []) out.add(s);
      for (const p of this.#graph.parents.get(t) ?? []) {
        if (!seen.has(p)) {
          seen.add(p);
          stack.push(p);
        }
      }
    }
    this.#cache.set(tree, out);
    return out;
  }
}

/** Sets each error's snapshots, and for pack problems the files that lose data through them. */
export function attribute(findings: Findings, graph: TreeGraph, damage: Damage, refs: References): void {
  const snapshots = new SnapshotsOfTree(graph);
  for (const p of findings.errors) {
    if (p.tree !== undefined && p.snapshots === undefined) p.snapshots = [...snapshots.of(p.tree)].sort();
  }
  for (const [p, keys] of findings.packBlobs) {
    const snaps = new Set<string>();
    const files: string[] = [];
    let total = 0;
    for (const k of new Set(keys)) {
      const [type, id] = k.split(':') as [BlobType, string];
      const r = refs.get(k);
      if (!r || !damage.unavailable(type, id)) continue;
      for (const t of r.trees) for (const s of snapshots.of(t)) snaps.add(s);
      total += r.count;
      for (const f of r.files) if (files.length < MAX_LISTED_FILES) files.push(f);
    }
    p.snapshots = [...snaps].sort();
    if (files.length > 0) p.files = files;
    if (total > files.length) p.moreFiles = total - files.length;
  }
}

/** The counts the phases returned, for the report. */
export type CheckCounts = Pick<CheckReport, 'readData' | 'indexFiles' | 'snapshots' | 'trees' | 'packs' | 'packsRead' | 'blobsRead' | 'bytesRead'>;

/** The report: the findings, the counts, and what follows from them. */
export function finishReport(ctx: CheckContext, counts: CheckCounts, startTime: GoTime): CheckReport {
  const { findings } = ctx;
  const damaged = new Set<string>();
  for (const p of findings.errors) for (const s of p.snapshots ?? []) damaged.add(s);
  const ok = findings.errors.length === 0;
  const report: CheckReport = {
    integrity: ok ? 'ok' : 'failed',
    ok,
    errors: findings.errors,
    hints: findings.hints,
    damagedSnapshots: [...damaged].sort(),
    brokenPacks: [...findings.broken].sort(),
    suggestRepairIndex: findings.suggestRepairIndex,
    suggestPrune: findings.suggestPrune,
    readData: counts.readData,
    indexFiles: counts.indexFiles,
    snapshots: counts.snapshots,
    trees: counts.trees,
    packs: counts.packs,
    packsRead: counts.packsRead,
    blobsRead: counts.blobsRead,
    bytesRead: counts.bytesRead,
    startTime,
    endTime: goTimeNow(),
  };
  if (ok) ctx.say('no errors were found');
  return report;
}
