// What the storage drivers (local, memory, s3, rest, gcs, azure, b2, swift) have in common, so
// each driver file holds only what is particular to its storage: checking handles and ranges,
// restic's listing rules, prefixes, keeping secrets out of messages, waiting with an abort,
// loading an optional SDK, and which failures may pass (the retry wrapper uses that too).
// Nothing here talks to a storage.

import { createHash } from 'node:crypto';
import { open as openFile, type FileHandle as OsFileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { FILE_TYPES, describeFile, layoutPath } from './backend.ts';
import type { FileHandle, FileInfo, FileType, LoadOptions, LocalFile, ObjectRetention } from './backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError, StowageError, UnsupportedError, throwIfAborted } from '../errors.ts';

// ---- handles, names and options ----------------------------------------------------------------

/** Names the listings report: restic ignores everything that is not a lowercase 64-hex ID. */
const ID_NAME = /^[0-9a-f]{64}$/;

/** Whether `name` is a restic file ID (64 lowercase hex digits), the only names a listing reports. */
export function isIdName(name: string): boolean {
  return ID_NAME.test(name);
}

/**
 * Rejects handles that are not a known file type or whose name could leave its folder.
 * Any other name is accepted (the listings only report 64-hex names).
 */
export function checkHandle(h: FileHandle): void {
  if (h === null || typeof h !== 'object') throw new InvalidInputError('file handle must be an object with type and name');
  checkType(h.type);
  if (h.type === 'config') return;
  const name: unknown = h.name;
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw new InvalidInputError(`invalid file name for ${h.type}: ${JSON.stringify(name)?.slice(0, 80)}`);
  }
}

/**
 * What every call on a file checks before it does anything: the signal has not fired and the
 * handle is valid. Returns the file as messages name it ("data/ab/ab12…").
 */
export function startCall(h: FileHandle, signal: AbortSignal | undefined): string {
  throwIfAborted(signal);
  checkHandle(h);
  return describeFile(h);
}

/** Rejects a file type that is not one of {@link FILE_TYPES}. */
export function checkType(type: unknown): asserts type is FileType {
  if (!FILE_TYPES.includes(type as FileType)) {
    throw new InvalidInputError(`unknown file type ${JSON.stringify(type)?.slice(0, 40)} (expected one of ${FILE_TYPES.join(', ')})`);
  }
}

/** Rejects data that is not a Uint8Array before anything is sent. */
export function checkBytes(data: unknown, file: string): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) throw new InvalidInputError(`save ${file}: data must be a Uint8Array`);
}

/** A backend's `connections`: a positive integer. */
export function checkConnections(n: number, location: string): number {
  if (!Number.isInteger(n) || n < 1) throw new InvalidInputError(`connections for ${location} must be a positive integer, got ${n}`);
  return n;
}

/** An option that must be a positive integer (a timeout, a size), e.g. "timeoutMs for s3:…". */
export function positiveInteger(n: number, what: string, location: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidInputError(`${what} for ${location} must be a positive integer, got ${n}`);
  return n;
}

/** What stat reports for a file: config has no ID, so its name is "config". */
export function fileInfo(h: FileHandle, size: number): FileInfo {
  return { name: h.type === 'config' ? 'config' : h.name, size };
}

// ---- prefixes ----------------------------------------------------------------------------------

/**
 * "/a//b/" → "a/b". "." and ".." are refused (restic would clean them away, which hides mistakes,
 * and they could climb out of the bucket); so are NUL and, where the storage asks, backslashes.
 */
export function normalizePrefix(prefix: unknown, what: string, refuseBackslash = false): string {
  if (prefix === undefined || prefix === null) return '';
  if (typeof prefix !== 'string') throw new InvalidInputError(`${what} must be a string`);
  const parts = prefix.split('/').filter((p) => p !== '');
  if (parts.some((p) => p === '.' || p === '..' || p.includes('\0') || (refuseBackslash && p.includes('\\')))) {
    const extra = refuseBackslash ? ' or backslashes' : '';
    throw new InvalidInputError(`${what} must not contain "." or ".." folders${extra}: ${JSON.stringify(prefix).slice(0, 120)}`);
  }
  return parts.join('/');
}

