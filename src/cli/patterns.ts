// restic's pattern files (--exclude-file, --iexclude-file, --include-file, --iinclude-file): one
// pattern a line, blanks trimmed, empty lines and lines starting with '#' skipped, a UTF-8 byte
// order mark dropped, and $VAR / ${VAR} expanded from the environment (Go's os.ExpandEnv: unset
// variables become empty).
import { readFile } from 'node:fs/promises';
import { InvalidInputError } from '../errors.ts';

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
