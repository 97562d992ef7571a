// Small concurrency helpers: bounded parallel map and a counting semaphore.

/** Runs fn over items with at most `limit` calls in flight; rejects on the first failure. */
export async function mapLimit<T, R>(items: Iterable<T>, limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const list = Array.isArray(items) ? (items as T[]) : [...items];
  const out = new Array<R>(list.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < list.length) {
      const i = next++;
      try {
        out[i] = await fn(list[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, list.length)) }, worker));
  return out;
}

/**
 * At most n holders at once; the rest wait in order. The queue has a moving head, so a long one
 * (a big tree queues thousands of folders) costs nothing per release.
 */
export class Semaphore {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  #head = 0;
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((r) => this.#waiters.push(r));
  }
  release(): void {
    if (this.#head < this.#waiters.length) {
      this.#waiters[this.#head++]!();
      if (this.#head > 1024 && this.#head * 2 > this.#waiters.length) {
        this.#waiters.splice(0, this.#head);
        this.#head = 0;
      }
      return;
    }
    this.#waiters.length = 0;
    this.#head = 0;
    this.#free++;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
