// Starts azurite's blob service (npm devDependency) on 127.0.0.1 for one test file: a free
// port, blobs in memory or in a temp folder, optionally https with a fresh self-signed
// certificate (restic's azure backend speaks only https).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, selfSignedCert, track, waitUntilServing } from './minio.ts';

export interface AzuriteServer {
  /** The blob service URL of the account, e.g. "http://127.0.0.1:41234/devstoreaccount1". */
  endpoint: string;
  port: number;
  accountName: string;
  accountKey: string;
  /** A connection string for the same account and endpoint. */
  connectionString: string;
  /** With `tls`: the self-signed certificate (PEM) and its file (restic --cacert). */
  caCert?: string;
  caCertFile?: string;
  /** With `location`: the folder azurite keeps its data in. */
  dataDir?: string;
  stop(): Promise<void>;
}

export interface StartAzuriteOptions {
  /** Keep blobs on disk (--location) instead of in memory. */
  onDisk?: boolean;
  tls?: boolean;
  /**
   * With `tls`: also accept Azure AD bearer tokens (--oauth basic). azurite checks their
   * audience, issuer and lifetime, not their signature.
   */
  oauth?: boolean;
  /** Milliseconds to wait for the server to answer (default 60 s). */
  startupTimeoutMs?: number;
}

export const AZURITE_BIN = resolve(import.meta.dirname, '../../node_modules/.bin/azurite-blob');

/** azurite's built-in development account (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export async function startAzurite(opts: StartAzuriteOptions = {}): Promise<AzuriteServer> {
  if (!existsSync(AZURITE_BIN)) {
    throw new Error(`azurite not found at ${AZURITE_BIN}: it is an npm devDependency, run npm install`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'stowage-azurite-'));
  const port = await freePort();
  // --skipApiVersionCheck: the SDK is newer than the API versions azurite knows.
  const args = ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--silent', '--skipApiVersionCheck', '--disableTelemetry'];
  let dataDir: string | undefined;
  if (opts.onDisk) {
    dataDir = join(dir, 'data');
    await mkdir(dataDir);
    args.push('--location', dataDir);
  } else {
    args.push('--inMemoryPersistence');
  }
  let caCert: string | undefined;
  let caCertFile: string | undefined;
  if (opts.tls) {
    caCertFile = join(dir, 'server.crt');
    const keyFile = join(dir, 'server.key');
    await selfSignedCert(caCertFile, keyFile);
    caCert = await readFile(caCertFile, 'utf8');
    args.push('--cert', caCertFile, '--key', keyFile);
    if (opts.oauth) args.push('--oauth', 'basic');
  }
  // azurite's launcher is a Node script; it runs on the Node that runs the tests.
  const child = spawn(process.execPath, [AZURITE_BIN, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { stop, output } = track(child, dir);
  const scheme = opts.tls ? 'https' : 'http';
  const endpoint = `${scheme}://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  try {
    // Any answer (an unauthenticated list gets 403) means the service is up.
    await waitUntilServing(child, output, `${endpoint}?comp=list`, { timeoutMs: opts.startupTimeoutMs ?? 60_000, ca: caCert, anyStatus: true });
  } catch (err) {
    await stop();
    throw err;
  }
  const connectionString =
    `DefaultEndpointsProtocol=${scheme};AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`;
  return { endpoint, port, accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, connectionString, caCert, caCertFile, dataDir, stop };
}
