// Serve files straight out of a repository over HTTP, without restoring anything to disk:
//
//   GET /files/<path in the snapshot>   the file, streamed blob by blob as each is read and
//                                       verified; a folder gives a JSON list of its entries
//   ?snapshot=<id or prefix>            another snapshot than the latest
//
//   RESTIC_REPOSITORY=/srv/restic-repo RESTIC_PASSWORD=… node examples/http-handler.ts [PORT]
//   curl http://127.0.0.1:8080/files/home/me/notes.txt
//
// It listens on 127.0.0.1 only (PORT 0 picks a free port) and prints "listening on <url>".
// Paths are the snapshot's own: a backup of /home/me has its files under /files/home/me/….
// Snapshots made after the start are seen: their trees are missing from the loaded index, which
// is then loaded again. A blob that fails verification halfway through a response cuts the
// connection, so the client sees a short response rather than wrong bytes. The server holds no
// lock (like `restic dump --no-lock`): a prune running at the same time can make a request fail.
// SIGINT or SIGTERM stops it. Run `npm run build` first.

import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidInputError, NotFoundError, Repository, decodeTree, listSnapshots, loadSnapshot, openBackend } from 'stowage';
import type { BlobId, IndexedRepository, SnapshotEntry, TreeNode } from 'stowage';

const { RESTIC_REPOSITORY: location, RESTIC_PASSWORD: password } = process.env;
if (!location || !password) {
  console.error('set RESTIC_REPOSITORY and RESTIC_PASSWORD (see the top of this file)');
  process.exit(2);
}
const port = Number(process.argv[2] ?? 8080);

const backend = await openBackend(location);
const repo = await Repository.open(backend, { password });
let indexed: IndexedRepository = await repo.loadIndex();
let reloading: Promise<IndexedRepository> | undefined;

/** The index, loaded again if it does not know the tree (a snapshot newer than the index). */
async function indexFor(tree: BlobId): Promise<IndexedRepository> {
  if (indexed.index.has(tree, 'tree')) return indexed;
  // One reload for all requests that need it at the same time.
  reloading ??= repo.loadIndex().finally(() => (reloading = undefined));
  indexed = await reloading;
  return indexed;
}

async function snapshotFor(ref: string | null): Promise<SnapshotEntry> {
  if (ref) return loadSnapshot(repo, ref);
  const latest = (await listSnapshots(repo)).at(-1);
  if (!latest) throw new NotFoundError('snapshot "latest" (the repository has none)');
  return latest;
}

type Found = { kind: 'dir'; tree: BlobId } | { kind: 'other'; node: TreeNode };

/** Follows the path's names down from the snapshot's root tree. */
async function lookup(idx: IndexedRepository, root: BlobId, names: string[]): Promise<Found> {
  let tree = root;
  for (const [i, name] of names.entries()) {
    const node = decodeTree(await idx.loadBlob('tree', tree), tree).find((n) => n.name === name);
    const last = i === names.length - 1;
    if (node?.type === 'dir' && node.subtree) tree = node.subtree;
    else if (node && last) return { kind: 'other', node };
    else throw new NotFoundError(`/${names.slice(0, i + 1).join('/')} in the snapshot`);
  }
  return { kind: 'dir', tree };
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'only GET and HEAD');
  if (!url.pathname.startsWith('/files/')) return reply(res, 404, 'try /files/<path in the snapshot>');
  const names = url.pathname.slice('/files/'.length).split('/').filter((n) => n !== '').map(decodeURIComponent);

  const snap = await snapshotFor(url.searchParams.get('snapshot'));
  const idx = await indexFor(snap.snapshot.tree);
  const found = await lookup(idx, snap.snapshot.tree, names);
  res.setHeader('X-Snapshot', snap.id);

  if (found.kind === 'dir') {
    const entries = decodeTree(await idx.loadBlob('tree', found.tree), found.tree);
    const body = JSON.stringify(entries.map((e) => ({ name: e.name, type: e.type, size: e.type === 'file' ? Number(e.size ?? 0) : undefined })));
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const node = found.node;
  if (node.type !== 'file') return reply(res, 422, `/${names.join('/')} is a ${node.type}, not a file`);

  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': Number(node.size ?? 0) });
  if (req.method === 'HEAD') return void res.end();
  // The client going away stops the reads.
  const gone = new AbortController();
  res.on('close', () => gone.abort());
  for (const id of node.content ?? []) {
    const blob = await idx.loadBlob('data', id, { signal: gone.signal }); // MAC and SHA-256 checked
    if (!res.write(blob)) await new Promise((resolve) => res.once('drain', resolve));
  }
  res.end();
}

function reply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(message + '\n');
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    // Once the file has begun, a status can no longer be sent: cut the connection instead.
    if (res.headersSent) return void res.destroy(err instanceof Error ? err : undefined);
    reply(res, err instanceof NotFoundError ? 404 : err instanceof InvalidInputError ? 400 : 500, message);
  });
});

server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  const actual = typeof address === 'object' && address ? address.port : port;
  console.log(`listening on http://127.0.0.1:${actual}/files/ (repository ${backend.location})`);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close();
    server.closeAllConnections();
    void backend.close().then(() => console.log('stopped'));
  });
}
