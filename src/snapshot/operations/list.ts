// Listing what a repository holds, as restic's `list`: the IDs of one kind of file, or every blob
// each index file names (a blob in two index files or two packs is listed each time).
import type { CallOptions } from '../../backend/backend.ts';
import { InvalidInputError, throwIfAborted } from '../../errors.ts';
import { baseRepository, type AnyRepository } from '../../repository/repository.ts';
import type { BlobId, BlobType, IndexId, PackId } from '../../repository/id.ts';
import { readIndexFile } from '../../repository/index-loader.ts';

/** What restic's `list` lists. */
export const LIST_KINDS = ['blobs', 'packs', 'index', 'snapshots', 'keys', 'locks'] as const;
/** One of the kinds restic's `list` lists ({@link LIST_KINDS}). */
export type ListKind = (typeof LIST_KINDS)[number];

const FOLDER = { packs: 'data', index: 'index', snapshots: 'snapshots', keys: 'keys', locks: 'locks' } as const;

/** A blob as an index file lists it. */
export interface ListedBlob {
  type: BlobType;
  id: BlobId;
  pack: PackId;
  /** The index file that lists it. */
  index: IndexId;
}

/**
 * The IDs of the files of one kind (packs: every file under `data/`, indexed or not), in the
 * backend's listing order. Takes no lock: restic's `list` takes a shared one, except for locks.
 */
export async function* listFiles(repository: AnyRepository, kind: Exclude<ListKind, 'blobs'>, options: CallOptions = {}): AsyncGenerator<string> {
  const folder = FOLDER[kind];
  if (!folder) throw new InvalidInputError(`invalid type ${JSON.stringify(kind)} (${LIST_KINDS.join(', ')})`);
  yield* baseRepository(repository).listIds(folder, options);
}

/** Every blob of every index file, index file by index file (each read and verified on its own). */
export async function* listBlobs(repository: AnyRepository, options: CallOptions = {}): AsyncGenerator<ListedBlob> {
  const repo = baseRepository(repository);
  for await (const index of repo.listIds('index', options)) {
    for (const pack of await readIndexFile(repo, index, options)) {
      throwIfAborted(options.signal);
      for (const b of pack.blobs) yield { type: b.type, id: b.id, pack: pack.id, index: index as IndexId };
    }
  }
}