/** A path below a normalised prefix: "prefix/path", or just "path" at the root. */
export function underPrefix(prefix: string, path: string): string {
  return prefix ? `${prefix}/${path}` : path;
}

/** The object name of a file: the prefix joined with restic's layout path. */
export function prefixedKey(prefix: string, h: FileHandle): string {
  return underPrefix(prefix, layoutPath(h));
}

// ---- ranges ------------------------------------------------------------------------------------

/** Rejects malformed offsets and lengths before any request is made. */
export function checkRangeOptions(options: LoadOptions, file: string): void {
  const { offset, length } = options;
  if (offset !== undefined && (!Number.isSafeInteger(offset) || offset < 0)) {
    throw new InvalidInputError(`load ${file}: offset must be a non-negative integer, got ${offset}`);
  }
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new InvalidInputError(`load ${file}: length must be a non-negative integer, got ${length}`);
  }
}

/** Resolves offset/length against the file size; a range that ends past the end is damage. */
export function resolveRange(options: LoadOptions, size: number, file: string): { offset: number; length: number } {
  checkRangeOptions(options, file);
  const offset = options.offset ?? 0;
  const length = options.length ?? size - offset;
  if (offset + length > size || length < 0) {
    throw new IntegrityError(`range ${offset}+${options.length ?? 'end'} is past the end of the ${size}-byte file`, { file });
  }
  return { offset, length };
}

/**
 * The range to read, for SDKs that read "count bytes from offset" (GCS, Azure). An empty range
 * cannot be asked for, and an open range at the very end is a 416, so for those the file's size
 * decides (which also says whether the file exists): `length` 0 then means "nothing to read".
 * Other ranges are only checked here; the read itself finds the real end.
 */
export async function sdkRange(options: LoadOptions, file: string, stat: () => Promise<FileInfo>): Promise<{ offset: number; length: number | undefined }> {
  const offset = options.offset ?? 0;
  if (options.length === 0 || (options.length === undefined && offset > 0)) return resolveRange(options, (await stat()).size, file);
  checkRangeOptions(options, file);
  return { offset, length: options.length };
}

/** The HTTP Range header of a load, or undefined for a whole file; malformed numbers are refused. */
export function rangeHeader(options: LoadOptions, file: string): string | undefined {
  checkRangeOptions(options, file);
  const offset = options.offset ?? 0;
  if (options.length !== undefined) return `bytes=${offset}-${offset + options.length - 1}`;
  return offset > 0 ? `bytes=${offset}-` : undefined;
}

/**
 * A load of zero bytes, which no Range header can ask for: the file's size decides whether the
 * range is valid (and whether the file exists). The same after a 416, when only an empty range
 * at the very end is valid; other ranges are damage.
 */
export async function emptyRead(stat: () => Promise<FileInfo>, options: LoadOptions, file: string): Promise<Uint8Array> {
  const { size } = await stat();
  const { length } = resolveRange(options, size, file);
  if (length === 0) return new Uint8Array(0);
  throw new IntegrityError(`the server refused the range ${options.offset ?? 0}+${length} of the ${size}-byte file`, { file });
}

/**
 * The bytes a load asked for, from an HTTP answer with its body: a 200 carries the whole file (no
 * Range asked, or a server that ignored it), so the range is cut out of it; a 206 carries the
 * range, checked against the file size its Content-Range names (without one the read is refused).
 */
