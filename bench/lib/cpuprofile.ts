// Reads V8 .cpuprofile files (what `node --cpu-prof` writes, one per thread) and answers "where
// did the time go": self and total time per function, and folded stacks for a flame graph.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface FunctionCost {
  /** Function name, or "(anonymous)"; V8's pseudo-frames keep their names, e.g. "(garbage collector)". */
  name: string;
  /** path:line, relative to one of the roots when under it; empty for pseudo-frames. */
  location: string;
  selfMs: number;
  /** Time with the function anywhere on the stack, each sample counted once. */
  totalMs: number;
}

export interface ThreadProfile {
  /** "main" or "worker N", from the thread id in Node's file name. */
  thread: string;
  file: string;
  /** Wall time the profile covers. */
  spanMs: number;
  /** Sampled time that was not "(idle)". */
  busyMs: number;
  functions: FunctionCost[];
  /** Folded stacks ("frame;frame;frame microseconds"), root first, idle excluded. */
  folded: Map<string, number>;
}

const IDLE = '(idle)';

/** Node names profiles CPU.<date>.<time>.<pid>.<threadId>.<seq>.cpuprofile; thread 0 is the main one. */
export function threadName(file: string): string {
  const m = /^CPU\.\d+\.\d+\.\d+\.(\d+)\.\d+\.cpuprofile$/.exec(basename(file));
  if (!m) return basename(file);
  return m[1] === '0' ? 'main' : `worker ${m[1]}`;
}

function frameLabel(cf: CallFrame, roots: readonly string[]): { name: string; location: string } {
  const name = cf.functionName || (cf.url ? '(anonymous)' : '(native)');
  if (!cf.url) return { name, location: '' };
  let path = cf.url.startsWith('file://') ? decodeURIComponent(cf.url.slice('file://'.length)) : cf.url;
  const root = roots.find((r) => r && path.startsWith(`${r.replace(/\/$/, '')}/`));
  if (root) path = path.slice(root.replace(/\/$/, '').length + 1);
  return { name, location: `${path}:${cf.lineNumber + 1}` };
}

/** A profile file read, with its nodes by ID and each node's parent (the root has none). */
export function readProfile(file: string): { profile: CpuProfile; byId: Map<number, ProfileNode>; parent: Map<number, number> } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  return { profile, byId, parent };
}

/** `roots`: directories that file locations are printed relative to (the first that matches). */
export function analyzeProfile(file: string, roots: readonly string[] = []): ThreadProfile {
  const { profile, byId, parent } = readProfile(file);
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // Sample i lasts until sample i+1 is taken; the last one until the profile ends.
  const at: number[] = [];
  let t = profile.startTime;
  for (let i = 0; i < samples.length; i++) at.push((t += deltas[i] ?? 0));
  const duration = (i: number) => Math.max(0, (i + 1 < at.length ? at[i + 1]! : profile.endTime) - at[i]!);

  const costs = new Map<string, FunctionCost>();
  const folded = new Map<string, number>();
  // WebAssembly functions are unnamed ("wasm-function[12]"); the JS function that called into the
  // module says which one it is (the chunker, libsodium, …).
  const wasmCaller = (node: ProfileNode): string => {
    for (let id = parent.get(node.id); id !== undefined; id = parent.get(id)) {
      const cf = byId.get(id)!.callFrame;
      if (cf.url && !cf.url.startsWith('wasm://')) {
        const f = frameLabel(cf, roots);
        return ` via ${f.name}${f.location ? ` (${f.location})` : ''}`;
      }
    }
    return '';
  };
  const costOf = (node: ProfileNode): FunctionCost => {
    const label = frameLabel(node.callFrame, roots);
    const { name } = label;
    const location = node.callFrame.url.startsWith('wasm://') ? `${node.callFrame.url}${wasmCaller(node)}` : label.location;
    const key = `${name}\u0000${location}`;
    let c = costs.get(key);
    if (!c) costs.set(key, (c = { name, location, selfMs: 0, totalMs: 0 }));
    return c;
  };
  let busy = 0;
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]!);
    if (!node) continue;
    const us = duration(i);
    costOf(node).selfMs += us / 1000;
    if (node.callFrame.functionName === IDLE) continue;
    busy += us;
    const stack: ProfileNode[] = [];
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) stack.push(byId.get(id)!);
    stack.reverse();
    const seen = new Set<FunctionCost>();
    for (const n of stack) {
      const c = costOf(n);
      if (!seen.has(c)) {
        seen.add(c);
        c.totalMs += us / 1000;
      }
    }
    // "(root)" carries no information; drop it from the folded stack.
    const key = stack
      .filter((n) => n.callFrame.functionName !== '(root)')
      .map((n) => frameLabel(n.callFrame, roots).name.replace(/[;\s]+/g, '_'))
      .join(';');
    folded.set(key, (folded.get(key) ?? 0) + us);
  }
  return {
    thread: threadName(file),
    file,
    spanMs: (profile.endTime - profile.startTime) / 1000,
    busyMs: busy / 1000,
    functions: [...costs.values()].filter((c) => c.name !== '(root)'),
    folded,
  };
}

/** Self and total time per function over several threads, busiest first; idle time left out. */
export function combine(threads: readonly ThreadProfile[]): FunctionCost[] {
  const all = new Map<string, FunctionCost>();
  for (const t of threads) {
    for (const f of t.functions) {
      if (f.name === IDLE) continue;
      const key = `${f.name}\u0000${f.location}`;
      const c = all.get(key) ?? { name: f.name, location: f.location, selfMs: 0, totalMs: 0 };
      c.selfMs += f.selfMs;
      c.totalMs += f.totalMs;
      all.set(key, c);
    }
  }
  return [...all.values()].sort((a, b) => b.selfMs - a.selfMs);
}

/** A markdown table of the top functions by self time, with their share of all busy time. */
export function topSelfTable(functions: readonly FunctionCost[], busyMs: number, top: number): string {
  const lines = ['| # | function | location | self ms | self % | total ms |', '|---:|---|---|---:|---:|---:|'];
  functions.slice(0, top).forEach((f, i) => {
    const pct = busyMs > 0 ? ((100 * f.selfMs) / busyMs).toFixed(1) : '—';
    lines.push(`| ${i + 1} | \`${f.name}\` | ${f.location || '—'} | ${f.selfMs.toFixed(0)} | ${pct} | ${f.totalMs.toFixed(0)} |`);
  });
  return lines.join('\n');
}

/** Folded stacks of several threads, each prefixed with its thread, for flamegraph.pl or speedscope. */
export function foldedText(threads: readonly ThreadProfile[]): string {
  const out: string[] = [];
  for (const t of threads) for (const [stack, us] of t.folded) out.push(`${t.thread.replace(/\s+/g, '_')};${stack} ${Math.round(us)}`);
  return out.join('\n') + '\n';
}
