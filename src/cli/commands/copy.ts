// `copy`: copies snapshots from the repository given by --from-repo (the source) into the one
// given by -r / $RESTIC_REPOSITORY (the destination), with restic's flags and text output.
// Like restic it prints nothing with --json (restic has no JSON status or summary for copy). On a
// terminal a status line counts the blobs of the snapshot being copied. Also home of the
// --from-* options that `init --copy-chunker-params` shares.
import { InvalidInputError } from '../../errors.ts';
import { Repository } from '../../repository/repository.ts';
import { withLock, withOptionalLock } from '../../repository/lock.ts';
import { goTimeString } from '../../repository/gotime.ts';

export { goTimeString };
import { copy, type CopyEvent, type CopyProgress } from '../../snapshot/operations/copy.ts';
import type { SnapshotEntry } from '../../snapshot/engine/select.ts';
import type { FlagSpec } from '../args.ts';
import type { Command, CommandContext } from '../context.ts';
import { FILTER_FLAGS, backendFor, compressionFrom, filterFrom, formatBytes, packSizeFrom, parseAsOf, withRepo } from '../context.ts';
import type { ProgressReporter } from '../progress.ts';
import { checkedPassword, goTrimSpace, readTextFile, resolvePassword } from '../secrets.ts';

export const FROM_REPO_FLAGS: FlagSpec[] = [
  { name: 'from-repo', kind: 'string', arg: 'REPOSITORY', help: 'source repository (default: $RESTIC_FROM_REPOSITORY)' },
  { name: 'from-as-of', kind: 'string', arg: 'TIME', help: 'copy from the source as it was at TIME (RFC 3339), from object versions (S3, B2, GCS, Azure)' },
  { name: 'from-repository-file', kind: 'string', arg: 'FILE', help: 'file to read the source repository location from ($RESTIC_FROM_REPOSITORY_FILE)' },
  { name: 'from-password-file', kind: 'string', arg: 'FILE', help: 'file to read the source repository password from ($RESTIC_FROM_PASSWORD_FILE)' },
  { name: 'from-password-command', kind: 'string', arg: 'CMD', help: 'command that prints the source repository password ($RESTIC_FROM_PASSWORD_COMMAND)' },
  { name: 'from-insecure-no-password', kind: 'bool', help: 'use an empty password for the source repository (insecure)' },
  { name: 'from-key-hint', kind: 'string', arg: 'KEY', help: 'key ID to try first for the source repository ($RESTIC_FROM_KEY_HINT)' },
];

/** Whether any --from-* option (or its environment variable) names a source repository. */
export function hasFromRepo(ctx: CommandContext): boolean {
  return Boolean(ctx.flags.string('from-repo') || ctx.flags.string('from-repository-file') || ctx.env.RESTIC_FROM_REPOSITORY || ctx.env.RESTIC_FROM_REPOSITORY_FILE);
}

/** Opens the repository the --from-* options describe (restic's SecondaryRepoOptions). */
export async function openFromRepo(ctx: CommandContext): Promise<Repository> {
  const f = ctx.flags;
  const env = ctx.env;
  const repo = f.string('from-repo') ?? env.RESTIC_FROM_REPOSITORY ?? '';
  const repoFile = f.string('from-repository-file') ?? env.RESTIC_FROM_REPOSITORY_FILE ?? '';
  if (repo === '' && repoFile === '') {
    throw new InvalidInputError('Please specify a source repository location (--from-repo or --from-repository-file)');
  }
  if (repo !== '' && repoFile !== '') {
    throw new InvalidInputError('Options --from-repo and --from-repository-file are mutually exclusive, please specify only one');
  }
  const location = repo !== '' ? repo : goTrimSpace(readTextFile(repoFile));
  const insecureNoPassword = f.bool('from-insecure-no-password');
  const password = checkedPassword(
    resolvePassword(f.string('from-password-file') ?? env.RESTIC_FROM_PASSWORD_FILE, f.string('from-password-command') ?? env.RESTIC_FROM_PASSWORD_COMMAND, env.RESTIC_FROM_PASSWORD),
    insecureNoPassword, 'from-insecure-no-password',
  );
  const backend = await backendFor({ ...ctx, repoLocation: () => location });
  try {
    const asOf = f.string('from-as-of');
    return await Repository.open(backend, {
      password, insecureNoPassword, keyHint: f.string('from-key-hint') ?? env.RESTIC_FROM_KEY_HINT, signal: ctx.signal, logger: ctx.logger,
      ...(asOf !== undefined ? { asOf: parseAsOf(asOf, 'from-as-of') } : {}),
    });
  } catch (e) {
    await backend.close();
    throw e;
  }
}

