// Starts fake-gcs-server (built by .ci/servers/fake-gcs-server.sh) on 127.0.0.1 for one test
// file: a free port, plain http, objects in memory or in a temp folder. It speaks the JSON API
// the Node SDK uses and the XML download path the Go SDK (restic) reads through.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, track, waitUntilServing } from './minio.ts';

export interface FakeGcsServer {
  /** e.g. "http://127.0.0.1:41234": the Node SDK's apiEndpoint. */
  endpoint: string;
  /** "127.0.0.1:41234": the value for STORAGE_EMULATOR_HOST (Go SDK, restic). */
  host: string;
  port: number;
  /** With the filesystem backend: the folder objects are kept in. */
  dataDir?: string;
  stop(): Promise<void>;
}

export interface StartFakeGcsOptions {
  /** Keep objects on disk (-backend filesystem) instead of in memory. */
  filesystem?: boolean;
  /** Milliseconds to wait for the server to answer (default 60 s). */
  startupTimeoutMs?: number;
}

export const FAKE_GCS_BIN = join(process.env.STOWAGE_CACHE || '/var/cache/stowage', 'bin', 'fake-gcs-server');

export async function startFakeGcs(opts: StartFakeGcsOptions = {}): Promise<FakeGcsServer> {
  if (!existsSync(FAKE_GCS_BIN)) {
    throw new Error(`fake-gcs-server binary not found at ${FAKE_GCS_BIN}: run .ci/install-tools.sh (it builds it), or set STOWAGE_CACHE`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'stowage-fake-gcs-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const args = ['-scheme', 'http', '-host', '127.0.0.1', '-port', String(port), '-log-level', 'warn'];
  // Download and upload URLs the server hands out must point back at it, not at googleapis.com.
  args.push('-public-host', host, '-external-url', `http://${host}`);
  let dataDir: string | undefined;
  if (opts.filesystem) {
    dataDir = join(dir, 'data');
    await mkdir(dataDir);
    args.push('-backend', 'filesystem', '-filesystem-root', dataDir);
  } else {
    args.push('-backend', 'memory');
  }
  const child = spawn(FAKE_GCS_BIN, args, { cwd: dir, env: { PATH: process.env.PATH, HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  const { stop, output } = track(child, dir);
  const endpoint = `http://${host}`;
  try {
    await waitUntilServing(child, output, `${endpoint}/storage/v1/b`, { timeoutMs: opts.startupTimeoutMs ?? 60_000 });
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint, host, port, dataDir, stop };
}
