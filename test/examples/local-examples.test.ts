// Runs examples/db-dump-stream.ts, examples/nightly.ts and examples/http-handler.ts as a user
// would — `node examples/<name>.ts` in a child process, importing the built package by its name
// — against local repositories, with only the environment their headers document, then looks at
// the repository independently through the source (and through the `stowage` CLI) to see that
// what they claim happened did. Needs `npm run build` (npm test does it).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { goTimeFromDate } from '../../src/repository/gotime.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PASSWORD = 'local examples: p@ss w/ spaces';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const DAY = 24 * 3600 * 1000;

const work = await tmpDir('stowage-local-examples');
const home = path.join(work, 'home');
await mkdir(home);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function describeRun(run: Run): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

function startExample(example: string, args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [example, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: home, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** `node <example> ...args` from the project root, with exactly `env` (plus PATH and HOME). */
function runExample(example: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = startExample(example, args, env);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function openRepo(dir: string): Promise<Repository> {
  return Repository.open(new LocalBackend(dir), { password: PASSWORD });
}

async function sha256OfStdout(example: string, args: string[]): Promise<{ hash: string; bytes: number }> {
  const child = startExample(example, args, {});
  const hash = createHash('sha256');
  let bytes = 0;
  child.stdout!.on('data', (d: Buffer) => {
    hash.update(d);
    bytes += d.length;
  });
  const code = await new Promise((resolve) => child.on('close', resolve));
  assert.equal(code, 0);
  return { hash: hash.digest('hex'), bytes };
}

describe('examples/db-dump-stream.ts', () => {
  const example = 'examples/db-dump-stream.ts';

  it('streams a dump into one file of a snapshot and reads the same bytes back', async () => {
    const repoDir = path.join(work, 'dump-repo');
    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD };
    const run = await runExample(example, ['6'], env);
    assert.equal(run.code, 0, describeRun(run));
    const m = /^ok db-dump-stream: \/database\.sql read back from snapshot ([0-9a-f]{8}), (\d+) bytes in (\d+) blobs, sha256 ([0-9a-f]{64})$/m.exec(run.stdout);
    assert.ok(m, describeRun(run));
    assert.equal(Number(m[2]), 6 * 1024 * 1024);
    assert.ok(Number(m[3]) > 1, 'a 6 MiB dump spans several chunks');

    // The stand-in dump is deterministic: the same command, run on its own, gives the same hash.
    const direct = await sha256OfStdout(example, ['--fake-dump', '6']);
    assert.deepEqual([direct.hash, direct.bytes], [m[4], 6 * 1024 * 1024]);

    // The repository holds one snapshot of /database.sql, tagged, and `stowage dump` returns the bytes.
    const snapshots = await listSnapshots(await openRepo(repoDir));
    assert.deepEqual(snapshots.map((s) => [s.id.slice(0, 8), s.snapshot.paths, s.snapshot.tags]), [[m[1], ['/database.sql'], ['db-dump']]]);
    const dumped = await runCliBytes(['dump', 'latest', '/database.sql'], env);
    assert.equal(createHash('sha256').update(dumped).digest('hex'), m[4]);

    // A second run deduplicates against the first: the same dump adds no data, only the trees
    // (the file's new mtime), which restic's data_added counts too.
    const again = await runExample(example, ['6'], env);
    assert.equal(again.code, 0, describeRun(again));
    const second = (await listSnapshots(await openRepo(repoDir))).at(-1)!;
    assert.equal(second.snapshot.summary?.dataBlobs, 0);
    assert.ok((second.snapshot.summary?.dataAdded ?? 0) < 4096, String(second.snapshot.summary?.dataAdded));
  });

  it('forgets the snapshot and exits 1 when the dump command fails halfway', async () => {
    const repoDir = path.join(work, 'dump-fail-repo');
    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD, DUMP_COMMAND: "printf 'CREATE TABLE half'; exit 3", DUMP_FILENAME: 'half.sql' };
    const run = await runExample(example, [], env);
    assert.equal(run.code, 1, describeRun(run));
    assert.match(run.stderr, /^the dump command failed \(exit 3\) after 17 bytes; snapshot [0-9a-f]{8} was forgotten$/m);
    assert.deepEqual(await listSnapshots(await openRepo(repoDir)), []);
  });

  it('exits with 2 and names the variables when RESTIC_REPOSITORY or RESTIC_PASSWORD is missing', async () => {
    const run = await runExample(example, [], { RESTIC_PASSWORD: PASSWORD });
    assert.equal(run.code, 2, describeRun(run));
    assert.match(run.stderr, /set RESTIC_REPOSITORY and RESTIC_PASSWORD/);
  });
});

/** The CLI's stdout as bytes. */
async function runCliBytes(args: string[], env: Record<string, string>): Promise<Buffer> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', HOME: home, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise((resolve) => child.on('close', resolve));
  assert.equal(code, 0, stderr);
  return Buffer.concat(chunks);
}

