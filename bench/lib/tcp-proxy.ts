// A small TCP proxy for tests and benchmarks: it listens on 127.0.0.1 and forwards every
// connection to a server on 127.0.0.1, and on the way it can
//   - add latency (each chunk is held for half the round trip in each direction; chunks in
//     flight overlap, so a stream is delayed, not slowed),
//   - cap the bandwidth of each direction (one budget shared by all connections),
//   - count HTTP/1.1 requests (request lines) and the bytes of both directions,
//   - flip one byte in the body of the N-th matching upload, to show a server refuses it.
// It reads the client side as HTTP/1.1 (Content-Length and chunked bodies, keep-alive) only to
// count and find bodies; the bytes pass unchanged except the one flipped. Everything it holds is
// bounded: connections, bytes queued per direction (reading pauses), the request log.
// Loopback only: it refuses any other address.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface TcpProxyOptions {
  /** The server's port on 127.0.0.1. */
  targetPort: number;
  /** The server's address: loopback only (default 127.0.0.1). */
  targetHost?: string;
  /** The port to listen on (default: any free one). */
  port?: number;
  /** Added round-trip time in ms: each chunk waits half of it in each direction (default 0). */
  latencyMs?: number;
  /** Bytes per second in each direction, shared by all connections (default: no cap). */
  bytesPerSecond?: number;
  /** Connections open at once; more are refused (default 256). */
  maxConnections?: number;
}

/** What the proxy saw of one request (the last {@link REQUEST_LOG_SIZE} are kept). */
export interface ProxiedRequest {
  method: string;
  /** The request target, e.g. "/bucket/key?uploads". */
  path: string;
  /** Header names in lowercase; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The body length: Content-Length, or the decoded size of a chunked body once it has passed. */
  bodyBytes: number;
  /** Whether this request's body had a byte flipped. */
  corrupted: boolean;
}

export interface TcpProxyStats {
  /** Connections accepted (refused ones not counted). */
  connections: number;
  /** HTTP request lines seen from clients. */
  requests: number;
  /** Bytes from the clients to the server. */
  bytesUp: number;
  /** Bytes from the server to the clients. */
  bytesDown: number;
  /** Bodies with a byte flipped so far. */
  corrupted: number;
}

export interface CorruptOptions {
  /** Which matching upload to damage, counting from this call: 1 = the next one (default 1). */
  nth?: number;
  /** Which requests count as uploads (default: PUT or POST with a non-empty body). */
  match?: (req: Omit<ProxiedRequest, 'bodyBytes' | 'corrupted'> & { contentLength: number | undefined }) => boolean;
  /** Body offset of the byte to flip (default: the middle of a Content-Length body, else 0). */
  offset?: number;
}

export interface TcpProxy {
  /** "127.0.0.1" */
  host: string;
  port: number;
  /** "http://127.0.0.1:<port>" */
  url: string;
  stats(): TcpProxyStats;
  /** The requests seen, oldest first (at most {@link REQUEST_LOG_SIZE}). */
  requests(): ProxiedRequest[];
  /** Zeroes the counters and the request log. */
  reset(): void;
  /** Flips one byte (XOR 0xff) in the body of the nth upload from now; one damage armed at a time. */
  corruptUpload(options?: CorruptOptions): void;
  /** Change latency or the bandwidth cap for data that arrives from now on. */
  configure(options: Pick<TcpProxyOptions, 'latencyMs' | 'bytesPerSecond'>): void;
  /** Stops listening, closes every connection, cancels every held chunk. */
  close(): Promise<void>;
}

