// Compares two directory trees entry by entry, including everything a faithful backup
// and restore must keep: names as raw bytes, file type, permission and special mode bits,
// owner, mtime to the nanosecond (symlinks too), content, link targets, device numbers,
// extended attributes and which paths are hard links of each other. atime and ctime are
// never compared: reading and restoring change them.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, readdir, readlink } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { NotFoundError, StowageError } from '../../src/errors.ts';

export interface CompareOptions {
  /** Do not compare the mode, owner, mtime and xattrs of the two roots themselves. */
  ignoreRootMetadata?: boolean;
  /** Do not compare directory mtimes. */
  ignoreDirMtimes?: boolean;
  /** Do not compare uid and gid. */
  ignoreOwnership?: boolean;
  /** Do not compare extended attributes (and do not need getfattr). */
  ignoreXattrs?: boolean;
  /** Do not compare which paths share an inode. */
  ignoreHardLinks?: boolean;
  /** Leave an entry (and, for a directory, everything below it) out of the comparison. */
  exclude?: (relPath: string, rawRelPath: Buffer) => boolean;
}

type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket' | 'unknown';

interface Entry {
  rel: Buffer;
  type: EntryType;
  stat: BigIntStats;
  sha256?: string;
  target?: Buffer;
}

/**
 * Differences between the trees at `a` and `b`, one human-readable line each; an empty
 * list means they are identical for everything compared.
 */
export async function compareTrees(a: string, b: string, opts: CompareOptions = {}): Promise<string[]> {
  const [left, right] = await Promise.all([scan(a, opts), scan(b, opts)]);
  const [xa, xb] = opts.ignoreXattrs ? [new Map(), new Map()] : await Promise.all([readXattrs(a), readXattrs(b)]);
  const diffs: string[] = [];

  const keys = new Set([...left.keys(), ...right.keys()]);
  for (const key of [...keys].sort()) {
    const ea = left.get(key);
    const eb = right.get(key);
    const name = ea ? show(ea.rel) : show(eb!.rel);
    if (!ea || !eb) {
      diffs.push(`${name}: only in ${ea ? 'a' : 'b'}`);
      continue;
    }
    if (ea.type !== eb.type) {
      diffs.push(`${name}: type ${ea.type} != ${eb.type}`);
      continue;
    }
    const isRoot = ea.rel.length === 0;
    if (!(isRoot && opts.ignoreRootMetadata)) {
      compareMetadata(name, ea, eb, opts, diffs);
      if (!opts.ignoreXattrs) compareXattrs(name, xa.get(key), xb.get(key), diffs);
    }
    compareContent(name, ea, eb, diffs);
  }

  if (!opts.ignoreHardLinks) compareHardLinks(left, right, diffs);
  return diffs;
}

function compareMetadata(name: string, ea: Entry, eb: Entry, opts: CompareOptions, diffs: string[]): void {
  const sa = ea.stat;
  const sb = eb.stat;
  const modeA = Number(sa.mode & 0o7777n);
  const modeB = Number(sb.mode & 0o7777n);
  if (modeA !== modeB) diffs.push(`${name}: mode ${octal(modeA)} != ${octal(modeB)}`);
  if (!opts.ignoreOwnership && (sa.uid !== sb.uid || sa.gid !== sb.gid)) {
    diffs.push(`${name}: owner ${sa.uid}:${sa.gid} != ${sb.uid}:${sb.gid}`);
  }
  if (!(ea.type === 'dir' && opts.ignoreDirMtimes) && sa.mtimeNs !== sb.mtimeNs) {
    diffs.push(`${name}: mtime ${nsTime(sa.mtimeNs)} != ${nsTime(sb.mtimeNs)}`);
  }
  if ((ea.type === 'chardev' || ea.type === 'blockdev') && sa.rdev !== sb.rdev) {
    diffs.push(`${name}: device ${device(sa.rdev)} != ${device(sb.rdev)}`);
  }
}

function compareContent(name: string, ea: Entry, eb: Entry, diffs: string[]): void {
  if (ea.type === 'file' && (ea.stat.size !== eb.stat.size || ea.sha256 !== eb.sha256)) {
    diffs.push(`${name}: content ${ea.stat.size} bytes sha256 ${ea.sha256?.slice(0, 16)} != ${eb.stat.size} bytes sha256 ${eb.sha256?.slice(0, 16)}`);
  }
  if (ea.type === 'symlink' && !ea.target!.equals(eb.target!)) {
    diffs.push(`${name}: symlink target ${show(ea.target!)} != ${show(eb.target!)}`);
  }
}

