// Fuzzing every parser that reads bytes or text from outside: given arbitrary bytes, arbitrary
// strings and JSON that has the right shape but wrong values, each one either returns or throws a
// StowageError subclass — never a TypeError, RangeError, SyntaxError or anything else untyped.
//
// STOWAGE_FUZZ_RUNS sets the runs per property (default 2000); STOWAGE_FUZZ_SEED replays a
// campaign (each property's seed is derived from it and printed on failure by fast-check).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import fc from 'fast-check';
import { StowageError } from '../../src/errors.ts';
import { initCrypto, open, randomKey, seal } from '../../src/repository/crypto.ts';
import { COMPRESSED_ENTRY_SIZE, decodePackHeader, encodePackHeader, readPackHeader, type PackedBlob } from '../../src/repository/pack.ts';
import { decodeIndexFile } from '../../src/repository/index-file.ts';
import { decodeMasterKey, parseKeyFile } from '../../src/repository/keyfile.ts';
import { decodeConfig } from '../../src/repository/config.ts';
import { decodeLock } from '../../src/repository/lock.ts';
import { compress, decodeUnpacked, decompress } from '../../src/repository/compression.ts';
import { parseGoTime } from '../../src/repository/gotime.ts';
import { parseId, type BlobId } from '../../src/repository/id.ts';
import { parseLocation } from '../../src/backend/location.ts';
import { decodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import { decodeNode } from '../../src/snapshot/model/node.ts';
import { parsePolynomial } from '../../src/repository/polynomial.ts';
import { PathFilter } from '../../src/snapshot/model/filter.ts';
import { Flags, parseArgs, parseDuration, type FlagSpec } from '../../src/cli/args.ts';
import { GLOBAL_FLAGS } from '../../src/cli/main.ts';
import { COMMANDS } from '../../src/cli/commands/index.ts';

const RUNS = Math.max(1, Number(process.env.STOWAGE_FUZZ_RUNS ?? 2000));
const SEED = process.env.STOWAGE_FUZZ_SEED !== undefined ? Number(process.env.STOWAGE_FUZZ_SEED) : randomInt(2 ** 31);
console.log(`fuzz: seed ${SEED} (replay with STOWAGE_FUZZ_SEED=${SEED}), ${RUNS} runs per property`);

let totalRuns = 0;
let properties = 0;
after(() => console.log(`fuzz: ${totalRuns} fuzz runs over ${properties} properties, seed ${SEED}`));

/** Runs fn; passes when it returns or throws a StowageError, fails with the stray error otherwise. */
async function onlyTyped(fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof StowageError) return;
    const e = err as Error;
    assert.fail(`untyped ${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}\n${e?.stack ?? ''}`);
  }
}

/** One property: `runs` inputs from `arb`, each fed to `fn`, which may only throw StowageErrors. */
function fuzz<T>(name: string, arb: fc.Arbitrary<T>, fn: (v: T) => unknown, runs = RUNS): void {
  // Each property gets its own seed derived from the campaign's, so one can be replayed alone.
  const seed = (SEED + fnv(name)) | 0;
  it(`${name} (${runs} runs, seed ${seed})`, async () => {
    await fc.assert(fc.asyncProperty(arb, (v) => onlyTyped(() => fn(v))), { numRuns: runs, seed });
    totalRuns += runs;
    properties++;
  });
}

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const utf8 = (v: unknown): Uint8Array => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v) ?? 'null', 'utf8');

// ---- building blocks --------------------------------------------------------------------------

const bytes = fc.uint8Array({ maxLength: 600 });
const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
const hexId = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));

/** Values that break careless readers: wrong types, boundary numbers, odd strings, nesting. */
const wild: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom<unknown>(
      null, true, false, 0, -1, 1.5, -0.5, 2 ** 31, 2 ** 32, 2 ** 32 - 1, 2 ** 53, 2 ** 64, -(2 ** 63), 1e308, -1e308, 1e-300,
      '', ' ', 'x', '\u0000', '\ud800', '\\', '..', '/', '0'.repeat(64), 'F'.repeat(64), 'g'.repeat(64), '0'.repeat(63),
      '2024-02-30T00:00:00Z', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59.999999999999+23:59', '2024-01-01T00:00:00',
      [], {}, [null], [[[[]]]], { a: { b: {} } }, { toString: 1 }, { valueOf: 'x' }, ['0'.repeat(64)],
    ),
  },
  { weight: 2, arbitrary: anyString },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.integer({ min: 5, max: 3000 }).map((d) => nested(d)) },
);

