// restic's path patterns (--exclude, --include): a pattern is matched component by component
// against a slash-separated path; `*`, `?` and `[…]` work inside one component, `**` spans any
// number of components, and a pattern that does not start with `/` may match at any depth.
// A pattern matches a directory and therefore everything below it.

export class PathFilter {
  readonly #patterns: RegExp[];
  readonly source: readonly string[];

  constructor(patterns: readonly string[]) {
    this.source = patterns.filter((p) => p.trim() !== '' && !p.startsWith('#'));
    this.#patterns = this.source.map(compile);
  }

  get empty(): boolean {
    return this.#patterns.length === 0;
  }

  /** Whether the path (absolute or root-relative, with `/`) is matched by any pattern. */
  matches(path: string): boolean {
    const p = path.startsWith('/') ? path : '/' + path;
    return this.#patterns.some((r) => r.test(p));
  }

  /**
   * For includes: whether `dir` may contain a match (so the walk must descend into it).
   * Conservative: true unless an anchored pattern rules the directory out.
   */
  mayContainMatch(dir: string): boolean {
    const d = (dir.startsWith('/') ? dir : '/' + dir).replace(/\/$/, '');
    return this.source.some((pat) => {
      if (!pat.startsWith('/') || pat.includes('**')) return true;
      const pc = pat.split('/').filter(Boolean);
      const dc = d.split('/').filter(Boolean);
      for (let i = 0; i < Math.min(pc.length, dc.length); i++) {
        if (!compileComponent(pc[i]!).test(dc[i]!)) return false;
      }
      return true;
    });
  }
}

function compile(pattern: string): RegExp {
  const anchored = pattern.startsWith('/');
  const parts = pattern.split('/').filter((c) => c !== '');
  let re = anchored ? '^' : '^(?:/.*)?';
  for (const c of parts) {
    if (c === '**') re += '(?:/.*)?';
    else re += '/' + componentRegex(c);
  }
  // Matching a directory matches what is below it.
  return new RegExp(re + '(?:/.*)?$', 's');
}

function compileComponent(c: string): RegExp {
  return new RegExp('^' + componentRegex(c) + '$', 's');
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
      let body = c.slice(i + 1, end);
      if (body.startsWith('^') || body.startsWith('!')) body = '^' + body.slice(1);
      out += '[' + body.replace(/\\/g, '\\\\') + ']';
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