function compareXattrs(name: string, xa: Map<string, string> | undefined, xb: Map<string, string> | undefined, diffs: string[]): void {
  const attrNames = new Set([...(xa?.keys() ?? []), ...(xb?.keys() ?? [])]);
  for (const attr of [...attrNames].sort()) {
    const va = xa?.get(attr);
    const vb = xb?.get(attr);
    if (va === vb) continue;
    if (va === undefined || vb === undefined) diffs.push(`${name}: xattr ${attr} only in ${va === undefined ? 'b' : 'a'}`);
    else diffs.push(`${name}: xattr ${attr} 0x${va.slice(0, 64)} != 0x${vb.slice(0, 64)}`);
  }
}

// Paths that are hard links of each other in one tree must be exactly that in the other.
// Groups are compared by their member paths, so inode numbers never leak into the result;
// all mismatching groups that overlap are reported together as one line.
function compareHardLinks(left: Map<string, Entry>, right: Map<string, Entry>, diffs: string[]): void {
  const groupsA = linkGroups(left, right);
  const groupsB = linkGroups(right, left);
  const component = new Map<string, string>(); // union-find over the mismatching paths
  const find = (k: string): string => {
    let r = k;
    while (component.get(r) !== r) r = component.get(r)!;
    component.set(k, r);
    return r;
  };
  for (const [key, ga] of groupsA) {
    const gb = groupsB.get(key)!;
    if (ga.join('\0') === gb.join('\0')) continue;
    for (const k of [...ga, ...gb]) if (!component.has(k)) component.set(k, k);
    for (const k of [...ga, ...gb]) component.set(find(k), find(key));
  }
  const members = new Map<string, string[]>();
  for (const k of component.keys()) members.set(find(k), [...(members.get(find(k)) ?? []), k]);

  const name = (k: string): string => show(left.get(k)!.rel);
  const describe = (groups: Map<string, string[]>, keys: string[]): string => {
    const distinct = new Map(keys.map((k) => [groups.get(k)!.join('\0'), groups.get(k)!]));
    return [...distinct.values()].sort().map((g) => `[${g.map(name).join(', ')}]`).join(' ');
  };
  for (const keys of [...members.values()].map((m) => m.sort()).sort()) {
    diffs.push(`${name(keys[0])}: hard links in a ${describe(groupsA, keys)} != in b ${describe(groupsB, keys)}`);
  }
}

/** For each non-directory in both trees: the sorted keys of the paths sharing its inode in `tree`. */
function linkGroups(tree: Map<string, Entry>, other: Map<string, Entry>): Map<string, string[]> {
  const byInode = new Map<string, string[]>();
  for (const [key, e] of tree) {
    if (e.type === 'dir' || !other.has(key)) continue;
    const inode = `${e.stat.dev}:${e.stat.ino}`;
    const group = byInode.get(inode) ?? [];
    group.push(key);
    byInode.set(inode, group);
  }
  const result = new Map<string, string[]>();
  for (const group of byInode.values()) {
    group.sort();
    for (const key of group) result.set(key, group);
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Reading a tree

async function scan(root: string, opts: CompareOptions): Promise<Map<string, Entry>> {
  const entries = new Map<string, Entry>();
  const rootStat = await lstat(root, { bigint: true }).catch((err: unknown) => {
    throw new NotFoundError(`tree ${root}`, { cause: err });
  });
  if (!rootStat.isDirectory()) throw new StowageError('INVALID_INPUT', `tree ${root} is not a directory`);
  const rootRaw = Buffer.from(resolve(root));

  const visit = async (rel: Buffer): Promise<void> => {
    const abs = rel.length === 0 ? rootRaw : Buffer.concat([rootRaw, Buffer.from('/'), rel]);
    if (rel.length > 0 && opts.exclude?.(rel.toString('utf8'), rel)) return;
    const stat = await lstat(abs, { bigint: true });
    const entry: Entry = { rel, type: typeOf(stat), stat };
    if (entry.type === 'file') entry.sha256 = await hashFile(abs, stat);
    if (entry.type === 'symlink') entry.target = await readlink(abs, { encoding: 'buffer' });
    entries.set(keyOf(rel), entry);
    if (entry.type !== 'dir') return;
    for (const name of await readdir(abs, { encoding: 'buffer' })) {
      await visit(rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]));
    }
  };
  await visit(Buffer.alloc(0));
  return entries;
}

