// restic's environment variables, honoured as restic 0.19.1 honours them, side by side with it:
// - RESTIC_HOST: the hostname `backup` records and the default --host of every snapshot filter
//   (snapshots, stats…); `--host ""` means any host again;
// - STORAGE_EMULATOR_HOST in restic's host:port form (fake-gcs-server): restic initialises the
//   repository there and the CLI works on it with nothing but restic's variables.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Storage } from '@google-cloud/storage';
import { runCli } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk } from '../helpers/restic.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startFakeGcs } from '../servers/fake-gcs.ts';

const PASSWORD = 'environment';
const r19 = resticBin('0.19');
const work = await tmpDir('stowage-env');
const src = path.join(work, 'src');
await mkdir(src, { recursive: true });
await writeFile(path.join(src, 'f'), 'content\n');

test('RESTIC_HOST: the hostname backup records and the default --host of snapshot filters, as restic 0.19', async () => {
  const repo = path.join(work, 'repo');
  const ropts = { repo, password: PASSWORD, cwd: work };
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, RESTIC_HOST: 'from-env' };
  await resticOk(r19, ['init'], ropts);
  await resticOk(r19, ['backup', src], { ...ropts, env: { RESTIC_HOST: 'from-env' } });
  await resticOk(r19, ['backup', '--host', 'other', src], ropts);
  const ours = await runCli(['backup', '--no-cache', src], { env });
  assert.equal(ours.code, 0, ours.stderr);
  const all = await resticJson<Array<{ id: string; hostname: string }>>(r19, ['snapshots'], ropts);
  assert.deepEqual(all.map((s) => s.hostname).sort(), ['from-env', 'from-env', 'other']);
  for (const args of [['snapshots'], ['snapshots', '--host', ''], ['snapshots', '--host', 'other'], ['stats']]) {
    const theirs = await resticJson<unknown>(r19, args, { ...ropts, env: { RESTIC_HOST: 'from-env' } });
    const mine = await runCli([...args, '--json', '--no-cache'], { env });
    assert.equal(mine.code, 0, mine.stderr);
    assert.deepEqual(JSON.parse(mine.stdout), theirs, args.join(' '));
  }
  const filtered = JSON.parse((await runCli(['snapshots', '--json', '--no-cache'], { env })).stdout) as unknown[];
  assert.equal(filtered.length, 2, 'RESTIC_HOST filters');
});

test('STORAGE_EMULATOR_HOST=host:port (restic\'s form) reaches fake-gcs-server from the CLI', async () => {
  const gcs = await startFakeGcs();
  after(() => gcs.stop());
  const bucket = `env-${process.pid}`;
  await new Storage({ apiEndpoint: gcs.endpoint, projectId: 'stowage-test' }).createBucket(bucket);
  const gcsEnv = { STORAGE_EMULATOR_HOST: gcs.host, GOOGLE_ACCESS_TOKEN: 'emulator-needs-no-token', GOOGLE_PROJECT_ID: 'stowage-test' };
  const ropts = { repo: `gs:${bucket}:/repo`, password: PASSWORD, cwd: work, env: gcsEnv };
  await resticOk(r19, ['init'], ropts);
  await resticOk(r19, ['backup', '--host', 'h', src], ropts);
  const env = { ...gcsEnv, RESTIC_REPOSITORY: ropts.repo, RESTIC_PASSWORD: PASSWORD };
  const ours = await runCli(['backup', '--host', 'h', '--no-cache', src], { env });
  assert.equal(ours.code, 0, ours.stderr);
  const theirs = await resticJson<Array<{ id: string }>>(r19, ['snapshots'], ropts);
  const mine = await runCli(['snapshots', '--json', '--no-cache'], { env });
  assert.equal(mine.code, 0, mine.stderr);
  assert.deepEqual(JSON.parse(mine.stdout), theirs);
  assert.equal(theirs.length, 2);
});
