// `npm run bench:docs`: restic 0.19.1's documented local examples (bench/restic-docs/examples.ts),
// each run with restic 0.19.1 and with the `stowage` CLI on identical copies of one fixture
// repository and source tree, and compared:
//
// - the exit code;
// - stdout: text by shape (IDs, times, durations, sizes and numbers normalised, blank lines and
//   column padding ignored), `--json` by keys and types, dumps by their bytes or archive entries;
// - the effect, as restic 0.19.1 sees it afterwards: the snapshots of every repository the example
//   touched (kept IDs, and the host, paths, tags, parent and file listing of new ones), `restic
//   check`, key and lock counts, the modes of new repository files; and the files under $W/tmp
//   and $W/home (restore targets, dumps written with --target).
//
// Verdicts: same | lacking (Stowage refuses a command or flag restic has) | output differs (same
// exit code and effect) | different effect (exit code or effect). Differences with a reason are
// listed in docs/compatibility.md ("restic's documentation examples"); the tally keeps them apart.
//
//   npm run bench:docs                    every example
//   npm run bench:docs -- --only 040-24,050-26
//   npm run bench:docs -- --chapter 050 --verbose
//   npm run bench:docs -- --cli /other/checkout/dist/cli/main.js
//
// Writes bench/results/restic-docs.json (every run's commands, outputs and effects) and prints
// the table and the tally as markdown. $STOWAGE_DOCS_DIR (default /tmp/stowage-docs) holds the
// fixture and the work folder.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { createKeyFile, openKeyFile, parseKeyFile } from '../src/repository/keyfile.ts';
import { DOC_IDS, EXAMPLES, type DocExample, type SetupStep } from './restic-docs/examples.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export const RESTIC = process.env.STOWAGE_RESTIC_019 || '/var/cache/stowage/bin/restic';
const PASSWORD = 'docs-password';
const FIXTURE_VERSION = '2';

export type Verdict = 'same' | 'lacking' | 'output differs' | 'different effect';
export type ToolName = 'restic' | 'stowage';

export interface RunRecord {
  argv: string[];
  code: number;
  stdout: string;
  stderr: string;
  shape: string[];
  effect: Record<string, unknown>;
  ms: number;
}

export interface ExampleResult {
  id: string;
  chapter: string;
  kind: 'example' | 'probe';
  doc: string;
  verdict: Verdict;
  /** What differs, in a few words. */
  why: string;
  /** The reason docs/compatibility.md gives for this example's difference, if listed. */
  documented?: { category: string; reason: string };
  restic: RunRecord;
  stowage: RunRecord;
}

export interface Layout {
  base: string;
  /** The work folder every run uses (the fixture is copied here before each run). */
  w: string;
  fixture: string;
}

export function layout(base = process.env.STOWAGE_DOCS_DIR || '/tmp/stowage-docs'): Layout {
  return { base, w: join(base, 'w'), fixture: join(base, 'fixture') };
}

interface FixtureInfo {
  version: string;
  ids: Record<string, string>;
  blob: string;
}

// ---------------------------------------------------------------------------------------------
// The fixture: a source tree under $W/home, $W/srv, $W/tmp and a repository made by restic 0.19.1.

function det(seed: number, n: number): Buffer {
  // xorshift bytes: incompressible, the same every build.
  const out = Buffer.alloc(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function put(w: string, rel: string, data: string | Buffer): void {
  const p = join(w, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, data);
}

const T0 = new Date('2025-04-20T09:00:00Z');
/** The time setup steps give what they change (a fixed one, so both tools' runs start alike). */
const T1 = new Date('2025-05-10T09:00:00Z');

function touchAll(dir: string, t: Date): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isSymbolicLink()) continue;
    if (e.isDirectory()) touchAll(p, t);
    utimesSync(p, t, t);
  }
  utimesSync(dir, t, t);
}

function restic(w: string, args: string[], opts: { input?: Buffer | string; env?: Record<string, string>; cwd?: string } = {}): { code: number; stdout: string; stderr: string } {
  const res = spawnSync(RESTIC, args, {
    cwd: opts.cwd ?? join(w, 'home/user'),
    env: { ...baseEnv(w), ...opts.env },
    input: opts.input,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: 120_000,
  });
  return { code: res.status ?? 128, stdout: res.stdout ?? '', stderr: res.stderr ?? '' };
}

function resticOk(w: string, args: string[], opts: Parameters<typeof restic>[2] = {}): string {
  const res = restic(w, args, opts);
  if (res.code !== 0) throw new Error(`restic ${args.join(' ')} exited ${res.code}: ${res.stderr.slice(-2000)}`);
  return res.stdout;
}

function baseEnv(w: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: join(w, 'home/user'),
    USER: 'user',
    TZ: 'UTC',
    LC_ALL: 'C.UTF-8',
    RESTIC_REPOSITORY: join(w, 'srv/restic-repo'),
    RESTIC_PASSWORD: PASSWORD,
    RESTIC_FROM_PASSWORD: PASSWORD,
    RESTIC_CACHE_DIR: join(w, 'cache'),
  };
}

