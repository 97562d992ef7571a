// Go-compatible strings (gojson.ts), Go FileMode (mode.ts) and node encoding (node.ts). Expected
// strings come from real restic 0.14 output where noted, otherwise from Go's encoding/json and
// strconv source, reasoned by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IntegrityError, InvalidInputError } from '../../src/errors.ts';
import { ZERO_GO_TIME, goTimeFromNs, parseGoTime } from '../../src/repository/gotime.ts';
import type { BlobId } from '../../src/repository/id.ts';
import {
  compareGoStrings,
  goCompactJson,
  goJsonString,
  goQuoteInner,
  goStringFromBytes,
  goStringToBytes,
  goUnquoteInner,
  isGoStringUtf8,
  parseGoJson,
} from '../../src/snapshot/model/gojson.ts';
import {
  GO_MODE_APPEND,
  formatGoFileMode,
  goModeForNode,
  goModeFromPosix,
  maskGoMode,
  nodeTypeFromGoMode,
  nodeTypeFromPosix,
  permissionBits,
  posixModeFromGo,
  posixPermissionsFromGo,
} from '../../src/snapshot/model/mode.ts';
import { type TreeNode, decodeNode, encodeNode, nodeNameFromBytes, nodeNameToBytes } from '../../src/snapshot/model/node.ts';

const bytes = (...b: number[]) => Buffer.from(b);
const show = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
const ID1 = 'e5f57f94ff4cf62d040a8e672507de0c0ac7f32cca69bb8aabac513686b031de' as BlobId;
const ID2 = 'a96db6890367a8bc049841501ba1b0ab38bbdca062885d94f0130b17d162dea9' as BlobId;
const TREE = 'ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8';

// ---------------------------------------------------------------------------------------------
// goJsonString

test('goJsonString escapes like Go json.Marshal (HTML-safe)', () => {
  const cases: Array<[string, string]> = [
    ['plain name.txt', '"plain name.txt"'],
    ['<&>', '"\\u003c\\u0026\\u003e"'],
    ['a"b\\c', '"a\\"b\\\\c"'],
    ['\n\r\t', '"\\n\\r\\t"'],
    ['\b\f', '"\\b\\f"'],
    ['\x00\x01\x1b\x1f', '"\\u0000\\u0001\\u001b\\u001f"'],
    ['del\x7f', '"del\x7f"'], // DEL is not escaped by encoding/json
    ['ls\u2028ps\u2029', '"ls\\u2028ps\\u2029"'],
    ['ränd😀\u00a0', '"ränd😀\u00a0"'],
    ['lone\ud800', '"lone\\ufffd"'],
    ['', '""'],
  ];
  for (const [input, want] of cases) assert.equal(goJsonString(input), want, JSON.stringify(input));
});

test('goJsonString writes each byte of invalid UTF-8 as \\ufffd (real 0.14 linktarget)', () => {
  // restic 0.14 stored the symlink target b"bad\xfftarget<&>" as this JSON string.
  assert.equal(goJsonString(goStringFromBytes(Buffer.from('bad\xfftarget<&>', 'latin1'))), '"bad\\ufffdtarget\\u003c\\u0026\\u003e"');
  assert.equal(goJsonString(goStringFromBytes(bytes(0x61, 0xe2, 0x82, 0x62))), '"a\\ufffd\\ufffdb"');
});

test('goJsonString: Go before 1.22 wrote \\b and \\f as \\u0008 and \\u000c', () => {
  assert.equal(goJsonString('\b\f\n', { goBefore122: true }), '"\\u0008\\u000c\\n"');
});

// ---------------------------------------------------------------------------------------------
// Byte strings in the Go-string form

