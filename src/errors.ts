// Every error Stowage throws on purpose is a StowageError with a stable `code`.
// Messages name the thing (file, blob, key) and never contain secrets.

import { redactSecrets } from './redact.ts';

/**
 * The stable `code` of a {@link StowageError}: test `err.code` rather than messages, which may
 * change.
 */
export type ErrorCode =
  | 'WRONG_PASSWORD'
  | 'REPOSITORY_NOT_FOUND'
  | 'REPOSITORY_EXISTS'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'INTEGRITY'
  | 'LOCKED'
  | 'ABORTED'
  | 'INVALID_INPUT'
  | 'UNSUPPORTED'
  | 'BACKEND'
  | 'STDIN_FAILED'
  | 'COMMAND_FAILED'
  | 'OBJECT_LOCK';

/** Options of the error constructors. */
export interface StowageErrorOptions {
  /** The underlying error (a system call's, an SDK's), kept as the standard `Error.cause`. */
  cause?: unknown;
}

/** An error as StowageError.toJSON shows its cause: the parts safe to print, credentials masked. */
export interface ErrorSummary {
  name: string;
  /** StowageError code ("BACKEND", …) or an OS/network code ("ECONNREFUSED"). */
  code?: string;
  message: string;
  /** The summary of this error's own cause, a few levels deep. */
  cause?: ErrorSummary;
}

/** What JSON.stringify makes of a StowageError. */
export interface StowageErrorJSON {
  name: string;
  code: ErrorCode;
  message: string;
  /** The cause chain, summarized (name, code, message with credentials masked), a few levels deep. */
  cause?: ErrorSummary;
  /** Errors of later steps that failed too (see addSuppressed), summarized. */
  suppressed?: ErrorSummary[];
}

/**
 * The base class of every error Stowage throws on purpose; `code` tells the kind apart and `name`
 * is the subclass's name. Messages name the file, blob or key concerned and never contain secrets.
 */
