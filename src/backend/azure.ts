// A repository in an Azure Blob Storage container (or azurite), in restic's layout under an
// optional prefix: "<prefix>/config", "<prefix>/keys/<id>", "<prefix>/data/ab/<id>".
// @azure/storage-blob is an optional peer dependency, loaded on first use.
//
// A block blob becomes visible only when its upload is committed (one Put Blob, or a
// Put Block List after staged blocks), so every save is atomic for readers.
//
// Version-level immutability: with `immutability`, every upload but lock files carries an
// immutability policy (x-ms-immutability-policy-until-date and -mode: Unlocked for GOVERNANCE,
// Locked for COMPLIANCE), putRetention extends it (Set Blob Immutability Policy), and create()
// refuses a container without version-level immutability support (the data-plane API cannot turn
// it on). With blob versioning on, the versions give a read-only view at an instant (viewAsOf).

import { createHash, randomBytes } from 'node:crypto';
import type { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import type * as AzureBlob from '@azure/storage-blob';
import { nodeHttps } from './node-http.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions, LocalFile, ObjectRetention, RetentionCapable, VersionedCapable } from './backend.ts';
import type { S3ObjectLockOptions } from './s3.ts';
import { VersionsAsOfView, versionSource, type ListedVersion } from './as-of-view.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, ObjectLockError, StowageError, throwIfAborted } from '../errors.ts';
import {
  checkConnections, startCall, checkType, errorMessage, fileInfo, firstLine, isIdName, listConfig, madeOnce, maskSecrets, normalizePrefix,
  optionalPackage, positiveInteger, prefixedKey, sdkRange, stripUrlSecrets, transientErrors, underPrefix, uploadChecksumsOption,
  checkObjectLockOptions, uploadRetentionOf,
  localFileDigests, uploadFromFile,
} from './shared.ts';

/**
 * Azure version-level immutability for uploads (the same shape as S3's objectLock): GOVERNANCE is
 * Azure's `Unlocked` policy mode, COMPLIANCE its `Locked` mode; exactly one of `retainDays`,
 * `retainSeconds`, `retainUntil`.
 */
export type AzureImmutabilityOptions = S3ObjectLockOptions;

/** The access tiers Azure offers for block blobs. */
export type AzureAccessTier = 'Hot' | 'Cool' | 'Cold' | 'Archive';

/** An Azure AD token source, e.g. `new DefaultAzureCredential()` from `@azure/identity`. */
export interface AzureTokenCredential {
  getToken(scopes: string | string[], options?: object): Promise<{ token: string; expiresOnTimestamp: number } | null>;
}

/**
 * Options of {@link AzureBackend}: a container and exactly one of `connectionString`, `accountKey`,
 * `sasToken` or `credential`. See docs/backends/azure.md.
 */
export interface AzureBackendOptions {
  /**
   * Send a checksum of every upload for the server to verify before it stores the bytes, so a
   * byte damaged on the way is refused (transiently) instead of stored. Default true; false is
   * for tests that show what the server stores without one.
   */
  uploadChecksums?: boolean;
  /** The container that holds the repository (created by `create()` when missing). */
  container: string;
  /**
   * Files larger than this many bytes go up as staged blocks (Put Block, each with its own
   * Content-MD5, then one Put Block List) instead of one Put Blob: default and largest 256 MiB.
   * Blocks are this size, at most 64 MiB. The blob appears only when the list is committed.
   */
  singlePutThreshold?: number;
  /** Folder inside the container ("" or omitted: the container root). Leading/trailing "/" are ignored. */
  prefix?: string;
  /**
   * The storage account name. Needed with `accountKey`, `sasToken` or `credential` unless
   * `endpoint` names the account's blob service itself.
   */
  accountName?: string;
  /** The account's shared key (base64), as restic's AZURE_ACCOUNT_KEY. */
  accountKey?: string;
  /** A shared access signature (with or without the leading "?"), as restic's AZURE_ACCOUNT_SAS. */
  sasToken?: string;
  /** A full connection string ("DefaultEndpointsProtocol=…;AccountName=…;AccountKey=…;…"); replaces the fields above. */
  connectionString?: string;
  /** An Azure AD credential (e.g. from @azure/identity), instead of a key or SAS. */
  credential?: AzureTokenCredential;
  /**
   * The blob service URL, e.g. "http://127.0.0.1:10000/devstoreaccount1" for azurite or a
   * private endpoint. Default: https://<accountName>.blob.<endpointSuffix>.
   */
  endpoint?: string;
  /** DNS suffix of the cloud (default "core.windows.net"; e.g. "core.chinacloudapi.cn"), as restic's AZURE_ENDPOINT_SUFFIX. */
  endpointSuffix?: string;
  /** PEM certificate(s) to trust for an https endpoint with a private CA (e.g. Azure Stack, a TLS proxy). */
  caCert?: string;
  /** Accept any server certificate over https. Only for tests and trusted networks. */
  insecureTls?: boolean;
  /**
   * Access tier for new blobs, as restic's `-o azure.access-tier`. Hot, Cool and Cold apply to
   * every file; Archive only to data packs, because every other file must stay readable at once.
   * Default: the account's default tier.
   */
  accessTier?: AzureAccessTier;
  /** Requests in flight at once (default 5, like restic). */
  connections?: number;
  /**
   * A version-level immutability policy on every upload except lock files (Unlocked for
   * GOVERNANCE, Locked for COMPLIANCE). The container must support version-level immutability
   * (set up in the portal, the CLI or ARM, with blob versioning on the account); `create()`
   * refuses one without it (ObjectLockError). See docs/immutability.md.
   */
  immutability?: AzureImmutabilityOptions;
}

type AzureModule = typeof AzureBlob;

/** Blobs per list request. Azure allows up to 5000; smaller pages keep memory flat. */
const LIST_PAGE_SIZE = 1000;

/** Up to this size a file goes up in one Put Blob by default; above it, staged blocks and one commit. */
const SINGLE_PUT_MAX = 256 * 1024 * 1024;
/** The largest staged block used (the service takes up to 4000 MiB), and how many blocks a blob may have. */
const MAX_BLOCK = 64 * 1024 * 1024;
const MAX_BLOCKS = 50_000;

const ACCESS_TIERS: readonly AzureAccessTier[] = ['Hot', 'Cool', 'Cold', 'Archive'];

const loadAzure = optionalPackage('@azure/storage-blob', 'Azure', (): Promise<AzureModule> => import('@azure/storage-blob'));

// The shared rules, plus the SDK's code for a request that got no answer.
const transient = transientErrors.extend({ codes: ['REQUEST_SEND_ERROR'] });

/**
 * A repository in an Azure Blob Storage container under an optional prefix, in restic's layout, so
 * restic's `azure:` backend shares it. Needs the optional peer dependency `@azure/storage-blob`,
 * loaded on the first request (`UnsupportedError` naming the package without it). The constructor
 * checks the options (`InvalidInputError`) and contacts nothing. 5 requests in flight by default.
 */
export class AzureBackend implements Backend, RetentionCapable, VersionedCapable {
  readonly location: string;
  readonly connections: number;
  /** The container that holds the repository. */
  readonly container: string;
  /** The normalised prefix ("" or "a/b", no leading or trailing "/"). */
  readonly prefix: string;
  readonly #opts: AzureBackendOptions;
  /** The `uploadChecksums` option (default on). */
  readonly #checksums: boolean;
  readonly #singlePutThreshold: number;
  /** Strings that must never appear in a message (key, SAS, connection string parts). */
  readonly #secrets: string[];
  /** The SDK client, made on the first request. */
  readonly #client = madeOnce(() => this.makeContainerClient());
  readonly #immutability: AzureImmutabilityOptions | undefined;

  constructor(opts: AzureBackendOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidInputError('Azure backend options must be an object');
    this.container = checkContainerName(opts.container);
    this.prefix = normalizePrefix(opts.prefix, 'Azure prefix', true);
    if (opts.accessTier !== undefined && !ACCESS_TIERS.includes(opts.accessTier)) {
      throw new InvalidInputError(`Azure access tier must be one of ${ACCESS_TIERS.join(', ')}, got ${JSON.stringify(opts.accessTier)}`);
    }
    const ways = [opts.connectionString, opts.accountKey, opts.sasToken, opts.credential].filter((v) => v !== undefined && v !== '');
    if (ways.length === 0) {
      throw new InvalidInputError('Azure backend needs credentials: connectionString, accountName + accountKey, sasToken, or credential');
    }
    if (ways.length > 1) throw new InvalidInputError('Azure backend takes only one of connectionString, accountKey, sasToken and credential');
    if (opts.connectionString === undefined && !opts.endpoint && !opts.accountName) {
      throw new InvalidInputError('Azure backend needs accountName (or an endpoint) unless a connectionString is given');
    }
    if (opts.accountKey !== undefined && !opts.accountName) throw new InvalidInputError('Azure backend: accountKey needs accountName');
    this.#opts = { ...opts };
    this.#checksums = uploadChecksumsOption(opts.uploadChecksums, 'Azure');
    this.#secrets = secretParts(opts);
    const where = this.serviceUrlForDisplay();
    this.location = `azure:${this.container}:/${this.prefix}${where ? ` (${where})` : ''}`;
    this.connections = checkConnections(opts.connections ?? 5, this.location);
    this.#singlePutThreshold = positiveInteger(opts.singlePutThreshold ?? SINGLE_PUT_MAX, 'singlePutThreshold', this.location);
    if (this.#singlePutThreshold > SINGLE_PUT_MAX) throw new InvalidInputError(`singlePutThreshold for ${this.location} must be at most 256 MiB`);
    this.#immutability = opts.immutability === undefined ? undefined : checkObjectLockOptions(opts.immutability, `immutability for ${this.location}`);
  }

  /** True with `immutability`: every upload but lock files gets an immutability policy. */
  get locksUploads(): boolean {
    return this.#immutability !== undefined;
  }

  /** The policy the next upload of `h` gets, or undefined (no immutability option, or a lock file). */
  uploadRetention(h: FileHandle, now: Date = new Date()): ObjectRetention | undefined {
    return uploadRetentionOf(this.#immutability, h, now);
  }

  /** The current version's immutability policy (Get Blob Properties: one request), or undefined. */
  async getRetention(h: FileHandle, options: CallOptions = {}): Promise<ObjectRetention | undefined> {
    const file = startCall(h, options.signal);
    const blob = (await this.#client()).getBlobClient(this.keyOf(h));
    try {
      const props = await blob.getProperties({ abortSignal: options.signal });
      const until = props.immutabilityPolicyExpiresOn;
      if (!(until instanceof Date)) return undefined;
      const mode = String(props.immutabilityPolicyMode ?? '').toLowerCase();
      if (mode === 'unlocked') return { mode: 'GOVERNANCE', retainUntil: until };
      if (mode === 'locked') return { mode: 'COMPLIANCE', retainUntil: until };
      return undefined;
    } catch (err) {
      throw this.toStowage(err, 'get retention of', file, options.signal);
    }
  }

  /**
   * Sets the current version's immutability policy (Set Blob Immutability Policy: one request).
   * Azure lets a Locked policy only be extended; callers extend only.
   */
  async putRetention(h: FileHandle, retention: ObjectRetention, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const blob = (await this.#client()).getBlobClient(this.keyOf(h));
    try {
      await blob.setImmutabilityPolicy(toAzurePolicy(retention), { abortSignal: options.signal });
    } catch (err) {
      throw this.toStowage(err, 'set retention of', file, options.signal);
    }
  }

  /**
   * A read-only view of the repository as it was at `asOf`, from blob versions (the account needs
   * blob versioning): each file is its newest version created at or before the instant. Azure's
   * version listing does not say when a blob was deleted, so a file deleted before the instant
   * still shows its last version in the view. See {@link VersionsAsOfView} and docs/immutability.md.
   */
  viewAsOf(asOf: Date, options: { closeBackend?: boolean } = {}): VersionsAsOfView {
    const view = versionSource(this, {
      keyOf: (h) => this.keyOf(h),
      listVersions: (keyPrefix, signal) => this.listVersions(keyPrefix, signal),
      loadVersion: (h, versionId, o) => this.loadBlob(h, o, versionId),
    });
    return new VersionsAsOfView(view, asOf, options);
  }

  /** Every version under `keyPrefix` (List Blobs with include=versions), at the time its version ID names. */
  private async *listVersions(keyPrefix: string, signal: AbortSignal | undefined): AsyncGenerator<ListedVersion> {
    const container = await this.#client();
    const pages = container.listBlobsFlat({ prefix: keyPrefix, includeVersions: true, abortSignal: signal }).byPage({ maxPageSize: LIST_PAGE_SIZE });
    const all: ListedVersion[] = [];
    while (true) {
      let page: IteratorResult<AzureBlob.ContainerListBlobFlatSegmentResponse>;
      try {
        page = await pages.next();
      } catch (err) {
        if (statusOf(err) === 404) return;
        throw this.toStowage(err, 'list versions', keyPrefix || '/', signal);
      }
      if (page.done) break;
      for (const item of page.value.segment.blobItems) {
        // A version ID is the time the version was made (RFC 3339, 100 ns).
        const time = item.versionId ? Date.parse(item.versionId) : Number.NaN;
        if (!item.versionId || !Number.isFinite(time)) continue;
        all.push({ key: item.name, versionId: item.versionId, lastModified: new Date(time), size: item.properties.contentLength ?? 0, deleted: false });
      }
    }
    // Newest first per name (version IDs sort by time), as the view wants them.
    all.sort((a, b) => (a.key !== b.key ? (a.key < b.key ? -1 : 1) : a.versionId < b.versionId ? 1 : a.versionId > b.versionId ? -1 : 0));
    yield* all;
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const container = await this.#client();
    try {
      const props = await container.getProperties({ abortSignal: options.signal });
      if (this.#immutability && props.isImmutableStorageWithVersioningEnabled !== true) {
        throw new ObjectLockError(
          `container ${this.container} (${this.location}) does not support version-level immutability; immutability needs a container with it (enable it in the portal, az CLI or ARM, with blob versioning on the account)`,
          { bucket: this.container },
        );
      }
      return;
    } catch (err) {
      if (err instanceof ObjectLockError) throw err;
      const status = statusOf(err);
      // A SAS scoped to the container may not read its properties (403 Authorization…): the
      // container exists then, or later calls fail with a clear error (restic does the same).
      // A bad key or signature (403 AuthenticationFailed) is reported here.
      if (status === 403 && errorCodeOf(err) !== 'AuthenticationFailed') return;
      if (status !== 404) throw this.toStowage(err, 'create', `container ${this.container}`, options.signal);
    }
    if (this.#immutability) {
      throw new ObjectLockError(
        `container ${this.container} (${this.location}) does not exist; immutability needs a container with version-level immutability, which the blob API cannot create (use the portal, az CLI or ARM)`,
        { bucket: this.container },
      );
    }
    try {
      await container.create({ abortSignal: options.signal });
    } catch (err) {
      // Someone else created it in between.
      if (statusOf(err) === 409) return;
      throw this.toStowage(err, 'create', `container ${this.container}`, options.signal);
    }
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    await this.upload(h, file, data.length, options.signal, {
      body: (start, length) => data.subarray(start, start + length),
      md5: async (start, length) => createHash('md5').update(data.subarray(start, start + length)).digest(),
    });
  }

  /**
   * Stores a local file as `save` stores bytes, without holding it whole: each request (one Put
   * Blob, or above `singlePutThreshold` each staged block) has its Content-MD5 computed in a
   * first pass over its range of the file, then sends that range as it is read. A file that does
   * not hold `file.size` bytes is an IntegrityError and nothing is stored.
   */
  async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    await uploadFromFile(local, file, options.signal, (stream, signal) =>
      this.upload(h, file, local.size, signal, {
        body: (start, length) => () => stream({ start, length }),
        md5: async (start, length) => (await localFileDigests(local, file, ['md5'], { start, length, signal })).digests[0]!,
      }),
    );
  }

  /** One Put Blob, or staged blocks above the threshold, of `size` bytes that `source` gives by range. */
  private async upload(h: FileHandle, file: string, size: number, signal: AbortSignal | undefined, source: UploadSource): Promise<void> {
    const blob = (await this.#client()).getBlockBlobClient(this.keyOf(h));
    throwIfAborted(signal);
    const tier = this.tierFor(h);
    const blobHTTPHeaders = { blobContentType: 'application/octet-stream' };
    const retention = this.uploadRetention(h);
    const immutabilityPolicy = retention ? toAzurePolicy(retention) : undefined;
    try {
      if (size <= this.#singlePutThreshold) {
        // One Put Blob; the service checks the MD5 against the bytes it received.
        // The SDK passes transactionalContentMD5 through (as Content-MD5) but its typings omit it.
        // A mismatch is refused with 400 Md5Mismatch, transient.
        const uploadOptions: AzureBlob.BlockBlobUploadOptions & { transactionalContentMD5: Uint8Array | undefined } = {
          abortSignal: signal,
          tier,
          blobHTTPHeaders,
          immutabilityPolicy,
          transactionalContentMD5: this.#checksums ? await source.md5(0, size) : undefined,
        };
        await blob.upload(source.body(0, size), size, uploadOptions);
      } else {
        await this.stageAndCommit(blob, size, source, { signal, tier, blobHTTPHeaders, immutabilityPolicy });
      }
    } catch (err) {
      throw this.toStowage(err, 'save', file, signal);
    }
  }

  /**
   * A large file as staged blocks, one after another, each with its Content-MD5 (the service
   * refuses a damaged block, 400 Md5Mismatch, transient), then one Put Block List that makes the
   * blob appear. Blocks never committed are dropped by the service after a week.
   */
  private async stageAndCommit(
    blob: AzureBlob.BlockBlobClient,
    size: number,
    source: UploadSource,
    o: { signal: AbortSignal | undefined; tier: AzureBlob.BlockBlobTier | undefined; blobHTTPHeaders: AzureBlob.BlobHTTPHeaders; immutabilityPolicy: AzureBlob.BlobImmutabilityPolicy | undefined },
  ): Promise<void> {
    const blockSize = Math.max(Math.min(this.#singlePutThreshold, MAX_BLOCK), Math.ceil(size / MAX_BLOCKS));
    // Block IDs must all have the same length (before base64); a random run tag keeps a retry's
    // blocks apart from a failed attempt's.
    const run = randomBytes(8).toString('hex');
    const ids: string[] = [];
    for (let start = 0; start < size; start += blockSize) {
      throwIfAborted(o.signal);
      const length = Math.min(blockSize, size - start);
      const id = Buffer.from(`${run}-${String(ids.length).padStart(6, '0')}`).toString('base64');
      // Each block is read (and its digest computed) only when it is sent.
      await blob.stageBlock(id, source.body(start, length), length, {
        abortSignal: o.signal,
        transactionalContentMD5: this.#checksums ? await source.md5(start, length) : undefined,
      });
      ids.push(id);
    }
    throwIfAborted(o.signal);
    await blob.commitBlockList(ids, { abortSignal: o.signal, tier: o.tier, blobHTTPHeaders: o.blobHTTPHeaders, immutabilityPolicy: o.immutabilityPolicy });
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    return this.loadBlob(h, options, undefined);
  }

  /** Reads the current blob, or one version of it (x-ms-version-id… as the versionid query). */
  private async loadBlob(h: FileHandle, options: LoadOptions, versionId: string | undefined): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    const current = (await this.#client()).getBlobClient(this.keyOf(h));
    const blob = versionId === undefined ? current : current.withVersion(versionId);
    const { offset, length } = await sdkRange(options, file, () => this.stat(h, options));
    if (length === 0) return new Uint8Array(0);
    try {
      const res = await blob.download(offset, length, { abortSignal: options.signal, maxRetryRequests: 0 });
      const expected = length ?? res.contentLength;
      if (expected === undefined) throw new IntegrityError('the service sent no content length', { file });
      // A range that runs past the end comes back shorter (206 with fewer bytes).
      if (length !== undefined && res.contentLength !== undefined && res.contentLength < length) {
        throw pastEnd(offset, length, res.contentLength, file);
      }
      const body = res.readableStreamBody as Readable | undefined;
      if (!body) throw new IntegrityError('the service sent no body', { file });
      const bytes = await readExactly(body, expected, offset, file, options.signal);
      // A whole blob comes with the MD5 stored at upload (when the uploader sent one): check it.
      if (length === undefined && res.contentMD5 !== undefined && !Buffer.from(res.contentMD5).equals(createHash('md5').update(bytes).digest())) {
        throw new IntegrityError('the downloaded bytes do not match the stored MD5', { file });
      }
      return bytes;
    } catch (err) {
      throw this.toStowage(err, 'load', file, options.signal);
    }
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    const file = startCall(h, options.signal);
    const blob = (await this.#client()).getBlobClient(this.keyOf(h));
    try {
      const props = await blob.getProperties({ abortSignal: options.signal });
      if (props.contentLength === undefined) throw new IntegrityError('the service sent no content length', { file });
      return fileInfo(h, props.contentLength);
    } catch (err) {
      throw this.toStowage(err, 'stat', file, options.signal);
    }
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') return yield* listConfig(() => this.stat({ type, name: 'config' }, options));
    const container = await this.#client();
    const folder = underPrefix(this.prefix, `${type}/`);
    const pages = container.listBlobsFlat({ prefix: folder, abortSignal: options.signal }).byPage({ maxPageSize: LIST_PAGE_SIZE });
    while (true) {
      let page: IteratorResult<AzureBlob.ContainerListBlobFlatSegmentResponse>;
      try {
        page = await pages.next();
      } catch (err) {
        // No container yet: no repository files either.
        if (statusOf(err) === 404) return;
        throw this.toStowage(err, 'list', folder || '/', options.signal);
      }
      if (page.done) return;
      throwIfAborted(options.signal);
      for (const item of page.value.segment.blobItems) {
        const name = item.name.slice(item.name.lastIndexOf('/') + 1);
        // Only files exactly where restic's layout puts them (data/ab/ab…, not data/ab…).
        if (!isIdName(name) || item.name !== this.keyOf({ type, name })) continue;
        yield { name, size: item.properties.contentLength ?? 0 };
      }
    }
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const blob = (await this.#client()).getBlobClient(this.keyOf(h));
    try {
      await blob.delete({ abortSignal: options.signal });
    } catch (err) {
      throw this.toStowage(err, 'remove', file, options.signal);
    }
  }

  async close(): Promise<void> {
    // The SDK's keep-alive sockets close on their own when idle.
  }

  /** The blob name of a file: the prefix joined with restic's layout path. */
  private keyOf(h: FileHandle): string {
    return prefixedKey(this.prefix, h);
  }

  private tierFor(h: FileHandle): AzureBlob.BlockBlobTier | undefined {
    const tier = this.#opts.accessTier;
    if (tier === undefined || (tier === 'Archive' && h.type !== 'data')) return undefined;
    return tier as AzureBlob.BlockBlobTier;
  }

  private async makeContainerClient(): Promise<AzureBlob.ContainerClient> {
    const az = await loadAzure();
    const o = this.#opts;
    // No retries here: the retry wrapper above the backend decides, with its own backoff.
    // `agent` is passed on to the HTTP pipeline, though the storage typings do not list it.
    const pipelineOptions: AzureBlob.StoragePipelineOptions & { agent?: HttpsAgent } = { retryOptions: { maxTries: 1 } };
    if (o.caCert !== undefined || o.insecureTls) {
      pipelineOptions.agent = new (nodeHttps().Agent)({ keepAlive: true, ca: o.caCert, rejectUnauthorized: !o.insecureTls });
    }
    let service: AzureBlob.BlobServiceClient;
    try {
      if (o.connectionString !== undefined) {
        service = az.BlobServiceClient.fromConnectionString(o.connectionString, pipelineOptions);
      } else if (o.accountKey !== undefined) {
        const key = new az.StorageSharedKeyCredential(o.accountName!, o.accountKey);
        service = new az.BlobServiceClient(this.serviceUrl(), key, pipelineOptions);
      } else if (o.sasToken !== undefined) {
        const sas = o.sasToken.replace(/^\?/, '');
        service = new az.BlobServiceClient(`${this.serviceUrl()}?${sas}`, new az.AnonymousCredential(), pipelineOptions);
      } else {
        service = new az.BlobServiceClient(this.serviceUrl(), o.credential as never, pipelineOptions);
      }
    } catch (err) {
      // E.g. a malformed connection string or a key that is not base64; the text may quote it.
      throw new InvalidInputError(`Azure backend ${this.location}: invalid credentials or endpoint: ${this.redact(errorMessage(err))}`);
    }
    return service.getContainerClient(this.container);
  }

  /** The blob service URL without credentials. */
  private serviceUrl(): string {
    const o = this.#opts;
    if (o.endpoint) return o.endpoint.replace(/\/+$/, '');
    return `https://${o.accountName}.blob.${o.endpointSuffix || 'core.windows.net'}`;
  }

  /** The service URL as shown in `location`: no query string (a SAS), no user info. */
  private serviceUrlForDisplay(): string {
    const o = this.#opts;
    if (o.connectionString !== undefined) {
      const fields = parseConnectionString(o.connectionString);
      const blobEndpoint = fields.get('blobendpoint');
      if (blobEndpoint) return stripUrlSecrets(blobEndpoint).replace(/\/+$/, '');
      const account = fields.get('accountname');
      if (!account) return '';
      const protocol = fields.get('defaultendpointsprotocol') || 'https';
      return `${protocol}://${account}.blob.${fields.get('endpointsuffix') || 'core.windows.net'}`;
    }
    return stripUrlSecrets(this.serviceUrl());
  }

  private redact(text: string): string {
    return maskSecrets(text, this.#secrets).replace(/([?&](?:sig|se|sv|sp|st|spr|srt|ss|sr|skoid|sktid|skt|ske|sks|skv|saoid|suoid|scid)=)[^&\s"']*/gi, '$1***');
  }

  /**
   * Turns an SDK error into a StowageError naming the operation and file: 404 → NotFoundError,
   * 416 → IntegrityError, 408/429/5xx and network failures → transient BackendError.
   */
  private toStowage(err: unknown, op: string, file: string, signal: AbortSignal | undefined): StowageError {
    if (err instanceof StowageError) return err;
    if (signal?.aborted || (err as Error)?.name === 'AbortError') return new AbortedError();
    const status = statusOf(err);
    const code = errorCodeOf(err);
    if (status === 404 && op !== 'save' && op !== 'create' && op !== 'list') return new NotFoundError(file);
    if (status === 416) return new IntegrityError('the requested range is past the end of the file', { file });
    // Answers to HEAD requests have no body, so no text: the status and error code say it all.
    const detail = this.redact(firstLine(errorMessage(err))) || 'no details from the service';
    const label = [status, code].filter((v) => v !== undefined).join(' ');
    const message = `${op} ${file} (in ${this.location}): ${label ? `${label}: ` : ''}${detail}`;
    const cause = Object.assign(new Error(message), { code, statusCode: status });
    return new BackendError(message, { transient: isTransient(status, code, detail), status, cause });
  }
}

/** Reads a response body of exactly `expected` bytes; fewer means the stored file is damaged. */
async function readExactly(body: Readable, expected: number, offset: number, file: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const out = new Uint8Array(expected);
  let done = 0;
  const onAbort = (): void => {
    body.destroy(new AbortedError());
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (done + chunk.length > expected) throw new IntegrityError(`the service sent more than the ${expected} bytes asked for`, { file });
      out.set(chunk, done);
      done += chunk.length;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  throwIfAborted(signal);
  if (done < expected) throw new IntegrityError(`unexpected end of file at byte ${offset + done} while reading`, { file });
  return out;
}

function pastEnd(offset: number, length: number, got: number, file: string): IntegrityError {
  return new IntegrityError(`range ${offset}+${length} is past the end of the file (only ${got} bytes there)`, { file });
}

/** Azure container names: 3–63 lowercase letters, digits and single dashes, starting with a letter or digit. */
function checkContainerName(name: unknown): string {
  if (typeof name !== 'string' || !/^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$/.test(name)) {
    throw new InvalidInputError(`Azure container name ${JSON.stringify(name)?.slice(0, 80)} is not valid (3-63 lowercase letters, digits and dashes)`);
  }
  return name;
}

function parseConnectionString(cs: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of cs.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return fields;
}

/** Every credential string of the options, so they can be cut out of SDK messages. */
function secretParts(opts: AzureBackendOptions): string[] {
  const out: string[] = [];
  const add = (s: string | undefined): void => {
    if (s && s.length >= 4) out.push(s);
  };
  add(opts.accountKey);
  add(opts.sasToken?.replace(/^\?/, ''));
  if (opts.connectionString !== undefined) {
    const fields = parseConnectionString(opts.connectionString);
    add(fields.get('accountkey'));
    add(fields.get('sharedaccesssignature'));
  }
  return out;
}

/** The service's error code ("BlobNotFound", "AuthorizationFailure", …) or the SDK's ("REQUEST_SEND_ERROR"). */
function errorCodeOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; response?: { headers?: { get?(name: string): string | undefined } } } | null;
  if (typeof e?.code === 'string' && e.code !== '') return e.code;
  const header = e?.response?.headers?.get?.('x-ms-error-code');
  return typeof header === 'string' && header !== '' ? header : undefined;
}

/** GOVERNANCE → Azure's Unlocked policy mode, COMPLIANCE → Locked. */
function toAzurePolicy(r: ObjectRetention): AzureBlob.BlobImmutabilityPolicy {
  if (r.mode !== 'GOVERNANCE' && r.mode !== 'COMPLIANCE') throw new InvalidInputError(`retention mode must be GOVERNANCE or COMPLIANCE, got ${JSON.stringify(r.mode)}`);
  if (!(r.retainUntil instanceof Date) || !Number.isFinite(r.retainUntil.getTime())) throw new InvalidInputError('retainUntil must be a valid Date');
  return { expiriesOn: r.retainUntil, policyMode: r.mode === 'GOVERNANCE' ? 'Unlocked' : 'Locked' };
}

function statusOf(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' && status > 0 ? status : undefined;
}

function isTransient(status: number | undefined, code: unknown, message: string): boolean {
  // A refused checksum passes when the bytes are sent again: Azure answers 400 Md5Mismatch,
  // azurite 400 InvalidOperation "Provided contentMD5 doesn't match.".
  if (status === 400 && /contentMD5 doesn't match|MD5 value specified in the request did not match/i.test(message)) return true;
  if (status !== undefined) return transient.status(status) || transient.code(code);
  // A certificate the client does not trust stays untrusted however often it is tried.
  if (/certificate|self[- ]signed|CERT_|SSL|TLS/i.test(message)) return false;
  return transient.code(code);
}

/** The bytes of an upload by range (a buffer's, or a stream of a local file's range read as sent) and their MD5. */
interface UploadSource {
  body(start: number, length: number): Uint8Array | (() => Readable);
  md5(start: number, length: number): Promise<Uint8Array>;
}
