// Chunker throughput on incompressible data: 256 MiB of random bytes fed in 1 MiB buffers, as a
// file reader would. The rate is the effective input rate, MinSize skip included.
// Run: cd /work/main && npx node bench/chunker-speed.ts [runs]
import { randomFillSync } from 'node:crypto';
import { Chunker } from '../src/snapshot/chunker.ts';
import { randomPolynomial } from '../src/snapshot/polynomial.ts';

const TOTAL = 256 * 1024 * 1024;
const BUFFER = 1024 * 1024;
const runs = Number(process.argv[2] ?? 5);

const data = new Uint8Array(TOTAL);
for (let i = 0; i < TOTAL; i += 1 << 26) randomFillSync(data, i, Math.min(1 << 26, TOTAL - i));
const buffers: Uint8Array[] = [];
for (let i = 0; i < TOTAL; i += BUFFER) buffers.push(data.subarray(i, i + BUFFER));

const chunker = new Chunker(randomPolynomial());

function chunkOnce(): number {
  chunker.reset();
  let chunks = 0;
  for (const buf of buffers) {
    let at = 0;
    for (;;) {
      const end = chunker.next(buf, at);
      if (end < 0) break;
      chunks++;
      at = end;
    }
  }
  return chunks + (chunker.pending > 0 ? 1 : 0);
}

// Wall time is what a backup sees; CPU time is steadier when the machine is shared.
const MiB = TOTAL / (1024 * 1024);
const wallRates: number[] = [];
const cpuRates: number[] = [];
for (let r = 0; r < runs; r++) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const chunks = chunkOnce();
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  wallRates.push(MiB / wall);
  cpuRates.push(MiB / cpuSeconds);
  console.log(
    `run ${r + 1}: ${chunks} chunks, wall ${wall.toFixed(3)} s (${(MiB / wall).toFixed(0)} MiB/s), ` +
      `cpu ${cpuSeconds.toFixed(3)} s (${(MiB / cpuSeconds).toFixed(0)} MiB/s)`,
  );
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(
  `chunker: ${median(wallRates).toFixed(0)} MiB/s wall, ${median(cpuRates).toFixed(0)} MiB/s per CPU second ` +
    `(median of ${runs}; 256 MiB random, 1 MiB buffers, one thread)`,
);
