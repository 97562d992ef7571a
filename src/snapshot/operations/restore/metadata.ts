// Metadata, applied once an entry is complete: owner and mode, xattrs, and times last, so that
// nothing changes an mtime once it is set. Folders come at the very end, deepest first. What the
// missing syscall helper costs is counted here and reported once.
import { chown, lchown, chmod } from 'node:fs/promises';
import type { Logger } from '../../../logger.ts';
import { Semaphore } from '../../../repository/concurrency.ts';
import { describeMetadataLoss, type MetadataKind, type SysHelper } from '../../engine/syshelper.ts';
import { posixPermissionsFromGo } from '../../model/mode.ts';
import type { RestoreOutput } from './output.ts';
import type { RestoreEntry } from './types.ts';
import { InvalidInputError } from '../../../errors.ts';
import { PathFilter, malformedPatterns } from '../../model/filter.ts';

/**
 * Which extended attributes a restore sets, as restic's --include-xattr and --exclude-xattr: a
 * name is matched like a path against restic's patterns (`user.*`); with includes only matching
 * names are set, with excludes all but matching ones, with neither all.
 *
 * @throws InvalidInputError when both are given, or a pattern is malformed.
 */
export function xattrSelector(include: readonly string[] = [], exclude: readonly string[] = []): (name: string) => boolean {
  const inc = include.filter((p) => p !== '');
  const exc = exclude.filter((p) => p !== '');
  if (inc.length && exc.length) throw new InvalidInputError('exclude and include xattr patterns are mutually exclusive');
  const [flag, patterns] = exc.length ? ['--exclude-xattr', exc] : ['--include-xattr', inc];
  if (patterns.length === 0) return () => true;
  const bad = malformedPatterns(patterns);
  if (bad.length) throw new InvalidInputError(`${flag}: invalid pattern(s) provided:\n${bad.join('\n')}`);
  const filter = new PathFilter(patterns);
  return exc.length ? (name) => !filter.matches(name) : (name) => filter.matches(name);
}

/** Entries whose times go to the helper in one request. */
const TIMES_PER_BATCH = 256;

/** Entries whose owner, mode and xattrs are being set at once. */
const METADATA_AT_ONCE = 16;

/** Applies metadata in the background as entries complete, and counts what could not be. */
export class MetadataWriter {
  readonly #helper: SysHelper;
  readonly #helperOk: boolean;
  readonly #owners: boolean;
  readonly #output: RestoreOutput;
  /** Entries that lost something to the missing helper, per kind. */
  readonly lost: Partial<Record<MetadataKind, number>> = {};
  readonly #limit = new Semaphore(METADATA_AT_ONCE);
  /**
   * Entries waiting for their metadata, from `#head` on, and whether each needs its owner and
   * mode: a plain queue worked through by at most METADATA_AT_ONCE loops, so that an entry
   * waiting costs two array slots (no promise or closure each) when files complete faster
   * than their metadata is set (200 000 small files: a backlog of up to all of them).
   */
  #queue: RestoreEntry[] = [];
  #queueOwnerMode: boolean[] = [];
  #head = 0;
  readonly #loops = new Set<Promise<void>>();
  /** The first failure of a loop (thrown by done()). */
  #failure: { error: unknown } | undefined;
  #times: RestoreEntry[] = [];
  /** Which xattrs are restored (restore --include-xattr / --exclude-xattr); all without one. */
  readonly #xattrSelected: (name: string) => boolean;
  /**
   * Whether an entry was in the target before the restore (a folder kept, a file written in
   * place or left): its xattrs the snapshot lacks are removed, those the selection covers, as restic
   * removes them. Entries made by the restore have none to remove.
   */
  existed: (e: RestoreEntry) => boolean = () => false;

  /** `helperOk`: whether the helper answered (asked before anything is restored). */
  constructor(helper: SysHelper, helperOk: boolean, owners: boolean, output: RestoreOutput, xattrSelected: (name: string) => boolean = () => true) {
    this.#helper = helper;
    this.#helperOk = helperOk;
    this.#owners = owners;
    this.#output = output;
    this.#xattrSelected = xattrSelected;
  }

  lose(kind: MetadataKind): void {
    this.lost[kind] = (this.lost[kind] ?? 0) + 1;
  }

