// Repository locations in restic's notation and the backend each one opens:
//
//   /srv/repo, ./repo, local:/srv/repo          a folder
//   s3:https://host[:port]/bucket[/prefix]       an S3-compatible service (http:// allowed)
//   s3:host/bucket[/prefix]                      the same over https (s3:s3.amazonaws.com/bucket for AWS)
//   gs:bucket:/[prefix]                          Google Cloud Storage
//   azure:container:/[prefix]                    Azure Blob Storage
//   swift:container:/[prefix]                    OpenStack Swift
//   b2:bucket[:prefix]                           Backblaze B2
//   rest:http[s]://[user:pass@]host[:port]/[path] a restic rest-server
//
// Credentials come from restic's environment variables (AWS_ACCESS_KEY_ID, AZURE_ACCOUNT_KEY, …)
// and tuning from restic's `-o` options ("s3.connections=10"). New kinds join the ParsedLocation
// union, SCHEMES, EXTENDED_OPTIONS and the switch in createBackend; the compiler then points at
// anything missed.

import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Backend } from './backend.ts';
import { LocalBackend } from './local.ts';
import type { LocalBackendOptions } from './local.ts';
import { S3Backend } from './s3.ts';
import type { S3BackendOptions } from './s3.ts';
import { AzureBackend } from './azure.ts';
import type { AzureAccessTier, AzureBackendOptions } from './azure.ts';
import { SwiftBackend, swiftOptionsFromEnv } from './swift.ts';
import type { SwiftBackendOptions } from './swift.ts';
import { RestBackend } from './rest.ts';
import type { RestBackendOptions } from './rest.ts';
import { GCSBackend, emulatorEndpoint } from './gcs.ts';
import type { GCSBackendOptions } from './gcs.ts';
import { B2Backend, b2OptionsFromEnv } from './b2.ts';
import type { B2BackendOptions } from './b2.ts';
import { wrapBackend } from './wrappers/stack.ts';
import type { RetryOptions } from './wrappers/retry.ts';
import type { RateLimitOptions } from './wrappers/limits.ts';
import type { BackendObserver } from './wrappers/observe.ts';
import type { Logger } from '../logger.ts';
import { InvalidInputError, UnsupportedError } from '../errors.ts';

// ---- parsed locations ---------------------------------------------------------------------------

/** A folder on this machine (local disk, NFS/SMB mount, Kubernetes volume). */
export interface LocalLocation {
  readonly kind: 'local';
  /** Absolute path of the repository folder. */
  readonly path: string;
}

/** A bucket on Amazon S3 or an S3-compatible service (MinIO, Ceph, R2, Wasabi, …). */
export interface S3Location {
  readonly kind: 's3';
  /** Scheme and host of the service, e.g. "https://s3.amazonaws.com" or "http://127.0.0.1:9000". */
  readonly endpoint: string;
  readonly bucket: string;
  /** Folder inside the bucket, without leading or trailing "/" ("" = the bucket root). */
  readonly prefix: string;
}

/** A Google Cloud Storage bucket. */
export interface GcsLocation {
  readonly kind: 'gs';
  readonly bucket: string;
  readonly prefix: string;
}

/** An Azure Blob Storage container (the account comes from AZURE_ACCOUNT_NAME). */
export interface AzureLocation {
  readonly kind: 'azure';
  readonly container: string;
  readonly prefix: string;
}

/** An OpenStack Swift container (the account and auth come from OS_* / ST_* variables). */
export interface SwiftLocation {
  readonly kind: 'swift';
  readonly container: string;
  readonly prefix: string;
}

/** A Backblaze B2 bucket. */
export interface B2Location {
  readonly kind: 'b2';
  readonly bucket: string;
  readonly prefix: string;
}

/** A restic rest-server repository. */
export interface RestLocation {
  readonly kind: 'rest';
  /** The repository URL without credentials, ending in "/". */
  readonly url: string;
  /** User name written in the location, if any. */
  readonly username?: string;
  /** Password written in the location, if any. A secret: never log a RestLocation as a whole. */
  readonly password?: string;
}

