// The local examples of restic 0.19.1's documentation (doc/*.rst at tag v0.19.1), one entry per
// command line, as facts: the chapter, the line, the command as the docs print it. `bench/restic-docs.ts`
// runs each with restic 0.19.1 and with `stowage` on identical copies of one fixture repository.
//
// Entries of kind 'probe' are flags and variables the same chapters name in prose (no command
// line of their own); each is the smallest command that exercises it.
//
// How a documented command becomes a runnable one (`runnable()` in the harness):
// - `/srv/…`, `/home/…`, `/tmp/…`, `/media/…`, `/mnt/…` and `~` are moved under the work folder
//   `$W` (the fixture lives at one fixed path, so both tools see the same absolute paths);
// - the docs' snapshot IDs are mapped to fixture snapshots (`DOC_IDS`), `@name` is a fixture
//   snapshot's short ID, `@latest` the newest snapshot after the setup steps, `@blob` a data blob;
// - `args` replaces the derived command where the docs' line cannot run as printed (a pipe, a
//   placeholder like `[...]`, a path inside a snapshot); `stdin`, `cwd`, `env` and `setup` say
//   what the docs' surrounding text or shell does.

/** What the harness does before the command (each step runs with restic 0.19.1, the same for both tools). */
export type SetupStep =
  | 'append-worktxt' // echo 'more data foo bar' >> ~/work.txt
  | 'backup-worktxt' // restic backup /home/user/work.txt
  | 'sql-latest' // restic backup --stdin --stdin-filename production.sql (the newest snapshot)
  | 'files-lists' // /tmp/files_to_backup (NUL-separated), /tmp/glob-pattern, /tmp/generated-list
  | 'corrupt-index' // echo "boom" > the first index file
  | 'damage-pack' // bytes in the middle of one data pack changed
  | 'delete-pack' // one data pack removed
  | 'repair-index' // restic repair index
  | 'group-access' // chmod 440 files, 2770 folders (doc 030, group accessible repositories)
  | 'restored' // restic restore @work6 --target /tmp/restore, then one file changed, one added
  | 'no-copy-repo' // /srv/restic-repo-copy removed
  | 'forgotten-work1' // restic forget @work1 (so prune has something to do)
  | 'repair-snapshots'; // restic repair snapshots --forget

export interface DocExample {
  /** `<chapter number>-<line>`; probes `<chapter number>-p-<name>`. */
  id: string;
  chapter: string;
  /** Line in doc/<chapter>.rst at v0.19.1; 0 for probes. */
  line: number;
  /** The command line as the documentation prints it (probes: what the prose names). */
  doc: string;
  kind?: 'example' | 'probe';
  /** The command to run (shell words, no shell), when it cannot be derived from `doc`. */
  args?: string;
  env?: Record<string, string>;
  /** Working directory under $W; default `home/user` (the docs' user's home). */
  cwd?: string;
  /** Bytes on stdin: a string, or `file:` + a path under $W. */
  stdin?: string;
  setup?: SetupStep[];
  /** How stdout is compared: text by shape (default), json/jsonl by keys and types, bytes, tar or zip by entries. */
  stdout?: 'text' | 'json' | 'jsonl' | 'bytes' | 'tar' | 'zip';
  /** A `| grep WORD` of the docs, applied to stdout. */
  grep?: string;
  /**
   * Compare the text's lines in any order: commands that go through several snapshots (copy,
   * rewrite) take them in restic in the order of their IDs (its listing), which means nothing;
   * Stowage takes them oldest first; forget and `snapshots --group-by` print their groups in Go's
   * map order, which is random from run to run (`'groups'`: the groups, each kept whole, in
   * any order; see sortGroups in the harness); `backup -vv` prints each file and folder as it
   * is done, in the order its concurrent workers finish them.
   */
  unordered?: boolean | 'groups';
  /** Not run, and why (not counted). */
  skip?: string;
}

