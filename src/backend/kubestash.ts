// Opens the restic repository KubeStash (storage.kubestash.com/v1alpha1) writes for a Repository:
// the BackupStorage's `spec.storage`, its storage Secret, the Repository's encryption Secret and
// the folder below the storage's prefix. KubeStash turns these into restic's environment in its
// restic wrapper (gomodules.xyz/restic v0.5.0 setup.go, vendored by kubestash/apimachinery
// v0.29.0); this does the same and hands the result to openLocation.

import type { Backend } from './backend.ts';
import { openLocation, parseLocation } from './location.ts';
import type { BackendOverrides, OpenBackendOptions, ParsedLocation } from './location.ts';
import { InvalidInputError } from '../errors.ts';
import { SWIFT_KEYS, secretStrings, type StashSecretData, type StashOpenOptions } from './stash.ts';

// ---- KubeStash's API types (apis/storage/v1alpha1/types.go, backupstorage_types.go) ------------

/** `spec.storage.local` of a BackupStorage: a volume KubeStash mounts at mountPath (with subPath). */
export interface KubeStashLocalSpec {
  mountPath: string;
  subPath?: string;
  maxConnections?: number;
  [volumeSource: string]: unknown;
}

/** `spec.storage.s3`. */
export interface KubeStashS3Spec {
  /** "s3.amazonaws.com", host[:port] or an http(s):// URL (MinIO). */
  endpoint: string;
  bucket: string;
  prefix?: string;
  region?: string;
  secretName?: string;
  /** Not passed to restic by KubeStash for S3 (only gcs, azure and b2 take `-o *.connections`). */
  maxConnections?: number;
  insecureTLS?: boolean;
}

/** `spec.storage.gcs`. */
export interface KubeStashGCSSpec {
  bucket: string;
  prefix?: string;
  maxConnections?: number;
  secretName?: string;
}

/** `spec.storage.azure`: the account name is in the spec, the key in the Secret. */
export interface KubeStashAzureSpec {
  storageAccount: string;
  container: string;
  prefix?: string;
  maxConnections?: number;
  secretName?: string;
}

/** `spec.storage.b2`: declared (commented out) in KubeStash's types.go v0.29.0, not in its CRD. */
export interface KubeStashB2Spec {
  bucket: string;
  prefix?: string;
  maxConnections?: number;
  secretName?: string;
}

/** `spec.storage.swift`: declared (commented out) in KubeStash's types.go v0.29.0, not in its CRD. */
export interface KubeStashSwiftSpec {
  container: string;
  prefix?: string;
  secretName?: string;
}

/** The storage kinds. */
export type KubeStashProvider = 'local' | 's3' | 'gcs' | 'azure' | 'b2' | 'swift';

/** `spec.storage` of a BackupStorage (KubeStash's `Backend`). */
export interface KubeStashStorageSpec {
  /** The provider; when set it must name the one spec given. */
  provider?: KubeStashProvider;
  local?: KubeStashLocalSpec;
  s3?: KubeStashS3Spec;
  gcs?: KubeStashGCSSpec;
  azure?: KubeStashAzureSpec;
  b2?: KubeStashB2Spec;
  swift?: KubeStashSwiftSpec;
}

/** A BackupStorage's `spec` (only `storage` matters here). */
export interface KubeStashBackupStorageSpec {
  storage: KubeStashStorageSpec;
  [field: string]: unknown;
}

/** What {@link backendFromKubeStash} needs besides the storage spec. */
export interface KubeStashBackendInput {
  /** The BackupStorage's `spec.storage` (or the whole `spec`). */
  storage: KubeStashStorageSpec | KubeStashBackupStorageSpec;
  /** The storage Secret's data (named by `spec.storage.<provider>.secretName`); not needed for local. */
  storageSecret?: StashSecretData;
  /** The Repository's `spec.encryptionSecret` data: RESTIC_PASSWORD. */
  encryptionSecret: StashSecretData;
  /**
   * The restic repository's folder below the storage's prefix: for a backup component,
   * {@link kubeStashResticPath}(repository.spec.path, session, component).
   */
  directory: string;
  /** local: where the operator has the volume mounted (default `local.mountPath`). */
  mountPath?: string;
}