test('goStringFromBytes / goStringToBytes are exact inverses on arbitrary bytes', () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (let n = 0; n < 500; n++) {
    const len = n % 17;
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = n % 3 === 0 ? 0x80 | rnd() : rnd();
    const s = goStringFromBytes(b);
    assert.deepEqual(goStringToBytes(s), b, b.toString('hex'));
    assert.equal(isGoStringUtf8(s), Buffer.from(b.toString('utf8'), 'utf8').equals(b), b.toString('hex'));
  }
  assert.equal(goStringFromBytes(Buffer.from('ränd😀', 'utf8')), 'ränd😀');
  assert.equal(goStringFromBytes(bytes(0x61, 0xff)), 'a\udcff');
  // A surrogate encoded in UTF-8 is invalid in Go: three raw bytes, not a character.
  assert.equal(goStringFromBytes(bytes(0xed, 0xa0, 0x80)), '\udced\udca0\udc80');
  assert.equal(nodeNameFromBytes(bytes(0x66, 0xff)), 'f\udcff');
  assert.deepEqual(nodeNameToBytes('f\udcff'), bytes(0x66, 0xff));
});

test('goStringToBytes rejects a lone surrogate that stands for no byte', () => {
  assert.throws(() => goStringToBytes('a\ud800b'), InvalidInputError);
  assert.throws(() => goStringToBytes('\udc00'), InvalidInputError);
});

