// A folder of a snapshot as a zip stream: entries stored (no compression: backups are mostly
// compressed already, and the CPU goes to decryption), each file's CRC-32 computed as its bytes
// pass and written in a data descriptor after them, ZIP64 records where a size, an offset or the
// entry count outgrows 32 (16) bits, names in UTF-8 (flag 11), Unix modes in the central
// directory. Symlinks are stored as Info-ZIP does (the target as content, S_IFLNK mode); devices,
// fifos and sockets have no zip form and are left out. The central directory (about 60 bytes
// plus the name per entry) is the only thing held until the end.
import { crc32 } from 'node:zlib';
import type { BlobId } from '../repository/id.ts';
import { goTimeToDate, type GoTime } from '../repository/gotime.ts';
import { nodeNameToBytes } from '../snapshot/model/node.ts';
import { posixModeFromGo } from '../snapshot/model/mode.ts';
import type { DecodePool } from '../snapshot/engine/decode-pool.ts';
import { ArchiveContents } from './archive.ts';
import type { ByteBudget } from './budget.ts';
import type { ResponseSink } from './content.ts';
import { archiveEntries } from './tar.ts';
import type { RepositoryView } from './view.ts';

const MAX32 = 0xffffffff;
const UTF8 = 0x0800;
const DESCRIPTOR = 0x0008;

interface Central {
  name: Buffer;
  crc: number;
  size: number;
  offset: number;
  mode: number;
  time: number;
  date: number;
  flags: number;
}

