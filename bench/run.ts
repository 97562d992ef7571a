// `npm run bench`: Stowage's CLI against restic on the same corpora in the same run.
//
//   npm run bench                       full corpora (1 GiB big, 20 000 small files), 2 runs
//   npm run bench -- --quick            small corpora, 1 run, a minute or two
//   npm run bench -- --runs 3 --no-big-auto --no-restic014 --keep
//   npm run bench -- --remote           S3 and rest-server behind a slow proxy (bench/remote.ts)
//   npm run bench -- --huge --many      also 10 GiB and 200 000 files (issue 17: memory flat in the job's size)
//
// Every step runs once per tool before the next step starts, and the order of the tools rotates
// from run to run, so load from elsewhere on the machine falls on both alike. Each tool pays its
// own key derivation (its own scrypt parameters) on every command; that is part of the figures.
// Two more figures: prune (both tools on copies of one restic-made repository, after forgetting
// the same half of its snapshots) and Stowage's master index memory and load time
// (bench/index-memory.ts, against fixed targets).
// The table goes to stdout as markdown; progress goes to stderr; everything, raw samples
// included, goes to bench/results/latest.json (latest-quick.json with --quick).
import { spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, copyFileSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureCorpus, FULL_BIG, FULL_SMALL, HUGE_BIG, MANY_SMALL, QUICK_BIG, QUICK_SMALL, type Corpus } from './corpus.ts';
import { ensureGnuTime, measure } from './lib/measure.ts';
import { makeMemoryCgroup, type MemoryCgroup } from './lib/cgroup.ts';
import { buildFigures, flatnessTable, indexRows, markdownTable, type IndexMemoryResult, type Sample, type StepName, type ToolId } from './lib/report.ts';
import { ensurePruneRepo, FULL_PRUNE, QUICK_PRUNE, repoSize, type PruneRepo } from './prune-repo.ts';

const MiB = 1024 * 1024;
const benchDir = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const RESTIC_019 = '/var/cache/stowage/bin/restic';
const RESTIC_014 = '/usr/bin/restic';
// Built by bench/tools/kopia.sh (not by CI).
const KOPIA = '/var/cache/stowage/bin/kopia';
const PASSWORD = 'stowage-bench';
// restic's default, spelled out: both tools must make the same plan.
const PRUNE_ARGS = ['prune', '--max-unused', '5%'];

// `--remote`: the remote bench (bench/remote.ts), with its own flags; nothing below runs.
if (process.argv.slice(2).includes('--remote')) {
  const { runRemote } = await import('./remote.ts');
  await runRemote(process.argv.slice(2).filter((a) => a !== '--remote'));
  process.exit();
}

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    'big-auto': { type: 'boolean', default: true },
    restic014: { type: 'boolean', default: true },
    cgroup: { type: 'boolean', default: true },
    kopia: { type: 'boolean' },
    keep: { type: 'boolean', default: false },
    cli: { type: 'string' },
    huge: { type: 'boolean', default: false },
    many: { type: 'boolean', default: false },
    only: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  allowNegative: true,
});

if (opts.help) {
  process.stdout.write(
    'Usage: npm run bench -- [--quick] [--runs N] [--no-big-auto] [--no-restic014] [--no-cgroup] [--[no-]kopia] [--keep] [--cli PATH] [--huge] [--many] [--only LIST]\n' +
      '  --quick          2 × 64 MiB big corpus, 2 000 small files, 1 run\n' +
      '  --runs N         repeat every measurement N times and report the median (default 2, quick 1)\n' +
      '  --no-big-auto    skip the first backup of the big corpus with compression auto\n' +
      '  --no-restic014   skip the restic 0.14 column (measured in run 1 only, when /usr/bin/restic exists)\n' +
      '  --no-cgroup      skip the first backups in a 256 MiB memory cgroup\n' +
      `  --kopia          also run kopia 0.21.1 (${KOPIA}, bench/tools/kopia.sh builds it): first backup and restore, big and small\n` +
      '  --no-kopia       skip kopia (the default when its binary is missing)\n' +
      '  --keep           keep the repositories under $STOWAGE_BENCH_DIR/work after the run\n' +
      '  --cli PATH       measure another build: PATH is its dist/cli/main.js (default: this checkout\'s)\n' +
      '  --huge           also 10 GiB (80 × 128 MiB, compression off): first backup and restore, one tool at a time\n' +
      '  --many           also 200 000 files of 1–8 KiB in 2 000 folders (compression auto): backup, re-backup, restore\n' +
      '  --only LIST      run only these comma-separated scenarios (big-off, small-auto, big-auto, huge-off, many-auto,\n' +
      '                   big-off-256m, small-auto-256m) and, when named, prune and index\n' +
      '  --remote         the remote bench instead (MinIO and rest-server behind a proxy); --remote --help for its flags\n',
  );
  process.exit(0);
}

