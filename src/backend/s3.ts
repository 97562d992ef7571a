// A repository in an S3 bucket (AWS, MinIO, Ceph RGW, Wasabi, R2, …), under an optional prefix,
// in restic's default layout: <prefix>/config, <prefix>/keys/<id>, <prefix>/data/ab/<id>, …
// The AWS SDK is an optional peer dependency, loaded on first use so that importing Stowage
// does not pull it in.

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { nodeHttp, nodeHttps } from './node-http.ts';
import type * as S3Sdk from '@aws-sdk/client-s3';
import { describeFile, type RemoveOptions } from './backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions, LocalFile, ObjectRetention, RetentionCapable, VersionedCapable } from './backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, ObjectLockError, ReadOnlyError, StowageError, throwIfAborted } from '../errors.ts';
import {
  checkBytes, checkConnections, startCall, checkType, emptyRead, fileInfo, listConfig, listedAs, maskSecrets,
  normalizePrefix, optionalPackage, positiveInteger, prefixedKey, rangeHeader, redactUrlPassword, rangeFromAnswer,
  transientErrors, underPrefix, uploadChecksumsOption, checkObjectLockOptions, uploadRetentionOf, localFileDigests, uploadFromFile,
} from './shared.ts';
import { assumeRoleProvider, checkAssumeRole, type S3AssumeRoleOptions } from './sts.ts';
import { VersionsAsOfView, versionSource, type ListedVersion } from './as-of-view.ts';

/**
 * An S3 access key, as restic's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN).
 */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** For temporary credentials (STS). */
  sessionToken?: string;
}

/** Options of {@link S3Backend}; see docs/backends/s3.md for their restic and Stash equivalents. */
export interface S3BackendOptions {
  /**
   * Send a checksum of every upload for the server to verify before it stores the bytes, so a
   * byte damaged on the way is refused (transiently) instead of stored. Default true; false is
   * for tests that show what the server stores without one.
   */
  uploadChecksums?: boolean;
  /**
   * The S3 endpoint URL, http or https, e.g. "https://minio.example.com:9000". Without it the
   * AWS endpoint of `region` is used.
   */
  endpoint?: string;
  /** The bucket. `create()` creates it when it does not exist. */
  bucket: string;
  /** Folder inside the bucket that holds the repository ("" or absent: the bucket root). */
  prefix?: string;
  /** Region for request signing (default "us-east-1", which MinIO and most others accept). */
  region?: string;
  /**
   * Address the bucket in the path (https://host/bucket/key) instead of the host name
   * (https://bucket.host/key). Default: true with a custom endpoint (MinIO, Ceph and IP
   * addresses need it), false for AWS.
   */
  forcePathStyle?: boolean;
  /** Access key; without it the SDK's default chain applies (AWS_* variables, profiles, instance roles). */
  credentials?: S3Credentials;
  /**
   * Assume this role with `credentials` (an STS AssumeRole call, as restic ≥ 0.18's
   * RESTIC_AWS_ASSUME_ROLE_*) and use the temporary key it returns, renewed before it expires.
   */
  assumeRole?: S3AssumeRoleOptions;
  /** PEM certificate(s) of a private CA that signed the endpoint's TLS certificate. */
  caCert?: string | Uint8Array;
  /** Accept any TLS certificate (self-signed, wrong host name). For tests only. */
  insecureTls?: boolean;
  /** Storage class for data packs (e.g. "STANDARD_IA", "GLACIER_IR"); metadata keeps the bucket default. */
  storageClass?: string;
  /** Requests in flight at once (default 5, like restic). */
  connections?: number;
  /** A request fails (transiently) when its connection is idle this long, in ms (default 120 000). */
  timeoutMs?: number;
  /**
   * Files larger than this many bytes are uploaded in parts (default 5 GiB, the largest single
   * PUT that S3 accepts; the minimum is 5 MiB). The object appears only when all parts are in.
   */
  multipartThreshold?: number;
  /**
   * S3 Object Lock: every upload except lock files (config, keys, index, snapshots, data) carries
   * this retention mode and a retain-until date, with a Content-MD5 (Object Lock requires a
   * checksum). `locks/` is never locked: restic and Stowage rewrite and delete lock files every few
   * minutes. The bucket must be versioned and lock-enabled; `create()` makes a missing bucket so.
   * Deletes (forget, prune, unlock) then become delete markers; the locked versions stay. See
   * docs/immutability.md.
   */
  objectLock?: S3ObjectLockOptions;
}

