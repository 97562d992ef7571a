// A repository in an OpenStack Swift container, spoken to directly with Node's fetch.
// Object names follow restic's swift backend: "<prefix>/<restic layout path>", so restic
// (swift:<container>:/<prefix>) and Stowage read each other's repositories.
//
// Authentication: Swift v1 (tempauth, swauth, Rackspace-style: X-Auth-User/X-Auth-Key),
// Keystone v2 (tenant tokens) and v3 (password or application credential, with the object-store
// endpoint taken from the catalog by region and interface), or a storage URL and token obtained
// elsewhere. A 401 on a request means the token expired: the backend authenticates once more
// and repeats that request.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { nodeHttp, nodeHttps } from './node-http.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions, LocalFile } from './backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, StowageError, throwIfAborted } from '../errors.ts';
import {
  checkConnections, startCall, checkType, emptyRead, fileInfo, isIdName, listConfig, maskSecrets, normalizePrefix,
  parseContentRange, positiveInteger, prefixedKey, raceAbort, rangeHeader, redactUrlUserInfo as redactUrl, resolveRange, transientErrors,
  underPrefix, uploadChecksumsOption,
  localFileDigests, uploadFromFile,
} from './shared.ts';

/**
 * Options of {@link SwiftBackend}: the container, and either an auth URL with credentials (Swift v1
 * auth or Keystone v2/v3) or a storage URL with a token. {@link swiftOptionsFromEnv} builds them
 * from restic's variables.
 */
export interface SwiftBackendOptions {
  /**
   * Send a checksum of every upload for the server to verify before it stores the bytes, so a
   * byte damaged on the way is refused (transiently) instead of stored. Default true; false is
   * for tests that show what the server stores without one.
   */
  uploadChecksums?: boolean;
  /** The container that holds the repository (restic: swift:<container>:/<prefix>). Created by create(). */
  container: string;
  /** Folder inside the container ("" or absent: the container's root). Leading and trailing slashes are ignored. */
  prefix?: string;

  /**
   * Where to authenticate: a Swift v1 auth URL (e.g. http://host:8080/auth/v1.0) or a Keystone
   * identity URL (…/v2.0 or …/v3). Not needed with `storageUrl` + `authToken`.
   */
  authUrl?: string;
  /** 1 (Swift auth), 2 or 3 (Keystone). Default: taken from authUrl ("v3" → 3, "v2" → 2, otherwise 1). */
  authVersion?: 1 | 2 | 3;
  /** v1: the account user ("account:user", ST_USER); Keystone: the user name (OS_USERNAME). */
  username?: string;
  /** Keystone v3: the user ID, instead of username + user domain (OS_USER_ID). */
  userId?: string;
  /** v1: the key (ST_KEY); Keystone: the password (OS_PASSWORD). Never shown in messages. */
  password?: string;
  /** Keystone v3: the user's domain by name (OS_USER_DOMAIN_NAME), default "Default" when a username is given. */
  userDomainName?: string;
  /** Keystone v3: the user's domain by ID (OS_USER_DOMAIN_ID). */
  userDomainId?: string;
  /** Keystone v3 project name / v2 tenant name (OS_PROJECT_NAME, OS_TENANT_NAME). */
  projectName?: string;
  /** Keystone v3 project ID / v2 tenant ID (OS_PROJECT_ID, OS_TENANT_ID). */
  projectId?: string;
  /** Keystone v3: the project's domain by name (OS_PROJECT_DOMAIN_NAME); default: the user's domain. */
  projectDomainName?: string;
  /** Keystone v3: the project's domain by ID (OS_PROJECT_DOMAIN_ID). */
  projectDomainId?: string;
  /** Keystone: the catalog region of the object-store endpoint (OS_REGION_NAME); default: the first one listed. */
  region?: string;
  /** Keystone: which catalog endpoint to use (OS_INTERFACE); default "public". */
  interface?: 'public' | 'internal' | 'admin';
  /** Keystone v3 application credential by ID (OS_APPLICATION_CREDENTIAL_ID). */
  applicationCredentialId?: string;
  /** Keystone v3 application credential by name; needs username (or userId) and user domain. */
  applicationCredentialName?: string;
  /** The application credential's secret (OS_APPLICATION_CREDENTIAL_SECRET). Never shown in messages. */
  applicationCredentialSecret?: string;

