// createRepositoryHandler: a read-only repository as a node:http request handler — the JSON API
// and web page, and optionally WebDAV laid out as `restic mount`. It reads only: no lock is
// taken, and every method that could write is answered 405 before anything is read.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AbortedError, InvalidInputError, NotFoundError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import os from 'node:os';
import { withIndex, type AnyRepository, type IndexedRepository } from '../repository/repository.ts';
import { DecodePool } from '../snapshot/engine/decode-pool.ts';
import { handleApi } from './api.ts';
import { createAuthenticator, type ServeAuth } from './auth.ts';
import { ByteBudget } from '../snapshot/engine/archive/budget.ts';
import { sendError, sendText } from './http.ts';
import { PAGE_HTML, PAGE_JS } from './page.ts';
import { RepositoryView } from './view.ts';
import { DAV_PREFIX, handleDav } from './webdav.ts';

/** Options of {@link createRepositoryHandler}. */
export interface RepositoryHandlerOptions {
  /**
   * The path the handler is mounted at on the caller's server, e.g. `/backups` (default: the
   * root). The page, the API and WebDAV are answered below it (`/backups/`, `/backups/api/…`,
   * `/backups/dav/…`; WebDAV hrefs carry it), and any request outside it gets 404. The handler
   * expects the full request path in `req.url` (a plain node:http server routing by prefix); when
   * a framework strips the mount path from `req.url` but keeps the full one in `req.originalUrl`
   * (Express's `app.use('/backups', handler)`), that one is used. Segments may use letters,
   * digits and `-._~!$&'()*+,;=:@`; InvalidInputError otherwise.
   */
  basePath?: string;
  /** The JSON API under /api/ and the web page at / (default true). */
  web?: boolean;
  /** WebDAV (read-only, class 1) under /dav/ (default false). */
  webdav?: boolean;
  /** Credentials required for every request (default: none). */
  auth?: ServeAuth;
  /**
   * Bytes of blob data all responses together may hold (default 64 MiB): file and tar responses
   * wait for room instead of loading more.
   */
  memoryLimit?: number;
  /**
   * Worker threads that verify, decrypt and decompress the blobs of tar and zip downloads (the
   * engine's decode workers, started at the first archive; default: one per core, at most 4).
   * 0 decodes on the request thread.
   */
  decodeThreads?: number;
  /** How long a snapshot listing is reused (default 5000 ms). */
  snapshotTtlMs?: number;
  /** Refresh the index this often (IndexedRepository.startAutoRefresh) until close(); default: never. */
  refreshIntervalMs?: number;
  /** Most changes a diff answer lists (default 10000; the counts cover all). */
  maxDiffChanges?: number;
  /** Most hits a find answer lists (default 1000). */
  maxFindHits?: number;
  /** Where the handler reports failed requests (default: silent). */
  logger?: Logger;
}

/** What the handler reports about itself (tests and metrics). */
export interface RepositoryHandlerStats {
  /** Responses being written now. */
  activeResponses: number;
  /** Blob bytes reserved now, the most reserved at once, and the limit. */
  memoryInUse: number;
  memoryPeak: number;
  memoryLimit: number;
  /** Decode worker threads running for archives (0 until the first tar or zip, or with decodeThreads 0). */
  decodeWorkers: number;
}

/** A node:http request handler with a way to stop it. */
export interface RepositoryHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Aborts open responses and stops the auto-refresh; the repository stays open (the caller's). */
  close(): Promise<void>;
  stats(): RepositoryHandlerStats;
}

