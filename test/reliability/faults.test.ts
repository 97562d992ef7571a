// Backups on a storage that keeps failing: FaultyBackend injects 5xx answers, timeouts, resets,
// slow answers, truncated reads and saves that land but report an error; RetryBackend must turn
// that into a backup that completes, restores exactly, and passes Stowage's and restic's checks.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FaultyBackend, FAULT_KINDS, seededRandom } from '../../src/backend/wrappers/faulty.ts';
import type { FaultKind, FaultReport, FaultyBackendOptions } from '../../src/backend/wrappers/faulty.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { RetryBackend } from '../../src/backend/wrappers/retry.ts';
import type { RetryInfo } from '../../src/backend/wrappers/retry.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from '../../src/backend/backend.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'faults password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const MiB = 1024 * 1024;

const newId = () => randomBytes(32).toString('hex');
const digest = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function collect(it: AsyncIterable<FileInfo>): Promise<string[]> {
  const out: string[] = [];
  for await (const f of it) out.push(f.name);
  return out.sort();
}

/** 30 files in a few folders: empty, small, mid-sized and three of several MiB; some repeat. */
async function generateTree(root: string, seed: string): Promise<number> {
  const random = seededRandom(seed);
  const bytes = (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = (random() * 4294967296) >>> 0;
      out[i] = v & 0xff;
      out[i + 1] = (v >>> 8) & 0xff;
      out[i + 2] = (v >>> 16) & 0xff;
      out[i + 3] = v >>> 24;
    }
    return out;
  };
  const sizes = [0, 1, 17, 4096, 70_000, 3 * MiB + 123, 2 * MiB, 5 * MiB - 7];
  let total = 0;
  let repeated: Uint8Array | undefined;
  for (let i = 0; i < 30; i++) {
    const folder = path.join(root, `dir${i % 4}`, i % 3 === 0 ? 'deeper' : '');
    await mkdir(folder, { recursive: true });
    const size = i < sizes.length ? sizes[i]! : Math.floor(random() * 300_000);
    // A few files share content, so deduplication is part of what runs under faults.
    const data = i % 10 === 9 && repeated ? repeated : bytes(size);
    if (i === 6) repeated = data;
    await writeFile(path.join(folder, `file-${i}.bin`), data);
    total += data.length;
  }
  return total;
}

/** Rewrites five files and adds five; returns how many bytes the tree grew by. */
async function changeTree(root: string, seed: string): Promise<number> {
  const random = seededRandom(seed);
  let grown = 0;
  for (let i = 0; i < 10; i++) {
    const data = new Uint8Array(Math.floor(random() * 400_000) + 1);
    for (let j = 0; j < data.length; j++) data[j] = (random() * 256) | 0;
    const j = i + 10; // files 10..14 of generateTree, in the folders it put them in
    const file = i < 5 ? path.join(root, `dir${j % 4}`, j % 3 === 0 ? 'deeper' : '', `file-${j}.bin`) : path.join(root, 'new', `added-${i}.bin`);
    if (i < 5) grown -= (await stat(file)).size;
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, data);
    grown += data.length;
  }
  return grown;
}

function formatReport(label: string, report: FaultReport, retries: number): string {
  const kinds = FAULT_KINDS.map((k) => `${k} ${report.faults[k]}`).join(', ');
  const calls = Object.entries(report.calls).map(([op, n]) => `${op} ${n}`).join(', ');
  return `${label}: ${report.totalFaults} faults injected (${kinds}) over calls (${calls}); ${retries} retries`;
}

