// Repository locations in restic's notation ("/srv/repo", "local:/srv/repo", later "s3:…",
// "rest:…") and the backend each one opens. New kinds join the ParsedLocation union, the
// SCHEMES table and the switch in openBackend; the compiler then points at anything missed.

import { resolve } from 'node:path';
import type { Backend } from './backend.ts';
import { LocalBackend } from './local.ts';
import { InvalidInputError } from '../errors.ts';

/** A folder on this machine (local disk, NFS/SMB mount, Kubernetes volume). */
export interface LocalLocation {
  readonly kind: 'local';
  /** Absolute path of the repository folder. */
  readonly path: string;
}

export type ParsedLocation = LocalLocation;

export type LocationKind = ParsedLocation['kind'];

export interface OpenBackendOptions {
  /** Requests in flight at once; each backend has its own default. */
  connections?: number;
}

/** The schemes accepted in front of a location, with the form each one takes. */
const SCHEMES: Readonly<Record<LocationKind, string>> = {
  local: 'local:/path (or a plain /path or ./path)',
};

/** A scheme prefix as restic writes them: letters, digits, "+", "-", "." before the first ":". */
const SCHEME_PREFIX = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

export function parseLocation(location: string): ParsedLocation {
  if (typeof location !== 'string' || location.trim() === '') {
    throw new InvalidInputError('repository location must be a non-empty string');
  }
  const match = SCHEME_PREFIX.exec(location);
  // "C:\repo" and "C:/repo" are Windows paths, not a scheme called "C".
  const isDrivePath = match !== null && match[1].length === 1 && /^[a-zA-Z]:[\\/]/.test(location);
  if (match === null || isDrivePath) return { kind: 'local', path: resolve(location) };

  const scheme = match[1].toLowerCase();
  const rest = location.slice(match[0].length);
  switch (scheme) {
    case 'local':
      if (rest === '') throw new InvalidInputError(`repository location ${JSON.stringify(location)} has no path after "local:"`);
      return { kind: 'local', path: resolve(rest) };
    default:
      throw new InvalidInputError(
        `unsupported repository location ${JSON.stringify(redactLocation(location))}: scheme "${scheme}" is not supported; ` +
          `supported: ${Object.values(SCHEMES).join('; ')}`,
      );
  }
}

/** Opens the backend for a location. It does not create anything; see Backend.create. */
export async function openBackend(location: string, options: OpenBackendOptions = {}): Promise<Backend> {
  const parsed = parseLocation(location);
  const kind = parsed.kind;
  switch (kind) {
    case 'local':
      return new LocalBackend(parsed.path, { connections: options.connections });
    default:
      return unreachable(kind);
  }
}

/** Hides a password written into a location URL ("rest:https://user:secret@host/" → "user:***"). */
export function redactLocation(location: string): string {
  return location.replace(/(\/\/[^/@:]*):[^/@]*@/, '$1:***@');
}

function unreachable(kind: never): never {
  throw new InvalidInputError(`no backend for location kind ${String(kind)}`);
}
