// A tree node (file, directory, link, …) as restic's Node struct, with encodeNode writing exactly
// the bytes Go's json.Marshal writes for it and decodeNode reading what any restic version wrote.
//
// Representation choices:
// - Strings that are byte strings in Go (name, linktarget, user, group, xattr names, error) are in
//   the Go-string form of gojson.ts: valid UTF-8 is an ordinary string, a byte of invalid UTF-8 is
//   the lone surrogate U+DC00+byte. nodeNameToBytes(node.name) gives the exact on-disk name and
//   nodeNameFromBytes the reverse. The strconv quoting restic applies to names in JSON is done
//   here and never shows in the model.
// - A symlink target that is not valid UTF-8 is carried exactly in linktargetRaw (restic 0.16+
//   stores it as linktarget_raw); linktarget then holds the Go-string form of the same bytes.
//   encodeNode writes linktarget_raw by itself for such a target, whichever field holds it.
// - Fields restic writes with omitempty are absent when zero: decodeNode leaves them undefined,
//   and encodeNode treats 0 / 0n / '' / [] like undefined.
// - The uint64 fields (inode, deviceId, size, links, device) accept number or bigint. decodeNode
//   gives a number up to 2^53 − 1 and a bigint above (overlayfs, for one, puts a layer number in
//   the top bits of inode numbers), so no digit is lost. A decoded node holding such a bigint
//   gets a non-enumerable toJSON that writes it as an exact JSON number (see Uint64).
import { IntegrityError, InvalidInputError, shownValue } from '../../errors.ts';
import { type GoTime, clampGoTimeYear, formatGoTime } from '../../repository/gotime.ts';
import type { BlobId } from '../../repository/id.ts';
import {
  compareGoStrings,
  goCompactJson,
  goJsonString,
  goMarshalValue,
  goQuoteInner,
  goStringFromBytes,
  goStringToBytes,
  goUnquoteInner,
  goWellFormed,
  goWellFormedDeep,
  isGoStringUtf8,
  setOwn,
} from './gojson.ts';
import { HEX_ID, UINT32_MAX, readId as readHexId, readString, readTime, readUint32, type Fail } from './json-fields.ts';

const readId = (v: unknown, field: string, bad: Fail): BlobId => readHexId(v, field, bad) as BlobId;

/** The type of a tree entry, as restic writes it. */
export type NodeType = 'file' | 'dir' | 'symlink' | 'dev' | 'chardev' | 'fifo' | 'socket' | 'irregular';

/** Every type restic writes. 'irregular' is 0.17+ (Windows reparse points and the like). */
export const NODE_TYPES: readonly NodeType[] = ['file', 'dir', 'symlink', 'dev', 'chardev', 'fifo', 'socket', 'irregular'];

/** A name read from the file system (readdir with encoding 'buffer') as a node name. */
export function nodeNameFromBytes(raw: Uint8Array): string {
  return goStringFromBytes(raw);
}

/** The exact bytes a node name stands for, for file system calls. */
export function nodeNameToBytes(name: string): Buffer {
  return goStringToBytes(name);
}

export function isNodeType(t: unknown): t is NodeType {
  return typeof t === 'string' && (NODE_TYPES as readonly string[]).includes(t);
}

/**
 * A Go uint64: a number up to 2^53 − 1, a bigint above. The rule for nodes the library returns
 * (decodeTree, walkTree, find hits): a value up to 2^53 − 1 is always a number; a larger one is a
 * bigint, and that node carries a non-enumerable `toJSON` so that `JSON.stringify` writes the
 * value as an exact JSON number (all digits, as restic writes it) instead of throwing. A reader
 * using plain JSON.parse then gets a rounded number for such a value, so parse it with a
 * reviver that reads the digits (JSON.parse's `context.source`) when exactness matters. Node
 * objects copied with spread lose the toJSON; JSON.stringify then throws a TypeError for the
 * bigint rather than rounding it.
 */
export type Uint64 = number | bigint;

/** An extended attribute of a file, as stored in its node. */
export interface ExtendedAttribute {
  /** Go-string form. */
  name: string;
  value: Uint8Array;
}

/**
 * An entry of a tree (a folder listing): name, type, metadata, and for files the content blobs, for
 * folders the subtree.
 */
