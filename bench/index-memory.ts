// Master index memory and speed: loads N synthetic index entries (random IDs, ~16 blobs per
// pack) the way loadIndex does (addPack in bulk, then one compact), then measures bytes per
// blob (the index's own figure and the process's heap/RSS growth), the load time, and the time
// for 1M lookups of stored blobs and 1M of absent ones.
// Targets (perf issue): at most 40 bytes per blob, 5M entries loaded in under 2 s.
// Run: cd /work/main && npx node --expose-gc bench/index-memory.ts [entries] [blobsPerPack]
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { MasterIndex } from '../src/repository/master-index.ts';
import type { IndexPack } from '../src/repository/index-file.ts';
import type { BlobId, PackId } from '../src/repository/id.ts';
import type { PackedBlob } from '../src/repository/pack.ts';

// Heap figures need an explicit GC; re-run with --expose-gc when it was not given.
if (typeof globalThis.gc !== 'function') {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const gc = globalThis.gc as () => void;

const ENTRIES = Number(process.argv[2] ?? 5_000_000);
const PER_PACK = Number(process.argv[3] ?? 16);
const LOOKUPS = 1_000_000;
const BATCH_PACKS = 10_000;

/** Up to `packs` packs with random IDs, holding at most `remaining` blobs in all. */
function makeBatch(packs: number, remaining: number): { batch: IndexPack[]; blobs: number } {
  const batch: IndexPack[] = [];
  let blobs = 0;
  for (let p = 0; p < packs && blobs < remaining; p++) {
    // ~16 per pack: 12..20, so packs differ like real ones.
    const n = Math.min(remaining - blobs, PER_PACK - 4 + Math.floor(Math.random() * 9));
    const ids = randomBytes(32 * n).toString('hex');
    const list: PackedBlob[] = [];
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const length = 32 + Math.floor(Math.random() * 4_000_000);
      list.push({ type: i === 0 ? 'tree' : 'data', id: ids.slice(i * 64, i * 64 + 64) as BlobId, offset, length, uncompressedLength: i % 2 ? length + 100 : 0 });
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

// The lookup sample lives in one Buffer allocated before the baseline, so it is not counted.
const SAMPLE_EVERY = Math.max(1, Math.floor(ENTRIES / LOOKUPS));
const sample = Buffer.alloc(32 * Math.ceil(ENTRIES / SAMPLE_EVERY));
let sampled = 0;

const before = mem();
const peakRss0 = process.resourceUsage().maxRSS * 1024;
const index = new MasterIndex();
let added = 0;
let addMs = 0;
let genMs = 0;
let seen = 0;
while (added < ENTRIES) {
  const g0 = performance.now();
  const { batch, blobs } = makeBatch(BATCH_PACKS, ENTRIES - added);
  genMs += performance.now() - g0;
  const t0 = performance.now();
  for (const p of batch) index.addPack(p, false);
  addMs += performance.now() - t0;
  for (const p of batch) {
    for (const b of p.blobs) {
      if (seen++ % SAMPLE_EVERY === 0 && sampled * 32 < sample.length) sample.write(b.id, 32 * sampled++, 'hex');
    }
  }
  added += blobs;
}
const c0 = performance.now();
index.compact();
const compactMs = performance.now() - c0;
const after = mem();
const peakRss = process.resourceUsage().maxRSS * 1024;

const count = index.size;
const hits: BlobId[] = [];
for (let i = 0; i < LOOKUPS; i++) hits.push(sample.toString('hex', 32 * (i % sampled), 32 * (i % sampled) + 32) as BlobId);
const misses: BlobId[] = [];
for (let i = 0; i < LOOKUPS; i++) misses.push(randomBytes(32).toString('hex') as BlobId);

let found = 0;
const l0 = performance.now();
for (const id of hits) found += index.lookup(id).length;
const hitMs = performance.now() - l0;
let absent = 0;
const m0 = performance.now();
for (const id of misses) absent += index.lookup(id).length;
const missMs = performance.now() - m0;
const h0 = performance.now();
let has = 0;
for (const id of hits) if (index.has(id, 'data') || index.has(id, 'tree')) has++;
const hasMs = performance.now() - h0;
if (found < LOOKUPS || has < LOOKUPS || absent !== 0) throw new Error(`lookup mismatch: ${found} found, ${has} has, ${absent} absent found`);

const rows: Array<[string, string]> = [
  ['entries', `${count.toLocaleString('en')} in ${index.packCount.toLocaleString('en')} packs`],
  ['index memoryBytes() / blob', `${(index.memoryBytes() / count).toFixed(1)} B (${mib(index.memoryBytes())})`],
  ['JS heap growth / blob', `${((after.heap - before.heap) / count).toFixed(1)} B`],
  ['external (typed arrays) growth / blob', `${((after.external - before.external) / count).toFixed(1)} B`],
  ['RSS growth / blob (after GC)', `${((after.rss - before.rss) / count).toFixed(1)} B (${mib(after.rss - before.rss)})`],
  ['peak RSS growth while loading', mib(peakRss - peakRss0)],
  ['load: addPack (bulk)', `${(addMs / 1000).toFixed(2)} s`],
  ['load: compact', `${(compactMs / 1000).toFixed(2)} s`],
  ['load total', `${((addMs + compactMs) / 1000).toFixed(2)} s (target < 2 s for 5M)`],
  ['(generating the synthetic packs)', `${(genMs / 1000).toFixed(2)} s, not counted`],
  [`${LOOKUPS.toLocaleString('en')} lookups, hits`, `${(hitMs / 1000).toFixed(2)} s (${((hitMs * 1e6) / LOOKUPS).toFixed(0)} ns each)`],
  [`${LOOKUPS.toLocaleString('en')} lookups, misses`, `${(missMs / 1000).toFixed(2)} s (${((missMs * 1e6) / LOOKUPS).toFixed(0)} ns each)`],
  [`${LOOKUPS.toLocaleString('en')} has(id, type), hits`, `${(hasMs / 1000).toFixed(2)} s`],
];
const w = Math.max(...rows.map(([k]) => k.length));
console.log(`master index, ${ENTRIES.toLocaleString('en')} synthetic entries, ~${PER_PACK} blobs per pack (Node ${process.version})`);
for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
