// A folder of a snapshot as a zip stream, laid out as restic 0.19's `dump -a zip` writes it (Go's
// archive/zip): each entry's local header (version 2.0, the modification time as MS-DOS fields in
// the zone the snapshot stored and as an extended-timestamp extra field), its content, and for all
// but folders a data descriptor with the CRC-32 and sizes (64-bit ones from 4 GiB); the central
// directory (Unix mode and MS-DOS attributes, a ZIP64 extra field where a size or offset
// outgrows 32 bits) and its end records (ZIP64 ones where the count, size or offset needs them).
// Names are flagged UTF-8 only when they need it. Files are deflated (`deflate`, restic's way;
// the bytes differ from Go's compressor, the content does not) or stored (serve: the CPU goes to
// decryption); symlinks are stored with the target as content, other special files as empty
// entries with their mode, or left out. Only the central directory (about 70 bytes plus the name
// per entry) is held until the end.
import { once } from 'node:events';
import { createDeflateRaw, crc32 } from 'node:zlib';
import { isZeroGoTime, type GoTime } from '../../../repository/gotime.ts';
import type { IndexedRepository } from '../../../repository/repository.ts';
import { nodeNameToBytes } from '../../model/node.ts';
import {
  GO_MODE_CHAR_DEVICE, GO_MODE_DEVICE, GO_MODE_DIR, GO_MODE_IRREGULAR, GO_MODE_NAMED_PIPE, GO_MODE_SETGID, GO_MODE_SETUID, GO_MODE_SOCKET,
  GO_MODE_STICKY, GO_MODE_SYMLINK, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK, S_ISGID, S_ISUID, S_ISVTX,
} from '../../model/mode.ts';
import type { DecodePool } from '../decode-pool.ts';
import type { ByteBudget } from './budget.ts';
import { ArchiveContents, type ArchivePath, type ArchiveSink } from './contents.ts';
import type { ArchiveSummary } from './tar.ts';

const MAX32 = 0xffffffff;
const UTF8 = 0x0800;
const DESCRIPTOR = 0x0008;
const STORE = 0;
const DEFLATE = 8;
const VERSION20 = 20;
const VERSION45 = 45;

/** How a zip is written. */
export interface ZipOptions {
  /** Deflate files (restic's dump) instead of storing them (default). */
  deflate?: boolean;
  /** Devices, fifos, sockets: 'skip' (default) or 'empty' (stored empty, with their mode, as restic). */
  specials?: 'skip' | 'empty';
}

interface Central {
  name: Buffer;
  flags: number;
  method: number;
  time: number;
  date: number;
  crc: number;
  csize: number;
  usize: number;
  offset: number;
  attrs: number;
  extra: Buffer;
}

