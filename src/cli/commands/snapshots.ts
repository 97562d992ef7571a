import { formatGoTime } from '../../repository/gotime.ts';
import { listSnapshots, loadSnapshot, latestPerGroup, sortByTime, type SnapshotEntry } from '../../snapshot/engine/select.ts';
import { compareGoStrings } from '../../snapshot/model/gojson.ts';
import { groupSnapshots, type SnapshotGroupKey } from '../../snapshot/model/snapshot.ts';
import { parseGroupBy } from './forget.ts';
import type { Command } from '../context.ts';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { FILTER_FLAGS, filterFrom, withRepo, snapshotJson, formatBytes, formatTime } from '../context.ts';

export const snapshotsCommand: Command = {
  summary: 'List snapshots',
  usage: '[flags] [SNAPSHOT...]',
  flags: [...FILTER_FLAGS, { name: 'latest', kind: 'string', arg: 'N', help: 'only the last N snapshots of each host and path set' },
    { name: 'compact', short: 'c', kind: 'bool', help: 'use compact output format' },
    { name: 'group-by', short: 'g', kind: 'string', arg: 'GROUP', help: 'group snapshots by host, paths and/or tags, separated by comma' }],
  async run(ctx) {
    return withRepo(ctx, 'none', async (repo) => {
      let list = await listSnapshots(repo, { ...filterFrom(ctx.flags, ctx.env), signal: ctx.signal });
      if (ctx.flags.positional.length) {
        const wanted = new Set<string>();
        for (const ref of ctx.flags.positional) wanted.add((await loadSnapshot(repo, ref)).id);
        list = list.filter((e) => wanted.has(e.id));
      }
      const n = ctx.flags.int('latest');
      const by = parseGroupBy(ctx.flags.string('group-by') ?? '');
      const grouped = by.host === true || by.paths === true || by.tags === true;
      // Like restic's GroupSnapshots: paths always sorted, tags too when grouping by them.
      list = list.map((e) => ({
        ...e,
        snapshot: { ...e.snapshot, paths: [...e.snapshot.paths].sort(compareGoStrings), ...(by.tags && e.snapshot.tags ? { tags: [...e.snapshot.tags].sort(compareGoStrings) } : {}) },
      }));
      if (!grouped) {
        if (n !== undefined) list = latestPerGroup(list, n);
        if (ctx.json) ctx.out(JSON.stringify(list.map(snapshotJson)) + '\n');
        else ctx.out(snapshotTable(list, { compact: ctx.flags.bool('compact'), env: ctx.env }));
        return 0;
      }
      // restic's groups come in Go map order (random); these come in the order of their oldest snapshot.
      const groups = groupSnapshots(list, by).map((g) => {
        const byTime = sortByTime([...g.snapshots]);
        return { key: g.key, snapshots: n !== undefined && n > 0 ? byTime.slice(-n) : byTime };
      });
      if (ctx.json) {
        ctx.out(JSON.stringify(groups.map((g) => ({ group_key: g.key, snapshots: g.snapshots.map(snapshotJson) }))) + '\n');
        return 0;
      }
      for (const g of groups) ctx.out(groupHeader(g.key) + snapshotTable(g.snapshots, { compact: ctx.flags.bool('compact'), env: ctx.env }));
      return 0;
    }, { prefetch: ['snapshots'] });
  },
};

/** restic's line above a group's table: "snapshots for (host [h], tags [a, b], paths [/p]):", or nothing for an empty key. */
function groupHeader(key: SnapshotGroupKey): string {
  const parts: string[] = [];
  if (key.hostname !== '') parts.push(`host [${key.hostname}]`);
  if (key.tags !== null) parts.push(`tags [${key.tags.join(', ')}]`);
  if (key.paths !== null) parts.push(`paths [${key.paths.join(', ')}]`);
  return parts.length ? `snapshots for (${parts.join(', ')}):\n` : '';
}

