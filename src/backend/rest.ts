// A repository behind restic's REST protocol: restic's rest-server, `rclone serve restic`, or
// anything else that speaks it. The URL layout is the protocol's own, flat for every type:
//   POST /?create=true   create the repository        GET    /<type>/        list (v1 names, v2 names + sizes)
//   HEAD|GET|POST|DELETE /config, /<type>/<name>       GET with Range reads part of a file
// Requests go through node:http(s) with a keep-alive agent, which also carries a private CA.

import { createHash } from 'node:crypto';
import type * as http from 'node:http';
import type { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { nodeHttp, nodeHttps } from './node-http.ts';
import { describeFile, type RemoveOptions } from './backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions, LocalFile } from './backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, StowageError, throwIfAborted } from '../errors.ts';
import {
  checkBytes, checkConnections, startCall, checkType, emptyRead, errorMessage, fileInfo, isIdName, listConfig,
  maskSecrets, positiveInteger, rangeHeader, redactUrlPassword, rangeFromAnswer, transientErrors,
  localFileDigests, localFileEquals, uploadFromFile,
} from './shared.ts';

/** Options of {@link RestBackend}. */
export interface RestBackendOptions {
  /** User name for HTTP basic auth; overrides one written in the URL. */
  username?: string;
  /** Password for HTTP basic auth; overrides one written in the URL. Never shown in `location`. */
  password?: string;
  /** PEM certificate(s) of a private CA that signed the server's TLS certificate (restic --cacert). */
  caCert?: string | Uint8Array;
  /** Accept any TLS certificate (self-signed, wrong host name). For tests only. */
  insecureTls?: boolean;
  /** Requests in flight at once (default 5, like restic). */
  connections?: number;
  /** A request fails (transiently) when its connection is idle this long, in ms (default 120 000). */
  timeoutMs?: number;
  /**
   * Listing protocol to ask for: 2 (default) gets names and sizes in one response and falls
   * back to v1 when the server answers with v1; 1 gets names only and asks each size with HEAD.
   */
  apiVersion?: 1 | 2;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const MEDIA_V1 = 'application/vnd.x.restic.rest.v1';
const MEDIA_V2 = 'application/vnd.x.restic.rest.v2';

// The shared rules, plus a DNS failure (often a passing resolver problem); 507 (disk full) and
// 501 are 5xx but will not go away by retrying (restic treats them as permanent too).
const transient = transientErrors.extend({ codes: ['ENOTFOUND'], permanentStatuses: [507, 501] });

interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface RequestSpec {
  method: 'GET' | 'HEAD' | 'POST' | 'DELETE';
  /** Path below the repository URL, e.g. "config", "keys/<id>", "data/" or "?create=true". */
  path: string;
  op: string;
  file: string;
  signal: AbortSignal | undefined;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** A body read as it is sent (a local file), of `streamLength` bytes. */
  stream?: { open: () => Readable; length: number };
}

/**
 * A repository on restic's REST server (rest-server), over http or https with optional basic auth;
 * no extra package. The constructor takes the repository URL (credentials in it or in the options)
 * and throws `InvalidInputError` for a malformed one; nothing is contacted until the first request.
 * 5 requests in flight by default; a request whose connection is idle for 2 minutes fails as
 * transient.
 *
 * @example
 * ```ts
 * const backend = new RestBackend('https://backup.example.com:8000/app/', { username: 'app', password: process.env.REST_PASSWORD });
 * ```
 */
export class RestBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  readonly #base: URL;
  readonly #authorization: string | undefined;
  readonly #password: string | undefined;
  readonly #agent: http.Agent;
  readonly #timeoutMs: number;
  readonly #apiVersion: 1 | 2;

