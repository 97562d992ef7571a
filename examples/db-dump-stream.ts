// Stream a database dump straight into a repository as one file, as
// `pg_dump mydb | restic backup --stdin --stdin-filename mydb.sql` does: nothing is written to
// local disk. Then read the file back out of the snapshot and compare its SHA-256 with what the
// dump produced. A dump that fails halfway must not look like a good backup, so when the dump
// command exits with an error the new snapshot is forgotten again and the example exits with 1.
//
//   RESTIC_REPOSITORY=/srv/restic-repo RESTIC_PASSWORD=… node examples/db-dump-stream.ts [MiB]
//
// Without DUMP_COMMAND the dump is a stand-in: this file run with --fake-dump, which writes MiB
// (default 8) of SQL-like text, the same bytes on every run. With a real database:
//   DUMP_COMMAND='pg_dump --format=custom mydb' DUMP_FILENAME=mydb.dump node examples/db-dump-stream.ts
// The file is stored as /<DUMP_FILENAME> (default database.sql) with the tag db-dump; restore it
// with `stowage dump latest /database.sql > database.sql`. A missing repository is initialised.
// Run `npm run build` first.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { Repository, RepositoryNotFoundError, backup, decodeTree, forget, openBackend } from 'stowage';
import type { Backend, BlobId, IndexedRepository, TreeNode } from 'stowage';

if (process.argv[2] === '--fake-dump') {
  await fakeDump(Number(process.argv[3] ?? 8) * 1024 * 1024);
} else {
  process.exitCode = await main();
}

async function main(): Promise<number> {
  const { RESTIC_REPOSITORY: location, RESTIC_PASSWORD: password } = process.env;
  if (!location || !password) {
    console.error('set RESTIC_REPOSITORY and RESTIC_PASSWORD (see the top of this file)');
    return 2;
  }
  const filename = process.env.DUMP_FILENAME ?? 'database.sql';
  const mib = process.argv[2] ?? '8';

  const backend = await openBackend(location);
  try {
    const repo = await openOrInit(backend, password);
    const indexed = await repo.loadIndex();

    // The dump's stdout flows through a hash on its way into the backup.
    const dump = process.env.DUMP_COMMAND
      ? spawn(process.env.DUMP_COMMAND, { shell: true, stdio: ['ignore', 'pipe', 'inherit'] })
      : spawn(process.execPath, [import.meta.filename, '--fake-dump', mib], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | string>((resolve, reject) => {
      dump.on('error', reject);
      dump.on('close', (code, signal) => resolve(code ?? String(signal)));
    });
    // A Transform, not a 'data' listener: that would start the flow before the backup reads.
    const sent = createHash('sha256');
    let sentBytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        sent.update(chunk);
        sentBytes += chunk.length;
        done(null, chunk);
      },
    });
    dump.stdout.pipe(tap);

    let result;
    try {
      result = await backup(indexed, { stdin: { stream: tap, filename }, tags: ['db-dump'] });
    } finally {
      if (dump.exitCode === null) dump.kill(); // the backup failed: stop the dump too
    }
    const { snapshotId, snapshot } = result;
    const status = await exited;
    const sentHash = sent.digest('hex');
    if (status !== 0) {
      // The stream ended early: the snapshot holds a partial dump. Take it back.
      await forget(repo, { ids: [snapshotId] });
      console.error(`the dump command failed (exit ${status}) after ${sentBytes} bytes; snapshot ${snapshotId.slice(0, 8)} was forgotten`);
      return 1;
    }
    console.log(`snapshot ${snapshotId.slice(0, 8)}: /${filename}, ${sentBytes} bytes from the dump, sha256 ${sentHash}`);

    // Read it back the way `stowage dump` does: find the node, then its blobs in order.
    const node = await findFile(indexed, snapshot.tree, filename);
    const back = createHash('sha256');
    let backBytes = 0;
    for (const id of node.content ?? []) {
      const blob = await indexed.loadBlob('data', id); // verified: MAC, then SHA-256 = id
      back.update(blob);
      backBytes += blob.length;
    }
    const backHash = back.digest('hex');
    if (backHash !== sentHash || backBytes !== sentBytes || Number(node.size) !== sentBytes) {
      console.error(`read back ${backBytes} bytes with sha256 ${backHash}, expected ${sentBytes} bytes with ${sentHash}`);
      return 1;
    }
    console.log(`ok db-dump-stream: /${filename} read back from snapshot ${snapshotId.slice(0, 8)}, ${backBytes} bytes in ${node.content?.length ?? 0} blobs, sha256 ${backHash}`);
    return 0;
  } finally {
    await backend.close();
  }
}

/** A file at the root of a snapshot (where --stdin puts it). */
async function findFile(indexed: IndexedRepository, tree: BlobId, name: string): Promise<TreeNode> {
  const node = decodeTree(await indexed.loadBlob('tree', tree), tree).find((n) => n.name === name);
  if (node?.type !== 'file') throw new Error(`/${name} is not a file in the snapshot`);
  return node;
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

/** A stand-in for pg_dump: `bytes` of SQL-like text from a fixed seed, written with backpressure. */
async function fakeDump(bytes: number): Promise<void> {
  let seed = 0x5eed;
  const random = (): number => {
    // xorshift32: the same sequence on every run and every machine.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  // A reader that goes away (the backup failed) ends the dump, as it would end pg_dump.
  process.stdout.on('error', () => process.exit(1));
  let written = 0;
  let id = 0;
  const header = '-- stand-in database dump\nCREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric);\n';
  let buffer = header;
  while (written < bytes) {
    while (buffer.length < 64 * 1024) {
      const name = `${words[Math.floor(random() * words.length)]}-${Math.floor(random() * 1e6)}`;
      buffer += `INSERT INTO items VALUES (${++id}, '${name}', ${(random() * 1000).toFixed(2)});\n`;
    }
    const chunk = Buffer.from(buffer.slice(0, Math.min(buffer.length, bytes - written)));
    buffer = buffer.slice(chunk.length);
    written += chunk.length;
    if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once('drain', resolve));
  }
}
