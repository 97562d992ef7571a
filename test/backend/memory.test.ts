import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { backendConformance } from './conformance.ts';

backendConformance('MemoryBackend', async () => ({ backend: new MemoryBackend(), cleanup: async () => {} }));

describe('MemoryBackend', () => {
  it('has its own location per instance and 8 connections by default', () => {
    const a = new MemoryBackend();
    const b = new MemoryBackend({ connections: 3 });
    assert.match(a.location, /^memory:\d+$/);
    assert.notEqual(a.location, b.location);
    assert.equal(a.connections, 8);
    assert.equal(b.connections, 3);
  });

  it('rejects a connection count that is not a positive integer', () => {
    assert.throws(() => new MemoryBackend({ connections: 0 }), InvalidInputError);
    assert.throws(() => new MemoryBackend({ connections: 2.5 }), InvalidInputError);
  });

  it('keeps its files after close, so a test can reopen a repository on it', async () => {
    const b = new MemoryBackend();
    const h = { type: 'keys' as const, name: 'a'.repeat(64) };
    await b.save(h, new Uint8Array([1, 2, 3]));
    await b.close();
    assert.deepEqual(await b.load(h), new Uint8Array([1, 2, 3]));
  });
});
