// `diff SNAPSHOT1 SNAPSHOT2`: restic's change lines ("%-5s%s") and statistics block, or with
// --json one {"message_type":"change"} line per change and a final "statistics" message.
import { InvalidInputError } from '../../errors.ts';
import { diffTrees, resolveDiffSide, type DiffStat } from '../../snapshot/operations/diff.ts';
import { goJsonString } from '../../snapshot/model/gojson.ts';
import type { Command } from '../context.ts';
import { formatBytes, withRepo } from '../context.ts';

export const diffCommand: Command = {
  summary: 'Show differences between two snapshots',
  usage: '[flags] snapshotID[:subfolder] snapshotID[:subfolder]',
  flags: [{ name: 'metadata', kind: 'bool', help: 'print changes in metadata' }],
  async run(ctx) {
    const args = ctx.flags.positional;
    if (args.length !== 2) throw new InvalidInputError('specify two snapshot IDs');
    const [ref1, ref2] = args as [string, string];
    return withRepo(ctx, 'shared', async (r) => {
      const repo = await r.loadIndex({ signal: ctx.signal });
      const source = await resolveDiffSide(repo, ref1, { signal: ctx.signal });
      const target = await resolveDiffSide(repo, ref2, { signal: ctx.signal });
      if (!ctx.json && !ctx.quiet) ctx.out(`comparing snapshot ${source.snapshot.id.slice(0, 8)} to ${target.snapshot.id.slice(0, 8)}:\n\n`);
      const res = await diffTrees(repo, source.tree, target.tree, {
        metadata: ctx.flags.bool('metadata'),
        signal: ctx.signal,
        onChange: (c) => {
          if (ctx.quiet) return;
          if (ctx.json) ctx.out(`{"message_type":"change","path":${goJsonString(c.path)},"modifier":${goJsonString(c.modifier)}}\n`);
          else ctx.out(`${c.modifier.padEnd(5)}${c.path}\n`);
        },
        onError: (e) => ctx.err(`error: ${e instanceof Error ? e.message : String(e)}\n`),
      });
      if (ctx.json) {
        const stat = (s: DiffStat) => ({ files: s.files, dirs: s.dirs, others: s.others, data_blobs: s.dataBlobs, tree_blobs: s.treeBlobs, bytes: s.bytes });
        ctx.out(`{"message_type":"statistics","source_snapshot":${goJsonString(ref1)},"target_snapshot":${goJsonString(ref2)},` +
          `"changed_files":${res.changedFiles},"added":${JSON.stringify(stat(res.added))},"removed":${JSON.stringify(stat(res.removed))}}\n`);
        return 0;
      }
      const n = (x: number) => String(x).padStart(5);
      ctx.out('\n' +
        `Files:       ${n(res.added.files)} new, ${n(res.removed.files)} removed, ${n(res.changedFiles)} changed\n` +
        `Dirs:        ${n(res.added.dirs)} new, ${n(res.removed.dirs)} removed\n` +
        `Others:      ${n(res.added.others)} new, ${n(res.removed.others)} removed\n` +
        `Data Blobs:  ${n(res.added.dataBlobs)} new, ${n(res.removed.dataBlobs)} removed\n` +
        `Tree Blobs:  ${n(res.added.treeBlobs)} new, ${n(res.removed.treeBlobs)} removed\n` +
        `  Added:   ${formatBytes(res.added.bytes).padEnd(5)}\n` +
        `  Removed: ${formatBytes(res.removed.bytes).padEnd(5)}\n`);
      return 0;
    });
  },
};
