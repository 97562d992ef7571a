// copy between repositories, checked with the real restic 0.19 (and 0.14 for a v1 destination):
// restic-written source → Stowage-created destination with another password, with the same
// chunker polynomial (blob by blob, trees unchanged) and with another one (files re-chunked);
// the destination passes `restic check --read-data` and restores exactly; a second copy copies
// nothing; the CLI (`init --copy-chunker-params`, `copy --from-repo`) prints what restic prints;
// and restic's own `copy --from-repo` reads a repository Stowage copied into.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backend/local.ts';
import { IntegrityError } from '../../src/errors.ts';
import { Repository } from '../../src/repository/repository.ts';
import { copy, planCopy, similarSnapshots } from '../../src/snapshot/operations/copy.ts';
import { listSnapshots } from '../../src/snapshot/engine/select.ts';
import { makeAwkwardTree } from '../helpers/awkward-tree.ts';
import { compareTrees } from '../helpers/compare-trees.ts';
import { resticBin, resticOk, resticJson, runRestic } from '../helpers/restic.ts';
import { runCli } from '../helpers/cli.ts';
import { removeTree } from '../helpers/tmp.ts';

const SRC_PASSWORD = 'source password';
const DST_PASSWORD = 'destination password';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

interface ResticSnap {
  id: string;
  short_id: string;
  tree: string;
  hostname: string;
  tags?: string[];
  original?: string;
  parent?: string;
}

