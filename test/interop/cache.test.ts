// The local metadata cache, end to end on a real rest-server and a real MinIO (S3) — the same
// tests on each, one server per kind — and a local folder, with the real restic: backend requests counted from the CLI's request log (every request passes the
// ObservedBackend that logs it at debug), damaged cache files refetched, an unusable cache folder,
// two processes on one cache, a re-initialised repository, and restic changing the repository
// underneath.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli, type CliResult } from '../helpers/cli.ts';
import { resticBin, resticJson, resticOk } from '../helpers/restic.ts';
import { removeTree } from '../helpers/tmp.ts';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';

const tmpDir = (prefix: string) => mkdtemp(path.join(tmpdir(), `${prefix}-`));
import { compareTrees } from '../helpers/compare-trees.ts';
import { REMOTE_KINDS, startRemote, type Remote } from '../servers/remote.ts';
import { LocalBackend, ObservedBackend, Repository, listSnapshots, type BackendEvent } from '../../src/index.ts';

const PASSWORD = 'cache test';

interface Request { op: string; type: string; name?: string }

/** The backend requests a CLI run made, from its debug log. */
function requests(r: CliResult): Request[] {
  const out: Request[] = [];
  for (const line of r.stderr.split('\n')) {
    const m = /^debug: backend (\w+)(?: failed)? op=\w+ type=(\w+)(?: name=([0-9a-f]{64}))?/.exec(line);
    if (m) out.push({ op: m[1]!, type: m[2]!, ...(m[3] ? { name: m[3] } : {}) });
  }
  return out;
}

/** Requests other than listings and opening (config, key) and locks: what the cache should save. */
function beyondListing(reqs: Request[]): Request[] {
  return reqs.filter((q) => q.op !== 'list' && q.type !== 'config' && q.type !== 'keys' && q.type !== 'locks');
}