/** The documentation's snapshot IDs → the fixture snapshot that plays their part. */
export const DOC_IDS: Record<string, string> = {
  c0899509: '@latest', // 040: the snapshot just made by `backup /home/user/work.txt`
  '5845b002': '@work1', // 040: diff
  '2ab627a6': '@work6',
  '073a90db': '@work1', // 045: ls
  '410b18a2': '@work1', // 045: copy
  '4e5d5487': '@work2',
  '6160ddb2': '@work6', // 045: rewrite
  c23e491f: '@work6', // 045: restore after a damaged index
  '79766175': '@work6', // 050: restore
  '098db9d5': '@sql', // 050: dump
  e922c858: '@sql',
  bdbd3439: '@work1', // 060: forget
};

const C030 = '030_preparing_a_new_repo';
const C040 = '040_backup';
const C045 = '045_working_with_repos';
const C050 = '050_restore';
const C060 = '060_forget';
const C070 = '070_encryption';
const C075 = '075_scripting';
const C077 = '077_troubleshooting';

const ex = (chapter: string, line: number, doc: string, more: Partial<DocExample> = {}): DocExample => ({
  id: `${chapter.slice(0, 3)}-${line}`,
  chapter,
  line,
  doc,
  kind: 'example',
  ...more,
});
const probe = (chapter: string, name: string, doc: string, more: Partial<DocExample> = {}): DocExample => ({
  id: `${chapter.slice(0, 3)}-p-${name}`,
  chapter,
  line: 0,
  doc,
  kind: 'probe',
  ...more,
});

