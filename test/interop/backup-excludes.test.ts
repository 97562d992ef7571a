// backup's exclude options against restic 0.19.1: one small source folder is backed up by restic
// and by `stowage backup` with the same flags (--iexclude, --iexclude-file with a BOM, a comment
// and a $VAR, --exclude-file, --exclude-larger-than, --exclude-if-present with and without a
// header, --exclude-caches), and the two snapshots must hold the same entries (restic lists both).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { parseSize } from '../../src/cli/commands/backup.ts';

const PASSWORD = 'backup excludes interop';

describe('backup exclude options: the same snapshot contents as restic 0.19.1', () => {
  const restic = resticBin('0.19');
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stowage-backup-excludes-'));
    const src = path.join(dir, 'src');
    const files: Record<string, string> = {
      'cache/CACHEDIR.TAG': 'Signature: 8a477f597d28d172789f06886806bc55\nrest of the tag\n',
      'cache/sub/c': 'c\n',
      'fakecache/CACHEDIR.TAG': 'not a signature\n',
      'fakecache/f': 'f\n',
      'marked/.nobackup': '',
      'marked/x/m': 'm\n',
      'headed/.marker': 'KEEPOUT and more',
      'headed/h': 'h\n',
      'unheaded/.marker': 'something else',
      'unheaded/u': 'u\n',
      'plain/big': 'x'.repeat(5000),
      'plain/edge': 'y'.repeat(4096),
      'plain/Small.TXT': 's\n',
      'plain/notes.Md': 'n\n',
      'plain/keep': 'k\n',
      'plain/drop.tmp': 't\n',
    };
    for (const [p, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(src, p)), { recursive: true });
      await writeFile(path.join(src, p), content);
    }
    await writeFile(path.join(dir, 'iexcludes'), '\ufeff# case-blind\n\n  *.${EXT}  \n');
    await writeFile(path.join(dir, 'excludes'), '*.tmp\n');
  });
  after(() => removeTree(dir));

  async function entries(repo: string): Promise<string[]> {
    const res = await resticOk(restic, ['ls', '--json', 'latest'], { repo, password: PASSWORD });
    return res.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { struct_type: string; path?: string; type?: string; size?: number })
      .filter((n) => n.struct_type === 'node').map((n) => `${n.path} ${n.type} ${n.size ?? ''}`).sort();
  }

  it('the same entries for the same flags', async () => {
    const flags = [
      '--iexclude', '*.TXT', '--iexclude-file', path.join(dir, 'iexcludes'), '--exclude-file', path.join(dir, 'excludes'),
      '--exclude-larger-than', '4k', '--exclude-if-present', '.nobackup', '--exclude-if-present', '.marker:KEEPOUT', '--exclude-caches',
    ];
    const theirs = path.join(dir, 'theirs');
    const ours = path.join(dir, 'ours');
    for (const repo of [theirs, ours]) await resticOk(restic, ['init'], { repo, password: PASSWORD });
    await resticOk(restic, ['backup', 'src', '--read-concurrency', '1', ...flags], { repo: theirs, password: PASSWORD, cwd: dir, env: { EXT: 'md' } });
    // One file read at a time: the same snapshot as with one worker per core.
    const res = await runCli(['backup', '--no-cache', 'src', '--read-concurrency', '1', ...flags], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD, EXT: 'md' }, cwd: dir });
    assert.equal(res.code, 0, res.stderr);
    const list = await entries(ours);
    assert.deepEqual(list, await entries(theirs));
    // What the flags left out, so the comparison cannot pass with the flags ignored by both.
    for (const gone of ['/src/cache/sub', '/src/marked/x', '/src/headed/h', '/src/plain/big', '/src/plain/Small.TXT', '/src/plain/notes.Md', '/src/plain/drop.tmp']) {
      assert.ok(!list.some((l) => l.startsWith(gone + ' ')), gone);
    }
    for (const kept of ['/src/fakecache/f', '/src/unheaded/u', '/src/plain/edge', '/src/cache/CACHEDIR.TAG', '/src/plain/keep']) {
      assert.ok(list.some((l) => l.startsWith(kept + ' ')), kept);
    }
  });

  it('--skip-if-unchanged: no snapshot when the tree is the parent\'s, as restic decides on the same repository', async () => {
    const repo = path.join(dir, 'skip');
    await resticOk(restic, ['init'], { repo, password: PASSWORD });
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    const count = async () => (JSON.parse((await resticOk(restic, ['snapshots', '--json'], { repo, password: PASSWORD })).stdout) as unknown[]).length;
    const first = await runCli(['backup', '--no-cache', 'src/plain', '--skip-if-unchanged'], { env, cwd: dir });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /snapshot [0-9a-f]{8} saved/);
    const second = await runCli(['backup', '--no-cache', 'src/plain', '--skip-if-unchanged', '--json'], { env, cwd: dir });
    assert.equal(second.code, 0, second.stderr);
    const summary = JSON.parse(second.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    assert.equal(summary.message_type, 'summary');
    assert.ok(!('snapshot_id' in summary));
    assert.equal(await count(), 1);
    // restic, taking Stowage's snapshot as the parent, finds its tree unchanged too.
    const theirs = await resticOk(restic, ['backup', 'src/plain', '--skip-if-unchanged'], { repo, password: PASSWORD, cwd: dir });
    assert.match(theirs.stdout, /skipped creating snapshot/);
    assert.equal(await count(), 1);
    await writeFile(path.join(dir, 'src/plain/keep'), 'changed\n');
    const third = await runCli(['backup', '--no-cache', 'src/plain', '--skip-if-unchanged'], { env, cwd: dir });
    assert.match(third.stdout, /snapshot [0-9a-f]{8} saved/);
    assert.equal(await count(), 2);
  });

  it('--dry-run: the counts restic 0.19.1 reports, and nothing written', async () => {
    const repo = path.join(dir, 'dry');
    await resticOk(restic, ['init'], { repo, password: PASSWORD });
    await resticOk(restic, ['backup', 'src/plain'], { repo, password: PASSWORD, cwd: dir });
    await writeFile(path.join(dir, 'src/plain/new-file'), 'new content\n'.repeat(100));
    const files = async () => (await readdir(repo, { recursive: true })).sort();
    const before = await files();
    const theirs = await resticOk(restic, ['backup', 'src', '--dry-run', '--json'], { repo, password: PASSWORD, cwd: dir });
    const ours = await runCli(['backup', '--no-cache', 'src', '--dry-run', '--json'], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD }, cwd: dir });
    assert.equal(ours.code, 0, ours.stderr);
    const pick = (out: string) => {
      const s = JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
      // data_added is left out: Stowage's backup counts it differently from restic's in every
      // backup, dry or not (a known difference of the summary, not of the dry run).
      const { files_new, files_changed, files_unmodified, dirs_new, dirs_changed, dirs_unmodified, data_blobs, tree_blobs, total_files_processed, total_bytes_processed, dry_run, snapshot_id } = s;
      return { files_new, files_changed, files_unmodified, dirs_new, dirs_changed, dirs_unmodified, data_blobs, tree_blobs, total_files_processed, total_bytes_processed, dry_run, snapshot_id: typeof snapshot_id };
    };
    assert.deepEqual(pick(ours.stdout), pick(theirs.stdout));
    assert.equal(pick(ours.stdout).dry_run, true);
    assert.ok((pick(ours.stdout).data_blobs as number) > 0);
    assert.deepEqual(await files(), before, 'nothing written, no lock left');
  });

  it('--read-concurrency must be a whole number (0 means the default, as in restic)', async () => {
    const res = await runCli(['backup', '--no-cache', 'src', '--read-concurrency', 'two'], { env: { RESTIC_REPOSITORY: path.join(dir, 'ours'), RESTIC_PASSWORD: PASSWORD }, cwd: dir });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /read-concurrency/);
  });

  it('sizes as restic reads them', () => {
    assert.equal(parseSize('4k'), 4096);
    assert.equal(parseSize('2M'), 2 * 1024 * 1024);
    assert.equal(parseSize('100'), 100);
    assert.throws(() => parseSize('4kb'), /invalid size/);
  });
});
