// Corruption: in a v1 and a v2 repository, every file of every type (config, key, index, data
// pack, tree pack, snapshot, lock) is damaged in turn — bytes flipped at several offsets,
// truncated, deleted — and Stowage must notice every time:
//   config, key     open fails with a typed error naming the file (a deleted config is "no
//                   repository", a deleted only key is "no key found");
//   index, pack,    check --read-data reports an error naming the file;
//   snapshot
//   lock            listing locks fails with an IntegrityError naming it; unlock --remove-all
//                   still clears it.
// Deleting a snapshot or a lock leaves a valid repository (that is what forget and unlock do),
// so those two deletions are checked to be harmless rather than counted as detections.
// Damage to a pack is also restored through: a snapshot that needs a damaged blob fails with an
// IntegrityError and every file it wrote holds a verified prefix of the original; a snapshot that
// needs none restores exactly.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { seededRandom } from '../../src/backend/wrappers/faulty.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { IntegrityError, NotFoundError, RepositoryNotFoundError, StowageError, WrongPasswordError } from '../../src/errors.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { encodeLock, listLocks, unlock } from '../../src/repository/lock.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { checkRepository } from '../../src/snapshot/operations/check/index.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import { runCli } from '../helpers/cli.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'corruption password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const SEED = process.env.STOWAGE_CORRUPTION_SEED !== undefined ? Number(process.env.STOWAGE_CORRUPTION_SEED) : 20_240_611;

type Kind = 'config' | 'key' | 'index' | 'data pack' | 'tree pack' | 'snapshot' | 'lock';

interface Damage {
  name: string;
  /** The damaged bytes, or null to delete the file. */
  apply(original: Buffer): Buffer | null;
  /** The byte range of the original that no longer reads back as it was. */
  range(size: number): [number, number];
}

function flip(label: string, at: (size: number) => number, mask: number): Damage {
  return {
    name: `flip ${label}`,
    apply: (b) => {
      const out = Buffer.from(b);
      out[at(b.length)]! ^= mask;
      return out;
    },
    range: (size) => [at(size), at(size) + 1],
  };
}

function truncation(label: string, to: (size: number) => number): Damage {
  return { name: `truncate ${label}`, apply: (b) => b.subarray(0, to(b.length)), range: (size) => [to(size), size] };
}

function damages(random: () => number): Damage[] {
  const r1 = random();
  const r2 = random();
  const mask = () => 1 + Math.floor(random() * 255);
  return [
    flip('first byte', () => 0, mask()),
    flip('byte 16 (first after the IV)', (n) => Math.min(16, n - 1), mask()),
    flip('middle byte', (n) => Math.floor(n / 2), mask()),
    flip('byte 17 from the end (in the MAC or header)', (n) => Math.max(0, n - 17), mask()),
    flip('last byte', (n) => n - 1, mask()),
    flip(`random byte (${r1.toFixed(3)})`, (n) => Math.floor(r1 * n), mask()),
    flip(`random byte (${r2.toFixed(3)})`, (n) => Math.floor(r2 * n), mask()),
    truncation('to 0 bytes', () => 0),
    truncation('to half', (n) => Math.floor(n / 2)),
    truncation('by one byte', (n) => n - 1),
    { name: 'delete', apply: () => null, range: (size) => [0, size] },
  ];
}