  /** One warning for all the helper's absence cost this run (set on the result and logged). */
  reportLoss(logger: Logger, target: string): void {
    const kinds = (['xattrs', 'nanosecond-times', 'fifos', 'devices'] as const).filter((k) => this.lost[k]);
    if (kinds.length === 0) return;
    const loss = describeMetadataLoss('restore', kinds, this.lost, this.#helper.unavailableReason ?? 'the syscall helper is unavailable');
    this.#output.result.metadataLoss = loss;
    logger.warn(loss.message, { lost: kinds.join(','), target });
  }

  /**
   * Owner and mode (unless already set), xattrs and then times of a complete file or special
   * file, in the background. Times go to the helper in batches, each entry after its other
   * metadata, so nothing changes an mtime once it is set.
   */
  finishEntry(e: RestoreEntry, ownerMode: boolean): void {
    if (e.node.type === 'socket') return;
    this.#queue.push(e);
    this.#queueOwnerMode.push(ownerMode);
    if (this.#loops.size >= METADATA_AT_ONCE) return;
    const loop = this.#work().catch((error: unknown) => {
      this.#failure ??= { error };
    });
    this.#loops.add(loop);
    void loop.finally(() => this.#loops.delete(loop));
  }

  /** Takes entries off the queue until it is empty. */
  async #work(): Promise<void> {
    while (this.#head < this.#queue.length && !this.#failure) {
      const i = this.#head++;
      const e = this.#queue[i]!;
      const ownerMode = this.#queueOwnerMode[i]!;
      this.#queue[i] = undefined as unknown as RestoreEntry;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#queueOwnerMode = this.#queueOwnerMode.slice(this.#head);
        this.#head = 0;
      }
      await this.applyOwnerModeXattrs(e, ownerMode);
      this.#times.push(e);
      if (this.#times.length >= TIMES_PER_BATCH) await this.#flushTimes();
    }
  }

  async #flushTimes(): Promise<void> {
    const batch = this.#times;
    this.#times = [];
    if (batch.length === 0) return;
    if (!this.#helperOk) {
      // fs.lutimes takes seconds as a double: the digits below a microsecond are lost.
      for (const e of batch) if (e.node.mtime.epochNs % 1000n !== 0n || e.node.atime.epochNs % 1000n !== 0n) this.lose('nanosecond-times');
    }
    const results = await this.#helper.setTimesMany(batch.map((e) => ({ path: e.path, atimeNs: e.node.atime.epochNs, mtimeNs: e.node.mtime.epochNs })));
    results.forEach((err, i) => {
      if (err) this.#output.warn(batch[i]!.path, `times: ${err.message}`);
    });
  }

  /** Waits for the metadata of every file and special file. */
  async done(): Promise<void> {
    while (this.#loops.size > 0) await Promise.all([...this.#loops]);
    if (this.#failure) throw this.#failure.error;
    await this.#flushTimes();
  }

  /** Folders last, deepest first (`dirs` parents first): owner, mode and xattrs, then times in that order. */
  async finishDirs(dirs: readonly RestoreEntry[]): Promise<void> {
    const deepestFirst = [...dirs].reverse();
    await Promise.all(deepestFirst.map((e) => this.#limit.run(() => this.applyOwnerModeXattrs(e, true))));
    this.#times = deepestFirst;
    await this.#flushTimes();
  }

  async applyOwnerModeXattrs(e: RestoreEntry, ownerMode: boolean): Promise<void> {
    const { node, path: p } = e;
    const isLink = node.type === 'symlink';
    if (ownerMode) {
      try {
        if (this.#owners) await (isLink ? lchown : chown)(p, node.uid, node.gid);
        // chmod after chown: chown clears setuid/setgid.
        if (!isLink && node.mode !== undefined) await chmod(p, posixPermissionsFromGo(node.mode));
      } catch (err) {
        this.#output.warn(p, `owner/mode: ${(err as Error).message}`);
      }
    }
    const xattrs = (node.extendedAttributes ?? []).filter((x) => this.#xattrSelected(x.name));
    if (!this.#helperOk) {
      if (xattrs.length) this.lose('xattrs');
      return;
    }
    for (const x of xattrs) {
      try {
        await this.#helper.setXattr(p, x.name, x.value);
      } catch (err) {
        this.#output.warn(p, `xattr ${x.name}: ${(err as Error).message}`);
      }
    }
    if (!this.existed(e)) return;
    try {
      const keep = new Set(xattrs.map((x) => x.name));
      for (const x of await this.#helper.listXattrs(p)) {
        if (!keep.has(x.name) && this.#xattrSelected(x.name)) await this.#helper.removeXattr(p, x.name);
      }
    } catch (err) {
      this.#output.warn(p, `xattrs: ${(err as Error).message}`);
    }
  }
}
