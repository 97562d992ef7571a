import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { RetryBackend, isRetryableError } from '../../src/backend/wrappers/retry.ts';
import { wrapBackend } from '../../src/backend/wrappers/stack.ts';
import type { RetryInfo, RetryOptions } from '../../src/backend/wrappers/retry.ts';
import { LimitedBackend } from '../../src/backend/wrappers/limits.ts';
import type { Clock } from '../../src/backend/wrappers/clock.ts';
import { ObservedBackend, redactSecrets, summarizeError } from '../../src/backend/wrappers/observe.ts';
import type { BackendEvent } from '../../src/backend/wrappers/observe.ts';
import { FaultyBackend } from '../../src/backend/wrappers/faulty.ts';
import { openBackend } from '../../src/backend/location.ts';
import { backendConformance } from '../backend/conformance.ts';
import { loadPieces, retentionOf, type Backend, type CallOptions, type FileHandle, type FileInfo, type FileType, type LoadOptions } from '../../src/backend/backend.ts';
import type { Logger } from '../../src/logger.ts';
import {
  AbortedError,
  BackendError,
  IntegrityError,
  InvalidInputError,
  NotFoundError,
  addSuppressed,
  throwIfAborted,
} from '../../src/errors.ts';

type Op = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove';

/**
 * What the next call of an operation does: throw this error, 'short' (load returns half the
 * bytes), 'effectThenFail' (do the call, then throw a transient error), or 'ok'.
 */
type Outcome = unknown;

/** A MemoryBackend whose calls follow a script, and which counts them. */
class ScriptedBackend implements Backend {
  readonly location = 'scripted:test';
  readonly connections = 3;
  readonly store = new MemoryBackend();
  readonly calls: Record<Op, number> = { create: 0, save: 0, load: 0, stat: 0, list: 0, remove: 0 };
  readonly plan: Record<Op, Outcome[]> = { create: [], save: [], load: [], stat: [], list: [], remove: [] };
  /** list: how many entries a failing listing yields before it throws (or a function of the call number). */
  listFailAfter: number | ((call: number) => number) = 2;
  /** Time each call takes on the fake clock. */
  callMs = 0;
  listReturned = 0;
  readonly clock: FakeClock;

  constructor(clock: FakeClock) {
    this.clock = clock;
  }

  #next(op: Op): Outcome {
    this.calls[op]++;
    this.clock.t += this.callMs;
    return this.plan[op].shift() ?? 'ok';
  }

  async create(o?: CallOptions): Promise<void> {
    const out = this.#next('create');
    if (out !== 'ok') throw out;
    await this.store.create(o);
  }
  async save(h: FileHandle, data: Uint8Array, o?: CallOptions): Promise<void> {
    const out = this.#next('save');
    if (out === 'effectThenFail') {
      await this.store.save(h, data, o);
      throw new BackendError('lost answer', { transient: true });
    }
    if (out !== 'ok') throw out;
    await this.store.save(h, data, o);
  }
  async load(h: FileHandle, o?: LoadOptions): Promise<Uint8Array> {
    const out = this.#next('load');
    if (out === 'short') {
      const data = await this.store.load(h, o);
      return data.slice(0, data.length >> 1);
    }
    if (out !== 'ok') throw out;
    return this.store.load(h, o);
  }
  async stat(h: FileHandle, o?: CallOptions): Promise<FileInfo> {
    const out = this.#next('stat');
    if (out !== 'ok') throw out;
    return this.store.stat(h, o);
  }
  async remove(h: FileHandle, o?: CallOptions): Promise<void> {
    const out = this.#next('remove');
    if (out === 'effectThenFail') {
      await this.store.remove(h, o);
      throw new BackendError('lost answer', { transient: true });
    }
    if (out !== 'ok') throw out;
    await this.store.remove(h, o);
  }
  async *list(type: FileType, o?: CallOptions): AsyncGenerator<FileInfo> {
    const out = this.#next('list');
    const failAfter = typeof this.listFailAfter === 'number' ? this.listFailAfter : this.listFailAfter(this.calls.list);
    let n = 0;
    try {
      for await (const info of this.store.list(type, o)) {
        if (out !== 'ok' && n++ === failAfter) throw out;
        yield info;
      }
      if (out !== 'ok') throw out;
    } finally {
      this.listReturned++;
    }
  }
  async close(): Promise<void> {}
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
      clock.sleeps.push(ms);
      clock.t += ms;
    },
  };
  return clock;
}

function setup(options: RetryOptions = {}) {
  const clock = fakeClock();
  const inner = new ScriptedBackend(clock);
  const retries: RetryInfo[] = [];
  const backend = new RetryBackend(inner, { clock, random: () => 0.5, onRetry: (i) => retries.push(i), ...options });
  return { clock, inner, backend, retries };
}

const transient = (status = 503) => new BackendError(`HTTP ${status}`, { transient: true, status });
const permanent = (status = 403) => new BackendError(`HTTP ${status}`, { transient: false, status });
const newId = () => randomBytes(32).toString('hex');
const reset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });

async function collect(it: AsyncIterable<FileInfo>): Promise<string[]> {
  const out: string[] = [];
  for await (const f of it) out.push(f.name);
  return out;
}

