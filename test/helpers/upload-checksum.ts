// What every driver's upload-checksum test does, against its real server through the TCP proxy
// (bench/lib/tcp-proxy.ts) that flips one byte of an upload body on the way:
//   - with the checksum (the driver as shipped): the server refuses the damaged upload, the
//     driver reports a transient BackendError, the retry wrapper sends it again, and the stored
//     object is byte-exact;
//   - without it (the driver made with `uploadChecksums: false`; for REST, a rest-server that does
//     not verify uploads): the same damage is stored.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, FileHandle } from '../../src/backend/backend.ts';
import { RetryBackend, type RetryInfo } from '../../src/backend/wrappers/retry.ts';
import { BackendError } from '../../src/errors.ts';
import type { CorruptOptions, ProxiedRequest, TcpProxy } from '../../bench/lib/tcp-proxy.ts';

export interface ChecksumCase {
  /** A driver whose endpoint is the proxy; its container exists. */
  backend: Backend;
  proxy: TcpProxy;
  /** Which request carries the file's bytes (other uploads — logins, upload URLs — pass). */
  match: NonNullable<CorruptOptions['match']>;
  /** Size of the file saved (default 96 KiB). */
  size?: number;
  /** Body offset of the byte to flip (default: the proxy's, the middle of a Content-Length body). */
  offset?: number;
  /**
   * Save from a local file through the driver's own `saveFile` (which reads the file as it
   * sends it) instead of `save`; the request must then still carry a Content-Length.
   */
  fromFile?: boolean;
}

/** Saves `data` as `h` through `backend.save`, or with `fromFile` through its `saveFile` from a temporary file. */
async function saveIt(backend: Backend, h: FileHandle, data: Uint8Array, fromFile: boolean | undefined): Promise<void> {
  if (!fromFile) return backend.save(h, data);
  assert.equal(typeof backend.saveFile, 'function', 'the backend (beneath its wrappers) saves files itself');
  const dir = await mkdtemp(join(tmpdir(), 'stowage-checksum-'));
  try {
    const path = join(dir, 'pack');
    await writeFile(path, data);
    await backend.saveFile!(h, { path, size: data.length });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function newFile(size: number): { h: FileHandle; data: Uint8Array } {
  const data = new Uint8Array(randomBytes(size));
  return { h: { type: 'data', name: createHash('sha256').update(data).digest('hex') }, data };
}

/**
 * Saves through the retry wrapper with one byte flipped in the first upload; returns the refused
 * attempt's error and the damaged request as the proxy saw it (its headers carry the checksum).
 */
export async function damagedUploadIsRefused(c: ChecksumCase): Promise<{ error: BackendError; request: ProxiedRequest }> {
  const { h, data } = newFile(c.size ?? 96 * 1024);
  const retries: RetryInfo[] = [];
  const retrying = new RetryBackend(c.backend, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, onRetry: (info) => retries.push(info) });
  const before = c.proxy.stats().corrupted;
  c.proxy.corruptUpload({ match: c.match, offset: c.offset });
  await saveIt(retrying, h, data, c.fromFile);
  assert.equal(c.proxy.stats().corrupted, before + 1, 'the proxy flipped a byte of the upload');
  assert.equal(retries.length, 1, `one refused attempt, then success (retries: ${retries.map((r) => String(r.error)).join('; ')})`);
  const error = retries[0]!.error;
  assert.ok(error instanceof BackendError, `the refusal is a BackendError, got ${String(error)}`);
  assert.equal(error.transient, true, `a checksum mismatch is transient: ${error.message}`);
  const stored = await c.backend.load(h, { offset: 0, length: data.length });
  assert.ok(Buffer.from(stored).equals(Buffer.from(data)), 'the stored object is byte-exact');
  const request = c.proxy.requests().findLast((r) => r.corrupted);
  assert.ok(request, 'the damaged request is in the proxy log');
  return { error, request };
}

/**
 * The same damage through a backend that sends no checksum (`c.backend` made with
 * `uploadChecksums: false`): the server stores the flipped byte (read back as a range, which no
 * driver checks against a stored digest).
 */
export async function damagedUploadIsStoredWithoutChecksum(c: ChecksumCase): Promise<ProxiedRequest> {
  const { h, data } = newFile(c.size ?? 96 * 1024);
  const before = c.proxy.stats().corrupted;
  c.proxy.corruptUpload({ match: c.match, offset: c.offset });
  await saveIt(c.backend, h, data, c.fromFile);
  assert.equal(c.proxy.stats().corrupted, before + 1, 'the proxy flipped a byte of the upload');
  const stored = Buffer.from(await c.backend.load(h, { offset: 0, length: data.length }));
  const diffs: number[] = [];
  for (let i = 0; i < data.length && diffs.length < 10; i++) if (stored[i] !== data[i]) diffs.push(i);
  assert.equal(diffs.length, 1, `the server stored the damaged bytes (differences at ${diffs.join(', ')})`);
  return c.proxy.requests().findLast((r) => r.corrupted)!;
}