export class StowageError extends Error {
  /** Which kind of error this is; stable across versions. */
  readonly code: ErrorCode;
  /**
   * Errors of later steps that failed after this one (e.g. removing the lock after the backup's
   * upload failed): this error is the one thrown, those are kept here. See addSuppressed.
   */
  declare suppressed?: unknown[];
  constructor(code: ErrorCode, message: string, options?: StowageErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
  /**
   * `name`, `code`, `message`, the cause chain and any suppressed errors (summarised, credentials
   * masked), for logs and JSON output (JSON.stringify of an Error is otherwise `{}`).
   */
  toJSON(): StowageErrorJSON {
    const out: StowageErrorJSON = { name: this.name, code: this.code, message: this.message };
    if (this.cause !== undefined) out.cause = summarizeCause(this.cause, 3);
    if (this.suppressed?.length) out.suppressed = this.suppressed.map((e) => summarizeCause(e, 1));
    return out;
  }
}

function summarizeCause(err: unknown, depth: number): ErrorSummary {
  if (!(err instanceof Error)) return { name: typeof err, message: redactSecrets(String(err)).slice(0, 500) };
  const code = (err as { code?: unknown }).code;
  const out: ErrorSummary = { name: err.name, ...(typeof code === 'string' ? { code } : {}), message: redactSecrets(err.message) };
  if (depth > 1 && err.cause !== undefined) out.cause = summarizeCause(err.cause, depth - 1);
  return out;
}

/**
 * Keeps `later`, the error of a step that ran after `primary` had already failed (a lock
 * release, an index write), on `primary.suppressed`, so that the first error — the one that
 * explains what went wrong — is the one thrown, and the later one is not lost. Returns `primary`.
 * Errors that cannot take a property (frozen objects, primitives) are returned unchanged.
 */
export function addSuppressed<E>(primary: E, later: unknown): E {
  if (primary === later || primary === null || typeof primary !== 'object' || !Object.isExtensible(primary)) return primary;
  const holder = primary as { suppressed?: unknown };
  if (Array.isArray(holder.suppressed)) holder.suppressed.push(later);
  else if (holder.suppressed === undefined) {
    Object.defineProperty(primary, 'suppressed', { value: [later], writable: true, configurable: true, enumerable: false });
  }
  return primary;
}

/** No key file opens with the given password (restic exit code 12). */
export class WrongPasswordError extends StowageError {
  constructor(message = 'wrong password or no key found') {
    super('WRONG_PASSWORD', message);
  }
}

/** The location holds no repository (no config file) (restic exit code 10). */
export class RepositoryNotFoundError extends StowageError {
  /** The backend location that was searched (without credentials). */
  readonly location: string;
  constructor(location: string, options?: StowageErrorOptions) {
    super('REPOSITORY_NOT_FOUND', `no repository found at ${location}`, options);
    this.location = location;
  }
}

/** `Repository.init` found a repository (a config file) at the location already. */
export class RepositoryExistsError extends StowageError {
  /** The backend location (without credentials). */
  readonly location: string;
  constructor(location: string) {
    super('REPOSITORY_EXISTS', `a repository already exists at ${location}`);
    this.location = location;
  }
}

/** A backend file (type/name) that does not exist. */
export class NotFoundError extends StowageError {
  /** The file as "type/name", e.g. "keys/ab12…". */
  readonly file: string;
  constructor(file: string, options?: StowageErrorOptions) {
    super('NOT_FOUND', `${file} does not exist`, options);
    this.file = file;
  }
}

/**
 * A blob that is referenced but cannot be found in the index. A `NotFoundError` whose `file` is
 * "<kind> blob <id>"; `indexRefreshed` says whether the index was refreshed from the repository
 * before giving up (so the blob is missing from the repository, not only from a stale index).
 */
export class BlobNotFoundError extends NotFoundError {
  /** The ID of the missing blob. */
  readonly blob: string;
  /** Whether the index was refreshed from the repository and still lacked the blob. */
  readonly indexRefreshed: boolean;
  constructor(kind: string, blob: string, options: StowageErrorOptions & { indexRefreshed?: boolean } = {}) {
    super(`${kind} blob ${blob}`, options);
    this.blob = blob;
    this.indexRefreshed = options.indexRefreshed ?? false;
    this.message = options.indexRefreshed
      ? `${kind} blob ${blob} is not in the index, even after the index was refreshed from the repository`
      : `${kind} blob ${blob} is not in the index`;
  }
}

/**
 * Stored bytes do not verify: MAC mismatch, hash mismatch, truncated or malformed content.
 * `file` is the backend file (e.g. "data/ab/ab12…"), `blob` the blob ID when known.
 */
export class IntegrityError extends StowageError {
  /** The backend file whose bytes did not verify, e.g. "data/ab/ab12…", when known. */
  readonly file: string | undefined;
  /** The blob that did not verify, when known. */
  readonly blob: string | undefined;
  constructor(message: string, where: { file?: string; blob?: string } = {}, options?: StowageErrorOptions) {
    const loc = [where.file && `file ${where.file}`, where.blob && `blob ${where.blob}`].filter(Boolean).join(', ');
    super('INTEGRITY', loc ? `${message} (${loc})` : message, options);
    this.file = where.file;
    this.blob = where.blob;
  }
}

/**
 * A file or stream is larger than Stowage accepts for its kind (e.g. a lock file over 1 MiB, a
 * snapshot that decompresses past 64 MiB): refused before it is decrypted or inflated further.
 * `limit` is the cap in bytes, `size` the size seen when known (stored size, or more than limit).
 */
export class SizeLimitError extends IntegrityError {
  /** The cap in bytes. */
  readonly limit: number;
  /** The size seen, when known (the stored size, or a size past `limit` found while inflating). */
  readonly size: number | undefined;
  constructor(message: string, where: { file?: string; blob?: string }, limit: number, size?: number) {
    super(message, where);
    this.limit = limit;
    this.size = size;
  }
}

/** Options of {@link AbortedError}: the cause and the signal's reason. */
export interface AbortedErrorOptions extends StowageErrorOptions {
  /** The signal's `reason` (e.g. the TimeoutError of AbortSignal.timeout()). */
  reason?: unknown;
}

/**
 * The caller's signal aborted the operation. `reason` is the signal's reason; `cause`, when the
 * abort cut a call short that was failing (e.g. a timeout that fired while a backend call was
 * being retried), is the last error of that call — "connection refused" rather than nothing.
 */
export class AbortedError extends StowageError {
  /** The aborting signal's `reason` (undefined when the abort came another way). */
  readonly reason: unknown;
  constructor(message = 'operation aborted', options?: AbortedErrorOptions) {
    super('ABORTED', message, options);
    this.reason = options?.reason;
  }
}

/** Input the caller gave (options, paths, IDs, JSON) is not valid. */
export class InvalidInputError extends StowageError {
  constructor(message: string, options?: StowageErrorOptions) {
    super('INVALID_INPUT', message, options);
  }
}

/**
 * None of the paths given to back up exists (or can be looked at), so there is nothing to back
 * up: no snapshot is written (restic: "all source directories/files do not exist", exit 1).
 * When only some are missing the backup goes on without them and reports each in its `errors`.
 */
export class SourceNotFoundError extends InvalidInputError {
  /** The paths that were given, none of which exists. */
  readonly paths: readonly string[];
  constructor(paths: readonly string[], options?: StowageErrorOptions) {
    super(`all source directories/files do not exist: ${paths.join(', ')}`, options);
    this.paths = paths;
  }
}

/**
 * The stream backed up as one file (backup's `stdin.stream`) failed before its end. No snapshot
 * is written. `cause` is the stream's own error.
 */
export class StdinError extends StowageError {
  /** The file name the content was to have in the snapshot. */
  readonly filename: string;
  constructor(filename: string, message: string, options?: StowageErrorOptions & { code?: ErrorCode }) {
    super(options?.code ?? 'STDIN_FAILED', message, options);
    this.filename = filename;
  }
}

/**
 * The command whose output was backed up (backup's `stdin.command`, the CLI's
 * `--stdin-from-command`) failed: it exited with a non-zero status, was killed by a signal, or
 * could not be started (then `cause` is the spawn error). No snapshot is written. The message
 * names the command, never its arguments or output (they may hold secrets); `stderr` keeps the
 * end of what it wrote there.
 */
export class CommandFailedError extends StdinError {
  /** The command as given (its arguments are not kept). */
  readonly command: string;
  /** The exit status; null when it was killed by a signal or did not start. */
  readonly exitCode: number | null;
  /** The signal that ended it, or null. */
  readonly signal: NodeJS.Signals | null;
  /** The last (at most 4 KiB) of what the command wrote to its standard error. */
  readonly stderr: string;
  constructor(
    what: { command: string; filename: string; exitCode: number | null; signal: NodeJS.Signals | null; stderr: string },
    options?: StowageErrorOptions,
  ) {
    const how = what.exitCode !== null
      ? `exited with status ${what.exitCode}`
      : what.signal !== null
        ? `was killed by signal ${what.signal}`
        : `could not be run${options?.cause instanceof Error ? `: ${options.cause.message}` : ''}`;
    super(what.filename, `command failed: ${what.command} ${how}`, { ...options, code: 'COMMAND_FAILED' });
    this.command = what.command;
    this.exitCode = what.exitCode;
    this.signal = what.signal;
    this.stderr = what.stderr;
  }
}

/**
 * A valid request Stowage does not implement (a restic option or layout it does not support, a
 * repository format version it cannot read), or a cloud backend used without its optional SDK
 * installed (the message names the package).
 */
export class UnsupportedError extends StowageError {
  constructor(message: string) {
    super('UNSUPPORTED', message);
  }
}

/**
 * The Node.js runtime lacks something Stowage needs (e.g. zstd in `node:zlib`, Node ≥ 22.15).
 * Thrown before a repository is read, so a missing capability never reads as damage.
 */
export class UnsupportedRuntimeError extends UnsupportedError {
  /** What is missing, e.g. `"zstd in node:zlib"`. */
  readonly capability: string;
  /** The Node.js versions that have it, e.g. `">= 22.15"`. */
  readonly required: string;
  /** The running Node.js version (`process.version`). */
  readonly nodeVersion: string;
  constructor(capability: string, required: string, nodeVersion: string) {
    super(`Node.js ${nodeVersion} lacks ${capability}, which Stowage needs to read and write repositories; use Node.js ${required}`);
    this.capability = capability;
    this.required = required;
    this.nodeVersion = nodeVersion;
  }
}

/**
 * A backend operation failed. `transient` errors (timeouts, resets, 5xx, 429) may be retried;
 * permanent ones (403, 400, …) must not be.
 */
export class BackendError extends StowageError {
  /** Whether retrying may help (timeouts, connection resets, 5xx, 429). */
  readonly transient: boolean;
  /** The HTTP status, for HTTP-based backends. */
  readonly status: number | undefined;
  constructor(message: string, opts: { transient: boolean; status?: number; cause?: unknown }) {
    super('BACKEND', message, { cause: opts.cause });
    this.transient = opts.transient;
    this.status = opts.status;
  }
}

/** A write to a read-only repository view (e.g. one opened `asOf` a past instant); `file` names what was to be written. */
export class ReadOnlyError extends InvalidInputError {
  /** What was to be written ("snapshots/<id>", "bucket <name>"). */
  readonly file: string;
  constructor(file: string, view: string) {
    super(`${file}: ${view} is read-only`);
    this.file = file;
  }
}

/**
 * Object Lock (WORM retention) stands in the way: a bucket without Object Lock where a retention
 * was asked for, or a file still under retention that an operation wanted to delete or rewrite.
 * `file` names the file ("data/ab/…") and `retainUntil` its retention when one is concerned.
 */
export class ObjectLockError extends StowageError {
  /** The bucket concerned, when the error is about a bucket. */
  readonly bucket: string | undefined;
  /** The file concerned ("data/ab/<id>"), when the error is about one. */
  readonly file: string | undefined;
  /** Until when that file is retained. */
  readonly retainUntil: Date | undefined;
  constructor(message: string, opts: { bucket?: string; file?: string; retainUntil?: Date; cause?: unknown } = {}) {
    super('OBJECT_LOCK', message, { cause: opts.cause });
    this.bucket = opts.bucket;
    this.file = opts.file;
    this.retainUntil = opts.retainUntil;
  }
}

/** Throws an {@link AbortedError} when `signal` is aborted; does nothing otherwise. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError(abortMessage(signal), { reason: signal.reason });
}

function abortMessage(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (r instanceof Error && r.name !== 'AbortError') return `operation aborted: ${r.message}`;
  return 'operation aborted';
}

/**
 * A value read from JSON, for an error message: strings quoted, objects and arrays only named,
 * at most `max` characters. Never throws, unlike JSON.stringify (bigint, values nested deeper
 * than the stack) and String (objects whose toString is not callable).
 */
export function shownValue(v: unknown, max = 80): string {
  if (typeof v === 'string') return JSON.stringify(v).slice(0, max);
  if (v !== null && typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object';
  return String(v).slice(0, max);
}
