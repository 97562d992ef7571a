// Backup: walk the targets, turn every entry into a tree node, store file contents as data
// blobs (read, chunked and sealed on worker threads) and directories as tree blobs, bottom up;
// then the index (by the BlobWriter, after its packs) and the snapshot last. The steps, each a
// module here:
//   sources.ts   which targets exist and where each lands in the snapshot;
//   walk.ts      the walk, file saving and tree building (BackupRun);
//   stdin.ts     a stream or a command's output as one file;
//   snapshot.ts  the snapshot, written once packs and index are stored;
//   same.ts      restic's change detection, and whether a tree equals the parent's.
// Files unchanged since the parent snapshot (type, mtime, ctime, size, inode — restic's rule)
// reuse the parent's content list without being read.
import path from 'node:path';
import { InvalidInputError, addSuppressed, throwIfAborted } from '../../../errors.ts';
import { withIndex, type AnyRepository, type BlobWriter } from '../../../repository/repository.ts';
import type { BlobId } from '../../../repository/id.ts';
import { goTimeNow, toGoTime } from '../../../repository/gotime.ts';
import { Lock } from '../../../repository/lock.ts';
import { SysHelper } from '../../engine/syshelper.ts';
import { startCommand, type RunningCommand } from '../../engine/stdin-command.ts';
import type { BackupProgress } from '../../engine/progress.ts';
import { buildVirtualTree, existingTargets } from './sources.ts';
import { saveCommandOutput, saveStream } from './stdin.ts';
import { BackupRun } from './walk.ts';
import { writeSnapshot } from './snapshot.ts';
import type { BackupOptions, BackupResult } from './types.ts';
import { checkMemoryLimit, planBudget } from '../../../memory-budget.ts';

export type { BackupProgress };
export type { StdinStream, StdinCommand, BackupOptions, BackupResult, BackupItem } from './types.ts';
export { buildVirtualTree } from './sources.ts';
export { sameNodes } from './same.ts';

/**
 * Backs up files and folders (or one stream or command output, as `restic backup --stdin` and
 * `--stdin-from-command`) into a new snapshot, as
 * restic does: the same content-defined chunks (so restic and Stowage deduplicate against each
 * other), blobs the repository already has are not stored again, and files unchanged since the
 * parent snapshot (same size, mtime, ctime, inode) are not read. Chunking, hashing, compression and
 * encryption run on worker threads. Packs are stored first, then the index, then the snapshot, so a
 * crash never leaves a snapshot pointing at missing data. Holds a shared lock unless `lock: false`.
 *
 * A file or folder that cannot be read is skipped, reported to `onError` and listed in `errors`
 * (the CLI exits with 3); the backup still succeeds.
 *
 * @throws InvalidInputError when there is nothing to back up ({@link SourceNotFoundError} when
 *   none of the paths exists).
 * @throws CommandFailedError when `stdin.command` exits non-zero or is killed; StdinError when
 *   `stdin.stream` fails. No snapshot is written.
 * @throws LockedError when an exclusive lock is held past `retryLock`.
 * @throws AbortedError when `signal` aborts.
 * @throws BackendError when the storage fails after retries.
 *
 * @example
 * ```ts
 * const repo = await Repository.open(backend, { password }); // or its IndexedRepository, to reuse the index
 * const { snapshotId, summary } = await backup(repo, { paths: ['/var/lib/app'], tags: ['nightly'], hostname: 'app' });
 * console.log(snapshotId, summary.filesNew, summary.dataAdded);
 * ```
 */