function summary(reqs: Request[]): string {
  const m = new Map<string, number>();
  for (const q of reqs) m.set(`${q.op} ${q.type}`, (m.get(`${q.op} ${q.type}`) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k}×${v}`).sort().join(', ');
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await filesUnder(p));
    else out.push(p);
  }
  return out;
}

/** Every cached repository file (snapshots, index, data) is named by the SHA-256 of its bytes. */
async function assertCacheSound(cacheRepoDir: string): Promise<string[]> {
  const files = (await filesUnder(cacheRepoDir)).filter((f) => /\/(snapshots|index|data)\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(f));
  for (const f of files) assert.equal(createHash('sha256').update(await readFile(f)).digest('hex'), path.basename(f), f);
  return files;
}

async function makeSource(dir: string, seed: number): Promise<void> {
  for (let d = 0; d < 6; d++) {
    const sub = path.join(dir, `d${d}`, 'inner', `x${seed}`);
    await mkdir(sub, { recursive: true });
    for (let f = 0; f < 4; f++) await writeFile(path.join(sub, `f${f}`), randomBytes(3000 + f * 100 + seed));
  }
}

for (const kind of REMOTE_KINDS) describe(`local metadata cache (${kind})`, () => {
  let server: Remote;
  let work: string;
  let repo: string;
  let src: string;
  let cache: string;
  let env: Record<string, string>;
  const debug = { STOWAGE_LOG_LEVEL: 'debug' };
  const cli = (args: string[], extra: Record<string, string> = {}) => runCli(['--cache-dir', cache, ...args], { env: { ...env, ...extra } });
  let repoId: string;

  before(async () => {
    server = await startRemote(kind);
    work = await tmpDir('stowage-cache');
    src = path.join(work, 'src');
    cache = path.join(work, 'cache');
    await makeSource(src, 1);
    repo = server.location('r1');
    env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, ...server.env };
    assert.equal((await runCli(['init'], { env })).code, 0);
    const b = await runCli(['--no-cache', 'backup', src, '-q'], { env });
    assert.equal(b.code, 0, b.stderr);
    const cfg = await runCli(['cat', 'config', '--no-cache'], { env });
    repoId = (JSON.parse(cfg.stdout) as { id: string }).id;
  });
  after(async () => {
    await server?.stop();
    if (work) await removeTree(work);
  });

  it('cold vs warm: a warm snapshots / ls latest / unchanged backup reads nothing but listings, config and key', async () => {
    const noCache = await runCli(['--no-cache', 'ls', 'latest'], { env: { ...env, ...debug } });
    assert.equal(noCache.code, 0, noCache.stderr);
    const cold = await cli(['ls', 'latest'], debug);
    assert.equal(cold.code, 0, cold.stderr);
    const warmSnapshots = await cli(['snapshots'], debug);
    const warmLs = await cli(['ls', 'latest'], debug);
    assert.equal(warmLs.stdout, noCache.stdout);
    // One backup first: the cache folder made inside the work folder changed that folder's mtime,
    // so its tree changed; the second backup is unchanged.
    assert.equal((await cli(['backup', src, '-q'])).code, 0);
    const warmBackup = await cli(['backup', src, '-q'], debug);
    assert.equal(warmBackup.code, 0, warmBackup.stderr);
    const counts = {
      noCache: summary(requests(noCache)), cold: summary(requests(cold)),
      warmSnapshots: summary(requests(warmSnapshots)), warmLs: summary(requests(warmLs)), warmBackup: summary(requests(warmBackup)),
    };
    console.log('backend requests', counts);
    // Without the cache every run loads the index and the trees; the cold run fetches them once.
    assert.ok(beyondListing(requests(noCache)).some((q) => q.op === 'load' && q.type === 'data'), counts.noCache);
    assert.ok(beyondListing(requests(cold)).some((q) => q.op === 'load' && q.type === 'index'), counts.cold);
    assert.deepEqual(beyondListing(requests(warmSnapshots)), [], counts.warmSnapshots);
    assert.deepEqual(beyondListing(requests(warmLs)), [], counts.warmLs);
    // An unchanged re-backup reads nothing; it writes its snapshot and, since /tmp itself (an
    // ancestor folder in the snapshot) changes while others work, at most one tree pack and its index.
    const written = beyondListing(requests(warmBackup));
    assert.deepEqual(written.filter((q) => q.op !== 'save'), [], counts.warmBackup);
    assert.equal(written.filter((q) => q.type === 'snapshots').length, 1, counts.warmBackup);
    assert.ok(written.filter((q) => q.type === 'data').length <= 1, counts.warmBackup);
    await assertCacheSound(path.join(cache, repoId));
    assert.equal(await readFile(path.join(cache, 'CACHEDIR.TAG'), 'utf8'), 'Signature: 8a477f597d28d172789f06886806bc55\n');
    assert.equal(await readFile(path.join(cache, repoId, 'version'), 'utf8'), '1');
  });

  it('a corrupted index file and a truncated tree pack in the cache are fetched again, and the right bytes used', async () => {
    const expected = (await runCli(['--no-cache', 'ls', 'latest'], { env })).stdout;
    await cli(['ls', 'latest']);
    const files = await assertCacheSound(path.join(cache, repoId));
    const index = files.find((f) => f.includes('/index/'))!;
    const pack = files.find((f) => f.includes('/data/'))!;
    const bytes = await readFile(index);
    bytes[100] ^= 0xff;
    await writeFile(index, bytes);
    await truncate(pack, 50);
    const r = await cli(['ls', 'latest'], debug);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, expected);
    const loads = beyondListing(requests(r)).filter((q) => q.op === 'load').map((q) => q.name).sort();
    assert.deepEqual(loads, [path.basename(index), path.basename(pack)].sort());
    await assertCacheSound(path.join(cache, repoId));
    assert.equal((await readFile(pack)).length > 50, true);
  });

  it('a cache folder that cannot be written: no cache, one warning, the same output', async () => {
    const expected = (await runCli(['--no-cache', 'ls', 'latest'], { env })).stdout;
    // Under a regular file nothing can be made (root ignores permission bits, so not chmod).
    const blocker = path.join(work, 'not-a-folder');
    await writeFile(blocker, 'x');
    const r = await runCli(['--cache-dir', path.join(blocker, 'cache'), 'ls', 'latest'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, expected);
    assert.equal(r.stderr.split('\n').filter((l) => /cache disabled/.test(l)).length, 1, r.stderr);
    // A cache whose type folder is a file: opened, then every write fails — still one warning.
    const broken = path.join(work, 'broken-cache');
    await mkdir(path.join(broken, repoId), { recursive: true });
    await writeFile(path.join(broken, repoId, 'version'), '1');
    await mkdir(path.join(broken, repoId, 'snapshots'));
    await mkdir(path.join(broken, repoId, 'data'));
    await writeFile(path.join(broken, repoId, 'index'), 'a file where a folder belongs');
    const r2 = await runCli(['--cache-dir', broken, 'ls', 'latest'], { env });
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.stdout, expected);
    assert.equal(r2.stderr.split('\n').filter((l) => /cache disabled/.test(l)).length, 1, r2.stderr);
  });

  it('two processes share one cache folder', async () => {
    const shared = path.join(work, 'shared-cache');
    const expected = (await runCli(['--no-cache', 'ls', 'latest'], { env })).stdout;
    const runs = await Promise.all([1, 2, 3].map(() => runCli(['--cache-dir', shared, 'ls', 'latest'], { env })));
    for (const r of runs) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, expected);
    }
    const two = await Promise.all([
      runCli(['--cache-dir', shared, 'backup', src, '-q'], { env }),
      runCli(['--cache-dir', shared, 'backup', src, '-q', '--tag', 'second'], { env }),
    ]);
    for (const r of two) assert.equal(r.code, 0, r.stderr);
    const files = await assertCacheSound(path.join(shared, repoId));
    assert.ok(files.length >= 3);
    // No temp file is left behind.
    assert.deepEqual((await filesUnder(path.join(shared, repoId))).filter((f) => path.basename(f).startsWith('tmp-')), []);
  });

  it('restic 0.19 (with its own cache) backs up, forgets and prunes: listings and restores stay exact', async () => {
    const restic = resticBin('0.19');
    const resticCache = path.join(work, 'restic-cache');
    const ropts = { repo, password: PASSWORD, cacheDir: resticCache, env: server.env };
    await cli(['snapshots']); // warm
    const src2 = path.join(work, 'src2');
    await makeSource(src2, 2);
    await resticOk(restic, ['backup', src2], ropts);
    const ours = async () => JSON.parse((await cli(['snapshots', '--json'])).stdout) as Array<{ id: string }>;
    const theirs = async () => await resticJson<Array<{ id: string }>>(restic, ['snapshots', '--json'], ropts);
    assert.deepEqual((await ours()).map((s) => s.id).sort(), (await theirs()).map((s) => s.id).sort());
    // restic keeps only the last snapshot (src2's) and prunes everything else.
    await resticOk(restic, ['forget', '--keep-last', '1', '--group-by', 'host', '--prune'], ropts);
    const left = await theirs();
    assert.equal(left.length, 1);
    assert.deepEqual((await ours()).map((s) => s.id), left.map((s) => s.id));
    // The cache holds only what the repository still has.
    const cached = (await assertCacheSound(path.join(cache, repoId))).filter((f) => f.includes('/snapshots/')).map((f) => path.basename(f));
    assert.deepEqual(cached, left.map((s) => s.id));
    const target = path.join(work, 'restore');
    const r = await cli(['restore', 'latest', '--target', target]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src2, path.join(target, src2)), []);
    const ls = await cli(['ls', 'latest']);
    assert.equal(ls.stdout, (await runCli(['--no-cache', 'ls', 'latest'], { env })).stdout);
    // Packs that prune removed are gone from the cache too.
    const packs = new Set<string>();
    const storage = await server.backend(repo);
    try {
      for await (const f of storage.list('data')) packs.add(f.name);
    } finally {
      await storage.close();
    }
    for (const f of (await filesUnder(path.join(cache, repoId, 'data')))) assert.ok(packs.has(path.basename(f)), `stale pack ${f}`);
  });

  it('stowage cache lists caches and --cleanup removes old ones', async () => {
    const old = path.join(cache, 'ab'.repeat(32));
    await mkdir(path.join(old, 'index'), { recursive: true });
    const longAgo = new Date(Date.now() - 40 * 24 * 3600 * 1000);
    await utimes(old, longAgo, longAgo);
    const list = await runCli(['--cache-dir', cache, 'cache', '--json'], { env: {} });
    const caches = JSON.parse(list.stdout) as Array<{ id: string; old: boolean }>;
    assert.deepEqual(caches.map((c) => [c.id, c.old]).sort(), [['ab'.repeat(32), true], [repoId, false]].sort());
    const text = await runCli(['--cache-dir', cache, 'cache'], { env: {} });
    assert.match(text.stdout, /2 cache dirs in/);
    const clean = await runCli(['--cache-dir', cache, 'cache', '--cleanup'], { env: {} });
    assert.equal(clean.code, 0, clean.stderr);
    await assert.rejects(stat(old));
    await stat(path.join(cache, repoId));
  });

  it('a new repository at the same location (new ID) never reads the old cache', async () => {
    const location = server.location('reinit');
    const reinitCache = path.join(work, 'reinit-cache');
    const renv = { ...env, RESTIC_REPOSITORY: location };
    const a = path.join(work, 'reinit-a');
    const b = path.join(work, 'reinit-b');
    await makeSource(a, 3);
    await makeSource(b, 4);
    assert.equal((await runCli(['init'], { env: renv })).code, 0);
    assert.equal((await runCli(['--cache-dir', reinitCache, 'backup', a, '-q'], { env: renv })).code, 0);
    const first = (await readdir(reinitCache)).filter((n) => /^[0-9a-f]{64}$/.test(n));
    // Everything at the location goes (as an operator's rm -r or bucket wipe would), then a new init.
    const storage = await server.backend(location);
    try {
      for (const type of ['keys', 'snapshots', 'index', 'data', 'locks'] as const) {
        for await (const f of storage.list(type)) await storage.remove({ type, name: f.name });
      }
      await storage.remove({ type: 'config', name: 'config' });
    } finally {
      await storage.close();
    }
    const init = await runCli(['init'], { env: renv });
    assert.equal(init.code, 0, init.stderr);
    assert.equal((await runCli(['--cache-dir', reinitCache, 'backup', b, '-q'], { env: renv })).code, 0);
    const snaps = JSON.parse((await runCli(['--cache-dir', reinitCache, 'snapshots', '--json'], { env: renv })).stdout) as Array<{ paths: string[] }>;
    assert.deepEqual(snaps.map((s) => s.paths), [[b]]);
    const ls = await runCli(['--cache-dir', reinitCache, 'ls', 'latest'], { env: renv });
    assert.equal(ls.stdout, (await runCli(['--no-cache', 'ls', 'latest'], { env: renv })).stdout);
    const now = (await readdir(reinitCache)).filter((n) => /^[0-9a-f]{64}$/.test(n));
    assert.equal(now.length, 2);
    assert.ok(first.every((id) => now.includes(id)));
  });
});

describe('cache with the library', () => {
  it('library: Repository.open with a cache, counted through an ObservedBackend', async () => {
    const work = await tmpDir('stowage-cache-lib');
    const repoDir = path.join(work, 'repo');
    const a = path.join(work, 'a');
    await makeSource(a, 5);
    const events: BackendEvent[] = [];
    const observed = () => new ObservedBackend(new LocalBackend(repoDir), (e) => events.push(e));
    await (await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, kdf: { N: 1024, r: 8, p: 1 } })).close();
    const { backup } = await import('../../src/index.ts');
    const cacheDir = path.join(work, 'cache');
    {
      await using repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD });
      await backup(repo, { paths: [a] });
      assert.equal(repo.cache, undefined, 'the library uses no cache unless given one');
    }
    const run = async () => {
      events.length = 0;
      await using repo = await Repository.open(observed(), { password: PASSWORD, cache: { dir: cacheDir } });
      assert.ok(repo.cache);
      const snaps = await listSnapshots(repo);
      assert.equal(snaps.length, 1);
      await repo.loadIndex();
      return events.filter((e) => e.op !== 'list' && e.type !== 'config' && e.type !== 'keys').length;
    };
    const cold = await run();
    const warm = await run();
    console.log('library requests beyond listings', { cold, warm });
    assert.ok(cold >= 2);
    assert.equal(warm, 0);
    await removeTree(work);
  });

  it('temp files of writers that died (over an hour old) are removed when a cache is opened; a fresh one stays', async () => {
    const work = await tmpDir('stowage-cache-temps');
    const repoDir = path.join(work, 'repo');
    const cacheDir = path.join(work, 'cache');
    const a = path.join(work, 'a');
    await makeSource(a, 6);
    const { backup } = await import('../../src/index.ts');
    {
      await using repo = await Repository.init(new LocalBackend(repoDir), { password: PASSWORD, kdf: { N: 1024, r: 8, p: 1 } });
      await backup(repo, { paths: [a] });
    }
    const repoCacheDir = async () => {
      await using repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD, cache: { dir: cacheDir } });
      return repo.cache!.dir;
    };
    const dir = await repoCacheDir();
    const dead = [path.join(dir, 'tmp-dead0'), ...['snapshots', 'index', 'data'].map((t, i) => path.join(dir, t, `a${i}`, `tmp-dead${i + 1}`))];
    const live = path.join(dir, 'index', 'a1', 'tmp-live');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    for (const f of [...dead, live]) {
      await mkdir(path.dirname(f), { recursive: true });
      await writeFile(f, 'partial');
    }
    for (const f of dead) await utimes(f, twoHoursAgo, twoHoursAgo);
    {
      await using repo = await Repository.open(new LocalBackend(repoDir), { password: PASSWORD, cache: { dir: cacheDir } });
      await repo.loadIndex();
      assert.equal(repo.cache!.stats.tempsRemoved, dead.length);
    }
    for (const f of dead) await assert.rejects(stat(f), f);
    await stat(live);
    await removeTree(work);
  });
});
