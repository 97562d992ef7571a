// The CLI's argument parser (restic's pflag conventions) and Go durations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from '../../src/errors.ts';
import { Flags, formatHelp, parseArgs, parseDuration, type FlagSpec } from '../../src/cli/args.ts';

const SPECS: FlagSpec[] = [
  { name: 'repo', short: 'r', kind: 'string', arg: 'REPOSITORY', help: 'repository' },
  { name: 'quiet', short: 'q', kind: 'bool', help: 'quiet' },
  { name: 'verbose', short: 'v', kind: 'bool', counter: true, help: 'verbose' },
  { name: 'exclude', short: 'e', kind: 'list', arg: 'PATTERN', help: 'exclude' },
  { name: 'dry-run', kind: 'bool', help: 'dry run' },
  { name: 'keep-last', kind: 'string', help: 'keep' },
];

const parse = (...argv: string[]) => new Flags(parseArgs(argv, SPECS));

test('long flags with a separate or inline value, bools, positionals in between', () => {
  const f = parse('backup', '--repo', '/srv/repo', '/home', '--quiet', '--exclude=*.tmp', '/etc');
  assert.equal(f.string('repo'), '/srv/repo');
  assert.equal(f.bool('quiet'), true);
  assert.equal(f.bool('verbose'), false);
  assert.deepEqual(f.list('exclude'), ['*.tmp']);
  assert.deepEqual(f.positional, ['backup', '/home', '/etc']);
  // '=' splits at the first one only; an empty inline value is a value.
  assert.equal(parse('--repo=a=b').string('repo'), 'a=b');
  assert.equal(parse('--repo=').string('repo'), '');
  // A value may start with a dash; the last of a repeated string flag wins.
  assert.equal(parse('--repo', '-', '--repo', 'x').string('repo'), 'x');
  assert.equal(parse('-r', '-').string('repo'), '-');
  assert.deepEqual(parse('-').positional, ['-']);
});

test('list flags collect every occurrence, long and short', () => {
  const f = parse('-e', 'a', '--exclude', 'b', '--exclude=c', '-ed', '-e=e');
  assert.deepEqual(f.list('exclude'), ['a', 'b', 'c', 'd', 'e']);
  assert.deepEqual(parse().list('exclude'), []);
});

test('short flags: separate value, attached value, =value, and grouped bools', () => {
  assert.equal(parse('-r', 'repo').string('repo'), 'repo');
  assert.equal(parse('-rrepo').string('repo'), 'repo');
  assert.equal(parse('-r=repo').string('repo'), 'repo');
  const grouped = parse('-qv');
  assert.equal(grouped.bool('quiet'), true);
  assert.equal(grouped.bool('verbose'), true);
  // A value-taking shorthand ends the group: the rest, or the next argument, is its value.
  const mixed = parse('-qrrepo');
  assert.equal(mixed.bool('quiet'), true);
  assert.equal(mixed.string('repo'), 'repo');
  const next = parse('-vr', 'repo', 'pos');
  assert.equal(next.bool('verbose'), true);
  assert.equal(next.string('repo'), 'repo');
  assert.deepEqual(next.positional, ['pos']);
  assert.equal(parse('-vv').bool('verbose'), true);
  assert.equal(parse('-q=false').bool('quiet'), false);
});

test('bool flags take Go\'s boolean spellings after =, and nothing else', () => {
  for (const t of ['true', '1', 't', 'T', 'TRUE', 'True']) assert.equal(parse(`--quiet=${t}`).bool('quiet'), true, t);
  for (const f of ['false', '0', 'f', 'F', 'FALSE', 'False']) assert.equal(parse(`--quiet=${f}`).bool('quiet'), false, f);
  for (const bad of ['yes', '', 'no', '2']) assert.throws(() => parse(`--dry-run=${bad}`), InvalidInputError, bad);
  // A bool never takes the next argument.
  const f = parse('--dry-run', 'false');
  assert.equal(f.bool('dry-run'), true);
  assert.deepEqual(f.positional, ['false']);
});

test('-- ends the flags: everything after it is positional', () => {
  const f = parse('--quiet', '--', '--repo', '-q', '--');
  assert.equal(f.bool('quiet'), true);
  assert.equal(f.string('repo'), undefined);
  assert.deepEqual(f.positional, ['--repo', '-q', '--']);
  // As a flag's value it is just a value.
  assert.equal(parse('--repo', '--').string('repo'), '--');
});