async function filesOf(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/** Where a restored file first differs from the original, and whether it holds zeros there (a hole). */
function describeMismatch(got: Buffer, original: Buffer): string {
  if (got.length > original.length) return `${got.length} bytes, the original has ${original.length}`;
  let at = 0;
  while (at < got.length && got[at] === original[at]) at++;
  let end = at;
  while (end < got.length && got[end] !== original[end]) end++;
  const zeros = got.subarray(at, end).every((b) => b === 0);
  return `${got.length} of ${original.length} bytes, first differing at byte ${at}${zeros ? ' (zeros there: a hole where an unrestorable blob belongs)' : ''}`;
}

/** Path inside the source root → content, as one snapshot saw it. */
type Contents = Map<string, Buffer>;

interface Pristine {
  version: 1 | 2;
  dir: string;
  src: string;
  /** Snapshot ID → the contents it holds and the blobs (data and tree) it needs. */
  snapshots: Map<string, { contents: Contents; blobs: Set<string> }>;
  targets: Array<{ kind: Kind; file: string }>;
  /** Pack file → blob byte ranges in it. */
  blobRanges: Map<string, Array<{ id: string; start: number; end: number }>>;
}

interface Tally {
  injected: number;
  detected: number;
  harmless: number;
  restores: number;
  byKind: Record<string, [number, number]>;
}

describe('corruption of every file type is detected', () => {
  let work: string;
  const tally: Tally = { injected: 0, detected: 0, harmless: 0, restores: 0, byKind: {} };
  const random = seededRandom(SEED);

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-corrupt-'));
  });
  after(async () => {
    const kinds = Object.entries(tally.byKind).map(([k, [d, i]]) => `${k} ${d}/${i}`).join(', ');
    console.log(
      `corruption: corruptions detected ${tally.detected} of ${tally.injected} injected (${kinds}); ` +
        `${tally.harmless} deletions of snapshots/locks left a valid repository; ${tally.restores} restores through damage checked; seed ${SEED}`,
    );
    await removeTree(work);
  });

  async function contentsOf(root: string): Promise<Contents> {
    const out: Contents = new Map();
    for (const f of await filesOf(root)) out.set(f, await readFile(path.join(root, f)));
    return out;
  }

  async function blobsOf(indexed: IndexedRepository, root: BlobId): Promise<Set<string>> {
    const out = new Set<string>();
    const stack = [root];
    while (stack.length) {
      const id = stack.pop()!;
      if (out.has(id)) continue;
      out.add(id);
      for (const n of decodeTree(await indexed.loadBlob('tree', id), id)) {
        for (const c of n.content ?? []) out.add(c);
        if (n.subtree) stack.push(n.subtree);
      }
    }
    return out;
  }

  /** Two snapshots of a small tree (one file spans several blobs), their packs, and a lock. */
  async function makePristine(version: 1 | 2): Promise<Pristine> {
    const base = path.join(work, `v${version}`);
    const src = path.join(base, 'src');
    const dir = path.join(base, 'repo');
    await mkdir(path.join(src, 'sub'), { recursive: true });
    const big = Buffer.alloc(2_600_000);
    for (let i = 0; i < big.length; i++) big[i] = (random() * 256) | 0;
    await writeFile(path.join(src, 'big.bin'), big);
    await writeFile(path.join(src, 'sub', 'text.txt'), 'some text\n'.repeat(3000));
    await writeFile(path.join(src, 'sub', 'one'), '1');
    const repo = await Repository.init(new LocalBackend(dir), { password: PASSWORD, kdf: FAST_KDF, version });
    const snapshots: Pristine['snapshots'] = new Map();
    for (let round = 0; round < 2; round++) {
      if (round === 1) await writeFile(path.join(src, 'sub', 'second.bin'), big.subarray(100_000, 900_000).reverse());
      const indexed = await repo.loadIndex();
      const r = await backup(indexed, { paths: [src] });
      snapshots.set(r.snapshotId, { contents: await contentsOf(src), blobs: await blobsOf(await repo.loadIndex(), r.snapshot.tree) });
    }
    // A lock from another host, as a running backup elsewhere leaves it.
    await repo.saveUnpacked('locks', encodeLock({ time: '2024-01-02T03:04:05.123456789Z', exclusive: false, hostname: 'elsewhere', username: 'u', pid: 4242 }));

    const indexed = await repo.loadIndex();
    const blobRanges: Pristine['blobRanges'] = new Map();
    const packKind = new Map<string, Kind>();
    for (const e of indexed.index.entries()) {
      const file = `data/${e.packId.slice(0, 2)}/${e.packId}`;
      if (!blobRanges.has(file)) blobRanges.set(file, []);
      blobRanges.get(file)!.push({ id: e.id, start: e.offset, end: e.offset + e.length });
      packKind.set(file, e.type === 'tree' ? 'tree pack' : 'data pack');
    }
    const targets: Pristine['targets'] = [];
    for (const f of await filesOf(dir)) {
      const top = f.split('/')[0]!;
      const kind: Kind | undefined =
        f === 'config' ? 'config' : top === 'keys' ? 'key' : top === 'index' ? 'index' : top === 'snapshots' ? 'snapshot' : top === 'locks' ? 'lock' : packKind.get(f);
      assert.ok(kind, `unexpected file ${f}`);
      targets.push({ kind, file: f });
    }
    for (const k of ['config', 'key', 'index', 'data pack', 'tree pack', 'snapshot', 'lock'] as Kind[]) {
      assert.ok(targets.some((t) => t.kind === k), `v${version} repository has a ${k}`);
    }
    return { version, dir, src, snapshots, targets, blobRanges };
  }

  /** Every way Stowage can notice the damage; returns how it did, or throws when it did not. */
  async function detect(p: Pristine, kind: Kind, file: string, deleted: boolean): Promise<string> {
    const backend = new LocalBackend(p.dir);
    if (kind === 'config' || kind === 'key') {
      const err = await Repository.open(backend, { password: PASSWORD }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof StowageError, `open must fail with a typed error, got ${String(err)}`);
      if (deleted && kind === 'config') assert.ok(err instanceof RepositoryNotFoundError, `deleted config: ${err.message}`);
      else if (deleted) assert.ok(err instanceof WrongPasswordError, `deleted only key: ${err.message}`);
      else {
        assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
        assert.ok(err.message.includes(kind === 'config' ? 'config' : path.basename(file)), `the error names ${file}: ${err.message}`);
      }
      return `open: ${err.name}`;
    }
    const repo = await Repository.open(backend, { password: PASSWORD });
    if (kind === 'lock') {
      const err = await listLocks(repo).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof IntegrityError, `listing a damaged lock: ${String(err)}`);
      assert.equal(err.file, file, `the error names the lock: ${err.message}`);
      await unlock(repo, { all: true });
      assert.deepEqual(await listLocks(repo), [], 'unlock --remove-all clears a damaged lock');
      return 'listLocks: IntegrityError';
    }
    const report = await checkRepository(repo, { readData: true });
    assert.equal(report.ok, false, 'check --read-data must fail');
    const named = report.errors.some((e) => e.file === file || e.message.includes(path.basename(file)));
    // A deleted index can only be noticed through what it listed: the blobs it alone indexed.
    assert.ok(named || (deleted && kind === 'index' && report.errors.length > 0), `no error names ${file}: ${JSON.stringify(report.errors.slice(0, 4))}`);
    return `check: ${report.errors.length} errors`;
  }

  /** Restores every snapshot of a repository with a damaged pack. */
  async function restoreThroughDamage(p: Pristine, file: string, damage: Damage, size: number): Promise<void> {
    const [from, to] = damage.range(size);
    const hit = new Set((p.blobRanges.get(file) ?? []).filter((b) => b.start < to && from < b.end).map((b) => b.id));
    const repo = await Repository.open(new LocalBackend(p.dir), { password: PASSWORD });
    const indexed = await repo.loadIndex();
    for (const s of await listSnapshots(repo)) {
      const { contents, blobs } = p.snapshots.get(s.id)!;
      const needsDamaged = [...hit].some((id) => blobs.has(id));
      const target = await mkdtemp(path.join(work, 'restore-'));
      try {
        const err = await restore(indexed, s.snapshot.tree, { target }).then(() => undefined, (e: unknown) => e);
        const where = `${file} (${damage.name}), snapshot ${s.id.slice(0, 8)}`;
        if (needsDamaged) {
          assert.ok(err !== undefined, `${where}: restore must fail`);
          if (damage.name === 'delete') assert.ok(err instanceof NotFoundError || err instanceof IntegrityError, `${where}: ${String(err)}`);
          else assert.ok(err instanceof IntegrityError, `${where}: restore fails with IntegrityError, got ${String(err)}`);
        } else assert.equal(err, undefined, `${where}: restore needs no damaged blob and must succeed: ${String(err)}`);
        // Nothing unverified reaches the disk: every restored file is a prefix of the original.
        const restoredRoot = path.join(target, p.src);
        const restored = await readdir(restoredRoot, { recursive: true, withFileTypes: true }).catch(() => []);
        for (const e of restored) {
          if (!e.isFile()) continue;
          const rel = path.relative(restoredRoot, path.join(e.parentPath, e.name));
          const original = contents.get(rel);
          assert.ok(original, `${where}: restored an unknown file ${rel}`);
          const got = await readFile(path.join(restoredRoot, rel));
          assert.ok(got.length <= original.length && got.equals(original.subarray(0, got.length)), `${where}: ${rel} is not a prefix of the original: ${describeMismatch(got, original)}`);
          if (!needsDamaged) assert.equal(got.length, original.length, `${where}: ${rel} is complete`);
        }
        if (!needsDamaged) assert.equal(restored.filter((e) => e.isFile()).length, contents.size, `${where}: every file restored`);
        tally.restores++;
      } finally {
        await removeTree(target);
      }
    }
  }

  async function campaign(version: 1 | 2): Promise<void> {
    const p = await makePristine(version);
    const listing = await filesOf(p.dir);
    const locks = new Map<string, Buffer>();
    for (const f of listing) if (f.startsWith('locks/')) locks.set(f, await readFile(path.join(p.dir, f)));
    for (const { kind, file } of p.targets) {
      const full = path.join(p.dir, file);
      const original = await readFile(full);
      for (const damage of damages(random)) {
        const damaged = damage.apply(original);
        await chmod(full, 0o600);
        if (damaged === null) await rm(full);
        else await writeFile(full, damaged);
        const label = `v${version} ${kind} ${file} (${damage.name})`;
        try {
          if (damaged === null && (kind === 'snapshot' || kind === 'lock')) {
            // The same as forget or unlock did it: the rest must stay sound.
            const repo = await Repository.open(new LocalBackend(p.dir), { password: PASSWORD });
            const report = await checkRepository(repo, { readData: true });
            assert.ok(report.ok, `${label}: ${JSON.stringify(report.errors.slice(0, 3))}`);
            tally.harmless++;
            continue;
          }
          if (kind === 'lock' && damaged !== null && damaged.length === 0) {
            // An empty lock file is what an interrupted upload leaves on a backend without atomic
            // uploads; restic ≥ 0.15.1 ignores it, and so does Stowage (not damage to report).
            const repo = await Repository.open(new LocalBackend(p.dir), { password: PASSWORD });
            assert.deepEqual((await listLocks(repo)).filter((l) => `locks/${l.id}` === file), [], `${label}: an empty lock is ignored`);
            tally.harmless++;
            continue;
          }
          tally.injected++;
          const counts = (tally.byKind[kind] ??= [0, 0]);
          counts[1]++;
          await detect(p, kind, file, damaged === null).catch((e: unknown) => {
            throw Object.assign(e as Error, { message: `${label}: not detected: ${(e as Error).message}` });
          });
          tally.detected++;
          counts[0]++;
          if (kind === 'data pack' || kind === 'tree pack') await restoreThroughDamage(p, file, damage, original.length);
        } finally {
          await writeFile(full, original);
          await chmod(full, 0o400);
          // unlock --remove-all (lock cases) takes every lock with it: put the pristine ones back.
          for (const [f, bytes] of locks) {
            if (!(await readFile(path.join(p.dir, f)).then(() => true, () => false))) await writeFile(path.join(p.dir, f), bytes);
          }
        }
      }
    }
    assert.deepEqual(await filesOf(p.dir), listing, 'the repository is back to its pristine files');
    const report = await checkRepository(await Repository.open(new LocalBackend(p.dir), { password: PASSWORD }), { readData: true });
    assert.ok(report.ok, `the pristine repository is intact after the campaign: ${JSON.stringify(report.errors.slice(0, 3))}`);
  }

  it('in a v1 repository', { timeout: 600_000 }, () => campaign(1));
  it('in a v2 repository', { timeout: 600_000 }, () => campaign(2));

  it('through the CLI: a damaged lock is named by unlock and cleared by unlock --remove-all', async () => {
    const dir = path.join(work, 'cli-lock');
    const env = { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: PASSWORD };
    const repo = await Repository.init(new LocalBackend(dir), { password: PASSWORD, kdf: FAST_KDF });
    const id = await repo.saveUnpacked('locks', encodeLock({ time: '2024-01-02T03:04:05Z', exclusive: true, hostname: 'elsewhere', username: 'u', pid: 1 }));
    const file = path.join(dir, 'locks', id);
    const bytes = await readFile(file);
    bytes[bytes.length - 5]! ^= 0x10;
    await chmod(file, 0o600);
    await writeFile(file, bytes);
    const listed = await runCli(['unlock'], { env });
    assert.equal(listed.code, 1, listed.stderr);
    assert.match(listed.stderr, new RegExp(`locks/${id}`), 'the damaged lock is named');
    const cleared = await runCli(['unlock', '--remove-all'], { env });
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.deepEqual(await listLocks(repo), []);
  });
});
