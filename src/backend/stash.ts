// Opens the repository a Stash `Repository` points at: its `spec.backend` plus the storage Secret
// named there. Stash turns these into a restic location, environment variables and `-o`
// options (pkg/restic/setup.go); this does the same and hands them to openLocation, so a
// repository is found exactly where Stash's restic would find it.

import { join } from 'node:path';
import type { Backend } from './backend.ts';
import { openLocation, parseLocation } from './location.ts';
import type { BackendOverrides, OpenBackendOptions, ParsedLocation } from './location.ts';
import { InvalidInputError } from '../errors.ts';

// ---- Stash's API types (kmodules.xyz/objectstore-api, api/v1) -----------------------------------

/** `spec.backend` of a Stash Repository: the secret's name and exactly one storage kind. */
export interface StashBackendSpec {
  /** Name of the Secret holding RESTIC_PASSWORD and the credentials (read by the caller). */
  storageSecretName?: string;
  local?: StashLocalSpec;
  s3?: StashS3Spec;
  gcs?: StashGCSSpec;
  azure?: StashAzureSpec;
  swift?: StashSwiftSpec;
  b2?: StashB2Spec;
  rest?: StashRestSpec;
}

/**
 * A Kubernetes volume mounted into the backup pod. The volume source (hostPath, nfs,
 * persistentVolumeClaim, …) only matters to Kubernetes; the repository is at mountPath/subPath.
 */
export interface StashLocalSpec {
  mountPath: string;
  subPath?: string;
  hostPath?: unknown;
  persistentVolumeClaim?: unknown;
  nfs?: unknown;
  emptyDir?: unknown;
  [volumeSource: string]: unknown;
}

/** Stash's `spec.backend.s3`. */
export interface StashS3Spec {
  /** "s3.amazonaws.com", a host[:port], or a full http(s):// URL (MinIO, Ceph, DigitalOcean Spaces). */
  endpoint: string;
  bucket: string;
  prefix?: string;
  /** Exported as AWS_DEFAULT_REGION. */
  region?: string;
  /** restic --insecure-tls: accept any certificate. */
  insecureTLS?: boolean;
}

/** Stash's `spec.backend.gcs`. */
export interface StashGCSSpec {
  bucket: string;
  prefix?: string;
  /** restic -o gs.connections (Stash's default: restic's 5). */
  maxConnections?: number;
}

/** Stash's `spec.backend.azure`. */
export interface StashAzureSpec {
  container: string;
  prefix?: string;
  maxConnections?: number;
}

/** Stash's `spec.backend.swift`. */
export interface StashSwiftSpec {
  container: string;
  prefix?: string;
}

/** Stash's `spec.backend.b2`. */
export interface StashB2Spec {
  bucket: string;
  prefix?: string;
  maxConnections?: number;
}

/** Stash's `spec.backend.rest`. */
export interface StashRestSpec {
  /** The rest-server URL, with the repository path; credentials come from the Secret. */
  url: string;
}

/**
 * The decoded `data` of the storage Secret. Strings are taken as they are (like `stringData`);
 * bytes are read as UTF-8. decodeSecretData turns a Secret's base64 `data` into this form.
 */
export type StashSecretData = Readonly<Record<string, string | Uint8Array>>;

/** The backend kind of a Stash Repository spec (the key set in `spec.backend`). */
export type StashKind = 'local' | 's3' | 'gcs' | 'azure' | 'swift' | 'b2' | 'rest';

const KINDS: readonly StashKind[] = ['local', 's3', 'gcs', 'azure', 'swift', 'b2', 'rest'];

/** Every Secret key Stash exports for Swift; restic (and SwiftBackend) pick the auth method from them. */
export const SWIFT_KEYS = [
  'ST_AUTH',
  'ST_USER',
  'ST_KEY',
  'OS_AUTH_URL',
  'OS_REGION_NAME',
  'OS_USERNAME',
  'OS_PASSWORD',
  'OS_TENANT_ID',
  'OS_TENANT_NAME',
  'OS_USER_DOMAIN_NAME',
  'OS_PROJECT_NAME',
  'OS_PROJECT_DOMAIN_NAME',
  'OS_APPLICATION_CREDENTIAL_ID',
  'OS_APPLICATION_CREDENTIAL_NAME',
  'OS_APPLICATION_CREDENTIAL_SECRET',
  'OS_STORAGE_URL',
  'OS_AUTH_TOKEN',
];

/** What backendFromStash may be told beyond the spec and secret (wrappers, overrides). */
export type StashOpenOptions = Omit<OpenBackendOptions, 'env' | 'extended' | 'cacert' | 'caCertPem' | 'insecureTls'>;

