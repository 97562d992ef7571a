// Backup summaries' data_added and data_added_packed against restic 0.19.1 on the same data:
// restic counts tree blobs as well as data, and for each blob added what the pack holds for it
// (the sealed blob and its header entry). Repository v1 (no compression) makes both numbers
// exact; in v2 data_added is exact and data_added_packed is what the index says was added (the
// zstd encoders differ by a few bytes). The text "Added to the repository" line is compared too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'summary';
const work = await tmpDir('stowage-summary');
const src = path.join(work, 'src');
await mkdir(path.join(src, 'sub/deeper'), { recursive: true });
await writeFile(path.join(src, 'random'), randomBytes(300_000));
await writeFile(path.join(src, 'text'), 'hello\n'.repeat(30_000));
await writeFile(path.join(src, 'sub/deeper/small'), 'small\n');
await writeFile(path.join(src, 'sub/other'), 'other\n');
const restic = resticBin('0.19');

interface Summary { data_blobs: number; tree_blobs: number; data_added: number; data_added_packed: number }
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!) as Summary;
const pick = (s: Summary) => ({ data_blobs: s.data_blobs, tree_blobs: s.tree_blobs, data_added: s.data_added, data_added_packed: s.data_added_packed });
const addedLine = (stdout: string) => stdout.split('\n').find((l) => l.startsWith('Added to the repository'));

/**
 * Reads every file and folder once, so that (relatime) their access times stay as they are while
 * the two tools read them: otherwise the tree a tool stores depends on whether the other read first.
 */
async function settleAtimes(): Promise<void> {
  for (const e of await readdir(src, { recursive: true, withFileTypes: true })) {
    const p = path.join(e.parentPath, e.name);
    if (e.isDirectory()) await readdir(p);
    else await readFile(p);
  }
  await readdir(src);
}

/** Two repositories of one version, one written by each tool; the same backups into each. */
async function pair(version: '1' | '2') {
  const theirs = path.join(work, `restic-v${version}`);
  const ours = path.join(work, `stowage-v${version}`);
  await resticOk(restic, ['init', '--repository-version', version], { repo: theirs, password: PASSWORD });
  const i = await runCli(['init', '--repository-version', version], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD } });
  assert.equal(i.code, 0, i.stderr);
  const backup = async (json: boolean) => {
    await settleAtimes();
    // "src" from its parent: the trees are those of src and below (the folders above it, /tmp
    // among them, change while other programs run).
    const args = ['backup', ...(json ? ['--json'] : []), 'src'];
    const [a, b] = await Promise.all([
      resticOk(restic, args, { repo: theirs, password: PASSWORD, cwd: work }),
      runCli([...args, '--no-cache'], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD }, cwd: work }),
    ]);
    assert.equal(b.code, 0, b.stderr);
    return { theirs: a.stdout, ours: b.stdout };
  };
  return { theirs, ours, backup };
}

/** The bytes the index files of `repo` give for its blobs: each stored length and header entry. */
async function indexedBytes(repo: string): Promise<number> {
  const ids = (await resticOk(restic, ['list', 'index'], { repo, password: PASSWORD })).stdout.trim().split('\n');
  let total = 0;
  for (const id of ids) {
    const idx = JSON.parse((await resticOk(restic, ['cat', 'index', id], { repo, password: PASSWORD })).stdout) as { packs: Array<{ blobs: Array<{ length: number; uncompressed_length?: number }> }> };
    for (const p of idx.packs) for (const b of p.blobs) total += b.length + (b.uncompressed_length ? 41 : 37);
  }
  return total;
}

test('v1: data_added and data_added_packed equal restic 0.19.1\'s, first backup and after a change', async () => {
  const { backup } = await pair('1');
  const first = await backup(true);
  const a = pick(lastJson(first.theirs));
  // The trees: the root, src, sub and sub/deeper.
  assert.equal(a.tree_blobs, 4);
  assert.ok(a.data_added > 300_000 + 180_000, `trees counted: ${a.data_added}`);
  assert.deepEqual(pick(lastJson(first.ours)), a);
  // A change deep down: a new data blob and new trees up to the root.
  await writeFile(path.join(src, 'sub/deeper/small'), 'changed\n');
  const second = await backup(false);
  assert.ok(addedLine(second.theirs), second.theirs);
  assert.equal(addedLine(second.ours), addedLine(second.theirs));
  await writeFile(path.join(src, 'sub/deeper/small'), 'changed again\n');
  const third = await backup(true);
  assert.deepEqual(pick(lastJson(third.ours)), pick(lastJson(third.theirs)));
  assert.equal(pick(lastJson(third.theirs)).tree_blobs, a.tree_blobs);
});