describe('RetryBackend: what is retried', () => {
  it('retries transient errors and network resets until the call succeeds', async () => {
    const { inner, backend, retries, clock } = setup();
    const h: FileHandle = { type: 'keys', name: newId() };
    const data = new Uint8Array([1, 2, 3]);
    inner.plan.save.push(transient(503), reset(), new TypeError('fetch failed', { cause: { code: 'UND_ERR_SOCKET' } }), transient(429));
    await backend.save(h, data);
    assert.equal(inner.calls.save, 5);
    assert.deepEqual(await inner.store.load(h), data);
    assert.deepEqual(retries.map((r) => [r.op, r.file, r.attempt]), [
      ['save', `keys/${h.name}`, 1],
      ['save', `keys/${h.name}`, 2],
      ['save', `keys/${h.name}`, 3],
      ['save', `keys/${h.name}`, 4],
    ]);
    // Full jitter with random() = 0.5: half of 1 s, 2 s, 4 s, 8 s.
    assert.deepEqual(clock.sleeps, [500, 1000, 2000, 4000]);
    assert.deepEqual(retries.map((r) => r.delayMs), clock.sleeps);
    assert.equal(retries[1]!.elapsedMs, 500);
  });

  it('never retries a missing file, a permanent error, an abort, bad input or a programming error', async () => {
    const h: FileHandle = { type: 'snapshots', name: newId() };
    for (const error of [new NotFoundError('snapshots/x'), permanent(403), permanent(400), new AbortedError(), new InvalidInputError('bad'), new TypeError('x is undefined'), new IntegrityError('bad MAC')]) {
      const { inner, backend, retries } = setup();
      inner.plan.stat.push(error, error);
      await assert.rejects(backend.stat(h), (err: unknown) => err === error);
      assert.equal(inner.calls.stat, 1, String(error));
      assert.deepEqual(retries, []);
    }
  });

  it('classifies errors: isRetryableError', () => {
    const yes = [
      transient(500),
      transient(429),
      new BackendError('timeout', { transient: true }),
      reset(),
      Object.assign(new Error('x'), { code: 'ETIMEDOUT' }),
      Object.assign(new Error('x'), { code: 'EPIPE' }),
      Object.assign(new Error('x'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }),
      new TypeError('fetch failed', { cause: Object.assign(new Error('closed'), { code: 'UND_ERR_SOCKET' }) }),
    ];
    const no = [
      permanent(404),
      new NotFoundError('keys/x'),
      new AbortedError(),
      new IntegrityError('short'),
      Object.assign(new Error('aborted'), { code: 'UND_ERR_ABORTED' }),
      Object.assign(new Error('aborted'), { name: 'AbortError', code: 'ECONNRESET' }),
      Object.assign(new Error('x'), { code: 'ENOENT' }),
      new Error('plain'),
      'a string',
      undefined,
    ];
    for (const e of yes) assert.equal(isRetryableError(e), true, String(e));
    for (const e of no) assert.equal(isRetryableError(e), false, String(e));
  });

  it('retries every kind of call: create, load, stat, remove', async () => {
    const { inner, backend } = setup();
    const h: FileHandle = { type: 'index', name: newId() };
    await inner.store.save(h, new Uint8Array([9, 8, 7]));
    inner.plan.create.push(transient());
    inner.plan.load.push(transient());
    inner.plan.stat.push(reset());
    inner.plan.remove.push(transient(502));
    await backend.create();
    assert.deepEqual(await backend.load(h), new Uint8Array([9, 8, 7]));
    assert.deepEqual(await backend.stat(h), { name: h.name, size: 3 });
    await backend.remove(h);
    assert.deepEqual(inner.calls, { create: 2, save: 0, load: 2, stat: 2, list: 0, remove: 2 });
    await assert.rejects(inner.store.stat(h), NotFoundError);
  });
});

