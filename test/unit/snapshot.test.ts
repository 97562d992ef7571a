// Snapshot files and the snapshot queries. The first three fixtures are the decrypted plaintext
// of snapshot files written by restic 0.14.0 (a tagged backup, a backup in a +05:30 zone with
// excludes that was then re-tagged, and one by a non-root user).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { parseGoTime } from '../../src/repository/gotime.ts';
import type { BlobId, SnapshotId } from '../../src/repository/id.ts';
import {
  type Snapshot,
  decodeSnapshot,
  encodeSnapshot,
  filterSnapshots,
  findSnapshotByPrefix,
  groupSnapshots,
  latestSnapshot,
  snapshotGroupKeyJson,
} from '../../src/snapshot/model/snapshot.ts';

const REAL_SNAPSHOTS = [
  '{"time":"2026-11-26T07:48:40.794314913Z","tree":"a8b95f4c415e02faa8df3b186845a4872a05f5ce602f661297f28bc935dd588b",' +
    '"paths":["/tmp/snapfix/src"],"hostname":"fixhost","username":"root","tags":["t1","t2"]}',
  '{"time":"2026-11-26T13:19:03.309650496+05:30","parent":"f5c929454386582f73ba5e41ea06e99ce7c5df1a423ccd57cb75c0c429ac1b5f",' +
    '"tree":"b098963b68e12fbcb2dd5fc8257b169f4a3cd611f1bfa31880d417df888a2760","paths":["/tmp/snapfix/src"],"hostname":"fixhost",' +
    '"username":"root","excludes":["*.tmp","x\\u003cy"],"tags":["t1","t2","a\\u0026b"],"original":"557096dbb8c6ef8f73daea1f26cf0f41139bab8ce4c1a68955d12a3118f280b4"}',
  '{"time":"2026-11-26T07:49:17.432927784Z","tree":"d8ad88426a2adf278fb4e4c7f60e4b3ce4e097be02880af1bd8ecfdae71d5080",' +
    '"paths":["/tmp/snapfix/nob/data"],"hostname":"h\\u003c1\\u003e","username":"nobody","uid":65534,"gid":65534}',
];

const TREE = 'a8b95f4c415e02faa8df3b186845a4872a05f5ce602f661297f28bc935dd588b' as BlobId;
const SID = 'f5c929454386582f73ba5e41ea06e99ce7c5df1a423ccd57cb75c0c429ac1b5f';

test('real restic 0.14 snapshots decode and encode back to the same bytes', () => {
  for (const json of REAL_SNAPSHOTS) {
    const s = decodeSnapshot(Buffer.from(json), SID);
    assert.equal(Buffer.from(encodeSnapshot(s)).toString('utf8'), json);
  }
  const retagged = decodeSnapshot(Buffer.from(REAL_SNAPSHOTS[1]!), SID);
  assert.deepEqual(retagged, {
    time: parseGoTime('2026-11-26T13:19:03.309650496+05:30'),
    parent: 'f5c929454386582f73ba5e41ea06e99ce7c5df1a423ccd57cb75c0c429ac1b5f',
    tree: 'b098963b68e12fbcb2dd5fc8257b169f4a3cd611f1bfa31880d417df888a2760',
    paths: ['/tmp/snapfix/src'],
    hostname: 'fixhost',
    username: 'root',
    excludes: ['*.tmp', 'x<y'],
    tags: ['t1', 't2', 'a&b'],
    original: '557096dbb8c6ef8f73daea1f26cf0f41139bab8ce4c1a68955d12a3118f280b4',
  });
  assert.equal(retagged.time.offsetMinutes, 330);
});