/** An array nested `depth` levels deep: [[[…]]]. Built as JSON and parsed, as a reader gets it. */
function nested(depth: number): unknown {
  return JSON.parse('['.repeat(depth) + ']'.repeat(depth));
}

/** An object with (a subset of) the given fields, each either plausible or wild. */
function shaped(fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Record<string, unknown>> {
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [k, a] of Object.entries(fields)) model[k] = fc.oneof({ weight: 4, arbitrary: a }, { weight: 1, arbitrary: wild });
  return fc.record(model, { requiredKeys: [] });
}

/** Valid text with a few bytes flipped, deleted or inserted. */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'delete', 'insert')), { maxLength: 4 })).map(([b, edits]) => {
    let out = Buffer.from(b);
    for (const [pos, value, kind] of edits) {
      if (out.length === 0) break;
      const at = pos % out.length;
      if (kind === 'flip') out[at] = value;
      else if (kind === 'delete') out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
      else out = Buffer.concat([out.subarray(0, at), Buffer.from([value]), out.subarray(at)]);
    }
    return out;
  });
}

/** Bytes, JSON of any shape, the given shape, and mutations of it. */
function documents(shape: fc.Arbitrary<unknown>): fc.Arbitrary<Uint8Array> {
  const asBytes = shape.map(utf8);
  return fc.oneof(bytes, fc.jsonValue().map(utf8), asBytes, mutated(asBytes), wild.map(utf8));
}

const goTime = fc.oneof(
  fc.date({ min: new Date(-62135596800000), max: new Date(253402300799000), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.tuple(fc.integer({ min: 0, max: 99999 }), fc.nat(99), fc.nat(99), fc.nat(99), fc.nat(99), fc.nat(99), fc.string({ unit: fc.constantFrom(...'0123456789'), maxLength: 14 }), fc.constantFrom('Z', '+01:00', '-23:59', '+99:99', '', 'z'))
    .map(([y, mo, d, h, mi, s, frac, zone]) => `${String(y).padStart(4, '0')}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(s)}${frac ? '.' + frac : ''}${zone}`),
);
const pad = (n: number) => String(n).padStart(2, '0');
const uint = fc.oneof(fc.nat(), fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53 + 2));

await initCrypto();
const KEY = randomKey();

// ---- the parsers -------------------------------------------------------------------------------

describe('fuzz: pack files', () => {
  const entry = fc.record({
    type: fc.integer({ min: 0, max: 5 }),
    length: fc.oneof(fc.nat(200), fc.constantFrom(0, 31, 32, 2 ** 32 - 1)),
    ulen: fc.oneof(fc.nat(200), fc.constantFrom(0, 2 ** 32 - 1)),
    id: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  });
  const rawHeader = fc.array(entry, { maxLength: 12 }).map((entries) => {
    const parts = entries.map((e) => {
      const b = Buffer.alloc(e.type >= 2 ? COMPRESSED_ENTRY_SIZE : 37);
      b[0] = e.type;
      b.writeUInt32LE(e.length, 1);
      if (e.type >= 2) b.writeUInt32LE(e.ulen, 5);
      Buffer.from(e.id).copy(b, b.length - 32);
      return b;
    });
    return Buffer.concat(parts);
  });

  fuzz('decodePackHeader', fc.oneof(bytes, rawHeader, mutated(rawHeader)), (h) => decodePackHeader(h, 'data/fuzz'));

  // A whole pack: blob bytes, a sealed header (well-formed or not), and a length field that may lie.
  const pack = fc.record({
    header: fc.oneof(rawHeader, bytes),
    blobBytes: fc.nat(600),
    sealHeader: fc.boolean(),
    lengthField: fc.oneof(fc.constant(-1), fc.nat(), fc.constantFrom(0, 31, 2 ** 32 - 1, 16 * 1024 * 1024 + 1)),
    claimedSize: fc.oneof(fc.constant(-1), fc.nat(), fc.constantFrom(0, 4, 36, 2 ** 32, 2 ** 53)),
    tailLength: fc.oneof(fc.constant(-1), fc.nat(200)),
  });
  fuzz('readPackHeader', pack, async (p) => {
    const sealed = p.sealHeader ? seal(KEY, p.header) : p.header;
    const len = Buffer.alloc(4);
    len.writeUInt32LE(p.lengthField < 0 ? sealed.length : p.lengthField >>> 0);
    const file = Buffer.concat([Buffer.alloc(p.blobBytes, 7), sealed, len]);
    const size = p.claimedSize < 0 ? file.length : p.claimedSize;
    const tail = p.tailLength < 0 ? file : file.subarray(Math.max(0, file.length - p.tailLength));
    // As a backend does: the last n bytes, or an IntegrityError when the file is shorter.
    const readMore = async (n: number) => {
      if (n > file.length) throw new StowageError('INTEGRITY', `short read of ${n} bytes`);
      return file.subarray(file.length - n);
    };
    const blobs: PackedBlob[] = await readPackHeader(KEY, size, tail, readMore, 'data/fuzz');
    // Whatever is returned must describe the pack it came from.
    for (const b of blobs) assert.ok(b.offset + b.length <= size, 'blob inside the pack');
  });

  fuzz('encodePackHeader ∘ decodePackHeader round trip', fc.array(fc.record({
    type: fc.constantFrom<'data' | 'tree'>('data', 'tree'), id: hexId, length: fc.integer({ min: 32, max: 2 ** 32 - 1 }), uncompressedLength: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 32 - 1 })),
  }), { maxLength: 10 }), (list) => {
    let offset = 0;
    const blobs = list.map((b) => {
      const out = { ...b, id: b.id as BlobId, offset };
      offset += b.length;
      return out;
    });
    assert.deepEqual(decodePackHeader(encodePackHeader(blobs), 'data/fuzz'), blobs);
  }, Math.ceil(RUNS / 4));
});