// Keys sort like the paths' bytes and are safe as Map keys for any name.
function keyOf(rel: Buffer): string {
  return rel.toString('hex');
}

function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

async function hashFile(path: Buffer, stat: BigIntStats): Promise<string> {
  try {
    return await hashStream(path);
  } catch (err) {
    // A non-root owner cannot read its own mode-0000 file: lend it read access briefly
    // (this touches only ctime, which is not compared).
    if ((err as NodeJS.ErrnoException).code !== 'EACCES' || BigInt(process.getuid?.() ?? -1) !== stat.uid) throw err;
    await chmod(path, Number(stat.mode & 0o7777n) | 0o400);
    try {
      return await hashStream(path);
    } finally {
      await chmod(path, Number(stat.mode & 0o7777n));
    }
  }
}

function hashStream(path: Buffer): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('error', reject)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolvePromise(hash.digest('hex')));
  });
}

/**
 * All extended attributes in the tree, keyed like scan's entries: one getfattr run dumps
 * the whole tree (without following symlinks), values hex-encoded.
 */
async function readXattrs(root: string): Promise<Map<string, Map<string, string>>> {
  const rootAbs = resolve(root);
  const out = await new Promise<Buffer>((resolvePromise, reject) => {
    execFile(
      'getfattr',
      ['--recursive', '--dump', '--match=-', '--encoding=hex', '--absolute-names', '--no-dereference', rootAbs],
      { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new NotFoundError('getfattr (install the "attr" package, or pass ignoreXattrs)', { cause: err }));
        } else if (err) {
          reject(new StowageError('INVALID_INPUT', `getfattr on tree ${rootAbs} failed: ${stderr.toString().trim()}`, { cause: err }));
        } else resolvePromise(stdout);
      },
    );
  });

  const result = new Map<string, Map<string, string>>();
  const rootBytes = Buffer.from(rootAbs);
  let current: Map<string, string> | undefined;
  for (const line of splitLines(out)) {
    if (line.length === 0) {
      current = undefined;
    } else if (line.subarray(0, 8).toString('latin1') === '# file: ') {
      const path = unescapeGetfattr(line.subarray(8));
      const rel = path.equals(rootBytes) ? Buffer.alloc(0) : path.subarray(rootBytes.length + 1);
      current = new Map();
      result.set(keyOf(rel), current);
    } else if (current) {
      // name=0xHEX; an empty value may print as name=0x or as a bare name.
      const eq = line.indexOf(0x3d);
      const attrName = unescapeGetfattr(eq < 0 ? line : line.subarray(0, eq)).toString('utf8');
      const value = eq < 0 ? '' : line.subarray(eq + 1).toString('latin1').replace(/^0x/, '');
      current.set(attrName, value);
    }
  }
  return result;
}

function splitLines(buf: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a, start)) {
    lines.push(buf.subarray(start, i));
    start = i + 1;
  }
  if (start < buf.length) lines.push(buf.subarray(start));
  return lines;
}

// getfattr writes control characters, backslash and '=' as \ooo octal escapes and every
// other byte as it is.
function unescapeGetfattr(bytes: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const octal = bytes.subarray(i + 1, i + 4).toString('latin1');
    if (bytes[i] === 0x5c && /^[0-7]{3}$/.test(octal)) {
      out.push(parseInt(octal, 8));
      i += 3;
    } else {
      out.push(bytes[i]);
    }
  }
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------
// Formatting

/** A path for messages: JSON-quoted when it is UTF-8, with \xNN escapes when it is not. */
function show(rel: Buffer): string {
  if (rel.length === 0) return '(root)';
  const text = rel.toString('utf8');
  if (Buffer.from(text).equals(rel)) return JSON.stringify(text);
  return `"${[...rel].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('')}"`;
}

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(4, '0')}`;
}

function nsTime(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  const neg = ns < 0n && frac !== 0n;
  // Floor division, so negative times read as seconds plus a positive fraction.
  const s = neg ? sec - 1n : sec;
  const f = neg ? frac + 1_000_000_000n : frac;
  return `${s}.${String(f).padStart(9, '0')}`;
}

function device(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}
