// One remote server of either kind the remote tests run on — rest-server (restic's REST protocol)
// or MinIO (S3) — behind one shape, so a test file can run the same bodies on both:
// `for (const kind of REMOTE_KINDS) describe(`… (${kind})`, () => { … startRemote(kind) … })`.

import type { Backend } from '../../src/backend/backend.ts';
import { openBackend } from '../../src/backend/location.ts';
import type { BackendOverrides } from '../../src/backend/location.ts';
import { startMinio } from './minio.ts';
import { startRestServer } from './rest-server.ts';

export type RemoteKind = 'rest-server' | 'minio';

/** Both kinds, in the order the tests run them. */
export const REMOTE_KINDS: readonly RemoteKind[] = ['rest-server', 'minio'];

export interface Remote {
  kind: RemoteKind;
  /**
   * restic's location of a repository named `name` on this server (not made yet): rest:…/name/
   * or s3:…/name (one bucket per repository; `name` is lowercase letters, digits and "-").
   */
  location(name: string): string;
  /** What restic and Stowage's CLI need besides the location (MinIO's AWS_* credentials). */
  env: Record<string, string>;
  /** The bare driver for a location (no retry wrapper), as the CLI would open it. */
  backend(location: string, overrides?: BackendOverrides): Promise<Backend>;
  stop(): Promise<void>;
}

export async function startRemote(kind: RemoteKind): Promise<Remote> {
  if (kind === 'rest-server') {
    const server = await startRestServer();
    return {
      kind,
      location: (name) => `rest:${server.url}/${name}/`,
      env: {},
      backend: (location, overrides) => openBackend(location, { env: {}, raw: true, overrides }),
      stop: () => server.stop(),
    };
  }
  const minio = await startMinio();
  const env = { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
  return {
    kind,
    location: (name) => `s3:${minio.endpoint}/${name.length < 3 ? `${name}-repo` : name}`,
    env,
    backend: (location, overrides) => openBackend(location, { env, raw: true, overrides }),
    stop: () => minio.stop(),
  };
}
