// `stowage serve`: the repository, read-only, over HTTP(S) — the web page and JSON API, and/or
// WebDAV laid out as `restic mount`. No lock is taken; the index is refreshed periodically so
// snapshots other clients write show up and packs they prune are read again from the new index.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { InvalidInputError } from '../../errors.ts';
import { createRepositoryHandler, normalizeBasePath } from '../../serve/handler.ts';
import { parseDuration } from '../args.ts';
import type { Command } from '../context.ts';
import { openRepo } from '../context.ts';

/** "host:port", "[v6]:port" or ":port" (every interface, as Go's listeners take it). */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidInputError(`--listen ${JSON.stringify(s)}: expected HOST:PORT, e.g. 127.0.0.1:8080`);
  return { host: m[1] ?? (m[2] === '' ? '::' : m[2]!), port };
}

function readSecretFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new InvalidInputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

export const serveCommand: Command = {
  summary: 'Serve the repository read-only over HTTP: web page, JSON API, WebDAV',
  usage: '[flags]',
  flags: [
    { name: 'listen', kind: 'string', arg: 'HOST:PORT', help: 'address to listen on (default 127.0.0.1:8080)' },
    { name: 'web', kind: 'bool', help: 'serve the web page and JSON API (default unless only --webdav is given)' },
    { name: 'webdav', kind: 'bool', help: 'serve WebDAV under /dav/ (laid out as restic mount)' },
    { name: 'base-path', kind: 'string', arg: 'PATH', help: 'serve everything below this path (e.g. /backups, behind a reverse proxy); other paths get 404' },
    { name: 'htpasswd-file', kind: 'string', arg: 'FILE', help: 'require basic auth from this htpasswd file ({SHA} entries: htpasswd -s)' },
    { name: 'token-file', kind: 'string', arg: 'FILE', help: 'accept "Authorization: Bearer <token>" with the token in this file ($STOWAGE_SERVE_TOKEN)' },
    { name: 'tls-cert', kind: 'string', arg: 'FILE', help: 'serve HTTPS with this certificate (PEM; needs --tls-key)' },
    { name: 'tls-key', kind: 'string', arg: 'FILE', help: 'the private key of --tls-cert (PEM)' },
    { name: 'refresh', kind: 'string', arg: 'DURATION', help: 'refresh the index this often (default 1m, 0 = never)' },
    { name: 'memory-limit', kind: 'string', arg: 'MiB', help: 'blob data all responses may hold together (default 64)' },
  ],
  async run(ctx) {
    const f = ctx.flags;
    const { host, port } = parseListen(f.string('listen') ?? '127.0.0.1:8080');
    const basePath = normalizeBasePath(f.string('base-path'));
    const webdav = f.bool('webdav');
    const web = f.bool('web') || !webdav;
    const htpasswdFile = f.string('htpasswd-file');
    const tokenFile = f.string('token-file');
    const token = (tokenFile ? readSecretFile(tokenFile, 'token file') : ctx.env.STOWAGE_SERVE_TOKEN ?? '').trim();
    const [cert, key] = [f.string('tls-cert'), f.string('tls-key')];
    if (!!cert !== !!key) throw new InvalidInputError('--tls-cert and --tls-key go together');
    const refresh = parseDuration(f.string('refresh') ?? '1m');
    const mib = f.int('memory-limit') ?? 64;
    if (mib < 8) throw new InvalidInputError('--memory-limit must be at least 8 MiB (restic blobs reach 8 MiB)');
    const auth = { htpasswd: htpasswdFile ? readSecretFile(htpasswdFile, 'htpasswd file') : undefined, tokens: token ? [token] : [] };

    const repo = await openRepo(ctx);
    try {
      const indexed = await repo.loadIndex({ signal: ctx.signal });
      const handler = createRepositoryHandler(indexed, { basePath, web, webdav, auth, refreshIntervalMs: refresh, memoryLimit: mib * 1024 * 1024, logger: ctx.logger });
      const server: Server = cert && key
        ? createHttpsServer({ cert: readSecretFile(cert, 'certificate'), key: readSecretFile(key, 'key') }, handler)
        : createHttpServer(handler);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const addr = server.address() as AddressInfo;
      const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      const base = `${cert ? 'https' : 'http'}://${shown}:${addr.port}${basePath}`;
      const what = [web ? `web page ${base}/` : '', webdav ? `WebDAV ${base}/dav/` : ''].filter(Boolean).join(', ');
      const authText = auth.htpasswd || auth.tokens.length ? '' : ' (no authentication)';
      ctx.err(`serving ${what}${authText}; Ctrl-C stops\n`);
      if (ctx.json) ctx.out(JSON.stringify({ message_type: 'serving', url: base, web, webdav }) + '\n');
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      return 0;
    } finally {
      await repo.backend.close();
    }
  },
};
