// A repository in a Backblaze B2 bucket through B2's native API, with the backblaze-b2 package
// (an optional peer dependency, loaded on first use). File names follow restic's b2 backend,
// "<prefix>/<restic layout path>", so restic (b2:<bucket>:<prefix>) and Stowage share repositories.
//
// B2 keeps every uploaded version of a name; remove() deletes all of them, as restic does.
// Tokens expire (after at most 24 h): a call refused with expired_auth_token or bad_auth_token
// re-authorizes once and is repeated. Upload URLs are pooled, one upload at a time each, and
// replaced when B2 refuses one (401, or 503 "too busy"), as B2's upload protocol asks.
//
// File Lock (B2's Object Lock, native API): with `fileLock`, create() makes the bucket with
// fileLockEnabled, every upload but lock files carries X-Bz-File-Retention-Mode and
// -Retain-Until-Timestamp, and remove() hides a name (b2_hide_file) instead of deleting its
// versions, which B2 refuses while they are retained. Retentions are read from the listing
// (fileRetention) and extended with b2_update_file_retention; the versions give a read-only view
// of the repository at an instant (viewAsOf). See docs/immutability.md.

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions, LocalFile, ObjectRetention, RetentionCapable, VersionedCapable } from './backend.ts';
import type { S3ObjectLockOptions } from './s3.ts';
import { VersionsAsOfView, versionSource, type ListedVersion } from './as-of-view.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, ObjectLockError, StowageError, UnsupportedError, throwIfAborted } from '../errors.ts';
import {
  checkConnections, startCall, checkType, emptyRead, fileInfo, isIdName, listConfig, normalizePrefix, optionalPackage,
  parseContentRange, positiveInteger, prefixedKey, raceAbort, rangeHeader, resolveRange, transientErrors, underPrefix, uploadChecksumsOption,
  checkObjectLockOptions, uploadRetentionOf,
  localFileDigests, uploadFromFile,
} from './shared.ts';

/** B2 File Lock retention for uploads (the same shape as S3's): a mode and exactly one of `retainDays`, `retainSeconds`, `retainUntil`. */
export type B2FileLockOptions = S3ObjectLockOptions;

/** Options of {@link B2Backend}. {@link b2OptionsFromEnv} builds them from restic's variables. */
export interface B2BackendOptions {
  /**
   * Send a checksum of every upload for the server to verify before it stores the bytes, so a
   * byte damaged on the way is refused (transiently) instead of stored. Default true; false is
   * for tests that show what the server stores without one.
   */
  uploadChecksums?: boolean;
  /** The bucket, by name (restic: b2:<bucket>:<prefix>). create() makes it (private) if missing. */
  bucket: string;
  /** Folder inside the bucket ("" or absent: the bucket's root). Leading and trailing slashes are ignored. */
  prefix?: string;
  /** Application key ID, or the account ID for the master key (restic/Stash: B2_ACCOUNT_ID). */
  applicationKeyId: string;
  /** The application key (B2_ACCOUNT_KEY). Never shown in messages. */
  applicationKey: string;
  /** Requests in flight at once (default 5, like restic's b2 backend). */
  connections?: number;
  /**
   * The b2_authorize_account URL (default: Backblaze's). Every later call goes to the apiUrl and
   * downloadUrl that authorization returns. Meant for test servers.
   */
  authorizeUrl?: string;
  /** Milliseconds one request may take before it fails as transient (default 10 minutes). */
  timeoutMs?: number;
  /**
   * B2 File Lock: every upload except lock files carries this retention (governance or
   * compliance, until now + the period). The bucket must have File Lock enabled; `create()`
   * makes a missing bucket so and refuses an existing one without it (ObjectLockError). remove()
   * then hides names instead of deleting their versions. See docs/immutability.md.
   */
  fileLock?: B2FileLockOptions;
}

/** Names per listing call: B2 bills listings per 1000 names. */
const LIST_PAGE = 1000;

/** Versions fetched per b2_list_file_versions call while removing a name. */
const VERSION_PAGE = 100;

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/** The fileIds getRetention remembers for the putRetention after it (the oldest go first). */
const SEEN_IDS_MAX = 4096;

/** The largest file one b2_upload_file takes; larger ones need the large-file API. */
const MAX_SIMPLE_UPLOAD = 5_000_000_000;

const ERROR_MESSAGE_CHARS = 200;

