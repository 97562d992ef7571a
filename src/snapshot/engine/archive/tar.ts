// A folder of a snapshot as a tar stream, with the headers restic 0.19's `dump` writes (Go's
// archive/tar with no format asked for): ustar when every field fits (a long path split into
// prefix and name where it can be), else PAX records for what does not (long or non-ASCII paths,
// link targets and owner names, IDs and sizes too large for octal, times before 1970) and for
// extended attributes (SCHILY.xattr.*; POSIX ACLs as SCHILY.acl.* text). Modification times are
// rounded to the second; access and change times are left out. Entries are written one by one
// with back-pressure; file contents come from ArchiveContents (read ahead in pack order, decoded
// by the worker pool, within the memory budget). Names are the exact bytes the snapshot stored.
import { isZeroGoTime, type GoTime } from '../../../repository/gotime.ts';
import type { IndexedRepository } from '../../../repository/repository.ts';
import { goStringToBytes } from '../../model/gojson.ts';
import { nodeNameToBytes, type TreeNode } from '../../model/node.ts';
import { posixPermissionsFromGo } from '../../model/mode.ts';
import type { DecodePool } from '../decode-pool.ts';
import type { ByteBudget } from './budget.ts';
import { ArchiveContents, type ArchivePath, type ArchiveSink } from './contents.ts';

const BLOCK = 512;
const ZEROS = new Uint8Array(BLOCK * 2);

/** What an archive stream wrote. */
export interface ArchiveSummary {
  entries: number;
  bytes: number;
}

/** How nodes other than files, folders and symlinks go into a tar. */
export interface TarOptions {
  /**
   * 'typed' (default): character and block devices and fifos as their tar types, sockets and
   * irregular files left out. 'regular': every such node as an empty regular file, as restic's
   * dump writes those it is handed (the dumped folder's own entries; deeper ones its walk skips).
   */
  specials?: 'typed' | 'regular';
}

/**
 * Writes the entries (depth first, folders before what they hold, paths as they go into the
 * archive) as a tar, followed by the two zero blocks that end a tar. File contents are decoded by
 * `pool` (on this thread without one).
 */
export async function writeTar(repo: IndexedRepository, entries: AsyncIterable<ArchivePath>, sink: ArchiveSink, budget: ByteBudget, pool?: DecodePool, options: TarOptions = {}): Promise<ArchiveSummary> {
  const summary: ArchiveSummary = { entries: 0, bytes: 0 };
  const put = async (b: Uint8Array) => {
    summary.bytes += b.length;
    await sink.write(b);
  };
  const contents = new ArchiveContents(repo, entries, sink, budget, pool);
  try {
    for (let entry = await contents.next(); entry; entry = await contents.next()) {
      const { path, node, layout } = entry;
      if (node.type === 'dir') {
        await put(nodeTarHeader(node, path, '5', Number(node.size ?? 0)));
      } else if (node.type === 'symlink') {
        await put(nodeTarHeader(node, path, '2', Number(node.size ?? 0)));
      } else if (node.type === 'file' && layout) {
        await put(nodeTarHeader(node, path, '0', layout.size));
        await contents.writeFile(entry);
        summary.bytes += layout.size;
        const pad = (BLOCK - (layout.size % BLOCK)) % BLOCK;
        if (pad > 0) await put(ZEROS.subarray(0, pad));
      } else if (options.specials === 'regular') {
        await put(nodeTarHeader(node, path, '0', 0));
      } else {
        const flag = { chardev: '3', dev: '4', fifo: '6' }[node.type as string];
        if (flag === undefined) continue; // sockets and irregular files have no tar form worth restoring
        await put(nodeTarHeader(node, path, flag, 0));
      }
      summary.entries++;
    }
  } catch (e) {
    contents.close();
    throw e;
  }
  await put(ZEROS);
  await sink.flush();
  return summary;
}

/** The fields of one tar entry, as Go's tar.Header holds them (strings as bytes). */
export interface TarFields {
  name: Buffer;
  /** '0', '2', '5', … */
  flag: string;
  /** Permission bits with setuid (0o4000), setgid (0o2000) and sticky (0o1000). */
  mode: number;
  uid: number;
  gid: number;
  uname: Buffer;
  gname: Buffer;
  size: number;
  /** Seconds since 1970. */
  mtime: number;
  linkname: Buffer;
  devmajor: number;
  devminor: number;
  /** Further PAX records (key, value); any makes the entry PAX. */
  records?: Array<[Buffer, Buffer]>;
}

/** The header block(s) of a node's entry. */
export function nodeTarHeader(node: TreeNode, path: Buffer, flag: string, size: number): Buffer {
  let devmajor = 0;
  let devminor = 0;
  if ((flag === '3' || flag === '4') && (node.type === 'dev' || node.type === 'chardev')) {
    const dev = BigInt(node.device ?? 0);
    devmajor = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
    devminor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  }
  return tarHeader({
    name: path,
    flag,
    mode: posixPermissionsFromGo(node.mode),
    uid: node.uid ?? 0,
    gid: node.gid ?? 0,
    uname: goStringToBytes(node.user ?? ''),
    gname: goStringToBytes(node.group ?? ''),
    size,
    mtime: tarSeconds(node.mtime),
    linkname: node.type === 'symlink' ? Buffer.from(node.linktargetRaw ?? nodeNameToBytes(node.linktarget ?? '')) : Buffer.alloc(0),
    devmajor,
    devminor,
    records: xattrRecords(node),
  });
}