  /**
   * The account's storage URL (OS_STORAGE_URL), e.g. https://swift.example.com/v1/AUTH_project.
   * With `authToken` and no authUrl, no authentication happens; with an authUrl it replaces the
   * URL the auth service returns (e.g. to reach an internal endpoint).
   */
  storageUrl?: string;
  /** A token obtained elsewhere (OS_AUTH_TOKEN), used until the server rejects it. Never shown in messages. */
  authToken?: string;

  /** X-Storage-Policy for a container that create() makes (restic: SWIFT_DEFAULT_CONTAINER_POLICY). */
  storagePolicy?: string;
  /** Requests in flight at once (default 5, like restic's swift backend). */
  connections?: number;
  /** Milliseconds one request (including its body) may take before it fails as transient (default 10 minutes). */
  timeoutMs?: number;
}

/** Objects per listing request. Swift's default maximum is 10000; small pages keep memory flat. */
const LIST_PAGE = 1000;

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/** How much of an error response is quoted in a message. */
const ERROR_BODY_CHARS = 200;

interface Session {
  storageUrl: string;
  token: string;
}

interface RequestInit {
  op: string;
  file: string;
  method: string;
  /** Object name inside the container, or undefined for the container itself. */
  object?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** The bytes, or a maker of a stream of them (a local file read as it is sent: one per attempt). */
  body?: Uint8Array | (() => Readable);
  signal?: AbortSignal;
}

/**
 * A repository in an OpenStack Swift container under an optional prefix, in restic's layout, so
 * restic's `swift:` backend shares it. Speaks Swift's HTTP API itself (no extra package);
 * authenticates on the first request and again when the token is rejected. The constructor checks
 * the options (`InvalidInputError`) and contacts nothing. 5 requests in flight by default.
 */