export interface TreeNode {
  /** The entry's name in Go-string form (see the file comment). */
  name: string;
  type: NodeType;
  /** Go os.FileMode, masked as restic stores it (see mode.ts). 0 is left out of the JSON. */
  mode: number;
  mtime: GoTime;
  atime: GoTime;
  ctime: GoTime;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  inode?: Uint64;
  /**
   * st_dev. restic stores it for every node; only with the alpha feature flag
   * device-id-for-hardlinks (0.17+, off by default) does it keep it just for files with links > 1.
   */
  deviceId?: Uint64;
  /** Files only. */
  size?: Uint64;
  /** Files, symlinks and devices. */
  links?: Uint64;
  /** Symlinks: the target in Go-string form. */
  linktarget?: string;
  /** Symlinks whose target is not valid UTF-8: its exact bytes. Wins over linktarget when set. */
  linktargetRaw?: Uint8Array;
  extendedAttributes?: ExtendedAttribute[];
  /** restic 0.17+, Windows: attribute name → its value as compact JSON text (Go json.RawMessage). */
  genericAttributes?: Record<string, string>;
  /** st_rdev of dev and chardev nodes. */
  device?: Uint64;
  /** Files: data blob IDs in order, [] for an empty file. null for every other type. */
  content: BlobId[] | null;
  /** Directories: the tree blob of the directory's contents. */
  subtree?: BlobId;
  /** Error text when the metadata could not be read completely. */
  error?: string;
}

export interface NodeEncodingOptions {
  /**
   * 'current' (default) writes what restic 0.16+ writes. 'restic-0.14' writes what 0.14 (built
   * with Go 1.19) wrote for the same node: no linktarget_raw, and \b \f as \u0008 \u000c in plain
   * strings. Which fields are set at all (device_id, atime, …) is the caller's choice either way.
   */
  format?: 'current' | 'restic-0.14';
}

const UINT64_MAX = 0xffff_ffff_ffff_ffffn;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * The node as Go's json.Marshal(node) writes it in restic: keys in struct order, omitempty fields
 * left out when zero, the name strconv-quoted and then JSON-encoded, times clamped to years
 * 0..9999. Throws InvalidInputError for values restic could not hold (wrong types, out of range).
 */
export function encodeNode(node: TreeNode, options?: NodeEncodingOptions): string {
  const legacy = options?.format === 'restic-0.14';
  const str = (s: string) => goJsonString(s, legacy ? { goBefore122: true } : undefined);
  const where = () => `tree node ${JSON.stringify(node?.name)?.slice(0, 80)}`;
  const bad = (field: string, why: string) => new InvalidInputError(`${where()}: ${field} ${why}`);

  if (typeof node.name !== 'string' || node.name === '') throw bad('name', 'must be a non-empty string');
  if (!isNodeType(node.type)) throw bad('type', `${JSON.stringify(node.type)} is not a node type`);
  const parts: string[] = [`{"name":${str(goQuoteInner(node.name))},"type":"${node.type}"`];

  const mode = checkUint32(node.mode, 'mode', bad);
  if (mode !== 0) parts.push(`,"mode":${mode}`);
  // restic stores atime = mtime unless asked otherwise, and ctime often equals both: format once.
  const mtime = encodeTime(node.mtime, 'mtime', bad);
  const atime = sameTime(node.atime, node.mtime) ? mtime : encodeTime(node.atime, 'atime', bad);
  const ctime = sameTime(node.ctime, node.mtime) ? mtime : encodeTime(node.ctime, 'ctime', bad);
  parts.push(`,"mtime":${mtime},"atime":${atime},"ctime":${ctime}`);
  parts.push(`,"uid":${checkUint32(node.uid, 'uid', bad)},"gid":${checkUint32(node.gid, 'gid', bad)}`);
  if (node.user) parts.push(`,"user":${str(checkString(node.user, 'user', bad))}`);
  if (node.group) parts.push(`,"group":${str(checkString(node.group, 'group', bad))}`);
  pushUint64(parts, 'inode', node.inode, bad);
  pushUint64(parts, 'device_id', node.deviceId, bad);
  pushUint64(parts, 'size', node.size, bad);
  pushUint64(parts, 'links', node.links, bad);
  const target = linkTargetOf(node, bad);
  if (target) {
    parts.push(`,"linktarget":${str(target)}`);
    if (!legacy && !isGoStringUtf8(target)) {
      parts.push(`,"linktarget_raw":"${goStringToBytes(target).toString('base64')}"`);
    }
  }
  if (node.extendedAttributes !== undefined && node.extendedAttributes.length > 0) {
    const attrs = node.extendedAttributes.map((a, i) => {
      if (typeof a?.name !== 'string' || !(a.value instanceof Uint8Array)) {
        throw bad(`extended attribute ${i}`, 'must have a string name and a Uint8Array value');
      }
      return `{"name":${str(a.name)},"value":"${Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength).toString('base64')}"}`;
    });
    parts.push(`,"extended_attributes":[${attrs.join(',')}]`);
  }
  if (node.genericAttributes !== undefined) {
    // Go writes map keys in byte order.
    const keys = Object.keys(node.genericAttributes).sort(compareGoStrings);
    if (keys.length > 0) {
      const attrs = keys.map((k) => {
        const raw = node.genericAttributes![k];
        if (typeof raw !== 'string') throw bad(`generic attribute ${JSON.stringify(k)}`, 'must be JSON text');
        return `${str(k)}:${goCompactJson(raw)}`;
      });
      parts.push(`,"generic_attributes":{${attrs.join(',')}}`);
    }
  }
  pushUint64(parts, 'device', node.device, bad);
  if (node.content === null) parts.push(',"content":null');
  else if (Array.isArray(node.content)) {
    for (const id of node.content) {
      if (typeof id !== 'string' || !HEX_ID.test(id)) throw bad('content', `holds an invalid blob ID ${JSON.stringify(id)?.slice(0, 80)}`);
    }
    parts.push(`,"content":[${node.content.length === 0 ? '' : `"${node.content.join('","').toLowerCase()}"`}]`);
  } else throw bad('content', 'must be an array of blob IDs or null');
  if (node.subtree !== undefined) {
    if (typeof node.subtree !== 'string' || !HEX_ID.test(node.subtree)) throw bad('subtree', 'is not a tree ID');
    parts.push(`,"subtree":"${node.subtree.toLowerCase()}"`);
  }
  if (node.error) parts.push(`,"error":${str(checkString(node.error, 'error', bad))}`);
  parts.push('}');
  return parts.join('');
}


