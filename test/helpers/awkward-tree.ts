// Builds a directory tree full of the things backup tools get wrong: chunker size edges,
// shifted and duplicated content, hostile file names, deep paths, every file type,
// special mode bits, foreign owners, nanosecond and out-of-range mtimes, binary xattrs and
// hard links. The same seed always gives the same tree (contents, names, metadata), so
// two trees can be compared with compareTrees.

import { createCipheriv, createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { chmod, chown, lchown, link, mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { InvalidInputError, StowageError } from '../../src/errors.ts';

const execFileP = promisify(execFile);

export type AwkwardFeature =
  | 'sizes' // files at restic's chunker size edges (512 KiB min, 8 MiB max)
  | 'dedup' // shifted copy, duplicates, a run of zeros
  | 'names' // unicode and shell-hostile names that are valid UTF-8
  | 'invalid-utf8' // a file name and a symlink target that are not UTF-8
  | 'deep' // 30 nested directories
  | 'empty-dir'
  | 'symlinks'
  | 'hardlinks'
  | 'fifo'
  | 'devices' // a char and a block device (root only)
  | 'socket' // a unix socket; off unless asked for, restic does not restore sockets
  | 'modes' // 0000…0755, setuid, setgid, sticky
  | 'owners' // foreign uid/gid and a named user (root only)
  | 'times' // mtimes in 1970, before 1970, around 2038 and in 2100
  | 'xattrs'; // user.* attributes with text, binary and empty values

export const AWKWARD_FEATURES: readonly AwkwardFeature[] = [
  'sizes', 'dedup', 'names', 'invalid-utf8', 'deep', 'empty-dir', 'symlinks', 'hardlinks',
  'fifo', 'devices', 'socket', 'modes', 'owners', 'times', 'xattrs',
];

export interface AwkwardTreeOptions {
  seed: number | string;
  /** Features to leave out, e.g. ['invalid-utf8'] for a tool that cannot store such names. */
  skip?: readonly AwkwardFeature[];
  /** Also create a unix socket (default false: restic backs sockets up but never restores them). */
  socket?: boolean;
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';

export interface ManifestEntry {
  /** Path relative to the tree root, '/'-separated; names that are not UTF-8 show U+FFFD here. */
  path: string;
  /** The exact bytes of the relative path. */
  rawPath: Buffer;
  type: EntryType;
  /** Permission bits including setuid (04000), setgid (02000) and sticky (01000). */
  mode: number;
  /** Set only for entries whose owner was changed; the others belong to the creating user. */
  uid?: number;
  gid?: number;
  mtimeNs: bigint;
  size?: number;
  sha256?: string;
  /** Symlink target (raw bytes in targetRaw when not UTF-8). */
  target?: string;
  targetRaw?: Buffer;
  rdev?: { major: number; minor: number };
  xattrs?: Record<string, Buffer>;
  /** For a hard link: the path of the first link to the same inode. */
  hardLinkTo?: string;
  feature: AwkwardFeature;
}

export interface Manifest {
  root: string;
  seed: string;
  entries: ManifestEntry[];
  /** Features that were asked for but could not be created here, with the reason. */
  skipped: { feature: AwkwardFeature; reason: string }[];
  /** Bytes in regular files, counting each hard-linked inode once. */
  totalFileBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

interface Spec {
  rel: Buffer;
  type: EntryType;
  feature: AwkwardFeature;
  mode: number;
  content?: Buffer;
  target?: Buffer;
  rdev?: { major: number; minor: number };
  owner?: { uid: number; gid: number };
  xattrs?: [string, Buffer][];
  hardLinkTo?: Buffer;
  mtimeNs: bigint;
}

/** Deterministic bytes and numbers derived from the seed and a label, independent of call order. */
class SeededSource {
  readonly seed: string;
  constructor(seed: string) {
    this.seed = seed;
  }
  private digest(label: string): Buffer {
    return createHash('sha256').update(`stowage-awkward\0${this.seed}\0${label}`).digest();
  }
  /** `n` pseudo-random bytes: an AES-256-CTR keystream keyed by the seed and label. */
  bytes(label: string, n: number): Buffer {
    const cipher = createCipheriv('aes-256-ctr', this.digest(label), Buffer.alloc(16));
    return Buffer.concat([cipher.update(Buffer.alloc(n)), cipher.final()]);
  }
  /** A pseudo-random integer in [0, n) for n < 2^48. */
  below(label: string, n: number): number {
    return Number(this.digest(label).readUIntBE(0, 6) % n);
  }
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Creates the awkward tree inside `dir` (which must exist and should be empty) and returns
 * what it made. `dir`'s own mtime is set too, so two trees compare equal including the root.
 */
export async function makeAwkwardTree(dir: string, opts: AwkwardTreeOptions): Promise<Manifest> {
  const seed = String(opts.seed);
  const src = new SeededSource(seed);
  const wanted = new Set<AwkwardFeature>(AWKWARD_FEATURES.filter((f) => f !== 'socket' || opts.socket));
  for (const f of opts.skip ?? []) wanted.delete(f);
  const skipped: Manifest['skipped'] = [];

  if (!isRoot()) {
    for (const feature of ['devices', 'owners'] as const) {
      if (wanted.delete(feature)) skipped.push({ feature, reason: 'needs root' });
    }
  }
  const nobody = wanted.has('owners') ? await lookupUser('nobody') : undefined;

  const specs = planTree(src, wanted, nobody);
  const made = await createTree(dir, specs, skipped);

  const entries = made.map(toManifestEntry);
  let totalFileBytes = 0;
  for (const e of entries) if (e.type === 'file' && !e.hardLinkTo) totalFileBytes += e.size ?? 0;
  return { root: dir, seed, entries, skipped, totalFileBytes };
}

// ---------------------------------------------------------------------------------------
// What the tree contains

function planTree(src: SeededSource, wanted: Set<AwkwardFeature>, nobody: { uid: number; gid: number } | undefined): Spec[] {
  const specs: Spec[] = [];
  const defaultMtime = (rel: Buffer): bigint => {
    // Between 2000 and 2030, with a nanosecond part that is never zero.
    const sec = 946_684_800 + src.below(`mtime-s ${rel.toString('hex')}`, 30 * 365 * 86_400);
    const ns = 1 + src.below(`mtime-ns ${rel.toString('hex')}`, 999_999_999);
    return BigInt(sec) * 1_000_000_000n + BigInt(ns);
  };
  const add = (feature: AwkwardFeature, path: string | Buffer, type: EntryType, extra: Partial<Spec> = {}): void => {
    const rel = typeof path === 'string' ? Buffer.from(path) : path;
    const mode = type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644;
    specs.push({ rel, type, feature, mode, mtimeNs: defaultMtime(rel), ...extra });
  };
  const file = (feature: AwkwardFeature, path: string | Buffer, content: Buffer, extra: Partial<Spec> = {}): void =>
    add(feature, path, 'file', { content, ...extra });
  const dir = (feature: AwkwardFeature, path: string | Buffer, extra: Partial<Spec> = {}): void => add(feature, path, 'dir', extra);
  const symlinkTo = (feature: AwkwardFeature, path: string, target: string | Buffer): void =>
    add(feature, path, 'symlink', { target: typeof target === 'string' ? Buffer.from(target) : target });
  const hardLink = (feature: AwkwardFeature, path: string, first: Spec): void =>
    add(feature, path, 'file', { content: first.content, mode: first.mode, mtimeNs: first.mtimeNs, hardLinkTo: first.rel });
  const at = (sec: bigint, ns: bigint): bigint => sec * 1_000_000_000n + ns;

  if (wanted.has('sizes')) {
    dir('sizes', 'sizes');
    file('sizes', 'sizes/empty', Buffer.alloc(0));
    file('sizes', 'sizes/one-byte', src.bytes('one-byte', 1));
    file('sizes', 'sizes/512KiB-minus-1', src.bytes('512k-1', 512 * KiB - 1));
    file('sizes', 'sizes/512KiB', src.bytes('512k', 512 * KiB));
    file('sizes', 'sizes/512KiB-plus-1', src.bytes('512k+1', 512 * KiB + 1));
    file('sizes', 'sizes/8MiB-plus-1', src.bytes('8m+1', 8 * MiB + 1));
  }

  if (wanted.has('dedup')) {
    // The shifted copy shares every chunk but the first with the original: content-defined
    // chunking must find the same boundaries after a one-byte insertion.
    const random = src.bytes('random-3m', 3 * MiB + 12_345);
    const dup = src.bytes('duplicate', 100 * KiB + 7);
    dir('dedup', 'dedup');
    file('dedup', 'dedup/random-3MiB', random);
    file('dedup', 'dedup/random-3MiB-shifted', Buffer.concat([Buffer.from([0x5a]), random]));
    file('dedup', 'dedup/duplicate-a.bin', dup);
    dir('dedup', 'dedup/copies');
    file('dedup', 'dedup/copies/duplicate-b.bin', dup);
    file('dedup', 'dedup/copies/duplicate c.bin', dup);
    file('dedup', 'dedup/zeros-2MiB', Buffer.alloc(2 * MiB));
  }

  if (wanted.has('names')) {
    const small = (label: string): Buffer => src.bytes(`name ${label}`, 1 + src.below(`name-size ${label}`, 300));
    dir('names', 'names');
    const names = [
      'ränd.bin', // NFC
      'ra\u0308nd.bin', // the same text in NFD: a different name
      '🦀📦.txt',
      '数据备份.txt',
      'line\nbreak.txt',
      'carriage\rreturn',
      'tab\there',
      'back\\slash.txt',
      'del\x7f.txt',
      'it\'s a "quoted" name.txt',
      '<&>.txt',
      '$HOME `cmd` *?[a].txt',
      '-leading-dash',
      ' leading and trailing spaces ',
      '...',
      'L'.repeat(251) + '.txt', // 255 bytes, the usual NAME_MAX
    ];
    for (const name of names) file('names', `names/${name}`, small(name));
    dir('names', 'names/dïr wíth ünicode');
    file('names', 'names/dïr wíth ünicode/inside.txt', small('inside'));
  }

  if (wanted.has('invalid-utf8')) {
    dir('invalid-utf8', 'invalid-utf8');
    file('invalid-utf8', Buffer.from('invalid-utf8/bad-\xff\xfe-name.bin', 'latin1'), src.bytes('invalid-name', 33));
    file('invalid-utf8', Buffer.from('invalid-utf8/latin1-caf\xe9', 'latin1'), src.bytes('latin1-name', 44));
    add('invalid-utf8', 'invalid-utf8/link-to-bad-target', 'symlink', { target: Buffer.from('bad-\xff-target', 'latin1') });
  }

  if (wanted.has('deep')) {
    let path = 'deep';
    dir('deep', path);
    for (let i = 1; i <= 30; i++) {
      path += `/d${String(i).padStart(2, '0')}`;
      dir('deep', path);
    }
    file('deep', `${path}/leaf.txt`, src.bytes('deep-leaf', 1234));
  }

  if (wanted.has('empty-dir')) dir('empty-dir', 'empty-dir');

  if (wanted.has('symlinks')) {
    dir('symlinks', 'links');
    file('symlinks', 'links/target.txt', src.bytes('link-target', 99));
    symlinkTo('symlinks', 'links/relative', 'target.txt');
    symlinkTo('symlinks', 'links/relative-up', '../links/target.txt');
    symlinkTo('symlinks', 'links/absolute', '/etc/passwd');
    symlinkTo('symlinks', 'links/dangling', '../does/not/exist');
    symlinkTo('symlinks', 'links/self-loop', 'self-loop');
    symlinkTo('symlinks', 'links/unicode-target', 'ränd 🦀.bin');
    symlinkTo('symlinks', 'links/long-target', `${'long/'.repeat(200)}end`);
    dir('symlinks', 'links/a-dir');
    file('symlinks', 'links/a-dir/file.txt', src.bytes('link-dir-file', 10));
    symlinkTo('symlinks', 'links/to-dir', 'a-dir');
  }

  if (wanted.has('hardlinks')) {
    dir('hardlinks', 'hardlinks');
    dir('hardlinks', 'hardlinks/a');
    dir('hardlinks', 'hardlinks/b');
    file('hardlinks', 'hardlinks/a/three-links', src.bytes('hardlink', 70 * KiB + 3), { mode: 0o640 });
    const first = specs[specs.length - 1];
    hardLink('hardlinks', 'hardlinks/b/second-link', first);
    hardLink('hardlinks', 'hardlinks/third link', first);
    file('hardlinks', 'hardlinks/empty-1', Buffer.alloc(0));
    hardLink('hardlinks', 'hardlinks/empty-2', specs[specs.length - 1]);
  }

  if (wanted.has('fifo') || wanted.has('devices') || wanted.has('socket')) {
    const feature = wanted.has('fifo') ? 'fifo' : wanted.has('devices') ? 'devices' : 'socket';
    dir(feature, 'special');
  }
  if (wanted.has('fifo')) add('fifo', 'special/fifo', 'fifo', { mode: 0o620 });
  if (wanted.has('devices')) {
    add('devices', 'special/char-null', 'chardev', { rdev: { major: 1, minor: 3 }, mode: 0o666 });
    add('devices', 'special/block-loop200', 'blockdev', { rdev: { major: 7, minor: 200 }, mode: 0o660 });
  }
  if (wanted.has('socket')) add('socket', 'special/socket', 'socket', { mode: 0o755 });

  if (wanted.has('modes')) {
    dir('modes', 'modes');
    for (const mode of [0o600, 0o755, 0o444, 0o000, 0o4755, 0o2755, 0o6711]) {
      file('modes', `modes/file-${mode.toString(8).padStart(4, '0')}`, src.bytes(`mode ${mode}`, 20), { mode });
    }
    dir('modes', 'modes/sticky-1777', { mode: 0o1777 });
    file('modes', 'modes/sticky-1777/inside', src.bytes('sticky-inside', 5));
    dir('modes', 'modes/setgid-2775', { mode: 0o2775 });
    dir('modes', 'modes/readonly-0555', { mode: 0o555 });
    file('modes', 'modes/readonly-0555/inside', src.bytes('ro-inside', 6));
    dir('modes', 'modes/private-0700', { mode: 0o700 });
  }

  if (wanted.has('owners')) {
    const foreign = { uid: 1234, gid: 5678 };
    dir('owners', 'owners');
    file('owners', 'owners/uid1234-gid5678', src.bytes('owner-foreign', 12), { owner: foreign });
    if (nobody) file('owners', 'owners/nobody', src.bytes('owner-nobody', 13), { owner: nobody });
    // chown clears setuid, so the tree applies owners before modes.
    file('owners', 'owners/setuid-1234', src.bytes('owner-setuid', 14), { owner: foreign, mode: 0o4750 });
    dir('owners', 'owners/dir-1234', { owner: foreign });
    file('owners', 'owners/dir-1234/root-owned-inside', src.bytes('owner-inside', 15));
    add('owners', 'owners/symlink-1234', 'symlink', { target: Buffer.from('uid1234-gid5678'), owner: foreign });
  }

  if (wanted.has('times')) {
    dir('times', 'times');
    file('times', 'times/epoch-plus-1ns', src.bytes('t0', 3), { mtimeNs: at(0n, 1n) });
    file('times', 'times/1970-jan-01-end', src.bytes('t1', 3), { mtimeNs: at(86_399n, 999_999_999n) });
    file('times', 'times/before-1970', src.bytes('t2', 3), { mtimeNs: at(-86_401n, 750_000_000n) });
    file('times', 'times/2038-last-32bit-second', src.bytes('t3', 3), { mtimeNs: at(2_147_483_647n, 999_999_999n) });
    file('times', 'times/2038-first-64bit-second', src.bytes('t4', 3), { mtimeNs: at(2_147_483_648n, 1n) });
    file('times', 'times/2100', src.bytes('t5', 3), { mtimeNs: at(4_102_444_800n, 500_000_000n) });
    file('times', 'times/whole-second', src.bytes('t6', 3), { mtimeNs: at(1_700_000_000n, 0n) });
    add('times', 'times/symlink-1970', 'symlink', { target: Buffer.from('whole-second'), mtimeNs: at(12_345n, 678_901_234n) });
    dir('times', 'times/dir-1970', { mtimeNs: at(1_000n, 123_456_789n) });
    file('times', 'times/dir-1970/inside', src.bytes('t7', 3));
  }

  if (wanted.has('xattrs')) {
    const x = (s: string): Buffer => Buffer.from(s);
    dir('xattrs', 'xattrs', { xattrs: [['user.on-dir', x('a directory attribute')]] });
    file('xattrs', 'xattrs/text', src.bytes('x-text', 40), { xattrs: [['user.k', x('value')]] });
    file('xattrs', 'xattrs/binary', src.bytes('x-bin', 41), {
      xattrs: [['user.bin', Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x7f, 0x01, 0x00])]],
    });
    file('xattrs', 'xattrs/many', src.bytes('x-many', 42), {
      xattrs: [
        ['user.a', x('1')],
        ['user.b', x('two')],
        ['user.empty', Buffer.alloc(0)],
        ['user.ünïcode', x('välue')],
        ['user.big', src.bytes('x-big', 1000)],
      ],
    });
    dir('xattrs', 'xattrs/sub', { xattrs: [['user.sub', x('sub dir')]] });
    file('xattrs', 'xattrs/sub/plain', src.bytes('x-plain', 43));
  }

  return specs;
}

// ---------------------------------------------------------------------------------------
// Creating it

function joinRaw(root: string, rel: Buffer): Buffer {
  return Buffer.concat([Buffer.from(root), Buffer.from('/'), rel]);
}

function isUtf8(bytes: Buffer): boolean {
  return Buffer.from(bytes.toString('utf8')).equals(bytes);
}

/** Creates the specs under `root`; returns those that were made (mknod may be refused). */
async function createTree(root: string, specs: Spec[], skipped: Manifest['skipped']): Promise<Spec[]> {
  // Tools that take path arguments (touch, setfattr) cannot be handed non-UTF-8 names, so
  // such entries are made under a stand-in name and renamed once everything else is set.
  const standIns = new Map<Spec, Buffer>();
  let nextStandIn = 0;
  const pathOf = (s: Spec): string => {
    const stand = standIns.get(s);
    return (stand ?? joinRaw(root, s.rel)).toString('utf8');
  };
  for (const s of specs) {
    if (!isUtf8(s.rel)) {
      if (s.type === 'dir') throw new InvalidInputError(`awkward tree: directory ${s.rel.toString('hex')} must have a UTF-8 name`);
      const parent = s.rel.subarray(0, s.rel.lastIndexOf(0x2f) + 1);
      standIns.set(s, joinRaw(root, Buffer.concat([parent, Buffer.from(`.stand-in-${nextStandIn++}`)])));
    }
  }

  for (const s of specs) {
    if (s.type === 'dir') await mkdir(pathOf(s), { recursive: true });
  }
  const failed = new Set<Spec>();
  for (const s of specs) {
    const path = pathOf(s);
    switch (s.type) {
      case 'dir':
        break;
      case 'file':
        if (s.hardLinkTo) await link(joinRaw(root, s.hardLinkTo), path);
        else await writeFile(path, s.content ?? Buffer.alloc(0));
        break;
      case 'symlink':
        await symlink(s.target ?? Buffer.alloc(0), path);
        break;
      case 'fifo':
        await run('mkfifo', [path]);
        break;
      case 'chardev':
      case 'blockdev': {
        const kind = s.type === 'chardev' ? 'c' : 'b';
        try {
          await run('mknod', [path, kind, String(s.rdev?.major), String(s.rdev?.minor)]);
        } catch (err) {
          // Root without CAP_MKNOD (some containers): record, do not fail the whole tree.
          failed.add(s);
          if (!skipped.some((k) => k.feature === s.feature)) skipped.push({ feature: s.feature, reason: `mknod failed: ${(err as Error).message.split('\n')[0]}` });
        }
        break;
      }
      case 'socket':
        // A listening socket leaves its node behind when the process exits without closing it.
        await run(process.execPath, ['-e', "require('node:net').createServer().listen(process.argv[1], () => process.exit(0))", path]);
        break;
    }
  }
  // Hard links share the first link's inode, whose xattrs, owner, mode and mtime are set.
  const live = specs.filter((s) => !failed.has(s));
  const inodes = live.filter((s) => !s.hardLinkTo);

  for (const s of inodes) {
    for (const [name, value] of s.xattrs ?? []) {
      const args = value.length === 0 ? ['-n', name, pathOf(s)] : ['-n', name, '-v', `0x${value.toString('hex')}`, pathOf(s)];
      await run('setfattr', args);
    }
  }
  for (const s of inodes) {
    if (!s.owner) continue;
    if (s.type === 'symlink') await lchown(pathOf(s), s.owner.uid, s.owner.gid);
    else await chown(pathOf(s), s.owner.uid, s.owner.gid);
  }
  for (const s of inodes) {
    // Explicit modes for everything so the tree does not depend on the umask.
    if (s.type !== 'symlink') await chmod(pathOf(s), s.mode);
  }
  for (const [s, stand] of standIns) {
    await setMtime(stand.toString('utf8'), s.mtimeNs);
    await rename(stand, joinRaw(root, s.rel));
  }

  // mtimes last, directories deepest first: creating, renaming or linking inside a
  // directory changes its mtime.
  const others = inodes.filter((s) => s.type !== 'dir' && !standIns.has(s));
  await inParallel(others, 8, (s) => setMtime(pathOf(s), s.mtimeNs));
  const dirs = live.filter((s) => s.type === 'dir');
  const depth = (s: Spec): number => s.rel.filter((b) => b === 0x2f).length;
  for (let d = Math.max(0, ...dirs.map(depth)); d >= 0; d--) {
    await inParallel(dirs.filter((s) => depth(s) === d), 8, (s) => setMtime(pathOf(s), s.mtimeNs));
  }
  await setMtime(root, 1_600_000_000_123_456_789n);
  return live;
}

/** Sets atime and mtime to `ns` nanoseconds since the epoch, on a symlink itself when it is one. */
async function setMtime(path: string, ns: bigint): Promise<void> {
  // fs.utimes takes float seconds and loses the nanoseconds; touch does not.
  const sign = ns < 0n ? '-' : '';
  const abs = ns < 0n ? -ns : ns;
  const stamp = `@${sign}${abs / 1_000_000_000n}.${String(abs % 1_000_000_000n).padStart(9, '0')}`;
  await run('touch', ['-h', '-d', stamp, path]);
}

async function run(cmd: string, args: string[]): Promise<void> {
  try {
    await execFileP(cmd, args, { env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new StowageError('INVALID_INPUT', `awkward tree: ${cmd} ${JSON.stringify(args.at(-1))} failed: ${(e.stderr || e.message).trim()}`, { cause: err });
  }
}

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid && gid) return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

function toManifestEntry(s: Spec): ManifestEntry {
  const e: ManifestEntry = {
    path: s.rel.toString('utf8'),
    rawPath: s.rel,
    type: s.type,
    mode: s.mode,
    mtimeNs: s.mtimeNs,
    feature: s.feature,
  };
  if (s.owner) {
    e.uid = s.owner.uid;
    e.gid = s.owner.gid;
  }
  if (s.content) {
    e.size = s.content.length;
    e.sha256 = createHash('sha256').update(s.content).digest('hex');
  }
  if (s.target) {
    e.target = s.target.toString('utf8');
    if (!isUtf8(s.target)) e.targetRaw = s.target;
  }
  if (s.rdev) e.rdev = s.rdev;
  if (s.xattrs) e.xattrs = Object.fromEntries(s.xattrs);
  if (s.hardLinkTo) e.hardLinkTo = s.hardLinkTo.toString('utf8');
  return e;
}
