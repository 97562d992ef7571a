// Tree blobs. The main fixture is a real tree written by restic 0.14.0 (Go 1.19) for a folder of
// odd names (test/helpers/real-tree.ts): decoding it and encoding it again must give the same
// bytes, hence the same tree ID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { IntegrityError, InvalidInputError } from '../../src/errors.ts';
import { parseGoTime } from '../../src/repository/gotime.ts';
import type { BlobId } from '../../src/repository/id.ts';
import { goStringFromBytes, goStringToBytes } from '../../src/snapshot/model/gojson.ts';
import { type TreeNode, encodeNode } from '../../src/snapshot/model/node.ts';
import {
  UnsafeNodeNameError,
  assertSafeNodeName,
  compareNodeNames,
  decodeTree,
  encodeTree,
  nodeNameProblem,
  sortNodes,
  treeProblems,
} from '../../src/snapshot/model/tree.ts';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

import { REAL_NODES, REAL_TREE, REAL_TREE_ID } from '../helpers/real-tree.ts';
/** The symlink target restic 0.14 stored lossily (it predates linktarget_raw). */
const BADLINK_TARGET = Buffer.from('bad\xfftarget<&>', 'latin1');

test('the fixture is the real tree: its SHA-256 is the tree ID restic gave it', () => {
  assert.equal(REAL_TREE.length, 6814);
  assert.equal(sha256(REAL_TREE), REAL_TREE_ID);
});

test('decodeTree reads the real tree: names unquoted to their exact bytes', () => {
  const nodes = decodeTree(REAL_TREE, REAL_TREE_ID);
  assert.equal(nodes.length, 20);
  const names = nodes.map((n) => goStringToBytes(n.name).toString('latin1'));
  assert.deepEqual(names, [
    '<&>', 'a\nb', 'badlink', 'bad\xffbyte', 'bell\x07\x08\x0c\x0b\r', 'blockdev', 'chardev', 'ctl\x01\x1b', 'emptydir', 'fifo',
    'hardlink', 'link', 'ls\xe2\x80\xa8sep', 'nbsp\xc2\xa0x', 'quote"back\\slash', 'r\xc3\xa4nd.bin', 'sub', 'tab\there', 'x\x7f',
    '\xf0\x9f\x98\x80.txt',
  ]);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const rand = byName.get('ränd.bin')!;
  assert.equal(rand.type, 'file');
  assert.deepEqual(rand.mtime, parseGoTime('2021-03-04T04:06:07.123456789Z'));
  assert.deepEqual(rand.extendedAttributes, [
    { name: 'user.comment', value: new Uint8Array(Buffer.from('hi \x00\xff there', 'latin1')) },
    { name: 'user.a', value: new Uint8Array(0) },
  ]);
  assert.equal(byName.get('<&>')!.mode, 12583405);
  assert.equal(byName.get('sub')!.mode, 2148532717);
  assert.equal(byName.get('chardev')!.device, 259);
  assert.equal(byName.get('blockdev')!.device, 1992);
  assert.equal(byName.get('link')!.linktarget, 'ränd.bin');
  assert.equal(byName.get('hardlink')!.links, 2);
  assert.equal(byName.get('emptydir')!.subtree, 'ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8');
  assert.equal(byName.get(goStringFromBytes(Buffer.from('bad\xffbyte', 'latin1')))!.size, 8);
});

test('encodeTree reproduces the real 0.14 tree byte for byte', () => {
  // What the archiver builds from the file system: the exact symlink target bytes.
  const nodes = decodeTree(REAL_TREE, REAL_TREE_ID).map((n): TreeNode =>
    n.name === 'badlink' ? { ...n, linktarget: undefined, linktargetRaw: new Uint8Array(BADLINK_TARGET) } : n,
  );
  const legacy = encodeTree(nodes, { format: 'restic-0.14' });
  assert.deepEqual(Buffer.from(legacy), REAL_TREE);
  assert.equal(sha256(legacy), REAL_TREE_ID);
  // restic 0.16+ writes the same bytes plus linktarget_raw for that one target.
  const current = Buffer.from(encodeTree(nodes)).toString('utf8');
  const lossy = '"linktarget":"bad\\ufffdtarget\\u003c\\u0026\\u003e"';
  assert.equal(current, REAL_TREE.toString('utf8').replace(lossy, `${lossy},"linktarget_raw":"${BADLINK_TARGET.toString('base64')}"`));
});

