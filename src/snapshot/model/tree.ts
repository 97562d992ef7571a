// Tree blobs: a directory listing as {"nodes":[…]} plus a newline, nodes sorted by name bytes.
// restic builds the bytes as `{"nodes":[` + nodes joined by `,` + `]}\n`; the tree ID is the
// SHA-256 of exactly those bytes, so encodeTree writes the same.
import { IntegrityError, InvalidInputError } from '../../errors.ts';
import { JsonBytes } from '../../repository/json-bytes.ts';
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
  const out = new JsonBytes(Math.min(64 * 1024 + nodes.length * 256, 16 * 1024 * 1024));
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
  return out.trimmed();
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
  if (options?.lenient !== true) for (let i = 0; i < nodes.length; i++) checkNodeInTree(nodes[i - 1]?.name, nodes[i]!.name, treeId);
  return nodes;
}

/** A strict reader's rules per node: a safe name, after the one before it in name order (none twice). */
function checkNodeInTree(previous: string | undefined, name: string, treeId: string): void {
  assertSafeNodeName(name, treeId);
  if (previous !== undefined && compareGoStrings(previous, name) >= 0) {
    throw new IntegrityError(`tree nodes are not sorted by name or have a duplicate at ${JSON.stringify(name).slice(0, 80)}`, { blob: treeId });
  }
}

/**
 * The nodes of a tree blob one at a time, decoded from its plaintext bytes without holding the
 * whole tree: the peak is the bytes and one node's JSON, where decodeTree also holds a string of
 * the whole document, its parsed objects and every node. Yields exactly the nodes decodeTree
 * returns, and throws exactly when decodeTree throws, with the error decodeTree throws; but a
 * node is yielded before the ones after it are read, so the error of a damaged tree can come
 * after some of its nodes. A caller that must not act on part of a damaged tree collects what it
 * needs first. Trees of an unusual shape (keys besides "nodes" that are large, hostile input) and
 * every error are handled by decodeTree itself, so they cost what decodeTree costs.
 */
export function* treeNodes(bytes: Uint8Array, treeId: string, options?: DecodeTreeOptions): Generator<TreeNode, void, undefined> {
  const spans = scanTreeNodes(bytes);
  if (spans === undefined) {
    // Not the usual shape, or not JSON at all: decodeTree gives the nodes or the error.
    yield* decodeTree(bytes, treeId, options);
    return;
  }
  const lenient = options?.lenient === true;
  let previous: string | undefined;
  for (let k = 0; k < spans.length; k += 2) {
    let node: TreeNode;
    try {
      node = decodeNode(parseGoJson(bytes.subarray(spans[k]!, spans[k + 1]!)), treeId);
      if (!lenient) checkNodeInTree(previous, node.name, treeId);
    } catch (err) {
      // A tree with a defect may have more than one: decodeTree says which one it reports.
      decodeTree(bytes, treeId, options);
      throw err; // not reached while both agree
    }
    previous = node.name;
    yield node;
  }
}

const WS = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0a, 0x0d]) WS[c] = 1;
/** Where a JSON scalar ends: whitespace, ',', ']', '}' or ':'. */
const SCALAR_END = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0a, 0x0d, 0x2c, 0x5d, 0x7d, 0x3a]) SCALAR_END[c] = 1;
const QUOTE = 0x22;
const NODES_KEY = Buffer.from('"nodes"');

/**
 * The byte ranges (start, end, start, end, …) of the elements of a tree's "nodes" array, found by
 * a scanner that follows strings, escapes and nesting without decoding anything. Undefined unless
 * the bytes are a JSON object whose last "nodes" key holds an array, whose other values are valid
 * JSON, and whose array elements are separated as JSON requires; each element is then valid JSON
 * exactly when the whole document is (the caller parses each). Exported for tests.
 */
export function scanTreeNodes(b: Uint8Array): number[] | undefined {
  const n = b.length;
  const ws = (i: number) => {
    while (i < n && WS[b[i]!] === 1) i++;
    return i;
  };
  const valid = (start: number, end: number) => {
    try {
      parseGoJson(b.subarray(start, end));
      return true;
    } catch {
      return false;
    }
  };
  let i = ws(0);
  if (b[i] !== 0x7b) return undefined;
  i = ws(i + 1);
  let spans: number[] | undefined;
  let spansStart = 0;
  let spansEnd = 0;
  for (;;) {
    if (b[i] !== QUOTE) return undefined;
    const keyEnd = skipString(b, i);
    if (keyEnd < 0) return undefined;
    let isNodes: boolean;
    if (keyEnd - i === NODES_KEY.length && Buffer.compare(NODES_KEY, b.subarray(i, keyEnd)) === 0) isNodes = true;
    else {
      try {
        isNodes = parseGoJson(b.subarray(i, keyEnd)) === 'nodes';
      } catch {
        return undefined;
      }
    }
    i = ws(keyEnd);
    if (b[i] !== 0x3a) return undefined;
    const start = ws(i + 1);
    let end: number;
    if (isNodes && b[start] === 0x5b) {
      // A later "nodes" wins (as in JSON.parse); the one it replaces must still be valid JSON.
      if (spans !== undefined && !valid(spansStart, spansEnd)) return undefined;
      spans = [];
      let j = ws(start + 1);
      if (b[j] === 0x5d) end = j + 1;
      else {
        for (;;) {
          const e = skipValue(b, j);
          if (e < 0) return undefined;
          spans.push(j, e);
          j = ws(e);
          if (b[j] === 0x2c) j = ws(j + 1);
          else if (b[j] === 0x5d) break;
          else return undefined;
        }
        end = j + 1;
      }
      spansStart = start;
      spansEnd = end;
    } else {
      end = skipValue(b, start);
      if (end < 0 || !valid(start, end)) return undefined;
      if (isNodes) {
        if (spans !== undefined && !valid(spansStart, spansEnd)) return undefined;
        spans = undefined; // "nodes" that is not an array: decodeTree names it
      }
    }
    i = ws(end);
    if (b[i] === 0x2c) {
      i = ws(i + 1);
      continue;
    }
    if (b[i] !== 0x7d) return undefined;
    break;
  }
  return ws(i + 1) === n ? spans : undefined;
}

/** The end of the JSON string starting at b[i] (a quote), or -1. Escapes are skipped, not checked. */
function skipString(b: Uint8Array, i: number): number {
  const n = b.length;
  for (i++; i < n; i++) {
    const c = b[i]!;
    if (c === QUOTE) return i + 1;
    if (c === 0x5c) i++;
  }
  return -1;
}

/** The end of the JSON value starting at b[i], following strings and nesting only, or -1. */
function skipValue(b: Uint8Array, i: number): number {
  const n = b.length;
  const c = b[i];
  if (c === QUOTE) return skipString(b, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    while (i < n) {
      const d = b[i]!;
      if (d === QUOTE) {
        i = skipString(b, i);
        if (i < 0) return -1;
        continue;
      }
      if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        if (--depth === 0) return i + 1;
      }
      i++;
    }
    return -1;
  }
  const start = i;
  while (i < n && SCALAR_END[b[i]!] !== 1) i++;
  return i > start ? i : -1;
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
