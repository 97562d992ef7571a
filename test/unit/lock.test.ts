// Locks as restic writes and honours them: the JSON, shared/exclusive conflicts, waiting with
// retryLock, refresh, release, the stale rules, and unlock.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import os from 'node:os';
import { AbortedError, BackendError, IntegrityError } from '../../src/errors.ts';
import { LockedError } from '../../src/repository/lock.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository } from '../../src/repository/repository.ts';
import { type GoTime, compareGoTime, goTimeFromNs, goTimeToDate, parseGoTime } from '../../src/repository/gotime.ts';
import {
  Lock, STALE_AFTER_MS, decodeLock, encodeLock, isStale, listLocks, unlock, withLock, type LockInfo,
} from '../../src/repository/lock.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const FAST = { settleTime: 0 };
const HOST = os.hostname();
const LOCK_ID = 'ab'.repeat(32);

let deadPid = 0;
before(async () => {
  // A PID that existed a moment ago and is gone now.
  const child = spawn(process.execPath, ['-e', '0']);
  deadPid = child.pid!;
  await new Promise((r) => child.on('exit', r));
});

async function newRepo(version: 1 | 2 = 2): Promise<Repository> {
  return Repository.init(new MemoryBackend(), { password: 'pw', kdf: KDF, version });
}

async function lockIds(repo: Repository): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of repo.listIds('locks')) ids.push(id);
  return ids.sort();
}

function timeAgo(ms: number): GoTime {
  return goTimeFromNs(BigInt(Date.now() - ms) * 1_000_000n, 0);
}

function info(fields: Partial<LockInfo>): LockInfo {
  return { id: LOCK_ID, time: timeAgo(0), exclusive: false, hostname: HOST, username: 'u', pid: process.pid, ...fields };
}

/** Stores a lock file with the given content, as another process would. */
async function plantLock(repo: Repository, fields: Partial<LockInfo>): Promise<string> {
  const { id: _id, ...rest } = info(fields);
  return repo.saveUnpacked('locks', encodeLock(rest));
}

test('encodeLock writes restic\'s JSON; uid and gid only when not 0', () => {
  const base = { time: '2015-06-27T12:18:51.759239612+02:00', exclusive: false, hostname: 'kasimir', username: 'fd0', pid: 13607 };
  assert.equal(
    Buffer.from(encodeLock({ ...base, uid: 1000, gid: 100 })).toString(),
    '{"time":"2015-06-27T12:18:51.759239612+02:00","exclusive":false,"hostname":"kasimir","username":"fd0","pid":13607,"uid":1000,"gid":100}',
  );
  assert.equal(
    Buffer.from(encodeLock({ ...base, exclusive: true, uid: 0, gid: 0 })).toString(),
    '{"time":"2015-06-27T12:18:51.759239612+02:00","exclusive":true,"hostname":"kasimir","username":"fd0","pid":13607}',
  );
  assert.equal(
    Buffer.from(encodeLock({ ...base, hostname: 'a"b<c>', uid: 7 })).toString(),
    '{"time":"2015-06-27T12:18:51.759239612+02:00","exclusive":false,"hostname":"a\\"b<c>","username":"fd0","pid":13607,"uid":7}',
  );
});

test('decodeLock reads restic locks and refuses broken ones with an IntegrityError naming the file', () => {
  const json = '{"time":"2015-06-27T12:18:51.759239612+02:00","exclusive":true,"hostname":"kasimir","username":"fd0","pid":13607,"uid":1000,"gid":100}';
  assert.deepEqual(decodeLock(Buffer.from(json), LOCK_ID), {
    id: LOCK_ID, time: parseGoTime('2015-06-27T12:18:51.759239612+02:00'), exclusive: true, hostname: 'kasimir',
    username: 'fd0', pid: 13607, uid: 1000, gid: 100,
  });
  const minimal = decodeLock(Buffer.from('{"time":"2024-01-01T00:00:00Z","hostname":"h","username":"u","pid":1}'), LOCK_ID);
  assert.equal(minimal.exclusive, false);
  assert.equal(minimal.uid, undefined);
  assert.equal(minimal.gid, undefined);
  for (const bad of ['', '{', 'null', '[]', '{"exclusive":true}', '{"time":5}', '{"time":"yesterday"}', '{"time":"2024-13-01T00:00:00Z"}']) {
    assert.throws(() => decodeLock(Buffer.from(bad), LOCK_ID), (e: unknown) => {
      assert.ok(e instanceof IntegrityError, `${bad}: ${String(e)}`);
      assert.ok(e.message.includes(`locks/${LOCK_ID}`), e.message);
      return true;
    });
  }
});