const quick = opts.quick;
// The build under test: <package root>/dist/cli/main.js.
const stowageCli = resolve(opts.cli ?? join(repoRoot, 'dist', 'cli', 'main.js'));
const stowageDist = dirname(dirname(stowageCli));
const stowageRoot = dirname(stowageDist);
const runs = opts.runs !== undefined ? Number(opts.runs) : quick ? 1 : 2;
// --only: the scenarios (and prune, index) to run; without it, everything the other flags leave in.
const only = opts.only === undefined ? undefined : new Set(opts.only.split(',').map((x) => x.trim()).filter((x) => x));
const selected = (id: string): boolean => only === undefined || only.has(id);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs takes a whole number ≥ 1, got ${JSON.stringify(opts.runs)}`);
const withRestic014 = opts.restic014 && existsSync(RESTIC_014);
// kopia: on by default when its binary is there; --kopia without it is an error, not a silent skip.
if (opts.kopia === true && !existsSync(KOPIA)) throw new Error(`--kopia: ${KOPIA} is missing; build it with bench/tools/kopia.sh`);
const withKopia = opts.kopia ?? existsSync(KOPIA);
// What kopia runs: the first backups and restores of the two main scenarios (issue 17 item 5).
const KOPIA_SCENARIOS = new Set(['big-off', 'small-auto']);
const KOPIA_STEPS = new Set<StepName>(['init', 'backup', 'restore']);
// kopia's default password-based key derivation (kopia repository create --help).
const KOPIA_KDF = 'scrypt-65536-8-1 (kopia default)';
const root = process.env.STOWAGE_BENCH_DIR || '/tmp/stowage-bench';
const work = join(root, quick ? 'work-quick' : 'work');
const logs = join(work, 'logs');
// The copy of the build under test (see snapshotCli).
const snapshotDir = join(work, 'stowage');
const log = (s: string) => process.stderr.write(`${s}\n`);

interface Tool {
  id: ToolId;
  label: string;
  command: string;
  prefix: string[];
  version: string;
}

interface Scenario {
  id: string;
  corpus: Corpus;
  compression: 'off' | 'auto';
  steps: StepName[];
  /** The backup runs in a memory cgroup of this many MiB made by the bench (bench/lib/cgroup.ts). */
  memoryMiB?: number;
  /**
   * Every step of one tool, then its repository removed, before the next tool starts: a 10 GiB
   * corpus, two 10 GiB repositories and a 10 GiB restore target would not fit the disk at once.
   */
  oneToolAtATime?: boolean;
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').split('\n')[0]!.trim();
}

function stowageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(stowageRoot, 'package.json'), 'utf8')) as { version: string };
  const git = existsSync(join(stowageRoot, '.git'));
  const commit = git ? firstLine('git', ['-C', stowageRoot, 'rev-parse', '--short', 'HEAD']) : '';
  const dirty = git ? spawnSync('git', ['-C', stowageRoot, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout?.trim() : '';
  const built = statSync(stowageCli).mtime.toISOString().slice(0, 19).replace('T', ' ');
  return `stowage ${pkg.version} (${commit || stowageRoot}${dirty ? ', uncommitted changes' : ''}; dist built ${built} UTC) on node ${process.versions.node}`;
}

/**
 * Copies the built CLI out of the checkout, so that a rebuild by someone else during a long run
 * does not change what is measured. Packages still resolve through a node_modules link.
 */
function snapshotCli(): string {
  if (!existsSync(stowageCli)) throw new Error(`${stowageCli} is missing; run "npm run build" first (npm run bench does)`);
  const dir = snapshotDir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(stowageDist, join(dir, 'dist'), { recursive: true });
  copyFileSync(join(stowageRoot, 'package.json'), join(dir, 'package.json'));
  const modules = existsSync(join(stowageRoot, 'node_modules')) ? join(stowageRoot, 'node_modules') : join(repoRoot, 'node_modules');
  symlinkSync(modules, join(dir, 'node_modules'));
  return join(dir, relative(stowageRoot, stowageCli));
}

function tools(): Tool[] {
  if (!existsSync(RESTIC_019)) throw new Error(`restic 0.19.1 is expected at ${RESTIC_019}`);
  const list: Tool[] = [
    { id: 'stowage', label: 'Stowage', command: process.execPath, prefix: [snapshotCli()], version: stowageVersion() },
    { id: 'restic', label: 'restic 0.19.1', command: RESTIC_019, prefix: [], version: firstLine(RESTIC_019, ['version']) },
  ];
  if (withRestic014) list.push({ id: 'restic014', label: 'restic 0.14', command: RESTIC_014, prefix: [], version: firstLine(RESTIC_014, ['version']) });
  if (withKopia) list.push({ id: 'kopia', label: 'kopia 0.21.1', command: KOPIA, prefix: [], version: `kopia ${firstLine(KOPIA, ['--version']).split(' ')[0]} (built from the Go module proxy by bench/tools/kopia.sh)` });
  return list;
}

/** Whether a tool runs this step of this scenario (kopia runs only some; everyone else all). */
function toolRunsStep(tool: Tool, s: Scenario, step: StepName): boolean {
  return tool.id !== 'kopia' || (KOPIA_SCENARIOS.has(s.id) && KOPIA_STEPS.has(step));
}

/**
 * kopia's environment: the password, and its config file, cache and logs inside the bench's
 * per-repository cache folder, so nothing lands in $HOME and a fresh repository starts cold.
 */
function kopiaEnv(cache: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KOPIA_') && !k.startsWith('RESTIC_') && k !== 'NODE_OPTIONS') env[k] = v;
  return {
    ...env,
    KOPIA_PASSWORD: PASSWORD,
    KOPIA_CONFIG_PATH: join(cache, 'repository.config'),
    KOPIA_CACHE_DIRECTORY: join(cache, 'cache'),
    KOPIA_LOG_DIR: join(cache, 'logs'),
    KOPIA_CHECK_FOR_UPDATES: 'false',
  };
}

/** An untimed kopia command; returns stdout, or throws with its last lines. */
function kopiaUntimed(cache: string, args: string[], logFile: string): string {
  const r = spawnSync(KOPIA, args, { env: kopiaEnv(cache), encoding: 'utf8', maxBuffer: 64 * MiB });
  appendFileSync(logFile, `$ kopia ${args.join(' ')} (untimed)\n${r.stdout}${r.stderr}`);
  if (r.status !== 0) throw new Error(`kopia ${args.slice(0, 2).join(' ')} exited with ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' / ')}`);
  return r.stdout;
}

/** The newest snapshot of path in kopia's repository: its ID and the file count it recorded. */
function kopiaLatest(cache: string, path: string, logFile: string): { id: string; files: number } {
  const list = JSON.parse(kopiaUntimed(cache, ['snapshot', 'list', path, '--json'], logFile)) as { id: string; startTime: string; stats?: { fileCount?: number } }[];
  const last = list.sort((a, b) => a.startTime.localeCompare(b.startTime)).at(-1);
  if (!last) throw new Error(`kopia lists no snapshot of ${path}`);
  return { id: last.id, files: last.stats?.fileCount ?? -1 };
}

/**
 * kopia's command for a step. Its repository is kopia's own format (filesystem storage), so the
 * steps map: init → repository create filesystem (plus, untimed afterwards, the compression
 * policy), backup → snapshot create, restore → snapshot restore of the newest snapshot's ID
 * (looked up untimed before).
 */
function kopiaArgs(step: StepName, s: Scenario, repo: string, cache: string, target: string, logFile: string): string[] {
  switch (step) {
    case 'init':
      return ['repository', 'create', 'filesystem', '--path', repo, '--cache-directory', join(cache, 'cache'), '--no-check-for-updates'];
    case 'backup':
      return ['snapshot', 'create', s.corpus.path, '--no-progress'];
    case 'restore':
      return ['snapshot', 'restore', kopiaLatest(cache, s.corpus.path, logFile).id, target];
    default:
      throw new Error(`kopia does not run ${step} in this bench`);
  }
}

/** The environment every child gets: no inherited RESTIC_* settings, a per-repository cache. */
function childEnv(repo: string, cache: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RESTIC_') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: cache };
}

function argsFor(step: StepName, s: Scenario, restoreTarget: string): string[] {
  switch (step) {
    case 'init':
      return ['init'];
    case 'backup':
    case 'rebackup':
      return ['backup', s.corpus.path, '--compression', s.compression];
    case 'restore':
      return ['restore', 'latest', '--target', restoreTarget];
    case 'check':
      return ['check', '--read-data'];
    case 'snapshots':
      return ['snapshots'];
    case 'prune':
      return PRUNE_ARGS;
  }
}

/** Regular files and their bytes under dir. */
function treeSize(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) {
      files++;
      bytes += statSync(join(e.parentPath, e.name)).size;
    }
  }
  return { files, bytes };
}

/** Reads every corpus file once so that the first tool measured does not pay for a cold cache. */
function warmPageCache(c: Corpus): void {
  const buf = Buffer.allocUnsafe(8 * MiB);
  for (const e of readdirSync(c.path, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const fd = openSync(join(e.parentPath, e.name), 'r');
    try {
      while (readSync(fd, buf, 0, buf.length, null) > 0);
    } finally {
      closeSync(fd);
    }
  }
}

/** restic and Stowage both print "Files: N new, N changed, N unmodified" after a backup. */
function backupCounts(logText: string): { added: number; changed: number; unmodified: number } | undefined {
  const m = /Files:\s+(\d+) new,\s+(\d+) changed,\s+(\d+) unmodified/.exec(logText);
  return m ? { added: Number(m[1]), changed: Number(m[2]), unmodified: Number(m[3]) } : undefined;
}

/** The scrypt parameters of the repository's (single) key, as the tool that created it chose them. */
function kdfParams(repo: string): string {
  try {
    const [name] = readdirSync(join(repo, 'keys'));
    const k = JSON.parse(readFileSync(join(repo, 'keys', name!), 'utf8')) as { N: number; r: number; p: number };
    return `scrypt N=${k.N} r=${k.r} p=${k.p}`;
  } catch {
    return 'unknown';
  }
}

function sync(): void {
  // Write back what the last command left dirty, so the next one does not pay for it.
  spawnSync('sync');
}

async function runStep(run: number, step: StepName, s: Scenario, tool: Tool, samples: Sample[]): Promise<Sample> {
  const repo = join(work, `repo-${s.id}-${tool.id}`);
  const cache = join(work, `cache-${s.id}-${tool.id}`);
  const target = join(work, `restore-${tool.id}`);
  const logFile = join(logs, `run${run}-${s.id}-${step}-${tool.id}.log`);
  rmSync(logFile, { force: true });
  if (step === 'init') {
    rmSync(repo, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
  }
  if (step === 'restore') rmSync(target, { recursive: true, force: true });
  sync();

  const sample: Sample = { run, scenario: s.id, step, tool: tool.id, bytes: s.corpus.bytes, logFile };
  // Without a repository or a first snapshot, the later steps have nothing to work on.
  const earlier = samples.find((x) => x.run === run && x.scenario === s.id && x.tool === tool.id && x.error && (x.step === 'init' || x.step === 'backup'));
  if (earlier) {
    sample.error = `skipped: ${earlier.step} failed`;
    return sample;
  }
  let cgroup: MemoryCgroup | undefined;
  const kopia = tool.id === 'kopia';
  try {
    if (kopia && step === 'init') mkdirSync(cache, { recursive: true });
    let cmd = { command: tool.command, args: [...tool.prefix, ...(kopia ? kopiaArgs(step, s, repo, cache, target, logFile) : argsFor(step, s, target))] };
    if (s.memoryMiB && step === 'backup') {
      const made = makeMemoryCgroup(`stowage-bench-${process.pid}`, s.memoryMiB * MiB);
      if (typeof made === 'string') throw new Error(made);
      cgroup = made;
      cmd = cgroup.wrap(cmd.command, cmd.args);
    }
    const usage = await measure(cmd.command, cmd.args, {
      env: kopia ? kopiaEnv(cache) : childEnv(repo, cache),
      logFile,
      timeFile: join(work, 'time.out'),
      cwd: work,
    });
    if (cgroup) {
      const u = cgroup.usage();
      sample.cgroup = { limitMiB: s.memoryMiB!, peakMiB: u.peakBytes === undefined ? undefined : u.peakBytes / MiB, limitHits: u.limitHits };
    }
    sample.usage = usage;
    sample.mibPerSecond = s.corpus.bytes / MiB / usage.wallSeconds;
    const out = readFileSync(logFile, 'utf8');
    if (usage.exitCode !== 0) sample.error = `exit ${usage.exitCode}: ${out.trim().split('\n').slice(-3).join(' / ')}`;
    else if (kopia && step === 'init' && s.compression === 'auto') {
      // restic's "auto" is zstd at its fastest level; kopia compresses nothing unless a policy says so.
      kopiaUntimed(cache, ['policy', 'set', '--global', '--compression', 'zstd-fastest'], logFile);
    } else if (kopia && step === 'backup') {
      // kopia prints no "Files: … new" line; the snapshot's manifest records what it saw (untimed).
      const files = kopiaLatest(cache, s.corpus.path, logFile).files;
      if (files !== s.corpus.files) sample.error = `kopia's snapshot records ${files} files, expected ${s.corpus.files}`;
    } else if (step === 'backup' || step === 'rebackup') {
      const c = backupCounts(out);
      if (!c) sample.warning = 'no "Files: … new, … changed" line in the output';
      else if (step === 'backup' && c.added !== s.corpus.files) sample.error = `backed up ${c.added} new files, expected ${s.corpus.files}`;
      else if (step === 'rebackup' && c.added + c.changed > 0) sample.warning = `re-backup saw ${c.added} new and ${c.changed} changed files`;
    } else if (step === 'restore') {
      const got = treeSize(target);
      if (got.files !== s.corpus.files || got.bytes !== s.corpus.bytes) {
        sample.error = `restored ${got.files} files / ${got.bytes} bytes, expected ${s.corpus.files} / ${s.corpus.bytes}`;
      }
    }
  } catch (e) {
    sample.error = (e as Error).message;
  } finally {
    if (step === 'restore') rmSync(target, { recursive: true, force: true });
    cgroup?.remove();
  }
  logSample(sample);
  return sample;
}

