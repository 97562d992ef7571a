// diff, find and tag, compared with restic 0.19 on the same repositories: the library results
// (changes, statistics, matches, found IDs, tag effects) and the CLI's output byte for byte.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository, type IndexedRepository } from '../../src/repository/repository.ts';
import { goTimeFromNs } from '../../src/repository/gotime.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { diffSnapshots, nodesEqual } from '../../src/snapshot/operations/diff.ts';
import { findByPattern, findIds, parseFindTime } from '../../src/snapshot/operations/find.ts';
import { selectSnapshots } from '../../src/snapshot/engine/select.ts';
import { applyTagChange, tag } from '../../src/snapshot/operations/tag.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import type { Snapshot } from '../../src/snapshot/model/snapshot.ts';
import type { TreeNode } from '../../src/snapshot/model/node.ts';
import { decodeTree } from '../../src/snapshot/model/tree.ts';
import { resticBin, resticOk, resticJson, runRestic } from '../helpers/restic.ts';
import { runCli } from '../helpers/cli.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'diff find tag';
const restic = () => resticBin('0.19');

interface ResticSnap {
  id: string;
  short_id: string;
  tags?: string[];
  original?: string;
  hostname: string;
  tree: string;
}

describe('diff and find against restic', () => {
  let work: string;
  let data: string;
  let repoDir: string;
  let snaps: ResticSnap[];
  let repo: IndexedRepository;
  const ropts = () => ({ repo: repoDir, password: PASSWORD });
  const cliEnv = () => ({ RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC' });

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-dft-'));
    data = path.join(work, 'data');
    repoDir = path.join(work, 'repo');
    await mkdir(path.join(data, 'a/b'), { recursive: true });
    await mkdir(path.join(data, 'c'), { recursive: true });
    await mkdir(path.join(data, 'Upper/deep'), { recursive: true });
    await writeFile(path.join(data, 'a/f1'), 'hi\n');
    await writeFile(path.join(data, 'a/b/f2.go'), 'x\n');
    await symlink('f1', path.join(data, 'a/ln'));
    await writeFile(path.join(data, 'c/keep.txt'), 'keep');
    await writeFile(path.join(data, 'Upper/README.MD'), 'read me');
    await writeFile(path.join(data, 'Upper/deep/x.go'), 'package x');
    await writeFile(path.join(data, 'meta.txt'), 'm');
    await resticOk(restic(), ['init'], ropts());
    await resticOk(restic(), ['backup', '--host', 'h', '--tag', 't1', data], ropts());
    // Every kind of change: content (M), file → folder (T), added (+), removed folder (-), mode (U).
    await writeFile(path.join(data, 'a/f1'), 'changed\n');
    await rm(path.join(data, 'a/b/f2.go'));
    await mkdir(path.join(data, 'a/b/f2.go'));
    await writeFile(path.join(data, 'a/b/f2.go/inner.go'), 'inner');
    await writeFile(path.join(data, 'c/new.go'), 'new');
    await rm(path.join(data, 'Upper'), { recursive: true });
    await chmod(path.join(data, 'meta.txt'), 0o600);
    await mkdir(path.join(data, 'd/e'), { recursive: true });
    await writeFile(path.join(data, 'd/e/f.txt'), 'f');
    await resticOk(restic(), ['backup', '--host', 'h', data], ropts());
    snaps = await resticJson<ResticSnap[]>(restic(), ['snapshots'], ropts());
    assert.equal(snaps.length, 2);
    repo = await (await Repository.open(new LocalBackend(repoDir), { password: PASSWORD })).loadIndex();
  });
  after(async () => {
    await removeTree(work);
  });

  for (const metadata of [false, true]) {
    it(`diff${metadata ? ' --metadata' : ''}: the same changes and statistics as restic --json`, async () => {
      const [s1, s2] = [snaps[0]!.short_id, snaps[1]!.short_id];
      const args = ['diff', ...(metadata ? ['--metadata'] : []), s1, s2, '--json'];
      const lines = (await resticOk(restic(), args, ropts())).stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const stats = lines.pop()!;
      const changes: Array<{ path: string; modifier: string }> = [];
      const res = await diffSnapshots(repo, s1, s2, { metadata, onChange: (c) => changes.push(c) });
      assert.deepEqual(changes.map((c) => ({ message_type: 'change', ...c })), lines);
      const modifiers = new Set(changes.map((c) => c.modifier));
      for (const m of ['+', '-', 'M', metadata ? 'TU' : 'T']) assert.ok(modifiers.has(m), `no change with modifier ${m}`);
      assert.equal(changes.some((c) => c.modifier.includes('U')), metadata);
      const stat = (s: typeof res.added) => ({ files: s.files, dirs: s.dirs, others: s.others, data_blobs: s.dataBlobs, tree_blobs: s.treeBlobs, bytes: s.bytes });
      assert.deepEqual(
        { message_type: 'statistics', source_snapshot: s1, target_snapshot: s2, changed_files: res.changedFiles, added: stat(res.added), removed: stat(res.removed) },
        stats,
      );
    });
  }

  it('diff of subfolders ("ID:path"), both directions', async () => {
    for (const [x, y] of [[0, 1], [1, 0]] as const) {
      const a = `${snaps[x]!.id}:${data}/a`;
      const b = `${snaps[y]!.short_id}:${data}`;
      const lines = (await resticOk(restic(), ['diff', a, b, '--json'], ropts())).stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      lines.pop();
      const changes: Array<Record<string, unknown>> = [];
      await diffSnapshots(repo, a, b, { onChange: (c) => changes.push({ message_type: 'change', ...c }) });
      assert.deepEqual(changes, lines);
    }
  });

  it('the CLI prints exactly what restic prints (text, --metadata, --json, --quiet)', async () => {
    const [s1, s2] = [snaps[0]!.short_id, snaps[1]!.id];
    for (const flags of [[], ['--metadata'], ['--json'], ['--quiet']]) {
      const theirs = await resticOk(restic(), ['diff', ...flags, s1, s2], ropts());
      const ours = await runCli(['diff', ...flags, s1, s2], { env: cliEnv() });
      assert.equal(ours.code, 0, ours.stderr);
      assert.equal(ours.stdout, theirs.stdout, `diff ${flags.join(' ')}`);
    }
  });

  it('find by pattern: the same matches per snapshot as restic find --json', async () => {
    const cases: Array<{ patterns: string[]; ignoreCase?: boolean }> = [
      { patterns: ['f1'] },
      { patterns: ['*.go', 'keep.txt'] },
      { patterns: ['a'] },
      { patterns: ['readme.md'] },
      { patterns: ['readme.md'], ignoreCase: true },
      { patterns: ['b/*.go'] },
      { patterns: ['**/e'] },
      { patterns: [`${data}/c`] },
      { patterns: ['/c'] },
    ];
    const sizes: number[] = [];
    for (const { patterns, ignoreCase } of cases) {
      const args = ['find', ...(ignoreCase ? ['-i'] : []), ...patterns, '--json'];
      const theirs = JSON.parse((await resticOk(restic(), args, ropts())).stdout) as Array<{ snapshot: string; hits: number; matches: Array<{ path: string }> }>;
      const ours = new Map<string, string[]>();
      for await (const hit of findByPattern(repo, patterns, { ignoreCase })) {
        const list = ours.get(hit.snapshot.id) ?? [];
        ours.set(hit.snapshot.id, [...list, hit.path]);
      }
      assert.deepEqual(
        [...ours].map(([snapshot, paths]) => ({ snapshot, paths })),
        theirs.map((t) => ({ snapshot: t.snapshot, paths: t.matches.map((m) => m.path) })),
        `find ${args.join(' ')}`,
      );
      sizes.push(ours.size);
    }
    // The cases cover patterns that match nothing and patterns that match in both snapshots.
    assert.ok(sizes.includes(0) && sizes.includes(2), `matches per case: ${sizes.join(',')}`);
  });

  it('find by pattern: the CLI prints what restic prints (text, --long, --json, --reverse, --snapshot)', async () => {
    const cases = [
      ['f1', '*.go'],
      ['--long', 'a'],
      ['--json', 'a', 'README.MD'],
      ['--json', '-i', 'readme.md'],
      ['--reverse', '-l', '--human-readable', '*.txt'],
      ['--snapshot', snaps[0]!.short_id, 'x.go'],
      ['nothing-matches'],
      ['--json', 'nothing-matches'],
    ];
    for (const args of cases) {
      const theirs = await resticOk(restic(), ['find', ...args], ropts());
      const ours = await runCli(['find', ...args], { env: cliEnv() });
      assert.equal(ours.code, 0, ours.stderr);
      assert.equal(ours.stdout, theirs.stdout, `find ${args.join(' ')}`);
    }
  });

  it('find --blob and --tree: the same places as restic, full and short IDs, in the CLI too', async () => {
    const root = snaps[1]!.tree;
    const top = decodeTree(await repo.loadBlob('tree', root as BlobId), root);
    const subtree = top[0]!.subtree!;
    const f1 = await nodeAt(repo, root as BlobId, [...data.split('/').filter(Boolean), 'a', 'f1']);
    const blob = f1.content![0]!;
    const cases: Array<{ args: string[]; blobs?: string[]; trees?: string[] }> = [
      { args: ['--tree', root, subtree.slice(0, 8)], trees: [root, subtree.slice(0, 8)] },
      { args: ['--blob', blob.slice(0, 8)], blobs: [blob.slice(0, 8)] },
      { args: ['--blob', blob], blobs: [blob] },
    ];
    for (const c of cases) {
      const theirs = JSON.parse((await resticOk(restic(), ['find', ...c.args, '--json'], ropts())).stdout) as Array<Record<string, unknown>>;
      const ours: Array<Record<string, unknown>> = [];
      for await (const o of findIds(repo, { blobs: c.blobs, trees: c.trees })) {
        ours.push({ object_type: o.kind, id: o.id, path: o.path, ...(o.parentTree ? { parent_tree: o.parentTree } : {}), snapshot: o.snapshot.id });
      }
      assert.ok(ours.length > 0);
      assert.deepEqual(ours, theirs.map(({ time: _t, ...rest }) => rest), `find ${c.args.join(' ')}`);
      for (const json of [[], ['--json']]) {
        const r = await resticOk(restic(), ['find', ...c.args, ...json], ropts());
        const o = await runCli(['find', ...c.args, ...json], { env: cliEnv() });
        assert.equal(o.code, 0, o.stderr);
        assert.equal(o.stdout, r.stdout, `find ${c.args.join(' ')} ${json.join(' ')}`);
      }
    }
  });

  it('find --pack lists where the blobs of a pack are used, as restic does', async () => {
    const f1 = await nodeAt(repo, snaps[0]!.tree as BlobId, [...data.split('/').filter(Boolean), 'a', 'f1']);
    const pack = repo.index.lookup(f1.content![0]!, 'data')[0]!.packId;
    const theirs = await resticOk(restic(), ['find', '--pack', pack.slice(0, 8), '--json'], ropts());
    const ours = await runCli(['find', '--pack', pack.slice(0, 8), '--json'], { env: cliEnv() });
    assert.equal(ours.code, 0, ours.stderr);
    assert.deepEqual(JSON.parse(ours.stdout), JSON.parse(theirs.stdout));
    const missing = await runCli(['find', '--pack', 'deadbeef'], { env: cliEnv() });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /unable to find pack\(s\): \[deadbeef\]/);
  });

  it('selectSnapshots: IDs, prefixes and "latest" (which alone uses the filter); the rest is reported', async () => {
    const r = repo.repo;
    const all = await selectSnapshots(r, []);
    assert.deepEqual(all.snapshots.map((s) => s.id), snaps.map((s) => s.id));
    const byTag = await selectSnapshots(r, [], { tags: [['t1']] });
    assert.deepEqual(byTag.snapshots.map((s) => s.id), [snaps[0]!.id]);
    const latestTagged = await selectSnapshots(r, ['latest'], { tags: [['t1']] });
    assert.deepEqual(latestTagged.snapshots.map((s) => s.id), [snaps[0]!.id]);
    const explicit = await selectSnapshots(r, [snaps[1]!.short_id, snaps[1]!.id, 'ffffffff', 'x:y'], { hosts: ['other'] });
    assert.deepEqual(explicit.snapshots.map((s) => s.id), [snaps[1]!.id]);
    assert.deepEqual(explicit.ignored.map((i) => i.ref), ['ffffffff', 'x:y', 'filters']);
  });
});