/** A restic location string, parsed by {@link parseLocation}: one variant per backend kind. */
export type ParsedLocation = LocalLocation | S3Location | GcsLocation | AzureLocation | SwiftLocation | B2Location | RestLocation;

/** The backend kind of a location: `local`, `s3`, `gs`, `azure`, `swift`, `b2` or `rest`. */
export type LocationKind = ParsedLocation['kind'];

/** The schemes accepted in front of a location, with the form each one takes. */
const SCHEMES: Readonly<Record<LocationKind, string>> = {
  local: 'local:/path (or a plain /path or ./path)',
  s3: 's3:https://host[:port]/bucket[/prefix] or s3:host/bucket[/prefix]',
  gs: 'gs:bucket:/[prefix]',
  azure: 'azure:container:/[prefix]',
  swift: 'swift:container:/[prefix]',
  b2: 'b2:bucket[:prefix]',
  rest: 'rest:http[s]://[user:password@]host[:port]/[path]',
};

/** A scheme prefix as restic writes them: letters, digits, "+", "-", "." before the first ":". */
const SCHEME_PREFIX = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/**
 * Parses a restic location string ("/srv/repo", "s3:host/bucket/prefix", "gs:bucket:/prefix", …)
 * without opening anything. Relative local paths are made absolute. Throws `InvalidInputError`
 * (with the password redacted) for a malformed location or an unknown scheme.
 */
export function parseLocation(location: string): ParsedLocation {
  if (typeof location !== 'string' || location.trim() === '') {
    throw new InvalidInputError('repository location must be a non-empty string');
  }
  const match = SCHEME_PREFIX.exec(location);
  // "C:\repo" and "C:/repo" are Windows paths, not a scheme called "C".
  const isDrivePath = match !== null && match[1].length === 1 && /^[a-zA-Z]:[\\/]/.test(location);
  if (match === null || isDrivePath) return { kind: 'local', path: resolve(location) };

  const scheme = match[1].toLowerCase();
  const rest = location.slice(match[0].length);
  const bad = (why: string): InvalidInputError =>
    new InvalidInputError(`invalid repository location ${JSON.stringify(redactLocation(location))}: ${why}`);
  switch (scheme) {
    case 'local':
      if (rest === '') throw bad('no path after "local:"');
      return { kind: 'local', path: resolve(rest) };
    case 's3':
      return parseS3(rest, bad);
    case 'gs': {
      const { name, prefix } = nameAndPrefix(rest, 'bucket', SCHEMES.gs, bad);
      return { kind: 'gs', bucket: name, prefix };
    }
    case 'azure': {
      const { name, prefix } = nameAndPrefix(rest, 'container', SCHEMES.azure, bad);
      return { kind: 'azure', container: name, prefix };
    }
    case 'swift': {
      const { name, prefix } = nameAndPrefix(rest, 'container', SCHEMES.swift, bad);
      // restic insists on the slash: "swift:container:/" is the container root.
      if (!rest.slice(name.length + 1).startsWith('/')) throw bad(`the prefix must start with "/" (expected ${SCHEMES.swift})`);
      return { kind: 'swift', container: name, prefix };
    }
    case 'b2': {
      const colon = rest.indexOf(':');
      const bucket = colon < 0 ? rest : rest.slice(0, colon);
      checkB2Bucket(bucket, bad);
      return { kind: 'b2', bucket, prefix: cleanPrefix(colon < 0 ? '' : rest.slice(colon + 1), bad) };
    }
    case 'rest':
      return parseRest(rest, bad);
    default:
      throw new InvalidInputError(
        `unsupported repository location ${JSON.stringify(redactLocation(location))}: scheme "${scheme}" is not supported; ` +
          `supported: ${Object.values(SCHEMES).join('; ')}`,
      );
  }
}