/** The progress line of one command. */
function logSample(sample: Sample): void {
  const u = sample.usage;
  log(
    `  run ${sample.run} ${sample.scenario.padEnd(10)} ${sample.step.padEnd(9)} ${sample.tool.padEnd(9)} ` +
      (u ? `${u.wallSeconds.toFixed(2).padStart(7)} s ${sample.mibPerSecond!.toFixed(0).padStart(5)} MiB/s  cpu ${u.cpuSeconds.toFixed(2).padStart(6)} s  rss ${u.peakRssMiB.toFixed(0).padStart(4)} MiB` : '') +
      (sample.repoAfter ? `  left ${sample.repoAfter.packs} packs, ${(sample.repoAfter.bytes / MiB).toFixed(1)} MiB` : '') +
      (sample.error ? `  ERROR ${sample.error}` : '') +
      (sample.warning ? `  warning: ${sample.warning}` : ''),
  );
}

/**
 * A restic 0.19.1 command outside the timed window (forget before a prune, check and snapshots
 * after it), without a cache so it leaves nothing behind for the timed command. Its output goes
 * to the log file; returns stdout, or an error message on a non-zero exit.
 */
function untimed(repo: string, args: string[], logFile: string): { stdout: string; error?: string } {
  const r = spawnSync(RESTIC_019, ['--no-cache', ...args], { env: childEnv(repo, join(work, 'cache-unused')), encoding: 'utf8', maxBuffer: 64 * MiB });
  appendFileSync(logFile, `$ restic ${args.join(' ')}\n${r.stdout}${r.stderr}`);
  if (r.status === 0) return { stdout: r.stdout };
  return { stdout: r.stdout, error: `restic ${args[0]} exited with ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' / ')}` };
}

