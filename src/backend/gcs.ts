// A repository in a Google Cloud Storage bucket (or an emulator such as fake-gcs-server), in
// restic's layout under an optional prefix: "<prefix>/config", "<prefix>/data/ab/<id>", ….
// @google-cloud/storage is an optional peer dependency, loaded on first use.
//
// Saves are single (non-resumable) multipart uploads: GCS creates the object only when the
// whole request has arrived, so readers never see part of a file.
//
// The SDK cannot cancel a request it has sent. Reads (load, stat, list) stop waiting and throw
// AbortedError as soon as the signal fires; writes (save, remove) check the signal before they
// send anything, and once sent they finish and report what really happened.

import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type * as Gcs from '@google-cloud/storage';
import { FILE_TYPES, describeFile, layoutPath } from './backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from './backend.ts';
import { checkConnections, checkHandle, resolveRange } from './local.ts';
import {
  AbortedError,
  BackendError,
  IntegrityError,
  InvalidInputError,
  NotFoundError,
  StowageError,
  UnsupportedError,
  throwIfAborted,
} from '../errors.ts';

/** The fields of a service account key file that matter here (the rest pass through). */
export interface GCSServiceAccountKey {
  client_email: string;
  private_key: string;
  project_id?: string;
  [field: string]: unknown;
}

/** Options of {@link GCSBackend}; see docs/backends/gcs.md. */
export interface GCSBackendOptions {
  /** The bucket that holds the repository (created by `create()` when missing). */
  bucket: string;
  /** Folder inside the bucket ("" or omitted: the bucket root). Leading/trailing "/" are ignored. */
  prefix?: string;
  /** The project, as restic's GOOGLE_PROJECT_ID; needed to create a bucket. Default: from the credentials. */
  projectId?: string;
  /**
   * A service account key: the parsed JSON object or its text (Stash's GOOGLE_SERVICE_ACCOUNT_JSON_KEY).
   * Without `credentials` and `keyFilename`, Google's application default credentials are used
   * (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server).
   */
  credentials?: GCSServiceAccountKey | string;
  /** Path of a service account key file, instead of `credentials`. */
  keyFilename?: string;
  /**
   * The API origin, for emulators and private endpoints, e.g. "http://127.0.0.1:4443".
   * Requests to a custom endpoint are sent without credentials (as emulators expect).
   */
  apiEndpoint?: string;
  /** Location of a bucket that `create()` makes (default "US", as restic's gs.region). */
  region?: string;
  /** Requests in flight at once (default 5, like restic). */
  connections?: number;
}

type GcsModule = typeof Gcs;

/** Names the listing reports: restic ignores everything that is not a lowercase 64-hex ID. */
const ID_NAME = /^[0-9a-f]{64}$/;

/** Objects per list request (the JSON API's maximum). */
const LIST_PAGE_SIZE = 1000;

let gcsModule: Promise<GcsModule> | undefined;

/** Loads @google-cloud/storage once, on first use, so `import 'stowage'` does not pay for it. */
function loadGcs(): Promise<GcsModule> {
  gcsModule ??= import('@google-cloud/storage').catch((err: unknown) => {
    gcsModule = undefined;
    throw new UnsupportedError(
      `the GCS backend needs the optional package @google-cloud/storage (npm install @google-cloud/storage): ${(err as Error)?.message ?? String(err)}`,
    );
  });
  return gcsModule;
}

/**
 * A repository in a Google Cloud Storage bucket under an optional prefix, in restic's layout, so
 * restic's `gs:` backend shares it. Needs the optional peer dependency `@google-cloud/storage`,
 * loaded on the first request (`UnsupportedError` naming the package without it). The constructor
 * checks the options (`InvalidInputError`) and contacts nothing. 5 requests in flight by default.
 */
