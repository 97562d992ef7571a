// A memory cgroup made by the bench for one command: a child of the bench's own cgroup (v1's
// memory controller, or v2 when its memory controller is enabled for children), with a memory
// limit and no swap. systemd-run --scope needs systemd as PID 1, which containers and CI
// machines often lack; writing the cgroup files directly works wherever the bench may (root, or a
// delegated cgroup). The command joins it through a shell that writes its own PID into
// cgroup.procs and then execs the command, so GNU time measures the command itself.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MemoryCgroup {
  dir: string;
  version: 1 | 2;
  /** The command line that runs `command args…` inside the cgroup. */
  wrap(command: string, args: readonly string[]): { command: string; args: string[] };
  /** Peak memory charged to the cgroup (bytes), and how often the limit was hit. */
  usage(): { peakBytes: number | undefined; limitHits: number | undefined };
  remove(): void;
}

function num(path: string): number | undefined {
  try {
    const m = /(\d+)/.exec(readFileSync(path, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Makes a memory cgroup limited to `bytes`, or returns why it cannot. */
export function makeMemoryCgroup(name: string, bytes: number, root = '/sys/fs/cgroup'): MemoryCgroup | string {
  let membership: string;
  try {
    membership = readFileSync('/proc/self/cgroup', 'utf8');
  } catch (e) {
    return `no /proc/self/cgroup (${(e as Error).message})`;
  }
  const lines = membership.trim().split('\n').map((l) => l.split(':'));
  const v1 = lines.find((l) => l[1]!.split(',').includes('memory'));
  const v2 = lines.find((l) => l[0] === '0' && l[1] === '');
  const wrapIn = (dir: string) => (command: string, args: readonly string[]) => ({
    command: '/bin/sh',
    args: ['-c', `echo $$ > '${join(dir, 'cgroup.procs')}' && exec "$@"`, 'sh', command, ...args],
  });
  try {
    if (v1) {
      const dir = join(root, v1[1]!, v1.slice(2).join(':'), name);
      if (existsSync(dir)) rmdirSync(dir);
      mkdirSync(dir);
      writeFileSync(join(dir, 'memory.limit_in_bytes'), String(bytes));
      if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) writeFileSync(join(dir, 'memory.memsw.limit_in_bytes'), String(bytes));
      return {
        dir,
        version: 1,
        wrap: wrapIn(dir),
        usage: () => ({ peakBytes: num(join(dir, 'memory.max_usage_in_bytes')), limitHits: num(join(dir, 'memory.failcnt')) }),
        remove: () => rmdirSync(dir),
      };
    }
    if (v2) {
      const parent = join(root, v2.slice(2).join(':'));
      if (!readFileSync(join(parent, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('memory')) {
        return `the memory controller is not enabled for children of ${parent} (cgroup v2: a cgroup with processes cannot enable it)`;
      }
      const dir = join(parent, name);
      if (existsSync(dir)) rmdirSync(dir);
      mkdirSync(dir);
      writeFileSync(join(dir, 'memory.max'), String(bytes));
      if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
      return {
        dir,
        version: 2,
        wrap: wrapIn(dir),
        usage: () => {
          let hits: number | undefined;
          try {
            const m = /^max (\d+)$/m.exec(readFileSync(join(dir, 'memory.events'), 'utf8'));
            hits = m ? Number(m[1]) : undefined;
          } catch {
            hits = undefined;
          }
          return { peakBytes: num(join(dir, 'memory.peak')), limitHits: hits };
        },
        remove: () => rmdirSync(dir),
      };
    }
  } catch (e) {
    return `cannot make a cgroup: ${(e as Error).message}`;
  }
  return 'no memory cgroup in /proc/self/cgroup';
}
