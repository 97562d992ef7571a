import { formatGoTime } from '../../repository/gotime.ts';
import { listSnapshots, loadSnapshot, latestPerGroup, type SnapshotEntry } from '../../snapshot/engine/select.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo, snapshotJson, formatTime } from '../context.ts';

export const snapshotsCommand: Command = {
  summary: 'List snapshots',
  usage: '[flags] [SNAPSHOT...]',
  flags: [...FILTER_FLAGS, { name: 'latest', kind: 'string', arg: 'N', help: 'only the last N snapshots of each host and path set' },
    { name: 'compact', short: 'c', kind: 'bool', help: 'accepted for compatibility' }],
  async run(ctx) {
    return withRepo(ctx, 'none', async (repo) => {
      let list = await listSnapshots(repo, { ...filterFrom(ctx.flags, ctx.env), signal: ctx.signal });
      if (ctx.flags.positional.length) {
        const wanted = new Set<string>();
        for (const ref of ctx.flags.positional) wanted.add((await loadSnapshot(repo, ref)).id);
        list = list.filter((e) => wanted.has(e.id));
      }
      const n = ctx.flags.int('latest');
      if (n !== undefined) list = latestPerGroup(list, n);
      if (ctx.json) {
        ctx.out(JSON.stringify(list.map(snapshotJson)) + '\n');
        return 0;
      }
      ctx.out(snapshotTable(list));
      return 0;
    }, { prefetch: ['snapshots'] });
  },
};

/**
 * restic's table: each column as wide as its widest value, two spaces apart, so a long host or tag
 * list never runs into the next column; a snapshot's further paths on lines of their own.
 */
export function snapshotTable(list: readonly SnapshotEntry[]): string {
  const header = ['ID', 'Time', 'Host', 'Tags', 'Paths'];
  const rows = list.map((e) => [e.id.slice(0, 8), formatTime(formatGoTime(e.snapshot.time)), e.snapshot.hostname ?? '', (e.snapshot.tags ?? []).join(','), e.snapshot.paths]);
  const widths = header.slice(0, 4).map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const indent = widths.reduce((a, w) => a + w + 2, 0);
  const pathWidth = Math.max(5, ...rows.flatMap((r) => (r[4] as string[]).map((p) => p.length)));
  const rule = '-'.repeat(indent + pathWidth);
  const line = (cells: string[], paths: readonly string[]) =>
    cells.map((c, i) => c.padEnd(widths[i]! + 2)).join('') + (paths[0] ?? '') + '\n' + paths.slice(1).map((p) => ' '.repeat(indent) + p + '\n').join('');
  let out = line(header.slice(0, 4), ['Paths']) + rule + '\n';
  for (const r of rows) out += line(r.slice(0, 4) as string[], r[4] as string[]);
  return out + rule + `\n${list.length} snapshot${list.length === 1 ? '' : 's'}\n`;
}
