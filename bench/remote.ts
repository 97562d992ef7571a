// `npm run bench -- --remote`: Stowage's CLI against restic 0.19.1 on remote repositories — MinIO
// (S3) and restic's rest-server on 127.0.0.1, each behind bench/lib/tcp-proxy.ts, which adds
// latency to every round trip, caps the bandwidth and counts requests and bytes both ways.
//
//   npm run bench -- --remote                          defaults: 20 ms, 200 Mbit/s, 2 000 files, ~200 MiB
//   npm run bench -- --remote --latency-ms 50 --mbit 100 --files 20000 --dirs 400
//
// Every row is run with a cold cache (an empty --cache-dir, fresh for that command) and a warm one
// (the tool's own --cache-dir, kept from the first backup on), by both tools, one command after the
// other; the proxy's counters are zeroed before each command. The table goes to stdout as markdown,
// progress to stderr, every sample to bench/results/remote-latest.json.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startMinio } from '../test/servers/minio.ts';
import { startRestServer } from '../test/servers/rest-server.ts';
import { ensureCorpus, keystream, textLike, type Corpus, type SmallShape } from './corpus.ts';
import { ensureGnuTime, measure, median, type Usage } from './lib/measure.ts';
import { startTcpProxy, type TcpProxy, type TcpProxyStats } from './lib/tcp-proxy.ts';

const MiB = 1024 * 1024;
const benchDir = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const RESTIC = '/var/cache/stowage/bin/restic';
const PASSWORD = 'stowage-bench';
const log = (s: string): void => void process.stderr.write(`${s}\n`);

type ToolId = 'stowage' | 'restic';
type Variant = 'cold' | 'warm';
type BackendId = 's3' | 'rest';
type StepId = 'backup' | 'rebackup' | 'rebackup1pct' | 'snapshots' | 'ls' | 'stats' | 'restore1' | 'restore' | 'check' | 'checksubset';

const STEPS: readonly { id: StepId; label: string }[] = [
  { id: 'backup', label: 'first backup' },
  { id: 'rebackup', label: 'unchanged re-backup' },
  { id: 'rebackup1pct', label: 're-backup, 1% of files changed' },
  { id: 'snapshots', label: '`snapshots`' },
  { id: 'ls', label: '`ls latest`' },
  { id: 'stats', label: '`stats`' },
  { id: 'restore1', label: 'restore one file' },
  { id: 'restore', label: 'restore everything' },
  { id: 'check', label: '`check`' },
  { id: 'checksubset', label: '`check --read-data-subset 10%`' },
];

interface Tool {
  id: ToolId;
  label: string;
  command: string;
  prefix: string[];
}

interface Sample {
  backend: BackendId;
  step: StepId;
  variant: Variant;
  tool: ToolId;
  usage?: Usage;
  traffic?: TcpProxyStats;
  /** Requests by method and repository file type, e.g. "GET data (range)": 12; from the proxy's log. */
  requestKinds?: Record<string, number>;
  /** Every request in order, as "METHOD path [range]" (the proxy's log, at most its size). */
  requestLines?: string[];
  error?: string;
  warning?: string;
  /** The first backup is one command: a new repository has nothing to cache, so it fills both rows. */
  shared?: true;
  logFile: string;
}