function writeSources(w: string): void {
  const work = 'home/user/work';
  put(w, `${work}/file1.txt`, 'first file\n');
  put(w, `${work}/plan.txt`, 'plan: back up everything\n'.repeat(40));
  put(w, `${work}/archive.tar.gz`, det(1, 300_000));
  put(w, `${work}/big.bin`, det(2, 1_500_000));
  put(w, `${work}/main.go`, 'package main\n');
  put(w, `${work}/main.c`, 'int main(void) { return 0; }\n');
  put(w, `${work}/secret-file`, 'password=hunter2\n');
  put(w, `${work}/foo bar star.txt`, 'spaces\n');
  put(w, `${work}/Photo.JPG`, det(3, 5000));
  put(w, `${work}/foo/a.txt`, 'a\n');
  put(w, `${work}/foo/x/bar/b.txt`, 'b\n');
  put(w, `${work}/restic/r1.txt`, 'r1\n');
  put(w, `${work}/0/1/7`, 'seven\n');
  put(w, `${work}/project/target/out.o`, det(4, 2000));
  put(w, `${work}/project/src/lib.c`, 'int f;\n');
  put(w, `${work}/.cache/CACHEDIR.TAG`, 'Signature: 8a477f597d28d172789f06886806bc55\n');
  put(w, `${work}/.cache/blob`, det(5, 1000));
  put(w, `${work}/skipme/.nobackup`, '');
  put(w, `${work}/skipme/data.txt`, 'skipped\n');
  symlinkSync('file1.txt', join(w, work, 'link-to-file1'));
  put(w, 'home/user/work.txt', 'some work\n');
  put(w, 'home/user/bigfile.dat', 'big file line\n'.repeat(2000));
  put(w, 'home/user/bigfile.dat.gz', gzipSync(readFileSync(join(w, 'home/user/bigfile.dat')), { level: 9, mtime: 0 } as never));
  put(w, 'home/user/excludes.txt', '# exclude go-files\n*.go\n# exclude foo/x/y/z/bar foo/x/bar foo/bar\nfoo/**/bar\n');
  put(w, 'home/user/iexcludes.txt', '*.jpg\n');
  put(w, 'home/user/home-excludes.txt', '$HOME/work/*\n!$HOME/work/foo\n!$HOME/work/restic\n# [...]\nnode_modules\n*~\n*.o\n');
  put(w, 'home/user/restore-includes.txt', `${join(w, work)}/foo\n${join(w, work)}/plan.txt\n`);
  put(w, 'home/art/painting.txt', 'a painting\n');
  put(w, 'home/other/work/doc.txt', 'other work\n');
  put(w, 'home/other/work/sub/notes.md', '# notes\n');
  put(w, 'srv/data/db.txt', 'database\n');
  put(w, 'media/usb/photo.txt', 'usb\n');
  put(w, 'tmp/some_folder/a.log', 'log a\n');
  put(w, 'tmp/some_folder/b.log', 'log b\n');
  put(w, 'tmp/some_folder/c.txt', 'text c\n');
  put(w, 'tmp/some_additional_file', 'additional\n');
  put(w, 'tmp/repo-location', `${join(w, 'srv/restic-repo')}\n`);
  put(w, 'tmp/password', `${PASSWORD}\n`);
  put(w, 'tmp/password2', 'second-password\n');
  touchAll(join(w, 'home'), T0);
  touchAll(join(w, 'srv'), T0);
  touchAll(join(w, 'media'), T0);
  touchAll(join(w, 'tmp'), T0);
}

/**
 * Replaces the repository's one key by a key for the same master key with cheap scrypt
 * parameters (N=1024), so the several hundred restic and Stowage commands of a run do not each
 * spend most of their time deriving the key. Both tools read the same key file.
 */
async function cheapKey(repo: string): Promise<void> {
  const dir = join(repo, 'keys');
  const [name] = readdirSync(dir);
  const file = parseKeyFile(readFileSync(join(dir, name)), name);
  const master = await openKeyFile(PASSWORD, file, name);
  if (!master) throw new Error(`the fixture password does not open ${repo}/keys/${name}`);
  const { bytes, id } = await createKeyFile(PASSWORD, master, { params: { N: 1024, r: 8, p: 1 }, username: file.username, hostname: file.hostname });
  writeFileSync(join(dir, id), bytes, { mode: 0o400 });
  rmSync(join(dir, name), { force: true });
}

