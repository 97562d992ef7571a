// Restore: recreate a snapshot's tree under a target folder, in steps, each a module here:
//   walk.ts      the trees walked, entries selected (include, exclude), folders made on the way;
//   plan.ts      the plan, pure: files with their blobs grouped by pack and cut into reads
//                (ranges.ts), hard links, special files — also a dry run, planRestore();
//   contents.ts  the contents written pack by pack on decode workers, every blob verified;
//   specials.ts  links, fifos and devices after the contents;
//   metadata.ts  owner, mode, xattrs and times from the leaves up (folders last), so writing into
//                a folder never disturbs its restored mtime.
// Every name is checked, and every path is built inside the target: a tree cannot make the
// restorer write anywhere else.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AbortedError, InvalidInputError } from '../../../errors.ts';
import { withIndex, type AnyRepository, type IndexedRepository } from '../../../repository/repository.ts';
import type { BlobId } from '../../../repository/id.ts';
import { SysHelper } from '../../engine/syshelper.ts';
import { TREE_BYTES, TreeLoader } from '../../engine/tree-loader.ts';
import { resolveTreeSource, type TreeSource } from '../../engine/select.ts';
import { ContentWriter } from './contents.ts';
import { MetadataWriter, xattrSelector } from './metadata.ts';
import { RestoreOutput } from './output.ts';
import { planRestore as planEntries, summarizePlan, type RestorePlan, type RestorePlanSummary } from './plan.ts';
import { SpecialMaker } from './specials.ts';
import { deleteExtraneous, listExtraneous } from './delete.ts';
import { checkExisting, furtherHardLinks } from './overwrite.ts';
import { CRYPTO_OVERHEAD } from '../../../repository/crypto.ts';
import type { ExistingContents } from './plan.ts';
import { verifyFiles } from './verify.ts';
import { TargetFolder } from './target.ts';
import { NO_TARGET, treeOrder, walkRestoreTree } from './walk.ts';
import type { RestoreEntry, RestoreOptions, RestoreResult } from './types.ts';
import { checkMemoryLimit, planBudget } from '../../../memory-budget.ts';

export type { RestoreOptions, RestoreProgress, RestoreResult } from './types.ts';
export type { RestorePlanSummary } from './plan.ts';
export type { OverwriteMode } from './overwrite.ts';
export type { VerifyResult } from './verify.ts';
export { checkNodeName } from './walk.ts';

/**
 * Restores a snapshot (`"latest"`, an ID or unique prefix, `"ID:subfolder"`, an entry of
 * `listSnapshots`) or a tree ID into `target`: files, folders, symlinks, hard links,
 * fifos and devices, with modes (setuid, sticky), owners (as root), nanosecond times and extended
 * attributes. Every blob is verified before it is written, and no name can lead outside `target`.
 * Contents are restored pack by pack on worker threads, each needed range read once. Existing
 * entries in the way are replaced as `overwrite` says: by default a file already there is read
 * first and left when it holds the snapshot's contents, or written in place where it differs.
 *
 * @throws IntegrityError when stored data does not verify.
 * @throws NotFoundError when no snapshot matches `source`, or the index lacks a blob the tree needs.
 * @throws AbortedError when `signal` aborts.
 * @throws InvalidInputError when both `includeXattrs` and `excludeXattrs` are given, or a pattern is malformed.
 *
 * @example
 * ```ts
 * await restore(repo, 'latest', { target: '/tmp/restore', include: ['/etc/nginx'], snapshotFilter: { hosts: ['web-1'] } });
 * ```
 */
export async function restore(repository: AnyRepository, source: TreeSource, options: RestoreOptions): Promise<RestoreResult> {
  checkMemoryLimit(options.memoryLimit);
  xattrSelector(options.includeXattrs, options.excludeXattrs);
  const repo = await withIndex(repository, { signal: options.signal });
  const treeId = await resolveTreeSource(repo, source, { ...options.snapshotFilter, signal: options.signal });
  const helper = SysHelper.start();
  try {
    return await execute(repo, treeId, options, helper);
  } finally {
    helper.close();
  }
}

/** Options of {@link planRestore}: those of {@link restore} that choose what is restored. */
export interface RestorePlanOptions extends Pick<RestoreOptions, 'include' | 'exclude' | 'iinclude' | 'iexclude' | 'snapshotFilter' | 'signal' | 'overwrite' | 'delete'> {
  /**
   * The folder the plan's paths are in (default "/"). Nothing is made there; it is read only with
   * `overwrite` (its files compared with the snapshot's, as the restore would) or `delete`.
   */
  target?: string;
  /**
   * Called for every entry the restore would write, leave or delete, in the order restic's
   * `restore --dry-run -vv` lists them: files as its first pass reaches them (depth first, each
   * folder's entries in tree order, content bytes as `size`), then the rest as its second pass
   * finishes them: links, special files and further names of hard links in tree order, each
   * folder after what is in it, what `delete` would remove from a folder just before it.
   */
  onItem?: (item: RestorePlanItem) => void;
}