interface Backend {
  id: BackendId;
  label: string;
  proxy: TcpProxy;
  /** The repository location of a tool, through the proxy. */
  location(tool: ToolId): string;
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export async function runRemote(argv: string[]): Promise<void> {
  const { values: opts } = parseArgs({
    args: argv,
    options: {
      'latency-ms': { type: 'string', default: '20' },
      mbit: { type: 'string', default: '200' },
      files: { type: 'string', default: '2000' },
      dirs: { type: 'string', default: '200' },
      'max-kib': { type: 'string', default: '200' },
      backends: { type: 'string', default: 's3,rest' },
      steps: { type: 'string' },
      requests: { type: 'boolean', default: false },
      'many-files': { type: 'boolean', default: false },
      runs: { type: 'string', default: '3' },
      restic: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      cli: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (opts.help) {
    process.stdout.write(
      'Usage: npm run bench -- --remote [--latency-ms MS] [--mbit N] [--files N] [--dirs N] [--max-kib N] [--backends s3,rest] [--steps LIST] [--requests] [--keep] [--cli PATH]\n' +
        '  --latency-ms MS  round-trip time the proxy adds (default 20)\n' +
        '  --mbit N         bandwidth cap of each direction, Mbit/s (default 200)\n' +
        '  --files N        corpus files (default 2000), spread evenly over --dirs leaf folders (default 200, a multiple of 10)\n' +
        '  --max-kib N      largest corpus file; sizes are uniform from 1 KiB (default 200, so about 100 KiB on average)\n' +
        '  --backends LIST  s3, rest or both (default s3,rest)\n' +
        `  --steps LIST     only these rows (${STEPS.map((s) => s.id).join(', ')}); the first backup always runs, the others need it\n` +
        '  --requests       print every request of every command (method, path, Range) under its line\n' +
        '  --keep           keep the work folder ($STOWAGE_BENCH_DIR/remote) afterwards\n' +
        '  --many-files     the many-files row instead: a synthetic snapshot of 200 000 files (1 KiB each, 2 000 folders,\n' +
        '                   fixed seed; --files/--dirs/--max-kib change it), its unchanged re-backup with a warm cache\n' +
        '                   over the link (--backends) against the same on a local-disk repository\n' +
        '  --runs N         --many-files: re-backups per repository, the median is reported (default 3)\n' +
        '  --restic         --many-files: restic 0.19.1 too (default: Stowage only)\n' +
        "  --cli PATH       measure another build's dist/cli/main.js\n",
    );
    return;
  }
  const num = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} takes a number ≥ ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const latencyMs = num('latency-ms', opts['latency-ms'], 0);
  const mbit = num('mbit', opts.mbit, 0.001);
  const many = opts['many-files'];
  const given = (name: string) => argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  const files = num('files', many && !given('files') ? '200000' : opts.files, 1);
  const dirs = num('dirs', many && !given('dirs') ? '2000' : opts.dirs, 10);
  const maxKiB = num('max-kib', many && !given('max-kib') ? '1' : opts['max-kib'], 1);
  if (!Number.isInteger(dirs) || dirs % 10 !== 0) throw new Error(`--dirs must be a multiple of 10, got ${dirs}`);
  if (!Number.isInteger(files) || files % dirs !== 0) throw new Error(`--files must be a multiple of --dirs (${dirs}), got ${files}`);
  if (!Number.isInteger(maxKiB)) throw new Error(`--max-kib takes a whole number, got ${maxKiB}`);
  const backendIds = opts.backends.split(',').map((s) => s.trim()) as BackendId[];
  for (const b of backendIds) if (b !== 's3' && b !== 'rest') throw new Error(`--backends: unknown backend ${JSON.stringify(b)} (s3, rest)`);
  const stepIds = opts.steps === undefined ? STEPS.map((s) => s.id) : opts.steps.split(',').map((s) => s.trim());
  for (const s of stepIds) if (!STEPS.some((x) => x.id === s)) throw new Error(`--steps: unknown row ${JSON.stringify(s)} (${STEPS.map((x) => x.id).join(', ')})`);
  const only = new Set<StepId>(['backup', ...(stepIds as StepId[])]);
  const shape: SmallShape = { kind: 'small', outer: dirs / 10, inner: 10, filesPerLeaf: files / dirs, maxKiB };

  if (many) {
    const runs = num('runs', opts.runs, 1);
    ensureGnuTime(log);
    const cli = resolve(opts.cli ?? join(repoRoot, 'dist', 'cli', 'main.js'));
    if (!existsSync(cli)) throw new Error(`${cli} is missing; run "npm run build" first (npm run bench does)`);
    const tools: Tool[] = [{ id: 'stowage', label: 'Stowage', command: process.execPath, prefix: [cli] }];
    if (opts.restic) tools.push({ id: 'restic', label: 'restic 0.19.1', command: RESTIC, prefix: [] });
    await runManyFiles({ shape, latencyMs, mbit, backendIds, tools, runs, keep: opts.keep, cli });
    return;
  }
  ensureGnuTime(log);
  if (!existsSync(RESTIC)) throw new Error(`restic 0.19.1 is expected at ${RESTIC}`);
  const cli = resolve(opts.cli ?? join(repoRoot, 'dist', 'cli', 'main.js'));
  if (!existsSync(cli)) throw new Error(`${cli} is missing; run "npm run build" first (npm run bench does)`);
  const tools: Tool[] = [
    { id: 'stowage', label: 'Stowage', command: process.execPath, prefix: [cli] },
    { id: 'restic', label: 'restic 0.19.1', command: RESTIC, prefix: [] },
  ];
  const versions = { stowage: `${firstLine(process.execPath, [cli, 'version'])} (${gitCommit()}) on node ${process.versions.node}`, restic: firstLine(RESTIC, ['version']) };

  const root = process.env.STOWAGE_BENCH_DIR || '/tmp/stowage-bench';
  const corpus = ensureCorpus(join(root, 'corpus'), shape, log);
  const work = join(root, 'remote');
  const logs = join(work, 'logs');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });

  const startedAt = new Date();
  const loadBefore = loadavg();
  const samples: Sample[] = [];
  for (const [bi, backendId] of backendIds.entries()) {
    // The tools take turns going first, backend by backend.
    const order = bi % 2 === 0 ? tools : [...tools].reverse();
    const backend = await startBackend(backendId, latencyMs, (mbit * 1e6) / 8);
    try {
      samples.push(...(await runBackend(backend, order, corpus, work, logs, only, opts.requests)));
    } finally {
      await backend.stop();
    }
  }
  const finishedAt = new Date();

  const md: string[] = [];
  md.push(`## Stowage vs restic, remote — ${startedAt.toISOString()}`);
  md.push('');
  const cpu = cpus();
  md.push(
    `- machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown'}, ${Math.round(totalmem() / 1024 ** 3)} GiB; load average ${fmtLoad(loadBefore)} before, ${fmtLoad(loadavg())} after; ` +
      `${((finishedAt.getTime() - startedAt.getTime()) / 60000).toFixed(1)} min`,
  );
  md.push(`- Stowage: ${versions.stowage}; restic: ${versions.restic}`);
  md.push(`- network: every request through bench/lib/tcp-proxy.ts on 127.0.0.1, +${latencyMs} ms per round trip, ${mbit} Mbit/s each way (shared by all connections)`);
  md.push(
    `- corpus: ${corpus.files} files in ${dirs} folders, ${(corpus.bytes / MiB).toFixed(0)} MiB (1–${maxKiB} KiB each; half text, half random); ` +
      `the 1% re-backup rewrites ${changedFiles(corpus.files, 1).length} files (another ${changedFiles(corpus.files, 2).length} for the warm row)`,
  );
  md.push(
    '- cold: an empty `--cache-dir`, fresh for that command; warm: the tool\'s own `--cache-dir`, used by every command since the first backup. ' +
      's = wall seconds, req = HTTP requests, ↓ = bytes downloaded, ↑ = bytes uploaded (both on the wire, headers included); ratio = Stowage / restic',
  );
  for (const backendId of backendIds) {
    md.push('');
    md.push(`### ${backendId === 's3' ? 'S3 (MinIO)' : 'rest-server'}`);
    md.push('');
    md.push(table(samples.filter((s) => s.backend === backendId), corpus));
  }
  const verdicts = backendIds.flatMap((b) => targets(samples.filter((s) => s.backend === b), corpus).map((t) => ({ ...t, backend: b })));
  md.push('');
  md.push(`Targets: ${verdicts.filter((v) => v.met === true).length} met, ${verdicts.filter((v) => v.met === false).length} not met${verdicts.some((v) => v.met === undefined) ? `, ${verdicts.filter((v) => v.met === undefined).length} not judged (a failed command)` : ''}.`);
  const missed = verdicts.filter((v) => v.met !== true);
  if (missed.length) {
    md.push('');
    md.push('Not met:');
    for (const v of missed) md.push(`- ${v.backend} ${STEPS.find((s) => s.id === v.step)!.label}, ${v.variant}: ${v.target} — ${v.detail}`);
  }
  const failures = samples.filter((s) => s.error);
  if (failures.length) {
    md.push('');
    md.push('Failures:');
    for (const f of failures) md.push(`- ${f.backend} ${f.step} ${f.variant} ${f.tool}: ${f.error} (log: ${f.logFile})`);
  }
  const warnings = samples.filter((s) => s.warning);
  if (warnings.length) {
    md.push('');
    md.push('Warnings:');
    for (const w of warnings) md.push(`- ${w.backend} ${w.step} ${w.variant} ${w.tool}: ${w.warning}`);
  }
  process.stdout.write(md.join('\n') + '\n');

  const resultsDir = join(benchDir, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const out = join(resultsDir, 'remote-latest.json');
  writeFileSync(
    out,
    JSON.stringify({ startedAt, finishedAt, latencyMs, mbit, corpus, versions, samples, targets: verdicts, loadAverageBefore: loadBefore, loadAverageAfter: loadavg() }, null, 2) + '\n',
  );
  log(`results written to ${out}`);
  if (!opts.keep) rmSync(work, { recursive: true, force: true });
  if (failures.length) process.exitCode = 1;
}

/** One command of the many-files row. */
interface ManySample {
  where: 'local' | BackendId;
  tool: ToolId;
  step: 'backup' | 'rebackup';
  run: number;
  usage: Usage;
  traffic?: TcpProxyStats;
  requestKinds?: Record<string, number>;
  counts?: { added: number; changed: number; unmodified: number };
  error?: string;
}

/**
 * The many-files row: each tool backs the corpus up once into a local-disk repository and once
 * through the proxy into each remote one (its own --cache-dir, kept), then re-backs it up unchanged
 * `runs` times in each; the figure is the median re-backup over the link against the median on
 * local disk.
 */
async function runManyFiles(o: { shape: SmallShape; latencyMs: number; mbit: number; backendIds: BackendId[]; tools: Tool[]; runs: number; keep: boolean; cli: string }): Promise<void> {
  const root = process.env.STOWAGE_BENCH_DIR || '/tmp/stowage-bench';
  const corpus = ensureCorpus(join(root, 'corpus'), o.shape, log);
  const work = join(root, 'remote-many');
  const logs = join(work, 'logs');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });
  const startedAt = new Date();
  const loadBefore = loadavg();
  const samples: ManySample[] = [];
  const baseEnv = (): NodeJS.ProcessEnv => {
    const base: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RESTIC_') && !k.startsWith('AWS_') && k !== 'NODE_OPTIONS' && k !== 'XDG_CACHE_HOME') base[k] = v;
    return base;
  };
  const wheres: Array<'local' | BackendId> = ['local', ...o.backendIds];
  for (const where of wheres) {
    const backend = where === 'local' ? undefined : await startBackend(where, o.latencyMs, (o.mbit * 1e6) / 8);
    try {
      for (const t of o.tools) {
        const location = backend ? backend.location(t.id) : join(work, `repo-local-${t.id}`);
        const env = { ...baseEnv(), ...(backend?.env ?? {}), RESTIC_REPOSITORY: location, RESTIC_PASSWORD: PASSWORD };
        const cache = join(work, `cache-${where}-${t.id}`);
        const run = async (step: 'init' | 'backup' | 'rebackup', n: number): Promise<ManySample | undefined> => {
          const logFile = join(logs, `${where}-${step}-${n}-${t.id}.log`);
          spawnSync('sync');
          backend?.proxy.reset();
          const usage = await measure(t.command, [...t.prefix, ...(step === 'init' ? ['init'] : ['backup', corpus.path]), '--cache-dir', cache], { env, logFile, timeFile: join(work, 'time.out'), cwd: work });
          const out = readFileSync(logFile, 'utf8');
          if (step === 'init') {
            if (usage.exitCode !== 0) throw new Error(`${t.label} init (${where}) failed: ${out.trim().split('\n').slice(-3).join(' / ')}`);
            return undefined;
          }
          const sample: ManySample = { where, tool: t.id, step, run: n, usage, counts: backupCounts(out) };
          if (backend) {
            sample.traffic = backend.proxy.stats();
            sample.requestKinds = requestKinds(backend.proxy);
          }
          if (usage.exitCode !== 0) sample.error = `exit ${usage.exitCode}: ${out.trim().split('\n').slice(-3).join(' / ')}`;
          else if (!sample.counts) sample.error = 'no "Files: … new, … changed" line in the output';
          else if (step === 'rebackup' && (sample.counts.added !== 0 || sample.counts.changed !== 0)) sample.error = `saw ${sample.counts.added} new and ${sample.counts.changed} changed files, expected none`;
          else if (step === 'backup' && sample.counts.added !== corpus.files) sample.error = `backed up ${sample.counts.added} new files, expected ${corpus.files}`;
          samples.push(sample);
          const tr = sample.traffic;
          log(
            `  ${where.padEnd(5)} ${step.padEnd(8)} #${n} ${t.id.padEnd(7)} ${usage.wallSeconds.toFixed(2).padStart(7)} s` +
              (tr ? ` ${String(tr.requests).padStart(6)} req  ↓ ${fmtBytes(tr.bytesDown).padStart(10)}  ↑ ${fmtBytes(tr.bytesUp).padStart(10)}` : '') +
              (sample.error ? `  ERROR ${sample.error}` : ''),
          );
          return sample;
        };
        await run('init', 0);
        await run('backup', 1);
        for (let n = 1; n <= o.runs; n++) await run('rebackup', n);
      }
    } finally {
      await backend?.stop();
    }
  }
  const finishedAt = new Date();
  const med = (where: string, tool: ToolId, step: string, pick: (s: ManySample) => number): number | undefined => {
    const xs = samples.filter((s) => s.where === where && s.tool === tool && s.step === step && !s.error).map(pick);
    return xs.length ? median(xs) : undefined;
  };
  const md: string[] = [];
  md.push(`## Many files: unchanged re-backup over the link vs local disk — ${startedAt.toISOString()}`);
  md.push('');
  const cpu = cpus();
  md.push(`- machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown'}; load average ${fmtLoad(loadBefore)} before, ${fmtLoad(loadavg())} after; ${((finishedAt.getTime() - startedAt.getTime()) / 60000).toFixed(1)} min`);
  md.push(`- Stowage: ${firstLine(process.execPath, [o.cli, 'version'])} (${gitCommit()}) on node ${process.versions.node}${o.tools.some((t) => t.id === 'restic') ? `; restic: ${firstLine(RESTIC, ['version'])}` : ''}`);
  md.push(`- corpus: ${corpus.files} files in ${corpus.dirs} folders, ${(corpus.bytes / MiB).toFixed(0)} MiB (fixed seed, bench/corpus.ts ${corpus.name})`);
  md.push(`- link: bench/lib/tcp-proxy.ts, +${o.latencyMs} ms per round trip, ${o.mbit} Mbit/s; local: a repository folder on this machine's disk; every repository with its tool's own --cache-dir, kept from its first backup`);
  md.push(`- re-backup: median of ${o.runs} unchanged re-backups; ratio = over the link / local disk (target ≤ 1.5×)`);
  md.push('');
  md.push('| tool | repository | first backup s | unchanged re-backup s (median) | req | ↓ | ↑ | ratio to local |');
  md.push('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const t of o.tools) {
    const local = med('local', t.id, 'rebackup', (s) => s.usage.wallSeconds);
    for (const where of wheres) {
      const first = med(where, t.id, 'backup', (s) => s.usage.wallSeconds);
      const re = med(where, t.id, 'rebackup', (s) => s.usage.wallSeconds);
      const req = med(where, t.id, 'rebackup', (s) => s.traffic?.requests ?? NaN);
      const down = med(where, t.id, 'rebackup', (s) => s.traffic?.bytesDown ?? NaN);
      const up = med(where, t.id, 'rebackup', (s) => s.traffic?.bytesUp ?? NaN);
      const cell = (n: number | undefined, f: (n: number) => string) => (n === undefined ? 'failed' : Number.isNaN(n) ? '—' : f(n));
      md.push(
        `| ${t.label} | ${where === 'local' ? 'local disk' : where === 's3' ? 'S3 (MinIO)' : 'rest-server'} | ${cell(first, (n) => n.toFixed(2))} | ${cell(re, (n) => n.toFixed(2))} | ` +
          `${cell(req, String)} | ${cell(down, fmtBytes)} | ${cell(up, fmtBytes)} | ${where === 'local' ? '1.00×' : fmtRatio(re, local)} |`,
      );
    }
  }
  const failures = samples.filter((s) => s.error);
  if (failures.length) {
    md.push('');
    md.push('Failures:');
    for (const f of failures) md.push(`- ${f.where} ${f.step} #${f.run} ${f.tool}: ${f.error}`);
  }
  process.stdout.write(md.join('\n') + '\n');
  const resultsDir = join(benchDir, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const out = join(resultsDir, 'remote-many-latest.json');
  writeFileSync(out, JSON.stringify({ startedAt, finishedAt, latencyMs: o.latencyMs, mbit: o.mbit, corpus, runs: o.runs, samples, loadAverageBefore: loadBefore, loadAverageAfter: loadavg() }, null, 2) + '\n');
  log(`results written to ${out}`);
  if (!o.keep) rmSync(work, { recursive: true, force: true });
  if (failures.length) process.exitCode = 1;
}

function fmtLoad(l: number[]): string {
  return l.map((v) => v.toFixed(2)).join(' ');
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').split('\n')[0]!.trim();
}

function gitCommit(): string {
  const commit = firstLine('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  const dirty = spawnSync('git', ['-C', repoRoot, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout?.trim();
  return `${commit}${dirty ? ', uncommitted changes' : ''}`;
}

async function startBackend(id: BackendId, latencyMs: number, bytesPerSecond: number): Promise<Backend> {
  if (id === 's3') {
    const minio = await startMinio();
    try {
      const proxy = await startTcpProxy({ targetPort: minio.port, latencyMs, bytesPerSecond });
      return {
        id,
        label: 'S3 (MinIO)',
        proxy,
        location: (tool) => `s3:${proxy.url}/bench/${tool}`,
        env: { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey },
        stop: async () => {
          await proxy.close();
          await minio.stop();
        },
      };
    } catch (e) {
      await minio.stop();
      throw e;
    }
  }
  const server = await startRestServer();
  try {
    const proxy = await startTcpProxy({ targetPort: server.port, latencyMs, bytesPerSecond });
    return {
      id,
      label: 'rest-server',
      proxy,
      location: (tool) => `rest:${proxy.url}/${tool}/`,
      env: {},
      stop: async () => {
        await proxy.close();
        await server.stop();
      },
    };
  } catch (e) {
    await server.stop();
    throw e;
  }
}

/** The corpus files, sorted, relative to its root. */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

/** Which files (by index in sorted order) change `round` rewrites: 1 in 100, a different set each round. */
function changedFiles(count: number, round: number): number[] {
  const out: number[] = [];
  for (let i = (round * 37) % 100; i < count; i += 100) out.push(i);
  return out;
}

/** Rewrites 1% of the files with new content of the same size and kind; deterministic per round. */
function changeOnePercent(src: string, round: number): number {
  const all = listFiles(src);
  const picked = changedFiles(all.length, round);
  for (const i of picked) {
    const path = join(src, all[i]!);
    const size = statSync(path).size;
    const seed = 7_000_000 + round * 100_000 + i;
    writeFileSync(path, path.endsWith('.txt') ? textLike(seed, size) : keystream(seed, size));
  }
  return picked.length;
}

function treeSize(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  if (!existsSync(dir)) return { files, bytes };
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) {
      files++;
      bytes += statSync(join(e.parentPath, e.name)).size;
    }
  }
  return { files, bytes };
}