/** Builds the fixture once (about 20 s); reused while its version is the same. */
export async function ensureFixture(l: Layout): Promise<FixtureInfo> {
  const infoPath = join(l.base, 'fixture.json');
  if (existsSync(infoPath) && existsSync(l.fixture)) {
    const info = JSON.parse(readFileSync(infoPath, 'utf8')) as FixtureInfo;
    if (info.version === FIXTURE_VERSION) return info;
  }
  rmSync(l.w, { recursive: true, force: true });
  rmSync(l.fixture, { recursive: true, force: true });
  rmSync(infoPath, { force: true });
  mkdirSync(l.w, { recursive: true });
  const w = l.w;
  writeSources(w);
  const work = join(w, 'home/user/work');
  resticOk(w, ['init']);
  await cheapKey(join(w, 'srv/restic-repo'));
  const b = (args: string[], time: string, input?: string): void => {
    resticOk(w, ['backup', '--time', time, ...args], { input });
  };
  const step = (t: string): void => touchAll(join(w, 'home'), new Date(t));
  b([work], '2025-04-24 11:00:00');
  put(w, 'home/user/work/file2.txt', 'second file\n');
  step('2025-04-25T10:00:00Z');
  b([work, '--tag', 'projectX'], '2025-04-25 11:00:00');
  put(w, 'home/user/work/plan.txt', 'plan: back up everything, twice\n'.repeat(40));
  step('2025-04-25T22:00:00Z');
  b([work], '2025-04-25 23:00:00');
  put(w, 'home/user/work/restic/r2.txt', 'r2\n');
  step('2025-04-28T10:00:00Z');
  b([work], '2025-04-28 11:00:00');
  put(w, 'home/user/work/file1.txt', 'first file, changed\n');
  step('2025-04-29T10:00:00Z');
  b([work], '2025-04-29 11:00:00');
  put(w, 'home/user/work/notes.txt', 'notes\n');
  step('2025-05-01T10:00:00Z');
  b([work], '2025-05-01 11:00:00');
  b([join(w, 'srv'), '--host', 'luigi', '--tag', 'foo,bar', '--exclude', join(w, 'srv/restic-repo*')], '2025-04-22 11:00:00');
  b([join(w, 'home/art'), '--host', 'luigi', '--tag', 'foo'], '2025-04-23 11:00:00');
  b([work, '--host', 'kasimir', '--tag', 'bar'], '2025-04-26 11:00:00');
  b(['--stdin', '--stdin-filename', 'production.sql'], '2025-05-02 10:00:00', 'CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n');
  b([join(w, 'home'), '--exclude', join(w, 'home/user/work')], '2025-05-02 23:00:00');
  resticOk(w, ['-r', join(w, 'srv/restic-repo-copy'), 'init', '--from-repo', join(w, 'srv/restic-repo'), '--copy-chunker-params']);
  await cheapKey(join(w, 'srv/restic-repo-copy'));
  const snaps = JSON.parse(resticOk(w, ['snapshots', '--json'])) as { short_id: string; time: string; hostname: string; paths: string[] }[];
  const names: Record<string, string> = {
    '2025-04-24T11': 'work1',
    '2025-04-25T11': 'work2',
    '2025-04-25T23': 'work3',
    '2025-04-28T11': 'work4',
    '2025-04-29T11': 'work5',
    '2025-05-01T11': 'work6',
    '2025-04-22T11': 'srv',
    '2025-04-23T11': 'art',
    '2025-04-26T11': 'kasimir',
    '2025-05-02T10': 'sql',
    '2025-05-02T23': 'home',
  };
  const ids: Record<string, string> = {};
  for (const s of snaps) {
    const name = names[s.time.slice(0, 13)];
    if (!name) throw new Error(`unexpected fixture snapshot ${s.short_id} at ${s.time}`);
    ids[name] = s.short_id;
  }
  const blob = /^data ([0-9a-f]{64})$/m.exec(resticOk(w, ['list', 'blobs']))?.[1];
  if (!blob) throw new Error('the fixture has no data blob');
  rmSync(join(w, 'cache'), { recursive: true, force: true });
  renameSync(w, l.fixture);
  const info: FixtureInfo = { version: FIXTURE_VERSION, ids, blob: blob.slice(0, 8) };
  writeFileSync(infoPath, JSON.stringify(info, null, 2));
  return info;
}

// ---------------------------------------------------------------------------------------------
// Turning a documented command into argv.

/** Splits a command line into words as a POSIX shell would for quotes and backslashes (no expansion). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      cur += line.slice(i + 1, end);
      i = end;
      has = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; line[j] !== '"'; j++) {
        if (line[j] === '\\' && '"\\$`'.includes(line[j + 1])) j++;
        cur += line[j];
      }
      i = j;
      has = true;
    } else if (c === '\\') {
      cur += line[++i];
      has = true;
    } else if (c === ' ' || c === '\t') {
      if (has) words.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) words.push(cur);
  return words;
}

const MOVED = /(^|[=:])(\/srv|\/home|\/tmp|\/media|\/mnt)(?=\/|$)/;

/** The command of an example as argv (without the program), its placeholders resolved. */
export function runnable(ex: DocExample, w: string, ids: Record<string, string>): string[] {
  let line = ex.args;
  if (line === undefined) {
    line = ex.doc.replace(/^.*?&& /, '').replace(/^cd \S+; /, '');
    line = line.replace(/ [|>] .*$/, '');
    if (!line.startsWith('restic ')) throw new Error(`${ex.id}: no command to run in "${ex.doc}"`);
    line = line.slice('restic '.length);
  }
  return shellWords(line).map((word) => {
    let out = word;
    if (out.startsWith('~')) out = join(w, 'home/user') + out.slice(1);
    else out = out.replace(MOVED, (_m, pre: string, dir: string) => `${pre}${w}${dir}`);
    out = out.replace(/^([0-9a-f]{8})(?=$|:)/, (m: string) => DOC_IDS[m] ?? m);
    out = out.replace(/@([a-z0-9]+)/g, (m: string, name: string) => {
      const id = ids[name];
      if (!id) throw new Error(`${ex.id}: no fixture snapshot "${name}"`);
      return id;
    });
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// Setup steps (run with restic, the same before either tool).

function firstFile(dir: string): string {
  const walk = (d: string): string | undefined => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        const f = walk(p);
        if (f) return f;
      } else return p;
    }
    return undefined;
  };
  const f = walk(dir);
  if (!f) throw new Error(`no file under ${dir}`);
  return f;
}