/** An entry {@link planRestore} would write, leave or delete. */
export interface RestorePlanItem {
  /**
   * Its path in the snapshot ("/home/…"), as restic's dry run lists it; the restore writes it at
   * the target joined with this. What `delete` would remove: its path in the target, as restic
   * lists it. Bytes: names need not be UTF-8.
   */
  path: Buffer;
  /** The node type: file, dir, symlink, dev, chardev, fifo, socket (what `delete` would remove: file or dir). */
  type: string;
  /** Content bytes of a file; 0 for anything else and for a further name of a hard link. */
  size: number;
  /**
   * restic's word for it: `restored` (written anew), `updated` (a file of the target's, only the
   * parts that differ written), `unchanged` (left: contents already the snapshot's, or
   * `overwrite` says so), `deleted` (by `delete`).
   */
  action: 'restored' | 'updated' | 'unchanged' | 'deleted';
  /** A folder made only on the way to included entries below it (not itself included). */
  onTheWay?: boolean;
  /** A further name of a hard link (linked to the first, restic counts it apart from files). */
  hardLink?: boolean;
}

/**
 * What {@link restore} would do with these options, without doing it (restic's `restore
 * --dry-run`): the snapshot's trees are read and the plan is made — folders, files, hard links,
 * special files, bytes, and the pack reads — but nothing is written. With `overwrite` the
 * target's files are read and compared as the restore would (files that match are not counted
 * in the plan); with `delete` what it holds beyond the snapshot is listed.
 *
 * @throws NotFoundError when no snapshot matches `source`, or the index lacks a blob the tree needs.
 * @throws AbortedError when `signal` aborts.
 *
 * @example
 * ```ts
 * const plan = await planRestore(repo, 'latest', { include: ['/etc'] });
 * console.log(plan.files, plan.bytes, plan.reads);
 * ```
 */
export async function planRestore(repository: AnyRepository, source: TreeSource, options: RestorePlanOptions = {}): Promise<RestorePlanSummary> {
  const repo = await withIndex(repository, { signal: options.signal });
  const treeId = await resolveTreeSource(repo, source, { ...options.snapshotFilter, signal: options.signal });
  const root = Buffer.from(path.resolve(options.target ?? '/'));
  const walked = await walkRestoreTree(new TreeLoader(repo, options.signal, TREE_BYTES), treeId, root, options, NO_TARGET);
  const order = treeOrder(walked);
  const further = furtherHardLinks(order.files);
  const existing = options.overwrite ? await checkExisting(walked, options.overwrite, blobSizes(repo), { signal: options.signal }) : undefined;
  const visited = new Map(walked.visited.map((d) => [d.path.toString('latin1'), d]));
  const toDelete = async (dirPath: Buffer): Promise<Array<{ path: Buffer; isDir: boolean }>> => {
    const dir = options.delete ? visited.get(dirPath.toString('latin1')) : undefined;
    return dir ? listExtraneous(dir, walked, options.signal) : [];
  };
  const plan = await planWithIndex(repo, walked, options.signal, { unchanged: existing?.unchanged, inPlace: existing?.updated });
  const onItem = options.onItem;
  if (onItem) {
    // Entries lie at root + "/" + their snapshot path.
    const inSnapshot = (p: Buffer): Buffer => p.subarray(root.length === 1 ? 1 : root.length);
    const action = (e: RestoreEntry): RestorePlanItem['action'] => (existing?.skipped.has(e) ? 'unchanged' : existing?.updated.has(e) ? 'updated' : 'restored');
    const deleted = async (dirPath: Buffer) => {
      for (const d of await toDelete(dirPath)) onItem({ path: d.path, type: d.isDir ? 'dir' : 'file', size: 0, action: 'deleted' });
    };
    for (const e of order.files) {
      if (!further.has(e)) onItem({ path: inSnapshot(e.path), type: 'file', size: Number(e.node.size ?? 0), action: action(e) });
    }
    for (const e of order.after) {
      if (e.node.type === 'dir') {
        await deleted(e.path);
        onItem({ path: inSnapshot(e.path), type: 'dir', size: 0, action: 'restored', ...(e.onTheWay ? { onTheWay: true } : {}) });
      } else if (e.node.type !== 'file') onItem({ path: inSnapshot(e.path), type: e.node.type, size: 0, action: action(e) });
      else if (further.has(e)) onItem({ path: inSnapshot(e.path), type: 'file', size: 0, action: action(e), hardLink: true });
    }
    await deleted(root);
  }
  return summarizePlan(plan);
}