describe('fuzz: index, snapshots, trees', () => {
  const blob = shaped({ id: hexId, type: fc.constantFrom('data', 'tree', 'Data', ''), offset: uint, length: uint, uncompressed_length: uint });
  const indexPack = shaped({ id: hexId, blobs: fc.array(blob, { maxLength: 4 }) });
  const indexDoc = fc.oneof(shaped({ packs: fc.array(indexPack, { maxLength: 4 }), supersedes: fc.array(fc.oneof(hexId, wild), { maxLength: 3 }) }), fc.array(indexPack, { maxLength: 3 }));
  fuzz('decodeIndexFile', documents(indexDoc), (b) => decodeIndexFile(b, 'index/fuzz'));

  const summaryFields: Record<string, fc.Arbitrary<unknown>> = { backup_start: goTime, backup_end: goTime };
  for (const k of ['files_new', 'files_changed', 'files_unmodified', 'dirs_new', 'dirs_changed', 'dirs_unmodified', 'data_blobs', 'tree_blobs', 'data_added', 'data_added_packed', 'total_files_processed', 'total_bytes_processed']) summaryFields[k] = uint;
  const summary = shaped(summaryFields);
  const snapshotDoc = shaped({
    time: goTime, parent: hexId, tree: hexId, paths: fc.array(anyString, { maxLength: 3 }), hostname: anyString, username: anyString,
    uid: uint, gid: uint, excludes: fc.array(anyString, { maxLength: 2 }), tags: fc.array(anyString, { maxLength: 3 }), original: hexId,
    program_version: anyString, summary,
  });
  fuzz('decodeSnapshot', documents(snapshotDoc), (b) => decodeSnapshot(b, 'f'.repeat(64)));

  const nodeDoc = shaped({
    name: anyString, type: fc.constantFrom('file', 'dir', 'symlink', 'dev', 'chardev', 'fifo', 'socket', 'irregular', 'File', ''),
    mode: uint, mtime: goTime, atime: goTime, ctime: goTime, uid: uint, gid: uint, user: anyString, group: anyString,
    inode: uint, device_id: uint, size: uint, links: uint, linktarget: anyString, linktarget_raw: fc.base64String(),
    device: uint, content: fc.array(fc.oneof(hexId, wild), { maxLength: 3 }), subtree: hexId,
    extended_attributes: fc.array(shaped({ name: anyString, value: fc.base64String() }), { maxLength: 2 }),
    generic_attributes: fc.dictionary(fc.string({ maxLength: 8 }), wild, { maxKeys: 3 }),
  });
  fuzz('decodeNode', fc.oneof(nodeDoc, wild), (n) => decodeNode(n, 'e'.repeat(64)));
  const treeDoc = fc.oneof(shaped({ nodes: fc.array(nodeDoc, { maxLength: 4 }) }), fc.array(nodeDoc, { maxLength: 2 }));
  fuzz('decodeTree (strict)', documents(treeDoc), (b) => decodeTree(b, 'e'.repeat(64)));
  fuzz('decodeTree (lenient)', documents(treeDoc), (b) => decodeTree(b, 'e'.repeat(64), { lenient: true }));
});

