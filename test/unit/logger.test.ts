// The injectable logger: consoleLogger's levels and format, and the records the library really
// emits when a recording logger is passed in — backend retries (injected with FaultyBackend),
// every backend request, the key search, the index load, locks taken, refreshed, waited for
// and removed as stale — with no password, key or credential in any of them. Last, the CLI's
// logger: its level from --quiet / --verbose / $STOWAGE_LOG_LEVEL, on stderr only.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { FaultyBackend } from '../../src/backend/wrappers/faulty.ts';
import { wrapBackend } from '../../src/backend/wrappers/stack.ts';
import { openBackend } from '../../src/backend/location.ts';
import { BackendError, NotFoundError } from '../../src/errors.ts';
import { LockedError } from '../../src/repository/lock.ts';
import { Repository } from '../../src/repository/repository.ts';
import { Lock, STALE_AFTER_MS, encodeLock, unlock } from '../../src/repository/lock.ts';
import { formatGoTime, goTimeFromNs } from '../../src/repository/gotime.ts';
import { consoleLogger, formatFields, silentLogger, type LogFields, type Logger, type LogLevel } from '../../src/logger.ts';
import { cliLogLevel } from '../../src/cli/context.ts';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const PASSWORD = 'correct horse battery staple 7f3a';

interface LogRecord {
  level: LogLevel;
  message: string;
  fields: LogFields;
}

/** A logger that keeps every record, as a test double for a user's logger. */
function recordingLogger(): Logger & { records: LogRecord[]; find(level: LogLevel, message: string | RegExp): LogRecord[] } {
  const records: LogRecord[] = [];
  const at = (level: LogLevel) => (message: string, fields: LogFields = {}) => {
    records.push({ level, message, fields });
  };
  return {
    records,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    find: (level, message) => records.filter((r) => r.level === level && (typeof message === 'string' ? r.message === message : message.test(r.message))),
  };
}

/** Every record as text: message and fields, byte arrays spelled out in hex and base64. */
function dump(records: readonly LogRecord[]): string {
  return records
    .map((r) => `${r.level} ${r.message} ${JSON.stringify(r.fields, (_k, v: unknown) => (v instanceof Uint8Array ? `${Buffer.from(v).toString('hex')} ${Buffer.from(v).toString('base64')}` : typeof v === 'bigint' ? String(v) : v))}`)
    .join('\n');
}

/** Asserts that no record holds the password or any part of the repository's master key. */
function assertNoSecrets(records: readonly LogRecord[], repo: Repository): void {
  const text = dump(records);
  assert.ok(!text.includes(PASSWORD), 'the password was logged');
  const key = repo.masterKeyForWorkers();
  for (const part of [key.encrypt, key.macK, key.macR]) {
    for (const spelled of [Buffer.from(part).toString('hex'), Buffer.from(part).toString('base64')]) {
      assert.ok(!text.includes(spelled), 'a part of the master key was logged');
    }
  }
}

function timeAgo(ms: number): string {
  return formatGoTime(goTimeFromNs(BigInt(Date.now() - ms) * 1_000_000n, 0));
}

/** Only transient (5xx / 429) faults, on the given calls. */
function faulty(inner = new MemoryBackend(), options: { rate: number; ops?: Array<'save' | 'load' | 'stat' | 'list' | 'remove'>; seed?: number } = { rate: 0 }): FaultyBackend {
  return new FaultyBackend(inner, {
    rate: options.rate,
    seed: options.seed ?? 1,
    ops: options.ops,
    weights: { transient: 1, timeout: 0, reset: 0, slow: 0, truncated: 0, lostResponse: 0 },
  });
}

