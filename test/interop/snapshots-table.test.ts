// `stowage snapshots` prints restic 0.19.1's table byte for byte on one repository: the Size
// column (a snapshot's total_bytes_processed; empty for restic 0.14's snapshots, which have no
// summary), several paths (a blank line between snapshots), tags, a long hostname, --compact,
// the footer's time zone as Go names it, nothing when nothing matches; and --json the same;
// --group-by's headed tables and grouped JSON (restic prints groups in Go map order, so the
// test compares them as a set);
// and forget --dry-run's keep (with Reasons) and remove tables, which are the same table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticOk, runRestic } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PASSWORD = 'snapshots table';
const work = await tmpDir('stowage-snapshots');
const repo = path.join(work, 'repo');
const ropts = { repo, password: PASSWORD, cwd: work };
for (const d of ['a', 'b']) {
  await mkdir(path.join(work, d));
  await writeFile(path.join(work, d, 'f'), `${d}\n`.repeat(700));
}
await resticOk(resticBin('0.19'), ['init'], ropts);
// Tags out of order: grouping by tags shows them sorted (restic sorts them in place).
await resticOk(resticBin('0.14'), ['backup', 'a', '--tag', 'second,old', '--host', 'a-rather-long-hostname'], ropts);
await resticOk(resticBin('0.19'), ['backup', 'a', 'b', '--tag', 'x'], ropts);
const own = await runCli(['backup', '--no-cache', 'b', '--host', 'stowage'], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD }, cwd: work });
assert.equal(own.code, 0, own.stderr);

test('snapshots: restic 0.19.1\'s table, Size column included, and its JSON', async () => {
  const cases: Array<{ args: string[]; tz?: string }> = [
    { args: [] },
    { args: ['--compact'] },
    { args: ['--tag', 'x'] },
    { args: ['--tag', 'nothing'] },
    { args: ['--json'] },
    { args: ['--host', 'stowage'], tz: 'Europe/Berlin' },
    { args: ['--host', 'stowage'], tz: 'unset' },
  ];
  for (const { args, tz = 'UTC' } of cases) {
    const what = `snapshots ${args.join(' ')} (TZ ${tz})`;
    const [theirs, ours] = await Promise.all([
      // An undefined variable is left out of the child's environment.
      runRestic(resticBin('0.19'), ['snapshots', ...args], { ...ropts, env: { TZ: tz === 'unset' ? undefined! : tz } }),
      runCli(['snapshots', '--no-cache', ...args], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, ...(tz === 'unset' ? {} : { TZ: tz }) } }),
    ]);
    assert.equal(theirs.code, 0, theirs.stderr);
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout, what);
  }
});

/** Groups of a --group-by output, in a fixed order: restic's come in Go map order. */
function groupsOf(stdout: string, json: boolean): string[] {
  if (json) return (JSON.parse(stdout) as unknown[]).map((g) => JSON.stringify(g)).sort();
  // Every group, headed or not (an empty group key has no header), ends with its "N snapshots" line.
  return stdout.split(/(?<=^\d+ snapshots\n)/m).filter((g) => g !== '').sort();
}

test('snapshots --group-by: restic 0.19.1\'s group headers and tables, and its grouped JSON', async () => {
  const cases = [['--group-by', 'host'], ['--group-by', 'host,paths,tags', '--compact'], ['-g', 'tags', '--latest', '1'], ['--group-by', 'host,tags', '--json'], ['--group-by', 'paths', '--tag', 'nothing', '--json']];
  for (const args of cases) {
    const [theirs, ours] = await Promise.all([
      runRestic(resticBin('0.19'), ['snapshots', ...args], { ...ropts, env: { TZ: 'UTC' } }),
      runCli(['snapshots', '--no-cache', ...args], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC' } }),
    ]);
    assert.equal(theirs.code, 0, theirs.stderr);
    assert.equal(ours.code, 0, ours.stderr);
    assert.ok(theirs.stdout.length > 0);
    assert.deepEqual(groupsOf(ours.stdout, args.includes('--json')), groupsOf(theirs.stdout, args.includes('--json')), args.join(' '));
  }
});

test('forget --dry-run: keep and remove tables in restic 0.19.1\'s columns (Reasons, Size)', async () => {
  const cases: string[][] = [
    ['--keep-last', '1', '--group-by', ''],
    ['--keep-last', '1', '--group-by', '', '--compact'],
    // One group each: restic prints several groups in Go's (random) map order.
    ['--keep-last', '1', '--keep-tag', 'x', '--group-by', ''],
    ['--tag', 'old', '--unsafe-allow-remove-all', '--keep-last', '0'],
    ['--tag', 'old', '--group-by', 'tags', '--keep-last', '1'],
  ];
  for (const args of cases) {
    const [theirs, ours] = await Promise.all([
      runRestic(resticBin('0.19'), ['forget', '--no-lock', '--dry-run', ...args], { ...ropts, env: { TZ: 'UTC' } }),
      runCli(['forget', '--no-cache', '--no-lock', '--dry-run', ...args], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, TZ: 'UTC' } }),
    ]);
    assert.equal(theirs.code, 0, theirs.stderr);
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout, `forget ${args.join(' ')}`);
  }
});
