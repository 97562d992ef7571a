// WebDAV, read-only class 1 (OPTIONS, PROPFIND with Depth 0 or 1, GET and HEAD with ranges),
// laid out as `restic mount`: snapshots/<time>/…, ids/<short id>/…, hosts/<host>/<time>/…,
// tags/<tag>/<time>/…, with `latest` beside the times. Times are restic's default template
// (RFC 3339 to the second, in the offset the snapshot was taken in); two snapshots with the same
// time get "-1", "-2", … as restic's mount names them. Only folders and regular files are shown:
// WebDAV has no symlinks, devices or fifos.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidInputError, NotFoundError, UnsupportedError } from '../errors.ts';
import { formatGoTime, goTimeToDate, type GoTime } from '../repository/gotime.ts';
import type { TreeNode } from '../snapshot/model/node.ts';
import type { SnapshotEntry } from '../snapshot/model/snapshot.ts';
import type { ByteBudget } from '../snapshot/engine/archive/budget.ts';
import { contentEtag, ResponseSink } from './content.ts';
import { encodeName, pathNames, sendFile, sendText } from './http.ts';
import type { RepositoryView } from './view.ts';

/** Where the WebDAV tree starts in the URL space. */
export const DAV_PREFIX = '/dav';

interface Layout {
  times: Map<string, SnapshotEntry>;
  ids: Map<string, SnapshotEntry>;
  hosts: Map<string, Map<string, SnapshotEntry>>;
  tags: Map<string, Map<string, SnapshotEntry>>;
}

/** restic's default --time-template, "2006-01-02T15:04:05Z07:00". */
export function snapshotTimeName(t: GoTime): string {
  return formatGoTime(t).replace(/\.\d+/, '');
}

const layouts = new WeakMap<readonly SnapshotEntry[], Layout>();

/** The mount layout of a snapshot list (oldest first), computed once per list. */
export function mountLayout(list: readonly SnapshotEntry[]): Layout {
  const cached = layouts.get(list);
  if (cached) return cached;
  const add = (m: Map<string, SnapshotEntry>, e: SnapshotEntry) => {
    const base = snapshotTimeName(e.snapshot.time);
    let name = base;
    for (let i = 1; m.has(name) || name === 'latest'; i++) name = `${base}-${i}`;
    m.set(name, e);
  };
  const layout: Layout = { times: new Map(), ids: new Map(), hosts: new Map(), tags: new Map() };
  for (const e of list) {
    add(layout.times, e);
    layout.ids.set(e.id.slice(0, 8), e);
    const host = e.snapshot.hostname;
    if (host && !badName(host)) {
      if (!layout.hosts.has(host)) layout.hosts.set(host, new Map());
      add(layout.hosts.get(host)!, e);
    }
    for (const tag of new Set(e.snapshot.tags ?? [])) {
      if (badName(tag)) continue;
      if (!layout.tags.has(tag)) layout.tags.set(tag, new Map());
      add(layout.tags.get(tag)!, e);
    }
  }
  layouts.set(list, layout);
  return layout;
}

/** A host or tag that cannot be one path component is left out (restic's mount does the same with '/'). */
function badName(s: string): boolean {
  return s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\0');
}

/** A folder of the layout above the snapshots, or a node inside one. */
type Target =
  | { kind: 'meta'; children: Array<{ name: string; time?: GoTime }>; time?: GoTime }
  | { kind: 'node'; node: TreeNode; time: GoTime; snapshot: SnapshotEntry };

function withLatest(m: Map<string, SnapshotEntry>): Array<{ name: string; time?: GoTime }> {
  const out = [...m].map(([name, e]) => ({ name, time: e.snapshot.time }));
  const last = [...m.values()].pop();
  if (last) out.push({ name: 'latest', time: last.snapshot.time });
  return out;
}

function pick(m: Map<string, SnapshotEntry> | undefined, name: string | undefined): SnapshotEntry | undefined {
  if (!m || name === undefined) return undefined;
  return name === 'latest' ? [...m.values()].pop() : m.get(name);
}

async function resolve(view: RepositoryView, names: string[], signal: AbortSignal): Promise<Target> {
  const layout = mountLayout(await view.snapshots({ signal }));
  const latest = [...layout.times.values()].pop()?.snapshot.time;
  const meta = (children: Array<{ name: string; time?: GoTime }>, time = latest): Target => ({ kind: 'meta', children, time });
  const [top, a, b] = names;
  let entry: SnapshotEntry | undefined;
  let rest: string[];
  switch (top) {
    case undefined:
      return meta(['hosts', 'ids', 'snapshots', 'tags'].map((name) => ({ name, time: latest })));
    case 'snapshots':
      if (a === undefined) return meta(withLatest(layout.times));
      entry = pick(layout.times, a);
      rest = names.slice(2);
      break;
    case 'ids':
      if (a === undefined) return meta([...layout.ids].map(([name, e]) => ({ name, time: e.snapshot.time })));
      entry = layout.ids.get(a);
      rest = names.slice(2);
      break;
    case 'hosts':
    case 'tags': {
      const groups = top === 'hosts' ? layout.hosts : layout.tags;
      if (a === undefined) return meta([...groups.keys()].map((name) => ({ name, time: latest })));
      const group = groups.get(a);
      if (!group) throw new NotFoundError(`${top}/${a}`);
      if (b === undefined) return meta(withLatest(group));
      entry = pick(group, b);
      rest = names.slice(3);
      break;
    }
    default:
      throw new NotFoundError(`/${top}`);
  }
  if (!entry) throw new NotFoundError(names.join('/'));
  const node = await view.lookup(entry.snapshot.tree, rest, `snapshot ${entry.id.slice(0, 8)}`, { signal });
  if (node.type !== 'dir' && node.type !== 'file') throw new NotFoundError(`${names.join('/')} (a ${node.type})`);
  return { kind: 'node', node, time: node.name === '' ? entry.snapshot.time : node.mtime, snapshot: entry };
}

