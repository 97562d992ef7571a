// restic's path patterns (--exclude, --include): a pattern is matched component by component
// against a slash-separated path; `*`, `?` and `[…]` work inside one component, `**` spans any
// number of components, and a pattern that does not start with `/` may match at any depth.
// A pattern matches a directory and therefore everything below it.

import path from 'node:path';
import { InvalidInputError } from '../../errors.ts';

interface CompiledPattern {
  /** A pattern written `!pattern`: takes back a match of the patterns before it. */
  negated: boolean;
  anchored: boolean;
  /** The cleaned pattern's components ('**' included). */
  parts: string[];
  re: RegExp;
}

export class PathFilter {
  readonly #patterns: CompiledPattern[];
  readonly source: readonly string[];

  constructor(patterns: readonly string[]) {
    this.source = patterns.filter((p) => p.trim() !== '' && !p.startsWith('#'));
    this.#patterns = this.source.map(compile);
  }

  get empty(): boolean {
    return this.#patterns.length === 0;
  }

  /** Whether the path (absolute or root-relative, with `/`) is matched, negations applied in order. */
  matches(path: string): boolean {
    const p = path.startsWith('/') ? path : '/' + path;
    let matched = false;
    for (const pat of this.#patterns) {
      if (pat.negated) {
        if (matched && pat.re.test(p)) matched = false;
      } else if (!matched && pat.re.test(p)) matched = true;
    }
    return matched;
  }

  /**
   * For includes: whether `dir` may contain a match (so the walk must descend into it).
   * As restic's ChildMatch: a relative pattern may match below any folder; an anchored one only
   * below folders that agree with its components up to its first `**`; a negated pattern that
   * matches the folder itself rules out everything below.
   */
  mayContainMatch(dir: string): boolean {
    const d = (dir.startsWith('/') ? dir : '/' + dir).replace(/\/$/, '') || '/';
    const dc = d.split('/').filter(Boolean);
    let may = false;
    for (const pat of this.#patterns) {
      if (pat.negated) {
        if (may && pat.re.test(d)) may = false;
      } else if (!may && childMayMatch(pat, dc)) may = true;
    }
    return may;
  }
}

function childMayMatch(pat: CompiledPattern, dc: string[]): boolean {
  if (!pat.anchored) return true;
  const star = pat.parts.indexOf('**');
  const upto = Math.min(dc.length, star >= 0 ? star : pat.parts.length);
  for (let i = 0; i < upto; i++) {
    if (!compileComponent(pat.parts[i]!).test(dc[i]!)) return false;
  }
  return true;
}

function compile(pattern: string): CompiledPattern {
  const negated = pattern.startsWith('!');
  // restic cleans the pattern like a path: "./b" is "b", "a/../b" is "b", "dir/" is "dir".
  const cleaned = path.posix.normalize(negated ? pattern.slice(1) : pattern);
  const anchored = cleaned.startsWith('/');
  const parts = cleaned.split('/').filter((c) => c !== '');
  let re = anchored ? '^' : '^(?:/.*)?';
  for (const c of parts) {
    if (c === '**') re += '(?:/.*)?';
    else re += '/' + componentRegex(c);
  }
  // Matching a directory matches what is below it.
  return { negated, anchored, parts, re: toRegExp(re + '(?:/.*)?$', pattern) };
}

/** 'u': `?` and classes match one character (a code point, as Go's rune), not a UTF-16 unit. */
function toRegExp(source: string, pattern: string): RegExp {
  try {
    return new RegExp(source, 'su');
  } catch (e) {
    throw new InvalidInputError(`invalid pattern ${JSON.stringify(pattern)}: ${(e as Error).message}`, { cause: e });
  }
}

function compileComponent(c: string): RegExp {
  return toRegExp('^' + componentRegex(c) + '$', c);
}

function componentRegex(c: string): string {
  let out = '';
  for (let i = 0; i < c.length; i++) {
    const ch = c[i]!;
    if (ch === '*') out += '[^/]*';
    else if (ch === '?') out += '[^/]';
    else if (ch === '[') {
      const end = c.indexOf(']', i + 2);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      // Go's classes: '^' negates; '!' is an ordinary character. A class matches within one
      // component, so a negated one must not match '/'.
      const body = c.slice(i + 1, end).replace(/\\/g, '\\\\');
      if (body === '^') throw new InvalidInputError(`invalid pattern component ${JSON.stringify(c)}: empty character class`);
      out += body.startsWith('^') ? '[^/' + body.slice(1) + ']' : '[' + body + ']';
      i = end;
    } else if (ch === '\\' && i + 1 < c.length) {
      out += escapeRe(c[++i]!);
    } else out += escapeRe(ch);
  }
  return out;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * Go's `filepath.Match` for one path component: `*`, `?`, `[…]` (with `^` negation) and `\`
 * escapes, none of them matching `/`; a leading dot needs no special care (Go matches it).
 *
 * @throws InvalidInputError for a malformed pattern (an empty class).
 */
export function matchComponent(pattern: string, name: string): boolean {
  return compileComponent(pattern).test(name);
}

/**
 * The patterns Go's `filepath.Match` calls malformed in one of their components, as restic's
 * ValidatePatterns finds them: a `\` at the end, a `[` without its `]`, an empty class, or a
 * class item starting with `-` or `]`. (A leading `!` negates and is not part of the pattern.)
 */
export function malformedPatterns(patterns: readonly string[]): string[] {
  return patterns.filter((p) => p !== '' && path.posix.normalize(p.startsWith('!') ? p.slice(1) : p).split('/').some((c) => !goComponentValid(c)));
}

function goComponentValid(c: string): boolean {
  for (let i = 0; i < c.length; i++) {
    const ch = c[i];
    if (ch === '\\') {
      if (++i >= c.length) return false;
    } else if (ch === '[') {
      i++;
      if (c[i] === '^') i++;
      let items = 0;
      // One escaped-or-plain character of a class; -1 when malformed.
      const esc = (): number => {
        if (i >= c.length || c[i] === '-' || c[i] === ']') return -1;
        if (c[i] === '\\' && ++i >= c.length) return -1;
        i++;
        return 0;
      };
      for (;;) {
        if (i < c.length && c[i] === ']' && items > 0) break;
        if (esc() < 0) return false;
        if (c[i] === '-') {
          i++;
          if (esc() < 0) return false;
        }
        items++;
      }
    }
  }
  return true;
}
