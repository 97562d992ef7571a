// The walk over the snapshot's trees: which entries are restored (include, exclude), at which
// path in the target. Folders are made as they are reached, through `makeDir`, so that the
// restore creates them while it reads the trees below; a dry run passes no-ops.
import { readFile } from 'node:fs/promises';
import { IntegrityError, throwIfAborted } from '../../../errors.ts';
import type { BlobId } from '../../../repository/id.ts';
import { goStringToBytes } from '../../model/gojson.ts';
import { PathFilter } from '../../model/filter.ts';
import type { TreeLoader } from '../../engine/tree-loader.ts';
import type { NodeType, TreeNode } from '../../model/node.ts';
import { treeNodes } from '../../model/tree.ts';
import type { RestoreEntry, RestoreNode } from './types.ts';

/** Rejects names that could leave the folder they belong to. */
export function checkNodeName(name: Uint8Array, treeId: string): void {
  const s = Buffer.from(name);
  if (s.length === 0 || s.equals(Buffer.from('.')) || s.equals(Buffer.from('..')) || s.includes(0x2f) || s.includes(0)) {
    throw new IntegrityError(`tree contains an unsafe name ${JSON.stringify(s.toString('utf8'))}`, { blob: treeId });
  }
}

/** What the walk does to the target: make a folder, and take back one that stayed empty. */
export interface WalkTarget {
  makeDir(p: Buffer, parent: Buffer): Promise<void>;
  dropDir(p: Buffer): Promise<void>;
}

/** A target that is not touched (a dry run). */
export const NO_TARGET: WalkTarget = { makeDir: async () => undefined, dropDir: async () => undefined };

/** The entries a walk found. */
export interface Walked {
  /** Everything created, in creation order (parents before children). */
  created: RestoreEntry[];
  files: RestoreEntry[];
  specials: RestoreEntry[];
  /** Every folder of the snapshot the walk went into (the target first): its names in the snapshot. */
  visited: VisitedDir[];
  /** The walk's selection of a path ("/a/b", relative to the restored tree). */
  select: (rel: string, isDir: boolean) => 'yes' | 'no' | 'descend';
  /** The entries of the restored tree's top folder, in tree order (a folder's own in its `children`). */
  top: RestoreEntry[];
}

/** A folder the walk went into: where it is in the target, its path in the tree, and its names (Go-string form). */
export interface VisitedDir {
  path: Buffer;
  rel: string;
  names: Set<string>;
}

const SLASH = Buffer.from('/');
const NO_NAMES: Set<string> = new Set();

/**
 * A file or special file the walk found: its folder's path (shared by its siblings) and its own
 * name (bytes as a latin1 string), its path made when asked for. A restore keeps one per file for
 * its whole run; a Buffer each (an object of ~100 bytes beside its bytes) would cost twice this.
 */
class LeafEntry implements RestoreEntry {
  readonly #dir: Buffer;
  readonly #name: string;
  readonly node: RestoreNode;
  constructor(dir: Buffer, name: string, node: RestoreNode) {
    this.#dir = dir;
    this.#name = name;
    this.node = node;
  }
  get path(): Buffer {
    const name = this.#name;
    const dir = this.#dir;
    const p = Buffer.allocUnsafe(dir.length + 1 + name.length);
    dir.copy(p);
    p[dir.length] = 0x2f;
    p.write(name, dir.length + 1, 'latin1');
    return p;
  }
}

/**
 * What the restore keeps of a tree node: the fields it reads (metadata, contents, hard links,
 * special files), not its name, ctime, user and group (taken into uid and gid already when owners
 * go by name), subtree or attributes of other systems. The inode, device and link count only for
 * a node with more than one link (all a hard link needs them for), extended attributes only when
 * there are some: a plain file's copy has 8 fields (88 bytes), where the decoded node also held a
 * property store and those strings and times. A folder's copy has its fields in another order, so
 * that its mode (ModeDir is bit 31, past a small integer) does not make V8 keep every file's mode
 * as a boxed number (16 bytes more each).
 */
export function restoreNode(n: TreeNode): RestoreNode {
  const out: RestoreNode =
    n.type === 'dir'
      ? { type: n.type, mtime: n.mtime, atime: n.atime, uid: n.uid, gid: n.gid, mode: n.mode, size: n.size, content: n.content }
      : { type: n.type, mode: n.mode, mtime: n.mtime, atime: n.atime, uid: n.uid, gid: n.gid, size: n.size, content: n.content };
  if (Number(n.links ?? 1) > 1) {
    out.links = n.links;
    if (n.inode !== undefined) out.inode = n.inode;
    if (n.deviceId !== undefined) out.deviceId = n.deviceId;
  }
  if (n.extendedAttributes) out.extendedAttributes = n.extendedAttributes;
  if (n.linktarget !== undefined) out.linktarget = n.linktarget;
  if (n.linktargetRaw !== undefined) out.linktargetRaw = n.linktargetRaw;
  if (n.device !== undefined) out.device = n.device;
  return out;
}