export function rangeFromAnswer(options: LoadOptions, file: string, where: string, answer: { status: number; body: Uint8Array; contentRange: string | null | undefined }): Uint8Array {
  const { status, body } = answer;
  if (status === 200) {
    if (rangeHeader(options, file) === undefined) return body;
    const whole = resolveRange(options, body.length, file);
    return body.slice(whole.offset, whole.offset + whole.length);
  }
  const total = totalFromContentRange(answer.contentRange);
  if (total === undefined) {
    throw new BackendError(`load ${file} (in ${where}): the server sent no file size in Content-Range for a ranged read`, { transient: false, status });
  }
  const resolved = resolveRange(options, total, file);
  if (body.length !== resolved.length) {
    throw new IntegrityError(`short read: got ${body.length} of ${resolved.length} bytes at offset ${resolved.offset}`, { file });
  }
  return body;
}

/** The file size from a Content-Range such as "bytes 0-99/1234"; undefined when absent or unknown ("*"). */
export function totalFromContentRange(value: string | null | undefined): number | undefined {
  const m = value ? /\/(\d+)\s*$/.exec(value) : null;
  return m ? Number(m[1]) : undefined;
}

/** Content-Range "bytes 10-19/100" of a 206, or with "*" as the range in a 416; undefined when absent or malformed. */
export function parseContentRange(value: string | null | undefined): { start: number; end: number; total: number | undefined } | undefined {
  const m = value ? /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(value.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1] ?? NaN), end: Number(m[2] ?? NaN), total: m[3] === '*' ? undefined : Number(m[3]) };
}

// ---- listing -----------------------------------------------------------------------------------

/** Lists `config`: there is one or none, so the listing is a stat; a missing one lists nothing. */
export async function* listConfig(stat: () => Promise<FileInfo>): AsyncGenerator<FileInfo> {
  let info: FileInfo;
  try {
    info = await stat();
  } catch (err) {
    if (err instanceof NotFoundError) return;
    throw err;
  }
  yield info;
}

// ---- secrets in messages -----------------------------------------------------------------------

/** Replaces each secret (longest first, so one inside another goes whole) by "***". */
export function maskSecrets(text: string, secrets: Iterable<string | null | undefined>): string {
  const sorted = [...secrets].filter((s): s is string => typeof s === 'string' && s !== '').sort((a, b) => b.length - a.length);
  let out = text;
  for (const secret of sorted) out = out.split(secret).join('***');
  return out;
}

/** "https://user:pw@host/…" → "https://user:***@host/…", for a URL in a message. */
export function redactUrlPassword(url: string): string {
  // Up to the last '@' before the path: a password may hold a raw '@'.
  return url.replace(/(\/\/[^/:]*?):[^/]*@/, '$1:***@');
}

/** "https://user:pw@host/…" → "https://***@host/…": the user name is hidden too (Swift's "account:user"). */
export function redactUrlUserInfo(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/]*@/i, '$1***@');
}

