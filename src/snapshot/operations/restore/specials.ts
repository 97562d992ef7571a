// Symlinks, fifos, devices and sockets, made after every file's contents.
import { symlink } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { findExecutable, mkfifoProgram, type SysHelper } from '../../engine/syshelper.ts';
import { goStringToBytes } from '../../model/gojson.ts';
import type { MetadataWriter } from './metadata.ts';
import type { RestoreOutput } from './output.ts';
import type { TargetFolder } from './target.ts';
import type { RestoreEntry } from './types.ts';

/** Makes special files; a fifo without the helper with coreutils' mkfifo, found once. */
export class SpecialMaker {
  readonly #target: TargetFolder;
  readonly #helper: SysHelper;
  readonly #helperOk: boolean;
  readonly #metadata: MetadataWriter;
  readonly #output: RestoreOutput;
  #mkfifo: string | undefined | null = null;

  constructor(target: TargetFolder, helper: SysHelper, helperOk: boolean, metadata: MetadataWriter, output: RestoreOutput) {
    this.#target = target;
    this.#helper = helper;
    this.#helperOk = helperOk;
    this.#metadata = metadata;
    this.#output = output;
  }

  /**
   * Makes a symlink, fifo or device; false when it was not made (then it gets no metadata). A
   * fifo or device that cannot be made is a warning, as in restic, never the restore's end.
   */
  async create(s: RestoreEntry): Promise<boolean> {
    // Counted apart from files, for restic's summary (which counts every kind of entry).
    const made = await this.#make(s);
    if (made) this.#output.result.othersRestored = (this.#output.result.othersRestored ?? 0) + 1;
    return made;
  }

  async #make(s: RestoreEntry): Promise<boolean> {
    const { node } = s;
    switch (node.type) {
      case 'symlink': {
        await this.#target.removeExisting(s.path);
        const target = goStringToBytes(node.linktarget ?? '');
        await symlink(target, s.path);
        return true;
      }
      case 'fifo':
        if (!this.#helperOk) return this.mkfifoWithoutHelper(s);
        await this.#target.removeExisting(s.path);
        return this.tryMknod(s, fsc.S_IFIFO | 0o600, 0);
      case 'dev':
      case 'chardev':
        if (!this.#helperOk) {
          this.#metadata.lose('devices');
          return false;
        }
        await this.#target.removeExisting(s.path);
        return this.tryMknod(s, (node.type === 'dev' ? fsc.S_IFBLK : fsc.S_IFCHR) | 0o600, BigInt(node.device ?? 0));
      case 'socket':
        await this.#target.removeExisting(s.path);
        return false; // sockets belong to a running process; restic does not recreate them either
      default:
        await this.#target.removeExisting(s.path);
        this.#output.warn(s.path, `cannot restore a node of type ${node.type}`);
        return false;
    }
  }

  async tryMknod(s: RestoreEntry, mode: number, dev: bigint | number): Promise<boolean> {
    try {
      await this.#helper.mknod(s.path, mode, dev);
      return true;
    } catch (err) {
      this.#output.warn(s.path, (err as Error).message);
      return false;
    }
  }

  /** Node cannot make a fifo; coreutils' mkfifo can (a name must be valid UTF-8 to pass it on). */
  async mkfifoWithoutHelper(s: RestoreEntry): Promise<boolean> {
    if (this.#mkfifo === null) this.#mkfifo = findExecutable('mkfifo');
    const asText = s.path.toString('utf8');
    if (!this.#mkfifo || !Buffer.from(asText, 'utf8').equals(s.path)) {
      this.#metadata.lose('fifos');
      return false;
    }
    await this.#target.removeExisting(s.path);
    try {
      await mkfifoProgram(this.#mkfifo, asText);
      return true;
    } catch (err) {
      this.#output.warn(s.path, (err as Error).message);
      return false;
    }
  }
}
