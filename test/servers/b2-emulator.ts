// An HTTP emulator of Backblaze B2's native API, version 2 (the version backblaze-b2 1.7.x
// calls), on 127.0.0.1. No B2 server can be run locally and restic's b2 backend has its
// endpoint built in, so this is what the B2 backend is tested against. It follows Backblaze's
// API documentation: request and response fields, percent-encoded names, SHA-1 checks,
// versions and hide markers, paging, Range downloads, application key restrictions, and
// errors as {status, code, message} with B2's codes. Test hooks add faults: tokens that
// expire after N calls, upload URLs that answer 503.
//
// File Lock (Object Lock in B2's newer documents) as B2's native API documents it: a bucket created
// with fileLockEnabled (or enabled once by b2_update_bucket), its defaultRetention (mode and a
// period in days or years, applied to uploads that name none); an upload's retention in the
// X-Bz-File-Retention-Mode and X-Bz-File-Retention-Retain-Until-Timestamp headers (milliseconds);
// fileRetention in every file answer and the same two headers on downloads; b2_update_file_retention
// (a compliance retention can only be extended, a governance one shortened or removed only with
// bypassGovernance and that capability); b2_delete_file_version refused while a version is retained
// (401 access_denied, as b2sdk's own simulator answers; not checked against B2). Uploading a new
// version and hiding a name stay allowed: the retained version stays.
//
// Not emulated: large files (b2_start_large_file…), b2_copy_file, keys management, CORS,
// lifecycle rules, legal holds, server-side encryption, the v1 and v3 API paths.

import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface B2EmulatorKey {
  keyId: string;
  key: string;
  /** Restricts the key to one bucket (by name); the bucket need not exist yet. */
  bucketName?: string;
  /** Restricts the key to file names starting with this. */
  namePrefix?: string;
  /** Default: every capability. */
  capabilities?: string[];
}

export interface B2EmulatorOptions {
  /** Keys the emulator accepts. Default: one master key. */
  keys?: B2EmulatorKey[];
}

export interface StoredVersion {
  fileId: string;
  fileName: string;
  action: 'upload' | 'hide';
  contentLength: number;
  contentSha1: string | null;
  contentType: string;
  fileInfo: Record<string, string>;
  uploadTimestamp: number;
  data: Buffer;
  /** The version's File Lock retention (mode as B2 spells it), or null. */
  retention: FileRetention | null;
}

export interface FileRetention {
  mode: 'governance' | 'compliance';
  /** Milliseconds since the epoch. */
  retainUntilTimestamp: number;
}

export interface B2Emulator {
  /** Base URL, also the apiUrl and downloadUrl it hands out. */
  url: string;
  /** Where b2_authorize_account is (pass as backblaze-b2's axiosOverride url). */
  authorizeUrl: string;
  accountId: string;
  /** The master key (all buckets, all capabilities). */
  keyId: string;
  key: string;
  /** Calls answered, by operation name ("b2_upload_file", "download", …), including refused ones. */
  calls: Record<string, number>;
  /** Every version of every file of a bucket, newest first per name (a copy). */
  versions(bucketName: string): StoredVersion[];
  /** From now on, each account token answers `n` calls and then fails with expired_auth_token (undefined: never). */
  expireTokensAfter(n: number | undefined): void;
  /** Every account and upload token issued so far expires now. */
  expireAllTokens(): void;
  /** The next `n` uploads fail with 503 service_unavailable, and their upload URLs stop working. */
  failNextUploads(n?: number): void;
  /** Flips one stored byte of a file's latest version, keeping its recorded SHA-1 (bit rot). */
  corrupt(bucketName: string, fileName: string): void;
  /**
   * The apiUrl, downloadUrl and upload URLs handed out from now on point at `url` (e.g. a proxy
   * in front of the emulator, on 127.0.0.1); undefined: the emulator's own URL again.
   */
  advertise(url: string | undefined): void;
  stop(): Promise<void>;
}

const ALL_CAPABILITIES = [
  'listKeys',
  'writeKeys',
  'deleteKeys',
  'listBuckets',
  'listAllBucketNames',
  'readBuckets',
  'writeBuckets',
  'deleteBuckets',
  'listFiles',
  'readFiles',
  'shareFiles',
  'writeFiles',
  'deleteFiles',
  'readBucketRetentions',
  'writeBucketRetentions',
  'readFileRetentions',
  'writeFileRetentions',
  'bypassGovernance',
];

const API = '/b2api/v2/';
const MAX_INFO_HEADERS = 10;
const DEFAULT_MAX_FILE_COUNT = 100;
const MAX_FILE_COUNT = 10_000;

interface Bucket {
  bucketId: string;
  bucketName: string;
  bucketType: string;
  /** File name → versions, newest first. */
  files: Map<string, StoredVersion[]>;
  /** Names in B2's order (UTF-8 bytes), rebuilt after a change. */
  sorted: string[] | undefined;
  revision: number;
  fileLockEnabled: boolean;
  defaultRetention: { mode: 'governance' | 'compliance'; period: { duration: number; unit: 'days' | 'years' } } | null;
}

interface AccountToken {
  key: B2EmulatorKey;
  callsLeft: number | undefined;
  expired: boolean;
}

interface UploadToken {
  bucketId: string;
  pod: string;
  key: B2EmulatorKey;
  expired: boolean;
  /** Set after a 503: this URL no longer takes uploads. */
  retired: boolean;
}