/** Writes the entries (as writeTar takes them) as a zip; file contents as writeTar's. */
export async function writeZip(repo: IndexedRepository, entries: AsyncIterable<ArchivePath>, sink: ArchiveSink, budget: ByteBudget, pool?: DecodePool, options: ZipOptions = {}): Promise<ArchiveSummary> {
  const central: Central[] = [];
  let offset = 0;
  const put = async (b: Uint8Array) => {
    offset += b.length;
    await sink.write(b);
  };
  const contents = new ArchiveContents(repo, entries, sink, budget, pool);
  try {
    for (let entry = await contents.next(); entry; entry = await contents.next()) {
      const { path, node, layout } = entry;
      const special = node.type !== 'file' && node.type !== 'dir' && node.type !== 'symlink';
      if (special && options.specials !== 'empty') continue;
      const [time, date] = dosTime(node.mtime);
      const extra = timeExtra(node.mtime);
      const dir = path[path.length - 1] === 0x2f;
      const c: Central = {
        name: path, flags: utf8Flag(path), method: STORE, time, date, crc: 0, csize: 0, usize: 0, offset,
        attrs: unixAttributes(node.mode), extra,
      };
      if (!dir) {
        c.flags |= DESCRIPTOR;
        if (node.type === 'file' && options.deflate) c.method = DEFLATE;
      }
      await put(localHeader(c));
      if (!dir) {
        if (node.type === 'file' && layout) {
          const counted = (b: Uint8Array) => {
            c.crc = crc32(b, c.crc);
            c.usize += b.length;
          };
          if (c.method === DEFLATE) {
            c.csize = await deflateFile(contents, entry, counted, put);
          } else {
            await contents.writeFile(entry, counted);
            offset += layout.size;
            c.csize = c.usize;
          }
        } else if (node.type === 'symlink') {
          const target = Buffer.from(node.linktargetRaw ?? nodeNameToBytes(node.linktarget ?? ''));
          c.crc = crc32(target);
          c.usize = c.csize = target.length;
          await put(target);
        }
        await put(descriptor(c));
      }
      central.push(c);
    }
  } catch (e) {
    contents.close();
    throw e;
  }
  const cdStart = offset;
  for (const c of central) await put(centralEntry(c));
  const cdSize = offset - cdStart;
  let records = central.length;
  let size = cdSize;
  let start = cdStart;
  if (records >= 0xffff || size >= MAX32 || start >= MAX32) {
    const end64 = offset;
    const r = Buffer.alloc(56 + 20);
    r.writeUInt32LE(0x06064b50, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeUInt16LE(VERSION45, 12);
    r.writeUInt16LE(VERSION45, 14);
    r.writeBigUInt64LE(BigInt(records), 24);
    r.writeBigUInt64LE(BigInt(records), 32);
    r.writeBigUInt64LE(BigInt(size), 40);
    r.writeBigUInt64LE(BigInt(start), 48);
    r.writeUInt32LE(0x07064b50, 56);
    r.writeBigUInt64LE(BigInt(end64), 64);
    r.writeUInt32LE(1, 72);
    await put(r);
    records = 0xffff;
    size = MAX32;
    start = MAX32;
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(records, 8);
  end.writeUInt16LE(records, 10);
  end.writeUInt32LE(size, 12);
  end.writeUInt32LE(start, 16);
  await put(end);
  await sink.flush();
  return { entries: central.length, bytes: offset };
}

/** Deflates a file's content on its way to `put` (zlib's thread pool); the compressed size. */
async function deflateFile(contents: ArchiveContents, entry: Parameters<ArchiveContents['writeFile']>[0], counted: (b: Uint8Array) => void, put: (b: Uint8Array) => Promise<void>): Promise<number> {
  const z = createDeflateRaw({ level: 5 });
  let written = 0;
  const pump = (async () => {
    for await (const chunk of z as AsyncIterable<Buffer>) {
      written += chunk.length;
      await put(chunk);
    }
  })();
  pump.catch(() => {}); // awaited below; a failure also ends the writes through the race
  try {
    await contents.writeFile(entry, counted, async (data, reservation) => {
      const more = z.write(data, () => reservation.release());
      if (!more) await Promise.race([once(z, 'drain'), pump]);
    });
    z.end();
    await pump;
  } catch (e) {
    z.destroy();
    throw e;
  }
  return written;
}

/** Go's detectUTF8: the flag only for valid UTF-8 that has a character outside 0x20–0x7d or '\'. */
function utf8Flag(name: Buffer): number {
  let require = false;
  const text = name.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(name)) return 0; // not valid UTF-8
  for (const ch of text) {
    const r = ch.codePointAt(0)!;
    if (r < 0x20 || r > 0x7d || r === 0x5c) {
      if (r >= 0xd800 && r <= 0xdfff) return 0;
      require = true;
    }
  }
  return require ? UTF8 : 0;
}

/** Unix mode (from the FileMode's type bits, as Go's zip) and MS-DOS attributes, for the central directory. */
function unixAttributes(goMode: number): number {
  const TYPE = GO_MODE_DIR | GO_MODE_SYMLINK | GO_MODE_NAMED_PIPE | GO_MODE_SOCKET | GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE | GO_MODE_IRREGULAR;
  const t = (goMode & TYPE) >>> 0;
  let m =
    t === GO_MODE_DIR ? S_IFDIR
    : t === GO_MODE_SYMLINK ? S_IFLNK
    : t === GO_MODE_NAMED_PIPE ? S_IFIFO
    : t === GO_MODE_SOCKET ? S_IFSOCK
    : t === GO_MODE_DEVICE ? S_IFBLK
    : t === ((GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE) >>> 0) ? S_IFCHR
    : S_IFREG;
  if (goMode & GO_MODE_SETUID) m |= S_ISUID;
  if (goMode & GO_MODE_SETGID) m |= S_ISGID;
  if (goMode & GO_MODE_STICKY) m |= S_ISVTX;
  m |= goMode & 0o777;
  let attrs = m * 0x10000;
  if (goMode & GO_MODE_DIR) attrs += 0x10;
  if ((goMode & 0o200) === 0) attrs += 0x01;
  return attrs >>> 0;
}

/** The wall-clock seconds of a time in the zone it was stored with. */
function wallSeconds(t: GoTime): number {
  const ns = t.epochNs + BigInt(t.offsetMinutes) * 60_000_000_000n;
  let s = ns / 1_000_000_000n;
  if (s * 1_000_000_000n > ns) s -= 1n;
  return Number(s);
}

/** MS-DOS time and date of the wall clock (2-second steps; years outside 1980–2107 wrap, as Go's). */
function dosTime(t: GoTime): [number, number] {
  if (isZeroGoTime(t)) return [0, 0];
  const d = new Date(wallSeconds(t) * 1000);
  const date = (d.getUTCDate() + ((d.getUTCMonth() + 1) << 5) + ((d.getUTCFullYear() - 1980) << 9)) & 0xffff;
  const time = ((d.getUTCSeconds() >> 1) + (d.getUTCMinutes() << 5) + (d.getUTCHours() << 11)) & 0xffff;
  return [time, date];
}

/** The extended-timestamp extra field (0x5455) with the modification time, as Info-ZIP writes it. */
function timeExtra(t: GoTime): Buffer {
  if (isZeroGoTime(t)) return Buffer.alloc(0);
  let s = t.epochNs / 1_000_000_000n;
  if (s * 1_000_000_000n > t.epochNs) s -= 1n;
  const b = Buffer.alloc(9);
  b.writeUInt16LE(0x5455, 0);
  b.writeUInt16LE(5, 2);
  b[4] = 1;
  b.writeUInt32LE(Number(BigInt.asUintN(32, s)), 5);
  return b;
}

function localHeader(c: Central): Buffer {
  // With a data descriptor the CRC and sizes here are 0 (a folder has none: 0 is its size).
  const h = Buffer.alloc(30);
  h.writeUInt32LE(0x04034b50, 0);
  h.writeUInt16LE(VERSION20, 4);
  h.writeUInt16LE(c.flags, 6);
  h.writeUInt16LE(c.method, 8);
  h.writeUInt16LE(c.time, 10);
  h.writeUInt16LE(c.date, 12);
  h.writeUInt16LE(c.name.length, 26);
  h.writeUInt16LE(c.extra.length, 28);
  return Buffer.concat([h, c.name, c.extra]);
}

function isZip64(c: Central): boolean {
  return c.csize >= MAX32 || c.usize >= MAX32;
}

function descriptor(c: Central): Buffer {
  const big = isZip64(c);
  const d = Buffer.alloc(big ? 24 : 16);
  d.writeUInt32LE(0x08074b50, 0);
  d.writeUInt32LE(c.crc >>> 0, 4);
  if (big) {
    d.writeBigUInt64LE(BigInt(c.csize), 8);
    d.writeBigUInt64LE(BigInt(c.usize), 16);
  } else {
    d.writeUInt32LE(c.csize, 8);
    d.writeUInt32LE(c.usize, 12);
  }
  return d;
}

function centralEntry(c: Central): Buffer {
  const big = isZip64(c);
  let extra = c.extra;
  if (big || c.offset >= MAX32) {
    const z = Buffer.alloc(28);
    z.writeUInt16LE(1, 0);
    z.writeUInt16LE(24, 2);
    z.writeBigUInt64LE(BigInt(c.usize), 4);
    z.writeBigUInt64LE(BigInt(c.csize), 12);
    z.writeBigUInt64LE(BigInt(c.offset), 20);
    extra = Buffer.concat([extra, z]);
  }
  const h = Buffer.alloc(46);
  h.writeUInt32LE(0x02014b50, 0);
  h.writeUInt16LE(0x0300 | VERSION20, 4); // made by Unix, 2.0
  h.writeUInt16LE(big ? VERSION45 : VERSION20, 6);
  h.writeUInt16LE(c.flags, 8);
  h.writeUInt16LE(c.method, 10);
  h.writeUInt16LE(c.time, 12);
  h.writeUInt16LE(c.date, 14);
  h.writeUInt32LE(c.crc >>> 0, 16);
  const wide = big || c.offset >= MAX32;
  h.writeUInt32LE(wide ? MAX32 : c.csize, 20);
  h.writeUInt32LE(wide ? MAX32 : c.usize, 24);
  h.writeUInt16LE(c.name.length, 28);
  h.writeUInt16LE(extra.length, 30);
  h.writeUInt32LE(c.attrs, 38);
  h.writeUInt32LE(c.offset > MAX32 ? MAX32 : c.offset, 42);
  return Buffer.concat([h, c.name, extra]);
}