/** S3 Object Lock retention for uploads; give exactly one of `retainDays`, `retainSeconds`, `retainUntil`. */
export interface S3ObjectLockOptions {
  /** GOVERNANCE (a user with s3:BypassGovernanceRetention may still delete) or COMPLIANCE (nobody may, not even root). */
  mode: 'GOVERNANCE' | 'COMPLIANCE';
  /** Each object is retained this many days from its upload. */
  retainDays?: number;
  /** Each object is retained this many seconds from its upload (short periods, e.g. in tests). */
  retainSeconds?: number;
  /** Each object is retained until this fixed date. */
  retainUntil?: Date;
}

/** An object version's retention as S3 reports it. */
export type S3ObjectRetention = ObjectRetention;

const MiB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PART_SIZE = 512 * MiB;
const MAX_PARTS = 10_000;
const MAX_SINGLE_PUT = 5 * 1024 * MiB;
const DEFAULT_TIMEOUT_MS = 120_000;

// The shared rules, plus a DNS failure (often a passing resolver problem) and the S3 error codes
// that mean "try again later" whatever the status says.
const transient = transientErrors.extend({
  codes: [
    'ENOTFOUND', 'RequestTimeout', 'RequestTimeoutException', 'SlowDown', 'Throttling', 'ThrottlingException',
    'TooManyRequestsException', 'InternalError', 'ServiceUnavailable', 'TimeoutError', 'XMinioServerNotInitialized',
  ],
});

type S3Module = typeof S3Sdk;

const loadSdk = optionalPackage('@aws-sdk/client-s3', 'S3', (): Promise<S3Module> => import('@aws-sdk/client-s3'));

interface Connected {
  sdk: S3Module;
  client: S3Sdk.S3Client;
}

/**
 * A repository in an S3 bucket (AWS, MinIO, Ceph RGW, Wasabi, R2, …) under an optional prefix, in
 * restic's layout, so restic's `s3:` backend shares it. Needs the optional peer dependency
 * `@aws-sdk/client-s3`, loaded on the first request; without it that request throws
 * `UnsupportedError` naming the package. The constructor checks the options (`InvalidInputError`) and contacts
 * nothing. 5 requests in flight by default.
 *
 * @example
 * ```ts
 * const backend = new S3Backend({ endpoint: 'https://minio.example.com:9000', bucket: 'backups', prefix: 'app',
 *   credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID!, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY! } });
 * ```
 */
export class S3Backend implements Backend, RetentionCapable, VersionedCapable {
  readonly location: string;
  readonly connections: number;
  /** The bucket that holds the repository. */
  readonly bucket: string;
  /** The normalized prefix: no leading or trailing "/", "" for the bucket root. */
  readonly prefix: string;
  readonly #opts: S3BackendOptions;
  /** The `uploadChecksums` option (default on). */
  readonly #checksums: boolean;
  readonly #endpoint: URL | undefined;
  readonly #region: string;
  readonly #timeoutMs: number;
  readonly #multipartThreshold: number;
  readonly #objectLock: S3ObjectLockOptions | undefined;
  #connected: Promise<Connected> | undefined;

