// `rewrite`: restic 0.19's flags and output. Patterns from --exclude/--iexclude/--include/
// --iinclude and their -file forms; --new-host, --new-time ("2006-01-02 15:04:05", local time);
// --snapshot-summary; --forget; --dry-run. restic has no JSON output for rewrite; with --json the
// result object is printed.
import { InvalidInputError } from '../../errors.ts';
import { goTimeFromDate, type GoTime } from '../../repository/gotime.ts';
import { checkRewriteOptions, rewrite, type RewriteOptions } from '../../snapshot/operations/rewrite.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo } from '../context.ts';
import { readPatternFiles } from '../patterns.ts';
import { goTimeString } from './copy.ts';

export const rewriteCommand: Command = {
  summary: 'Rewrite snapshots to exclude unwanted files',
  usage: '[flags] [snapshotID ...]',
  flags: [
    { name: 'dry-run', short: 'n', kind: 'bool', help: 'do not do anything, just print what would be done' },
    { name: 'exclude', short: 'e', kind: 'list', arg: 'PATTERN', help: 'exclude a pattern (repeatable)' },
    { name: 'exclude-file', kind: 'list', arg: 'FILE', help: 'read exclude patterns from a file (repeatable)' },
    { name: 'iexclude', kind: 'list', arg: 'PATTERN', help: 'same as --exclude but ignores the casing of filenames' },
    { name: 'iexclude-file', kind: 'list', arg: 'FILE', help: 'same as --exclude-file but ignores casing of filenames in patterns' },
    { name: 'include', short: 'i', kind: 'list', arg: 'PATTERN', help: 'include a pattern (repeatable)' },
    { name: 'include-file', kind: 'list', arg: 'FILE', help: 'read include patterns from a file (repeatable)' },
    { name: 'iinclude', kind: 'list', arg: 'PATTERN', help: 'same as --include but ignores the casing of filenames' },
    { name: 'iinclude-file', kind: 'list', arg: 'FILE', help: 'same as --include-file but ignores casing of filenames in patterns' },
    { name: 'forget', kind: 'bool', help: 'remove original snapshots after creating new ones' },
    { name: 'new-host', kind: 'string', arg: 'HOST', help: 'replace hostname' },
    { name: 'new-time', kind: 'string', arg: 'TIME', help: 'replace time of the backup ("2006-01-02 15:04:05")' },
    { name: 'snapshot-summary', short: 's', kind: 'bool', help: 'create snapshot summary record if it does not exist' },
    ...FILTER_FLAGS,
  ],
  async run(ctx) {
    const f = ctx.flags;
    const patterns = async (flag: string) => [...f.list(flag), ...(await readPatternFiles(f.list(`${flag}-file`), ctx.env))];
    const dryRun = f.bool('dry-run');
    const forget = f.bool('forget');
    const options: RewriteOptions = {
      snapshots: f.positional,
      filter: filterFrom(f),
      excludes: await patterns('exclude'),
      iexcludes: await patterns('iexclude'),
      includes: await patterns('include'),
      iincludes: await patterns('iinclude'),
      newHost: f.string('new-host') || undefined,
      newTime: parseNewTime(f.string('new-time')),
      snapshotSummary: f.bool('snapshot-summary'),
      forget,
      dryRun,
      lock: false,
      signal: ctx.signal,
    };
    checkRewriteOptions(options);
    const say = (m: string) => {
      if (!ctx.json && !ctx.quiet) ctx.out(m + '\n');
    };
    if (forget) say('create exclusive lock for repository');
    return withRepo(ctx, dryRun ? 'none' : forget ? 'exclusive' : 'shared', async (repo) => {
      const result = await rewrite(repo, {
        ...options,
        onMessage: say,
        onSnapshot: ({ id, snapshot: s }) => say(`\nsnapshot ${id.slice(0, 8)} of [${s.paths.join(' ')}] at ${goTimeString(s.time)} by ${s.username ?? ''}@${s.hostname ?? ''}`),
        onExclude: ctx.verbose ? (p) => say(`excluding ${JSON.stringify(p)}`) : undefined,
      });
      for (const { ref, error } of result.ignored) ctx.err(`Ignoring ${JSON.stringify(ref)}: ${error.message}\n`);
      if (ctx.json) ctx.out(JSON.stringify(result) + '\n');
      const n = result.modified;
      say('');
      if (n === 0) say(dryRun ? 'no snapshots would be modified' : 'no snapshots were modified');
      else say(dryRun ? `would modify ${n} snapshots` : `modified ${n} snapshots`);
      return 0;
    });
  },
};

/** restic's --new-time: "2006-01-02 15:04:05" in the local zone. */
function parseNewTime(s: string | undefined): GoTime | undefined {
  if (!s) return undefined;
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(s);
  const d = m ? new Date(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : undefined;
  if (!m || !d || Number.isNaN(d.getTime()) || d.getDate() !== +m[3]! || d.getHours() !== +m[4]!) {
    throw new InvalidInputError(`error in time option: cannot parse ${JSON.stringify(s)} as "2006-01-02 15:04:05"`);
  }
  return goTimeFromDate(d);
}
