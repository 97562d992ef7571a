// Master index memory and speed, in two modes.
//
// Synthetic (default): loads N synthetic index entries (random IDs, ~16 blobs per pack, half of
// them compressed) the way loadIndex does (addPack in bulk, then one compact), then measures bytes
// per blob (the index's own figure and the process's heap/external/RSS growth), the load time, and
// the time for 1M lookups of stored blobs and 1M of absent ones.
//
// --repo: the real path. Writes index files of 50 000 blobs each into a v2 repository on a
// MemoryBackend, then times Repository.loadIndex over them and, in a second pass over the same
// files, each of its steps on its own: load + verify + decrypt + decompress, JSON.parse, the rest
// of decodeIndexFile, addPack, compact.
//
// Targets (perf issue): at most 40 bytes per blob, 5M entries loaded in under 2 s.
// Times are wall clock and, in parentheses, this process's CPU time (user + system): on a busy
// machine the CPU time is the steadier figure.
// Run: cd /work/main && npx node --expose-gc bench/index-memory.ts [entries] [blobsPerPack]
//      cd /work/main && npx node --expose-gc bench/index-memory.ts --repo [entries]
//      npx node bench/index-memory.ts --json --dist /path/to/dist   (what `npm run bench` runs)
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { MasterIndex } from '../src/repository/master-index.ts';
import type { IndexPack } from '../src/repository/index-file.ts';
import type { BlobId, PackId } from '../src/repository/id.ts';
import type { PackedBlob } from '../src/repository/pack.ts';

const { values: opts, positionals } = parseArgs({
  options: {
    repo: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    dist: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  allowPositionals: true,
});

if (opts.help) {
  process.stdout.write(
    'Usage: npx node bench/index-memory.ts [--repo] [--json] [--dist DIR] [entries] [blobsPerPack]\n' +
      '  entries        index entries to load (default 5000000)\n' +
      '  blobsPerPack   average blobs per synthetic pack (default 16)\n' +
      '  --repo         the real path: index files in a MemoryBackend repository, Repository.loadIndex\n' +
      '  --json         synthetic mode only: print the figures as one JSON object on stdout\n' +
      '  --dist DIR     measure a build: load the modules from DIR (a dist/ directory) instead of src/\n',
  );
  process.exit(0);
}

// Heap figures need an explicit GC; re-run with --expose-gc when it was not given.
if (typeof globalThis.gc !== 'function') {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const gc = globalThis.gc as () => void;

const REPO_MODE = opts.repo;
if (REPO_MODE && opts.json) throw new Error('--json is for the synthetic mode only');
const ENTRIES = Number(positionals[0] ?? 5_000_000);
const PER_PACK = Number(positionals[1] ?? 16);
if (!Number.isInteger(ENTRIES) || ENTRIES < 1 || !Number.isInteger(PER_PACK) || PER_PACK < 5) {
  throw new Error(`expected [entries ≥ 1] [blobsPerPack ≥ 5], got ${JSON.stringify(positionals)}`);
}
const LOOKUPS = 1_000_000;
const BATCH_PACKS = 10_000;
const FILE_BLOBS = 50_000;

// The code under test: this checkout's sources, or with --dist a build (npm run bench passes the
// copy of dist it measures, so a rebuild or an edit in src/ during the run changes nothing).
const moduleUrl = (rel: string) => (opts.dist ? pathToFileURL(join(opts.dist, `${rel}.js`)).href : new URL(`../src/${rel}.ts`, import.meta.url).href);
const { MasterIndex: MasterIndexClass } = (await import(moduleUrl('repository/master-index'))) as typeof import('../src/repository/master-index.ts');
const { decodeIndexFile, encodeIndexFile } = (await import(moduleUrl('repository/index-file'))) as typeof import('../src/repository/index-file.ts');
const { Repository } = (await import(moduleUrl('repository/repository'))) as typeof import('../src/repository/repository.ts');
const { MemoryBackend } = (await import(moduleUrl('backend/memory'))) as typeof import('../src/backend/memory.ts');

/** Up to `packs` packs with random IDs, holding at most `remaining` blobs in all. */
function makeBatch(packs: number, remaining: number): { batch: IndexPack[]; blobs: number } {
  const batch: IndexPack[] = [];
  let blobs = 0;
  for (let p = 0; p < packs && blobs < remaining; p++) {
    // ~16 per pack: 12..20, so packs differ like real ones.
    const n = Math.min(remaining - blobs, PER_PACK - 4 + Math.floor(Math.random() * 9));
    const ids = randomBytes(32 * n);
    const list: PackedBlob[] = [];
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const length = 32 + Math.floor(Math.random() * 4_000_000);
      // One flat string per ID, like JSON.parse makes (not slices of one long string).
      const id = ids.toString('hex', i * 32, i * 32 + 32) as BlobId;
      list.push({ type: i === 0 ? 'tree' : 'data', id, offset, length, uncompressedLength: i % 2 ? length + 100 : 0 });
      offset += length;
    }
    batch.push({ id: randomBytes(32).toString('hex') as PackId, blobs: list });
    blobs += n;
  }
  return { batch, blobs };
}

function mem() {
  gc();
  gc();
  const m = process.memoryUsage();
  // `external` includes the typed arrays' backing stores (arrayBuffers is a part of it).
  return { heap: m.heapUsed, external: m.external, rss: m.rss };
}

const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;

/** Wall and CPU time of what runs between start() and the returned function's call, in ms. */
function clock(): () => { wall: number; cpu: number } {
  const w0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const c = process.cpuUsage(c0);
    return { wall: performance.now() - w0, cpu: (c.user + c.system) / 1000 };
  };
}
type Time = { wall: number; cpu: number };
const add = (a: Time, b: Time): Time => ({ wall: a.wall + b.wall, cpu: a.cpu + b.cpu });
const ZERO: Time = { wall: 0, cpu: 0 };
const secs = (t: Time) => `${(t.wall / 1000).toFixed(2)} s (cpu ${(t.cpu / 1000).toFixed(2)} s)`;