/**
 * The prune figure, once per tool: copy the prepared repository, forget its older half of the
 * snapshots with restic 0.19.1 (untimed), then time the tool's prune. Afterwards, untimed,
 * restic 0.19.1 checks every copy with --read-data (prune rewrites packs, so their contents must
 * be read back) and must list exactly the kept snapshots.
 */
async function runPrune(run: number, src: PruneRepo, order: readonly Tool[]): Promise<Sample[]> {
  const repoOf = (t: Tool) => join(work, `repo-prune-${t.id}`);
  const cacheOf = (t: Tool) => join(work, `cache-prune-${t.id}`);
  const samples = new Map<Tool, Sample>();
  for (const tool of order) {
    const sample: Sample = { run, scenario: 'prune', step: 'prune', tool: tool.id, bytes: src.bytes, logFile: join(logs, `run${run}-prune-${tool.id}.log`) };
    samples.set(tool, sample);
    rmSync(sample.logFile, { force: true });
    rmSync(repoOf(tool), { recursive: true, force: true });
    rmSync(cacheOf(tool), { recursive: true, force: true });
    const cp = spawnSync('cp', ['-a', src.repo, repoOf(tool)], { encoding: 'utf8' });
    if (cp.status !== 0) sample.error = `cp -a failed: ${cp.stderr.trim()}`;
    else sample.error = untimed(repoOf(tool), ['forget', ...src.forget], sample.logFile).error;
  }
  for (const tool of order) {
    const sample = samples.get(tool)!;
    if (sample.error) continue;
    sync();
    try {
      // A fresh, empty cache for restic, as on a machine that has not opened the repository yet.
      sample.usage = await measure(tool.command, [...tool.prefix, ...PRUNE_ARGS], {
        env: childEnv(repoOf(tool), cacheOf(tool)),
        logFile: sample.logFile,
        timeFile: join(work, 'time.out'),
        cwd: work,
      });
      sample.mibPerSecond = src.bytes / MiB / sample.usage.wallSeconds;
      if (sample.usage.exitCode !== 0) {
        const out = readFileSync(sample.logFile, 'utf8').trim().split('\n');
        sample.error = `exit ${sample.usage.exitCode}: ${out.slice(-3).join(' / ')}`;
      }
    } catch (e) {
      sample.error = (e as Error).message;
    }
  }
  for (const tool of order) {
    const sample = samples.get(tool)!;
    if (!sample.error) {
      const check = untimed(repoOf(tool), ['check', '--read-data'], sample.logFile);
      const list = untimed(repoOf(tool), ['snapshots', '--json'], sample.logFile);
      const left = list.error ? [] : (JSON.parse(list.stdout) as { id: string }[]).map((x) => x.id).sort();
      if (check.error) sample.error = `after prune: ${check.error}`;
      else if (list.error) sample.error = `after prune: ${list.error}`;
      else if (left.join() !== [...src.keep].sort().join()) sample.error = `after prune: ${left.length} snapshots left, expected the ${src.keep.length} kept ones`;
      sample.repoAfter = repoSize(repoOf(tool));
    }
    logSample(sample);
    if (!opts.keep) rmSync(repoOf(tool), { recursive: true, force: true });
    rmSync(cacheOf(tool), { recursive: true, force: true });
  }
  return [...samples.values()];
}