describe('RetryBackend: limits', () => {
  it('gives up after maxAttempts with an error that names the call, the last error as its cause', async () => {
    const { inner, backend, retries } = setup({ maxAttempts: 4 });
    const errors = [transient(500), transient(502), transient(503), transient(504), transient(500)];
    inner.plan.load.push(...errors);
    await assert.rejects(backend.load({ type: 'config', name: '' }), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.equal(err.cause, errors[3]);
      assert.equal(err.message, 'load config: HTTP 504 (gave up after 4 attempts in 3.5 s)');
      assert.equal(err.transient, true);
      assert.equal(err.status, 504);
      return true;
    });
    assert.equal(inner.calls.load, 4);
    assert.equal(retries.length, 3);
  });

  it('a raw network error given up on becomes a BackendError naming the call; a message that names it already is kept', async () => {
    const { inner, backend } = setup({ maxAttempts: 2 });
    const h: FileHandle = { type: 'data', name: 'ab'.repeat(32) };
    const raw = [reset(), reset()];
    inner.plan.save.push(...raw);
    await assert.rejects(backend.save(h, new Uint8Array(1)), (err: unknown) => {
      assert.ok(err instanceof BackendError && err.transient);
      assert.equal(err.cause, raw[1]);
      assert.equal(err.message, `save data/ab/${h.name}: read ECONNRESET (gave up after 2 attempts in 0.5 s)`);
      return true;
    });
    const named = new BackendError(`remove locks/${h.name} (in rest:http://host/): HTTP 503`, { transient: true, status: 503 });
    inner.plan.remove.push(named, named);
    await assert.rejects(backend.remove({ type: 'locks', name: h.name }), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.equal(err.message, `${named.message} (gave up after 2 attempts in 0.5 s)`);
      return true;
    });
  });

  it('caps the backoff bound at maxDelayMs and takes jitter from the whole range', async () => {
    const { inner, backend, clock } = setup({ random: () => 0.999, maxDelayMs: 5000, maxAttempts: 8 });
    inner.plan.stat.push(...Array.from({ length: 7 }, () => transient()));
    await assert.rejects(backend.stat({ type: 'config', name: '' }), NotFoundError);
    assert.deepEqual(clock.sleeps, [999, 1998, 3996, 4995, 4995, 4995, 4995]);

    const zero = setup({ random: () => 0 });
    zero.inner.plan.stat.push(transient(), transient());
    await assert.rejects(zero.backend.stat({ type: 'config', name: '' }), NotFoundError);
    assert.deepEqual(zero.clock.sleeps, [0, 0]);
  });

  it('stops once the next attempt would start after maxElapsedMs', async () => {
    const { inner, backend, clock } = setup({ maxElapsedMs: 30_000, maxAttempts: 100 });
    inner.callMs = 10_000;
    inner.plan.save.push(...Array.from({ length: 50 }, () => transient()));
    await assert.rejects(backend.save({ type: 'locks', name: newId() }, new Uint8Array(1)), BackendError);
    // 10 s call, 0.5 s wait, 10 s, 1 s wait, 10 s = 31.5 s: a fourth attempt would start too late.
    assert.equal(inner.calls.save, 3);
    assert.deepEqual(clock.sleeps, [500, 1000]);
  });

  it('always retries a first failure once, even when it came after maxElapsedMs', async () => {
    const { inner, backend } = setup({ maxElapsedMs: 1000 });
    inner.callMs = 5000;
    inner.plan.save.push(transient(), transient(), transient());
    await assert.rejects(backend.save({ type: 'locks', name: newId() }, new Uint8Array(1)), BackendError);
    assert.equal(inner.calls.save, 2);
  });

  it('maxAttempts 1 turns retrying off; bad options are rejected', async () => {
    const { inner, backend } = setup({ maxAttempts: 1 });
    inner.plan.stat.push(transient());
    await assert.rejects(backend.stat({ type: 'config', name: '' }), BackendError);
    assert.equal(inner.calls.stat, 1);
    const mem = new MemoryBackend();
    assert.throws(() => new RetryBackend(mem, { maxAttempts: 0 }), InvalidInputError);
    assert.throws(() => new RetryBackend(mem, { maxElapsedMs: -1 }), InvalidInputError);
    assert.throws(() => new RetryBackend(mem, { multiplier: 0.5 }), InvalidInputError);
  });
});

describe('RetryBackend: aborts', () => {
  it('stops at once when aborted during a backoff sleep (real clock)', async () => {
    const clock = fakeClock();
    const inner = new ScriptedBackend(clock);
    // A real sleep of about 60 s, interrupted after 30 ms.
    const backend = new RetryBackend(inner, { initialDelayMs: 120_000, random: () => 0.5 });
    inner.plan.stat.push(transient());
    const controller = new AbortController();
    const started = performance.now();
    setTimeout(() => controller.abort(), 30);
    await assert.rejects(backend.stat({ type: 'config', name: '' }, { signal: controller.signal }), AbortedError);
    assert.ok(performance.now() - started < 5000);
    assert.equal(inner.calls.stat, 1);
  });

  it('does nothing with an already aborted signal, and does not retry a call failing because of an abort', async () => {
    const { inner, backend } = setup();
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(backend.save({ type: 'keys', name: newId() }, new Uint8Array(1), { signal: controller.signal }), AbortedError);
    assert.equal(inner.calls.save, 0);
    await assert.rejects(collect(backend.list('keys', { signal: controller.signal })), AbortedError);
    assert.equal(inner.calls.list, 0);

    // A transient error that arrives after the caller aborted is reported as the abort.
    const late = new AbortController();
    inner.plan.stat.push(transient());
    const orig = inner.stat.bind(inner);
    inner.stat = async (h, o) => {
      late.abort();
      return orig(h, o);
    };
    await assert.rejects(backend.stat({ type: 'config', name: '' }, { signal: late.signal }), (err: unknown) => {
      assert.ok(err instanceof AbortedError);
      assert.ok(err.cause instanceof BackendError);
      return true;
    });
    assert.equal(inner.calls.stat, 1);
  });
});

/** Whether `err` or an error in its cause chain has this `code`. */
function chainHasCode(err: unknown, code: string): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === code) return true;
  }
  return false;
}