/** A time as a tar header holds it: rounded to the nearest second (halves up); the zero time is 0. */
export function tarSeconds(t: GoTime): number {
  if (isZeroGoTime(t)) return 0;
  const ns = t.epochNs;
  let s = ns / 1_000_000_000n;
  if (s * 1_000_000_000n > ns) s -= 1n; // floor for times before 1970
  if (ns - s * 1_000_000_000n >= 500_000_000n) s += 1n;
  return Number(s);
}

/** PAX records for a node's extended attributes: POSIX ACLs as text, the others as they are. */
function xattrRecords(node: TreeNode): Array<[Buffer, Buffer]> | undefined {
  if (!node.extendedAttributes || node.extendedAttributes.length === 0) return undefined;
  const records = new Map<string, [Buffer, Buffer]>();
  for (const attr of node.extendedAttributes) {
    const name = goStringToBytes(attr.name);
    const plain = name.toString('latin1');
    const acl = plain === 'system.posix_acl_access' ? 'SCHILY.acl.access' : plain === 'system.posix_acl_default' ? 'SCHILY.acl.default' : undefined;
    let key: Buffer;
    let value: Buffer;
    if (acl) {
      const text = linuxAclText(attr.value);
      if (text === undefined) continue; // restic skips an ACL it cannot read
      key = Buffer.from(acl);
      value = Buffer.from(text);
    } else {
      key = Buffer.concat([Buffer.from('SCHILY.xattr.'), name]);
      value = Buffer.from(attr.value);
    }
    // A key with '=' or NUL has no PAX form (Go refuses the header); such an attribute is left out.
    if (key.includes(0x3d) || key.includes(0)) continue;
    records.set(key.toString('latin1'), [key, value]);
  }
  return [...records.values()];
}

/**
 * A Linux POSIX ACL (the system.posix_acl_* attribute: version 2, then 8-byte entries of tag,
 * permissions and ID) in the POSIX.1e long text form, one entry a line, IDs in decimal;
 * undefined when it is not one.
 */
export function linuxAclText(raw: Uint8Array): string | undefined {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
  if (b.length < 4 || (b.length - 4) % 8 !== 0 || b.readUInt32LE(0) !== 2) return undefined;
  let text = '';
  for (let at = 4; at < b.length; at += 8) {
    const tag = b.readUInt16LE(at);
    const perm = b.readUInt16LE(at + 2);
    const id = b.readUInt32LE(at + 4);
    const who = ({ 0x01: 'user:', 0x02: `user:${id}`, 0x04: 'group:', 0x08: `group:${id}`, 0x10: 'mask:', 0x20: 'other:' } as Record<number, string>)[tag];
    if (who === undefined) return undefined;
    text += `${who}:${perm & 4 ? 'r' : '-'}${perm & 2 ? 'w' : '-'}${perm & 1 ? 'x' : '-'}\n`;
  }
  return text;
}

const BASIC_KEYS = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname', 'mtime', 'atime', 'ctime']);

/**
 * The header block(s) of one entry, as Go's tar.Writer.WriteHeader writes them for a header of
 * no particular format: ustar when it can hold every field, else a PAX extended header
 * (`dir/PaxHeaders.0/name`) with the records, then the main header with what fits.
 */
export function tarHeader(f: TarFields): Buffer {
  const pax = new Map<string, Buffer>();
  let ustar = true;
  const text = (value: Buffer, width: number, key: string) => {
    if (value.length > width || !isAscii(value)) {
      if (key !== 'path' || !splitUstarPath(value)) ustar = false;
      pax.set(key, value);
    }
  };
  const number = (n: number, width: number, key: string) => {
    if (!fitsOctal(n, width)) {
      ustar = false;
      pax.set(key, Buffer.from(String(n)));
    }
  };
  text(f.name, 100, 'path');
  text(f.linkname, 100, 'linkpath');
  text(f.uname, 32, 'uname');
  text(f.gname, 32, 'gname');
  number(f.uid, 8, 'uid');
  number(f.gid, 8, 'gid');
  number(f.size, 12, 'size');
  number(f.mtime, 12, 'mtime');
  if (f.records && f.records.length > 0) {
    ustar = false;
    for (const [k, v] of f.records) {
      const key = k.toString('latin1');
      if (!pax.has(key) && !BASIC_KEYS.has(key) && !key.startsWith('GNU.sparse.')) pax.set(key, v);
    }
  }
  if (ustar) {
    const split = splitUstarPath(f.name);
    const b = mainBlock(f, split ? split.name : f.name, (x) => x);
    if (split) putString(b, 345, 155, split.prefix);
    return seal(b);
  }
  const body = Buffer.concat(
    [...pax.entries()]
      .map(([k, v]) => [Buffer.from(k, 'latin1'), v] as const)
      .sort((a, b) => Buffer.compare(a[0], b[0]))
      .map(([k, v]) => paxRecord(k, v)),
  );
  const blocks: Buffer[] = [];
  if (body.length > 0) {
    const x = Buffer.alloc(BLOCK);
    let name = toAscii(paxHeaderName(f.name));
    if (name.length > 100) name = name.subarray(0, 100);
    let end = name.length;
    while (end > 0 && name[end - 1] === 0x2f) end--;
    putString(x, 0, 100, name.subarray(0, end));
    putOctal(x, 100, 8, 0);
    putOctal(x, 108, 8, 0);
    putOctal(x, 116, 8, 0);
    putOctal(x, 124, 12, body.length);
    putOctal(x, 136, 12, 0);
    x.write('x', 156, 'latin1');
    blocks.push(seal(x), body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK));
  }
  blocks.push(seal(mainBlock(f, f.name, toAscii)));
  return Buffer.concat(blocks);
}

