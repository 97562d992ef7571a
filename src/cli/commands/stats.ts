// `stats`: restic's four counting modes over the chosen snapshots, printed as restic 0.19 prints
// them (the text report, or one JSON object whose zero fields are left out as restic's are).
import { InvalidInputError } from '../../errors.ts';
import { snapshotStats, STATS_MODES, type SnapshotStats, type SnapshotStatsProgress, type StatsMode } from '../../snapshot/operations/stats.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, filterFrom, withRepo, formatBytes } from '../context.ts';

export const statsCommand: Command = {
  summary: 'Scan the repository and show basic statistics',
  usage: '[flags] [snapshot ID] [...]',
  flags: [{ name: 'mode', kind: 'string', arg: 'MODE', help: 'counting mode: restore-size (default), files-by-contents, blobs-per-file or raw-data' }, ...FILTER_FLAGS],
  async run(ctx) {
    const mode = ctx.flags.string('mode') ?? 'restore-size';
    if (!(STATS_MODES as readonly string[]).includes(mode)) throw new InvalidInputError(`unknown counting mode: ${mode} (use the -h flag to get a list of supported modes)`);
    return withRepo(ctx, 'shared', async (r) => {
      const repo = await r.loadIndex({ signal: ctx.signal });
      if (!ctx.json) ctx.out('scanning...\n');
      let last: SnapshotStatsProgress = { snapshotsDone: 0, snapshotsTotal: 0, files: 0, blobs: 0, bytes: 0 };
      const started = Date.now();
      const s = await snapshotStats(repo, {
        mode: mode as StatsMode,
        snapshots: ctx.flags.positional,
        filter: filterFrom(ctx.flags, ctx.env),
        signal: ctx.signal,
        onProgress: ctx.json ? undefined : (p) => (last = p),
      });
      for (const { ref, error } of s.ignored) ctx.err(`Ignoring ${JSON.stringify(ref)}: ${error.message}\n`);
      if (ctx.json) {
        ctx.out(statsJson(s) + '\n');
        return 0;
      }
      ctx.out(finalStatus(last, s.snapshotsCount, Date.now() - started) + '\n');
      ctx.out(statsText(s));
      return 0;
    });
  },
};

/** restic's JSON: its field order, fields that are zero left out (Go's omitempty) but total_size and snapshots_count. */
export function statsJson(s: SnapshotStats): string {
  const o: Record<string, number> = { total_size: s.totalSize };
  const optional: Array<[string, number]> = [
    ['total_uncompressed_size', s.totalUncompressedSize], ['compression_ratio', s.compressionRatio],
    ['compression_progress', s.compressionProgress], ['compression_space_saving', s.compressionSpaceSaving],
    ['total_file_count', s.totalFileCount], ['total_blob_count', s.totalBlobCount],
  ];
  for (const [k, v] of optional) if (v !== 0) o[k] = v;
  o.snapshots_count = s.snapshotsCount;
  return JSON.stringify(o);
}

/** The report restic prints after its status line. */
export function statsText(s: SnapshotStats): string {
  const lines = [`Stats in ${s.mode} mode:`, `     Snapshots processed:  ${s.snapshotsCount}`];
  if (s.totalBlobCount > 0) lines.push(`        Total Blob Count:  ${s.totalBlobCount}`);
  if (s.totalFileCount > 0) lines.push(`        Total File Count:  ${s.totalFileCount}`);
  if (s.totalUncompressedSize > 0) lines.push(` Total Uncompressed Size:  ${formatBytes(s.totalUncompressedSize).padEnd(5)}`);
  lines.push(`              Total Size:  ${formatBytes(s.totalSize).padEnd(5)}`);
  if (s.compressionProgress > 0) lines.push(`    Compression Progress:  ${s.compressionProgress.toFixed(2)}%`);
  if (s.compressionRatio > 0) lines.push(`       Compression Ratio:  ${s.compressionRatio.toFixed(2)}x`);
  if (s.compressionSpaceSaving > 0) lines.push(`Compression Space Saving:  ${s.compressionSpaceSaving.toFixed(2)}%`);
  return lines.join('\n') + '\n';
}

/** restic's last status line: `[m:ss] pct%  done / total snapshots[, N files][, N blobs], size`. */
function finalStatus(p: SnapshotStatsProgress, total: number, elapsedMs: number): string {
  const sec = Math.floor(elapsedMs / 1000);
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const ss = String(sec % 60).padStart(2, '0');
  const time = h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
  const pct = total === 0 ? '' : `${Math.min(100, (100 * p.snapshotsDone) / total).toFixed(2).padStart(3)}%`;
  let line = `[${time}] ${pct}  ${p.snapshotsDone} / ${total} snapshots`;
  if (p.files > 0) line += `, ${p.files} files`;
  if (p.blobs > 0) line += `, ${p.blobs} blobs`;
  return `${line}, ${formatBytes(p.bytes)}`;
}
