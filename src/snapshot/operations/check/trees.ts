// Phase 3: every snapshot loads, and every tree and data blob it reaches is indexed and
// readable. The tree graph it builds (who lists which tree, where, from which snapshot) says
// later who loses data through a problem.
import { AbortedError, throwIfAborted } from '../../../errors.ts';
import type { IndexedRepository } from '../../../repository/repository.ts';
import type { BlobId, BlobType } from '../../../repository/id.ts';
import { mapLimit } from '../../../repository/concurrency.ts';
import { decodeSnapshot } from '../../model/snapshot.ts';
import { decodeTree, treeProblems } from '../../model/tree.ts';
import type { TreeNode } from '../../model/node.ts';
import { NULL_ID, blobKey, joinPath, type CheckContext, type Damage, type References } from './findings.ts';

/** The tree graph of the checked snapshots, and what the phase counted. */
export interface TreeGraph {
  /** Tree → the trees that list it as a subtree (one entry per listing). */
  readonly parents: Map<string, string[]>;
  /** Tree → the path it was first reached at. */
  readonly treePath: Map<string, string>;
  /** Root tree → the snapshots that have it. */
  readonly rootsOf: Map<string, string[]>;
  /** Trees that loaded and decoded. */
  readonly loadedTrees: Set<string>;
  /** Packs holding blobs the selected snapshots use (only with snapshotIds). */
  readonly usedPacks: Set<string> | undefined;
  /** Snapshots checked. */
  snapshots: number;
  /** Trees checked. */
  trees: number;
}

/**
 * Loads the snapshots (all, or `snapshotIds`) and walks their trees breadth first. Blobs that
 * `damage` already makes unreadable are noted in `refs` with the trees and paths that need them.
 */
export async function checkSnapshotsAndTrees(ctx: CheckContext, indexed: IndexedRepository, damage: Damage, refs: References): Promise<TreeGraph> {
  ctx.say('check snapshots, trees and blobs');
  const walk = new TreeWalk(ctx, indexed, damage, refs);
  const { ids, roots } = await loadSnapshots(ctx, walk.graph);
  await walk.run(ids, roots);
  return walk.graph;
}

/** The snapshots to check (sorted) and their root trees (undefined where one did not load). */
async function loadSnapshots(ctx: CheckContext, graph: TreeGraph): Promise<{ ids: string[]; roots: Array<BlobId | undefined> }> {
  const { repo, options: o, findings } = ctx;
  let ids: string[] = [];
  for await (const id of repo.listIds('snapshots', o)) ids.push(id);
  if (o.snapshotIds) {
    const wanted = new Set(o.snapshotIds);
    ids = ids.filter((id) => wanted.has(id));
    for (const id of wanted) {
      if (!ids.includes(id)) findings.error({ code: 'SNAPSHOT_UNREADABLE', message: `snapshot ${id}: does not exist`, file: `snapshots/${id}`, snapshots: [id] });
    }
  }
  ids.sort();
  graph.snapshots = ids.length;
  const roots = await mapLimit(ids, 8, async (sid) => {
    try {
      return decodeSnapshot(await repo.loadUnpacked('snapshots', sid, o), sid).tree;
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      findings.error({ code: 'SNAPSHOT_UNREADABLE', message: `snapshot ${sid}: ${(e as Error).message}`, file: `snapshots/${sid}`, snapshots: [sid] });
      return undefined;
    }
  });
  return { ids, roots };
}

/** The walk over the trees: breadth first, a level at a time, several trees loading at once. */
class TreeWalk {
  readonly #ctx: CheckContext;
  readonly #indexed: IndexedRepository;
  readonly #damage: Damage;
  readonly #refs: References;
  readonly graph: TreeGraph;

  constructor(ctx: CheckContext, indexed: IndexedRepository, damage: Damage, refs: References) {
    this.#ctx = ctx;
    this.#indexed = indexed;
    this.#damage = damage;
    this.#refs = refs;
    this.graph = {
      parents: new Map(), treePath: new Map(), rootsOf: new Map(), loadedTrees: new Set(),
      usedPacks: ctx.options.snapshotIds ? new Set() : undefined, snapshots: 0, trees: 0,
    };
  }