/** The fields every header has (Go's templateV7Plus); numbers too large for octal become 0. */
function mainBlock(f: TarFields, name: Buffer, str: (b: Buffer) => Buffer): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.flag, 156, 1, 'latin1');
  putString(b, 0, 100, str(name));
  putString(b, 157, 100, str(f.linkname));
  putOctal(b, 100, 8, f.mode);
  putOctal(b, 108, 8, f.uid);
  putOctal(b, 116, 8, f.gid);
  putOctal(b, 124, 12, f.size);
  putOctal(b, 136, 12, f.mtime);
  putString(b, 265, 32, str(f.uname));
  putString(b, 297, 32, str(f.gname));
  putOctal(b, 329, 8, f.devmajor);
  putOctal(b, 337, 8, f.devminor);
  return b;
}

/** The ustar magic and the checksum (six octal digits, NUL, space; the field counted as spaces). */
function seal(b: Buffer): Buffer {
  b.write('ustar\x0000', 257, 8, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\x00 ', 148, 8, 'latin1');
  return b;
}

/** Copies what fits, NUL-terminated when shorter; a cut path never ends in '/'. */
function putString(b: Buffer, at: number, width: number, s: Buffer): void {
  s.copy(b, at, 0, width);
  if (s.length < width) b[at + s.length] = 0;
  if (s.length > width && b[at + width - 1] === 0x2f) {
    let n = width - 1;
    while (n > 0 && s[n - 1] === 0x2f) n--;
    b[at + n] = 0;
  }
}

function putOctal(b: Buffer, at: number, width: number, n: number): void {
  const v = fitsOctal(n, width) ? n : 0;
  putString(b, at, width, Buffer.from(v.toString(8).padStart(width - 1, '0'), 'latin1'));
}

function fitsOctal(n: number, width: number): boolean {
  return n >= 0 && Number.isSafeInteger(n) && (width >= 22 || n < 8 ** (width - 1));
}

/** ASCII without NUL (what a ustar field may hold as it is). */
function isAscii(b: Buffer): boolean {
  for (const c of b) if (c >= 0x80 || c === 0) return false;
  return true;
}

/** The ASCII bytes of b (others dropped), as Go's best effort for a field. */
function toAscii(b: Buffer): Buffer {
  return isAscii(b) ? b : Buffer.from(b.filter((c) => c < 0x80 && c !== 0));
}

/** A path longer than 100 bytes as ustar's prefix (≤ 155) and name (≤ 100), split at a '/'. */
function splitUstarPath(name: Buffer): { prefix: Buffer; name: Buffer } | undefined {
  let length = name.length;
  if (length <= 100 || !isAscii(name)) return undefined;
  if (length > 156) length = 156;
  else if (name[length - 1] === 0x2f) length--;
  const i = name.subarray(0, length).lastIndexOf(0x2f);
  const nlen = name.length - i - 1;
  if (i <= 0 || nlen > 100 || nlen === 0 || i > 155) return undefined;
  return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
}

/** "dir/PaxHeaders.0/file" for "dir/file" ("dir/PaxHeaders.0" for the folder "dir/"). */
function paxHeaderName(path: Buffer): Buffer {
  const cut = path.lastIndexOf(0x2f) + 1;
  const file = path.subarray(cut);
  return Buffer.concat([path.subarray(0, cut), Buffer.from(file.length > 0 ? 'PaxHeaders.0/' : 'PaxHeaders.0'), file]);
}

/** "<len> key=value\n", where len counts the whole record including its own digits. */
function paxRecord(key: Buffer, value: Buffer): Buffer {
  const rest = key.length + value.length + 3;
  let len = rest + String(rest).length;
  if (String(len).length + rest !== len) len = String(len).length + rest;
  return Buffer.concat([Buffer.from(`${len} `), key, Buffer.from('='), value, Buffer.from('\n')]);
}
