import { existsSync } from 'node:fs';
import { InvalidInputError } from '../../errors.ts';
import { formatGoTime } from '../../repository/gotime.ts';
import { backup, type BackupItem } from '../../snapshot/operations/backup/index.ts';
import { goQuoteIfNeeded } from '../../snapshot/model/gojson.ts';
import type { IndexedRepository } from '../../repository/repository.ts';
import type { Command, CommandContext } from '../context.ts';
import { readFilesFrom, readPatternFiles } from '../patterns.ts';
import { FlagError } from '../args.ts';
import { parseGroupBy } from './forget.ts';
import { withRepo, withIndexedRepo, compressionFrom, exitWith, formatBytes, maxMemoryFrom, packSizeFrom } from '../context.ts';

export const backupCommand: Command = {
  summary: 'Create a new snapshot of files and folders',
  usage: '[flags] PATH... | --stdin | --stdin-from-command -- COMMAND [ARG...]',
  flags: [
    { name: 'host', short: 'H', kind: 'string', arg: 'HOST', help: 'hostname to record (default: $RESTIC_HOST, else this host)' },
    { name: 'tag', kind: 'list', arg: 'TAG[,TAG]', help: 'tags for the new snapshot (repeatable)' },
    { name: 'exclude', short: 'e', kind: 'list', arg: 'PATTERN', help: 'exclude a pattern (repeatable)' },
    { name: 'exclude-file', kind: 'list', arg: 'FILE', help: 'read exclude patterns from a file' },
    { name: 'iexclude', kind: 'list', arg: 'PATTERN', help: 'same as --exclude pattern but ignores the casing of filenames' },
    { name: 'iexclude-file', kind: 'list', arg: 'FILE', help: 'same as --exclude-file but ignores casing of filenames in patterns' },
    { name: 'exclude-larger-than', kind: 'string', arg: 'SIZE', help: 'max size of the files to be backed up (allowed suffixes: k/K, m/M, g/G, t/T)' },
    { name: 'exclude-if-present', kind: 'list', arg: 'FILENAME[:HEADER]', help: 'exclude contents of directories containing filename (except filename itself) if header of that file is as provided' },
    { name: 'ignore-inode', kind: 'bool', help: 'ignore inode number and ctime changes when checking for modified files' },
    { name: 'ignore-ctime', kind: 'bool', help: 'ignore ctime changes when checking for modified files' },
    { name: 'with-atime', kind: 'bool', help: 'store the atime for all files and directories' },
    { name: 'group-by', short: 'g', kind: 'string', arg: 'GROUP', help: 'group snapshots by host, paths and/or tags to choose the parent (default host,paths)' },
    { name: 'one-file-system', short: 'x', kind: 'bool', help: "exclude other file systems, don't cross filesystem boundaries and subvolumes" },
    { name: 'read-concurrency', kind: 'string', arg: 'N', help: 'worker threads reading and chunking files (default: $RESTIC_READ_CONCURRENCY, else one per core)' },
    { name: 'no-scan', kind: 'bool', help: 'do not run scanner to estimate size of backup' },
    { name: 'dry-run', short: 'n', kind: 'bool', help: 'do not upload or write any data, just show what would be done' },
    { name: 'skip-if-unchanged', kind: 'bool', help: 'skip snapshot creation if identical to parent snapshot' },
    { name: 'exclude-caches', kind: 'bool', help: 'excludes cache directories that are marked with a CACHEDIR.TAG file' },
    { name: 'parent', kind: 'string', arg: 'SNAPSHOT', help: 'use this parent snapshot (default: latest of same host and paths)' },
    { name: 'force', short: 'f', kind: 'bool', help: 'read every file, ignore the parent snapshot' },
    { name: 'stdin', kind: 'bool', help: 'read the backup content from standard input' },
    { name: 'stdin-from-command', kind: 'bool', help: 'run COMMAND (after --) and back up its standard output; fails, storing nothing, if it exits non-zero' },
    { name: 'stdin-filename', kind: 'string', arg: 'NAME', help: 'file name for --stdin and --stdin-from-command (default "stdin")' },
    { name: 'time', kind: 'string', arg: 'TIME', help: 'snapshot time instead of now ("2006-01-02 15:04:05")' },
    { name: 'files-from', kind: 'list', arg: 'FILE', help: 'read the files to backup from FILE (one glob pattern a line; "-" is stdin) (repeatable)' },
    { name: 'files-from-verbatim', kind: 'list', arg: 'FILE', help: 'read the files to backup from FILE (one path a line, taken as it is) (repeatable)' },
    { name: 'files-from-raw', kind: 'list', arg: 'FILE', help: 'read the files to backup from FILE (NUL-terminated paths) (repeatable)' },
  ],
  async run(ctx) {
    const f = ctx.flags;
    // Pattern files as restic reads them: BOM, comments, $VAR expanded.
    const excludes = [...f.list('exclude'), ...(await readPatternFiles(f.list('exclude-file'), ctx.env))];
    const iexcludes = [...f.list('iexclude'), ...(await readPatternFiles(f.list('iexclude-file'), ctx.env))];
    const largerThan = f.string('exclude-larger-than');
    // With --stdin-from-command the arguments are the command, not paths (as restic).
    const fromCommand = f.bool('stdin-from-command');
    const commandLine = fromCommand ? [...f.positional] : [];
    const stdin = f.bool('stdin') || fromCommand;
    const lists = { patterns: f.list('files-from'), verbatim: f.list('files-from-verbatim'), raw: f.list('files-from-raw') };
    const listed = lists.patterns.length + lists.verbatim.length + lists.raw.length > 0;
    if (stdin && listed) throw new InvalidInputError('--stdin and --files-from cannot be used together');
    // As restic: the listed files first (globs expanded), then the arguments.
    const paths = fromCommand ? [] : [
      ...(listed ? await readFilesFrom(lists, () => readAll(process.stdin), (m) => ctx.err(`${m}\n`)) : []),
      ...f.positional,
    ];
    if (fromCommand && commandLine.length === 0) throw new InvalidInputError('no command was specified as argument (stowage backup --stdin-from-command -- COMMAND [ARG...])');
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
    const threads = readConcurrency(ctx);
    // The index is read while the lock is taken and refreshed once it is held, so no prune can
    // have removed what the index promises (withIndexedRepo); a dry run stores nothing and takes no lock.
    // restic's --verbose lines around the summary; the scan's totals are what "scan finished" reports.
    const verboseText = ctx.verbose && !ctx.json && !ctx.quiet;
    const startedAt = performance.now();
    let scanned: { files: number; bytes: number; seconds: number } | undefined;
    const lines = new VerboseLines(ctx);
    // restic's --no-scan: no scanner, so no totals (percentage, ETA) and no scan lines.
    const noScan = f.bool('no-scan');
    // The scan's targets as restic names them: the paths that exist, or the stream's file.
    const targets = () => `[${stdin ? '/' + (f.string('stdin-filename') ?? 'stdin') : paths.filter((p) => existsSync(p)).join(' ')}]`;
    // restic's lines before the first file: the parent, then (-v) the index and the scan's start.
    const header = (parent: string | undefined) => {
      if (ctx.json || ctx.quiet) {
        lines.header('');
        if (noScan) lines.scanned('');
        return;
      }
      let out = verboseText ? 'open repository\n' : '';
      if (!stdin) out += parent ? `using parent snapshot ${parent.slice(0, 8)}\n` : 'no parent snapshot found, will read all files\n';
      if (verboseText) out += `load index files\n${stdin ? 'read data from stdin\n' : ''}${noScan ? '' : `start scan on ${targets()}\n`}start backup on ${targets()}\n`;
      lines.header(out);
      if (noScan) lines.scanned('');
    };
    const run = async (repo: IndexedRepository): Promise<number> => {
      // A stream has no parent: its header comes first.
      if (stdin) header(undefined);
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
          iexcludes,
          excludeLargerThan: largerThan ? parseSize(largerThan) : undefined,
          excludeIfPresent: f.list('exclude-if-present'),
          excludeCaches: f.bool('exclude-caches'),
          skipIfUnchanged: f.bool('skip-if-unchanged'),
          dryRun: f.bool('dry-run'),
          threads,
          oneFileSystem: f.bool('one-file-system'),
          groupBy: f.string('group-by') !== undefined ? parseGroupBy(f.string('group-by')) : undefined,
          ignoreInode: f.bool('ignore-inode'),
          ignoreCtime: f.bool('ignore-ctime'),
          withAtime: f.bool('with-atime'),
          parent: f.bool('force') ? null : f.string('parent'),
          compression: compressionFrom(ctx),
          packSize: packSizeFrom(ctx),
          memoryLimit: maxMemoryFrom(ctx),
          time,
          signal: ctx.signal,
          onError: (p, e) => {
            progress.addError();
            progress.clear();
            ctx.err(`error: ${e.message}\n`);
          },
          // Totals for the percentage and ETA: the backup scans the sources beside its work.
          scan: !noScan && (progress.enabled || verboseText || ctx.verbosity >= 2),
          onParent: (parent) => header(parent),
          onItem: ctx.verbosity >= 2 && !ctx.quiet ? (item) => lines.item(itemLine(item, ctx.json)) : undefined,
          onProgress: (p) => {
            if (p.totalsComplete && !scanned) {
              scanned = { files: p.totalFiles ?? 0, bytes: p.totalBytes ?? 0, seconds: (performance.now() - startedAt) / 1000 };
              lines.scanned(scanLine(scanned, ctx.json, ctx.verbosity));
            }
            if (p.totalsComplete) progress.setTotals({ files: p.totalFiles ?? 0, dirs: p.totalDirs ?? 0, bytes: p.totalBytes ?? 0 });
            progress.update(p);
          },
        });
      } finally {
        progress.finish();
      }
      const s = res.summary;
      // A stream has no scan: restic counts its one file, 0 bytes, when the backup starts.
      const scan = scanned ?? (stdin ? { files: 1, bytes: 0, seconds: (performance.now() - startedAt) / 1000 } : { files: s.totalFilesProcessed, bytes: s.totalBytesProcessed, seconds: (performance.now() - startedAt) / 1000 });
      lines.finish(noScan ? '' : scanLine(scan, ctx.json, ctx.verbosity));
      if (ctx.json) {
        ctx.out(JSON.stringify({
          message_type: 'summary',
          files_new: s.filesNew, files_changed: s.filesChanged, files_unmodified: s.filesUnmodified,
          dirs_new: s.dirsNew, dirs_changed: s.dirsChanged, dirs_unmodified: s.dirsUnmodified,
          data_blobs: s.dataBlobs, tree_blobs: s.treeBlobs, data_added: s.dataAdded, data_added_packed: s.dataAddedPacked,
          total_files_processed: s.totalFilesProcessed, total_bytes_processed: s.totalBytesProcessed,
          total_duration: Number(s.backupEnd.epochNs - s.backupStart.epochNs) / 1e9,
          backup_start: formatGoTime(s.backupStart), backup_end: formatGoTime(s.backupEnd),
          ...(res.dryRun ? { dry_run: true } : {}),
          ...(res.skipped ? {} : { snapshot_id: res.snapshotId }),
        }) + '\n');
      } else if (!ctx.quiet) {
        // restic's Finish: counts right-aligned in 5 columns, sizes left-aligned in 5, the time as m:ss.
        const n = (x: number) => String(x).padStart(5);
        const b = (x: number) => formatBytes(x).padEnd(5);
        ctx.out(`\nFiles:       ${n(s.filesNew)} new, ${n(s.filesChanged)} changed, ${n(s.filesUnmodified)} unmodified\n` +
          `Dirs:        ${n(s.dirsNew)} new, ${n(s.dirsChanged)} changed, ${n(s.dirsUnmodified)} unmodified\n` +
          (verboseText ? `Data Blobs:  ${n(s.dataBlobs)} new\nTree Blobs:  ${n(s.treeBlobs)} new\n` : '') +
          `${res.dryRun ? 'Would add to the repository' : 'Added to the repository'}: ${b(s.dataAdded)} (${b(s.dataAddedPacked)} stored)\n\n` +
          `processed ${s.totalFilesProcessed} files, ${formatBytes(s.totalBytesProcessed)} in ${goFormatSeconds(Number((s.backupEnd.epochNs - s.backupStart.epochNs) / 1_000_000_000n))}\n` +
          (res.dryRun ? '' : res.skipped ? 'skipped creating snapshot\n' : `snapshot ${res.snapshotId.slice(0, 8)} saved\n`));
      }
      if (res.errors.length) {
        return exitWith(ctx, 3, 'Warning: at least one source file could not be read');
      }
      return 0;
    };
    if (f.bool('dry-run')) return withRepo(ctx, 'none', async (r) => run(await r.loadIndex({ signal: ctx.signal })));
    return withIndexedRepo(ctx, 'shared', run);
  },
};

