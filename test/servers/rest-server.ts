// Starts restic's rest-server (built by .ci/servers/rest-server.sh) on 127.0.0.1 for one test
// file: a free port, repositories in a temp dir, and the variants the tests need (append-only,
// basic auth, TLS, no upload verification).

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, selfSignedCert, track, waitUntilServing } from './minio.ts';

export interface RestServer {
  /** e.g. "http://127.0.0.1:41234" (no trailing slash, no credentials) */
  url: string;
  port: number;
  /** The folder the server keeps repositories in: repository "/r1/" is <dataDir>/r1. */
  dataDir: string;
  /** With `auth`: the user and password the server accepts. */
  username?: string;
  password?: string;
  /** With `tls`: the server's self-signed certificate (PEM) and its file (restic --cacert). */
  caCert?: string;
  caCertFile?: string;
  stop(): Promise<void>;
}

export interface StartRestServerOptions {
  /** --append-only: nothing but locks can be deleted. */
  appendOnly?: boolean;
  /** Require basic auth (an htpasswd file with one user); otherwise --no-auth. */
  auth?: boolean;
  tls?: boolean;
  /** --no-verify-upload: accept files whose name is not the SHA-256 of their bytes. */
  noVerifyUpload?: boolean;
  startupTimeoutMs?: number;
}

export const REST_SERVER_BIN = join(process.env.STOWAGE_CACHE || '/var/cache/stowage', 'bin', 'rest-server');

const USER = 'stowage';
const PASSWORD = 'rest pass: w/ odd chars @:%';

export async function startRestServer(opts: StartRestServerOptions = {}): Promise<RestServer> {
  if (!existsSync(REST_SERVER_BIN)) {
    throw new Error(`rest-server binary not found at ${REST_SERVER_BIN}: run .ci/install-tools.sh (it builds it), or set STOWAGE_CACHE`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'stowage-rest-server-'));
  const dataDir = join(dir, 'data');
  await mkdir(dataDir);
  const port = await freePort();
  const args = ['--listen', `127.0.0.1:${port}`, '--path', dataDir];
  if (opts.appendOnly) args.push('--append-only');
  if (opts.noVerifyUpload) args.push('--no-verify-upload');
  if (opts.auth) {
    // rest-server reads bcrypt and {SHA} entries; {SHA} needs no htpasswd tool.
    const htpasswd = join(dir, 'htpasswd');
    const sha = createHash('sha1').update(PASSWORD).digest('base64');
    await writeFile(htpasswd, `${USER}:{SHA}${sha}\n`, { mode: 0o600 });
    args.push('--htpasswd-file', htpasswd);
  } else {
    args.push('--no-auth');
  }
  let caCert: string | undefined;
  let caCertFile: string | undefined;
  if (opts.tls) {
    caCertFile = join(dir, 'server.crt');
    const keyFile = join(dir, 'server.key');
    await selfSignedCert(caCertFile, keyFile);
    caCert = await readFile(caCertFile, 'utf8');
    args.push('--tls', '--tls-cert', caCertFile, '--tls-key', keyFile);
  }
  const child = spawn(REST_SERVER_BIN, args, { env: { PATH: process.env.PATH, HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  const { stop, output } = track(child, dir);
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  try {
    // rest-server has no health endpoint; any answer (405 for GET /, 401 with auth) means it is up.
    await waitUntilServing(child, output, `${url}/`, { timeoutMs: opts.startupTimeoutMs ?? 60_000, ca: caCert, anyStatus: true });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    port,
    dataDir,
    username: opts.auth ? USER : undefined,
    password: opts.auth ? PASSWORD : undefined,
    caCert,
    caCertFile,
    stop,
  };
}