const SUMMARY_SNAPSHOT: Snapshot = {
  time: parseGoTime('2024-05-06T07:08:09.5+02:00'),
  tree: TREE,
  paths: ['/home/a', '/etc'],
  hostname: 'h',
  username: 'a',
  uid: 1000,
  gid: 1000,
  programVersion: 'restic 0.17.0',
  summary: {
    backupStart: parseGoTime('2024-05-06T07:08:09.5+02:00'),
    backupEnd: parseGoTime('2024-05-06T07:09:00+02:00'),
    filesNew: 1,
    filesChanged: 2,
    filesUnmodified: 3,
    dirsNew: 4,
    dirsChanged: 5,
    dirsUnmodified: 6,
    dataBlobs: 7,
    treeBlobs: 8,
    dataAdded: 9,
    dataAddedPacked: 10,
    totalFilesProcessed: 6,
    totalBytesProcessed: 12345,
  },
};
const SUMMARY_JSON =
  `{"time":"2024-05-06T07:08:09.5+02:00","tree":"${TREE}","paths":["/home/a","/etc"],"hostname":"h","username":"a","uid":1000,"gid":1000,` +
  '"program_version":"restic 0.17.0","summary":{"backup_start":"2024-05-06T07:08:09.5+02:00","backup_end":"2024-05-06T07:09:00+02:00",' +
  '"files_new":1,"files_changed":2,"files_unmodified":3,"dirs_new":4,"dirs_changed":5,"dirs_unmodified":6,"data_blobs":7,"tree_blobs":8,' +
  '"data_added":9,"data_added_packed":10,"total_files_processed":6,"total_bytes_processed":12345}}';

test('encodeSnapshot writes program_version and summary in restic 0.17 order, no newline', () => {
  assert.equal(Buffer.from(encodeSnapshot(SUMMARY_SNAPSHOT)).toString('utf8'), SUMMARY_JSON);
  assert.deepEqual(decodeSnapshot(Buffer.from(SUMMARY_JSON), SID), SUMMARY_SNAPSHOT);
});

test('encodeSnapshot leaves out zero omitempty fields but always writes tree and paths', () => {
  const s: Snapshot = { time: parseGoTime('2024-01-01T00:00:00Z'), tree: TREE, paths: [], hostname: '', uid: 0, tags: [], excludes: [] };
  assert.equal(Buffer.from(encodeSnapshot(s)).toString(), `{"time":"2024-01-01T00:00:00Z","tree":"${TREE}","paths":[]}`);
});

test('encodeSnapshot rejects invalid fields', () => {
  const base: Snapshot = { time: parseGoTime('2024-01-01T00:00:00Z'), tree: TREE, paths: ['/'] };
  const bad: Array<Record<string, unknown>> = [
    { tree: undefined },
    { tree: 'abc' },
    { parent: 'zz' },
    { uid: -1 },
    { gid: 2 ** 32 },
    { paths: 'x' },
    { tags: [1] },
    { time: 'now' },
    { summary: { ...SUMMARY_SNAPSHOT.summary, filesNew: -1 } },
  ];
  for (const patch of bad) assert.throws(() => encodeSnapshot({ ...base, ...patch } as Snapshot), InvalidInputError, Object.keys(patch).join());
});

