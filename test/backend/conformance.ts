// The behaviour every backend must show, whatever it stores to. Each backend's test file calls
// backendConformance() with a factory that returns a fresh, isolated, empty backend.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile, readFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FILE_TYPES, describeFile, loadPieces, saveFromFile } from '../../src/backend/backend.ts';
import type { Backend, FileHandle, FileInfo, FileType } from '../../src/backend/backend.ts';
import { AbortedError, BackendError, IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';

export interface BackendUnderTest {
  backend: Backend;
  cleanup(): Promise<void>;
}

const MiB = 1024 * 1024;
const ID_TYPES = FILE_TYPES.filter((t) => t !== 'config');

function newId(prefix = ''): string {
  return prefix + randomBytes(32).toString('hex').slice(prefix.length);
}

function randomData(size: number): Uint8Array {
  return new Uint8Array(randomBytes(size));
}

function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function collect(it: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function byName(infos: FileInfo[]): FileInfo[] {
  return [...infos].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Runs `tasks` with at most `width` of them in flight. */
async function inBatches<T>(items: T[], width: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) await task(items[next++]);
  });
  await Promise.all(workers);
}

async function assertNotFound(p: Promise<unknown>, h: FileHandle): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof NotFoundError, `expected NotFoundError, got ${String(err)}`);
    assert.equal(err.code, 'NOT_FOUND');
    assert.equal(err.file, describeFile(h));
    assert.ok(err.message.includes(describeFile(h)), `message names the file: ${err.message}`);
    return true;
  });
}

/** V8's `gc()`, without starting Node with --expose-gc. */
function exposedGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function isAborted(err: unknown): boolean {
  assert.ok(err instanceof AbortedError, `expected AbortedError, got ${String(err)}`);
  assert.equal(err.code, 'ABORTED');
  return true;
}

export interface ConformanceOptions {
  /**
   * The server accepts only 64-hex file names (restic's rest-server): saving any other name must
   * fail with a permanent BackendError instead of being stored.
   */
  idNamesOnly?: boolean;
  /**
   * The driver has its own `saveFile`, which sends a local file as it reads it: the suite checks
   * it stores files of every size from their files and never holds one whole in memory.
   */
  streamsFiles?: boolean;
  /**
   * The server runs in this process (the B2 emulator keeps files in its memory), so the memory a
   * save holds cannot be told from what the server stores: the memory check is skipped.
   */
  serverInProcess?: boolean;
}

