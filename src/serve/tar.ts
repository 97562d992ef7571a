// A folder of a snapshot as a tar stream (POSIX ustar, with PAX records for what ustar cannot
// hold: long or non-ASCII names and link targets, sizes from 8 GiB, large IDs), written entry by
// entry to the response with back-pressure; file contents come from ArchiveContents (read ahead
// in pack order, decoded by the worker pool, within the memory budget). Names are the exact bytes
// the snapshot stored.
import type { BlobId } from '../repository/id.ts';
import { goTimeToDate } from '../repository/gotime.ts';
import { nodeNameToBytes, type TreeNode } from '../snapshot/model/node.ts';
import { posixPermissionsFromGo } from '../snapshot/model/mode.ts';
import type { DecodePool } from '../snapshot/engine/decode-pool.ts';
import { ArchiveContents } from './archive.ts';
import type { ByteBudget } from './budget.ts';
import type { ResponseSink } from './content.ts';
import type { RepositoryView } from './view.ts';

const BLOCK = 512;
const ZEROS = new Uint8Array(BLOCK * 2);

/** What a tar stream wrote. */
export interface TarSummary {
  entries: number;
  bytes: number;
}

/**
 * The entries of the folder `tree`, depth first in name order, each with its archive path
 * (`prefix` + names; folders end with '/', and come before what they hold).
 */
export async function* archiveEntries(view: RepositoryView, tree: BlobId, prefix: Buffer, signal: AbortSignal): AsyncGenerator<{ path: Buffer; node: TreeNode }> {
  const folder = await view.folder(tree, { signal });
  for (const node of folder.nodes) {
    const name = Buffer.concat([prefix, nodeNameToBytes(node.name)]);
    if (node.type === 'dir') {
      const path = Buffer.concat([name, Buffer.from('/')]);
      yield { path, node };
      if (node.subtree) yield* archiveEntries(view, node.subtree, path, signal);
    } else yield { path: name, node };
  }
}

/**
 * Writes the folder `tree` as a tar whose entries start with `prefix` ("name/"; "" for none),
 * followed by the two zero blocks that end a tar. File contents are decoded by `pool` (on this
 * thread without one).
 */
export async function writeTar(view: RepositoryView, tree: BlobId, prefix: Buffer, sink: ResponseSink, budget: ByteBudget, pool?: DecodePool): Promise<TarSummary> {
  const summary: TarSummary = { entries: 0, bytes: 0 };
  const put = async (b: Uint8Array) => {
    summary.bytes += b.length;
    await sink.write(b);
  };
  if (prefix.length > 0) {
    await put(entryHeader(undefined, prefix, '5', 0));
    summary.entries++;
  }
  const contents = new ArchiveContents(view, archiveEntries(view, tree, prefix, sink.signal), sink, budget, pool);
  try {
    for (let entry = await contents.next(); entry; entry = await contents.next()) {
      const { path, node, layout } = entry;
      if (node.type === 'dir') {
        await put(entryHeader(node, path, '5', 0));
      } else if (node.type === 'file' && layout) {
        await put(entryHeader(node, path, '0', layout.size));
        await contents.writeFile(entry);
        summary.bytes += layout.size;
        const pad = (BLOCK - (layout.size % BLOCK)) % BLOCK;
        if (pad > 0) await put(ZEROS.subarray(0, pad));
      } else {
        const flag = { symlink: '2', chardev: '3', dev: '4', fifo: '6' }[node.type as string];
        if (flag === undefined) continue; // sockets and irregular files have no tar form worth restoring
        await put(entryHeader(node, path, flag, 0));
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

/** The header block(s) of one entry: a PAX 'x' block first when ustar cannot hold a field. */
export function entryHeader(node: TreeNode | undefined, path: Buffer, flag: string, size: number): Buffer {
  const link = node?.type === 'symlink' ? Buffer.from(node.linktargetRaw ?? nodeNameToBytes(node.linktarget ?? '')) : Buffer.alloc(0);
  const uid = node?.uid ?? 0;
  const gid = node?.gid ?? 0;
  const mtime = node ? Math.floor(goTimeToDate(node.mtime).getTime() / 1000) : 0;
  const pax: Buffer[] = [];
  const ascii = (b: Buffer) => b.every((c) => c >= 0x20 && c < 0x7f);
  if (path.length > 100 || !ascii(path)) pax.push(paxRecord('path', path));
  if (link.length > 100 || !ascii(link)) pax.push(paxRecord('linkpath', link));
  if (size > 0o77777777777) pax.push(paxRecord('size', Buffer.from(String(size))));
  if (uid > 0o7777777) pax.push(paxRecord('uid', Buffer.from(String(uid))));
  if (gid > 0o7777777) pax.push(paxRecord('gid', Buffer.from(String(gid))));
  const user = Buffer.from(node?.user ?? '');
  const group = Buffer.from(node?.group ?? '');
  if (user.length > 32) pax.push(paxRecord('uname', user));
  if (group.length > 32) pax.push(paxRecord('gname', group));
  let major = 0;
  let minor = 0;
  if (node && (node.type === 'dev' || node.type === 'chardev')) {
    const dev = BigInt(node.device ?? 0);
    major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
    minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  }
  const mode = node ? posixPermissionsFromGo(node.mode) : 0o755;
  const main = ustarBlock({
    name: path.length > 100 || !ascii(path) ? fallbackName(path) : path,
    mode, uid: Math.min(uid, 0o7777777), gid: Math.min(gid, 0o7777777),
    size: Math.min(size, 0o77777777777), mtime: Math.max(0, Math.min(mtime, 0o77777777777)), flag,
    link: link.length > 100 || !ascii(link) ? Buffer.alloc(0) : link,
    user: user.subarray(0, 32), group: group.subarray(0, 32), major, minor,
  });
  if (pax.length === 0) return main;
  const body = Buffer.concat(pax);
  const xh = ustarBlock({ name: Buffer.from('PaxHeaders/entry'), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: Math.max(0, mtime), flag: 'x', link: Buffer.alloc(0), user: Buffer.alloc(0), group: Buffer.alloc(0), major: 0, minor: 0 });
  const pad = Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK);
  return Buffer.concat([xh, body, pad, main]);
}

/** "<len> key=value\n", where len counts the whole record including its own digits. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = 1 + Buffer.byteLength(key) + 1 + value.length + 1;
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
}

/** An ASCII stand-in for the ustar name field when a PAX path carries the real one. */
function fallbackName(path: Buffer): Buffer {
  const s = path.toString('latin1').replace(/[^\x20-\x7e]/g, '_');
  return Buffer.from(s.length > 100 ? s.slice(s.length - 100) : s, 'latin1');
}

interface UstarFields {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  flag: string;
  link: Buffer;
  user: Buffer;
  group: Buffer;
  major: number;
  minor: number;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  f.name.copy(b, 0, 0, 100);
  octal(b, 100, 8, f.mode);
  octal(b, 108, 8, f.uid);
  octal(b, 116, 8, f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, f.mtime);
  b.write(f.flag, 156, 1, 'latin1');
  f.link.copy(b, 157, 0, 100);
  b.write('ustar\x0000', 257, 8, 'latin1');
  f.user.copy(b, 265, 0, 32);
  f.group.copy(b, 297, 0, 32);
  octal(b, 329, 8, f.major);
  octal(b, 337, 8, f.minor);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\x00 ', 148, 8, 'latin1');
  return b;
}

function octal(b: Buffer, at: number, width: number, n: number): void {
  b.write(Math.max(0, n).toString(8).padStart(width - 1, '0').slice(-(width - 1)) + '\x00', at, width, 'latin1');
}