describe('fuzz: keys, config, locks, unpacked files, crypto', () => {
  const keyDoc = shaped({
    created: goTime, username: anyString, hostname: anyString, kdf: fc.constantFrom('scrypt', 'argon2', ''),
    N: fc.oneof(fc.constantFrom(2, 1024, 32768, 2 ** 31, 0, 3), fc.integer()), r: fc.oneof(fc.constantFrom(1, 8), fc.integer()), p: fc.oneof(fc.constantFrom(1), fc.integer()),
    salt: fc.oneof(fc.uint8Array({ minLength: 64, maxLength: 64 }).map((b) => Buffer.from(b).toString('base64')), fc.base64String()),
    data: fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 120 }).map((b) => Buffer.from(b).toString('base64')), fc.base64String()),
  });
  fuzz('parseKeyFile', documents(keyDoc), (b) => parseKeyFile(b, 'k'.repeat(64)));

  const masterDoc = shaped({ mac: shaped({ k: fc.base64String(), r: fc.base64String() }), encrypt: fc.base64String() });
  fuzz('decodeMasterKey', documents(masterDoc), (b) => decodeMasterKey(b, { file: 'keys/fuzz' }));

  const configDoc = shaped({ version: fc.oneof(fc.constantFrom(1, 2, 3, 0), uint), id: hexId, chunker_polynomial: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n }).map((p) => p.toString(16)), fc.constantFrom('3DA3358B4DC173', '0', '1', '-1', '0x10')) });
  fuzz('decodeConfig', documents(configDoc), (b) => decodeConfig(b, 'config'));

  const lockDoc = shaped({ time: goTime, exclusive: fc.boolean(), hostname: anyString, username: anyString, pid: fc.integer(), uid: uint, gid: uint });
  fuzz('decodeLock', documents(lockDoc), (b) => decodeLock(b, 'l'.repeat(64)));

  const zstdFrames = fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(compress(b, 'auto')));
  const unpacked = fc.oneof(
    bytes,
    fc.tuple(fc.constantFrom(0x02, 0x7b, 0x5b, 0x00, 0x01, 0x03), fc.oneof(bytes, zstdFrames, mutated(zstdFrames), fc.array(zstdFrames, { maxLength: 3 }).map((f) => Buffer.concat(f))))
      .map(([first, rest]) => Buffer.concat([Buffer.from([first]), rest])),
  );
  fuzz('decodeUnpacked', fc.tuple(unpacked, fc.constantFrom<1 | 2>(1, 2), fc.oneof(fc.constant(undefined), fc.nat(400))), ([b, v, max]) => decodeUnpacked(b, v, { file: 'snapshots/fuzz' }, max));
  fuzz('decompress', fc.tuple(fc.oneof(bytes, zstdFrames, mutated(zstdFrames)), fc.oneof(fc.constant(undefined), fc.nat(400)), fc.nat(1000)), ([b, expected, max]) => decompress(b, expected, { blob: 'fuzz' }, max));

  const sealedish = fc.oneof(bytes, fc.uint8Array({ maxLength: 200 }).map((b) => seal(KEY, b)), mutated(fc.uint8Array({ maxLength: 100 }).map((b) => seal(KEY, b))));
  fuzz('crypto open', sealedish, (b) => open(KEY, b, { file: 'data/fuzz' }));
});