export const copyCommand: Command = {
  summary: 'Copy snapshots from one repository to another',
  usage: '[flags] [snapshotID ...]',
  flags: [
    ...FROM_REPO_FLAGS,
    ...FILTER_FLAGS,
    { name: 'no-rechunk', kind: 'bool', help: "keep the source's chunks even when the chunker polynomials differ (as restic does)" },
  ],
  async run(ctx) {
    const src = await openFromRepo(ctx);
    try {
      // Locks are taken before the indexes are read, so no prune can remove what they list.
      const lockOptions = { exclusive: false, retryLock: ctx.retryLock(), signal: ctx.signal };
      return await withOptionalLock(src, { ...lockOptions, lock: !ctx.flags.bool('no-lock') }, () =>
        withRepo(ctx, 'none', (dstRepo) =>
          withLock(dstRepo, lockOptions, async () => {
            const progress = ctx.progress('copy');
            try {
              const srcIndexed = await src.loadIndex({ signal: ctx.signal, onProgress: (done, total) => progress.step({ label: 'source index files loaded', done, total }) });
              const dstIndexed = await dstRepo.loadIndex({ signal: ctx.signal, onProgress: (done, total) => progress.step({ label: 'index files loaded', done, total }) });
              const printer = new CopyPrinter(ctx);
              const status = new CopyStatus(progress);
              const res = await copy(srcIndexed, dstIndexed, {
                lock: false,
                snapshots: ctx.flags.positional,
                filter: filterFrom(ctx.flags, ctx.env),
                rechunk: ctx.flags.bool('no-rechunk') ? false : undefined,
                compression: compressionFrom(ctx),
                packSize: packSizeFrom(ctx),
                signal: ctx.signal,
                onEvent: (e) => {
                  printer.event(e);
                  status.event(e);
                },
                onProgress: (p) => status.update(p),
              });
              for (const { ref, error } of res.ignored) ctx.err(`Ignoring ${JSON.stringify(ref)}: ${error.message}\n`);
              return 0;
            } finally {
              progress.finish();
            }
          })));
    } finally {
      await src.backend.close();
    }
  },
};

/** restic's copy output: P lines unless --quiet, V lines with --verbose, nothing with --json. */
class CopyPrinter {
  readonly #ctx: CommandContext;
  #started = 0;
  #startTime = Date.now();

  constructor(ctx: CommandContext) {
    this.#ctx = ctx;
  }

  #p(s: string): void {
    if (!this.#ctx.json && !this.#ctx.quiet) this.#ctx.out(s + '\n');
  }
  #v(s: string): void {
    if (!this.#ctx.json && !this.#ctx.quiet && this.#ctx.verbose) this.#ctx.out(s + '\n');
  }

  event(e: CopyEvent): void {
    switch (e.type) {
      case 'skipped':
        this.#v(`\n${snapshotString(e.source)}`);
        this.#v(`skipping source snapshot ${e.source.id.slice(0, 8)}, was already copied to snapshot ${e.existing.slice(0, 8)}`);
        break;
      case 'started':
        this.#p(`\n${snapshotString(e.source)}`);
        this.#p('  copy started, this may take a while...');
        this.#started++;
        this.#startTime = Date.now();
        break;
      case 'planned': {
        this.#v(`  copy ${e.blobs} blobs with disk size ${formatBytes(e.storedBytes)} in ${e.packs} packfiles`);
        const elapsed = formatSeconds(Math.floor((Date.now() - this.#startTime) / 1000));
        this.#p(e.packs > 0 ? `[${elapsed}] 100.00%  ${e.packs} / ${e.packs} packs copied` : `[${elapsed}]          0 packs copied`);
        break;
      }
      case 'saved':
        // A batch of several snapshots gets a blank line before its "saved" lines.
        if (this.#started > 1) this.#p('');
        this.#started = 0;
        this.#p(`snapshot ${e.newId.slice(0, 8)} saved, copied from source snapshot ${e.source.id.slice(0, 8)}`);
        break;
    }
  }
}

/**
 * The status line of a copy: the blobs of the snapshot in work (of those it lacks in the
 * destination, once known), the bytes copied in all, and which snapshot of how many.
 */
export class CopyStatus {
  readonly #progress: ProgressReporter;
  /** Snapshots started so far (the one in work is the last). */
  #started = 0;
  /** Blobs copied before the snapshot in work began. */
  #base = 0;
  /** Blobs the snapshot in work needs, when known (blob-by-blob copies). */
  #planned: number | undefined;
  #last: CopyProgress | undefined;

  constructor(progress: ProgressReporter) {
    this.#progress = progress;
  }

  event(e: CopyEvent): void {
    if (e.type === 'started') {
      this.#started++;
      this.#base = this.#last?.blobsCopied ?? 0;
      this.#planned = undefined;
      this.#draw();
    } else if (e.type === 'planned') {
      this.#planned = e.blobs;
      this.#draw();
    }
  }

  update(p: CopyProgress): void {
    this.#last = { ...p };
    this.#draw();
  }

  #draw(): void {
    if (this.#started === 0) return;
    const p = this.#last;
    const of = p && p.snapshotsTotal > 0 ? ` of ${p.snapshotsTotal}` : '';
    const rechunked = p && p.filesRechunked > 0 ? `, ${p.filesRechunked} files re-chunked` : '';
    this.#progress.step({
      label: 'blobs',
      id: this.#started,
      done: (p?.blobsCopied ?? 0) - this.#base,
      total: this.#planned,
      bytes: p?.bytesCopied ?? 0,
      detail: `snapshot ${this.#started}${of}${rechunked}`,
    });
  }
}

function formatSeconds(sec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
}

/** restic's Snapshot.String(): "snapshot 1a2b3c4d of [/a /b] at <Go time> by user@host". */
export function snapshotString(e: SnapshotEntry): string {
  const s = e.snapshot;
  return `snapshot ${e.id.slice(0, 8)} of [${s.paths.join(' ')}] at ${goTimeString(s.time)} by ${s.username ?? ''}@${s.hostname ?? ''}`;
}