/** The part of the backblaze-b2 client this backend uses (the package ships no types). */
interface B2Client {
  authorizationToken: string | null;
  authorize(args?: { axiosOverride?: Record<string, unknown>; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  getBucket(args: { bucketName: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  createBucket(args: { bucketName: string; bucketType: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  getUploadUrl(args: { bucketId: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  uploadFile(args: { uploadUrl: string; uploadAuthToken: string; fileName: string; data: Buffer | Readable; hash: string; mime: string; contentLength: number; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  listFileNames(args: { bucketId: string; startFileName?: string; maxFileCount: number; prefix: string; delimiter?: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  listFileVersions(args: { bucketId: string; startFileName?: string; startFileId?: string; maxFileCount: number; axios?: Record<string, unknown>; axiosOverride?: Record<string, unknown> }): Promise<AxiosResponse>;
  deleteFileVersion(args: { fileId: string; fileName: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  downloadFileByName(args: { bucketName: string; fileName: string; responseType: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  downloadFileById(args: { fileId: string; responseType: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  hideFile(args: { bucketId: string; fileName: string; axios?: Record<string, unknown> }): Promise<AxiosResponse>;
  getFileInfo(args: { fileId: string; axios?: Record<string, unknown>; axiosOverride?: Record<string, unknown> }): Promise<AxiosResponse>;
  apiUrl: string | null;
}

interface AxiosResponse {
  status: number;
  headers: Record<string, unknown>;
  data: unknown;
}

type B2Constructor = new (options: Record<string, unknown>) => B2Client;

interface B2File {
  fileId: string;
  fileName: string;
  action: string;
  contentLength: number;
  uploadTimestamp: number;
  /** undefined: the listing did not say (no readFileRetentions, or an old API); null: none. */
  retention: ObjectRetention | null | undefined;
}

interface UploadTarget {
  uploadUrl: string;
  authorizationToken: string;
}

interface Authorized {
  client: B2Client;
  bucketId: string | undefined;
  /** Counts authorizations, so a 401 only re-authorizes when nobody else did meanwhile. */
  generation: number;
}

const loadSdk = optionalPackage('backblaze-b2', 'B2', async (): Promise<B2Constructor> => {
  // A computed specifier: the package has no type declarations, and it must stay optional.
  const specifier = 'backblaze-b2';
  const mod = (await import(specifier)) as { default?: unknown };
  return (mod.default ?? mod) as B2Constructor;
});

/**
 * A repository in a Backblaze B2 bucket through B2's native API, file names as restic's b2 backend
 * writes them, so restic's `b2:` backend shares it. Needs the optional peer dependency
 * `backblaze-b2`, loaded on the first request (`UnsupportedError` naming the package without it).
 * Re-authorizes when a token expires; `remove()` deletes every version of a name (with
 * `fileLock`: hides it). 5 requests in flight by default.
 */
export class B2Backend implements Backend, RetentionCapable, VersionedCapable {
  readonly location: string;
  readonly connections: number;
  /** The bucket that holds the repository. */
  readonly bucket: string;
  /** The normalised prefix ("" or "a/b", no leading or trailing "/"). */
  readonly prefix: string;
  readonly #opts: B2BackendOptions;
  /** The `uploadChecksums` option (default on). */
  readonly #checksums: boolean;
  readonly #timeoutMs: number;
  #auth: Promise<Authorized> | undefined;
  #generation = 0;
  /** Idle upload URLs; each takes one upload at a time. */
  #uploadTargets: UploadTarget[] = [];
  readonly #fileLock: B2FileLockOptions | undefined;
  /** File name → the fileId getRetention last saw, used once by the putRetention that follows it. */
  readonly #seenIds = new Map<string, string>();

  constructor(opts: B2BackendOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidInputError('b2 backend options must be an object');
    const bucket = opts.bucket;
    if (typeof bucket !== 'string' || !/^[A-Za-z0-9-]{6,63}$/.test(bucket)) {
      throw new InvalidInputError(`b2 bucket must be 6 to 63 letters, digits or "-", got ${JSON.stringify(bucket)?.slice(0, 80)}`);
    }
    this.bucket = bucket;
    this.prefix = normalizePrefix(opts.prefix, 'b2 prefix');
    this.location = `b2:${bucket}:${this.prefix}`;
    this.connections = checkConnections(opts.connections ?? 5, this.location);
    if (typeof opts.applicationKeyId !== 'string' || opts.applicationKeyId === '') throw new InvalidInputError(`b2 backend ${this.location} needs applicationKeyId`);
    if (typeof opts.applicationKey !== 'string' || opts.applicationKey === '') throw new InvalidInputError(`b2 backend ${this.location} needs applicationKey`);
    if (opts.authorizeUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(opts.authorizeUrl)) {
      throw new InvalidInputError(`b2 authorizeUrl must be an http(s) URL`);
    }
    this.#timeoutMs = positiveInteger(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', this.location);
    this.#opts = { ...opts };
    this.#checksums = uploadChecksumsOption(opts.uploadChecksums, 'b2');
    this.#fileLock = opts.fileLock === undefined ? undefined : checkObjectLockOptions(opts.fileLock, `fileLock for ${this.location}`);
  }

  /** True with `fileLock`: every upload but lock files is retained. */
  get locksUploads(): boolean {
    return this.#fileLock !== undefined;
  }

  /** The retention the next upload of `h` gets, or undefined (no fileLock, or a lock file). */
  uploadRetention(h: FileHandle, now: Date = new Date()): ObjectRetention | undefined {
    return uploadRetentionOf(this.#fileLock, h, now);
  }

  /**
   * The retention of the current version of a file, from its listing entry (b2_list_file_names:
   * one request), or undefined when it has none. Needs the readFileRetentions capability.
   */
  async getRetention(h: FileHandle, options: CallOptions = {}): Promise<ObjectRetention | undefined> {
    const file = startCall(h, options.signal);
    const current = await this.#current(h, 'get retention of', file, options.signal);
    if (current.retention === undefined) {
      throw new BackendError(`get retention of ${file} (in ${this.location}): the listing does not show retentions (the key needs readFileRetentions)`, { transient: false });
    }
    // Bounded: a prune reads many retentions and writes none.
    if (this.#seenIds.size >= SEEN_IDS_MAX) this.#seenIds.delete(this.#seenIds.keys().next().value!);
    this.#seenIds.set(current.fileName, current.fileId);
    return current.retention ?? undefined;
  }

  /**
   * Sets the current version's retention (b2_update_file_retention: one request after a
   * getRetention of the same file, else two). B2 refuses to shorten a retention or to turn a
   * compliance one into governance; callers extend only. backblaze-b2 1.7 has no call for
   * b2_update_file_retention, so it is sent through the SDK's request path (its auth header and
   * errors) with the endpoint set to it.
   */
  async putRetention(h: FileHandle, retention: ObjectRetention, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    if (retention.mode !== 'GOVERNANCE' && retention.mode !== 'COMPLIANCE') throw new InvalidInputError(`retention mode must be GOVERNANCE or COMPLIANCE, got ${JSON.stringify(retention.mode)}`);
    const until = retention.retainUntil.getTime();
    if (!Number.isSafeInteger(until)) throw new InvalidInputError(`retention of ${file}: retainUntil must be a valid Date`);
    const name = this.#fileName(h);
    let fileId = this.#seenIds.get(name);
    this.#seenIds.delete(name);
    fileId ??= (await this.#current(h, 'set retention of', file, options.signal)).fileId;
    const id = fileId;
    await this.#call('set retention of', file, options.signal, (c, axios) => {
      if (!c.apiUrl) throw new BackendError(`set retention of ${file}: not authorized yet`, { transient: true });
      return c.getFileInfo({
        fileId: id,
        axios,
        axiosOverride: {
          url: `${c.apiUrl}/b2api/v2/b2_update_file_retention`,
          data: { fileName: name, fileRetention: { mode: retention.mode.toLowerCase(), retainUntilTimestamp: until } },
        },
      });
    });
  }

  /**
   * A read-only view of the repository as it was at `asOf`, from the bucket's file versions (B2
   * keeps every version; hide markers make a name missing from their time on). Reads download by
   * fileId. See {@link VersionsAsOfView}.
   */
  viewAsOf(asOf: Date, options: { closeBackend?: boolean } = {}): VersionsAsOfView {
    const view = versionSource(this, {
      keyOf: (h) => this.#fileName(h),
      listVersions: (keyPrefix, signal) => this.#listVersions(keyPrefix, signal),
      loadVersion: (h, versionId, o) => this.#loadVersion(h, versionId, o),
    });
    return new VersionsAsOfView(view, asOf, options);
  }

  /** The listing entry of a file's current version; NotFoundError when it has none (or is hidden). */
  async #current(h: FileHandle, op: string, file: string, signal: AbortSignal | undefined): Promise<B2File> {
    const bucketId = await this.#bucketId(signal, op, file, false);
    if (!bucketId) throw new NotFoundError(file);
    const name = this.#fileName(h);
    const res = await this.#call(op, file, signal, (c, axios) => c.listFileNames({ bucketId, startFileName: name, maxFileCount: 1, prefix: name, axios }));
    const first = listedFiles(res, `${op} ${file}`)[0];
    if (!first || first.fileName !== name) throw new NotFoundError(file);
    return first;
  }

  /** Every version (uploads and hide markers) of the names under `keyPrefix` (b2_list_file_versions, 1000 a page). */
  async *#listVersions(keyPrefix: string, signal: AbortSignal | undefined): AsyncGenerator<ListedVersion> {
    const bucketId = await this.#bucketId(signal, 'list versions', keyPrefix, false);
    if (!bucketId) return;
    let startFileName: string | undefined;
    let startFileId: string | undefined;
    for (;;) {
      const res = await this.#call('list versions', keyPrefix, signal, (c, axios) =>
        c.listFileVersions({ bucketId, startFileName, startFileId, maxFileCount: LIST_PAGE, axios, axiosOverride: { data: { prefix: keyPrefix } } }),
      );
      // B2 lists the versions of a name newest first, as the view wants them.
      for (const f of listedFiles(res, `list versions ${keyPrefix}`)) {
        if (!f.fileName.startsWith(keyPrefix) || (f.action !== 'upload' && f.action !== 'hide')) continue;
        yield { key: f.fileName, versionId: f.fileId, lastModified: new Date(f.uploadTimestamp), size: f.contentLength, deleted: f.action === 'hide' };
      }
      const data = res.data as { nextFileName?: unknown; nextFileId?: unknown } | null;
      if (typeof data?.nextFileName !== 'string' || data.nextFileName === '') return;
      startFileName = data.nextFileName;
      startFileId = typeof data.nextFileId === 'string' ? data.nextFileId : undefined;
      throwIfAborted(signal);
    }
  }

  async #loadVersion(h: FileHandle, fileId: string, options: LoadOptions): Promise<Uint8Array> {
    return this.#download(h, options, (c, axios) => c.downloadFileById({ fileId, responseType: 'arraybuffer', axios }));
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const auth = await this.#authorized(options.signal, 'create', this.bucket);
    if (auth.bucketId) {
      if (this.#fileLock) await this.#checkFileLock(auth.client, options.signal);
      return;
    }
    try {
      await this.#call('create bucket', this.bucket, options.signal, (c, axios) =>
        c.createBucket({ bucketName: this.bucket, bucketType: 'allPrivate', axios, ...(this.#fileLock ? { axiosOverride: { data: { fileLockEnabled: true } } } : {}) }),
      );
    } catch (err) {
      // Created by someone else in the meantime is fine; taken by another account is not.
      if (!(err instanceof BackendError && err.message.includes('duplicate_bucket_name'))) throw err;
    }
    const id = await this.#lookUpBucket(auth.client, options.signal);
    if (!id) throw new BackendError(`create ${this.location}: bucket name ${this.bucket} is taken by another account`, { transient: false });
    auth.bucketId = id;
    if (this.#fileLock) await this.#checkFileLock(auth.client, options.signal);
  }

  /** Throws ObjectLockError unless the bucket has File Lock enabled (every locked upload would fail). */
  async #checkFileLock(client: B2Client, signal: AbortSignal | undefined): Promise<void> {
    let res: AxiosResponse;
    try {
      res = await this.#sdkCall((c, axios) => c.getBucket({ bucketName: this.bucket, axios }), signal, client);
    } catch (err) {
      throw this.#toError(err, 'find bucket', this.bucket, signal);
    }
    const buckets = (res.data as { buckets?: Array<{ bucketName?: unknown; fileLockConfiguration?: { isClientAuthorizedToRead?: unknown; value?: { isFileLockEnabled?: unknown } | null } }> } | null)?.buckets;
    const lock = Array.isArray(buckets) ? buckets.find((b) => b.bucketName === this.bucket)?.fileLockConfiguration : undefined;
    if (lock?.isClientAuthorizedToRead === false) {
      throw new ObjectLockError(`cannot tell whether bucket ${this.bucket} (${this.location}) has File Lock enabled: the key needs readBucketRetentions`, { bucket: this.bucket });
    }
    if (lock?.value?.isFileLockEnabled !== true) {
      throw new ObjectLockError(
        `bucket ${this.bucket} (${this.location}) does not have File Lock enabled; fileLock needs a bucket with it (b2_update_bucket fileLockEnabled, or a new bucket made by create())`,
        { bucket: this.bucket },
      );
    }
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    if (data.length > MAX_SIMPLE_UPLOAD) throw new UnsupportedError(`save ${file}: ${data.length} bytes is more than one B2 upload takes (large files are not supported)`);
    // B2 checks the bytes it received against this SHA-1 and refuses a mismatch (400, transient).
    const sha1 = this.#checksums ? createHash('sha1').update(data).digest('hex') : 'do_not_verify';
    // A view, not a copy (the SDK deep-merges its arguments and would copy a Uint8Array's whole buffer).
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.#upload(h, file, sha1, () => body, body.length, options.signal);
  }

  /**
   * Stores a local file as `save` stores bytes, without holding it whole: a first pass over the
   * file computes the SHA-1 (X-Bz-Content-Sha1), then the upload sends the file as it is read.
   * A file that does not hold `file.size` bytes is an IntegrityError and the upload is cut off
   * before its end, so nothing is stored.
   */
  async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    if (local.size > MAX_SIMPLE_UPLOAD) throw new UnsupportedError(`save ${file}: ${local.size} bytes is more than one B2 upload takes (large files are not supported)`);
    const sha1 = this.#checksums ? (await localFileDigests(local, file, ['sha1'], { signal: options.signal })).digests[0]!.toString('hex') : 'do_not_verify';
    await uploadFromFile(local, file, options.signal, (stream, signal) => this.#upload(h, file, sha1, () => stream(), local.size, signal));
  }

  /** One b2_upload_file of `size` bytes; `body` makes them anew for each attempt (a stream is read once). */
  async #upload(h: FileHandle, file: string, sha1: string, body: () => Buffer | Readable, size: number, signal: AbortSignal | undefined): Promise<void> {
    const options = { signal };
    const bucketId = await this.#bucketId(options.signal, 'save', file, true);
    const retention = this.uploadRetention(h);
    const lockHeaders = retention
      ? { axiosOverride: { headers: { 'X-Bz-File-Retention-Mode': retention.mode.toLowerCase(), 'X-Bz-File-Retention-Retain-Until-Timestamp': String(retention.retainUntil.getTime()) } } }
      : {};
    for (let attempt = 0; ; attempt++) {
      const target = this.#uploadTargets.pop() ?? (await this.#newUploadTarget(bucketId, options.signal, file));
      try {
        const { client } = await this.#authorized(options.signal, 'save', file);
        await this.#sdkCall(
          (c, axios) =>
            c.uploadFile({ uploadUrl: target.uploadUrl, uploadAuthToken: target.authorizationToken, fileName: this.#fileName(h), data: body(), hash: sha1, mime: 'application/octet-stream', contentLength: size, axios, ...lockHeaders }),
          options.signal,
          client,
        );
        this.#uploadTargets.push(target);
        return;
      } catch (err) {
        const failure = this.#toError(err, 'save', file, options.signal);
        if (retention && failure instanceof BackendError && failure.status === 400 && /file lock|object lock/i.test(failure.message)) {
          throw new ObjectLockError(`save ${file}: bucket ${this.bucket} (${this.location}) does not have File Lock enabled; fileLock needs a bucket with it`, { bucket: this.bucket, file, cause: failure });
        }
        // The upload URL is spent: B2 wants a new one after a 401 or a "too busy" 503.
        const replaceUrl = failure instanceof BackendError && (failure.status === 401 || failure.status === 503 || failure.status === 408);
        if (replaceUrl && attempt === 0) continue;
        throw failure;
      }
    }
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    return this.#download(h, options, (c, axios) => c.downloadFileByName({ bucketName: this.bucket, fileName: this.#fileName(h), responseType: 'arraybuffer', axios }));
  }

  /** A download (by name, or one version by fileId) of a file or a range of it. */
  async #download(h: FileHandle, options: LoadOptions, get: (client: B2Client, axios: Record<string, unknown>) => Promise<AxiosResponse>): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    if (options.length === 0) return emptyRead(() => this.stat(h, options), options, file);
    const range = rangeHeader(options, file);
    const offset = options.offset ?? 0;

    let res: AxiosResponse;
    try {
      res = await this.#call('load', file, options.signal, (c, axios) => get(c, { ...axios, headers: range ? { Range: range } : {} }));
    } catch (err) {
      if (err instanceof BackendError && err.status === 404) throw new NotFoundError(file);
      if (err instanceof BackendError && err.status === 416) {
        // Past the end; reading zero bytes at the very end is allowed.
        const { size } = await this.stat(h, options);
        const { length } = resolveRange(options, size, file);
        if (length === 0) return new Uint8Array(0);
        throw err;
      }
      throw err;
    }
    const body = toBytes(res.data);
    if (res.status === 206) {
      const range = parseContentRange(header(res, 'content-range'));
      if (!range || range.total === undefined || Number.isNaN(range.start)) throw new BackendError(`load ${file} (in ${this.location}): partial response without a valid Content-Range`, { transient: true, status: 206 });
      const { length } = resolveRange(options, range.total, file);
      if (range.start !== offset || body.length !== length) {
        throw new IntegrityError(`short read: got ${body.length} bytes at offset ${range.start}, expected ${length} at ${offset}`, { file });
      }
      return body;
    }
    // 200: the whole file (B2 also answers a range covering the whole file this way).
    const sha1 = header(res, 'x-bz-content-sha1');
    if (sha1 && /^[0-9a-f]{40}$/.test(sha1)) {
      const actual = createHash('sha1').update(body).digest('hex');
      if (actual !== sha1) throw new IntegrityError(`downloaded bytes do not match the stored SHA-1 (${actual}, expected ${sha1})`, { file });
    }
    const declared = Number(header(res, 'content-length') ?? body.length);
    if (declared !== body.length) throw new IntegrityError(`short read: got ${body.length} of ${declared} bytes`, { file });
    const { offset: start, length } = resolveRange(options, body.length, file);
    return range === undefined ? body : body.slice(start, start + length);
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    const file = startCall(h, options.signal);
    const bucketId = await this.#bucketId(options.signal, 'stat', file, false);
    if (!bucketId) throw new NotFoundError(file);
    const name = this.#fileName(h);
    const res = await this.#call('stat', file, options.signal, (c, axios) => c.listFileNames({ bucketId, startFileName: name, maxFileCount: 1, prefix: name, axios }));
    const first = listedFiles(res, `stat ${file}`)[0];
    if (!first || first.fileName !== name) throw new NotFoundError(file);
    return fileInfo(h, first.contentLength);
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') return yield* listConfig(() => this.stat({ type, name: '' }, options));
    const bucketId = await this.#bucketId(options.signal, 'list', type, false);
    if (!bucketId) return;
    const prefix = underPrefix(this.prefix, `${type}/`);
    let start: string | undefined;
    for (;;) {
      const res = await this.#call('list', type, options.signal, (c, axios) => c.listFileNames({ bucketId, startFileName: start, maxFileCount: LIST_PAGE, prefix, axios }));
      for (const f of listedFiles(res, `list ${type}`)) {
        if (f.action !== 'upload') continue;
        const name = f.fileName.slice(f.fileName.lastIndexOf('/') + 1);
        if (isIdName(name)) yield { name, size: f.contentLength };
      }
      const next = (res.data as { nextFileName?: unknown } | null)?.nextFileName;
      if (typeof next !== 'string' || next === '') return;
      start = next;
      throwIfAborted(options.signal);
    }
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const bucketId = await this.#bucketId(options.signal, 'remove', file, false);
    if (!bucketId) throw new NotFoundError(file);
    const name = this.#fileName(h);
    // Under File Lock a name is hidden, as S3 puts a delete marker: the retained versions stay.
    if (this.#fileLock && h.type !== 'locks') return this.#hide(bucketId, name, file, options.signal);
    // Every version (uploads and hide markers) goes: B2 would otherwise bring back an older one.
    const versions: B2File[] = [];
    let startFileName: string | undefined = name;
    let startFileId: string | undefined;
    for (;;) {
      const res = await this.#call('remove', file, options.signal, (c, axios) => c.listFileVersions({ bucketId, startFileName, startFileId, maxFileCount: VERSION_PAGE, axios }));
      const page = listedFiles(res, `remove ${file}`);
      const mine = page.filter((f) => f.fileName === name);
      versions.push(...mine);
      const data = res.data as { nextFileName?: unknown; nextFileId?: unknown } | null;
      // Versions of one name come together; once another name shows up, all of ours were listed.
      if (mine.length < page.length || typeof data?.nextFileName !== 'string' || data.nextFileName !== name) break;
      startFileName = data.nextFileName;
      startFileId = typeof data.nextFileId === 'string' ? data.nextFileId : undefined;
    }
    if (versions.length === 0) throw new NotFoundError(file);
    const existed = versions[0]!.action === 'upload';
    for (const v of versions) {
      try {
        await this.#call('remove', file, options.signal, (c, axios) => c.deleteFileVersion({ fileId: v.fileId, fileName: v.fileName, axios }));
      } catch (err) {
        // Deleted by a concurrent remove: the goal is reached all the same.
        if (err instanceof BackendError && err.message.includes('file_not_present')) continue;
        // Retained (a bucket's default retention, or a retention set by someone else): hide the
        // name instead, as under fileLock; the retained versions stay until their date.
        if (err instanceof BackendError && err.status === 401 && err.message.includes('access_denied')) {
          if (!existed) throw new NotFoundError(file);
          return this.#hide(bucketId, name, file, options.signal);
        }
        throw err;
      }
    }
    if (!existed) throw new NotFoundError(file);
  }

  /** b2_hide_file: the name disappears from listings and downloads; its versions stay. */
  async #hide(bucketId: string, name: string, file: string, signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.#call('remove', file, signal, (c, axios) => c.hideFile({ bucketId, fileName: name, axios }));
    } catch (err) {
      // Missing, or hidden already: removed.
      if (err instanceof BackendError && (err.status === 404 || err.message.includes('already_hidden') || err.message.includes('no_such_file'))) throw new NotFoundError(file);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.#uploadTargets = [];
    this.#auth = undefined;
  }

  #fileName(h: FileHandle): string {
    return prefixedKey(this.prefix, h);
  }

  // ---- authorization and calls ------------------------------------------------------------

  /** The authorized client, authorizing (and looking up the bucket) on first use. */
  async #authorized(signal: AbortSignal | undefined, op: string, file: string): Promise<Authorized> {
    if (!this.#auth) {
      const pending = this.#authorize();
      this.#auth = pending;
      pending.catch(() => {
        if (this.#auth === pending) this.#auth = undefined;
      });
    }
    return await raceAbort(this.#auth, signal, `${op} ${file}: operation aborted`);
  }

  async #authorize(): Promise<Authorized> {
    const B2 = await loadSdk();
    const client = new B2({
      applicationKeyId: this.#opts.applicationKeyId,
      applicationKey: this.#opts.applicationKey,
      // No hidden retries: Stowage's retry wrapper decides.
      retry: { retries: 0 },
      axios: { timeout: this.#timeoutMs, maxContentLength: Infinity, maxBodyLength: Infinity },
    });
    const generation = ++this.#generation;
    try {
      await client.authorize(this.#opts.authorizeUrl ? { axiosOverride: { url: this.#opts.authorizeUrl } } : undefined);
    } catch (err) {
      const failure = this.#toError(err, 'authorize', this.location, undefined);
      if (failure instanceof BackendError && failure.status === 401) {
        throw new BackendError(`authorization failed for ${this.location}: ${failure.message.replace(/^.*?HTTP 401 /, '')}`, { transient: false, status: 401 });
      }
      throw failure;
    }
    const bucketId = await this.#lookUpBucket(client, undefined);
    return { client, bucketId, generation };
  }

  async #lookUpBucket(client: B2Client, signal: AbortSignal | undefined): Promise<string | undefined> {
    let res: AxiosResponse;
    try {
      res = await this.#sdkCall(() => client.getBucket({ bucketName: this.bucket, axios: this.#axios(signal) }), signal, client);
    } catch (err) {
      throw this.#toError(err, 'find bucket', this.bucket, signal);
    }
    const buckets = (res.data as { buckets?: Array<{ bucketName?: unknown; bucketId?: unknown }> } | null)?.buckets;
    const found = Array.isArray(buckets) ? buckets.find((b) => b.bucketName === this.bucket) : undefined;
    return typeof found?.bucketId === 'string' ? found.bucketId : undefined;
  }

  /** The bucket's ID; undefined (or, with `required`, an error) when the bucket does not exist. */
  async #bucketId(signal: AbortSignal | undefined, op: string, file: string, required: true): Promise<string>;
  async #bucketId(signal: AbortSignal | undefined, op: string, file: string, required: false): Promise<string | undefined>;
  async #bucketId(signal: AbortSignal | undefined, op: string, file: string, required: boolean): Promise<string | undefined> {
    const auth = await this.#authorized(signal, op, file);
    // A bucket made after the first look (by create() elsewhere) is found on the next call.
    auth.bucketId ??= await this.#lookUpBucket(auth.client, signal);
    if (!auth.bucketId && required) throw new BackendError(`${op} ${file}: bucket ${this.bucket} does not exist (create the repository first)`, { transient: false, status: 404 });
    return auth.bucketId;
  }

  async #newUploadTarget(bucketId: string, signal: AbortSignal | undefined, file: string): Promise<UploadTarget> {
    const res = await this.#call('save', file, signal, (c, axios) => c.getUploadUrl({ bucketId, axios }));
    const data = res.data as { uploadUrl?: unknown; authorizationToken?: unknown } | null;
    if (typeof data?.uploadUrl !== 'string' || typeof data.authorizationToken !== 'string') {
      throw new BackendError(`save ${file} (in ${this.location}): b2_get_upload_url answered without an upload URL`, { transient: true });
    }
    return { uploadUrl: data.uploadUrl, authorizationToken: data.authorizationToken };
  }

  /**
   * Runs one SDK call with the account token; when B2 says the token expired (or is no longer
   * valid), authorizes again once and repeats the call. Errors come back as StowageErrors.
   */
  async #call(op: string, file: string, signal: AbortSignal | undefined, fn: (client: B2Client, axios: Record<string, unknown>) => Promise<AxiosResponse>): Promise<AxiosResponse> {
    for (let attempt = 0; ; attempt++) {
      const auth = await this.#authorized(signal, op, file);
      try {
        return await this.#sdkCall((c, axios) => fn(c, axios), signal, auth.client);
      } catch (err) {
        const code = b2ErrorCode(err);
        if (attempt === 0 && (code === 'expired_auth_token' || code === 'bad_auth_token')) {
          // Only the first caller to see the stale token starts a new authorization.
          if (this.#auth && (await this.#auth.catch(() => undefined))?.generation === auth.generation) this.#auth = undefined;
          continue;
        }
        throw this.#toError(err, op, file, signal);
      }
    }
  }

  async #sdkCall(fn: (client: B2Client, axios: Record<string, unknown>) => Promise<AxiosResponse>, signal: AbortSignal | undefined, client: B2Client): Promise<AxiosResponse> {
    throwIfAborted(signal);
    return await fn(client, this.#axios(signal));
  }

  #axios(signal: AbortSignal | undefined): Record<string, unknown> {
    return signal ? { signal } : {};
  }

  /** Turns an SDK (axios) error into a StowageError without secrets; the raw error (with headers) is not kept. */
  #toError(err: unknown, op: string, file: string, signal: AbortSignal | undefined): StowageError {
    if (err instanceof StowageError) return err;
    if (signal?.aborted) return new AbortedError();
    const e = err as { code?: unknown; message?: unknown; response?: { status?: unknown; data?: unknown } } | null;
    const where = `${op} ${file} (in ${this.location})`;
    const status = typeof e?.response?.status === 'number' ? e.response.status : undefined;
    if (status === undefined) {
      const code = typeof e?.code === 'string' ? e.code : undefined;
      const detail = code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? `no answer within ${this.#timeoutMs / 1000} s` : (code ?? String(e?.message ?? err));
      return new BackendError(`${where}: ${detail}`, { transient: true, cause: code ? new Error(code) : undefined });
    }
    const b2 = parseB2Error(e?.response?.data);
    const detail = b2 ? `${b2.code}: ${b2.message}` : '';
    // "Checksum did not match data received": damaged on the way; sending it again mends that.
    const mismatch = status === 400 && b2?.code === 'bad_request' && /checksum did not match|sha1 did not match/i.test(b2.message);
    const transient = mismatch || transientErrors.status(status);
    return new BackendError(`${where}: HTTP ${status}${detail ? ` ${detail}` : ''}`.slice(0, where.length + ERROR_MESSAGE_CHARS), { transient, status });
  }
}

/** B2_ACCOUNT_ID and B2_ACCOUNT_KEY, the names restic and Stash use. */
export function b2OptionsFromEnv(env: Record<string, string | undefined> = process.env): Pick<B2BackendOptions, 'applicationKeyId' | 'applicationKey'> | Record<string, never> {
  const id = env.B2_ACCOUNT_ID;
  const key = env.B2_ACCOUNT_KEY;
  if (!id || !key) return {};
  return { applicationKeyId: id, applicationKey: key };
}

// ---- helpers ----------------------------------------------------------------------------------

function parseB2Error(data: unknown): { code: string; message: string } | undefined {
  let value = data;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    try {
      value = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      return undefined;
    }
  } else if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return undefined;
    }
  }
  const v = value as { code?: unknown; message?: unknown } | null;
  if (typeof v?.code !== 'string') return undefined;
  return { code: v.code, message: typeof v.message === 'string' ? v.message.slice(0, ERROR_MESSAGE_CHARS) : '' };
}

function b2ErrorCode(err: unknown): string | undefined {
  const response = (err as { response?: { status?: unknown; data?: unknown } } | null)?.response;
  if (response?.status !== 401) return undefined;
  return parseB2Error(response.data)?.code;
}

function listedFiles(res: AxiosResponse, what: string): B2File[] {
  const files = (res.data as { files?: unknown } | null)?.files;
  if (!Array.isArray(files)) throw new BackendError(`${what}: the listing has no files array`, { transient: true });
  return files.map((f: Record<string, unknown>) => {
    const size = Number(f.contentLength);
    if (typeof f.fileName !== 'string' || !Number.isSafeInteger(size) || size < 0) throw new BackendError(`${what}: malformed listing entry`, { transient: false });
    const timestamp = Number(f.uploadTimestamp);
    return {
      fileId: String(f.fileId),
      fileName: f.fileName,
      action: String(f.action),
      contentLength: size,
      uploadTimestamp: Number.isSafeInteger(timestamp) ? timestamp : 0,
      retention: parseFileRetention(f.fileRetention),
    };
  });
}

/** A listing's fileRetention: undefined when not readable, null when none, else mode and date. */
function parseFileRetention(value: unknown): ObjectRetention | null | undefined {
  const r = value as { isClientAuthorizedToRead?: unknown; value?: { mode?: unknown; retainUntilTimestamp?: unknown } | null } | null | undefined;
  if (!r || r.isClientAuthorizedToRead !== true) return undefined;
  const mode = r.value?.mode;
  const until = Number(r.value?.retainUntilTimestamp);
  if (mode !== 'governance' && mode !== 'compliance') return null;
  if (!Number.isSafeInteger(until)) return null;
  return { mode: mode === 'governance' ? 'GOVERNANCE' : 'COMPLIANCE', retainUntil: new Date(until) };
}

function toBytes(data: unknown): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data === undefined || data === null || data === '') return new Uint8Array(0);
  throw new BackendError('download answered with an unexpected body type', { transient: true });
}

function header(res: AxiosResponse, name: string): string | undefined {
  const h = res.headers as Record<string, unknown> & { get?: (n: string) => unknown };
  const v = typeof h.get === 'function' ? h.get(name) : h[name];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}