describe('copy between repositories', () => {
  let work: string;
  let src: string;
  let srcRepoDir: string;
  let srcSnaps: ResticSnap[];
  let pwFile: string;
  const r19 = () => resticBin('0.19');
  const srcOpts = () => ({ repo: srcRepoDir, password: SRC_PASSWORD });

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'stowage-copy-'));
    src = path.join(work, 'src');
    srcRepoDir = path.join(work, 'source-repo');
    pwFile = path.join(work, 'source-password');
    await writeFile(pwFile, SRC_PASSWORD + '\n');
    await mkdir(src);
    await makeAwkwardTree(src, { seed: 'copy' });
    await resticOk(r19(), ['init'], srcOpts());
    await resticOk(r19(), ['backup', '--host', 'h1', '--tag', 'one', src], srcOpts());
    await writeFile(path.join(src, 'added-later.txt'), 'a file only the second snapshot has\n');
    await resticOk(r19(), ['backup', '--host', 'h1', src], srcOpts());
    srcSnaps = await resticJson<ResticSnap[]>(r19(), ['snapshots'], srcOpts());
    assert.equal(srcSnaps.length, 2);
  });
  after(async () => {
    await removeTree(work);
  });

  const openSource = async () => (await Repository.open(new LocalBackend(srcRepoDir), { password: SRC_PASSWORD })).loadIndex();
  const openDest = async (dir: string) => (await Repository.open(new LocalBackend(dir), { password: DST_PASSWORD })).loadIndex();
  const fileCount = async (dir: string, sub: string) => {
    const names = await readdir(path.join(dir, sub), { recursive: true, withFileTypes: true });
    return names.filter((d) => d.isFile()).length;
  };

  /** restic checks every byte and restores the latest snapshot exactly as the source tree. */
  async function verifyWithRestic(dir: string, label: string) {
    const opts = { repo: dir, password: DST_PASSWORD };
    await resticOk(r19(), ['check', '--read-data'], opts);
    const out = path.join(work, `restore-${label}`);
    await resticOk(r19(), ['restore', 'latest', '--target', out], opts);
    assert.deepEqual(await compareTrees(src, path.join(out, src)), [], `restore of ${label}`);
  }

  it('same chunker polynomial: blob by blob, trees unchanged, restic verifies it; a second copy copies nothing', async () => {
    const dstDir = path.join(work, 'dst-same');
    const source = await openSource();
    await Repository.init(new LocalBackend(dstDir), { password: DST_PASSWORD, kdf: FAST_KDF, chunkerPolynomial: source.config.chunkerPolynomial });
    const events: string[] = [];
    const res = await copy(source, await openDest(dstDir), { onEvent: (e) => events.push(e.type) });
    assert.equal(res.rechunked, false);
    assert.deepEqual(res.copied.map((c) => c.sourceId).sort(), srcSnaps.map((s) => s.id).sort());
    for (const c of res.copied) assert.equal(c.tree, srcSnaps.find((s) => s.id === c.sourceId)!.tree, 'trees keep their IDs');
    assert.ok(res.stats.dataBlobs > 0 && res.stats.treeBlobs > 0);
    assert.deepEqual(events, ['started', 'planned', 'started', 'planned', 'saved', 'saved']);

    const copied = await resticJson<ResticSnap[]>(r19(), ['snapshots'], { repo: dstDir, password: DST_PASSWORD });
    assert.deepEqual(copied.map((s) => s.original).sort(), srcSnaps.map((s) => s.id).sort());
    assert.ok(copied.every((s) => s.parent === undefined), 'the parent is dropped');
    assert.deepEqual(copied.find((s) => s.original === srcSnaps[0]!.id)!.tags, ['one']);
    await verifyWithRestic(dstDir, 'same');

    const packs = await fileCount(dstDir, 'data');
    const again = await copy(await openSource(), await openDest(dstDir));
    assert.deepEqual(again.copied, []);
    assert.deepEqual(again.skipped.map((s) => s.sourceId).sort(), srcSnaps.map((s) => s.id).sort());
    assert.equal(await fileCount(dstDir, 'data'), packs);
    assert.equal(await fileCount(dstDir, 'snapshots'), 2);
    // restic sees the copies as copies too.
    const theirs = await resticOk(r19(), ['copy', '--from-repo', srcRepoDir, '--from-password-file', pwFile], { repo: dstDir, password: DST_PASSWORD });
    assert.doesNotMatch(theirs.stdout, /saved/);
  });

  it('different polynomials: files are re-chunked for the destination; restic verifies it and dedups against it', async () => {
    const dstDir = path.join(work, 'dst-other');
    await Repository.init(new LocalBackend(dstDir), { password: DST_PASSWORD, kdf: FAST_KDF });
    const source = await openSource();
    const dest = await openDest(dstDir);
    assert.notEqual(dest.config.chunkerPolynomial, source.config.chunkerPolynomial);
    const res = await copy(source, dest, { snapshots: [srcSnaps[0]!.short_id] });
    assert.equal(res.rechunked, true);
    assert.equal(res.copied.length, 1);
    assert.ok(res.stats.filesRechunked > 0);
    assert.notEqual(res.copied[0]!.tree, srcSnaps[0]!.tree, 're-chunked files change the tree');
    const newBlobs = [...dest.index.entries()].filter((e) => e.type === 'data' && !source.index.has(e.id, 'data'));
    assert.ok(newBlobs.length > 0, 'some chunks differ from the source chunks');
    await resticOk(r19(), ['check', '--read-data'], { repo: dstDir, password: DST_PASSWORD });

    // The rest (the second snapshot) in a second run; the first is recognised as copied.
    const res2 = await copy(await openSource(), await openDest(dstDir));
    assert.deepEqual(res2.skipped.map((s) => s.sourceId), [srcSnaps[0]!.id]);
    assert.deepEqual(res2.copied.map((c) => c.sourceId), [srcSnaps[1]!.id]);
    await verifyWithRestic(dstDir, 'other');
    const res3 = await copy(await openSource(), await openDest(dstDir));
    assert.deepEqual(res3.copied, []);
    assert.equal(res3.skipped.length, 2);

    // restic, chunking the same files with the destination's polynomial, finds every chunk there.
    const summary = (await resticOk(r19(), ['backup', '--force', '--json', src], { repo: dstDir, password: DST_PASSWORD })).stdout
      .trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((m) => m.message_type === 'summary')!;
    assert.equal(summary.data_blobs, 0, `restic added data blobs to the re-chunked copy: ${JSON.stringify(summary)}`);

    // restic copies out of the repository Stowage wrote.
    const third = path.join(work, 'dst-restic');
    const opts3 = { repo: third, password: 'third', env: { RESTIC_FROM_PASSWORD: DST_PASSWORD } };
    await resticOk(r19(), ['init'], opts3);
    await resticOk(r19(), ['copy', '--from-repo', dstDir], opts3);
    await resticOk(r19(), ['check', '--read-data'], opts3);
    const out = path.join(work, 'restore-third');
    await resticOk(r19(), ['restore', 'latest', '--host', 'h1', '--path', src, '--target', out], opts3);
    assert.deepEqual(await compareTrees(src, path.join(out, src)), []);
  });

  it('rechunk: false keeps the source chunks (restic\'s behaviour) even across polynomials', async () => {
    const dstDir = path.join(work, 'dst-keep');
    await Repository.init(new LocalBackend(dstDir), { password: DST_PASSWORD, kdf: FAST_KDF });
    const source = await openSource();
    const res = await copy(source, await openDest(dstDir), { rechunk: false, filter: { tags: [['one']] } });
    assert.equal(res.rechunked, false);
    assert.deepEqual(res.copied.map((c) => [c.sourceId, c.tree]), [[srcSnaps[0]!.id, srcSnaps[0]!.tree]]);
    const dest = await openDest(dstDir);
    for (const e of dest.index.entries()) assert.ok(source.index.has(e.id, e.type), `blob ${e.id} is not a source blob`);
    await resticOk(r19(), ['check', '--read-data'], { repo: dstDir, password: DST_PASSWORD });
    // Without re-chunking, restic's chunks for the destination differ from the copied ones.
    const summary = (await resticOk(r19(), ['backup', '--force', '--json', src], { repo: dstDir, password: DST_PASSWORD })).stdout
      .trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((m) => m.message_type === 'summary')!;
    assert.ok((summary.data_blobs as number) > 0);
  });

  it('a v1 destination gets the compressed source blobs uncompressed; restic 0.14 and 0.19 verify it', async () => {
    const dstDir = path.join(work, 'dst-v1');
    const source = await openSource();
    await Repository.init(new LocalBackend(dstDir), { password: DST_PASSWORD, kdf: FAST_KDF, version: 1, chunkerPolynomial: source.config.chunkerPolynomial });
    const res = await copy(source, await openDest(dstDir), { snapshots: ['latest'] });
    assert.equal(res.copied.length, 1);
    const dest = await openDest(dstDir);
    assert.ok([...dest.index.entries()].every((e) => e.uncompressedLength === 0));
    for (const bin of [resticBin('0.14'), r19()]) await resticOk(bin, ['check', '--read-data'], { repo: dstDir, password: DST_PASSWORD });
    await verifyWithRestic(dstDir, 'v1');
  });

  it('a damaged source blob stops the copy with an IntegrityError naming it; no snapshot is written, the index stays sound', async () => {
    const brokenDir = path.join(work, 'source-broken');
    await cp(srcRepoDir, brokenDir, { recursive: true });
    const broken = await (await Repository.open(new LocalBackend(brokenDir), { password: SRC_PASSWORD })).loadIndex();
    const victim = [...broken.index.entries()].find((e) => e.type === 'data' && e.length > 1000)!;
    const file = path.join(brokenDir, 'data', victim.packId.slice(0, 2), victim.packId);
    const bytes = await readFile(file);
    bytes[victim.offset + 100] ^= 0xff;
    await writeFile(file, bytes);
    const dstDir = path.join(work, 'dst-broken');
    await Repository.init(new LocalBackend(dstDir), { password: DST_PASSWORD, kdf: FAST_KDF, chunkerPolynomial: broken.config.chunkerPolynomial });
    await assert.rejects(copy(broken, await openDest(dstDir)), (e: unknown) => e instanceof IntegrityError && e.blob === victim.id);
    assert.equal(await fileCount(dstDir, 'snapshots'), 0);
    // Every pack that was stored is indexed: restic finds nothing wrong.
    await resticOk(r19(), ['check', '--read-data'], { repo: dstDir, password: DST_PASSWORD });
    assert.ok((await openDest(dstDir)).index.size > 0);
  });

  it('restic\'s similarity rule decides what counts as copied; planning writes nothing', async () => {
    const source = await openSource();
    const dest = await openDest(path.join(work, 'dst-same'));
    const [a, b] = (await listSnapshots(source.repo)).map((e) => e.snapshot);
    assert.ok(a && b);
    assert.equal(similarSnapshots(a, { ...a, tags: ['other'] }), false);
    assert.equal(similarSnapshots(a, { ...a, parent: undefined, original: undefined }), true);
    assert.equal(similarSnapshots(a, b), false);
    // Planning only: nothing is written.
    const plan = await planCopy(source, dest, {});
    assert.deepEqual(plan.items.map((i) => i.action), ['skip', 'skip']);
    const filtered = await planCopy(source, dest, { filter: { hosts: ['nobody'] } });
    assert.deepEqual(filtered.items, [], 'the filter applies to the source');
  });

  it('the CLI: init --copy-chunker-params, copy --from-repo with filters, restic\'s text output', async () => {
    const dstDir = path.join(work, 'dst-cli');
    const env = { RESTIC_REPOSITORY: dstDir, RESTIC_PASSWORD: DST_PASSWORD, TZ: 'UTC' };
    const init = await runCli(['init', '--from-repo', srcRepoDir, '--from-password-file', pwFile, '--copy-chunker-params'], { env });
    assert.equal(init.code, 0, init.stderr);
    const cfgSrc = await resticJson<{ chunker_polynomial: string }>(r19(), ['cat', 'config'], srcOpts());
    const cfgDst = await resticJson<{ chunker_polynomial: string }>(r19(), ['cat', 'config'], { repo: dstDir, password: DST_PASSWORD });
    assert.equal(cfgDst.chunker_polynomial, cfgSrc.chunker_polynomial);
    const bad = await runCli(['init', '--from-repo', srcRepoDir], { env: { ...env, RESTIC_REPOSITORY: path.join(work, 'never') } });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Secondary repository must only be specified when copying the chunker parameters/);

    // restic copies the same snapshot into a twin repository; the outputs agree up to new IDs.
    const twin = path.join(work, 'dst-cli-twin');
    const twinOpts = { repo: twin, password: DST_PASSWORD };
    const twinInit = await resticOk(r19(), ['init', '--from-repo', srcRepoDir, '--from-password-file', pwFile, '--copy-chunker-params'], twinOpts);
    // restic's lines, the new ID and the location aside.
    const initLines = (s: string) => s.replace(/^created restic repository [0-9a-f]{10} at .*$/m, 'created restic repository ID at LOCATION');
    assert.equal(initLines(init.stdout), initLines(twinInit.stdout));
    const theirs = await resticOk(r19(), ['copy', '--from-repo', srcRepoDir, '--from-password-file', pwFile, '--tag', 'one'], { ...twinOpts, env: { TZ: 'UTC' } });
    const ours = await runCli(['copy', '--from-repo', srcRepoDir, '--from-password-file', pwFile, '--tag', 'one'], { env });
    assert.equal(ours.code, 0, ours.stderr);
    const normalize = (s: string) => s.replace(/^snapshot [0-9a-f]{8} saved/gm, 'snapshot NEW saved').replace(/^\[\d+:\d\d\]/gm, '[T]');
    assert.equal(normalize(ours.stdout), normalize(theirs.stdout));
    assert.match(ours.stdout, new RegExp(`copied from source snapshot ${srcSnaps[0]!.short_id}`));

    // The password from the environment; the tagged snapshot is skipped (shown with -v).
    const rest = await runCli(['copy', '-v', '--from-repo', srcRepoDir], { env: { ...env, RESTIC_FROM_PASSWORD: SRC_PASSWORD } });
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stdout, new RegExp(`skipping source snapshot ${srcSnaps[0]!.short_id}, was already copied to snapshot [0-9a-f]{8}`));
    assert.match(rest.stdout, new RegExp(`copied from source snapshot ${srcSnaps[1]!.short_id}`));
    const nothing = await runCli(['copy', '--json', '--from-repo', srcRepoDir, '--from-password-file', pwFile], { env });
    assert.equal(nothing.code, 0, nothing.stderr);
    assert.equal(nothing.stdout, '');
    const snaps = await resticJson<ResticSnap[]>(r19(), ['snapshots'], { repo: dstDir, password: DST_PASSWORD });
    assert.equal(snaps.length, 2);
    await resticOk(r19(), ['check', '--read-data'], { repo: dstDir, password: DST_PASSWORD });

    const wrong = await runCli(['copy', '--from-repo', srcRepoDir], { env: { ...env, RESTIC_FROM_PASSWORD: 'wrong' } });
    assert.equal(wrong.code, 12, wrong.stderr);
    const none = await runCli(['copy'], { env });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /Please specify a source repository location/);
    // restic reads Stowage's locks: no stale lock is left behind.
    assert.equal((await runRestic(r19(), ['list', 'locks'], { repo: dstDir, password: DST_PASSWORD })).stdout, '');
  });
});