// Values nested thousands of levels deep, in every position of otherwise valid documents: the
// JSON parsers manage, but anything that walks the value recursively (JSON.stringify in a
// message, a re-encoder) would overflow the stack with an untyped RangeError.
describe('fuzz: deeply nested values in every field', () => {
  const H = 'a'.repeat(64);
  const T = '2024-05-06T07:08:09.123456789+02:00';
  const node = { name: 'f', type: 'file', mode: 420, mtime: T, atime: T, ctime: T, uid: 1, gid: 2, user: 'u', group: 'g', inode: 3, device_id: 4, size: 5, links: 1, content: [H], subtree: H, linktarget: 'x', extended_attributes: [{ name: 'user.x', value: 'AA==' }], generic_attributes: { k: { a: [1] } } };
  const parsers: Array<[string, unknown, (b: Uint8Array) => unknown]> = [
    ['decodeIndexFile', { packs: [{ id: H, blobs: [{ id: H, type: 'data', offset: 0, length: 40, uncompressed_length: 8 }] }], supersedes: [H] }, (b) => decodeIndexFile(b, 'index/fuzz')],
    ['decodeSnapshot', { time: T, parent: H, tree: H, paths: ['/a'], hostname: 'h', username: 'u', uid: 1, gid: 2, excludes: ['x'], tags: ['t'], original: H, program_version: 'p', summary: { backup_start: T, backup_end: T, files_new: 1, data_added: 2 } }, (b) => decodeSnapshot(b, H)],
    ['decodeTree', { nodes: [node] }, (b) => decodeTree(b, H)],
    ['decodeTree (lenient)', { nodes: [node] }, (b) => decodeTree(b, H, { lenient: true })],
    ['parseKeyFile', { created: T, username: 'u', hostname: 'h', kdf: 'scrypt', N: 1024, r: 8, p: 1, salt: Buffer.alloc(64, 1).toString('base64'), data: Buffer.alloc(48, 1).toString('base64') }, (b) => parseKeyFile(b, H)],
    ['decodeMasterKey', { mac: { k: Buffer.alloc(16, 1).toString('base64'), r: Buffer.alloc(16, 1).toString('base64') }, encrypt: Buffer.alloc(32, 1).toString('base64') }, (b) => decodeMasterKey(b, { file: 'keys/fuzz' })],
    ['decodeConfig', { version: 2, id: H, chunker_polynomial: '3da3358b4dc173' }, (b) => decodeConfig(b, 'config')],
    ['decodeLock', { time: T, exclusive: false, hostname: 'h', username: 'u', pid: 1, uid: 1, gid: 1 }, (b) => decodeLock(b, H)],
  ];
  const PLACEHOLDER = '\u0000deep\u0000';
  /** Every position in a JSON value: [] is the root, ['packs', 0, 'id'] a leaf. */
  const positions = (v: unknown, at: Array<string | number> = []): Array<Array<string | number>> => {
    const out = [at];
    if (Array.isArray(v)) v.forEach((x, i) => out.push(...positions(x, [...at, i])));
    else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...positions(x, [...at, k]));
    return out;
  };
  const replaced = (v: unknown, at: Array<string | number>): unknown => {
    if (at.length === 0) return PLACEHOLDER;
    const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, unknown>;
    copy[at[0]!] = replaced(copy[at[0]!], at.slice(1));
    return copy;
  };
  for (const [name, doc, parse] of parsers) {
    const all = positions(doc);
    const arb = fc.record({ at: fc.nat(all.length - 1), depth: fc.integer({ min: 3000, max: 120_000 }), object: fc.boolean() });
    fuzz(`${name} with a value nested thousands deep`, arb, ({ at, depth, object }) => {
      const deep = object ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + ']'.repeat(depth);
      const text = JSON.stringify(replaced(doc, all[at]!)).replace(JSON.stringify(PLACEHOLDER), deep);
      return parse(Buffer.from(text));
    }, Math.min(RUNS, Math.max(all.length * 4, 100)));
  }
});