export class SwiftBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  /** The container that holds the repository. */
  readonly container: string;
  /** The normalised prefix ("" or "a/b", no leading or trailing "/"). */
  readonly prefix: string;
  readonly #opts: SwiftBackendOptions;
  /** The `uploadChecksums` option (default on). */
  readonly #checksums: boolean;
  readonly #timeoutMs: number;
  readonly #authVersion: 1 | 2 | 3 | undefined;
  /** The current (or in-flight) authentication; undefined until first needed or after a 401. */
  #session: { promise: Promise<Session>; value?: Session } | undefined;

  constructor(opts: SwiftBackendOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidInputError('swift backend options must be an object');
    const container = opts.container;
    if (typeof container !== 'string' || container === '' || container.includes('/') || container.length > 256) {
      throw new InvalidInputError(`swift container must be a non-empty name without "/" (at most 256 characters), got ${JSON.stringify(container)?.slice(0, 80)}`);
    }
    this.container = container;
    this.prefix = normalizePrefix(opts.prefix, 'swift prefix');
    this.location = `swift:${container}:/${this.prefix}`;
    this.connections = checkConnections(opts.connections ?? 5, this.location);
    this.#timeoutMs = positiveInteger(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', this.location);
    this.#opts = { ...opts };
    this.#checksums = uploadChecksumsOption(opts.uploadChecksums, 'swift');

    if (opts.authUrl) {
      this.#authVersion = opts.authVersion ?? inferAuthVersion(opts.authUrl, Boolean(opts.applicationCredentialId || opts.applicationCredentialName));
      checkCredentials(this.#opts, this.#authVersion, this.location);
    } else if (!(opts.storageUrl && opts.authToken)) {
      throw new InvalidInputError(`swift backend ${this.location} needs an authUrl with credentials, or storageUrl and authToken`);
    }
    if (opts.storageUrl) checkHttpUrl(opts.storageUrl, 'storageUrl');
    if (opts.storageUrl && opts.authToken) {
      const value = { storageUrl: trimSlash(opts.storageUrl), token: opts.authToken };
      this.#session = { promise: Promise.resolve(value), value };
    }
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const headers: Record<string, string> = {};
    if (this.#opts.storagePolicy) headers['X-Storage-Policy'] = this.#opts.storagePolicy;
    const res = await this.#request({ op: 'create container', file: this.container, method: 'PUT', headers, signal: options.signal });
    // 201: created; 202: it already existed.
    if (res.status !== 201 && res.status !== 202 && res.status !== 204) throw await this.#httpError('create container', this.container, res);
    await discard(res);
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    // Swift checks the body against the ETag and refuses a damaged upload with 422.
    await this.#put(h, file, createHash('md5').update(data).digest('hex'), data, data.length, options.signal);
  }

  /**
   * Stores a local file as `save` stores bytes, without holding it whole: a first pass over the
   * file computes the MD5 the ETag header carries, then the PUT sends the file as it is read
   * (with its Content-Length). A file that does not hold `file.size` bytes is an IntegrityError
   * and the request is cut off before its end, so nothing is stored.
   */
  async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    // The ETag also tells a concurrent save's object apart (see #put), so it is computed even without checksums.
    const md5 = (await localFileDigests(local, file, ['md5'], { signal: options.signal })).digests[0]!.toString('hex');
    await uploadFromFile(local, file, options.signal, (stream, signal) => this.#put(h, file, md5, () => stream(), local.size, signal));
  }

  async #put(h: FileHandle, file: string, md5: string, body: Uint8Array | (() => Readable), size: number, signal: AbortSignal | undefined): Promise<void> {
    const contentType = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) };
    const res = await this.#request({
      op: 'save',
      file,
      method: 'PUT',
      object: this.#objectName(h),
      headers: this.#checksums ? { ...contentType, ETag: md5 } : contentType,
      body,
      signal,
    });
    const options = { signal };
    if (res.status === 422) {
      await discard(res);
      throw new BackendError(`save ${file} (in ${this.location}): the server received different bytes than were sent (ETag mismatch, HTTP 422)`, { transient: true, status: 422 });
    }
    if (res.status === 202 || res.status === 409) {
      // Swift keeps the newest of concurrent PUTs of one name and answers an older one 202
      // Accepted (409 from an object server) without storing it. Names are content hashes, so
      // what matters is that the stored object has these bytes.
      await discard(res);
      const head = await this.#request({ op: 'save', file, method: 'HEAD', object: this.#objectName(h), signal: options.signal });
      await discard(head);
      if ((head.status === 200 || head.status === 204) && head.headers.get('etag') === md5) return;
      throw new BackendError(`save ${file} (in ${this.location}): a concurrent save of the same name won (HTTP ${res.status}) and the stored object differs`, { transient: true, status: res.status });
    }
    if (res.status !== 201 && res.status !== 200) throw await this.#httpError('save', file, res);
    const etag = res.headers.get('etag');
    await discard(res);
    if (this.#checksums && etag && /^[0-9a-f]{32}$/.test(etag) && etag !== md5) {
      throw new BackendError(`save ${file} (in ${this.location}): the server stored an object with ETag ${etag}, expected ${md5}`, { transient: true, status: res.status });
    }
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    if (options.length === 0) return emptyRead(() => this.stat(h, options), options, file);

    const range = rangeHeader(options, file);
    const whole = range === undefined;
    const offset = options.offset ?? 0;
    const headers: Record<string, string> = range ? { Range: range } : {};
    const res = await this.#request({ op: 'load', file, method: 'GET', object: this.#objectName(h), headers, signal: options.signal });

    if (res.status === 404) {
      await discard(res);
      throw new NotFoundError(file);
    }
    if (res.status === 416) {
      // The range starts at or past the end. Reading zero bytes at the very end is allowed.
      await discard(res);
      const total = parseContentRange(res.headers.get('content-range'))?.total;
      const size = total ?? (await this.stat(h, options)).size;
      const { length } = resolveRange(options, size, file);
      if (length === 0) return new Uint8Array(0);
      throw new BackendError(`load ${file} (in ${this.location}): the server refused range ${headers.Range} of a ${size}-byte object`, { transient: true, status: 416 });
    }
    if (res.status === 200) {
      const body = await this.#readBody(res, 'load', file, options.signal);
      if (whole) verifyEtag(res, body, file);
      // A server may ignore Range and send the whole object.
      const range = resolveRange(options, body.length, file);
      return whole ? body : body.slice(range.offset, range.offset + range.length);
    }
    if (res.status === 206) {
      const contentRange = parseContentRange(res.headers.get('content-range'));
      if (!contentRange || Number.isNaN(contentRange.start)) {
        await discard(res);
        throw new BackendError(`load ${file} (in ${this.location}): partial response without a valid Content-Range`, { transient: true, status: 206 });
      }
      // The object's total size decides whether the asked range was past the end.
      const { length } = resolveRange(options, contentRange.total ?? Number.MAX_SAFE_INTEGER, file);
      const body = await this.#readBody(res, 'load', file, options.signal);
      if (contentRange.start !== offset || body.length !== length) {
        throw new IntegrityError(`short read: got ${body.length} bytes at offset ${contentRange.start}, expected ${length} at ${offset}`, { file });
      }
      return body;
    }
    throw await this.#httpError('load', file, res);
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    const file = startCall(h, options.signal);
    const res = await this.#request({ op: 'stat', file, method: 'HEAD', object: this.#objectName(h), signal: options.signal });
    await discard(res);
    if (res.status === 404) throw new NotFoundError(file);
    if (res.status !== 200 && res.status !== 204) throw await this.#httpError('stat', file, res);
    const size = Number(res.headers.get('content-length'));
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new BackendError(`stat ${file} (in ${this.location}): the server sent no valid Content-Length`, { transient: true, status: res.status });
    }
    return fileInfo(h, size);
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') return yield* listConfig(() => this.stat({ type, name: '' }, options));
    const folder = underPrefix(this.prefix, `${type}/`);
    let marker = '';
    for (;;) {
      const query: Record<string, string> = { format: 'json', limit: String(LIST_PAGE), prefix: folder };
      if (marker) query.marker = marker;
      const res = await this.#request({ op: 'list', file: type, method: 'GET', query, signal: options.signal });
      // No container yet: nothing stored.
      if (res.status === 404 || res.status === 204) {
        await discard(res);
        return;
      }
      if (res.status !== 200) throw await this.#httpError('list', type, res);
      const page = parseListing(await this.#readBody(res, 'list', type, options.signal), `list ${type} (in ${this.location})`);
      for (const entry of page) {
        // Like restic: the last path element is the name, whatever folders lie between.
        const name = entry.name.slice(entry.name.lastIndexOf('/') + 1);
        if (isIdName(name)) yield { name, size: entry.bytes };
      }
      if (page.length < LIST_PAGE) return;
      marker = page[page.length - 1]!.name;
      throwIfAborted(options.signal);
    }
  }

  async remove(h: FileHandle, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const res = await this.#request({ op: 'remove', file, method: 'DELETE', object: this.#objectName(h), signal: options.signal });
    if (res.status === 404) {
      await discard(res);
      throw new NotFoundError(file);
    }
    if (res.status !== 204 && res.status !== 200) throw await this.#httpError('remove', file, res);
    await discard(res);
  }

  async close(): Promise<void> {
    // fetch keeps no per-backend connections, and a token is only a string: nothing to release.
  }

  #objectName(h: FileHandle): string {
    return prefixedKey(this.prefix, h);
  }

  /**
   * Sends one request with the current token. A 401 means the token expired (or was revoked):
   * with credentials to log in again, the backend authenticates once more and repeats it.
   */
  async #request(init: RequestInit): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const session = await this.#currentSession(init.signal, init.op, init.file);
      const res = await this.#send(session, init);
      if (res.status !== 401 || attempt > 0 || !this.#opts.authUrl) return res;
      await discard(res);
      this.#forget(session);
    }
  }

  async #send(session: Session, init: RequestInit): Promise<Response> {
    let url = `${session.storageUrl}/${encodeURIComponent(this.container)}`;
    if (init.object !== undefined) url += `/${init.object.split('/').map(encodeURIComponent).join('/')}`;
    if (init.query) url += `?${new URLSearchParams(init.query).toString()}`;
    const body = typeof init.body === 'function' ? init.body() : init.body;
    return await this.#fetch(url, { method: init.method, headers: { ...init.headers, 'X-Auth-Token': session.token }, body }, init);
  }

  /** fetch with the caller's signal and the request timeout; network failures become StowageErrors. */
  async #fetch(url: string, req: { method: string; headers: Record<string, string>; body?: Uint8Array | string | Readable }, what: { op: string; file: string; signal?: AbortSignal }): Promise<Response> {
    throwIfAborted(what.signal);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = what.signal ? AbortSignal.any([what.signal, timeout]) : timeout;
    try {
      // A stream body (a local file) goes through node:http, which sends it as it is read: fetch
      // holds a streamed request body whole until the request ends.
      if (req.body instanceof Readable) return await streamedRequest(url, req.method, req.headers, req.body, signal);
      return await fetch(url, { method: req.method, headers: req.headers, body: req.body, signal, redirect: 'manual' });
    } catch (err) {
      throw this.#networkError(err, what.op, what.file, what.signal);
    }
  }

  async #readBody(res: Response, op: string, file: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    try {
      return new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      throw this.#networkError(err, op, file, signal);
    }
  }

  #networkError(err: unknown, op: string, file: string, signal: AbortSignal | undefined): StowageError {
    if (err instanceof StowageError) return err;
    if (signal?.aborted) return new AbortedError(undefined, { cause: err });
    const name = (err as { name?: unknown } | null)?.name;
    if (name === 'TimeoutError') {
      return new BackendError(`${op} ${file} (in ${this.location}): no complete answer within ${this.#timeoutMs / 1000} s`, { transient: true, cause: err });
    }
    const cause = (err as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
    const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : err instanceof Error ? err.message : String(err);
    // Refused, reset, DNS and TLS hiccups: the next attempt may well work.
    return new BackendError(`${op} ${file} (in ${this.location}): ${detail}`, { transient: true, cause: err });
  }

  async #httpError(op: string, file: string, res: Response): Promise<BackendError> {
    const text = await res.text().catch(() => '');
    // Masked before it is shortened, or a cut-off secret would slip through.
    const detail = summarizeBody(this.#redact(text));
    const transient = transientErrors.status(res.status);
    return new BackendError(`${op} ${file} (in ${this.location}): HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${detail ? `: ${detail}` : ''}`, { transient, status: res.status });
  }

  // ---- authentication ---------------------------------------------------------------------

  /** The session to use; concurrent callers share one authentication. */
  async #currentSession(signal: AbortSignal | undefined, op: string, file: string): Promise<Session> {
    if (!this.#session) {
      const entry: { promise: Promise<Session>; value?: Session } = { promise: this.#authenticate() };
      this.#session = entry;
      entry.promise.then(
        (s) => {
          entry.value = s;
        },
        () => {
          // A failed login is not cached: the next call tries again.
          if (this.#session === entry) this.#session = undefined;
        },
      );
    }
    // The shared login is not tied to one caller's signal; each caller can still give up waiting.
    return await raceAbort(this.#session.promise, signal, `${op} ${file}: operation aborted while authenticating`);
  }

  /** Drops a session the server rejected, unless another request already replaced it. */
  #forget(rejected: Session): void {
    if (this.#session?.value === rejected) this.#session = undefined;
  }

  async #authenticate(): Promise<Session> {
    const o = this.#opts;
    const authUrl = o.authUrl!;
    let session: Session;
    if (this.#authVersion === 1) session = await this.#authV1(authUrl);
    else if (this.#authVersion === 2) session = await this.#authV2(authUrl);
    else session = await this.#authV3(authUrl);
    if (o.storageUrl) session = { ...session, storageUrl: trimSlash(o.storageUrl) };
    checkHttpUrl(session.storageUrl, 'storage URL from the auth service');
    return session;
  }

  async #authV1(authUrl: string): Promise<Session> {
    const res = await this.#fetch(authUrl, { method: 'GET', headers: { 'X-Auth-User': this.#opts.username ?? '', 'X-Auth-Key': this.#opts.password ?? '' } }, { op: 'authenticate', file: redactUrl(authUrl) });
    if (res.status !== 200 && res.status !== 204) throw await this.#authError(res, authUrl);
    await discard(res);
    const storageUrl = res.headers.get('x-storage-url');
    const token = res.headers.get('x-auth-token') ?? res.headers.get('x-storage-token');
    if (!storageUrl || !token) throw new BackendError(`authenticate at ${redactUrl(authUrl)}: the answer has no X-Storage-Url or X-Auth-Token`, { transient: false, status: res.status });
    return { storageUrl: trimSlash(storageUrl), token };
  }

  async #authV2(authUrl: string): Promise<Session> {
    const o = this.#opts;
    const auth: Record<string, unknown> = { passwordCredentials: { username: o.username, password: o.password } };
    if (o.projectId) auth.tenantId = o.projectId;
    else if (o.projectName) auth.tenantName = o.projectName;
    const url = /\/tokens\/?$/.test(authUrl) ? authUrl : `${trimSlash(authUrl)}/tokens`;
    const res = await this.#fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify({ auth }) }, { op: 'authenticate', file: redactUrl(url) });
    if (res.status !== 200 && res.status !== 203) throw await this.#authError(res, url);
    const body = (await this.#readJson(res, url)) as KeystoneV2Response;
    const token = body?.access?.token?.id;
    if (typeof token !== 'string' || !token) throw new BackendError(`authenticate at ${redactUrl(url)}: the answer has no access.token.id`, { transient: false, status: res.status });
    const wanted = o.interface ?? 'public';
    const key = wanted === 'public' ? 'publicURL' : wanted === 'internal' ? 'internalURL' : 'adminURL';
    const found: string[] = [];
    for (const service of body.access?.serviceCatalog ?? []) {
      if (service?.type !== 'object-store') continue;
      for (const ep of service.endpoints ?? []) {
        found.push(`${ep.region ?? '?'}/${ep[key] ? wanted : 'other'}`);
        if (o.region && ep.region !== o.region) continue;
        const url = ep[key];
        if (typeof url === 'string' && url) return { storageUrl: trimSlash(url), token };
      }
    }
    throw noEndpointError(url, o.region, wanted, found);
  }

  async #authV3(authUrl: string): Promise<Session> {
    const o = this.#opts;
    const url = /\/auth\/tokens\/?$/.test(authUrl) ? authUrl : `${trimSlash(authUrl)}/auth/tokens`;
    const res = await this.#fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(keystoneV3Request(o)) }, { op: 'authenticate', file: redactUrl(url) });
    if (res.status !== 201 && res.status !== 200) throw await this.#authError(res, url);
    const token = res.headers.get('x-subject-token');
    const body = (await this.#readJson(res, url)) as KeystoneV3Response;
    if (!token) throw new BackendError(`authenticate at ${redactUrl(url)}: the answer has no X-Subject-Token`, { transient: false, status: res.status });
    const wanted = o.interface ?? 'public';
    const found: string[] = [];
    for (const service of body?.token?.catalog ?? []) {
      if (service?.type !== 'object-store') continue;
      for (const ep of service.endpoints ?? []) {
        found.push(`${ep.region ?? ep.region_id ?? '?'}/${ep.interface ?? '?'}`);
        if (ep.interface !== wanted) continue;
        if (o.region && ep.region !== o.region && ep.region_id !== o.region) continue;
        if (typeof ep.url === 'string' && ep.url) return { storageUrl: trimSlash(ep.url), token };
      }
    }
    throw noEndpointError(url, o.region, wanted, found);
  }

  async #readJson(res: Response, url: string): Promise<unknown> {
    const bytes = await this.#readBody(res, 'authenticate', redactUrl(url), undefined);
    try {
      return JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch (err) {
      throw new BackendError(`authenticate at ${redactUrl(url)}: the answer is not JSON`, { transient: false, status: res.status, cause: err });
    }
  }

  async #authError(res: Response, url: string): Promise<BackendError> {
    const detail = summarizeBody(this.#redact(await res.text().catch(() => '')));
    const transient = transientErrors.status(res.status);
    const what = res.status === 401 || res.status === 403 ? 'authentication failed' : 'authentication service error';
    return new BackendError(`${what} at ${redactUrl(url)} for ${this.location}: HTTP ${res.status}${detail ? `: ${detail}` : ''}`, { transient, status: res.status });
  }

  /** Server text with our own secrets masked: a server or proxy may echo the request's headers back. */
  #redact(text: string): string {
    return maskSecrets(text, [this.#opts.password, this.#opts.applicationCredentialSecret, this.#opts.authToken, this.#session?.value?.token]);
  }
}

/**
 * The options restic's swift backend reads from the environment, under the same names
 * (OS_* first, then the ST_* v1 names, as restic does). Container and prefix come from the
 * location and are not included.
 */
export function swiftOptionsFromEnv(env: Record<string, string | undefined> = process.env): Omit<SwiftBackendOptions, 'container'> {
  const get = (...names: string[]): string | undefined => {
    for (const n of names) {
      const v = env[n];
      if (v !== undefined && v !== '') return v;
    }
    return undefined;
  };
  const out: Omit<SwiftBackendOptions, 'container'> = {};
  const set = <K extends keyof Omit<SwiftBackendOptions, 'container'>>(key: K, value: Omit<SwiftBackendOptions, 'container'>[K] | undefined): void => {
    if (value !== undefined) out[key] = value;
  };
  set('authUrl', get('OS_AUTH_URL', 'ST_AUTH'));
  set('username', get('OS_USERNAME', 'ST_USER'));
  set('password', get('OS_PASSWORD', 'ST_KEY'));
  set('userId', get('OS_USER_ID'));
  set('userDomainName', get('OS_USER_DOMAIN_NAME'));
  set('userDomainId', get('OS_USER_DOMAIN_ID'));
  set('projectName', get('OS_PROJECT_NAME', 'OS_TENANT_NAME'));
  set('projectId', get('OS_PROJECT_ID', 'OS_TENANT_ID'));
  set('projectDomainName', get('OS_PROJECT_DOMAIN_NAME'));
  set('projectDomainId', get('OS_PROJECT_DOMAIN_ID'));
  set('region', get('OS_REGION_NAME'));
  set('applicationCredentialId', get('OS_APPLICATION_CREDENTIAL_ID'));
  set('applicationCredentialName', get('OS_APPLICATION_CREDENTIAL_NAME'));
  set('applicationCredentialSecret', get('OS_APPLICATION_CREDENTIAL_SECRET'));
  set('storageUrl', get('OS_STORAGE_URL'));
  set('authToken', get('OS_AUTH_TOKEN'));
  set('storagePolicy', get('SWIFT_DEFAULT_CONTAINER_POLICY'));
  const iface = get('OS_INTERFACE', 'OS_ENDPOINT_TYPE');
  if (iface !== undefined) set('interface', parseInterface(iface));
  const version = get('OS_IDENTITY_API_VERSION', 'ST_AUTH_VERSION', 'OS_AUTH_VERSION');
  if (version !== undefined) {
    const major = Number.parseInt(version, 10);
    if (major !== 1 && major !== 2 && major !== 3) throw new InvalidInputError(`unsupported Swift auth version ${JSON.stringify(version)} (expected 1, 2 or 3)`);
    set('authVersion', major);
  }
  // ST_AUTH always means Swift v1 auth, even when its path does not say so.
  if (!out.authVersion && !get('OS_AUTH_URL') && get('ST_AUTH')) out.authVersion = 1;
  return out;
}

// ---- helpers ----------------------------------------------------------------------------------

interface KeystoneV2Response {
  access?: {
    token?: { id?: unknown };
    serviceCatalog?: Array<{ type?: string; endpoints?: Array<{ region?: string; publicURL?: string; internalURL?: string; adminURL?: string }> }>;
  };
}

interface KeystoneV3Response {
  token?: { catalog?: Array<{ type?: string; endpoints?: Array<{ interface?: string; region?: string; region_id?: string; url?: string }> }> };
}

/** The body of a Keystone v3 POST /auth/tokens for the configured method. */
function keystoneV3Request(o: SwiftBackendOptions): unknown {
  const userDomain = o.userDomainId ? { id: o.userDomainId } : { name: o.userDomainName ?? 'Default' };
  const user = o.userId ? { id: o.userId } : { name: o.username, domain: userDomain };
  if (o.applicationCredentialId || o.applicationCredentialName) {
    // An application credential carries its own project scope: no scope in the request.
    const credential = o.applicationCredentialId
      ? { id: o.applicationCredentialId, secret: o.applicationCredentialSecret }
      : { name: o.applicationCredentialName, secret: o.applicationCredentialSecret, user };
    return { auth: { identity: { methods: ['application_credential'], application_credential: credential } } };
  }
  const identity = { methods: ['password'], password: { user: { ...user, password: o.password } } };
  let scope: unknown;
  if (o.projectId) scope = { project: { id: o.projectId } };
  else if (o.projectName) {
    const domain = o.projectDomainId ? { id: o.projectDomainId } : o.projectDomainName ? { name: o.projectDomainName } : userDomain;
    scope = { project: { name: o.projectName, domain } };
  }
  return { auth: scope ? { identity, scope } : { identity } };
}

function inferAuthVersion(authUrl: string, appCredential: boolean): 1 | 2 | 3 {
  if (appCredential) return 3;
  let path: string;
  try {
    path = new URL(authUrl).pathname;
  } catch {
    throw new InvalidInputError(`swift authUrl is not a URL: ${JSON.stringify(redactUrl(authUrl))}`);
  }
  if (/\/v3(\/|$)/.test(path)) return 3;
  if (/\/v2(\.0)?(\/|$)/.test(path)) return 2;
  return 1;
}

function checkCredentials(o: SwiftBackendOptions, version: 1 | 2 | 3, location: string): void {
  checkHttpUrl(o.authUrl!, 'authUrl');
  const missing = (what: string): InvalidInputError => new InvalidInputError(`swift backend ${location} (auth v${version}) needs ${what}`);
  if (version === 3 && (o.applicationCredentialId || o.applicationCredentialName)) {
    if (!o.applicationCredentialSecret) throw missing('applicationCredentialSecret');
    if (o.applicationCredentialName && !o.applicationCredentialId && !o.username && !o.userId) throw missing('username or userId with applicationCredentialName');
    return;
  }
  if (version === 3 ? !o.username && !o.userId : !o.username) throw missing(version === 3 ? 'username or userId' : 'username');
  if (!o.password) throw missing('password');
}

function checkHttpUrl(url: string, what: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidInputError(`swift ${what} is not a URL: ${JSON.stringify(redactUrl(url))}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new InvalidInputError(`swift ${what} must be http or https: ${JSON.stringify(redactUrl(url))}`);
}

function parseInterface(value: string): 'public' | 'internal' | 'admin' {
  const v = value.toLowerCase().replace(/url$/, '');
  if (v === 'public' || v === 'internal' || v === 'admin') return v;
  throw new InvalidInputError(`unknown Keystone interface ${JSON.stringify(value)} (expected public, internal or admin)`);
}

function noEndpointError(url: string, region: string | undefined, wanted: string, found: string[]): BackendError {
  const where = region ? `region ${region}, interface ${wanted}` : `interface ${wanted}`;
  const seen = found.length ? ` (the catalog has: ${found.join(', ')})` : ' (the catalog has none)';
  return new BackendError(`authenticate at ${redactUrl(url)}: no object-store endpoint for ${where}${seen}`, { transient: false });
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

/** A full download is checked against the MD5 ETag Swift stored (manifests have other ETags). */
function verifyEtag(res: Response, body: Uint8Array, file: string): void {
  const etag = res.headers.get('etag');
  if (!etag || !/^[0-9a-f]{32}$/.test(etag)) return;
  const md5 = createHash('md5').update(body).digest('hex');
  if (md5 !== etag) throw new IntegrityError(`downloaded bytes do not match the stored ETag (MD5 ${md5}, expected ${etag})`, { file });
}

function parseListing(bytes: Uint8Array, what: string): Array<{ name: string; bytes: number }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new BackendError(`${what}: the container listing is not JSON`, { transient: true, cause: err });
  }
  if (!Array.isArray(parsed)) throw new BackendError(`${what}: the container listing is not a JSON array`, { transient: false });
  const out: Array<{ name: string; bytes: number }> = [];
  for (const e of parsed as Array<Record<string, unknown>>) {
    // "subdir" entries only appear with a delimiter; they are not objects.
    if (typeof e?.name !== 'string') continue;
    const size = Number(e.bytes);
    if (!Number.isSafeInteger(size) || size < 0) throw new BackendError(`${what}: object ${e.name} has no valid size`, { transient: false });
    out.push({ name: e.name, bytes: size });
  }
  return out;
}

/** A short, single-line excerpt of an error body (Swift answers with small HTML pages). */
function summarizeBody(text: string): string {
  return text
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, ERROR_BODY_CHARS);
}

/** Releases a response body that is not needed, so the connection can be reused. */
async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // Already consumed or broken: nothing to release.
  }
}

/**
 * One request whose body is a stream, sent with node:http(s) as it is read (its length in the
 * headers), answered as a fetch Response. An error of the body, or the signal, cuts it off.
 */
function streamedRequest(url: string, method: string, headers: Record<string, string>, body: Readable, signal: AbortSignal): Promise<Response> {
  const lib = url.startsWith('https:') ? nodeHttps() : nodeHttp();
  return new Promise<Response>((resolve, reject) => {
    const req = lib.request(url, { method, headers, signal }, (res) => {
      const status = res.statusCode ?? 0;
      const answer = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined) answer.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      const empty = status === 204 || status === 304 || method === 'HEAD';
      if (empty) res.resume();
      resolve(new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, headers: answer }));
    });
    req.on('error', reject);
    body.on('error', (err) => req.destroy(err));
    body.pipe(req);
  });
}