/**
 * Answers GET, HEAD and PROPFIND below /dav (`rest` is the path after the prefix, `hrefBase` the
 * URL path of the WebDAV root as clients see it, e.g. "/backups/dav").
 */
export async function handleDav(req: IncomingMessage, res: ServerResponse, rest: string, hrefBase: string, view: RepositoryView, budget: ByteBudget, signal: AbortSignal): Promise<void> {
  const names = pathNames(rest);
  const target = await resolve(view, names, signal);
  const self = hrefBase + '/' + names.map(encodeName).join('/');
  const isDir = target.kind === 'meta' || target.node.type === 'dir';
  if (req.method === 'PROPFIND') {
    const depth = (req.headers.depth ?? 'infinity').toString().trim().toLowerCase();
    if (depth !== '0' && depth !== '1') {
      await drainBody(req);
      res.writeHead(403, { 'content-type': 'application/xml; charset=utf-8' });
      return void res.end('<?xml version="1.0" encoding="utf-8"?>\n<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n');
    }
    await drainBody(req);
    res.writeHead(207, { 'content-type': 'application/xml; charset=utf-8', 'cache-control': 'no-store' });
    const sink = new ResponseSink(res, signal);
    let buf = '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">\n';
    const flush = async (force = false) => {
      if (buf.length < 65536 && !force) return;
      const chunk = Buffer.from(buf);
      buf = '';
      await sink.write(chunk);
    };
    const dirHref = isDir && !self.endsWith('/') ? self + '/' : self;
    buf += target.kind === 'meta' ? propDir(dirHref, target.time) : propNode(dirHref, target.node, target.time);
    if (depth === '1' && isDir) {
      if (target.kind === 'meta') {
        for (const c of target.children) buf += propDir(dirHref + encodeName(c.name) + '/', c.time);
      } else {
        const folder = await view.folder(target.node.subtree!, { signal });
        for (const n of folder.nodes) {
          if (n.type !== 'dir' && n.type !== 'file') continue;
          buf += propNode(dirHref + encodeName(n.name) + (n.type === 'dir' ? '/' : ''), n, n.mtime);
          await flush();
        }
      }
    }
    buf += '</D:multistatus>\n';
    await flush(true);
    await sink.flush();
    return void res.end();
  }
  if (target.kind === 'node' && target.node.type === 'file') return sendFile(req, res, view, target.node, budget, signal);
  // A folder fetched with GET: its entries as text, one a line (folders end with '/').
  const lines = target.kind === 'meta'
    ? target.children.map((c) => `${c.name}/`)
    : (await view.folder(target.node.subtree!, { signal })).nodes.filter((n) => n.type === 'dir' || n.type === 'file').map((n) => n.name + (n.type === 'dir' ? '/' : ''));
  return sendText(res, 200, lines.join('\n') + '\n', req.method === 'HEAD');
}

async function drainBody(req: IncomingMessage): Promise<void> {
  let n = 0;
  for await (const chunk of req) {
    n += (chunk as Buffer).length;
    if (n > 1024 * 1024) throw new InvalidInputError('PROPFIND body larger than 1 MiB');
  }
  const type = req.headers['content-type'] ?? '';
  if (n > 0 && !/xml/i.test(type) && type !== '') throw new UnsupportedError(`PROPFIND body of type ${type.slice(0, 40)}`);
}

function httpDate(t: GoTime | undefined): string {
  return (t ? goTimeToDate(t) : new Date(0)).toUTCString();
}

function propDir(href: string, time: GoTime | undefined): string {
  return `<D:response><D:href>${xmlEscape(href)}</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype>` +
    `<D:getlastmodified>${httpDate(time)}</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n`;
}

function propNode(href: string, node: TreeNode, time: GoTime): string {
  if (node.type === 'dir') return propDir(href, time);
  return `<D:response><D:href>${xmlEscape(href)}</D:href><D:propstat><D:prop><D:resourcetype/>` +
    `<D:getcontentlength>${Number(node.size ?? 0)}</D:getcontentlength><D:getcontenttype>application/octet-stream</D:getcontenttype>` +
    `<D:getetag>${xmlEscape(contentEtag(node))}</D:getetag><D:getlastmodified>${httpDate(time)}</D:getlastmodified>` +
    `</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n`;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
