// IDs are SHA-256 values. In memory-heavy structures (the master index) they live as raw bytes;
// everywhere else they are branded lowercase-hex strings, the form restic uses in JSON and
// file names, so a BlobId cannot be passed where a PackId is expected.
import { createHash, randomBytes } from 'node:crypto';
import { InvalidInputError, shownValue } from '../errors.ts';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/**
 * The ID of a data or tree blob: the SHA-256 of its plaintext, 64 lowercase hex digits. IDs are
 * branded strings, so one kind cannot be passed where another is expected.
 */
export type BlobId = Brand<string, 'BlobId'>;
/** The ID of a pack file (`data/`): the SHA-256 of its stored bytes. */
export type PackId = Brand<string, 'PackId'>;
/** The ID of a snapshot file (`snapshots/`): the SHA-256 of its stored bytes. */
export type SnapshotId = Brand<string, 'SnapshotId'>;
/** The ID of an index file (`index/`): the SHA-256 of its stored bytes. */
export type IndexId = Brand<string, 'IndexId'>;
/** The ID of a key file (`keys/`): the SHA-256 of its bytes. */
export type KeyId = Brand<string, 'KeyId'>;
export type LockId = Brand<string, 'LockId'>;
/** Any 64-hex ID, before it is known what it names. */
export type AnyId = BlobId | PackId | SnapshotId | IndexId | KeyId | LockId;

/** The kind of a blob: file contents (`data`) or a folder listing (`tree`). */
export type BlobType = 'data' | 'tree';

const HEX64 = /^[0-9a-f]{64}$/;

export function isId(s: unknown): s is string {
  return typeof s === 'string' && HEX64.test(s);
}

/** Validates a 64-hex string (as found in JSON) and brands it. */
export function parseId<T extends AnyId>(s: unknown, what = 'ID'): T {
  if (!isId(s)) throw new InvalidInputError(`invalid ${what}: ${shownValue(s)}`);
  return s as T;
}

export function sha256(data: Uint8Array): Uint8Array {
  return createHash('sha256').update(data).digest();
}

export function sha256Hex<T extends AnyId>(data: Uint8Array): T {
  return createHash('sha256').update(data).digest('hex') as T;
}

export function idToBytes(id: string): Uint8Array {
  return Buffer.from(id, 'hex');
}

export function bytesToId<T extends AnyId>(b: Uint8Array, offset = 0): T {
  return Buffer.from(b.buffer, b.byteOffset + offset, 32).toString('hex') as T;
}

export function randomId(): string {
  return randomBytes(32).toString('hex');
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}
