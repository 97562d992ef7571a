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
  /** A bool that is a counter in restic (pflag's CountVar, e.g. --verbose): `--flag=N` is on for N > 0. */
  counter?: boolean;
}

export interface ParsedArgs {
  /** A counter (see FlagSpec.counter) holds a number. */
  flags: Map<string, string | boolean | number | string[]>;
  positional: string[];
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[]): ParsedArgs {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags = new Map<string, string | boolean | number | string[]>();
  const positional: string[] = [];
  let i = 0;
  // Sets a flag from its inline value (after '=' or a shorthand) or, for a flag that takes
  // one, from the next argument.
  const apply = (spec: FlagSpec, inline: string | undefined): void => {
    if (spec.kind === 'bool') {
      if (spec.counter) {
        // pflag's count: each use adds one, --flag=N sets N.
        const before = flags.get(spec.name);
        if (inline === undefined) flags.set(spec.name, (typeof before === 'number' ? before : 0) + 1);
        else flags.set(spec.name, /^\d+$/.test(inline) ? Number(inline) : parseBool(inline, spec.name) ? 1 : 0);
      } else flags.set(spec.name, inline === undefined ? true : parseBool(inline, spec.name));
      return;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new InvalidInputError(`flag needs an argument: --${spec.name}`);
    if (spec.kind === 'string') flags.set(spec.name, value);
    else {
      const prev = (flags.get(spec.name) as string[] | undefined) ?? [];
      flags.set(spec.name, [...prev, value]);
    }
  };
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const spec = byLong.get(name);
      if (!spec) throw new InvalidInputError(`unknown flag: --${name}`);
      apply(spec, eq >= 0 ? a.slice(eq + 1) : undefined);
    } else if (a.startsWith('-') && a.length > 1) {
      // Shorthands group as in pflag: -qv is -q -v. One that takes a value ends the group and
      // takes the rest of it (-rrepo, -r=repo) or else the next argument.
      for (let j = 1; j < a.length; j++) {
        const name = a[j]!;
        const spec = byShort.get(name);
        if (!spec) throw new InvalidInputError(`unknown shorthand flag: '${name}' in ${a}`);
        const rest = a.slice(j + 1);
        if (spec.kind === 'bool' && !rest.startsWith('=')) {
          if (spec.counter) apply(spec, undefined);
          else flags.set(spec.name, true);
          continue;
        }
        apply(spec, rest === '' ? undefined : rest.replace(/^=/, ''));
        break;
      }
    } else positional.push(a);
  }
  return { flags, positional };
}

/** Go's strconv.ParseBool, which pflag uses for --flag=value. */
function parseBool(s: string, name: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  throw new InvalidInputError(`invalid boolean value ${JSON.stringify(s)} for --${name}`);
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
    const v = this.#p.flags.get(name);
    return v === true || (typeof v === 'number' && v > 0);
  }
  /** A counter flag's value (-vv: 2); 0 when not given. */
  count(name: string): number {
    const v = this.#p.flags.get(name);
    return typeof v === 'number' ? v : v === true ? 1 : 0;
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
    // Go's Atoi: optional sign and decimal digits only (Number() would take '', '0x10', '1e3').
    const n = /^[+-]?\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n)) throw new InvalidInputError(`--${name} takes a whole number, got ${JSON.stringify(s)}`);
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

/**
 * Parses Go durations as restic's flags take them ("1h30m", "10s", "1.5m", "300ms", "0") into
 * milliseconds. Negative durations are refused: every duration here is a wait.
 */
export function parseDuration(s: string): number {
  if (s === '0') return 0;
  const re = /(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|h|m|s)/g;
  const unitMs: Record<string, number> = { ns: 1e-6, us: 1e-3, '\u00b5s': 1e-3, '\u03bcs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let consumed = 0;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * unitMs[m[2]!]!;
    consumed += m[0].length;
  }
  if (consumed !== s.length || s.length === 0) throw new InvalidInputError(`invalid duration ${JSON.stringify(s)}`);
  return total;
}

/**
 * A flag's value that its parser refuses: restic (pflag) prints the message alone, without
 * "Fatal: ", and exits 1.
 */
export class FlagError extends InvalidInputError {}
