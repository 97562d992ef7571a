// `stowage version` / `--version`, and a `snapshots` table whose columns never run together.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { runCli } from '../helpers/cli.ts';
import { resticBin } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('version and --version print the package version; --json in restic\'s shape', async () => {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const args of [['version'], ['--version']]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^stowage ${pkg.version.replace(/\./g, '\\.')} on Node\\.js v\\d+`));
  }
  const j = JSON.parse((await runCli(['version', '--json'])).stdout) as Record<string, unknown>;
  assert.equal(j.message_type, 'version');
  assert.equal(j.version, pkg.version);
  // restic 0.19.1's keys in its order; go_version is Node's version, go_os and go_arch as Go names them.
  const theirs = JSON.parse(execFileSync(resticBin('0.19'), ['version', '--json'], { encoding: 'utf8' })) as Record<string, unknown>;
  assert.deepEqual(Object.keys(j), Object.keys(theirs));
  assert.equal(j.go_version, process.version);
  assert.equal(j.go_os, theirs.go_os);
  assert.equal(j.go_arch, theirs.go_arch);
});

test('the snapshots table keeps long hosts and tags in their columns', { timeout: 120_000 }, async () => {
  const work = await tmpDir('stowage-cli-table');
  const src = path.join(work, 'src');
  await mkdir(src);
  await writeFile(path.join(src, 'f'), 'x');
  const env = { RESTIC_REPOSITORY: path.join(work, 'repo'), RESTIC_PASSWORD: 'table' };
  assert.equal((await runCli(['init'], { env })).code, 0);
  const host = 'backup-job-7f9c6d5b4-xk2lp.namespace.svc';
  const tags = 'nightly,postgres-production';
  assert.equal((await runCli(['backup', '--host', host, '--tag', tags, src], { env })).code, 0);
  assert.equal((await runCli(['backup', '--host', 'h', src], { env })).code, 0);
  const out = (await runCli(['snapshots'], { env })).stdout.split('\n');
  const header = out[0]!;
  const columns = ['Time', 'Host', 'Tags', 'Paths'].map((c) => header.indexOf(c));
  const long = out.find((l) => l.includes(host))!;
  // Each value starts exactly under its header, with at least two spaces before the next one.
  assert.equal(long.indexOf(host), columns[1]);
  assert.equal(long.indexOf(tags), columns[2]);
  assert.equal(long.indexOf(src), columns[3]);
  assert.match(long, new RegExp(`${host.replace(/\./g, '\\.')}  +${tags}  +`));
  const short = out.find((l) => / h /.test(l))!;
  assert.equal(short.indexOf(src), columns[3]);
});