function print(title: string, rows: Array<[string, string]>): void {
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(title);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
}

interface Lookups {
  hits: Time;
  misses: Time;
  has: Time;
}

/** Times 1M lookups of stored IDs (from `sample`) and 1M of random ones; checks every answer. */
function timeLookups(index: MasterIndex, sample: Buffer, sampled: number): Lookups {
  const hits: BlobId[] = [];
  for (let i = 0; i < LOOKUPS; i++) hits.push(sample.toString('hex', 32 * (i % sampled), 32 * (i % sampled) + 32) as BlobId);
  const misses: BlobId[] = [];
  for (let i = 0; i < LOOKUPS; i++) misses.push(randomBytes(32).toString('hex') as BlobId);

  let found = 0;
  let t = clock();
  for (const id of hits) found += index.lookup(id).length;
  const hitTime = t();
  let absent = 0;
  t = clock();
  for (const id of misses) absent += index.lookup(id).length;
  const missTime = t();
  let has = 0;
  t = clock();
  for (const id of hits) if (index.has(id, 'data') || index.has(id, 'tree')) has++;
  const hasTime = t();
  if (found < LOOKUPS || has < LOOKUPS || absent !== 0) throw new Error(`lookup mismatch: ${found} found, ${has} has, ${absent} absent found`);
  return { hits: hitTime, misses: missTime, has: hasTime };
}

function lookupRows(l: Lookups): Array<[string, string]> {
  const each = (x: Time) => `${secs(x)}, ${((x.wall * 1e6) / LOOKUPS).toFixed(0)} ns each`;
  return [
    [`${LOOKUPS.toLocaleString('en')} lookups, hits`, each(l.hits)],
    [`${LOOKUPS.toLocaleString('en')} lookups, misses`, each(l.misses)],
    [`${LOOKUPS.toLocaleString('en')} has(id, type), hits`, each(l.has)],
  ];
}

