// CPU profile of one Stowage command, summarized: where the time goes, per thread and overall.
//
//   npx node bench/profile.ts                       first backup of the big corpus, --compression off
//   npx node bench/profile.ts --corpus small --compression auto --top 25
//   npx node bench/profile.ts --quick --folded /tmp/backup.folded
//   npx node bench/profile.ts --summarize DIR_OR_FILE   summarize existing .cpuprofile files
//   npx node bench/profile.ts --cli /other/checkout/dist/cli/main.js   profile another build
//
// Runs `node --cpu-prof dist/cli/main.js backup …` against a fresh repository (npm run build
// first). Node writes one .cpuprofile per thread, workers included; they are kept in the
// output directory for Chrome DevTools or speedscope.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureCorpus, FULL_BIG, FULL_SMALL, QUICK_BIG, QUICK_SMALL } from './corpus.ts';
import { analyzeProfile, combine, foldedText, topSelfTable, type ThreadProfile } from './lib/cpuprofile.ts';

const MiB = 1024 * 1024;
const checkout = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    corpus: { type: 'string', default: 'big' },
    compression: { type: 'string', default: 'off' },
    top: { type: 'string', default: '15' },
    out: { type: 'string' },
    folded: { type: 'string' },
    summarize: { type: 'string' },
    cli: { type: 'string' },
  },
});
// The build under test, <package root>/dist/cli/main.js; file locations print relative to its root.
const cli = resolve(opts.cli ?? join(checkout, 'dist', 'cli', 'main.js'));
const repoRoot = opts.cli ? dirname(dirname(dirname(cli))) : checkout;
const top = Number(opts.top);
const root = process.env.STOWAGE_BENCH_DIR || '/tmp/stowage-bench';

function profileFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => join(path, f));
}

function report(files: string[]): void {
  if (files.length === 0) throw new Error('no .cpuprofile files found');
  const threads: ThreadProfile[] = files.map((f) => analyzeProfile(f, [repoRoot, checkout]));
  const busy = threads.reduce((s, t) => s + t.busyMs, 0);
  console.log('| thread | span s | busy s | busy % |\n|---|---:|---:|---:|');
  for (const t of threads) {
    console.log(`| ${t.thread} | ${(t.spanMs / 1000).toFixed(2)} | ${(t.busyMs / 1000).toFixed(2)} | ${((100 * t.busyMs) / t.spanMs).toFixed(0)} |`);
  }
  console.log(`\nTop ${top} functions by self time, all threads (${(busy / 1000).toFixed(2)} s busy; idle excluded):\n`);
  console.log(topSelfTable(combine(threads), busy, top));
  for (const t of threads) {
    const fns = t.functions.filter((f) => f.name !== '(idle)').sort((a, b) => b.selfMs - a.selfMs);
    console.log(`\n${t.thread}: top 5 — ${fns.slice(0, 5).map((f) => `${f.name} ${f.selfMs.toFixed(0)} ms`).join(', ')}`);
  }
  if (opts.folded) {
    writeFileSync(opts.folded, foldedText(threads));
    console.log(`\nfolded stacks written to ${opts.folded}`);
  }
}

function profileBackup(): void {
  if (!existsSync(cli)) throw new Error(`${cli} is missing; run "npm run build" first`);
  if (opts.corpus !== 'big' && opts.corpus !== 'small') throw new Error(`--corpus is big or small, got ${opts.corpus}`);
  const shape = opts.corpus === 'big' ? (opts.quick ? QUICK_BIG : FULL_BIG) : opts.quick ? QUICK_SMALL : FULL_SMALL;
  const corpus = ensureCorpus(join(root, 'corpus'), shape, (s) => console.error(s));
  const work = join(root, 'profile');
  const repo = join(work, 'repo');
  const out = opts.out ?? join(work, 'cpuprofile');
  rmSync(repo, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const env = { ...process.env, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'stowage-bench' };
  const init = spawnSync(process.execPath, [cli, 'init', '-q'], { env, stdio: 'inherit' });
  if (init.status !== 0) throw new Error(`stowage init failed with exit ${init.status}`);
  const args = ['--cpu-prof', `--cpu-prof-dir=${out}`, cli, 'backup', corpus.path, '--compression', opts.compression!];
  console.error(`node ${args.join(' ')}`);
  const t0 = performance.now();
  const run = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const wall = (performance.now() - t0) / 1000;
  if (run.status !== 0) throw new Error(`stowage backup failed with exit ${run.status}`);
  console.log(`\n## CPU profile: stowage backup ${corpus.name} --compression ${opts.compression}\n`);
  console.log(`wall ${wall.toFixed(2)} s (profiling adds some overhead), ${(corpus.bytes / MiB / wall).toFixed(0)} MiB/s; profiles in ${out}\n`);
  report(profileFiles(out));
  rmSync(repo, { recursive: true, force: true });
}

if (opts.summarize) report(profileFiles(opts.summarize));
else profileBackup();
