// repairPacks as a library call: what restic's repair packs does, plus a result that says which
// blobs were salvaged and which were lost (restic only prints the damaged ones; a missing or
// truncated pack's blobs it drops silently). Against restic itself: test/interop/repair-packs.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository } from '../../src/repository/repository.ts';
import { repairPacks } from '../../src/snapshot/operations/repair-packs.ts';
import { InvalidInputError } from '../../src/errors.ts';

const KDF = { N: 1024, r: 8, p: 1 };

async function repoWithPacks() {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: KDF });
  const w = (await repo.loadIndex()).blobWriter({ packSize: 4096, compression: 'off' });
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push((await w.saveBlob('data', randomBytes(1000))).id);
  await w.flush();
  return { backend, repo, ids };
}

test('an intact pack: every blob salvaged into a new pack, the pack gone from index and storage', async () => {
  const { repo } = await repoWithPacks();
  const before = (await repo.loadIndex()).index.packs();
  const [pack, blobs] = [...before][0]!;
  const r = await repairPacks(repo, [pack]);
  assert.deepEqual(r.lost, []);
  assert.deepEqual(r.salvaged.map((b) => b.id).sort(), blobs.map((b) => b.id).sort());
  assert.deepEqual(r.packsRemoved, [pack]);
  const after = await repo.loadIndex();
  assert.ok(!after.index.packs().has(pack));
  for (const b of blobs) assert.equal((await after.loadBlob('data', b.id)).length, 1000);
});

test('a pack that no longer exists: its blobs are listed as lost and the index forgets the pack', async () => {
  const { backend, repo } = await repoWithPacks();
  const [pack, blobs] = [...(await repo.loadIndex()).index.packs()][0]!;
  await backend.remove({ type: 'data', name: pack });
  const r = await repairPacks(repo, [pack]);
  assert.deepEqual(r.salvaged, []);
  assert.deepEqual(r.lost.map((b) => b.id).sort(), blobs.map((b) => b.id).sort());
  assert.ok(r.lost.every((b) => b.message === 'the pack file does not exist' && b.pack === pack));
  assert.ok(!(await repo.loadIndex()).index.packs().has(pack));
});

test('bad IDs are refused before anything is touched', async () => {
  const { repo } = await repoWithPacks();
  await assert.rejects(repairPacks(repo, ['abc']), InvalidInputError);
  await assert.rejects(repairPacks(repo, []), /no ids specified/);
});
