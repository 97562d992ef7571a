import { formatGoTime } from '../../repository/gotime.ts';
import { listSnapshots, loadSnapshot, latestPerGroup } from '../../snapshot/queries.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo, snapshotJson, formatTime } from '../context.ts';

export const snapshotsCommand: Command = {
  summary: 'List snapshots',
  usage: '[flags] [SNAPSHOT...]',
  flags: [...FILTER_FLAGS, { name: 'latest', kind: 'string', arg: 'N', help: 'only the last N snapshots of each host and path set' },
    { name: 'compact', short: 'c', kind: 'bool', help: 'accepted for compatibility' }],
  async run(ctx) {
    return withRepo(ctx, 'none', async (repo) => {
      let list = await listSnapshots(repo, { ...filterFrom(ctx.flags), signal: ctx.signal });
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
      const rows = list.map((e) => [e.id.slice(0, 8), formatTime(formatGoTime(e.snapshot.time)), e.snapshot.hostname ?? '', (e.snapshot.tags ?? []).join(','), e.snapshot.paths.join('\n' + ' '.repeat(60))]);
      ctx.out(`ID        Time                 Host        Tags        Paths\n${'-'.repeat(72)}\n`);
      for (const r of rows) ctx.out(`${r[0]!.padEnd(10)}${r[1]!.padEnd(21)}${r[2]!.padEnd(12)}${r[3]!.padEnd(12)}${r[4]}\n`);
      ctx.out(`${'-'.repeat(72)}\n${list.length} snapshot${list.length === 1 ? '' : 's'}\n`);
      return 0;
    });
  },
};
