// restore --ownership-by-name against restic 0.19.1, as root: owners come from the user and group
// names the snapshot recorded, looked up on this machine (nobody/nogroup here), and a file whose
// ids had no name gets 0, as restic gives it; without the flag the recorded ids are used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chown, lchown, lstat, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const root = process.getuid?.() === 0;
const PASSWORD = 'ownership';

test('restore --ownership-by-name: the same owners as restic 0.19.1', { skip: root ? false : 'needs root (CI runs as root)' }, async () => {
  const work = await tmpDir('stowage-ownership');
  const src = path.join(work, 'src');
  await mkdir(path.join(src, 'dir'), { recursive: true });
  await writeFile(path.join(src, 'named'), 'nobody\n');
  await writeFile(path.join(src, 'unnamed'), 'no name\n');
  await writeFile(path.join(src, 'dir/mixed'), 'mixed\n');
  await symlink('named', path.join(src, 'link'));
  await chown(path.join(src, 'named'), 65534, 65534);
  await chown(path.join(src, 'unnamed'), 54321, 54321);
  await chown(path.join(src, 'dir/mixed'), 65534, 54321);
  await chown(path.join(src, 'dir'), 54321, 65534);
  await lchown(path.join(src, 'link'), 65534, 54321);
  const repo = path.join(work, 'repo');
  const ropts = { repo, password: PASSWORD, cwd: work };
  await resticOk(resticBin('0.19'), ['init'], ropts);
  await resticOk(resticBin('0.19'), ['backup', 'src'], ropts);

  const owners = async (dir: string) => {
    const out: Record<string, string> = {};
    for (const p of ['src/named', 'src/unnamed', 'src/dir', 'src/dir/mixed', 'src/link']) {
      const st = await lstat(path.join(dir, p));
      out[p] = `${st.uid}:${st.gid}`;
    }
    return out;
  };
  for (const flags of [['--ownership-by-name'], []]) {
    const theirs = path.join(work, `restic${flags.length}`);
    const ours = path.join(work, `stowage${flags.length}`);
    await resticOk(resticBin('0.19'), ['restore', 'latest', '--target', theirs, ...flags], ropts);
    const r = await runCli(['restore', '--no-cache', 'latest', '--target', ours, ...flags], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD } });
    assert.equal(r.code, 0, r.stderr);
    const expected = flags.length
      ? { 'src/named': '65534:65534', 'src/unnamed': '0:0', 'src/dir': '0:65534', 'src/dir/mixed': '65534:0', 'src/link': '65534:0' }
      : { 'src/named': '65534:65534', 'src/unnamed': '54321:54321', 'src/dir': '54321:65534', 'src/dir/mixed': '65534:54321', 'src/link': '65534:54321' };
    assert.deepEqual(await owners(theirs), expected, `restic ${flags.join(' ')}`);
    assert.deepEqual(await owners(ours), expected, `Stowage ${flags.join(' ')}`);
  }
});
