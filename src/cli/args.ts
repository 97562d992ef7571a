// A small, strict argument parser with restic's conventions: long flags (--flag value,
// --flag=value), short aliases (-r value), repeatable list flags, and `--` to end flags.
import { InvalidInputError } from '../errors.ts';

export type FlagKind = 'bool' | 'string' | 'list';

export interface FlagSpec {
  name: string;
  short?: string;
  kind: FlagKind;
  help: string;
  /** Shown in help after the flag, e.g. "DIR". */
  arg?: string;
}

export interface ParsedArgs {
  flags: Map<string, string | boolean | string[]>;
  positional: string[];
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[]): ParsedArgs {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags = new Map<string, string | boolean | string[]>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
      spec = byLong.get(name);
      if (!spec) throw new InvalidInputError(`unknown flag: --${name}`);
    } else if (a.startsWith('-') && a.length > 1) {
      const name = a.slice(1, 2);
      spec = byShort.get(name);
      if (!spec) throw new InvalidInputError(`unknown shorthand flag: '${name}' in ${a}`);
      if (a.length > 2) inline = a.slice(2).replace(/^=/, '');
    } else {
      positional.push(a);
      continue;
    }
    if (spec.kind === 'bool') {
      flags.set(spec.name, inline === undefined ? true : inline !== 'false');
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new InvalidInputError(`flag needs an argument: --${spec.name}`);
    if (spec.kind === 'string') flags.set(spec.name, value);
    else {
      const prev = (flags.get(spec.name) as string[] | undefined) ?? [];
      flags.set(spec.name, [...prev, value]);
    }
  }
  return { flags, positional };
}

export class Flags {
  readonly #p: ParsedArgs;
  constructor(p: ParsedArgs) {
    this.#p = p;
  }
  get positional(): string[] {
    return this.#p.positional;
  }
  bool(name: string): boolean {
    return this.#p.flags.get(name) === true;
  }
  string(name: string): string | undefined {
    const v = this.#p.flags.get(name);
    return typeof v === 'string' ? v : undefined;
  }
  list(name: string): string[] {
    const v = this.#p.flags.get(name);
    return Array.isArray(v) ? v : [];
  }
  int(name: string): number | undefined {
    const s = this.string(name);
    if (s === undefined) return undefined;
    const n = Number(s);
    if (!Number.isInteger(n)) throw new InvalidInputError(`--${name} takes a whole number, got ${JSON.stringify(s)}`);
    return n;
  }
}

export function formatHelp(usage: string, description: string, specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const left = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.kind === 'bool' ? '' : ` ${s.arg ?? 'value'}`}`;
    return `  ${left.padEnd(34)} ${s.help}`;
  });
  return `Usage: ${usage}\n\n${description}\n\nFlags:\n${rows.join('\n')}\n`;
}

/** Parses restic durations like "1h30m", "10s", "2m" into milliseconds. */
export function parseDuration(s: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (const m of s.matchAll(re)) {
    const v = Number(m[1]);
    total += v * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const)[m[2] as 'ms' | 's' | 'm' | 'h'];
    consumed += m[0].length;
  }
  if (consumed !== s.length || s.length === 0) throw new InvalidInputError(`invalid duration ${JSON.stringify(s)}`);
  return total;
}