export class GCSBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  /** The bucket that holds the repository. */
  readonly bucket: string;
  /** The normalised prefix ("" or "a/b", no leading or trailing "/"). */
  readonly prefix: string;
  readonly #opts: GCSBackendOptions;
  readonly #secrets: string[];
  #client: Promise<Gcs.Bucket> | undefined;

  constructor(opts: GCSBackendOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidInputError('GCS backend options must be an object');
    this.bucket = checkBucketName(opts.bucket);
    this.prefix = normalisePrefix(opts.prefix);
    if (opts.credentials !== undefined && opts.keyFilename !== undefined) {
      throw new InvalidInputError('GCS backend takes credentials or keyFilename, not both');
    }
    if (opts.apiEndpoint !== undefined && !/^https?:\/\/[^/?#]+\/?$/.test(opts.apiEndpoint)) {
      throw new InvalidInputError(`GCS apiEndpoint must be an http(s) origin such as http://127.0.0.1:4443, got ${JSON.stringify(stripUrlSecrets(opts.apiEndpoint))}`);
    }
    this.#opts = { ...opts };
    this.#secrets = secretParts(opts.credentials);
    const where = opts.apiEndpoint ? ` (${stripUrlSecrets(opts.apiEndpoint)})` : '';
    this.location = `gs:${this.bucket}:/${this.prefix}${where}`;
    this.connections = checkConnections(opts.connections ?? 5, this.location);
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const bucket = await this.bucketClient();
    const what = `bucket ${this.bucket}`;
    let exists: boolean;
    try {
      [exists] = await abortable(bucket.exists(), options.signal);
    } catch (err) {
      // Allowed to use objects but not to read the bucket: it may well exist (restic goes on too).
      if (statusOf(err) === 403) return;
      throw this.toStowage(err, 'create', what, options.signal);
    }
    if (exists) return;
    throwIfAborted(options.signal);
    try {
      await bucket.storage.createBucket(this.bucket, { location: this.#opts.region ?? 'US' });
    } catch (err) {
      // Created by someone else in between.
      if (statusOf(err) === 409) return;
      throw this.toStowage(err, 'create', what, undefined);
    }
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    checkHandle(h);
    const file = describeFile(h);
    const object = (await this.bucketClient()).file(this.keyOf(h));
    // The last point where an abort leaves nothing behind (see the top of the file).
    throwIfAborted(options.signal);
    try {
      // The SDK checks the CRC32C of what the service stored against what it sent.
      await object.save(Buffer.from(data.buffer, data.byteOffset, data.byteLength), {
        resumable: false,
        validation: 'crc32c',
        metadata: { contentType: 'application/octet-stream' },
      });
    } catch (err) {
      throw this.toStowage(err, 'save', file, undefined);
    }
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    throwIfAborted(options.signal);
    checkHandle(h);
    const file = describeFile(h);
    const object = (await this.bucketClient()).file(this.keyOf(h));
    let offset = options.offset ?? 0;
    let length = options.length;
    if (length === 0 || (length === undefined && offset > 0)) {
      // An empty range cannot be asked for (the SDK would read everything), and an open range
      // at the very end is a 416: the size decides whether the range is valid.
      const { size } = await this.stat(h, options);
      ({ offset, length } = resolveRange(options, size, file));
      if (length === 0) return new Uint8Array(0);
    } else {
      // Only checks the numbers: the real end is found by the ranged read below.
      resolveRange(options, Number.POSITIVE_INFINITY, file);
    }
    try {
      // A whole-file read is checked against the stored CRC32C by the SDK; a range cannot be.
      const stream = length === undefined ? object.createReadStream() : object.createReadStream({ start: offset, end: offset + length - 1 });
      const bytes = await readAll(stream, length, file, options.signal);
      if (length !== undefined && bytes.length < length) {
        throw new IntegrityError(`range ${offset}+${length} is past the end of the file (only ${bytes.length} bytes there)`, { file });
      }
      return bytes;
    } catch (err) {
      throw this.toStowage(err, 'load', file, options.signal);
    }
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    throwIfAborted(options.signal);
    checkHandle(h);
    const file = describeFile(h);
    const object = (await this.bucketClient()).file(this.keyOf(h));
    try {
      const [metadata] = await abortable(object.getMetadata(), options.signal);
      return { name: h.type === 'config' ? 'config' : h.name, size: sizeOf(metadata.size, file) };
    } catch (err) {
      throw this.toStowage(err, 'stat', file, options.signal);
    }
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') {
      try {
        yield await this.stat({ type, name: 'config' }, options);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
      return;
    }
    const bucket = await this.bucketClient();
    const folder = this.prefix ? `${this.prefix}/${type}/` : `${type}/`;
    let query: Gcs.GetFilesOptions | null = { prefix: folder, autoPaginate: false, maxResults: LIST_PAGE_SIZE };
    while (query) {
      let files: Gcs.File[];
      let next: Gcs.GetFilesOptions | null;
      try {
        [files, next] = await abortable(bucket.getFiles(query), options.signal);
      } catch (err) {
        // No bucket yet: no repository files either.
        if (statusOf(err) === 404) return;
        throw this.toStowage(err, 'list', folder, options.signal);
      }
      for (const object of files) {
        const name = object.name.slice(object.name.lastIndexOf('/') + 1);
        // Only files exactly where restic's layout puts them (data/ab/ab…, not data/ab…).
        if (!ID_NAME.test(name) || object.name !== this.keyOf({ type, name })) continue;
        yield { name, size: sizeOf(object.metadata.size, `${type}/${name}`) };
      }
      throwIfAborted(options.signal);
      query = next?.pageToken ? next : null;
    }
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    checkHandle(h);
    const file = describeFile(h);
    const object = (await this.bucketClient()).file(this.keyOf(h));
    throwIfAborted(options.signal);
    try {
      await object.delete();
    } catch (err) {
      throw this.toStowage(err, 'remove', file, undefined);
    }
  }

  async close(): Promise<void> {
    // The SDK's keep-alive sockets close on their own when idle.
  }

  /** The object name of a file: the prefix joined with restic's layout path. */
  private keyOf(h: FileHandle): string {
    return this.prefix ? `${this.prefix}/${layoutPath(h)}` : layoutPath(h);
  }

  private bucketClient(): Promise<Gcs.Bucket> {
    this.#client ??= this.makeBucketClient().catch((err: unknown) => {
      this.#client = undefined;
      throw err;
    });
    return this.#client;
  }

  private async makeBucketClient(): Promise<Gcs.Bucket> {
    const gcs = await loadGcs();
    const o = this.#opts;
    let credentials: GCSServiceAccountKey | undefined;
    if (typeof o.credentials === 'string') {
      credentials = parseKey(o.credentials, 'credentials');
    } else if (o.credentials !== undefined) {
      credentials = o.credentials;
    } else if (o.keyFilename !== undefined) {
      // Read here so a missing or malformed file fails with a clear message, not deep in the SDK.
      let text: string;
      try {
        text = await readFile(o.keyFilename, 'utf8');
      } catch (err) {
        throw new InvalidInputError(`GCS keyFilename ${o.keyFilename} cannot be read: ${(err as Error).message}`);
      }
      credentials = parseKey(text, `keyFilename ${o.keyFilename}`);
    }
    const storage = new gcs.Storage({
      projectId: o.projectId ?? credentials?.project_id,
      credentials: credentials as never,
      apiEndpoint: o.apiEndpoint?.replace(/\/+$/, ''),
      // No retries here: the retry wrapper above the backend decides, with its own backoff.
      retryOptions: { autoRetry: false },
    });
    return storage.bucket(this.bucket);
  }

  private redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) out = out.split(secret).join('***');
    return out.replace(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, '***');
  }

  /**
   * Turns an SDK error into a StowageError naming the operation and file: 404 → NotFoundError,
   * 416 and checksum mismatches → IntegrityError, 408/429/5xx and network failures → transient.
   */
  private toStowage(err: unknown, op: string, file: string, signal: AbortSignal | undefined): StowageError {
    if (err instanceof StowageError) return err;
    if (signal?.aborted) return new AbortedError();
    const status = statusOf(err);
    const code = (err as { code?: unknown })?.code;
    if (status === 404 && op !== 'save' && op !== 'create' && op !== 'list') return new NotFoundError(file);
    if (status === 416) return new IntegrityError('the requested range is past the end of the file', { file });
    if (code === 'CONTENT_DOWNLOAD_MISMATCH') return new IntegrityError('the downloaded bytes do not match the stored CRC32C', { file });
    const detail = this.redact(firstLine(errorMessage(err)));
    const label = status ?? (typeof code === 'string' ? code : undefined);
    const message = `${op} ${file} (in ${this.location}): ${label !== undefined ? `${label}: ` : ''}${detail}`;
    // A plain copy as the cause: the SDK's error carries the request, with its Authorization header.
    const cause = Object.assign(new Error(message), { code, status });
    return new BackendError(message, { transient: isTransient(status, code), status, cause });
  }
}