  /** `url` is the repository URL as restic takes it after "rest:", e.g. "https://user:pw@host:8000/repo/". */
  constructor(url: string, opts: RestBackendOptions = {}) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      // Not as the cause: Node's URL error carries the whole input, the password included.
      throw new InvalidInputError(`REST backend URL must be an http or https URL, got ${JSON.stringify(redactUrlPassword(String(url)))}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new InvalidInputError(`REST backend URL must be an http or https URL, got ${JSON.stringify(redactUrlPassword(url))}`);
    }
    if (parsed.search || parsed.hash) throw new InvalidInputError(`REST backend URL must not have a query or fragment: ${redactUrlPassword(url)}`);
    let username: string;
    let password: string;
    try {
      username = opts.username ?? decodeURIComponent(parsed.username);
      password = opts.password ?? decodeURIComponent(parsed.password);
    } catch (err) {
      throw new InvalidInputError(`REST backend URL ${redactUrlPassword(url)}: the user name or password is not valid percent-encoding`, { cause: err });
    }
    parsed.username = '';
    parsed.password = '';
    if (!parsed.pathname.endsWith('/')) parsed.pathname += '/';
    this.#base = parsed;
    this.#password = password || undefined;
    this.#authorization = username || password ? `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` : undefined;
    const shown = new URL(parsed.href);
    if (username) shown.username = encodeURIComponent(username);
    this.location = `rest:${shown.href}`;
    this.connections = checkConnections(opts.connections ?? 5, this.location);
    this.#timeoutMs = positiveInteger(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', this.location);
    this.#apiVersion = opts.apiVersion ?? 2;
    if (this.#apiVersion !== 1 && this.#apiVersion !== 2) throw new InvalidInputError(`apiVersion for ${this.location} must be 1 or 2`);
    const agentOptions = { keepAlive: true, maxSockets: this.connections };
    const ca = opts.caCert === undefined ? undefined : typeof opts.caCert === 'string' ? opts.caCert : Buffer.from(opts.caCert);
    this.#agent =
      parsed.protocol === 'https:'
        ? new (nodeHttps().Agent)({ ...agentOptions, ca, rejectUnauthorized: opts.insecureTls !== true })
        : new (nodeHttp().Agent)(agentOptions);
  }

  async create(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const res = await this.request({ method: 'POST', path: '?create=true', op: 'create', file: 'repository', signal: options.signal, body: new Uint8Array(0) });
    if (!ok(res.status)) throw this.statusError(res, 'create', 'repository');
  }

  async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    checkBytes(data, file);
    const post = (): Promise<HttpResult> =>
      this.request({
        method: 'POST',
        path: this.pathOf(h),
        op: 'save',
        file,
        signal: options.signal,
        headers: { 'Content-Type': 'application/octet-stream' },
        body: data,
      });
    const res = await post();
    if (ok(res.status)) return;
    // rest-server checks that a file's bytes hash to its name (the REST protocol's only upload
    // check) and answers 400 when they do not. Bytes that do hash to their name here were
    // damaged on the way: transient, as a refused checksum is for the other drivers.
    if (res.status === 400 && h.type !== 'config' && isIdName(h.name) && sha256Hex(data) === h.name) {
      const err = this.statusError(res, 'save', file, 'the server found the bytes do not match their name, which they do here: damaged on the way');
      throw new BackendError(err.message, { transient: true, status: 400 });
    }
    // rest-server answers 403 when the file exists (it never overwrites). Names are content
    // hashes, so an existing file with the same bytes is this save already done (e.g. a retry
    // after a lost response); other bytes are replaced, where the server allows deleting.
    if (res.status !== 403) throw this.statusError(res, 'save', file);
    let existing: Uint8Array;
    try {
      existing = await this.load(h, options);
    } catch (err) {
      if (err instanceof NotFoundError) throw this.statusError(res, 'save', file);
      throw err;
    }
    if (Buffer.from(existing).equals(Buffer.from(data.buffer, data.byteOffset, data.byteLength))) return;
    const removed = await this.request({ method: 'DELETE', path: this.pathOf(h), op: 'save', file, signal: options.signal });
    if (!ok(removed.status)) {
      throw this.statusError(removed, 'save', file, 'the file exists with other content and the server refuses to replace it (append-only?)');
    }
    const again = await post();
    if (!ok(again.status)) throw this.statusError(again, 'save', file);
  }

  /**
   * Stores a local file as `save` stores bytes, but sends it as it is read (256 KiB
   * bytes at a time, with its Content-Length), never holding it whole. A file that does not hold
   * `file.size` bytes cuts the request off (rest-server keeps nothing of a cut upload) and is an
   * IntegrityError.
   */
  async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    const file = startCall(h, options.signal);
    const post = (): Promise<HttpResult> =>
      uploadFromFile(local, file, options.signal, (body, signal) =>
        this.request({
          method: 'POST',
          path: this.pathOf(h),
          op: 'save',
          file,
          signal,
          headers: { 'Content-Type': 'application/octet-stream' },
          stream: { open: body, length: local.size },
        }),
      );
    const res = await post();
    if (ok(res.status)) return;
    // As in save: bytes that hash to their name were damaged on the way.
    if (res.status === 400 && h.type !== 'config' && isIdName(h.name)) {
      const { digests } = await localFileDigests(local, file, ['sha256'], { signal: options.signal });
      if (digests[0]!.toString('hex') === h.name) {
        const err = this.statusError(res, 'save', file, 'the server found the bytes do not match their name, which they do here: damaged on the way');
        throw new BackendError(err.message, { transient: true, status: 400 });
      }
    }
    if (res.status !== 403) throw this.statusError(res, 'save', file);
    // The file exists: the same bytes are this save already done; other bytes are replaced.
    let same: boolean;
    try {
      const { size } = await this.stat(h, options);
      same = size === local.size && (await localFileEquals(local, file, this.loadStream(h, { signal: options.signal, offset: 0, length: size })));
    } catch (err) {
      if (err instanceof NotFoundError) throw this.statusError(res, 'save', file);
      throw err;
    }
    if (same) return;
    const removed = await this.request({ method: 'DELETE', path: this.pathOf(h), op: 'save', file, signal: options.signal });
    if (!ok(removed.status)) {
      throw this.statusError(removed, 'save', file, 'the file exists with other content and the server refuses to replace it (append-only?)');
    }
    const again = await post();
    if (!ok(again.status)) throw this.statusError(again, 'save', file);
  }

  async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const file = startCall(h, options.signal);
    if (options.length === 0) return emptyRead(() => this.stat(h, options), options, file);
    const range = rangeHeader(options, file);
    const res = await this.request({
      method: 'GET',
      path: this.pathOf(h),
      op: 'load',
      file,
      signal: options.signal,
      headers: range ? { Range: range } : undefined,
    });
    if (res.status === 404) throw new NotFoundError(file);
    if (res.status === 416) return emptyRead(() => this.stat(h, options), options, file);
    if (res.status !== 200 && res.status !== 206) throw this.statusError(res, 'load', file);
    const body = new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.byteLength);
    const declared = contentLength(res.headers);
    if (declared !== undefined && declared !== body.length) {
      throw new IntegrityError(`short read: got ${body.length} of ${declared} bytes`, { file });
    }
    return rangeFromAnswer(options, file, this.location, { status: res.status, body, contentRange: res.headers['content-range'] });
  }

  /**
   * A byte range as one GET whose body is handed on as it arrives: the caller's pace is the
   * transfer's (the socket is not read while the caller is busy with a piece). A server that
   * answers a range with the whole file (200) is read as `load` reads it.
   */
  async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    const file = startCall(h, options.signal);
    if (options.length === 0) return yield* [await this.load(h, options)];
    const range = rangeHeader(options, file);
    const spec: RequestSpec = { method: 'GET', path: this.pathOf(h), op: 'load', file, signal: options.signal, headers: range ? { Range: range } : undefined };
    const res = await this.openResponse(spec);
    let done = false;
    try {
      if (res.statusCode !== 206) {
        const answer = await this.finishResponse(res, spec);
        if (answer.status === 404) throw new NotFoundError(file);
        if (answer.status === 416) return yield await emptyRead(() => this.stat(h, options), options, file);
        if (answer.status !== 200) throw this.statusError(answer, 'load', file);
        const body = new Uint8Array(answer.body.buffer, answer.body.byteOffset, answer.body.byteLength);
        done = true;
        return yield rangeFromAnswer(options, file, this.location, { status: answer.status, body, contentRange: answer.headers['content-range'] });
      }
      let got = 0;
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          got += chunk.length;
          yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        }
      } catch (err) {
        throw this.networkError(err, spec);
      }
      done = true;
      if (got !== options.length) throw new IntegrityError(`short read: got ${got} of ${options.length} bytes at offset ${options.offset ?? 0}`, { file });
    } finally {
      // Stopped early (or failed): the rest of the body is not wanted, nor is this connection.
      if (!done) res.destroy();
    }
  }

  async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    const file = startCall(h, options.signal);
    const res = await this.request({ method: 'HEAD', path: this.pathOf(h), op: 'stat', file, signal: options.signal });
    if (res.status === 404) throw new NotFoundError(file);
    if (!ok(res.status)) throw this.statusError(res, 'stat', file);
    const size = contentLength(res.headers);
    if (size === undefined) throw new BackendError(`stat ${file} (in ${this.location}): the server sent no Content-Length`, { transient: false, status: res.status });
    return fileInfo(h, size);
  }

  async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    throwIfAborted(options.signal);
    checkType(type);
    if (type === 'config') return yield* listConfig(() => this.stat({ type, name: '' }, options));
    const res = await this.request({
      method: 'GET',
      path: `${type}/`,
      op: 'list',
      file: type,
      signal: options.signal,
      headers: { Accept: this.#apiVersion === 2 ? MEDIA_V2 : MEDIA_V1 },
    });
    // No folder (a repository not created yet) lists nothing, as restic does.
    if (res.status === 404) return;
    if (!ok(res.status)) throw this.statusError(res, 'list', type);
    const entries = this.parseListing(res, type);
    if (entries.every((e) => e.size !== undefined)) {
      for (const e of entries) if (isIdName(e.name)) yield { name: e.name, size: e.size! };
      return;
    }
    // v1 names only: ask the sizes, `connections` at a time. A file removed meanwhile is skipped.
    const names = entries.map((e) => e.name).filter(isIdName);
    for (let i = 0; i < names.length; i += this.connections) {
      const batch = await Promise.all(
        names.slice(i, i + this.connections).map((name) =>
          this.stat({ type, name }, options).catch((err: unknown) => {
            if (err instanceof NotFoundError) return undefined;
            throw err;
          }),
        ),
      );
      for (const info of batch) if (info) yield info;
    }
  }

  async remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    // rest-server deletes missing files silently; ask first so a missing file is reported
    // (unless the caller does not care: a released lock).
    if (!options.missingOk) await this.stat(h, options);
    const file = describeFile(h);
    const res = await this.request({ method: 'DELETE', path: this.pathOf(h), op: 'remove', file, signal: options.signal });
    if (res.status === 404) throw new NotFoundError(file);
    if (!ok(res.status)) throw this.statusError(res, 'remove', file);
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }

  private pathOf(h: FileHandle): string {
    return h.type === 'config' ? 'config' : `${h.type}/${encodeURIComponent(h.name)}`;
  }

  /** One HTTP exchange; the whole response body is read. Network failures become StowageErrors. */
  private request(spec: RequestSpec): Promise<HttpResult> {
    const url = new URL(spec.path, this.#base);
    const headers: Record<string, string> = { Accept: MEDIA_V2, ...spec.headers };
    if (this.#authorization) headers.Authorization = this.#authorization;
    if (spec.body) headers['Content-Length'] = String(spec.body.byteLength);
    if (spec.stream) headers['Content-Length'] = String(spec.stream.length);
    const lib = url.protocol === 'https:' ? nodeHttps() : nodeHttp();
    return new Promise<HttpResult>((resolve, reject) => {
      const fail = (err: unknown): void => reject(this.networkError(err, spec));
      const req = lib.request(url, { method: spec.method, headers, agent: this.#agent, signal: spec.signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', fail);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        // A body cut short by the server: 'end' never comes (once settled, this is a no-op).
        res.on('close', () => {
          if (!res.complete) fail(Object.assign(new Error('the connection closed before the response was complete'), { code: 'ECONNRESET' }));
        });
      });
      req.on('error', fail);
      req.setTimeout(this.#timeoutMs, () => {
        req.destroy(Object.assign(new Error(`no response for ${this.#timeoutMs / 1000} s`), { code: 'ETIMEDOUT' }));
      });
      if (!spec.stream) return req.end(spec.body ?? undefined);
      const body = spec.stream.open();
      // pipe does not pass the body's errors on: the request is cut off instead (the caller's
      // signal fires too, see uploadFromFile), and a request never ends short of its length.
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    });
  }

  /** One HTTP exchange up to its response's headers; the body is the caller's to read (or destroy). */
  private openResponse(spec: RequestSpec): Promise<http.IncomingMessage> {
    const url = new URL(spec.path, this.#base);
    const headers: Record<string, string> = { Accept: MEDIA_V2, ...spec.headers };
    if (this.#authorization) headers.Authorization = this.#authorization;
    const lib = url.protocol === 'https:' ? nodeHttps() : nodeHttp();
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = lib.request(url, { method: spec.method, headers, agent: this.#agent, signal: spec.signal }, resolve);
      req.on('error', (err) => reject(this.networkError(err, spec)));
      req.setTimeout(this.#timeoutMs, () => {
        req.destroy(Object.assign(new Error(`no response for ${this.#timeoutMs / 1000} s`), { code: 'ETIMEDOUT' }));
      });
      req.end();
    });
  }

  /** The rest of an opened response, read whole (an error's body, or a server that ignored the range). */
  private async finishResponse(res: http.IncomingMessage, spec: RequestSpec): Promise<HttpResult> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
    } catch (err) {
      throw this.networkError(err, spec);
    }
    return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
  }

  private networkError(err: unknown, spec: RequestSpec): StowageError {
    if (err instanceof StowageError) return err;
    if (spec.signal?.aborted || (err as { name?: unknown } | null)?.name === 'AbortError') return new AbortedError(undefined, { cause: err });
    const code = (err as { code?: unknown } | null)?.code;
    const detail = this.redact(errorMessage(err));
    return new BackendError(`${spec.op} ${spec.file} (in ${this.location}): ${typeof code === 'string' ? `${code}: ` : ''}${detail}`, { transient: transient.code(code), cause: err });
  }

  /** An HTTP error status as a BackendError: 5xx, 429 and 408 are worth retrying, the rest is not. */
  private statusError(res: HttpResult, op: string, file: string, explanation?: string): BackendError {
    const s = res.status;
    const text = nodeHttp().STATUS_CODES[s] ?? 'unknown status';
    const why =
      explanation ??
      (s === 401 ? 'wrong or missing user name or password'
        : s === 404 && op === 'save' ? 'the server has no such path (rest-server accepts only 64-hex file names)'
          : s === 403 && op === 'remove' ? 'the server refuses to delete (append-only mode?)'
            : undefined);
    // Masked before it is shortened, or a cut-off secret would slip through.
    const body = this.redact(res.body.toString('utf8')).trim().slice(0, 200);
    const extra = [why, body && body !== text ? `server says: ${body}` : undefined].filter(Boolean).join('; ');
    return new BackendError(`${op} ${file} (in ${this.location}): HTTP ${s} ${text}${extra ? `: ${extra}` : ''}`, { transient: transient.status(s), status: s });
  }

  /** The entries of a v1 (names) or v2 (names and sizes) listing. */
  private parseListing(res: HttpResult, type: FileType): Array<{ name: string; size?: number }> {
    const bad = (why: string): BackendError =>
      new BackendError(`list ${type} (in ${this.location}): malformed listing from the server: ${why}`, { transient: false, status: res.status });
    let json: unknown;
    try {
      json = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw bad('not JSON');
    }
    if (!Array.isArray(json)) throw bad('not a JSON array');
    const v2 = String(res.headers['content-type'] ?? '').startsWith(MEDIA_V2);
    return json.map((e: unknown) => {
      if (v2) {
        const { name, size } = (e ?? {}) as { name?: unknown; size?: unknown };
        if (typeof name !== 'string' || !Number.isSafeInteger(size) || (size as number) < 0) throw bad('an entry is not {name, size}');
        return { name, size: size as number };
      }
      if (typeof e !== 'string') throw bad('an entry is not a name');
      return { name: e };
    });
  }

  /** Masks the password and the HTTP Basic token that encodes it (a server may echo headers back). */
  private redact(message: string): string {
    return maskSecrets(message, [this.#password, this.#authorization?.slice('Basic '.length)]);
  }
}

function ok(status: number): boolean {
  return status >= 200 && status < 300;
}

function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['content-length'];
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