describe('RetryBackend: an abort keeps the failure it cut short', () => {
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED', syscall: 'connect' });

  it('aborted during a backoff after eight refusals: the last refusal is the cause, the reason is kept', async () => {
    const controller = new AbortController();
    const reason = new DOMException('signal timed out', 'TimeoutError');
    const clock = fakeClock();
    const inner = new ScriptedBackend(clock);
    inner.plan.stat.push(...Array.from({ length: 20 }, refused));
    // The timeout fires during the eighth backoff.
    const sleep = clock.sleep;
    clock.sleep = async (ms, signal) => {
      if (clock.sleeps.length === 7) controller.abort(reason);
      return sleep(ms, signal);
    };
    const backend = new RetryBackend(inner, { clock, random: () => 0.5, maxAttempts: 20 });
    await assert.rejects(backend.stat({ type: 'config', name: '' }, { signal: controller.signal }), (err: unknown) => {
      assert.ok(err instanceof AbortedError, String(err));
      assert.equal(err.reason, reason);
      assert.ok(chainHasCode(err, 'ECONNREFUSED'), 'no ECONNREFUSED in the cause chain');
      assert.match(err.message, /signal timed out.*stat config.*ECONNREFUSED/);
      assert.equal((err.toJSON().cause as { code?: string }).code, 'ECONNREFUSED');
      return true;
    });
    assert.equal(inner.calls.stat, 8);
  });

  it('aborted while the next attempt runs: the failure of the attempt before is the cause', async () => {
    const controller = new AbortController();
    const { inner, backend } = setup({ maxAttempts: 20 });
    inner.plan.stat.push(...Array.from({ length: 7 }, refused));
    const orig = inner.stat.bind(inner);
    inner.stat = async (h, o) => {
      if (inner.calls.stat === 7) {
        inner.calls.stat++;
        controller.abort();
        throwIfAborted(o?.signal);
      }
      return orig(h, o);
    };
    await assert.rejects(backend.stat({ type: 'config', name: '' }, { signal: controller.signal }), (err: unknown) => {
      assert.ok(err instanceof AbortedError, String(err));
      assert.ok(chainHasCode(err, 'ECONNREFUSED'), 'no ECONNREFUSED in the cause chain');
      return true;
    });
  });

  it('toJSON shows the cause chain and the suppressed errors, with credentials masked', () => {
    const inner = Object.assign(new Error('connect ECONNREFUSED https://alice:hunter2@example.com/repo'), { code: 'ECONNREFUSED' });
    const err = new AbortedError('operation aborted', { cause: new BackendError('save data/ab/ab12', { transient: true, cause: inner }) });
    addSuppressed(err, new Error('remove locks/cd failed'));
    const json = JSON.stringify(err);
    assert.ok(!json.includes('hunter2'), json);
    assert.deepEqual(JSON.parse(json), {
      name: 'AbortedError',
      code: 'ABORTED',
      message: 'operation aborted',
      cause: { name: 'BackendError', code: 'BACKEND', message: 'save data/ab/ab12', cause: { name: 'Error', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED https://alice:***@example.com/repo' } },
      suppressed: [{ name: 'Error', message: 'remove locks/cd failed' }],
    });
  });

  it('a REST server that refuses every connection, with AbortSignal.timeout(): AbortedError caused by ECONNREFUSED', async () => {
    let retries = 0;
    // Nothing listens on port 9.
    const backend = await openBackend('rest:http://127.0.0.1:9/repo/', {
      retry: { initialDelayMs: 20, multiplier: 1, maxAttempts: 1000, onRetry: () => retries++ },
    });
    try {
      await assert.rejects(backend.stat({ type: 'config', name: '' }, { signal: AbortSignal.timeout(300) }), (err: unknown) => {
        assert.ok(err instanceof AbortedError, String(err));
        assert.ok(chainHasCode(err, 'ECONNREFUSED'), `no ECONNREFUSED in the cause chain of ${String(err)}`);
        assert.match(err.message, /ECONNREFUSED/);
        assert.equal((err.reason as Error).name, 'TimeoutError');
        return true;
      });
    } finally {
      await backend.close();
    }
    assert.ok(retries >= 3, `only ${retries} retries`);
  });
});

/** A logger that keeps the warnings: [message, fields]. */
function warnings(): { lines: Array<[string, Record<string, unknown>]>; logger: Logger } {
  const lines: Array<[string, Record<string, unknown>]> = [];
  const noop = () => {};
  return { lines, logger: { debug: noop, info: noop, error: noop, warn: (m, f = {}) => void lines.push([m, f]) } };
}

describe('RetryBackend: retry warnings are coalesced', () => {
  it('logs the first retry, then counts at most once per logIntervalMs, then one line when calls succeed again', async () => {
    const { lines, logger } = warnings();
    // Every wait is 4 s on the fake clock; the call fails five times.
    const { inner, backend, clock } = setup({ logger, initialDelayMs: 8000, multiplier: 1 });
    inner.plan.stat.push(...Array.from({ length: 5 }, () => transient()));
    await assert.rejects(backend.stat({ type: 'config', name: '' }), NotFoundError);
    assert.deepEqual(clock.sleeps, [4000, 4000, 4000, 4000, 4000]);
    assert.deepEqual(lines.map(([m]) => m), [
      'stat config failed, retrying',
      // Retries at 4, 8 and 12 s: the one at 12 s is 10 s or more after the last line.
      '3 more retries of 1 request in the last 12.0 s',
      // The call ends at 20 s with an error not worth retrying (the file is missing): the retry
      // at 16 s, not logged yet, is counted then.
      '1 more retry of 1 request in the last 8.0 s',
    ]);
    assert.deepEqual(lines[1]![1], { retries: 3, requests: 1, elapsedMs: 12000, op: 'stat', file: 'config', error: summarizeError(transient()) });

    const ok = warnings();
    const s2 = setup({ logger: ok.logger, initialDelayMs: 8000, multiplier: 1 });
    const h: FileHandle = { type: 'keys', name: newId() };
    s2.inner.plan.save.push(...Array.from({ length: 5 }, () => transient()));
    await s2.backend.save(h, new Uint8Array(1));
    assert.deepEqual(ok.lines.map(([m]) => m), [
      `save keys/${h.name} failed, retrying`,
      '3 more retries of 1 request in the last 12.0 s',
      'backend calls succeed again after 5 retries of 1 request in 20.0 s',
    ]);
    assert.deepEqual(ok.lines[2]![1], { retries: 5, requests: 1, elapsedMs: 20000 });
  });

  it('many requests failing at once: a handful of lines, not one per retry; totals add up', async () => {
    const { lines, logger } = warnings();
    const retries: RetryInfo[] = [];
    const { inner, backend } = setup({ logger, initialDelayMs: 1000, multiplier: 1, onRetry: (i) => retries.push(i) });
    inner.plan.save.push(...Array.from({ length: 48 }, () => transient()));
    const handles = Array.from({ length: 12 }, (): FileHandle => ({ type: 'data', name: newId() }));
    await Promise.all(handles.map((h) => backend.save(h, new Uint8Array(1))));
    assert.equal(retries.length, 48, 'onRetry still hears of every retry');
    const messages = lines.map(([m]) => m);
    assert.ok(lines.length <= 5, messages.join('\n'));
    assert.match(messages[0]!, /^save data\/[0-9a-f]{2}\/[0-9a-f]{64} failed, retrying$/);
    for (const m of messages.slice(1, -1)) assert.match(m, /^\d+ more retries of \d+ requests in the last \d+\.\d s$/);
    assert.match(messages.at(-1)!, /^backend calls succeed again after 48 retries of 12 requests in \d+\.\d s$/);
    // 48 waits of 0.5 s on the shared fake clock: 24 s, so two counting lines (at 10 s and 20 s).
    assert.equal(lines.length, 4, messages.join('\n'));
  });

  it('a request that gives up is logged after the count of the other requests\' retries; a new outage logs its first retry again', async () => {
    const { lines, logger } = warnings();
    const { inner, backend } = setup({ logger, maxAttempts: 3 });
    inner.plan.stat.push(...Array.from({ length: 6 }, () => transient()));
    const results = await Promise.allSettled([backend.stat({ type: 'config', name: '' }), backend.stat({ type: 'config', name: '' })]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.deepEqual(lines.map(([m]) => m), [
      'stat config failed, retrying',
      '3 more retries of 2 requests in the last 3.0 s',
      'stat config failed after 3 attempts, giving up',
      'stat config failed after 3 attempts, giving up',
    ]);
    lines.length = 0;
    inner.plan.stat.push(transient());
    await assert.rejects(backend.stat({ type: 'config', name: '' }), NotFoundError);
    assert.deepEqual(lines.map(([m]) => m), ['stat config failed, retrying']);
  });
});

describe('RetryBackend: reads', () => {
  it('retries a read that returned fewer bytes than asked for', async () => {
    const { inner, backend, retries } = setup();
    const h: FileHandle = { type: 'data', name: newId() };
    const data = new Uint8Array(randomBytes(1000));
    await inner.store.save(h, data);
    inner.plan.load.push('short', 'short');
    assert.deepEqual(await backend.load(h, { offset: 100, length: 600 }), data.slice(100, 700));
    assert.equal(inner.calls.load, 3);
    assert.ok(retries[0]!.error instanceof IntegrityError);
    assert.match((retries[0]!.error as Error).message, /300 bytes instead of 600 at offset 100/);
  });

  it('reports a read that stays short as an IntegrityError naming the file', async () => {
    const { inner, backend } = setup({ maxAttempts: 3 });
    const h: FileHandle = { type: 'data', name: newId() };
    await inner.store.save(h, new Uint8Array(100));
    inner.plan.load.push('short', 'short', 'short');
    await assert.rejects(backend.load(h, { length: 100 }), (err: unknown) => {
      assert.ok(err instanceof IntegrityError);
      assert.equal(err.file, `data/${h.name.slice(0, 2)}/${h.name}`);
      return true;
    });
    assert.equal(inner.calls.load, 3);
  });

  it('retries an IntegrityError from a read when a stat shows the file holds the range', async () => {
    const { inner, backend } = setup();
    const h: FileHandle = { type: 'index', name: newId() };
    await inner.store.save(h, new Uint8Array(500).fill(7));
    inner.plan.load.push(new IntegrityError('short read: connection closed after 20 of 500 bytes', { file: 'index/x' }));
    assert.deepEqual(await backend.load(h), new Uint8Array(500).fill(7));
    assert.equal(inner.calls.load, 2);
    assert.equal(inner.calls.stat, 1);
  });

  it('does not retry an IntegrityError when the stored file is shorter than the range (damage)', async () => {
    const { inner, backend, retries } = setup();
    const h: FileHandle = { type: 'data', name: newId() };
    await inner.store.save(h, new Uint8Array(100));
    // The memory backend itself reports a range past the end as an IntegrityError.
    await assert.rejects(backend.load(h, { offset: 50, length: 80 }), IntegrityError);
    assert.equal(inner.calls.load, 1);
    assert.equal(inner.calls.stat, 1);
    assert.deepEqual(retries, []);
  });

  it('reports a file that vanished during a broken read as missing', async () => {
    const { inner, backend } = setup();
    const h: FileHandle = { type: 'data', name: newId() };
    inner.plan.load.push(new IntegrityError('short read'));
    await assert.rejects(backend.load(h, { length: 10 }), NotFoundError);
    assert.equal(inner.calls.load, 1);
  });
});

describe('RetryBackend: remove', () => {
  it('reports "not found" after a lost answer, with the earlier failure as the cause', async () => {
    const { inner, backend } = setup();
    const h: FileHandle = { type: 'locks', name: newId() };
    await inner.store.save(h, new Uint8Array(1));
    inner.plan.remove.push('effectThenFail');
    await assert.rejects(backend.remove(h), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.file, `locks/${h.name}`);
      assert.ok(err.cause instanceof BackendError && err.cause.message === 'lost answer');
      return true;
    });
    assert.equal(inner.calls.remove, 2);
    await assert.rejects(inner.store.stat(h), NotFoundError);
  });

  it('still reports a file that was missing from the start', async () => {
    const { inner, backend } = setup();
    await assert.rejects(backend.remove({ type: 'locks', name: newId() }), NotFoundError);
    assert.equal(inner.calls.remove, 1);
  });
});

describe('RetryBackend: list', () => {
  async function filled(n: number) {
    const s = setup();
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = newId();
      names.push(name);
      await s.inner.store.save({ type: 'snapshots', name }, new Uint8Array(i));
    }
    return { ...s, names: names.sort() };
  }

  it('restarts a failed listing and yields every name exactly once', async () => {
    const { inner, backend, names, retries } = await filled(7);
    inner.plan.list.push(transient(), reset());
    const got = await collect(backend.list('snapshots'));
    assert.deepEqual([...got].sort(), names);
    assert.equal(got.length, new Set(got).size);
    assert.equal(inner.calls.list, 3);
    assert.deepEqual(retries.map((r) => [r.op, r.file]), [['list', 'snapshots'], ['list', 'snapshots']]);
  });

  it('keeps going as long as each restart makes progress, even past maxAttempts', async () => {
    const { inner, names } = await filled(6);
    const s = new RetryBackend(inner, { clock: fakeClock(), random: () => 0, maxAttempts: 2 });
    // The k-th listing fails after k names: one the caller has not seen yet each time.
    inner.listFailAfter = (call) => call;
    inner.plan.list.push(...Array.from({ length: 6 }, () => transient()));
    const got = await collect(s.list('snapshots'));
    assert.deepEqual([...got].sort(), names);
    assert.equal(inner.calls.list, 7);
  });

  it('gives up when restarts make no progress', async () => {
    const { inner, names } = await filled(5);
    const s = new RetryBackend(inner, { clock: fakeClock(), random: () => 0, maxAttempts: 3 });
    inner.listFailAfter = 2;
    inner.plan.list.push(transient(), transient(), transient(), transient());
    const got: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const f of s.list('snapshots')) got.push(f.name);
      })(),
      BackendError,
    );
    assert.equal(got.length, 2);
    assert.ok(got.every((n) => names.includes(n)));
    assert.equal(inner.calls.list, 3);
  });

  it('passes on errors that are not retryable, and closes the wrapped listing when the caller stops', async () => {
    const { inner, backend } = await filled(5);
    inner.plan.list.push(permanent(403));
    await assert.rejects(collect(backend.list('snapshots')), (err: unknown) => err instanceof BackendError && err.status === 403);
    assert.equal(inner.calls.list, 1);

    const before = inner.listReturned;
    for await (const _ of backend.list('snapshots')) break;
    assert.equal(inner.listReturned, before + 1);
  });
});

