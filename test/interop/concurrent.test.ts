// Two backups into one repository at the same time both succeed (shared locks), and restic
// accepts the result; an exclusive operation is refused while they run.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { resticVersions, resticJson, runRestic } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { runCli } from '../helpers/cli.ts';

const PASSWORD = 'concurrent backups';

it('two backups at the same time both succeed and restic check passes', async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'stowage-concurrent-'));
  try {
    const repo = path.join(work, 'repo');
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    const sources = [path.join(work, 'a'), path.join(work, 'b')];
    for (const [i, s] of sources.entries()) {
      await mkdir(s);
      for (let f = 0; f < 4; f++) await writeFile(path.join(s, `f${f}`), randomBytes(2 * 1024 * 1024 + i));
      await writeFile(path.join(s, 'shared'), 'the same bytes in both trees\n'.repeat(1000));
    }
    assert.equal((await runCli(['init'], { env })).code, 0);
    const results = await Promise.all(sources.map((s) => runCli(['backup', s, '--json'], { env })));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const { bin } = resticVersions()[1]!;
    const check = await runRestic(bin, ['check', '--read-data'], { repo, password: PASSWORD });
    assert.equal(check.code, 0, check.stderr);
    const snaps = await resticJson<Array<{ paths: string[] }>>(bin, ['snapshots', '--json'], { repo, password: PASSWORD });
    assert.deepEqual(snaps.map((s) => s.paths[0]).sort(), [...sources].sort());
    // No lock is left behind.
    const locks = await runCli(['unlock', '--remove-all'], { env });
    assert.match(locks.stdout, /removed 0 locks/);
  } finally {
    await removeTree(work);
  }
});