/**
 * restic 0.19's table (its PrintSnapshots), oldest first: ID, Time, Host, Tags, Reasons (when
 * given, as forget's keep table has them), Paths and, when any snapshot has a summary, Size (its
 * total_bytes_processed); with `compact`, ID, Time, Host, Tags (one a line) and Size. Columns as
 * wide as their widest line, two spaces apart, lines trimmed at the end; a blank line between
 * snapshots when one has several paths; the footer names the time zone as Go names the local one.
 */
export function snapshotTable(
  list: readonly SnapshotEntry[],
  options: { compact?: boolean; env?: NodeJS.ProcessEnv; reasons?: ReadonlyMap<string, readonly string[]> } = {},
): string {
  // restic prints nothing at all when nothing is selected.
  if (list.length === 0) return '';
  const compact = options.compact ?? false;
  const reasons = compact ? undefined : options.reasons;
  const hasSize = list.some((e) => e.snapshot.summary !== undefined);
  // restic sorts stably by time, the older first.
  const sorted = [...list].sort((a, b) => (a.snapshot.time.epochNs < b.snapshot.time.epochNs ? -1 : a.snapshot.time.epochNs > b.snapshot.time.epochNs ? 1 : 0));
  const header = compact ? ['ID', 'Time', 'Host', 'Tags  '] : ['ID', 'Time', 'Host      ', 'Tags      '];
  if (reasons) header.push('Reasons');
  if (!compact) header.push('Paths');
  if (hasSize) header.push('Size');
  const rows = sorted.map((e) => {
    const s = e.snapshot;
    const tags = s.tags ?? [];
    const row = [e.id.slice(0, 8), formatTime(formatGoTime(s.time)), s.hostname ?? '', tags.join(compact ? '\n' : ',')];
    if (reasons) row.push((reasons.get(e.id) ?? []).join('\n'));
    if (!compact) row.push(s.paths.join('\n'));
    if (hasSize) row.push(s.summary ? formatBytes(Number(s.summary.totalBytesProcessed)) : '');
    return row;
  });
  const multiline = !compact && list.some((e) => e.snapshot.paths.length > 1);
  return resticTable(header, rows, `Timestamps shown in ${goLocalZoneName(options.env ?? process.env)}\n${list.length} snapshots`, multiline);
}

/** restic's ui/table: header, rule, rows (a cell may hold several lines), rule, footer. */
function resticTable(header: string[], rows: string[][], footer: string, blankBetweenRows: boolean): string {
  const width = (s: string) => [...s].length;
  const widths = header.map((h, i) => Math.max(...h.split('\n').map(width), ...rows.flatMap((r) => r[i]!.split('\n').map(width))));
  const rule = '-'.repeat(widths.reduce((a, w) => a + w, 0) + 2 * (widths.length - 1)) + '\n';
  const lines = (cells: string[]) => {
    const split = cells.map((c) => c.split('\n'));
    const n = Math.max(1, ...split.map((l) => l.length));
    let out = '';
    for (let i = 0; i < n; i++) out += split.map((l, j) => (l[i] ?? '') + ' '.repeat(Math.max(0, widths[j]! - width(l[i] ?? '')))).join('  ').trimEnd() + '\n';
    return out;
  };
  let out = lines(header) + rule;
  rows.forEach((r, i) => {
    out += (blankBetweenRows && i > 0 ? '\n' : '') + lines(r);
  });
  return out + rule + footer + '\n';
}

/** The name Go gives the local time zone (time.Local), as restic's footer shows it. */
function goLocalZoneName(env: NodeJS.ProcessEnv): string {
  if (env.TZ === undefined) return 'local time';
  const tz = env.TZ.startsWith(':') ? env.TZ.slice(1) : env.TZ;
  if (tz.startsWith('/')) {
    if (existsSync(tz)) return tz === '/etc/localtime' ? 'local time' : tz;
  } else if (tz !== '' && tz !== 'UTC' && (existsSync(path.join('/usr/share/zoneinfo', tz)) || validZone(tz))) {
    return tz;
  }
  return 'UTC';
}

function validZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
