// Comparing nodes: restic's change detection, and whether a folder's tree is the parent's.
import type { BlobId } from '../../../repository/id.ts';
import type { GoTime } from '../../../repository/gotime.ts';
import { compareGoStrings } from '../../model/gojson.ts';
import type { TreeNode } from '../../model/node.ts';

/** restic's change detection: a file is unchanged when type, mtime, ctime, size and inode agree. */
export function unchanged(prev: TreeNode, cur: TreeNode, ignore: { ctime?: boolean; inode?: boolean } = {}): boolean {
  return (
    prev.type === cur.type &&
    prev.mtime.epochNs === cur.mtime.epochNs &&
    (ignore.ctime === true || prev.ctime.epochNs === cur.ctime.epochNs) &&
    BigInt(prev.size ?? 0) === BigInt(cur.size ?? 0) &&
    (ignore.inode === true || BigInt(prev.inode ?? 0) === BigInt(cur.inode ?? 0))
  );
}

/** Nodes in a tree's order (Go's string order of names). */
export function sortByName(nodes: TreeNode[]): TreeNode[] {
  return nodes.sort((a, b) => compareGoStrings(a.name, b.name));
}

/**
 * Whether two node lists encode to the same tree bytes: every field equal, with the zero values
 * encodeNode leaves out (undefined, 0, '', []) counted as one. Times must agree in instant and in
 * offset (the offset is written).
 */
export function sameNodes(a: readonly TreeNode[], b: readonly TreeNode[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!sameNode(a[i]!, b[i]!)) return false;
  return true;
}

/** Whether two nodes encode the same (restic's Node.Equals): every field, zero values alike. */
export function sameNode(a: TreeNode, b: TreeNode): boolean {
  return (
    a.name === b.name &&
    a.type === b.type &&
    (a.mode ?? 0) === (b.mode ?? 0) &&
    sameTime(a.mtime, b.mtime) &&
    sameTime(a.atime, b.atime) &&
    sameTime(a.ctime, b.ctime) &&
    (a.uid ?? 0) === (b.uid ?? 0) &&
    (a.gid ?? 0) === (b.gid ?? 0) &&
    (a.user ?? '') === (b.user ?? '') &&
    (a.group ?? '') === (b.group ?? '') &&
    sameUint(a.inode, b.inode) &&
    sameUint(a.deviceId, b.deviceId) &&
    sameUint(a.size, b.size) &&
    sameUint(a.links, b.links) &&
    sameUint(a.device, b.device) &&
    (a.linktarget ?? '') === (b.linktarget ?? '') &&
    sameBytes(a.linktargetRaw, b.linktargetRaw) &&
    (a.subtree ?? '') === (b.subtree ?? '') &&
    (a.error ?? '') === (b.error ?? '') &&
    sameContent(a.content, b.content) &&
    sameXattrs(a.extendedAttributes, b.extendedAttributes) &&
    sameGeneric(a.genericAttributes, b.genericAttributes)
  );
}

function sameTime(a: GoTime, b: GoTime): boolean {
  return a.epochNs === b.epochNs && a.offsetMinutes === b.offsetMinutes;
}

function sameUint(a: number | bigint | undefined, b: number | bigint | undefined): boolean {
  if (typeof a === typeof b) return a === b || (!a && !b);
  return BigInt(a ?? 0) === BigInt(b ?? 0);
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a?.length || !b?.length) return !a?.length && !b?.length;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function sameContent(a: readonly BlobId[] | null, b: readonly BlobId[] | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameXattrs(a: TreeNode['extendedAttributes'], b: TreeNode['extendedAttributes']): boolean {
  if (!a?.length || !b?.length) return !a?.length && !b?.length;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.name !== b[i]!.name || !sameBytes(a[i]!.value, b[i]!.value)) return false;
  return true;
}

function sameGeneric(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ka = a ? Object.keys(a) : [];
  const kb = b ? Object.keys(b) : [];
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (a![k] !== b?.[k]) return false;
  return true;
}
