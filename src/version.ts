// The program version, in one place: snapshots record it (`program_version`), the CLI prints it.
// test/package/quality.test.ts keeps it equal to package.json's version.

/** Stowage's version (package.json's `version`). */
export const VERSION = '0.1.0';

/** What snapshots record as `program_version`, as restic records "restic 0.19.1". */
export const PROGRAM_VERSION = `stowage ${VERSION}`;
