// createRepositoryHandler: a read-only repository as a node:http request handler — the JSON API
// and web page, and optionally WebDAV laid out as `restic mount`. It reads only: no lock is
// taken, and every method that could write is answered 405 before anything is read.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AbortedError, NotFoundError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { withIndex, type AnyRepository, type IndexedRepository } from '../repository/repository.ts';
import { handleApi } from './api.ts';
import { createAuthenticator, type ServeAuth } from './auth.ts';
import { ByteBudget } from './budget.ts';
import { sendError, sendText } from './http.ts';
import { PAGE_HTML, PAGE_JS } from './page.ts';
import { RepositoryView } from './view.ts';
import { DAV_PREFIX, handleDav } from './webdav.ts';

/** Options of {@link createRepositoryHandler}. */
export interface RepositoryHandlerOptions {
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
}

/** A node:http request handler with a way to stop it. */
export interface RepositoryHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Aborts open responses and stops the auto-refresh; the repository stays open (the caller's). */
  close(): Promise<void>;
  stats(): RepositoryHandlerStats;
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
 */
export function createRepositoryHandler(repository: AnyRepository, options: RepositoryHandlerOptions = {}): RepositoryHandler {
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

  const serve = async (req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
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
        return await handleApi(req, res, rawPath.slice(4), query, {
          view: await view(),
          budget,
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
        return await handleDav(req, res, rawPath.slice(DAV_PREFIX.length), await view(), budget, signal);
      }
      if (method === 'PROPFIND') throw new NotFoundError(`WebDAV path ${rawPath.slice(0, 80)} (WebDAV is under ${DAV_PREFIX}/)`);
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
    stopRefresh?.();
    for (const c of open) c.abort(new AbortedError('the server is closing'));
  };
  handler.stats = () => ({ activeResponses: open.size, memoryInUse: budget.inUse, memoryPeak: budget.peak, memoryLimit: budget.limit });
  return handler;
}
