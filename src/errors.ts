// Every error Stowage throws on purpose is a StowageError with a stable `code`.
// Messages name the thing (file, blob, key) and never contain secrets.

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
  | 'BACKEND';

/** Options of the error constructors. */
export interface StowageErrorOptions {
  /** The underlying error (a system call's, an SDK's), kept as the standard `Error.cause`. */
  cause?: unknown;
}

/**
 * The base class of every error Stowage throws on purpose; `code` tells the kind apart and `name`
 * is the subclass's name. Messages name the file, blob or key concerned and never contain secrets.
 */
export class StowageError extends Error {
  /** Which kind of error this is; stable across versions. */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: StowageErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
  /**
   * `name`, `code` and `message`, for logs and JSON output (JSON.stringify of an Error is otherwise
   * `{}`).
   */
  toJSON(): { name: string; code: ErrorCode; message: string } {
    return { name: this.name, code: this.code, message: this.message };
  }
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

/** A blob, tree or snapshot that is referenced but cannot be found in the index. */
export class BlobNotFoundError extends StowageError {
  /** The ID of the missing blob. */
  readonly blob: string;
  constructor(kind: string, blob: string) {
    super('NOT_FOUND', `${kind} blob ${blob} is not in the index`);
    this.blob = blob;
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

/** Who holds a lock that blocked an operation, as read from its lock file. */
export interface LockHolder {
  /** The lock file's ID. */
  id: string;
  /**
   * Whether the lock is exclusive (prune, forget, repair) rather than shared (backup, check,
   * restore).
   */
  exclusive: boolean;
  /** The host of the process holding the lock. */
  hostname: string;
  /** The user of that process. */
  username: string;
  /** The process ID, on that host. */
  pid: number;
  /** When the lock was created or last refreshed, as written in the lock file. */
  time: string;
}

/** The repository is locked by another process (restic exit code 11). */
export class LockedError extends StowageError {
  /** The locks in the way (at least one when the lock files could be read). */
  readonly holders: LockHolder[];
  constructor(holders: LockHolder[], message?: string) {
    const h = holders[0];
    super(
      'LOCKED',
      message ??
        (h
          ? `repository is already locked ${h.exclusive ? 'exclusively' : ''} by PID ${h.pid} on ${h.hostname} by ${h.username} (lock ${h.id.slice(0, 10)}, created ${h.time})`.replace('  ', ' ')
          : 'repository is locked'),
    );
    this.holders = holders;
  }
}

/**
 * An operation stopped because its `signal` was aborted. The message carries the abort reason when
 * it is an Error.
 */
export class AbortedError extends StowageError {
  constructor(message = 'operation aborted', options?: StowageErrorOptions) {
    super('ABORTED', message, options);
  }
}

/** Input the caller gave (options, paths, IDs, JSON) is not valid. */
export class InvalidInputError extends StowageError {
  constructor(message: string, options?: StowageErrorOptions) {
    super('INVALID_INPUT', message, options);
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

/** Throws an {@link AbortedError} when `signal` is aborted; does nothing otherwise. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError(abortMessage(signal));
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
