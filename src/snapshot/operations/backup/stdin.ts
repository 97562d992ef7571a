// Backing up one stream as a file (restic --stdin) or a command's output (--stdin-from-command).
import os from 'node:os';
import type { Readable } from 'node:stream';
import { StdinError, StowageError, throwIfAborted } from '../../../errors.ts';
import type { BlobId } from '../../../repository/id.ts';
import { goTimeNow } from '../../../repository/gotime.ts';
import { Chunker } from '../../engine/chunker.ts';
import type { RunningCommand } from '../../engine/stdin-command.ts';
import type { TreeNode } from '../../model/node.ts';
import type { BackupRun } from './walk.ts';

/** The user running the backup, as far as the system says. */
export function safeUser(): { username?: string; uid?: number; gid?: number } {
  try {
    const u = os.userInfo();
    return { username: u.username, uid: u.uid, gid: u.gid };
  } catch {
    return {};
  }
}

/**
 * Saves a command's output; good only when the command then exits with status 0. On failure
 * the command is ended and waited for, so none is left running when the backup rejects.
 */
export async function saveCommandOutput(run: BackupRun, command: RunningCommand, filename: string, signal: AbortSignal | undefined): Promise<BlobId> {
  // Aborting ends the command, whose output then ends: the reader sees the abort after that.
  const stop = () => command.kill();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    const tree = await saveStream(run, command.stdout, filename);
    await command.exited;
    return tree;
  } catch (e) {
    const killedHere = command.kill();
    const failure = await command.exited.then(() => undefined, (err: unknown) => err);
    throwIfAborted(signal);
    // Output that broke off is better explained by the command's own failure, unless that
    // failure is only our kill.
    if (e instanceof StdinError && failure && !killedHere) throw failure;
    throw e;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}

/**
 * A stream's pieces as Buffers; the stream's own error becomes a StdinError (errors of the
 * consumer of a piece are not caught here: they leave the loop through return()).
 */
async function* piecesOf(stream: Readable, filename: string): AsyncGenerator<Buffer> {
  try {
    for await (const piece of stream) yield Buffer.isBuffer(piece) ? piece : Buffer.from(piece as string);
  } catch (e) {
    if (e instanceof StowageError) throw e;
    throw new StdinError(filename, `reading ${filename} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}


/** A stream backed up as one file at the snapshot root (restic --stdin). Chunked here. */
export async function saveStream(run: BackupRun, stream: Readable, filename: string): Promise<BlobId> {
  const chunker = new Chunker(run.repo.config.chunkerPolynomial);
  chunker.reset();
  const ids: BlobId[] = [];
  let pending: Buffer[] = [];
  let size = 0;
  const started = performance.now();
  const added = { size: 0, packed: 0 };
  const emit = async (chunk: Uint8Array) => {
    const { id, stored } = await run.writer.saveBlob('data', chunk);
    ids.push(id);
    if (stored) {
      added.size += chunk.length;
      added.packed += stored;
    }
  };
  for await (const buf of piecesOf(stream, filename)) {
    throwIfAborted(run.options.signal);
    size += buf.length;
    run.meter.streamed(buf.length, '/' + filename);
    let from = 0;
    for (;;) {
      const cut = chunker.next(buf, from);
      if (cut < 0) {
        pending.push(buf.subarray(from));
        break;
      }
      pending.push(buf.subarray(from, cut));
      await emit(Buffer.concat(pending));
      pending = [];
      from = cut;
    }
  }
  if (pending.length && pending.some((p) => p.length)) await emit(Buffer.concat(pending));
  const now = goTimeNow();
  const user = safeUser();
  const node: TreeNode = {
    name: filename,
    type: 'file',
    mode: 0o644,
    mtime: now,
    atime: now,
    ctime: now,
    uid: user.uid ?? 0,
    gid: user.gid ?? 0,
    user: user.username,
    size,
    content: ids,
  };
  run.stats.filesNew++;
  run.stats.bytes += size;
  run.meter.filesDone++;
  run.meter.finished('/' + filename);
  run.meter.report();
  run.item({ path: '/' + filename, type: 'file', action: 'new', seconds: (performance.now() - started) / 1000, dataAdded: added.size, dataAddedPacked: added.packed, treeAdded: 0, treeAddedPacked: 0 });
  return run.saveTree([node]);
}
