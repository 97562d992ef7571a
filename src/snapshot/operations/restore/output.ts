// What a restore tells its caller as it goes: the result's counts and warnings, and progress.
import { ProgressEstimator } from '../../engine/progress.ts';
import type { FileTask } from './plan.ts';
import type { RestoreOptions, RestoreProgress, RestoreResult } from './types.ts';

/** The result being filled in, warnings, and the progress events made from it. */
export class RestoreOutput {
  readonly result: RestoreResult = { filesRestored: 0, dirsRestored: 0, bytesRestored: 0, warnings: [] };
  /** Totals of the plan, known once it is made. */
  readonly totals = { files: 0, bytes: 0 };
  readonly #options: Pick<RestoreOptions, 'onProgress' | 'onWarning'>;
  readonly #estimator = new ProgressEstimator();
  /** Files whose writing started, in that order; complete ones leave from the top when seen. */
  readonly #started: FileTask[] = [];
  /** Progress events sent so far. */
  reports = 0;

  constructor(options: Pick<RestoreOptions, 'onProgress' | 'onWarning'>) {
    this.#options = options;
  }

  warn(p: Buffer, message: string): void {
    const ps = p.toString('utf8');
    this.result.warnings.push({ path: ps, message });
    this.#options.onWarning?.(ps, message);
  }

  /** A file has some content written: it is under way until complete. */
  started(t: FileTask): void {
    if (t.started) return;
    t.started = true;
    this.#started.push(t);
  }

  /** Sends a progress event with the counts as they are. */
  report(): void {
    const onProgress = this.#options.onProgress;
    if (!onProgress) return;
    this.reports++;
    const done = { files: this.result.filesRestored, bytes: this.result.bytesRestored };
    const { percent, etaSeconds } = this.#estimator.estimate(done, this.totals);
    const p: RestoreProgress = { filesDone: done.files, bytesDone: done.bytes, totalFiles: this.totals.files, totalBytes: this.totals.bytes, percent: percent ?? 0 };
    // The file whose writing started last among those not complete.
    const started = this.#started;
    while (started.length > 0 && started[started.length - 1]!.remaining === 0) started.pop();
    const current = started[started.length - 1];
    if (current) p.currentFile = current.pending.path.toString('utf8');
    if (etaSeconds !== undefined) p.etaSeconds = etaSeconds;
    onProgress(p);
  }
}