export const REQUEST_LOG_SIZE = 1000;
/** Bytes a direction of one connection may hold before its reading pauses. */
const MAX_QUEUED = 1 << 20;
/** A request head larger than this is not parsed (the connection is just passed through). */
const MAX_HEAD = 64 * 1024;
/** Bandwidth is accounted in slices of at most this many bytes, so a big chunk is paced smoothly. */
const SLICE = 16 * 1024;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const targetHost = options.targetHost ?? '127.0.0.1';
  if (!LOOPBACK.has(targetHost)) throw new Error(`tcp-proxy forwards to loopback only, not ${targetHost}`);
  if (!Number.isInteger(options.targetPort) || options.targetPort < 1 || options.targetPort > 65535) throw new Error(`bad targetPort ${options.targetPort}`);
  const maxConnections = options.maxConnections ?? 256;
  let latencyMs = checkNonNegative(options.latencyMs ?? 0, 'latencyMs');
  let bytesPerSecond = options.bytesPerSecond === undefined ? undefined : checkPositive(options.bytesPerSecond, 'bytesPerSecond');

  const stopping = new AbortController();
  const sockets = new Set<Socket>();
  const stats: TcpProxyStats = { connections: 0, requests: 0, bytesUp: 0, bytesDown: 0, corrupted: 0 };
  let log: ProxiedRequest[] = [];
  // Per direction: when the shared bandwidth budget is next free (ms, performance.now()).
  const nextFree = { up: 0, down: 0 };
  let armed: { remaining: number; match: NonNullable<CorruptOptions['match']>; offset: number | undefined } | undefined;

  const server: Server = createServer((client) => {
    if (sockets.size >= 2 * maxConnections) {
      client.destroy();
      return;
    }
    stats.connections++;
    const upstream = connect({ host: targetHost, port: options.targetPort });
    sockets.add(client);
    sockets.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => {
      sockets.delete(client);
      end();
    });
    upstream.on('close', () => {
      sockets.delete(upstream);
      end();
    });
    client.on('error', end);
    upstream.on('error', end);
    const parser = new RequestParser({
      onRequest: (req) => {
        stats.requests++;
        log.push(req);
        if (log.length > REQUEST_LOG_SIZE) log = log.slice(-REQUEST_LOG_SIZE);
        if (!armed) return undefined;
        const upload = req.contentLength !== 0 && (req.contentLength !== undefined || req.headers['transfer-encoding']?.toLowerCase().includes('chunked'));
        if (!upload || !armed.match({ ...req })) return undefined;
        if (--armed.remaining > 0) return undefined;
        const offset = armed.offset ?? (req.contentLength !== undefined ? Math.floor(req.contentLength / 2) : 0);
        armed = undefined;
        return offset;
      },
      onCorrupted: (req) => {
        req.corrupted = true;
        stats.corrupted++;
      },
    });
    pipe(client, upstream, 'up', (chunk) => parser.feed(chunk));
    pipe(upstream, client, 'down', (chunk) => chunk);
  });
  server.maxConnections = maxConnections;

  /** Forwards `from` → `to`, each chunk (after `transform`) held for latency and bandwidth. */
  function pipe(from: Socket, to: Socket, dir: 'up' | 'down', transform: (chunk: Buffer) => Buffer): void {
    const queue: { chunk: Buffer; due: number }[] = [];
    let queued = 0;
    let pumping = false;
    let ended = false;
    from.on('data', (raw: Buffer) => {
      if (dir === 'up') stats.bytesUp += raw.length;
      else stats.bytesDown += raw.length;
      const chunk = transform(raw);
      const now = performance.now();
      let due = now + latencyMs / 2;
      if (bytesPerSecond !== undefined) {
        for (let at = 0; at < chunk.length; at += SLICE) {
          const start = Math.max(now, nextFree[dir]);
          nextFree[dir] = start + (Math.min(SLICE, chunk.length - at) * 1000) / bytesPerSecond;
        }
        due = Math.max(due, nextFree[dir]);
      }
      queue.push({ chunk, due });
      queued += chunk.length;
      if (queued > MAX_QUEUED) from.pause();
      void pump();
    });
    from.on('end', () => {
      ended = true;
      void pump();
    });
    async function pump(): Promise<void> {
      if (pumping) return;
      pumping = true;
      try {
        while (queue.length > 0 && !stopping.signal.aborted && !to.destroyed) {
          const next = queue[0]!;
          const wait = next.due - performance.now();
          if (wait > 0) await sleep(wait, undefined, { signal: stopping.signal });
          queue.shift();
          queued -= next.chunk.length;
          if (!to.write(next.chunk)) await waitDrain(to, stopping.signal);
          if (queued <= MAX_QUEUED / 2 && from.isPaused()) from.resume();
        }
        if (ended && queue.length === 0 && !to.destroyed) to.end();
      } catch {
        // Stopped (the sleep was cancelled) or the socket went away: nothing more to forward.
      } finally {
        pumping = false;
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('tcp-proxy: no port');
  const port = address.port;

  return {
    host: '127.0.0.1',
    port,
    url: `http://127.0.0.1:${port}`,
    stats: () => ({ ...stats }),
    requests: () => log.slice(),
    reset() {
      Object.assign(stats, { connections: 0, requests: 0, bytesUp: 0, bytesDown: 0, corrupted: 0 });
      log = [];
    },
    corruptUpload(o = {}) {
      const nth = o.nth ?? 1;
      if (!Number.isInteger(nth) || nth < 1) throw new Error(`nth must be a positive integer, got ${nth}`);
      if (o.offset !== undefined) checkNonNegative(o.offset, 'offset');
      const match = o.match ?? ((req) => req.method === 'PUT' || req.method === 'POST');
      armed = { remaining: nth, match, offset: o.offset };
    },
    configure(o) {
      if (o.latencyMs !== undefined) latencyMs = checkNonNegative(o.latencyMs, 'latencyMs');
      if ('bytesPerSecond' in o) bytesPerSecond = o.bytesPerSecond === undefined ? undefined : checkPositive(o.bytesPerSecond, 'bytesPerSecond');
    },
    async close() {
      stopping.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      sockets.clear();
      await closed;
    },
  };
}

function waitDrain(socket: Socket, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      signal.removeEventListener('abort', done);
      if (signal.aborted) reject(new Error('stopped'));
      else resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function checkNonNegative(n: number, what: string): number {
  if (!Number.isFinite(n) || n < 0) throw new Error(`${what} must be a non-negative number, got ${n}`);
  return n;
}

function checkPositive(n: number, what: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${what} must be a positive number, got ${n}`);
  return n;
}

type ParsedHead = Omit<ProxiedRequest, 'bodyBytes' | 'corrupted'> & { contentLength: number | undefined };

interface ParserHooks {
  /** A request head was read; returns the body offset of a byte to flip, or undefined. */
  onRequest(req: ProxiedRequest & { contentLength: number | undefined }): number | undefined;
  onCorrupted(req: ProxiedRequest): void;
}

/**
 * Follows the client side of an HTTP/1.1 connection: heads, Content-Length bodies, chunked bodies
 * (with trailers). Anything it cannot follow (an oversized head, a protocol switch) ends the
 * parsing for that connection; the bytes still pass.
 */
class RequestParser {
  #state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'opaque' = 'head';
  #line = Buffer.alloc(0);
  #remaining = 0;
  #bodyAt = 0;
  #flipAt: number | undefined;
  #current: ProxiedRequest | undefined;
  readonly #hooks: ParserHooks;

  constructor(hooks: ParserHooks) {
    this.#hooks = hooks;
  }

  /** Returns the chunk to forward: the same buffer, or a copy with one byte flipped. */
  feed(chunk: Buffer): Buffer {
    let out = chunk;
    let i = 0;
    while (i < chunk.length && this.#state !== 'opaque') {
      switch (this.#state) {
        case 'head':
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers': {
          const nl = chunk.indexOf(0x0a, i);
          const stop = nl === -1 ? chunk.length : nl + 1;
          this.#line = Buffer.concat([this.#line, chunk.subarray(i, stop)]);
          i = stop;
          if (this.#line.length > MAX_HEAD) {
            this.#state = 'opaque';
            break;
          }
          if (nl !== -1) this.#lineDone();
          break;
        }
        case 'body':
        case 'chunk-data': {
          const n = Math.min(this.#remaining, chunk.length - i);
          if (this.#flipAt !== undefined && this.#flipAt >= this.#bodyAt && this.#flipAt < this.#bodyAt + n) {
            if (out === chunk) out = Buffer.from(chunk);
            const at = i + (this.#flipAt - this.#bodyAt);
            out[at] = out[at]! ^ 0xff;
            this.#flipAt = undefined;
            this.#hooks.onCorrupted(this.#current!);
          }
          this.#bodyAt += n;
          this.#remaining -= n;
          i += n;
          if (this.#remaining === 0) {
            if (this.#state === 'body') this.#endRequest();
            else this.#state = 'chunk-end';
          }
          break;
        }
      }
    }
    return out;
  }

  #lineDone(): void {
    if (this.#state === 'head') {
      // The head ends at an empty line; until then lines accumulate.
      if (!this.#line.subarray(-4).equals(Buffer.from('\r\n\r\n')) && !this.#line.subarray(-2).equals(Buffer.from('\n\n'))) {
        if (this.#line.toString('latin1').trim() === '') this.#line = Buffer.alloc(0); // stray CRLF between requests
        return;
      }
      const head = parseHead(this.#line.toString('latin1'));
      this.#line = Buffer.alloc(0);
      if (!head) {
        this.#state = 'opaque';
        return;
      }
      const req: ProxiedRequest & { contentLength: number | undefined } = { ...head, bodyBytes: head.contentLength ?? 0, corrupted: false };
      this.#current = req;
      this.#bodyAt = 0;
      this.#flipAt = this.#hooks.onRequest(req);
      delete (req as { contentLength?: number }).contentLength;
      if (head.headers.upgrade !== undefined || head.method === 'CONNECT') this.#state = 'opaque';
      else if (head.headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
        req.bodyBytes = 0;
        this.#state = 'chunk-size';
      } else if ((head.contentLength ?? 0) > 0) {
        this.#remaining = head.contentLength!;
        this.#state = 'body';
      } else this.#endRequest();
      return;
    }
    const line = this.#line.toString('latin1').trim();
    this.#line = Buffer.alloc(0);
    if (this.#state === 'chunk-end') {
      this.#state = 'chunk-size';
      return;
    }
    if (this.#state === 'chunk-size') {
      const size = parseInt(line.split(';', 1)[0]!, 16);
      if (!Number.isSafeInteger(size) || size < 0) {
        this.#state = 'opaque';
        return;
      }
      if (size === 0) {
        this.#state = 'trailers';
        return;
      }
      this.#current!.bodyBytes += size;
      this.#remaining = size;
      this.#state = 'chunk-data';
      return;
    }
    // trailers: until an empty line
    if (line === '') this.#endRequest();
  }

  #endRequest(): void {
    this.#state = 'head';
    this.#current = undefined;
    this.#flipAt = undefined;
  }
}

function parseHead(text: string): ParsedHead | undefined {
  const lines = text.split(/\r?\n/);
  const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0]!.trim());
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const cl = headers['content-length'];
  const contentLength = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : undefined;
  return { method: m[1]!, path: m[2]!, headers, contentLength };
}
