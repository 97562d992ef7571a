import { InvalidInputError } from '../../errors.ts';
import { formatGoTime } from '../../repository/gotime.ts';
import { loadSnapshot, walkTree } from '../../snapshot/engine/select.ts';
import { formatGoFileMode } from '../../snapshot/model/mode.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo, snapshotJson, formatTime, nodeJson } from '../context.ts';

export const lsCommand: Command = {
  summary: 'List files in a snapshot',
  usage: '[flags] SNAPSHOT [DIR...]',
  flags: [...FILTER_FLAGS, { name: 'long', short: 'l', kind: 'bool', help: 'long listing' }, { name: 'recursive', kind: 'bool', help: 'accepted for compatibility' }],
  async run(ctx) {
    const [ref, ...dirs] = ctx.flags.positional;
    if (!ref) throw new InvalidInputError('no snapshot ID specified, specify snapshot ID or use special ID "latest"');
    return withRepo(ctx, 'none', async (r) => {
      const snap = await loadSnapshot(r, ref, filterFrom(ctx.flags, ctx.env));
      const repo = await r.loadIndex({ signal: ctx.signal });
      if (ctx.json) ctx.out(JSON.stringify({ ...snapshotJson(snap), struct_type: 'snapshot', message_type: 'snapshot' }) + '\n');
      else ctx.out(`snapshot ${snap.id.slice(0, 8)} of [${snap.snapshot.paths.join(' ')}] at ${formatGoTime(snap.snapshot.time)}:\n`);
      for await (const { path, node } of walkTree(repo, snap.snapshot.tree, '', { signal: ctx.signal })) {
        if (dirs.length && !dirs.some((d) => path === d || path.startsWith(d.replace(/\/$/, '') + '/'))) continue;
        if (ctx.json) ctx.out(JSON.stringify(nodeJson(path, node)) + '\n');
        else if (ctx.flags.bool('long')) ctx.out(`${formatGoFileMode(node.mode)} ${String(node.uid).padStart(5)} ${String(node.gid).padStart(5)} ${String(node.size ?? 0).padStart(10)} ${formatTime(formatGoTime(node.mtime))} ${path}\n`);
        else ctx.out(path + '\n');
      }
      return 0;
    });
  },
};