  async run(ids: readonly string[], roots: ReadonlyArray<BlobId | undefined>): Promise<void> {
    const g = this.graph;
    let frontier: string[] = [];
    ids.forEach((sid, i) => {
      const root = roots[i];
      if (!root) return;
      const owners = g.rootsOf.get(root);
      if (owners) owners.push(sid);
      else {
        g.rootsOf.set(root, [sid]);
        if (!g.treePath.has(root)) {
          g.treePath.set(root, '/');
          frontier.push(root);
        }
      }
      if (this.#damage.unavailable('tree', root)) this.#refs.note(blobKey('tree', root), root, '/');
    });
    const concurrency = Math.max(2, this.#ctx.repo.backend.connections);
    const discovered = { count: frontier.length };
    while (frontier.length > 0) {
      const next: string[] = [];
      await mapLimit(frontier, concurrency, async (tree) => {
        throwIfAborted(this.#ctx.options.signal);
        const nodes = await this.loadTree(tree);
        this.#ctx.progress({ phase: 'trees', done: ++g.trees, total: discovered.count });
        if (nodes) this.visit(tree, nodes, next, discovered);
      });
      frontier = next;
    }
  }

  /** Checks a tree's nodes: files' blobs indexed, subtrees queued on `next` when first seen. */
  visit(tree: string, nodes: readonly TreeNode[], next: string[], discovered: { count: number }): void {
    const g = this.graph;
    const dir = g.treePath.get(tree)!;
    for (const node of nodes) {
      const path = joinPath(dir, node.name);
      if (node.type === 'file') {
        node.content?.forEach((c) => {
          if (c === NULL_ID) return; // reported by treeProblems
          this.usePacks('data', c);
          if (!this.#indexed.index.has(c, 'data')) {
            this.#ctx.findings.error({
              code: 'BLOB_MISSING', message: `tree ${tree}: file ${JSON.stringify(node.name)} blob ${c} not found in index`,
              tree, blob: c, path, files: [path],
            });
          } else if (this.#damage.unavailable('data', c)) this.#refs.note(blobKey('data', c), tree, path);
        });
      } else if (node.type === 'dir' && node.subtree !== undefined && node.subtree !== NULL_ID) {
        const sub = node.subtree;
        const p = g.parents.get(sub);
        if (p) p.push(tree);
        else g.parents.set(sub, [tree]);
        if (!g.treePath.has(sub)) {
          g.treePath.set(sub, path);
          next.push(sub);
          discovered.count++;
        }
        if (this.#damage.unavailable('tree', sub)) this.#refs.note(blobKey('tree', sub), tree, path);
      }
    }
  }

  usePacks(type: BlobType, id: string): void {
    const used = this.graph.usedPacks;
    if (!used) return;
    for (const loc of this.#indexed.index.lookup(id as BlobId, type)) used.add(loc.packId);
  }

  /** Loads and decodes a tree, reporting why it cannot; undefined then. */
  async loadTree(tree: string): Promise<TreeNode[] | undefined> {
    const path = this.graph.treePath.get(tree);
    const { findings } = this.#ctx;
    this.usePacks('tree', tree);
    if (!this.#indexed.index.has(tree as BlobId, 'tree')) {
      findings.error({ code: 'TREE_MISSING', message: `tree ${tree}: not found in index`, tree, blob: tree, path });
      return undefined;
    }
    let nodes;
    try {
      nodes = decodeTree(await this.#indexed.loadBlob('tree', tree as BlobId, this.#ctx.options), tree, { lenient: true });
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      findings.error({ code: 'TREE_UNREADABLE', message: `tree ${tree}: ${(e as Error).message}`, tree, blob: tree, path });
      return undefined;
    }
    this.graph.loadedTrees.add(tree);
    for (const p of treeProblems(nodes, tree)) findings.error({ code: 'TREE_INVALID', message: p.message, tree, blob: tree, path });
    return nodes;
  }
}
