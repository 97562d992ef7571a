// wrapBackend(): the wrappers stacked in the order they belong in (retry → limits → observe),
// as openBackend and the `stowage` command use them.

import type { Backend } from '../backend.ts';
import type { Logger } from '../../logger.ts';
import { LimitedBackend } from './limits.ts';
import type { LimitOptions, RateLimitOptions } from './limits.ts';
import { ObservedBackend, logObserver } from './observe.ts';
import type { BackendEvent, BackendObserver } from './observe.ts';
import { RetryBackend } from './retry.ts';
import type { RetryOptions } from './retry.ts';

/** Options of {@link wrapBackend}. */
export interface WrapOptions {
  /** Retry transient failures (default: on, with RetryOptions' defaults); false turns it off. */
  retry?: RetryOptions | false;
  /** Calls in flight at once (default: the backend's own `connections`). */
  connections?: number;
  /** Upload/download bandwidth caps in bytes per second. */
  rateLimit?: RateLimitOptions;
  /** Sees every request that reaches the backend, each retry attempt separately. */
  observe?: BackendObserver;
  /**
   * Logs retries, coalesced, and failures for good (warn, see RetryOptions.logger, which it is the
   * default of) and every request that reaches the backend (debug, one record per BackendEvent).
   */
  logger?: Logger;
}

/**
 * Stacks the wrappers, outermost first: retry → limits → observe → backend.
 *
 * - Retry is outermost so every attempt queues for a connection afresh: a call sleeping in its
 *   backoff holds no connection, and the others keep working (restic stacks them the same way).
 * - Limits sit below retry so each attempt's bytes count against the rate limit, as they cross
 *   the wire again.
 * - Observe is innermost so each event is one real request: its duration excludes queueing and
 *   throttling, and a call retried three times shows up as three events.
 */
export function wrapBackend(backend: Backend, options: WrapOptions = {}): Backend {
  let wrapped: Backend = backend;
  const observers = [options.observe, options.logger && logObserver(options.logger)].filter((o): o is BackendObserver => o !== undefined);
  if (observers.length === 1) wrapped = new ObservedBackend(wrapped, observers[0]!);
  else if (observers.length > 1) wrapped = new ObservedBackend(wrapped, (event: BackendEvent) => observers.forEach((o) => callSafely(o, event)));
  const limits: LimitOptions = { connections: options.connections ?? backend.connections, ...options.rateLimit };
  wrapped = new LimitedBackend(wrapped, limits);
  if (options.retry !== false) wrapped = new RetryBackend(wrapped, { logger: options.logger, ...options.retry });
  return wrapped;
}

/** One observer's failure must not keep the event from the next one (ObservedBackend ignores it too). */
function callSafely(observer: BackendObserver, event: BackendEvent): void {
  try {
    observer(event);
  } catch {
    // Deliberately ignored, as ObservedBackend does.
  }
}
