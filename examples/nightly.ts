// A nightly backup job for cron or a Kubernetes CronJob: back up FOLDERs with a tag, thin out the
// tagged snapshots with a retention policy (restic's forget), check the repository, and print a
// summary. The exit status tells the scheduler how it went: 0 all good, 1 something failed
// (including a check that found errors), 3 the backup was made but some files could not be read
// (as restic), 2 wrong usage.
//
//   RESTIC_REPOSITORY=/srv/restic-repo RESTIC_PASSWORD=… node examples/nightly.ts [options] FOLDER...
//
// Options (restic's names): --tag nightly, --keep-last N, --keep-daily 7, --keep-weekly 4,
// --keep-monthly 12, --keep-yearly N, --keep-within 3d (0 turns a rule off), --prune (remove the
// data no snapshot needs any more), --read-data-subset 5% (also read part of the data in the
// check). Only snapshots with the tag are thinned out, per host and set of paths, so other
// backups in the same repository are left alone. A missing repository is initialised.
// Run `npm run build` first.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { Repository, RepositoryNotFoundError, backup, checkRepository, forget, openBackend } from 'stowage';
import type { Backend, RetentionPolicy } from 'stowage';

const EXIT = { ok: 0, failed: 1, usage: 2, partial: 3 } as const;

process.exitCode = await main().catch((err: unknown) => {
  console.error(`nightly failed: ${err instanceof Error ? err.message : String(err)}`);
  return EXIT.failed;
});

async function main(): Promise<number> {
  const { RESTIC_REPOSITORY: location, RESTIC_PASSWORD: password } = process.env;
  let args: ReturnType<typeof parseOptions>;
  try {
    args = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\nusage: node examples/nightly.ts [--tag TAG] [--keep-daily N] … [--prune] FOLDER...`);
    return EXIT.usage;
  }
  if (!location || !password) {
    console.error('set RESTIC_REPOSITORY and RESTIC_PASSWORD (see the top of this file)');
    return EXIT.usage;
  }
  const { folders, tag, policy, prune, readDataSubset } = args;

  const backend = await openBackend(location);
  try {
    const repo = await openOrInit(backend, password);

    // 1. Back up. Unreadable files are skipped and reported; the snapshot is made anyway.
    const indexed = await repo.loadIndex();
    const unreadable: string[] = [];
    const { snapshotId, summary } = await backup(indexed, {
      paths: folders,
      tags: [tag],
      onError: (file, err) => unreadable.push(`${file}: ${err.message}`),
    });
    console.log(
      `backup  snapshot ${snapshotId.slice(0, 8)}: ${summary.filesNew} new, ${summary.filesChanged} changed, ` +
        `${summary.filesUnmodified} unmodified files; ${summary.dataAdded} bytes added`,
    );
    for (const line of unreadable) console.error(`backup  could not read ${line}`);

    // 2. Retention: only this job's snapshots (by tag), grouped by host and paths as restic does.
    const forgotten = await forget(repo, { policy, filter: { tags: [[tag]] }, prune });
    const kept = forgotten.groups.reduce((n, g) => n + g.keep.length, 0);
    console.log(`forget  kept ${kept}, removed ${forgotten.removed.length} snapshots tagged ${tag} (${describePolicy(policy)})`);
    if (forgotten.prune) {
      const s = forgotten.prune.stats;
      console.log(`prune   removed ${s.packs.removeTotal} packs (${s.bytes.removeTotal} bytes), repacked ${s.packs.repack}`);
    }
    if (forgotten.failed.length > 0) {
      for (const f of forgotten.failed) console.error(`forget  could not remove snapshot ${f.id.slice(0, 8)}: ${f.error}`);
      return EXIT.failed;
    }

    // 3. Check: the index, every pack's presence and size, every tree; and part of the data if asked.
    const report = await checkRepository(repo, readDataSubset ? { readDataSubset } : {});
    for (const e of report.errors) console.error(`check   ${e.code}: ${e.message}`);
    console.log(
      `check   ${report.ok ? 'ok' : 'FAILED'}: ${report.snapshots} snapshots, ${report.packs} packs, ` +
        `${report.errors.length} errors, ${report.packsRead} packs read`,
    );
    if (!report.ok) return EXIT.failed;

    if (unreadable.length > 0) {
      console.log(`nightly partial: ${unreadable.length} files could not be read`);
      return EXIT.partial;
    }
    console.log('nightly ok');
    return EXIT.ok;
  } finally {
    await backend.close();
  }
}

function parseOptions(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      tag: { type: 'string', default: 'nightly' },
      'keep-last': { type: 'string', default: '0' },
      'keep-daily': { type: 'string', default: '7' },
      'keep-weekly': { type: 'string', default: '4' },
      'keep-monthly': { type: 'string', default: '12' },
      'keep-yearly': { type: 'string', default: '0' },
      'keep-within': { type: 'string' },
      prune: { type: 'boolean', default: false },
      'read-data-subset': { type: 'string' },
    },
  });
  if (positionals.length === 0) throw new Error('give at least one FOLDER to back up');
  const count = (name: keyof typeof values): number => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < -1) throw new Error(`--${name} takes a whole number (-1 for all), got ${JSON.stringify(values[name])}`);
    return v;
  };
  const policy: RetentionPolicy = {
    last: count('keep-last'),
    daily: count('keep-daily'),
    weekly: count('keep-weekly'),
    monthly: count('keep-monthly'),
    yearly: count('keep-yearly'),
    ...(values['keep-within'] ? { within: values['keep-within'] } : {}),
  };
  return {
    folders: positionals.map((p) => path.resolve(p)),
    tag: values.tag,
    policy,
    prune: values.prune,
    readDataSubset: values['read-data-subset'],
  };
}

function describePolicy(p: RetentionPolicy): string {
  const rules = (['last', 'daily', 'weekly', 'monthly', 'yearly'] as const).filter((k) => p[k]).map((k) => `${k} ${p[k]}`);
  if (p.within) rules.push(`within ${String(p.within)}`);
  return `keep ${rules.join(', ') || 'nothing'}`;
}

/** Opens the repository, or initialises one when the location holds none (like `restic init`). */
async function openOrInit(backend: Backend, password: string): Promise<Repository> {
  try {
    return await Repository.open(backend, { password });
  } catch (err) {
    if (!(err instanceof RepositoryNotFoundError)) throw err;
    console.log(`no repository at ${backend.location} yet: initialising one`);
    return Repository.init(backend, { password });
  }
}