describe('FaultyBackend', () => {
  it('injects the same faults for the same seed, and counts them', async () => {
    async function run(seed: number): Promise<string[]> {
      const b = new FaultyBackend(new MemoryBackend(), { rate: 0.5, seed, timeoutMs: 1, slowMs: 1 });
      const outcome: string[] = [];
      for (let i = 0; i < 60; i++) {
        const h: FileHandle = { type: 'keys', name: i.toString(16).padStart(64, '0') };
        try {
          await b.save(h, new Uint8Array([i]));
          outcome.push('ok');
        } catch (err) {
          outcome.push((err as Error).message.replace(/ \(.*$/, ''));
        }
      }
      const r = b.report();
      assert.equal(r.calls.save, 60);
      assert.equal(r.faultsByOp.save, r.totalFaults);
      assert.ok(r.totalFaults > 15 && r.totalFaults < 45, `about half the calls fail: ${r.totalFaults}`);
      assert.equal(r.faults.truncated, 0, 'no truncation on saves');
      // Slow answers are faults that do not fail the call.
      assert.equal(outcome.filter((o) => o !== 'ok').length, r.totalFaults - r.faults.slow);
      return outcome;
    }
    assert.deepEqual(await run(42), await run(42));
    assert.notDeepEqual(await run(42), await run(43));
  });

  it('makes a plain backend fail, and honours the op filter, the weights and a rate of 0', async () => {
    const mem = new MemoryBackend();
    const only503 = new FaultyBackend(mem, { rate: 1, weights: { timeout: 0, reset: 0, slow: 0, lostResponse: 0, truncated: 0 } });
    await assert.rejects(Repository.init(only503, { password: PASSWORD, kdf: FAST_KDF }), (err: unknown) => err instanceof BackendError && err.transient && err.status !== undefined);

    const loadsOnly = new FaultyBackend(mem, { rate: 1, ops: ['load'], weights: { slow: 0, truncated: 0 }, timeoutMs: 1 });
    const h: FileHandle = { type: 'snapshots', name: newId() };
    await loadsOnly.save(h, new Uint8Array(5));
    await assert.rejects(loadsOnly.load(h));
    loadsOnly.rate = 0;
    assert.deepEqual(await loadsOnly.load(h), new Uint8Array(5));
    assert.equal(loadsOnly.report().totalFaults, 1);

    assert.throws(() => new FaultyBackend(mem, { rate: 1.5 }), InvalidInputError);
    assert.throws(() => new FaultyBackend(mem, { weights: { nonsense: 1 } as Partial<Record<FaultKind, number>> }), InvalidInputError);
    assert.throws(() => new FaultyBackend(mem, { ops: ['close' as 'load'] }), InvalidInputError);
  });

  it('raises network errors shaped like Node and undici ones', async () => {
    const b = new FaultyBackend(new MemoryBackend(), { rate: 1, weights: { transient: 0, timeout: 0, slow: 0, lostResponse: 0 }, seed: 7 });
    const codes = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const err = await b.stat({ type: 'config', name: '' }).then(() => undefined, (e: unknown) => e);
      const code = (err as { code?: string }).code ?? ((err as { cause?: { code?: string } }).cause?.code);
      codes.add(String(code));
    }
    assert.deepEqual([...codes].sort(), ['ECONNRESET', 'UND_ERR_SOCKET']);
  });

  it('stores the data of a save whose answer it then loses, and of no save it fails before', async () => {
    const mem = new MemoryBackend();
    const lost = new FaultyBackend(mem, { rate: 1, weights: { transient: 0, timeout: 0, reset: 0, slow: 0 } });
    const h: FileHandle = { type: 'data', name: newId() };
    await assert.rejects(lost.save(h, new Uint8Array([1, 2, 3])), (err: unknown) => err instanceof BackendError && err.transient);
    assert.deepEqual(await mem.load(h), new Uint8Array([1, 2, 3]));
    await assert.rejects(lost.remove(h), BackendError);
    await assert.rejects(mem.stat(h), NotFoundError);

    const early = new FaultyBackend(mem, { rate: 1, weights: { lostResponse: 0, slow: 0 }, timeoutMs: 1 });
    await assert.rejects(early.save(h, new Uint8Array([4])));
    await assert.rejects(mem.stat(h), NotFoundError);
  });

  it('truncates reads detectably: short ranges, IntegrityError for whole files; stored bytes stay intact', async () => {
    const mem = new MemoryBackend();
    const h: FileHandle = { type: 'data', name: newId() };
    const data = new Uint8Array(randomBytes(10_000));
    await mem.save(h, data);
    const b = new FaultyBackend(mem, { rate: 1, weights: { transient: 0, timeout: 0, reset: 0, slow: 0 } });
    for (let i = 0; i < 20; i++) {
      const part = await b.load(h, { offset: 1000, length: 5000 });
      assert.ok(part.length < 5000);
      assert.deepEqual(part, data.slice(1000, 1000 + part.length));
      await assert.rejects(b.load(h), (err: unknown) => err instanceof IntegrityError && err.file === `data/${h.name.slice(0, 2)}/${h.name}`);
    }
    assert.equal(b.report().faults.truncated, 40);
    assert.equal(digest(await mem.load(h)), digest(data));
  });

  it('breaks listings part-way, and a RetryBackend completes them', async () => {
    const mem = new MemoryBackend();
    const names = Array.from({ length: 25 }, newId).sort();
    for (const name of names) await mem.save({ type: 'index', name }, new Uint8Array(1));
    const faulty = new FaultyBackend(mem, { rate: 1, ops: ['list'], weights: { slow: 0 }, timeoutMs: 1, seed: 3 });
    await assert.rejects(collect(faulty.list('index')));
    // The first listing through the retry wrapper fails for sure; later ones half the time.
    let retries = 0;
    const retrying = new RetryBackend(faulty, {
      initialDelayMs: 1,
      maxDelayMs: 2,
      maxAttempts: 50,
      onRetry: () => {
        retries++;
        faulty.rate = 0.5;
      },
    });
    assert.deepEqual(await collect(retrying.list('index')), names);
    assert.ok(retries >= 1);
    assert.equal(faulty.report().calls.list, 2 + retries);
  });

  it('stops a timeout or slow answer at once when aborted', async () => {
    const b = new FaultyBackend(new MemoryBackend(), { rate: 1, weights: { transient: 0, reset: 0, slow: 0 }, timeoutMs: 60_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const started = performance.now();
    await assert.rejects(b.stat({ type: 'config', name: '' }, { signal: controller.signal }), AbortedError);
    assert.ok(performance.now() - started < 5000);
  });
});

interface Run {
  label: string;
  options: FaultyBackendOptions;
}

const RUNS: Run[] = [
  { label: '10% of all calls fail', options: { rate: 0.1 } },
  { label: '30% of all calls fail', options: { rate: 0.3 } },
  // The case a caller most easily gets wrong: the file is stored, yet the call reports an error.
  { label: '70% of saves land but report an error', options: { rate: 0.7, ops: ['create', 'save', 'remove'], weights: { transient: 0, timeout: 0, reset: 0, slow: 0 } } },
];

describe('backup and restore through injected faults', () => {
  const reports: FaultReport[] = [];

  for (const { label, options } of RUNS) {
    it(`completes when ${label}: exact restore, Stowage check and restic check --read-data pass`, async () => {
      const work = await tmpDir('stowage-faults');
      const src = path.join(work, 'src');
      const repoDir = path.join(work, 'repo');
      let total = await generateTree(src, `tree-${label}`);
      assert.ok(total > 10 * MiB, `the tree holds ${total} bytes`);

      const faulty = new FaultyBackend(new LocalBackend(repoDir), { seed: label, timeoutMs: 5, slowMs: 3, ...options });
      const retries: RetryInfo[] = [];
      const backend = new RetryBackend(faulty, {
        initialDelayMs: 2,
        maxDelayMs: 20,
        maxAttempts: 30,
        maxElapsedMs: 60_000,
        onRetry: (info) => retries.push(info),
      });

      const repo = await Repository.init(backend, { password: PASSWORD, kdf: FAST_KDF });
      const first = await backup(await repo.loadIndex(), { paths: [src], hostname: 'faults', lock: false });
      assert.deepEqual(first.errors, []);
      // A second, incremental backup after some files changed and some were added.
      total += await changeTree(src, `change-${label}`);
      const result = await backup(await repo.loadIndex(), { paths: [src], hostname: 'faults', lock: false });
      assert.deepEqual(result.errors, []);
      assert.equal(result.snapshot.parent, first.snapshotId);
      const afterBackup = faulty.report();
      const retriesInBackup = retries.length;

      // Read everything back through the same faults: a fresh open, a restore, a full check.
      const reopened = await Repository.open(backend, { password: PASSWORD });
      const out = path.join(work, 'restore');
      const restored = await restore(await reopened.loadIndex(), result.snapshot.tree, { target: out });
      assert.equal(restored.bytesRestored, total);
      assert.deepEqual(await compareTrees(src, path.join(out, src), { ignoreRootMetadata: true }), []);
      const report = await checkRepository(reopened, { readData: true });
      assert.deepEqual(report.errors, []);
      assert.ok(report.ok);
      assert.ok(report.packsRead > 0);

      const final = faulty.report();
      reports.push(final);
      console.log(formatReport(`${label}; backup`, afterBackup, retriesInBackup));
      console.log(formatReport(`${label}; backup + open + restore + check`, final, retries.length));
      assert.ok(final.totalFaults >= 5, `faults were injected: ${final.totalFaults}`);
      // Every fault but a slow answer fails one call, which is retried once; a fault in the stat
      // that checks a truncated read rides on the retry of that read.
      const failing = final.totalFaults - final.faults.slow;
      assert.ok(retries.length <= failing && retries.length >= failing - final.faultsByOp.stat, `${retries.length} retries for ${failing} failures`);

      // The real restic reads what was written through the faults.
      await resticOk(resticBin('0.19'), ['check', '--read-data'], { repo: repoDir, password: PASSWORD });
    });
  }

  it('injected every kind of fault across the runs', () => {
    assert.equal(reports.length, RUNS.length);
    for (const kind of FAULT_KINDS) {
      const n = reports.reduce((sum, r) => sum + r.faults[kind], 0);
      assert.ok(n > 0, `no ${kind} fault was injected`);
    }
  });
});

/** A MemoryBackend that goes down for good (every call refused) at the first save of a pack. */
class OutageBackend implements Backend {
  readonly location = 'memory:outage';
  readonly connections = 2;
  readonly inner = new MemoryBackend();
  down = false;
  /** The save of a data pack that starts the outage: 1 for the first. */
  downAtDataSave = 1;
  #dataSaves = 0;
  #check(): void {
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8000'), { code: 'ECONNREFUSED', syscall: 'connect' });
  }
  async create(o?: CallOptions): Promise<void> {
    this.#check();
    await this.inner.create(o);
  }
  async save(h: FileHandle, data: Uint8Array, o?: CallOptions): Promise<void> {
    if (h.type === 'data' && ++this.#dataSaves >= this.downAtDataSave) this.down = true;
    this.#check();
    await this.inner.save(h, data, o);
  }
  async load(h: FileHandle, o?: LoadOptions): Promise<Uint8Array> {
    this.#check();
    return this.inner.load(h, o);
  }
  async stat(h: FileHandle, o?: CallOptions): Promise<FileInfo> {
    this.#check();
    return this.inner.stat(h, o);
  }
  async remove(h: FileHandle, o?: CallOptions): Promise<void> {
    this.#check();
    await this.inner.remove(h, o);
  }
  async *list(type: FileType, o?: CallOptions): AsyncGenerator<FileInfo> {
    this.#check();
    yield* this.inner.list(type, o);
  }
  async close(): Promise<void> {}
}

describe('an outage that outlasts the retries', () => {
  it('fails the backup with the error of the upload, not of the lock it could not remove afterwards', async () => {
    const work = await tmpDir('stowage-outage');
    const src = path.join(work, 'src');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'file.bin'), randomBytes(100_000));
    const outage = new OutageBackend();
    const backend = new RetryBackend(outage, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 2 });
    const repo = await Repository.init(backend, { password: PASSWORD, kdf: FAST_KDF });
    await assert.rejects(backup(await repo.loadIndex(), { paths: [src], hostname: 'outage' }), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.match(err.message, /^save data\/[0-9a-f]{2}\/[0-9a-f]{64}: connect ECONNREFUSED .*\(gave up after 3 attempts in [\d.]+ s\)$/);
      assert.equal((err.cause as { code?: string }).code, 'ECONNREFUSED');
      // The lock could not be removed in the same outage: kept, not thrown.
      const suppressed = err.suppressed ?? [];
      assert.equal(suppressed.length, 1);
      assert.match((suppressed[0] as Error).message, /^remove locks\/[0-9a-f]{64}: connect ECONNREFUSED/);
      return true;
    });
    assert.ok(outage.down);
  });

  it('fails a blob writer with the error of the upload when the index for the packs stored before fails too', async () => {
    const outage = new OutageBackend();
    outage.downAtDataSave = 2;
    const backend = new RetryBackend(outage, { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 2 });
    const repo = await Repository.init(backend, { password: PASSWORD, kdf: FAST_KDF });
    const writer = (await repo.loadIndex()).blobWriter({ packSize: 4096, compression: 'off' });
    const write = async () => {
      await writer.saveBlob('data', randomBytes(5000));
      await writer.saveBlob('data', randomBytes(5000));
      await writer.saveBlob('data', randomBytes(5000));
      await writer.flush();
    };
    await assert.rejects(write(), (err: unknown) => {
      assert.ok(err instanceof BackendError, String(err));
      assert.match(err.message, /^save data\//);
      assert.ok((err.suppressed ?? []).some((e) => /^save index\//.test((e as Error).message)), String(err.suppressed));
      return true;
    });
  });
});
