// Tar headers for what the interop test's repository cannot hold cheaply (IDs and sizes beyond
// octal, long owner names, zero and half-second times, ustar splits of folder paths, devices):
// the blocks are Go 1.26's archive/tar's (restic 0.19.1's dump) for the same header, whose
// lengths and SHA-256 were taken from Go's tar.Writer (WriteHeader with no format asked for).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { goTimeFromNs, ZERO_GO_TIME } from '../../src/repository/gotime.ts';
import { linuxAclText, tarHeader, tarSeconds, type TarFields } from '../../src/snapshot/engine/archive/tar.ts';

const b = (s: string) => Buffer.from(s);
const at = (ns: bigint) => tarSeconds(goTimeFromNs(ns, 0));
const none = { uid: 0, gid: 0, uname: b(''), gname: b(''), size: 0, linkname: b(''), devmajor: 0, devminor: 0 };
const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(90)}`;

const CASES: Array<[string, TarFields, number, string]> = [
  ['IDs and size beyond octal, a 40-byte and a non-ASCII owner, a half second rounded up', {
    ...none, name: b('a.txt'), flag: '0', mode: 0o644, uid: 3000000, gid: 5, uname: b('u'.repeat(40)), gname: b('grüppe'), size: 9 * 2 ** 30, mtime: at(1_600_000_000_500_000_000n),
  }, 1536, '9b3c586ed3e78843650cc84ab686def05dd0ac69f7c3008bfefae25b543304d2'],
  ['a folder path ustar splits, sticky, a time rounded down', { ...none, name: b(`${long}/`), flag: '5', mode: 0o1777, mtime: at(1_600_000_000_499_999_999n) }, 512, '87fc46b7023577714304f14005cab2f799972b7c814018e3b252b0fda0a0608f'],
  ['a 100-byte folder path before 1970', { ...none, name: b(`${'x'.repeat(99)}/`), flag: '5', mode: 0o755, mtime: at(-100_000_000_000n) }, 1536, 'e69ab1e38071c3653b908f8ace67785ff0bf719e0af3d346b1f97b42cc932077'],
  ['a folder path too long for the name field (its cut end is no slash)', { ...none, name: b(`${'y'.repeat(101)}/`), flag: '5', mode: 0o755, mtime: 5 }, 1536, '7c09aa91f34073fa997f87a8a9dbfcbe0ecf24d2ca82579e3554ac3783b10729'],
  ['a non-ASCII symlink and target, the zero time', { ...none, name: b('dir/lïnk'), flag: '2', mode: 0o777, linkname: b('tärget'), mtime: tarSeconds(ZERO_GO_TIME) }, 1536, '7154b779aee28b9ad344cc28c8902a274c68fd07dbef4d35e791af03a2fe08ab'],
  ['xattr records, sorted', { ...none, name: b('x/y'), flag: '0', mode: 0o4755, size: 3, mtime: 7, records: [[b('SCHILY.xattr.user.b'), b('2')], [b('SCHILY.xattr.user.a'), b('1\0z')]] }, 1536, '80d0090dae304033acd5827d82cba26c3a1b5ecf8b97ac1146584232b81692bf'],
  ['a device with the largest numbers ustar holds', { ...none, name: b('dev'), flag: '3', mode: 0o600, devmajor: 4095, devminor: 1048575, mtime: 8 }, 512, '2b9623c954baa1a6bf26f803244f1564414db49873a7eb53d1dff4c2d96e1d4e'],
];

test('tar headers are Go archive/tar\'s, block for block', () => {
  for (const [what, fields, length, sha] of CASES) {
    const h = tarHeader(fields);
    assert.equal(h.length, length, what);
    assert.equal(createHash('sha256').update(h).digest('hex'), sha, what);
  }
});

test('a Linux ACL in POSIX.1e text; anything else is no ACL', () => {
  const acl = Buffer.from('02000000' + '0100060000000000' + '02000400e8030000' + '0400040000000000' + '1000040000000000' + '2000000000000000', 'hex');
  assert.equal(linuxAclText(acl), 'user::rw-\nuser:1000:r--\ngroup::r--\nmask::r--\nother::---\n');
  assert.equal(linuxAclText(acl.subarray(0, 7)), undefined);
  assert.equal(linuxAclText(Buffer.from('0300000001000600', 'hex').subarray(0, 4)), undefined);
});