/** What the walk selects by: restic's include and exclude patterns, and their case-blind forms. */
export interface WalkOptions {
  include?: readonly string[];
  exclude?: readonly string[];
  iinclude?: readonly string[];
  iexclude?: readonly string[];
  signal?: AbortSignal | undefined;
  /** The names of every folder visited are kept (VisitedDir.names), for restore --delete; else those sets are empty. */
  delete?: boolean | undefined;
  /** Owners by name (RestoreOptions.ownershipByName): nodes carry the local uid and gid of their names. */
  ownershipByName?: boolean;
}

/** The ids of the names in an /etc/passwd or /etc/group style file ("name:x:id:…"), read once. */
const localIds = new Map<string, Promise<Map<string, number>>>();
function idsOf(file: string): Promise<Map<string, number>> {
  let ids = localIds.get(file);
  if (!ids) {
    ids = readFile(file, 'utf8').then(
      (text) => {
        const out = new Map<string, number>();
        for (const line of text.split('\n')) {
          const [name, , id] = line.split(':');
          if (name && !name.startsWith('#') && id !== undefined && /^\d+$/.test(id) && !out.has(name)) out.set(name, Number(id));
        }
        return out;
      },
      () => new Map<string, number>(),
    );
    localIds.set(file, ids);
  }
  return ids;
}

/** restic's lchown by name: the local ids of the recorded names, 0 for a name not found. */
async function ownersByName(): Promise<(n: TreeNode) => TreeNode> {
  const [users, groups] = await Promise.all([idsOf('/etc/passwd'), idsOf('/etc/group')]);
  return (n) => ({ ...n, uid: users.get(n.user ?? '') ?? 0, gid: groups.get(n.group ?? '') ?? 0 });
}

/**
 * What the walk keeps of a folder's entry while it walks the folder: its name (Go-string form),
 * its name's bytes as a latin1 string (the same string when the name is ASCII), its type and
 * subtree, and the restore's slim node. The folder's tree is read node by node into these, so
 * its TreeNode[] (~416 bytes a node, and more while JSON.parse builds it) is never held.
 */
interface WalkEntry {
  name: string;
  latin1: string;
  type: NodeType;
  subtree: BlobId | undefined;
  node: RestoreNode;
}

const NON_ASCII = /[^\x00-\x7f]/;