function backupCounts(text: string): { added: number; changed: number; unmodified: number } | undefined {
  const m = /Files:\s+(\d+) new,\s+(\d+) changed,\s+(\d+) unmodified/.exec(text);
  return m ? { added: Number(m[1]), changed: Number(m[2]), unmodified: Number(m[3]) } : undefined;
}

async function runBackend(
  backend: Backend,
  order: readonly Tool[],
  corpus: Corpus,
  work: string,
  logs: string,
  only: ReadonlySet<StepId>,
  printRequests: boolean,
): Promise<Sample[]> {
  // The tools back up a copy, so that the 1% changes leave the cached corpus as it is.
  const src = join(work, `src-${backend.id}`);
  rmSync(src, { recursive: true, force: true });
  cpSync(corpus.path, src, { recursive: true, preserveTimestamps: true });
  const files = listFiles(src);
  const oneFile = files[0]!;
  const oneFileSize = statSync(join(src, oneFile)).size;
  const size = treeSize(src);
  const warmCache = (t: Tool) => join(work, `cache-${backend.id}-${t.id}-warm`);
  const coldCache = (t: Tool) => join(work, `cache-${backend.id}-${t.id}-cold`);
  const target = join(work, 'restore');
  const env = (t: Tool): NodeJS.ProcessEnv => {
    const base: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RESTIC_') && !k.startsWith('AWS_') && k !== 'NODE_OPTIONS' && k !== 'XDG_CACHE_HOME') base[k] = v;
    return { ...base, ...backend.env, RESTIC_REPOSITORY: backend.location(t.id), RESTIC_PASSWORD: PASSWORD };
  };
  log(`${backend.label}: proxy ${backend.proxy.url}; ${order.map((t) => `${t.label} at ${backend.location(t.id)}`).join(', ')}`);

  // init is not a figure; each tool makes its own repository (restic calibrates its scrypt parameters).
  // Never spawnSync a command that talks to the repository: the proxy runs on this event loop.
  for (const t of order) {
    const logFile = join(logs, `${backend.id}-init-${t.id}.log`);
    const u = await measure(t.command, [...t.prefix, 'init', '--cache-dir', warmCache(t)], { env: env(t), logFile, timeFile: join(work, 'time.out'), cwd: work });
    if (u.exitCode !== 0) throw new Error(`${t.label} init on ${backend.label} failed: ${readFileSync(logFile, 'utf8').trim().split('\n').slice(-3).join(' / ')}`);
  }

  const samples: Sample[] = [];
  const argsFor = (step: StepId): string[] => {
    switch (step) {
      case 'backup':
      case 'rebackup':
      case 'rebackup1pct':
        return ['backup', src];
      case 'snapshots':
        return ['snapshots'];
      case 'ls':
        return ['ls', 'latest'];
      case 'stats':
        return ['stats'];
      case 'restore1':
        return ['restore', 'latest', '--target', target, '--include', join(src, oneFile)];
      case 'restore':
        return ['restore', 'latest', '--target', target];
      case 'check':
        return ['check'];
      case 'checksubset':
        return ['check', '--read-data-subset', '10%'];
    }
  };

  for (const step of STEPS) {
    if (!only.has(step.id)) continue;
    const variants: Variant[] = step.id === 'backup' ? ['warm'] : ['cold', 'warm'];
    for (const variant of variants) {
      let changed = 0;
      if (step.id === 'rebackup1pct') changed = changeOnePercent(src, variant === 'cold' ? 1 : 2);
      for (const t of order) {
        const cache = variant === 'warm' ? warmCache(t) : coldCache(t);
        if (variant === 'cold') rmSync(cache, { recursive: true, force: true });
        rmSync(target, { recursive: true, force: true });
        const logFile = join(logs, `${backend.id}-${step.id}-${variant}-${t.id}.log`);
        const sample: Sample = { backend: backend.id, step: step.id, variant, tool: t.id, logFile };
        spawnSync('sync');
        backend.proxy.reset();
        try {
          sample.usage = await measure(t.command, [...t.prefix, ...argsFor(step.id), '--cache-dir', cache], {
            env: env(t),
            logFile,
            timeFile: join(work, 'time.out'),
            cwd: work,
          });
          sample.traffic = backend.proxy.stats();
          sample.requestKinds = requestKinds(backend.proxy);
          sample.requestLines = backend.proxy.requests().map((r) => `${r.method} ${decodeURIComponent(r.path)}${r.headers.range !== undefined ? ` [${r.headers.range}]` : ''}`);
          const out = readFileSync(logFile, 'utf8');
          if (sample.usage.exitCode !== 0) sample.error = `exit ${sample.usage.exitCode}: ${out.trim().split('\n').slice(-3).join(' / ')}`;
          else if (step.id === 'backup' || step.id === 'rebackup' || step.id === 'rebackup1pct') {
            const c = backupCounts(out);
            const expectChanged = step.id === 'rebackup1pct' ? changed : 0;
            if (!c) sample.warning = 'no "Files: … new, … changed" line in the output';
            else if (step.id === 'backup' && c.added !== size.files) sample.error = `backed up ${c.added} new files, expected ${size.files}`;
            else if (step.id !== 'backup' && (c.added !== 0 || c.changed !== expectChanged)) sample.warning = `saw ${c.added} new and ${c.changed} changed files, expected 0 and ${expectChanged}`;
          } else if (step.id === 'restore') {
            const got = treeSize(target);
            if (got.files !== size.files || got.bytes !== size.bytes) sample.error = `restored ${got.files} files / ${got.bytes} bytes, expected ${size.files} / ${size.bytes}`;
          } else if (step.id === 'restore1') {
            const got = treeSize(target);
            if (got.files !== 1 || got.bytes !== oneFileSize) sample.error = `restored ${got.files} files / ${got.bytes} bytes, expected 1 / ${oneFileSize}`;
          }
        } catch (e) {
          sample.error = (e as Error).message;
        }
        if (variant === 'cold') rmSync(cache, { recursive: true, force: true });
        rmSync(target, { recursive: true, force: true });
        samples.push(sample);
        if (step.id === 'backup') samples.push({ ...sample, variant: 'cold', shared: true });
        const u = sample.usage;
        const tr = sample.traffic;
        log(
          `  ${backend.id.padEnd(4)} ${step.id.padEnd(12)} ${(step.id === 'backup' ? 'new' : variant).padEnd(4)} ${t.id.padEnd(7)} ` +
            (u && tr ? `${u.wallSeconds.toFixed(2).padStart(7)} s ${String(tr.requests).padStart(6)} req  ↓ ${fmtBytes(tr.bytesDown).padStart(10)}  ↑ ${fmtBytes(tr.bytesUp).padStart(10)}` : '') +
            (sample.error ? `  ERROR ${sample.error}` : '') +
            (sample.warning ? `  warning: ${sample.warning}` : ''),
        );
        if (printRequests) for (const line of sample.requestLines ?? []) log(`      ${line}`);
      }
    }
  }
  return samples;
}

