// rewrite against the real restic 0.19.1. restic makes a small repository (two snapshots, one
// tagged, with a secret file, logs and an empty folder); each case copies it twice, runs
// `stowage rewrite` on one copy and `restic rewrite` with the same flags on the other, and
// requires the same result: the same snapshot files (decoded; IDs differ only because the files are
// encrypted), so the same tree IDs, originals, tags, hosts, times and summaries; the same lines
// printed. Then restic 0.19 checks Stowage's copy with --read-data, and `restic diff OLD NEW` lists
// exactly the excluded paths as removed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';

const PASSWORD = 'rewrite interop';
process.env.TZ = 'UTC';

interface JsonSnapshot {
  id: string;
  tree: string;
  original?: string;
  tags?: string[];
  [k: string]: unknown;
}

describe('rewrite: the same snapshots as restic 0.19.1', () => {
  const restic = resticBin('0.19');
  let dir: string;
  let base: string;
  let patternDir: string;
  let copies = 0;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-rewrite-'));
    const src = path.join(dir, 'src');
    for (const d of ['a/b', 'c', 'empty/sub', 'd/e']) await mkdir(path.join(src, d), { recursive: true });
    await writeFile(path.join(src, 'a/b/Secret.txt'), 'password=hunter2\n');
    await writeFile(path.join(src, 'a/keep.txt'), 'keep me\n');
    await writeFile(path.join(src, 'c/app.log'), 'log line\n'.repeat(50));
    await writeFile(path.join(src, 'd/e/q.txt'), 'q\n');
    await writeFile(path.join(src, 'top'), 'top\n');
    base = path.join(dir, 'base');
    const opts = { repo: base, password: PASSWORD, cwd: dir };
    await resticOk(restic, ['init'], opts);
    await resticOk(restic, ['backup', '--host', 'h1', 'src'], opts);
    await writeFile(path.join(src, 'c/other.log'), 'more\n');
    await resticOk(restic, ['backup', '--host', 'h2', '--tag', 't2', 'src'], opts);
    patternDir = path.join(dir, 'patterns');
    await mkdir(patternDir);
    // A BOM, a comment, a blank line and a variable, as restic reads pattern files.
    await writeFile(path.join(patternDir, 'iexclude'), '\ufeff# secrets\n\n  /SRC/A/B/${SECRET_NAME}  \n');
  });
  after(() => removeTree(dir));

  /** Two fresh copies of the base repository: Stowage's and restic's. */
  async function twoCopies(): Promise<{ ours: string; theirs: string }> {
    const n = ++copies;
    const ours = path.join(dir, `ours-${n}`);
    const theirs = path.join(dir, `theirs-${n}`);
    await cp(base, ours, { recursive: true });
    await cp(base, theirs, { recursive: true });
    return { ours, theirs };
  }

  const env = (repo: string) => ({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC', SECRET_NAME: 'secret.txt' });

  async function snapshots(repo: string): Promise<JsonSnapshot[]> {
    return resticJson<JsonSnapshot[]>(restic, ['snapshots'], { repo, password: PASSWORD });
  }

  /** Each snapshot's decoded file, keyed by nothing that the encryption changes. */
  async function contents(repo: string): Promise<string[]> {
    const list = await snapshots(repo);
    const out: string[] = [];
    for (const s of list) {
      const res = await resticOk(restic, ['cat', 'snapshot', s.id], { repo, password: PASSWORD });
      out.push(JSON.stringify(JSON.parse(res.stdout)));
    }
    return out.sort();
  }

  /** Runs both with the same arguments; returns both outputs. */
  async function both(args: string[], copy: { ours: string; theirs: string }): Promise<{ ours: string; theirs: string }> {
    const ours = await runCli(['rewrite', '--no-cache', ...args], { env: env(copy.ours), cwd: dir });
    assert.equal(ours.code, 0, `stowage rewrite ${args.join(' ')}: ${ours.stderr}`);
    const theirs = await resticOk(restic, ['rewrite', ...args], { repo: copy.theirs, password: PASSWORD, cwd: dir, env: { SECRET_NAME: 'secret.txt' } });
    return { ours: ours.stdout, theirs: theirs.stdout };
  }

  /**
   * Output as its blocks (one per snapshot, then the count), sorted: restic prints the snapshots in
   * the order its parallel loads finish. New snapshot IDs (which differ with the encryption) masked.
   */
  const shape = (s: string) => s.replace(/saved new snapshot [0-9a-f]{8}/g, 'saved new snapshot X').split('\n').filter((l) => !/lock/.test(l)).join('\n').split('\n\n').map((b) => b.trim()).sort();

  it('--exclude / --iexclude-file (with $VAR): same trees, summaries and tags; check --read-data passes; diff lists the excluded paths', async () => {
    const copy = await twoCopies();
    const before = await snapshots(copy.ours);
    const args = ['--exclude', '*.log', '--iexclude-file', path.join(patternDir, 'iexclude')];
    const out = await both(args, copy);
    assert.deepEqual(shape(out.ours), shape(out.theirs));
    const ours = await contents(copy.ours);
    assert.deepEqual(ours, await contents(copy.theirs));
    assert.equal(ours.length, 4);

    await resticOk(restic, ['check', '--read-data'], { repo: copy.ours, password: PASSWORD });
    const after = await snapshots(copy.ours);
    const second = before.find((s) => s.tags?.includes('t2'))!;
    const rewritten = after.find((s) => s.original === second.id)!;
    assert.deepEqual(rewritten.tags, ['t2', 'rewrite']);
    const diff = await resticOk(restic, ['diff', second.id, rewritten.id], { repo: copy.ours, password: PASSWORD });
    const removed = diff.stdout.split('\n').filter((l) => l.startsWith('-')).map((l) => l.replace(/^-\s+/, '')).sort();
    assert.deepEqual(removed, ['/src/a/b/Secret.txt', '/src/c/app.log', '/src/c/other.log']);
    assert.equal(diff.stdout.split('\n').filter((l) => l.startsWith('+')).length, 0);

    // Unchanged subtrees keep their IDs: /src/d is the same tree before and after; /src/a is new.
    const subtrees = async (id: string) => {
      const res = await resticOk(restic, ['cat', 'tree', `${id}:/src`], { repo: copy.ours, password: PASSWORD });
      const tree = JSON.parse(res.stdout) as { nodes: Array<{ name: string; subtree?: string }> };
      return new Map(tree.nodes.map((n) => [n.name, n.subtree]));
    };
    const [old, now] = [await subtrees(second.id), await subtrees(rewritten.id)];
    assert.equal(now.get('d'), old.get('d'));
    assert.ok(now.get('d'));
    assert.notEqual(now.get('a'), old.get('a'));

    // A second run changes nothing (the patterns match nothing more, the summaries agree).
    const again = await runCli(['rewrite', '--no-cache', ...args, rewritten.id], { env: env(copy.ours), cwd: dir });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /no snapshots were modified/);
  });

  it('--include, --forget, --new-host, --new-time and a tag filter: the same snapshots as restic', async () => {
    const copy = await twoCopies();
    const args = ['--include', '/src/d', '--iinclude', '*.TXT', '--forget', '--new-host', 'h9', '--new-time', '2024-01-02 03:04:05', '--tag', 't2'];
    const out = await both(args, copy);
    assert.deepEqual(shape(out.ours), shape(out.theirs));
    const ours = await contents(copy.ours);
    assert.deepEqual(ours, await contents(copy.theirs));
    assert.equal(ours.length, 2, 'the original of the rewritten snapshot is forgotten');
    await resticOk(restic, ['check', '--read-data'], { repo: copy.ours, password: PASSWORD });
  });

  it('an include matching nothing, --snapshot-summary alone and --dry-run: restic\'s decisions and lines', async () => {
    const copy = await twoCopies();
    for (const args of [['--include', 'nomatch'], ['-s'], ['--dry-run', '--exclude', 'top', '--forget', '--new-time', '2024-01-02 03:04:05'], ['--exclude', '/src']]) {
      const out = await both(args, copy);
      assert.deepEqual(shape(out.ours), shape(out.theirs), args.join(' '));
      assert.deepEqual(await contents(copy.ours), await contents(copy.theirs), args.join(' '));
    }
    const nothing = await runCli(['rewrite', '--no-cache'], { env: env(copy.ours), cwd: dir });
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /Nothing to do/);
    const mixed = await runCli(['rewrite', '--no-cache', '-e', 'a', '-i', 'b'], { env: env(copy.ours), cwd: dir });
    assert.equal(mixed.code, 1);
    assert.match(mixed.stderr, /mutually exclusive/);
  });
});
