// restic stores a node's mode as Go's os.FileMode, whose bit layout is not POSIX st_mode: the file
// type and the setuid/setgid/sticky bits live in the top bits, only the nine permission bits are
// where POSIX has them. Values here are unsigned 32-bit numbers (ModeDir is 2^31), so every
// bit operation ends in `>>> 0`.
import type { NodeType } from './node.ts';

export const GO_MODE_DIR = 0x8000_0000; // d
export const GO_MODE_APPEND = 0x4000_0000; // a
export const GO_MODE_EXCLUSIVE = 0x2000_0000; // l
export const GO_MODE_TEMPORARY = 0x1000_0000; // T
export const GO_MODE_SYMLINK = 0x0800_0000; // L
export const GO_MODE_DEVICE = 0x0400_0000; // D
export const GO_MODE_NAMED_PIPE = 0x0200_0000; // p
export const GO_MODE_SOCKET = 0x0100_0000; // S
export const GO_MODE_SETUID = 0x0080_0000; // u
export const GO_MODE_SETGID = 0x0040_0000; // g
export const GO_MODE_CHAR_DEVICE = 0x0020_0000; // c (always together with GO_MODE_DEVICE)
export const GO_MODE_STICKY = 0x0010_0000; // t
export const GO_MODE_IRREGULAR = 0x0008_0000; // ?
export const GO_MODE_PERM = 0o777;

/** Go's os.ModeType: the bits that say what kind of file it is. */
export const GO_MODE_TYPE =
  (GO_MODE_DIR | GO_MODE_SYMLINK | GO_MODE_NAMED_PIPE | GO_MODE_SOCKET | GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE | GO_MODE_IRREGULAR) >>> 0;

/** What restic keeps of a FileMode: permissions, type, setuid, setgid, sticky. */
export const RESTIC_MODE_MASK = (GO_MODE_PERM | GO_MODE_TYPE | GO_MODE_SETUID | GO_MODE_SETGID | GO_MODE_STICKY) >>> 0;

// POSIX st_mode
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;

/** Drops the bits restic does not store (append, exclusive, temporary). */
export function maskGoMode(goMode: number): number {
  return (goMode & RESTIC_MODE_MASK) >>> 0;
}

/**
 * A POSIX st_mode (fs.Stats.mode) as the FileMode Go's os.Lstat reports on Linux, already masked
 * as restic stores it. An unknown S_IFMT gives no type bits, as in Go (it then reads as a file).
 */
export function goModeFromPosix(stMode: number): number {
  let m = stMode & GO_MODE_PERM;
  switch (stMode & S_IFMT) {
    case S_IFBLK: m |= GO_MODE_DEVICE; break;
    case S_IFCHR: m |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE; break;
    case S_IFDIR: m |= GO_MODE_DIR; break;
    case S_IFIFO: m |= GO_MODE_NAMED_PIPE; break;
    case S_IFLNK: m |= GO_MODE_SYMLINK; break;
    case S_IFSOCK: m |= GO_MODE_SOCKET; break;
  }
  if (stMode & S_ISGID) m |= GO_MODE_SETGID;
  if (stMode & S_ISUID) m |= GO_MODE_SETUID;
  if (stMode & S_ISVTX) m |= GO_MODE_STICKY;
  return m >>> 0;
}

/** The node type restic derives from a FileMode's type bits; undefined for a combination it does not know. */
export function nodeTypeFromGoMode(goMode: number): NodeType | undefined {
  switch ((goMode & GO_MODE_TYPE) >>> 0) {
    case 0: return 'file';
    case GO_MODE_DIR: return 'dir';
    case GO_MODE_SYMLINK: return 'symlink';
    case (GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE) >>> 0: return 'chardev';
    case GO_MODE_DEVICE: return 'dev';
    case GO_MODE_NAMED_PIPE: return 'fifo';
    case GO_MODE_SOCKET: return 'socket';
    case GO_MODE_IRREGULAR: return 'irregular';
    default: return undefined;
  }
}

/**
 * The node type of a POSIX st_mode, through the FileMode Go would report; so an unknown S_IFMT
 * reads as 'file', as in restic.
 */
export function nodeTypeFromPosix(stMode: number): NodeType {
  return nodeTypeFromGoMode(goModeFromPosix(stMode)) ?? 'file';
}

/** goModeFromPosix for an fs.Stats or fs.BigIntStats. */
export function goModeFromStat(st: { mode: number | bigint }): number {
  return goModeFromPosix(Number(st.mode));
}

/** nodeTypeFromPosix for an fs.Stats or fs.BigIntStats. */
export function nodeTypeFromStat(st: { mode: number | bigint }): NodeType {
  return nodeTypeFromPosix(Number(st.mode));
}

const POSIX_TYPE_OF_NODE: Record<NodeType, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  dev: S_IFBLK,
  chardev: S_IFCHR,
  fifo: S_IFIFO,
  socket: S_IFSOCK,
  irregular: 0,
};

/**
 * The permission part of a FileMode as POSIX bits (0o7777): what restore passes to chmod. Like
 * Go's os.Chmod, setuid/setgid/sticky move to 04000/02000/01000.
 */
export function posixPermissionsFromGo(goMode: number): number {
  let m = goMode & GO_MODE_PERM;
  if (goMode & GO_MODE_SETUID) m |= S_ISUID;
  if (goMode & GO_MODE_SETGID) m |= S_ISGID;
  if (goMode & GO_MODE_STICKY) m |= S_ISVTX;
  return m;
}

/** The chmod part (permissions, setuid, setgid, sticky) of a POSIX st_mode. */
export function permissionBits(posixMode: number): number {
  return posixMode & 0o7777;
}

/**
 * A full POSIX st_mode for a FileMode. The type comes from `type` when given (restic trusts the
 * node type: old trees store directories without the dir bit), else from the mode's type bits.
 * An irregular file, or type bits that name nothing, give no S_IFMT bits.
 */
export function posixModeFromGo(goMode: number, type?: NodeType): number {
  const t = type ?? nodeTypeFromGoMode(goMode);
  return (t === undefined ? 0 : POSIX_TYPE_OF_NODE[t]) | posixPermissionsFromGo(goMode);
}

/** The FileMode restic writes for a node of this type with these POSIX permission bits (0o7777). */
export function goModeForNode(type: NodeType, posixPermissions: number): number {
  const typeBits = type === 'irregular' ? GO_MODE_IRREGULAR : goModeFromPosix(POSIX_TYPE_OF_NODE[type]) & ~GO_MODE_PERM;
  return (goModeFromPosix(posixPermissions & 0o7777) | typeBits) >>> 0;
}

/** Go's FileMode.String(), e.g. "drwxr-xr-x", "Lrwxrwxrwx", "Dcrw-r--r--", "ugrwxr-xr-x" (setuid+setgid). */
export function formatGoFileMode(goMode: number): string {
  const letters = 'dalTLDpSugct?';
  let s = '';
  for (let i = 0; i < letters.length; i++) {
    if (goMode & (0x8000_0000 >>> i)) s += letters[i];
  }
  if (s === '') s = '-';
  const rwx = 'rwxrwxrwx';
  for (let i = 0; i < 9; i++) s += goMode & (1 << (8 - i)) ? rwx[i] : '-';
  return s;
}