/**
 * restic's -vv lines in restic's order: the header (parent, scan start) first, then "scan
 * finished" when the scan ends and the items as they finish. Items that finish before the scan
 * are held back (restic's scan of the same tree usually ends first), at most ITEMS_HELD of them.
 */
class VerboseLines {
  static readonly ITEMS_HELD = 1000;
  readonly #ctx: CommandContext;
  #headerDone = false;
  #scan: string | undefined;
  #scanDone = false;
  #held: string[] = [];

  constructor(ctx: CommandContext) {
    this.#ctx = ctx;
  }

  header(text: string): void {
    if (this.#headerDone) return;
    this.#headerDone = true;
    if (text) this.#ctx.out(text);
    if (this.#scan !== undefined) this.scanned(this.#scan);
  }

  /** The "scan finished" line (JSON: its verbose_status), or '' for none. */
  scanned(line: string): void {
    if (this.#scanDone) return;
    if (!this.#headerDone) {
      this.#scan = line;
      return;
    }
    this.#scanDone = true;
    if (line) this.#ctx.out(line);
    this.#flush();
  }

  item(line: string): void {
    if (this.#headerDone && this.#scanDone) this.#ctx.out(line);
    else {
      this.#held.push(line);
      if (this.#headerDone && this.#held.length >= VerboseLines.ITEMS_HELD) this.#flush();
    }
  }

  /** The backup is done: whatever was held, and the scan's line if the scan did not end first. */
  finish(scanLine: string): void {
    this.header('');
    this.scanned(scanLine);
    this.#flush();
  }

  #flush(): void {
    if (this.#held.length) this.#ctx.out(this.#held.join(''));
    this.#held = [];
  }
}

/** restic's "scan finished" line (-v), or with --json its verbose_status message (-vv); '' when neither. */
function scanLine(scan: { files: number; bytes: number; seconds: number }, json: boolean, verbosity: number): string {
  if (json) {
    if (verbosity < 2) return '';
    return JSON.stringify({ message_type: 'verbose_status', action: 'scan_finished', item: '', duration: scan.seconds, data_size: scan.bytes, data_size_in_repo: 0, metadata_size: 0, metadata_size_in_repo: 0, total_files: scan.files }) + '\n';
  }
  if (verbosity < 1) return '';
  return `scan finished in ${scan.seconds.toFixed(3)}s: ${scan.files} files, ${formatBytes(scan.bytes)}\n`;
}

/** restic's line for a file or folder done (-vv), or its verbose_status message. */
export function itemLine(item: BackupItem, json: boolean): string {
  const unchanged = item.action === 'unchanged';
  if (json) {
    return JSON.stringify({
      message_type: 'verbose_status', action: item.action, item: item.path,
      duration: unchanged ? 0 : item.seconds,
      data_size: unchanged ? 0 : item.dataAdded, data_size_in_repo: unchanged ? 0 : item.dataAddedPacked,
      metadata_size: unchanged ? 0 : item.treeAdded, metadata_size_in_repo: unchanged ? 0 : item.treeAddedPacked,
      total_files: 0,
    }) + '\n';
  }
  const p = goQuoteIfNeeded(item.path);
  if (unchanged) return `unchanged ${p}\n`;
  const verb = item.action === 'new' ? 'new      ' : 'modified ';
  const meta = item.type === 'dir' ? `, ${formatBytes(item.treeAddedPacked)} metadata` : '';
  return `${verb} ${p}, saved in ${item.seconds.toFixed(3)}s (${formatBytes(item.dataAdded)} added, ${formatBytes(item.dataAddedPacked)} stored${meta})\n`;
}

/** restic's FormatSeconds: m:ss, or h:mm:ss from an hour on. */
function goFormatSeconds(sec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = String(sec % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** restic's size flags: a number of bytes, or with k/K, m/M, g/G, t/T (powers of 1024). */
export function parseSize(s: string): number {
  const m = /^(\d+)([kKmMgGtT]?)$/.exec(s.trim());
  if (!m) throw new InvalidInputError(`invalid size ${JSON.stringify(s)} (a number, optionally with k/K, m/M, g/G or t/T)`);
  const exp = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Number(m[1]) * 1024 ** exp;
}

/**
 * `--read-concurrency` / `$RESTIC_READ_CONCURRENCY` as restic parses them (an unsigned integer;
 * 0 is the default). restic reads that many files at once; Stowage runs that many file workers,
 * each reading, chunking and sealing its files. Undefined: one worker per core.
 */
function readConcurrency(ctx: CommandContext): number | undefined {
  const flag = ctx.flags.string('read-concurrency');
  const value = flag ?? (ctx.env.RESTIC_READ_CONCURRENCY || undefined);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    // restic's words: pflag's for the flag (no "Fatal: "), its own for the variable.
    const why = `strconv.ParseUint: parsing ${JSON.stringify(value)}: invalid syntax`;
    if (flag !== undefined) throw new FlagError(`invalid argument ${JSON.stringify(value)} for "--read-concurrency" flag: ${why}`);
    throw new InvalidInputError(`invalid value for RESTIC_READ_CONCURRENCY ${JSON.stringify(value)}: ${why}`);
  }
  const n = Number(value);
  return n > 0 ? Math.min(n, 256) : undefined;
}

/** Everything a stream gives, until it ends. */
async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks);
}
