// `stowage cache`: the local caches (one folder per repository), and removing old ones — as
// restic's `cache` command, in Stowage's own cache folder.
import { InvalidInputError } from '../../errors.ts';
import { DEFAULT_CACHE_MAX_AGE_MS, listCaches, removeOldCaches } from '../../repository/cache.ts';
import type { Command } from '../context.ts';
import { cacheDirFrom, formatBytes } from '../context.ts';

const DAY_MS = 24 * 3600 * 1000;

export const cacheCommand: Command = {
  summary: 'Operate on local cache directories',
  usage: '[flags]',
  flags: [
    { name: 'cleanup', kind: 'bool', help: 'remove old cache directories' },
    { name: 'max-age', kind: 'string', arg: 'DAYS', help: 'max age in days for cache directories to be considered old (default: 30)' },
    { name: 'no-size', kind: 'bool', help: 'do not output the size of the cache directories' },
  ],
  async run(ctx) {
    const dir = cacheDirFrom(ctx);
    const maxAgeFlag = ctx.flags.string('max-age');
    let maxAgeMs = DEFAULT_CACHE_MAX_AGE_MS;
    if (maxAgeFlag !== undefined) {
      const days = Number(maxAgeFlag);
      if (!Number.isInteger(days) || days < 0) throw new InvalidInputError(`invalid --max-age ${JSON.stringify(maxAgeFlag)}: expected a number of days`);
      maxAgeMs = days * DAY_MS;
    }
    if (ctx.flags.bool('cleanup')) {
      const removed = await removeOldCaches(dir, maxAgeMs);
      if (ctx.json) ctx.out(JSON.stringify({ removed: removed.map((c) => c.id) }) + '\n');
      else if (!ctx.quiet) ctx.out(removed.length === 0 ? 'no old cache dirs found\n' : `removing ${removed.length} old cache dirs from ${dir}\n`);
      return 0;
    }
    const sizes = !ctx.flags.bool('no-size');
    const caches = await listCaches(dir, { maxAgeMs, sizes });
    if (ctx.json) {
      ctx.out(JSON.stringify(caches.map((c) => ({ id: c.id, last_used: c.lastUsed.toISOString(), old: c.old, ...(sizes ? { size: c.size } : {}) }))) + '\n');
      return 0;
    }
    if (caches.length === 0) {
      ctx.out(`no cache dirs found, basedir is ${dir}\n`);
      return 0;
    }
    const rows = caches.map((c) => {
      const days = Math.floor((Date.now() - c.lastUsed.getTime()) / DAY_MS);
      return [c.id.slice(0, 10), `${days} days ago`, c.old ? 'yes' : '', ...(sizes ? [formatBytes(c.size ?? 0)] : [])];
    });
    const head = ['Repo ID', 'Last Used', 'Old', ...(sizes ? ['Size'] : [])];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd() + '\n';
    ctx.out(line(head) + '-'.repeat(widths.reduce((a, b) => a + b + 2, -2)) + '\n');
    for (const r of rows) ctx.out(line(r));
    ctx.out(`${caches.length} cache dirs in ${dir}\n`);
    return 0;
  },
};
