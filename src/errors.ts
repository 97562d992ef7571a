// Every error Stowage throws on purpose is a StowageError with a stable `code`.
// Messages name the thing (file, blob, key) and never contain secrets.

import type { GoTime } from './repository/gotime.ts';

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

export interface StowageErrorOptions {
  cause?: unknown;
}

export class StowageError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: StowageErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
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
  readonly location: string;
  constructor(location: string, options?: StowageErrorOptions) {
    super('REPOSITORY_NOT_FOUND', `no repository found at ${location}`, options);
    this.location = location;
  }
}

export class RepositoryExistsError extends StowageError {
  readonly location: string;
  constructor(location: string) {
    super('REPOSITORY_EXISTS', `a repository already exists at ${location}`);
    this.location = location;
  }
}

/** A backend file (type/name) that does not exist. */
export class NotFoundError extends StowageError {
  readonly file: string;
  constructor(file: string, options?: StowageErrorOptions) {
    super('NOT_FOUND', `${file} does not exist`, options);
    this.file = file;
  }
}

/** A blob, tree or snapshot that is referenced but cannot be found in the index. */
export class BlobNotFoundError extends StowageError {
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
  readonly file: string | undefined;
  readonly blob: string | undefined;
  constructor(message: string, where: { file?: string; blob?: string } = {}, options?: StowageErrorOptions) {
    const loc = [where.file && `file ${where.file}`, where.blob && `blob ${where.blob}`].filter(Boolean).join(', ');
    super('INTEGRITY', loc ? `${message} (${loc})` : message, options);
    this.file = where.file;
    this.blob = where.blob;
  }
}

export interface LockHolder {
  id: string;
  exclusive: boolean;
  hostname: string;
  username: string;
  pid: number;
  /** When the lock was written, as its file says; prints and serialises as RFC 3339. */
  time: GoTime;
}

/** The repository is locked by another process (restic exit code 11). */
export class LockedError extends StowageError {
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
  readonly transient: boolean;
  readonly status: number | undefined;
  constructor(message: string, opts: { transient: boolean; status?: number; cause?: unknown }) {
    super('BACKEND', message, { cause: opts.cause });
    this.transient = opts.transient;
    this.status = opts.status;
  }
}

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