export async function backup(repository: AnyRepository, options: BackupOptions): Promise<BackupResult> {
  const signal = options.signal;
  throwIfAborted(signal);
  checkMemoryLimit(options.memoryLimit);
  const repo = await withIndex(repository, { signal });
  const start = goTimeNow();
  // A caller's time may be a plain { epochNs, offsetMinutes }: results carry GoTime values.
  const time = options.time === undefined ? undefined : toGoTime(options.time);
  const { targets, stdinName } = await checkSources(options);
  // The lock is taken while the backup starts (taking it includes a wait of its own, to see
  // whether another process locks at the same time); nothing is stored before it is held.
  // A dry run stores nothing and takes no lock (restic neither).
  const locking = options.lock === false || options.dryRun ? Promise.resolve(undefined) : Lock.acquire(repo.repo, { exclusive: false, retryLock: options.retryLock, signal });
  locking.catch(() => undefined);
  // Workers and pack buffers sized to the memory budget (or the container's limits).
  const budget = planBudget('backup', { memoryLimit: options.memoryLimit, connections: repo.backend.connections });
  const writer = repo.blobWriter({ compression: options.compression ?? 'auto', packSize: options.packSize, signal, ready: locking, packBuffers: budget.packBuffers, dryRun: options.dryRun === true });
  const helper = SysHelper.start();
  const run = new BackupRun(repo, writer, helper, { ...options, threads: options.threads ?? budget.workers });
  run.errors.push(...targets.missing);
  let command: RunningCommand | undefined;
  // Without the lock, stop reading at once (and report the lock's error, not the stop's).
  const locked = locking.catch((e: unknown) => {
    void run.close();
    throw e;
  });
  try {
    const started = startWork(run, options, targets.present, stdinName);
    command = started.command;
    const tree = await finishWork(run, writer, started, locked);
    return await writeSnapshot(repo, { run, writer, helper, options, start, time, tree, paths: started.paths });
  } catch (err) {
    // The failure is what the caller sees, even when removing the lock fails too (same outage).
    await run.close();
    await (await locking.catch(() => undefined))?.releaseAfterError(err);
    throw err;
  } finally {
    command?.kill();
    await run.close();
    helper.close();
    await (await locking.catch(() => undefined))?.release();
  }
}

/**
 * Checks what is to be backed up before the lock is taken and anything is stored. Source paths
 * that do not exist are left out, as restic does; with none left there is nothing to back up.
 */
async function checkSources(options: BackupOptions): Promise<{ targets: Awaited<ReturnType<typeof existingTargets>>; stdinName: string }> {
  if (!options.stdin && (options.paths ?? []).length === 0) throw new InvalidInputError('nothing to back up: give at least one path');
  const targets = options.stdin ? { present: [], missing: [] } : await existingTargets(options.paths!, options.onError);
  const stdinName = options.stdin?.filename ?? 'stdin';
  if (options.stdin && (!stdinName || stdinName.includes('/'))) throw new InvalidInputError(`invalid stdin file name ${JSON.stringify(stdinName)}`);
  if (options.stdin && 'command' in options.stdin && !options.stdin.command) throw new InvalidInputError('no command was given to back up the output of');
  return { targets, stdinName };
}

/** The work under way: the root tree it will save, the snapshot's paths, and a running command. */
interface Work {
  tree: Promise<BlobId>;
  paths: string[];
  command?: RunningCommand;
}

/** Starts saving the source: a command's output, a stream, or the targets (after the parent is found). */
function startWork(run: BackupRun, options: BackupOptions, present: readonly string[], stdinName: string): Work {
  const signal = options.signal;
  if (options.stdin && 'command' in options.stdin) {
    const command = startCommand({ ...options.stdin, filename: stdinName });
    return { tree: saveCommandOutput(run, command, stdinName, signal), paths: ['/' + stdinName], command };
  }
  if (options.stdin) return { tree: saveStream(run, options.stdin.stream, stdinName), paths: ['/' + stdinName] };
  const paths = present.map((t) => path.resolve(t)).sort();
  return { tree: run.resolveParent(paths).then((parentTree) => run.saveVirtual(buildVirtualTree(present), parentTree)).then((t) => t.id), paths };
}

/**
 * Waits for the work and the lock; then the packs and their index are stored. On failure no
 * command is left running and what was stored stays consistent (packs that landed get their
 * index, no snapshot).
 */
async function finishWork(run: BackupRun, writer: BlobWriter, work: Work, locked: Promise<unknown>): Promise<BlobId> {
  let tree: BlobId;
  try {
    [tree] = await Promise.all([work.tree, locked]);
  } catch (e) {
    // No command is left running (the lock may have failed while it was being read).
    if (work.command) {
      work.command.kill();
      await work.command.exited.catch(() => undefined);
    }
    await run.close();
    await writer.abandon().catch((later: unknown) => addSuppressed(e, later));
    throw e;
  }
  await run.close();
  // Packs and their index are stored; only now may a snapshot refer to them.
  await writer.flush();
  return tree;
}