/** Patterns, plain and case-blind (matched against the lower-cased path, as restic). */
class Patterns {
  readonly #plain: PathFilter;
  readonly #folded: PathFilter;
  constructor(plain: readonly string[] | undefined, folded: readonly string[] | undefined) {
    this.#plain = new PathFilter(plain ?? []);
    this.#folded = new PathFilter((folded ?? []).map((p) => p.toLowerCase()));
  }
  get empty(): boolean {
    return this.#plain.empty && this.#folded.empty;
  }
  matches(rel: string): boolean {
    return (!this.#plain.empty && this.#plain.matches(rel)) || (!this.#folded.empty && this.#folded.matches(rel.toLowerCase()));
  }
  mayContainMatch(rel: string): boolean {
    return (!this.#plain.empty && this.#plain.mayContainMatch(rel)) || (!this.#folded.empty && this.#folded.mayContainMatch(rel.toLowerCase()));
  }
}

/**
 * Walks the tree `treeId` into the folder `root`, collecting its files and special files and
 * making its folders through `target`. Names are checked before anything of a folder is made;
 * subfolders are walked concurrently (their trees are read together), and a failure lets every
 * branch in flight finish before it is reported.
 */
export async function walkRestoreTree(
  trees: TreeLoader<Uint8Array>,
  treeId: BlobId,
  root: Buffer,
  options: WalkOptions,
  target: WalkTarget,
): Promise<Walked> {
  const walk = new Walk(trees, options, target);
  await walk.walk(treeId, root, '', false, walk.found.top);
  return walk.found;
}

class Walk {
  readonly found: Walked = { created: [], files: [], specials: [], visited: [], select: (rel, isDir) => this.selected(rel, isDir, false), top: [] };
  readonly #trees: TreeLoader<Uint8Array>;
  readonly #include: Patterns;
  readonly #exclude: Patterns;
  readonly #signal: AbortSignal | undefined;
  readonly #target: WalkTarget;
  readonly #byName: boolean;
  readonly #names: boolean;
  #failed = false;

  constructor(trees: TreeLoader<Uint8Array>, options: WalkOptions, target: WalkTarget) {
    this.#trees = trees;
    this.#include = new Patterns(options.include, options.iinclude);
    this.#exclude = new Patterns(options.exclude, options.iexclude);
    this.#signal = options.signal;
    this.#target = target;
    this.#byName = options.ownershipByName ?? false;
    this.#names = options.delete ?? false;
  }

  selected(rel: string, isDir: boolean, insideIncluded: boolean): 'yes' | 'no' | 'descend' {
    if (!this.#exclude.empty && this.#exclude.matches(rel)) return 'no';
    if (insideIncluded || this.#include.empty || this.#include.matches(rel)) return 'yes';
    return isDir && this.#include.mayContainMatch(rel) ? 'descend' : 'no';
  }

  /** Walks one folder; true when something in it is restored. */
  async walk(treeId: BlobId, dir: Buffer, rel: string, forced: boolean, kids: RestoreEntry[]): Promise<boolean> {
    throwIfAborted(this.#signal);
    if (this.#failed) return false;
    const bytes = await this.#trees.load(treeId);
    const owners = this.#byName ? await ownersByName() : undefined;
    // Every node is read (and its name checked) before anything of the folder is made.
    const nodes: WalkEntry[] = [];
    for (const read of treeNodes(bytes, treeId)) {
      const n = owners ? owners(read) : read;
      let latin1 = n.name;
      if (NON_ASCII.test(latin1)) latin1 = goStringToBytes(n.name).toString('latin1');
      checkNodeName(Buffer.from(latin1, 'latin1'), treeId);
      nodes.push({ name: n.name, latin1, type: n.type, subtree: n.subtree, node: restoreNode(n) });
    }
    this.found.visited.push({ path: dir, rel, names: this.#names ? new Set(nodes.map((n) => n.name)) : NO_NAMES });
    // The subfolders' trees, read together while this folder is made: only those the walk may
    // enter (an include or exclude leaves the others, and their packs, unread).
    this.#trees.prefetch(
      nodes.filter((n) => n.type === 'dir' && n.subtree && this.selected(`${rel}/${n.name}`, true, forced) !== 'no').map((n) => n.subtree!),
    );
    let any = false;
    const branches: Array<Promise<void>> = [];
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i]!;
      const childRel = `${rel}/${node.name}`;
      const sel = this.selected(childRel, node.type === 'dir', forced);
      if (sel === 'no') continue;
      if (node.type !== 'dir') {
        const entry: RestoreEntry = new LeafEntry(dir, node.latin1, node.node);
        (node.type === 'file' ? this.found.files : this.found.specials).push(entry);
        this.found.created.push(entry);
        kids.push(entry);
        any = true;
        continue;
      }
      if (!node.subtree) throw new IntegrityError(`folder ${childRel} has no subtree`, { blob: treeId });
      if (this.#failed) break;
      const p = Buffer.concat([dir, SLASH, Buffer.from(node.latin1, 'latin1')]);
      await this.#target.makeDir(p, dir);
      const slim = node.node;
      const entry: RestoreEntry = sel === 'descend' ? { path: p, node: slim, onTheWay: true, children: [] } : { path: p, node: slim, children: [] };
      this.found.created.push(entry);
      kids.push(entry);
      if (sel === 'yes') any = true;
      branches.push(this.walk(node.subtree, p, childRel, sel === 'yes', entry.children!).then(
        async (had) => {
          if (sel === 'descend' && !had) {
            // Only created on the way to a match that was not there: take it back.
            entry.dropped = true;
            await this.#target.dropDir(p);
            return;
          }
          any = true;
        },
        (e: unknown) => {
          this.#failed = true;
          throw e;
        },
      ));
    }
    const settled = await Promise.allSettled(branches);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return any;
  }
}

/**
 * The walk's entries in restic's order: `files` as its first pass reaches them (depth first, each
 * folder's entries in tree order), `after` as its second pass finishes them (depth first, a
 * folder after what is in it): everything but files' first passes, sockets (restic skips them) and
 * folders taken back. Walked.files is put in the first order.
 */
export function treeOrder(walked: Walked): { files: RestoreEntry[]; after: RestoreEntry[] } {
  const files: RestoreEntry[] = [];
  const after: RestoreEntry[] = [];
  const visit = (list: readonly RestoreEntry[]): void => {
    for (const e of list) {
      if (e.node.type === 'socket' || e.dropped) continue;
      if (e.node.type === 'file') files.push(e);
      if (e.children) visit(e.children);
      after.push(e);
    }
  };
  visit(walked.top);
  const kept = new Set(walked.files);
  walked.files = files.filter((e) => kept.has(e));
  return { files, after };
}