const FILE_TYPES = ['config', 'keys', 'locks', 'snapshots', 'index', 'data'] as const;

/** The proxy's request log summed by method and the repository file type in the path or listing prefix. */
function requestKinds(proxy: TcpProxy): Record<string, number> {
  const out: Record<string, number> = {};
  const reqs = proxy.requests();
  for (const r of reqs) {
    const path = decodeURIComponent(r.path);
    const type = FILE_TYPES.find((t) => new RegExp(`[/=]${t}(/|$|&)`).test(path)) ?? 'other';
    const list = r.method === 'GET' && (path.includes('list-type') || path.endsWith(`/${type}/`)) ? ' (list)' : '';
    const range = r.headers.range !== undefined ? ' (range)' : '';
    const key = `${r.method} ${type}${list}${range}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  const missing = proxy.stats().requests - reqs.length;
  if (missing > 0) out['(not logged)'] = missing;
  return out;
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < MiB) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / MiB).toFixed(1)} MiB`;
}

function fmtRatio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || b === 0) return '—';
  const r = a / b;
  return `${r < 0.095 ? r.toFixed(3) : r.toFixed(2)}×`;
}

function find(samples: readonly Sample[], step: StepId, variant: Variant, tool: ToolId): Sample | undefined {
  const s = samples.find((x) => x.step === step && x.variant === variant && x.tool === tool);
  return s && !s.error && s.usage && s.traffic ? s : undefined;
}

