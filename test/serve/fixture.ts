// A small repository for the serve tests: two snapshots of a folder with a multi-blob file, an
// empty file, nested folders, a symlink and a name needing percent-encoding; and a server on a
// free port of 127.0.0.1 running the handler.
import { createServer, type Server } from 'node:http';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import type { Backend } from '../../src/backend/backend.ts';
import { IndexedRepository, Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { createRepositoryHandler, type RepositoryHandler, type RepositoryHandlerOptions } from '../../src/serve/handler.ts';

export const PASSWORD = 'serve-test';
export const FAST_KDF = { N: 1024, r: 8, p: 1 };
export const LONG_NAME = 'n'.repeat(200);

export interface Fixture {
  repoDir: string;
  src: string;
  repo: IndexedRepository;
  first: string;
  second: string;
  big: Buffer;
}

/** Source folder: big.bin (several chunks), docs/…, empty, a link; then a change and a second snapshot. */
export async function makeFixture(dir: string, options: { backend?: Backend; bigBytes?: number } = {}): Promise<Fixture> {
  const src = join(dir, 'src');
  const repoDir = join(dir, 'repo');
  await mkdir(join(src, 'docs', 'deep'), { recursive: true });
  const big = randomBytes(options.bigBytes ?? 6 * 1024 * 1024);
  await writeFile(join(src, 'big.bin'), big);
  await writeFile(join(src, 'docs', 'readme.txt'), 'hello from stowage\n');
  await writeFile(join(src, 'docs', 'deep', 'a b%c #ü.txt'), 'odd name\n');
  await writeFile(join(src, 'empty'), '');
  // Longer than ustar's 100-byte name field: the tar needs a PAX path record.
  await mkdir(join(src, 'docs', 'long'));
  await writeFile(join(src, 'docs', 'long', LONG_NAME), 'long name\n');
  await symlink('docs/readme.txt', join(src, 'link'));
  const repo = await (await Repository.init(options.backend ?? new LocalBackend(repoDir), { password: PASSWORD, kdf: FAST_KDF })).loadIndex();
  const first = (await backup(repo, { paths: [src], hostname: 'alpha', tags: ['daily'] })).snapshotId;
  await writeFile(join(src, 'docs', 'readme.txt'), 'changed\n');
  await writeFile(join(src, 'added.txt'), 'new file\n');
  const second = (await backup(repo, { paths: [src], hostname: 'beta', tags: ['weekly'] })).snapshotId;
  return { repoDir, src, repo, first, second, big };
}

export interface Running {
  server: Server;
  handler: RepositoryHandler;
  /** Where the handler answers: the server's root, or the server's root + basePath. */
  base: string;
  /** The server's root (the same as base without basePath). */
  origin: string;
  close(): Promise<void>;
}

/** What the operator's own server answers at its root when the handler is mounted below a prefix. */
export const OWN_PAGE = 'the operator\'s own page\n';

/**
 * A server on a free port of 127.0.0.1 running the handler. With `options.basePath` it is mounted
 * the way an operator embeds it: a plain node:http server that answers its own routes (`/` and
 * `/healthz`) and hands every other request whose path starts with the prefix to the handler (a
 * plain startsWith, so `/backupsX` reaches the handler too, which must refuse it); anything else
 * gets the server's own 404.
 */
export async function startServer(repo: IndexedRepository | Repository, options: RepositoryHandlerOptions = {}): Promise<Running> {
  const handler = createRepositoryHandler(repo, options);
  const prefix = options.basePath;
  const server = createServer(prefix
    ? (req, res) => {
        const url = req.url ?? '/';
        if (url === '/' || url === '/healthz') return void res.end(OWN_PAGE);
        if (url.startsWith(prefix)) return handler(req, res);
        res.writeHead(404, { 'content-type': 'text/plain' }).end('the operator\'s 404\n');
      }
    : handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    server,
    handler,
    base: origin + (prefix ?? ''),
    origin,
    async close() {
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
