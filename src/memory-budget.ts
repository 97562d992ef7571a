// The memory budget: how many worker threads, pack buffers and connections a backup or restore
// uses so that the process fits a memory limit — given (`memoryLimit`, `--max-memory`,
// $STOWAGE_MAX_MEMORY) or, when none is, the container's (cgroup v2 `memory.max`, v1
// `memory.limit_in_bytes`), with the container's CPU quota (`cpu.max`, `cpu.cfs_quota_us`)
// bounding the workers. Without either, the defaults stay what they are on a big machine: one
// worker per core, the backend's connections.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { InvalidInputError } from './errors.ts';

const MiB = 1024 * 1024;

/** What a container allows this process, as far as its cgroup says; a field is absent when unlimited or unknown. */
export interface ContainerLimits {
  /** The smallest memory limit of this process's cgroup and its ancestors, in bytes. */
  memoryBytes?: number;
  /** The CPU quota as a number of cores (quota ÷ period, may be fractional). */
  cpus?: number;
}

/** Where {@link readContainerLimits} looks (for tests: a fake cgroup folder). */
export interface CgroupPaths {
  /** The cgroup file system (default `/sys/fs/cgroup`). */
  root?: string;
  /** This process's cgroup membership (default `/proc/self/cgroup`). */
  procSelfCgroup?: string;
}

/** Limits at or above this are "no limit" (cgroup v1 reports 2⁶³ − 4096 rounded to pages). */
const UNLIMITED = 2 ** 60;

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The folder and its ancestors up to the root: `/a/b` → `/a/b`, `/a`, `/`. */
function upwards(cgroupPath: string): string[] {
  const parts = cgroupPath.split('/').filter(Boolean);
  const out: string[] = [];
  for (let i = parts.length; i >= 0; i--) out.push('/' + parts.slice(0, i).join('/'));
  return out;
}

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

/**
 * Reads the memory limit and CPU quota of this process's cgroup (v2, or v1's memory and cpu
 * controllers), the smallest along the path from its cgroup to the root (a parent's limit binds
 * the children). A cgroup path that the mount does not show (a container without its own cgroup
 * namespace sees the host's path) falls back to the nearest ancestor that exists, down to the
 * root of the mount, which is then the container's own cgroup.
 */
export function readContainerLimits(paths: CgroupPaths = {}): ContainerLimits {
  const root = paths.root ?? '/sys/fs/cgroup';
  const membership = readText(paths.procSelfCgroup ?? '/proc/self/cgroup');
  if (membership === undefined) return {};
  let memory: number | undefined;
  let cpus: number | undefined;
  for (const line of membership.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, hierarchy, controllers, cgroupPath] = m as unknown as [string, string, string, string];
    const list = controllers.split(',');
    if (hierarchy === '0' && controllers === '') {
      // cgroup v2: the unified hierarchy at the root, or at root/unified in the hybrid layout.
      for (const base of [root, join(root, 'unified')]) {
        for (const dir of upwards(cgroupPath)) {
          const max = readText(join(base, dir, 'memory.max'));
          if (max !== undefined && max !== 'max' && /^\d+$/.test(max)) memory = minDefined(memory, Number(max));
          const cpu = readText(join(base, dir, 'cpu.max'));
          const q = cpu && /^(\d+)\s+(\d+)$/.exec(cpu);
          if (q && Number(q[2]) > 0) cpus = minDefined(cpus, Number(q[1]) / Number(q[2]));
        }
      }
    }
    if (list.includes('memory')) {
      for (const dir of upwards(cgroupPath)) {
        const v = readText(join(root, controllers, dir, 'memory.limit_in_bytes'));
        if (v !== undefined && /^\d+$/.test(v) && Number(v) < UNLIMITED) memory = minDefined(memory, Number(v));
      }
    }
    if (list.includes('cpu')) {
      for (const dir of upwards(cgroupPath)) {
        const quota = readText(join(root, controllers, dir, 'cpu.cfs_quota_us'));
        const period = readText(join(root, controllers, dir, 'cpu.cfs_period_us'));
        if (quota && period && /^\d+$/.test(quota) && /^\d+$/.test(period) && Number(period) > 0) cpus = minDefined(cpus, Number(quota) / Number(period));
      }
    }
  }
  const out: ContainerLimits = {};
  if (memory !== undefined && memory < UNLIMITED) out.memoryBytes = memory;
  if (cpus !== undefined) out.cpus = cpus;
  return out;
}

/** The smallest `memoryLimit` accepted: below it not even one worker and one pack fit beside Node. */
export const MIN_MEMORY_LIMIT = 64 * MiB;

/**
 * What the budget assumes each part takes, resident (measured: bench/README.md, "Where the memory
 * goes"): Node with Stowage's modules, the index and the main thread's young generation; a file
 * worker (isolate, modules, a 9 MiB read buffer and a 10 MiB ring); a data pack buffer (16 MiB
 * filled and the room for the chunk that takes it past that, up to 8 MiB, which stays resident
 * once a reused buffer has held a big last chunk: measured 27 MiB each for the two packs being
 * filled on a 1 GiB backup); a decode worker; a range in flight
 * during a restore; a pack streamed by check --read-data (a piece read, a range of blobs being
 * filled, the pack's tail).
 */
