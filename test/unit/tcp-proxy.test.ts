// The test TCP proxy (bench/lib/tcp-proxy.ts) against a plain HTTP server on 127.0.0.1: request
// and byte counts over keep-alive (Content-Length and chunked bodies), latency, the bandwidth cap,
// one flipped byte in the N-th upload, and a clean stop with connections open.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, Agent, type Server } from 'node:http';
import { createConnection } from 'node:net';
import { startTcpProxy, type TcpProxy } from '../../bench/lib/tcp-proxy.ts';

interface Received {
  method: string;
  url: string;
  body: Buffer;
}

let server: Server;
let serverPort = 0;
const received: Received[] = [];
let serverBytesIn = 0;

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method!, url: req.url!, body });
      const answer = Buffer.from(`got ${body.length}`);
      res.writeHead(200, { 'Content-Length': answer.length });
      res.end(answer);
    });
  });
  server.on('connection', (s) => s.on('data', (d: Buffer) => (serverBytesIn += d.length)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverPort = (server.address() as { port: number }).port;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** One request through `agent`; resolves with the status, the answer and the elapsed ms. */
function send(proxy: TcpProxy, agent: Agent, method: string, path: string, body?: Buffer, chunked = false): Promise<{ status: number; text: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {};
    if (body && !chunked) headers['Content-Length'] = body.length;
    const req = request({ host: proxy.host, port: proxy.port, method, path, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString(), ms: performance.now() - started }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body && chunked) {
      // Three chunks, so the chunked framing is really followed.
      const third = Math.ceil(body.length / 3);
      for (let at = 0; at < body.length; at += third) req.write(body.subarray(at, at + third));
    }
    req.end(body && !chunked ? body : undefined);
  });
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
}

describe('tcp proxy', () => {
  it('counts requests and bytes both ways over one keep-alive connection', async () => {
    const proxy = await startTcpProxy({ targetPort: serverPort });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      received.length = 0;
      serverBytesIn = 0;
      await send(proxy, agent, 'GET', '/a');
      await send(proxy, agent, 'PUT', '/b', pattern(10_000));
      await send(proxy, agent, 'POST', '/c', pattern(5_000), true);
      await send(proxy, agent, 'GET', '/d');
      const stats = proxy.stats();
      assert.equal(stats.requests, 4);
      assert.equal(stats.connections, 1);
      assert.equal(stats.bytesUp, serverBytesIn, 'every byte the client sent reached the server');
      assert.ok(stats.bytesUp > 15_000);
      assert.ok(stats.bytesDown > 0);
      assert.equal(stats.corrupted, 0);
      const log = proxy.requests();
      assert.deepEqual(log.map((r) => [r.method, r.path, r.bodyBytes]), [['GET', '/a', 0], ['PUT', '/b', 10_000], ['POST', '/c', 5_000], ['GET', '/d', 0]]);
      assert.equal(log[1]!.headers['content-length'], '10000');
      assert.ok(received[1]!.body.equals(pattern(10_000)) && received[2]!.body.equals(pattern(5_000)), 'bodies pass unchanged');
      proxy.reset();
      assert.deepEqual(proxy.stats(), { connections: 0, requests: 0, bytesUp: 0, bytesDown: 0, corrupted: 0 });
    } finally {
      agent.destroy();
      await proxy.close();
    }
  });

  it('adds the round-trip latency to each request, and can be changed', async () => {
    const proxy = await startTcpProxy({ targetPort: serverPort, latencyMs: 150 });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      await send(proxy, agent, 'GET', '/warm'); // the connection is made (its handshake is not delayed)
      for (let i = 0; i < 3; i++) {
        const { ms } = await send(proxy, agent, 'GET', `/slow${i}`);
        assert.ok(ms >= 140, `a round trip took ${ms.toFixed(0)} ms with 150 ms latency`);
      }
      proxy.configure({ latencyMs: 0 });
      const { ms } = await send(proxy, agent, 'GET', '/fast');
      assert.ok(ms < 140, `without latency a round trip took ${ms.toFixed(0)} ms`);
    } finally {
      agent.destroy();
      await proxy.close();
    }
  });

  it('caps the bandwidth of an upload', async () => {
    const rate = 512 * 1024;
    const proxy = await startTcpProxy({ targetPort: serverPort, bytesPerSecond: rate });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const body = pattern(256 * 1024);
      const { ms, text } = await send(proxy, agent, 'PUT', '/big', body);
      assert.equal(text, `got ${body.length}`);
      // 256 KiB at 512 KiB/s: about 500 ms (the first slice goes at once).
      assert.ok(ms >= 400, `256 KiB at 512 KiB/s took ${ms.toFixed(0)} ms`);
      assert.ok(ms < 5000, `256 KiB at 512 KiB/s took ${ms.toFixed(0)} ms`);
      proxy.configure({ bytesPerSecond: undefined });
      const fast = await send(proxy, agent, 'PUT', '/big2', body);
      assert.ok(fast.ms < ms, `uncapped: ${fast.ms.toFixed(0)} ms, capped: ${ms.toFixed(0)} ms`);
    } finally {
      agent.destroy();
      await proxy.close();
    }
  });

  it('flips one byte in the body of the n-th matching upload, and only there', async () => {
    const proxy = await startTcpProxy({ targetPort: serverPort });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      received.length = 0;
      const body = pattern(40_000);
      proxy.corruptUpload({ nth: 2, match: (req) => req.path.startsWith('/up') });
      await send(proxy, agent, 'PUT', '/other', body); // does not match
      await send(proxy, agent, 'PUT', '/up1', body); // first match: left alone
      await send(proxy, agent, 'PUT', '/up2', body); // second: damaged
      await send(proxy, agent, 'PUT', '/up3', body); // disarmed again
      const diffs = received.map((r) => [...r.body].flatMap((b, i) => (b === body[i] ? [] : [i])));
      assert.deepEqual(diffs, [[], [], [20_000], []]);
      assert.equal(received[2]!.body[20_000], body[20_000]! ^ 0xff);
      assert.equal(proxy.stats().corrupted, 1);
      assert.deepEqual(proxy.requests().map((r) => r.corrupted), [false, false, true, false]);

      // A chunked body, at a chosen offset that falls in the second chunk.
      received.length = 0;
      proxy.corruptUpload({ offset: 15_000 });
      await send(proxy, agent, 'POST', '/chunked', body, true);
      assert.deepEqual([...received[0]!.body].flatMap((b, i) => (b === body[i] ? [] : [i])), [15_000]);
    } finally {
      agent.destroy();
      await proxy.close();
    }
  });

  it('stops cleanly with connections open and data held, and forwards to loopback only', async () => {
    const proxy = await startTcpProxy({ targetPort: serverPort, latencyMs: 10_000 });
    const socket = createConnection({ host: proxy.host, port: proxy.port });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    const started = performance.now();
    await proxy.close();
    await closed;
    assert.ok(performance.now() - started < 2000, 'close does not wait for held chunks');
    await assert.rejects(startTcpProxy({ targetPort: serverPort, targetHost: '10.0.0.1' }), /loopback only/);
  });
});