interface Verdict {
  step: StepId;
  variant: Variant;
  target: string;
  met: boolean | undefined;
  detail: string;
}

/** The issue's targets, per row. */
function targets(samples: readonly Sample[], corpus: Corpus): Verdict[] {
  const out: Verdict[] = [];
  for (const step of STEPS) {
    if (!samples.some((x) => x.step === step.id)) continue; // not run (--steps)
    for (const variant of ['cold', 'warm'] as const) {
      const s = find(samples, step.id, variant, 'stowage');
      const r = find(samples, step.id, variant, 'restic');
      const add = (target: string, judge: (s: Sample, r: Sample) => { met: boolean; detail: string }): void => {
        if (!s || !r) out.push({ step: step.id, variant, target, met: undefined, detail: 'a command failed' });
        else out.push({ step: step.id, variant, target, ...judge(s, r) });
      };
      if (variant === 'warm') {
        add('requests ≤ restic', (s, r) => ({ met: s.traffic!.requests <= r.traffic!.requests, detail: `${s.traffic!.requests} vs ${r.traffic!.requests} requests` }));
        add('downloaded ≤ restic', (s, r) => ({ met: s.traffic!.bytesDown <= r.traffic!.bytesDown, detail: `${fmtBytes(s.traffic!.bytesDown)} vs ${fmtBytes(r.traffic!.bytesDown)} downloaded` }));
      } else {
        add('downloaded ≤ restic', (s, r) => ({ met: s.traffic!.bytesDown <= r.traffic!.bytesDown, detail: `${fmtBytes(s.traffic!.bytesDown)} vs ${fmtBytes(r.traffic!.bytesDown)} downloaded` }));
      }
      if (step.id === 'rebackup' && variant === 'warm') {
        add('time ≤ 0.5× restic', (s, r) => ({ met: s.usage!.wallSeconds <= 0.5 * r.usage!.wallSeconds, detail: `${s.usage!.wallSeconds.toFixed(2)} s vs ${r.usage!.wallSeconds.toFixed(2)} s (${fmtRatio(s.usage!.wallSeconds, r.usage!.wallSeconds)})` }));
      }
      if (step.id === 'restore') {
        add('throughput ≥ 1.5× restic', (s, r) => {
          const sT = corpus.bytes / MiB / s.usage!.wallSeconds;
          const rT = corpus.bytes / MiB / r.usage!.wallSeconds;
          return { met: sT >= 1.5 * rT, detail: `${sT.toFixed(1)} vs ${rT.toFixed(1)} MiB/s (${fmtRatio(sT, rT)})` };
        });
      }
    }
  }
  return out;
}

