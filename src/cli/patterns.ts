// restic's pattern files (--exclude-file, --iexclude-file, --include-file, --iinclude-file): one
// pattern a line, blanks trimmed, empty lines and lines starting with '#' skipped, a UTF-8 byte
// order mark dropped, and $VAR / ${VAR} expanded from the environment (Go's os.ExpandEnv: unset
// variables become empty).
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { InvalidInputError } from '../errors.ts';
import { matchComponent } from '../snapshot/model/filter.ts';

/** The patterns of every file, in order. A file that cannot be read is an InvalidInputError naming it. */
export async function readPatternFiles(files: readonly string[], env: NodeJS.ProcessEnv): Promise<string[]> {
  const out: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new InvalidInputError(`failed to read patterns from file ${JSON.stringify(file)}: ${(e as Error).message}`, { cause: e });
    }
    if (text.startsWith('\ufeff')) text = text.slice(1);
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      out.push(expandEnv(line, env));
    }
  }
  return out;
}

/** Go's os.ExpandEnv: `${NAME}` and `$NAME` (letters, digits, underscore) replaced; unset is empty. */
export function expandEnv(s: string, env: NodeJS.ProcessEnv): string {
  return s.replace(/\$\{([^}]*)\}|\$([A-Za-z0-9_]+)/g, (_m, braced: string | undefined, bare: string | undefined) => env[braced ?? bare ?? ''] ?? '');
}

/**
 * The sources of `backup --files-from`, `--files-from-verbatim` and `--files-from-raw`, read as
 * restic 0.19 reads them, in that order: a file named `-` is standard input; `--files-from`
 * lines are trimmed, empty and `#` lines skipped and each expanded as Go's `filepath.Glob`
 * (a pattern that matches nothing is reported through `warn` and skipped); verbatim lines are
 * taken as they are (only empty ones skipped); raw names end with a NUL each.
 */
export async function readFilesFrom(
  lists: { patterns: readonly string[]; verbatim: readonly string[]; raw: readonly string[] },
  readStdin: () => Promise<Buffer>,
  warn: (message: string) => void,
): Promise<string[]> {
  const read = async (file: string): Promise<Buffer> => (file === '-' ? readStdin() : readFile(file).catch((e: unknown) => {
    throw new InvalidInputError(`failed to read ${JSON.stringify(file)}: ${(e as Error).message}`, { cause: e });
  }));
  const text = (data: Buffer): string => {
    if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) return data.subarray(3).toString('utf8');
    if (data[0] === 0xff && data[1] === 0xfe) return data.subarray(2).toString('utf16le');
    return data.toString('utf8');
  };
  // Go's bufio.Scanner lines: split at \n, a trailing \r dropped, no empty last line.
  const lines = (s: string): string[] => {
    const out = s.split('\n').map((l) => l.replace(/\r$/, ''));
    if (out.at(-1) === '') out.pop();
    return out;
  };
  const targets: string[] = [];
  for (const file of lists.patterns) {
    for (const raw of lines(text(await read(file)))) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const expanded = await glob(line);
      if (expanded.length === 0) warn(`pattern ${JSON.stringify(line)} does not match any files, skipping`);
      targets.push(...expanded);
    }
  }
  for (const file of lists.verbatim) {
    for (const line of lines(text(await read(file)))) if (line !== '') targets.push(line);
  }
  for (const file of lists.raw) {
    const data = (await read(file)).toString('utf8');
    if (data === '') continue;
    if (!data.endsWith('\0')) throw new InvalidInputError('--files-from-raw: trailing zero byte missing');
    for (const name of data.slice(0, -1).split('\0')) {
      if (name === '') throw new InvalidInputError('--files-from-raw: empty filename in listing');
      targets.push(name);
    }
  }
  return targets;
}

const GLOB_META = /[*?[\\]/;

/** Go's `filepath.Glob` (Unix): the names matching `pattern`, sorted within each folder; no `**`. */
export async function glob(pattern: string): Promise<string[]> {
  if (!GLOB_META.test(pattern)) {
    try {
      await lstat(pattern);
      return [pattern];
    } catch {
      return [];
    }
  }
  const slash = pattern.lastIndexOf('/');
  let dir = slash < 0 ? '' : pattern.slice(0, slash + 1);
  const file = pattern.slice(slash + 1);
  // Go's cleanGlobPath: "" is ".", "/" stays, a trailing slash is dropped.
  dir = dir === '' ? '.' : dir === '/' ? '/' : dir.slice(0, -1);
  const dirs = GLOB_META.test(dir) ? await glob(dir) : [dir];
  const out: string[] = [];
  for (const d of dirs) {
    let names: string[];
    try {
      if (!(await stat(d)).isDirectory()) continue;
      names = await readdir(d);
    } catch {
      continue;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      if (matchComponent(file, name)) out.push(slash < 0 ? name : d === '/' ? `/${name}` : `${d}/${name}`);
    }
  }
  return out;
}
