// One part of a repository check split over the pods of a Kubernetes Indexed Job
// (check-indexed-job.yaml beside this file), and the merge of the parts into one status.
//
//   part:   RESTIC_REPOSITORY=… RESTIC_PASSWORD=… JOB_COMPLETION_INDEX=0 STOWAGE_CHECK_PARTS=4 \
//           STOWAGE_REPORT_DIR=/reports node examples/check-part.ts
//   merge:  RESTIC_REPOSITORY=… RESTIC_PASSWORD=… node examples/check-part.ts --merge /reports
//
// Pod i (JOB_COMPLETION_INDEX, set by Kubernetes) runs `check --read-data-subset i+1/n` under a
// shared lock: the structural check, and reading the packs whose ID's first byte modulo n is i,
// so the n pods read every pack exactly once between them. Each writes its report to
// STOWAGE_REPORT_DIR/part-<i>-of-<n>.json (a shared volume) or, without the variable, to
// stdout. The merge reads them, refuses a missing or doubled part, and prints the Stash
// Repository status (integrity from the merged check, size from `stats --mode raw-data`) with the
// merged check's counts. Exit codes: 0 ok, 1 damage found, 2 usage or missing parts.
// STOWAGE_LOG_LEVEL=debug logs every storage request on stderr.
// Run `npm run build` first.

import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  Repository, buildStashRepositoryStatus, checkPartFromEnv, checkRepositoryPart, consoleLogger, mergeCheckParts, observeRepository, openBackend, InvalidInputError,
} from 'stowage';
import type { CheckPartReport, LogLevel } from 'stowage';

const location = process.env.RESTIC_REPOSITORY;
const password = process.env.RESTIC_PASSWORD;
if (!location || !password) {
  console.error('set RESTIC_REPOSITORY and RESTIC_PASSWORD');
  process.exit(2);
}
const logger = consoleLogger((process.env.STOWAGE_LOG_LEVEL as LogLevel | undefined) ?? 'warn');
const backend = await openBackend(location, { logger });
try {
  const repo = await Repository.open(backend, { password, logger });
  if (process.argv[2] === '--merge') process.exitCode = await merge(repo, process.argv[3]);
  else process.exitCode = await part(repo);
} catch (err) {
  console.error(`error: ${(err as Error).message}`);
  process.exitCode = err instanceof InvalidInputError ? 2 : 1;
} finally {
  await backend.close();
}

async function part(repo: Repository): Promise<number> {
  const which = checkPartFromEnv();
  // Another pod's prune holds an exclusive lock for a while: wait up to 10 minutes for it.
  const result = await checkRepositoryPart(repo, which, { retryLock: 10 * 60_000 });
  const json = JSON.stringify(result);
  const dir = process.env.STOWAGE_REPORT_DIR;
  if (dir) {
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, `part-${which.index}-of-${which.count}.json`);
    // Written whole or not at all: a pod killed mid-write leaves no half report for the merge.
    await writeFile(`${file}.tmp`, json);
    await rename(`${file}.tmp`, file);
  } else console.log(json);
  for (const e of result.report.errors) console.error(`${e.code}: ${e.message}`);
  return result.report.ok ? 0 : 1;
}

async function merge(repo: Repository, dir: string | undefined): Promise<number> {
  if (!dir) throw new InvalidInputError('usage: check-part.ts --merge DIR');
  const files = (await readdir(dir)).filter((f) => /^part-\d+-of-\d+\.json$/.test(f));
  const parts = await Promise.all(files.map(async (f) => JSON.parse(await readFile(path.join(dir, f), 'utf8')) as CheckPartReport));
  const merged = mergeCheckParts(parts);
  const observation = await observeRepository(repo, { checkReport: merged });
  const status = buildStashRepositoryStatus(observation);
  console.log(JSON.stringify({ status, check: { readData: merged.readData, packs: merged.packs, packsRead: merged.packsRead, bytesRead: merged.bytesRead, errors: merged.errors.length } }));
  return merged.ok ? 0 : 1;
}