/** The data pack that holds `blob` (from the index, as restic reads it). */
function packWithBlob(w: string, blob: string): string {
  for (const id of resticOk(w, ['list', 'index']).split('\n').filter(Boolean)) {
    const index = JSON.parse(resticOk(w, ['cat', 'index', id])) as { packs: { id: string; blobs: { id: string }[] }[] };
    const pack = index.packs.find((p) => p.blobs.some((x) => x.id.startsWith(blob)));
    if (pack) return join(w, 'srv/restic-repo/data', pack.id.slice(0, 2), pack.id);
  }
  throw new Error(`no pack holds blob ${blob}`);
}

function runSetup(step: SetupStep, w: string, info: FixtureInfo): void {
  const repo = join(w, 'srv/restic-repo');
  switch (step) {
    case 'append-worktxt':
      writeFileSync(join(w, 'home/user/work.txt'), 'more data foo bar\n', { flag: 'a' });
      utimesSync(join(w, 'home/user/work.txt'), T1, T1);
      return;
    case 'backup-worktxt':
      resticOk(w, ['backup', join(w, 'home/user/work.txt')]);
      return;
    case 'sql-latest':
      resticOk(w, ['backup', '--stdin', '--stdin-filename', 'production.sql', '--time', '2025-05-03 10:00:00'], { input: 'CREATE TABLE t (id int);\nINSERT INTO t VALUES (2);\n' });
      return;
    case 'files-lists': {
      const some = join(w, 'tmp/some_folder');
      writeFileSync(join(w, 'tmp/files_to_backup'), [join(some, 'a.log'), join(some, 'b.log')].map((p) => `${p}\0`).join(''));
      writeFileSync(join(w, 'tmp/files_to_backup.txt'), `# the logs\n${join(some, '*.log')}\n${join(some, 'c.txt')}\n`);
      writeFileSync(join(w, 'tmp/glob-pattern'), `${join(some, '*.txt')}\n`);
      writeFileSync(join(w, 'tmp/generated-list'), `${join(some, 'a.log')}\0`);
      writeFileSync(join(w, 'tmp/verbatim-list'), `${join(some, 'a.log')}\n${join(some, 'c.txt')}\n`);
      for (const f of ['files_to_backup', 'files_to_backup.txt', 'glob-pattern', 'generated-list', 'verbatim-list', '.']) utimesSync(join(w, 'tmp', f), T1, T1);
      return;
    }
    case 'corrupt-index':
      writeFileSync(firstFile(join(repo, 'index')), 'boom\n');
      return;
    case 'damage-pack': {
      const pack = packWithBlob(w, info.blob);
      chmodSync(pack, 0o600);
      const buf = readFileSync(pack);
      buf[Math.floor(buf.length / 3)] ^= 0xff;
      writeFileSync(pack, buf);
      return;
    }
    case 'delete-pack':
      rmSync(packWithBlob(w, info.blob));
      return;
    case 'repair-index':
      resticOk(w, ['repair', 'index']);
      return;
    case 'repair-snapshots':
      resticOk(w, ['repair', 'snapshots', '--forget']);
      return;
    case 'group-access': {
      const walk = (d: string): void => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          if (e.isDirectory()) walk(p);
          else chmodSync(p, 0o440);
        }
        chmodSync(d, 0o2770);
      };
      walk(repo);
      return;
    }
    case 'restored': {
      resticOk(w, ['restore', info.ids.work6, '--target', join(w, 'tmp/restore')]);
      const f = join(w, 'tmp/restore', w, 'home/user/work/file1.txt');
      writeFileSync(f, 'changed after the restore\n');
      utimesSync(f, T0, T0);
      writeFileSync(join(w, 'tmp/restore', w, 'home/user/work/foo/extra.txt'), 'not in the snapshot\n');
      writeFileSync(join(w, 'tmp/restore', w, 'home/user/work/extra.txt'), 'not in the snapshot\n');
      for (const d of ['home/user/work/foo/extra.txt', 'home/user/work/extra.txt', 'home/user/work/foo', 'home/user/work']) utimesSync(join(w, 'tmp/restore', w, d), T1, T1);
      return;
    }
    case 'no-copy-repo':
      rmSync(join(w, 'srv/restic-repo-copy'), { recursive: true, force: true });
      return;
    case 'forgotten-work1':
      resticOk(w, ['forget', info.ids.work1]);
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Effects.

function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(`${relative(dir, p)} ${lstatSync(p).size}`);
    }
  };
  walk(dir);
  return out.sort();
}

function repoModes(dir: string, before: Set<string>): string[] {
  const modes = new Map<string, number>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (e.isDirectory()) walk(p);
      else if (!before.has(rel)) {
        const key = `${rel.split('/')[0]} ${(statSync(p).mode & 0o7777).toString(8)}`;
        modes.set(key, (modes.get(key) ?? 0) + 1);
      }
    }
  };
  walk(dir);
  return [...modes.keys()].sort();
}

interface SnapshotJson {
  id: string;
  short_id: string;
  time: string;
  hostname: string;
  paths: string[];
  tags?: string[];
  parent?: string;
  original?: string;
}

