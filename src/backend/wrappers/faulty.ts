// A backend that fails on purpose, for testing what sits above it: 5xx answers, timeouts,
// connection resets, slow answers, truncated reads, and calls that took effect although they
// report an error. Faults come from a seeded generator, so a failing run can be repeated.
// Stored bytes are never altered: every fault is one a careful caller can notice.

import { describeFile, loadInPieces, saveFromFile, type LocalFile, type RemoveOptions } from '../backend.ts';
import type { Backend, CallOptions, FileHandle, FileInfo, FileType, LoadOptions } from '../backend.ts';
import { BackendError, IntegrityError, InvalidInputError, throwIfAborted } from '../../errors.ts';
import { systemClock } from './clock.ts';
import type { Clock } from './clock.ts';
import { ForwardingBackend } from './forwarding.ts';

/** A kind of failure {@link FaultyBackend} injects. */
export type FaultKind =
  /** A 5xx or 429 answer before anything happened. */
  | 'transient'
  /** A wait of `timeoutMs`, then a timeout error; nothing happened. */
  | 'timeout'
  /** A raw connection reset (ECONNRESET, or fetch's "fetch failed" caused by UND_ERR_SOCKET). */
  | 'reset'
  /** A wait of `slowMs`, then the call succeeds. */
  | 'slow'
  /** load only: fewer bytes than asked for (a range), or an IntegrityError "short read" (a whole file). */
  | 'truncated'
  /** save, remove, create: the call took effect, then the answer was lost and an error reported. */
  | 'lostResponse';

export const FAULT_KINDS: readonly FaultKind[] = ['transient', 'timeout', 'reset', 'slow', 'truncated', 'lostResponse'];

/** A backend call {@link FaultyBackend} may make fail. */
export type FaultyOp = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove';

const FAULTY_OPS: readonly FaultyOp[] = ['create', 'save', 'load', 'stat', 'list', 'remove'];

/** Which faults make sense for which call. */
const APPLICABLE: Readonly<Record<FaultyOp, readonly FaultKind[]>> = {
  create: ['transient', 'timeout', 'reset', 'slow', 'lostResponse'],
  save: ['transient', 'timeout', 'reset', 'slow', 'lostResponse'],
  load: ['transient', 'timeout', 'reset', 'slow', 'truncated'],
  stat: ['transient', 'timeout', 'reset', 'slow'],
  list: ['transient', 'timeout', 'reset', 'slow'],
  remove: ['transient', 'timeout', 'reset', 'slow', 'lostResponse'],
};

/** Options of {@link FaultyBackend}. */
export interface FaultyBackendOptions {
  /** Probability that a call gets a fault, from 0 to 1 (default 0.1). */
  rate?: number;
  /** Seed of the fault sequence (default 1). */
  seed?: number | string;
  /** Relative weight of each kind (default 1 each); 0 turns a kind off. */
  weights?: Partial<Record<FaultKind, number>>;
  /** Calls that may fail (default: all but close). */
  ops?: readonly FaultyOp[];
  /** How long a 'timeout' waits before failing (default 20 ms). */
  timeoutMs?: number;
  /** How long a 'slow' answer is delayed (default 10 ms). */
  slowMs?: number;
  /** Time source for the waits, for tests. */
  clock?: Clock;
}

/** What a FaultyBackend did, for test reports. */
export interface FaultReport {
  /** Calls made, by operation. */
  calls: Record<FaultyOp, number>;
  /** Faults injected, by kind. */
  faults: Record<FaultKind, number>;
  /** Faults injected, by operation. */
  faultsByOp: Record<FaultyOp, number>;
  /** All faults injected. */
  totalFaults: number;
}

/** A transient error's HTTP status, as the clouds send them. */
const TRANSIENT_STATUSES = [500, 502, 503, 503, 429];

/**
 * Wraps a backend and makes a share of its calls fail on purpose (5xx answers, timeouts, connection
 * resets, slow answers, short reads, calls that took effect but report an error), to test that what
 * sits above copes. Faults come from a seeded generator, so a failing run repeats; stored bytes are
 * never altered. For tests only.
 */
