// HTTP plumbing the API and WebDAV share: request paths split into checked names, errors as
// status codes, JSON answers, file answers (Range, ETag, If-None-Match) through the byte budget.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, StowageError, UnsupportedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { goTimeToDate } from '../repository/gotime.ts';
import { nodeNameFromBytes, nodeNameToBytes, type TreeNode } from '../snapshot/model/node.ts';
import type { ByteBudget } from '../snapshot/engine/archive/budget.ts';
import { contentEtag, fileLayout, parseRange, ResponseSink, writeFileRange } from './content.ts';
import { checkName, MAX_DEPTH, type RepositoryView } from './view.ts';

/**
 * A URL path ("/a/b%20c/") as node names: each segment percent-decoded to bytes (names that are
 * not UTF-8 arrive as %XX of their bytes) and checked, so '..', '.', NUL, an encoded '/' and
 * over-long names are refused with InvalidInputError before anything is looked up.
 */
export function pathNames(rawPath: string): string[] {
  const out: string[] = [];
  for (const seg of rawPath.split('/')) {
    if (seg === '') continue;
    out.push(checkName(nodeNameFromBytes(percentDecode(seg))));
    if (out.length > MAX_DEPTH) throw new InvalidInputError(`path deeper than ${MAX_DEPTH} components`);
  }
  return out;
}

function percentDecode(seg: string): Buffer {
  if (!seg.includes('%')) return Buffer.from(seg, 'utf8');
  const bytes: number[] = [];
  const raw = Buffer.from(seg, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x25) {
      const hex = raw.subarray(i + 1, i + 3).toString('latin1');
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new InvalidInputError('malformed percent-encoding in the path');
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(c);
  }
  return Buffer.from(bytes);
}

/** A node name as one percent-encoded URL path segment (its exact bytes). */
export function encodeName(name: string): string {
  let out = '';
  for (const c of nodeNameToBytes(name)) {
    const ch = String.fromCharCode(c);
    out += /[A-Za-z0-9\-._~!$&'()*+,;=:@]/.test(ch) ? ch : '%' + c.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** The HTTP status for an error thrown while answering. */
export function statusOf(e: unknown): number {
  if (e instanceof NotFoundError) return 404;
  if (e instanceof InvalidInputError || e instanceof UnsupportedError) return 400;
  if (e instanceof IntegrityError) return 500;
  if (e instanceof BackendError) return 502;
  return 500;
}

/** Answers an error: JSON for the API, text otherwise; a response already started is cut off. */
export function sendError(req: IncomingMessage, res: ServerResponse, e: unknown, logger: Logger, json: boolean): void {
  if (e instanceof AbortedError && (res.destroyed || req.destroyed)) return;
  const status = statusOf(e);
  if (status >= 500 || res.headersSent) logger.warn('serve: request failed', { method: req.method, url: req.url?.slice(0, 200), error: e instanceof Error ? e.message : String(e) });
  if (res.headersSent) {
    res.destroy(e instanceof Error ? e : undefined);
    return;
  }
  const code = e instanceof StowageError ? e.code : 'INTERNAL';
  const message = e instanceof StowageError ? e.message : 'internal error';
  if (json) sendJson(res, status, { error: { code, message } }, req.method === 'HEAD');
  else sendText(res, status, `${message}\n`, req.method === 'HEAD');
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headOnly = false): void {
  const text = Buffer.from(JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)));
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': text.length, 'cache-control': 'no-store' });
  res.end(headOnly ? undefined : text);
}

export function sendText(res: ServerResponse, status: number, text: string, headOnly = false, headers: Record<string, string> = {}): void {
  const b = Buffer.from(text);
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': b.length, ...headers });
  res.end(headOnly ? undefined : b);
}

const SAFE_TYPES: Record<string, string> = {
  txt: 'text/plain; charset=utf-8', log: 'text/plain; charset=utf-8', md: 'text/plain; charset=utf-8', csv: 'text/plain; charset=utf-8',
  conf: 'text/plain; charset=utf-8', ini: 'text/plain; charset=utf-8', yaml: 'text/plain; charset=utf-8', yml: 'text/plain; charset=utf-8',
  json: 'application/json', png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', pdf: 'application/pdf',
};

/**
 * Sends a file node: 200 or 206 for a single range, 416 outside the file, 304 when If-None-Match
 * names its ETag. Content types are never ones a browser would run (no HTML, no SVG), and a
 * sandbox CSP keeps a served file from scripting the page's origin.
 */
export async function sendFile(req: IncomingMessage, res: ServerResponse, view: RepositoryView, node: TreeNode, budget: ByteBudget, signal: AbortSignal, options: { download?: boolean } = {}): Promise<void> {
  const layout = await fileLayout(view.repo, node, signal);
  const etag = contentEtag(node);
  const ext = /\.([A-Za-z0-9]{1,8})$/.exec(node.name)?.[1]?.toLowerCase() ?? '';
  const headers: Record<string, string | number> = {
    'accept-ranges': 'bytes',
    etag,
    'last-modified': goTimeToDate(node.mtime).toUTCString(),
    'content-type': SAFE_TYPES[ext] ?? 'application/octet-stream',
    'x-content-type-options': 'nosniff',
    'content-security-policy': 'sandbox',
    'cache-control': 'private, no-cache',
  };
  if (options.download) headers['content-disposition'] = `attachment; filename*=UTF-8''${encodeName(node.name)}`;
  const inm = req.headers['if-none-match'];
  if (inm && (inm === '*' || inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag))) {
    res.writeHead(304, { etag, 'cache-control': headers['cache-control'] as string });
    res.end();
    return;
  }
  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== etag ? { kind: 'full' as const } : parseRange(req.headers.range, layout.size);
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, { 'content-range': `bytes */${layout.size}`, 'content-length': 0 });
    res.end();
    return;
  }
  const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, layout.size];
  if (range.kind === 'partial') headers['content-range'] = `bytes ${start}-${end - 1}/${layout.size}`;
  headers['content-length'] = end - start;
  res.writeHead(range.kind === 'partial' ? 206 : 200, headers);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const sink = new ResponseSink(res, signal);
  await writeFileRange(view, layout, start, end, sink, budget);
  await sink.flush();
  res.end();
}