  constructor(opts: S3BackendOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidInputError('S3 backend options must be an object');
    this.bucket = checkBucket(opts.bucket);
    this.prefix = normalizePrefix(opts.prefix, 'S3 prefix');
    this.#region = opts.region ?? 'us-east-1';
    if (typeof this.#region !== 'string' || this.#region === '') throw new InvalidInputError('S3 region must be a non-empty string');
    this.#endpoint = opts.endpoint === undefined ? undefined : parseEndpoint(opts.endpoint);
    const host = this.#endpoint ? this.#endpoint.href.replace(/\/+$/, '') : `s3.${this.#region}.amazonaws.com`;
    this.location = `s3:${host}/${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.connections = checkConnections(opts.connections ?? 5, this.location);
    this.#timeoutMs = positiveInteger(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', this.location);
    this.#multipartThreshold = positiveInteger(opts.multipartThreshold ?? MAX_SINGLE_PUT, 'multipartThreshold', this.location);
    if (this.#multipartThreshold < MIN_PART_SIZE || this.#multipartThreshold > MAX_SINGLE_PUT) {
      throw new InvalidInputError(`multipartThreshold for ${this.location} must be between 5 MiB and 5 GiB`);
    }
    if (opts.credentials !== undefined) checkCredentials(opts.credentials);
    if (opts.assumeRole !== undefined) {
      checkAssumeRole(opts.assumeRole);
      if (opts.credentials === undefined) throw new InvalidInputError('S3 assumeRole needs credentials (the access key that assumes the role)');
    }
    if (opts.storageClass !== undefined && (typeof opts.storageClass !== 'string' || opts.storageClass === '')) {
      throw new InvalidInputError(`storageClass for ${this.location} must be a non-empty string`);
    }
    this.#objectLock = opts.objectLock === undefined ? undefined : checkObjectLockOptions(opts.objectLock, `objectLock for ${this.location}`);
    // A copy: changing the caller's object later must not change this backend.
    this.#opts = { ...opts, credentials: opts.credentials && { ...opts.credentials } };
    this.#checksums = uploadChecksumsOption(opts.uploadChecksums, 'S3');
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const { sdk, client } = await this.connect();
    let exists = true;
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: options.signal });
    } catch (err) {
      if (statusOf(err) !== 404) throw this.toStowage(err, 'create', `bucket ${this.bucket}`, options.signal);
      exists = false;
    }
    if (!exists) {
      try {
        // us-east-1 is the one region that must not be named in the request.
        const config = this.#region === 'us-east-1' ? undefined : { LocationConstraint: this.#region as S3Sdk.BucketLocationConstraint };
        // A lock-enabled bucket is versioned from its creation (S3 turns versioning on with the lock).
        await client.send(
          new sdk.CreateBucketCommand({ Bucket: this.bucket, CreateBucketConfiguration: config, ObjectLockEnabledForBucket: this.#objectLock ? true : undefined }),
          { abortSignal: options.signal },
        );
      } catch (err) {
        // Someone (or a concurrent create) made it in between: that is what we wanted.
        if (codeOf(err) !== 'BucketAlreadyOwnedByYou') throw this.toStowage(err, 'create', `bucket ${this.bucket}`, options.signal);
      }
    }
    if (this.#objectLock) await this.checkLockEnabled(sdk, client, options.signal);
  }

  /** Throws ObjectLockError unless the bucket has Object Lock enabled (without it every locked upload would fail). */
  private async checkLockEnabled(sdk: S3Module, client: S3Sdk.S3Client, signal: AbortSignal | undefined): Promise<void> {
    let enabled = false;
    try {
      const res = await client.send(new sdk.GetObjectLockConfigurationCommand({ Bucket: this.bucket }), { abortSignal: signal });
      enabled = res.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
    } catch (err) {
      if (codeOf(err) !== 'ObjectLockConfigurationNotFoundError') throw this.toStowage(err, 'create', `bucket ${this.bucket}`, signal);
    }
    if (!enabled) {
      throw new ObjectLockError(
        `bucket ${this.bucket} (${this.location}) does not have Object Lock enabled; objectLock needs a bucket created with it ` +
          '(S3 cannot enable it later without AWS support; a new bucket made by create() has it)',
        { bucket: this.bucket },
      );
    }
  }

  /** True with `objectLock`: every upload but lock files is retained. */
  get locksUploads(): boolean {
    return this.#objectLock !== undefined;
  }

  /** The retention the next upload of `h` gets, or undefined (no objectLock, or a lock file). */
  uploadRetention(h: FileHandle, now: Date = new Date()): S3ObjectRetention | undefined {
    return uploadRetentionOf(this.#objectLock, h, now);
  }

  /**
   * The retention of the current version of a file (HeadObject: one request), or undefined when it
   * has none. A date in the past is returned as S3 reports it: the version is no longer protected.
   */
  async getRetention(h: FileHandle, options: CallOptions = {}): Promise<S3ObjectRetention | undefined> {
    const file = startCall(h, options.signal);
    const { sdk, client } = await this.connect();
    try {
      const res = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h) }), { abortSignal: options.signal });
      const mode = res.ObjectLockMode;
      const until = res.ObjectLockRetainUntilDate;
      if ((mode !== 'GOVERNANCE' && mode !== 'COMPLIANCE') || !(until instanceof Date)) return undefined;
      return { mode, retainUntil: until };
    } catch (err) {
      throw this.toStowage(err, 'get retention of', file, options.signal);
    }
  }

  /**
   * Sets the current version's retain-until date to `retainUntil` (PutObjectRetention: one
   * request). S3 refuses to shorten a COMPLIANCE retention; callers extend only.
   */
  async putRetention(h: FileHandle, retention: S3ObjectRetention, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const { sdk, client } = await this.connect();
    try {
      await client.send(
        new sdk.PutObjectRetentionCommand({
          Bucket: this.bucket,
          Key: this.keyOf(h),
          Retention: { Mode: retention.mode, RetainUntilDate: retention.retainUntil },
        }),
        { abortSignal: options.signal },
      );
    } catch (err) {
      throw this.toStowage(err, 'set retention of', file, options.signal);
    }
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    checkBytes(data, file);
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.upload(h, file, body.length, options.signal, {
      body: (start, length) => body.subarray(start, start + length),
      md5: async (start, length) => md5Base64(body.subarray(start, start + length)),
    });
  }

  /**
   * Stores a local file as `save` stores bytes, without holding it whole: a first pass over the
   * file computes the Content-MD5 (when checksums or Object Lock want it), then the PUT (or each
   * part of a multipart upload, above `multipartThreshold`) sends its range of the file as it is
   * read. A file that does not hold `file.size` bytes is an IntegrityError and nothing is stored.
   */
  async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    await uploadFromFile(local, file, options.signal, (stream, signal) =>
      this.upload(h, file, local.size, signal, {
        body: (start, length) => stream({ start, length }),
        md5: async (start, length) => (await localFileDigests(local, file, ['md5'], { start, length, signal })).digests[0]!.toString('base64'),
      }),
    );
  }

  /** A PUT, or a multipart upload above the threshold, of `size` bytes that `source` gives by range. */
  private async upload(h: FileHandle, file: string, size: number, signal: AbortSignal | undefined, source: UploadSource): Promise<void> {
    const { sdk, client } = await this.connect();
    const storageClass = h.type === 'data' ? (this.#opts.storageClass as S3Sdk.StorageClass | undefined) : undefined;
    const retention = this.uploadRetention(h);
    const lock = retention && { ObjectLockMode: retention.mode, ObjectLockRetainUntilDate: retention.retainUntil };
    // Object Lock refuses an upload without a checksum, so it is sent even when turned off.
    const md5 = this.#checksums || retention !== undefined;
    try {
      if (size > this.#multipartThreshold) {
        await this.saveInParts(sdk, client, h, size, source, storageClass, lock, md5, signal);
        return;
      }
      // The digest first: it goes in the request's headers, before the body.
      const contentMd5 = md5 ? await source.md5(0, size) : undefined;
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(h),
          Body: source.body(0, size),
          ContentLength: size,
          // The server checks the bytes it received against this digest, as restic has it do
          // (BadDigest, transient, when a byte changed on the way).
          ContentMD5: contentMd5,
          ContentType: 'application/octet-stream',
          StorageClass: storageClass,
          ...lock,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw this.toStowage(err, 'save', file, signal);
    }
  }

  /** Reads a file; with `versionId`, that version of it (a versioned bucket). */
  async load(h: FileHandle, options: LoadOptions & { versionId?: string } = {}): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    if (options.length === 0) return emptyRead(() => this.stat(h, options), options, file);
    const range = rangeHeader(options, file);
    const { sdk, client } = await this.connect();
    let res: S3Sdk.GetObjectCommandOutput;
    let bytes: Uint8Array;
    try {
      res = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h), Range: range, VersionId: options.versionId }), {
        abortSignal: options.signal,
      });
      if (!res.Body) throw new BackendError(`load ${file} (in ${this.location}): the response has no body`, { transient: true });
      bytes = await res.Body.transformToByteArray();
    } catch (err) {
      // The range starts at or past the end: an empty read at the very end is fine, anything else is damage.
      if (codeOf(err) === 'InvalidRange' || statusOf(err) === 416) return emptyRead(() => this.stat(h, options), options, file);
      throw this.toStowage(err, 'load', file, options.signal);
    }
    throwIfAborted(options.signal);
    if (res.ContentLength !== undefined && bytes.length !== res.ContentLength) {
      throw new IntegrityError(`short read: got ${bytes.length} of ${res.ContentLength} bytes`, { file });
    }
    // Without a Range the whole file comes, whatever the status says.
    const status = range === undefined ? 200 : (res.$metadata.httpStatusCode ?? 0);
    return rangeFromAnswer(options, file, this.location, { status, body: bytes, contentRange: res.ContentRange });
  }

  /**
   * A byte range as one GET whose body is handed on as it arrives (the SDK's body is a Node
   * stream: it is read only as fast as the caller takes the pieces). An answer that is not a
   * 206 is read as `load` reads it.
   */
  async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    const file = startCall(h, options.signal);
    if (options.length === 0) return yield await this.load(h, options);
    const range = rangeHeader(options, file);
    const { sdk, client } = await this.connect();
    let res: S3Sdk.GetObjectCommandOutput;
    try {
      res = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h), Range: range }), { abortSignal: options.signal });
      if (!res.Body) throw new BackendError(`load ${file} (in ${this.location}): the response has no body`, { transient: true });
    } catch (err) {
      if (codeOf(err) === 'InvalidRange' || statusOf(err) === 416) return yield await emptyRead(() => this.stat(h, options), options, file);
      throw this.toStowage(err, 'load', file, options.signal);
    }
    const status = range === undefined ? 200 : (res.$metadata.httpStatusCode ?? 0);
    if (status !== 206) {
      let bytes: Uint8Array;
      try {
        bytes = await res.Body.transformToByteArray();
      } catch (err) {
        throw this.toStowage(err, 'load', file, options.signal);
      }
      return yield rangeFromAnswer(options, file, this.location, { status, body: bytes, contentRange: res.ContentRange });
    }
    const body = res.Body as unknown as AsyncIterable<Uint8Array> & { destroy?: () => void };
    let done = false;
    try {
      let got = 0;
      try {
        for await (const chunk of body) {
          got += chunk.length;
          yield chunk;
        }
      } catch (err) {
        throw this.toStowage(err, 'load', file, options.signal);
      }
      done = true;
      if (got !== options.length) throw new IntegrityError(`short read: got ${got} of ${options.length} bytes at offset ${options.offset ?? 0}`, { file });
    } finally {
      // Stopped early (or failed): the rest of the body is not wanted.
      if (!done) body.destroy?.();
    }
  }

  /** A file's size; with `versionId`, that version's. */
  async stat(h: FileHandle, options: CallOptions & { versionId?: string } = {}): Promise<FileInfo> {
    const file = startCall(h, options.signal);
    const { sdk, client } = await this.connect();
    try {
      const res = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h), VersionId: options.versionId }), { abortSignal: options.signal });
      const size = res.ContentLength;
      if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
        throw new BackendError(`stat ${file} (in ${this.location}): the server sent no valid Content-Length`, { transient: false });
      }
      return fileInfo(h, size);
    } catch (err) {
      throw this.toStowage(err, 'stat', file, options.signal);
    }
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') return yield* listConfig(() => this.stat({ type, name: '' }, options));
    const { sdk, client } = await this.connect();
    const folder = underPrefix(this.prefix, `${type}/`);
    let token: string | undefined;
    do {
      throwIfAborted(options.signal);
      let page: S3Sdk.ListObjectsV2CommandOutput;
      try {
        page = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: folder, ContinuationToken: token }),
          { abortSignal: options.signal },
        );
      } catch (err) {
        // No bucket yet means no repository yet: nothing to list, as for a fresh folder.
        if (codeOf(err) === 'NoSuchBucket') return;
        throw this.toStowage(err, 'list', type, options.signal);
      }
      for (const object of page.Contents ?? []) {
        const info = listedAs(type, object.Key?.slice(folder.length), object.Size);
        if (info) yield info;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && !token) {
        throw new BackendError(`list ${type} (in ${this.location}): a truncated listing came without a continuation token`, { transient: false });
      }
    } while (token);
  }

  async remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    // S3 deletes are silent about missing keys; ask first so a missing file is reported
    // (unless the caller does not care: a released lock).
    if (!options.missingOk) await this.stat(h, options);
    const file = describeFile(h);
    const { sdk, client } = await this.connect();
    try {
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h) }), { abortSignal: options.signal });
    } catch (err) {
      throw this.toStowage(err, 'remove', file, options.signal);
    }
  }

  /**
   * Every version and delete marker of the keys under `keyPrefix` (a full key, e.g. the prefix plus
   * "index/"), page by page (ListObjectVersions). A bucket that never had versioning lists each
   * object once, with the version ID "null".
   */
  async *listVersions(keyPrefix: string, options: CallOptions = {}): AsyncGenerator<S3ObjectVersion> {
    const { sdk, client } = await this.connect();
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      throwIfAborted(options.signal);
      let page: S3Sdk.ListObjectVersionsCommandOutput;
      try {
        page = await client.send(
          new sdk.ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: keyPrefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }),
          { abortSignal: options.signal },
        );
      } catch (err) {
        if (codeOf(err) === 'NoSuchBucket') return;
        throw this.toStowage(err, 'list versions of', keyPrefix, options.signal);
      }
      for (const v of page.Versions ?? []) {
        if (v.Key && v.LastModified) yield { key: v.Key, versionId: v.VersionId ?? 'null', lastModified: v.LastModified, size: v.Size ?? 0, deleteMarker: false };
      }
      for (const m of page.DeleteMarkers ?? []) {
        if (m.Key && m.LastModified) yield { key: m.Key, versionId: m.VersionId ?? 'null', lastModified: m.LastModified, size: 0, deleteMarker: true };
      }
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
      if (!keyMarker) {
        throw new BackendError(`list versions of ${keyPrefix} (in ${this.location}): a truncated listing came without a key marker`, { transient: false });
      }
    }
  }

  /**
   * A read-only view of the repository as it was at `asOf`, from the bucket's object versions
   * (the bucket must be versioned; Object Lock makes it so). See {@link S3AsOfView}.
   */
  viewAsOf(asOf: Date, options: { closeBackend?: boolean } = {}): S3AsOfView {
    return new S3AsOfView(this, asOf, options);
  }

  async close(): Promise<void> {
    const connected = this.#connected;
    this.#connected = undefined;
    if (!connected) return;
    try {
      (await connected).client.destroy();
    } catch {
      // The client never came up; there is nothing to release.
    }
  }

  /** The object key of a file: the prefix, then restic's layout. */
  keyOf(h: FileHandle): string {
    return prefixedKey(this.prefix, h);
  }

  private connect(): Promise<Connected> {
    if (!this.#connected) {
      const connecting = loadSdk().then((sdk) => ({ sdk, client: this.newClient(sdk) }));
      this.#connected = connecting;
      // A failed start (SDK not installed) is not cached: the next call tries again.
      connecting.catch(() => {
        if (this.#connected === connecting) this.#connected = undefined;
      });
    }
    return this.#connected;
  }

  private newClient(sdk: S3Module): S3Sdk.S3Client {
    const opts = this.#opts;
    const agentOptions = { keepAlive: true, maxSockets: this.connections };
    const ca = opts.caCert === undefined ? undefined : typeof opts.caCert === 'string' ? opts.caCert : Buffer.from(opts.caCert);
    return new sdk.S3Client({
      endpoint: this.#endpoint?.href,
      region: this.#region,
      forcePathStyle: opts.forcePathStyle ?? this.#endpoint !== undefined,
      credentials: opts.assumeRole && opts.credentials
        ? assumeRoleProvider(opts.credentials, opts.assumeRole, opts.region, { ca, insecureTls: opts.insecureTls, timeoutMs: this.#timeoutMs })
        : opts.credentials,
      // Retries belong to the retry wrapper, so one request is one attempt.
      maxAttempts: 1,
      // Buffer bodies with a Content-MD5; no aws-chunked trailers, which not every server speaks.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new (nodeHttp().Agent)(agentOptions),
        httpsAgent: new (nodeHttps().Agent)({ ...agentOptions, ca, rejectUnauthorized: opts.insecureTls !== true }),
        connectionTimeout: this.#timeoutMs,
        socketTimeout: this.#timeoutMs,
      },
    });
  }

  /** Uploads in parts; the object appears on completion, and a failed upload is cleaned up. */
  private async saveInParts(
    sdk: S3Module,
    client: S3Sdk.S3Client,
    h: FileHandle,
    size: number,
    source: UploadSource,
    storageClass: S3Sdk.StorageClass | undefined,
    lock: { ObjectLockMode: S3Sdk.ObjectLockMode; ObjectLockRetainUntilDate: Date } | undefined,
    md5: boolean,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const key = this.keyOf(h);
    const partSize = Math.max(MIN_PART_SIZE, Math.min(this.#multipartThreshold, MAX_PART_SIZE), Math.ceil(size / MAX_PARTS));
    // Not abortable: an abort while the server starts the upload would lose its ID, and with
    // it the only way to clean the upload up.
    const started = await client.send(
      new sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: 'application/octet-stream', StorageClass: storageClass, ...lock }),
    );
    const uploadId = started.UploadId;
    if (!uploadId) throw new BackendError(`save ${describeFile(h)} (in ${this.location}): the server started a multipart upload without an ID`, { transient: true });
    try {
      const parts: S3Sdk.CompletedPart[] = [];
      for (let start = 0, partNumber = 1; start < size; start += partSize, partNumber++) {
        throwIfAborted(signal);
        const length = Math.min(partSize, size - start);
        // Each part is read (and its digest computed) only when it is sent.
        const contentMd5 = md5 ? await source.md5(start, length) : undefined;
        const res = await client.send(
          new sdk.UploadPartCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: source.body(start, length),
            ContentLength: length,
            ContentMD5: contentMd5,
          }),
          { abortSignal: signal },
        );
        parts.push({ ETag: res.ETag, PartNumber: partNumber });
      }
      // The last point where an abort still leaves nothing behind; completing is not interrupted,
      // so an abort never leaves the object in place after reporting failure.
      throwIfAborted(signal);
      await client.send(
        new sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
      );
    } catch (err) {
      // Without the signal: the clean-up must run even when the save was aborted.
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => {});
      throw err;
    }
  }

  /** Maps an SDK or network error to a StowageError naming the operation and file, never a secret. */
  private toStowage(err: unknown, op: string, file: string, signal: AbortSignal | undefined): StowageError {
    if (err instanceof StowageError) return err;
    if (signal?.aborted || nameOf(err) === 'AbortError') return new AbortedError(undefined, { cause: err });
    const status = statusOf(err);
    const code = codeOf(err);
    const missing = status === 404 || code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchBucket';
    if (missing && op !== 'save' && op !== 'create' && op !== 'list') return new NotFoundError(file, { cause: err });
    const detail = maskSecrets(describeError(err, code, status), [this.#opts.credentials?.secretAccessKey, this.#opts.credentials?.sessionToken]);
    // A locked upload into a bucket without Object Lock (AWS and MinIO: InvalidRequest, "Bucket is missing ObjectLockConfiguration").
    if (op === 'save' && this.#objectLock && code === 'InvalidRequest' && /ObjectLockConfiguration|object lock/i.test(detail)) {
      return new ObjectLockError(`${op} ${file} (in ${this.location}): bucket ${this.bucket} does not have Object Lock enabled (${detail})`, {
        bucket: this.bucket, file, cause: err,
      });
    }
    const hint = code === 'NoSuchBucket' ? ` (bucket ${this.bucket} does not exist; create() makes it)` : '';
    return new BackendError(`${op} ${file} (in ${this.location}): ${detail}${hint}`, { transient: transient.status(status) || transient.code(code), status, cause: err });
  }
}

/** One version (or delete marker) of an object, from {@link S3Backend.listVersions}. */
export interface S3ObjectVersion {
  key: string;
  versionId: string;
  lastModified: Date;
  size: number;
  deleteMarker: boolean;
}

/**
 * A repository in a versioned bucket as it was at an instant: each file is its newest version
 * last modified at or before `asOf`; a file whose newest such entry is a delete marker, or that
 * had no version yet, is missing. Reads are GetObject/HeadObject with the version ID, listings
 * ListObjectVersions. Read-only: save and remove throw {@link ReadOnlyError}, except for lock
 * files, which are kept in this object's memory (commands that lock work; nothing is written).
 * The rules are {@link VersionsAsOfView}'s, as for the other versioned storages.
 */
export class S3AsOfView extends VersionsAsOfView {
  /** With `closeBackend`, closing the view closes `s3` too (as closing a repository closes its backend). */
  constructor(s3: S3Backend, asOf: Date, options: { closeBackend?: boolean } = {}) {
    const view = versionSource(s3, {
      keyOf: (h) => s3.keyOf(h),
      listVersions: (keyPrefix, signal) => asListedVersions(s3.listVersions(keyPrefix, { signal })),
      loadVersion: (h, versionId, o) => s3.load(h, { ...o, versionId }),
    });
    super(view, asOf, options);
  }
}

/** S3's versions as the shared view lists them (within a page, versions come before delete markers). */
async function* asListedVersions(versions: AsyncIterable<S3ObjectVersion>): AsyncGenerator<ListedVersion> {
  for await (const v of versions) yield { key: v.key, versionId: v.versionId, lastModified: v.lastModified, size: v.size, deleted: v.deleteMarker };
}

function checkBucket(bucket: unknown): string {
  if (typeof bucket !== 'string' || bucket === '' || bucket.includes('/')) {
    throw new InvalidInputError(`S3 bucket must be a non-empty name without "/", got ${JSON.stringify(bucket)?.slice(0, 80)}`);
  }
  return bucket;
}

function parseEndpoint(endpoint: unknown): URL {
  let url: URL;
  try {
    url = new URL(String(endpoint));
  } catch {
    // Not as the cause: Node's URL error carries the whole input, credentials included.
    throw new InvalidInputError(`S3 endpoint must be an http or https URL, got ${JSON.stringify(redactUrlPassword(String(endpoint)))}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidInputError(`S3 endpoint must be an http or https URL, got ${JSON.stringify(redactUrlPassword(String(endpoint)))}`);
  }
  // Credentials belong in `credentials`, never in a URL that ends up in messages.
  if (url.username || url.password) throw new InvalidInputError('S3 endpoint must not contain credentials; pass them in `credentials`');
  if (url.search || url.hash) throw new InvalidInputError(`S3 endpoint must not have a query or fragment: ${url.origin}`);
  return url;
}

function checkCredentials(c: S3Credentials): void {
  if (c === null || typeof c !== 'object' || typeof c.accessKeyId !== 'string' || c.accessKeyId === '' ||
    typeof c.secretAccessKey !== 'string' || c.secretAccessKey === '') {
    throw new InvalidInputError('S3 credentials need a non-empty accessKeyId and secretAccessKey');
  }
  if (c.sessionToken !== undefined && typeof c.sessionToken !== 'string') throw new InvalidInputError('S3 sessionToken must be a string');
}

/** The bytes of an upload by range (a buffer's, or a local file's read as sent) and their Content-MD5. */
interface UploadSource {
  body(start: number, length: number): Buffer | Readable;
  md5(start: number, length: number): Promise<string>;
}

function md5Base64(data: Uint8Array): string {
  return createHash('md5').update(data).digest('base64');
}

function statusOf(err: unknown): number | undefined {
  const status = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The S3 error code ("NoSuchKey", "AccessDenied") or the Node error code ("ECONNRESET"). */
function codeOf(err: unknown): string | undefined {
  const e = err as { Code?: unknown; code?: unknown; name?: unknown } | null;
  for (const c of [e?.Code, e?.code]) if (typeof c === 'string' && c !== '') return c;
  const name = nameOf(err);
  return name && name !== 'Error' && name !== 'UnknownError' && name !== 'Unknown' ? name : undefined;
}

function nameOf(err: unknown): string | undefined {
  const name = (err as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : undefined;
}

function describeError(err: unknown, code: string | undefined, status: number | undefined): string {
  const message = err instanceof Error ? err.message : String(err);
  // HEAD answers have no body, so the SDK knows only the status ("Unknown", "UnknownError").
  const httpText = status !== undefined ? `HTTP ${status} ${nodeHttp().STATUS_CODES[status] ?? ''}`.trim() : undefined;
  const parts = [code, httpText].filter(Boolean).join(', ');
  const text = message && message !== code && message !== 'UnknownError' && message !== 'Unknown' ? message : '';
  return [parts, text].filter(Boolean).join(': ').slice(0, 500) || 'unknown error';
}
