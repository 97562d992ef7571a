// recover against restic 0.19.1: restic makes two snapshots and forgets one (not pruned); on two
// copies, `stowage recover` and `restic recover` must write the same snapshot (path, tag, host,
// user) over a tree with the same folders (name, mode, subtree); restic 0.19 then checks Stowage's
// copy with --read-data and restores the forgotten files from it. With nothing unreferenced, no
// snapshot is written.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'recover interop';

describe('recover: the snapshot restic 0.19.1 writes', () => {
  const restic = resticBin('0.19');
  let dir: string;
  let base: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-recover-'));
    await mkdir(path.join(dir, 'src/sub'), { recursive: true });
    await writeFile(path.join(dir, 'src/sub/lost.txt'), 'lost\n');
    base = path.join(dir, 'base');
    const opts = { repo: base, password: PASSWORD, cwd: dir };
    await resticOk(restic, ['init'], opts);
    await resticOk(restic, ['backup', 'src'], opts);
    await writeFile(path.join(dir, 'src/sub/lost.txt'), 'changed\n');
    await resticOk(restic, ['backup', 'src'], opts);
    const list = JSON.parse((await resticOk(restic, ['snapshots', '--json'], opts)).stdout) as Array<{ id: string }>;
    await resticOk(restic, ['forget', list[0]!.id], opts);
  });
  after(() => removeTree(dir));

  const recovered = async (repo: string) => {
    const opts = { repo, password: PASSWORD };
    const list = JSON.parse((await resticOk(restic, ['snapshots', '--json', '--tag', 'recovered'], opts)).stdout) as Array<Record<string, unknown>>;
    assert.equal(list.length, 1);
    const s = list[0]!;
    const tree = JSON.parse((await resticOk(restic, ['cat', 'tree', `${s.id as string}`], opts)).stdout) as { nodes: Array<Record<string, unknown>> };
    const { id: _id, short_id: _short, time: _time, tree: _tree, ...fields } = s;
    return { fields, nodes: tree.nodes.map(({ mtime: _m, atime: _a, ctime: _c, ...n }) => n), id: s.id as string };
  };

  it('the same snapshot and tree (times aside); restic checks it and restores from it', async () => {
    const ours = path.join(dir, 'ours');
    const theirs = path.join(dir, 'theirs');
    await cp(base, ours, { recursive: true });
    await cp(base, theirs, { recursive: true });
    const res = await runCli(['recover', '--no-cache'], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD } });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /found 1 unreferenced roots/);
    await resticOk(restic, ['recover'], { repo: theirs, password: PASSWORD });
    const [a, b] = [await recovered(ours), await recovered(theirs)];
    assert.deepEqual(a.fields, b.fields);
    assert.deepEqual(a.nodes, b.nodes);
    await resticOk(restic, ['check', '--read-data'], { repo: ours, password: PASSWORD });
    const target = path.join(dir, 'restored');
    const name = a.nodes[0]!.name as string;
    await resticOk(restic, ['restore', a.id, '--target', target], { repo: ours, password: PASSWORD });
    assert.equal(await readFile(path.join(target, name, 'src/sub/lost.txt'), 'utf8'), 'lost\n');

    // Nothing unreferenced any more: no second snapshot.
    const again = await runCli(['recover', '--no-cache'], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD } });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /found 0 unreferenced roots\nno snapshot to write\./);
  });
});