test('decodeSnapshot reads what Go reads: null as zero, hex case-blind; unknown keys kept aside as extra', () => {
  const s = decodeSnapshot(
    Buffer.from(`{"time":null,"tree":"${TREE.toUpperCase()}","paths":null,"hostname":null,"tags":[],"label":"rustic","Hostname":"x","summary":null}`),
    SID,
  );
  assert.deepEqual(s, { time: parseGoTime('0001-01-01T00:00:00Z'), tree: TREE, paths: [], extra: { label: 'rustic' } });
  // Written back after restic's fields, in Go's escaping; a restic field cannot hide among them.
  const text = Buffer.from(encodeSnapshot({ ...s, extra: { label: 'a<b', __proto__x: 1 } })).toString();
  assert.ok(text.endsWith(`"paths":[],"label":"a\\u003cb","__proto__x":1}`), text);
  assert.throws(() => encodeSnapshot({ ...s, extra: { Tree: 'x' } }), /extra.Tree is one of restic's own fields/);
});

test('decodeSnapshot rejects hostile files with an IntegrityError naming snapshots/<id>', () => {
  const bad = [
    '', 'null', '[]', '"x"', '{"time":', `{"tree":"${TREE}"}x`,
    '{"time":"2024-01-01T00:00:00Z","paths":[]}',
    `{"tree":null,"paths":[]}`,
    `{"tree":"abc","paths":[]}`,
    `{"tree":"${TREE}","time":"yesterday"}`,
    `{"tree":"${TREE}","time":7}`,
    `{"tree":"${TREE}","paths":"/"}`,
    `{"tree":"${TREE}","paths":[1]}`,
    `{"tree":"${TREE}","uid":-1}`,
    `{"tree":"${TREE}","gid":4294967296}`,
    `{"tree":"${TREE}","hostname":5}`,
    `{"tree":"${TREE}","tags":{}}`,
    `{"tree":"${TREE}","parent":"xyz"}`,
    `{"tree":"${TREE}","summary":[]}`,
    `{"tree":"${TREE}","summary":{"files_new":-1}}`,
    `{"tree":"${TREE}","summary":{"data_added":18446744073709551615}}`,
  ];
  for (const text of bad) {
    assert.throws(
      () => decodeSnapshot(Buffer.from(text), SID),
      (err: unknown) => err instanceof IntegrityError && err.file === `snapshots/${SID}` && err.message.includes(`snapshots/${SID}`),
      text,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Queries

function snap(time: string, extra: Partial<Snapshot> = {}): Snapshot {
  return { time: parseGoTime(time), tree: TREE, paths: ['/a'], hostname: 'h1', ...extra };
}

const A = snap('2024-01-01T00:00:00Z', { tags: ['t1', 't2'] });
const B = snap('2024-01-03T00:00:00Z', { hostname: 'h2', tags: ['t1'] });
const C = snap('2024-01-02T00:00:00Z', { paths: ['/b', '/a'] });
const D = snap('2024-01-02T00:00:00+01:00', { hostname: 'h2', paths: ['/a', '/b'], tags: ['x'] }); // = 2024-01-01T23:00Z
const ALL = [A, B, C, D];

test('filterSnapshots: hosts any-of, tags OR of AND-groups, paths all-of', () => {
  assert.deepEqual(filterSnapshots(ALL, {}), ALL);
  assert.deepEqual(filterSnapshots(ALL, { hosts: ['h2'] }), [B, D]);
  assert.deepEqual(filterSnapshots(ALL, { hosts: ['h1', 'h2'] }), ALL);
  assert.deepEqual(filterSnapshots(ALL, { tags: [['t1', 't2']] }), [A]);
  assert.deepEqual(filterSnapshots(ALL, { tags: [['t1']] }), [A, B]);
  assert.deepEqual(filterSnapshots(ALL, { tags: [['t2'], ['x']] }), [A, D]);
  assert.deepEqual(filterSnapshots(ALL, { tags: [['']] }), [C]); // untagged
  assert.deepEqual(filterSnapshots(ALL, { paths: ['/a'] }), ALL);
  assert.deepEqual(filterSnapshots(ALL, { paths: ['/b', '/a'] }), [C, D]);
  assert.deepEqual(filterSnapshots(ALL, { hosts: ['h2'], tags: [['t1']], paths: ['/a'] }), [B]);
});

test('latestSnapshot takes the greatest time (instants, not wall clocks)', () => {
  assert.equal(latestSnapshot(ALL), B);
  assert.equal(latestSnapshot(ALL, { hosts: ['h1'] }), C);
  // D's wall clock reads 2024-01-02T00:00 like C, but at +01:00 it is an hour earlier
  assert.equal(latestSnapshot([C, D]), C);
  assert.equal(latestSnapshot([D, C]), C);
  assert.equal(latestSnapshot(ALL, { notAfter: parseGoTime('2024-01-02T00:00:00Z') }), C);
  assert.equal(latestSnapshot(ALL, { hosts: ['nobody'] }), undefined);
  assert.equal(latestSnapshot([]), undefined);
  // equal times: the later one in the list wins, as the last one read does in restic
  const A2 = { ...A };
  assert.equal(latestSnapshot([A, A2]), A2);
  assert.equal(latestSnapshot([A2, A]), A);
});

test('queries accept entries that carry the snapshot', () => {
  const entries = ALL.map((s, i) => ({ id: String(i), snapshot: s }));
  assert.equal(latestSnapshot(entries)?.id, '1');
  assert.deepEqual(filterSnapshots(entries, { hosts: ['h2'] }).map((e) => e.id), ['1', '3']);
  assert.deepEqual(groupSnapshots(entries, { host: true }).map((g) => g.snapshots.map((e) => e.id)), [['0', '2'], ['1', '3']]);
});

test('groupSnapshots uses restic group keys (json of hostname, sorted paths, sorted tags)', () => {
  const byHostPaths = groupSnapshots(ALL, { host: true, paths: true });
  assert.deepEqual(
    byHostPaths.map((g) => [g.keyJson, g.snapshots]),
    [
      ['{"hostname":"h1","paths":["/a"],"tags":null}', [A]],
      ['{"hostname":"h2","paths":["/a"],"tags":null}', [B]],
      ['{"hostname":"h1","paths":["/a","/b"],"tags":null}', [C]],
      ['{"hostname":"h2","paths":["/a","/b"],"tags":null}', [D]],
    ],
  );
  assert.deepEqual(byHostPaths[2]!.key, { hostname: 'h1', paths: ['/a', '/b'], tags: null });
  // input is not changed by the sorting
  assert.deepEqual(C.paths, ['/b', '/a']);

  const byTags = groupSnapshots([A, B, C, snap('2024-02-01T00:00:00Z', { tags: ['t2', 't1'] })], { tags: true });
  assert.deepEqual(
    byTags.map((g) => [g.keyJson, g.snapshots.length]),
    [
      ['{"hostname":"","paths":null,"tags":["t1","t2"]}', 2],
      ['{"hostname":"","paths":null,"tags":["t1"]}', 1],
      ['{"hostname":"","paths":null,"tags":null}', 1],
    ],
  );
  const none = groupSnapshots(ALL, {});
  assert.equal(none.length, 1);
  assert.equal(none[0]!.keyJson, '{"hostname":"","paths":null,"tags":null}');
  assert.equal(snapshotGroupKeyJson({ hostname: '<h>', paths: ['/ä'], tags: [] }), '{"hostname":"\\u003ch\\u003e","paths":["/ä"],"tags":[]}');
});

test('findSnapshotByPrefix: unique prefix, ambiguity and absence', () => {
  const ids = [
    'f5c929454386582f73ba5e41ea06e99ce7c5df1a423ccd57cb75c0c429ac1b5f',
    'f5c8aa00000000000000000000000000000000000000000000000000000000aa',
    '557096dbb8c6ef8f73daea1f26cf0f41139bab8ce4c1a68955d12a3118f280b4',
  ];
  assert.equal(findSnapshotByPrefix(ids, 'f5c9'), ids[0] as SnapshotId);
  assert.equal(findSnapshotByPrefix(ids, '5'), ids[2]);
  assert.equal(findSnapshotByPrefix(ids, ids[1]!), ids[1]);
  assert.throws(
    () => findSnapshotByPrefix(ids, 'f5c'),
    (err: unknown) => err instanceof InvalidInputError && err.message.includes(ids[0]!) && err.message.includes(ids[1]!),
  );
  assert.throws(() => findSnapshotByPrefix(ids, 'abc'), NotFoundError);
  assert.throws(() => findSnapshotByPrefix(ids, 'F5C9'), NotFoundError); // IDs are lowercase, as in restic
  assert.throws(() => findSnapshotByPrefix(ids, ''), InvalidInputError);
  assert.throws(() => findSnapshotByPrefix([], 'a'), NotFoundError);
});