export const BUDGET_COSTS = {
  base: 96 * MiB,
  fileWorker: 40 * MiB,
  packBuffer: 25 * MiB,
  decodeWorker: 30 * MiB,
  restoreStream: 12 * MiB,
  checkStream: 8 * MiB,
} as const;

/** How a backup or restore is sized (see {@link planBudget}). */
export interface BudgetPlan {
  /** The limit planned for, in bytes; undefined when there is none (the defaults). */
  memoryLimit: number | undefined;
  /** Worker threads (file workers for a backup, decode workers for a restore or check). */
  workers: number;
  /** Data pack buffers of a backup (two being filled, the others being stored); 0 for check. */
  packBuffers: number;
  /** Connections used at once (packs stored by a backup, packs read by a restore or check). */
  connections: number;
}

/** Inputs of {@link planBudget}; everything but `connections` has a default read from the machine. */
export interface BudgetInput {
  /** The memory limit in bytes; undefined: the container's, if any. */
  memoryLimit?: number | undefined;
  /** The backend's connections (the most used when memory allows). */
  connections: number;
  /** Cores to use at most (default: `os.availableParallelism()`, bounded by the CPU quota). */
  cpus?: number;
  /** The container's limits (default: {@link readContainerLimits} of this process). */
  container?: ContainerLimits;
}

/** Checks a `memoryLimit` option: a whole number of bytes, at least {@link MIN_MEMORY_LIMIT}. */
export function checkMemoryLimit(v: unknown, what = 'memoryLimit'): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new InvalidInputError(`${what} must be a positive whole number of bytes, got ${String(v)}`);
  if (v < MIN_MEMORY_LIMIT) throw new InvalidInputError(`${what} of ${v} bytes is below the minimum of ${MIN_MEMORY_LIMIT} (64 MiB)`);
  return v;
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, n));
}

/**
 * Sizes a backup (`kind: 'backup'`: file workers, pack buffers, connections), a restore
 * (`'restore'`: decode workers, connections) or check --read-data (`'check'`: decode workers,
 * packs read at once) to fit `memoryLimit`, else the container's limit; with neither, one worker
 * per core (bounded by the CPU quota), the backend's connections and connections + 2 pack buffers
 * (two packs filled at once), as without a budget. Check's main thread reads and hashes the packs,
 * so it gets one worker fewer than cores (at least one) and reads as many packs at once as it has
 * workers (each pack's ranges keep a worker busy; more would only wait, holding memory). Within a limit, workers come first (they are the throughput), then pack buffers
 * and connections; at the least one worker, one connection and two pack buffers.
 */
export function planBudget(kind: 'backup' | 'restore' | 'check', input: BudgetInput): BudgetPlan {
  const container = input.container ?? readContainerLimits();
  const quota = container.cpus !== undefined ? Math.max(1, Math.ceil(container.cpus)) : Infinity;
  const cpus = Math.max(1, Math.min(input.cpus ?? os.availableParallelism(), quota));
  const connections = Math.max(1, input.connections);
  const limit = checkMemoryLimit(input.memoryLimit) ?? container.memoryBytes;
  if (kind === 'check') {
    const most = Math.max(1, cpus - 1);
    const c = BUDGET_COSTS;
    const avail = limit === undefined ? Infinity : limit - c.base;
    const workers = clamp(Math.floor((avail - c.checkStream) / c.decodeWorker), 1, most);
    const streams = clamp(Math.floor((avail - workers * c.decodeWorker) / c.checkStream), 1, Math.min(connections, workers));
    return { memoryLimit: limit, workers, packBuffers: 0, connections: streams };
  }
  // Two data packs are filled at once (blobs spread over both at random, as restic ≥ 0.18 does
  // against chunk-size fingerprinting), so connections + 2 buffers keep every connection storing.
  if (limit === undefined) return { memoryLimit: undefined, workers: cpus, packBuffers: connections + 2, connections };
  const avail = limit - BUDGET_COSTS.base;
  const c = BUDGET_COSTS;
  if (kind === 'backup') {
    const workers = clamp(Math.floor((avail - 2 * c.packBuffer) / c.fileWorker), 1, cpus);
    const packBuffers = clamp(Math.floor((avail - workers * c.fileWorker) / c.packBuffer), 2, connections + 2);
    return { memoryLimit: limit, workers, packBuffers, connections: Math.max(1, Math.min(connections, packBuffers - 2)) };
  }
  const workers = clamp(Math.floor((avail - c.restoreStream) / c.decodeWorker), 1, cpus);
  const streams = clamp(Math.floor((avail - workers * c.decodeWorker) / c.restoreStream), 1, connections);
  return { memoryLimit: limit, workers, packBuffers: 2, connections: streams };
}
