// Starts a real MinIO server (built by .ci/servers/minio.sh) on 127.0.0.1 for one test file:
// a free port, data in a temp dir, optionally TLS with a fresh self-signed certificate.

import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface MinioServer {
  /** e.g. "http://127.0.0.1:41234" or "https://127.0.0.1:41234" */
  endpoint: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  /** With TLS: the server's self-signed certificate (PEM), to pass as CA; its file for restic --cacert. */
  caCert?: string;
  caCertFile?: string;
  /** The folder MinIO stores into (objects appear as files below <dataDir>/<bucket>/). */
  dataDir: string;
  stop(): Promise<void>;
}

export interface StartMinioOptions {
  tls?: boolean;
  /** Milliseconds to wait for the server to answer its health check (default 60 s). */
  startupTimeoutMs?: number;
}

export const MINIO_BIN = join(process.env.STOWAGE_CACHE || '/var/cache/stowage', 'bin', 'minio');

const ACCESS_KEY = 'stowage-test';
// MinIO wants at least 8 characters.
const SECRET_KEY = 'stowage-test-secret-9f3a1c';

export async function startMinio(opts: StartMinioOptions = {}): Promise<MinioServer> {
  if (!existsSync(MINIO_BIN)) {
    throw new Error(`MinIO binary not found at ${MINIO_BIN}: run .ci/install-tools.sh (it builds it), or set STOWAGE_CACHE`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'stowage-minio-'));
  const dataDir = join(dir, 'data');
  const certsDir = join(dir, 'certs');
  await mkdir(dataDir);
  await mkdir(certsDir);
  let caCert: string | undefined;
  let caCertFile: string | undefined;
  if (opts.tls) {
    caCertFile = join(certsDir, 'public.crt');
    await selfSignedCert(caCertFile, join(certsDir, 'private.key'));
    caCert = await readFile(caCertFile, 'utf8');
  }
  const [port, consolePort] = [await freePort(), await freePort()];
  const scheme = opts.tls ? 'https' : 'http';
  const child = spawn(
    MINIO_BIN,
    ['server', dataDir, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--certs-dir', certsDir, '--quiet'],
    {
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        MINIO_ROOT_USER: ACCESS_KEY,
        MINIO_ROOT_PASSWORD: SECRET_KEY,
        // No update checks or phoning home from a test.
        MINIO_UPDATE: 'off',
        MINIO_CALLHOME_ENABLE: 'off',
        // Allows the data folder to be on the root disk.
        MINIO_CI_CD: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const { stop, output } = track(child, dir);
  try {
    // /minio/health/live answers 200 before the object layer and IAM are up (requests then
    // get 503); /minio/health/cluster waits for both.
    const health = `${scheme}://127.0.0.1:${port}/minio/health`;
    const wait = { timeoutMs: opts.startupTimeoutMs ?? 60_000, ca: caCert };
    await waitUntilServing(child, output, `${health}/live`, wait);
    await waitUntilServing(child, output, `${health}/cluster`, wait);
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint: `${scheme}://127.0.0.1:${port}`, port, accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY, caCert, caCertFile, dataDir, stop };
}

/** A self-signed certificate valid for 127.0.0.1 (and localhost), written as PEM files. */
export async function selfSignedCert(certFile: string, keyFile: string): Promise<void> {
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-keyout', keyFile, '-out', certFile, '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const running = new Set<ChildProcess>();
// A test file that dies mid-run must not leave servers behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface TrackedProcess {
  /** Idempotent: kills the server (TERM, then KILL after 10 s), waits for it, removes its folder. */
  stop(): Promise<void>;
  /** The last few KB the server printed, for error messages. */
  output(): string;
}

export function track(child: ChildProcess, dir: string): TrackedProcess {
  running.add(child);
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      running.delete(child);
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  return { stop, output: () => output };
}

export interface WaitOptions {
  timeoutMs: number;
  /** CA for an https URL. */
  ca?: string;
  /** Any HTTP answer counts (for servers without a health endpoint); otherwise only 2xx. */
  anyStatus?: boolean;
}

/** Polls `url` until it answers; fails early, with the server's output, if the process exits. */
export async function waitUntilServing(child: ChildProcess, output: () => string, url: string, opts: WaitOptions): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${child.spawnfile} exited (${child.exitCode ?? child.signalCode}) before serving ${url}: ${output()}`);
    }
    const status = await probe(url, opts.ca);
    if (status !== undefined && (opts.anyStatus || (status >= 200 && status < 300))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${child.spawnfile} did not serve ${url} within ${opts.timeoutMs / 1000} s: ${output()}`);
}

function probe(url: string, ca?: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(url, { method: 'GET', ca, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}
