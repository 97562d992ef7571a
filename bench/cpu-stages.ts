// CPU seconds per GiB, per stage, against the floor of each primitive (issue 17, item 4).
//
//   npx node bench/cpu-stages.ts primitives [--mib 256]          each primitive alone, this Node, one thread
//   npx node bench/cpu-stages.ts backup --compression auto|off   first backup of the big corpus, by stage
//   npx node bench/cpu-stages.ts restore                          its restore (of the last --compression off backup)
//   npx node bench/cpu-stages.ts all                              the three, then one table
//   --cli DIST/cli/main.js  another build   --runs N  repeat each command (the median by CPU)   --json FILE
//
// A command runs under `node --cpu-prof` (one profile per thread, workers included) while this
// process reads /proc/<pid>/task/*/stat every 20 ms: each thread's own user+system CPU, by kind
// (MainThread, WorkerThread = file or decode workers, V8Worker = V8's helpers: concurrent GC
// marking and compiling, libuv-worker = the thread pool: async file system calls). The total is
// GNU time's (user + system of the whole process). A thread's CPU is then split by stage in the
// proportions of its profile's samples, each sample put in the stage of the first frame, leaf
// first, that names one (see STAGES); samples in `(idle)` and in Atomics.wait are not CPU and are
// left out of the proportions. What the profile cannot see — the thread pool, V8's helper threads
// — is its own row.
//
// The primitives are measured alone on the corpus's first file (incompressible, like the corpus)
// read into memory, with process.threadCpuUsage(): the least any implementation in this Node
// pays for that step per GiB.
import { spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureCorpus, FULL_BIG } from './corpus.ts';
import { readProfile, type CallFrame } from './lib/cpuprofile.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const checkout = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    compression: { type: 'string', default: 'auto' },
    cli: { type: 'string' },
    mib: { type: 'string', default: '256' },
    runs: { type: 'string', default: '1' },
    json: { type: 'string' },
    work: { type: 'string', default: '/tmp/cpu-stages' },
    keep: { type: 'boolean', default: false },
  },
});
const cli = resolve(opts.cli ?? join(checkout, 'dist', 'cli', 'main.js'));
const root = process.env.STOWAGE_BENCH_DIR || '/tmp/stowage-bench';
const work = resolve(opts.work!);
const runs = Math.max(1, Number(opts.runs));

// ---------------------------------------------------------------- primitives

interface Primitive {
  name: string;
  /** CPU seconds per GiB of input, one thread. */
  cpuPerGiB: number;
}

