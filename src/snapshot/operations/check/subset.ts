// --read-data-subset: restic's ways of reading a part of the packs.
import { InvalidInputError } from '../../../errors.ts';
import type { ReadDataSubset } from './types.ts';

/** restic's limit for n/t: groups are chosen by the pack ID's first byte. */
export const MAX_READ_GROUPS = 256;

/** Parses restic's --read-data-subset value: "n/t", "x%" / "x.y%", or a size with a unit suffix. */
export function parseReadDataSubset(s: string): ReadDataSubset {
  const invalid = () => new InvalidInputError(`read-data-subset ${JSON.stringify(s)} is invalid: use n/t, x% or a size like 500M`);
  if (/^[0-9/]+$/.test(s)) {
    // restic reads anything made of digits and '/' as n/t, so a bare number is an error.
    const parts = s.split('/');
    if (parts.length !== 2 || parts.some((p) => p === '')) throw invalid();
    const [n, t] = parts.map(Number) as [number, number];
    if (n === 0 || t === 0 || n > t) {
      throw new InvalidInputError(`read-data-subset n/t: n and t must be positive and n <= t, e.g. 1/2 (got ${s})`);
    }
    if (t > MAX_READ_GROUPS) throw new InvalidInputError(`read-data-subset n/t: t must be at most ${MAX_READ_GROUPS} (got ${s})`);
    return { kind: 'group', n, t };
  }
  if (s.endsWith('%')) {
    const body = s.slice(0, -1);
    const percent = Number(body);
    if (body.trim() === '' || !Number.isFinite(percent)) throw invalid();
    if (percent <= 0 || percent > 100) throw new InvalidInputError(`read-data-subset x%: x must be above 0 and at most 100 (got ${s})`);
    return { kind: 'percent', percent };
  }
  const m = /^(\d+)([bBkKmMgGtT])$/.exec(s);
  if (!m) throw invalid();
  const unit = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as 'b' | 'k' | 'm' | 'g' | 't'];
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw invalid();
  if (bytes <= 0) throw new InvalidInputError(`read-data-subset size must be above 0 (got ${s})`);
  return { kind: 'size', bytes };
}

/**
 * The packs a subset reads, as restic chooses them. Group n of t: packs whose first ID byte
 * modulo t is n-1 (deterministic, so t runs cover every pack once). Percentage: that share of
 * the packs, rounded down but at least one, chosen at random. Size: the percentage that size
 * is of all packs.
 */
export function selectPacks(packs: ReadonlyMap<string, number>, subset: ReadDataSubset, random: () => number = Math.random): Set<string> {
  if (subset.kind === 'group') {
    return new Set([...packs.keys()].filter((id) => parseInt(id.slice(0, 2), 16) % subset.t === subset.n - 1));
  }
  let percent: number;
  if (subset.kind === 'percent') percent = subset.percent;
  else {
    let total = 0;
    for (const size of packs.values()) total += size;
    if (total === 0) return new Set(packs.keys());
    percent = (Math.min(subset.bytes, total) / total) * 100;
  }
  const ids = [...packs.keys()].sort();
  let count = Math.floor(ids.length * (percent / 100));
  if (ids.length > 0 && count < 1) count = 1;
  // Partial Fisher-Yates: the first `count` places get a uniform random choice.
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (ids.length - i));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return new Set(ids.slice(0, count));
}