test('encodeTree of a wide tree with long multi-byte names gives the same bytes as its nodes joined', () => {
  // encodeTree writes into one buffer that grows as it goes: long names of 2- to 4-byte UTF-8
  // characters outgrow its first size, and each node must land whole and in order.
  const base = decodeTree(REAL_TREE, REAL_TREE_ID).find((n) => n.name === 'a\nb')!;
  const nodes = sortNodes(Array.from({ length: 600 }, (_, i): TreeNode => ({ ...base, name: `${'é€😀'.repeat(60 + (i % 7) * 40)}-${i}` })));
  const expected = Buffer.from(`{"nodes":[${nodes.map((n) => encodeNode(n)).join(',')}]}\n`, 'utf8');
  assert.ok(expected.length > 64 * 1024 + nodes.length * 256, 'the tree outgrows the first buffer');
  const bytes = encodeTree(nodes);
  assert.equal(Buffer.compare(Buffer.from(bytes), expected), 0);
  assert.deepEqual(decodeTree(bytes, sha256(bytes)).map((n) => n.name), nodes.map((n) => n.name));
});

test('the empty directory tree is {"nodes":[]} and a newline', () => {
  const empty = encodeTree([]);
  assert.equal(Buffer.from(empty).toString('utf8'), '{"nodes":[]}\n');
  // the ID restic 0.14 gave the empty folder in the same backup
  assert.equal(sha256(empty), 'ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8');
  assert.deepEqual(decodeTree(empty, 'ac08ce34'), []);
});

test('a real one-node tree from restic 0.14 (non-root owner) round-trips', () => {
  const json =
    '{"nodes":[{"name":"f","type":"file","mode":420,"mtime":"2026-11-26T07:49:14.532215576Z","atime":"2026-11-26T07:49:14.532215576Z",' +
    '"ctime":"2026-11-26T07:49:14.532215576Z","uid":65534,"gid":65534,"user":"nobody","group":"nogroup","inode":10167547,"device_id":65024,' +
    '"size":3,"links":1,"content":["98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"]}]}\n';
  const nodes = decodeTree(Buffer.from(json), 't');
  assert.equal(nodes[0]!.uid, 65534);
  assert.equal(Buffer.from(encodeTree(nodes)).toString('utf8'), json);
});

function node(name: string, extra: Partial<TreeNode> = {}): TreeNode {
  const t = parseGoTime('2024-01-02T03:04:05Z');
  return { name, type: 'file', mode: 420, mtime: t, atime: t, ctime: t, uid: 0, gid: 0, content: [], ...extra };
}

test('sortNodes orders by name bytes, not by JS string order', () => {
  const names = ['b', '😀', '\ue000', 'a\udcff', 'A', 'a', 'ä'];
  const sorted = sortNodes(names.map((n) => node(n))).map((n) => n.name);
  assert.deepEqual(sorted, ['A', 'a', 'a\udcff', 'b', 'ä', '\ue000', '😀']);
  assert.ok(compareNodeNames('\ue000', '😀') < 0);
  // sortNodes copies; the input keeps its order
  const input = [node('b'), node('a')];
  sortNodes(input);
  assert.equal(input[0]!.name, 'b');
  // and encodeTree accepts the result
  assert.doesNotThrow(() => encodeTree(sortNodes(names.map((n) => node(n)))));
});

test('encodeTree refuses unsorted, duplicate or unsafe names', () => {
  assert.throws(() => encodeTree([node('b'), node('a')]), InvalidInputError);
  assert.throws(() => encodeTree([node('a'), node('a')]), InvalidInputError);
  // JS order would accept this pair; byte order does not
  assert.throws(() => encodeTree([node('😀'), node('\ue000')]), InvalidInputError);
  for (const name of ['', '.', '..', 'a/b', 'nul\0']) {
    assert.throws(() => encodeTree([node(name)]), InvalidInputError, JSON.stringify(name));
  }
});

test('decodeTree accepts any JSON object with a nodes array', () => {
  const n = '{"name":"x","type":"fifo","content":null}';
  assert.equal(decodeTree(Buffer.from(`{"extra":{"a":[1]},"nodes":[${n}],"more":true}`), 't').length, 1);
  assert.equal(decodeTree(Buffer.from(` {\n "nodes" : [ ${n} ] }  `), 't')[0]!.type, 'fifo');
});