function repoEffect(w: string, repoRel: string, before: string[], fixtureIds: Record<string, string>, env: Record<string, string>): unknown {
  const dir = join(w, repoRel);
  const after = listing(dir);
  if (JSON.stringify(after) === JSON.stringify(before)) return 'unchanged';
  if (!existsSync(join(dir, 'config'))) return after.length === 0 ? 'absent' : 'no config';
  const beforeNames = new Set(before.map((l) => l.split(' ')[0]));
  const noPassword = env.RESTIC_PASSWORD === undefined;
  const auth = noPassword ? ['--insecure-no-password'] : [];
  const renv: Record<string, string> = noPassword ? { RESTIC_PASSWORD: '' } : {};
  const run = (args: string[]): { code: number; stdout: string; stderr: string } => {
    const res = restic(w, ['-r', dir, '--no-cache', ...auth, ...args], { env: renv });
    if (noPassword) return res;
    return res;
  };
  const names = Object.fromEntries(Object.entries(fixtureIds).map(([k, v]) => [v, k]));
  const snaps = run(['snapshots', '--json']);
  let snapshots: unknown = `restic snapshots exited ${snaps.code}`;
  const contents: Record<string, string[]> = {};
  if (snaps.code === 0) {
    const list = JSON.parse(snaps.stdout) as SnapshotJson[];
    const oldIds = new Set(before.filter((l) => l.startsWith('snapshots/')).map((l) => l.split(' ')[0].slice('snapshots/'.length)));
    snapshots = list
      .map((s) => {
        if (oldIds.has(s.id)) return `kept ${names[s.short_id] ?? s.short_id}`;
        const year = Number(s.time.slice(0, 4));
        const ls = run(['ls', '--json', s.id]);
        const nodes = ls.stdout
          .split('\n')
          .filter((x) => x.includes('"struct_type":"node"'))
          .map((x) => {
            const n = JSON.parse(x) as { path: string; type: string; size?: number; mode: number; mtime: string };
            // Times of now (a stream's file, a folder the run touched) differ from run to run.
            const mtime = n.type === 'dir' || n.mtime.slice(0, 4) >= '2026' ? '' : n.mtime.slice(0, 19);
            return `${n.path} ${n.type} ${n.size ?? ''} ${n.mode.toString(8)} ${mtime}`;
          })
          .sort();
        contents[s.short_id] = nodes;
        const ref = (id: string | undefined): string | undefined => (id === undefined ? undefined : oldIds.has(id) ? (names[id.slice(0, 8)] ?? 'old') : 'new');
        return JSON.stringify({
          new: true,
          hostname: s.hostname,
          paths: s.paths,
          tags: s.tags ?? [],
          time: year >= 2026 ? 'now' : s.time.replace(/\.\d+/, ''),
          parent: ref(s.parent),
          original: ref(s.original),
          files: createHash('sha1').update(nodes.join('\n')).digest('hex').slice(0, 12),
        });
      })
      .sort();
  }
  const check = run(['check']).code;
  const count = (sub: string): number => after.filter((l) => l.startsWith(`${sub}/`)).length;
  return { snapshots, check, keys: count('keys'), locks: count('locks'), newFileModes: repoModes(dir, beforeNames), contents };
}