describe('consoleLogger', () => {
  it('prints one line per record at its level and above, fields as key=value', () => {
    const lines: Array<[LogLevel, string]> = [];
    const log = consoleLogger('info', { write: (line, level) => lines.push([level, line]) });
    log.debug('hidden', { a: 1 });
    log.info('index loaded', { indexFiles: 2, packs: 3, location: '/srv/my repo', nested: { ok: true }, skipped: undefined });
    log.warn('save data/ab failed, retrying', { error: new Error('boom') });
    log.error('no fields');
    assert.deepEqual(lines, [
      ['info', 'info: index loaded indexFiles=2 packs=3 location="/srv/my repo" nested={"ok":true}'],
      ['warn', 'warn: save data/ab failed, retrying error="Error: boom"'],
      ['error', 'error: no fields'],
    ]);
  });

  it("'silent' prints nothing, timestamps lead when asked for, an unknown level is refused", () => {
    const lines: string[] = [];
    const silent = consoleLogger('silent', { write: (l) => lines.push(l) });
    silent.error('x');
    assert.equal(lines.length, 0);
    consoleLogger('debug', { write: (l) => lines.push(l), timestamps: true }).debug('y');
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z debug: y$/);
    assert.throws(() => consoleLogger('verbose' as LogLevel), TypeError);
    assert.doesNotThrow(() => silentLogger.error('nothing', { happens: true }));
  });

  it('writes every level to stderr by default (stdout is the program output), or to the stream chosen', () => {
    const taken: Record<'stdout' | 'stderr', string[]> = { stdout: [], stderr: [] };
    const originals = { stdout: process.stdout.write, stderr: process.stderr.write };
    for (const name of ['stdout', 'stderr'] as const) {
      process[name].write = ((chunk: string | Uint8Array) => {
        taken[name].push(String(chunk));
        return true;
      }) as typeof process.stdout.write;
    }
    try {
      const log = consoleLogger('debug');
      log.debug('d', { n: 1 });
      log.info('i');
      log.warn('w');
      log.error('e');
    } finally {
      process.stdout.write = originals.stdout;
      process.stderr.write = originals.stderr;
    }
    assert.deepEqual(taken.stdout, []);
    assert.deepEqual(taken.stderr, ['debug: d n=1\n', 'info: i\n', 'warn: w\n', 'error: e\n']);
    const chosen: string[] = [];
    consoleLogger('info', { stream: { write: (s: string) => chosen.push(s) } }).info('to the chosen stream');
    assert.deepEqual(chosen, ['info: to the chosen stream\n']);
  });

  it('formatFields quotes what would be ambiguous and leaves plain values bare', () => {
    assert.equal(formatFields({ s: 'plain', e: '', q: 'a"b', eq: 'k=v', n: 1.5, b: false, z: null, big: 2n ** 70n, list: [1, 'x'] }), 's=plain e="" q="a\\"b" eq="k=v" n=1.5 b=false z=null big=1180591620717411303424 list=[1,"x"]');
  });
});