async function primitives(): Promise<Primitive[]> {
  const { Chunker } = await import('../src/snapshot/engine/chunker.ts');
  const { ZstdEncoder } = await import('../src/repository/zstd-encoder.ts');
  const { poly1305, workspace } = await import('../src/repository/poly1305.ts');
  const { sealInto, openInto, randomKey } = await import('../src/repository/crypto.ts');
  const corpus = ensureCorpus(join(root, 'corpus'), FULL_BIG, (s) => console.error(s));
  const size = Math.min(128, Number(opts.mib)) * MiB;
  const first = readdirSync(corpus.path).sort()[0]!;
  const data = new Uint8Array(size);
  const fd0 = openSync(join(corpus.path, first), 'r');
  readSync(fd0, data, 0, size, 0);
  closeSync(fd0);
  // Chunks as restic cuts them: 1 MiB on average; 1 MiB pieces stand for them.
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < size; i += MiB) pieces.push(data.subarray(i, i + MiB));
  const out: Primitive[] = [];
  const measure = (name: string, fn: () => void, bytes = size) => {
    fn(); // warm up
    const best: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = process.threadCpuUsage();
      fn();
      const t = process.threadCpuUsage(t0);
      best.push((t.user + t.system) / 1e6);
    }
    const cpu = Math.min(...best);
    out.push({ name, cpuPerGiB: (cpu * GiB) / bytes });
    console.error(`${name}: ${((cpu * GiB) / bytes).toFixed(3)} CPU-s/GiB`);
  };
  const key = randomKey();
  const ws = workspace(MiB + 64);
  const iv = randomBytes(16);
  const target = Buffer.allocUnsafeSlow(MiB);

  measure('read (readSync 1 MiB, page cache)', () => {
    const fd = openSync(join(corpus.path, first), 'r');
    const b = Buffer.allocUnsafeSlow(MiB);
    for (let o = 0; o < size; o += MiB) readSync(fd, b, 0, MiB, o);
    closeSync(fd);
  });
  const chunker = new Chunker(0x3da3358b4dc173n);
  measure('chunker (wasm)', () => {
    chunker.reset();
    for (const p of pieces) for (let at = chunker.next(p); at >= 0; at = chunker.next(p, at));
  });
  measure('SHA-256 (node:crypto)', () => {
    for (const p of pieces) createHash('sha256').update(p).digest();
  });
  measure('AES-256-CTR (cipher.update, output allocated)', () => {
    for (const p of pieces) createCipheriv('aes-256-ctr', key.encrypt, iv).update(p);
  });
  measure('AES-256-CTR, output copied into place (crypto.ts)', () => {
    for (const p of pieces) {
      const c = createCipheriv('aes-256-ctr', key.encrypt, iv);
      for (let i = 0; i < p.length; i += 256 * 1024) target.set(c.update(p.subarray(i, i + 256 * 1024)), i);
    }
  });
  measure('Poly1305 (wasm, in its memory)', () => {
    const s = new Uint8Array(16);
    for (const p of pieces) {
      ws.set(p.subarray(0, 64)); // the message already lies in the module's memory
      poly1305(ws.subarray(0, p.length), key.macR, s);
    }
  });
  measure('seal = AES-CTR + Poly1305 (sealInto, into wasm memory)', () => {
    for (const p of pieces) sealInto(key, p, ws.subarray(0, p.length + 32));
  });
  const sealed = Buffer.allocUnsafeSlow(MiB + 32);
  sealInto(key, pieces[0]!, sealed);
  measure('open = Poly1305 + AES-CTR (openInto)', () => {
    for (let i = 0; i < pieces.length; i++) openInto(key, sealed, target);
  });
  const enc = new ZstdEncoder('auto');
  measure('zstd level 3 (auto), incompressible input', () => {
    for (const p of pieces) enc.compress(p);
  });
  // Text compresses: zstd's real work, for the small corpus's half.
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  const text = Buffer.from(Array.from({ length: 260000 }, (_, i) => words[(i * 7919) % 10]).join(' ')).subarray(0, MiB);
  measure('zstd level 3 (auto), text', () => {
    for (let i = 0; i < 64; i++) enc.compress(text);
  }, 64 * MiB);
  measure('memcpy (TypedArray.set, 1 MiB)', () => {
    for (const p of pieces) target.set(p);
  });
  mkdirSync(work, { recursive: true });
  const wpath = join(work, 'primitive-write');
  measure('write (writeSync 1 MiB to a new file)', () => {
    const fd = openSync(wpath, 'w');
    for (const p of pieces) writeSync(fd, p);
    closeSync(fd);
    rmSync(wpath);
  });
  measure('structured clone / postMessage copy: n/a', () => undefined, size);
  out.pop();
  return out;
}

// ---------------------------------------------------------------- commands under --cpu-prof

interface ThreadCpu {
  comm: string;
  ticks: number;
}

/** user+system ticks of each thread of pid, by thread id. */
function readTasks(pid: number, into: Map<number, ThreadCpu>): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return;
  }
  for (const t of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'latin1');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
      const prev = into.get(Number(t));
      if (!prev || ticks >= prev.ticks) into.set(Number(t), { comm, ticks });
    } catch {
      // the thread ended between the listing and the read
    }
  }
}

interface CommandRun {
  wall: number;
  /** user+system of the whole process (GNU time). */
  cpu: number;
  maxRssMiB: number;
  /** CPU seconds by thread kind, from /proc. */
  kinds: Record<string, number>;
  profiles: string;
}

