// A Node.js without zstd in node:zlib (before 22.15 / 23.8) must say so, never call a healthy
// repository corrupt. Runs the CLI and the library under an older Node of this machine (Debian's
// Node 20 here) against repositories the pinned Node made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { runtimeSupport, assertRuntime, UnsupportedRuntimeError } from '../../src/index.ts';

/** A node binary on this machine other than the one running the tests that lacks zstd. */
function olderNode(): string | undefined {
  const candidates = new Set<string>(['/usr/bin/node', '/usr/local/bin/node']);
  try {
    for (const p of execFileSync('which', ['-a', 'node'], { encoding: 'utf8' }).split('\n')) if (p) candidates.add(p);
  } catch {
    // `which` finds none: the fixed candidates remain.
  }
  for (const p of candidates) {
    if (!existsSync(p)) continue;
    const r = spawnSync(p, ['-e', "process.exit(typeof require('node:zlib').zstdCompressSync === 'function' ? 0 : 7)"]);
    if (r.status === 7) return p;
  }
  return undefined;
}

const OLD_NODE = olderNode();
const skip = OLD_NODE === undefined ? 'no Node.js without zstd on this machine' : false;

test('the running Node has what Stowage needs', () => {
  assert.deepEqual(runtimeSupport().missing, []);
  assert.doesNotThrow(() => assertRuntime());
});

test('a Node without zstd names the missing capability on every command, never damage', { skip, timeout: 180_000 }, async () => {
  const work = await tmpDir('stowage-runtime');
  const src = path.join(work, 'src');
  await mkdir(src);
  await writeFile(path.join(src, 'a.txt'), 'healthy\n'.repeat(1000));
  for (const version of ['1', '2']) {
    const env = { RESTIC_REPOSITORY: path.join(work, `repo-v${version}`), RESTIC_PASSWORD: 'runtime' };
    assert.equal((await runCli(['init', '--repository-version', version], { env })).code, 0);
    assert.equal((await runCli(['backup', src], { env })).code, 0);
    for (const args of [['snapshots'], ['check'], ['check', '--read-data'], ['ls', 'latest'], ['stats'], ['restore', 'latest', '--target', path.join(work, 'out')], ['backup', src]]) {
      const r = spawnSync(OLD_NODE!, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 60_000 });
      const what = `v${version} ${args.join(' ')}: ${r.stderr}`;
      assert.equal(r.status, 1, what);
      assert.match(r.stderr, /lacks zstd in node:zlib/, what);
      assert.match(r.stderr, /22\.15/, what);
      assert.doesNotMatch(r.stderr, /integrity|invalid|corrupt|damaged/i, what);
    }
    // The pinned Node still finds the repository healthy.
    assert.equal((await runCli(['check', '--read-data'], { env })).code, 0);
  }
});

test('the library under a Node without zstd throws UnsupportedRuntimeError from Repository.open', { skip, timeout: 120_000 }, async () => {
  const work = await tmpDir('stowage-runtime-lib');
  const repo = path.join(work, 'repo');
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'runtime' };
  assert.equal((await runCli(['init'], { env })).code, 0);
  const dist = pathToFileURL(path.join(path.dirname(CLI), '..', 'index.js')).href;
  const script = `
    const { Repository, LocalBackend } = await import(${JSON.stringify(dist)});
    try { await Repository.open(new LocalBackend(${JSON.stringify(repo)}), { password: 'runtime' }); console.log('opened'); }
    catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, capability: e.capability, required: e.required })); }`;
  const r = spawnSync(OLD_NODE!, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout);
  assert.equal(got.name, UnsupportedRuntimeError.name);
  assert.equal(got.code, 'UNSUPPORTED');
  assert.match(got.capability, /zstd/);
  assert.match(got.required, /22\.15/);
});