function parseS3(rest: string, bad: (why: string) => InvalidInputError): S3Location {
  let endpoint: string;
  let path: string;
  if (/^https?:\/\//i.test(rest)) {
    let url: URL;
    try {
      url = new URL(rest);
    } catch {
      // Not as the cause: Node's URL error carries the whole input, credentials included.
      throw bad('the endpoint is not a valid URL');
    }
    if (url.username || url.password) throw bad('an S3 location must not contain credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
    if (url.search || url.hash) throw bad('an S3 location must not have a query or fragment');
    endpoint = `${url.protocol}//${url.host}`;
    // The path as written: URL would resolve "." and ".." segments before we could refuse them.
    const written = rest.replace(/^https?:\/\/[^/]*/i, '');
    try {
      path = decodeURIComponent(written.replace(/^\/+/, ''));
    } catch (err) {
      throw Object.assign(bad('the path is not valid percent-encoding'), { cause: err });
    }
  } else {
    // "s3:host/bucket/prefix", and restic's older "s3://host/bucket/prefix": https.
    const s = rest.startsWith('//') ? rest.slice(2) : rest;
    const slash = s.indexOf('/');
    const host = slash < 0 ? s : s.slice(0, slash);
    if (host === '' || /[@\s]/.test(host)) throw bad(`no valid host (expected ${SCHEMES.s3})`);
    endpoint = `https://${host}`;
    path = slash < 0 ? '' : s.slice(slash + 1);
  }
  const slash = path.indexOf('/');
  const bucket = slash < 0 ? path : path.slice(0, slash);
  if (bucket === '') throw bad(`no bucket name (expected ${SCHEMES.s3})`);
  return { kind: 's3', endpoint, bucket, prefix: cleanPrefix(slash < 0 ? '' : path.slice(slash + 1), bad) };
}

function parseRest(rest: string, bad: (why: string) => InvalidInputError): RestLocation {
  let url: URL;
  try {
    url = new URL(rest);
  } catch {
    // Not as the cause: Node's URL error carries the whole input, the password included.
    throw bad(`not a valid URL (expected ${SCHEMES.rest})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`only http and https are supported (expected ${SCHEMES.rest})`);
  if (url.search || url.hash) throw bad('a REST location must not have a query or fragment');
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch (err) {
    throw Object.assign(bad('the user name or password is not valid percent-encoding'), { cause: err });
  }
  url.username = '';
  url.password = '';
  // restic adds the slash too: the repository is a folder on the server.
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return {
    kind: 'rest',
    url: url.href,
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
  };
}

/** "name:/prefix" as gs, azure and swift write it. */
function nameAndPrefix(rest: string, what: string, form: string, bad: (why: string) => InvalidInputError): { name: string; prefix: string } {
  const colon = rest.indexOf(':');
  if (colon < 0) throw bad(`no ":" after the ${what} name (expected ${form})`);
  const name = rest.slice(0, colon);
  if (name === '') throw bad(`no ${what} name (expected ${form})`);
  return { name, prefix: cleanPrefix(rest.slice(colon + 1), bad) };
}

/** A folder inside a bucket: no empty, "." or leading/trailing segments; ".." is refused. */
function cleanPrefix(prefix: string, bad: (why: string) => InvalidInputError): string {
  const parts = prefix.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw bad('the prefix must not leave the bucket with ".."');
  return parts.join('/');
}

/** B2's bucket name rules, as restic checks them. */
function checkB2Bucket(bucket: string, bad: (why: string) => InvalidInputError): void {
  if (bucket === '') throw bad(`no bucket name (expected ${SCHEMES.b2})`);
  if (bucket.length < 6) throw bad('B2 bucket names have at least 6 characters');
  if (bucket.length > 50) throw bad('B2 bucket names have at most 50 characters');
  if (!/^[a-zA-Z0-9-]+$/.test(bucket)) throw bad('B2 bucket names contain only letters, digits and "-"');
}

/**
 * Hides a password written into a location URL ("rest:https://user:secret@host/" → "user:***")
 * and the query of one (a pasted signed URL carries a signature or token there).
 */
export function redactLocation(location: string): string {
  // Up to the last '@' before the path: a password may hold a raw '@' ("user:p@ss@host").
  return location.replace(/(\/\/[^/:]*?):[^/]*@/, '$1:***@').replace(/(:\/\/[^?#]*)[?#].*$/s, '$1?***');
}

// ---- extended options (restic's -o) -------------------------------------------------------------

interface ExtendedOption {
  help: string;
}

const CONNECTIONS: ExtendedOption = { help: 'requests in flight at once (a positive integer)' };

/** The `-o` options Stowage understands, per kind, with restic's names. */
const EXTENDED_OPTIONS: Readonly<Record<LocationKind, Readonly<Record<string, ExtendedOption>>>> = {
  local: { connections: CONNECTIONS },
  s3: {
    connections: CONNECTIONS,
    region: { help: 'the bucket region (default AWS_DEFAULT_REGION, AWS_REGION or the one in the host name)' },
    'storage-class': { help: 'storage class of data packs, e.g. STANDARD_IA, INTELLIGENT_TIERING' },
    'bucket-lookup': { help: 'auto, dns (bucket in the host name) or path (bucket in the path)' },
    'object-lock': { help: 'retention of every upload but locks, MODE:PERIOD, e.g. governance:30d or compliance:1y (s, m, h, d, y)' },
  },
  gs: {
    connections: CONNECTIONS,
    region: { help: 'where create() makes a missing bucket (default us)' },
    'object-retention': { help: 'object retention of every upload but locks, MODE:PERIOD, governance (Unlocked) or compliance (Locked), e.g. governance:30d' },
  },
  azure: {
    connections: CONNECTIONS,
    'access-tier': { help: 'Hot, Cool, Cold or Archive (Archive applies to data packs only)' },
    immutability: { help: 'version-level immutability policy on every upload but locks, MODE:PERIOD, governance (Unlocked) or compliance (Locked), e.g. governance:30d' },
  },
  swift: { connections: CONNECTIONS },
  b2: {
    connections: CONNECTIONS,
    'file-lock': { help: 'B2 File Lock retention of every upload but locks, MODE:PERIOD, e.g. governance:30d (s, m, h, d, y); the bucket needs File Lock' },
  },
  rest: { connections: CONNECTIONS },
};

/** restic options Stowage knows but does not implement: named, so the error says so. */
const RESTIC_ONLY_OPTIONS: Readonly<Partial<Record<string, readonly string[]>>> = {
  local: ['layout'],
  s3: ['layout', 'retries', 'list-objects-v1', 'unsafe-anonymous-auth', 'enable-restore', 'restore-days', 'restore-timeout', 'restore-tier'],
  swift: ['layout'],
  gs: ['layout'],
  azure: ['layout'],
  b2: ['layout'],
  rest: ['layout'],
};

/** Namespaces of restic backends Stowage has no counterpart for; their options are ignored like another kind's. */
const OTHER_RESTIC_NAMESPACES = ['sftp', 'rclone'];

/** The extended options that apply to `kind`, checked; options of other backends are ignored (as restic does). */
function extendedFor(kind: LocationKind, extended: Readonly<Record<string, string>> | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const known = EXTENDED_OPTIONS[kind];
  const validList = (): string =>
    Object.entries(known)
      .map(([name, o]) => `${kind}.${name} (${o.help})`)
      .join(', ');
  for (const [rawKey, value] of Object.entries(extended ?? {})) {
    const key = rawKey.trim().toLowerCase();
    const dot = key.indexOf('.');
    const namespace = dot < 0 ? '' : key.slice(0, dot);
    const name = key.slice(dot + 1);
    if (namespace !== kind) {
      if (namespace in EXTENDED_OPTIONS || OTHER_RESTIC_NAMESPACES.includes(namespace)) continue;
      throw new InvalidInputError(`unknown option ${JSON.stringify(rawKey)}; valid options for a ${kind} repository: ${validList()}`);
    }
    if (!(name in known)) {
      if (RESTIC_ONLY_OPTIONS[kind]?.includes(name)) throw new UnsupportedError(`option ${key} is a restic option that Stowage does not support`);
      throw new InvalidInputError(`unknown option ${JSON.stringify(rawKey)}; valid options for a ${kind} repository: ${validList()}`);
    }
    if (typeof value !== 'string') throw new InvalidInputError(`option ${key} must be a string, got ${typeof value}`);
    out.set(name, value.trim());
  }
  return out;
}

function connectionsOption(kind: LocationKind, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value) || Number(value) < 1) {
    throw new InvalidInputError(`option ${kind}.connections must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

// ---- opening --------------------------------------------------------------------------------------

/** Backend options merged over what the location, environment and `-o` options give, per kind. */
export interface BackendOverrides {
  local?: Partial<LocalBackendOptions>;
  s3?: Partial<S3BackendOptions>;
  gs?: Partial<GCSBackendOptions>;
  azure?: Partial<AzureBackendOptions>;
  b2?: Partial<B2BackendOptions>;
  swift?: Partial<SwiftBackendOptions>;
  rest?: Partial<RestBackendOptions>;
}

/** Options of {@link openBackend}. */
export interface OpenBackendOptions {
  /** Where credentials are read from, under restic's variable names (default: process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** restic's `-o key=value` options, e.g. { 's3.connections': '10', 'azure.access-tier': 'Cool' }. */
  extended?: Readonly<Record<string, string>>;
  /** Requests in flight at once; overrides `<kind>.connections` and the backend's default. */
  connections?: number;
  /** PEM files of CAs to trust for TLS, like restic's --cacert (S3 and REST). */
  cacert?: string | readonly string[];
  /** PEM text of CAs to trust, for callers that hold the certificate rather than a file. */
  caCertPem?: string | Uint8Array;
  /** Accept any TLS certificate, like restic's --insecure-tls (S3 and REST). For tests only. */
  insecureTls?: boolean;
  /** Return the bare backend, without the retry and connection-limit wrappers. */
  raw?: boolean;
  /** Retry settings (default: RetryBackend's defaults); false turns retrying off. */
  retry?: RetryOptions | false;
  /** Bandwidth caps in bytes per second. */
  rateLimit?: RateLimitOptions;
  /** Sees every request the backend makes (see ObservedBackend). */
  observe?: BackendObserver;
  /**
   * Logs retries (warn) and every request (debug); see WrapOptions.logger. With `raw` there are
   * no wrappers, so only the opening is logged.
   */
  logger?: Logger;
  /** Backend options to set directly, over everything else (e.g. { azure: { endpoint } }). */
  overrides?: BackendOverrides;
}

/**
 * Opens the backend for a location: parses it, reads credentials from `env`, applies `-o`
 * options, and wraps the backend with retries and a connection limit (unless `raw`). Nothing is
 * contacted or created; see Backend.create.
 *
 * @throws InvalidInputError for a malformed location, a missing credential or a bad option.
 * @throws UnsupportedError for a restic option or TLS setting Stowage does not support for the kind.
 *
 * @example
 * ```ts
 * const backend = await openBackend(process.env.RESTIC_REPOSITORY!, { extended: { 's3.connections': '10' } });
 * const repo = await Repository.open(backend, { password: process.env.RESTIC_PASSWORD! });
 * ```
 */
export async function openBackend(location: string, options: OpenBackendOptions = {}): Promise<Backend> {
  return openLocation(parseLocation(location), options);
}

/** openBackend for a location that is already parsed (or built, as backendFromStash does). */
export async function openLocation(parsed: ParsedLocation, options: OpenBackendOptions = {}): Promise<Backend> {
  const backend = await createBackend(parsed, options);
  options.logger?.debug('backend opened', { kind: parsed.kind, location: backend.location, connections: backend.connections });
  if (options.raw) return backend;
  return wrapBackend(backend, { retry: options.retry, rateLimit: options.rateLimit, observe: options.observe, logger: options.logger });
}

async function createBackend(parsed: ParsedLocation, options: OpenBackendOptions): Promise<Backend> {
  const env = options.env ?? process.env;
  const kind = parsed.kind;
  const ext = extendedFor(kind, options.extended);
  const connections = options.connections ?? connectionsOption(kind, ext.get('connections'));
  const overrides = options.overrides ?? {};
  const where = redactLocation(describeLocation(parsed));
  switch (kind) {
    case 'local':
      return new LocalBackend(parsed.path, { connections, ...overrides.local });
    case 's3': {
      const tls = await tlsOptions(options);
      return new S3Backend({ ...s3Options(parsed, env, ext, where), connections, ...tls, ...overrides.s3 });
    }
    case 'azure': {
      refuseTls(options, kind);
      return new AzureBackend(azureOptions(parsed, env, ext, where, connections, overrides.azure ?? {}));
    }
    case 'swift': {
      refuseTls(options, kind);
      const fromEnv = swiftOptionsFromEnv(env);
      return new SwiftBackend({ ...fromEnv, container: parsed.container, prefix: parsed.prefix, connections, ...overrides.swift });
    }
    case 'rest': {
      const tls = await tlsOptions(options);
      return new RestBackend(parsed.url, { ...restCredentials(parsed, env), connections, ...tls, ...overrides.rest });
    }
    case 'gs': {
      refuseTls(options, kind);
      const out: GCSBackendOptions = { bucket: parsed.bucket, prefix: parsed.prefix, connections };
      if (env.GOOGLE_PROJECT_ID) out.projectId = env.GOOGLE_PROJECT_ID;
      // restic's form of an emulator (host:port), normalised for Google's Node library.
      if (env.STORAGE_EMULATOR_HOST) out.apiEndpoint = emulatorEndpoint(env.STORAGE_EMULATOR_HOST);
      // Google's libraries read this variable from process.env themselves; read it from `env` so a given env wins.
      const direct = overrides.gs?.credentials !== undefined || overrides.gs?.keyFilename !== undefined;
      // restic: a set $GOOGLE_ACCESS_TOKEN is the credential, before any default credentials.
      if (env.GOOGLE_ACCESS_TOKEN && !direct) out.accessToken = env.GOOGLE_ACCESS_TOKEN;
      else if (env.GOOGLE_APPLICATION_CREDENTIALS && !direct) out.keyFilename = env.GOOGLE_APPLICATION_CREDENTIALS;
      const region = ext.get('region');
      if (region) out.region = region;
      const retention = ext.get('object-retention');
      if (retention) out.objectRetention = parseObjectLockOption(retention, 'gs.object-retention');
      return new GCSBackend({ ...out, ...overrides.gs });
    }
    case 'b2': {
      refuseTls(options, kind);
      const fileLock = ext.get('file-lock');
      const merged = { bucket: parsed.bucket, prefix: parsed.prefix, connections, ...(fileLock ? { fileLock: parseObjectLockOption(fileLock, 'b2.file-lock') } : {}), ...b2OptionsFromEnv(env), ...overrides.b2 };
      if (!merged.applicationKeyId || !merged.applicationKey) throw new InvalidInputError(`${where}: set B2_ACCOUNT_ID and B2_ACCOUNT_KEY`);
      return new B2Backend(merged as B2BackendOptions);
    }
    default:
      return unreachable(kind);
  }
}

function s3Options(parsed: S3Location, env: Readonly<Record<string, string | undefined>>, ext: Map<string, string>, where: string): S3BackendOptions {
  const host = new URL(parsed.endpoint).hostname.toLowerCase();
  const aws = AWS_HOST.exec(host);
  const region = ext.get('region') || env.AWS_DEFAULT_REGION || env.AWS_REGION || aws?.[1] || undefined;
  const out: S3BackendOptions = { bucket: parsed.bucket, prefix: parsed.prefix };
  // On AWS the SDK picks the regional endpoint itself; anything else is addressed as written.
  if (!aws) out.endpoint = parsed.endpoint;
  if (region) out.region = region;
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId && secretAccessKey) {
    out.credentials = { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
  } else if (accessKeyId || secretAccessKey) {
    throw new InvalidInputError(`${where}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together`);
  }
  // restic ≥ 0.18: the key assumes a role (STS) and the temporary key is used.
  if (env.RESTIC_AWS_ASSUME_ROLE_ARN) {
    if (!out.credentials) throw new InvalidInputError(`${where}: RESTIC_AWS_ASSUME_ROLE_ARN needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to assume the role with`);
    const optional = (v: string | undefined) => (v ? v : undefined);
    out.assumeRole = {
      roleArn: env.RESTIC_AWS_ASSUME_ROLE_ARN,
      sessionName: optional(env.RESTIC_AWS_ASSUME_ROLE_SESSION_NAME),
      externalId: optional(env.RESTIC_AWS_ASSUME_ROLE_EXTERNAL_ID),
      policy: optional(env.RESTIC_AWS_ASSUME_ROLE_POLICY),
      region: optional(env.RESTIC_AWS_ASSUME_ROLE_REGION),
      stsEndpoint: optional(env.RESTIC_AWS_ASSUME_ROLE_STS_ENDPOINT),
    };
  }
  const storageClass = ext.get('storage-class');
  if (storageClass) out.storageClass = storageClass;
  const lock = ext.get('object-lock');
  if (lock) out.objectLock = parseObjectLockOption(lock);
  const lookup = ext.get('bucket-lookup')?.toLowerCase();
  if (lookup === 'dns') out.forcePathStyle = false;
  else if (lookup === 'path') out.forcePathStyle = true;
  else if (lookup !== undefined && lookup !== 'auto' && lookup !== '') {
    throw new InvalidInputError(`option s3.bucket-lookup must be auto, dns or path, got ${JSON.stringify(lookup)}`);
  }
  return out;
}

const PERIOD_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400, y: 365 * 86_400 };

/** `-o s3.object-lock=governance:30d` (or `b2.file-lock=…`) → { mode: 'GOVERNANCE', retainSeconds: 2592000 } (a bare number is days). */
export function parseObjectLockOption(value: string, option = 's3.object-lock'): NonNullable<S3BackendOptions['objectLock']> {
  const m = /^(governance|compliance):([0-9]+)([smhdy]?)$/i.exec(value.trim());
  if (!m || Number(m[2]) <= 0) {
    throw new InvalidInputError(
      `option ${option} must be MODE:PERIOD with MODE governance or compliance and PERIOD a positive number with s, m, h, d or y (days if none), e.g. governance:30d; got ${JSON.stringify(value)}`,
    );
  }
  const mode = m[1]!.toUpperCase() as 'GOVERNANCE' | 'COMPLIANCE';
  return { mode, retainSeconds: Number(m[2]) * PERIOD_SECONDS[(m[3] || 'd').toLowerCase()]! };
}

/** s3.amazonaws.com, s3.eu-west-1.amazonaws.com, s3-eu-west-1.amazonaws.com, s3.cn-north-1.amazonaws.com.cn. */
const AWS_HOST = /^s3(?:[.-](?:dualstack\.)?([a-z]{2}(?:-[a-z]+)+-\d+))?\.amazonaws\.com(?:\.cn)?$/;

function azureOptions(
  parsed: AzureLocation,
  env: Readonly<Record<string, string | undefined>>,
  ext: Map<string, string>,
  where: string,
  connections: number | undefined,
  overrides: Partial<AzureBackendOptions>,
): AzureBackendOptions {
  const out: AzureBackendOptions = { container: parsed.container, prefix: parsed.prefix, connections };
  if (env.AZURE_ACCOUNT_NAME) out.accountName = env.AZURE_ACCOUNT_NAME;
  if (env.AZURE_ENDPOINT_SUFFIX) out.endpointSuffix = env.AZURE_ENDPOINT_SUFFIX;
  // Credentials given directly replace those from the environment instead of clashing with them.
  const direct = [overrides.connectionString, overrides.accountKey, overrides.sasToken, overrides.credential].some((v) => v !== undefined);
  if (!direct) {
    if (env.AZURE_ACCOUNT_KEY) out.accountKey = env.AZURE_ACCOUNT_KEY;
    else if (env.AZURE_ACCOUNT_SAS) out.sasToken = env.AZURE_ACCOUNT_SAS;
    else throw new InvalidInputError(`${where}: set AZURE_ACCOUNT_KEY or AZURE_ACCOUNT_SAS (with AZURE_ACCOUNT_NAME)`);
  }
  const tier = ext.get('access-tier');
  if (tier) {
    const match = AZURE_TIERS.find((t) => t.toLowerCase() === tier.toLowerCase());
    if (!match) throw new InvalidInputError(`option azure.access-tier must be one of ${AZURE_TIERS.join(', ')}, got ${JSON.stringify(tier)}`);
    out.accessTier = match;
  }
  const immutability = ext.get('immutability');
  if (immutability) out.immutability = parseObjectLockOption(immutability, 'azure.immutability');
  const merged = { ...out, ...overrides };
  if (!merged.accountName && !merged.endpoint && !merged.connectionString) {
    throw new InvalidInputError(`${where}: AZURE_ACCOUNT_NAME is not set`);
  }
  return merged;
}

const AZURE_TIERS: readonly AzureAccessTier[] = ['Hot', 'Cool', 'Cold', 'Archive'];

/** User and password from the URL, else (only when the URL has neither) from RESTIC_REST_USERNAME/PASSWORD. */
function restCredentials(parsed: RestLocation, env: Readonly<Record<string, string | undefined>>): { username?: string; password?: string } {
  if (parsed.username !== undefined || parsed.password !== undefined) {
    return { ...(parsed.username ? { username: parsed.username } : {}), ...(parsed.password ? { password: parsed.password } : {}) };
  }
  const out: { username?: string; password?: string } = {};
  if (env.RESTIC_REST_USERNAME) out.username = env.RESTIC_REST_USERNAME;
  if (env.RESTIC_REST_PASSWORD) out.password = env.RESTIC_REST_PASSWORD;
  return out;
}

/** The CA certificates and the insecure flag, for the backends that speak TLS through Node. */
async function tlsOptions(options: OpenBackendOptions): Promise<{ caCert?: string | Uint8Array; insecureTls?: boolean }> {
  const out: { caCert?: string | Uint8Array; insecureTls?: boolean } = {};
  const files = options.cacert === undefined ? [] : typeof options.cacert === 'string' ? [options.cacert] : [...options.cacert];
  const pems: string[] = [];
  for (const file of files) {
    try {
      pems.push(await readFile(file, 'utf8'));
    } catch (err) {
      throw new InvalidInputError(`cannot read CA certificate file ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (options.caCertPem !== undefined) pems.push(typeof options.caCertPem === 'string' ? options.caCertPem : Buffer.from(options.caCertPem).toString('utf8'));
  for (const [i, pem] of pems.entries()) {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new InvalidInputError(`CA certificate ${i < files.length ? `file ${files[i]}` : 'data'} holds no PEM certificate`);
    }
  }
  if (pems.length > 0) out.caCert = pems.join('\n');
  if (options.insecureTls) out.insecureTls = true;
  return out;
}

/** Backends whose SDK has its own TLS setup: a CA or the insecure flag cannot be applied, so say so. */
function refuseTls(options: OpenBackendOptions, kind: LocationKind): void {
  const files = options.cacert === undefined ? 0 : typeof options.cacert === 'string' ? 1 : options.cacert.length;
  if (files > 0 || options.caCertPem !== undefined) throw new UnsupportedError(`a custom CA certificate is not supported for ${kind} repositories`);
  if (options.insecureTls) throw new UnsupportedError(`insecureTls is not supported for ${kind} repositories`);
}

/** The location in restic's notation (without credentials), for messages. */
export function describeLocation(parsed: ParsedLocation): string {
  switch (parsed.kind) {
    case 'local':
      return parsed.path;
    case 's3':
      return `s3:${parsed.endpoint}/${parsed.bucket}${parsed.prefix ? `/${parsed.prefix}` : ''}`;
    case 'gs':
    case 'azure':
    case 'swift':
      return `${parsed.kind}:${'bucket' in parsed ? parsed.bucket : parsed.container}:/${parsed.prefix}`;
    case 'b2':
      return `b2:${parsed.bucket}${parsed.prefix ? `:${parsed.prefix}` : ''}`;
    case 'rest': {
      const url = new URL(parsed.url);
      if (parsed.username) url.username = encodeURIComponent(parsed.username);
      return `rest:${url.href}`;
    }
    default:
      return unreachable(parsed);
  }
}

function unreachable(kind: never): never {
  throw new InvalidInputError(`no backend for location kind ${String(kind)}`);
}