export function backendConformance(name: string, make: () => Promise<BackendUnderTest>, conformance: ConformanceOptions = {}): void {
  /** A fresh backend for one test, created (unless asked not to) and cleaned up afterwards. */
  async function withBackend(fn: (b: Backend) => Promise<void>, opts: { create?: boolean } = {}): Promise<void> {
    const { backend, cleanup } = await make();
    try {
      if (opts.create !== false) await backend.create();
      await fn(backend);
    } finally {
      await backend.close();
      await cleanup();
    }
  }

  describe(`backend conformance: ${name}`, () => {
    it('describes itself: a location string and a positive connection count', () =>
      withBackend(async (b) => {
        assert.equal(typeof b.location, 'string');
        assert.ok(b.location.length > 0);
        assert.ok(Number.isInteger(b.connections) && b.connections >= 1, `connections ${b.connections}`);
      }));

    it('saves and loads every file type', () =>
      withBackend(async (b) => {
        const saved = new Map<FileType, { h: FileHandle; data: Uint8Array }>();
        for (const type of FILE_TYPES) {
          const h = { type, name: type === 'config' ? '' : newId() };
          const data = randomData(100 + type.length);
          await b.save(h, data);
          saved.set(type, { h, data });
        }
        for (const { h, data } of saved.values()) {
          assert.deepEqual(await b.load(h), data, `round trip of ${describeFile(h)}`);
        }
      }));

    it('ignores the name of the config file', () =>
      withBackend(async (b) => {
        const data = randomData(300);
        await b.save({ type: 'config', name: '' }, data);
        assert.deepEqual(await b.load({ type: 'config', name: 'anything' }), data);
        assert.deepEqual(await b.stat({ type: 'config', name: newId() }), { name: 'config', size: 300 });
        assert.deepEqual(await collect(b.list('config')), [{ name: 'config', size: 300 }]);
      }));

    it('loads byte ranges: offset only, length only, both, and empty ranges', () =>
      withBackend(async (b) => {
        const h = { type: 'data' as const, name: newId() };
        const data = randomData(1000);
        await b.save(h, data);
        assert.deepEqual(await b.load(h, { offset: 10 }), data.subarray(10));
        assert.deepEqual(await b.load(h, { length: 17 }), data.subarray(0, 17));
        assert.deepEqual(await b.load(h, { offset: 500, length: 250 }), data.subarray(500, 750));
        assert.deepEqual(await b.load(h, { offset: 990, length: 10 }), data.subarray(990));
        assert.deepEqual(await b.load(h, { offset: 0, length: 1000 }), data);
        assert.equal((await b.load(h, { offset: 123, length: 0 })).length, 0);
        assert.equal((await b.load(h, { offset: 1000, length: 0 })).length, 0);
        assert.equal((await b.load(h, { offset: 1000 })).length, 0);
      }));

    it('streams byte ranges in pieces that make up the range (loadPieces: loadStream, or load in pieces)', () =>
      withBackend(async (b) => {
        const h = { type: 'data' as const, name: newId() };
        const data = randomData(20 * MiB + 3);
        await b.save(h, data);
        const streamed = async (offset: number, length: number, of: FileHandle = h) => {
          const pieces: Uint8Array[] = [];
          for await (const piece of loadPieces(b, of, { offset, length })) pieces.push(piece.slice());
          return Buffer.concat(pieces);
        };
        assert.equal(digest(await streamed(0, data.length)), digest(data));
        assert.deepEqual(new Uint8Array(await streamed(5 * MiB + 1, 9 * MiB)), data.subarray(5 * MiB + 1, 14 * MiB + 1));
        assert.deepEqual(new Uint8Array(await streamed(10, 17)), data.subarray(10, 27));
        assert.equal((await streamed(100, 0)).length, 0);
        // Stopping early is allowed (the rest is not read), and the backend goes on working.
        for await (const piece of loadPieces(b, h, { offset: 0, length: data.length })) {
          assert.ok(piece.length > 0);
          break;
        }
        assert.deepEqual(await b.load(h, { offset: 1, length: 2 }), data.subarray(1, 3));
        // A range past the end fails as load does, naming the file.
        await assert.rejects(streamed(data.length - 5, 10), (err: unknown) => {
          assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${String(err)}`);
          assert.equal(err.file, describeFile(h));
          return true;
        });
        const missing = { type: 'data' as const, name: newId() };
        await assertNotFound(streamed(0, 10, missing), missing);
      }));

    it('rejects a range past the end of the file with an IntegrityError naming the file', () =>
      withBackend(async (b) => {
        const h = { type: 'data' as const, name: newId() };
        await b.save(h, randomData(100));
        const pastEnd = (err: unknown): boolean => {
          assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${String(err)}`);
          assert.equal(err.file, describeFile(h));
          return true;
        };
        await assert.rejects(b.load(h, { offset: 90, length: 11 }), pastEnd);
        await assert.rejects(b.load(h, { length: 101 }), pastEnd);
        await assert.rejects(b.load(h, { offset: 101 }), pastEnd);
        await assert.rejects(b.load(h, { offset: 200, length: 0 }), pastEnd);
        await assert.rejects(b.load(h, { offset: -1 }), InvalidInputError);
        await assert.rejects(b.load(h, { length: -5 }), InvalidInputError);
        await assert.rejects(b.load(h, { offset: 1.5 }), InvalidInputError);
      }));

    it('returns copies: changing the saved or loaded buffer does not change the file', () =>
      withBackend(async (b) => {
        const h = { type: 'keys' as const, name: newId() };
        const data = randomData(64);
        const original = data.slice();
        await b.save(h, data);
        data.fill(0);
        const loaded = await b.load(h);
        assert.deepEqual(loaded, original);
        loaded.fill(7);
        assert.deepEqual(await b.load(h), original);
      }));

    it('reports sizes with stat', () =>
      withBackend(async (b) => {
        for (const size of [0, 1, 31, 4096, 65537]) {
          const h = { type: 'index' as const, name: newId() };
          await b.save(h, randomData(size));
          assert.deepEqual(await b.stat(h), { name: h.name, size });
        }
      }));

    it('stores a 0-byte file', () =>
      withBackend(async (b) => {
        const h = { type: 'locks' as const, name: newId() };
        await b.save(h, new Uint8Array(0));
        assert.deepEqual(await b.stat(h), { name: h.name, size: 0 });
        assert.equal((await b.load(h)).length, 0);
        assert.equal((await b.load(h, { offset: 0, length: 0 })).length, 0);
        assert.deepEqual(await collect(b.list('locks')), [{ name: h.name, size: 0 }]);
      }));

    it('round-trips a 20 MiB file', () =>
      withBackend(async (b) => {
        const h = { type: 'data' as const, name: newId() };
        const data = randomData(20 * MiB);
        await b.save(h, data);
        assert.deepEqual(await b.stat(h), { name: h.name, size: 20 * MiB });
        const loaded = await b.load(h);
        assert.equal(loaded.length, data.length);
        assert.equal(digest(loaded), digest(data));
        const tail = await b.load(h, { offset: 20 * MiB - 5 * MiB - 3, length: 5 * MiB });
        assert.equal(digest(tail), digest(data.subarray(20 * MiB - 5 * MiB - 3, 20 * MiB - 3)));
      }));

    it('lists every file type with names and sizes', () =>
      withBackend(async (b) => {
        const expected = new Map<FileType, FileInfo[]>();
        for (const type of ID_TYPES) {
          const infos: FileInfo[] = [];
          for (let i = 0; i < 4; i++) {
            const name = newId();
            const size = 10 * i + type.length;
            await b.save({ type, name }, randomData(size));
            infos.push({ name, size });
          }
          expected.set(type, byName(infos));
        }
        await b.save({ type: 'config', name: '' }, randomData(42));
        for (const type of ID_TYPES) assert.deepEqual(await collect(b.list(type)), expected.get(type), `list ${type}`);
        assert.deepEqual(await collect(b.list('config')), [{ name: 'config', size: 42 }]);
      }));

    it('lists data packs spread over many two-digit folders', () =>
      withBackend(async (b) => {
        const prefixes = ['00', '01', '0f', '10', '7a', '80', 'ab', 'fe', 'ff'];
        const expected: FileInfo[] = [];
        for (const prefix of prefixes) {
          for (let i = 0; i < 3; i++) {
            const name = newId(prefix);
            await b.save({ type: 'data', name }, randomData(i + 1));
            expected.push({ name, size: i + 1 });
          }
        }
        assert.deepEqual(await collect(b.list('data')), byName(expected));
      }));

    it('lists more than 2500 files of one type', { timeout: 300_000 }, () =>
      withBackend(async (b) => {
        const expected: FileInfo[] = [];
        for (let i = 0; i < 2600; i++) expected.push({ name: newId(), size: i % 7 });
        await inBatches(expected, 32, (info) => b.save({ type: 'snapshots', name: info.name }, randomData(info.size)));
        const listed = await collect(b.list('snapshots'));
        assert.equal(listed.length, 2600);
        assert.deepEqual(listed, byName(expected));
        assert.deepEqual(await collect(b.list('index')), [], 'other types are not affected');
      }));

    it('lists nothing for empty types, with and without create()', async () => {
      await withBackend(async (b) => {
        for (const type of FILE_TYPES) assert.deepEqual(await collect(b.list(type)), [], `list ${type}`);
      });
      await withBackend(
        async (b) => {
          for (const type of FILE_TYPES) assert.deepEqual(await collect(b.list(type)), [], `list ${type} before create()`);
        },
        { create: false },
      );
    });

    it('does not list names that are not 64 lowercase hex characters', () =>
      withBackend(async (b) => {
        const id = newId();
        const junk = ['notanid', newId().toUpperCase(), newId().slice(1), `${newId()}0`, `${newId()}.tmp`, `zz${newId().slice(2)}`];
        for (const type of ['keys', 'data'] as const) {
          await b.save({ type, name: id }, randomData(5));
          if (conformance.idNamesOnly) {
            for (const name of junk) {
              await assert.rejects(b.save({ type, name }, randomData(3)), (e: unknown) => e instanceof BackendError && !e.transient, name);
            }
            assert.deepEqual(await collect(b.list(type)), [{ name: id, size: 5 }], `list ${type}`);
            continue;
          }
          for (const name of junk) await b.save({ type, name }, randomData(3));
          assert.deepEqual(await collect(b.list(type)), [{ name: id, size: 5 }], `list ${type}`);
          // They are still ordinary files for save/load/stat/remove.
          assert.equal((await b.load({ type, name: 'notanid' })).length, 3);
        }
      }));

    it('rejects names that could leave their folder, and unknown types', () =>
      withBackend(async (b) => {
        for (const name of ['', '.', '..', '../escape', 'a/b', '../../config', 'a\\b', 'nul\0byte']) {
          const h = { type: 'keys' as const, name };
          await assert.rejects(b.save(h, randomData(1)), InvalidInputError, `save ${JSON.stringify(name)}`);
          await assert.rejects(b.load(h), InvalidInputError, `load ${JSON.stringify(name)}`);
          await assert.rejects(b.stat(h), InvalidInputError, `stat ${JSON.stringify(name)}`);
          await assert.rejects(b.remove(h), InvalidInputError, `remove ${JSON.stringify(name)}`);
        }
        const bogus = { type: 'key' as FileType, name: newId() };
        await assert.rejects(b.save(bogus, randomData(1)), InvalidInputError);
        await assert.rejects(collect(b.list('key' as FileType)), InvalidInputError);
        for (const type of FILE_TYPES) assert.deepEqual(await collect(b.list(type)), [], `nothing was written to ${type}`);
      }));

    it('removes files; afterwards load, stat and remove throw NotFoundError', () =>
      withBackend(async (b) => {
        for (const type of FILE_TYPES) {
          const h = { type, name: type === 'config' ? '' : newId() };
          const keep = { type, name: newId() };
          await b.save(h, randomData(50));
          if (type !== 'config') await b.save(keep, randomData(20));
          await b.remove(h);
          await assertNotFound(b.load(h), h);
          await assertNotFound(b.load(h, { offset: 1, length: 1 }), h);
          await assertNotFound(b.stat(h), h);
          await assertNotFound(b.remove(h), h);
          const listed = await collect(b.list(type));
          assert.deepEqual(listed, type === 'config' ? [] : [{ name: keep.name, size: 20 }], `list ${type} after remove`);
        }
      }));

    it('throws a NotFoundError naming the file for files that never existed', () =>
      withBackend(async (b) => {
        for (const type of FILE_TYPES) {
          const h = { type, name: type === 'config' ? '' : newId() };
          await assertNotFound(b.load(h), h);
          await assertNotFound(b.stat(h), h);
          await assertNotFound(b.remove(h), h);
        }
      }));

    it('replaces a file saved under the same name twice', () =>
      withBackend(async (b) => {
        const h = { type: 'snapshots' as const, name: newId() };
        await b.save(h, randomData(80));
        const second = randomData(60);
        await b.save(h, second);
        assert.deepEqual(await b.load(h), second);
        assert.deepEqual(await collect(b.list('snapshots')), [{ name: h.name, size: 60 }]);
      }));

    it('saves a local file (saveFile, or save of its bytes), again under the same name, leaving the file as it was', () =>
      withBackend(async (b) => {
        const dir = await mkdtemp(join(tmpdir(), 'stowage-conformance-'));
        try {
          const data = randomData(3 * MiB + 17);
          const h = { type: 'data' as const, name: digest(data) };
          const path = join(dir, 'pack');
          await writeFile(path, data, { mode: 0o600 });
          await saveFromFile(b, h, { path, size: data.length });
          // A retry saves from the same file (after a lost response: the file is already there).
          await saveFromFile(b, h, { path, size: data.length });
          assert.equal(digest(await b.load(h)), digest(data));
          assert.deepEqual(await collect(b.list('data')), [{ name: h.name, size: data.length }]);
          assert.equal(digest(await readFile(path)), digest(data));
          // The local file is the sender's to remove; the stored file stays.
          await rm(path);
          assert.equal(digest(await b.load(h)), digest(data));
          // A file that no longer holds its size is refused, and nothing is stored.
          const other = randomData(1000);
          const h2 = { type: 'data' as const, name: digest(other) };
          await writeFile(path, other);
          await truncate(path, 500);
          await assert.rejects(saveFromFile(b, h2, { path, size: other.length }), (err: unknown) => {
            assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${String(err)}`);
            assert.ok(err.message.includes(describeFile(h2)), err.message);
            return true;
          });
          await assertNotFound(b.stat(h2), h2);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }));

    if (conformance.streamsFiles) {
      it('saveFile: the driver stores local files itself (empty, small, 5 MiB), refusing one longer or shorter than announced', () =>
        withBackend(async (b) => {
          assert.equal(typeof b.saveFile, 'function', 'the driver has its own saveFile');
          const dir = await mkdtemp(join(tmpdir(), 'stowage-conformance-'));
          try {
            const path = join(dir, 'pack');
            for (const size of [0, 1, 300 * 1024 + 5, 5 * MiB + 3]) {
              const data = randomData(size);
              const h = { type: 'data' as const, name: newId() };
              await writeFile(path, data);
              await b.saveFile!(h, { path, size });
              assert.equal((await b.stat(h)).size, size);
              assert.equal(digest(await b.load(h)), digest(data), `${size} bytes round trip`);
            }
            const bad = { type: 'index' as const, name: newId() };
            await writeFile(path, randomData(2000));
            for (const size of [1999, 2001]) {
              await assert.rejects(b.saveFile!(bad, { path, size }), (err: unknown) => {
                assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${String(err)}`);
                assert.equal(err.file, describeFile(bad));
                assert.ok(err.message.includes(path), `the message names the local file: ${err.message}`);
                return true;
              });
            }
            await assertNotFound(b.stat(bad), bad);
            // A local file that is not there: a typed error naming it, nothing stored.
            await assert.rejects(b.saveFile!(bad, { path: join(dir, 'missing'), size: 10 }), (err: unknown) => {
              assert.ok(err instanceof BackendError && !err.transient, `expected a permanent BackendError, got ${String(err)}`);
              assert.ok(err.message.includes(join(dir, 'missing')) && err.message.includes(describeFile(bad)), err.message);
              return true;
            });
            await assertNotFound(b.stat(bad), bad);
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        }));

      it('saveFile: a save aborted while running leaves nothing or the whole file', () =>
        withBackend(async (b) => {
          const dir = await mkdtemp(join(tmpdir(), 'stowage-conformance-'));
          try {
            for (const delayMs of [0, 15]) {
              const path = join(dir, `pack${delayMs}`);
              const data = randomData(16 * MiB);
              await writeFile(path, data);
              const h = { type: 'data' as const, name: newId() };
              const controller = new AbortController();
              const save = b.saveFile!(h, { path, size: data.length }, { signal: controller.signal });
              setTimeout(() => controller.abort(), delayMs);
              const completed = await save.then(() => true, (err: unknown) => !isAborted(err));
              if (completed) assert.equal(digest(await b.load(h)), digest(data));
              else await assertNotFound(b.stat(h), h);
            }
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        }));

      it('saveFile: a 32 MiB file is sent without being held whole in memory', { skip: conformance.serverInProcess && 'the server runs in this process' }, () =>
        withBackend(async (b) => {
          const dir = await mkdtemp(join(tmpdir(), 'stowage-conformance-'));
          try {
            const path = join(dir, 'big');
            const size = 32 * MiB;
            const data = randomData(size);
            await writeFile(path, data);
            const h = { type: 'data' as const, name: newId() };
            // External memory (Buffers, ArrayBuffers) that survives a garbage collection, above
            // what it was before the save, sampled while it runs: what the save holds, not the
            // pieces it is done with (when V8 collects those is its own affair). Reading the file
            // whole would hold its 32 MiB for the whole save.
            const gc = exposedGc();
            gc();
            const base = process.memoryUsage().arrayBuffers;
            let peak = 0;
            const sample = (): void => {
              gc();
              peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
            };
            const timer = setInterval(sample, 20);
            try {
              await b.saveFile!(h, { path, size });
            } finally {
              clearInterval(timer);
              sample();
            }
            // Half the file: reading it whole shows 32 MiB or more. A driver holding a few pieces
            // shows ~1 MiB, but a sample can also count pieces already let go whose memory V8
            // has not handed back yet (9.5 MiB once in CI, with the file sent in under 0.3 s).
            assert.ok(peak < size / 2, `peak external memory during the save: ${(peak / MiB).toFixed(1)} MiB for a ${size / MiB} MiB file`);
            assert.equal((await b.stat(h)).size, size);
            // Its first and last MiB (the whole was read back by the test above, smaller).
            for (const offset of [0, size - MiB]) {
              assert.equal(digest(await b.load(h, { offset, length: MiB })), digest(data.subarray(offset, offset + MiB)), `the MiB at ${offset}`);
            }
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        }));
    }

    it('lands 50 concurrent saves intact', () =>
      withBackend(async (b) => {
        const files = Array.from({ length: 50 }, (_, i) => ({ h: { type: 'data' as const, name: newId() }, data: randomData(1000 + i * 997) }));
        await Promise.all(files.map((f) => b.save(f.h, f.data)));
        const loaded = await Promise.all(files.map((f) => b.load(f.h)));
        loaded.forEach((data, i) => assert.equal(digest(data), digest(files[i].data), describeFile(files[i].h)));
        assert.deepEqual(
          await collect(b.list('data')),
          byName(files.map((f) => ({ name: f.h.name, size: f.data.length }))),
        );
      }));

    it('survives concurrent saves of the same name', () =>
      withBackend(async (b) => {
        const h = { type: 'index' as const, name: newId() };
        const data = randomData(200_000);
        await Promise.all(Array.from({ length: 10 }, () => b.save(h, data)));
        assert.equal(digest(await b.load(h)), digest(data));
        assert.deepEqual(await collect(b.list('index')), [{ name: h.name, size: data.length }]);
      }));

    it('never shows a reader part of a file being saved', () =>
      withBackend(async (b) => {
        const h = { type: 'data' as const, name: newId() };
        const data = randomData(24 * MiB);
        let saving = true;
        const save = b.save(h, data).finally(() => {
          saving = false;
        });
        // Several readers poll while the save runs; each sees no file or the whole file.
        const poll = async (look: () => Promise<void>): Promise<void> => {
          while (saving) {
            try {
              await look();
            } catch (err) {
              if (!(err instanceof NotFoundError)) throw err;
            }
          }
        };
        const bySize = async (): Promise<void> => {
          assert.equal((await b.stat(h)).size, data.length, 'a visible file has its full size');
        };
        const byLastByte = async (): Promise<void> => {
          assert.equal((await b.load(h, { offset: data.length - 1 })).length, 1, 'a visible file has its last byte');
        };
        const byListing = async (): Promise<void> => {
          for (const info of await collect(b.list('data'))) assert.equal(info.size, data.length, 'listed size is complete');
        };
        await Promise.all([save, poll(bySize), poll(bySize), poll(byLastByte), poll(byListing)]);
        assert.equal(digest(await b.load(h)), digest(data));
      }));

    it('rejects every call with AbortedError when the signal is already aborted', () =>
      withBackend(async (b) => {
        const existing = { type: 'keys' as const, name: newId() };
        await b.save(existing, randomData(10));
        const signal = AbortSignal.abort();
        const fresh = { type: 'keys' as const, name: newId() };
        await assert.rejects(b.create({ signal }), isAborted);
        await assert.rejects(b.save(fresh, randomData(10), { signal }), isAborted);
        await assert.rejects(b.load(existing, { signal }), isAborted);
        await assert.rejects(b.load(existing, { signal, offset: 1, length: 2 }), isAborted);
        await assert.rejects(b.stat(existing, { signal }), isAborted);
        for (const type of FILE_TYPES) await assert.rejects(collect(b.list(type, { signal })), isAborted);
        await assert.rejects(b.remove(existing, { signal }), isAborted);
        // Nothing happened: the aborted save left no file, the aborted remove removed nothing.
        await assertNotFound(b.stat(fresh), fresh);
        assert.deepEqual(await collect(b.list('keys')), [{ name: existing.name, size: 10 }]);
      }));

    it('leaves either nothing or the whole file when a save is aborted while running', () =>
      withBackend(async (b) => {
        const h = { type: 'data' as const, name: newId() };
        const data = randomData(16 * MiB);
        const controller = new AbortController();
        const save = b.save(h, data, { signal: controller.signal });
        controller.abort();
        let completed: boolean;
        try {
          await save;
          completed = true;
        } catch (err) {
          isAborted(err);
          completed = false;
        }
        if (completed) {
          assert.equal(digest(await b.load(h)), digest(data));
          assert.deepEqual(await collect(b.list('data')), [{ name: h.name, size: data.length }]);
        } else {
          await assertNotFound(b.stat(h), h);
          assert.deepEqual(await collect(b.list('data')), []);
        }
      }));

    it('is idempotent in create()', () =>
      withBackend(async (b) => {
        await b.create();
        const h = { type: 'keys' as const, name: newId() };
        const data = randomData(33);
        await b.save(h, data);
        await b.save({ type: 'config', name: '' }, randomData(9));
        await b.create();
        assert.deepEqual(await b.load(h), data);
        assert.deepEqual(await collect(b.list('keys')), [{ name: h.name, size: 33 }]);
        assert.deepEqual(await collect(b.list('config')), [{ name: 'config', size: 9 }]);
      }));

    it('keeps two backends from the factory apart', async () => {
      const first = await make();
      const second = await make();
      try {
        await first.backend.create();
        await second.backend.create();
        assert.notEqual(first.backend.location, second.backend.location);
        const h = { type: 'data' as const, name: newId() };
        const a = randomData(40);
        await first.backend.save(h, a);
        await first.backend.save({ type: 'config', name: '' }, randomData(5));
        for (const type of FILE_TYPES) assert.deepEqual(await collect(second.backend.list(type)), [], `second sees no ${type}`);
        await assertNotFound(second.backend.stat(h), h);
        const b2 = randomData(41);
        await second.backend.save(h, b2);
        assert.deepEqual(await first.backend.load(h), a);
        assert.deepEqual(await second.backend.load(h), b2);
        await second.backend.remove(h);
        assert.deepEqual(await first.backend.load(h), a);
      } finally {
        await first.backend.close();
        await second.backend.close();
        await first.cleanup();
        await second.cleanup();
      }
    });
  });
}
