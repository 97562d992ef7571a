// treeNodes, the node-by-node tree decoder, against decodeTree: on the real restic tree, on
// hostile shapes, and on every truncation and one-byte change of a small tree, both must give
// the same nodes or the same error (class, message, tree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IntegrityError } from '../../src/errors.ts';
import { type DecodeTreeOptions, UnsafeNodeNameError, decodeTree, encodeTree, scanTreeNodes, treeNodes } from '../../src/snapshot/model/tree.ts';
import { REAL_NODES, REAL_TREE, REAL_TREE_ID } from '../helpers/real-tree.ts';

const ID = 'feed'.repeat(16);

type Outcome = { nodes: unknown[] } | { error: unknown };

function run(decode: () => Iterable<unknown>): Outcome {
  const nodes: unknown[] = [];
  try {
    for (const n of decode()) nodes.push(n);
    return { nodes };
  } catch (error) {
    return { error };
  }
}

/** Both decoders over the bytes, plain and lenient: the same nodes, or the same error. */
function same(bytes: Uint8Array, what: string): void {
  for (const options of [undefined, { lenient: true }] as Array<DecodeTreeOptions | undefined>) {
    const label = `${what}${options ? ' (lenient)' : ''}`;
    const want = run(() => decodeTree(bytes, ID, options));
    const got = run(() => treeNodes(bytes, ID, options));
    if ('error' in want) {
      assert.ok('error' in got, `${label}: decodeTree throws ${String(want.error)}, treeNodes does not`);
      const [w, g] = [want.error as IntegrityError, got.error as IntegrityError];
      assert.ok(w instanceof IntegrityError, `${label}: ${String(w)}`);
      assert.equal(Object.getPrototypeOf(g), Object.getPrototypeOf(w), label);
      assert.equal(g.message, w.message, label);
      assert.equal(g.blob, ID, label);
      if (w instanceof UnsafeNodeNameError) assert.equal((g as UnsafeNodeNameError).treeId, ID, label);
    } else {
      assert.ok(!('error' in got), `${label}: treeNodes throws ${'error' in got ? String(got.error) : ''}`);
      assert.deepStrictEqual(got.nodes, want.nodes, label);
      // and it was streamed: a tree decodeTree accepts is never handed back to decodeTree
      assert.ok(scanTreeNodes(bytes) !== undefined, `${label}: not scanned`);
    }
  }
}

const tree = (...nodes: string[]) => Buffer.from(`{"nodes":[${nodes.join(',')}]}\n`);
const fifo = (name: string) => `{"name":${JSON.stringify(name)},"type":"fifo","content":null}`;

test('treeNodes yields the real restic tree node by node, without decoding it whole', () => {
  assert.equal(scanTreeNodes(REAL_TREE)?.length, 2 * REAL_NODES.length, 'the bytes are scanned, not handed to decodeTree');
  same(REAL_TREE, 'the real tree');
  const it = treeNodes(REAL_TREE, REAL_TREE_ID);
  assert.equal(it.next().value?.name, '<&>');
  // and a tree encodeTree wrote, with 64-bit numbers and odd names
  const nodes = decodeTree(REAL_TREE, REAL_TREE_ID).map((n, i) => ({ ...n, inode: 2n ** 63n + BigInt(i) }));
  const bytes = encodeTree(nodes);
  assert.ok(scanTreeNodes(bytes) !== undefined);
  same(bytes, 'encoded with big inodes');
  same(Buffer.from('{"nodes":[]}\n'), 'empty tree');
});