describe('tag against restic', () => {
  let work: string;
  let repoDir: string;
  const ropts = () => ({ repo: repoDir, password: PASSWORD });
  const snapshots = () => resticJson<ResticSnap[]>(restic(), ['snapshots'], ropts());

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-tag-'));
    repoDir = path.join(work, 'repo');
    const data = path.join(work, 'data');
    await mkdir(data);
    await writeFile(path.join(data, 'file'), 'content');
    await resticOk(restic(), ['init'], ropts());
    await resticOk(restic(), ['backup', '--host', 'h1', '--tag', 'a,b,c,d', data], ropts());
    await resticOk(restic(), ['backup', '--host', 'h2', data], ropts());
  });
  after(async () => {
    await removeTree(work);
  });

  it('applyTagChange follows restic: add skips present tags, remove moves the last tag into the gap, set always changes', () => {
    const s = { tags: ['a', 'b', 'c', 'd'] } as Snapshot;
    assert.deepEqual(applyTagChange(s, { remove: ['b'] })?.tags, ['a', 'd', 'c']);
    assert.deepEqual(applyTagChange(s, { add: ['c', 'e', 'e'] })?.tags, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(applyTagChange(s, { add: ['a'], remove: ['zz'] }), undefined);
    assert.deepEqual(applyTagChange(s, { set: ['a', 'b', 'c', 'd'] })?.tags, ['a', 'b', 'c', 'd']);
    assert.deepEqual(applyTagChange(s, { set: [] })?.tags, []);
    assert.throws(() => applyTagChange(s, {}), /nothing to do/);
    assert.throws(() => applyTagChange(s, { set: ['x'], add: ['y'] }), /cannot be given at the same time/);
  });

  it('the library rewrites the snapshot with original set, removes the old file, and restic agrees', async () => {
    const before = await snapshots();
    const h1 = before.find((s) => s.hostname === 'h1')!;
    const r = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
    const res = await tag(r, { filter: { hosts: ['h1'] }, remove: ['b'], add: ['x'] });
    assert.equal(res.changed.length, 1);
    assert.equal(res.changed[0]!.oldId, h1.id);
    // restic adds first, then removes by moving the last tag into the gap.
    assert.deepEqual(res.changed[0]!.tags, ['a', 'x', 'c', 'd']);
    const after1 = await snapshots();
    assert.equal(after1.length, 2);
    assert.equal(after1.some((s) => s.id === h1.id), false, 'the old snapshot file is gone');
    const changed = after1.find((s) => s.id === res.changed[0]!.newId)!;
    assert.deepEqual(changed.tags, ['a', 'x', 'c', 'd']);
    assert.equal(changed.original, h1.id);
    assert.equal((await listSnapshots(r)).length, 2);

    // restic changes it again (removing 'a' moves the last tag into its place, as Stowage does): original stays the first ID; then Stowage again.
    await resticOk(restic(), ['tag', '--remove', 'a', changed.id], ropts());
    const after2 = await snapshots();
    const again = after2.find((s) => s.hostname === 'h1')!;
    assert.deepEqual(again.tags, ['d', 'x', 'c']);
    assert.equal(again.original, h1.id);
    const res2 = await tag(r, { snapshots: [again.id.slice(0, 10)], set: ['only'] });
    assert.equal(res2.changed.length, 1);
    const after3 = await snapshots();
    assert.deepEqual(after3.find((s) => s.hostname === 'h1')!.tags, ['only']);
    assert.equal(after3.find((s) => s.hostname === 'h1')!.original, h1.id);
    // Nothing to change: the snapshot stays as it is.
    const res3 = await tag(r, { filter: { hosts: ['h1'] }, add: ['only'] });
    assert.deepEqual(res3.changed, []);
    assert.equal(res3.unchanged.length, 1);
    await resticOk(restic(), ['check'], ropts());
  });

  it('the CLI: restic messages and JSON, exit codes for bad flag combinations', async () => {
    const env = { RESTIC_REPOSITORY: repoDir, RESTIC_PASSWORD: PASSWORD };
    const h2 = (await snapshots()).find((s) => s.hostname === 'h2')!;
    const json = await runCli(['tag', '--json', '--add', 'p, q', '--host', 'h2'], { env });
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.message_type, 'changed');
    assert.equal(lines[0]!.old_snapshot_id, h2.id);
    assert.deepEqual(lines[1], { message_type: 'summary', changed_snapshots: 1 });
    const now = (await snapshots()).find((s) => s.hostname === 'h2')!;
    assert.equal(now.id, lines[0]!.new_snapshot_id);
    assert.deepEqual(now.tags, ['p', 'q']);
    assert.equal(now.original, h2.id);

    const text = await runCli(['tag', '--add', 'p', '--host', 'h2'], { env });
    assert.equal(text.stdout, 'create exclusive lock for repository\nno snapshots were modified\n');
    const theirs = await runRestic(restic(), ['tag', '--add', 'p', '--host', 'h2'], ropts());
    assert.equal(text.stdout, theirs.stdout);

    const ignoring = await runCli(['tag', '--add', 'z', 'ffffffff'], { env });
    assert.equal(ignoring.code, 0);
    assert.match(ignoring.stderr, /Ignoring "ffffffff"/);
    assert.match(ignoring.stdout, /no snapshots were modified/);

    assert.equal((await runCli(['tag'], { env })).code, 1);
    const both = await runCli(['tag', '--set', 'a', '--add', 'b'], { env });
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--set and --add\/--remove cannot be given at the same time/);
  });
});

