// Restore: recreate a snapshot's tree under a target folder.
// Order: folders while walking, then file contents (several files in flight, every blob
// verified — MAC and SHA-256 — before a byte of it is written), links and special files, and
// finally metadata from the leaves up (owner, mode, xattrs, times), so writing into a folder
// never disturbs its restored mtime. Every name is checked, and every path is built inside the
// target: a tree cannot make the restorer write anywhere else.
import { chown, lchown, chmod, link, lstat, mkdir, open, rm, symlink, unlink } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import path from 'node:path';
import { AbortedError, IntegrityError, InvalidInputError, NotFoundError, throwIfAborted } from '../errors.ts';
import type { IndexedRepository } from '../repository/repository.ts';
import type { BlobId } from '../repository/id.ts';
import type { BlobLocation } from '../repository/master-index.ts';
import { Semaphore } from '../repository/concurrency.ts';
import { SysHelper } from './syshelper.ts';
import { PathFilter } from './filter.ts';
import { posixPermissionsFromGo } from './mode.ts';
import { goStringToBytes } from './gojson.ts';
import type { TreeNode } from './node.ts';
import { decodeTree } from './tree.ts';

export interface RestoreProgress {
  filesDone: number;
  bytesDone: number;
  currentFile?: string;
}

export interface RestoreOptions {
  /** Folder to restore into (created if missing). */
  target: string;
  /** Only paths matching these patterns (and the folders leading to them). */
  include?: string[];
  exclude?: string[];
  /** Restore owners (uid/gid). Default: when running as root. */
  owners?: boolean;
  /** Files restored at once (default 16). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (p: RestoreProgress) => void;
  /** Metadata that could not be applied (e.g. xattrs on a filesystem without them). */
  onWarning?: (path: string, message: string) => void;
}

export interface RestoreResult {
  filesRestored: number;
  dirsRestored: number;
  bytesRestored: number;
  warnings: Array<{ path: string; message: string }>;
}

interface Pending {
  path: Buffer;
  node: TreeNode;
}

/** Rejects names that could leave the folder they belong to. */
export function checkNodeName(name: Uint8Array, treeId: string): void {
  const s = Buffer.from(name);
  if (s.length === 0 || s.equals(Buffer.from('.')) || s.equals(Buffer.from('..')) || s.includes(0x2f) || s.includes(0)) {
    throw new IntegrityError(`tree contains an unsafe name ${JSON.stringify(s.toString('utf8'))}`, { blob: treeId });
  }
}

export async function restore(repo: IndexedRepository, treeId: BlobId, options: RestoreOptions): Promise<RestoreResult> {
  const r = new RestoreRun(repo, options);
  try {
    await r.run(treeId);
    return r.result;
  } finally {
    r.helper.close();
  }
}

class RestoreRun {
  readonly repo: IndexedRepository;
  readonly options: RestoreOptions;
  readonly target: string;
  readonly helper = SysHelper.start();
  readonly include: PathFilter;
  readonly exclude: PathFilter;
  readonly owners: boolean;
  readonly files: Pending[] = [];
  readonly specials: Pending[] = [];
  /** Everything created, in creation order (parents before children). */
  readonly created: Pending[] = [];
  readonly result: RestoreResult = { filesRestored: 0, dirsRestored: 0, bytesRestored: 0, warnings: [] };
  /** (device, inode) of a hard-linked file → its first name, once that file is written. */
  readonly hardlinks = new Map<string, Promise<Buffer>>();

  constructor(repo: IndexedRepository, options: RestoreOptions) {
    this.repo = repo;
    this.options = options;
    this.target = path.resolve(options.target);
    this.include = new PathFilter(options.include ?? []);
    this.exclude = new PathFilter(options.exclude ?? []);
    this.owners = options.owners ?? process.getuid?.() === 0;
  }

  warn(p: Buffer, message: string): void {
    const ps = p.toString('utf8');
    this.result.warnings.push({ path: ps, message });
    this.options.onWarning?.(ps, message);
  }

  async run(treeId: BlobId): Promise<void> {
    await mkdir(this.target, { recursive: true });
    await this.walk(treeId, Buffer.from(this.target), '');
    // Contents: several files at once.
    const limit = new Semaphore(this.options.concurrency ?? 16);
    let failure: unknown;
    await Promise.all(this.files.map((f) => limit.run(async () => {
      if (failure) return;
      try {
        await this.writeFile(f);
      } catch (e) {
        failure ??= e;
      }
    })));
    if (failure) throw failure;
    for (const s of this.specials) await this.createSpecial(s);
    // Metadata, children before parents: everything that is not a folder at once (bounded),
    // then folders deepest first, so setting a child never touches a finished parent's mtime.
    const meta = new Semaphore(32);
    await Promise.all(this.created.filter((e) => e.node.type !== 'dir').map((e) => meta.run(() => this.applyMetadata(e))));
    for (let i = this.created.length - 1; i >= 0; i--) {
      if (this.created[i]!.node.type === 'dir') await this.applyMetadata(this.created[i]!);
    }
  }