async function runProfiled(args: string[], env: NodeJS.ProcessEnv, profDir: string): Promise<CommandRun> {
  rmSync(profDir, { recursive: true, force: true });
  mkdirSync(profDir, { recursive: true });
  const timeFile = join(work, 'time.out');
  const child = spawn('/usr/bin/time', ['-o', timeFile, '-f', '%U %S %e %M', process.execPath, '--cpu-prof', `--cpu-prof-dir=${profDir}`, cli, ...args], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const tasks = new Map<number, ThreadCpu>();
  let nodePid: number | undefined;
  const poll = setInterval(() => {
    if (nodePid === undefined) {
      try {
        const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'latin1').trim();
        if (kids) nodePid = Number(kids.split(' ')[0]);
      } catch {
        return;
      }
    }
    if (nodePid !== undefined) readTasks(nodePid, tasks);
  }, 20);
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  clearInterval(poll);
  if (code !== 0) throw new Error(`stowage ${args.join(' ')} failed with exit ${code}`);
  const [u, s, e, m] = readFileSync(timeFile, 'latin1').trim().split('\n').pop()!.split(' ').map(Number);
  const kinds: Record<string, number> = {};
  for (const t of tasks.values()) {
    if (process.env.CPU_STAGES_DEBUG) console.error(t.comm, t.ticks);
    const kind = t.comm === 'MainThread' || t.comm === 'node' ? 'main thread' : t.comm === 'WorkerThread' ? 'workers' : t.comm.startsWith('v8:Prof') ? 'the profiler\'s own thread (--cpu-prof only)' : t.comm.startsWith('V8') ? 'V8 helper threads' : t.comm.startsWith('libuv') ? 'libuv thread pool' : 'other threads';
    kinds[kind] = (kinds[kind] ?? 0) + t.ticks / 100;
  }
  return { wall: e!, cpu: u! + s!, maxRssMiB: m! / 1024, kinds, profiles: profDir };
}

// ---------------------------------------------------------------- stages from profiles

/**
 * Stage of a sample: the first rule, leaf to root, that a frame matches. Hashing is told apart
 * by who asked: a pack's SHA-256 (its name) is under pack.ts or the restore's pack check.
 */