describe('ObservedBackend', () => {
  it('reports each call with file, bytes, duration and a summary of failures', async () => {
    const events: BackendEvent[] = [];
    const mem = new MemoryBackend();
    const b = new ObservedBackend(mem, (e) => events.push(e));
    const id = newId();
    await b.create();
    await b.save({ type: 'keys', name: id }, new Uint8Array(10));
    await b.load({ type: 'keys', name: id }, { offset: 2, length: 5 });
    await b.stat({ type: 'keys', name: id });
    await b.save({ type: 'config', name: 'ignored' }, new Uint8Array(4));
    assert.deepEqual(await collect(b.list('keys')), [id]);
    await assert.rejects(b.load({ type: 'snapshots', name: id }), NotFoundError);
    await b.remove({ type: 'keys', name: id });
    const plain = events.map(({ durationMs, ...rest }) => {
      assert.ok(durationMs >= 0);
      return rest;
    });
    assert.deepEqual(plain, [
      { op: 'create' },
      { op: 'save', type: 'keys', name: id, bytes: 10 },
      { op: 'load', type: 'keys', name: id, offset: 2, bytes: 5 },
      { op: 'stat', type: 'keys', name: id, bytes: 10 },
      { op: 'save', type: 'config', bytes: 4 },
      { op: 'list', type: 'keys', count: 1 },
      { op: 'load', type: 'snapshots', name: id, error: { name: 'NotFoundError', code: 'NOT_FOUND', message: `snapshots/${id} does not exist` } },
      { op: 'remove', type: 'keys', name: id },
    ]);
  });

  it('keeps working when the observer throws, and reports a list stopped early', async () => {
    const mem = new MemoryBackend();
    for (let i = 0; i < 3; i++) await mem.save({ type: 'index', name: newId() }, new Uint8Array(1));
    const events: BackendEvent[] = [];
    const b = new ObservedBackend(mem, (e) => {
      events.push(e);
      throw new Error('broken logger');
    });
    await b.save({ type: 'locks', name: newId() }, new Uint8Array(1));
    for await (const _ of b.list('index')) break;
    assert.deepEqual(events.map((e) => [e.op, e.count]), [['save', undefined], ['list', 1]]);
  });

  it('never passes on credentials found in error messages', () => {
    const leaky = new BackendError(
      'GET https://alice:hunter2@host/repo?X-Amz-Signature=abcdef&X-Amz-Date=1 failed; sas ?sv=2020&sig=SECRETSIG&se=x; Authorization: Bearer tok123',
      { transient: true, status: 503 },
    );
    const s = summarizeError(leaky);
    for (const secret of ['hunter2', 'abcdef', 'SECRETSIG', 'tok123']) assert.ok(!s.message.includes(secret), s.message);
    assert.ok(s.message.includes('alice:***@host') && s.message.includes('X-Amz-Date=1') && s.message.includes('sv=2020'), s.message);
    assert.deepEqual({ ...s, message: '' }, { name: 'BackendError', code: 'BACKEND', message: '', transient: true, status: 503 });
    assert.equal(redactSecrets('nothing here'), 'nothing here');
    assert.deepEqual(summarizeError(reset()), { name: 'Error', code: 'ECONNRESET', message: 'read ECONNRESET' });
  });
});

