// Runs a Stowage prune in its own process, for the crash tests in prune.test.ts.
//   node prune-runner.ts REPO_DIR PASSWORD KILL_AFTER_OPS [OP_DELAY_MS]
// Every save and remove on the repository counts as one operation; right after operation
// KILL_AFTER_OPS completes, the process SIGKILLs itself (0 = never). Each operation is logged to
// stderr ("op n save data/ab/ab12…") as it completes; OP_DELAY_MS waits before each one, which spreads the
// operations out in time for a parent that kills the process by the clock. On success it prints
// {"ops": n, …} as JSON.
import { writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalBackend } from '../../src/backend/local.ts';
import { layoutPath, type Backend, type CallOptions, type FileHandle } from '../../src/backend/backend.ts';
import { Repository } from '../../src/repository/repository.ts';
import { prune } from '../../src/snapshot/operations/prune.ts';

const [repoDir, password, killAfterArg, opDelayArg] = process.argv.slice(2);
if (!repoDir || password === undefined || killAfterArg === undefined) {
  process.stderr.write('usage: prune-runner.ts REPO_DIR PASSWORD KILL_AFTER_OPS [OP_DELAY_MS]\n');
  process.exit(2);
}
const killAfter = Number(killAfterArg);
const opDelay = Number(opDelayArg ?? 0);
let ops = 0;

function counted(what: string, h: FileHandle): void {
  ops++;
  // Synchronously, so the parent knows how far a run got even when it is killed.
  writeSync(2, `op ${ops} ${what} ${layoutPath(h)}\n`);
  if (killAfter > 0 && ops >= killAfter) process.kill(process.pid, 'SIGKILL');
}

const local = new LocalBackend(repoDir);
// Reads pass straight through; writes and removes are counted after they complete.
const backend: Backend = {
  location: local.location,
  connections: local.connections,
  create: (o?: CallOptions) => local.create(o),
  load: (h, o) => local.load(h, o),
  stat: (h, o) => local.stat(h, o),
  list: (t, o) => local.list(t, o),
  close: () => local.close(),
  async save(h: FileHandle, data: Uint8Array, o?: CallOptions) {
    if (opDelay > 0) await sleep(opDelay);
    await local.save(h, data, o);
    counted('save', h);
  },
  async remove(h: FileHandle, o?: CallOptions) {
    if (opDelay > 0) await sleep(opDelay);
    await local.remove(h, o);
    counted('remove', h);
  },
};

const repo = await Repository.open(backend, { password });
const result = await prune(await repo.loadIndex());
process.stdout.write(JSON.stringify({ ops, packsRemoved: result.packsRemoved, packsWritten: result.packsWritten }) + '\n');