/**
 * Collects a download stream, expecting `expected` bytes when given; destroys the stream (which
 * ends the request) when the signal fires.
 */
async function readAll(stream: Readable, expected: number | undefined, file: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let total = 0;
  const onAbort = (): void => {
    stream.destroy(new AbortedError());
  };
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (expected !== undefined && total > expected) {
        throw new IntegrityError(`the service sent more than the ${expected} bytes asked for`, { file });
      }
      chunks.push(chunk);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  throwIfAborted(signal);
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Resolves with `promise`, or rejects with AbortedError as soon as the signal fires (the request runs on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortedError());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function sizeOf(size: unknown, file: string): number {
  const n = typeof size === 'number' ? size : typeof size === 'string' ? Number(size) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new IntegrityError(`the service reported no valid size (${String(size).slice(0, 40)})`, { file });
  return n;
}

function parseKey(text: string, what: string): GCSServiceAccountKey {
  let key: unknown;
  try {
    key = JSON.parse(text);
  } catch {
    // The JSON parser's message quotes the text, which holds the private key: leave it out.
    throw new InvalidInputError(`GCS ${what} is not valid JSON (expected a service account key)`);
  }
  if (key === null || typeof key !== 'object' || typeof (key as GCSServiceAccountKey).client_email !== 'string') {
    throw new InvalidInputError(`GCS ${what} is not a service account key (no client_email)`);
  }
  return key as GCSServiceAccountKey;
}

function checkType(type: unknown): asserts type is FileType {
  if (!FILE_TYPES.includes(type as FileType)) {
    throw new InvalidInputError(`unknown file type ${JSON.stringify(type)?.slice(0, 40)} (expected one of ${FILE_TYPES.join(', ')})`);
  }
}

/** GCS bucket names: 3–222 lowercase letters, digits, "-", "_" and ".", starting and ending with a letter or digit. */
function checkBucketName(name: unknown): string {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(name)) {
    throw new InvalidInputError(`GCS bucket name ${JSON.stringify(name)?.slice(0, 80)} is not valid (lowercase letters, digits, "-", "_", ".")`);
  }
  return name;
}

