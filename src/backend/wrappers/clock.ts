// Time as the wrappers see it: a replaceable clock, so tests run backoffs and throttling without
// waiting, and a sleep that an abort cuts short.

import { abortedErrorOf } from '../shared.ts';

/** Time as the wrappers see it; tests replace it to run backoffs and throttling without waiting. */
export interface Clock {
  /** Milliseconds on a monotonic scale. */
  now(): number;
  /** Resolves after `ms`; rejects with AbortedError at once when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Waits `ms` milliseconds, or rejects with AbortedError as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortedErrorOf(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortedErrorOf(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The real clock: performance.now() and setTimeout. */
export const systemClock: Clock = { now: () => performance.now(), sleep };
