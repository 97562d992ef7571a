// restic 0.19.1's documented examples (bench/restic-docs/examples.ts), a representative subset run
// by the bench's harness (bench/restic-docs.ts): each example with restic 0.19.1 and with the
// `stowage` CLI on identical copies of one fixture repository, compared by exit code, output
// shape, JSON keys and types, and effect as restic sees it afterwards. The whole set (about 190
// examples, some minutes) is `npm run bench:docs`; this runs a dozen that cover backup, the file
// lists, check, forget, restore and the exit codes.
//
// Asserted as the "Done when" states it: at least 95% the same (examples listed in
// docs/compatibility.md with a reason left out of the count) and no different effect or exit code
// that docs/compatibility.md does not list with its reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { markdown, runExamples, tally } from '../../bench/restic-docs.ts';
import { resticBin } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

const SUBSET = new Set([
  '040-147', // backup: the parent line and the summary
  '040-24', // backup --verbose: restic's open/scan/backup lines, blob counts
  '040-159', // backup -vv: restic's line per file and folder
  '040-593', // --files-from with a glob
  '040-587', // --files-from-raw
  '040-p-files-from-stdin', // --files-from -
  '040-p-missing-source', // exit 3, snapshot written
  '045-445', // check: temporary cache, lock, the snapshot counter
  '045-489', // check --read-data: the pack counter
  '045-551', // check --read-data-subset=50M: restic's line (size capped, share)
  '050-26', // restore: first line and summary
  '040-p-files-from-verbatim', // --files-from-verbatim
  '060-58', // forget ID: the deletion counter
  '070-34', // key list: restic's table, closed by a rule
  '070-40', // key add, the new password on standard input
  '075-129', // cat config
  '075-p-wrong-password', // exit 12
  '075-p-not-initialized', // exit 10
]);

test('restic 0.19.1 documentation examples: Stowage behaves as restic does', { timeout: 600_000 }, async () => {
  process.env.STOWAGE_RESTIC_019 ??= resticBin('0.19');
  const base = await tmpDir('stowage-docs');
  const results = await runExamples({ base, only: (ex) => SUBSET.has(ex.id) });
  assert.equal(results.length, SUBSET.size, 'every example of the subset ran');
  const report = markdown(results);
  const t = tally(results);
  assert.deepEqual(t.undocumentedEffects, [], `a different effect or exit code without a reason in docs/compatibility.md:\n${report}`);
  const counted = results.filter((r) => !r.documented);
  const same = counted.filter((r) => r.verdict === 'same').length;
  assert.ok(same >= 0.95 * counted.length, `${same} of ${counted.length} the same:\n${report}`);
  // The restore's difference is its target folder's mode (docs/compatibility.md); its lines are restic's.
  const restore = results.find((r) => r.id === '050-26')!;
  assert.deepEqual(restore.stowage.shape, restore.restic.shape, `${restore.restic.stdout}\n${restore.stowage.stdout}`);
});
