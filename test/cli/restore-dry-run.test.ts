// `stowage restore --dry-run` says what restic 0.19's `restore --dry-run` says about the same
// snapshot: every entry it would write (restic: -vv; here --verbose), the count of files and
// folders and the bytes, in the same JSON messages, and it writes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { link, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

interface Message {
  message_type: string;
  item?: string;
  size?: number;
  total_files?: number;
  total_bytes?: number;
}

function parse(stdout: string): { items: string[]; summary: Message | undefined } {
  const messages = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Message);
  const items = messages.filter((m) => m.message_type === 'verbose_status').map((m) => `${m.item} ${m.size}`).sort();
  return { items, summary: messages.find((m) => m.message_type === 'summary') };
}

test('restore --dry-run lists and counts what restic 0.19 lists and counts, and writes nothing', { timeout: 180_000 }, async () => {
  const work = await tmpDir('stowage-restore-dry-run');
  const src = path.join(work, 'src');
  await mkdir(path.join(src, 'sub', 'deeper'), { recursive: true });
  await writeFile(path.join(src, 'a.txt'), 'hello\n');
  await writeFile(path.join(src, 'sub', 'b.bin'), Buffer.alloc(70_000, 7));
  await writeFile(path.join(src, 'sub', 'deeper', 'empty'), '');
  await symlink('a.txt', path.join(src, 'link'));
  await link(path.join(src, 'sub', 'b.bin'), path.join(src, 'sub', 'hard'));
  const repo = path.join(work, 'repo');
  const password = 'dry run';
  await resticOk(resticBin('0.19'), ['init'], { repo, password });
  await resticOk(resticBin('0.19'), ['backup', src], { repo, password });
  const target = path.join(work, 'target');

  const theirs = await runRestic(resticBin('0.19'), ['restore', 'latest', '--target', target, '--dry-run', '-vv', '--json'], { repo, password });
  assert.equal(theirs.code, 0, theirs.stderr);
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: password, XDG_CACHE_HOME: path.join(work, 'cache') };
  const ours = await runCli(['restore', 'latest', '--target', target, '--dry-run', '--verbose', '--json'], { env });
  assert.equal(ours.code, 0, ours.stderr);
  const r = parse(theirs.stdout);
  const s = parse(ours.stdout);
  assert.ok(r.items.length >= 8, `restic listed ${r.items.length} entries`);
  assert.deepEqual(s.items, r.items);
  assert.deepEqual(s.summary, r.summary);
  assert.equal(existsSync(target), false, 'nothing was written');

  // The text form: one "restored" line per entry, files with their size, and restic's summary line.
  const text = await runCli(['restore', 'latest', '--target', target, '--dry-run', '--verbose'], { env });
  assert.equal(text.code, 0, text.stderr);
  assert.ok(text.stdout.includes(`restored  ${path.join(src, 'a.txt')} with size 6 B\n`), text.stdout);
  assert.ok(text.stdout.includes(`restored  ${path.join(src, 'link')}\n`), text.stdout);
  assert.match(text.stdout, new RegExp(`Summary: Restored ${r.summary!.total_files} files/dirs \\(68\\.\\d+ KiB\\) in 0:0\\d\\n`));
  assert.equal(existsSync(target), false, 'nothing was written');

  // Over a restored target, one file changed and one added: restic reads the target, and says
  // which files are "unchanged", "updated" or "restored", and with --delete what is "deleted" —
  // the same lines in the same order, and the same summary.
  await resticOk(resticBin('0.19'), ['restore', 'latest', '--target', target], { repo, password });
  const out = path.join(target, src);
  await writeFile(path.join(out, 'a.txt'), 'HELLO\n');
  await rm(path.join(out, 'sub', 'deeper', 'empty'));
  await mkdir(path.join(out, 'sub', 'extra', 'in'), { recursive: true });
  await writeFile(path.join(out, 'sub', 'extra', 'in', 'x'), 'x');
  await writeFile(path.join(out, 'sub', 'extra', 'y'), 'y');
  const normal = (stdout: string) => stdout.replace(/ in \d+:\d+/, ' in DUR');
  for (const flags of [[], ['--delete'], ['--overwrite', 'never']]) {
    const want = await resticOk(resticBin('0.19'), ['restore', 'latest', '--target', target, '--dry-run', '-vv', ...flags], { repo, password });
    const got = await runCli(['restore', 'latest', '--target', target, '--dry-run', '--verbose', ...flags], { env });
    assert.equal(got.code, 0, got.stderr);
    assert.equal(normal(got.stdout), normal(want.stdout), flags.join(' '));
    assert.match(want.stdout, flags[0] === '--delete' ? /^deleted {3}\S+\/sub\/extra\/y\n/m : /^unchanged \S+\/sub\/b\.bin with size/m);
    if (flags[0] !== '--delete') continue;
    const wantJson = await resticOk(resticBin('0.19'), ['restore', 'latest', '--target', target, '--dry-run', '-vv', '--json', ...flags], { repo, password });
    const gotJson = await runCli(['restore', 'latest', '--target', target, '--dry-run', '--verbose', '--json', ...flags], { env });
    assert.deepEqual(parse(gotJson.stdout), parse(wantJson.stdout), `--json ${flags.join(' ')}`);
  }
  assert.equal(await readFile(path.join(out, 'a.txt'), 'utf8'), 'HELLO\n', 'nothing was written');
});