/** What {@link backendFromKubeStash} returns. */
export interface KubeStashRepository {
  backend: Backend;
  /** RESTIC_PASSWORD from the encryption Secret. A secret: do not log it. */
  password: string;
  provider: KubeStashProvider;
}

const PROVIDERS: readonly KubeStashProvider[] = ['local', 's3', 'gcs', 'azure', 'b2', 'swift'];

/** The provider a storage spec selects: exactly one set, agreeing with `provider` when given. */
export function kubeStashProvider(storage: KubeStashStorageSpec): KubeStashProvider {
  if (storage === null || typeof storage !== 'object') throw new InvalidInputError('KubeStash storage spec must be an object');
  const set = PROVIDERS.filter((p) => storage[p] !== undefined && storage[p] !== null);
  if (set.length !== 1) {
    throw new InvalidInputError(`KubeStash storage spec must set exactly one of ${PROVIDERS.join(', ')}; ${set.length === 0 ? 'none is set' : `found ${set.join(' and ')}`}`);
  }
  if (storage.provider !== undefined && storage.provider !== set[0]) {
    throw new InvalidInputError(`KubeStash storage spec says provider ${JSON.stringify(storage.provider)} but sets ${set[0]}`);
  }
  return set[0]!;
}

/**
 * The folder of a component's restic repository below the storage prefix, as KubeStash lays it
 * out: `<repository.spec.path>/repository/<version>/<session>/<component>` (Snapshot's
 * GetComponentPath: apis.DirRepository, snapshot version "v1", the BackupConfiguration session's
 * name, the component such as "dump" or "pod-0").
 */
export function kubeStashResticPath(repositoryPath: string, session: string, component: string, version = 'v1'): string {
  for (const [value, field] of [[session, 'session'], [component, 'component'], [version, 'version']] as const) {
    if (typeof value !== 'string' || value === '' || value.includes('/') || value === '.' || value === '..') {
      throw new InvalidInputError(`KubeStash ${field} must be one path segment, got ${JSON.stringify(value)}`);
    }
  }
  return joinSegments(repositoryPath, 'repository', version, session, component);
}

/**
 * Opens the restic repository KubeStash would use for a BackupStorage, its Secrets and a
 * folder: the location restic would get, the credentials, the connection count, TLS settings and
 * the password. Nothing is contacted yet.
 */