/** A URL without user info, query (a SAS) or fragment, and without a trailing "/", for `location`. */
export function stripUrlSecrets(url: string): string {
  try {
    const u = new URL(url);
    u.search = '';
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/+$/, '');
  } catch {
    return url.replace(/[?#].*$/, '');
  }
}

/** An error's message, or the thrown value as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first line of an SDK message, at most 300 characters (SDK messages can carry whole responses). */
export function firstLine(text: string): string {
  const line = text.split('\n', 1)[0]!.trim();
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

// ---- aborts and optional packages --------------------------------------------------------------

/** The AbortedError for an aborted signal (with its reason in the message), optionally with a cause. */
export function abortedErrorOf(signal: AbortSignal, cause?: unknown): AbortedError {
  try {
    throwIfAborted(signal);
  } catch (err) {
    if (err instanceof AbortedError) return cause === undefined ? err : new AbortedError(err.message, { cause, reason: err.reason });
  }
  return new AbortedError();
}

/**
 * Resolves with `promise`, or rejects with an AbortedError as soon as `signal` fires; the work
 * behind the promise runs on (an SDK call that cannot be cancelled, a login other calls share).
 * `message` can name the call ("save data/…: operation aborted while authenticating").
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, message?: string): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(message === undefined ? abortedErrorOf(signal) : new AbortedError(message, { reason: signal.reason }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * A value made on first use and shared by the calls that want it meanwhile (an SDK client, a
 * module). A failure is not kept: the next call tries again.
 */
export function madeOnce<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => {
    made ??= make().catch((err: unknown) => {
      made = undefined;
      throw err;
    });
    return made;
  };
}

/**
 * A loader for an optional peer dependency, imported on first use so that `import 'stowage'`
 * does not pay for SDKs it does not use. A failed import becomes an UnsupportedError naming the
 * package: "the S3 backend needs the optional package @aws-sdk/client-s3 (npm install …): …".
 */
export function optionalPackage<T>(pkg: string, backend: string, load: () => Promise<T>): () => Promise<T> {
  return madeOnce(() =>
    load().catch((err: unknown) => {
      throw new UnsupportedError(`the ${backend} backend needs the optional package ${pkg} (npm install ${pkg}): ${errorMessage(err)}`);
    }),
  );
}

// ---- upload checksums --------------------------------------------------------------------------

/**
 * A driver's `uploadChecksums` option: whether its saves send a checksum of their bytes for the
 * server to verify before it stores them (S3 Content-MD5, GCS md5Hash and crc32c, Azure
 * Content-MD5, Swift ETag, B2 X-Bz-Content-Sha1; restic's REST protocol has none, rest-server
 * checks a file's bytes against its name). On unless `false`; turning it off is for tests that
 * show what a server stores without one.
 */
export function uploadChecksumsOption(value: unknown, kind: string): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw new InvalidInputError(`uploadChecksums of the ${kind} backend must be a boolean, got ${JSON.stringify(value)?.slice(0, 40)}`);
  return value;
}

/**
 * The error codes of servers refusing an upload whose bytes do not match the checksum sent. They
 * are transient: a byte flipped on the way passes when the same bytes are sent again (restic
 * retries these too). S3: BadDigest (Content-MD5), XAmzContentSHA256Mismatch (the signed payload
 * hash), XAmzContentChecksumMismatch / BadDigest for x-amz-checksum-*; Azure: Md5Mismatch,
 * Crc64Mismatch. Swift answers 422 and B2 400 "Checksum did not match", which their drivers map.
 */
export const CHECKSUM_MISMATCH_CODES: readonly string[] = ['BadDigest', 'XAmzContentSHA256Mismatch', 'XAmzContentChecksumMismatch', 'Md5Mismatch', 'Crc64Mismatch'];

// CRC-32C (Castagnoli, reflected 0x82F63B78), as GCS wants it; Node's zlib has only CRC-32.
let crc32cTable: Uint32Array | undefined;

/** CRC-32C going on over `data` from `crc` (start with 0; {@link crc32cBase64Of} writes it out). */
export function crc32cUpdate(crc: number, data: Uint8Array): number {
  if (!crc32cTable) {
    crc32cTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crc32cTable[n] = c >>> 0;
    }
  }
  const table = crc32cTable;
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A CRC-32C as GCS writes it: the four big-endian bytes in base64. */
export function crc32cBase64Of(crc: number): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc >>> 0);
  return out.toString('base64');
}

/** The CRC-32C of `data` as GCS writes it: the four big-endian bytes in base64. */
export function crc32cBase64(data: Uint8Array): string {
  return crc32cBase64Of(crc32cUpdate(0, data));
}

// ---- saves from local files ----------------------------------------------------------------------

/** The largest piece read from a local file being saved: what such a save holds in memory at a time. */
export const FILE_PIECE = 256 * 1024;

/** A byte range of a local file being saved: `length` bytes from `start` (default: the whole file). */
export interface FileRange {
  start?: number;
  length?: number;
}

/**
 * Opens a local file to be saved as `what`, checking it holds `file.size` bytes: an
 * IntegrityError naming both when not, a permanent BackendError when it cannot be read.
 */