describe('fuzz: text inputs (locations, times, polynomials, IDs, patterns, CLI)', () => {
  const schemes = fc.constantFrom('', 'local:', 's3:', 's3:https://', 's3:http://', 's3://', 'gs:', 'azure:', 'swift:', 'b2:', 'rest:', 'rest:http://', 'rest:https://', 'sftp:', 'rclone:', 'C:', 'S3:', 'REST:');
  const locationText = fc.oneof(
    anyString,
    fc.tuple(schemes, anyString).map(([s, r]) => s + r),
    fc.tuple(schemes, fc.webUrl({ withQueryParameters: true, withFragments: true, validSchemes: ['http', 'https', 'ftp'] })).map(([s, u]) => s + u),
    fc.tuple(fc.constantFrom('rest:http://', 's3:https://'), anyString, fc.constantFrom(':', '@', ':@', '%', '%zz@'), anyString, fc.constantFrom('@host/', '@[::1]:80/', '@:99999/', '/')).map((p) => p.join('')),
    fc.tuple(fc.constantFrom('gs:', 'azure:', 'swift:', 'b2:'), anyString, fc.constantFrom(':', ':/', '::', ':/../', ''), anyString).map((p) => p.join('')),
  );
  fuzz('parseLocation', locationText, (s) => parseLocation(s));
  fuzz('parseGoTime', fc.oneof(goTime, anyString, mutated(goTime.map(utf8)).map((b) => Buffer.from(b).toString('latin1'))), (s) => parseGoTime(s));
  fuzz('parsePolynomial', fc.oneof(anyString, fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((p) => p.toString(16)), fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), maxLength: 40 })), (s) => parsePolynomial(s));
  fuzz('parseId', fc.oneof(anyString, hexId, wild, fc.bigInt()), (s) => parseId(s));
  fuzz('PathFilter', fc.tuple(fc.array(fc.oneof(anyString, fc.string({ unit: fc.constantFrom(...'*?[]!^-\\/a.'), maxLength: 12 })), { maxLength: 4 }), anyString), ([patterns, p]) => {
    const f = new PathFilter(patterns);
    f.matches(p);
    f.mayContainMatch(p);
  });

  // Every command's flags plus the global ones, as main() hands them to the parser.
  const specs: FlagSpec[][] = Object.values(COMMANDS).map((c) => [...GLOBAL_FLAGS, ...c.flags]);
  const flagWords = [...new Set(specs.flat().flatMap((s) => [`--${s.name}`, ...(s.short ? [`-${s.short}`] : [])]))];
  const argWord = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...flagWords, '--', '-', '---', '--=', '-=x', '--json=maybe', '--retry-lock=5m', '-qv', '-rrepo', '-r=x') },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...flagWords), fc.constantFrom('=', ''), anyString).map((p) => p.join('')) },
    { weight: 2, arbitrary: anyString },
  );
  fuzz('CLI argument parser', fc.tuple(fc.nat(specs.length - 1), fc.array(argWord, { maxLength: 8 })), ([which, argv]) => {
    const s = specs[which]!;
    const flags = new Flags(parseArgs(argv, s));
    // Reading every flag back as its kind, and the numeric and duration ones as numbers.
    for (const spec of s) {
      if (spec.kind === 'bool') flags.bool(spec.name);
      else if (spec.kind === 'list') flags.list(spec.name);
      else {
        flags.string(spec.name);
        flags.int(spec.name);
        const v = flags.string(spec.name);
        if (v !== undefined && /lock|within|duration/.test(spec.name)) parseDuration(v);
      }
    }
  });
  fuzz('parseDuration', fc.oneof(anyString, fc.tuple(fc.oneof(fc.nat().map(String), fc.double({ noNaN: true }).map(String), fc.constantFrom('.5', '1.', '', '-1')), fc.constantFrom('h', 'm', 's', 'ms', 'us', 'µs', 'ns', 'd', 'y', '')).map(([n, u]) => n + u).chain((a) => fc.array(fc.constant(a), { maxLength: 3 }).map((x) => x.join('')))), (s) => parseDuration(s));
});
