// Progress output: the reporter with a fake terminal and a fake clock (modes, throttling,
// clearing, restic's JSON fields, rate and ETA, counting steps, fitting the width), the totals
// scanners against what backup and restore really count, and the built CLI on a pseudo-terminal
// (util-linux `script`) and with --json / --quiet, for backup, restore, check, prune and copy.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AbortedError } from '../../src/errors.ts';
import { MemoryBackend } from '../../src/backend/memory.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';
import { restore } from '../../src/snapshot/operations/restore/index.ts';
import { ProgressReporter, progressIntervalFromEnv, fitLine, formatDuration, shortBytes, scanTotals, treeTotals, LINE_INTERVAL_MS, JSON_INTERVAL_MS } from '../../src/cli/progress.ts';
import type { ProgressReporterOptions } from '../../src/cli/progress.ts';
import { CopyStatus } from '../../src/cli/commands/copy.ts';
import { pruneStatus } from '../../src/cli/commands/prune.ts';
import type { CopyEvent } from '../../src/snapshot/operations/copy.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KDF = { N: 1024, r: 8, p: 1 };
const MiB = 1024 * 1024;

/** A terminal that records what is written, and a clock the test moves. */
function fakeTerminal(columns = 200) {
  const writes: string[] = [];
  let t = 0;
  const clock = {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
  return { writes, clock, terminal: { isTTY: true, columns, write: (s: string) => writes.push(s) } };
}

function reporter(over: Partial<ProgressReporterOptions> & Pick<ProgressReporterOptions, 'operation'>) {
  const t = fakeTerminal();
  const json: string[] = [];
  const r = new ProgressReporter({ terminal: t.terminal, now: t.clock.now, timer: false, jsonOut: (l) => json.push(l), ...over });
  return { r, json, ...t };
}

describe('ProgressReporter', () => {
  it('chooses its mode: --quiet wins, then --json, then a status line only on a TTY', () => {
    const tty = { isTTY: true, write: () => {} };
    const pipe = { isTTY: false, write: () => {} };
    assert.equal(new ProgressReporter({ operation: 'backup', terminal: tty, timer: false }).mode, 'line');
    assert.equal(new ProgressReporter({ operation: 'backup', terminal: pipe, timer: false }).mode, 'off');
    assert.equal(new ProgressReporter({ operation: 'backup', terminal: pipe, json: true, timer: false }).mode, 'json');
    assert.equal(new ProgressReporter({ operation: 'backup', terminal: tty, json: true, quiet: true, timer: false }).mode, 'off');
    assert.equal(new ProgressReporter({ operation: 'restore', terminal: tty, quiet: true, timer: false }).enabled, false);
  });

  it('writes nothing at all when off', () => {
    const { r, writes, json } = reporter({ operation: 'backup', terminal: { isTTY: false, write: () => assert.fail('wrote to a pipe') } });
    r.update({ filesDone: 1, bytesDone: 10 });
    r.finish();
    assert.deepEqual([writes, json], [[], []]);
  });

  it('draws the first update at once, then at most every 250 ms, and clears the line at the end', () => {
    const { r, writes, clock } = reporter({ operation: 'backup' });
    r.update({ filesDone: 1, dirsDone: 0, bytesDone: 100, currentFile: '/src/a' });
    assert.equal(writes.length, 1);
    assert.equal(writes[0], '\r[0:00]  1 files  100 B  /src/a\x1b[K');
    clock.advance(LINE_INTERVAL_MS - 1);
    r.update({ filesDone: 2, bytesDone: 200 });
    assert.equal(writes.length, 1, 'no redraw within the interval');
    clock.advance(1);
    r.update({ filesDone: 3, bytesDone: 300 });
    assert.equal(writes.length, 2);
    assert.match(writes[1]!, /3 files  300 B/);
    r.finish();
    assert.equal(writes.at(-1), '\r\x1b[K');
    r.update({ filesDone: 4, bytesDone: 400 });
    r.finish();
    assert.equal(writes.length, 3, 'nothing after finish, and finish clears only once');
  });

  it('clear() takes the line away for other output; it comes back when the next draw is due', () => {
    const { r, writes, clock } = reporter({ operation: 'restore' });
    r.clear();
    assert.equal(writes.length, 0, 'nothing to clear yet');
    r.update({ filesDone: 1, bytesDone: 1 });
    r.clear();
    assert.equal(writes.at(-1), '\r\x1b[K');
    r.clear();
    assert.equal(writes.length, 2, 'cleared once');
    clock.advance(100);
    r.update({ filesDone: 2, bytesDone: 2 });
    assert.equal(writes.length, 2, 'a warning does not buy an early redraw');
    clock.advance(150);
    r.tick();
    assert.match(writes.at(-1)!, /^\r\[0:00\]  2 files  2 B/);
  });

  it('shows percentage, totals, rate and ETA once the totals are known', () => {
    const { r, writes, clock } = reporter({ operation: 'backup' });
    r.update({ filesDone: 0, bytesDone: 0 });
    r.setTotals({ files: 10, dirs: 2, bytes: 100 * MiB });
    clock.advance(10_000);
    r.addError();
    r.update({ filesDone: 4, bytesDone: 40 * MiB, currentFile: '/data/big.bin' });
    // 40 MiB in 10 s: 4 MiB/s, 60 MiB left: 15 s.
    assert.equal(writes.at(-1), '\r[0:10]  40.00%  4/10 files  40.0 MiB/100 MiB  1 errors  4.00 MiB/s  ETA 0:15  /data/big.bin\x1b[K');
    assert.equal(r.etaSeconds(), 15);
    clock.advance(5_000);
    r.update({ filesDone: 10, bytesDone: 100 * MiB });
    assert.match(writes.at(-1)!, /100\.00%/);
    assert.doesNotMatch(writes.at(-1)!, /ETA/, 'no ETA when done');
  });

  it('measures the rate over the last ten seconds, so an early burst fades', () => {
    const { r, clock } = reporter({ operation: 'restore' });
    r.update({ filesDone: 1000, bytesDone: 1000 * MiB }); // unchanged files: a burst
    for (let i = 1; i <= 30; i++) {
      clock.advance(1000);
      r.update({ filesDone: 1000 + i, bytesDone: (1000 + i) * MiB });
    }
    assert.ok(Math.abs(r.rate() - MiB) < 0.15 * MiB, `rate ${r.rate()} should be about 1 MiB/s`);
  });

  it('prints restic-shaped JSON status lines for backup, at most once a second, leaving zero fields out', () => {
    const { r, json, clock, writes } = reporter({ operation: 'backup', json: true });
    r.update({ filesDone: 0, bytesDone: 0 });
    assert.deepEqual(JSON.parse(json[0]!), { message_type: 'status', percent_done: 0 });
    clock.advance(JSON_INTERVAL_MS - 1);
    r.update({ filesDone: 1, bytesDone: 5 });
    assert.equal(json.length, 1, 'not within a second');
    r.setTotals({ files: 4, dirs: 1, bytes: 8 * MiB });
    clock.advance(1_001);
    r.addError();
    r.update({ filesDone: 2, bytesDone: 2 * MiB, currentFile: '/x/y' });
    assert.equal(json.length, 2);
    assert.ok(json.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')), 'one object per line');
    const s = JSON.parse(json[1]!);
    assert.deepEqual(Object.keys(s), ['message_type', 'seconds_elapsed', 'seconds_remaining', 'percent_done', 'total_files', 'files_done', 'total_bytes', 'bytes_done', 'error_count', 'current_files']);
    assert.equal(s.seconds_elapsed, 2);
    assert.equal(s.percent_done, 0.25);
    assert.deepEqual([s.total_files, s.files_done, s.total_bytes, s.bytes_done, s.error_count], [4, 2, 8 * MiB, 2 * MiB, 1]);
    assert.deepEqual(s.current_files, ['/x/y']);
    assert.equal(s.seconds_remaining, 6, '6 MiB left at 1 MiB/s');
    r.finish();
    assert.deepEqual(writes, [], 'JSON mode never draws on the terminal');
  });

  it('takes its interval from $RESTIC_PROGRESS_FPS as restic does (at most 60 a second; others ignored)', () => {
    assert.equal(progressIntervalFromEnv({ RESTIC_PROGRESS_FPS: '4' }), 250);
    assert.equal(progressIntervalFromEnv({ RESTIC_PROGRESS_FPS: '0.5' }), 2000);
    assert.equal(progressIntervalFromEnv({ RESTIC_PROGRESS_FPS: '1000' }), 1000 / 60);
    for (const v of [undefined, '', '0', '-1', 'fast']) assert.equal(progressIntervalFromEnv({ RESTIC_PROGRESS_FPS: v }), undefined, String(v));
    // JSON status every 10 ms at 100 fps (60: every 16.7 ms), instead of once a second.
    const { r, json, clock } = reporter({ operation: 'backup', json: true, intervalMs: progressIntervalFromEnv({ RESTIC_PROGRESS_FPS: '100' }) });
    r.update({ filesDone: 0, bytesDone: 0 });
    clock.advance(17);
    r.update({ filesDone: 1, bytesDone: 1 });
    clock.advance(10);
    r.update({ filesDone: 2, bytesDone: 2 });
    assert.equal(json.length, 2);
  });

  it('uses restic restore field names in JSON', () => {
    const { r, json } = reporter({ operation: 'restore', json: true });
    r.setTotals({ files: 3, dirs: 1, bytes: 300 });
    r.update({ filesDone: 1, bytesDone: 100, currentFile: '/t/a' });
    assert.deepEqual(JSON.parse(json[0]!), { message_type: 'status', percent_done: 100 / 300, total_files: 3, files_restored: 1, total_bytes: 300, bytes_restored: 100 });
  });

  it('prints JSON on its timer while no file completes', async () => {
    const json: string[] = [];
    const r = new ProgressReporter({ operation: 'backup', json: true, jsonOut: (l) => json.push(l) });
    try {
      await new Promise((res) => setTimeout(res, 2_400));
    } finally {
      r.finish();
    }
    assert.ok(json.length >= 2 && json.length <= 3, `${json.length} lines in 2.4 s`);
    const n = json.length;
    await new Promise((res) => setTimeout(res, 1_200));
    assert.equal(json.length, n, 'the timer stops at finish');
  });

  it('prints no JSON status for check, prune and copy, which restic has none for; a status line on a TTY', () => {
    const tty = { isTTY: true, write: () => {} };
    for (const operation of ['check', 'prune', 'copy'] as const) {
      const json: string[] = [];
      const r = new ProgressReporter({ operation, terminal: tty, json: true, jsonOut: (l) => json.push(l), timer: false });
      assert.equal(r.mode, 'off', operation);
      r.step({ label: 'packs', done: 1, total: 2 });
      assert.deepEqual(json, [], operation);
      assert.equal(new ProgressReporter({ operation, terminal: tty, timer: false }).mode, 'line', operation);
      assert.equal(new ProgressReporter({ operation, terminal: tty, quiet: true, timer: false }).mode, 'off', operation);
    }
  });

  it("draws counting steps as restic's counters: percentage, done / total and what is counted, bytes and rate, ETA", () => {
    const { r, writes, clock } = reporter({ operation: 'check' });
    r.step({ label: 'index files', done: 1, total: 4 });
    assert.equal(writes.at(-1), '\r[0:00]  25.00%  1 / 4 index files\x1b[K');
    clock.advance(100);
    r.step({ label: 'index files', done: 2, total: 4 });
    assert.equal(writes.length, 1, 'the same step is throttled like any update');
    r.step({ label: 'trees', done: 7 });
    assert.equal(writes.length, 2, 'a new step is drawn at once');
    assert.equal(writes.at(-1), '\r[0:00]  7 trees\x1b[K', 'no total: no percentage');
    clock.advance(1_000);
    r.step({ label: 'packs read', done: 0, total: 10, bytes: 0 });
    clock.advance(2_000);
    r.step({ label: 'packs read', done: 4, total: 10, bytes: 8 * MiB });
    // 4 packs in 2 s: 6 left take 3 s; 8 MiB in 2 s: 4 MiB/s.
    assert.equal(writes.at(-1), '\r[0:03]  40.00%  4 / 10 packs read  8.00 MiB  4.00 MiB/s  ETA 0:03\x1b[K');
    r.finish();
    assert.equal(writes.at(-1), '\r\x1b[K');
  });

  it('starts a step afresh when its id changes, and shows its note', () => {
    const { r, writes, clock } = reporter({ operation: 'copy' });
    r.step({ label: 'blobs', id: 1, done: 0, total: 10, bytes: 0, detail: 'snapshot 1 of 2' });
    clock.advance(2_000);
    r.step({ label: 'blobs', id: 1, done: 10, total: 10, bytes: 20 * MiB, detail: 'snapshot 1 of 2' });
    assert.match(writes.at(-1)!, /100\.00%  10 \/ 10 blobs  20\.0 MiB  10\.0 MiB\/s  snapshot 1 of 2\x1b\[K$/);
    clock.advance(10);
    r.step({ label: 'blobs', id: 2, done: 0, total: 4, bytes: 20 * MiB, detail: 'snapshot 2 of 2' });
    assert.equal(writes.length, 3, 'drawn at once');
    assert.equal(writes.at(-1), '\r[0:02]  0.00%  0 / 4 blobs  20.0 MiB  snapshot 2 of 2\x1b[K', 'the rate starts over with the step');
  });

  it('CopyStatus counts the blobs of the snapshot in work, against what it lacks once planned', () => {
    const { r, writes, clock } = reporter({ operation: 'copy' });
    const status = new CopyStatus(r);
    const progress = (blobsCopied: number, bytesCopied: number, filesRechunked = 0) =>
      status.update({ snapshotsDone: 0, snapshotsTotal: 2, blobsCopied, bytesCopied, filesRechunked });
    progress(0, 0);
    assert.deepEqual(writes, [], 'nothing before a snapshot starts');
    status.event({ type: 'started' } as CopyEvent);
    assert.equal(writes.at(-1), '\r[0:00]  0 blobs  0 B  snapshot 1 of 2\x1b[K');
    status.event({ type: 'planned', blobs: 40 } as CopyEvent);
    clock.advance(300);
    progress(10, 1000);
    assert.equal(writes.at(-1), '\r[0:00]  25.00%  10 / 40 blobs  1000 B  snapshot 1 of 2\x1b[K');
    status.event({ type: 'started' } as CopyEvent);
    assert.equal(writes.at(-1), '\r[0:00]  0 blobs  1000 B  snapshot 2 of 2\x1b[K', 'the second snapshot counts from zero');
    clock.advance(300);
    progress(15, 2000, 3);
    assert.equal(writes.at(-1), '\r[0:00]  5 blobs  1.95 KiB  snapshot 2 of 2, 3 files re-chunked\x1b[K');
  });

  it("pruneStatus names each prune phase as restic's counters do", () => {
    const { r, writes } = reporter({ operation: 'prune' });
    const onProgress = pruneStatus(r);
    onProgress({ phase: 'snapshots', done: 1, total: 2 });
    onProgress({ phase: 'repack', done: 3, total: 4 });
    onProgress({ phase: 'delete-packs', done: 5, total: 5 });
    assert.deepEqual(writes, [
      '\r[0:00]  50.00%  1 / 2 snapshots\x1b[K',
      '\r[0:00]  75.00%  3 / 4 packs repacked\x1b[K',
      '\r[0:00]  100.00%  5 / 5 packs deleted\x1b[K',
    ]);
  });

  it('fits the terminal: the current file loses its beginning, the text its end', () => {
    const text = '[0:01]  3 files 3 B, 0 errors';
    const file = '/very/long/path/to/some/deeply/nested/folder/and/finally/the-file.txt';
    const fitted = fitLine(text, file, 60);
    assert.equal([...fitted].length, 59);
    assert.ok(fitted.startsWith(text + '  …'));
    assert.ok(fitted.endsWith('/finally/the-file.txt'));
    assert.equal(fitLine(text, file, 0).length <= 79, true, 'unknown width: 80 columns');
    assert.equal(fitLine(text, 'short', 80), `${text}  short`);
    const cut = fitLine('x'.repeat(100), file, 40);
    assert.equal([...cut].length, 39);
    assert.ok(cut.endsWith('…'));
    assert.equal(fitLine(text, file, 36), text, 'no room for a useful file name');
  });

  it('keeps byte counts short', () => {
    assert.deepEqual([0, 812, 1024, 4.48 * MiB, 99.94 * MiB, 195.4 * 1024 * MiB].map(shortBytes), ['0 B', '812 B', '1.00 KiB', '4.48 MiB', '99.9 MiB', '195 GiB']);
  });

  it('formats durations as restic does', () => {
    assert.deepEqual([formatDuration(0), formatDuration(59.9), formatDuration(61), formatDuration(3600), formatDuration(3 * 3600 + 62)], ['0:00', '0:59', '1:01', '1:00:00', '3:01:02']);
  });
});

describe('totals', () => {
  it('scanTotals counts regular files, folders and bytes as backup sees them, honouring excludes', async () => {
    const src = await tmpDir('stowage-scan');
    await mkdir(path.join(src, 'a', 'b', 'c'), { recursive: true });
    await mkdir(path.join(src, 'skip'));
    await writeFile(path.join(src, 'a', 'one'), randomBytes(1000));
    await writeFile(path.join(src, 'a', 'b', 'two'), randomBytes(2000));
    await writeFile(path.join(src, 'a', 'b', 'c', 'empty'), '');
    await writeFile(path.join(src, 'a', 'x.tmp'), randomBytes(500));
    await writeFile(path.join(src, 'skip', 'three'), randomBytes(3000));
    await writeFile(Buffer.from(path.join(src, 'a', 'latin1-\xe9'), 'latin1'), randomBytes(7));
    await symlink('one', path.join(src, 'a', 'link'));
    await link(path.join(src, 'a', 'one'), path.join(src, 'hard'));
    for (let i = 0; i < 70; i++) await writeFile(path.join(src, 'a', 'b', `f${i}`), 'x'.repeat(i)); // more than one lstat batch

    const excludes = ['*.tmp', path.join(src, 'skip')];
    const totals = await scanTotals([src], { excludes });
    const manyBytes = (69 * 70) / 2;
    assert.deepEqual(totals, { files: 5 + 70, dirs: 4, bytes: 1000 + 2000 + 7 + 1000 + manyBytes });

    // The same numbers as the backup itself arrives at.
    const repo = await (await Repository.init(new MemoryBackend(), { password: 'pw', kdf: KDF })).loadIndex();
    let last = { filesDone: 0, bytesDone: 0, dirsDone: 0 };
    await backup(repo, { paths: [src], excludes, onProgress: (p) => (last = p) });
    assert.equal(last.filesDone, totals.files);
    assert.equal(last.bytesDone, totals.bytes);

    // A file target, a missing target, and several targets.
    assert.deepEqual(await scanTotals([path.join(src, 'a', 'one'), path.join(src, 'missing'), path.join(src, 'skip')]), { files: 2, dirs: 1, bytes: 4000 });
  });

  it('scanTotals stops with AbortedError when its signal fires', async () => {
    const src = await tmpDir('stowage-scan-abort');
    await mkdir(path.join(src, 'd'));
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(scanTotals([src], { signal: ac.signal }), AbortedError);
  });

  it('treeTotals counts what restore writes, with include and exclude, hard links once by bytes', async () => {
    const src = await tmpDir('stowage-tree-totals');
    await mkdir(path.join(src, 'docs', 'old'), { recursive: true });
    await mkdir(path.join(src, 'img'));
    await writeFile(path.join(src, 'docs', 'a.txt'), randomBytes(100));
    await writeFile(path.join(src, 'docs', 'old', 'b.txt'), randomBytes(200));
    await writeFile(path.join(src, 'docs', 'old', 'c.bin'), randomBytes(300));
    await writeFile(path.join(src, 'img', 'p.png'), randomBytes(400));
    await link(path.join(src, 'img', 'p.png'), path.join(src, 'img', 'p-again.png'));
    await symlink('a.txt', path.join(src, 'docs', 'link'));
    const repo = await (await Repository.init(new MemoryBackend(), { password: 'pw', kdf: KDF })).loadIndex();
    const { snapshot } = await backup(repo, { paths: [src] });

    const cases: Array<{ include?: string[]; exclude?: string[] }> = [
      {},
      { include: ['*.txt'] },
      { exclude: ['old'] },
      { include: ['docs'], exclude: ['*.bin'] },
      { include: [path.join(src, 'img')] },
    ];
    for (const c of cases) {
      const totals = await treeTotals(repo, snapshot.tree, c);
      const target = await tmpDir('stowage-tree-totals-restore');
      const res = await restore(repo, snapshot.tree, { target, ...c });
      assert.deepEqual([totals.files, totals.bytes], [res.filesRestored, res.bytesRestored], JSON.stringify(c));
    }
    const all = await treeTotals(repo, snapshot.tree);
    assert.deepEqual([all.files, all.bytes], [5, 1000]);
  });
});

/** Runs the built CLI on a pseudo-terminal of the given width; returns what the terminal showed. */
function onTerminal(args: string[], env: Record<string, string>, columns = 120): Promise<{ code: number | null; screen: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = `stty cols ${columns} rows 24; exec ${[process.execPath, CLI, ...args].map(quote).join(' ')}`;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', TERM: 'xterm', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (screen += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (screen += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
    child.stdin.end();
  });
}

describe('the stowage CLI shows progress', () => {
  it('as a status line on a terminal, cleared before the summary; not with --quiet, not into a pipe; JSON with --json', { timeout: 300_000 }, async () => {
    const work = await tmpDir('stowage-cli-progress');
    const src = path.join(work, 'src');
    await mkdir(path.join(src, 'sub'), { recursive: true });
    for (let i = 0; i < 40; i++) await writeFile(path.join(src, 'sub', `file-${i}.bin`), randomBytes(64 * 1024));
    await writeFile(path.join(src, 'big.bin'), randomBytes(24 * MiB));
    const env = { RESTIC_REPOSITORY: path.join(work, 'repo'), RESTIC_PASSWORD: 'progress test' };
    assert.equal((await runCli(['init'], { env })).code, 0);

    const first = await onTerminal(['backup', src], env);
    assert.equal(first.code, 0, first.screen);
    // A drawn status line: carriage return, elapsed time, counts, erase to the end of the line.
    const lines = [...first.screen.matchAll(/\r(\[\d+:\d\d\][^\r\n]*?)\x1b\[K/g)].map((m) => m[1]!);
    assert.ok(lines.length >= 1, `no status line on the terminal:\n${JSON.stringify(first.screen)}`);
    assert.ok(lines.every((l) => /^\[\d+:\d\d\]  (?:\d+\.\d\d%  )?\d+(?:\/\d+)? files  [\d.]+ \S?i?B/.test(l)), JSON.stringify(lines));
    assert.ok(lines.every((l) => [...l].length <= 119), 'fits 120 columns');
    // Cleared, then the summary.
    const clearedAt = first.screen.lastIndexOf('\r\x1b[K');
    assert.ok(clearedAt >= 0 && clearedAt < first.screen.indexOf('Files:'), JSON.stringify(first.screen));
    assert.match(first.screen, /snapshot [0-9a-f]{8} saved/);

    const quiet = await onTerminal(['backup', '--quiet', '--force', src], env);
    assert.equal(quiet.code, 0, quiet.screen);
    assert.doesNotMatch(quiet.screen, /\[\d+:\d\d\]|\x1b\[K/, 'nothing with --quiet');

    const piped = await runCli(['backup', '--force', src], { env });
    assert.equal(piped.code, 0, piped.stderr);
    assert.doesNotMatch(piped.stderr + piped.stdout, /\[\d+:\d\d\]|\x1b/, 'no status line into a pipe');

    const json = await runCli(['backup', '--json', '--force', src], { env });
    assert.equal(json.code, 0, json.stderr);
    const messages = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const statuses = messages.filter((m) => m.message_type === 'status');
    assert.ok(statuses.length >= 1, json.stdout);
    assert.equal(messages.at(-1)!.message_type, 'summary');
    for (const s of statuses) {
      assert.equal(typeof s.percent_done, 'number');
      for (const k of Object.keys(s)) assert.ok(['message_type', 'seconds_elapsed', 'seconds_remaining', 'percent_done', 'total_files', 'files_done', 'total_bytes', 'bytes_done', 'error_count', 'current_files'].includes(k), k);
    }

    const target = path.join(work, 'restored');
    const restored = await onTerminal(['restore', 'latest', '--target', target], env);
    assert.equal(restored.code, 0, restored.screen);
    assert.match(restored.screen, /\r\[\d+:\d\d\]  (?:\d+\.\d\d%  )?\d+(?:\/\d+)? files/);
    const summaryAt = restored.screen.search(/Summary: Restored \d+ files\/dirs/);
    assert.ok(summaryAt > 0 && restored.screen.lastIndexOf('\r\x1b[K') < summaryAt, JSON.stringify(restored.screen));

    const restoredJson = await runCli(['restore', 'latest', '--json', '--target', path.join(work, 'restored-json')], { env });
    assert.equal(restoredJson.code, 0, restoredJson.stderr);
    const rs = restoredJson.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    // A restore this small may finish before the status timer ticks: the first status (drawn at
    // the start, zero counts left out as restic leaves them out) and the summary are certain.
    const restoreStatuses = rs.filter((m) => m.message_type === 'status');
    assert.ok(restoreStatuses.length >= 1 && typeof restoreStatuses[0]!.total_files === 'number', restoredJson.stdout);
    for (const m of restoreStatuses) {
      for (const k of Object.keys(m)) assert.ok(['message_type', 'seconds_elapsed', 'seconds_remaining', 'percent_done', 'total_files', 'files_restored', 'files_skipped', 'files_deleted', 'total_bytes', 'bytes_restored', 'bytes_skipped'].includes(k), k);
    }
    assert.equal(rs.at(-1)!.message_type, 'summary');
  });
});

/** The status lines drawn on a terminal screen, without the "\r" and the erase. */
function statusLines(screen: string): string[] {
  return [...screen.matchAll(/\r(\[\d+:\d\d\][^\r\n]*?)\x1b\[K/g)].map((m) => m[1]!);
}

/**
 * Every status line is followed by a carriage return (its redraw or its clearing): nothing else
 * was written into it, and none is left on the screen at the end.
 */
function assertNeverWrittenInto(screen: string, what: string): void {
  for (const m of screen.matchAll(/\r\[\d+:\d\d\][^\r\n]*?\x1b\[K/g)) {
    assert.equal(screen[m.index + m[0].length], '\r', `${what}: output written into the status line at ${m.index}:\n${JSON.stringify(screen.slice(m.index, m.index + 200))}`);
  }
}

describe('the stowage CLI shows progress for check, prune and copy', () => {
  it('as a status line on a terminal that other output clears; nothing with --quiet; --json output without status', { timeout: 300_000 }, async () => {
    const work = await tmpDir('stowage-cli-progress-maintenance');
    const src = path.join(work, 'src');
    await mkdir(src);
    for (let i = 0; i < 20; i++) await writeFile(path.join(src, `file-${i}.bin`), randomBytes(48 * 1024));
    const repo = path.join(work, 'repo');
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'progress test', RESTIC_FROM_PASSWORD: 'progress test' };
    const ok = async (args: string[]) => {
      const r = await runCli(args, { env });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      return r;
    };
    await ok(['init']);
    await ok(['backup', src]);
    // Half the files change, then the first snapshot goes: the prune has data to repack.
    for (let i = 0; i < 10; i++) await writeFile(path.join(src, `file-${i}.bin`), randomBytes(48 * 1024));
    await ok(['backup', src]);
    await ok(['forget', '--keep-last', '1']);

    // check: a line per phase (index files, trees, packs read), cleared before each message.
    const check = await onTerminal(['check', '--read-data'], env);
    assert.equal(check.code, 0, check.screen);
    const checkLines = statusLines(check.screen);
    assert.ok(checkLines.some((l) => /^\[\d+:\d\d\]  \d+\.\d\d%  \d+ \/ 2 index files$/.test(l)), JSON.stringify(checkLines));
    assert.ok(checkLines.some((l) => /^\[\d+:\d\d\]  \d+ trees$/.test(l)), JSON.stringify(checkLines));
    assert.ok(checkLines.some((l) => /^\[\d+:\d\d\]  \d+\.\d\d%  \d+ \/ \d+ packs read  [\d.]+ \S*B/.test(l)), JSON.stringify(checkLines));
    assertNeverWrittenInto(check.screen, 'check');
    assert.match(check.screen, /no errors were found/);

    const checkQuiet = await onTerminal(['check', '--read-data', '--quiet'], env);
    assert.equal(checkQuiet.code, 0, checkQuiet.screen);
    assert.deepEqual(statusLines(checkQuiet.screen), [], 'nothing with --quiet');
    const checkJson = await onTerminal(['check', '--json'], env);
    assert.equal(checkJson.code, 0, checkJson.screen);
    assert.deepEqual(statusLines(checkJson.screen), [], 'restic has no JSON status for check: none, and no status line either');
    const checkJsonPiped = await runCli(['check', '--json'], { env });
    assert.deepEqual(checkJsonPiped.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { message_type: string }).message_type), ['summary']);

    // prune: with --verbose, log records (lock, index) and messages land between the lines, never in them.
    const pruneJson = await runCli(['prune', '--dry-run', '--json'], { env });
    assert.equal(pruneJson.code, 0, pruneJson.stderr);
    assert.deepEqual(pruneJson.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { message_type: string }).message_type), ['summary'], 'only the summary');
    const prune = await onTerminal(['prune', '--verbose'], env);
    assert.equal(prune.code, 0, prune.screen);
    const pruneLines = statusLines(prune.screen);
    for (const step of ['index files loaded', 'snapshots', 'packs processed', 'packs repacked']) {
      assert.ok(pruneLines.some((l) => new RegExp(`^\\[\\d+:\\d\\d\\]  [\\d.]+%  \\d+ / \\d+ ${step}$`).test(l)), `${step}: ${JSON.stringify(pruneLines)}`);
    }
    assert.match(prune.screen, /info: lock acquired lock=[0-9a-f]{64} exclusive=true/);
    assert.match(prune.screen, /info: index loaded indexFiles=\d+ packs=\d+ blobs=\d+/);
    assertNeverWrittenInto(prune.screen, 'prune');
    const pruneQuiet = await onTerminal(['prune', '--quiet'], env);
    assert.equal(pruneQuiet.code, 0, pruneQuiet.screen);
    assert.deepEqual(statusLines(pruneQuiet.screen), []);

    // copy: the blobs of each snapshot, against those the destination lacks.
    const dst = path.join(work, 'copy');
    await ok(['init', '-r', dst, '--from-repo', repo, '--copy-chunker-params']);
    const copied = await onTerminal(['copy', '-r', dst, '--from-repo', repo], env);
    assert.equal(copied.code, 0, copied.screen);
    const copyLines = statusLines(copied.screen);
    // Drawn when the snapshot starts; later draws (with the blobs it lacks) only as time passes.
    assert.ok(copyLines.some((l) => /^\[\d+:\d\d\]  (?:\d+\.\d\d%  \d+ \/ \d+|\d+) blobs  [\d.]+ \S*B  (?:\S+\/s  )?snapshot 1(?: of 1)?$/.test(l)), JSON.stringify(copyLines));
    assertNeverWrittenInto(copied.screen, 'copy');
    assert.match(copied.screen, /snapshot [0-9a-f]{8} saved, copied from source snapshot [0-9a-f]{8}/);

    const dst2 = path.join(work, 'copy-2');
    await ok(['init', '-r', dst2, '--from-repo', repo, '--copy-chunker-params']);
    const copyJson = await runCli(['copy', '--json', '-r', dst2, '--from-repo', repo], { env });
    assert.equal(copyJson.code, 0, copyJson.stderr);
    assert.equal(copyJson.stdout, '', 'restic prints nothing for copy --json');
    const dst3 = path.join(work, 'copy-3');
    await ok(['init', '-r', dst3]);
    const copyQuiet = await onTerminal(['copy', '--quiet', '-r', dst3, '--from-repo', repo], env);
    assert.equal(copyQuiet.code, 0, copyQuiet.screen);
    assert.deepEqual(statusLines(copyQuiet.screen), []);

    // forget --prune: the prune's status lines too, below the forget's own output.
    for (let i = 0; i < 10; i++) await writeFile(path.join(src, `file-${i}.bin`), randomBytes(48 * 1024));
    await ok(['backup', src]);
    const forgotten = await onTerminal(['forget', '--keep-last', '1', '--prune'], env);
    assert.equal(forgotten.code, 0, forgotten.screen);
    const forgetLines = statusLines(forgotten.screen);
    assert.ok(forgetLines.some((l) => /^\[\d+:\d\d\]  [\d.]+%  \d+ \/ \d+ packs processed$/.test(l)), JSON.stringify(forgetLines));
    assertNeverWrittenInto(forgotten.screen, 'forget --prune');
    assert.match(forgotten.screen, /1 snapshots have been removed, running prune/);
  });
});