/** What {@link backendFromStash} returns: the backend and the repository password. */
export interface StashRepository {
  /** The backend, wrapped with retries and a connection limit unless `raw` was asked for. */
  backend: Backend;
  /** RESTIC_PASSWORD from the Secret. A secret: do not log it. */
  password: string;
  /** Which storage kind the spec chose. */
  kind: StashKind;
}

/** The kind a spec selects; exactly one must be set. */
export function stashKind(spec: StashBackendSpec): StashKind {
  if (spec === null || typeof spec !== 'object') throw new InvalidInputError('Stash backend spec must be an object');
  const set = KINDS.filter((k) => spec[k] !== undefined && spec[k] !== null);
  if (set.length !== 1) {
    throw new InvalidInputError(
      `Stash backend spec must set exactly one of ${KINDS.join(', ')}; ${set.length === 0 ? 'none is set' : `found ${set.join(' and ')}`}`,
    );
  }
  return set[0];
}

/**
 * Opens the repository of a Stash backend spec with its storage Secret: where it is (as
 * Stash's restic would look), the credentials, the connection count and TLS settings, and the
 * repository password. Nothing is contacted yet.
 */
export async function backendFromStash(spec: StashBackendSpec, secretData: StashSecretData, options: StashOpenOptions = {}): Promise<StashRepository> {
  const kind = stashKind(spec);
  const secret = secretStrings(secretData);
  const password = secret.RESTIC_PASSWORD;
  if (password === undefined || password === '') throw new InvalidInputError('the Stash storage secret has no RESTIC_PASSWORD');

  const { location, env, extended, tls, overrides } = translate(kind, spec, secret);
  // The caller's overrides win, field by field, over what the Secret gave.
  const merged: BackendOverrides = { ...options.overrides };
  if (overrides.gs) merged.gs = { ...overrides.gs, ...options.overrides?.gs };
  const backend = await openLocation(location, { ...options, env, extended, ...tls, overrides: merged });
  return { backend, password, kind };
}

interface Translated {
  location: ParsedLocation;
  env: Record<string, string>;
  extended: Record<string, string>;
  tls: Pick<OpenBackendOptions, 'caCertPem' | 'insecureTls'>;
  overrides: BackendOverrides;
}