describe('wrapBackend', () => {
  it('stacks retry over limits over observe, so each attempt is observed', async () => {
    const clock = fakeClock();
    const inner = new ScriptedBackend(clock);
    const events: BackendEvent[] = [];
    const retries: RetryInfo[] = [];
    const b = wrapBackend(inner, { retry: { clock, random: () => 0, onRetry: (i) => retries.push(i) }, connections: 2, observe: (e) => events.push(e) });
    assert.ok(b instanceof RetryBackend);
    assert.ok(b.inner instanceof LimitedBackend);
    assert.ok(b.inner.inner instanceof ObservedBackend);
    assert.equal(b.inner.inner.inner, inner);
    assert.equal(b.connections, 2);
    assert.equal(b.location, 'scripted:test');
    const h: FileHandle = { type: 'keys', name: newId() };
    inner.plan.save.push(transient(503));
    await b.save(h, new Uint8Array(3));
    assert.deepEqual(events.map((e) => [e.op, e.error?.status]), [['save', 503], ['save', undefined]]);
    assert.equal(retries.length, 1);
  });

  it('defaults to the backend connection count and can leave out retrying', () => {
    const mem = new MemoryBackend({ connections: 7 });
    const b = wrapBackend(mem, { retry: false });
    assert.ok(b instanceof LimitedBackend);
    assert.equal(b.connections, 7);
    assert.ok(wrapBackend(mem) instanceof RetryBackend);
  });
});