describe('examples/nightly.ts', () => {
  const example = 'examples/nightly.ts';

  it('backs up with a tag, keeps what the policy says among the tagged snapshots only, checks, and exits 0', async () => {
    const repoDir = path.join(work, 'nightly-repo');
    const source = path.join(work, 'nightly-src');
    await mkdir(path.join(source, 'sub'), { recursive: true });
    await writeFile(path.join(source, 'a.txt'), 'nightly\n');
    await writeFile(path.join(source, 'sub', 'b.bin'), randomBytes(100_000));
    // Ten earlier nightly runs, one a day, and two manual backups of the same folder.
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, kdf: FAST_KDF });
    const indexed = await repo.loadIndex();
    const earlier: string[] = [];
    for (let days = 10; days >= 1; days--) {
      const { snapshotId } = await backup(indexed, { paths: [source], tags: ['nightly'], time: goTimeFromDate(new Date(Date.now() - days * DAY)) });
      earlier.push(snapshotId);
    }
    const manual = [];
    for (const days of [30, 20]) manual.push((await backup(indexed, { paths: [source], tags: ['manual'], time: goTimeFromDate(new Date(Date.now() - days * DAY)) })).snapshotId);

    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD };
    const run = await runExample(example, ['--keep-daily', '7', '--keep-weekly', '0', '--keep-monthly', '0', source], env);
    assert.equal(run.code, 0, describeRun(run));
    const made = /^backup {2}snapshot ([0-9a-f]{8}): 0 new, 0 changed, 2 unmodified files; 0 bytes added$/m.exec(run.stdout);
    assert.ok(made, describeRun(run));
    assert.match(run.stdout, /^forget {2}kept 7, removed 4 snapshots tagged nightly \(keep daily 7\)$/m);
    assert.match(run.stdout, /^check {3}ok: 9 snapshots, \d+ packs, 0 errors, 0 packs read$/m);
    assert.match(run.stdout, /^nightly ok$/m);

    // The new one and the six newest earlier nightly snapshots remain, and both manual ones.
    const left = await listSnapshots(await openRepo(repoDir));
    const nightly = left.filter((s) => s.snapshot.tags?.includes('nightly'));
    assert.deepEqual(nightly.map((s) => s.id).sort(), [...earlier.slice(4), nightly.find((s) => s.id.startsWith(made[1]!))!.id].sort());
    assert.deepEqual(left.filter((s) => s.snapshot.tags?.includes('manual')).map((s) => s.id).sort(), [...manual].sort());
    assert.ok(nightly.every((s) => s.snapshot.hostname === hostname()));
  });

  it('prunes when asked and reads part of the data in the check', async () => {
    const repoDir = path.join(work, 'nightly-prune-repo');
    const source = path.join(work, 'nightly-prune-src');
    await mkdir(source);
    const repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, kdf: FAST_KDF });
    const indexed = await repo.loadIndex();
    // Two old snapshots of a file that is gone now: forgetting them makes its data unused.
    await writeFile(path.join(source, 'old.bin'), randomBytes(300_000));
    for (const days of [3, 2]) await backup(indexed, { paths: [source], tags: ['nightly'], time: goTimeFromDate(new Date(Date.now() - days * DAY)) });
    await rm(path.join(source, 'old.bin'));
    await writeFile(path.join(source, 'new.txt'), 'new\n');

    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD };
    const run = await runExample(example, ['--keep-last', '1', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0', '--prune', '--read-data-subset', '100%', source], env);
    assert.equal(run.code, 0, describeRun(run));
    assert.match(run.stdout, /^forget {2}kept 1, removed 2 snapshots tagged nightly \(keep last 1\)$/m);
    const pruned = /^prune {3}removed (\d+) packs \((\d+) bytes\), repacked \d+$/m.exec(run.stdout);
    assert.ok(pruned && Number(pruned[2]) >= 300_000, describeRun(run));
    assert.match(run.stdout, /^check {3}ok: 1 snapshots, (\d+) packs, 0 errors, \1 packs read$/m);
  });

  it('exits 1 and names the problem when the check finds the repository damaged', async () => {
    const repoDir = path.join(work, 'nightly-damaged-repo');
    const source = path.join(work, 'nightly-damaged-src');
    await mkdir(source);
    await writeFile(path.join(source, 'data.bin'), randomBytes(50_000));
    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD };
    const first = await runExample(example, [source], env);
    assert.equal(first.code, 0, describeRun(first));
    assert.match(first.stdout, /^no repository at .+ yet: initialising one$/m);
    // Lose one data pack.
    const dataDir = path.join(repoDir, 'data');
    const packs: string[] = [];
    for (const sub of await readdir(dataDir)) for (const f of await readdir(path.join(dataDir, sub))) packs.push(path.join(dataDir, sub, f));
    assert.ok(packs.length >= 1);
    await rm(packs[0]!, { force: true });
    const second = await runExample(example, [source], env);
    assert.equal(second.code, 1, describeRun(second));
    assert.match(second.stderr, /^check {3}PACK_MISSING: /m);
    assert.match(second.stdout, /^check {3}FAILED: /m);
    assert.doesNotMatch(second.stdout, /nightly ok/);
  });

  it('exits 2 on wrong usage', async () => {
    const env = { RESTIC_REPOSITORY: path.join(work, 'unused'), RESTIC_PASSWORD: PASSWORD };
    const noFolder = await runExample(example, [], env);
    assert.equal(noFolder.code, 2, describeRun(noFolder));
    assert.match(noFolder.stderr, /give at least one FOLDER/);
    const badCount = await runExample(example, ['--keep-daily', 'many', work], env);
    assert.equal(badCount.code, 2, describeRun(badCount));
    assert.match(badCount.stderr, /--keep-daily takes a whole number/);
  });
});