export class FaultyBackend extends ForwardingBackend {
  /** Probability of a fault per call; may be changed at any time (0 stops the faults). */
  rate: number;
  readonly #random: () => number;
  readonly #weights: Record<FaultKind, number>;
  readonly #ops: ReadonlySet<FaultyOp>;
  readonly #timeoutMs: number;
  readonly #slowMs: number;
  readonly #clock: Clock;
  readonly #calls = zeroCounts(FAULTY_OPS);
  readonly #faults = zeroCounts(FAULT_KINDS);
  readonly #faultsByOp = zeroCounts(FAULTY_OPS);

  constructor(inner: Backend, options: FaultyBackendOptions = {}) {
    super(inner);
    this.rate = options.rate ?? 0.1;
    if (!(this.rate >= 0 && this.rate <= 1)) throw new InvalidInputError(`fault rate must be between 0 and 1, got ${this.rate}`);
    this.#random = seededRandom(options.seed ?? 1);
    this.#weights = { transient: 1, timeout: 1, reset: 1, slow: 1, truncated: 1, lostResponse: 1, ...options.weights };
    for (const [kind, w] of Object.entries(this.#weights)) {
      if (!FAULT_KINDS.includes(kind as FaultKind)) throw new InvalidInputError(`unknown fault kind ${JSON.stringify(kind)} (known: ${FAULT_KINDS.join(', ')})`);
      if (!(w >= 0)) throw new InvalidInputError(`weight of fault kind ${kind} must be a non-negative number, got ${w}`);
    }
    for (const op of options.ops ?? []) {
      if (!FAULTY_OPS.includes(op)) throw new InvalidInputError(`unknown operation ${JSON.stringify(op)} (known: ${FAULTY_OPS.join(', ')})`);
    }
    this.#ops = new Set(options.ops ?? FAULTY_OPS);
    this.#timeoutMs = options.timeoutMs ?? 20;
    this.#slowMs = options.slowMs ?? 10;
    this.#clock = options.clock ?? systemClock;
  }

  /** Counts of calls and injected faults so far. */
  report(): FaultReport {
    const totalFaults = Object.values(this.#faults).reduce((a, b) => a + b, 0);
    return { calls: { ...this.#calls }, faults: { ...this.#faults }, faultsByOp: { ...this.#faultsByOp }, totalFaults };
  }

  override async create(options: CallOptions = {}): Promise<void> {
    const fault = await this.#before('create', 'repository', options.signal);
    await this.inner.create(options);
    this.#after(fault, 'create', 'repository');
  }

  override async save(h: FileHandle, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = describeFile(h);
    const fault = await this.#before('save', file, options.signal);
    await this.inner.save(h, data, options);
    this.#after(fault, 'save', file);
  }

  override async saveFile(h: FileHandle, local: LocalFile, options: CallOptions = {}): Promise<void> {
    const file = describeFile(h);
    const fault = await this.#before('save', file, options.signal);
    await saveFromFile(this.inner, h, local, options);
    this.#after(fault, 'save', file);
  }

  override async load(h: FileHandle, options: LoadOptions = {}): Promise<Uint8Array> {
    const file = describeFile(h);
    const fault = await this.#before('load', file, options.signal);
    const data = await this.inner.load(h, options);
    if (fault !== 'truncated') return data;
    if (options.length === undefined) {
      // A whole-file read knows its size from the response headers: backends report the cut.
      const got = Math.floor(this.#random() * data.length);
      throw new IntegrityError(`load ${file}: injected fault: connection closed after ${got} of ${data.length} bytes`, { file });
    }
    // A range read that comes back short, as a careless HTTP client would hand it over.
    return data.slice(0, Math.floor(this.#random() * data.length));
  }

  /** A stream is read as loads of a few megabytes each, so that every fault of `load` applies to it. */
  override loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array> {
    return loadInPieces((o) => this.load(h, o), options, describeFile(h));
  }

  override async stat(h: FileHandle, options: CallOptions = {}): Promise<FileInfo> {
    const file = describeFile(h);
    await this.#before('stat', file, options.signal);
    return this.inner.stat(h, options);
  }

  override async remove(h: FileHandle, options: RemoveOptions = {}): Promise<void> {
    const file = describeFile(h);
    const fault = await this.#before('remove', file, options.signal);
    await this.inner.remove(h, options);
    this.#after(fault, 'remove', file);
  }

  /** A failing listing fails part-way: after a few entries, or at its end. */
  override async *list(type: FileType, options: CallOptions = {}): AsyncGenerator<FileInfo> {
    const fault = await this.#before('list', type, options.signal, true);
    const failAt = fault && fault !== 'slow' ? Math.floor(this.#random() * 8) : -1;
    let n = 0;
    for await (const info of this.inner.list(type, options)) {
      if (n++ === failAt) await this.#fail(fault!, 'list', type, options.signal);
      yield info;
    }
    if (failAt >= n) await this.#fail(fault!, 'list', type, options.signal);
  }

  /**
   * Counts the call and draws its fault. Faults that strike before the request (transient,
   * timeout, reset) are thrown here unless `defer`; slow ones wait here; the others are returned
   * for the caller to apply.
   */
  async #before(op: FaultyOp, file: string, signal: AbortSignal | undefined, defer = false): Promise<FaultKind | undefined> {
    throwIfAborted(signal);
    this.#calls[op]++;
    const fault = this.#draw(op);
    if (fault === undefined) return undefined;
    this.#faults[fault]++;
    this.#faultsByOp[op]++;
    if (fault === 'slow') {
      await this.#clock.sleep(this.#slowMs, signal);
      return fault;
    }
    if (!defer && (fault === 'transient' || fault === 'timeout' || fault === 'reset')) await this.#fail(fault, op, file, signal);
    return fault;
  }

  #after(fault: FaultKind | undefined, op: FaultyOp, file: string): void {
    if (fault !== 'lostResponse') return;
    throw new BackendError(`${op} ${file}: injected fault: connection lost before the response (the request took effect)`, { transient: true });
  }

  async #fail(fault: FaultKind, op: FaultyOp, file: string, signal: AbortSignal | undefined): Promise<never> {
    if (fault === 'timeout') {
      await this.#clock.sleep(this.#timeoutMs, signal);
      throw new BackendError(`${op} ${file}: injected fault: request timed out after ${this.#timeoutMs} ms`, { transient: true });
    }
    if (fault === 'reset') {
      // Raw network errors, shaped like Node's and undici's, as a backend might let them escape.
      if (this.#random() < 0.5) throw Object.assign(new Error('read ECONNRESET (injected fault)'), { code: 'ECONNRESET', syscall: 'read' });
      const socket = Object.assign(new Error('other side closed (injected fault)'), { code: 'UND_ERR_SOCKET' });
      throw new TypeError('fetch failed', { cause: socket });
    }
    const status = TRANSIENT_STATUSES[Math.floor(this.#random() * TRANSIENT_STATUSES.length)];
    throw new BackendError(`${op} ${file}: injected fault: HTTP ${status}`, { transient: true, status });
  }

  #draw(op: FaultyOp): FaultKind | undefined {
    if (!this.#ops.has(op) || this.rate === 0) return undefined;
    if (this.#random() >= this.rate) return undefined;
    const kinds = APPLICABLE[op].filter((k) => this.#weights[k] > 0);
    const total = kinds.reduce((sum, k) => sum + this.#weights[k], 0);
    if (total === 0) return undefined;
    let pick = this.#random() * total;
    for (const kind of kinds) {
      pick -= this.#weights[kind];
      if (pick < 0) return kind;
    }
    return kinds[kinds.length - 1];
  }
}

function zeroCounts<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

/** mulberry32: small, fast and good enough to spread faults; seeded from a number or a string. */
export function seededRandom(seed: number | string): () => number {
  let state = typeof seed === 'number' ? seed >>> 0 : fnv1a(seed);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
