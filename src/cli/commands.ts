// One entry per command: its flags and what it does. Output follows restic's text and JSON.
import { createReadStream } from 'node:fs';
import os from 'node:os';
import type { Flags, FlagSpec } from './args.ts';
import { parseDuration } from './args.ts';
import { InvalidInputError, NotFoundError } from '../errors.ts';
import { openBackend } from '../backend/location.ts';
import type { Backend } from '../backend/backend.ts';
import { Repository, type IndexedRepository } from '../repository/repository.ts';
import { Lock, unlock as unlockRepo, withLock } from '../repository/lock.ts';
import { parseCompressionMode, type CompressionMode } from '../repository/compression.ts';
import { encodeConfig } from '../repository/config.ts';
import { formatGoTime } from '../repository/gotime.ts';
import type { BlobId } from '../repository/id.ts';
import { backup } from '../snapshot/archiver.ts';
import { restore } from '../snapshot/restorer.ts';
import { checkRepository } from '../snapshot/check.ts';
import { listSnapshots, loadSnapshot, latestPerGroup, repositoryStats, walkTree, type SnapshotEntry, type SnapshotFilter } from '../snapshot/queries.ts';
import { encodeSnapshot } from '../snapshot/snapshot.ts';
import { decodeTree } from '../snapshot/tree.ts';
import type { TreeNode } from '../snapshot/node.ts';
import { formatGoFileMode } from '../snapshot/mode.ts';

export interface CommandContext {
  flags: Flags;
  env: NodeJS.ProcessEnv;
  signal: AbortSignal;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  out(s: string): void;
  err(s: string): void;
  repoLocation(): string;
  password(): string;
  retryLock(): number;
}

export interface Command {
  summary: string;
  usage: string;
  flags: FlagSpec[];
  run(ctx: CommandContext): Promise<number>;
}

const FILTER_FLAGS: FlagSpec[] = [
  { name: 'host', short: 'H', kind: 'list', arg: 'HOST', help: 'only snapshots of this host (repeatable)' },
  { name: 'tag', kind: 'list', arg: 'TAG[,TAG]', help: 'only snapshots with these tags (comma = and; repeat = or)' },
  { name: 'path', kind: 'list', arg: 'PATH', help: 'only snapshots that include this path (repeatable)' },
];

function filterFrom(f: Flags): SnapshotFilter {
  return {
    hosts: f.list('host'),
    tags: f.list('tag').map((t) => t.split(',').filter((x) => x !== '')),
    paths: f.list('path'),
  };
}

async function backendFor(ctx: CommandContext): Promise<Backend> {
  const extended: Record<string, string> = {};
  for (const o of ctx.flags.list('option')) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new InvalidInputError(`invalid option ${JSON.stringify(o)}: expected key=value`);
    extended[o.slice(0, eq)] = o.slice(eq + 1);
  }
  const kib = (name: string) => {
    const v = ctx.flags.int(name);
    return v === undefined ? undefined : v * 1024;
  };
  const up = kib('limit-upload');
  const down = kib('limit-download');
  return openBackend(ctx.repoLocation(), {
    env: ctx.env,
    extended,
    cacert: ctx.flags.list('cacert'),
    insecureTls: ctx.flags.bool('insecure-tls'),
    rateLimit: up || down ? { uploadBytesPerSecond: up, downloadBytesPerSecond: down } : undefined,
  });
}

async function openRepo(ctx: CommandContext): Promise<Repository> {
  const backend = await backendFor(ctx);
  return Repository.open(backend, { password: ctx.password(), keyHint: ctx.flags.string('key-hint') ?? ctx.env.RESTIC_KEY_HINT, signal: ctx.signal });
}

/** Runs fn with the repository opened and locked (unless --no-lock for read-only commands). */
async function withRepo<T>(ctx: CommandContext, lock: 'none' | 'shared' | 'exclusive', fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await openRepo(ctx);
  try {
    if (lock === 'none' || ctx.flags.bool('no-lock')) return await fn(repo);
    return await withLock(repo, { exclusive: lock === 'exclusive', retryLock: ctx.retryLock(), signal: ctx.signal }, () => fn(repo));
  } finally {
    await repo.backend.close();
  }
}