function treeState(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      const st = lstatSync(p);
      const rel = relative(root, p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out.push(`${rel} link ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        // A restore target's own folder is made, not restored: its time is not compared.
        out.push(`${rel} dir ${mode} ${rel.includes('/') ? Math.floor(st.mtimeMs / 1000) : ''}`);
        walk(p);
      } else out.push(`${rel} file ${mode} ${st.size} ${Math.floor(st.mtimeMs / 1000)} ${createHash('sha1').update(readFileSync(p)).digest('hex').slice(0, 12)}`);
    }
  };
  walk(root);
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Output shapes.

/** A line of text with what varies from run to run replaced. */
export function shapeLine(line: string, w: string): string {
  let s = line.split(w).join('$W');
  s = s.replace(/\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?( [+-]\d{4})?( [A-Z]{2,5})?/g, 'TIME');
  s = s.replace(/\d{4}-\d{2}-\d{2}/g, 'DATE');
  // check's temporary cache: restic's and Stowage's names for it, in the same cache folder.
  s = s.replace(/(restic|stowage)-check-cache-[A-Za-z0-9]+/g, 'CHECK-CACHE');
  s = s.replace(/\b[0-9a-f]{8,64}\b/g, 'ID');
  s = s.replace(/\b\d+:\d{2}(:\d{2})?\b/g, 'DUR');
  s = s.replace(/\b\d+(\.\d+)?(ns|µs|us|ms|s|m|h)\b/g, 'DUR');
  s = s.replace(/\b\d+(\.\d+)? ?(B|KiB|MiB|GiB|TiB)\b/g, 'SIZE');
  s = s.replace(/\d+(\.\d+)?/g, 'N');
  s = s.replace(/-{3,}/g, '---');
  s = s.replace(/\s+/g, ' ').trim();
  return s;
}

/** Keys and types of a JSON value, as one string (arrays: the union of their elements' shapes). */
export function jsonShape(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${[...new Set(v.map(jsonShape))].sort().join('|')}]`;
  if (typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${k}:${jsonShape((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return typeof v;
}

function tarEntries(buf: Buffer): string[] {
  const out: string[] = [];
  let off = 0;
  let paxPath: string | undefined;
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, n: number): string => h.subarray(a, a + n).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(str(124, 12).trim() || '0', 8);
    const type = str(156, 1) || '0';
    const prefix = str(345, 155);
    let name = prefix ? `${prefix}/${str(0, 100)}` : str(0, 100);
    const body = buf.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      paxPath = m?.[1];
      continue;
    }
    if (paxPath) name = paxPath;
    paxPath = undefined;
    out.push(`${name} ${type} ${parseInt(str(100, 8).trim() || '0', 8).toString(8)} ${size} ${createHash('sha1').update(body).digest('hex').slice(0, 12)}`);
  }
  return out.sort();
}

function zipEntries(buf: Buffer, w: string): string[] {
  const f = join(w, 'stdout.zip');
  writeFileSync(f, buf);
  const res = spawnSync('python3', ['-c', 'import zipfile,sys\nfor i in zipfile.ZipFile(sys.argv[1]).infolist(): print(i.filename, i.file_size, i.CRC, oct(i.external_attr >> 16))', f], { encoding: 'utf8' });
  rmSync(f, { force: true });
  if (res.status !== 0) return [`not a zip archive: ${res.stderr.trim().split('\n').pop()}`];
  return res.stdout.split('\n').filter(Boolean).sort();
}

function stdoutShape(ex: DocExample, out: Buffer, w: string): string[] {
  const mode = ex.stdout ?? 'text';
  if (mode === 'bytes') return [`${out.length} bytes sha1 ${createHash('sha1').update(out).digest('hex')}`];
  if (mode === 'tar') return tarEntries(out);
  if (mode === 'zip') return zipEntries(out, w);
  const text = out.toString('utf8');
  if (mode === 'json') {
    try {
      return [jsonShape(JSON.parse(text))];
    } catch {
      return ['not one JSON document', ...text.split('\n').map((l) => shapeLine(l, w)).filter(Boolean)];
    }
  }
  if (mode === 'jsonl') {
    const shapes = new Set<string>();
    for (const l of text.split('\n')) {
      if (!l.trim()) continue;
      try {
        const v = JSON.parse(l) as { message_type?: string };
        if (v.message_type === 'status') continue;
        shapes.add(jsonShape(v));
      } catch {
        shapes.add(`not JSON: ${shapeLine(l, w)}`);
      }
    }
    return [...shapes].sort();
  }
  let lines = text.split('\n');
  if (ex.grep) lines = lines.filter((l) => l.includes(ex.grep!));
  const shaped = lines.map((l) => shapeLine(l, w)).filter(Boolean);
  if (ex.unordered === 'groups') return sortGroups(shaped);
  return ex.unordered ? shaped.sort() : shaped;
}

/**
 * forget's and `snapshots --group-by`'s groups in a fixed order, each kept whole. With group
 * headers ("snapshots for (…)", restic's -v), a group runs from its header to the next one; without
 * them, each table ("keep N snapshots:" or "remove N snapshots:" to its "N snapshots" footer; a
 * table with no line above it, as restic prints a group of an empty key) is a unit, since a group's keep table followed by its remove table
 * cannot be told from two groups. Lines before the first group stay first, lines after a footer
 * that start no table go after the groups, each in its order. (Shaped lines: numbers are N.)
 */
export function sortGroups(lines: readonly string[]): string[] {
  const headers = lines.some((l) => l.startsWith('snapshots for ('));
  const head: string[] = [];
  const tail: string[] = [];
  const groups: string[][] = [];
  let open: string[] | undefined;
  let afterFooter = false;
  for (const l of lines) {
    const header = l.startsWith('snapshots for (');
    const keepRemove = /^(keep|remove) N snapshots:$/.test(l);
    // A table with no line above it (`snapshots --group-by`'s group of an empty key).
    const bare = /^ID /.test(l) && (!open || afterFooter);
    const table = keepRemove || bare;
    if (header || bare || (keepRemove && !(headers && open))) {
      open = [];
      groups.push(open);
    } else if (afterFooter && !table) open = undefined;
    afterFooter = false;
    if (!open) {
      (groups.length ? tail : head).push(l);
      continue;
    }
    open.push(l);
    if (/^N snapshots$/.test(l)) {
      afterFooter = true;
      if (!headers) open = undefined;
    }
  }
  return [...head, ...groups.map((g) => g.join('\n')).sort(), ...tail];
}

// ---------------------------------------------------------------------------------------------
// Running.

interface Spawned {
  code: number;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

function spawnTool(argv: string[], cwd: string, env: Record<string, string>, input: Buffer | undefined): Promise<Spawned> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 + 9 : 1), stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), ms: performance.now() - started });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

const REPOS = ['srv/restic-repo', 'srv/restic-repo-copy', 'srv/new-repo'];

