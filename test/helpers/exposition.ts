// A strict reader of the Prometheus text exposition format 0.0.4, written for the tests: HELP and
// TYPE at most once per metric and before its samples, a metric's samples together, label values
// with only the three escapes the format has, values Go's strconv.ParseFloat accepts, no series
// twice, empty lines ignored (as the format says). It throws on anything else.
import assert from 'node:assert/strict';

export interface Parsed {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

/** A strict reader of the Prometheus text format 0.0.4; throws on anything it does not allow. */
export function parseExposition(text: string): Parsed {
  assert.ok(text === '' || text.endsWith('\n'), 'the text ends with a newline');
  const out: Parsed = { help: new Map(), type: new Map(), samples: [] };
  const finished = new Set<string>();
  let current: string | undefined;
  const enter = (name: string, lineNo: number) => {
    if (name === current) return;
    if (finished.has(name)) throw new Error(`line ${lineNo}: metric ${name} appears again after another metric`);
    if (current) finished.add(current);
    current = name;
  };
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((line, i) => {
    const n = i + 1;
    let m: RegExpExecArray | null;
    // The format ignores empty lines (prom-client writes one between metrics).
    if (line === '') return;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      enter(m[1]!, n);
      if (out.help.has(m[1]!)) throw new Error(`line ${n}: second HELP for ${m[1]}`);
      if (out.samples.some((s) => s.name === m![1])) throw new Error(`line ${n}: HELP after samples`);
      if (/\\[^\\n]/.test(m[2]!.replace(/\\\\/g, ''))) throw new Error(`line ${n}: bad escape in HELP`);
      out.help.set(m[1]!, m[2]!.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\')));
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      enter(m[1]!, n);
      if (out.type.has(m[1]!)) throw new Error(`line ${n}: second TYPE for ${m[1]}`);
      if (out.samples.some((s) => s.name === m![1])) throw new Error(`line ${n}: TYPE after samples`);
      out.type.set(m[1]!, m[2]!);
    } else if (line.startsWith('#')) {
      throw new Error(`line ${n}: unexpected comment ${line}`);
    } else {
      m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`line ${n}: not a sample: ${JSON.stringify(line)}`);
      enter(m[1]!, n);
      const labels: Record<string, string> = {};
      if (m[2]) {
        let rest = m[2].slice(1, -1);
        while (rest !== '') {
          const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/.exec(rest);
          if (!lm) throw new Error(`line ${n}: bad labels ${m[2]}`);
          if (lm[1]! in labels) throw new Error(`line ${n}: label ${lm[1]} twice`);
          labels[lm[1]!] = lm[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
          rest = rest.slice(lm[0].length);
        }
      }
      const raw = m[3]!;
      if (!/^([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|NaN|[+-]Inf)$/.test(raw)) throw new Error(`line ${n}: bad value ${raw}`);
      const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
      const key = JSON.stringify([m[1], Object.entries(labels).sort()]);
      if (out.samples.some((s) => JSON.stringify([s.name, Object.entries(s.labels).sort()]) === key)) throw new Error(`line ${n}: series twice`);
      out.samples.push({ name: m[1]!, labels, value });
    }
  });
  return out;
}