test('treeNodes accepts and rejects the shapes decodeTree does', () => {
  const n = fifo('x');
  const cases: Record<string, string> = {
    'extra keys': `{"extra":{"a":[1,"]}\\"[{"]},"nodes":[${n}],"more":true,"s":"nodes"}`,
    whitespace: ` {\n "nodes" : [ ${n} ,\r\n\t${fifo('y')} ] }  `,
    'escaped key': `{"nod\\u0065s":[${n}]}`,
    'key in another case': `{"Nodes":[${n}]}`,
    'duplicate nodes, the last an array': `{"nodes":[1,{}],"nodes":[${n}]}`,
    'duplicate nodes, the last not an array': `{"nodes":[${n}],"nodes":5}`,
    'duplicate nodes, the last null': `{"nodes":[${n}],"nodes":null}`,
    'duplicate nodes, the first invalid': `{"nodes":[${n},],"nodes":[]}`,
    'duplicate nodes, the first with bad syntax in a node': `{"nodes":[{"a":,}],"nodes":[${n}]}`,
    'duplicate nodes, the first bad, the last not an array': `{"nodes":[{"a":,}],"nodes":7}`,
    'duplicate nodes, the first not an array': `{"nodes":{"a":1},"nodes":[${n}]}`,
    'proto key': `{"__proto__":[],"nodes":[${n}],"constructor":1}`,
    'invalid extra value': `{"x":[1,],"nodes":[${n}]}`,
    'extra value with a raw control character': `{"x":"a\u0001","nodes":[${n}]}`,
    'big bare number element': '{"nodes":[12345678901234567890]}',
    'scalar elements': '{"nodes":[true,null,"s",-1.5e3]}',
    'nested array element': `{"nodes":[[${n}]]}`,
    'names with brackets and quotes': tree(fifo('a]}'), fifo('b\\"[{'), fifo('c\\\\')).toString(),
    'trailing comma': `{"nodes":[${n},]}`,
    'leading comma': `{"nodes":[,${n}]}`,
    'missing comma': `{"nodes":[${n} ${fifo('y')}]}`,
    'colon between nodes': `{"nodes":[${n}:${fifo('y')}]}`,
    'unclosed node': `{"nodes":[{"name":"x","type":"fifo"]}`,
    'bad syntax inside a node': `{"nodes":[{"name":"x","type":"fifo",}]}`,
    'raw newline inside a name': `{"nodes":[{"name":"a\nb","type":"fifo"}]}`,
    'trailing garbage': `{"nodes":[${n}]}x`,
    'second document': `{"nodes":[${n}]}{}`,
    'unclosed tree': `{"nodes":[${n}]`,
    'extra close': `{"nodes":[${n}]}}`,
    'byte-order mark': `\ufeff{"nodes":[${n}]}`,
    'deep nesting beside the nodes': `{"x":${'['.repeat(20000)}${']'.repeat(20000)},"nodes":[${n}]}`,
    'deep nesting in a node': `{"nodes":[{"name":"x","type":"fifo","zz":${'['.repeat(20000)}${']'.repeat(20000)}}]}`,
    'unknown node fields': `{"nodes":[{"name":"x","type":"fifo","future":{"a":[]},"content":null}]}`,
    'duplicate node fields': `{"nodes":[{"name":"x","type":"file","type":"fifo"}]}`,
  };
  for (const [what, text] of Object.entries(cases)) same(Buffer.from(text), what);
  // the existing garbage list of tree.test.ts
  for (const text of ['', 'null', '[]', '"nodes"', '{}', '{"nodes":null}', '{"nodes":{}}', '{"nodes":[null]}', '{"nodes":[1]}', '{"nodes":[]', '{"nodes":[]}x',
    '{"nodes":[{"type":"file"}]}', '{"nodes":[{"name":"a","type":"bogus"}]}', ' ', '{', '{"', '{"nodes"', '{"nodes":', '{"nodes":[', '{"nodes":["]}']) {
    same(Buffer.from(text), JSON.stringify(text));
  }
});

test('treeNodes reads invalid UTF-8 as decodeTree does', () => {
  const parts = [
    Buffer.from('{"nodes":[{"name":"a\\\\xffb","type":"symlink","linktarget":"t'), Buffer.of(0xff, 0xe2, 0x82), Buffer.from('","content":null},'),
    Buffer.from('{"name":"b'), Buffer.of(0xc3), Buffer.from('","type":"fifo","user":"'), Buffer.of(0xf0, 0x9f, 0x98), Buffer.from('"}]}'),
  ];
  const bytes = Buffer.concat(parts);
  assert.ok(scanTreeNodes(bytes) !== undefined);
  same(bytes, 'raw bytes in strings');
  same(Buffer.concat([Buffer.from('{"x":"'), Buffer.of(0xff), Buffer.from('","nodes":[]}')]), 'raw byte beside the nodes');
});

test('treeNodes refuses unsafe names and disorder as decodeTree does, and reports the error decodeTree reports', () => {
  for (const name of ['..', '.', '', 'a/b', 'nul\\x00']) same(tree(fifo('a'), fifo(name), fifo('z')), `unsafe ${JSON.stringify(name)}`);
  same(tree(fifo('b'), fifo('a')), 'disorder');
  same(tree(fifo('a'), fifo('a')), 'duplicate');
  same(tree(fifo('😀'), fifo('\ue000')), 'disorder only in byte order');
  // Two defects: decodeTree reports the bad node before the disorder, and a syntax error before both.
  same(tree(fifo('b'), fifo('a'), '{"name":"c","type":"bogus"}'), 'disorder, then a bad type');
  same(tree(fifo('..'), '{"name":"c","type":"bogus"}'), 'unsafe name, then a bad type');
  same(tree(fifo('a'), '{"name":"c","type":"bogus"}', '{"name":"d",}'), 'bad type, then bad syntax');
  // the nodes before the defect do come out first
  const seen: string[] = [];
  assert.throws(() => {
    for (const n of treeNodes(tree(fifo('a'), fifo('c'), fifo('b')), ID)) seen.push(n.name);
  }, IntegrityError);
  assert.deepEqual(seen, ['a', 'c']);
});

test('every truncation and one-byte change of a small tree: the same nodes or the same error', () => {
  const small = tree(REAL_NODES[1]!, REAL_NODES[2]!, REAL_NODES[15]!);
  same(small, 'small tree');
  for (let i = 0; i < small.length; i++) same(small.subarray(0, i), `truncated at ${i}`);
  const swaps = Buffer.from('{}[]",:\\ 0a');
  for (let i = 0; i < small.length; i++) {
    const removed = Buffer.concat([small.subarray(0, i), small.subarray(i + 1)]);
    same(removed, `byte ${i} removed`);
    for (const c of swaps) {
      if (small[i] === c) continue;
      const changed = Buffer.from(small);
      changed[i] = c;
      same(changed, `byte ${i} set to ${String.fromCharCode(c)}`);
    }
  }
});
