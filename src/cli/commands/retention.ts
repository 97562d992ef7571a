// `stowage retention extend`: extend each object's S3 Object Lock retention to the horizon of the
// longest-kept snapshot that reaches it under a forget policy (the same keep flags as forget).
// --dry-run prints what would be extended and the requests that costs.
import { InvalidInputError } from '../../errors.ts';
import { extendRetention } from '../../snapshot/operations/retention.ts';
import type { Command } from '../context.ts';
import { withRepo } from '../context.ts';
import { POLICY_FLAGS, SELECTION_FLAGS, forgetFilterFrom, parseGroupBy, policyFrom } from './forget.ts';

const PERIOD_MS: Readonly<Record<string, number>> = { h: 3_600_000, d: 86_400_000 };

export const retentionCommand: Command = {
  summary: 'Extend object lock retention to what a forget policy keeps (S3 Object Lock)',
  usage: 'extend [keep flags] [flags]',
  flags: [
    ...POLICY_FLAGS,
    ...SELECTION_FLAGS,
    { name: 'mode', kind: 'string', arg: 'MODE', help: 'governance or compliance, for objects without a retention yet (default governance)' },
    { name: 'last-interval', kind: 'string', arg: 'DURATION', help: 'keep-last: assumed time between backups, e.g. 1d or 6h (default 1d)' },
    { name: 'dry-run', short: 'n', kind: 'bool', help: 'change nothing; print what would be extended and the requests' },
  ],
  async run(ctx) {
    const [sub] = ctx.flags.positional;
    if (sub !== 'extend') throw new InvalidInputError('retention needs a subcommand: extend');
    const policy = policyFrom(ctx);
    if (Object.keys(policy).length === 0) throw new InvalidInputError('retention extend needs a policy (--keep-daily, --keep-weekly, …)');
    const modeFlag = ctx.flags.string('mode')?.toUpperCase();
    if (modeFlag !== undefined && modeFlag !== 'GOVERNANCE' && modeFlag !== 'COMPLIANCE') throw new InvalidInputError(`--mode must be governance or compliance, got ${JSON.stringify(modeFlag)}`);
    const interval = ctx.flags.string('last-interval');
    let lastIntervalMs: number | undefined;
    if (interval !== undefined) {
      const m = /^([0-9]+)([hd])$/.exec(interval);
      if (!m || Number(m[1]) <= 0) throw new InvalidInputError(`--last-interval must be a positive number of hours or days (6h, 1d), got ${JSON.stringify(interval)}`);
      lastIntervalMs = Number(m[1]) * PERIOD_MS[m[2]!]!;
    }
    const dryRun = ctx.flags.bool('dry-run');
    return withRepo(ctx, 'shared', async (repo) => {
      const res = await extendRetention(repo, {
        policy, filter: forgetFilterFrom(ctx), groupBy: parseGroupBy(ctx.flags.string('group-by')),
        ...(modeFlag ? { mode: modeFlag } : {}), ...(lastIntervalMs ? { lastIntervalMs } : {}), dryRun, signal: ctx.signal,
      });
      if (ctx.json) {
        ctx.out(JSON.stringify({
          dry_run: res.dryRun,
          extended: res.extended,
          requests: res.requests,
          snapshots: res.snapshots.map((s) => ({ id: s.id, horizon: s.horizon.toISOString() })),
          objects: res.objects.map((o) => ({
            file: o.file, horizon: o.horizon.toISOString(),
            before: o.before ? { mode: o.before.mode, retain_until: o.before.retainUntil.toISOString() } : null,
            extended_to: o.extendedTo ? { mode: o.extendedTo.mode, retain_until: o.extendedTo.retainUntil.toISOString() } : null,
          })),
        }) + '\n');
        return 0;
      }
      if (!ctx.quiet) {
        for (const o of res.objects) {
          if (!o.extendedTo) continue;
          const from = o.before ? o.before.retainUntil.toISOString() : 'none';
          ctx.out(`${dryRun ? 'would extend' : 'extended'} ${o.file}: ${from} -> ${o.extendedTo.retainUntil.toISOString()} (${o.extendedTo.mode})\n`);
        }
        ctx.out(`${res.objects.length} objects, ${res.extended} ${dryRun ? 'to extend' : 'extended'}; requests: ${res.requests.reads} retention reads, ${res.requests.writes} retention writes${dryRun ? ' (to make)' : ''}\n`);
      }
      return 0;
    });
  },
};
