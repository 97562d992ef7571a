// `stowage check` reads trees as restic's check does: through a temporary cache, one whole read
// per tree pack instead of one ranged read per tree, and the temporary folder is removed after.
// As restic 0.19, that folder is made inside the cache folder and named on the first line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('check fetches tree packs whole through a temporary cache it removes; --no-cache reads tree by tree', { timeout: 180_000 }, async () => {
  const work = await tmpDir('stowage-check-cache');
  const src = path.join(work, 'src');
  for (let i = 0; i < 60; i++) {
    await mkdir(path.join(src, `d${i}`), { recursive: true });
    await writeFile(path.join(src, `d${i}`, 'f'), `file ${i}\n`);
  }
  const tmp = path.join(work, 'tmp');
  await mkdir(tmp);
  const env = { RESTIC_REPOSITORY: path.join(work, 'repo'), RESTIC_PASSWORD: 'check cache', TMPDIR: tmp, XDG_CACHE_HOME: path.join(work, 'cache') };
  assert.equal((await runCli(['init'], { env })).code, 0);
  assert.equal((await runCli(['backup', src], { env })).code, 0);
  const dataLoads = (stderr: string) => stderr.split('\n').filter((l) => /op=load type=data\b/.test(l)).length;

  const cached = await runCli(['check'], { env: { ...env, STOWAGE_LOG_LEVEL: 'debug' } });
  assert.equal(cached.code, 0, cached.stderr);
  assert.match(cached.stdout, /no errors were found/);
  const cacheBase = path.join(work, 'cache', 'stowage');
  assert.ok(cached.stdout.startsWith(`using temporary cache in ${cacheBase}/stowage-check-cache-`), cached.stdout);
  const uncached = await runCli(['check', '--no-cache'], { env: { ...env, STOWAGE_LOG_LEVEL: 'debug' } });
  assert.equal(uncached.code, 0, uncached.stderr);
  // 60 folders + their parents are > 60 trees, all in one tree pack.
  assert.ok(dataLoads(uncached.stderr) > 60, `tree by tree: ${dataLoads(uncached.stderr)} reads`);
  assert.equal(dataLoads(cached.stderr), 1, 'one read of the one tree pack');
  assert.deepEqual((await readdir(cacheBase)).filter((n) => n.startsWith('stowage-check-cache-')), [], 'the temporary cache is removed');
  assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('stowage-check-cache-')), [], 'nothing in the temporary folder');
});
