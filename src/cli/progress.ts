// Progress output for the long commands, shaped like restic's:
//   - on a terminal (stderr is a TTY): one status line, redrawn at most 4 times a second and
//     cleared at the end, so the summary that follows stands alone;
//   - with --json: {"message_type":"status",…} lines on stdout with restic's field names, at
//     most once a second — for backup and restore only, the commands restic has a JSON status
//     for; check, prune and copy print none with --json, as restic;
//   - with --quiet, or when stderr is a pipe or a file: nothing.
// backup and restore report files and bytes (update); check, prune and copy go through steps
// that count something, as restic's progress counters do (step): "[0:12]  45.00%  9 / 20 packs".
// Totals (for the percentage and the ETA) come from the library's progress events: a backup
// scans its targets beside the work, as restic's scanner does, and a restore knows what it will
// write once it has walked the snapshot's trees.
import type { ProgressTotals } from '../snapshot/engine/progress.ts';

export { scanTotals, treeTotals } from '../snapshot/engine/progress.ts';
export type { ProgressTotals, ScanOptions, TreeTotalsOptions } from '../snapshot/engine/progress.ts';

/** Where the status line is drawn: process.stderr, or a stand-in in tests. */
export interface StatusStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  /** Terminal width; the line is cut to fit (default 80 when unknown). */
  columns?: number;
}

/** What the library's onProgress callbacks report (BackupProgress and RestoreProgress both fit). */
export interface ProgressCounters {
  filesDone: number;
  bytesDone: number;
  dirsDone?: number;
  currentFile?: string;
}

/**
 * One step of a command that counts things (check, prune, copy), as restic's progress counters
 * show them. A step with a new label or id starts afresh: its rate and ETA are its own.
 */
export interface StepCounters {
  /** What is counted, shown after the count: "packs", "index files", "trees", … */
  label: string;
  /** Tells apart steps with the same label (copy: one step per snapshot). Not shown. */
  id?: string | number;
  done: number;
  /** Absent or 0 while unknown: then no percentage and no ETA. */
  total?: number;
  /** Bytes handled so far (read-data, copy), shown with the rate; may count from before the step. */
  bytes?: number;
  /** A short note after the counts, e.g. "3 files re-chunked". */
  detail?: string;
}

export type ProgressOperation = 'backup' | 'restore' | 'check' | 'prune' | 'copy';
export type ProgressMode = 'off' | 'line' | 'json';

/** The operations restic prints {"message_type":"status"} lines for with --json. */
export const JSON_STATUS_OPERATIONS: readonly ProgressOperation[] = ['backup', 'restore'];

export interface ProgressReporterOptions {
  operation: ProgressOperation;
  json?: boolean;
  quiet?: boolean;
  /** The terminal for the status line (default process.stderr); used only when it is a TTY. */
  terminal?: StatusStream;
  /** Receives each JSON status line, newline included (default: written to process.stdout). */
  jsonOut?: (line: string) => void;
  /** Milliseconds on a monotonic clock (default performance.now). */
  now?: () => number;
  /** Redraw on a timer too, so the clock moves while one big file is in work (default true). */
  timer?: boolean;
  /** Milliseconds between redraws and JSON status lines (default 250 and 1000; see {@link progressIntervalFromEnv}). */
  intervalMs?: number;
}

/**
 * restic's `$RESTIC_PROGRESS_FPS`: status updates per second (above 60 counts as 60), as the
 * interval in ms; undefined when unset, not a number or not positive (restic ignores it then).
 */
export function progressIntervalFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const fps = Number.parseFloat(env.RESTIC_PROGRESS_FPS ?? '');
  if (!(fps > 0)) return undefined;
  return 1000 / Math.min(fps, 60);
}

/** A status line is redrawn at most this often. */
export const LINE_INTERVAL_MS = 250;
/** JSON status lines are printed at most this often. */
export const JSON_INTERVAL_MS = 1000;
/** The rate is measured over this much recent time, so a burst of unchanged files fades out. */
const RATE_WINDOW_MS = 10_000;
/** Below this rate (bytes/s) an ETA would be a wild guess; restic shows none either. */
const MIN_RATE_FOR_ETA = 1024;

const CLEAR_LINE = '\r\x1b[K';

