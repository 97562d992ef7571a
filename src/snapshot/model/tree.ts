// Tree blobs: a directory listing as {"nodes":[…]} plus a newline, nodes sorted by name bytes.
// restic builds the bytes as `{"nodes":[` + nodes joined by `,` + `]}\n`; the tree ID is the
// SHA-256 of exactly those bytes, so encodeTree writes the same.
import { IntegrityError, InvalidInputError } from '../../errors.ts';
import { compareGoStrings, parseGoJson } from './gojson.ts';
import { type NodeEncodingOptions, type TreeNode, decodeNode, encodeNode } from './node.ts';

/**
 * A node name that must not be restored: '', '.', '..', or one holding '/' or NUL. restic never
 * writes such names (a file system cannot hold them); a tree that has one is damaged or hostile.
 */
export class UnsafeNodeNameError extends IntegrityError {
  readonly nodeName: string;
  readonly treeId: string;
  constructor(nodeName: string, treeId: string, reason: string) {
    super(`tree node name ${JSON.stringify(nodeName).slice(0, 80)} is unsafe: ${reason}`, { blob: treeId });
    this.nodeName = nodeName;
    this.treeId = treeId;
  }
}

/** Why a node name is unsafe to use as a path component, or undefined when it is fine. */
export function nodeNameProblem(name: string): string | undefined {
  if (name === '') return 'empty name';
  if (name === '.' || name === '..') return 'refers to a directory itself or its parent';
  if (name.includes('/')) return "contains '/'";
  if (name.includes('\0')) return 'contains NUL';
  return undefined;
}

/** Throws UnsafeNodeNameError when the name is unsafe (see nodeNameProblem). */
export function assertSafeNodeName(name: string, treeId: string): void {
  const problem = nodeNameProblem(name);
  if (problem !== undefined) throw new UnsafeNodeNameError(name, treeId, problem);
}

/** Go's byte-order comparison of node names, the order restic keeps trees in. */
export function compareNodeNames(a: string, b: string): number {
  return compareGoStrings(a, b);
}

/** A copy of the nodes sorted by name bytes, as restic orders them. */
export function sortNodes(nodes: readonly TreeNode[]): TreeNode[] {
  return [...nodes].sort((a, b) => compareGoStrings(a.name, b.name));
}

/**
 * The tree blob bytes restic writes for these nodes. The nodes must already be sorted by name
 * bytes with no name twice, and every name must be safe; otherwise InvalidInputError.
 */
export function encodeTree(nodes: readonly TreeNode[], options?: NodeEncodingOptions): Uint8Array {
  // Each node is written into one growing buffer as it is encoded: a tree of 250 000 nodes once
  // held every node's JSON string, their join and the bytes at once (three copies, ~150 MiB).
  const out = new TreeBytes(Math.min(64 * 1024 + nodes.length * 256, 16 * 1024 * 1024));
  out.write('{"nodes":[');
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i]!;
    const problem = typeof node?.name === 'string' ? nodeNameProblem(node.name) : 'not a string';
    if (problem !== undefined) {
      throw new InvalidInputError(`tree node name ${JSON.stringify(node?.name)?.slice(0, 80)} cannot be stored: ${problem}`);
    }
    if (i > 0 && compareGoStrings(nodes[i - 1]!.name, node.name) >= 0) {
      throw new InvalidInputError(
        `tree nodes are not sorted by name or have a duplicate: ${JSON.stringify(nodes[i - 1]!.name).slice(0, 80)} before ${JSON.stringify(node.name).slice(0, 80)}`,
      );
    }
    if (i > 0) out.write(',');
    out.write(encodeNode(node, options));
  }
  out.write(']}\n');
  return out.bytes();
}

/** A byte buffer that grows by doubling, written with UTF-8 strings. */
class TreeBytes {
  #buf: Buffer;
  #length = 0;

  constructor(initial: number) {
    this.#buf = Buffer.allocUnsafe(initial);
  }

