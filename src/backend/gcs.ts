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
//
// Object retention (GCS's per-object WORM): with `objectRetention`, create() makes a missing
// bucket with object retention and versioning enabled, every upload but lock files carries
// `retention: {mode: 'Unlocked'|'Locked', retainUntilTime}` (GOVERNANCE/COMPLIANCE), and
// putRetention PATCHes it (extend only, so never with overrideUnlockedRetention). In a versioned
// bucket the generations give a read-only view of the repository at an instant (viewAsOf).

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as Gcs from '@google-cloud/storage';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions, LocalFile, ObjectRetention, RetentionCapable, VersionedCapable } from './backend.ts';
import type { S3ObjectLockOptions } from './s3.ts';
import { VersionsAsOfView, versionSource, type ListedVersion } from './as-of-view.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, ObjectLockError, StowageError, throwIfAborted } from '../errors.ts';
import {
  checkConnections, startCall, checkType, errorMessage, fileInfo, firstLine, isIdName, listConfig, madeOnce, maskSecrets, normalizePrefix,
  optionalPackage, prefixedKey, raceAbort, sdkRange, stripUrlSecrets, transientErrors, underPrefix, uploadChecksumsOption, crc32cBase64,
  checkObjectLockOptions, uploadRetentionOf, crc32cBase64Of, localFileDigests, uploadFromFile,
} from './shared.ts';

/**
 * GCS object retention for uploads (the same shape as S3's objectLock): GOVERNANCE is GCS's
 * `Unlocked` mode, COMPLIANCE its `Locked` mode; exactly one of `retainDays`, `retainSeconds`,
 * `retainUntil`.
 */
export type GCSObjectRetentionOptions = S3ObjectLockOptions;

/** The fields of a service account key file that matter here (the rest pass through). */
export interface GCSServiceAccountKey {
  client_email: string;
  private_key: string;
  project_id?: string;
  [field: string]: unknown;
}

/** Options of {@link GCSBackend}; see docs/backends/gcs.md. */
export interface GCSBackendOptions {
  /**
   * Send a checksum of every upload for the server to verify before it stores the bytes, so a
   * byte damaged on the way is refused (transiently) instead of stored. Default true; false is
   * for tests that show what the server stores without one.
   */
  uploadChecksums?: boolean;
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
   * An OAuth2 access token sent as the bearer of every request (restic's $GOOGLE_ACCESS_TOKEN), in
   * place of `credentials`, `keyFilename` and the default credentials; sent to a custom
   * `apiEndpoint` too, as restic sends it.
   */
  accessToken?: string;
  /**
   * The API origin, for emulators and private endpoints, e.g. "http://127.0.0.1:4443".
   * Requests to a custom endpoint are sent without credentials (as emulators expect).
   */
  apiEndpoint?: string;
  /** Location of a bucket that `create()` makes (default "US", as restic's gs.region). */
  region?: string;
  /** Requests in flight at once (default 5, like restic). */
  connections?: number;
  /**
   * Object retention on every upload except lock files (GCS `retention`, mode Unlocked for
   * GOVERNANCE, Locked for COMPLIANCE). The bucket must have object retention enabled; `create()`
   * makes a missing bucket so (with versioning) and refuses an existing one without it
   * (ObjectLockError). See docs/immutability.md.
   */
  objectRetention?: GCSObjectRetentionOptions;
}

type GcsModule = typeof Gcs;

/** Objects per list request (the JSON API's maximum). */
const LIST_PAGE_SIZE = 1000;

const loadGcs = optionalPackage('@google-cloud/storage', 'GCS', (): Promise<GcsModule> => import('@google-cloud/storage'));

// The shared rules, plus the SDK's code for stored bytes that differ from those sent (it removed
// the object again, so another upload may well succeed).
const transient = transientErrors.extend({ codes: ['FILE_NO_UPLOAD'] });

/**
 * A repository in a Google Cloud Storage bucket under an optional prefix, in restic's layout, so
 * restic's `gs:` backend shares it. Needs the optional peer dependency `@google-cloud/storage`,
 * loaded on the first request (`UnsupportedError` naming the package without it). The constructor
 * checks the options (`InvalidInputError`) and contacts nothing. 5 requests in flight by default.
 */
export class GCSBackend implements Backend, RetentionCapable, VersionedCapable {
  readonly location: string;
  readonly connections: number;
  /** The bucket that holds the repository. */
  readonly bucket: string;
  /** The normalised prefix ("" or "a/b", no leading or trailing "/"). */
  readonly prefix: string;
  readonly #opts: GCSBackendOptions;
  /** The `uploadChecksums` option (default on). */
  readonly #checksums: boolean;
  readonly #secrets: string[];
  /** The SDK client, made on the first request. */
  readonly #client = madeOnce(() => this.makeBucketClient());
  readonly #retention: GCSObjectRetentionOptions | undefined;

