import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { ConnectionPool, LimitedBackend, TokenBucket } from '../../src/backend/wrappers/limits.ts';
import { sleep } from '../../src/backend/wrappers/clock.ts';
import type { Clock } from '../../src/backend/wrappers/clock.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from '../../src/backend/backend.ts';
import { AbortedError, InvalidInputError, throwIfAborted } from '../../src/errors.ts';
import { backendConformance } from '../backend/conformance.ts';

const newId = () => randomBytes(32).toString('hex');

/** A MemoryBackend that records how many calls (list pages included) are in flight at once. */
class GaugedBackend implements Backend {
  readonly location = 'gauged:test';
  readonly connections: number;
  readonly store = new MemoryBackend();
  inFlight = 0;
  maxInFlight = 0;
  /** Each call takes this long (real time). */
  delayMs = 5;

  constructor(connections = 4) {
    this.connections = connections;
  }

  async #gauge<T>(call: () => Promise<T>): Promise<T> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await sleep(this.delayMs);
      return await call();
    } finally {
      this.inFlight--;
    }
  }

  create(o?: CallOptions) {
    return this.#gauge(() => this.store.create(o));
  }
  save(h: FileHandle, d: Uint8Array, o?: CallOptions) {
    return this.#gauge(() => this.store.save(h, d, o));
  }
  load(h: FileHandle, o?: LoadOptions) {
    return this.#gauge(() => this.store.load(h, o));
  }
  stat(h: FileHandle, o?: CallOptions) {
    return this.#gauge(() => this.store.stat(h, o));
  }
  remove(h: FileHandle, o?: CallOptions) {
    return this.#gauge(() => this.store.remove(h, o));
  }
  async *list(type: FileType, o?: CallOptions): AsyncGenerator<FileInfo> {
    // One "page request" per entry: each next() is a call in flight.
    const all: FileInfo[] = [];
    for await (const f of this.store.list(type, o)) all.push(f);
    for (const f of all) yield await this.#gauge(async () => f);
  }
  async close() {}
}

interface FakeClock extends Clock {
  t: number;
  sleeps: number[];
}

function fakeClock(): FakeClock {
  const clock: FakeClock = {
    t: 0,
    sleeps: [],
    now: () => clock.t,
    sleep: async (ms: number, signal?: AbortSignal) => {
      throwIfAborted(signal);
      clock.sleeps.push(Math.round(ms));
      clock.t += ms;
    },
  };
  return clock;
}