async function runOnce(ex: DocExample, tool: ToolName, l: Layout, info: FixtureInfo, cli: string): Promise<RunRecord> {
  const w = l.w;
  rmSync(w, { recursive: true, force: true });
  const cp = spawnSync('cp', ['-a', l.fixture, w]);
  if (cp.status !== 0) throw new Error(`cp -a ${l.fixture} ${w} failed: ${cp.stderr.toString()}`);
  for (const step of ex.setup ?? []) runSetup(step, w, info);
  const ids: Record<string, string> = { ...info.ids, blob: info.blob };
  const needsLatest = (ex.args ?? '').includes('@latest') || (ex.args === undefined && Object.entries(DOC_IDS).some(([k, v]) => v === '@latest' && ex.doc.includes(k)));
  const latest = needsLatest ? restic(w, ['snapshots', '--json', '--no-cache', 'latest']) : undefined;
  if (latest?.code === 0) ids.latest = (JSON.parse(latest.stdout) as SnapshotJson[])[0]?.short_id ?? 'none';
  const args = runnable(ex, w, ids);
  const env: Record<string, string> = { ...baseEnv(w) };
  for (const [k, v] of Object.entries(ex.env ?? {})) {
    if (v === '') delete env[k];
    else env[k] = v.replace(MOVED, (_m, pre: string, dir: string) => `${pre}${w}${dir}`);
  }
  const input = ex.stdin === undefined ? undefined : ex.stdin.startsWith('file:') ? readFileSync(join(w, ex.stdin.slice(5))) : Buffer.from(ex.stdin);
  const before = Object.fromEntries(REPOS.map((r) => [r, listing(join(w, r))]));
  const argv = tool === 'restic' ? [RESTIC, ...args] : [process.execPath, cli, ...args];
  const res = await spawnTool(argv, join(w, ex.cwd ?? 'home/user'), env, input);
  const effect: Record<string, unknown> = {};
  for (const r of REPOS) effect[r] = repoEffect(w, r, before[r], info.ids, env);
  effect.tmp = treeState(join(w, 'tmp'));
  effect.home = treeState(join(w, 'home'));
  return {
    argv: [tool === 'restic' ? 'restic' : 'stowage', ...args],
    code: res.code,
    stdout: res.stdout.toString('utf8').slice(0, 20_000),
    stderr: res.stderr.slice(0, 5_000),
    shape: stdoutShape(ex, res.stdout, w),
    effect,
    ms: Math.round(res.ms),
  };
}

const LACKING = /unknown (flag|command|shorthand flag)|not supported|unsupported|is not implemented/i;

function effectKey(e: Record<string, unknown>): string {
  const copy: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const { contents: _c, ...rest } = v as Record<string, unknown>;
      copy[k] = rest;
    } else copy[k] = v;
  }
  return JSON.stringify(copy);
}

function firstDifference(a: string[], b: string[]): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `line ${i + 1}: restic "${a[i] ?? '(none)'}" / stowage "${b[i] ?? '(none)'}"`;
  }
  return '';
}

function effectDifference(a: unknown, b: unknown, where = ''): string {
  if (JSON.stringify(a) === JSON.stringify(b)) return '';
  if (Array.isArray(a) && Array.isArray(b)) {
    const sa = new Set(a.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))));
    const sb = new Set(b.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))));
    const onlyA = [...sa].filter((v) => !sb.has(v)).slice(0, 3);
    const onlyB = [...sb].filter((v) => !sa.has(v)).slice(0, 3);
    return `${where}: restic only [${onlyA.join('; ')}], stowage only [${onlyB.join('; ')}]`;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (k === 'contents') continue;
      const d = effectDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], where ? `${where}.${k}` : k);
      if (d) return d;
    }
    return '';
  }
  return `${where}: restic ${JSON.stringify(a)?.slice(0, 200)} / stowage ${JSON.stringify(b)?.slice(0, 200)}`;
}

export function judge(restic: RunRecord, stowage: RunRecord): { verdict: Verdict; why: string } {
  if (LACKING.test(stowage.stderr) && stowage.code !== 0 && (restic.code === 0 || !LACKING.test(restic.stderr))) {
    return { verdict: 'lacking', why: stowage.stderr.trim().split('\n')[0].slice(0, 160) };
  }
  if (restic.code !== stowage.code) return { verdict: 'different effect', why: `exit ${restic.code} / ${stowage.code}: ${stowage.stderr.trim().split('\n')[0]?.slice(0, 160) ?? ''}` };
  if (effectKey(restic.effect) !== effectKey(stowage.effect)) return { verdict: 'different effect', why: effectDifference(restic.effect, stowage.effect) };
  if (JSON.stringify(restic.shape) !== JSON.stringify(stowage.shape)) return { verdict: 'output differs', why: firstDifference(restic.shape, stowage.shape) };
  return { verdict: 'same', why: '' };
}