/** Stash's setup.go, step by step: the restic location, the variables it exports and the flags it adds. */
function translate(kind: StashKind, spec: StashBackendSpec, secret: Record<string, string>): Translated {
  const env: Record<string, string> = {};
  const extended: Record<string, string> = {};
  const tls: Pick<OpenBackendOptions, 'caCertPem' | 'insecureTls'> = {};
  const overrides: BackendOverrides = {};
  const copy = (...keys: string[]): void => {
    for (const key of keys) if (secret[key] !== undefined) env[key] = secret[key];
  };
  const connections = (ns: string, n: number | undefined, field: string): void => {
    if (n === undefined || n === null || n === 0) return; // 0 is Go's "unset": restic's default applies
    if (!Number.isInteger(n) || n < 0) throw new InvalidInputError(`Stash ${field} must be a positive integer, got ${JSON.stringify(n)}`);
    extended[`${ns}.connections`] = String(n);
  };
  // Stash passes CA_CERT_DATA as --cacert; only the HTTP backends Stowage runs itself can use it.
  const caCert = (): void => {
    if (secret.CA_CERT_DATA) tls.caCertPem = secret.CA_CERT_DATA;
  };
  let location: ParsedLocation;
  switch (kind) {
    case 'local': {
      const local = spec.local!;
      requireString(local.mountPath, 'local.mountPath');
      optionalString(local.subPath, 'local.subPath');
      location = { kind: 'local', path: join(local.mountPath, local.subPath ?? '') };
      break;
    }
    case 's3': {
      const s3 = spec.s3!;
      requireString(s3.endpoint, 's3.endpoint');
      requireString(s3.bucket, 's3.bucket');
      optionalString(s3.prefix, 's3.prefix');
      optionalString(s3.region, 's3.region');
      const endpoint = s3.endpoint.replace(/\/+$/, '');
      location = parseStashLocation(`s3:${endpoint}/${joinPath(s3.bucket, s3.prefix)}`, 's3');
      copy('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY');
      if (s3.region) env.AWS_DEFAULT_REGION = s3.region;
      if (s3.insecureTLS === true) tls.insecureTls = true;
      caCert();
      break;
    }
    case 'gcs': {
      const gcs = spec.gcs!;
      requireString(gcs.bucket, 'gcs.bucket');
      optionalString(gcs.prefix, 'gcs.prefix');
      location = parseStashLocation(`gs:${gcs.bucket}:/${gcs.prefix ?? ''}`, 'gcs');
      copy('GOOGLE_PROJECT_ID');
      // Stash writes the key to a file for GOOGLE_APPLICATION_CREDENTIALS; the backend takes the text itself.
      if (secret.GOOGLE_SERVICE_ACCOUNT_JSON_KEY) overrides.gs = { credentials: secret.GOOGLE_SERVICE_ACCOUNT_JSON_KEY };
      connections('gs', gcs.maxConnections, 'gcs.maxConnections');
      break;
    }
    case 'azure': {
      const azure = spec.azure!;
      requireString(azure.container, 'azure.container');
      optionalString(azure.prefix, 'azure.prefix');
      location = parseStashLocation(`azure:${azure.container}:/${azure.prefix ?? ''}`, 'azure');
      copy('AZURE_ACCOUNT_NAME', 'AZURE_ACCOUNT_KEY');
      connections('azure', azure.maxConnections, 'azure.maxConnections');
      break;
    }
    case 'swift': {
      const swift = spec.swift!;
      requireString(swift.container, 'swift.container');
      optionalString(swift.prefix, 'swift.prefix');
      location = parseStashLocation(`swift:${swift.container}:/${swift.prefix ?? ''}`, 'swift');
      copy(...SWIFT_KEYS);
      break;
    }
    case 'b2': {
      const b2 = spec.b2!;
      requireString(b2.bucket, 'b2.bucket');
      optionalString(b2.prefix, 'b2.prefix');
      location = parseStashLocation(`b2:${b2.bucket}:/${b2.prefix ?? ''}`, 'b2');
      for (const key of ['B2_ACCOUNT_ID', 'B2_ACCOUNT_KEY']) {
        if (!secret[key]) throw new InvalidInputError(`the Stash storage secret has no ${key} (required for b2)`);
      }
      copy('B2_ACCOUNT_ID', 'B2_ACCOUNT_KEY');
      connections('b2', b2.maxConnections, 'b2.maxConnections');
      break;
    }
    case 'rest': {
      const rest = spec.rest!;
      requireString(rest.url, 'rest.url');
      const parsed = parseStashLocation(`rest:${rest.url}`, 'rest');
      if (parsed.kind !== 'rest') throw new InvalidInputError('Stash rest.url must be an http or https URL');
      // Stash writes the Secret's user (and password, if any) into the URL, replacing what was there.
      const username = secret.REST_SERVER_USERNAME;
      location =
        username === undefined
          ? parsed
          : {
              kind: 'rest',
              url: parsed.url,
              username,
              ...(secret.REST_SERVER_PASSWORD !== undefined ? { password: secret.REST_SERVER_PASSWORD } : {}),
            };
      caCert();
      break;
    }
    default:
      throw new InvalidInputError(`unknown Stash backend kind ${String(kind)}`);
  }
  return { location, env, extended, tls, overrides };
}

/** Parses the location Stash would give restic, naming the spec field on failure. */
function parseStashLocation(location: string, kind: StashKind): ParsedLocation {
  try {
    return parseLocation(location);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`Stash ${kind} backend spec: ${err.message}`, { cause: err });
    throw err;
  }
}

/** bucket + prefix joined with single slashes, as Go's filepath.Join does for Stash. */
function joinPath(bucket: string, prefix: string | undefined): string {
  return [bucket, ...(prefix ?? '').split('/')].filter((p) => p !== '').join('/');
}

function requireString(value: unknown, field: string): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new InvalidInputError(`Stash backend spec field ${field} must be a non-empty string`);
}

function optionalString(value: unknown, field: string): void {
  if (value !== undefined && value !== null && typeof value !== 'string') {
    throw new InvalidInputError(`Stash backend spec field ${field} must be a string`);
  }
}

/** The Secret data as strings (bytes read as UTF-8); shared with kubestash.ts. */
export function secretStrings(data: StashSecretData): Record<string, string> {
  if (data === null || typeof data !== 'object') throw new InvalidInputError('Stash secret data must be an object of strings or bytes');
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(data)) {
    if (typeof value === 'string') out[key] = value;
    else if (value instanceof Uint8Array) out[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
    else throw new InvalidInputError(`Stash secret key ${key} must be a string or bytes`);
  }
  return out;
}

/** Decodes the base64 `data` of a Kubernetes Secret (as `kubectl get secret -o json` shows it). */
export function decodeSecretData(data: Readonly<Record<string, string>>): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const [key, value] of Object.entries(data ?? {})) {
    if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value.replace(/\s+/g, ''))) {
      throw new InvalidInputError(`Secret data key ${key} is not base64`);
    }
    out[key] = new Uint8Array(Buffer.from(value, 'base64'));
  }
  return out;
}