describe('the library logs to an injected logger', () => {
  it('a backend call that fails and is retried: warn with the call, the attempt and the error; every request at debug', async () => {
    const log = recordingLogger();
    const inner = faulty(new MemoryBackend(), { rate: 1, ops: ['save'] });
    const backend = wrapBackend(inner, { logger: log, retry: { random: () => 0, onRetry: () => (inner.rate = 0) } });
    await backend.save({ type: 'keys', name: 'ab'.repeat(32) }, new Uint8Array(10));
    assert.equal(inner.report().totalFaults, 1, 'one injected failure');
    const [retry, ...more] = log.find('warn', /failed, retrying$/);
    assert.equal(more.length, 0);
    assert.equal(retry!.message, `save keys/${'ab'.repeat(32)} failed, retrying`);
    const { op, file, attempt, delayMs, elapsedMs } = retry!.fields;
    assert.deepEqual([op, file, attempt, delayMs, typeof elapsedMs], ['save', `keys/${'ab'.repeat(32)}`, 1, 0, 'number']);
    const error = retry!.fields.error as { name: string; code: string; transient: boolean; status: number };
    assert.deepEqual([error.name, error.code, error.transient], ['BackendError', 'BACKEND', true]);
    assert.ok([500, 502, 503, 429].includes(error.status), String(error.status));
    // The requests that reached the backend, in order: the failed one, then the one that worked.
    const requests = log.records.filter((r) => r.level === 'debug' && r.message.startsWith('backend '));
    assert.deepEqual(requests.map((r) => r.message), ['backend save failed', 'backend save']);
    assert.deepEqual([requests[1]!.fields.type, requests[1]!.fields.name, requests[1]!.fields.bytes], ['keys', 'ab'.repeat(32), 10]);
    assert.equal(typeof requests[1]!.fields.durationMs, 'number');
  });

  it('a call that keeps failing: a warn at its first retry, then one when it gives up; the error still reaches the caller', async () => {
    const log = recordingLogger();
    const backend = wrapBackend(faulty(new MemoryBackend(), { rate: 1, ops: ['stat'] }), { logger: log, retry: { maxAttempts: 3, random: () => 0 } });
    await assert.rejects(backend.stat({ type: 'config', name: '' }), BackendError);
    assert.deepEqual(log.find('warn', /./).map((r) => r.message), [
      'stat config failed, retrying',
      'stat config failed after 3 attempts, giving up',
    ]);
    assert.equal(log.find('warn', /giving up/)[0]!.fields.attempts, 3);
    // logIntervalMs 0: a line per retry.
    const every = recordingLogger();
    const uncoalesced = wrapBackend(faulty(new MemoryBackend(), { rate: 1, ops: ['stat'] }), { logger: every, retry: { maxAttempts: 3, random: () => 0, logIntervalMs: 0 } });
    await assert.rejects(uncoalesced.stat({ type: 'config', name: '' }), BackendError);
    assert.deepEqual(every.find('warn', /./).map((r) => r.message), [
      'stat config failed, retrying',
      'stat config failed, retrying',
      'stat config failed after 3 attempts, giving up',
    ]);
    // A failure that is not worth retrying is not logged as one.
    const missing = recordingLogger();
    await assert.rejects(wrapBackend(new MemoryBackend(), { logger: missing }).load({ type: 'keys', name: 'cd'.repeat(32) }), NotFoundError);
    assert.deepEqual(missing.find('warn', /./), []);
    assert.equal((missing.find('debug', 'backend load failed')[0]!.fields.error as { code: string }).code, 'NOT_FOUND');
  });

  it('a logger that throws changes nothing: the retry and the request still happen', async () => {
    const boom = () => {
      throw new Error('logger broke');
    };
    const inner = faulty(new MemoryBackend(), { rate: 1, ops: ['save'] });
    let retried = 0;
    const backend = wrapBackend(inner, { logger: { debug: boom, info: boom, warn: boom, error: boom }, retry: { random: () => 0, onRetry: () => ((inner.rate = 0), retried++) } });
    await backend.save({ type: 'keys', name: 'ef'.repeat(32) }, new Uint8Array(3));
    assert.equal(retried, 1);
    assert.equal((await backend.stat({ type: 'keys', name: 'ef'.repeat(32) })).size, 3);
  });

  it('a repository opened, written and indexed over a flaky backend: key search, index counts, retries; no secret anywhere', async () => {
    const log = recordingLogger();
    const store = new MemoryBackend();
    const backend = wrapBackend(faulty(store, { rate: 0.3, seed: 11 }), { logger: log, retry: { random: () => 0 } });
    const created = await Repository.init(backend, { password: PASSWORD, kdf: KDF, logger: log });
    assert.equal(created.logger, log);
    assert.deepEqual(log.find('info', 'repository created').map((r) => [r.fields.key, r.fields.version]), [[created.keyId, 2]]);
    const writer = (await created.loadIndex()).blobWriter();
    for (let i = 0; i < 3; i++) await writer.saveBlob('data', randomBytes(1000));
    await writer.flush();

    const opened = await Repository.open(backend, { password: PASSWORD, logger: log });
    assert.deepEqual(log.find('debug', 'trying key').map((r) => r.fields.key), [created.keyId]);
    assert.deepEqual(log.find('info', 'repository opened').map((r) => [r.fields.key, r.fields.keysTried]), [[created.keyId, 1]]);
    const indexed = await opened.loadIndex();
    assert.equal(indexed.logger, log);
    const loaded = log.find('info', 'index loaded').at(-1)!;
    assert.deepEqual([loaded.fields.indexFiles, loaded.fields.packs, loaded.fields.blobs], [1, 1, 3]);
    assert.ok(log.find('warn', /failed, retrying$/).length > 0, 'the injected faults were retried and logged');

    await assert.rejects(Repository.open(backend, { password: 'not it', logger: log }));
    assert.equal(log.find('debug', 'no key opens with the password').length, 1);
    assertNoSecrets(log.records, opened);
  });

  it('locks: taken, refreshed, released, waited for, and removed as stale', async () => {
    const log = recordingLogger();
    const repo = await Repository.init(new MemoryBackend(), { password: PASSWORD, kdf: KDF, logger: log });
    const lock = await Lock.acquire(repo, { exclusive: true, settleTime: 0 });
    assert.deepEqual(log.find('info', 'lock acquired').map((r) => r.fields), [{ lock: lock.id, exclusive: true }]);
    const first = lock.id;
    await lock.refresh();
    assert.deepEqual(log.find('debug', 'lock refreshed').map((r) => r.fields), [{ lock: lock.id, replaced: first, exclusive: true }]);

    // Another process waits for it, and says for whom.
    await assert.rejects(Lock.acquire(repo, { exclusive: false, settleTime: 0, retryLock: 30 }), LockedError);
    const waiting = log.find('info', 'repository is locked by another process, waiting');
    assert.equal(waiting.length, 1);
    const holders = waiting[0]!.fields.holders as Array<{ lock: string; exclusive: boolean; pid: number; stale: boolean }>;
    assert.deepEqual(holders.map((h) => [h.lock, h.exclusive, h.pid, h.stale]), [[lock.id, true, process.pid, false]]);
    await lock.release();
    assert.deepEqual(log.find('debug', 'lock released').map((r) => r.fields.lock), [lock.id]);

    // A lock left behind 31 minutes ago by a process elsewhere: unlock removes it and says so.
    const stale = await repo.saveUnpacked('locks', encodeLock({ time: timeAgo(STALE_AFTER_MS + 60_000), exclusive: false, hostname: 'elsewhere', username: 'backup', pid: 4242 }));
    assert.deepEqual(await unlock(repo), [stale]);
    const removed = log.find('info', 'stale lock removed');
    assert.equal(removed.length, 1);
    assert.deepEqual([removed[0]!.fields.lock, removed[0]!.fields.hostname, removed[0]!.fields.pid], [stale, 'elsewhere', 4242]);
    assertNoSecrets(log.records, repo);
  });

  it('a lock refresh that fails is a warning, not a silent gap', async () => {
    const log = recordingLogger();
    const flaky = faulty(new MemoryBackend(), { rate: 0, ops: ['save'] });
    const repo = await Repository.init(flaky, { password: PASSWORD, kdf: KDF, logger: log });
    const lock = await Lock.acquire(repo, { exclusive: false, settleTime: 0, refreshInterval: 5 });
    flaky.rate = 1; // every save fails from now on, the refresh's too
    try {
      for (let i = 0; i < 400 && log.find('warn', 'lock refresh failed').length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    } finally {
      flaky.rate = 0;
      await lock.release();
    }
    const failed = log.find('warn', 'lock refresh failed')[0];
    assert.ok(failed, 'no warning about the failed refresh');
    assert.match(String(failed.fields.lock), /^[0-9a-f]{64}$/);
    assert.equal((failed.fields.error as { name: string }).name, 'BackendError');
  });

  it('openBackend passes the logger on: the opening, each request, retries; a password in the location never shows', async () => {
    const dir = await tmpDir('stowage-logger-local');
    const local = recordingLogger();
    const backend = await openBackend(dir, { logger: local });
    await assert.rejects(backend.stat({ type: 'config', name: '' }), NotFoundError);
    await backend.close();
    assert.deepEqual(local.find('debug', 'backend opened').map((r) => [r.fields.kind, r.fields.location]), [['local', dir]]);
    assert.equal(local.find('debug', 'backend stat failed').length, 1);

    // Nothing listens on port 9: the connection is refused, which is worth a retry.
    const rest = recordingLogger();
    const secret = 'hunter2-in-the-url';
    const remote = await openBackend(`rest:http://alice:${secret}@127.0.0.1:9/repo/`, { logger: rest, retry: { maxAttempts: 2, random: () => 0 } });
    await assert.rejects(remote.stat({ type: 'config', name: '' }));
    await remote.close();
    assert.equal(rest.find('warn', 'stat config failed, retrying').length, 1, dump(rest.records));
    assert.equal(rest.find('debug', 'backend stat failed').length, 2);
    assert.ok(!dump(rest.records).includes(secret), dump(rest.records));
  });
});

describe('the CLI logger', () => {
  it('warns by default, errors only with --quiet, informs with --verbose; $STOWAGE_LOG_LEVEL wins', () => {
    const level = (quiet: boolean, verbose: boolean, env: NodeJS.ProcessEnv = {}) => cliLogLevel({ quiet, verbose, env });
    assert.deepEqual([level(false, false), level(true, false), level(false, true), level(true, true)], ['warn', 'error', 'info', 'error']);
    assert.equal(level(true, false, { STOWAGE_LOG_LEVEL: 'Debug' }), 'debug');
    assert.equal(level(false, true, { STOWAGE_LOG_LEVEL: 'silent' }), 'silent');
    assert.throws(() => level(false, false, { STOWAGE_LOG_LEVEL: 'loud' }), /STOWAGE_LOG_LEVEL/);
  });

  it('writes to stderr only, so --json output stays clean, and shows no password', async () => {
    const dir = await tmpDir('stowage-logger-cli');
    const env = { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: PASSWORD };
    assert.equal((await runCli(['init'], { env })).code, 0);
    const r = await runCli(['snapshots', '--json'], { env: { ...env, STOWAGE_LOG_LEVEL: 'debug' } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), []);
    assert.match(r.stderr, /^debug: backend opened kind=local /m);
    assert.match(r.stderr, /^info: repository opened /m);
    assert.match(r.stderr, /^debug: backend load op=load type=keys name=[0-9a-f]{64} bytes=\d+ durationMs=[\d.]+$/m);
    assert.ok(!r.stderr.includes(PASSWORD));
    const verbose = await runCli(['snapshots', '--verbose'], { env });
    assert.match(verbose.stderr, /^info: repository opened /m);
    assert.doesNotMatch(verbose.stderr, /^debug:/m);
    const plain = await runCli(['snapshots'], { env });
    assert.equal(plain.stderr, '', 'nothing below warn by default');
  });
});