/** "/a//b/" → "a/b"; "." and ".." are refused so a prefix cannot climb out of the bucket. */
function normalisePrefix(prefix: unknown): string {
  if (prefix === undefined || prefix === null) return '';
  if (typeof prefix !== 'string') throw new InvalidInputError('GCS prefix must be a string');
  const parts = prefix.split('/').filter((p) => p !== '');
  if (parts.some((p) => p === '.' || p === '..' || p.includes('\0') || p.includes('\\'))) {
    throw new InvalidInputError(`GCS prefix ${JSON.stringify(prefix).slice(0, 120)} must not contain ".", ".." or backslashes`);
  }
  return parts.join('/');
}

/** The private key of the credentials, so it can be cut out of any message. */
function secretParts(credentials: GCSServiceAccountKey | string | undefined): string[] {
  if (credentials === undefined) return [];
  let key: unknown = credentials;
  if (typeof credentials === 'string') {
    try {
      key = JSON.parse(credentials);
    } catch {
      return [credentials];
    }
  }
  const secret = (key as { private_key?: unknown } | null)?.private_key;
  return typeof secret === 'string' && secret.length >= 4 ? [secret] : [];
}

function stripUrlSecrets(url: string): string {
  try {
    const u = new URL(url);
    u.search = '';
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/+$/, '');
  } catch {
    return url.replace(/[?#].*$/, '');
  }
}

/** The HTTP status of an SDK error (ApiError puts it in `code`), if the service answered. */
function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' && code > 0 ? code : undefined;
}

/** Network failures that a later attempt may not meet (the request got no answer). */
const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  // The service stored other bytes than were sent (the SDK removed the object again).
  'FILE_NO_UPLOAD',
]);

function isTransient(status: number | undefined, code: unknown): boolean {
  if (status !== undefined) return status === 408 || status === 429 || status >= 500;
  return typeof code === 'string' && TRANSIENT_NETWORK_CODES.has(code);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0].trim();
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
