// A repository in an S3 bucket (AWS, MinIO, Ceph RGW, Wasabi, R2, …), under an optional prefix,
// in restic's default layout: <prefix>/config, <prefix>/keys/<id>, <prefix>/data/ab/<id>, …
// The AWS SDK is an optional peer dependency, loaded on first use so that importing Stowage
// does not pull it in.

import { createHash } from 'node:crypto';
import { nodeHttp, nodeHttps } from './node-http.ts';
import type * as S3Sdk from '@aws-sdk/client-s3';
import { describeFile } from './backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from './backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, StowageError, throwIfAborted } from '../errors.ts';
import {
  checkBytes, checkConnections, startCall, checkType, emptyRead, fileInfo, isIdName, listConfig, maskSecrets,
  normalizePrefix, optionalPackage, positiveInteger, prefixedKey, rangeHeader, redactUrlPassword, rangeFromAnswer,
  transientErrors, underPrefix, uploadChecksums,
} from './shared.ts';

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
}

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
export class S3Backend implements Backend {
  readonly location: string;
  readonly connections: number;
  /** The bucket that holds the repository. */
  readonly bucket: string;
  /** The normalized prefix: no leading or trailing "/", "" for the bucket root. */
  readonly prefix: string;
  readonly #opts: S3BackendOptions;
  readonly #endpoint: URL | undefined;
  readonly #region: string;
  readonly #timeoutMs: number;
  readonly #multipartThreshold: number;
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
    if (opts.storageClass !== undefined && (typeof opts.storageClass !== 'string' || opts.storageClass === '')) {
      throw new InvalidInputError(`storageClass for ${this.location} must be a non-empty string`);
    }
    // A copy: changing the caller's object later must not change this backend.
    this.#opts = { ...opts, credentials: opts.credentials && { ...opts.credentials } };
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const { sdk, client } = await this.connect();
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: options.signal });
      return;
    } catch (err) {
      if (statusOf(err) !== 404) throw this.toStowage(err, 'create', `bucket ${this.bucket}`, options.signal);
    }
    try {
      // us-east-1 is the one region that must not be named in the request.
      const config = this.#region === 'us-east-1' ? undefined : { LocationConstraint: this.#region as S3Sdk.BucketLocationConstraint };
      await client.send(new sdk.CreateBucketCommand({ Bucket: this.bucket, CreateBucketConfiguration: config }), {
        abortSignal: options.signal,
      });
    } catch (err) {
      // Someone (or a concurrent create) made it in between: that is what we wanted.
      if (codeOf(err) === 'BucketAlreadyOwnedByYou') return;
      throw this.toStowage(err, 'create', `bucket ${this.bucket}`, options.signal);
    }
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    checkBytes(data, file);
    const { sdk, client } = await this.connect();
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const storageClass = h.type === 'data' ? (this.#opts.storageClass as S3Sdk.StorageClass | undefined) : undefined;
    try {
      if (body.length > this.#multipartThreshold) {
        await this.saveInParts(sdk, client, h, body, storageClass, options.signal);
        return;
      }
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(h),
          Body: body,
          ContentLength: body.length,
          // The server checks the bytes it received against this digest, as restic has it do
          // (BadDigest, transient, when a byte changed on the way).
          ContentMD5: uploadChecksums.send ? md5Base64(body) : undefined,
          ContentType: 'application/octet-stream',
          StorageClass: storageClass,
        }),
        { abortSignal: options.signal },
      );
    } catch (err) {
      throw this.toStowage(err, 'save', file, options.signal);
    }
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    if (options.length === 0) return emptyRead(() => this.stat(h, options), options, file);
    const range = rangeHeader(options, file);
    const { sdk, client } = await this.connect();
    let res: S3Sdk.GetObjectCommandOutput;
    let bytes: Uint8Array;
    try {
      res = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h), Range: range }), {
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

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    const file = startCall(h, options.signal);
    const { sdk, client } = await this.connect();
    try {
      const res = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h) }), { abortSignal: options.signal });
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

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    // S3 deletes are silent about missing keys; ask first so a missing file is reported.
    await this.stat(h, options);
    const file = describeFile(h);
    const { sdk, client } = await this.connect();
    try {
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h) }), { abortSignal: options.signal });
    } catch (err) {
      throw this.toStowage(err, 'remove', file, options.signal);
    }
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
      credentials: opts.credentials,
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
    body: Buffer,
    storageClass: S3Sdk.StorageClass | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const key = this.keyOf(h);
    const partSize = Math.max(MIN_PART_SIZE, Math.min(this.#multipartThreshold, MAX_PART_SIZE), Math.ceil(body.length / MAX_PARTS));
    // Not abortable: an abort while the server starts the upload would lose its ID, and with
    // it the only way to clean the upload up.
    const started = await client.send(
      new sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: 'application/octet-stream', StorageClass: storageClass }),
    );
    const uploadId = started.UploadId;
    if (!uploadId) throw new BackendError(`save ${describeFile(h)} (in ${this.location}): the server started a multipart upload without an ID`, { transient: true });
    try {
      const parts: S3Sdk.CompletedPart[] = [];
      for (let start = 0, partNumber = 1; start < body.length; start += partSize, partNumber++) {
        throwIfAborted(signal);
        const part = body.subarray(start, Math.min(start + partSize, body.length));
        const res = await client.send(
          new sdk.UploadPartCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: part,
            ContentLength: part.length,
            ContentMD5: uploadChecksums.send ? md5Base64(part) : undefined,
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
    const hint = code === 'NoSuchBucket' ? ` (bucket ${this.bucket} does not exist; create() makes it)` : '';
    return new BackendError(`${op} ${file} (in ${this.location}): ${detail}${hint}`, { transient: transient.status(status) || transient.code(code), status, cause: err });
  }
}

/** The listing entry for a key below "<prefix>/<type>/" if it is an ID-named file of that type. */
function listedAs(type: FileType, rel: string | undefined, size: number | undefined): FileInfo | undefined {
  if (rel === undefined || size === undefined) return undefined;
  const parts = rel.split('/');
  // Data packs sit in two-digit folders; older repositories kept them flat, which restic also reads.
  const name = type === 'data' && parts.length === 2 ? parts[1] : parts.length === 1 ? parts[0] : undefined;
  return name !== undefined && isIdName(name) ? { name, size } : undefined;
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