  write(s: string): void {
    // A UTF-8 byte count at most 3 per UTF-16 unit: room for the worst case, then the exact write.
    const most = s.length * 3;
    if (this.#length + most > this.#buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + most));
      this.#buf.copy(next, 0, 0, this.#length);
      this.#buf = next;
    }
    this.#length += this.#buf.write(s, this.#length, 'utf8');
  }

  /** The bytes written; copied to their exact length when over a quarter of the room is spare. */
  bytes(): Uint8Array {
    const used = this.#buf.subarray(0, this.#length);
    return this.#length < this.#buf.length * 0.75 ? Buffer.from(used) : used;
  }
}

/** Options of {@link decodeTree}. */
export interface DecodeTreeOptions {
  /**
   * false (default): an unsafe name throws UnsafeNodeNameError, and nodes out of order or a name
   * twice throw IntegrityError; what the restorer and every path-building reader need.
   * true: such trees are returned as they are, for check / ls / cat to show; run treeProblems on
   * them.
   */
  lenient?: boolean;
}

/**
 * Reads a tree blob. Any JSON object with a "nodes" array is accepted (other keys are ignored, as
 * restic does); anything else throws IntegrityError naming the tree. Node-level rules are those
 * of decodeNode.
 */
export function decodeTree(bytes: Uint8Array, treeId: string, options?: DecodeTreeOptions): TreeNode[] {
  let doc: unknown;
  try {
    doc = parseGoJson(bytes);
  } catch (err) {
    throw new IntegrityError('tree is not valid JSON', { blob: treeId }, { cause: err });
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new IntegrityError('tree is not a JSON object', { blob: treeId });
  }
  const list = (doc as Record<string, unknown>).nodes;
  if (!Array.isArray(list)) {
    throw new IntegrityError(list === undefined ? 'tree has no "nodes" array' : 'tree "nodes" is not an array', { blob: treeId });
  }
  const nodes = list.map((n) => decodeNode(n, treeId));
  if (options?.lenient !== true) {
    for (let i = 0; i < nodes.length; i++) {
      assertSafeNodeName(nodes[i]!.name, treeId);
      if (i > 0 && compareGoStrings(nodes[i - 1]!.name, nodes[i]!.name) >= 0) {
        throw new IntegrityError(
          `tree nodes are not sorted by name or have a duplicate at ${JSON.stringify(nodes[i]!.name).slice(0, 80)}`,
          { blob: treeId },
        );
      }
    }
  }
  return nodes;
}

const NULL_ID = '0'.repeat(64);

/**
 * Everything restic's check reports about the nodes of one tree, plus what the lenient decoder
 * let through: unsafe names, order and duplicates, files without a content list, directories
 * without a subtree, all-zero IDs, the 'irregular' type. Empty when the tree is sound.
 */
export function treeProblems(nodes: readonly TreeNode[], treeId: string): IntegrityError[] {
  const problems: IntegrityError[] = [];
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i]!;
    const label = JSON.stringify(node.name).slice(0, 80);
    const problem = nodeNameProblem(node.name);
    if (problem !== undefined) problems.push(new UnsafeNodeNameError(node.name, treeId, problem));
    if (i > 0 && compareGoStrings(nodes[i - 1]!.name, node.name) >= 0) {
      problems.push(new IntegrityError(`tree node ${label} is out of order or a duplicate`, { blob: treeId }));
    }
    if (node.type === 'file') {
      if (node.content === null) problems.push(new IntegrityError(`file ${label} has nil blob list`, { blob: treeId }));
      node.content?.forEach((id, n) => {
        if (id === NULL_ID) problems.push(new IntegrityError(`file ${label} blob ${n} has null ID`, { blob: treeId }));
      });
    } else if (node.type === 'dir') {
      if (node.subtree === undefined) problems.push(new IntegrityError(`dir node ${label} has no subtree`, { blob: treeId }));
      else if (node.subtree === NULL_ID) problems.push(new IntegrityError(`dir node ${label} subtree id is null`, { blob: treeId }));
    } else if (node.type === 'irregular') {
      // restic can write it (0.17+, Windows) but its check calls it invalid, and nothing restores it.
      problems.push(new IntegrityError(`node ${label} with invalid type "irregular"`, { blob: treeId }));
    }
  }
  return problems;
}