// The wrappers keep the Backend contract: the shared suite passes through the whole stack, and
// through retries over a backend that fails a fifth of its calls (every fault but a lost answer
// after a save, which cannot leave "nothing" behind when the caller aborts).
backendConformance('wrapBackend(MemoryBackend) with an observer', async () => ({
  backend: wrapBackend(new MemoryBackend(), { observe: () => {} }),
  cleanup: async () => {},
}));

backendConformance('RetryBackend over FaultyBackend(MemoryBackend, 20%)', async () => ({
  backend: new RetryBackend(new FaultyBackend(new MemoryBackend(), { rate: 0.2, weights: { lostResponse: 0 }, timeoutMs: 1, slowMs: 1, seed: 'conformance' }), {
    initialDelayMs: 1,
    maxDelayMs: 4,
    maxAttempts: 40,
  }),
  cleanup: async () => {},
}));

describe('retentionOf under the wrappers', () => {
  /** A memory backend with retention calls whose first attempts fail transiently. */
  class RetainingBackend extends MemoryBackend {
    readonly locksUploads = true;
    calls = 0;
    failures: number;
    stored = new Map<string, { mode: 'GOVERNANCE' | 'COMPLIANCE'; retainUntil: Date }>();
    constructor(failures: number) {
      super();
      this.failures = failures;
    }
    async getRetention(h: FileHandle): Promise<{ mode: 'GOVERNANCE' | 'COMPLIANCE'; retainUntil: Date } | undefined> {
      this.calls++;
      if (this.failures-- > 0) throw new BackendError(`get retention of ${h.name}: 503`, { transient: true, status: 503 });
      return this.stored.get(h.name);
    }
    async putRetention(h: FileHandle, r: { mode: 'GOVERNANCE' | 'COMPLIANCE'; retainUntil: Date }): Promise<void> {
      this.calls++;
      if (this.failures-- > 0) throw new BackendError(`put retention of ${h.name}: 503`, { transient: true, status: 503 });
      this.stored.set(h.name, r);
    }
  }
  const h: FileHandle = { type: 'data', name: 'ab'.repeat(32) };
  const r = { mode: 'GOVERNANCE' as const, retainUntil: new Date('2030-01-01T00:00:00Z') };

  it('finds the calls below retry, limits and observe, and retries transient failures', async () => {
    const inner = new RetainingBackend(2);
    const retries: RetryInfo[] = [];
    const wrapped = wrapBackend(inner, { retry: { initialDelayMs: 1, maxDelayMs: 2, onRetry: (i) => retries.push(i) }, observe: () => {} });
    const cap = retentionOf(wrapped);
    assert.ok(cap);
    assert.equal(cap.locksUploads, true);
    await cap.putRetention(h, r);
    assert.deepEqual(await cap.getRetention(h), r);
    assert.equal(inner.calls, 4, 'two failed attempts, then the put and the get');
    assert.deepEqual(retries.map((i) => i.op), ['retention', 'retention']);
  });

  it('without a retry wrapper: the bare calls; a backend without retention: undefined', async () => {
    const inner = new RetainingBackend(1);
    const cap = retentionOf(wrapBackend(inner, { retry: false }));
    await assert.rejects(cap!.getRetention(h), BackendError);
    assert.equal(retentionOf(wrapBackend(new MemoryBackend())), undefined);
  });
});