  constructor(opts: GCSBackendOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidInputError('GCS backend options must be an object');
    this.bucket = checkBucketName(opts.bucket);
    this.prefix = normalizePrefix(opts.prefix, 'GCS prefix', true);
    if (opts.credentials !== undefined && opts.keyFilename !== undefined) {
      throw new InvalidInputError('GCS backend takes credentials or keyFilename, not both');
    }
    if (opts.accessToken !== undefined && (typeof opts.accessToken !== 'string' || opts.accessToken === '')) {
      throw new InvalidInputError('GCS accessToken must be a non-empty string');
    }
    // An emulator named the way restic and Google's Go library take it ($STORAGE_EMULATOR_HOST).
    if (opts.apiEndpoint === undefined && process.env.STORAGE_EMULATOR_HOST) opts = { ...opts, apiEndpoint: emulatorEndpoint(process.env.STORAGE_EMULATOR_HOST) };
    if (opts.apiEndpoint !== undefined && !/^https?:\/\/[^/?#]+\/?$/.test(opts.apiEndpoint)) {
      throw new InvalidInputError(`GCS apiEndpoint must be an http(s) origin such as http://127.0.0.1:4443, got ${JSON.stringify(stripUrlSecrets(opts.apiEndpoint))}`);
    }
    this.#opts = { ...opts };
    this.#checksums = uploadChecksumsOption(opts.uploadChecksums, 'GCS');
    this.#secrets = [...secretParts(opts.credentials), ...(opts.accessToken ? [opts.accessToken] : [])];
    const where = opts.apiEndpoint ? ` (${stripUrlSecrets(opts.apiEndpoint)})` : '';
    this.location = `gs:${this.bucket}:/${this.prefix}${where}`;
    this.connections = checkConnections(opts.connections ?? 5, this.location);
    this.#retention = opts.objectRetention === undefined ? undefined : checkObjectLockOptions(opts.objectRetention, `objectRetention for ${this.location}`);
  }

  /** True with `objectRetention`: every upload but lock files is retained. */
  get locksUploads(): boolean {
    return this.#retention !== undefined;
  }

  /** The retention the next upload of `h` gets, or undefined (no objectRetention, or a lock file). */
  uploadRetention(h: FileHandle, now: Date = new Date()): ObjectRetention | undefined {
    return uploadRetentionOf(this.#retention, h, now);
  }

  /** The live generation's retention (objects.get: one request), or undefined when it has none. */
  async getRetention(h: FileHandle, options: CallOptions = {}): Promise<ObjectRetention | undefined> {
    const file = startCall(h, options.signal);
    const object = (await this.#client()).file(this.keyOf(h));
    try {
      const [metadata] = await raceAbort(object.getMetadata(), options.signal);
      return fromGcsRetention(metadata.retention);
    } catch (err) {
      throw this.toStowage(err, 'get retention of', file, options.signal);
    }
  }

  /**
   * Sets the live generation's retention (objects.patch with `retention`: one request). Only
   * extending is meant: GCS needs overrideUnlockedRetention to shorten or remove an Unlocked
   * retention or to lock it, and this call never sends it, so GCS refuses those.
   */
  async putRetention(h: FileHandle, retention: ObjectRetention, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const object = (await this.#client()).file(this.keyOf(h));
    throwIfAborted(options.signal);
    try {
      await object.setMetadata({ retention: toGcsRetention(retention) });
    } catch (err) {
      throw this.toStowage(err, 'set retention of', file, undefined);
    }
  }

  /**
   * A read-only view of the repository as it was at `asOf`, from the bucket's object generations
   * (the bucket must have versioning on): each file is the generation live at that instant
   * (created at or before it, not yet noncurrent). See {@link VersionsAsOfView}.
   */
  viewAsOf(asOf: Date, options: { closeBackend?: boolean } = {}): VersionsAsOfView {
    const view = versionSource(this, {
      keyOf: (h) => this.keyOf(h),
      listVersions: (keyPrefix, signal) => this.listGenerations(keyPrefix, signal),
      loadVersion: (h, generation, o) => this.loadObject(h, o, generation),
    });
    return new VersionsAsOfView(view, asOf, options);
  }

  /**
   * Every generation under `keyPrefix` (objects.list with versions=true), as versions at their
   * timeCreated, and a deletion at timeDeleted where a generation went noncurrent without a
   * newer one taking its place at once (a delete rather than an overwrite).
   */
  private async *listGenerations(keyPrefix: string, signal: AbortSignal | undefined): AsyncGenerator<ListedVersion> {
    const bucket = await this.#client();
    const byName = new Map<string, Array<{ generation: bigint; created: Date; deleted: Date | undefined; size: number }>>();
    let query: Gcs.GetFilesOptions | null = { prefix: keyPrefix, versions: true, autoPaginate: false, maxResults: LIST_PAGE_SIZE };
    while (query) {
      let files: Gcs.File[];
      let next: Gcs.GetFilesOptions | null;
      try {
        [files, next] = await raceAbort(bucket.getFiles(query), signal);
      } catch (err) {
        if (statusOf(err) === 404) return;
        throw this.toStowage(err, 'list versions', keyPrefix, signal);
      }
      for (const object of files) {
        const m = object.metadata;
        const created = new Date(String(m.timeCreated));
        if (m.generation === undefined || !Number.isFinite(created.getTime())) throw new BackendError(`list versions ${keyPrefix} (in ${this.location}): an entry without generation or timeCreated`, { transient: false });
        const deleted = m.timeDeleted ? new Date(String(m.timeDeleted)) : undefined;
        const list = byName.get(object.name) ?? [];
        list.push({ generation: BigInt(String(m.generation)), created, deleted, size: sizeOf(m.size, object.name) });
        byName.set(object.name, list);
      }
      throwIfAborted(signal);
      query = next?.pageToken ? next : null;
    }
    for (const [key, gens] of byName) {
      gens.sort((a, b) => (a.generation < b.generation ? 1 : a.generation > b.generation ? -1 : 0));
      // Newest first, so that at equal times the newer entry is listed first.
      for (const [i, g] of gens.entries()) {
        const newer = gens[i - 1];
        if (g.deleted && (!newer || newer.created.getTime() > g.deleted.getTime())) yield { key, versionId: '', lastModified: g.deleted, size: 0, deleted: true };
        yield { key, versionId: String(g.generation), lastModified: g.created, size: g.size, deleted: false };
      }
    }
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const bucket = await this.#client();
    const what = `bucket ${this.bucket}`;
    let exists: boolean;
    try {
      [exists] = await raceAbort(bucket.exists(), options.signal);
    } catch (err) {
      // Allowed to use objects but not to read the bucket: it may well exist (restic goes on too).
      if (statusOf(err) === 403) return;
      throw this.toStowage(err, 'create', what, options.signal);
    }
    if (!exists) {
      throwIfAborted(options.signal);
      const locked = this.#retention ? { enableObjectRetention: true, versioning: { enabled: true } } : {};
      try {
        await bucket.storage.createBucket(this.bucket, { location: this.#opts.region ?? 'US', ...locked });
      } catch (err) {
        // Created by someone else in between.
        if (statusOf(err) !== 409) throw this.toStowage(err, 'create', what, undefined);
      }
    }
    if (this.#retention) await this.checkRetentionEnabled(bucket, options.signal);
  }

  /** Throws ObjectLockError unless the bucket has object retention enabled (every retained upload would fail). */
  private async checkRetentionEnabled(bucket: Gcs.Bucket, signal: AbortSignal | undefined): Promise<void> {
    let metadata: Gcs.BucketMetadata;
    try {
      [metadata] = await raceAbort(bucket.getMetadata(), signal);
    } catch (err) {
      throw this.toStowage(err, 'create', `bucket ${this.bucket}`, signal);
    }
    if ((metadata as { objectRetention?: { mode?: unknown } }).objectRetention?.mode !== 'Enabled') {
      throw new ObjectLockError(
        `bucket ${this.bucket} (${this.location}) does not have object retention enabled; objectRetention needs a bucket created with it (a new bucket made by create() has it)`,
        { bucket: this.bucket },
      );
    }
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const object = (await this.#client()).file(this.keyOf(h));
    // The last point where an abort leaves nothing behind (see the top of the file).
    throwIfAborted(options.signal);
    try {
      // The service checks the bytes it received against the MD5 and CRC32C in the upload's
      // metadata and refuses a mismatch (400, transient), so damaged bytes are never stored.
      // The SDK also compares the CRC32C the service reports with its own afterwards.
      const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const retention = this.uploadRetention(h);
      const metadata = {
        contentType: 'application/octet-stream',
        ...(this.#checksums ? { md5Hash: createHash('md5').update(body).digest('base64'), crc32c: crc32cBase64(body) } : {}),
        ...(retention ? { retention: toGcsRetention(retention) } : {}),
      };
      await object.save(body, { resumable: false, validation: this.#checksums ? 'crc32c' : false, metadata });
    } catch (err) {
      throw this.toStowage(err, 'save', file, undefined);
    }
  }

  /**
   * Stores a local file as `save` stores bytes, without holding it whole: a first pass over the
   * file computes the MD5 and CRC32C the upload's metadata carries, then the file is sent as it
   * is read. A file that does not hold `file.size` bytes is an IntegrityError, and the upload is
   * cut off before its end, so nothing is stored.
   */
  async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const object = (await this.#client()).file(this.keyOf(h));
    const retention = this.uploadRetention(h);
    let sums = {};
    if (this.#checksums) {
      const { digests, crc32c } = await localFileDigests(local, file, ['md5'], { signal: options.signal, crc32c: true });
      sums = { md5Hash: digests[0]!.toString('base64'), crc32c: crc32cBase64Of(crc32c) };
    }
    throwIfAborted(options.signal);
    const metadata = { contentType: 'application/octet-stream', ...sums, ...(retention ? { retention: toGcsRetention(retention) } : {}) };
    try {
      // An abort while the file is sent fails its read, which cuts the upload off (see uploadFromFile).
      await uploadFromFile(local, file, options.signal, (body) =>
        pipeline(body(), object.createWriteStream({ resumable: false, validation: this.#checksums ? 'crc32c' : false, metadata })),
      );
    } catch (err) {
      throw this.toStowage(err, 'save', file, undefined);
    }
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    return this.loadObject(h, options, undefined);
  }

  /** Reads the live object, or one generation of it. */
  private async loadObject(h: FileHandle, options: LoadOptions, generation: string | undefined): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    const object = (await this.#client()).file(this.keyOf(h), generation === undefined ? {} : { generation: Number(generation) });
    const { offset, length } = await sdkRange(options, file, () => this.stat(h, options));
    if (length === 0) return new Uint8Array(0);
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
    const file = startCall(h, options.signal);
    const object = (await this.#client()).file(this.keyOf(h));
    try {
      const [metadata] = await raceAbort(object.getMetadata(), options.signal);
      return fileInfo(h, sizeOf(metadata.size, file));
    } catch (err) {
      throw this.toStowage(err, 'stat', file, options.signal);
    }
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') return yield* listConfig(() => this.stat({ type, name: 'config' }, options));
    const bucket = await this.#client();
    const folder = underPrefix(this.prefix, `${type}/`);
    let query: Gcs.GetFilesOptions | null = { prefix: folder, autoPaginate: false, maxResults: LIST_PAGE_SIZE };
    while (query) {
      let files: Gcs.File[];
      let next: Gcs.GetFilesOptions | null;
      try {
        [files, next] = await raceAbort(bucket.getFiles(query), options.signal);
      } catch (err) {
        // No bucket yet: no repository files either.
        if (statusOf(err) === 404) return;
        throw this.toStowage(err, 'list', folder, options.signal);
      }
      for (const object of files) {
        const name = object.name.slice(object.name.lastIndexOf('/') + 1);
        // Only files exactly where restic's layout puts them (data/ab/ab…, not data/ab…).
        if (!isIdName(name) || object.name !== this.keyOf({ type, name })) continue;
        yield { name, size: sizeOf(object.metadata.size, `${type}/${name}`) };
      }
      throwIfAborted(options.signal);
      query = next?.pageToken ? next : null;
    }
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const object = (await this.#client()).file(this.keyOf(h));
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
    return prefixedKey(this.prefix, h);
  }

  private async makeBucketClient(): Promise<Gcs.Bucket> {
    const gcs = await loadGcs();
    const o = this.#opts;
    let credentials: GCSServiceAccountKey | undefined;
    if (o.accessToken !== undefined) {
      // Nothing else is read: the token is the credential (restic's StaticTokenSource).
    } else if (typeof o.credentials === 'string') {
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
    // Google's Node library reads $STORAGE_EMULATOR_HOST itself and uses it as a URL; restic's
    // form (host:port) makes it fail ("Only HTTP(S) protocols are supported"). The endpoint was
    // taken from it above, normalised; the library does not see it while the client is made.
    const emulator = process.env.STORAGE_EMULATOR_HOST;
    delete process.env.STORAGE_EMULATOR_HOST;
    try {
      const storage = new gcs.Storage({
        projectId: o.projectId ?? credentials?.project_id,
        credentials: credentials as never,
        apiEndpoint: o.apiEndpoint?.replace(/\/+$/, ''),
        ...(o.accessToken !== undefined ? { authClient: staticTokenClient(o.accessToken, o.projectId) as never, useAuthWithCustomEndpoint: true } : {}),
        // No retries here: the retry wrapper above the backend decides, with its own backoff.
        retryOptions: { autoRetry: false },
      });
      return storage.bucket(this.bucket);
    } finally {
      if (emulator !== undefined) process.env.STORAGE_EMULATOR_HOST = emulator;
    }
  }

  private redact(text: string): string {
    return maskSecrets(text, this.#secrets).replace(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, '***');
  }

  /**
   * Turns an SDK error into a StowageError naming the operation and file: 404 → NotFoundError,
   * 416 and download checksum mismatches → IntegrityError; 408/429/5xx, network failures and an
   * upload refused for its checksum → transient.
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
    // "Provided MD5 hash … doesn't match calculated MD5 hash …" (or CRC32C): bytes damaged on
    // the way, which sending them again mends.
    const mismatch = status === 400 && /doesn't match calculated (MD5|CRC32C)/i.test(detail);
    const isTransient = mismatch || (status !== undefined ? transient.status(status) : transient.code(code));
    return new BackendError(message, { transient: isTransient, status, cause });
  }
}

/**
 * Collects a download stream, expecting `expected` bytes when given; ends the request when the
 * signal fires (rejecting at once with AbortedError).
 */
async function readAll(stream: Readable, expected: number | undefined, file: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let total = 0;
  let responded = false;
  stream.once('response', () => (responded = true));
  let rejectAborted: (e: AbortedError) => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => (rejectAborted = reject));
  aborted.catch(() => undefined);
  const onAbort = (): void => {
    if (responded) stream.destroy(new AbortedError());
    else {
      // The SDK pipes its response into this stream right after emitting 'response'; destroyed
      // before that, its pipeline throws where nothing can catch it (ERR_STREAM_UNABLE_TO_PIPE).
      // So the stream is ended just after the response, and the caller is answered now.
      stream.on('error', () => undefined);
      stream.once('response', () => setImmediate(() => stream.destroy(new AbortedError())));
    }
    rejectAborted(new AbortedError());
  };
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const collect = async (): Promise<void> => {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (expected !== undefined && total > expected) {
        throw new IntegrityError(`the service sent more than the ${expected} bytes asked for`, { file });
      }
      chunks.push(chunk);
    }
  };
  try {
    const reading = collect();
    reading.catch(() => undefined); // after an abort, the stream's own end is of no interest
    await Promise.race([reading, aborted]);
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

/** GOVERNANCE → GCS `Unlocked`, COMPLIANCE → `Locked`, the date as RFC 3339. */
function toGcsRetention(r: ObjectRetention): { mode: 'Unlocked' | 'Locked'; retainUntilTime: string } {
  if (r.mode !== 'GOVERNANCE' && r.mode !== 'COMPLIANCE') throw new InvalidInputError(`retention mode must be GOVERNANCE or COMPLIANCE, got ${JSON.stringify(r.mode)}`);
  if (!(r.retainUntil instanceof Date) || !Number.isFinite(r.retainUntil.getTime())) throw new InvalidInputError('retainUntil must be a valid Date');
  return { mode: r.mode === 'GOVERNANCE' ? 'Unlocked' : 'Locked', retainUntilTime: r.retainUntil.toISOString() };
}

function fromGcsRetention(value: unknown): ObjectRetention | undefined {
  const r = value as { mode?: unknown; retainUntilTime?: unknown } | null | undefined;
  const until = typeof r?.retainUntilTime === 'string' ? new Date(r.retainUntilTime) : undefined;
  if (!until || !Number.isFinite(until.getTime())) return undefined;
  if (r?.mode === 'Unlocked') return { mode: 'GOVERNANCE', retainUntil: until };
  if (r?.mode === 'Locked') return { mode: 'COMPLIANCE', retainUntil: until };
  return undefined;
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

/** GCS bucket names: 3–222 lowercase letters, digits, "-", "_" and ".", starting and ending with a letter or digit. */
function checkBucketName(name: unknown): string {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(name)) {
    throw new InvalidInputError(`GCS bucket name ${JSON.stringify(name)?.slice(0, 80)} is not valid (lowercase letters, digits, "-", "_", ".")`);
  }
  return name;
}

/**
 * The part of Google's AuthClient the SDK uses for the requests this backend makes (simple
 * uploads, reads, lists, deletes): a fixed bearer token, as restic's oauth2.StaticTokenSource.
 */
function staticTokenClient(token: string, projectId: string | undefined) {
  const headers = { Authorization: `Bearer ${token}` };
  return {
    getRequestHeaders: async () => ({ ...headers }),
    getAccessToken: async () => ({ token }),
    getProjectId: async () => {
      if (projectId === undefined) throw new InvalidInputError('GCS with an access token needs a project ID ($GOOGLE_PROJECT_ID) to create a bucket');
      return projectId;
    },
    getCredentials: async () => ({}),
  };
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

/** The HTTP status of an SDK error (ApiError puts it in `code`), if the service answered. */
function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' && code > 0 ? code : undefined;
}

/**
 * $STORAGE_EMULATOR_HOST as an http(s) origin: restic (Google's Go library) takes `host:port`
 * and means plain http, or a URL; Google's Node library wants a URL. Both forms become
 * `http://host:port` (a scheme given is kept, a path dropped).
 */
export function emulatorEndpoint(value: string): string {
  const v = value.trim();
  const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidInputError(`STORAGE_EMULATOR_HOST ${JSON.stringify(v)} is not host:port or an http(s) URL`);
  return url.origin;
}