async function synthetic(): Promise<void> {
  // The lookup sample lives in one Buffer allocated before the baseline, so it is not counted.
  const SAMPLE_EVERY = Math.max(1, Math.floor(ENTRIES / LOOKUPS));
  const sample = Buffer.alloc(32 * Math.ceil(ENTRIES / SAMPLE_EVERY));
  let sampled = 0;

  const before = mem();
  const peakRss0 = process.resourceUsage().maxRSS * 1024;
  const index = new MasterIndexClass();
  let added = 0;
  let addTime = ZERO;
  let genMs = 0;
  let seen = 0;
  while (added < ENTRIES) {
    const g0 = performance.now();
    const { batch, blobs } = makeBatch(BATCH_PACKS, ENTRIES - added);
    genMs += performance.now() - g0;
    const t = clock();
    for (const p of batch) index.addPack(p, false);
    addTime = add(addTime, t());
    for (const p of batch) {
      for (const b of p.blobs) {
        if (seen++ % SAMPLE_EVERY === 0 && sampled * 32 < sample.length) sample.write(b.id, 32 * sampled++, 'hex');
      }
    }
    added += blobs;
  }
  const t = clock();
  index.compact();
  const compactTime = t();
  const after = mem();
  const peakRss = process.resourceUsage().maxRSS * 1024;

  const count = index.size;
  const load = add(addTime, compactTime);
  const lookups = timeLookups(index, sample, sampled);
  if (opts.json) {
    // For `npm run bench`: bytes per blob and seconds, nothing formatted.
    const perBlob = (bytes: number) => bytes / count;
    const seconds = (x: Time) => ({ wallSeconds: x.wall / 1000, cpuSeconds: x.cpu / 1000 });
    const result = {
      node: process.version,
      entries: count,
      packs: index.packCount,
      blobsPerPack: PER_PACK,
      indexBytesPerBlob: perBlob(index.memoryBytes()),
      heapGrowthPerBlob: perBlob(after.heap - before.heap),
      externalGrowthPerBlob: perBlob(after.external - before.external),
      rssGrowthPerBlob: perBlob(after.rss - before.rss),
      peakRssGrowthMiB: (peakRss - peakRss0) / 1024 / 1024,
      load: seconds(load),
      addPack: seconds(addTime),
      compact: seconds(compactTime),
      lookupNs: { hits: (lookups.hits.wall * 1e6) / LOOKUPS, misses: (lookups.misses.wall * 1e6) / LOOKUPS, has: (lookups.has.wall * 1e6) / LOOKUPS },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  print(`master index, ${ENTRIES.toLocaleString('en')} synthetic entries, ~${PER_PACK} blobs per pack (Node ${process.version})`, [
    ['entries', `${count.toLocaleString('en')} in ${index.packCount.toLocaleString('en')} packs`],
    ['index memoryBytes() / blob', `${(index.memoryBytes() / count).toFixed(1)} B (${mib(index.memoryBytes())}; target ≤ 40)`],
    ['JS heap growth / blob', `${((after.heap - before.heap) / count).toFixed(1)} B`],
    ['external (typed arrays) growth / blob', `${((after.external - before.external) / count).toFixed(1)} B`],
    ['RSS growth / blob (after GC)', `${((after.rss - before.rss) / count).toFixed(1)} B (${mib(after.rss - before.rss)})`],
    ['peak RSS growth while loading', mib(peakRss - peakRss0)],
    ['load: addPack (bulk)', secs(addTime)],
    ['load: compact', secs(compactTime)],
    ['load total', `${secs(load)} (target < 2 s for 5M)`],
    ['(generating the synthetic packs)', `${(genMs / 1000).toFixed(2)} s, not counted`],
    ...lookupRows(lookups),
  ]);
}

async function realPath(): Promise<void> {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, { password: 'bench', kdf: { N: 1024, r: 8, p: 1 } });
  const SAMPLE_EVERY = Math.max(1, Math.floor(ENTRIES / LOOKUPS));
  const sample = Buffer.alloc(32 * Math.ceil(ENTRIES / SAMPLE_EVERY));
  let sampled = 0;
  let seen = 0;
  let written = 0;
  let files = 0;
  let jsonBytes = 0;
  let storedBytes = 0;
  process.stderr.write('writing index files');
  while (written < ENTRIES) {
    const { batch, blobs } = makeBatch(Math.ceil(FILE_BLOBS / (PER_PACK - 1)), Math.min(FILE_BLOBS, ENTRIES - written));
    for (const p of batch) {
      for (const b of p.blobs) if (seen++ % SAMPLE_EVERY === 0 && sampled * 32 < sample.length) sample.write(b.id, 32 * sampled++, 'hex');
    }
    const json = encodeIndexFile(batch);
    jsonBytes += json.length;
    const id = await repo.saveUnpacked('index', json);
    storedBytes += (await backend.stat({ type: 'index', name: id })).size;
    written += blobs;
    if (++files % 10 === 0) process.stderr.write('.');
  }
  process.stderr.write('\n');

  // 1. Repository.loadIndex as it is used.
  const before = mem();
  let t = clock();
  const indexed = await repo.loadIndex();
  const loadTime = t();
  const after = mem();
  const count = indexed.index.size;
  const lookups = timeLookups(indexed.index, sample, sampled);
  const indexBytes = indexed.index.memoryBytes();

  // 2. The same files again, one step at a time.
  const ids: string[] = [];
  for await (const id of repo.listIds('index')) ids.push(id);
  let readTime = ZERO;
  let parseTime = ZERO;
  let decodeTime = ZERO;
  let addTime = ZERO;
  const index = new MasterIndexClass();
  for (const id of ids) {
    t = clock();
    const json = await repo.loadUnpacked('index', id);
    readTime = add(readTime, t());
    t = clock();
    JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'));
    parseTime = add(parseTime, t());
    t = clock();
    const content = decodeIndexFile(json, `index/${id}`);
    decodeTime = add(decodeTime, t());
    t = clock();
    for (const p of content.packs) index.addPack(p, false);
    addTime = add(addTime, t());
  }
  t = clock();
  index.compact();
  const compactTime = t();
  const validate: Time = { wall: decodeTime.wall - parseTime.wall, cpu: decodeTime.cpu - parseTime.cpu };

  const title = `Repository.loadIndex, ${files} index files of ≤ ${FILE_BLOBS.toLocaleString('en')} blobs, ` +
    `${count.toLocaleString('en')} entries (Node ${process.version})`;
  const growth = (after.heap + after.external - before.heap - before.external) / count;
  print(title, [
    ['index files: JSON / stored (zstd + crypto)', `${mib(jsonBytes)} / ${mib(storedBytes)}`],
    ['loadIndex total', secs(loadTime)],
    ['heap + external growth / blob', `${growth.toFixed(1)} B (the index: ${(indexBytes / count).toFixed(1)} B; the rest is mostly indexFiles' pack-ID strings)`],
    ['step by step:', ''],
    ['  load, SHA-256, decrypt, decompress', secs(readTime)],
    ['  JSON.parse', secs(parseTime)],
    ['  decodeIndexFile without its JSON.parse', secs(validate)],
    ['  MasterIndex.addPack', secs(addTime)],
    ['  MasterIndex.compact', secs(compactTime)],
    ...lookupRows(lookups),
  ]);
}

await (REPO_MODE ? realPath() : synthetic());