/** A data blob's plaintext length, from the index. */
function blobSizes(repo: IndexedRepository): (id: BlobId) => number | undefined {
  return (id) => {
    const loc = repo.index.lookup(id, 'data')[0];
    return loc ? loc.uncompressedLength || loc.length - CRYPTO_OVERHEAD : undefined;
  };
}

/**
 * The plan, with the index refreshed once when it lacks a data blob (another client's snapshot
 * whose trees were read from a refreshed index, or whose data came later).
 */
function planWithIndex(repo: IndexedRepository, walked: Parameters<typeof planEntries>[0], signal: AbortSignal | undefined, existing?: ExistingContents): Promise<RestorePlan> {
  return repo.retryAfterRefresh(() => planEntries(walked, (id) => repo.index.lookup(id, 'data')[0], existing), { signal });
}

/**
 * The restore proper: folders while walking, then file contents, links and special files, and
 * finally metadata from the leaves up (folders last).
 */
async function execute(repo: IndexedRepository, treeId: BlobId, options: RestoreOptions, helper: SysHelper): Promise<RestoreResult> {
  const targetPath = path.resolve(options.target);
  const owners = options.owners ?? process.getuid?.() === 0;
  const output = new RestoreOutput(options);
  const target = new TargetFolder();
  // As restic: folders made for the target (and its missing parents) are 0700; one already there is left as it is.
  await mkdir(targetPath, { recursive: true, mode: 0o700 });
  const helperOk = await helper.ready();
  const metadata = new MetadataWriter(helper, helperOk, owners, output, xattrSelector(options.includeXattrs, options.excludeXattrs));
  const walked = await walkRestoreTree(new TreeLoader(repo, options.signal, TREE_BYTES), treeId, Buffer.from(targetPath), options, target);
  // Files in tree order: the first name of a hard link is the one restic restores.
  treeOrder(walked);
  const mode = options.overwrite ?? 'always';
  const existing = await checkExisting(walked, mode, blobSizes(repo), { signal: options.signal, absent: (e) => target.inFreshDir(e.path) });
  // Their xattrs the snapshot lacks are removed (as restic): files left or written in place, folders kept.
  const kept = new Set([...existing.unchanged, ...[...existing.updated].filter(([, inPlace]) => inPlace).map(([e]) => e)]);
  metadata.existed = (e) => (e.node.type === 'dir' ? !target.isFresh(e.path) : kept.has(e));
  if (mode !== 'always' || existing.count > 0) {
    output.result.filesSkipped = existing.count;
    output.result.bytesSkipped = existing.bytes;
    if (existing.others) output.result.othersSkipped = existing.others;
  }
  if (options.delete) {
    output.result.deleted = await deleteExtraneous(walked, (p) => options.onDelete?.(p.toString('utf8')), options.signal);
  }
  const plan: RestorePlan = await planWithIndex(repo, walked, options.signal, { unchanged: existing.unchanged, inPlace: existing.updated });
  // What already lies in place counts as restored, as restic counts it.
  output.result.bytesRestored += plan.contents.inPlaceBytes;
  output.result.dirsRestored = plan.dirs.length;
  const onTheWay = plan.dirs.filter((d) => d.onTheWay).length;
  if (onTheWay) output.result.dirsOnTheWay = onTheWay;
  output.totals.bytes = plan.contents.totalBytes;
  output.totals.files = plan.files.length;
  output.report();
  // Files get their owner, mode and times as soon as they are complete, while others are
  // still being written; links, special files and folders after all contents.
  const budget = planBudget('restore', { memoryLimit: options.memoryLimit, connections: repo.backend.connections });
  await new ContentWriter(repo, { signal: options.signal, owners, target, metadata, output, workers: budget.workers, connections: budget.connections, sparse: options.sparse }).write(plan.contents);
  const specials = new SpecialMaker(target, helper, helperOk, metadata, output);
  for (const s of plan.specials) {
    if (await specials.create(s)) metadata.finishEntry(s, true);
  }
  // Files whose contents were already there get their metadata all the same, as in restic.
  for (const e of existing.unchanged) metadata.finishEntry(e, true);
  await metadata.done();
  await metadata.finishDirs(plan.dirs);
  metadata.reportLoss(repo.logger, targetPath);
  if (options.verify) output.result.verified = await verifyFiles(repo, walked.files, options.signal);
  return output.result;
}

export { AbortedError, InvalidInputError };