function compressionFrom(ctx: CommandContext): CompressionMode {
  return parseCompressionMode(ctx.flags.string('compression') ?? ctx.env.RESTIC_COMPRESSION ?? 'auto');
}

function packSizeFrom(ctx: CommandContext): number | undefined {
  const s = ctx.flags.string('pack-size') ?? ctx.env.RESTIC_PACK_SIZE;
  if (!s) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 4 || n > 128) throw new InvalidInputError(`pack size ${s} MiB is outside 4..128`);
  return n * 1024 * 1024;
}

function snapshotJson(e: SnapshotEntry): Record<string, unknown> {
  const o = JSON.parse(Buffer.from(encodeSnapshot(e.snapshot)).toString('utf8')) as Record<string, unknown>;
  return { ...o, id: e.id, short_id: e.id.slice(0, 8) };
}

function formatTime(t: string): string {
  const d = new Date(t);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(3)} ${units[i]}`;
}

/** "ID[:subfolder]" as restic's restore and dump accept. */
function splitSnapshotRef(ref: string): [string, string] {
  const i = ref.indexOf(':');
  return i < 0 ? [ref, ''] : [ref.slice(0, i), ref.slice(i + 1)];
}

async function findSubtree(repo: IndexedRepository, root: BlobId, sub: string): Promise<BlobId> {
  let tree = root;
  for (const part of sub.split('/').filter(Boolean)) {
    const node = decodeTree(await repo.loadBlob('tree', tree), tree).find((n) => n.name === part);
    if (!node || node.type !== 'dir' || !node.subtree) throw new NotFoundError(`path ${sub} in snapshot`);
    tree = node.subtree;
  }
  return tree;
}

export const COMMANDS: Record<string, Command> = {
  init: {
    summary: 'Initialize a new repository',
    usage: '[flags]',
    flags: [{ name: 'repository-version', kind: 'string', arg: '1|2|latest|stable', help: 'repository format version (default 2)' }],
    async run(ctx) {
      const v = ctx.flags.string('repository-version') ?? 'stable';
      const version = v === '1' ? 1 : v === '2' || v === 'latest' || v === 'stable' ? 2 : undefined;
      if (!version) throw new InvalidInputError(`unsupported repository version ${JSON.stringify(v)} (use 1 or 2)`);
      const backend = await backendFor(ctx);
      try {
        const repo = await Repository.init(backend, { password: ctx.password(), version, signal: ctx.signal });
        if (ctx.json) ctx.out(JSON.stringify({ message_type: 'initialized', id: repo.config.id, repository: backend.location }) + '\n');
        else if (!ctx.quiet) {
          ctx.out(`created restic repository ${repo.config.id.slice(0, 10)} at ${backend.location}\n\n` +
            'Please note that knowledge of your password is required to access\nthe repository. Losing your password means that your data is\nirrecoverably lost.\n');
        }
      } finally {
        await backend.close();
      }
      return 0;
    },
  },

  backup: {
    summary: 'Create a new snapshot of files and folders',
    usage: '[flags] PATH...',
    flags: [
      { name: 'host', short: 'H', kind: 'string', arg: 'HOST', help: 'hostname to record (default: this host)' },
      { name: 'tag', kind: 'list', arg: 'TAG[,TAG]', help: 'tags for the new snapshot (repeatable)' },
      { name: 'exclude', short: 'e', kind: 'list', arg: 'PATTERN', help: 'exclude a pattern (repeatable)' },
      { name: 'exclude-file', kind: 'list', arg: 'FILE', help: 'read exclude patterns from a file' },
      { name: 'parent', kind: 'string', arg: 'SNAPSHOT', help: 'use this parent snapshot (default: latest of same host and paths)' },
      { name: 'force', short: 'f', kind: 'bool', help: 'read every file, ignore the parent snapshot' },
      { name: 'stdin', kind: 'bool', help: 'read the backup content from standard input' },
      { name: 'stdin-filename', kind: 'string', arg: 'NAME', help: 'file name for --stdin (default "stdin")' },
      { name: 'time', kind: 'string', arg: 'TIME', help: 'snapshot time instead of now ("2006-01-02 15:04:05")' },
      { name: 'files-from', kind: 'list', arg: 'FILE', help: 'read the paths to back up from a file (one per line)' },
    ],
    async run(ctx) {
      const f = ctx.flags;
      const excludes = [...f.list('exclude')];
      for (const file of f.list('exclude-file')) {
        const { readFileSync } = await import('node:fs');
        excludes.push(...readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
      }
      const paths = [...f.positional];
      for (const file of f.list('files-from')) {
        const { readFileSync } = await import('node:fs');
        paths.push(...readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
      }
      const stdin = f.bool('stdin');
      if (!stdin && paths.length === 0) throw new InvalidInputError('nothing to backup, please specify target files/dirs');
      if (stdin && paths.length) throw new InvalidInputError('--stdin was specified and files/dirs were listed as arguments');
      let time: import('../repository/gotime.ts').GoTime | undefined;
      if (f.string('time')) {
        const { goTimeFromDate } = await import('../repository/gotime.ts');
        const d = new Date(f.string('time')!.replace(' ', 'T'));
        if (Number.isNaN(d.getTime())) throw new InvalidInputError(`invalid --time ${f.string('time')}`);
        time = goTimeFromDate(d);
      }
      // Locked before the index is read, so no prune can remove what the index promises.
      return withRepo(ctx, 'shared', async (r) => {
        const repo = await r.loadIndex({ signal: ctx.signal });
        let lastLine = 0;
        const res = await backup(repo, {
          lock: false,
          paths,
          stdin: stdin ? { stream: process.stdin, filename: f.string('stdin-filename') ?? 'stdin' } : undefined,
          hostname: f.string('host'),
          tags: f.list('tag').flatMap((t) => t.split(',')).filter(Boolean),
          excludes,
          parent: f.bool('force') ? null : f.string('parent'),
          compression: compressionFrom(ctx),
          time,
          signal: ctx.signal,
          onError: (p, e) => ctx.err(`error: ${e.message}\n`),
          onProgress: (p) => {
            if (!ctx.json || ctx.quiet) return;
            const now = Date.now();
            if (now - lastLine < 1000) return;
            lastLine = now;
            ctx.out(JSON.stringify({ message_type: 'status', files_done: p.filesDone, bytes_done: p.bytesDone, current_files: p.currentFile ? [p.currentFile] : [] }) + '\n');
          },
        });
        const s = res.summary;
        if (ctx.json) {
          ctx.out(JSON.stringify({
            message_type: 'summary',
            files_new: s.filesNew, files_changed: s.filesChanged, files_unmodified: s.filesUnmodified,
            dirs_new: s.dirsNew, dirs_changed: s.dirsChanged, dirs_unmodified: s.dirsUnmodified,
            data_blobs: s.dataBlobs, tree_blobs: s.treeBlobs, data_added: s.dataAdded, data_added_packed: s.dataAddedPacked,
            total_files_processed: s.totalFilesProcessed, total_bytes_processed: s.totalBytesProcessed,
            total_duration: Number(s.backupEnd.epochNs - s.backupStart.epochNs) / 1e9,
            backup_start: formatGoTime(s.backupStart), backup_end: formatGoTime(s.backupEnd),
            snapshot_id: res.snapshotId,
          }) + '\n');
        } else if (!ctx.quiet) {
          ctx.out(`\nFiles:       ${s.filesNew} new, ${s.filesChanged} changed, ${s.filesUnmodified} unmodified\n` +
            `Dirs:        ${s.dirsNew} new, ${s.dirsChanged} changed, ${s.dirsUnmodified} unmodified\n` +
            `Added to the repository: ${formatBytes(s.dataAdded)} (${formatBytes(s.dataAddedPacked)} stored)\n\n` +
            `processed ${s.totalFilesProcessed} files, ${formatBytes(s.totalBytesProcessed)} in ${(Number(s.backupEnd.epochNs - s.backupStart.epochNs) / 1e9).toFixed(2)}s\n` +
            `snapshot ${res.snapshotId.slice(0, 8)} saved\n`);
        }
        if (res.errors.length) {
          ctx.err(`Warning: at least one source file could not be read\n`);
          return 3;
        }
        return 0;
      });
    },
  },

  snapshots: {
    summary: 'List snapshots',
    usage: '[flags] [SNAPSHOT...]',
    flags: [...FILTER_FLAGS, { name: 'latest', kind: 'string', arg: 'N', help: 'only the last N snapshots of each host and path set' },
      { name: 'compact', short: 'c', kind: 'bool', help: 'accepted for compatibility' }],
    async run(ctx) {
      return withRepo(ctx, 'none', async (repo) => {
        let list = await listSnapshots(repo, { ...filterFrom(ctx.flags), signal: ctx.signal });
        if (ctx.flags.positional.length) {
          const wanted = new Set<string>();
          for (const ref of ctx.flags.positional) wanted.add((await loadSnapshot(repo, ref)).id);
          list = list.filter((e) => wanted.has(e.id));
        }
        const n = ctx.flags.int('latest');
        if (n !== undefined) list = latestPerGroup(list, n);
        if (ctx.json) {
          ctx.out(JSON.stringify(list.map(snapshotJson)) + '\n');
          return 0;
        }
        const rows = list.map((e) => [e.id.slice(0, 8), formatTime(formatGoTime(e.snapshot.time)), e.snapshot.hostname ?? '', (e.snapshot.tags ?? []).join(','), e.snapshot.paths.join('\n' + ' '.repeat(60))]);
        ctx.out(`ID        Time                 Host        Tags        Paths\n${'-'.repeat(72)}\n`);
        for (const r of rows) ctx.out(`${r[0]!.padEnd(10)}${r[1]!.padEnd(21)}${r[2]!.padEnd(12)}${r[3]!.padEnd(12)}${r[4]}\n`);
        ctx.out(`${'-'.repeat(72)}\n${list.length} snapshots\n`);
        return 0;
      });
    },
  },

  ls: {
    summary: 'List files in a snapshot',
    usage: '[flags] SNAPSHOT [DIR...]',
    flags: [...FILTER_FLAGS, { name: 'long', short: 'l', kind: 'bool', help: 'long listing' }, { name: 'recursive', kind: 'bool', help: 'accepted for compatibility' }],
    async run(ctx) {
      const [ref, ...dirs] = ctx.flags.positional;
      if (!ref) throw new InvalidInputError('no snapshot ID specified, specify snapshot ID or use special ID "latest"');
      return withRepo(ctx, 'none', async (r) => {
        const snap = await loadSnapshot(r, ref, filterFrom(ctx.flags));
        const repo = await r.loadIndex({ signal: ctx.signal });
        if (ctx.json) ctx.out(JSON.stringify({ ...snapshotJson(snap), struct_type: 'snapshot', message_type: 'snapshot' }) + '\n');
        else ctx.out(`snapshot ${snap.id.slice(0, 8)} of [${snap.snapshot.paths.join(' ')}] at ${formatGoTime(snap.snapshot.time)}:\n`);
        for await (const { path, node } of walkTree(repo, snap.snapshot.tree, '', { signal: ctx.signal })) {
          if (dirs.length && !dirs.some((d) => path === d || path.startsWith(d.replace(/\/$/, '') + '/'))) continue;
          if (ctx.json) ctx.out(JSON.stringify(nodeJson(path, node)) + '\n');
          else if (ctx.flags.bool('long')) ctx.out(`${formatGoFileMode(node.mode)} ${String(node.uid).padStart(5)} ${String(node.gid).padStart(5)} ${String(node.size ?? 0).padStart(10)} ${formatTime(formatGoTime(node.mtime))} ${path}\n`);
          else ctx.out(path + '\n');
        }
        return 0;
      });
    },
  },

  restore: {
    summary: 'Extract a snapshot into a folder',
    usage: '[flags] SNAPSHOT[:SUBFOLDER]',
    flags: [
      ...FILTER_FLAGS,
      { name: 'target', short: 't', kind: 'string', arg: 'DIR', help: 'folder to restore into (required)' },
      { name: 'include', short: 'i', kind: 'list', arg: 'PATTERN', help: 'restore only matching paths (repeatable)' },
      { name: 'exclude', short: 'e', kind: 'list', arg: 'PATTERN', help: 'do not restore matching paths (repeatable)' },
    ],
    async run(ctx) {
      const refArg = ctx.flags.positional[0];
      if (!refArg) throw new InvalidInputError('no snapshot ID specified, specify snapshot ID or use special ID "latest"');
      const target = ctx.flags.string('target');
      if (!target) throw new InvalidInputError('please specify a directory to restore to (--target)');
      const [ref, sub] = splitSnapshotRef(refArg);
      return withRepo(ctx, 'shared', async (r) => {
        const snap = await loadSnapshot(r, ref, filterFrom(ctx.flags));
        const repo = await r.loadIndex({ signal: ctx.signal });
        const tree = sub ? await findSubtree(repo, snap.snapshot.tree, sub) : snap.snapshot.tree;
        if (!ctx.quiet && !ctx.json) ctx.out(`restoring snapshot ${snap.id.slice(0, 8)} to ${target}\n`);
        const res = await restore(repo, tree, {
          target,
          include: ctx.flags.list('include'),
          exclude: ctx.flags.list('exclude'),
          signal: ctx.signal,
          onWarning: (p, m) => ctx.err(`ignoring error for ${p}: ${m}\n`),
        });
        if (ctx.json) {
          ctx.out(JSON.stringify({ message_type: 'summary', files_restored: res.filesRestored, total_files: res.filesRestored, bytes_restored: res.bytesRestored, total_bytes: res.bytesRestored }) + '\n');
        } else if (!ctx.quiet) ctx.out(`Summary: Restored ${res.filesRestored} files (${formatBytes(res.bytesRestored)})\n`);
        return 0;
      });
    },
  },

  dump: {
    summary: 'Print a file from a snapshot to standard output',
    usage: '[flags] SNAPSHOT PATH',
    flags: [...FILTER_FLAGS],
    async run(ctx) {
      const [ref, file] = ctx.flags.positional;
      if (!ref || !file) throw new InvalidInputError('usage: stowage dump SNAPSHOT PATH');
      return withRepo(ctx, 'none', async (r) => {
        const snap = await loadSnapshot(r, ref, filterFrom(ctx.flags));
        const repo = await r.loadIndex({ signal: ctx.signal });
        const parts = file.split('/').filter(Boolean);
        let tree = snap.snapshot.tree;
        let node: TreeNode | undefined;
        for (let i = 0; i < parts.length; i++) {
          node = decodeTree(await repo.loadBlob('tree', tree), tree).find((n) => n.name === parts[i]);
          if (!node) throw new NotFoundError(`path ${file} in snapshot ${snap.id.slice(0, 8)}`);
          if (i < parts.length - 1) {
            if (node.type !== 'dir' || !node.subtree) throw new NotFoundError(`path ${file} in snapshot ${snap.id.slice(0, 8)}`);
            tree = node.subtree;
          }
        }
        if (!node || node.type !== 'file') throw new InvalidInputError(`${file} is not a file (folders are not supported by dump yet)`);
        for (const id of node.content ?? []) {
          const data = await repo.loadBlob('data', id, { signal: ctx.signal });
          if (!process.stdout.write(data)) await new Promise((res) => process.stdout.once('drain', res));
        }
        return 0;
      });
    },
  },

  cat: {
    summary: 'Print internal objects (config, snapshot, index, key, pack, blob, tree)',
    usage: 'config|masterkey|snapshot|index|key|pack|blob|tree [ID]',
    flags: [],
    async run(ctx) {
      const [kind, ref] = ctx.flags.positional;
      if (!kind) throw new InvalidInputError('type not specified');
      return withRepo(ctx, 'none', async (repo) => {
        const write = (b: Uint8Array | string) => ctx.out(typeof b === 'string' ? b : Buffer.from(b).toString('utf8'));
        if (kind === 'config') {
          write(JSON.stringify(JSON.parse(Buffer.from(encodeConfig(repo.config)).toString()), null, 2) + '\n');
          return 0;
        }
        if (!ref) throw new InvalidInputError('ID not specified');
        switch (kind) {
          case 'snapshot': {
            const s = await loadSnapshot(repo, ref);
            write(JSON.stringify(JSON.parse(Buffer.from(encodeSnapshot(s.snapshot)).toString()), null, 2) + '\n');
            return 0;
          }
          case 'index':
            write(await repo.loadUnpacked('index', await repo.resolveId('index', ref)));
            return 0;
          case 'key': {
            const id = await repo.resolveId('keys', ref);
            write(await repo.backend.load({ type: 'keys', name: id }));
            ctx.out('\n');
            return 0;
          }
          case 'lock':
            write(await repo.loadUnpacked('locks', await repo.resolveId('locks', ref)));
            ctx.out('\n');
            return 0;
          case 'pack': {
            const id = await repo.resolveId('data', ref);
            const bytes = await repo.backend.load({ type: 'data', name: id });
            process.stdout.write(bytes);
            return 0;
          }
          case 'blob':
          case 'tree': {
            const idx = await repo.loadIndex({ signal: ctx.signal });
            const loc = idx.index.lookup(ref as BlobId)[0];
            if (!loc) throw new NotFoundError(`blob ${ref}`);
            process.stdout.write(await idx.loadBlob(loc.type, loc.id));
            return 0;
          }
          default:
            throw new InvalidInputError(`invalid type ${JSON.stringify(kind)}`);
        }
      });
    },
  },

  stats: {
    summary: 'Show repository statistics',
    usage: '[flags] [SNAPSHOT...]',
    flags: [...FILTER_FLAGS, { name: 'mode', kind: 'string', arg: 'MODE', help: 'restore-size (default) or raw-data' }],
    async run(ctx) {
      const mode = ctx.flags.string('mode') ?? 'restore-size';
      if (mode !== 'restore-size' && mode !== 'raw-data') throw new InvalidInputError(`unknown mode ${JSON.stringify(mode)} (restore-size or raw-data)`);
      return withRepo(ctx, 'shared', async (r) => {
        const repo = await r.loadIndex({ signal: ctx.signal });
        const s = await repositoryStats(repo, { signal: ctx.signal });
        if (ctx.json) {
          const base = mode === 'restore-size'
            ? { total_size: s.totalRestoreSize, total_file_count: s.totalFileCount, snapshots_count: s.snapshotCount }
            : {
                total_size: s.rawDataSize, total_uncompressed_size: s.uncompressedSize,
                compression_ratio: s.compressionRatio, compression_progress: 100, compression_space_saving: s.compressionSpaceSaving,
                total_blob_count: s.blobCount, snapshots_count: s.snapshotCount,
              };
          ctx.out(JSON.stringify({ ...base, first_backup: s.firstBackup, last_backup: s.lastBackup, pack_count: s.packCount, tree_blob_count: s.treeBlobCount, data_blob_count: s.dataBlobCount }) + '\n');
        } else {
          ctx.out(`Stats in ${mode} mode:\n     Snapshots processed:  ${s.snapshotCount}\n`);
          if (mode === 'restore-size') ctx.out(`        Total File Count:  ${s.totalFileCount}\n              Total Size:  ${formatBytes(s.totalRestoreSize)}\n`);
          else {
            ctx.out(`         Total Blob Count:  ${s.blobCount}\n              Total Size:  ${formatBytes(s.rawDataSize)}\n  Total Uncompressed Size:  ${formatBytes(s.uncompressedSize)}\n` +
              `       Compression Ratio:  ${s.compressionRatio.toFixed(2)}x\n`);
          }
          ctx.out(`            First backup:  ${s.firstBackup ?? '-'}\n             Last backup:  ${s.lastBackup ?? '-'}\n`);
        }
        return 0;
      });
    },
  },

  check: {
    summary: 'Check the repository for errors',
    usage: '[flags]',
    flags: [{ name: 'read-data', kind: 'bool', help: 'read and verify all data blobs' }],
    async run(ctx) {
      return withRepo(ctx, 'shared', async (repo) => {
        const report = await checkRepository(repo, {
          readData: ctx.flags.bool('read-data'),
          signal: ctx.signal,
          onMessage: (m) => {
            if (!ctx.quiet && !ctx.json) ctx.out(m + '\n');
          },
        });
        if (ctx.json) ctx.out(JSON.stringify(report) + '\n');
        else {
          for (const e of report.errors) ctx.err(`error: ${e.message}\n`);
          for (const h of report.hints) if (!ctx.quiet) ctx.out(`hint: ${h}\n`);
          ctx.out(report.errors.length ? `Fatal: repository contains errors\n` : 'no errors were found\n');
        }
        return report.errors.length ? 1 : 0;
      });
    },
  },

  key: {
    summary: 'Manage keys (passwords): list, add, remove, passwd',
    usage: 'list|add|remove ID|passwd',
    flags: [
      { name: 'new-password-file', kind: 'string', arg: 'FILE', help: 'file with the new password (add, passwd)' },
      { name: 'user', kind: 'string', arg: 'NAME', help: 'username stored in the new key' },
      { name: 'host', kind: 'string', arg: 'NAME', help: 'hostname stored in the new key' },
    ],
    async run(ctx) {
      const [sub, id] = ctx.flags.positional;
      const newPassword = async () => {
        const f = ctx.flags.string('new-password-file') ?? ctx.env.RESTIC_NEW_PASSWORD_FILE;
        if (!f) throw new InvalidInputError('no new password given (use --new-password-file)');
        const { readFileSync } = await import('node:fs');
        return readFileSync(f, 'utf8').replace(/\r?\n$/, '');
      };
      switch (sub) {
        case 'list':
          return withRepo(ctx, 'none', async (repo) => {
            const keys = await repo.listKeys({ signal: ctx.signal });
            if (ctx.json) ctx.out(JSON.stringify(keys.map((k) => ({ current: k.current, id: k.id, userName: k.username, hostName: k.hostname, created: k.created }))) + '\n');
            else {
              ctx.out(' ID        User        Host        Created\n' + '-'.repeat(60) + '\n');
              for (const k of keys) ctx.out(`${k.current ? '*' : ' '}${k.id.slice(0, 8).padEnd(10)}${k.username.padEnd(12)}${k.hostname.padEnd(12)}${formatTime(k.created)}\n`);
            }
            return 0;
          });
        case 'add':
          return withRepo(ctx, 'shared', async (repo) => {
            const k = await repo.addKey(await newPassword(), { username: ctx.flags.string('user'), hostname: ctx.flags.string('host') });
            if (!ctx.quiet) ctx.out(`saved new key with ID ${k}\n`);
            return 0;
          });
        case 'remove':
          if (!id) throw new InvalidInputError('key remove needs a key ID');
          return withRepo(ctx, 'exclusive', async (repo) => {
            await repo.removeKey(id);
            if (!ctx.quiet) ctx.out(`removed key ${id}\n`);
            return 0;
          });
        case 'passwd':
          return withRepo(ctx, 'exclusive', async (repo) => {
            await repo.changePassword(await newPassword());
            if (!ctx.quiet) ctx.out('saved new key\n');
            return 0;
          });
        default:
          throw new InvalidInputError('key needs a subcommand: list, add, remove or passwd');
      }
    },
  },

  unlock: {
    summary: 'Remove stale locks (or all with --remove-all)',
    usage: '[flags]',
    flags: [{ name: 'remove-all', kind: 'bool', help: 'remove all locks, even those of running processes' }],
    async run(ctx) {
      return withRepo(ctx, 'none', async (repo) => {
        const removed = await unlockRepo(repo, { all: ctx.flags.bool('remove-all'), signal: ctx.signal });
        if (!ctx.quiet) ctx.out(`successfully removed ${removed.length} locks\n`);
        return 0;
      });
    },
  },
};

function nodeJson(path: string, n: TreeNode): Record<string, unknown> {
  return {
    name: n.name, type: n.type, path, uid: n.uid, gid: n.gid, size: n.size ?? 0, mode: n.mode,
    permissions: formatGoFileMode(n.mode), mtime: formatGoTime(n.mtime), atime: formatGoTime(n.atime), ctime: formatGoTime(n.ctime),
    inode: n.inode === undefined ? undefined : Number(n.inode), struct_type: 'node', message_type: 'node',
  };
}

export { Lock, parseDuration, createReadStream, os };