async function openLocal(file: LocalFile, what: string): Promise<OsFileHandle> {
  let fh: OsFileHandle | undefined;
  try {
    fh = await openFile(file.path, 'r');
    const { size } = await fh.stat();
    if (size !== file.size) throw shortFile(file, what, size);
    return fh;
  } catch (err) {
    await fh?.close().catch(() => {});
    throw localFileError(err, file, what);
  }
}

function shortFile(file: LocalFile, what: string, size?: number): IntegrityError {
  const holds = size === undefined ? 'no longer holds' : `holds ${size} bytes, not`;
  return new IntegrityError(`the local file ${file.path} to be saved as ${what} ${holds} the ${file.size} bytes announced`, { file: what });
}

function localFileError(err: unknown, file: LocalFile, what: string): StowageError {
  if (err instanceof StowageError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  return new BackendError(`save ${what}: cannot read the local file ${file.path}: ${typeof code === 'string' ? `${code}: ` : ''}${errorMessage(err)}`, { transient: false, cause: err });
}

/** Fills `out` from byte `position` of a local file being saved as `what` (errors as {@link openLocal}). */
async function fillFromLocal(fh: OsFileHandle, out: Uint8Array, position: number, file: LocalFile, what: string): Promise<void> {
  for (let filled = 0; filled < out.length; ) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(out, filled, out.length - filled, position + filled));
    } catch (err) {
      throw localFileError(err, file, what);
    }
    if (bytesRead === 0) throw shortFile(file, what);
    filled += bytesRead;
  }
}

/**
 * A range of a local file being saved as `what`, read in pieces of at most {@link FILE_PIECE}
 * bytes, each a fresh buffer (an upload may keep it until it is sent) unless `reuse` says the
 * caller is done with each piece before it asks for the next. IntegrityError when the
 * file does not hold `file.size` bytes or ends early; AbortedError when `signal` fires.
 */