describe('LimitedBackend: connections', () => {
  it('keeps at most `connections` calls in flight and completes them all', async () => {
    const inner = new GaugedBackend(8);
    const b = new LimitedBackend(inner, { connections: 3 });
    assert.equal(b.connections, 3);
    assert.equal(b.location, 'gauged:test');
    const handles = Array.from({ length: 20 }, () => ({ type: 'data' as const, name: newId() }));
    await Promise.all(handles.map((h, i) => b.save(h, new Uint8Array([i]))));
    assert.equal(inner.maxInFlight, 3);
    const loaded = await Promise.all(handles.map((h) => b.load(h)));
    assert.deepEqual(loaded.map((d) => d[0]), handles.map((_, i) => i));
    assert.equal(inner.maxInFlight, 3);
    assert.deepEqual(b.usage, { inUse: 0, waiting: 0 });
  });

  it("defaults to the wrapped backend's connection count and rejects bad counts", () => {
    assert.equal(new LimitedBackend(new GaugedBackend(6)).connections, 6);
    assert.throws(() => new LimitedBackend(new GaugedBackend(), { connections: 0 }), InvalidInputError);
    assert.throws(() => new LimitedBackend(new GaugedBackend(), { connections: 2.5 }), InvalidInputError);
  });

  it('frees the connection when a call fails', async () => {
    const b = new LimitedBackend(new GaugedBackend(), { connections: 1 });
    for (let i = 0; i < 3; i++) await assert.rejects(b.stat({ type: 'keys', name: newId() }));
    await b.save({ type: 'keys', name: newId() }, new Uint8Array(1));
    assert.deepEqual(b.usage, { inUse: 0, waiting: 0 });
  });

  it('counts a listing as one call, and lends its connection to calls made inside the loop (no deadlock)', async () => {
    const inner = new GaugedBackend();
    const ids = Array.from({ length: 5 }, newId).sort();
    for (const name of ids) await inner.store.save({ type: 'keys', name }, new Uint8Array(name.length));
    const b = new LimitedBackend(inner, { connections: 1 });
    const loaded: string[] = [];
    for await (const f of b.list('keys')) {
      // With one connection, this load can only run because the paused listing lends it.
      const data = await b.load({ type: 'keys', name: f.name });
      assert.equal(data.length, 64);
      loaded.push(f.name);
    }
    assert.deepEqual(loaded.sort(), ids);
    assert.equal(inner.maxInFlight, 1);
    assert.deepEqual(b.usage, { inUse: 0, waiting: 0 });
  });

  it('holds the connection while a listing is paused when nobody else needs it', async () => {
    const inner = new GaugedBackend();
    for (let i = 0; i < 3; i++) await inner.store.save({ type: 'index', name: newId() }, new Uint8Array(1));
    const b = new LimitedBackend(inner, { connections: 2 });
    const it = b.list('index')[Symbol.asyncIterator]();
    await it.next();
    assert.deepEqual(b.usage, { inUse: 1, waiting: 0 });
    await it.return!(undefined);
    assert.deepEqual(b.usage, { inUse: 0, waiting: 0 });
  });

  it('gives a listing that lent its connection the next free one first', async () => {
    const pool = new ConnectionPool(1);
    const lease = { state: 'active' as 'active' | 'idle' | 'none' };
    await pool.acquire();
    pool.pause(lease);
    await pool.acquire(); // borrows the paused listing's connection
    assert.equal(lease.state, 'none');
    const order: string[] = [];
    const other = pool.acquire().then(() => order.push('other'));
    const resumed = pool.resume(lease).then(() => order.push('listing'));
    pool.release();
    await resumed;
    assert.deepEqual(order, ['listing']);
    pool.end(lease);
    await other;
    assert.deepEqual(order, ['listing', 'other']);
    pool.release();
    assert.equal(pool.inUse, 0);
  });

  it('stops waiting for a connection when aborted, without losing the connection', async () => {
    const inner = new GaugedBackend();
    inner.delayMs = 100;
    const b = new LimitedBackend(inner, { connections: 1 });
    const busy = b.save({ type: 'keys', name: newId() }, new Uint8Array(1));
    const controller = new AbortController();
    const waiting = b.stat({ type: 'keys', name: newId() }, { signal: controller.signal });
    await sleep(5);
    assert.deepEqual(b.usage, { inUse: 1, waiting: 1 });
    controller.abort();
    await assert.rejects(waiting, AbortedError);
    assert.deepEqual(b.usage, { inUse: 1, waiting: 0 });
    await busy;
    assert.deepEqual(b.usage, { inUse: 0, waiting: 0 });
    const done = new AbortController();
    done.abort();
    await assert.rejects(b.load({ type: 'config', name: '' }, { signal: done.signal }), AbortedError);
  });
});

// restic's sema backend lets lock files through its connection limit, so that refreshing a lock
// never waits behind queued pack uploads (a lock not refreshed in time goes stale, and another
// process may then remove it). This decides the question for LimitedBackend the same way.
describe('LimitedBackend: lock files', () => {
  /** A MemoryBackend whose data saves hang until released: a slow pack upload. */
  class SlowPacks extends MemoryBackend {
    release: () => void = () => {};
    readonly released = new Promise<void>((resolve) => (this.release = resolve));
    override async save(h: FileHandle, data: Uint8Array, options?: CallOptions): Promise<void> {
      if (h.type === 'data') await this.released;
      return super.save(h, data, options);
    }
  }

  it('saves, loads, stats and removes a lock without waiting behind a slow pack save (connections=1)', async () => {
    const inner = new SlowPacks();
    const b = new LimitedBackend(inner, { connections: 1 });
    const pack = b.save({ type: 'data', name: newId() }, new Uint8Array(100));
    const nextPack = b.save({ type: 'data', name: newId() }, new Uint8Array(100));
    await sleep(5);
    assert.deepEqual(b.usage, { inUse: 1, waiting: 1 });

    const lock = { type: 'locks' as const, name: newId() };
    const timeout = (what: string) => sleep(2000).then(() => assert.fail(`${what} waited for the pack upload`));
    await Promise.race([b.save(lock, new Uint8Array([1, 2, 3])), timeout('lock save')]);
    await Promise.race([b.load(lock), timeout('lock load')]);
    await Promise.race([b.stat(lock), timeout('lock stat')]);
    await Promise.race([b.remove(lock), timeout('lock remove')]);
    // Other files still queue: the limit holds for everything but locks.
    let keySaved = false;
    const key = b.save({ type: 'keys', name: newId() }, new Uint8Array(1)).then(() => (keySaved = true));
    await sleep(20);
    assert.equal(keySaved, false);
    assert.deepEqual(b.usage, { inUse: 1, waiting: 2 });

    inner.release();
    await Promise.all([pack, nextPack, key]);
    assert.deepEqual(b.usage, { inUse: 0, waiting: 0 });
  });

  it('still honours an aborted signal on a lock call', async () => {
    const b = new LimitedBackend(new MemoryBackend(), { connections: 1 });
    await assert.rejects(b.save({ type: 'locks', name: newId() }, new Uint8Array(1), { signal: AbortSignal.abort() }), AbortedError);
  });
});