export class ProgressReporter {
  readonly mode: ProgressMode;
  readonly operation: ProgressOperation;
  readonly #terminal: StatusStream;
  readonly #jsonOut: (line: string) => void;
  readonly #now: () => number;
  readonly #start: number;
  readonly #interval: number;
  #counters: ProgressCounters = { filesDone: 0, bytesDone: 0 };
  #totals: ProgressTotals | undefined;
  /** The current step (check, prune, copy), if any. */
  #step: StepCounters | undefined;
  /** When the current step began (the start for backup and restore), and its bytes then, for the rate. */
  #base: { t: number; bytes: number };
  #errors = 0;
  #lastDraw = -Infinity;
  /** Whether a status line is on the terminal now (and must be cleared before other output). */
  #drawn = false;
  #finished = false;
  /** (time, bytesDone) at past draws, for the rate over the recent window. */
  readonly #samples: Array<{ t: number; bytes: number }> = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(options: ProgressReporterOptions) {
    this.operation = options.operation;
    this.#terminal = options.terminal ?? process.stderr;
    this.#jsonOut = options.jsonOut ?? ((line) => process.stdout.write(line));
    this.#now = options.now ?? (() => performance.now());
    this.#start = this.#now();
    this.#base = { t: this.#start, bytes: 0 };
    const json = JSON_STATUS_OPERATIONS.includes(this.operation) ? 'json' : 'off';
    this.mode = options.quiet ? 'off' : options.json ? json : this.#terminal.isTTY ? 'line' : 'off';
    this.#interval = options.intervalMs ?? (this.mode === 'json' ? JSON_INTERVAL_MS : LINE_INTERVAL_MS);
    if (this.mode !== 'off' && options.timer !== false) {
      // Ticks finer than the interval, so a redraw is never much later than due.
      this.#timer = setInterval(() => this.tick(), this.#interval / 4);
      this.#timer.unref();
    }
  }

  /** Whether anything is shown at all (a caller can skip the totals scan when not). */
  get enabled(): boolean {
    return this.mode !== 'off';
  }

  update(counters: ProgressCounters): void {
    if (this.mode === 'off' || this.#finished) return;
    this.#counters = { ...counters };
    this.tick();
  }

  /**
   * Reports a counting step (check, prune, copy). A new label or id is a new step: it is drawn at
   * once, and the rate and ETA start over.
   */
  step(counters: StepCounters): void {
    if (this.mode === 'off' || this.#finished) return;
    if (this.#step?.label !== counters.label || this.#step.id !== counters.id) {
      const t = this.#now();
      this.#base = { t, bytes: counters.bytes ?? 0 };
      this.#samples.length = 0;
      this.#lastDraw = -Infinity;
    }
    this.#step = { ...counters };
    this.#counters = { filesDone: counters.done, bytesDone: counters.bytes ?? 0 };
    this.tick();
  }

  /** The totals, once known; from then on the percentage and the ETA are shown. */
  setTotals(totals: ProgressTotals): void {
    this.#totals = { ...totals };
  }

  /** Counts an unreadable file (shown as restic's error count). */
  addError(): void {
    this.#errors++;
  }

  /** Draws (or prints) the status if the interval since the last one has passed. */
  tick(): void {
    if (this.mode === 'off' || this.#finished) return;
    const t = this.#now();
    if (t - this.#lastDraw < this.#interval) return;
    this.#lastDraw = t;
    this.#samples.push({ t, bytes: this.#counters.bytesDone });
    while (this.#samples.length > 2 && t - this.#samples[1]!.t >= RATE_WINDOW_MS) this.#samples.shift();
    if (this.mode === 'json') this.#jsonOut(JSON.stringify(this.statusJson(t)) + '\n');
    else {
      this.#terminal.write('\r' + fitLine(this.statusText(t), this.#counters.currentFile, this.#terminal.columns) + '\x1b[K');
      this.#drawn = true;
    }
  }

  /**
   * Takes the status line off the terminal so other output can be written; the next draw, when
   * due, puts it back (so a stream of warnings does not make it redraw more often).
   */
  clear(): void {
    if (!this.#drawn) return;
    this.#terminal.write(CLEAR_LINE);
    this.#drawn = false;
  }

  /** Stops the timer and clears the line. Call it in a finally: it is idempotent. */
  finish(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.clear();
    this.#finished = true;
  }

  /** restic's JSON status for the operation (zero fields left out, as restic's omitempty does). */
  statusJson(t = this.#now()): Record<string, unknown> {
    const c = this.#counters;
    const total = this.#totals;
    const elapsed = Math.floor((t - this.#start) / 1000);
    const step = this.#step;
    const percent = step ? stepFraction(step) : total && total.bytes > 0 ? Math.min(1, c.bytesDone / total.bytes) : 0;
    const out: Record<string, unknown> = { message_type: 'status' };
    const put = (key: string, value: number | string[] | undefined): void => {
      if (value === undefined || value === 0 || (Array.isArray(value) && value.length === 0)) return;
      out[key] = value;
    };
    put('seconds_elapsed', elapsed);
    if (this.operation === 'backup') {
      put('seconds_remaining', this.etaSeconds(t));
      out.percent_done = percent;
      put('total_files', total?.files);
      put('files_done', c.filesDone);
      put('total_bytes', total?.bytes);
      put('bytes_done', c.bytesDone);
      put('error_count', this.#errors);
      put('current_files', c.currentFile ? [c.currentFile] : undefined);
    } else if (this.operation !== 'restore') {
      // restic has no JSON status for check, prune and copy, so none is printed (see the mode);
      // this is only what a caller asking for one gets.
      out.percent_done = percent;
    } else {
      out.percent_done = percent;
      put('total_files', total?.files);
      put('files_restored', c.filesDone);
      put('total_bytes', total?.bytes);
      put('bytes_restored', c.bytesDone);
    }
    return out;
  }

  /** The terminal line without the current file, which fitLine adds as far as it fits. */
  statusText(t = this.#now()): string {
    if (this.#step) return this.#stepText(this.#step, t);
    const c = this.#counters;
    const total = this.#totals;
    const parts: string[] = [`[${formatDuration((t - this.#start) / 1000)}]`];
    if (total) {
      const pct = total.bytes > 0 ? Math.min(100, (c.bytesDone / total.bytes) * 100) : 100;
      parts.push(`${pct.toFixed(2)}%`, `${c.filesDone}/${total.files} files`, `${shortBytes(c.bytesDone)}/${shortBytes(total.bytes)}`);
    } else {
      parts.push(`${c.filesDone} files`, shortBytes(c.bytesDone));
    }
    if (this.#errors > 0) parts.push(`${this.#errors} errors`);
    const rate = this.rate(t);
    if (rate > 0) parts.push(`${shortBytes(rate)}/s`);
    const eta = this.etaSeconds(t);
    if (eta !== undefined) parts.push(`ETA ${formatDuration(eta)}`);
    return parts.join('  ');
  }

  /** "[0:12]  45.00%  9 / 20 packs  1.20 GiB  12.3 MiB/s  note  ETA 0:15", or "[0:12]  1234 trees". */
  #stepText(step: StepCounters, t: number): string {
    const parts: string[] = [`[${formatDuration((t - this.#start) / 1000)}]`];
    if (step.total && step.total > 0) parts.push(`${(stepFraction(step) * 100).toFixed(2)}%`, `${step.done} / ${step.total} ${step.label}`);
    else parts.push(`${step.done} ${step.label}`);
    if (step.bytes !== undefined) {
      parts.push(shortBytes(step.bytes));
      const rate = this.rate(t);
      if (rate > 0) parts.push(`${shortBytes(rate)}/s`);
    }
    if (step.detail) parts.push(step.detail);
    if (this.#errors > 0) parts.push(`${this.#errors} errors`);
    const eta = this.etaSeconds(t);
    if (eta !== undefined) parts.push(`ETA ${formatDuration(eta)}`);
    return parts.join('  ');
  }

  /** Bytes per second over the recent window (over the whole run, or step, until the window has two draws). */
  rate(t = this.#now()): number {
    const first = this.#samples[0];
    const last = { t, bytes: this.#counters.bytesDone };
    if (first && last.t - first.t >= 1000) return ((last.bytes - first.bytes) * 1000) / (last.t - first.t);
    const elapsed = t - this.#base.t;
    return elapsed >= 1000 ? ((this.#counters.bytesDone - this.#base.bytes) * 1000) / elapsed : 0;
  }

  /**
   * Seconds left, when the totals are known and the rate is meaningful; for a step, from how
   * long its items have taken so far (after at least a second of it).
   */
  etaSeconds(t = this.#now()): number | undefined {
    const step = this.#step;
    if (step) {
      const elapsed = t - this.#base.t;
      if (!step.total || step.done <= 0 || step.done >= step.total || elapsed < 1000) return undefined;
      return Math.ceil(((elapsed / step.done) * (step.total - step.done)) / 1000);
    }
    const total = this.#totals;
    if (!total || this.#counters.bytesDone >= total.bytes) return undefined;
    const rate = this.rate(t);
    if (rate < MIN_RATE_FOR_ETA) return undefined;
    return Math.ceil((total.bytes - this.#counters.bytesDone) / rate);
  }
}

/** How far a step is, from 0 to 1 (0 while its total is unknown). */
function stepFraction(step: StepCounters): number {
  return step.total && step.total > 0 ? Math.min(1, Math.max(0, step.done / step.total)) : 0;
}

/** restic's ui.FormatDuration: m:ss, or h:mm:ss from an hour on. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** A byte count in three significant digits or so ("812 B", "4.48 MiB", "195 GiB"), to keep the line short. */
export function shortBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${Math.round(v)} B`;
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/**
 * The status text and the current file, cut to the terminal width minus one column (writing
 * into the last column wraps on some terminals). The file loses its beginning first ("…/name"),
 * then the text its end.
 */
export function fitLine(text: string, currentFile: string | undefined, columns: number | undefined): string {
  const width = Math.max(20, (columns && columns > 0 ? columns : 80) - 1);
  const head = [...text];
  if (head.length >= width) return head.slice(0, width - 1).join('') + '…';
  if (!currentFile) return text;
  const room = width - head.length - 2;
  const file = [...currentFile];
  if (file.length <= room) return `${text}  ${currentFile}`;
  if (room < 8) return text;
  return `${text}  …${file.slice(file.length - room + 1).join('')}`;
}
