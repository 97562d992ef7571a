// check --read-data streams packs (issue 17): each pack is one streamed read, never a whole-pack
// load; its blobs are verified in ranges as they arrive and the pack's hash and header are still
// checked. On a LocalBackend repository whose packs hold many blobs (several ranges each, blobs
// bigger than a range, a compressed one), with a wrapper that records the reads.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FileHandle, LoadOptions } from '../../src/backend/backend.ts';
import { LocalBackend } from '../../src/backend/local.ts';
import { ForwardingBackend } from '../../src/backend/wrappers/forwarding.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { initCrypto } from '../../src/repository/crypto.ts';
import { Repository } from '../../src/repository/repository.ts';
import type { BlobLocation } from '../../src/repository/master-index.ts';
import { checkRepository, type CheckReport } from '../../src/snapshot/operations/check/index.ts';
import { RANGE_BYTES } from '../../src/snapshot/operations/check/read-data.ts';
import { blobDecoder, verifyBlobs } from '../../src/snapshot/engine/decode-worker.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'check-stream';
const KiB = 1024;

/** Records the reads of data packs; `cut` makes streams of that pack end early. */
class Recorder extends ForwardingBackend {
  loads: Array<{ name: string; options: LoadOptions | undefined }> = [];
  streams: string[] = [];
  cut: string | undefined;

  override load(h: FileHandle, options?: LoadOptions): Promise<Uint8Array> {
    if (h.type === 'data') this.loads.push({ name: h.name, options });
    return super.load(h, options);
  }

  override loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array> {
    if (h.type === 'data') this.streams.push(h.name);
    const inner = super.loadStream(h, options);
    if (h.name !== this.cut) return inner;
    return (async function* () {
      let n = 0;
      for await (const piece of inner) {
        if (n + piece.length > options.length / 2) return;
        n += piece.length;
        yield piece;
      }
    })();
  }
}

let dir: string;
let local: LocalBackend;
let entries: BlobLocation[];
const packSizes = new Map<string, number>();

before(async () => {
  await initCrypto();
  dir = await mkdtemp(path.join(tmpdir(), 'stowage-check-stream-'));
  local = new LocalBackend(path.join(dir, 'repo'));
  const repo = await Repository.init(local, { password: PASSWORD, kdf: { N: 1024, r: 8, p: 1 } });
  const w = (await repo.loadIndex()).blobWriter();
  // Small blobs (many to a range), blobs bigger than a range, and a compressible one.
  for (let i = 0; i < 40; i++) await w.saveBlob('data', randomBytes(60 * KiB + i * 1000));
  for (let i = 0; i < 3; i++) await w.saveBlob('data', randomBytes(RANGE_BYTES + 300 * KiB * (i + 1)));
  await w.saveBlob('data', Buffer.from('text that compresses '.repeat(20000)));
  await w.flush();
  entries = [...(await repo.loadIndex()).index.entries()];
  for await (const f of local.list('data')) packSizes.set(f.name, f.size);
  await repo.close();
});

after(async () => {
  await removeTree(dir);
});

async function check(backend: Recorder, options: { memoryLimit?: number } = {}): Promise<CheckReport> {
  const repo = await Repository.open(backend, { password: PASSWORD });
  try {
    return await checkRepository(repo, { readData: true, ...options });
  } finally {
    await repo.close();
  }
}

test('every pack is one streamed read, never loaded whole, and verifies', async () => {
  assert.ok(entries.some((e) => e.uncompressedLength > 0), 'a compressed blob');
  assert.ok(entries.length > 40 && packSizes.size >= 1);
  const rec = new Recorder(local);
  const report = await check(rec, { memoryLimit: 96 * 1024 * 1024 });
  assert.deepEqual(report.errors, []);
  assert.equal(report.packsRead, packSizes.size);
  assert.equal(report.blobsRead, entries.length);
  assert.equal(report.bytesRead, [...packSizes.values()].reduce((a, b) => a + b, 0));
  assert.deepEqual([...rec.streams].sort(), [...packSizes.keys()].sort());
  assert.deepEqual(rec.loads, [], 'no data pack is loaded with load()');
});