describe('LimitedBackend: bandwidth', () => {
  it('spreads uploads so the average stays at the limit', async () => {
    const clock = fakeClock();
    const b = new LimitedBackend(new MemoryBackend(), { uploadBytesPerSecond: 1000, clock });
    await b.save({ type: 'data', name: newId() }, new Uint8Array(1000)); // the burst: no wait
    await b.save({ type: 'data', name: newId() }, new Uint8Array(3000));
    await b.save({ type: 'data', name: newId() }, new Uint8Array(500));
    assert.deepEqual(clock.sleeps, [3000, 500]);
    // Loads are not limited by the upload bucket.
    await b.load({ type: 'config', name: '' }).catch(() => undefined);
    assert.equal(clock.sleeps.length, 2);
  });

  it('refills over time, up to the burst', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(100, 200, clock);
    await bucket.take(200);
    clock.t += 10_000; // a long quiet spell refills only the burst
    await bucket.take(300);
    assert.deepEqual(clock.sleeps, [1000]);
  });

  it('limits downloads before the request when the length is known, after it otherwise', async () => {
    const clock = fakeClock();
    const mem = new MemoryBackend();
    const h: FileHandle = { type: 'data', name: newId() };
    await mem.save(h, new Uint8Array(4000));
    const b = new LimitedBackend(mem, { downloadBytesPerSecond: 2000, burstBytes: 0, clock });
    assert.equal((await b.load(h, { length: 1000 })).length, 1000);
    assert.equal((await b.load(h)).length, 4000);
    assert.deepEqual(clock.sleeps, [500, 2000]);
    await b.save({ type: 'keys', name: newId() }, new Uint8Array(10_000));
    assert.equal(clock.sleeps.length, 2);
  });

  it('gives tokens back when aborted while throttled', async () => {
    const bucket = new TokenBucket(1000, 0);
    const controller = new AbortController();
    const taking = bucket.take(60_000, controller.signal);
    controller.abort();
    await assert.rejects(taking, AbortedError);
    const started = performance.now();
    await bucket.take(10);
    assert.ok(performance.now() - started < 1000);
  });

  it('rejects limits that are not positive numbers', () => {
    for (const bad of [0, -5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new LimitedBackend(new MemoryBackend(), { uploadBytesPerSecond: bad }), InvalidInputError);
      assert.throws(() => new LimitedBackend(new MemoryBackend(), { downloadBytesPerSecond: bad }), InvalidInputError);
    }
    assert.throws(() => new LimitedBackend(new MemoryBackend(), { uploadBytesPerSecond: 10, burstBytes: -1 }), InvalidInputError);
  });
});

// One connection and a bandwidth cap still keep the Backend contract (and never deadlock).
backendConformance('LimitedBackend(MemoryBackend), one connection, 2 GiB/s', async () => ({
  backend: new LimitedBackend(new MemoryBackend(), { connections: 1, uploadBytesPerSecond: 2 ** 31, downloadBytesPerSecond: 2 ** 31 }),
  cleanup: async () => {},
}));
