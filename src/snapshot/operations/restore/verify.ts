// restore --verify, as restic's: once everything is written, every file the restore wrote is read
// back from the target and each stretch of it hashed against the data blob the snapshot names
// there; its size must be the blobs' total. Files --overwrite left alone are not verified (restic
// neither).
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { throwIfAborted } from '../../../errors.ts';
import { CRYPTO_OVERHEAD } from '../../../repository/crypto.ts';
import type { IndexedRepository } from '../../../repository/repository.ts';
import type { RestoreEntry } from './types.ts';

/** What --verify found: files read back, and those that do not match the snapshot. */
export interface VerifyResult {
  /** Files read back. */
  files: number;
  /** Files whose contents or size differ from the snapshot's, with what differs. */
  errors: Array<{ path: string; message: string }>;
  /** How long reading back took, in milliseconds. */
  durationMs: number;
}

/** Reads back and checks `files`. */
export async function verifyFiles(repo: IndexedRepository, files: readonly RestoreEntry[], signal: AbortSignal | undefined): Promise<VerifyResult> {
  const started = performance.now();
  const result: VerifyResult = { files: 0, errors: [], durationMs: 0 };
  for (const e of files) {
    throwIfAborted(signal);
    const message = await verifyOne(repo, e).catch((err: unknown) => (err as Error).message);
    result.files++;
    if (message) result.errors.push({ path: e.path.toString('utf8'), message });
  }
  result.durationMs = performance.now() - started;
  return result;
}

async function verifyOne(repo: IndexedRepository, e: RestoreEntry): Promise<string | undefined> {
  const fh = await open(e.path, 'r');
  try {
    let offset = 0;
    for (const id of e.node.content ?? []) {
      const loc = repo.index.lookup(id, 'data')[0];
      if (!loc) return `blob ${id.slice(0, 8)} is not in the index`;
      const length = loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD;
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      if (bytesRead !== length) return `file is shorter (${offset + bytesRead} bytes) than the snapshot says`;
      if (createHash('sha256').update(buf).digest('hex') !== id) return `contents at offset ${offset} do not match blob ${id.slice(0, 8)}`;
      offset += length;
    }
    const size = (await fh.stat()).size;
    if (size !== offset) return `size ${size} does not match the snapshot's ${offset}`;
    return undefined;
  } finally {
    await fh.close();
  }
}