/** Writes the folder `tree` as a zip whose entries start with `prefix`; file contents as writeTar's. */
export async function writeZip(view: RepositoryView, tree: BlobId, prefix: Buffer, sink: ResponseSink, budget: ByteBudget, pool?: DecodePool): Promise<{ entries: number; bytes: number }> {
  const central: Central[] = [];
  let offset = 0;
  const put = async (b: Uint8Array) => {
    offset += b.length;
    await sink.write(b);
  };
  const contents = new ArchiveContents(view, archiveEntries(view, tree, prefix, sink.signal), sink, budget, pool);
  try {
    for (let entry = await contents.next(); entry; entry = await contents.next()) {
      const { path, node, layout } = entry;
      const [time, date] = dosTime(node.mtime);
      const mode = posixModeFromGo(node.mode, node.type);
      const start = offset;
      if (node.type === 'dir') {
        await put(localHeader(path, UTF8, time, date, false));
        central.push({ name: path, crc: 0, size: 0, offset: start, mode, time, date, flags: UTF8 });
      } else if (node.type === 'file' || node.type === 'symlink') {
        const flags = UTF8 | DESCRIPTOR;
        let crc = 0;
        let size: number;
        if (node.type === 'file') {
          size = layout!.size;
          await put(localHeader(path, flags, time, date, size >= MAX32));
          await contents.writeFile(entry, (b) => (crc = crc32(b, crc)));
          offset += size;
        } else {
          const target = Buffer.from(node.linktargetRaw ?? nodeNameToBytes(node.linktarget ?? ''));
          size = target.length;
          crc = crc32(target);
          await put(localHeader(path, flags, time, date, false));
          await put(target);
        }
        await put(descriptor(crc, size, size >= MAX32));
        central.push({ name: path, crc, size, offset: start, mode, time, date, flags });
      }
    }
  } catch (e) {
    contents.close();
    throw e;
  }
  const cdStart = offset;
  for (const c of central) await put(centralEntry(c));
  const cdSize = offset - cdStart;
  const zip64 = central.length >= 0xffff || cdStart >= MAX32 || cdSize >= MAX32;
  if (zip64) {
    const eocd64At = offset;
    const r = Buffer.alloc(56);
    r.writeUInt32LE(0x06064b50, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeUInt16LE(0x031e, 12);
    r.writeUInt16LE(45, 14);
    r.writeBigUInt64LE(BigInt(central.length), 24);
    r.writeBigUInt64LE(BigInt(central.length), 32);
    r.writeBigUInt64LE(BigInt(cdSize), 40);
    r.writeBigUInt64LE(BigInt(cdStart), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(eocd64At), 8);
    loc.writeUInt32LE(1, 16);
    await put(Buffer.concat([r, loc]));
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Math.min(central.length, 0xffff), 8);
  end.writeUInt16LE(Math.min(central.length, 0xffff), 10);
  end.writeUInt32LE(Math.min(cdSize, MAX32), 12);
  end.writeUInt32LE(Math.min(cdStart, MAX32), 16);
  await put(end);
  await sink.flush();
  return { entries: central.length, bytes: offset };
}

/** MS-DOS time and date (local fields, 2-second steps, 1980–2107). */
function dosTime(t: GoTime): [number, number] {
  const d = goTimeToDate(t);
  const year = d.getUTCFullYear();
  if (year < 1980) return [0, (1 << 5) | 1];
  if (year > 2107) return [(23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31];
  return [(d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1), ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate()];
}

function localHeader(name: Buffer, flags: number, time: number, date: number, big: boolean): Buffer {
  // With a data descriptor the CRC and sizes here are 0; a file of 4 GiB or more announces its
  // 64-bit descriptor with a ZIP64 extra field (sizes 0, as the descriptor carries them).
  const extra = big ? Buffer.alloc(20) : Buffer.alloc(0);
  if (big) {
    extra.writeUInt16LE(1, 0);
    extra.writeUInt16LE(16, 2);
  }
  const h = Buffer.alloc(30);
  h.writeUInt32LE(0x04034b50, 0);
  h.writeUInt16LE(45, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt16LE(0, 8);
  h.writeUInt16LE(time, 10);
  h.writeUInt16LE(date, 12);
  if (big) {
    h.writeUInt32LE(MAX32, 18);
    h.writeUInt32LE(MAX32, 22);
  }
  h.writeUInt16LE(name.length, 26);
  h.writeUInt16LE(extra.length, 28);
  return Buffer.concat([h, name, extra]);
}

function descriptor(crc: number, size: number, big: boolean): Buffer {
  const d = Buffer.alloc(big ? 24 : 16);
  d.writeUInt32LE(0x08074b50, 0);
  d.writeUInt32LE(crc >>> 0, 4);
  if (big) {
    d.writeBigUInt64LE(BigInt(size), 8);
    d.writeBigUInt64LE(BigInt(size), 16);
  } else {
    d.writeUInt32LE(size, 8);
    d.writeUInt32LE(size, 12);
  }
  return d;
}

function centralEntry(c: Central): Buffer {
  const fields: Buffer[] = [];
  const bigSize = c.size >= MAX32;
  const bigOffset = c.offset >= MAX32;
  if (bigSize) fields.push(u64(c.size), u64(c.size));
  if (bigOffset) fields.push(u64(c.offset));
  const data = Buffer.concat(fields);
  const extra = data.length > 0 ? Buffer.concat([Buffer.from([1, 0, data.length, 0]), data]) : Buffer.alloc(0);
  const h = Buffer.alloc(46);
  h.writeUInt32LE(0x02014b50, 0);
  h.writeUInt16LE(0x0300 | 45, 4); // made by Unix, spec 4.5
  h.writeUInt16LE(45, 6);
  h.writeUInt16LE(c.flags, 8);
  h.writeUInt16LE(0, 10);
  h.writeUInt16LE(c.time, 12);
  h.writeUInt16LE(c.date, 14);
  h.writeUInt32LE(c.crc >>> 0, 16);
  h.writeUInt32LE(bigSize ? MAX32 : c.size, 20);
  h.writeUInt32LE(bigSize ? MAX32 : c.size, 24);
  h.writeUInt16LE(c.name.length, 28);
  h.writeUInt16LE(extra.length, 30);
  h.writeUInt32LE(((c.mode & 0xffff) << 16 | (c.name[c.name.length - 1] === 0x2f ? 0x10 : 0)) >>> 0, 38);
  h.writeUInt32LE(bigOffset ? MAX32 : c.offset, 42);
  return Buffer.concat([h, c.name, extra]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}
