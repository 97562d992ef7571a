import { InvalidInputError } from '../../errors.ts';
import { repositoryStats } from '../../snapshot/operations/stats.ts';
import type { Command } from '../context.ts';
import { FILTER_FLAGS, withRepo, formatBytes } from '../context.ts';

export const statsCommand: Command = {
  summary: 'Show repository statistics',
  usage: '[flags] [SNAPSHOT...]',
  flags: [...FILTER_FLAGS, { name: 'mode', kind: 'string', arg: 'MODE', help: 'restore-size (default) or raw-data' }],
  async run(ctx) {
    const mode = ctx.flags.string('mode') ?? 'restore-size';
    if (mode !== 'restore-size' && mode !== 'raw-data') throw new InvalidInputError(`unknown mode ${JSON.stringify(mode)} (restore-size or raw-data)`);
    return withRepo(ctx, 'shared', async (r) => {
      // Given the repository, not an index loaded here: it loads the index itself and need not
      // refresh one loaded a moment ago (two more LIST requests).
      const s = await repositoryStats(r, { signal: ctx.signal });
      if (ctx.json) {
        const base = mode === 'restore-size'
          ? { total_size: s.totalRestoreSize, total_file_count: s.totalFileCount, snapshots_count: s.snapshotCount }
          : {
              total_size: s.rawDataSize, total_uncompressed_size: s.uncompressedSize,
              compression_ratio: s.compressionRatio, compression_progress: 100, compression_space_saving: s.compressionSpaceSaving,
              total_blob_count: s.blobCount, snapshots_count: s.snapshotCount,
            };
        ctx.out(JSON.stringify({ ...base, first_backup: s.firstBackup, last_backup: s.lastBackup, pack_count: s.packCount, tree_blob_count: s.treeBlobCount, data_blob_count: s.dataBlobCount }) + '\n');
      } else {
        ctx.out(`Stats in ${mode} mode:\n     Snapshots processed:  ${s.snapshotCount}\n`);
        if (mode === 'restore-size') ctx.out(`        Total File Count:  ${s.totalFileCount}\n              Total Size:  ${formatBytes(s.totalRestoreSize)}\n`);
        else {
          ctx.out(`         Total Blob Count:  ${s.blobCount}\n              Total Size:  ${formatBytes(s.rawDataSize)}\n  Total Uncompressed Size:  ${formatBytes(s.uncompressedSize)}\n` +
            `       Compression Ratio:  ${s.compressionRatio.toFixed(2)}x\n`);
        }
        ctx.out(`            First backup:  ${s.firstBackup ?? '-'}\n             Last backup:  ${s.lastBackup ?? '-'}\n`);
      }
      return 0;
    });
  },
};
