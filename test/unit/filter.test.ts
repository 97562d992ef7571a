// restic's path patterns (--exclude, --include). The expectations were checked against restic
// 0.14 (`restic backup --dry-run -vv --exclude …` on a matching tree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from '../../src/errors.ts';
import { PathFilter } from '../../src/snapshot/model/filter.ts';

/** Asserts which of `paths` the patterns match, as a list of [path, matched]. */
function expectMatches(patterns: string[], cases: Array<[string, boolean]>): void {
  const f = new PathFilter(patterns);
  for (const [path, want] of cases) assert.equal(f.matches(path), want, `${JSON.stringify(patterns)} on ${path}`);
}

test('*.tmp matches a name at any depth, and everything below a matching folder', () => {
  expectMatches(['*.tmp'], [
    ['/a/1.tmp', true],
    ['/1.tmp', true],
    ['/a/b/c/.tmp', true],
    ['/a.tmp/inside/file', true],
    ['/a/1.tmpx', false],
    ['/a/2.txt', false],
    ['/a/tmp', false],
    ['rel/x.tmp', true], // a path without a leading slash is rooted too
  ]);
});

test('an absolute pattern matches only from the root', () => {
  expectMatches(['/abs/path'], [
    ['/abs/path', true],
    ['/abs/path/below/it', true],
    ['abs/path', true],
    ['/x/abs/path', false],
    ['/abs/pathx', false],
    ['/abs', false],
    ['/', false],
  ]);
  expectMatches(['/tmp/rf/t/dir/*/x'], [
    ['/tmp/rf/t/dir/sub/x', true],
    ['/tmp/rf/t/dir/sub/x/f', true],
    ['/tmp/rf/t/dir/x', false],
    ['/tmp/rf/t/dir/sub/deep/x', false],
  ]);
});

test('a relative pattern with several parts matches them in a row anywhere', () => {
  expectMatches(['sub/x/f'], [
    ['/tmp/rf/t/dir/sub/x/f', true],
    ['/sub/x/f/g', true],
    ['/sub/x', false],
    ['/sub/y/x/f', false],
  ]);
});

test('** spans any number of folders, including none', () => {
  expectMatches(['dir/**/x'], [
    ['/dir/x', true],
    ['/dir/a/x', true],
    ['/dir/a/b/c/x', true],
    ['/p/dir/a/x/y', true],
    ['/dir', false],
    ['/dir/ax', false],
    ['/dirx/x', false],
    ['/dir/a/xy', false],
  ]);
  expectMatches(['/tmp/rf/t/dir/**'], [
    ['/tmp/rf/t/dir', true],
    ['/tmp/rf/t/dir/sub/deep/x/f', true],
    ['/tmp/rf/t/dirx', false],
  ]);
  expectMatches(['**'], [['/anything/at/all', true], ['/', true]]);
  expectMatches(['/'], [['/anything', true]]);
});

test('a plain name matches that file or folder and everything below it, never a longer name', () => {
  expectMatches(['foo'], [
    ['/foo', true],
    ['/a/foo', true],
    ['/a/foo/b/c', true],
    ['/foobar', false],
    ['/a/foo.txt', false],
    ['/a/xfoo/b', false],
  ]);
});

test('? matches exactly one character, also a multi-byte one, never a slash', () => {
  expectMatches(['b/?x'], [
    ['/b/ax', true],
    ['/b/éx', true],
    ['/b/🦀x', true],
    ['/b/x', false],
    ['/b/abx', false],
  ]);
  expectMatches(['a?b'], [['/a/b', false], ['/a-b', true]]);
});

test('character classes: [a-c], [^a]; [!a] is a class of ! and a, as in Go', () => {
  expectMatches(['[a-c]x'], [['/b/ax', true], ['/b/bx', true], ['/b/cx', true], ['/b/dx', false], ['/b/Ax', false]]);
  expectMatches(['[^a]x'], [['/b/bx', true], ['/b/!x', true], ['/b/ax', false]]);
  expectMatches(['[!a]x'], [['/b/!x', true], ['/b/ax', true], ['/b/bx', false], ['/b/cx', false]]);
  expectMatches(['[xyz]'], [['/y', true], ['/w', false], ['/xy', false]]);
  // A class stays inside one component: a negated one never matches the '/' between two.
  expectMatches(['x[^a]y'], [['/x/y', false], ['/xby', true]]);
});