export async function* localFilePieces(file: LocalFile, what: string, range: FileRange = {}, signal?: AbortSignal, reuse = false): AsyncGenerator<Buffer> {
  throwIfAborted(signal);
  const start = range.start ?? 0;
  const length = range.length ?? file.size - start;
  const fh = await openLocal(file, what);
  // With `reuse`, one buffer for every piece: for a caller done with each piece before the next.
  const shared = reuse ? Buffer.allocUnsafeSlow(Math.min(FILE_PIECE, length)) : undefined;
  try {
    for (let done = 0; done < length; ) {
      throwIfAborted(signal);
      const n = Math.min(FILE_PIECE, length - done);
      const piece = shared ? shared.subarray(0, n) : Buffer.allocUnsafeSlow(n);
      await fillFromLocal(fh, piece, start + done, file, what);
      done += piece.length;
      yield piece;
    }
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * Digests of a range of a local file being saved (`algorithms` as `createHash` names them, and
 * the CRC-32C when asked), in one pass of {@link FILE_PIECE}-byte reads: the first pass of a
 * save whose request names its checksum before its body. Errors as {@link localFilePieces}.
 */
export async function localFileDigests(
  file: LocalFile, what: string, algorithms: readonly string[], options: FileRange & { signal?: AbortSignal; crc32c?: boolean } = {},
): Promise<{ digests: Buffer[]; crc32c: number }> {
  const hashes = algorithms.map((a) => createHash(a));
  let crc = 0;
  for await (const piece of localFilePieces(file, what, options, options.signal, true)) {
    for (const h of hashes) h.update(piece);
    if (options.crc32c) crc = crc32cUpdate(crc, piece);
  }
  return { digests: hashes.map((h) => h.digest()), crc32c: crc };
}

/**
 * Runs an upload whose body comes from a local file: `send` gets a maker of streams of ranges of
 * the file (each read as it is sent, {@link FILE_PIECE} bytes at a time) and the signal to give
 * its request. When reading the file fails (it is short: IntegrityError), that signal fires, so
 * the request is cut off before the storage has the whole body (an HTTP client that pipes the
 * body may not pass the stream's error on), and the save rejects with the file's error.
 */
export async function uploadFromFile<T>(
  file: LocalFile, what: string, signal: AbortSignal | undefined,
  send: (body: (range?: FileRange) => Readable, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const cut = new AbortController();
  const combined = signal ? AbortSignal.any([signal, cut.signal]) : cut.signal;
  let failure: unknown;
  const opened: Readable[] = [];
  const body = (range: FileRange = {}): Readable => {
    const pieces = localFilePieces(file, what, range, signal);
    const stream = Readable.from(
      (async function* () {
        try {
          yield* pieces;
        } catch (err) {
          failure ??= err;
          cut.abort(err);
          throw err;
        }
      })(),
      { objectMode: false, highWaterMark: FILE_PIECE },
    );
    opened.push(stream);
    return stream;
  };
  try {
    return await send(body, combined);
  } catch (err) {
    if (failure !== undefined) throw failure;
    throw err;
  } finally {
    // A request answered (or failed) before it read its whole body leaves the file open: close it.
    for (const stream of opened) stream.destroy();
  }
}

/**
 * Whether `pieces` (a stored file read back, in order) hold exactly the bytes of a local file
 * being saved as `what`: a repeated save finding the file already there. Reads the local file
 * piece by piece alongside, never whole.
 */
export async function localFileEquals(file: LocalFile, what: string, pieces: AsyncIterable<Uint8Array>): Promise<boolean> {
  const fh = await openLocal(file, what);
  try {
    let pos = 0;
    for await (const piece of pieces) {
      if (pos + piece.length > file.size) return false;
      const mine = Buffer.allocUnsafeSlow(piece.length);
      await fillFromLocal(fh, mine, pos, file, what);
      if (!mine.equals(piece)) return false;
      pos += piece.length;
    }
    return pos === file.size;
  } finally {
    await fh.close().catch(() => {});
  }
}

// ---- transient failures ------------------------------------------------------------------------

/** What a {@link TransientErrors} adds to the rules it extends. */
export interface TransientRules {
  /** Error codes (Node's, an SDK's, a service's) that mean "try again later". */
  codes?: Iterable<string>;
  /** Statuses that are 5xx but will not go away by retrying (e.g. 507, disk full). */
  permanentStatuses?: Iterable<number>;
}

// Node's socket errors that mean "the connection went away", not "the request was wrong".
const NETWORK_CODES = [
  'ECONNRESET', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'EPIPE', 'ECONNREFUSED', 'ECONNABORTED', 'EAI_AGAIN',
  'ENETUNREACH', 'ENETDOWN', 'EHOSTUNREACH',
];

// undici (fetch) reports socket trouble as UND_ERR_*; these few are caller mistakes or aborts instead.
const UNDICI_NOT_TRANSIENT = new Set([
  'UND_ERR_ABORTED', 'UND_ERR_INVALID_ARG', 'UND_ERR_INVALID_RETURN_VALUE', 'UND_ERR_NOT_SUPPORTED',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
]);

/**
 * Decides which failures may pass if the call is repeated: HTTP 408, 429 and 5xx, the error
 * codes of a connection that went away, and an upload refused for a checksum mismatch. {@link transientErrors} holds the rules every backend
 * shares; a driver extends them with its SDK's codes, so one list is kept, not one per driver.
 */
export class TransientErrors {
  readonly #codes: ReadonlySet<string>;
  readonly #permanentStatuses: ReadonlySet<number>;

  constructor(rules: TransientRules = {}) {
    this.#codes = new Set(rules.codes);
    this.#permanentStatuses = new Set(rules.permanentStatuses);
  }

  /** These rules and some more. */
  extend(rules: TransientRules): TransientErrors {
    return new TransientErrors({
      codes: [...this.#codes, ...(rules.codes ?? [])],
      permanentStatuses: [...this.#permanentStatuses, ...(rules.permanentStatuses ?? [])],
    });
  }

  /** Whether an HTTP status may pass: 408, 429 and 5xx, less the permanent ones. */
  status(status: number | undefined): boolean {
    if (status === undefined || this.#permanentStatuses.has(status)) return false;
    return status === 408 || status === 429 || status >= 500;
  }

  /** Whether an error code may pass. */
  code(code: unknown): boolean {
    if (typeof code !== 'string') return false;
    return this.#codes.has(code) || (code.startsWith('UND_ERR_') && !UNDICI_NOT_TRANSIENT.has(code));
  }

  /**
   * Whether a raw error carries a transient code, itself or in its `cause` chain (fetch's
   * TypeError wraps the socket's error); never an abort.
   */
  error(err: unknown): boolean {
    let current: unknown = err;
    for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
      if ((current as { name?: unknown }).name === 'AbortError') return false;
      if (this.code((current as { code?: unknown }).code)) return true;
      current = (current as { cause?: unknown }).cause;
    }
    return false;
  }
}

/** The transient-failure rules every backend shares; drivers extend them (see {@link TransientErrors}). */
export const transientErrors = new TransientErrors({ codes: [...NETWORK_CODES, ...CHECKSUM_MISMATCH_CODES] });

/** What an object-lock option of a backend holds (S3 `objectLock`, B2 `fileLock`, …): a mode and one way to give the period. */
export interface LockOptionsShape {
  mode: 'GOVERNANCE' | 'COMPLIANCE';
  retainDays?: number;
  retainSeconds?: number;
  retainUntil?: Date;
}

/** Checks an object-lock option (`what` names it in the InvalidInputError) and returns a copy. */
export function checkObjectLockOptions<T extends LockOptionsShape>(lock: T, what: string): T {
  const bad = (why: string): InvalidInputError => new InvalidInputError(`${what}: ${why}`);
  if (lock === null || typeof lock !== 'object') throw bad('must be an object');
  if (lock.mode !== 'GOVERNANCE' && lock.mode !== 'COMPLIANCE') throw bad(`mode must be GOVERNANCE or COMPLIANCE, got ${JSON.stringify(lock.mode)}`);
  const given = [lock.retainDays, lock.retainSeconds, lock.retainUntil].filter((v) => v !== undefined).length;
  if (given !== 1) throw bad('give exactly one of retainDays, retainSeconds, retainUntil');
  for (const [name, v] of [['retainDays', lock.retainDays], ['retainSeconds', lock.retainSeconds]] as const) {
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw bad(`${name} must be a positive number`);
  }
  if (lock.retainUntil !== undefined && !(lock.retainUntil instanceof Date && Number.isFinite(lock.retainUntil.getTime()))) {
    throw bad('retainUntil must be a valid Date');
  }
  return { ...lock };
}

/** The retention an upload of `h` gets under `lock` (none for lock files, or without a lock option). */
export function uploadRetentionOf(lock: LockOptionsShape | undefined, h: FileHandle, now: Date = new Date()): ObjectRetention | undefined {
  if (!lock || h.type === 'locks') return undefined;
  const retainUntil = lock.retainUntil ?? new Date(now.getTime() + (lock.retainSeconds ?? (lock.retainDays ?? 0) * 86_400) * 1000);
  return { mode: lock.mode, retainUntil };
}

/** The listing entry for a key below "<prefix>/<type>/" if it is an ID-named file of that type. */
export function listedAs(type: FileType, rel: string | undefined, size: number | undefined): FileInfo | undefined {
  if (rel === undefined || size === undefined) return undefined;
  const parts = rel.split('/');
  // Data packs sit in two-digit folders; older repositories kept them flat, which restic also reads.
  const name = type === 'data' && parts.length === 2 ? parts[1] : parts.length === 1 ? parts[0] : undefined;
  return name !== undefined && isIdName(name) ? { name, size } : undefined;
}