test('v2: data_added equals restic 0.19.1\'s; data_added_packed is the blobs and header entries added', async () => {
  const { ours, backup } = await pair('2');
  const first = await backup(true);
  const [a, b] = [lastJson(first.theirs), lastJson(first.ours)];
  assert.equal(b.data_added, a.data_added);
  assert.equal(b.tree_blobs, a.tree_blobs);
  assert.equal(b.data_added_packed, await indexedBytes(ours));
  // Within the zstd encoders' difference of restic's number.
  assert.ok(Math.abs(b.data_added_packed - a.data_added_packed) < 200, `${b.data_added_packed} vs ${a.data_added_packed}`);
});

/**
 * A -vv output with what varies masked (durations, snapshot IDs) and the per-item lines sorted:
 * both tools print each file and folder as it is done, in the order their workers finish.
 */
function vvShape(stdout: string, masks: { sizes?: boolean } = {}): string {
  const lines = stdout.replace(/\b[0-9a-f]{8}\b/g, 'ID').replace(/\d+\.\d{3}s/g, 'T').replace(/ in \d+:\d\d$/gm, ' in T').split('\n')
    .map((l) => (masks.sizes ? l.replace(/\d+(\.\d+)? (B|KiB|MiB)/g, 'SIZE') : l));
  // The scanner runs beside the workers: its "scan finished" line may come before, among or after
  // the per-item lines in either tool. It is kept, in one place: after "start backup".
  const scan = lines.filter((l) => l.startsWith('scan finished in '));
  const rest = lines.filter((l) => !l.startsWith('scan finished in '));
  const start = rest.findIndex((l) => l.startsWith('start backup on '));
  if (start >= 0) rest.splice(start + 1, 0, ...scan);
  else rest.unshift(...scan);
  const item = (l: string) => /^(new|modified|unchanged) /.test(l);
  const first = rest.findIndex(item);
  if (first < 0) return rest.join('\n');
  return [...rest.slice(0, first), ...rest.filter(item).sort(), ...rest.filter((l, i) => i > first && !item(l))].join('\n');
}

test('backup -vv: restic 0.19.1\'s line per file and folder (new, modified, unchanged, sizes added and stored), and its verbose_status JSON', async () => {
  const theirs = path.join(work, 'restic-vv');
  const ours = path.join(work, 'stowage-vv');
  await resticOk(restic, ['init', '--repository-version', '1'], { repo: theirs, password: PASSWORD });
  const i = await runCli(['init', '--repository-version', '1'], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD } });
  assert.equal(i.code, 0, i.stderr);
  const both = async (args: string[]) => {
    await settleAtimes();
    const [a, b] = await Promise.all([
      resticOk(restic, ['backup', ...args], { repo: theirs, password: PASSWORD, cwd: work }),
      runCli(['backup', '--no-cache', ...args], { env: { RESTIC_REPOSITORY: ours, RESTIC_PASSWORD: PASSWORD }, cwd: work }),
    ]);
    assert.equal(b.code, 0, b.stderr);
    return { theirs: a.stdout, ours: b.stdout };
  };
  // Everything new; v1 makes every size exact.
  const first = await both(['-vv', 'src']);
  assert.match(first.theirs, /^new {7}\/src\/sub\/deeper\/small, saved in /m);
  assert.equal(vvShape(first.ours), vvShape(first.theirs));
  // One file changed: it and the folders above it modified, the rest unchanged.
  await writeFile(path.join(src, 'sub/other'), 'other, changed\n');
  const second = await both(['--verbose', '--verbose', 'src']);
  assert.match(second.theirs, /^unchanged \/src\/random$/m);
  assert.equal(vvShape(second.ours), vvShape(second.theirs));
  // An absolute path: the folders above it are counted and listed too (their sizes vary as
  // other programs touch them). --no-scan: no scanner, so neither "start scan" nor "scan finished".
  const abs = await both(['-vv', '--dry-run', '--no-scan', path.join(src, 'sub')]);
  assert.match(abs.theirs, /^new {7}\/.*\/src\/, saved in /m);
  assert.doesNotMatch(abs.theirs, /scan/);
  assert.equal(vvShape(abs.ours, { sizes: true }), vvShape(abs.theirs, { sizes: true }));
  // --json: a verbose_status message per item and for the scan, restic's fields and values.
  await writeFile(path.join(src, 'sub/other'), 'other, changed again\n');
  const json = await both(['-vv', '--json', 'src']);
  const verbose = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((m) => m.message_type === 'verbose_status')
    .map((m) => JSON.stringify({ ...m, duration: typeof m.duration === 'number' && (m.action === 'unchanged' ? m.duration === 0 : true) }))
    .sort();
  assert.ok(verbose(json.theirs).length >= 6, json.theirs);
  assert.deepEqual(verbose(json.ours), verbose(json.theirs));
});