test('unknown flags and missing values are InvalidInputErrors naming the flag', () => {
  const names = (re: RegExp) => (e: unknown) => e instanceof InvalidInputError && e.code === 'INVALID_INPUT' && re.test(e.message);
  assert.throws(() => parse('--nope'), names(/unknown flag: --nope/));
  assert.throws(() => parse('--nope=1'), names(/unknown flag: --nope$/));
  assert.throws(() => parse('-x'), names(/unknown shorthand flag: 'x' in -x/));
  assert.throws(() => parse('-qx'), names(/unknown shorthand flag: 'x' in -qx/));
  assert.throws(() => parse('--repo'), names(/flag needs an argument: --repo/));
  assert.throws(() => parse('-e'), names(/flag needs an argument: --exclude/));
  assert.throws(() => parse('--Repo', 'x'), names(/unknown flag: --Repo/));
});

test('Flags.int takes decimal integers only', () => {
  assert.equal(parse('--keep-last', '7').int('keep-last'), 7);
  assert.equal(parse('--keep-last', '-3').int('keep-last'), -3);
  assert.equal(parse().int('keep-last'), undefined);
  for (const bad of ['', 'x', '1.5', '0x10', '1e3', ' 5', '99999999999999999999']) {
    assert.throws(() => parse(`--keep-last=${bad}`).int('keep-last'), InvalidInputError, JSON.stringify(bad));
  }
});

test('formatHelp lists every flag with its shorthand and argument name', () => {
  const help = formatHelp('stowage backup [flags] PATH...', 'Back up files.', SPECS);
  assert.match(help, /^Usage: stowage backup \[flags\] PATH\.\.\.\n\nBack up files\.\n\nFlags:\n/);
  assert.match(help, / {2}-r, --repo REPOSITORY +repository\n/);
  assert.match(help, / {2}-q, --quiet +quiet\n/);
  assert.match(help, / {6}--dry-run +dry run\n/);
  assert.match(help, / {6}--keep-last value +keep\n/);
});

test('parseDuration reads Go durations into milliseconds', () => {
  const cases: Array<[string, number]> = [
    ['0', 0], ['10s', 10_000], ['2m', 120_000], ['1h30m', 5_400_000], ['1.5h', 5_400_000], ['300ms', 300],
    ['1m0.5s', 60_500], ['.5s', 500], ['1.s', 1000], ['1h1m1s1ms', 3_661_001], ['1500us', 1.5], ['1µs', 0.001],
    ['2000000ns', 2], ['0s', 0],
  ];
  for (const [s, ms] of cases) assert.equal(parseDuration(s), ms, s);
  for (const bad of ['', '10', 'h', '1x', '1h 30m', ' 1h', '1h-', '-1h', '1.5.3h', '1d', 'abc', '00']) {
    assert.throws(() => parseDuration(bad), (e: unknown) => e instanceof InvalidInputError && e.message.includes(JSON.stringify(bad)), bad);
  }
});

test("a counter (restic's --verbose): --verbose=N is on for N > 0, a plain bool still refuses a number", () => {
  assert.equal(parse('--verbose=2').bool('verbose'), true);
  assert.equal(parse('--verbose=0').bool('verbose'), false);
  assert.equal(parse('--verbose=true').bool('verbose'), true);
  assert.throws(() => parse('--quiet=2'), InvalidInputError);
});

test("a counter counts as pflag's does: -vv and --verbose --verbose are 2, --verbose=N is N, -qv stays 1", () => {
  assert.equal(parse().count('verbose'), 0);
  assert.equal(parse('-v').count('verbose'), 1);
  assert.equal(parse('-vv').count('verbose'), 2);
  assert.equal(parse('--verbose', '--verbose').count('verbose'), 2);
  assert.equal(parse('-v', '--verbose', '-v').count('verbose'), 3);
  assert.equal(parse('--verbose=3').count('verbose'), 3);
  assert.equal(parse('--verbose=0').count('verbose'), 0);
  assert.equal(parse('-qv').count('verbose'), 1);
});