describe('diff and find helpers', () => {
  it('nodesEqual compares times as instants, as restic does', () => {
    const t = 1_700_000_000_123_456_789n;
    const node = (offset: number): TreeNode => ({
      name: 'f', type: 'file', mode: 0o644, mtime: goTimeFromNs(t, offset), atime: goTimeFromNs(t, offset), ctime: goTimeFromNs(t, offset),
      uid: 1, gid: 1, size: 3, content: [],
    });
    assert.equal(nodesEqual(node(0), node(120)), true);
    assert.equal(nodesEqual(node(0), { ...node(0), mtime: goTimeFromNs(t + 1n, 0) }), false);
    assert.equal(nodesEqual(node(0), { ...node(0), content: null }), false);
    assert.equal(nodesEqual(node(0), { ...node(0), size: 3n }), true);
    assert.equal(
      nodesEqual({ ...node(0), extendedAttributes: [{ name: 'a', value: Buffer.from('1') }, { name: 'b', value: Buffer.from('') }] },
        { ...node(0), extendedAttributes: [{ name: 'b', value: Buffer.from('') }, { name: 'a', value: Buffer.from('1') }] }),
      true,
    );
  });

  it('parseFindTime reads restic\'s formats', () => {
    assert.equal(parseFindTime('2024-02-03 04:05:06 +0100').toISOString(), '2024-02-03T03:05:06.000Z');
    assert.equal(parseFindTime('03.02.2024 04:05 UTC').toISOString(), '2024-02-03T04:05:00.000Z');
    const local = parseFindTime('2024-02-03');
    assert.deepEqual([local.getFullYear(), local.getMonth(), local.getDate(), local.getHours()], [2024, 1, 3, 0]);
    assert.throws(() => parseFindTime('2024-13-01'), /unable to parse time/);
    assert.throws(() => parseFindTime('yesterday'), /unable to parse time/);
  });
});

async function nodeAt(repo: IndexedRepository, root: BlobId, parts: string[]): Promise<TreeNode> {
  let tree = root;
  let node: TreeNode | undefined;
  for (const part of parts) {
    node = decodeTree(await repo.loadBlob('tree', tree), tree).find((n) => n.name === part);
    assert.ok(node, `no ${part}`);
    if (node.subtree) tree = node.subtree;
  }
  return node!;
}