test('lock files round-trip through the repository (v1 plain, v2 compressed)', async () => {
  for (const version of [1, 2] as const) {
    const repo = await newRepo(version);
    const lock = await Lock.acquire(repo, { exclusive: true, ...FAST });
    const [l] = await listLocks(repo);
    assert.equal(l!.id, lock.id);
    assert.equal(l!.exclusive, true);
    assert.equal(l!.hostname, HOST);
    assert.equal(l!.pid, process.pid);
    assert.ok(Math.abs(goTimeToDate(l!.time).getTime() - Date.now()) < 60_000);
    // v1 seals the JSON itself, v2 the encoding byte 2 and zstd.
    const sealedPlain = repo.open(await repo.backend.load({ type: 'locks', name: lock.id }), {});
    assert.equal(sealedPlain[0], version === 1 ? 0x7b : 0x02);
    const json = Buffer.from(await repo.loadUnpacked('locks', lock.id)).toString();
    assert.match(json, /^\{"time":"[^"]+","exclusive":true,"hostname":/);
    await lock.release();
  }
});

test('two shared locks coexist', async () => {
  const repo = await newRepo();
  const a = await Lock.acquire(repo, { exclusive: false, ...FAST });
  const b = await Lock.acquire(repo, { exclusive: false, ...FAST });
  assert.deepEqual(await lockIds(repo), [a.id, b.id].sort());
  await a.release();
  await b.release();
  assert.deepEqual(await lockIds(repo), []);
});

test('exclusive and shared conflict both ways: LockedError names the holder, no lock is left behind', async () => {
  for (const [held, wanted] of [[false, true], [true, false], [true, true]]) {
    const repo = await newRepo();
    const holder = await Lock.acquire(repo, { exclusive: held, ...FAST });
    await assert.rejects(Lock.acquire(repo, { exclusive: wanted, ...FAST }), (e: unknown) => {
      assert.ok(e instanceof LockedError, String(e));
      assert.equal(e.code, 'LOCKED');
      assert.equal(e.holders.length, 1);
      assert.equal(e.holders[0]!.id, holder.id);
      assert.equal(e.holders[0]!.exclusive, held);
      assert.match(e.message, new RegExp(`PID ${process.pid} on ${HOST.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      assert.ok(e.message.includes(holder.id.slice(0, 10)), e.message);
      assert.equal(/exclusively/.test(e.message), held);
      return true;
    });
    assert.deepEqual(await lockIds(repo), [holder.id], 'the failed attempt removed its own lock');
    await holder.release();
  }
});

test('a stale lock still blocks acquiring (only unlock removes it)', async () => {
  const repo = await newRepo();
  await plantLock(repo, { exclusive: true, time: timeAgo(STALE_AFTER_MS + 60_000), hostname: 'elsewhere' });
  await assert.rejects(Lock.acquire(repo, { exclusive: false, ...FAST }), LockedError);
});

test('retryLock waits for the other lock to go, then succeeds', async () => {
  const repo = await newRepo();
  const holder = await Lock.acquire(repo, { exclusive: true, ...FAST });
  const t0 = Date.now();
  setTimeout(() => void holder.release(), 300);
  const lock = await Lock.acquire(repo, { exclusive: false, retryLock: 10_000, ...FAST });
  const waited = Date.now() - t0;
  assert.ok(waited >= 300 && waited < 5_000, `waited ${waited} ms`);
  assert.deepEqual(await lockIds(repo), [lock.id]);
  await lock.release();
});

test('retryLock gives up with LockedError at its deadline', async () => {
  const repo = await newRepo();
  const holder = await Lock.acquire(repo, { exclusive: false, ...FAST });
  const t0 = Date.now();
  await assert.rejects(Lock.acquire(repo, { exclusive: true, retryLock: 400, ...FAST }), LockedError);
  const waited = Date.now() - t0;
  assert.ok(waited >= 400 && waited < 3_000, `waited ${waited} ms`);
  assert.deepEqual(await lockIds(repo), [holder.id]);
  await holder.release();
});

test('an aborted acquire rejects with AbortedError and leaves no lock', async () => {
  const repo = await newRepo();
  const holder = await Lock.acquire(repo, { exclusive: true, ...FAST });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(Lock.acquire(repo, { exclusive: false, retryLock: 60_000, signal: ac.signal, ...FAST }), AbortedError);
  assert.deepEqual(await lockIds(repo), [holder.id]);
  // Aborted while settling, before the other locks are read.
  const ac2 = new AbortController();
  setTimeout(() => ac2.abort(), 50);
  await assert.rejects(Lock.acquire(repo, { exclusive: false, settleTime: 5_000, signal: ac2.signal }), AbortedError);
  assert.deepEqual(await lockIds(repo), [holder.id]);
  await holder.release();
});

test('an unreadable lock makes acquire fail without leaving its own lock', async () => {
  const repo = await newRepo();
  const bad = await repo.saveUnpacked('locks', Buffer.from('{"exclusive":false}'));
  await assert.rejects(Lock.acquire(repo, { exclusive: false, ...FAST }), (e: unknown) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.ok(e.message.includes(`locks/${bad}`));
    return true;
  });
  assert.deepEqual(await lockIds(repo), [bad]);
});

test('refresh writes a new lock file with a fresh time and removes the old one', async () => {
  const repo = await newRepo();
  const lock = await Lock.acquire(repo, { exclusive: true, ...FAST });
  const first = lock.id;
  const [before] = await listLocks(repo);
  await new Promise((r) => setTimeout(r, 20));
  await lock.refresh();
  assert.notEqual(lock.id, first);
  const after = await listLocks(repo);
  assert.deepEqual(after.map((l) => l.id), [lock.id]);
  assert.equal(after[0]!.exclusive, true);
  assert.ok(compareGoTime(after[0]!.time, before!.time) > 0);
  await lock.release();
  assert.deepEqual(await lockIds(repo), []);
  // Refresh after release does nothing.
  await lock.refresh();
  assert.deepEqual(await lockIds(repo), []);
});

test('the refresh timer keeps exactly one current lock file; release stops it', async () => {
  const repo = await newRepo();
  const lock = await Lock.acquire(repo, { exclusive: false, refreshInterval: 30, ...FAST });
  const first = lock.id;
  await new Promise((r) => setTimeout(r, 200));
  assert.notEqual(lock.id, first);
  const ids = await lockIds(repo);
  assert.equal(ids.length, 1);
  await lock.release();
  await lock.release(); // twice is fine
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await lockIds(repo), []);
});

test('withLock releases on success and on error', async () => {
  const repo = await newRepo();
  assert.equal(await withLock(repo, { exclusive: true, ...FAST }, async (l) => {
    assert.deepEqual(await lockIds(repo), [l.id]);
    return 42;
  }), 42);
  assert.deepEqual(await lockIds(repo), []);
  await assert.rejects(withLock(repo, { exclusive: false, ...FAST }, async () => {
    throw new Error('boom');
  }), /boom/);
  assert.deepEqual(await lockIds(repo), []);
});

test('withLock: when the work fails and removing the lock fails too, the work\'s error is thrown, the other kept and logged', async () => {
  const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
  const logger = { debug() {}, info() {}, warn: (m: string, f?: Record<string, unknown>) => void warnings.push([m, f]), error() {} };
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: KDF, logger });
  const work = new BackendError('save data/ab/abcd: connect ECONNREFUSED (gave up after 12 attempts in 171.3 s)', { transient: true });
  const lockFailure = new BackendError('remove locks/ef01: connect ECONNREFUSED', { transient: true });
  let lockId = '';
  await assert.rejects(withLock(repo, { exclusive: false, ...FAST }, async (l) => {
    lockId = l.id;
    // The outage that failed the work also breaks the lock's removal.
    backend.remove = async () => {
      throw lockFailure;
    };
    throw work;
  }), (err: unknown) => {
    assert.equal(err, work);
    assert.deepEqual((err as BackendError).suppressed, [lockFailure]);
    return true;
  });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]![0], /could not remove the lock/);
  assert.equal(warnings[0]![1]!.lock, lockId);
  // Without a failure of its own, a failed release is what the caller sees.
  delete (backend as { remove?: unknown }).remove;
  await assert.rejects(withLock(repo, { exclusive: false, ...FAST }, async () => {
    backend.remove = async () => {
      throw lockFailure;
    };
  }), (err: unknown) => err === lockFailure);
});

test('isStale: older than 30 minutes; this host with a dead PID; another host never by PID', () => {
  const now = Date.now();
  const at = (ms: number) => goTimeFromNs(BigInt(now - ms) * 1_000_000n, 120);
  // Age alone, whatever the host and PID.
  assert.equal(isStale(info({ time: at(STALE_AFTER_MS + 1000), hostname: 'other' }), now, HOST), true);
  assert.equal(isStale(info({ time: at(STALE_AFTER_MS + 1000) }), now, HOST), true);
  assert.equal(isStale(info({ time: at(STALE_AFTER_MS - 1000), hostname: 'other', pid: deadPid }), now, HOST), false);
  // This host: alive (our own PID) or dead.
  assert.equal(isStale(info({ time: at(1000) }), now, HOST), false);
  assert.equal(isStale(info({ time: at(1000), pid: deadPid }), now, HOST), true);
  // PIDs no process can have.
  for (const pid of [0, -1, 1.5, 2 ** 31]) assert.equal(isStale(info({ time: at(1000), pid }), now, HOST), true, `pid ${pid}`);
  assert.equal(isStale(info({ time: at(1000), pid: 0, hostname: 'other' }), now, HOST), false);
  // The host comparison uses the given hostname.
  assert.equal(isStale(info({ time: at(1000), pid: deadPid, hostname: 'box' }), now, 'box'), true);
});

test('unlock removes only stale locks; unlock({all}) removes every lock', async () => {
  const repo = await newRepo();
  const old = await plantLock(repo, { time: timeAgo(STALE_AFTER_MS + 60_000), hostname: 'elsewhere' });
  const dead = await plantLock(repo, { pid: deadPid });
  const foreign = await plantLock(repo, { hostname: 'elsewhere', pid: deadPid });
  const live = await Lock.acquire(repo, { exclusive: false, ...FAST });
  assert.deepEqual((await unlock(repo)).sort(), [old, dead].sort());
  assert.deepEqual(await lockIds(repo), [foreign, live.id].sort());
  assert.deepEqual((await unlock(repo, { all: true })).sort(), [foreign, live.id].sort());
  assert.deepEqual(await lockIds(repo), []);
  await live.release(); // its file is gone already; release does not fail
});