export const EXAMPLES: DocExample[] = [
  // 030: preparing a new repository (local parts)
  ex(C030, 75, 'restic init --repo /srv/restic-repo', { args: 'init --repo /srv/new-repo' }),
  ex(C030, 783, 'winpty restic -r /srv/restic-repo init', { skip: 'MSYS2 on Windows only' }),
  ex(C030, 804, "find /srv/restic-repo -type f -exec chmod 440 '{}' \\; (then a backup)", {
    args: 'backup ~/work.txt',
    setup: ['group-access'],
  }),
  ex(C030, 844, 'restic init --insecure-no-password', { args: 'init --insecure-no-password --repo /srv/new-repo', env: { RESTIC_PASSWORD: '' } }),
  probe(C030, 'repository-version-1', 'restic init --repository-version 1', { args: 'init --repository-version 1 --repo /srv/new-repo' }),
  probe(C030, 'repository-version-latest', 'restic init --repository-version latest', { args: 'init --repository-version latest --repo /srv/new-repo' }),
  probe(C030, 'repository-file', '--repository-file', { args: 'snapshots --repository-file /tmp/repo-location', env: { RESTIC_REPOSITORY: '' } }),
  probe(C030, 'RESTIC_REPOSITORY_FILE', 'RESTIC_REPOSITORY_FILE', { args: 'snapshots', env: { RESTIC_REPOSITORY: '', RESTIC_REPOSITORY_FILE: '/tmp/repo-location' } }),
  probe(C030, 'password-file', '--password-file', { args: 'snapshots --password-file /tmp/password', env: { RESTIC_PASSWORD: '' } }),
  probe(C030, 'RESTIC_PASSWORD_FILE', 'RESTIC_PASSWORD_FILE', { args: 'snapshots', env: { RESTIC_PASSWORD: '', RESTIC_PASSWORD_FILE: '/tmp/password' } }),
  probe(C030, 'password-command', '--password-command', { args: 'snapshots --password-command "cat /tmp/password"', env: { RESTIC_PASSWORD: '' } }),
  probe(C030, 'RESTIC_PASSWORD_COMMAND', 'RESTIC_PASSWORD_COMMAND', { args: 'snapshots', env: { RESTIC_PASSWORD: '', RESTIC_PASSWORD_COMMAND: 'cat /tmp/password' } }),

  // 040: backing up
  ex(C040, 24, 'restic -r /srv/restic-repo --verbose backup ~/work'),
  ex(C040, 147, 'restic -r /srv/restic-repo backup ~/work.txt'),
  ex(C040, 159, 'restic -r /srv/restic-repo --verbose --verbose backup ~/work.txt', { setup: ['append-worktxt'] }),
  ex(C040, 264, 'cd /home/user/work && restic -r /srv/restic-repo backup . --skip-if-unchanged', {
    args: 'backup . --skip-if-unchanged',
    cwd: 'home/user/work',
    setup: [],
  }),
  ex(C040, 298, 'restic -r /srv/restic-repo backup /home/user/work.txt'),
  ex(C040, 302, 'restic -r /srv/restic-repo ls c0899509', { setup: ['backup-worktxt'] }),
  ex(C040, 309, 'cd /home; restic -r /srv/restic-repo backup user/work.txt', { args: 'backup user/work.txt', cwd: 'home' }),
  ex(C040, 313, 'restic -r /srv/restic-repo ls', { args: 'ls @latest', setup: ['backup-worktxt'] }),
  ex(C040, 334, 'restic -r /srv/restic-repo backup ~/work --dry-run -vv | grep "added"', { args: 'backup ~/work --dry-run -vv', grep: 'added', setup: ['append-worktxt'], unordered: true }),
  ex(C040, 380, 'restic -r /srv/restic-repo backup ~/work --exclude="*.c" --exclude-file=excludes.txt'),
  ex(C040, 506, 'restic -r /srv/restic-repo backup --one-file-system /', { args: 'backup --one-file-system /home' }),
  ex(C040, 513, 'restic -r /srv/restic-repo backup --one-file-system / /media/usb', { args: 'backup --one-file-system /home /media/usb' }),
  ex(C040, 526, 'restic -r /srv/restic-repo backup ~/work --exclude-larger-than 1M'),
  ex(C040, 587, 'restic -r /srv/restic-repo backup --files-from-raw /tmp/files_to_backup', { setup: ['files-lists'] }),
  ex(C040, 593, 'restic backup --files-from /tmp/files_to_backup /tmp/some_additional_file', { args: 'backup --files-from /tmp/files_to_backup.txt /tmp/some_additional_file', setup: ['files-lists'] }),
  ex(C040, 594, 'restic backup --files-from /tmp/glob-pattern --files-from-raw /tmp/generated-list /tmp/some_additional_file', { setup: ['files-lists'] }),
  ex(C040, 604, 'restic -r /srv/restic-repo diff 5845b002 2ab627a6'),
  ex(C040, 626, 'restic -r /srv/restic-repo diff 5845b002:/restic 2ab627a6:/restic', { args: 'diff @work1:/home/user/work/restic @work6:/home/user/work/restic' }),
  ex(C040, 691, 'restic -r /srv/restic-repo backup --stdin-from-command -- mysqldump --host example mydb [...]', { args: 'backup --stdin-from-command -- /bin/echo CREATE TABLE example;' }),
  ex(C040, 699, 'restic -r /srv/restic-repo backup --stdin-filename production.sql --stdin-from-command -- mysqldump --host example mydb [...]', {
    args: 'backup --stdin-filename production.sql --stdin-from-command -- /bin/echo CREATE TABLE example;',
  }),
  ex(C040, 720, 'gzip bigfile.dat | restic -r /srv/restic-repo backup --stdin', { args: 'backup --stdin', stdin: 'file:home/user/bigfile.dat.gz' }),
  ex(C040, 735, 'mysqldump [...] | restic -r /srv/restic-repo backup --stdin', { args: 'backup --stdin', stdin: 'CREATE TABLE example;\n' }),
  ex(C040, 753, 'restic -r /srv/restic-repo backup --tag projectX --tag foo --tag bar ~/work'),
  probe(C040, 'iexclude', 'backup --iexclude', { args: 'backup ~/work --iexclude "*.JPG"' }),
  probe(C040, 'exclude-caches', 'backup --exclude-caches', { args: 'backup ~/work --exclude-caches' }),
  probe(C040, 'iexclude-file', 'backup --iexclude-file', { args: 'backup ~/work --iexclude-file=iexcludes.txt' }),
  probe(C040, 'exclude-if-present', 'backup --exclude-if-present foo', { args: 'backup ~/work --exclude-if-present .nobackup' }),
  probe(C040, 'exclude-file-env', 'exclude file with $HOME, ! and ** patterns', { args: 'backup ~/work --exclude-file=home-excludes.txt' }),
  probe(C040, 'exclude-anchored', "backup --exclude '/home/user/repos/**/target'", { args: 'backup ~/work --exclude /home/user/work/**/target' }),
  probe(C040, 'exclude-spaces', "backup --exclude='foo bar star/foo.txt'", { args: 'backup ~/work --exclude=foo bar star.txt' }),
  probe(C040, 'files-from-verbatim', 'backup --files-from-verbatim', { args: 'backup --files-from-verbatim /tmp/verbatim-list', setup: ['files-lists'] }),
  probe(C040, 'files-from-stdin', 'backup --files-from -', { args: 'backup --files-from -', stdin: 'file:tmp/files_to_backup.txt', setup: ['files-lists'] }),
  probe(C040, 'group-by-paths', 'backup --group-by paths', { args: 'backup ~/work --group-by paths -v' }),
  probe(C040, 'parent', 'backup --parent', { args: 'backup ~/work --parent @work2 -v' }),
  probe(C040, 'force', 'backup --force', { args: 'backup ~/work --force -v' }),
  probe(C040, 'ignore-ctime', 'backup --ignore-ctime', { args: 'backup ~/work --ignore-ctime -v' }),
  probe(C040, 'ignore-inode', 'backup --ignore-inode', { args: 'backup ~/work --ignore-inode -v' }),
  probe(C040, 'with-atime', 'backup --with-atime', { args: 'backup ~/work.txt --with-atime' }),
  probe(C040, 'missing-source', 'exit 3 when some source files could not be read', { args: 'backup ~/work.txt ~/no-such-file' }),
  probe(C040, 'stdin-command-fails', 'a non-zero exit code from the command causes restic to cancel the backup (exit 1)', { args: 'backup --stdin-from-command -- /bin/false' }),
  probe(C040, 'RESTIC_HOST', 'RESTIC_HOST sets the hostname', { args: 'backup ~/work.txt', env: { RESTIC_HOST: 'envhost' } }),
  probe(C040, 'host', 'backup --host', { args: 'backup ~/work.txt --host otherhost' }),
  probe(C040, 'time', 'backup --time', { args: 'backup ~/work.txt --time "2025-06-01 12:00:00"' }),
  probe(C040, 'RESTIC_COMPRESSION', 'RESTIC_COMPRESSION', { args: 'backup ~/work', env: { RESTIC_COMPRESSION: 'max' } }),
  probe(C040, 'RESTIC_PACK_SIZE', 'RESTIC_PACK_SIZE', { args: 'backup ~/work', env: { RESTIC_PACK_SIZE: '4' } }),
  probe(C040, 'RESTIC_READ_CONCURRENCY', 'RESTIC_READ_CONCURRENCY', { args: 'backup ~/work', env: { RESTIC_READ_CONCURRENCY: '1' } }),
  probe(C040, 'json', 'backup --json', { args: 'backup ~/work --json', stdout: 'jsonl' }),
  probe(C040, 'dry-run-json', 'backup --dry-run --json', { args: 'backup ~/work --dry-run --json', stdout: 'jsonl' }),

  // 045: working with repositories
  ex(C045, 29, 'restic -r /srv/restic-repo snapshots'),
  ex(C045, 43, 'restic -r /srv/restic-repo snapshots --path="/srv"'),
  ex(C045, 54, 'restic -r /srv/restic-repo snapshots --host luigi'),
  // restic prints the groups in Go map order (random from run to run).
  ex(C045, 67, 'restic -r /srv/restic-repo snapshots --group-by host', { unordered: 'groups' }),
  ex(C045, 96, 'restic ls 073a90db'),
  ex(C045, 108, 'restic ls --host kasimir latest'),
  ex(C045, 125, 'restic ls latest /home'),
  ex(C045, 133, 'restic ls --recursive latest /home'),
  ex(C045, 146, 'restic ls --long latest'),
  ex(C045, 164, 'restic ls --long latest --sort size --reverse'),
  ex(C045, 176, 'restic ls --long latest --sort time'),
  ex(C045, 191, 'restic ls latest --sort extension'),
  probe(C045, 'ls-ncdu', 'restic ls latest --ncdu | ncdu -f -', { args: 'ls latest --ncdu', stdout: 'json' }),
  probe(C045, 'ls-human', 'ls --long --human-readable', { args: 'ls --long --human-readable latest' }),
  ex(C045, 210, 'restic -r /srv/restic-repo-copy copy --from-repo /srv/restic-repo --verbose', { unordered: true }),
  ex(C045, 280, 'restic -r /srv/restic-repo-copy copy --from-repo /srv/restic-repo --host luigi --path /srv --tag foo,bar', { unordered: true }),
  ex(C045, 287, 'restic -r /srv/restic-repo-copy copy --from-repo /srv/restic-repo 410b18a2 4e5d5487 latest', { unordered: true }),
  ex(C045, 308, 'restic -r /srv/restic-repo-copy init --from-repo /srv/restic-repo --copy-chunker-params', { setup: ['no-copy-repo'] }),
  probe(C045, 'copy-from-repository-file', 'copy --from-repository-file --from-password-file', {
    args: 'copy --from-repository-file /tmp/repo-location --from-password-file /tmp/password -r /srv/restic-repo-copy',
    unordered: true,
  }),
  ex(C045, 324, 'restic -r /srv/restic-repo rewrite --exclude secret-file', { unordered: true }),
  ex(C045, 335, 'restic -r /srv/restic-repo rewrite --exclude secret-file 6160ddb2', { unordered: true }),
  ex(C045, 395, 'restic -r /srv/restic-repo rewrite --new-host newhost --new-time "1999-01-01 11:11:11"', { args: 'rewrite --new-host newhost --new-time "1999-01-01 11:11:11" @work6', unordered: true }),
  probe(C045, 'rewrite-forget', 'rewrite --forget', { args: 'rewrite --exclude secret-file --forget', unordered: true }),
  probe(C045, 'rewrite-dry-run', 'rewrite --dry-run', { args: 'rewrite --exclude secret-file --dry-run', unordered: true }),
  probe(C045, 'rewrite-summary', 'rewrite --snapshot-summary', { args: 'rewrite --snapshot-summary @work1', unordered: true }),
  probe(C045, 'rewrite-iexclude', 'rewrite --iexclude', { args: 'rewrite --iexclude SECRET-FILE @work6', unordered: true }),
  probe(C045, 'rewrite-exclude-file', 'rewrite --exclude-file', { args: 'rewrite --exclude-file excludes.txt @work6', unordered: true }),
  ex(C045, 427, 'restic -r /srv/restic-repo --no-cache restore c23e491f --target /tmp/restore-work', { setup: ['corrupt-index'] }),
  ex(C045, 445, 'restic -r /srv/restic-repo check'),
  ex(C045, 489, 'restic -r /srv/restic-repo check --read-data'),
  ex(C045, 517, 'restic -r /srv/restic-repo check --read-data-subset=1/5'),
  ex(C045, 518, 'restic -r /srv/restic-repo check --read-data-subset=2/5'),
  ex(C045, 519, 'restic -r /srv/restic-repo check --read-data-subset=3/5'),
  ex(C045, 520, 'restic -r /srv/restic-repo check --read-data-subset=4/5'),
  ex(C045, 521, 'restic -r /srv/restic-repo check --read-data-subset=5/5'),
  ex(C045, 532, 'restic -r /srv/restic-repo check --read-data-subset=2.5%'),
  ex(C045, 539, 'restic -r /srv/restic-repo check --read-data-subset=10%'),
  ex(C045, 551, 'restic -r /srv/restic-repo check --read-data-subset=50M'),
  ex(C045, 552, 'restic -r /srv/restic-repo check --read-data-subset=10G'),
  probe(C045, 'check-with-cache', 'check --with-cache', { args: 'check --with-cache' }),
  ex(C045, 570, 'restic -r /srv/restic-repo find "0/**/7"'),
  ex(C045, 584, 'restic -r /srv/restic-repo find --snapshot latest file1.txt'),
  ex(C045, 601, 'restic -r /srv/restic-repo find --oldest 2025-01-01 --newest "2025-12-31 23:59:59" "*.txt"'),
  ex(C045, 620, 'restic -r /srv/restic-repo find --blob fcd9ec0c', { args: 'find --blob @blob' }),
  probe(C045, 'find-host', 'find --host', { args: 'find --host luigi "*.txt"' }),
  probe(C045, 'find-json', 'find --json', { args: 'find --json file1.txt', stdout: 'json' }),
  probe(C045, 'prune-repack-uncompressed', 'prune --repack-uncompressed', { args: 'prune --repack-uncompressed', setup: ['forgotten-work1'] }),
  probe(C045, 'compression-max', '--compression max', { args: 'backup ~/work --compression max' }),

  // 050: restoring
  ex(C050, 26, 'restic -r /srv/restic-repo restore 79766175 --target /tmp/restore'),
  ex(C050, 36, 'restic -r /srv/restic-repo restore latest --path /home/art --host luigi --target /tmp/restore'),
  ex(C050, 49, 'restic -r /srv/restic-repo restore 79766175 --target /tmp/restore --include /home/user/work/foo'),
  ex(C050, 64, 'restic -r /srv/restic-repo restore 79766175:/home/user/work --target /tmp/restore --include /foo', { args: 'restore @work6:/home/user/work --target /tmp/restore --include /foo' }),
  ex(C050, 110, 'restic -r /srv/restic-repo restore 79766175 --target /tmp/restore --include-xattr user.* --include-xattr security.*'),
  ex(C050, 172, 'restic -r /srv/restic-repo restore --target /tmp/restore --dry-run --verbose=2 latest', { args: 'restore --target /tmp/restore --dry-run --verbose=2 @work6', setup: ['restored'] }),
  ex(C050, 199, 'restic -r /srv/restic-repo mount /mnt/restic', { skip: 'needs FUSE and runs until unmounted; Stowage has no mount (docs/compatibility.md)' }),
  ex(C050, 236, 'restic -r /srv/restic-repo dump latest production.sql | mysql', { setup: ['sql-latest'], stdout: 'bytes' }),
  ex(C050, 244, 'restic -r /srv/restic-repo snapshots', { setup: ['sql-latest'] }),
  ex(C050, 261, 'restic -r /srv/restic-repo dump 098db9d5 production.sql | mysql', { stdout: 'bytes' }),
  ex(C050, 269, 'restic -r /srv/restic-repo dump --path /production.sql latest production.sql | mysql', { args: 'dump --path /production.sql latest production.sql', stdout: 'bytes' }),
  ex(C050, 277, 'restic -r /srv/restic-repo ls e922c858'),
  ex(C050, 288, 'restic -r /srv/restic-repo dump latest /home/other/work > restore.tar', { stdout: 'tar' }),
  ex(C050, 292, 'restic -r /srv/restic-repo dump -a zip latest /home/other/work > restore.zip', { stdout: 'zip' }),
  ex(C050, 299, 'restic -r /srv/restic-repo dump latest:/home/other/work / > restore.tar', { stdout: 'tar' }),
  ex(C050, 306, 'restic -r /srv/restic-repo dump latest / --target /home/linux.user/output.tar -a tar'),
  probe(C050, 'delete', 'restore … --include /foo --delete', { args: 'restore @work6:/home/user/work --target /tmp/restore --include /foo --delete', setup: ['restored'] }),
  probe(C050, 'overwrite-always', 'restore --overwrite always', { args: 'restore @work6 --target /tmp/restore --overwrite always', setup: ['restored'] }),
  probe(C050, 'overwrite-if-changed', 'restore --overwrite if-changed', { args: 'restore @work6 --target /tmp/restore --overwrite if-changed', setup: ['restored'] }),
  probe(C050, 'overwrite-if-newer', 'restore --overwrite if-newer', { args: 'restore @work6 --target /tmp/restore --overwrite if-newer', setup: ['restored'] }),
  probe(C050, 'overwrite-never', 'restore --overwrite never', { args: 'restore @work6 --target /tmp/restore --overwrite never', setup: ['restored'] }),
  probe(C050, 'exclude', 'restore --exclude', { args: 'restore @work6 --target /tmp/restore --exclude *.go' }),
  probe(C050, 'iinclude', 'restore --iinclude', { args: 'restore @work6 --target /tmp/restore --iinclude *.JPG' }),
  probe(C050, 'include-file', 'restore --include-file', { args: 'restore @work6 --target /tmp/restore --include-file restore-includes.txt' }),
  probe(C050, 'exclude-xattr', 'restore --exclude-xattr', { args: 'restore @work6 --target /tmp/restore --exclude-xattr user.*' }),
  probe(C050, 'verify', 'restore --verify', { args: 'restore @work6 --target /tmp/restore --verify' }),
  probe(C050, 'sparse', 'restore --sparse', { args: 'restore @work6 --target /tmp/restore --sparse' }),
  probe(C050, 'json', 'restore --json', { args: 'restore @work6 --target /tmp/restore --json', stdout: 'jsonl' }),
  probe(C050, 'dump-file', 'dump latest FILE', { args: 'dump @work6 /home/user/work/file1.txt', stdout: 'bytes' }),

  // 060: removing snapshots
  ex(C060, 43, 'restic -r /srv/restic-repo snapshots'),
  ex(C060, 58, 'restic -r /srv/restic-repo forget bdbd3439'),
  ex(C060, 81, 'restic -r /srv/restic-repo prune', { setup: ['forgotten-work1'] }),
  ex(C060, 116, 'restic forget --keep-last 1 --prune', { unordered: 'groups' }),
  ex(C060, 245, 'restic forget --tag foo --keep-last 1', { unordered: 'groups' }),
  ex(C060, 252, 'restic forget --tag foo --tag bar --keep-last 1', { unordered: 'groups' }),
  ex(C060, 259, 'restic forget --tag foo,bar --keep-last 1'),
  ex(C060, 266, "restic forget --tag '' --keep-last 1", { unordered: 'groups' }),
  ex(C060, 320, 'restic forget --keep-daily 5 --dry-run', { unordered: 'groups' }),
  ex(C060, 353, 'restic forget --keep-within-daily 7d --dry-run', { unordered: 'groups' }),
  probe(C060, 'keep-within', 'forget --keep-within 7d', { args: 'forget --keep-within 7d --dry-run', unordered: 'groups' }),
  probe(C060, 'keep-hourly', 'forget --keep-hourly n', { args: 'forget --keep-hourly 2 --dry-run', unordered: 'groups' }),
  probe(C060, 'keep-weekly', 'forget --keep-weekly n', { args: 'forget --keep-weekly 1', unordered: 'groups' }),
  probe(C060, 'keep-monthly', 'forget --keep-monthly n', { args: 'forget --keep-monthly 1 --dry-run', unordered: 'groups' }),
  probe(C060, 'keep-yearly', 'forget --keep-yearly n', { args: 'forget --keep-yearly 1 --dry-run', unordered: 'groups' }),
  probe(C060, 'keep-tag', 'forget --keep-tag', { args: 'forget --keep-tag projectX', unordered: 'groups' }),
  probe(C060, 'keep-last-0', 'forget --keep-last 0 (refused without --unsafe-allow-remove-all)', { args: 'forget --keep-last 0' }),
  probe(C060, 'unsafe-allow-remove-all', 'forget --tag example --unsafe-allow-remove-all', { args: 'forget --tag foo --unsafe-allow-remove-all', unordered: 'groups' }),
  probe(C060, 'group-by-paths-tags', 'forget --group-by paths,tags', { args: 'forget --group-by paths,tags --keep-last 1 --dry-run', unordered: 'groups' }),
  probe(C060, 'group-by-empty', "forget --group-by ''", { args: 'forget --group-by "" --keep-last 2 --dry-run' }),
  probe(C060, 'forget-host', 'forget --host', { args: 'forget --host luigi --keep-last 1', unordered: 'groups' }),
  probe(C060, 'forget-json', 'forget --json', { args: 'forget --keep-last 1 --dry-run --json', stdout: 'json' }),
  probe(C060, 'max-unused', 'prune --max-unused limit', { args: 'prune --max-unused 0', setup: ['forgotten-work1'] }),
  probe(C060, 'max-repack-size', 'prune --max-repack-size 0', { args: 'prune --max-repack-size 0', setup: ['forgotten-work1'] }),
  probe(C060, 'repack-cacheable-only', 'prune --repack-cacheable-only', { args: 'prune --repack-cacheable-only', setup: ['forgotten-work1'] }),
  probe(C060, 'repack-smaller-than', 'prune --repack-smaller-than', { args: 'prune --repack-smaller-than 1M', setup: ['forgotten-work1'] }),
  probe(C060, 'prune-dry-run', 'prune --dry-run', { args: 'prune --dry-run', setup: ['forgotten-work1'] }),

  // 070: encryption
  ex(C070, 34, 'restic -r /srv/restic-repo key list'),
  ex(C070, 40, 'restic -r /srv/restic-repo key add', { stdin: 'second-password\nsecond-password\n' }),
  probe(C070, 'key-add-file', 'key add --new-password-file', { args: 'key add --new-password-file /tmp/password2' }),
  probe(C070, 'key-list-json', 'key list --json', { args: 'key list --json', stdout: 'json' }),

  // 075: scripting
  ex(C075, 129, 'restic -r /srv/restic-repo cat config'),
  probe(C075, 'not-initialized', 'cat config on a missing repository: exit 10', { args: 'cat config -r /srv/no-repo' }),
  probe(C075, 'wrong-password', 'wrong password: exit 12', { args: 'snapshots', env: { RESTIC_PASSWORD: 'wrong' } }),
  probe(C075, 'exit-error-json', 'exit_error with --json', { args: 'snapshots --json -r /srv/no-repo' }),
  probe(C075, 'cat-config-json', 'cat config --json', { args: 'cat config --json', stdout: 'json' }),
  probe(C075, 'check-json', 'check --json', { args: 'check --json', stdout: 'jsonl' }),
  probe(C075, 'diff-json', 'diff --json', { args: 'diff @work1 @work6 --json', stdout: 'jsonl' }),
  probe(C075, 'init-json', 'init --json', { args: 'init --json -r /srv/new-repo', stdout: 'json' }),
  probe(C075, 'ls-json', 'ls --json', { args: 'ls @work6 --json', stdout: 'jsonl' }),
  probe(C075, 'snapshots-json', 'snapshots --json', { args: 'snapshots --json', stdout: 'json' }),
  probe(C075, 'snapshots-group-json', 'snapshots --group-by host --json', { args: 'snapshots --group-by host --json', stdout: 'json' }),
  probe(C075, 'stats-json', 'stats --json', { args: 'stats --json', stdout: 'json' }),
  probe(C075, 'stats-raw-json', 'stats --mode raw-data --json', { args: 'stats --mode raw-data --json', stdout: 'json' }),
  probe(C075, 'tag-json', 'tag --json', { args: 'tag --add newtag @work1 --json', stdout: 'jsonl' }),
  probe(C075, 'version-json', 'version --json', { args: 'version --json', stdout: 'json' }),
  probe(C075, 'RESTIC_HOST-filter', 'RESTIC_HOST: only consider snapshots for this host', { args: 'snapshots', env: { RESTIC_HOST: 'luigi' } }),
  probe(C075, 'RESTIC_KEY_HINT', 'RESTIC_KEY_HINT', { args: 'snapshots', env: { RESTIC_KEY_HINT: 'ffffffff' } }),

  // 077: troubleshooting
  ex(C077, 51, 'restic check --read-data', { setup: ['damage-pack'] }),
  ex(C077, 132, 'restic repair index', { setup: ['delete-pack'] }),
  // restic goes through the snapshots in the order it lists and loads them (not by time).
  probe(C077, 'repair-snapshots-dry-run', 'restic repair snapshots --dry-run', { args: 'repair snapshots --dry-run', setup: ['delete-pack', 'repair-index'], unordered: true }),
  ex(C077, 178, 'restic repair snapshots --forget', { setup: ['delete-pack', 'repair-index'], unordered: true }),
  ex(C077, 202, 'restic check --read-data', { setup: ['delete-pack', 'repair-index', 'repair-snapshots'] }),
];
