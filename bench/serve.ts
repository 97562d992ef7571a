// `node bench/serve.ts [--work DIR] [--files N] [--big-mib N] [--cli dist/cli/main.js]`: the figures the serve issue asks
// for, on a repository restic 0.19 wrote:
//   - time to first byte of a file in an N-file snapshot (default 100 000) through `stowage
//     serve`: the first request after start (cold: snapshot list and trees read) and later ones;
//   - tar throughput of a folder (GET /api/…/tar/…) against `restic dump` of the same folder,
//     for the N small files and for a folder of large files.
// Prints a markdown table; needs a built dist/ (npm run build) and restic 0.19.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { work: { type: 'string', default: '/tmp/stowage-bench-serve' }, files: { type: 'string', default: '100000' }, 'big-mib': { type: 'string', default: '256' }, cli: { type: 'string' } } });
const WORK = values.work!;
const FILES = Number(values.files);
const BIG_MIB = Number(values['big-mib']);
const RESTIC = process.env.STOWAGE_RESTIC_019 ?? '/var/cache/stowage/bin/restic';
const CLI = values.cli ?? fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const env = { ...process.env, RESTIC_REPOSITORY: join(WORK, 'repo'), RESTIC_PASSWORD: 'bench' };
const data = join(WORK, 'data');
const log = (s: string) => process.stderr.write(s + '\n');

function corpus(): void {
  if (existsSync(join(WORK, 'repo', 'config'))) return;
  log(`writing ${FILES} small files and ${BIG_MIB} MiB of large files under ${data}`);
  const perDir = 500;
  for (let d = 0; d * perDir < FILES; d++) {
    const dir = join(data, 'small', `d${String(d).padStart(4, '0')}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < perDir && d * perDir + f < FILES; f++) {
      const seed = createHash('sha256').update(`${d}/${f}`).digest();
      writeFileSync(join(dir, `f${String(f).padStart(5, '0')}.txt`), Buffer.concat(Array.from({ length: 1 + (seed[0]! % 48) }, () => seed)));
    }
  }
  mkdirSync(join(data, 'big'), { recursive: true });
  for (let i = 0; i < 4; i++) {
    const out = join(data, 'big', `blob${i}.bin`);
    spawnSync('sh', ['-c', `head -c ${(BIG_MIB / 4) * 1024 * 1024} /dev/urandom > ${out}`]);
  }
  log('restic init + backup');
  spawnSync(RESTIC, ['init'], { env, stdio: 'ignore' });
  const r = spawnSync(RESTIC, ['backup', '--no-cache', '-q', data], { env, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('restic backup failed');
}

function get(base: string, path: string, headers: Record<string, string> = {}): Promise<{ ttfbMs: number; totalMs: number; bytes: number; status: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    request(base + path, { headers, agent: false }, (res) => {
      let first = -1;
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        if (first < 0) first = performance.now() - t0;
        bytes += d.length;
      });
      res.on('end', () => resolve({ ttfbMs: first < 0 ? performance.now() - t0 : first, totalMs: performance.now() - t0, bytes, status: res.statusCode! }));
    }).on('error', (e) => reject(new Error(`GET ${path}: ${e.message}`))).end();
  });
}

function timed(cmd: string, args: string[]): { ms: number; bytes: number } {
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', `"$0" "$@" | wc -c`, cmd, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return { ms: performance.now() - t0, bytes: Number(r.stdout.trim()) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  corpus();
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, 'serve', '--listen', '127.0.0.1:0', '--json', '--no-cache', '--webdav', '--web'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let base = '';
  for await (const chunk of child.stdout!) {
    const line = String(chunk).split('\n').find((l) => l.includes('"serving"'));
    if (line) {
      base = JSON.parse(line).url;
      break;
    }
  }
  const startMs = performance.now() - t0;
  try {
    const enc = (p: string) => p.split('/').map(encodeURIComponent).join('/');
    const file = (d: number, f: number) => enc(`${data}/small/d${String(d).padStart(4, '0')}/f${String(f).padStart(5, '0')}.txt`);
    const cold = await get(base, `/api/snapshots/latest/file${file(123, 456)}`);
    const warm: number[] = [];
    for (let i = 0; i < 20; i++) warm.push((await get(base, `/api/snapshots/latest/file${file((i * 37) % Math.ceil(FILES / 500), (i * 101) % 500)}`)).ttfbMs);
    const dav: number[] = [];
    for (let i = 0; i < 20; i++) dav.push((await get(base, `/dav/snapshots/latest${file((i * 53) % Math.ceil(FILES / 500), (i * 7) % 500)}`)).ttfbMs);
    const rows: string[] = [];
    rows.push(`| stowage serve start (open + index load) | ${startMs.toFixed(0)} ms |`);
    rows.push(`| TTFB, first request after start (snapshot list + trees) | ${cold.ttfbMs.toFixed(1)} ms |`);
    rows.push(`| TTFB, later requests, API (median of 20 files) | ${median(warm).toFixed(1)} ms |`);
    rows.push(`| TTFB, later requests, WebDAV GET (median of 20 files) | ${median(dav).toFixed(1)} ms |`);
    for (const folder of ['small', 'big']) {
      const tar = await get(base, `/api/snapshots/latest/tar${enc(`${data}/${folder}`)}`);
      const dump = timed(RESTIC, ['dump', '--no-cache', 'latest', `${data}/${folder}`]);
      const snaps = timed(RESTIC, ['snapshots', '--no-cache', '-q']);
      const mibs = (b: number, ms: number) => (b / 1048576 / (ms / 1000)).toFixed(1);
      rows.push(`| tar of ${folder}/ via stowage serve | ${(tar.bytes / 1048576).toFixed(1)} MiB in ${(tar.totalMs / 1000).toFixed(2)} s = ${mibs(tar.bytes, tar.totalMs)} MiB/s |`);
      const zip = await get(base, `/api/snapshots/latest/zip${enc(`${data}/${folder}`)}`);
      rows.push(`| zip of ${folder}/ via stowage serve | ${(zip.bytes / 1048576).toFixed(1)} MiB in ${(zip.totalMs / 1000).toFixed(2)} s = ${mibs(zip.bytes, zip.totalMs)} MiB/s |`);
      rows.push(`| restic 0.19 dump of ${folder}/ (incl. its start, ~${snaps.ms.toFixed(0)} ms for \`restic snapshots\`) | ${(dump.bytes / 1048576).toFixed(1)} MiB in ${(dump.ms / 1000).toFixed(2)} s = ${mibs(dump.bytes, dump.ms)} MiB/s |`);
    }
    process.stdout.write(`\n${FILES} files + ${BIG_MIB} MiB in large files, repository by restic 0.19 on local disk, no cache\n\n| what | figure |\n|---|---|\n${rows.join('\n')}\n`);
  } finally {
    child.kill('SIGINT');
  }
}

await main();