/** One run of bench/index-memory.ts on the copy of the build under test. */
interface IndexRun {
  run: number;
  result?: IndexMemoryResult;
  error?: string;
  logFile: string;
}

function runIndexMemory(run: number): IndexRun {
  const logFile = join(logs, `run${run}-index-memory.log`);
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // Always 5M entries, the issue's figure: it takes about 15 s, quick mode included.
  const r = spawnSync(process.execPath, ['--expose-gc', join(benchDir, 'index-memory.ts'), '--json', '--dist', join(snapshotDir, 'dist')], { env, encoding: 'utf8' });
  writeFileSync(logFile, r.stdout + r.stderr);
  const out: IndexRun = { run, logFile };
  if (r.status !== 0) out.error = `exit ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' / ')}`;
  else out.result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as IndexMemoryResult;
  const x = out.result;
  log(`  run ${run} index memory, ${x ? `${x.entries} entries: ${x.indexBytesPerBlob.toFixed(1)} B per blob, load ${x.load.wallSeconds.toFixed(2)} s (cpu ${x.load.cpuSeconds.toFixed(2)} s)` : `ERROR ${out.error}`}`);
  return out;
}

async function main(): Promise<void> {
  ensureGnuTime(log);
  mkdirSync(logs, { recursive: true });
  const toolList = tools();
  for (const t of toolList) log(`${t.label}: ${t.version}`);

  const corpusRoot = join(root, 'corpus');
  const big = ensureCorpus(corpusRoot, quick ? QUICK_BIG : FULL_BIG, log);
  const small = ensureCorpus(corpusRoot, quick ? QUICK_SMALL : FULL_SMALL, log);
  // Issue 17's size rows: generated only when asked for (10 GiB and 200 000 files take minutes).
  const huge = opts.huge ? ensureCorpus(corpusRoot, HUGE_BIG, log) : undefined;
  const many = opts.many ? ensureCorpus(corpusRoot, MANY_SMALL, log) : undefined;
  // Built once by restic 0.19.1 and cached like the corpora; every run prunes fresh copies of it.
  const pruneSource = selected('prune') ? ensurePruneRepo(join(root, 'prune'), quick ? QUICK_PRUNE : FULL_PRUNE, RESTIC_019, PASSWORD, log) : undefined;
  log('warming the page cache …');
  warmPageCache(big);
  warmPageCache(small);
  if (huge) warmPageCache(huge);
  if (many) warmPageCache(many);

  let scenarios: Scenario[] = [
    { id: 'big-off', corpus: big, compression: 'off', steps: ['init', 'backup', 'rebackup', 'restore', 'check', 'snapshots'] },
    { id: 'small-auto', corpus: small, compression: 'auto', steps: ['init', 'backup', 'rebackup', 'restore'] },
  ];
  if (huge) scenarios.push({ id: 'huge-off', corpus: huge, compression: 'off', steps: ['init', 'backup', 'restore'], oneToolAtATime: true });
  if (many) scenarios.push({ id: 'many-auto', corpus: many, compression: 'auto', steps: ['init', 'backup', 'rebackup', 'restore'] });
  if (opts['big-auto']) scenarios.push({ id: 'big-auto', corpus: big, compression: 'auto', steps: ['init', 'backup'] });
  // The first backups again, in a 256 MiB memory cgroup the bench makes (skipped, with the reason, where it cannot).
  if (opts.cgroup) {
    const probe = makeMemoryCgroup(`stowage-bench-probe-${process.pid}`, 256 * MiB);
    if (typeof probe === 'string') log(`no 256 MiB cgroup rows: ${probe}`);
    else {
      probe.remove();
      scenarios.push({ id: 'big-off-256m', corpus: big, compression: 'off', steps: ['init', 'backup'], memoryMiB: 256 });
      scenarios.push({ id: 'small-auto-256m', corpus: small, compression: 'auto', steps: ['init', 'backup'], memoryMiB: 256 });
    }
  }
  scenarios = scenarios.filter((s) => selected(s.id));

  // The floor under every Stowage RSS figure: a bare Node process, and the CLI with its modules loaded.
  const baseline = {
    nodeRssMiB: (await measure(process.execPath, ['-e', ''], { env: process.env, logFile: join(logs, 'baseline.log'), timeFile: join(work, 'time.out') })).peakRssMiB,
    stowageHelpRssMiB: (await measure(process.execPath, [...toolList[0]!.prefix, '--help'], { env: process.env, logFile: join(logs, 'baseline.log'), timeFile: join(work, 'time.out') })).peakRssMiB,
  };

  const startedAt = new Date();
  const loadBefore = loadavg();
  const samples: Sample[] = [];
  const indexRuns: IndexRun[] = [];
  const kdf: Partial<Record<ToolId, string>> = {};
  for (let run = 1; run <= runs; run++) {
    // Rotate who goes first, so neither tool always runs right after the other's writes.
    // restic 0.14 is a reference only; one run of it is enough and keeps the bench short.
    const inRun = toolList.filter((t) => t.id !== 'restic014' || run === 1);
    const order = inRun.map((_, i) => inRun[(i + run - 1) % inRun.length]!);
    for (const s of scenarios) {
      // Usually every tool runs a step before the next step; a huge scenario runs one tool at a time.
      for (const group of s.oneToolAtATime ? order.map((t) => [t]) : [order]) {
        for (const step of s.steps) {
          for (const tool of group) {
            if (!toolRunsStep(tool, s, step)) continue;
            samples.push(await runStep(run, step, s, tool, samples));
            if (step === 'init') kdf[tool.id] ??= tool.id === 'kopia' ? KOPIA_KDF : kdfParams(join(work, `repo-${s.id}-${tool.id}`));
          }
        }
        if (!opts.keep) for (const tool of group) rmSync(join(work, `repo-${s.id}-${tool.id}`), { recursive: true, force: true });
        if (!opts.keep) for (const tool of group) rmSync(join(work, `cache-${s.id}-${tool.id}`), { recursive: true, force: true });
      }
    }
    if (pruneSource) samples.push(...(await runPrune(run, pruneSource, order.filter((t) => t.id !== 'kopia'))));
    if (selected('index')) indexRuns.push(runIndexMemory(run));
  }
  const finishedAt = new Date();

  const figures = buildFigures(samples, toolList.map((t) => t.id));
  const index = indexRows(indexRuns.map((r) => r.result));
  const failures = samples.filter((s) => s.error);
  const indexFailures = indexRuns.filter((r) => r.error);
  const warnings = samples.filter((s) => s.warning);
  const cpu = cpus();
  const machine = {
    host: hostname(),
    cpu: `${cpu.length} × ${cpu[0]?.model ?? 'unknown'}`,
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    loadAverageBefore: loadBefore.map((v) => Number(v.toFixed(2))),
    loadAverageAfter: loadavg().map((v) => Number(v.toFixed(2))),
  };

  const md: string[] = [];
  md.push(`## Stowage vs restic${withKopia ? ' and kopia' : ''}${quick ? ' (quick)' : ''} — ${startedAt.toISOString()}`);
  md.push('');
  md.push(`- machine: ${machine.cpu}, ${machine.memoryGiB} GiB; load average ${machine.loadAverageBefore.join(' ')} before, ${machine.loadAverageAfter.join(' ')} after; ${((finishedAt.getTime() - startedAt.getTime()) / 60000).toFixed(1)} min`);
  for (const t of toolList) md.push(`- ${t.label}: ${t.version}; key derivation ${kdf[t.id] ?? 'unknown'}`);
  md.push(`- RSS floor: bare node ${baseline.nodeRssMiB.toFixed(0)} MiB; \`stowage --help\` ${baseline.stowageHelpRssMiB.toFixed(0)} MiB`);
  md.push(`- big corpus: ${big.files} files, ${(big.bytes / MiB).toFixed(0)} MiB (AES-CTR keystream); small corpus: ${small.files} files in ${small.dirs} dirs, ${(small.bytes / MiB).toFixed(0)} MiB (half text, half random)`);
  if (huge) md.push(`- 10 GiB corpus: ${huge.files} files, ${(huge.bytes / MiB).toFixed(0)} MiB (AES-CTR keystream; each tool's init, backup and restore, then its repository removed, before the other tool's)`);
  if (many) md.push(`- many-files corpus: ${many.files} files of 1–8 KiB in ${many.dirs} dirs, ${(many.bytes / MiB).toFixed(0)} MiB (half text, half random)`);
  if (pruneSource) md.push(
    `- prune: copies of one restic 0.19.1 repository (compression auto, ${kdfParams(pruneSource.repo)} for both tools), ${pruneSource.snapshots.length} snapshots of ` +
      `${pruneSource.files} files / ${(pruneSource.dataBytes / MiB).toFixed(0)} MiB that change from snapshot to snapshot, ${pruneSource.packs} packs, ${(pruneSource.bytes / MiB).toFixed(0)} MiB; ` +
      `the oldest ${pruneSource.forget.length} forgotten (untimed), then \`${PRUNE_ARGS.join(' ')}\`; checked afterwards with restic 0.19.1 \`check --read-data\``,
  );
  if (indexRuns.length) md.push(`- index: bench/index-memory.ts on the build under test, synthetic entries; restic's 56 bytes per blob is the size of its documented in-memory index entry, not a measurement`);
  md.push(`- ${runs} run(s), median reported${withRestic014 && runs > 1 ? ' (restic 0.14: run 1 only)' : ''}; warm page cache; local repositories under ${work}; MiB/s = source bytes / wall; ratio = Stowage / restic 0.19.1 for that row`);
  if (withKopia) {
    md.push(
      `- kopia: its own repository format on filesystem storage (\`repository create filesystem\`), its default splitter, hash and encryption; ` +
        `compression none for big and \`zstd-fastest\` for small (a global policy set untimed after create); first backup (\`snapshot create --no-progress\`) and restore (\`snapshot restore <ID>\`) of big and small only; ` +
        `its config, cache and logs under the bench's per-repository cache folder; Stowage / kopia is reported only, no target`,
    );
  }
  md.push('');
  md.push(markdownTable([...figures, ...(indexRuns.length ? [{ rows: index }] : [])], withRestic014, withKopia));
  // Issue 17: is the peak flat in the size of the job?
  const flat = flatnessTable(figures);
  if (flat) md.push('', 'Peak RSS of the bigger job over the same step on the base corpus (issue 17: 10 GiB within 10% of 1 GiB, many files within 20% of 20 000):', '', flat);
  // What each prune left behind: the tools should end up with about the same repository.
  const pruned = samples.filter((s) => s.step === 'prune' && s.repoAfter);
  if (pruneSource && pruned.length) {
    md.push('');
    md.push(`Repository after prune (before: ${pruneSource.packs} packs, ${(pruneSource.bytes / MiB).toFixed(1)} MiB):`);
    for (const p of pruned) md.push(`- run ${p.run} ${toolList.find((t) => t.id === p.tool)!.label}: ${p.repoAfter!.packs} packs, ${(p.repoAfter!.bytes / MiB).toFixed(1)} MiB`);
  }
  const caged = samples.filter((x) => x.cgroup);
  if (caged.length) {
    md.push('');
    md.push('In a memory cgroup (peak RSS above is the process\'s own, from rusage; the cgroup also charges page cache, and reclaims it at the limit):');
    for (const c of caged) {
      md.push(`- run ${c.run} ${c.scenario} ${toolList.find((t) => t.id === c.tool)!.label}: ${c.error ? `FAILED (${c.error})` : 'completed'}; cgroup limit ${c.cgroup!.limitMiB} MiB, peak charged ${c.cgroup!.peakMiB?.toFixed(0) ?? '?'} MiB, limit hit ${c.cgroup!.limitHits ?? '?'} times`);
    }
  }
  if (failures.length || indexFailures.length) {
    md.push('');
    md.push('Failures (not counted in the medians):');
    for (const f of failures) md.push(`- run ${f.run} ${f.scenario} ${f.step} ${f.tool}: ${f.error} (log: ${f.logFile})`);
    for (const f of indexFailures) md.push(`- run ${f.run} index memory: ${f.error} (log: ${f.logFile})`);
  }
  if (warnings.length) {
    md.push('');
    md.push('Warnings:');
    for (const w of warnings) md.push(`- run ${w.run} ${w.scenario} ${w.step} ${w.tool}: ${w.warning}`);
  }
  process.stdout.write(md.join('\n') + '\n');

  const resultsDir = join(benchDir, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const out = join(resultsDir, quick ? 'latest-quick.json' : 'latest.json');
  const json = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    quick,
    runs,
    machine,
    baseline,
    tools: toolList.map((t) => ({ id: t.id, label: t.label, version: t.version, keyDerivation: kdf[t.id] })),
    corpora: [big, small, ...(huge ? [huge] : []), ...(many ? [many] : [])],
    pruneRepository: pruneSource,
    figures: figures.map((f) => ({ ...f.def, tools: f.tools, rows: f.rows })),
    indexMemory: { runs: indexRuns, rows: index },
    samples,
  };
  writeFileSync(out, JSON.stringify(json, null, 2) + '\n');
  log(`results written to ${out}`);
  if (failures.length || indexFailures.length) process.exitCode = 1;
}

await main();
