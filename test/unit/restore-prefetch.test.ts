// A restore with --include reads ahead only the subtrees it may descend into: a sibling folder the
// include excludes is not read, so a pack that holds only such trees is never fetched (a remote
// `restore latest --include FILE` on a cold cache fetched one tree pack more than restic).
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { ObservedBackend, type BackendEvent } from '../../src/backend/wrappers/observe.ts';
import { initCrypto } from '../../src/repository/crypto.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { loadSnapshot } from '../../src/snapshot/engine/select.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };

before(async () => {
  await initCrypto();
});

test('restore --include of one file fetches no pack that holds only the trees of excluded siblings', async () => {
  const mem = new MemoryBackend();
  const repo = await Repository.init(mem, { password: 'pw', kdf: KDF });
  const src = await tmpDir('stowage-restore-prefetch');
  for (const d of ['a', 'b', 'c']) {
    await mkdir(path.join(src, d));
    await writeFile(path.join(src, d, 'f.txt'), `file in ${d}\n`);
  }
  // Three backups: b changes in the second, c in the third, so b's latest tree sits alone (with
  // the second root's trees) in the second backup's tree pack, off the path to a/f.txt.
  await backup(repo, { paths: [src], hostname: 'h' });
  await writeFile(path.join(src, 'b', 'g.txt'), 'new in b\n');
  await backup(repo, { paths: [src], hostname: 'h' });
  await writeFile(path.join(src, 'c', 'g.txt'), 'new in c\n');
  await backup(repo, { paths: [src], hostname: 'h' });

  const events: BackendEvent[] = [];
  const opened = await Repository.open(new ObservedBackend(mem, (e) => events.push(e)), { password: 'pw' });
  const indexed = await opened.loadIndex();
  // The pack of b's latest tree, found by walking the latest snapshot down to src/b.
  const latest = await loadSnapshot(indexed, 'latest');
  let tree = latest.snapshot.tree;
  for (const part of [...src.split('/').filter(Boolean), 'b']) {
    const node = decodeTree(await indexed.loadBlob('tree', tree), tree).find((n) => n.name === part)!;
    tree = node.subtree as BlobId;
  }
  const bPack = indexed.index.lookup(tree, 'tree')[0]!.packId;
  const aPath = (() => {
    let t = latest.snapshot.tree;
    return async () => {
      for (const part of [...src.split('/').filter(Boolean), 'a']) {
        const node = decodeTree(await indexed.loadBlob('tree', t), t).find((n) => n.name === part)!;
        t = node.subtree as BlobId;
      }
      return indexed.index.lookup(t, 'tree')[0]!.packId;
    };
  })();
  assert.notEqual(await aPath(), bPack, 'a and b have their trees in different packs');
  const packsOnPath = new Set(events.filter((e) => e.op === 'load' && e.type === 'data').map((e) => e.name));

  events.splice(0);
  const fresh = await Repository.open(new ObservedBackend(mem, (e) => events.push(e)), { password: 'pw' });
  const target = await tmpDir('stowage-restore-prefetch-target');
  const r = await restore(await fresh.loadIndex(), 'latest', { target, include: [path.join(src, 'a', 'f.txt')] });
  assert.equal(r.filesRestored, 1);
  const fetched = new Set(events.filter((e) => e.op === 'load' && e.type === 'data').map((e) => e.name));
  assert.ok(!fetched.has(bPack), `the pack of the excluded b's tree was fetched (${fetched.size} packs read; path ${packsOnPath.size})`);
});
