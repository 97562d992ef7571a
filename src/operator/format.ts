// The formats Stash and KubeStash write into their status fields, reproduced exactly: sizes as
// "1.845 MiB", processing times as "m:ss", durations as Go's time.Duration.String(), times as
// Kubernetes' metav1.Time. Pure functions, no I/O.
import { InvalidInputError } from '../errors.ts';
import { goTimeToDate, type GoTime } from '../repository/gotime.ts';

const UNITS: ReadonlyArray<[string, number]> = [
  ['TiB', 2 ** 40],
  ['GiB', 2 ** 30],
  ['MiB', 2 ** 20],
  ['KiB', 2 ** 10],
];

/**
 * A byte count as Stash (pkg/restic/util.go `formatBytes`) and KubeStash (`FormatBytes`) write
 * it: three decimals in the largest binary unit the count strictly exceeds, else "N B". Note the
 * strict comparison: exactly 1 MiB is "1024.000 KiB".
 */
export function formatStashBytes(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new InvalidInputError(`a byte count must be a non-negative integer, got ${bytes}`);
  for (const [unit, size] of UNITS) if (bytes > size) return `${(bytes / size).toFixed(3)} ${unit}`;
  return `${bytes} B`;
}

/** Stash's `formatSeconds`: whole seconds as "m:ss", or "h:mm:ss" from an hour on. */
export function formatStashSeconds(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) throw new InvalidInputError(`seconds must be a non-negative number, got ${seconds}`);
  let s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/**
 * Go's `time.Duration.String()` for a duration in nanoseconds: "1h2m3.5s", "2m0s", "1.5s",
 * "250ms", "1.5µs", "0s" — what Stash and KubeStash write as a host's or component's duration.
 */
export function formatGoDuration(ns: bigint | number): string {
  let d = typeof ns === 'bigint' ? ns : BigInt(Math.round(ns));
  if (d === 0n) return '0s';
  const neg = d < 0n;
  if (neg) d = -d;
  const frac = (value: bigint, unit: bigint): string => {
    const whole = value / unit;
    const rest = value % unit;
    if (rest === 0n) return String(whole);
    const digits = String(unit).length - 1;
    return `${whole}.${String(rest).padStart(digits, '0').replace(/0+$/, '')}`;
  };
  let out: string;
  if (d < 1_000n) out = `${d}ns`;
  else if (d < 1_000_000n) out = `${frac(d, 1_000n)}µs`;
  else if (d < 1_000_000_000n) out = `${frac(d, 1_000_000n)}ms`;
  else {
    const h = d / 3_600_000_000_000n;
    const m = (d / 60_000_000_000n) % 60n;
    const s = frac(d % 60_000_000_000n, 1_000_000_000n);
    out = h > 0n ? `${h}h${m}m${s}s` : m > 0n ? `${m}m${s}s` : `${s}s`;
  }
  return neg ? `-${out}` : out;
}

/** A Kubernetes metav1.Time as JSON: RFC 3339 in UTC, whole seconds ("2025-01-07T02:00:05Z"). */
export function kubernetesTime(time: GoTime | Date): string {
  const date = time instanceof Date ? time : goTimeToDate(time);
  if (Number.isNaN(date.getTime())) throw new InvalidInputError('invalid time');
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Nanoseconds between two GoTimes (b - a). */
export function goTimeDiffNs(a: GoTime, b: GoTime): bigint {
  return b.epochNs - a.epochNs;
}

/**
 * A backup session's length in nanoseconds: `durationMs` when the caller measured it, else from
 * the earliest start to the latest end of its backups; undefined with neither.
 */
export function backupSpanNs(
  entries: readonly { result: { summary: { backupStart: GoTime; backupEnd: GoTime } } }[],
  durationMs: number | undefined,
): bigint | undefined {
  if (durationMs !== undefined) return BigInt(Math.round(durationMs * 1e6));
  if (entries.length === 0) return undefined;
  const starts = entries.map((e) => e.result.summary.backupStart.epochNs);
  const ends = entries.map((e) => e.result.summary.backupEnd.epochNs);
  return ends.reduce((a, b) => (b > a ? b : a)) - starts.reduce((a, b) => (b < a ? b : a));
}