/** A B2 error, answered as {status, code, message}. */
class B2Failure extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The parsed JSON body of a request: any, because checking it is the emulator's job.
type Json = any;

export async function startB2Emulator(opts: B2EmulatorOptions = {}): Promise<B2Emulator> {
  const accountId = randomBytes(6).toString('hex');
  const master: B2EmulatorKey = { keyId: `000${accountId}0000000001`, key: `K000${randomBytes(15).toString('base64url')}` };
  const keys = opts.keys ?? [master];
  const buckets = new Map<string, Bucket>(); // by bucketId
  const accountTokens = new Map<string, AccountToken>();
  const uploadTokens = new Map<string, UploadToken>();
  const calls: Record<string, number> = {};
  let tokenCallLimit: number | undefined;
  let failUploads = 0;
  let fileCounter = 0;
  let base = '';
  let advertised: string | undefined;

  const count = (op: string): void => {
    calls[op] = (calls[op] ?? 0) + 1;
  };

  // ---- authorization ----

  function authorizeAccount(req: IncomingMessage): Json {
    const header = req.headers.authorization;
    const m = header ? /^Basic\s+(\S+)$/i.exec(header) : null;
    if (!m) throw new B2Failure(401, 'bad_auth_token', 'Authorization header must be Basic with the application key ID and key');
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const keyId = decoded.slice(0, colon);
    const secret = decoded.slice(colon + 1);
    const key = keys.find((k) => (k.keyId === keyId || (k === master && keyId === accountId)) && k.key === secret);
    if (colon < 0 || !key) throw new B2Failure(401, 'unauthorized', 'The applicationKeyId and/or the applicationKey are wrong.');
    const token = `4_${accountId}_${randomBytes(16).toString('hex')}_acct`;
    accountTokens.set(token, { key, callsLeft: tokenCallLimit, expired: false });
    const restricted = key.bucketName ? findBucketByName(key.bucketName) : undefined;
    return {
      accountId,
      authorizationToken: token,
      apiUrl: advertised ?? base,
      downloadUrl: advertised ?? base,
      s3ApiUrl: advertised ?? base,
      recommendedPartSize: 100_000_000,
      absoluteMinimumPartSize: 5_000_000,
      allowed: {
        capabilities: key.capabilities ?? ALL_CAPABILITIES,
        bucketId: key.bucketName ? (restricted?.bucketId ?? null) : null,
        bucketName: key.bucketName ?? null,
        namePrefix: key.namePrefix ?? null,
      },
    };
  }

  /** The key behind an account token, after counting the call against the token's budget. */
  function checkAccountToken(req: IncomingMessage, url: URL): B2EmulatorKey {
    const token = req.headers.authorization ?? url.searchParams.get('Authorization') ?? undefined;
    if (!token) throw new B2Failure(401, 'missing_auth_token', 'Authorization token is missing');
    const entry = accountTokens.get(token);
    if (!entry) throw new B2Failure(401, 'bad_auth_token', 'Invalid authorization token');
    if (!entry.expired && entry.callsLeft !== undefined) {
      if (entry.callsLeft <= 0) entry.expired = true;
      else entry.callsLeft--;
    }
    if (entry.expired) throw new B2Failure(401, 'expired_auth_token', 'Authorization token has expired');
    return entry.key;
  }

  function requireCapability(key: B2EmulatorKey, capability: string): void {
    if (!(key.capabilities ?? ALL_CAPABILITIES).includes(capability)) {
      throw new B2Failure(401, 'unauthorized', `application key does not have the ${capability} capability`);
    }
  }

  function requireBucketAccess(key: B2EmulatorKey, bucket: Bucket): void {
    if (key.bucketName && key.bucketName !== bucket.bucketName) {
      throw new B2Failure(401, 'unauthorized', `application key is restricted to bucket ${key.bucketName}`);
    }
  }

  function requireNamePrefix(key: B2EmulatorKey, name: string): void {
    if (key.namePrefix && !name.startsWith(key.namePrefix)) {
      throw new B2Failure(401, 'unauthorized', `application key is restricted to file names starting with ${key.namePrefix}`);
    }
  }

  // ---- buckets ----

  function findBucketByName(name: string): Bucket | undefined {
    for (const b of buckets.values()) if (b.bucketName === name) return b;
    return undefined;
  }

  function bucketById(id: unknown, code = 'bad_bucket_id'): Bucket {
    if (typeof id !== 'string' || id === '') throw new B2Failure(400, 'bad_request', 'required field bucketId is missing');
    const b = buckets.get(id);
    if (!b) throw new B2Failure(400, code, `Invalid bucketId: ${id}`);
    return b;
  }

  function bucketJson(b: Bucket): Json {
    return {
      accountId,
      bucketId: b.bucketId,
      bucketName: b.bucketName,
      bucketType: b.bucketType,
      bucketInfo: {},
      corsRules: [],
      defaultServerSideEncryption: { isClientAuthorizedToRead: true, value: { algorithm: null, mode: null } },
      fileLockConfiguration: { isClientAuthorizedToRead: true, value: { defaultRetention: b.defaultRetention ?? { mode: null, period: null }, isFileLockEnabled: b.fileLockEnabled } },
      lifecycleRules: [],
      options: ['s3'],
      replicationConfiguration: { isClientAuthorizedToRead: true, value: null },
      revision: b.revision,
    };
  }

  function checkAccountId(body: Json): void {
    if (typeof body?.accountId !== 'string') throw new B2Failure(400, 'bad_request', 'required field accountId is missing');
    if (body.accountId !== accountId) throw new B2Failure(401, 'unauthorized', `accountId ${body.accountId} does not match the authorization token`);
  }

  // ---- files ----

  function sortedNames(b: Bucket): string[] {
    b.sorted ??= [...b.files.keys()].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    return b.sorted;
  }

  function fileJson(b: Bucket, v: StoredVersion | { folder: string }): Json {
    if ('folder' in v) {
      return { accountId, action: 'folder', bucketId: b.bucketId, contentLength: 0, contentMd5: null, contentSha1: null, contentType: null, fileId: null, fileInfo: {}, fileName: v.folder, fileRetention: null, legalHold: null, replicationStatus: null, serverSideEncryption: null, uploadTimestamp: 0 };
    }
    return {
      accountId,
      action: v.action,
      bucketId: b.bucketId,
      contentLength: v.contentLength,
      contentMd5: v.action === 'upload' ? createHash('md5').update(v.data).digest('hex') : null,
      contentSha1: v.contentSha1,
      contentType: v.contentType,
      fileId: v.fileId,
      fileInfo: v.fileInfo,
      fileName: v.fileName,
      fileRetention: { isClientAuthorizedToRead: true, value: b.fileLockEnabled ? (v.retention ? { ...v.retention } : { mode: null, retainUntilTimestamp: null }) : null },
      legalHold: { isClientAuthorizedToRead: true, value: null },
      replicationStatus: null,
      serverSideEncryption: { algorithm: null, mode: null },
      uploadTimestamp: v.uploadTimestamp,
    };
  }

  function newFileId(b: Bucket): string {
    const n = (++fileCounter).toString(16).padStart(16, '0');
    const d = new Date();
    const date = d.toISOString().slice(0, 10).replace(/-/g, '');
    const time = d.toISOString().slice(11, 19).replace(/:/g, '');
    return `4_z${b.bucketId}_f${n}_d${date}_m${time}_c000_v0001000_t0000_u01${d.getTime()}`;
  }

  function addVersion(b: Bucket, v: StoredVersion): void {
    const list = b.files.get(v.fileName);
    if (list) list.unshift(v);
    else {
      b.files.set(v.fileName, [v]);
      b.sorted = undefined;
    }
  }

  function findVersion(fileId: unknown): { bucket: Bucket; version: StoredVersion } | undefined {
    if (typeof fileId !== 'string') return undefined;
    for (const bucket of buckets.values()) {
      for (const list of bucket.files.values()) {
        const version = list.find((v) => v.fileId === fileId);
        if (version) return { bucket, version };
      }
    }
    return undefined;
  }

  /** maxFileCount as B2 reads it: absent or 0 → 100, at most 10000. */
  function maxCount(value: unknown): number {
    if (value === undefined || value === null) return DEFAULT_MAX_FILE_COUNT;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > MAX_FILE_COUNT) throw new B2Failure(400, 'out_of_range', `maxFileCount out of range: ${String(value)}`);
    return n === 0 ? DEFAULT_MAX_FILE_COUNT : n;
  }

  function optionalString(body: Json, field: string): string | undefined {
    const v = body?.[field];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new B2Failure(400, 'bad_request', `${field} must be a string`);
    return v;
  }

  /**
   * Walks names from startFileName on, with prefix and delimiter, calling `take` for each entry
   * (a name or a folder) until it returns false. Returns the name to continue with, or null.
   */
  function walkNames(b: Bucket, start: string | undefined, prefix: string, delimiter: string | undefined, take: (entry: { name: string } | { folder: string }) => boolean): string | null {
    const names = sortedNames(b);
    const startBytes = start === undefined ? undefined : Buffer.from(start);
    let i = 0;
    if (startBytes) while (i < names.length && Buffer.compare(Buffer.from(names[i]!), startBytes) < 0) i++;
    while (i < names.length) {
      const name = names[i]!;
      if (!name.startsWith(prefix)) {
        if (Buffer.compare(Buffer.from(name), Buffer.from(prefix)) > 0) return null;
        i++;
        continue;
      }
      const cut = delimiter ? name.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) {
        const folder = name.slice(0, cut + delimiter!.length);
        if (!take({ folder })) return folder;
        // The folder stands for every name inside it.
        while (i < names.length && names[i]!.startsWith(folder)) i++;
        continue;
      }
      if (!take({ name })) return name;
      i++;
    }
    return null;
  }

  // ---- operations ----

  type Handler = (req: IncomingMessage, url: URL, body: Json) => Json;

  const ops: Record<string, Handler> = {
    b2_list_buckets(req, url, body) {
      const key = checkAccountToken(req, url);
      checkAccountId(body);
      const byId = optionalString(body, 'bucketId');
      const byName = optionalString(body, 'bucketName');
      if (key.bucketName) {
        // A restricted key must name its bucket (B2 answers 401 otherwise).
        const asked = byName ?? (byId ? buckets.get(byId)?.bucketName : undefined);
        if (asked !== key.bucketName) throw new B2Failure(401, 'unauthorized', `application key is restricted to bucket ${key.bucketName}; name it with bucketName or bucketId`);
      } else {
        requireCapability(key, 'listBuckets');
      }
      const types: unknown = body?.bucketTypes;
      const list = [...buckets.values()].filter(
        (b) => (!byId || b.bucketId === byId) && (!byName || b.bucketName === byName) && (!Array.isArray(types) || types.includes('all') || types.includes(b.bucketType)),
      );
      return { buckets: list.map(bucketJson) };
    },

    b2_create_bucket(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'writeBuckets');
      if (key.bucketName) throw new B2Failure(401, 'unauthorized', 'application key is restricted to a bucket and cannot create buckets');
      checkAccountId(body);
      const name: unknown = body?.bucketName;
      if (typeof name !== 'string' || !/^[A-Za-z0-9-]{6,63}$/.test(name) || name.toLowerCase().startsWith('b2-')) {
        throw new B2Failure(400, 'bad_request', `Invalid bucketName: ${JSON.stringify(name)} (6 to 63 letters, digits and "-", not starting with "b2-")`);
      }
      if (body.bucketType !== 'allPrivate' && body.bucketType !== 'allPublic') throw new B2Failure(400, 'bad_request', 'bucketType must be allPrivate or allPublic');
      if (findBucketByName(name)) throw new B2Failure(400, 'duplicate_bucket_name', 'Bucket name is already in use.');
      if (body.fileLockEnabled !== undefined && typeof body.fileLockEnabled !== 'boolean') throw new B2Failure(400, 'bad_request', 'fileLockEnabled must be a boolean');
      const bucket: Bucket = {
        bucketId: randomBytes(12).toString('hex'), bucketName: name, bucketType: body.bucketType, files: new Map(), sorted: undefined, revision: 1,
        fileLockEnabled: body.fileLockEnabled === true, defaultRetention: null,
      };
      buckets.set(bucket.bucketId, bucket);
      return bucketJson(bucket);
    },

    b2_update_bucket(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'writeBuckets');
      checkAccountId(body);
      const bucket = bucketById(body?.bucketId);
      requireBucketAccess(key, bucket);
      if (body.ifRevisionIs !== undefined && Number(body.ifRevisionIs) !== bucket.revision) throw new B2Failure(409, 'conflict', `revision is ${bucket.revision}, not ${body.ifRevisionIs}`);
      if (body.fileLockEnabled !== undefined) {
        if (body.fileLockEnabled !== true) throw new B2Failure(400, 'bad_request', 'File Lock cannot be disabled once enabled');
        bucket.fileLockEnabled = true;
      }
      if (body.defaultRetention !== undefined) {
        requireCapability(key, 'writeBucketRetentions');
        if (!bucket.fileLockEnabled) throw new B2Failure(400, 'bad_request', 'defaultRetention needs a bucket with File Lock enabled');
        const d = body.defaultRetention;
        if (d === null || typeof d !== 'object') throw new B2Failure(400, 'bad_request', 'defaultRetention must be an object');
        if (d.mode === null || d.mode === undefined) bucket.defaultRetention = null;
        else {
          const duration = d.period?.duration;
          if ((d.mode !== 'governance' && d.mode !== 'compliance') || !Number.isInteger(duration) || duration <= 0 || (d.period.unit !== 'days' && d.period.unit !== 'years')) {
            throw new B2Failure(400, 'bad_request', 'defaultRetention needs mode governance or compliance and a period {duration: a positive integer, unit: days or years}');
          }
          bucket.defaultRetention = { mode: d.mode, period: { duration, unit: d.period.unit } };
        }
      }
      if (body.bucketType !== undefined) {
        if (body.bucketType !== 'allPrivate' && body.bucketType !== 'allPublic') throw new B2Failure(400, 'bad_request', 'bucketType must be allPrivate or allPublic');
        bucket.bucketType = body.bucketType;
      }
      bucket.revision++;
      return bucketJson(bucket);
    },

    b2_update_file_retention(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'writeFileRetentions');
      const fileName: unknown = body?.fileName;
      const fileId: unknown = body?.fileId;
      if (typeof fileName !== 'string' || typeof fileId !== 'string' || !fileName || !fileId) throw new B2Failure(400, 'bad_request', 'fileName and fileId are required');
      const found = findVersion(fileId);
      if (!found || found.version.fileName !== fileName) throw new B2Failure(400, 'file_not_present', `File not present: ${fileName} ${fileId}`);
      requireBucketAccess(key, found.bucket);
      requireNamePrefix(key, fileName);
      if (!found.bucket.fileLockEnabled) throw new B2Failure(400, 'bad_request', `File Lock is not enabled on bucket ${found.bucket.bucketName}`);
      if (found.version.action !== 'upload') throw new B2Failure(400, 'bad_request', 'a hide marker has no retention');
      const wanted = parseRetention(body.fileRetention?.mode, body.fileRetention?.retainUntilTimestamp, 'fileRetention');
      if (body.bypassGovernance !== undefined && typeof body.bypassGovernance !== 'boolean') throw new B2Failure(400, 'bad_request', 'bypassGovernance must be a boolean');
      const bypass = body.bypassGovernance === true;
      if (bypass) requireCapability(key, 'bypassGovernance');
      const now = Date.now();
      const current = found.version.retention;
      if (current && current.retainUntilTimestamp > now) {
        const shorter = !wanted || wanted.retainUntilTimestamp < current.retainUntilTimestamp;
        if (current.mode === 'compliance' && (shorter || wanted?.mode !== 'compliance')) {
          throw new B2Failure(401, 'access_denied', `${fileName} is under a compliance retention until ${current.retainUntilTimestamp}: it can only be extended`);
        }
        if (current.mode === 'governance' && shorter && !bypass) {
          throw new B2Failure(401, 'access_denied', `${fileName} is under a governance retention until ${current.retainUntilTimestamp}: shortening or removing it needs bypassGovernance`);
        }
      }
      found.version.retention = wanted;
      return { fileId, fileName, fileRetention: wanted ? { ...wanted } : { mode: null, retainUntilTimestamp: null } };
    },

    b2_delete_bucket(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'deleteBuckets');
      checkAccountId(body);
      const bucket = bucketById(body?.bucketId);
      requireBucketAccess(key, bucket);
      if (bucket.files.size > 0) throw new B2Failure(400, 'cannot_delete_non_empty_bucket', 'Bucket must be empty before it can be deleted');
      buckets.delete(bucket.bucketId);
      return bucketJson(bucket);
    },

    b2_get_upload_url(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'writeFiles');
      const bucket = bucketById(body?.bucketId);
      requireBucketAccess(key, bucket);
      const pod = `c000_v0001000_t${randomBytes(4).toString('hex')}`;
      const token = `4_${accountId}_${randomBytes(16).toString('hex')}_upld`;
      uploadTokens.set(token, { bucketId: bucket.bucketId, pod, key, expired: false, retired: false });
      return { bucketId: bucket.bucketId, uploadUrl: `${advertised ?? base}${API}b2_upload_file/${bucket.bucketId}/${pod}`, authorizationToken: token };
    },

    b2_list_file_names(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'listFiles');
      const bucket = bucketById(body?.bucketId, 'invalid_bucket_id');
      requireBucketAccess(key, bucket);
      const max = maxCount(body?.maxFileCount);
      const prefix = optionalString(body, 'prefix') ?? '';
      const delimiter = optionalString(body, 'delimiter');
      if (key.namePrefix && !prefix.startsWith(key.namePrefix)) requireNamePrefix(key, prefix);
      const files: Json[] = [];
      const next = walkNames(bucket, optionalString(body, 'startFileName'), prefix, delimiter, (entry) => {
        if ('folder' in entry) {
          if (files.length >= max) return false;
          files.push(fileJson(bucket, entry));
          return true;
        }
        const latest = bucket.files.get(entry.name)![0]!;
        // Hidden names are not listed.
        if (latest.action !== 'upload') return true;
        if (files.length >= max) return false;
        files.push(fileJson(bucket, latest));
        return true;
      });
      return { files, nextFileName: next };
    },

    b2_list_file_versions(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'listFiles');
      const bucket = bucketById(body?.bucketId, 'invalid_bucket_id');
      requireBucketAccess(key, bucket);
      const max = maxCount(body?.maxFileCount);
      const prefix = optionalString(body, 'prefix') ?? '';
      const delimiter = optionalString(body, 'delimiter');
      const startName = optionalString(body, 'startFileName');
      const startId = optionalString(body, 'startFileId');
      if (startId && startName === undefined) throw new B2Failure(400, 'bad_request', 'startFileName is required when startFileId is given');
      if (key.namePrefix && !prefix.startsWith(key.namePrefix)) requireNamePrefix(key, prefix);
      const files: Json[] = [];
      let nextFileId: string | null = null;
      const nextFileName = walkNames(bucket, startName, prefix, delimiter, (entry) => {
        if ('folder' in entry) {
          if (files.length >= max) return false;
          files.push(fileJson(bucket, entry));
          return true;
        }
        const versions = bucket.files.get(entry.name)!;
        let from = 0;
        if (startId && entry.name === startName) {
          const at = versions.findIndex((v) => v.fileId === startId);
          // An unknown ID on the start name: start after every version of it that sorts before (B2 orders IDs too).
          from = at >= 0 ? at : 0;
        }
        for (let j = from; j < versions.length; j++) {
          if (files.length >= max) {
            nextFileId = versions[j]!.fileId;
            return false;
          }
          files.push(fileJson(bucket, versions[j]!));
        }
        return true;
      });
      // A page that ended on a name boundary continues at the next name's first version.
      if (nextFileName !== null && nextFileId === null) nextFileId = bucket.files.get(nextFileName)?.[0]?.fileId ?? null;
      return { files, nextFileName, nextFileId };
    },

    b2_get_file_info(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'readFiles');
      if (typeof body?.fileId !== 'string' || body.fileId === '') throw new B2Failure(400, 'bad_request', 'required field fileId is missing');
      const found = findVersion(body.fileId);
      if (!found) throw new B2Failure(404, 'not_found', `File not present: ${body.fileId}`);
      requireBucketAccess(key, found.bucket);
      return fileJson(found.bucket, found.version);
    },

    b2_delete_file_version(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'deleteFiles');
      const fileName: unknown = body?.fileName;
      const fileId: unknown = body?.fileId;
      if (typeof fileName !== 'string' || typeof fileId !== 'string' || !fileName || !fileId) throw new B2Failure(400, 'bad_request', 'fileName and fileId are required');
      const found = findVersion(fileId);
      if (!found || found.version.fileName !== fileName) throw new B2Failure(400, 'file_not_present', `File not present: ${fileName} ${fileId}`);
      requireBucketAccess(key, found.bucket);
      requireNamePrefix(key, fileName);
      const retained = found.version.retention;
      if (retained && retained.retainUntilTimestamp > Date.now()) {
        if (body.bypassGovernance !== undefined && typeof body.bypassGovernance !== 'boolean') throw new B2Failure(400, 'bad_request', 'bypassGovernance must be a boolean');
        const bypass = body.bypassGovernance === true && retained.mode === 'governance';
        if (body.bypassGovernance === true) requireCapability(key, 'bypassGovernance');
        if (!bypass) throw new B2Failure(401, 'access_denied', `${fileName} (${fileId}) is protected by a ${retained.mode} retention until ${retained.retainUntilTimestamp}`);
      }
      const list = found.bucket.files.get(fileName)!;
      list.splice(list.indexOf(found.version), 1);
      if (list.length === 0) {
        found.bucket.files.delete(fileName);
        found.bucket.sorted = undefined;
      }
      return { fileId, fileName };
    },

    b2_hide_file(req, url, body) {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'writeFiles');
      const bucket = bucketById(body?.bucketId);
      requireBucketAccess(key, bucket);
      const fileName: unknown = body?.fileName;
      if (typeof fileName !== 'string' || !fileName) throw new B2Failure(400, 'bad_request', 'required field fileName is missing');
      requireNamePrefix(key, fileName);
      const latest = bucket.files.get(fileName)?.[0];
      if (!latest) throw new B2Failure(404, 'no_such_file', `File not present: ${fileName}`);
      if (latest.action === 'hide') throw new B2Failure(400, 'already_hidden', `File already hidden: ${fileName}`);
      const marker: StoredVersion = { fileId: newFileId(bucket), fileName, action: 'hide', contentLength: 0, contentSha1: null, contentType: 'application/x-bz-hide-marker', fileInfo: {}, uploadTimestamp: Date.now(), data: Buffer.alloc(0), retention: null };
      addVersion(bucket, marker);
      return fileJson(bucket, marker);
    },
  };

  // ---- uploads and downloads ----

  function upload(req: IncomingMessage, bucketId: string, pod: string, data: Buffer): Json {
    const token = req.headers.authorization;
    if (!token) throw new B2Failure(401, 'missing_auth_token', 'Authorization token is missing');
    const entry = uploadTokens.get(token);
    if (!entry || entry.bucketId !== bucketId || entry.pod !== pod || entry.retired) throw new B2Failure(401, 'bad_auth_token', 'Invalid upload authorization token for this upload URL');
    if (entry.expired) throw new B2Failure(401, 'expired_auth_token', 'Authorization token has expired');
    if (failUploads > 0) {
      failUploads--;
      entry.retired = true;
      throw new B2Failure(503, 'service_unavailable', `${pod} is too busy`);
    }
    const bucket = buckets.get(bucketId);
    if (!bucket) throw new B2Failure(400, 'bad_bucket_id', `Invalid bucketId: ${bucketId}`);

    const rawName = req.headers['x-bz-file-name'];
    if (typeof rawName !== 'string' || rawName === '') throw new B2Failure(400, 'bad_request', 'X-Bz-File-Name header is required');
    const fileName = decodeName(rawName, 'X-Bz-File-Name');
    checkFileName(fileName);
    requireNamePrefix(entry.key, fileName);
    const contentType = req.headers['content-type'];
    if (!contentType) throw new B2Failure(400, 'bad_request', 'Content-Type header is required');
    const lengthHeader = req.headers['content-length'];
    if (lengthHeader === undefined) throw new B2Failure(400, 'bad_request', 'Content-Length header is required (chunked encoding is not supported)');
    if (Number(lengthHeader) !== data.length) throw new B2Failure(400, 'bad_request', `Content-Length ${lengthHeader} does not match the ${data.length} bytes received`);
    const shaHeader = req.headers['x-bz-content-sha1'];
    if (typeof shaHeader !== 'string') throw new B2Failure(400, 'bad_request', 'X-Bz-Content-Sha1 header is required');
    let content = data;
    let sha1: string;
    if (shaHeader === 'hex_digits_at_end') {
      if (data.length < 40) throw new B2Failure(400, 'bad_request', 'body is shorter than the 40 hex digits of its SHA1');
      content = data.subarray(0, data.length - 40);
      sha1 = data.subarray(data.length - 40).toString('latin1').toLowerCase();
    } else if (shaHeader === 'do_not_verify') {
      sha1 = createHash('sha1').update(data).digest('hex');
    } else {
      sha1 = shaHeader.toLowerCase();
    }
    if (!/^[0-9a-f]{40}$/.test(sha1)) throw new B2Failure(400, 'bad_request', `X-Bz-Content-Sha1 is not 40 hex digits: ${shaHeader.slice(0, 60)}`);
    const actual = createHash('sha1').update(content).digest('hex');
    if (actual !== sha1) throw new B2Failure(400, 'bad_request', 'Checksum did not match data received');

    const fileInfo: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (!name.startsWith('x-bz-info-') || typeof value !== 'string') continue;
      fileInfo[name.slice('x-bz-info-'.length)] = decodeName(value, name);
    }
    if (Object.keys(fileInfo).length > MAX_INFO_HEADERS) throw new B2Failure(400, 'bad_request', `too many file info headers: at most ${MAX_INFO_HEADERS}`);

    const modeHeader = req.headers['x-bz-file-retention-mode'];
    const untilHeader = req.headers['x-bz-file-retention-retain-until-timestamp'];
    let retention: FileRetention | null = null;
    if (modeHeader !== undefined || untilHeader !== undefined) {
      if (!bucket.fileLockEnabled) throw new B2Failure(400, 'bad_request', `File Lock is not enabled on bucket ${bucket.bucketName}: an upload cannot carry a retention`);
      if (!(entry.key.capabilities ?? ALL_CAPABILITIES).includes('writeFileRetentions')) throw new B2Failure(401, 'unauthorized', 'application key does not have the writeFileRetentions capability');
      if (typeof modeHeader !== 'string' || typeof untilHeader !== 'string') {
        throw new B2Failure(400, 'bad_request', 'X-Bz-File-Retention-Mode and X-Bz-File-Retention-Retain-Until-Timestamp must be given together');
      }
      retention = parseRetention(modeHeader, /^\d+$/.test(untilHeader) ? Number(untilHeader) : untilHeader, 'X-Bz-File-Retention-*');
    } else if (bucket.defaultRetention) {
      const { mode, period } = bucket.defaultRetention;
      const until = new Date();
      if (period.unit === 'days') until.setUTCDate(until.getUTCDate() + period.duration);
      else until.setUTCFullYear(until.getUTCFullYear() + period.duration);
      retention = { mode, retainUntilTimestamp: until.getTime() };
    }

    const version: StoredVersion = {
      fileId: newFileId(bucket),
      fileName,
      action: 'upload',
      contentLength: content.length,
      contentSha1: shaHeader === 'do_not_verify' ? `unverified:${actual}` : actual,
      contentType: contentType === 'b2/x-auto' ? 'application/octet-stream' : contentType,
      fileInfo,
      uploadTimestamp: Date.now(),
      data: Buffer.from(content),
      retention,
    };
    addVersion(bucket, version);
    return fileJson(bucket, version);
  }

  function download(req: IncomingMessage, res: ServerResponse, url: URL, bucket: Bucket, version: StoredVersion | undefined, label: string): void {
    if (bucket.bucketType !== 'allPublic') {
      const key = checkAccountToken(req, url);
      requireCapability(key, 'readFiles');
      requireBucketAccess(key, bucket);
      if (version) requireNamePrefix(key, version.fileName);
    }
    if (!version || version.action !== 'upload') throw new B2Failure(404, 'not_found', `File with such name does not exist: ${label}`);
    const size = version.data.length;
    const headers: Record<string, string | number> = {
      'Content-Type': version.contentType,
      'Accept-Ranges': 'bytes',
      'X-Bz-File-Id': version.fileId,
      'X-Bz-File-Name': encodeName(version.fileName),
      'X-Bz-Content-Sha1': version.contentSha1 ?? 'none',
      'X-Bz-Upload-Timestamp': String(version.uploadTimestamp),
    };
    for (const [k, v] of Object.entries(version.fileInfo)) headers[`X-Bz-Info-${k}`] = encodeName(v);
    if (bucket.fileLockEnabled && version.retention) {
      headers['X-Bz-File-Retention-Mode'] = version.retention.mode;
      headers['X-Bz-File-Retention-Retain-Until-Timestamp'] = String(version.retention.retainUntilTimestamp);
    }

    let status = 200;
    let body = version.data;
    const range = parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${size}`);
      throw new B2Failure(416, 'range_not_satisfiable', `The range ${req.headers.range} is outside the ${size} bytes of the file`);
    }
    // A range that covers the whole file, or one that cannot be parsed, returns the whole file.
    if (range && !(range.start === 0 && range.end === size - 1)) {
      status = 206;
      body = version.data.subarray(range.start, range.end + 1);
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
    }
    headers['Content-Length'] = body.length;
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  // ---- HTTP ----

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', base);
    const data = await readBody(req);
    const path = url.pathname;

    if (path.startsWith('/file/')) {
      count('download');
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new B2Failure(405, 'method_not_allowed', `${req.method} is not allowed for downloads`);
      const rest = path.slice('/file/'.length);
      const slash = rest.indexOf('/');
      if (slash <= 0 || slash === rest.length - 1) throw new B2Failure(400, 'bad_request', 'download URL must be /file/<bucketName>/<fileName>');
      const bucketName = decodeName(rest.slice(0, slash), 'bucket name');
      const fileName = decodeName(rest.slice(slash + 1), 'file name');
      const bucket = findBucketByName(bucketName);
      if (!bucket) {
        checkAccountToken(req, url);
        throw new B2Failure(404, 'not_found', `Bucket does not exist: ${bucketName}`);
      }
      return download(req, res, url, bucket, bucket.files.get(fileName)?.[0], `${bucketName}/${fileName}`);
    }

    if (!path.startsWith('/b2api/')) throw new B2Failure(404, 'not_found', `unknown path ${path}`);
    if (!path.startsWith(API)) throw new B2Failure(404, 'not_found', `this emulator implements only API version v2, not ${path.split('/')[2]}`);
    const rest = path.slice(API.length);
    const op = rest.split('/')[0]!;
    count(op);

    if (op === 'b2_authorize_account') {
      if (req.method !== 'GET' && req.method !== 'POST') throw new B2Failure(405, 'method_not_allowed', `${req.method} not allowed`);
      return sendJson(res, 200, authorizeAccount(req));
    }
    if (op === 'b2_upload_file') {
      if (req.method !== 'POST') throw new B2Failure(405, 'method_not_allowed', 'uploads must be POST');
      const [, bucketId, pod] = rest.split('/');
      if (!bucketId || !pod) throw new B2Failure(404, 'not_found', 'upload URL must come from b2_get_upload_url');
      return sendJson(res, 200, upload(req, bucketId, pod, data));
    }
    if (op === 'b2_download_file_by_id') {
      if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'POST') throw new B2Failure(405, 'method_not_allowed', `${req.method} not allowed`);
      const fileId = url.searchParams.get('fileId') ?? (data.length ? parseJson(data)?.fileId : undefined);
      const found = findVersion(fileId);
      if (!found) {
        checkAccountToken(req, url);
        throw new B2Failure(404, 'not_found', `File not present: ${String(fileId)}`);
      }
      return download(req, res, url, found.bucket, found.version, String(fileId));
    }
    const handler = Object.hasOwn(ops, op) ? ops[op] : undefined;
    if (!handler) throw new B2Failure(404, 'not_found', `unknown or unsupported operation ${op}`);
    let body: Json;
    if (req.method === 'POST') {
      body = data.length ? parseJson(data) : {};
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new B2Failure(400, 'bad_request', 'request body must be a JSON object');
    } else if (req.method === 'GET') {
      // B2 also takes the parameters as a query string.
      body = Object.fromEntries(url.searchParams);
    } else {
      throw new B2Failure(405, 'method_not_allowed', `${req.method} not allowed`);
    }
    sendJson(res, 200, handler(req, url, body));
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const failure = err instanceof B2Failure ? err : new B2Failure(500, 'internal_error', String((err as Error)?.message ?? err));
      const bytes = Buffer.from(JSON.stringify({ status: failure.status, code: failure.code, message: failure.message }));
      res.writeHead(failure.status, { 'Content-Type': 'application/json;charset=utf-8', 'Content-Length': req.method === 'HEAD' ? 0 : bytes.length });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  return {
    url: base,
    authorizeUrl: `${base}${API}b2_authorize_account`,
    accountId,
    keyId: master.keyId,
    key: master.key,
    calls,
    versions(bucketName) {
      const b = findBucketByName(bucketName);
      if (!b) return [];
      return sortedNames(b).flatMap((n) => b.files.get(n)!.map((v) => ({ ...v, fileInfo: { ...v.fileInfo }, retention: v.retention && { ...v.retention } })));
    },
    expireTokensAfter(n) {
      tokenCallLimit = n;
      for (const t of accountTokens.values()) t.callsLeft = n;
    },
    advertise(url) {
      if (url !== undefined && !/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) throw new Error(`advertise: a http://127.0.0.1:<port> URL, got ${url}`);
      advertised = url;
    },
    expireAllTokens() {
      for (const t of accountTokens.values()) t.expired = true;
      for (const t of uploadTokens.values()) t.expired = true;
    },
    failNextUploads(n = 1) {
      failUploads = n;
    },
    corrupt(bucketName, fileName) {
      const v = findBucketByName(bucketName)?.files.get(fileName)?.[0];
      if (!v || v.data.length === 0) throw new Error(`no stored bytes to corrupt for ${bucketName}/${fileName}`);
      v.data[v.data.length >> 1]! ^= 0xff;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---- encoding rules ----------------------------------------------------------------------------

/** B2's percent-encoding: UTF-8 bytes, "%XX" escapes, "+" for a space. */
function decodeName(value: string, what: string): string {
  try {
    const decoded = decodeURIComponent(value.replace(/\+/g, ' '));
    if (Buffer.from(decoded, 'utf8').toString('utf8') !== decoded) throw new Error('not UTF-8');
    return decoded;
  } catch {
    throw new B2Failure(400, 'bad_request', `${what} is not valid percent-encoded UTF-8: ${value.slice(0, 80)}`);
  }
}

function encodeName(value: string): string {
  return value.split('/').map(encodeURIComponent).join('/');
}

/** B2's file name rules: UTF-8 up to 1024 bytes, segments up to 250, no control chars, DEL, backslash, or empty segments. */
function checkFileName(name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  const fail = (why: string): never => {
    throw new B2Failure(400, 'bad_request', `File names ${why}: ${JSON.stringify(name.slice(0, 80))}`);
  };
  if (bytes === 0 || bytes > 1024) fail('must be 1 to 1024 bytes of UTF-8');
  if (/[\u0000-\u001f\u007f\\]/.test(name)) fail('must not contain control characters, DEL or backslashes');
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) fail('must not start or end with "/" or contain "//"');
  for (const segment of name.split('/')) if (Buffer.byteLength(segment, 'utf8') > 250) fail('must not have a segment longer than 250 bytes');
}