function checkUint32(v: unknown, field: string, bad: Fail): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > UINT32_MAX) throw bad(field, 'must be an integer in 0..2^32-1');
  return v;
}

function checkString(v: unknown, field: string, bad: Fail): string {
  if (typeof v !== 'string') throw bad(field, 'must be a string');
  return v;
}

function pushUint64(parts: string[], key: string, v: Uint64 | undefined, bad: Fail): void {
  if (v === undefined || v === 0 || v === 0n) return;
  if (typeof v === 'bigint' ? v < 0n || v > UINT64_MAX : !Number.isSafeInteger(v) || v < 0) {
    throw bad(key, 'must be an integer in 0..2^64-1 (a bigint above 2^53-1)');
  }
  parts.push(`,"${key}":${v.toString()}`);
}

/** The target in Go-string form; from linktargetRaw when that is set (as restic reads it). */
function linkTargetOf(node: TreeNode, bad: Fail): string {
  if (node.linktargetRaw !== undefined) {
    if (!(node.linktargetRaw instanceof Uint8Array)) throw bad('linktargetRaw', 'must be a Uint8Array');
    return goStringFromBytes(node.linktargetRaw);
  }
  return node.linktarget === undefined ? '' : checkString(node.linktarget, 'linktarget', bad);
}

function sameTime(a: GoTime, b: GoTime): boolean {
  return a === b || (a?.epochNs === b?.epochNs && a?.offsetMinutes === b?.offsetMinutes);
}

function encodeTime(t: GoTime, field: string, bad: Fail): string {
  if (typeof t?.epochNs !== 'bigint') throw bad(field, 'must be a GoTime');
  return '"' + formatGoTime(clampGoTimeYear(t)) + '"';
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Reads one element of a tree's "nodes" array as restic does (unknown keys ignored, null read as
 * the zero value, the name unquoted). Throws IntegrityError naming the tree blob when the value
 * is not a node restic could have written: not an object, no name or type, an unknown type,
 * wrong JSON types, numbers out of range, bad times, IDs or base64, or a malformed quoted name.
 * Names that are unsafe to restore ('..', 'a/b') are returned; see tree.ts.
 */
