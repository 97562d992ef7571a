import { InvalidInputError } from '../../errors.ts';
import { formatGoTime } from '../../repository/gotime.ts';
import { backup } from '../../snapshot/operations/backup/index.ts';
import type { Command, CommandContext } from '../context.ts';
import { withIndexedRepo, compressionFrom, exitWith, formatBytes, maxMemoryFrom } from '../context.ts';

export const backupCommand: Command = {
  summary: 'Create a new snapshot of files and folders',
  usage: '[flags] PATH... | --stdin | --stdin-from-command -- COMMAND [ARG...]',
  flags: [
    { name: 'host', short: 'H', kind: 'string', arg: 'HOST', help: 'hostname to record (default: $RESTIC_HOST, else this host)' },
    { name: 'tag', kind: 'list', arg: 'TAG[,TAG]', help: 'tags for the new snapshot (repeatable)' },
    { name: 'exclude', short: 'e', kind: 'list', arg: 'PATTERN', help: 'exclude a pattern (repeatable)' },
    { name: 'exclude-file', kind: 'list', arg: 'FILE', help: 'read exclude patterns from a file' },
    { name: 'parent', kind: 'string', arg: 'SNAPSHOT', help: 'use this parent snapshot (default: latest of same host and paths)' },
    { name: 'force', short: 'f', kind: 'bool', help: 'read every file, ignore the parent snapshot' },
    { name: 'stdin', kind: 'bool', help: 'read the backup content from standard input' },
    { name: 'stdin-from-command', kind: 'bool', help: 'run COMMAND (after --) and back up its standard output; fails, storing nothing, if it exits non-zero' },
    { name: 'stdin-filename', kind: 'string', arg: 'NAME', help: 'file name for --stdin and --stdin-from-command (default "stdin")' },
    { name: 'time', kind: 'string', arg: 'TIME', help: 'snapshot time instead of now ("2006-01-02 15:04:05")' },
    { name: 'files-from', kind: 'list', arg: 'FILE', help: 'read the paths to back up from a file (one per line)' },
    { name: 'read-concurrency', kind: 'string', arg: 'N', help: 'worker threads reading and chunking files (default: $RESTIC_READ_CONCURRENCY, else one per core)' },
  ],
  async run(ctx) {
    const f = ctx.flags;
    const threads = readConcurrency(ctx);
    const excludes = [...f.list('exclude')];
    for (const file of f.list('exclude-file')) {
      const { readFileSync } = await import('node:fs');
      excludes.push(...readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
    }
    // With --stdin-from-command the arguments are the command, not paths (as restic).
    const fromCommand = f.bool('stdin-from-command');
    const commandLine = fromCommand ? [...f.positional] : [];
    const paths = fromCommand ? [] : [...f.positional];
    for (const file of f.list('files-from')) {
      const { readFileSync } = await import('node:fs');
      paths.push(...readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
    }
    const stdin = f.bool('stdin') || fromCommand;
    if (fromCommand && commandLine.length === 0) throw new InvalidInputError('no command was specified as argument (stowage backup --stdin-from-command -- COMMAND [ARG...])');
    if (stdin && f.list('files-from').length) throw new InvalidInputError('--stdin and --files-from cannot be used together');
    if (!stdin && paths.length === 0) throw new InvalidInputError('nothing to backup, please specify target files/dirs');
    if (stdin && paths.length) throw new InvalidInputError('--stdin was specified and files/dirs were listed as arguments');
    let time: import('../../repository/gotime.ts').GoTime | undefined;
    if (f.string('time')) {
      const { goTimeFromDate } = await import('../../repository/gotime.ts');
      const d = new Date(f.string('time')!.replace(' ', 'T'));
      if (Number.isNaN(d.getTime())) throw new InvalidInputError(`invalid --time ${f.string('time')}`);
      time = goTimeFromDate(d);
    }
    const filename = f.string('stdin-filename') ?? 'stdin';
    const stdinSource = () => {
      if (fromCommand) {
        const [command, ...args] = commandLine as [string, ...string[]];
        // The command's stderr as restic shows it, line by line while it runs.
        return { command, args, filename, onStderr: (line: string) => ctx.err(`subprocess ${command}: ${line}\n`) };
      }
      return stdin ? { stream: process.stdin, filename } : undefined;
    };
    // The index is read while the lock is taken and refreshed once it is held, so no prune can
    // have removed what the index promises (withIndexedRepo).
    return withIndexedRepo(ctx, 'shared', async (repo) => {
      const progress = ctx.progress('backup');
      let res: Awaited<ReturnType<typeof backup>>;
      try {
        res = await backup(repo, {
          lock: false,
          paths,
          stdin: stdinSource(),
          hostname: f.string('host') || ctx.env.RESTIC_HOST || undefined,
          tags: f.list('tag').flatMap((t) => t.split(',')).filter(Boolean),
          excludes,
          parent: f.bool('force') ? null : f.string('parent'),
          compression: compressionFrom(ctx),
          threads,
          memoryLimit: maxMemoryFrom(ctx),
          time,
          signal: ctx.signal,
          onError: (p, e) => {
            progress.addError();
            progress.clear();
            ctx.err(`error: ${e.message}\n`);
          },
          // Totals for the percentage and ETA: the backup scans the sources beside its work.
          scan: progress.enabled,
          onProgress: (p) => {
            if (p.totalsComplete) progress.setTotals({ files: p.totalFiles ?? 0, dirs: p.totalDirs ?? 0, bytes: p.totalBytes ?? 0 });
            progress.update(p);
          },
        });
      } finally {
        progress.finish();
      }
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
        return exitWith(ctx, 3, 'Warning: at least one source file could not be read');
      }
      return 0;
    });
  },
};

/**
 * `--read-concurrency` / `$RESTIC_READ_CONCURRENCY` as restic parses them (an unsigned integer;
 * 0 is the default). restic reads that many files at once; Stowage runs that many file workers,
 * each reading, chunking and sealing its files. Undefined: one worker per core.
 */
function readConcurrency(ctx: CommandContext): number | undefined {
  const flag = ctx.flags.string('read-concurrency');
  const value = flag ?? (ctx.env.RESTIC_READ_CONCURRENCY || undefined);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) {
    throw new InvalidInputError(flag !== undefined ? `invalid argument ${JSON.stringify(value)} for "--read-concurrency" flag` : `invalid value for RESTIC_READ_CONCURRENCY ${JSON.stringify(value)}`);
  }
  const n = Number(value.trim());
  return n > 0 ? Math.min(n, 256) : undefined;
}