/** One "bytes=a-b" / "bytes=a-" / "bytes=-n" range; undefined for none or an unparseable one. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** A retention as B2 takes it: mode governance or compliance and a future retain-until in ms; mode null (or absent) clears it. */
function parseRetention(mode: unknown, until: unknown, what: string): FileRetention | null {
  if (mode === null || mode === undefined) {
    if (until !== null && until !== undefined) throw new B2Failure(400, 'bad_request', `${what}: a retain-until timestamp needs a mode`);
    return null;
  }
  if (mode !== 'governance' && mode !== 'compliance') throw new B2Failure(400, 'bad_request', `${what}: mode must be governance or compliance, got ${JSON.stringify(mode)}`);
  if (typeof until !== 'number' || !Number.isSafeInteger(until)) throw new B2Failure(400, 'bad_request', `${what}: retainUntilTimestamp must be an integer (milliseconds), got ${JSON.stringify(until)}`);
  if (until <= Date.now()) throw new B2Failure(400, 'bad_request', `${what}: retainUntilTimestamp ${until} is not in the future`);
  return { mode, retainUntilTimestamp: until };
}

function parseJson(data: Buffer): Json {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw new B2Failure(400, 'bad_request', 'request body is not valid JSON');
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const bytes = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'Content-Type': 'application/json;charset=utf-8', 'Content-Length': bytes.length });
  res.end(bytes);
}