/** A MemoryBackend with streams that break after their first piece as often as `breaks` says. */
class BreakingStreams extends MemoryBackend {
  breaks = 0;
  readonly streams: Array<{ offset: number; length: number }> = [];
  override async *loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncGenerator<Uint8Array> {
    this.streams.push({ offset: options.offset ?? 0, length: options.length });
    let n = 0;
    for await (const piece of super.loadStream(h, options)) {
      if (n++ === 1 && this.breaks > 0) {
        this.breaks--;
        throw new BackendError('load: ECONNRESET: connection reset mid-body', { transient: true });
      }
      yield piece;
    }
  }
}

describe('streams through the wrappers (loadStream)', () => {
  it('a stream broken mid-way goes on from the byte it reached: each byte once, one event and one connection per request', async () => {
    const inner = new BreakingStreams();
    const events: BackendEvent[] = [];
    const retries: RetryInfo[] = [];
    const b = wrapBackend(inner, { connections: 1, observe: (e) => events.push(e), retry: { initialDelayMs: 0, maxDelayMs: 0, onRetry: (r) => retries.push(r) } });
    const h: FileHandle = { type: 'data', name: newId() };
    const data = new Uint8Array(randomBytes(5 * 1024 * 1024 + 7));
    await inner.save(h, data);
    inner.breaks = 2;
    const pieces: Uint8Array[] = [];
    for await (const piece of loadPieces(b, h, { offset: 3, length: data.length - 3 })) pieces.push(piece);
    assert.deepEqual(new Uint8Array(Buffer.concat(pieces)), data.subarray(3));
    const MiB = 1024 * 1024;
    // Each break is a retry as any other (backoff, onRetry, the log), and
    // came after one 1 MiB piece: the next request starts where the bytes stopped.
    assert.deepEqual(retries.map((r) => [r.op, r.attempt, (r.error as BackendError).transient]), [['load', 1, true], ['load', 1, true]]);
    assert.deepEqual(inner.streams.map((s) => s.offset), [3, 3 + MiB, 3 + 2 * MiB]);
    assert.deepEqual(events.map((e) => [e.op, e.offset, e.bytes, e.error?.code]), [
      ['load', 3, undefined, 'BACKEND'],
      ['load', 3 + MiB, undefined, 'BACKEND'],
      ['load', 3 + 2 * MiB, data.length - 3 - 2 * MiB, undefined],
    ]);
    // A stream holds its connection while the caller holds the stream; stopping early frees it.
    const limited = new LimitedBackend(inner, { connections: 1 });
    const it1 = limited.loadStream(h, { length: data.length })[Symbol.asyncIterator]();
    await it1.next();
    assert.deepEqual(limited.usage, { inUse: 1, waiting: 0 });
    const other = limited.load(h, { length: 1 });
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(limited.usage, { inUse: 1, waiting: 1 });
    await it1.return?.(undefined);
    assert.deepEqual(await other, data.subarray(0, 1));
    assert.deepEqual(limited.usage, { inUse: 0, waiting: 0 });
  });

  it('gives up on a stream that keeps failing before its first piece, as a load would', async () => {
    const inner = new BreakingStreams();
    const b = new RetryBackend(inner, { maxAttempts: 2, initialDelayMs: 0, maxDelayMs: 0 });
    const h: FileHandle = { type: 'data', name: newId() };
    await inner.save(h, new Uint8Array(100));
    await assert.rejects(async () => {
      for await (const _ of b.loadStream(h, { offset: 90, length: 20 })) void _;
    }, IntegrityError);
    assert.equal(inner.streams.length, 1, 'a range past the end is damage, not retried');
  });
});