/** `basePath` checked and without its trailing '/' ('' for the root). */
export function normalizeBasePath(basePath: string | undefined): string {
  if (basePath === undefined || basePath === '' || basePath === '/') return '';
  const trimmed = basePath.endsWith('/') ? basePath.slice(0, -1) : basePath;
  const segments = trimmed.split('/').slice(1);
  if (!trimmed.startsWith('/') || segments.some((s) => s === '' || s === '.' || s === '..' || !/^[A-Za-z0-9\-._~!$&'()*+,;=:@]+$/.test(s))) {
    throw new InvalidInputError(`basePath ${JSON.stringify(basePath.slice(0, 200))}: expected a path such as /backups (segments of letters, digits and -._~!$&'()*+,;=:@; no '.', '..' or '//')`);
  }
  return trimmed;
}

const WRITE_METHODS = new Set(['PUT', 'POST', 'DELETE', 'PATCH', 'MKCOL', 'COPY', 'MOVE', 'PROPPATCH', 'LOCK', 'UNLOCK']);

/**
 * A read-only server for `repository`, as a node:http handler (works with http.createServer,
 * https.createServer, Express and Fastify's raw handlers). Given a Repository without index, it
 * loads the index at the first request.
 *
 * @example
 * const handler = createRepositoryHandler(repo, { webdav: true });
 * http.createServer(handler).listen(8080, '127.0.0.1');
 *
 * @example
 * // Below a path of the caller's own server:
 * const backups = createRepositoryHandler(repo, { basePath: '/backups', webdav: true });
 * http.createServer((req, res) => {
 *   if (req.url === '/backups' || req.url?.startsWith('/backups/')) return backups(req, res);
 *   res.end('my dashboard');
 * }).listen(8080, '127.0.0.1');
 */
export function createRepositoryHandler(repository: AnyRepository, options: RepositoryHandlerOptions = {}): RepositoryHandler {
  const base = normalizeBasePath(options.basePath);
  const logger = options.logger ?? silentLogger;
  const web = options.web ?? true;
  const webdav = options.webdav ?? false;
  const auth = createAuthenticator(options.auth);
  const budget = new ByteBudget(options.memoryLimit ?? 64 * 1024 * 1024);
  const open = new Set<AbortController>();
  let stopRefresh: (() => void) | undefined;
  let viewPromise: Promise<RepositoryView> | undefined;
  const view = (): Promise<RepositoryView> =>
    (viewPromise ??= withIndex(repository).then((repo: IndexedRepository) => {
      if (options.refreshIntervalMs && options.refreshIntervalMs > 0) stopRefresh = repo.startAutoRefresh(options.refreshIntervalMs);
      return new RepositoryView(repo, { snapshotTtlMs: options.snapshotTtlMs });
    }).catch((e: unknown) => {
      viewPromise = undefined;
      throw e;
    }));
  const allowed = ['GET', 'HEAD', 'OPTIONS', ...(webdav ? ['PROPFIND'] : [])];
  const threads = Math.floor(options.decodeThreads ?? Math.min(4, os.availableParallelism()));
  if (!(threads >= 0)) throw new InvalidInputError(`decodeThreads must be 0 or more, not ${options.decodeThreads}`);
  let pool: DecodePool | undefined;
  let closed = false;
  const archivePool = (repo: IndexedRepository): DecodePool | undefined =>
    threads === 0 || closed ? undefined : (pool ??= new DecodePool({ key: repo.repo.masterKeyForWorkers(), threads }));

  const serve = async (req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> => {
    const method = req.method ?? 'GET';
    const full = (base && (req as { originalUrl?: unknown }).originalUrl) || req.url || '/';
    const url = typeof full === 'string' ? full : '/';
    const q = url.indexOf('?');
    const fullPath = q < 0 ? url : url.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    if (base && fullPath !== base && !fullPath.startsWith(base + '/')) {
      // Not this handler's part of the caller's URL space: nothing about the repository is said.
      req.resume();
      return sendText(res, 404, 'not found\n', method === 'HEAD');
    }
    if (base && fullPath === base && (method === 'GET' || method === 'HEAD') && web) {
      // The page's links are relative: it must be loaded from <base>/.
      req.resume();
      return sendText(res, 308, `${base}/\n`, method === 'HEAD', { location: `${base}/${q < 0 ? '' : url.slice(q)}` });
    }
    const rawPath = fullPath.slice(base.length) || '/';
    if (!auth.check(req)) {
      // The same answer for every path and method: nothing about the repository is revealed.
      req.resume();
      return sendText(res, 401, 'authentication required\n', method === 'HEAD', { 'www-authenticate': auth.challenge });
    }
    if (WRITE_METHODS.has(method) || !allowed.includes(method)) {
      req.resume();
      return sendText(res, 405, 'this server is read-only\n', method === 'HEAD', { allow: allowed.join(', ') });
    }
    if (method === 'OPTIONS') {
      res.writeHead(200, { allow: allowed.join(', '), ...(webdav ? { dav: '1', 'ms-author-via': 'DAV' } : {}), 'content-length': 0 });
      return void res.end();
    }
    const isApi = rawPath === '/api' || rawPath.startsWith('/api/');
    try {
      if (web && isApi && method !== 'PROPFIND') {
        const v = await view();
        return await handleApi(req, res, rawPath.slice(4), query, {
          view: v,
          budget,
          pool: () => archivePool(v.repo),
          signal,
          maxDiffChanges: options.maxDiffChanges ?? 10000,
          maxFindHits: options.maxFindHits ?? 1000,
        });
      }
      if (web && (rawPath === '/' || rawPath === '/app.js') && (method === 'GET' || method === 'HEAD')) {
        const page = rawPath === '/' ? { type: 'text/html; charset=utf-8', body: PAGE_HTML } : { type: 'text/javascript; charset=utf-8', body: PAGE_JS };
        const body = Buffer.from(page.body);
        res.writeHead(200, {
          'content-type': page.type,
          'content-length': body.length,
          'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
          'x-content-type-options': 'nosniff',
          'referrer-policy': 'no-referrer',
          'cache-control': 'no-cache',
        });
        return void res.end(method === 'HEAD' ? undefined : body);
      }
      if (web && rawPath === '/favicon.ico') {
        res.writeHead(204, { 'cache-control': 'max-age=86400' });
        return void res.end();
      }
      if (webdav && (rawPath === DAV_PREFIX || rawPath.startsWith(DAV_PREFIX + '/'))) {
        return await handleDav(req, res, rawPath.slice(DAV_PREFIX.length), base + DAV_PREFIX, await view(), budget, signal);
      }
      if (method === 'PROPFIND') throw new NotFoundError(`WebDAV path ${rawPath.slice(0, 80)} (WebDAV is under ${base}${DAV_PREFIX}/)`);
      throw new NotFoundError(`path ${rawPath.slice(0, 80)}`);
    } catch (e) {
      sendError(req, res, e, logger, isApi);
    }
  };

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    open.add(controller);
    res.once('close', () => {
      open.delete(controller);
      if (!res.writableFinished) controller.abort(new AbortedError('the client went away'));
    });
    serve(req, res, controller.signal).catch((e: unknown) => {
      if (!res.headersSent) sendError(req, res, e, logger, false);
      else res.destroy();
    });
  }) as RepositoryHandler;
  handler.close = async () => {
    closed = true;
    stopRefresh?.();
    for (const c of open) c.abort(new AbortedError('the server is closing'));
    await pool?.close();
  };
  handler.stats = () => ({ activeResponses: open.size, memoryInUse: budget.inUse, memoryPeak: budget.peak, memoryLimit: budget.limit, decodeWorkers: pool && !closed ? threads : 0 });
  return handler;
}
