// What Stowage needs from the Node.js runtime, checked before a repository is read. Without the
// check, a Node that `engines` once allowed but that lacks zstd reported healthy v2 repositories
// as corrupt ("invalid zstd data"): a missing capability must never read as damage.
import zlib from 'node:zlib';
import { UnsupportedRuntimeError } from './errors.ts';

/** The Node.js versions Stowage runs on (zstd in `node:zlib` arrived in 22.15 and 23.8). */
export const REQUIRED_NODE = '>= 22.15 (22.x) or >= 23.8';

/** A runtime capability Stowage depends on. */
export type RuntimeCapability = 'zstd';

/** What the running Node.js offers (see {@link runtimeSupport}). */
export interface RuntimeSupport {
  /** `process.version`, e.g. `"v24.1.0"`. */
  nodeVersion: string;
  /** Capabilities this runtime lacks; empty when Stowage can run. */
  missing: RuntimeCapability[];
}

const DESCRIPTION: Record<RuntimeCapability, string> = {
  zstd: 'zstd in node:zlib (zstdCompressSync, zstdDecompressSync, ZstdCompress)',
};

/** The capabilities of the running Node.js that Stowage needs, found by feature detection. */
export function runtimeSupport(): RuntimeSupport {
  const missing: RuntimeCapability[] = [];
  const z = zlib as unknown as Record<string, unknown>;
  if (typeof z.zstdCompressSync !== 'function' || typeof z.zstdDecompressSync !== 'function' || typeof z.ZstdCompress !== 'function') {
    missing.push('zstd');
  }
  return { nodeVersion: process.version, missing };
}

/**
 * Throws {@link UnsupportedRuntimeError} naming the first missing capability and the Node.js
 * versions that have it. `Repository.open`/`init` and the CLI call it before touching storage.
 */
export function assertRuntime(): void {
  const { nodeVersion, missing } = runtimeSupport();
  const first = missing[0];
  if (first !== undefined) throw new UnsupportedRuntimeError(DESCRIPTION[first], REQUIRED_NODE, nodeVersion);
}