  selected(rel: string, isDir: boolean, insideIncluded: boolean): 'yes' | 'no' | 'descend' {
    if (!this.exclude.empty && this.exclude.matches(rel)) return 'no';
    if (insideIncluded || this.include.empty || this.include.matches(rel)) return 'yes';
    return isDir && this.include.mayContainMatch(rel) ? 'descend' : 'no';
  }

  async walk(treeId: BlobId, dir: Buffer, rel: string, forced = false): Promise<boolean> {
    throwIfAborted(this.options.signal);
    const nodes = decodeTree(await this.repo.loadBlob('tree', treeId, { signal: this.options.signal }), treeId);
    let any = false;
    for (const node of nodes) {
      const nameBytes = Buffer.from(goStringToBytes(node.name));
      checkNodeName(nameBytes, treeId);
      const childRel = `${rel}/${node.name}`;
      const sel = this.selected(childRel, node.type === 'dir', forced);
      if (sel === 'no') continue;
      const p = Buffer.concat([dir, Buffer.from('/'), nameBytes]);
      if (node.type === 'dir') {
        if (!node.subtree) throw new IntegrityError(`folder ${childRel} has no subtree`, { blob: treeId });
        await this.makeDir(p);
        const entry = { path: p, node };
        const idx = this.created.push(entry) - 1;
        const had = await this.walk(node.subtree, p, childRel, sel === 'yes');
        if (sel === 'descend' && !had) {
          // Only created on the way to a match that was not there: take it back.
          this.created.splice(idx, 1);
          await rm(p, { recursive: true, force: true });
          continue;
        }
        this.result.dirsRestored++;
      } else if (node.type === 'file') {
        this.files.push({ path: p, node });
        this.created.push({ path: p, node });
      } else {
        this.specials.push({ path: p, node });
        this.created.push({ path: p, node });
      }
      any = true;
    }
    return any;
  }

  async makeDir(p: Buffer): Promise<void> {
    const st = await lstat(p).catch(() => undefined);
    if (st?.isDirectory()) return;
    if (st) await rm(p, { recursive: true, force: true });
    await mkdir(p, { mode: 0o700 });
  }