test('decodeTree rejects garbage with an IntegrityError naming the tree', () => {
  const id = 'deadbeef'.repeat(8);
  const bad = [
    '', 'null', '[]', '"nodes"', '{}', '{"nodes":null}', '{"nodes":{}}', '{"nodes":[null]}', '{"nodes":[1]}', '{"nodes":[]', '{"nodes":[]}x',
    '{"nodes":[{"type":"file"}]}', '{"nodes":[{"name":"a","type":"bogus"}]}',
  ];
  for (const text of bad) {
    assert.throws(
      () => decodeTree(Buffer.from(text), id),
      (err: unknown) => err instanceof IntegrityError && err.blob === id && err.message.includes(id),
      JSON.stringify(text),
    );
  }
});

test('decodeTree refuses unsafe names (typed) and disorder unless lenient', () => {
  const id = 'cafe'.repeat(16);
  const tree = (...names: string[]) =>
    Buffer.from(`{"nodes":[${names.map((n) => `{"name":${JSON.stringify(n)},"type":"file","content":[]}`).join(',')}]}\n`);
  for (const name of ['..', '.', '', 'a/b', '../../etc/passwd', 'nul\\x00']) {
    assert.throws(
      () => decodeTree(tree(name), id),
      (err: unknown) => err instanceof UnsafeNodeNameError && err instanceof IntegrityError && err.treeId === id,
      name,
    );
    const kept = decodeTree(tree(name), id, { lenient: true });
    assert.equal(kept.length, 1);
    assert.equal(treeProblems(kept, id).length, 1);
    assert.ok(treeProblems(kept, id)[0] instanceof UnsafeNodeNameError);
  }
  assert.throws(() => decodeTree(tree('b', 'a'), id), (err: unknown) => err instanceof IntegrityError && !(err instanceof UnsafeNodeNameError));
  assert.throws(() => decodeTree(tree('a', 'a'), id), IntegrityError);
  assert.equal(decodeTree(tree('b', 'a'), id, { lenient: true }).length, 2);
});

test('nodeNameProblem and assertSafeNodeName', () => {
  assert.equal(nodeNameProblem('ok name'), undefined);
  assert.equal(nodeNameProblem('...'), undefined);
  assert.equal(nodeNameProblem('a\\b'), undefined);
  for (const name of ['', '.', '..', '/', 'a/', 'x\0y']) assert.notEqual(nodeNameProblem(name), undefined, JSON.stringify(name));
  assert.throws(() => assertSafeNodeName('..', 'tid'), UnsafeNodeNameError);
  assert.doesNotThrow(() => assertSafeNodeName('fine', 'tid'));
});

test('treeProblems reports what restic check reports', () => {
  const zero = '0'.repeat(64) as BlobId;
  const problems = treeProblems(
    [
      node('a', { content: null }),
      node('b', { content: [zero] }),
      node('c', { type: 'dir', content: null }),
      node('d', { type: 'dir', content: null, subtree: zero }),
      node('e', { type: 'irregular', content: null }),
      node('f'),
    ],
    'tid',
  );
  const messages = problems.map((p) => p.message);
  assert.equal(problems.length, 5, messages.join('\n'));
  assert.match(messages[0]!, /file "a" has nil blob list/);
  assert.match(messages[1]!, /file "b" blob 0 has null ID/);
  assert.match(messages[2]!, /dir node "c" has no subtree/);
  assert.match(messages[3]!, /dir node "d" subtree id is null/);
  assert.match(messages[4]!, /invalid type "irregular"/);
  assert.deepEqual(treeProblems(decodeTree(REAL_TREE, REAL_TREE_ID), REAL_TREE_ID), []);
});

test('64-bit inode numbers survive a tree round trip', () => {
  const big = node('overlay', { inode: 2n ** 63n + 5n, deviceId: 2n ** 60n });
  const bytes = encodeTree([big]);
  assert.match(Buffer.from(bytes).toString(), /"inode":9223372036854775813,"device_id":1152921504606846976/);
  assert.deepEqual(decodeTree(bytes, 't'), [big]);
});
