// generic_attributes (restic ≥ 0.17 writes Windows metadata there: creation time, file
// attributes, security descriptors) kept byte for byte. A restic-made snapshot gets such a node
// (restic on Linux writes none, so it is injected into its tree); restic 0.19.1 reads it and checks
// the repository clean; Stowage's copy keeps the tree's ID (its bytes), rewrite keeps the node's
// field in the rewritten folder, and restore on Linux goes through as restic's does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LocalBackend, Repository, decodeTree, loadSnapshot } from '../../src/index.ts';
import { encodeTree } from '../../src/snapshot/model/tree.ts';
import { decodeSnapshot, encodeSnapshot } from '../../src/snapshot/model/snapshot.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { resticBin, resticJson, resticOk, runRestic } from '../helpers/restic.ts';

const PASSWORD = 'generic attributes test';
const work = await tmpDir('stowage-generic-attrs');
const repo = path.join(work, 'repo');
const src = path.join(work, 'src');
const r19 = resticBin('0.19');
const opts = { repo, password: PASSWORD };
const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
await mkdir(path.join(src, 'dir'), { recursive: true });
await writeFile(path.join(src, 'dir', 'a.txt'), 'a file with Windows metadata\n');
await writeFile(path.join(src, 'dir', 'b.txt'), 'its neighbour\n');
await resticOk(r19, ['init'], opts);
await resticOk(r19, ['backup', '--host', 'h', src], opts);

// What restic on Windows writes (restic's windows.* keys; values are JSON of any shape).
const ATTRS = {
  'windows.creation_time': { LowDateTime: 3_725_468_864, HighDateTime: 31_114_823 },
  'windows.file_attributes': 33,
  'windows.security_descriptor': 'AQAEgBQAAAAwAAAAAAAAAEwAAAABBQAAAAAABRUAAAA=',
};

/** Tree IDs from the root down to `dir`, via restic's `cat blob`. */
async function treePath(bin: string, repository: string, root: string): Promise<string[]> {
  const ids = [root];
  for (const name of [...src.split('/').filter(Boolean), 'dir']) {
    const tree = await resticJson<{ nodes: Array<{ name: string; subtree?: string }> }>(bin, ['cat', 'blob', ids.at(-1)!], { repo: repository, password: PASSWORD });
    ids.push(tree.nodes.find((n) => n.name === name)!.subtree!);
  }
  return ids;
}

// Inject the attributes into a.txt's node and write the trees above it and a snapshot anew.
let dirTree: string;
{
  await using r = await Repository.open(new LocalBackend(repo), { password: PASSWORD });
  const indexed = await r.loadIndex();
  const { id: oldId, snapshot } = await loadSnapshot(indexed, 'latest');
  const ids = await treePath(r19, repo, snapshot.tree);
  const writer = indexed.blobWriter({});
  let child: BlobId | undefined;
  let childName: string | undefined;
  for (let i = ids.length - 1; i >= 0; i--) {
    const nodes = decodeTree(await indexed.loadBlob('tree', ids[i] as BlobId), ids[i]!);
    if (child === undefined) {
      const a = nodes.find((n) => n.name === 'a.txt')!;
      a.genericAttributes = Object.fromEntries(Object.entries(ATTRS).map(([k, v]) => [k, JSON.stringify(v)]));
    } else nodes.find((n) => n.name === childName)!.subtree = child;
    child = (await writer.saveBlob('tree', encodeTree(nodes))).id;
    if (i === ids.length - 1) dirTree = child;
    childName = i > 0 ? [...src.split('/').filter(Boolean), 'dir'][i - 1] : undefined;
  }
  await writer.flush();
  const stored = decodeSnapshot(await r.loadUnpacked('snapshots', oldId), oldId);
  await r.saveUnpacked('snapshots', encodeSnapshot({ ...stored, tree: child! }));
  await r.backend.remove({ type: 'snapshots', name: oldId });
}

async function aNode(repository: string, tree: string): Promise<Record<string, unknown>> {
  const t = await resticJson<{ nodes: Array<Record<string, unknown>> }>(r19, ['cat', 'blob', tree], { repo: repository, password: PASSWORD });
  return t.nodes.find((n) => n.name === 'a.txt')!;
}

test('restic 0.19.1 reads the injected node and checks the repository clean', async () => {
  assert.deepEqual((await aNode(repo, dirTree)).generic_attributes, ATTRS);
  await resticOk(r19, ['check', '--read-data'], opts);
  await resticOk(resticBin('0.14'), ['check', '--read-data'], opts);
  // Stowage reads it too (ls, and its own check).
  const ls = await runCli(['ls', 'latest', path.join(src, 'dir')], { env });
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /a\.txt/);
  assert.equal((await runCli(['check', '--read-data'], { env })).code, 0);
});

test('copy keeps the tree byte for byte (same ID in the target); restic checks the target clean', async () => {
  const target = path.join(work, 'copy');
  assert.equal((await runCli(['init', '--copy-chunker-params', '--from-repo', repo, '--from-password-file', await pw()], { env: { RESTIC_REPOSITORY: target, RESTIC_PASSWORD: PASSWORD } })).code, 0);
  const c = await runCli(['copy', '--from-repo', repo, '--from-password-file', await pw()], { env: { RESTIC_REPOSITORY: target, RESTIC_PASSWORD: PASSWORD } });
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual((await aNode(target, dirTree)).generic_attributes, ATTRS, 'the same tree ID exists in the target');
  await resticOk(r19, ['check', '--read-data'], { repo: target, password: PASSWORD });
});

test('rewrite keeps the field in the folder it rewrites; restic checks clean', async () => {
  const r = await runCli(['rewrite', '--exclude', path.join(src, 'dir', 'b.txt')], { env });
  assert.equal(r.code, 0, r.stderr);
  const snaps = await resticJson<Array<{ id: string; tree: string; time: string }>>(r19, ['snapshots'], opts);
  assert.equal(snaps.length, 2);
  // The rewritten snapshot's folder is the other one.
  const dirs = await Promise.all(snaps.map(async (s) => (await treePath(r19, repo, s.tree)).at(-1)!));
  const rewritten = dirs.find((d) => d !== dirTree);
  assert.ok(rewritten, 'the rewritten snapshot has another dir tree');
  const t = await resticJson<{ nodes: Array<Record<string, unknown>> }>(r19, ['cat', 'blob', rewritten], opts);
  assert.deepEqual(t.nodes.map((n) => n.name), ['a.txt'], 'b.txt is gone: the folder was rewritten');
  assert.deepEqual(t.nodes[0]!.generic_attributes, ATTRS);
  await resticOk(r19, ['check', '--read-data'], opts);
});

test('restore on Linux goes through as restic\'s does; the file content is exact', async () => {
  const ours = path.join(work, 'restore-ours');
  const theirs = path.join(work, 'restore-theirs');
  const s = await runCli(['restore', 'latest', '--target', ours], { env });
  const r = await runRestic(r19, ['restore', 'latest', '--target', theirs], opts);
  assert.equal(s.code, r.code, `stowage: ${s.stderr}\nrestic: ${r.stderr}`);
  assert.equal(await readFile(path.join(ours, src, 'dir', 'a.txt'), 'utf8'), 'a file with Windows metadata\n');
  assert.equal(await readFile(path.join(theirs, src, 'dir', 'a.txt'), 'utf8'), 'a file with Windows metadata\n');
});

let pwFile: string | undefined;
async function pw(): Promise<string> {
  if (!pwFile) {
    pwFile = path.join(work, 'pw');
    await writeFile(pwFile, PASSWORD);
  }
  return pwFile;
}