/** One markdown table for one backend: a row per step and cache state. */
function table(samples: readonly Sample[], corpus: Corpus): string {
  const verdicts = targets(samples, corpus);
  const lines = [
    '| row | cache | Stowage s | req | ↓ | ↑ | restic s | req | ↓ | ↑ | ratio s | req | ↓ | ↑ | targets |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  const cells = (x: Sample | undefined): string[] => (x ? [x.usage!.wallSeconds.toFixed(2), String(x.traffic!.requests), fmtBytes(x.traffic!.bytesDown), fmtBytes(x.traffic!.bytesUp)] : ['failed', '', '', '']);
  for (const step of STEPS) {
    if (!samples.some((x) => x.step === step.id)) continue; // not run (--steps)
    for (const variant of ['cold', 'warm'] as const) {
      const s = find(samples, step.id, variant, 'stowage');
      const r = find(samples, step.id, variant, 'restic');
      const v = verdicts.filter((x) => x.step === step.id && x.variant === variant);
      const judged = v.map((x) => `${x.target} ${x.met === undefined ? '?' : x.met ? '✓' : '✗'}`).join('; ');
      const cache = step.id === 'backup' ? `${variant} (one run)` : variant;
      lines.push(
        `| ${step.label} | ${cache} | ${cells(s).join(' | ')} | ${cells(r).join(' | ')} | ` +
          `${fmtRatio(s?.usage!.wallSeconds, r?.usage!.wallSeconds)} | ${fmtRatio(s?.traffic!.requests, r?.traffic!.requests)} | ` +
          `${fmtRatio(s?.traffic!.bytesDown, r?.traffic!.bytesDown)} | ${fmtRatio(s?.traffic!.bytesUp, r?.traffic!.bytesUp)} | ${judged} |`,
      );
    }
  }
  return lines.join('\n');
}

if (import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  await runRemote(process.argv.slice(2));
}