export async function backendFromKubeStash(input: KubeStashBackendInput, options: StashOpenOptions = {}): Promise<KubeStashRepository> {
  const storage: KubeStashStorageSpec = 'storage' in input.storage && input.storage.storage ? (input.storage as KubeStashBackupStorageSpec).storage : (input.storage as KubeStashStorageSpec);
  const provider = kubeStashProvider(storage);
  const encryption = secretStrings(input.encryptionSecret);
  const password = encryption.RESTIC_PASSWORD;
  if (!password) throw new InvalidInputError('the KubeStash encryption secret has no RESTIC_PASSWORD');
  const secret = input.storageSecret ? secretStrings(input.storageSecret) : {};
  if (typeof input.directory !== 'string') throw new InvalidInputError('KubeStash directory must be a string');
  const dir = input.directory;

  const env: Record<string, string> = {};
  const extended: Record<string, string> = {};
  const tls: Pick<OpenBackendOptions, 'caCertPem' | 'insecureTls'> = {};
  const overrides: BackendOverrides = {};
  const copy = (...keys: string[]) => {
    for (const k of keys) if (secret[k] !== undefined) env[k] = secret[k];
  };
  const connections = (ns: string, n: number | undefined, field: string) => {
    if (n === undefined || n === null || n === 0) return;
    if (!Number.isInteger(n) || n < 0) throw new InvalidInputError(`KubeStash ${field} must be a positive integer, got ${JSON.stringify(n)}`);
    extended[`${ns}.connections`] = String(n);
  };
  const need = (value: unknown, field: string): string => {
    if (typeof value !== 'string' || value === '') throw new InvalidInputError(`KubeStash storage field ${field} must be a non-empty string`);
    return value;
  };
  if (secret.CA_CERT_DATA) tls.caCertPem = secret.CA_CERT_DATA;
  let location: ParsedLocation;
  switch (provider) {
    case 'local': {
      const local = storage.local!;
      const base = input.mountPath ?? need(local.mountPath, 'local.mountPath');
      // The volume is mounted with its subPath already applied; restic gets <mountPath>/<directory>.
      location = { kind: 'local', path: `${base.replace(/\/+$/, '')}/${joinSegments(dir)}` };
      break;
    }
    case 's3': {
      const s3 = storage.s3!;
      const endpoint = need(s3.endpoint, 's3.endpoint').replace(/\/+$/, '');
      location = parse(`s3:${endpoint}/${joinSegments(need(s3.bucket, 's3.bucket'), s3.prefix ?? '', dir)}`);
      copy('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY');
      if (s3.region) env.AWS_DEFAULT_REGION = s3.region;
      if (s3.insecureTLS === true) tls.insecureTls = true;
      break;
    }
    case 'gcs': {
      const gcs = storage.gcs!;
      location = parse(`gs:${need(gcs.bucket, 'gcs.bucket')}:/${joinSegments(gcs.prefix ?? '', dir)}`);
      if (secret.GOOGLE_SERVICE_ACCOUNT_JSON_KEY) overrides.gs = { credentials: secret.GOOGLE_SERVICE_ACCOUNT_JSON_KEY };
      connections('gs', gcs.maxConnections, 'gcs.maxConnections');
      break;
    }
    case 'azure': {
      const azure = storage.azure!;
      location = parse(`azure:${need(azure.container, 'azure.container')}:/${joinSegments(azure.prefix ?? '', dir)}`);
      env.AZURE_ACCOUNT_NAME = need(azure.storageAccount, 'azure.storageAccount');
      copy('AZURE_ACCOUNT_KEY');
      connections('azure', azure.maxConnections, 'azure.maxConnections');
      break;
    }
    case 'b2': {
      const b2 = storage.b2!;
      location = parse(`b2:${need(b2.bucket, 'b2.bucket')}:/${joinSegments(b2.prefix ?? '', dir)}`);
      for (const key of ['B2_ACCOUNT_ID', 'B2_ACCOUNT_KEY']) if (!secret[key]) throw new InvalidInputError(`the KubeStash storage secret has no ${key} (required for b2)`);
      copy('B2_ACCOUNT_ID', 'B2_ACCOUNT_KEY');
      connections('b2', b2.maxConnections, 'b2.maxConnections');
      break;
    }
    case 'swift': {
      const swift = storage.swift!;
      location = parse(`swift:${need(swift.container, 'swift.container')}:/${joinSegments(swift.prefix ?? '', dir)}`);
      copy(...SWIFT_KEYS);
      break;
    }
  }
  const merged: BackendOverrides = { ...options.overrides };
  if (overrides.gs) merged.gs = { ...overrides.gs, ...options.overrides?.gs };
  const backend = await openLocation(location, { ...options, env, extended, ...tls, overrides: merged });
  return { backend, password, provider };
}

function parse(location: string): ParsedLocation {
  try {
    return parseLocation(location);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`KubeStash storage spec: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Segments joined with single slashes, empty ones dropped (Go's filepath.Join for these paths); ".." is refused. */
function joinSegments(...parts: string[]): string {
  const segments = parts.flatMap((p) => (p ?? '').split('/')).filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw new InvalidInputError(`KubeStash paths must not contain "..": ${JSON.stringify(parts.join('/'))}`);
  return segments.join('/');
}