/** The examples docs/compatibility.md lists with a reason (its "restic's documentation examples" table). */
export function documentedDifferences(): Map<string, { category: string; reason: string }> {
  const text = readFileSync(join(repoRoot, 'docs/compatibility.md'), 'utf8');
  const start = text.indexOf("## restic's documentation examples");
  const out = new Map<string, { category: string; reason: string }>();
  if (start < 0) return out;
  const section = text.slice(start).split('\n## ')[0];
  for (const line of section.split('\n')) {
    const m = /^\| ((?:`[^`]+`,? ?)+) \| ([^|]+) \| (.+) \|$/.exec(line);
    if (!m) continue;
    for (const id of m[1].matchAll(/`([^`]+)`/g)) out.set(id[1], { category: m[2].trim(), reason: m[3].trim() });
  }
  return out;
}

export interface RunOptions {
  only?: (ex: DocExample) => boolean;
  cli?: string;
  base?: string;
  log?: (line: string) => void;
}

export async function runExamples(opts: RunOptions = {}): Promise<ExampleResult[]> {
  const l = layout(opts.base);
  const info = await ensureFixture(l);
  const cli = resolve(opts.cli ?? join(repoRoot, 'dist/cli/main.js'));
  const documented = documentedDifferences();
  const results: ExampleResult[] = [];
  for (const ex of EXAMPLES) {
    if (ex.skip || (opts.only && !opts.only(ex))) continue;
    const r = await runOnce(ex, 'restic', l, info, cli);
    const s = await runOnce(ex, 'stowage', l, info, cli);
    const { verdict, why } = judge(r, s);
    const result: ExampleResult = { id: ex.id, chapter: ex.chapter, kind: ex.kind ?? 'example', doc: ex.doc, verdict, why, restic: r, stowage: s };
    if (verdict !== 'same' && documented.has(ex.id)) result.documented = documented.get(ex.id);
    results.push(result);
    opts.log?.(`${ex.id.padEnd(34)} ${String(r.ms).padStart(5)} ${String(s.ms).padStart(5)} ${verdict.padEnd(16)} ${result.documented ? `[${result.documented.category}] ` : ''}${why.slice(0, 150)}`);
  }
  rmSync(l.w, { recursive: true, force: true });
  return results;
}

export interface Tally {
  total: number;
  same: number;
  lacking: number;
  outputDiffers: number;
  differentEffect: number;
  /** Different effects docs/compatibility.md does not list with a reason. */
  undocumentedEffects: string[];
  sameShare: number;
}

export function tally(results: ExampleResult[]): Tally {
  const n = (v: Verdict): number => results.filter((r) => r.verdict === v).length;
  return {
    total: results.length,
    same: n('same'),
    lacking: n('lacking'),
    outputDiffers: n('output differs'),
    differentEffect: n('different effect'),
    undocumentedEffects: results.filter((r) => r.verdict === 'different effect' && !r.documented).map((r) => r.id),
    sameShare: results.length === 0 ? 0 : n('same') / results.length,
  };
}

export function markdown(results: ExampleResult[]): string {
  const rows = results.map((r) => `| \`${r.id}\` | ${r.kind} | \`${r.doc.replace(/\|/g, '\\|')}\` | ${r.verdict} | ${(r.documented ? `${r.documented.category}: ` : '') + r.why.replace(/\|/g, '\\|')} |`);
  const t = tally(results);
  const skipped = EXAMPLES.filter((e) => e.skip).map((e) => `\`${e.id}\` (${e.skip})`);
  return [
    '| example | kind | command | verdict | difference |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    `**${t.same} of ${t.total} the same (${(t.sameShare * 100).toFixed(1)}%)**; lacking ${t.lacking}, output differs ${t.outputDiffers}, different effect ${t.differentEffect} (not documented: ${t.undocumentedEffects.length ? t.undocumentedEffects.join(', ') : 'none'}).`,
    skipped.length ? `Not run: ${skipped.join('; ')}.` : '',
  ].join('\n');
}

/**
 * Judges stored results again (`--rejudge FILE`): text and JSON shapes recomputed from the stored
 * stdout with today's normalisation, effects as stored, docs/compatibility.md as it is now.
 */
export function rejudge(file: string): ExampleResult[] {
  const stored = JSON.parse(readFileSync(file, 'utf8')) as { base?: string; results: ExampleResult[] };
  const documented = documentedDifferences();
  const byId = new Map(EXAMPLES.map((e) => [e.id, e]));
  return stored.results.map((r) => {
    const ex = byId.get(r.id);
    const w = layout(stored.base).w;
    if (ex && ['text', 'json', 'jsonl', undefined].includes(ex.stdout)) {
      r.restic.shape = stdoutShape(ex, Buffer.from(r.restic.stdout), w);
      r.stowage.shape = stdoutShape(ex, Buffer.from(r.stowage.stdout), w);
    }
    const { verdict, why } = judge(r.restic, r.stowage);
    const out: ExampleResult = { ...r, verdict, why, documented: undefined };
    if (verdict !== 'same' && documented.has(r.id)) out.documented = documented.get(r.id);
    return out;
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      chapter: { type: 'string' },
      cli: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      out: { type: 'string' },
      rejudge: { type: 'string' },
    },
  });
  if (values.rejudge) {
    process.stdout.write(`${markdown(rejudge(values.rejudge))}\n`);
    process.exit(0);
  }
  const only = values.only?.split(',');
  const results = await runExamples({
    only: (ex) => (!only || only.includes(ex.id)) && (!values.chapter || ex.chapter.startsWith(values.chapter)),
    cli: values.cli,
    base: process.env.STOWAGE_DOCS_DIR,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  mkdirSync(join(repoRoot, 'bench/results'), { recursive: true });
  writeFileSync(values.out ?? join(repoRoot, 'bench/results/restic-docs.json'), JSON.stringify({ restic: RESTIC, base: layout(process.env.STOWAGE_DOCS_DIR).base, when: new Date().toISOString(), tally: tally(results), results }, null, 2));
  process.stdout.write(`${markdown(results)}\n`);
  if (values.verbose) {
    for (const r of results.filter((x) => x.verdict !== 'same')) {
      process.stdout.write(`\n### ${r.id}\n${r.restic.argv.join(' ')}\nrestic ${r.restic.code}:\n${r.restic.stdout}${r.restic.stderr}\nstowage ${r.stowage.code}:\n${r.stowage.stdout}${r.stowage.stderr}\n`);
    }
  }
}
