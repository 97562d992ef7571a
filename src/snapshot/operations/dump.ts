// One file of a snapshot as a stream (restic's `dump` of a file): blobs read in order, a few
// ahead, each verified before its bytes are passed on.
import { Readable } from 'node:stream';
import type { CallOptions } from '../../backend/backend.ts';
import { InvalidInputError } from '../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository } from '../../repository/repository.ts';
import type { BlobId } from '../../repository/id.ts';
import type { TreeNode } from '../model/node.ts';
import type { SnapshotEntry } from '../engine/select.ts';
import type { SnapshotFilter } from '../model/snapshot.ts';
import { findNodeByPath, resolveSnapshotRef } from '../engine/select.ts';

/** Options of {@link dumpFile}: the filter picks the snapshot `"latest"` means. */
export interface DumpOptions extends CallOptions, SnapshotFilter {
  /** Blobs read ahead of the consumer (default 4: up to ~32 MiB held with restic's chunk sizes). */
  readAhead?: number;
}

/** A file found in a snapshot, with its content as a stream. */
export interface DumpedFile {
  snapshot: SnapshotEntry;
  /** The file's tree node (size, mode, times, owner). */
  node: TreeNode;
  /** The file's size in bytes. */
  size: number;
  /**
   * The content. Each blob is verified (MAC and SHA-256) before it is pushed; a blob that fails
   * destroys the stream with its typed error (`IntegrityError`, `NotFoundError`, `AbortedError`).
   */
  stream: Readable;
}

/**
 * Finds the file at `path` in the snapshot `ref` ("latest", an ID or unique prefix, optionally
 * "ID:subfolder" with `path` below that folder) and returns its node and content stream. Lookup
 * errors (no such snapshot or path, a folder) reject here, before any byte is streamed.
 *
 * @example
 * const { stream, size } = await dumpFile(repo, 'latest', '/etc/hosts', { hosts: ['web-1'] });
 * stream.pipe(process.stdout);
 */
export async function dumpFile(repository: AnyRepository, ref: string, path: string, options: DumpOptions = {}): Promise<DumpedFile> {
  const repo = await withIndex(repository, options);
  const resolved = await resolveSnapshotRef(repo, ref, options);
  const where = `snapshot ${resolved.snapshot.id.slice(0, 8)}`;
  const node = await findNodeByPath(repo, resolved.tree, path, where, options);
  if (node.type !== 'file') {
    throw new InvalidInputError(`${path} in ${where} is a ${node.type === 'dir' ? 'folder' : node.type}, not a file (folders are not supported by dump yet)`);
  }
  const readAhead = Math.max(1, options.readAhead ?? 4);
  return {
    snapshot: resolved.snapshot,
    node,
    size: Number(node.size ?? 0),
    stream: Readable.from(readBlobs(repo, node.content ?? [], readAhead, options), { objectMode: false }),
  };
}

async function* readBlobs(repo: IndexedRepository, content: readonly BlobId[], readAhead: number, options: CallOptions): AsyncGenerator<Uint8Array> {
  const pending: Array<Promise<Uint8Array>> = [];
  let next = 0;
  const fill = () => {
    while (pending.length < readAhead && next < content.length) {
      const p = repo.loadBlob('data', content[next++]!, options);
      p.catch(() => {}); // awaited in order below; this only keeps an early failure from being "unhandled"
      pending.push(p);
    }
  };
  fill();
  while (pending.length > 0) {
    const data = await pending.shift()!;
    fill();
    yield data;
  }
}