test('compareGoStrings orders by UTF-8 bytes, as Go compares strings', () => {
  const names = ['b', 'a', 'A', 'ä', '😀', '\ue000', 'z', 'a\udcff', 'ab', '', 'a\u00ff'];
  const byBytes = [...names].sort((x, y) => Buffer.compare(goStringToBytes(x), goStringToBytes(y)));
  assert.deepEqual([...names].sort(compareGoStrings), byBytes);
  // JS's own order differs here: U+E000 (EE 80 80) sorts before U+1F600 (F0 9F 98 80) in bytes.
  assert.ok(compareGoStrings('\ue000', '😀') < 0);
  assert.ok('\ue000' > '😀');
  assert.ok(compareGoStrings('a\udcff', 'a\u00ff') > 0); // byte FF after C3 BF
  assert.equal(compareGoStrings('same', 'same'), 0);

  const alphabet = ['a', 'b', '\u007f', 'ä', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffff', '😀', '\u{10ffff}', '\udc80', '\udcff'];
  let seed = 7;
  const pick = () => alphabet[(seed = (seed * 1103515245 + 12345) >>> 0) % alphabet.length]!;
  const words = Array.from({ length: 300 }, (_, i) => Array.from({ length: i % 4 }, pick).join(''));
  const sign = (n: number) => Math.sign(n);
  for (let i = 0; i + 1 < words.length; i++) {
    const [x, y] = [words[i]!, words[i + 1]!];
    assert.equal(sign(compareGoStrings(x, y)), sign(Buffer.compare(goStringToBytes(x), goStringToBytes(y))), JSON.stringify([x, y]));
  }
});

// ---------------------------------------------------------------------------------------------
// strconv.Quote / Unquote

const QUOTE_CASES: Array<[Buffer, string]> = [
  // The first ten are names from a real restic 0.14 tree (see tree.test.ts).
  [Buffer.from('ränd.bin'), 'ränd.bin'],
  [Buffer.from('a\nb'), 'a\\nb'],
  [Buffer.from('x\x7f'), 'x\\x7f'],
  [Buffer.from('nbsp\u00a0x'), 'nbsp\\u00a0x'],
  [Buffer.from('bad\xffbyte', 'latin1'), 'bad\\xffbyte'],
  [Buffer.from('😀.txt'), '😀.txt'],
  [Buffer.from('<&>'), '<&>'],
  [Buffer.from('quote"back\\slash'), 'quote\\"back\\\\slash'],
  [Buffer.from('bell\x07\x08\x0c\x0b\r'), 'bell\\a\\b\\f\\v\\r'],
  [Buffer.from('ctl\x01\x1b'), 'ctl\\x01\\x1b'],
  [Buffer.from('ls\u2028sep'), 'ls\\u2028sep'],
  [Buffer.from('tab\there'), 'tab\\there'],
  [Buffer.from('\u0085'), '\\u0085'], // C1 control: above 0x7f, so \u
  [Buffer.from('soft\u00adhyphen'), 'soft\\u00adhyphen'], // Cf
  [Buffer.from('\ufeffbom'), '\\ufeffbom'],
  [Buffer.from('\u{e0001}'), '\\U000e0001'], // Cf above U+FFFF
  [Buffer.from('ideo\u3000space'), 'ideo\\u3000space'], // Zs other than ASCII space
  [Buffer.from('\ue000'), '\\ue000'], // private use
  [Buffer.from('\u0378'), '\\u0378'], // unassigned
  [Buffer.from('\ufffd'), '\ufffd'], // a real U+FFFD is printable
  [Buffer.from('e\u0301 ok'), 'e\u0301 ok'], // marks and the ASCII space are printable
  [bytes(0xed, 0xa0, 0x80), '\\xed\\xa0\\x80'], // UTF-8-encoded surrogate
  [bytes(0xc0, 0x80), '\\xc0\\x80'], // overlong
  [bytes(0xe2, 0x82, 0x41), '\\xe2\\x82A'], // truncated
  [bytes(0xf4, 0x90, 0x80, 0x80), '\\xf4\\x90\\x80\\x80'], // above U+10FFFF
];

test('goQuoteInner matches Go strconv.Quote without the quotes', () => {
  for (const [raw, want] of QUOTE_CASES) {
    assert.equal(goQuoteInner(raw), want, raw.toString('hex'));
    assert.equal(goQuoteInner(goStringFromBytes(raw)), want, raw.toString('hex'));
  }
});

test('goUnquoteInner inverts goQuoteInner', () => {
  for (const [raw, quoted] of QUOTE_CASES) assert.deepEqual(goUnquoteInner(quoted), raw, quoted);
});

test('goUnquoteInner reads every escape Go accepts', () => {
  assert.deepEqual(goUnquoteInner('\\101\\x41\\u0041\\U00000041'), Buffer.from('AAAA'));
  assert.deepEqual(goUnquoteInner('\\xFF\\xfe'), bytes(0xff, 0xfe));
  assert.deepEqual(goUnquoteInner('\\u00e4\\U0001F600'), Buffer.from('ä😀'));
  assert.deepEqual(goUnquoteInner('\\377'), bytes(0xff));
  assert.deepEqual(goUnquoteInner('raw\ttab'), Buffer.from('raw\ttab'));
});

test('goUnquoteInner rejects what Go rejects', () => {
  for (const bad of ['a\\', '\\q', '\\x4', '\\x4g', '\\u12', '\\ud800', '\\U00110000', 'a"b', 'a\nb', "\\'", '\\400', '\\18', '\\']) {
    assert.throws(() => goUnquoteInner(bad), InvalidInputError, JSON.stringify(bad));
  }
});

// ---------------------------------------------------------------------------------------------
// Parsing JSON as Go does

test('parseGoJson keeps integers beyond 2^53 and reads bad UTF-8 as one U+FFFD per byte', () => {
  assert.deepEqual(parseGoJson('{"a":18446744073709551615,"b":9007199254740991,"c":1.5}'), {
    a: 18446744073709551615n,
    b: 9007199254740991,
    c: 1.5,
  });
  assert.deepEqual(parseGoJson(Buffer.concat([Buffer.from('"a'), bytes(0xe2, 0x82), Buffer.from('b"')])), 'a\ufffd\ufffdb');
  assert.throws(() => parseGoJson('{"a":'), SyntaxError);
});

test('goCompactJson compacts raw JSON as Go writes a json.RawMessage', () => {
  assert.equal(goCompactJson(' { "b" : [1, 2.5, "<x>"], "a" : {"HighDateTime": 30} } '), '{"b":[1,2.5,"\\u003cx\\u003e"],"a":{"HighDateTime":30}}');
  assert.equal(goCompactJson('18446744073709551615'), '18446744073709551615');
  assert.throws(() => goCompactJson('{nope'), InvalidInputError);
});

// ---------------------------------------------------------------------------------------------
// Go FileMode

test('goModeFromPosix gives the modes real restic 0.14 stored', () => {
  const cases: Array<[number, number, string]> = [
    [0o100644, 420, 'file'],
    [0o040755, 2147484141, 'dir'],
    [0o120777, 134218239, 'symlink'],
    [0o010644, 33554852, 'fifo'],
    [0o020644, 69206436, 'chardev'],
    [0o060600, 67109248, 'dev'],
    [0o106755, 12583405, 'file'], // setuid + setgid
    [0o041755, 2148532717, 'dir'], // sticky
    [0o041777, 2148532735, 'dir'], // /tmp
    [0o140755, 16777216 + 0o755, 'socket'],
  ];
  for (const [st, go, type] of cases) {
    assert.equal(goModeFromPosix(st), go, st.toString(8));
    assert.equal(nodeTypeFromPosix(st), type, st.toString(8));
    assert.equal(nodeTypeFromGoMode(go), type);
    assert.equal(posixModeFromGo(go), st, go.toString());
  }
  // An unknown S_IFMT has no Go type bits, so restic calls it a file.
  assert.equal(goModeFromPosix(0o170644), 420);
  assert.equal(nodeTypeFromPosix(0o170644), 'file');
});

test('posixModeFromGo trusts the node type (old trees store dirs without the dir bit)', () => {
  assert.equal(posixModeFromGo(493, 'dir'), 0o040755);
  assert.equal(posixModeFromGo(493), 0o100755);
  assert.equal(posixPermissionsFromGo(12583405), 0o6755);
  assert.equal(posixPermissionsFromGo(2148532717), 0o1755);
  assert.equal(permissionBits(0o106755), 0o6755);
});

test('goModeForNode and maskGoMode', () => {
  assert.equal(goModeForNode('dir', 0o1755), 2148532717);
  assert.equal(goModeForNode('chardev', 0o644), 69206436);
  assert.equal(goModeForNode('file', 0o6755), 12583405);
  assert.equal(maskGoMode((2147484141 | GO_MODE_APPEND) >>> 0), 2147484141);
});

test('formatGoFileMode matches Go FileMode.String()', () => {
  assert.equal(formatGoFileMode(420), '-rw-r--r--');
  assert.equal(formatGoFileMode(2147484141), 'drwxr-xr-x');
  assert.equal(formatGoFileMode(134218239), 'Lrwxrwxrwx');
  assert.equal(formatGoFileMode(69206436), 'Dcrw-r--r--');
  assert.equal(formatGoFileMode(12583405), 'ugrwxr-xr-x');
  assert.equal(formatGoFileMode(2148532717), 'dtrwxr-xr-x');
  assert.equal(formatGoFileMode(33554852), 'prw-r--r--');
});

// ---------------------------------------------------------------------------------------------
// encodeNode / decodeNode

const T1 = parseGoTime('2021-03-04T05:06:07.123456789+01:00');
const T2 = parseGoTime('2024-01-02T03:04:05Z');

const FILE_NODE: TreeNode = {
  name: 'ränd.bin',
  type: 'file',
  mode: 420,
  mtime: T1,
  atime: T1,
  ctime: T2,
  uid: 1000,
  gid: 100,
  user: 'alice',
  group: 'users',
  inode: 1234567,
  deviceId: 2049,
  size: 5,
  links: 2,
  extendedAttributes: [{ name: 'user.comment', value: new Uint8Array(Buffer.from('hi')) }, { name: 'user.empty', value: new Uint8Array(0) }],
  content: [ID1, ID2],
};
const FILE_JSON =
  '{"name":"ränd.bin","type":"file","mode":420,"mtime":"2021-03-04T05:06:07.123456789+01:00","atime":"2021-03-04T05:06:07.123456789+01:00",' +
  '"ctime":"2024-01-02T03:04:05Z","uid":1000,"gid":100,"user":"alice","group":"users","inode":1234567,"device_id":2049,"size":5,"links":2,' +
  '"extended_attributes":[{"name":"user.comment","value":"aGk="},{"name":"user.empty","value":""}],' +
  `"content":["${ID1}","${ID2}"]}`;

const DIR_NODE: TreeNode = {
  name: 'sub dir',
  type: 'dir',
  mode: 2147484141,
  mtime: T2,
  atime: T2,
  ctime: T2,
  uid: 0,
  gid: 0,
  user: 'root',
  group: 'root',
  inode: 42,
  content: null,
  subtree: TREE as BlobId,
};
const DIR_JSON =
  '{"name":"sub dir","type":"dir","mode":2147484141,"mtime":"2024-01-02T03:04:05Z","atime":"2024-01-02T03:04:05Z","ctime":"2024-01-02T03:04:05Z",' +
  `"uid":0,"gid":0,"user":"root","group":"root","inode":42,"content":null,"subtree":"${TREE}"}`;

const SYMLINK_NODE: TreeNode = {
  name: 'a\nlink',
  type: 'symlink',
  mode: 134218239,
  mtime: T2,
  atime: T2,
  ctime: T2,
  uid: 0,
  gid: 0,
  links: 1,
  linktarget: '../x<y>',
  content: null,
};
const SYMLINK_JSON =
  '{"name":"a\\\\nlink","type":"symlink","mode":134218239,"mtime":"2024-01-02T03:04:05Z","atime":"2024-01-02T03:04:05Z","ctime":"2024-01-02T03:04:05Z",' +
  '"uid":0,"gid":0,"links":1,"linktarget":"../x\\u003cy\\u003e","content":null}';

const DEVICE_NODE: TreeNode = {
  name: 'sda',
  type: 'dev',
  mode: 67109296,
  mtime: ZERO_GO_TIME,
  atime: ZERO_GO_TIME,
  ctime: ZERO_GO_TIME,
  uid: 0,
  gid: 6,
  group: 'disk',
  inode: 18446744073709551615n,
  links: 1,
  device: 2048,
  content: null,
  error: 'lstat: <partial>',
};
const DEVICE_JSON =
  '{"name":"sda","type":"dev","mode":67109296,"mtime":"0001-01-01T00:00:00Z","atime":"0001-01-01T00:00:00Z","ctime":"0001-01-01T00:00:00Z",' +
  '"uid":0,"gid":6,"group":"disk","inode":18446744073709551615,"links":1,"device":2048,"content":null,"error":"lstat: \\u003cpartial\\u003e"}';

const WINDOWS_NODE: TreeNode = {
  name: 'doc.txt',
  type: 'file',
  mode: 438,
  mtime: T2,
  atime: T2,
  ctime: T2,
  uid: 0,
  gid: 0,
  size: 3,
  genericAttributes: {
    'windows.file_attributes': '32',
    'windows.creation_time': '{"LowDateTime":1,"HighDateTime":2}',
  },
  content: [ID1],
};
const WINDOWS_JSON =
  '{"name":"doc.txt","type":"file","mode":438,"mtime":"2024-01-02T03:04:05Z","atime":"2024-01-02T03:04:05Z","ctime":"2024-01-02T03:04:05Z",' +
  '"uid":0,"gid":0,"size":3,"generic_attributes":{"windows.creation_time":{"LowDateTime":1,"HighDateTime":2},"windows.file_attributes":32},' +
  `"content":["${ID1}"]}`;

const EXAMPLES: Array<[string, TreeNode, string]> = [
  ['file', FILE_NODE, FILE_JSON],
  ['dir', DIR_NODE, DIR_JSON],
  ['symlink', SYMLINK_NODE, SYMLINK_JSON],
  ['device', DEVICE_NODE, DEVICE_JSON],
  ['windows', WINDOWS_NODE, WINDOWS_JSON],
];

test('encodeNode writes the bytes Go json.Marshal writes for restic Node', () => {
  for (const [what, node, json] of EXAMPLES) assert.equal(encodeNode(node), json, what);
});

test('decodeNode(encodeNode(x)) is x', () => {
  for (const [what, node, json] of EXAMPLES) {
    const back = decodeNode(parseGoJson(json), TREE);
    // generic attributes come back in map-key order; compare them as a set.
    assert.deepEqual({ ...back, genericAttributes: undefined }, { ...node, genericAttributes: undefined }, what);
    assert.deepEqual(new Map(Object.entries(back.genericAttributes ?? {})), new Map(Object.entries(node.genericAttributes ?? {})), what);
    assert.equal(encodeNode(back), json, what);
  }
  assert.equal(decodeNode(parseGoJson(DEVICE_JSON), TREE).inode, 18446744073709551615n);
  // JSON.parse has already rounded such a number; decodeNode refuses it rather than guess.
  assert.throws(() => decodeNode(JSON.parse(DEVICE_JSON), TREE), IntegrityError);
});

test('a symlink target that is not UTF-8 is stored in linktarget_raw (0.16+) or lossily (0.14)', () => {
  const raw = Buffer.from('bad\xfftarget<&>', 'latin1');
  const node: TreeNode = { ...SYMLINK_NODE, name: 'badlink', linktarget: undefined, linktargetRaw: new Uint8Array(raw) };
  const head = '{"name":"badlink","type":"symlink","mode":134218239,"mtime":"2024-01-02T03:04:05Z","atime":"2024-01-02T03:04:05Z","ctime":"2024-01-02T03:04:05Z","uid":0,"gid":0,"links":1,';
  const current = head + `"linktarget":"bad\\ufffdtarget\\u003c\\u0026\\u003e","linktarget_raw":"${raw.toString('base64')}","content":null}`;
  assert.equal(raw.toString('base64'), 'YmFk/3RhcmdldDwmPg==');
  assert.equal(encodeNode(node), current);
  assert.equal(encodeNode(node, { format: 'restic-0.14' }), head + '"linktarget":"bad\\ufffdtarget\\u003c\\u0026\\u003e","content":null}');
  // The Go-string form of the target writes the same bytes.
  assert.equal(encodeNode({ ...node, linktargetRaw: undefined, linktarget: goStringFromBytes(raw) }), current);

  const back = decodeNode(JSON.parse(current), TREE);
  assert.deepEqual(back.linktargetRaw, new Uint8Array(raw));
  assert.deepEqual(goStringToBytes(back.linktarget!), raw);
  assert.equal(encodeNode(back), current);
  // linktarget_raw wins over linktarget when reading, as in restic.
  assert.equal(decodeNode({ ...JSON.parse(current), linktarget: 'other' }, TREE).linktarget, goStringFromBytes(raw));
});

test('encodeNode clamps node times to years 0..9999 like restic fixTime', () => {
  const base = parseGoTime('9999-06-01T00:00:00Z');
  const year10000 = goTimeFromNs(base.epochNs + 366n * 86_400n * 1_000_000_000n, 0);
  const json = encodeNode({ ...DIR_NODE, mtime: year10000 });
  assert.match(json, /"mtime":"9999-06-01T00:00:00Z"/);
});

test('encodeNode leaves out zero omitempty fields and keeps content [] apart from null', () => {
  const empty: TreeNode = { ...FILE_NODE, mode: 0, user: '', inode: 0, deviceId: 0n, size: 0, links: 0, extendedAttributes: [], content: [] };
  assert.equal(
    encodeNode(empty),
    '{"name":"ränd.bin","type":"file","mtime":"2021-03-04T05:06:07.123456789+01:00","atime":"2021-03-04T05:06:07.123456789+01:00",' +
      '"ctime":"2024-01-02T03:04:05Z","uid":1000,"gid":100,"group":"users","content":[]}',
  );
  assert.deepEqual(decodeNode(JSON.parse(encodeNode(empty)), TREE).content, []);
});

test('encodeNode rejects what restic could not hold', () => {
  const bad: Array<Partial<TreeNode> & Record<string, unknown>> = [
    { name: '' },
    { type: 'weird' as TreeNode['type'] },
    { uid: -1 },
    { gid: 2 ** 32 },
    { mode: 1.5 },
    { size: 2 ** 60 },
    { inode: 2n ** 64n },
    { content: ['nope' as BlobId] },
    { subtree: 'abc' as BlobId },
    { name: 'lone\ud800' },
  ];
  for (const patch of bad) assert.throws(() => encodeNode({ ...FILE_NODE, ...patch } as TreeNode), InvalidInputError, show(patch));
});

test('decodeNode reads null and missing fields as Go zero values', () => {
  const node = decodeNode({ name: 'x', type: 'fifo', mode: null, mtime: null, uid: null, user: null, content: null, extended_attributes: [] }, TREE);
  assert.deepEqual(node, { name: 'x', type: 'fifo', mode: 0, mtime: ZERO_GO_TIME, atime: ZERO_GO_TIME, ctime: ZERO_GO_TIME, uid: 0, gid: 0, content: null });
  // upper-case hex IDs are accepted (Go's hex decoder is case-blind) and normalised
  assert.deepEqual(decodeNode({ name: 'f', type: 'file', content: [ID1.toUpperCase()] }, TREE).content, [ID1]);
  // a null xattr value (a nil []byte) reads as empty
  assert.deepEqual(decodeNode({ name: 'f', type: 'file', content: [], extended_attributes: [{ name: 'user.x', value: null }] }, TREE).extendedAttributes, [
    { name: 'user.x', value: new Uint8Array(0) },
  ]);
});

test('decodeNode turns an escaped lone surrogate into U+FFFD, never into a raw byte', () => {
  const node = decodeNode(JSON.parse('{"name":"a\\udcffb","type":"file","content":[]}'), TREE);
  assert.equal(node.name, 'a\ufffdb');
  assert.deepEqual(nodeNameToBytes(node.name), Buffer.from('a\ufffdb'));
});

test('decodeNode rejects hostile nodes with an IntegrityError naming the tree', () => {
  const hostile: unknown[] = [
    null,
    [],
    'node',
    { type: 'file' },
    { name: 7, type: 'file' },
    { name: 'x' },
    { name: 'x', type: 'blockdevice' },
    { name: 'x', type: 'file', uid: -1 },
    { name: 'x', type: 'file', uid: 4294967296 },
    { name: 'x', type: 'file', gid: '0' },
    { name: 'x', type: 'file', mode: 1.5 },
    { name: 'x', type: 'file', size: 18446744073709551616n },
    { name: 'x', type: 'file', size: 1e300 },
    { name: 'x', type: 'file', inode: -5 },
    { name: 'x', type: 'file', mtime: 'yesterday' },
    { name: 'x', type: 'file', mtime: 5 },
    { name: 'x', type: 'file', content: 'abc' },
    { name: 'x', type: 'file', content: [null] },
    { name: 'x', type: 'file', content: ['xyz'] },
    { name: 'x', type: 'dir', subtree: 5 },
    { name: 'x', type: 'file', extended_attributes: [{ name: 'a', value: 'not base64!' }] },
    { name: 'x', type: 'file', extended_attributes: {} },
    { name: 'x', type: 'symlink', linktarget_raw: 'Y' },
    { name: 'x', type: 'file', user: 5 },
    { name: 'x', type: 'file', generic_attributes: [] },
    { name: 'a\\q', type: 'file' },
    { name: 'a\\ud800', type: 'file' },
    { name: 'a"b', type: 'file' },
  ];
  for (const obj of hostile) {
    assert.throws(
      () => decodeNode(obj, TREE),
      (err: unknown) => err instanceof IntegrityError && err.blob === TREE && err.message.includes(TREE),
      show(obj),
    );
  }
});
