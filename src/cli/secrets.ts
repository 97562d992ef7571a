// Reading passwords and repository locations as restic reads them: a file's text with a UTF-8
// BOM dropped or UTF-16 (by its BOM) decoded, and surrounding white space trimmed as Go's
// strings.TrimSpace trims it; a password command's output trimmed the same way.
import { readFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { InvalidInputError } from '../errors.ts';

/** Go's unicode.IsSpace set (JavaScript's \s differs: it has U+FEFF and lacks U+0085). */
const GO_SPACE = '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const GO_TRIM = new RegExp(`^${GO_SPACE}+|${GO_SPACE}+$`, 'g');

/** Go's strings.TrimSpace. */
export function goTrimSpace(s: string): string {
  return s.replace(GO_TRIM, '');
}

/** A text file as restic's textfile.Read decodes it; a missing file is "<path> does not exist". */
export function readTextFile(path: string): string {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new InvalidInputError(`${path} does not exist`);
    throw e;
  }
  if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) return data.subarray(3).toString('utf8');
  if (data[0] === 0xff && data[1] === 0xfe) return data.subarray(2).toString('utf16le');
  if (data[0] === 0xfe && data[1] === 0xff) {
    const le = Buffer.from(data.subarray(2, 2 + ((data.length - 2) & ~1)));
    le.swap16();
    return le.toString('utf16le');
  }
  return data.toString('utf8');
}

/**
 * restic ≥ 0.17's rule for a resolved password (undefined: none given; restic, which would then
 * read one from stdin, finds it empty): with `--<flag>` (insecure-no-password,
 * from-insecure-no-password) it must be empty and '' is used; without, an empty one is refused
 * with restic's message.
 */
export function checkedPassword(pw: string | undefined, insecureNoPassword: boolean, flag: string): string {
  if (insecureNoPassword) {
    if (pw) throw new InvalidInputError(`--${flag} must not be specified together with providing a password via a cli option or environment variable`);
    return '';
  }
  if (pw) return pw;
  throw new InvalidInputError(`an empty password is not allowed by default. Pass the flag \`--${flag}\` to restic to disable this check`);
}

/**
 * restic's password resolution: a file and a command together are an error; the command's
 * output or the file's text, trimmed; else the variable's value (empty counts as none).
 */
export function resolvePassword(file: string | undefined, command: string | undefined, fromEnv: string | undefined): string | undefined {
  if (file && command) throw new InvalidInputError('Password file and command are mutually exclusive options');
  // Run through /bin/sh, where restic splits the words itself; for a plain command line the same.
  if (command) return goTrimSpace(execSync(command, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  if (file) return goTrimSpace(readTextFile(file));
  return fromEnv ? fromEnv : undefined;
}