test('damage in the middle of a pack names that blob and the pack hash; a stream that ends early is a download error', async () => {
  // The blob in the middle of the biggest pack, by offset.
  const [pack] = [...packSizes].sort((a, b) => b[1] - a[1])[0]!;
  const inPack = entries.filter((e) => e.packId === pack).sort((a, b) => a.offset - b.offset);
  const victim = inPack[Math.floor(inPack.length / 2)]!;
  const h: FileHandle = { type: 'data', name: pack };
  const original = Buffer.from(await local.load(h));
  const damaged = Buffer.from(original);
  damaged[victim.offset + Math.floor(victim.length / 2)]! ^= 0x01;
  await local.remove(h);
  await local.save(h, damaged);
  try {
    const report = await check(new Recorder(local));
    const blobErrors = report.errors.filter((e) => e.code === 'BLOB_DAMAGED');
    assert.deepEqual(blobErrors.map((e) => [e.pack, e.blob]), [[pack, victim.id]]);
    assert.match(blobErrors[0]!.message, /MAC|verification/);
    const actual = createHash('sha256').update(damaged).digest('hex');
    assert.ok(report.errors.some((e) => e.code === 'PACK_DAMAGED' && e.pack === pack && e.message.includes(`unexpected pack id ${actual}`)), JSON.stringify(report.errors));
    assert.deepEqual(report.brokenPacks, [pack]);
  } finally {
    await local.remove(h);
    await local.save(h, original);
  }
  const rec = new Recorder(local);
  rec.cut = pack;
  const cut = await check(rec);
  const unreadable = cut.errors.filter((e) => e.code === 'PACK_UNREADABLE');
  assert.equal(unreadable.length, 1, JSON.stringify(cut.errors));
  assert.equal(unreadable[0]!.pack, pack);
  assert.match(unreadable[0]!.message, new RegExp(`pack ${pack}: download error: .*read ended after \\d+ of ${packSizes.get(pack)} bytes`));
});

test('memoryLimit is checked: below 64 MiB is an InvalidInputError', async () => {
  await assert.rejects(check(new Recorder(local), { memoryLimit: 1024 * 1024 }), InvalidInputError);
});

test('the next pack is read while the last ranges of the one before are verified, one stream at a time', async () => {
  // A repository of its own: small packs, one range each.
  const small = new LocalBackend(path.join(dir, 'small'));
  const repo = await Repository.init(small, { password: PASSWORD, kdf: { N: 1024, r: 8, p: 1 } });
  const w = (await repo.loadIndex()).blobWriter({ packSize: 64 * KiB });
  for (let i = 0; i < 8; i++) await w.saveBlob('data', randomBytes(100 * KiB));
  await w.flush();
  await repo.close();
  const events: string[] = [];
  let open = 0;
  let mostOpen = 0;
  class Timeline extends ForwardingBackend {
    override loadStream(h: FileHandle, options: LoadOptions & { length: number }): AsyncIterable<Uint8Array> {
      const inner = super.loadStream(h, options);
      if (h.type !== 'data') return inner;
      events.push('stream');
      return (async function* () {
        mostOpen = Math.max(mostOpen, ++open);
        try {
          yield* inner;
        } finally {
          open--;
        }
      })();
    }
  }
  const opened = await Repository.open(new Timeline(small), { password: PASSWORD });
  try {
    // One decode worker and one stream, whatever the machine.
    const report = await checkRepository(opened, {
      readData: true, memoryLimit: 134 * 1024 * 1024,
      onProgress: (p) => { if (p.phase === 'read-data') events.push('verified'); },
    });
    assert.deepEqual(report.errors, []);
    assert.ok(report.packsRead >= 6, `${report.packsRead} packs`);
  } finally {
    await opened.close();
  }
  assert.equal(mostOpen, 1, 'one pack streamed at a time');
  // Without the overlap every pack's stream would start after the one before was verified.
  const overlaps = events.filter((e, i) => e === 'stream' && i > 0 && events[i - 1] === 'stream').length;
  assert.ok(overlaps >= 1, events.join(' '));
});

test('a range the main thread decodes itself (every worker busy) is verified as a worker verifies it', async () => {
  const repo = await Repository.open(local, { password: PASSWORD });
  const dec = blobDecoder(repo.masterKeyForWorkers());
  await repo.close();
  const [pack] = [...packSizes].sort((a, b) => b[1] - a[1])[0]!;
  const bytes = await local.load({ type: 'data', name: pack });
  const inPack = entries.filter((e) => e.packId === pack).sort((a, b) => a.offset - b.offset);
  assert.ok(inPack.some((e) => e.uncompressedLength > 0), 'a compressed blob in the pack');
  const jobBlobs = inPack.map((e) => ({ at: e.offset, length: e.length, uncompressedLength: e.uncompressedLength, id: e.id }));
  const victim = Math.floor(inPack.length / 2);
  const damaged = new Uint8Array(bytes);
  damaged[inPack[victim]!.offset + 20]! ^= 0x01;
  // Decrypted in place: each call gets its own copy.
  assert.deepEqual(verifyBlobs(dec, new Uint8Array(bytes), 'the-pack', jobBlobs), jobBlobs.map(() => null));
  const found = verifyBlobs(dec, damaged, 'the-pack', jobBlobs);
  assert.deepEqual(found.map((m, i) => (m === null ? null : i)).filter((i) => i !== null), [victim]);
  assert.match(found[victim]!, /MAC/);
});