  async removeExisting(p: Buffer): Promise<void> {
    const st = await lstat(p).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) await rm(p, { recursive: true, force: true });
    else await unlink(p);
  }

  async writeFile(f: Pending): Promise<void> {
    const { node } = f;
    const links = Number(node.links ?? 1);
    let written!: (p: Buffer) => void;
    let failed!: (e: unknown) => void;
    if (links > 1 && node.inode !== undefined) {
      const key = `${node.deviceId ?? 0}:${node.inode}`;
      const first = this.hardlinks.get(key);
      if (first) {
        // Link only once the first name exists (files are written concurrently).
        const target = await first;
        await this.removeExisting(f.path);
        await link(target, f.path);
        this.result.filesRestored++;
        return;
      }
      const p = new Promise<Buffer>((res, rej) => {
        written = res;
        failed = rej;
      });
      p.catch(() => undefined);
      this.hardlinks.set(key, p);
    }
    try {
      await this.writeContent(f);
      written?.(f.path);
    } catch (e) {
      failed?.(e);
      throw e;
    }
  }

  async writeContent(f: Pending): Promise<void> {
    const { node } = f;
    await this.removeExisting(f.path);
    // O_NOFOLLOW | O_EXCL: never write through a link that appeared in the target.
    const fh = await open(f.path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    let written = 0;
    try {
      for (const run of readRuns(this.repo, node.content ?? [])) {
        throwIfAborted(this.options.signal);
        for (const blob of await this.loadRun(run)) {
          await writeAll(fh, blob);
          written += blob.length;
        }
      }
    } finally {
      await fh.close();
    }
    if (node.size !== undefined && BigInt(written) !== BigInt(node.size)) {
      this.warn(f.path, `restored ${written} bytes, snapshot says ${node.size}`);
    }
    this.result.filesRestored++;
    this.result.bytesRestored += written;
    this.options.onProgress?.({ filesDone: this.result.filesRestored, bytesDone: this.result.bytesRestored, currentFile: f.path.toString('utf8') });
  }

  /**
   * Reads a run of blobs that lie back to back in one pack with a single ranged read, then
   * verifies each. A blob that fails is read again on its own, from any other copy the index
   * knows (loadBlob), before the restore gives up.
   */
  async loadRun(run: ReadRun): Promise<Uint8Array[]> {
    const signal = this.options.signal;
    if (run.locations.length === 1) return [await this.repo.loadBlob('data', run.ids[0]!, { signal })];
    const first = run.locations[0]!;
    const last = run.locations[run.locations.length - 1]!;
    let bytes: Uint8Array | undefined;
    try {
      bytes = await this.repo.backend.load({ type: 'data', name: first.packId }, { signal, offset: first.offset, length: last.offset + last.length - first.offset });
    } catch (e) {
      if (e instanceof AbortedError) throw e;
    }
    const out: Uint8Array[] = [];
    for (let i = 0; i < run.ids.length; i++) {
      const loc = run.locations[i]!;
      let blob: Uint8Array | undefined;
      if (bytes && bytes.length === last.offset + last.length - first.offset) {
        try {
          blob = this.repo.decodeBlob(loc, bytes.subarray(loc.offset - first.offset, loc.offset - first.offset + loc.length));
        } catch {
          blob = undefined;
        }
      }
      out.push(blob ?? (await this.repo.loadBlob('data', run.ids[i]!, { signal })));
    }
    return out;
  }

  async createSpecial(s: Pending): Promise<void> {
    const { node } = s;
    await this.removeExisting(s.path);
    switch (node.type) {
      case 'symlink': {
        const target = goStringToBytes(node.linktarget ?? '');
        await symlink(target, s.path);
        break;
      }
      case 'fifo':
        await this.helper.mknod(s.path, fsc.S_IFIFO | 0o600, 0);
        break;
      case 'dev':
      case 'chardev':
        await this.helper.mknod(s.path, (node.type === 'dev' ? fsc.S_IFBLK : fsc.S_IFCHR) | 0o600, BigInt(node.device ?? 0));
        break;
      case 'socket':
        return; // sockets belong to a running process; restic does not recreate them either
      default:
        this.warn(s.path, `cannot restore a node of type ${node.type}`);
        return;
    }
  }

  async applyMetadata(e: Pending): Promise<void> {
    const { node, path: p } = e;
    if (node.type === 'socket') return;
    const isLink = node.type === 'symlink';
    try {
      if (this.owners) await (isLink ? lchown : chown)(p, node.uid, node.gid);
      // chmod after chown: chown clears setuid/setgid.
      if (!isLink && node.mode !== undefined) await chmod(p, posixPermissionsFromGo(node.mode));
    } catch (err) {
      this.warn(p, `owner/mode: ${(err as Error).message}`);
    }
    for (const x of node.extendedAttributes ?? []) {
      try {
        await this.helper.setXattr(p, x.name, x.value);
      } catch (err) {
        this.warn(p, `xattr ${x.name}: ${(err as Error).message}`);
      }
    }
    try {
      await this.helper.setTimes(p, node.atime.epochNs, node.mtime.epochNs);
    } catch (err) {
      this.warn(p, `times: ${(err as Error).message}`);
    }
  }
}

interface ReadRun {
  ids: BlobId[];
  locations: BlobLocation[];
}

/** Largest single read when several blobs are fetched together. */
const MAX_RUN_BYTES = 32 * 1024 * 1024;

/** Splits a file's blobs into runs that lie back to back in the same pack. */
function* readRuns(repo: IndexedRepository, ids: readonly BlobId[]): Generator<ReadRun> {
  let run: ReadRun | undefined;
  let runBytes = 0;
  for (const id of ids) {
    const loc = repo.index.lookup(id, 'data')[0];
    if (!loc) throw new NotFoundError(`data blob ${id}`);
    const prev = run?.locations[run.locations.length - 1];
    if (run && prev && prev.packId === loc.packId && prev.offset + prev.length === loc.offset && runBytes + loc.length <= MAX_RUN_BYTES) {
      run.ids.push(id);
      run.locations.push(loc);
      runBytes += loc.length;
      continue;
    }
    if (run) yield run;
    run = { ids: [id], locations: [loc] };
    runBytes = loc.length;
  }
  if (run) yield run;
}

async function writeAll(fh: import('node:fs/promises').FileHandle, data: Uint8Array): Promise<void> {
  let o = 0;
  while (o < data.length) {
    const { bytesWritten } = await fh.write(data, o, data.length - o);
    o += bytesWritten;
  }
}

export { AbortedError, InvalidInputError };