describe('examples/http-handler.ts', () => {
  it('serves files of the latest snapshot byte for byte, lists folders, sees new snapshots, and stops on SIGTERM', { timeout: 180_000 }, async () => {
    const repoDir = path.join(work, 'http-repo');
    const source = path.join(work, 'http-src');
    await mkdir(path.join(source, 'sub'), { recursive: true });
    const big = randomBytes(3 * 1024 * 1024 + 5);
    await writeFile(path.join(source, 'sub', 'big.bin'), big);
    await writeFile(path.join(source, 'sub', 'ünïcode name.txt'), 'hello\n');
    await writeFile(path.join(source, 'empty'), '');
    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD };
    assert.equal((await runCli(['init'], { env })).code, 0);
    assert.equal((await runCli(['backup', source], { env })).code, 0);

    const child = startExample('examples/http-handler.ts', ['0'], env);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const base = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the server did not start:\n${stdout}\n${stderr}`)), 60_000);
        const poll = setInterval(() => {
          const m = /^listening on (http:\/\/127\.0\.0\.1:\d+\/files\/)/m.exec(stdout);
          if (!m) return;
          clearInterval(poll);
          clearTimeout(timer);
          resolve(m[1]!);
        }, 50);
      });
      const url = (p: string) => base + p.split('/').filter(Boolean).map(encodeURIComponent).join('/');

      const res = await fetch(url(`${source}/sub/big.bin`));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), String(big.length));
      assert.match(res.headers.get('x-snapshot') ?? '', /^[0-9a-f]{64}$/);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(big), 'the served file differs');

      assert.equal(await (await fetch(url(`${source}/sub/ünïcode name.txt`))).text(), 'hello\n');
      const empty = await fetch(url(`${source}/empty`));
      assert.deepEqual([empty.status, (await empty.arrayBuffer()).byteLength], [200, 0]);

      const listing = (await (await fetch(url(`${source}/sub`))).json()) as Array<{ name: string; type: string; size?: number }>;
      assert.deepEqual(listing, [
        { name: 'big.bin', type: 'file', size: big.length },
        { name: 'ünïcode name.txt', type: 'file', size: 6 },
      ]);
      const missing = await fetch(url(`${source}/nope`));
      assert.equal(missing.status, 404);
      await missing.text();
      const badSnapshot = await fetch(`${url(source)}?snapshot=not-hex`);
      assert.equal(badSnapshot.status, 400);
      await badSnapshot.text();
      const post = await fetch(url(`${source}/empty`), { method: 'POST' });
      assert.equal(post.status, 405);
      await post.text();

      // A backup made while the server runs: its trees are not in the loaded index yet.
      const first = res.headers.get('x-snapshot')!;
      await writeFile(path.join(source, 'sub', 'big.bin'), 'replaced\n');
      assert.equal((await runCli(['backup', source], { env })).code, 0);
      const after = await fetch(url(`${source}/sub/big.bin`));
      assert.equal(await after.text(), 'replaced\n');
      assert.notEqual(after.headers.get('x-snapshot'), first);
      // The older snapshot stays reachable by ID prefix.
      const old = await fetch(`${url(`${source}/sub/big.bin`)}?snapshot=${first.slice(0, 8)}`);
      assert.ok(Buffer.from(await old.arrayBuffer()).equals(big));
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await closed, 0, `${stdout}\n${stderr}`);
    assert.match(stdout, /^stopped$/m);
    assert.equal(stderr, '');
  });
});

// Keeps the example files honest: each one says how to run it and reads no undocumented variable.
describe('the example headers', () => {
  for (const name of ['db-dump-stream.ts', 'nightly.ts', 'http-handler.ts']) {
    it(`${name} documents its command line and every variable it reads`, async () => {
      const text = await readFile(path.join(ROOT, 'examples', name), 'utf8');
      const header = text.slice(0, text.indexOf('\nimport '));
      assert.match(header, new RegExp(`node examples/${name.replace('.', '\\.')}`));
      const read = new Set<string>();
      for (const m of text.matchAll(/process\.env\.([A-Z][A-Z0-9_]*)/g)) read.add(m[1]!);
      for (const m of text.matchAll(/const \{([^{}]*)\} = process\.env/g)) {
        for (const part of m[1]!.split(',')) read.add(part.split(':')[0]!.trim());
      }
      assert.ok(read.has('RESTIC_REPOSITORY') && read.has('RESTIC_PASSWORD'), [...read].join(' '));
      for (const variable of read) assert.ok(header.includes(variable), `${name} reads ${variable} but its header does not mention it`);
    });
  }
});