test('backslash escapes a special character; regex characters are literal', () => {
  expectMatches(['\\*'], [['/*', true], ['/a', false]]);
  expectMatches(['rf/t/b/\\!x'], [['/tmp/rf/t/b/!x', true], ['/tmp/rf/t/b/ax', false]]);
  expectMatches(['a.b+(c)|{d}$'], [['/a.b+(c)|{d}$', true], ['/aXb+(c)|{d}$', false]]);
  expectMatches(['x[1'], [['/x[1', true], ['/x1', false]]);
});

test('patterns are cleaned like paths: ./b, a/../b and a trailing slash', () => {
  expectMatches(['./b'], [['/tmp/rf/t/b/q', true], ['/b', true], ['/bb', false]]);
  expectMatches(['x/../b'], [['/b', true], ['/x/b', true], ['/x', false]]);
  expectMatches(['dir/'], [['/dir', true], ['/a/dir/b', true]]);
  expectMatches(['//abs//path'], [['/abs/path', true], ['/x/abs/path', false]]);
});

test('a pattern starting with ! takes back earlier matches; a later pattern can match again', () => {
  expectMatches(['*.tmp', '!k.tmp'], [
    ['/keep/k.tmp', false],
    ['/keep/j.tmp', true],
    ['/a/1.tmp', true],
  ]);
  // "!k*" also matches the folder "keep", so it takes back everything in it; "k.tmp" then
  // matches again.
  expectMatches(['keep/*', '!k*', 'k.tmp'], [
    ['/tmp/rf/t/keep/j.tmp', false],
    ['/tmp/rf/t/keep/k.tmp', true],
  ]);
  // A negation before any match does nothing.
  expectMatches(['!a', 'a'], [['/a', true]]);
});

test('empty patterns are ignored; a filter without patterns matches nothing', () => {
  const f = new PathFilter(['', '  ']);
  assert.equal(f.empty, true);
  assert.equal(f.matches('/anything'), false);
  assert.deepEqual(f.source, []);
  assert.equal(new PathFilter(['', 'a']).empty, false);
});

test('a malformed character class is an InvalidInputError naming the pattern', () => {
  for (const bad of ['[c-a]x', '/a/[^]']) {
    assert.throws(() => new PathFilter(['ok', bad]), (e: unknown) => {
      assert.ok(e instanceof InvalidInputError, String(e));
      assert.ok(e.message.includes(bad.split('/').pop()!), e.message);
      return true;
    });
  }
  // "." names no real entry: it must not turn into a match-everything pattern.
  expectMatches(['.'], [['/a', false], ['/', false]]);
});

test('mayContainMatch: anchored patterns rule out folders off their path', () => {
  const f = new PathFilter(['/home/user/docs']);
  for (const [dir, want] of [
    ['/', true], ['/home', true], ['/home/user', true], ['/home/user/', true], ['/home/user/docs', true],
    ['/home/user/docs/deeper', true], ['/etc', false], ['/home/other', false], ['home/user', true],
  ] as const) {
    assert.equal(f.mayContainMatch(dir), want, dir);
  }
  const wild = new PathFilter(['/a/*/c']);
  assert.equal(wild.mayContainMatch('/a/b'), true);
  assert.equal(wild.mayContainMatch('/a/b/d'), false);
  assert.equal(wild.mayContainMatch('/x'), false);
  // Up to a ** the prefix must match; below it anything may.
  const deep = new PathFilter(['/a/**/x']);
  assert.equal(deep.mayContainMatch('/a'), true);
  assert.equal(deep.mayContainMatch('/a/b/c/d'), true);
  assert.equal(deep.mayContainMatch('/b'), false);
  assert.equal(deep.mayContainMatch('/b/c'), false);
});

test('mayContainMatch: relative patterns may match below any folder; negations rule folders out', () => {
  const rel = new PathFilter(['*.txt']);
  assert.equal(rel.mayContainMatch('/any/where'), true);
  assert.equal(new PathFilter([]).mayContainMatch('/x'), false);
  const neg = new PathFilter(['/a', '!/a/b']);
  assert.equal(neg.mayContainMatch('/a'), true);
  assert.equal(neg.mayContainMatch('/a/c'), true);
  assert.equal(neg.mayContainMatch('/a/b'), false);
  assert.equal(neg.mayContainMatch('/a/b/c'), false);
  assert.equal(neg.matches('/a/b/c'), false);
  assert.equal(neg.matches('/a/c'), true);
});