export function decodeNode(obj: unknown, treeId: string): TreeNode {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new IntegrityError('tree node is not a JSON object', { blob: treeId });
  }
  const o = obj as Record<string, unknown>;
  const rawName = o.name;
  const label = typeof rawName === 'string' ? `tree node ${JSON.stringify(rawName).slice(0, 80)}` : 'tree node';
  const bad: Fail = (field, why) => new IntegrityError(`${label}: ${field} ${why}`, { blob: treeId });

  if (typeof rawName !== 'string') throw bad('name', rawName == null ? 'is missing' : 'is not a string');
  let name: string;
  try {
    name = goStringFromBytes(goUnquoteInner(goWellFormed(rawName)));
  } catch (err) {
    throw new IntegrityError(`${label}: name is not a valid Go-quoted string`, { blob: treeId }, { cause: err });
  }
  const type = o.type;
  if (type == null) throw bad('type', 'is missing');
  if (!isNodeType(type)) throw bad('type', `${shownValue(type, 40)} is not a known node type`);

  // GoTime values are immutable, so equal time strings (atime = mtime is usual) share one parse.
  const mtime = readTime(o.mtime, 'mtime', bad);
  const node: TreeNode = {
    name,
    type,
    mode: readUint32(o.mode, 'mode', bad),
    mtime,
    atime: o.atime === o.mtime ? mtime : readTime(o.atime, 'atime', bad),
    ctime: o.ctime === o.mtime ? mtime : readTime(o.ctime, 'ctime', bad),
    uid: readUint32(o.uid, 'uid', bad),
    gid: readUint32(o.gid, 'gid', bad),
    content: readContent(o.content, bad),
  };
  const user = readString(o.user, 'user', bad);
  if (user) node.user = user;
  const group = readString(o.group, 'group', bad);
  if (group) node.group = group;
  const inode = readUint64(o.inode, 'inode', bad);
  if (inode) node.inode = inode;
  const deviceId = readUint64(o.device_id, 'device_id', bad);
  if (deviceId) node.deviceId = deviceId;
  const size = readUint64(o.size, 'size', bad);
  if (size) node.size = size;
  const links = readUint64(o.links, 'links', bad);
  if (links) node.links = links;
  if (o.linktarget_raw != null) {
    // restic 0.16+: the exact bytes win over the (lossy) linktarget.
    const raw = readBase64(o.linktarget_raw, 'linktarget_raw', bad);
    if (raw.length > 0) {
      node.linktarget = goStringFromBytes(raw);
      if (!isGoStringUtf8(node.linktarget)) node.linktargetRaw = new Uint8Array(raw);
    }
  } else {
    const linktarget = readString(o.linktarget, 'linktarget', bad);
    if (linktarget) node.linktarget = linktarget;
  }
  const xattrs = readExtendedAttributes(o.extended_attributes, bad);
  if (xattrs) node.extendedAttributes = xattrs;
  const generic = readGenericAttributes(o.generic_attributes, bad);
  if (generic) node.genericAttributes = generic;
  const device = readUint64(o.device, 'device', bad);
  if (device) node.device = device;
  if (o.subtree != null) node.subtree = readId(o.subtree, 'subtree', bad);
  const error = readString(o.error, 'error', bad);
  if (error) node.error = error;
  if (typeof inode === 'bigint' || typeof deviceId === 'bigint' || typeof size === 'bigint' || typeof links === 'bigint' || typeof device === 'bigint') {
    Object.defineProperty(node, 'toJSON', { value: nodeToJSON, enumerable: false, writable: true, configurable: true });
  }
  return node;
}

const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/** A node's own fields for JSON.stringify, each bigint as a JSON number with all its digits. */
function nodeToJSON(this: TreeNode): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(this)) out[k] = typeof v === 'bigint' ? rawJSON(v.toString()) : v;
  return out;
}



function readUint64(v: unknown, field: string, bad: Fail): Uint64 | undefined {
  if (v == null) return undefined;
  if (typeof v === 'bigint') {
    if (v < 0n || v > UINT64_MAX) throw bad(field, 'is not an unsigned 64-bit integer');
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(field, 'is not an unsigned 64-bit integer');
  return v;
}



function readContent(v: unknown, bad: Fail): BlobId[] | null {
  if (v == null) return null;
  if (!Array.isArray(v)) throw bad('content', 'is not an array');
  return v.map((id) => readId(id, 'content', bad));
}

function readBase64(v: unknown, field: string, bad: Fail): Buffer {
  if (typeof v !== 'string') throw bad(field, 'is not a base64 string');
  const s = v.replace(/[\r\n]/g, ''); // Go's decoder skips line breaks
  if (!BASE64.test(s)) throw bad(field, 'is not valid base64');
  return Buffer.from(s, 'base64');
}

function readExtendedAttributes(v: unknown, bad: Fail): ExtendedAttribute[] | undefined {
  if (v == null) return undefined;
  if (!Array.isArray(v)) throw bad('extended_attributes', 'is not an array');
  if (v.length === 0) return undefined;
  return v.map((a, i) => {
    if (a === null || typeof a !== 'object' || Array.isArray(a)) throw bad(`extended attribute ${i}`, 'is not an object');
    const attr = a as Record<string, unknown>;
    const name = readString(attr.name, `extended attribute ${i} name`, bad) ?? '';
    // null (a nil []byte in Go) is read as an empty value.
    const value = attr.value == null ? new Uint8Array(0) : new Uint8Array(readBase64(attr.value, `extended attribute ${JSON.stringify(name)} value`, bad));
    return { name, value };
  });
}

function readGenericAttributes(v: unknown, bad: Fail): Record<string, string> | undefined {
  if (v == null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw bad('generic_attributes', 'is not an object');
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const [k, raw] of entries) {
    try {
      setOwn(out, goWellFormed(k), goMarshalValue(goWellFormedDeep(raw)));
    } catch (err) {
      // Both walks recurse: a value nested thousands deep overflows the stack (Go's decoder
      // refuses nesting beyond 10000 levels too).
      if (err instanceof RangeError) throw bad(`generic attribute ${shownValue(k, 40)}`, 'is nested too deeply');
      throw err;
    }
  }
  return out;
}
