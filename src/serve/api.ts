// The JSON API under /api/: snapshots (restic's host/tag/path filters), a folder's listing, a
// file (Range, ETag), a folder as a streamed tar, the diff of two snapshots, find by name, and
// repository statistics.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidInputError, NotFoundError } from '../errors.ts';
import { formatGoTime } from '../repository/gotime.ts';
import { nodeNameToBytes, type TreeNode } from '../snapshot/model/node.ts';
import { formatGoFileMode } from '../snapshot/model/mode.ts';
import { encodeSnapshot, filterSnapshots, type SnapshotEntry, type SnapshotFilter } from '../snapshot/model/snapshot.ts';
import { diffTrees, type DiffChange } from '../snapshot/operations/diff.ts';
import { findByPattern } from '../snapshot/operations/find.ts';
import { repositoryStats } from '../snapshot/operations/stats.ts';
import type { DecodePool } from '../snapshot/engine/decode-pool.ts';
import type { ByteBudget } from '../snapshot/engine/archive/budget.ts';
import { ResponseSink } from './content.ts';
import { pathNames, sendFile, sendJson } from './http.ts';
import { writeTar } from '../snapshot/engine/archive/tar.ts';
import { writeZip } from '../snapshot/engine/archive/zip.ts';
import { archiveEntries } from './archive.ts';
import type { RepositoryView } from './view.ts';

/** What the API needs from the handler. */
export interface ApiContext {
  view: RepositoryView;
  budget: ByteBudget;
  /** The decode workers for archives (created at the first use; undefined: decode here). */
  pool: () => DecodePool | undefined;
  signal: AbortSignal;
  maxDiffChanges: number;
  maxFindHits: number;
}

/** A snapshot as the API lists it: restic's JSON plus id and short_id. */
export function snapshotJson(e: SnapshotEntry): Record<string, unknown> {
  const o = JSON.parse(Buffer.from(encodeSnapshot(e.snapshot)).toString('utf8')) as Record<string, unknown>;
  return { ...o, id: e.id, short_id: e.id.slice(0, 8) };
}

/** A tree entry as the API lists it. */
export function nodeJson(n: TreeNode): Record<string, unknown> {
  return {
    name: n.name,
    type: n.type,
    size: n.type === 'file' ? Number(n.size ?? 0) : undefined,
    mode: formatGoFileMode(n.mode),
    mtime: formatGoTime(n.mtime),
    uid: n.uid,
    gid: n.gid,
    user: n.user,
    group: n.group,
    linktarget: n.type === 'symlink' ? n.linktarget : undefined,
  };
}

/** restic's filter flags as query parameters: host=…, tag=a,b (repeat = or), path=…. */
export function filterFromQuery(q: URLSearchParams): SnapshotFilter {
  return { hosts: q.getAll('host').filter(Boolean), tags: q.getAll('tag').filter(Boolean).map((t) => t.split(',')), paths: q.getAll('path').filter(Boolean) };
}

/** Answers a request below /api/ (`rest` is the path after "/api"). */
export async function handleApi(req: IncomingMessage, res: ServerResponse, rest: string, query: URLSearchParams, ctx: ApiContext): Promise<void> {
  const { view, signal } = ctx;
  const head = req.method === 'HEAD';
  const m = /^\/snapshots(?:\/([^/]+)(?:\/(ls|file|tar|zip)(\/.*)?)?)?\/?$/.exec(rest);
  if (m) {
    const [, ref, what, sub] = m;
    if (!ref) {
      const list = filterSnapshots(await view.snapshots({ signal }), filterFromQuery(query));
      return sendJson(res, 200, list.map(snapshotJson), head);
    }
    const entry = await view.snapshot(ref, { signal });
    if (!what) return sendJson(res, 200, snapshotJson(entry), head);
    const names = pathNames(sub ?? '');
    const where = `snapshot ${entry.id.slice(0, 8)}`;
    const node = await view.lookup(entry.snapshot.tree, names, where, { signal });
    const path = '/' + names.join('/');
    if (what === 'ls') {
      if (node.type !== 'dir') return sendJson(res, 200, { snapshot: entry.id, path, node: nodeJson(node) }, head);
      const folder = await view.folder(node.subtree!, { signal });
      return sendJson(res, 200, { snapshot: entry.id, path, entries: folder.nodes.map(nodeJson), hidden: folder.hidden }, head);
    }
    if (what === 'file') {
      if (node.type !== 'file') throw new InvalidInputError(`${path} in ${where} is a ${node.type}, not a file`);
      return sendFile(req, res, view, node, ctx.budget, signal, { download: query.has('download') });
    }
    if (node.type !== 'dir') throw new InvalidInputError(`${path} in ${where} is a ${node.type}, not a folder`);
    const base = names.length > 0 ? names[names.length - 1]! : `snapshot-${entry.id.slice(0, 8)}`;
    const zip = what === 'zip';
    res.writeHead(200, {
      'content-type': zip ? 'application/zip' : 'application/x-tar',
      'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(base.replace(/[\uD800-\uDFFF]/g, '_'))}.${zip ? 'zip' : 'tar'}`,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    });
    if (head) return void res.end();
    const prefix = Buffer.concat([nodeNameToBytes(base), Buffer.from('/')]);
    const sink = new ResponseSink(res, signal);
    const entries = archiveEntries(view, node.subtree!, prefix, signal, !zip);
    if (zip) await writeZip(view.repo, entries, sink, ctx.budget, ctx.pool());
    else await writeTar(view.repo, entries, sink, ctx.budget, ctx.pool());
    return void res.end();
  }
  if (rest === '/diff') {
    const from = await view.snapshot(query.get('from') ?? '', { signal });
    const to = await view.snapshot(query.get('to') ?? '', { signal });
    const changes: DiffChange[] = [];
    let total = 0;
    const result = await diffTrees(view.repo, from.snapshot.tree, to.snapshot.tree, {
      signal,
      metadata: query.get('metadata') === '1',
      onChange: (c) => {
        total++;
        if (changes.length < ctx.maxDiffChanges) changes.push(c);
      },
    });
    return sendJson(res, 200, { from: from.id, to: to.id, changes, totalChanges: total, truncated: total > changes.length, ...result }, head);
  }
  if (rest === '/find') {
    const pattern = query.get('name') ?? '';
    if (pattern === '') throw new InvalidInputError('find needs a name pattern (?name=…)');
    const refs = query.getAll('snapshot').filter(Boolean);
    const snapshots = await Promise.all(refs.map((r) => view.snapshot(r, { signal })));
    const hits: unknown[] = [];
    const found = findByPattern(view.repo, [pattern], { signal, snapshots: snapshots.map((s) => s.id), filter: filterFromQuery(query), ignoreCase: query.get('ignoreCase') === '1' });
    for await (const hit of found) {
      if (hits.length >= ctx.maxFindHits) break;
      hits.push({ snapshot: hit.snapshot.id, path: hit.path, ...nodeJson(hit.node) });
    }
    return sendJson(res, 200, { pattern, hits, truncated: hits.length >= ctx.maxFindHits }, head);
  }
  if (rest === '/stats') return sendJson(res, 200, await repositoryStats(view.repo, { signal }), head);
  throw new NotFoundError(`API endpoint ${rest.slice(0, 80)}`);
}
