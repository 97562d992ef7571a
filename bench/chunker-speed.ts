// Chunker throughput on incompressible data: 256 MiB of random bytes fed in 1 MiB buffers, as a
// file reader would. The rate is the effective input rate, MinSize skip included, for each
// engine on the same data and polynomial.
// Run: cd /work/main && npx node bench/chunker-speed.ts [runs] [wasm|js]
import { randomFillSync } from 'node:crypto';
import { Chunker } from '../src/snapshot/engine/chunker.ts';
import type { ChunkerEngine } from '../src/snapshot/engine/chunker.ts';
import { randomPolynomial } from '../src/repository/polynomial.ts';

const TOTAL = 256 * 1024 * 1024;
const BUFFER = 1024 * 1024;
const MiB = TOTAL / (1024 * 1024);
const runs = Number(process.argv[2] ?? 5);
const engines: ChunkerEngine[] = process.argv[3] ? [process.argv[3] as ChunkerEngine] : ['wasm', 'js'];

const data = new Uint8Array(TOTAL);
for (let i = 0; i < TOTAL; i += 1 << 26) randomFillSync(data, i, Math.min(1 << 26, TOTAL - i));
const buffers: Uint8Array[] = [];
for (let i = 0; i < TOTAL; i += BUFFER) buffers.push(data.subarray(i, i + BUFFER));
const polynomial = randomPolynomial();

function chunkOnce(chunker: Chunker): number {
  chunker.reset();
  let chunks = 0;
  for (const buf of buffers) {
    for (let at = chunker.next(buf); at >= 0; at = chunker.next(buf, at)) chunks++;
  }
  return chunks + (chunker.pending > 0 ? 1 : 0);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

for (const engine of engines) {
  const chunker = new Chunker(polynomial, { engine });
  // Wall time is what a backup sees; CPU time is steadier when the machine is shared.
  const wallRates: number[] = [];
  const cpuRates: number[] = [];
  for (let r = 0; r < runs; r++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const chunks = chunkOnce(chunker);
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    wallRates.push(MiB / wall);
    cpuRates.push(MiB / cpuSeconds);
    console.log(
      `${engine} run ${r + 1}: ${chunks} chunks, wall ${wall.toFixed(3)} s (${(MiB / wall).toFixed(0)} MiB/s), ` +
        `cpu ${cpuSeconds.toFixed(3)} s (${(MiB / cpuSeconds).toFixed(0)} MiB/s)`,
    );
  }
  console.log(
    `chunker (${engine}): ${median(wallRates).toFixed(0)} MiB/s wall, ${median(cpuRates).toFixed(0)} MiB/s per CPU second ` +
      `(median of ${runs}; 256 MiB random, 1 MiB buffers, one thread)`,
  );
}