function stageOf(stack: CallFrame[]): string {
  const leaf = stack[0]!;
  if (leaf.functionName === '(idle)') return 'idle';
  if (leaf.functionName === '(garbage collector)') return 'GC (on the thread)';
  if (leaf.functionName === '(program)') return 'V8 / native, unattributed';
  const under = (re: RegExp) => stack.some((f) => re.test(f.url));
  // Sources are .ts under node, .js in dist.
  const is = (u: string, file: string) => u.endsWith(`/${file}.ts`) || u.endsWith(`/${file}.js`);
  for (const f of stack) {
    const n = f.functionName;
    const u = f.url;
    // Atomics.wait is a builtin: its blocked time shows as the self time of the worker's allocate.
    if ((n === 'wait' && u === '') || (n === 'allocate' && is(u, 'snapshot/engine/file-worker'))) return 'waiting (Atomics.wait)';
    if (u === 'node:internal/crypto/hash' || n === 'sha256hex' || n === 'sha256Hex') return under(/\/repository\/(pack|repository)\.[jt]s$/) || under(/\/restore\/contents\.[jt]s$/) ? 'SHA-256 of packs' : 'SHA-256 of blobs';
    if (is(u, 'repository/poly1305')) return 'Poly1305';
    if (u === 'node:internal/crypto/cipher' || (n === 'ctr' && is(u, 'repository/crypto'))) return 'AES-256-CTR (with its copy out)';
    if (is(u, 'snapshot/engine/chunker')) return 'chunker';
    if (is(u, 'repository/zstd-encoder') || is(u, 'repository/zstd-decoder') || is(u, 'repository/compression') || n === 'inflate' || n === 'zstdDecompressSync') return 'zstd';
    if (n === 'readSync' || n === 'readFully' || (u === 'node:internal/fs/promises' && /read/i.test(n))) return 'read (syscalls)';
    if (n === 'writeSync' || n === 'writeAll' || (u === 'node:internal/fs/promises' && /write/i.test(n))) return 'write (syscalls)';
    if (n === 'postMessage' || u === 'node:internal/worker/io' || u === 'node:internal/worker' || n === 'emitMessage') return 'messages';
    // Our own code that no rule names: its own time, not its callers' (a worker's whole batch
    // runs under its message handler).
    if (/\/(src|dist)\//.test(u)) break;
  }
  // Left: the leaf's own JS, by where it is.
  const js = stack.find((f) => f.url && !f.url.startsWith('wasm://'));
  if (!js) return 'other native';
  if (js.url.startsWith('node:')) return `node internals (${js.url.replace(/^node:internal\//, '')})`;
  const file = js.url.replace(/^.*\/(src|dist)\//, '');
  return `JS: ${file.replace(/\.js$/, '.ts')} ${js.functionName || '(anonymous)'}`;
}

/** Sampled milliseconds per stage of one profile. */
function stageTimes(file: string): Map<string, number> {
  const { profile: p, byId, parent } = readProfile(file);
  const stageById = new Map<number, string>();
  const stage = (id: number): string => {
    let s = stageById.get(id);
    if (s === undefined) {
      const stack: CallFrame[] = [];
      for (let i: number | undefined = id; i !== undefined; i = parent.get(i)) stack.push(byId.get(i)!.callFrame);
      stageById.set(id, (s = stageOf(stack)));
    }
    return s;
  };
  const out = new Map<string, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  // Sample i lasts until sample i+1.
  for (let i = 0; i < samples.length; i++) {
    const ms = (i + 1 < deltas.length ? deltas[i + 1]! : 0) / 1000;
    const s = stage(samples[i]!);
    out.set(s, (out.get(s) ?? 0) + ms);
  }
  return out;
}

/** CPU seconds per stage: each thread kind's CPU split as its profiles' busy samples are. */
function stagesOf(run: CommandRun): Map<string, number> {
  const files = readdirSync(run.profiles).filter((f) => f.endsWith('.cpuprofile'));
  const byKind = new Map<string, Map<string, number>>();
  for (const f of files) {
    const m = /^CPU\.\d+\.\d+\.\d+\.(\d+)\.\d+\.cpuprofile$/.exec(f);
    const kind = m?.[1] === '0' ? 'main thread' : 'workers';
    const acc = byKind.get(kind) ?? new Map<string, number>();
    for (const [s, ms] of stageTimes(join(run.profiles, f))) acc.set(s, (acc.get(s) ?? 0) + ms);
    byKind.set(kind, acc);
  }
  const out = new Map<string, number>();
  const add = (k: string, v: number) => out.set(k, (out.get(k) ?? 0) + v);
  for (const [kind, acc] of byKind) {
    let busy = 0;
    for (const [s, ms] of acc) if (s !== 'idle' && !s.startsWith('waiting')) busy += ms;
    const cpu = run.kinds[kind] ?? 0;
    for (const [s, ms] of acc) {
      if (s === 'idle' || s.startsWith('waiting')) continue;
      add(`${kind}: ${s}`, (cpu * ms) / busy);
    }
  }
  for (const [kind, cpu] of Object.entries(run.kinds)) if (!byKind.has(kind)) add(kind, cpu);
  const seen = Object.values(run.kinds).reduce((a, b) => a + b, 0);
  add('not seen per thread (threads ended between reads)', Math.max(0, run.cpu - seen));
  return out;
}

// ---------------------------------------------------------------- the commands

const env = (repo: string): NodeJS.ProcessEnv => ({ ...process.env, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'stowage-bench' });

interface StageReport {
  label: string;
  bytes: number;
  run: CommandRun;
  stages: Map<string, number>;
}

function median<T>(xs: T[], by: (x: T) => number): T {
  return [...xs].sort((a, b) => by(a) - by(b))[xs.length >> 1]!;
}

async function backup(compression: string, keepRepo?: string): Promise<StageReport> {
  const corpus = ensureCorpus(join(root, 'corpus'), FULL_BIG, (s) => console.error(s));
  const repo = keepRepo ?? join(work, `repo-${compression}`);
  const reports: StageReport[] = [];
  for (let r = 0; r < runs; r++) {
    rmSync(repo, { recursive: true, force: true });
    const init = spawn(process.execPath, [cli, 'init', '-q'], { env: env(repo), stdio: 'inherit' });
    if ((await new Promise((res) => init.on('exit', res))) !== 0) throw new Error('stowage init failed');
    const run = await runProfiled(['backup', corpus.path, '--compression', compression, '--no-cache', '-q'], env(repo), join(work, `prof-backup-${compression}`));
    console.error(`backup ${compression}: wall ${run.wall} s, CPU ${run.cpu.toFixed(2)} s, ${JSON.stringify(run.kinds)}`);
    reports.push({ label: `first backup, 1 GiB, --compression ${compression}`, bytes: corpus.bytes, run, stages: stagesOf(run) });
  }
  return median(reports, (x) => x.run.cpu);
}

async function restore(repo: string): Promise<StageReport> {
  const corpus = ensureCorpus(join(root, 'corpus'), FULL_BIG, (s) => console.error(s));
  const target = join(work, 'target');
  const reports: StageReport[] = [];
  for (let r = 0; r < runs; r++) {
    rmSync(target, { recursive: true, force: true });
    const run = await runProfiled(['restore', 'latest', '--target', target, '--no-cache', '-q'], env(repo), join(work, 'prof-restore'));
    rmSync(target, { recursive: true, force: true });
    console.error(`restore: wall ${run.wall} s, CPU ${run.cpu.toFixed(2)} s, ${JSON.stringify(run.kinds)}`);
    reports.push({ label: 'restore, 1 GiB (of the --compression off backup)', bytes: corpus.bytes, run, stages: stagesOf(run) });
  }
  return median(reports, (x) => x.run.cpu);
}

function printReport(r: StageReport): void {
  const per = GiB / r.bytes;
  console.log(`\n### ${r.label}\n`);
  console.log(`wall ${r.run.wall.toFixed(2)} s, CPU ${r.run.cpu.toFixed(2)} s (user+sys, GNU time) = **${(r.run.cpu * per).toFixed(2)} CPU-s/GiB**, peak RSS ${r.run.maxRssMiB.toFixed(0)} MiB`);
  console.log(`by thread kind (CPU-s/GiB): ${Object.entries(r.run.kinds).map(([k, v]) => `${k} ${(v * per).toFixed(2)}`).join(', ')}\n`);
  console.log('| stage | CPU-s/GiB |\n|---|---:|');
  for (const [s, v] of [...r.stages].sort((a, b) => b[1] - a[1])) if (v * per >= 0.005) console.log(`| ${s} | ${(v * per).toFixed(2)} |`);
}

const what = positionals[0] ?? 'all';
const results: { primitives?: Primitive[]; reports: StageReport[] } = { reports: [] };
if (what === 'primitives' || what === 'all') {
  results.primitives = await primitives();
  console.log('\n### Primitives alone (one thread, this Node)\n\n| primitive | CPU-s/GiB |\n|---|---:|');
  for (const p of results.primitives) console.log(`| ${p.name} | ${p.cpuPerGiB.toFixed(3)} |`);
}
if (!existsSync(cli) && what !== 'primitives') throw new Error(`${cli} is missing; run "npm run build" first`);
if (what === 'backup') results.reports.push(await backup(opts.compression!));
if (what === 'restore') results.reports.push(await restore(join(work, 'repo-off')));
if (what === 'all') {
  results.reports.push(await backup('auto'));
  if (!opts.keep) rmSync(join(work, 'repo-auto'), { recursive: true, force: true });
  results.reports.push(await backup('off'));
  results.reports.push(await restore(join(work, 'repo-off')));
}
for (const r of results.reports) printReport(r);
if (opts.json) writeFileSync(opts.json, JSON.stringify({ primitives: results.primitives, reports: results.reports.map((r) => ({ ...r, stages: Object.fromEntries(r.stages) })) }, null, 2));
if (what === 'all' && !opts.keep) rmSync(work, { recursive: true, force: true });
