// What `npm publish` would ship, checked the way a user meets it: the file list (with the docs and
// examples, and every relative link of README.md pointing at a shipped file), publint,
// arethetypeswrong, and the packed tarball installed into a fresh folder, where importing
// `stowage` must load no cloud SDK and be quick, the `stowage` bin must run, and a strict
// TypeScript consumer must compile against the shipped declarations without skipLibCheck, and
// every source map must point at a file the package ships (src/ is shipped for that: a stack
// trace or "go to definition" lands in the TypeScript source). Last, TypeDoc must build the API reference without broken links. Needs `npm run build`
// (npm test does it).
//
// Stowage is ESM only, so arethetypeswrong runs with `--profile esm-only`: it leaves out the
// node10 and node16-from-CJS resolutions, where a `require('stowage')` can only get the ESM
// module through a dynamic import (CJSResolvesToESM). Those are the expected shape of an
// ESM-only package, not a mistake in its types.

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, realpath, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PKG = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  bin: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
};
const CLOUD_SDKS = /(@aws-sdk|@smithy|@google-cloud|google-auth-library|gaxios|@azure|backblaze-b2)\//;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command with the pinned Node first on PATH (tools start with `#!/usr/bin/env node`,
 * and the system Node may be older) and the project's tools after it.
 */
function run(command: string, args: string[], options: { cwd?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<Run> {
  const PATH = [path.dirname(process.execPath), path.join(ROOT, 'node_modules/.bin'), process.env.PATH ?? ''].join(path.delimiter);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? ROOT, env: { ...process.env, PATH, NO_COLOR: '1', FORCE_COLOR: '0', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function describeRun(r: Run): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

interface PackList {
  files: string[];
  size: number;
  unpackedSize: number;
  entryCount: number;
}

let packed: Promise<PackList> | undefined;
/** The files `npm pack` would put in the tarball (once per run). */
function packList(): Promise<PackList> {
  packed ??= run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts']).then((r) => {
    assert.equal(r.code, 0, describeRun(r));
    const [pack] = JSON.parse(r.stdout) as Array<Omit<PackList, 'files'> & { files: Array<{ path: string }> }>;
    return { ...pack!, files: pack!.files.map((f) => f.path) };
  });
  return packed;
}

describe('the published package', () => {
  before(() => {
    assert.ok(existsSync(path.join(ROOT, 'dist/index.js')), 'run `npm run build` first');
  });

  it('ships only dist/, src/, docs/, examples/, README.md, LICENSE, CHANGELOG.md and package.json', async (t) => {
    const pack = await packList();
    const files = pack.files;
    const allowed = (f: string) => /^(dist|src|examples)\//.test(f) || (f.startsWith('docs/') && /\.(md|png)$/.test(f)) || ['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json'].includes(f);
    assert.deepEqual(files.filter((f) => !allowed(f)), [], 'files outside the allowed set');
    assert.deepEqual(files.filter((f) => /^(test|bench|docs\/api|\.ci)\//.test(f) || /\.test\.(js|ts)$/.test(f)), []);
    // src/ is there for the source maps: TypeScript sources only, each compiled into dist/.
    const sources = files.filter((f) => f.startsWith('src/'));
    assert.deepEqual(sources.filter((f) => !f.endsWith('.ts') || f.endsWith('.d.ts')), [], 'src/ holds only TypeScript sources');
    assert.deepEqual(sources.filter((f) => !files.includes(f.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'))), [], 'sources without a compiled file');
    // No stale output: every compiled file comes from a shipped source (the build starts from an empty dist/).
    const compiled = files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'));
    assert.deepEqual(compiled.filter((f) => !files.includes(f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'))), [], 'compiled files without a source');
    for (const required of ['README.md', 'LICENSE', 'package.json', 'dist/index.js', 'dist/index.d.ts', PKG.bin.stowage!]) {
      assert.ok(files.includes(required), `${required} is not in the package`);
    }
    if (!files.includes('CHANGELOG.md')) t.diagnostic('CHANGELOG.md is not shipped (add it to "files" in package.json)');
    t.diagnostic(`${pack.entryCount} files, ${(pack.size / 1024).toFixed(0)} KiB packed, ${(pack.unpackedSize / 1024).toFixed(0)} KiB unpacked`);
  });

  it('ships the docs and the examples (users on npm read them there)', async () => {
    const { files } = await packList();
    const expected = [
      'docs/ARCHITECTURE.md',
      'docs/compatibility.md',
      ...(await readdir(path.join(ROOT, 'docs/backends'))).filter((f) => f.endsWith('.md')).map((f) => `docs/backends/${f}`),
      'examples/README.md',
      ...(await readdir(path.join(ROOT, 'examples'), { recursive: true })).filter((f) => f.endsWith('.ts')).map((f) => `examples/${f.split(path.sep).join('/')}`),
    ];
    assert.ok(expected.some((f) => f.startsWith('docs/backends/')) && expected.some((f) => /^examples\/[^/]+\.ts$/.test(f)), expected.join(' '));
    assert.deepEqual(expected.filter((f) => !files.includes(f)), [], 'docs and examples missing from the package');
  });

  it('has no relative link in README.md or the shipped docs that points at a file it does not ship', async () => {
    const { files } = await packList();
    const markdown = files.filter((f) => f.endsWith('.md'));
    assert.ok(markdown.includes('README.md'));
    const dead: string[] = [];
    for (const doc of markdown) {
      const text = (await readFile(path.join(ROOT, doc), 'utf8')).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target!) || target!.startsWith('#')) continue; // absolute URL or anchor
        const rel = path.posix.normalize(path.posix.join(path.posix.dirname(doc), target!.replace(/#.*$/, '')));
        const folder = rel.replace(/\/?$/, '/');
        if (!files.includes(rel) && !files.some((f) => f.startsWith(folder))) dead.push(`${doc}: ${target}`);
      }
    }
    assert.deepEqual(dead, [], 'relative links to files the package does not ship (dead on npm)');
  });

  it('tells users how to install it, with the optional SDK of each cloud backend, after the two first commands', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
    assert.match(blocks[0] ?? '', /^# 1\. .*\nnpm ci && npm run demo\n\n# 2\. .*\n.*npm ci && npm test\n$/, 'README starts with the demo and the test commands');
    const install = blocks[1] ?? '';
    assert.match(install, /^npm install stowage(\s|$)/m, install);
    for (const peer of Object.keys(PKG.peerDependencies ?? {})) {
      assert.ok(install.includes(`npm install stowage ${peer}`), `no "npm install stowage ${peer}" in README's second code block`);
    }
  });

  it('documents each backend\'s default `connections` as the code sets it', async () => {
    const stowage = await import('../../src/index.ts');
    const backends: Record<string, { connections: number }> = {
      local: new stowage.LocalBackend('/tmp/stowage-docs-check'),
      s3: new stowage.S3Backend({ bucket: 'bucket', endpoint: 'http://127.0.0.1:9' }),
      gcs: new stowage.GCSBackend({ bucket: 'bucket' }),
      azure: new stowage.AzureBackend({ container: 'backups', accountName: 'a', accountKey: 'a2V5' }),
      swift: new stowage.SwiftBackend({ container: 'backups', storageUrl: 'http://127.0.0.1:9/v1/AUTH_x', authToken: 't' }),
      b2: new stowage.B2Backend({ bucket: 'bucket', applicationKeyId: 'i', applicationKey: 'k' }),
      rest: new stowage.RestBackend('http://127.0.0.1:9/repo/'),
    };
    for (const [kind, backend] of Object.entries(backends)) {
      const page = await readFile(path.join(ROOT, 'docs/backends', `${kind}.md`), 'utf8');
      const row = /^\| `connections` \| `number` \| `(\d+)` \|/m.exec(page);
      assert.ok(row, `docs/backends/${kind}.md has no connections row`);
      assert.equal(Number(row[1]), backend.connections, `docs/backends/${kind}.md: default connections`);
      const option = new RegExp(`\\.connections=N\` \\|[^|]*\\|? ?[^|]*default (\\d+)`).exec(page);
      if (option) assert.equal(Number(option[1]), backend.connections, `docs/backends/${kind}.md: -o ${kind}.connections default`);
    }
  });

  it('names its repository, homepage and issue tracker', () => {
    const pkg = PKG as unknown as { repository?: { type?: string; url?: string }; homepage?: string; bugs?: { url?: string } };
    assert.equal(pkg.repository?.type, 'git');
    assert.match(pkg.repository?.url ?? '', /^git\+https:\/\/\S+\.git$/);
    assert.match(pkg.homepage ?? '', /^https:\/\//);
    assert.match(pkg.bugs?.url ?? '', /^https:\/\/\S+\/issues$/);
  });

  it('passes publint with warnings treated as errors', async () => {
    const r = await run('publint', ['--strict']);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /All good!/, describeRun(r));
  });

  it('has correct types for its ESM entry (arethetypeswrong, esm-only profile)', async () => {
    // attw runs `npm pack`; without scripts, so its prepack does not rebuild the dist/ under test.
    const r = await run('attw', ['--pack', '.', '--profile', 'esm-only', '--format', 'json'], { env: { npm_config_ignore_scripts: 'true' } });
    assert.equal(r.code, 0, describeRun(r));
    const report = JSON.parse(r.stdout) as {
      analysis: {
        problems: Array<{ kind: string; resolutionKind?: string; entrypoint?: string }>;
        entrypoints: Record<string, { hasTypes: boolean; resolutions: Record<string, { resolution?: { fileName: string } }> }>;
      };
    };
    const ignoredByProfile = new Set(['node10', 'node16-cjs']);
    assert.deepEqual(report.analysis.problems.filter((p) => !ignoredByProfile.has(p.resolutionKind ?? '')), []);
    const root = report.analysis.entrypoints['.']!;
    assert.ok(root.hasTypes);
    for (const kind of ['node16-esm', 'bundler']) {
      assert.match(root.resolutions[kind]?.resolution?.fileName ?? '', /\/node_modules\/stowage\/dist\/index\.d\.ts$/, kind);
    }
  });
});

// Made here, not in a hook: tmpDir removes it when this file's tests end.
const app = await tmpDir('stowage-consumer');

describe('the packed tarball, installed into a fresh folder', () => {
  before(async () => {
    const packed = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', app]);
    assert.equal(packed.code, 0, describeRun(packed));
    const [{ filename }] = JSON.parse(packed.stdout) as Array<{ filename: string }>;
    const installed = path.join(app, 'node_modules', PKG.name);
    await mkdir(installed, { recursive: true });
    const untar = await run('tar', ['-xzf', path.join(app, filename), '-C', installed, '--strip-components=1']);
    assert.equal(untar.code, 0, describeRun(untar));
    // Only the runtime dependencies (and Node's types for the compile checks), never the optional
    // cloud SDKs: a user who needs no cloud backend installs none of them.
    for (const dep of [...Object.keys(PKG.dependencies ?? {}), '@types/node']) {
      await mkdir(path.dirname(path.join(app, 'node_modules', dep)), { recursive: true });
      await symlink(path.join(ROOT, 'node_modules', dep), path.join(app, 'node_modules', dep), 'dir');
    }
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  });

  it('imports without loading any cloud SDK, in well under a second', async (t) => {
    // Every module resolved during the import, through a resolve hook (ESM has no module cache
    // to inspect afterwards; the hook sees import and require alike).
    await writeFile(
      path.join(app, 'probe.mjs'),
      `import { registerHooks } from 'node:module';
const urls = new Set();
registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); urls.add(r.url); return r; } });
const t0 = performance.now();
const api = await import('stowage');
const importMs = performance.now() - t0;
// Making a cloud backend must not load its SDK either: that happens on its first request.
await api.openBackend('s3:http://127.0.0.1:9/bucket', { raw: true, env: {} });
await api.openBackend('gs:bucket:/', { raw: true, env: {} });
console.log(JSON.stringify({ importMs, urls: [...urls], exports: Object.keys(api) }));
`,
    );
    const started = performance.now();
    const r = await run(process.execPath, ['probe.mjs'], { cwd: app });
    const processMs = performance.now() - started;
    assert.equal(r.code, 0, describeRun(r));
    const probe = JSON.parse(r.stdout) as { importMs: number; urls: string[]; exports: string[] };
    t.diagnostic(`import('stowage') took ${probe.importMs.toFixed(0)} ms (the whole process ${processMs.toFixed(0)} ms), ${probe.urls.length} modules`);
    const entry = probe.urls.find((u) => u.endsWith('/dist/index.js'));
    assert.ok(entry?.startsWith(`file://${app}/node_modules/stowage/`), `stowage resolved to ${entry}, not the installed tarball`);
    assert.deepEqual(probe.urls.filter((u) => CLOUD_SDKS.test(u)), [], 'cloud SDK modules were loaded');
    assert.ok(probe.importMs < 1000, `import took ${probe.importMs} ms`);
    for (const name of ['Repository', 'LocalBackend', 'S3Backend', 'backup', 'restore', 'checkRepository', 'openBackend', 'StowageError']) {
      assert.ok(probe.exports.includes(name), `stowage exports no ${name}`);
    }
  });

  it('names the package to install when a cloud backend is used without its SDK', async () => {
    await writeFile(
      path.join(app, 'no-sdk.mjs'),
      `import { openBackend } from 'stowage';
const backend = await openBackend('s3:http://127.0.0.1:9/bucket', { raw: true, env: {} });
try { await backend.stat({ type: 'config', name: '' }); console.log('no error'); }
catch (e) { console.log(JSON.stringify({ name: e.constructor.name, code: e.code, message: e.message })); }
`,
    );
    const r = await run(process.execPath, ['no-sdk.mjs'], { cwd: app });
    assert.equal(r.code, 0, describeRun(r));
    const err = JSON.parse(r.stdout) as { name: string; code: string; message: string };
    assert.equal(err.name, 'UnsupportedError', r.stdout);
    assert.match(err.message, /npm install @aws-sdk\/client-s3/);
  });

  it('ships a file for every source of every source map (or the map inlines it)', async () => {
    const installed = await realpath(path.join(app, 'node_modules', PKG.name));
    const maps = (await readdir(installed, { recursive: true })).filter((f) => f.endsWith('.map'));
    assert.ok(maps.some((f) => f.endsWith('index.js.map')) && maps.some((f) => f.endsWith('index.d.ts.map')), maps.join(' '));
    const unresolved: string[] = [];
    for (const rel of maps) {
      const file = path.join(installed, rel);
      const map = JSON.parse(await readFile(file, 'utf8')) as { sources: string[]; sourceRoot?: string; sourcesContent?: Array<string | null> };
      assert.ok(Array.isArray(map.sources) && map.sources.length > 0, `${rel} lists no sources`);
      map.sources.forEach((source, i) => {
        if (typeof map.sourcesContent?.[i] === 'string') return; // inlined
        const target = path.resolve(path.dirname(file), map.sourceRoot ?? '', source);
        const inside = target.startsWith(installed + path.sep);
        if (!inside || !existsSync(target)) unresolved.push(`${rel}: ${source}${inside ? '' : ' (outside the package)'}`);
      });
    }
    assert.deepEqual(unresolved, [], 'source map entries that point at nothing shipped');
  });

  it('runs the stowage bin', async () => {
    const bin = path.join(app, 'node_modules', PKG.name, PKG.bin.stowage!);
    assert.match(await readFile(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const r = await run(process.execPath, [bin, '--help'], { cwd: app });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /Usage: stowage \[flags\] COMMAND/);
  });

  for (const resolution of ['nodenext', 'bundler'] as const) {
    it(`compiles a strict consumer against the declarations (moduleResolution ${resolution}, skipLibCheck false)`, async () => {
      const dir = path.join(app, `ts-${resolution}`);
      await mkdir(dir);
      await writeFile(path.join(dir, 'consumer.ts'), CONSUMER);
      await writeFile(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: resolution === 'nodenext' ? 'NodeNext' : 'ESNext',
            moduleResolution: resolution === 'nodenext' ? 'NodeNext' : 'Bundler',
            strict: true,
            exactOptionalPropertyTypes: true,
            noUncheckedIndexedAccess: true,
            skipLibCheck: false,
            noEmit: true,
            types: ['node'],
          },
          files: ['consumer.ts'],
        }),
      );
      const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
      const r = await run(process.execPath, [tsc, '-p', dir, '--pretty', 'false'], { cwd: dir });
      assert.equal(r.code, 0, describeRun(r));
      // The declarations in use are the shipped ones.
      const list = await run(process.execPath, [tsc, '-p', dir, '--listFilesOnly'], { cwd: dir });
      assert.ok(list.stdout.split('\n').some((f) => f.endsWith(`/node_modules/${PKG.name}/dist/index.d.ts`)), list.stdout);
    });
  }
});

/** A user's program: typical calls, and mistakes the types must catch (so they are not `any`). */
const CONSUMER = `import {
  LocalBackend, Repository, backup, restore, listSnapshots, checkRepository, openBackend, S3Backend,
  StowageError, IntegrityError,
  type Backend, type BackupOptions, type BackupProgress, type SnapshotEntry, type CheckReport, type S3BackendOptions,
} from 'stowage';

export async function nightly(dir: string): Promise<string> {
  const backend: Backend = new LocalBackend(dir);
  const repo = await Repository.open(backend, { password: 'secret' });
  const indexed = await repo.loadIndex();
  const options: BackupOptions = { paths: ['/etc'], tags: ['nightly'], onProgress: (p: BackupProgress) => void p.bytesDone };
  const { snapshotId, summary } = await backup(indexed, options);
  const files: number = summary.filesNew + summary.filesChanged;
  const list: SnapshotEntry[] = await listSnapshots(repo);
  const latest = list.at(-1);
  if (latest) await restore(indexed, latest.snapshot.tree, { target: '/tmp/restore' });
  const report: CheckReport = await checkRepository(repo);
  if (!report.ok) throw new IntegrityError('check failed', { file: report.errors[0]?.file ?? 'unknown' });
  const s3: S3BackendOptions = { bucket: 'b', endpoint: 'http://127.0.0.1:9000' };
  await new S3Backend(s3).close();
  await (await openBackend('rest:http://127.0.0.1:8000/repo/')).close();
  return \`\${snapshotId} \${files}\`;
}

export function describeError(e: unknown): string {
  return e instanceof StowageError ? e.code : 'unknown';
}

// @ts-expect-error paths is a list
export const wrongPaths: BackupOptions = { paths: '/etc' };
// @ts-expect-error restore needs a target
export const noTarget = (r: Parameters<typeof restore>[0], t: Parameters<typeof restore>[1]) => restore(r, t, {});
`;

describe('the API reference', () => {
  it('builds with TypeDoc without broken links', { timeout: 300_000 }, async (t) => {
    const out = await tmpDir('stowage-typedoc');
    const r = await run(process.execPath, [path.join(ROOT, 'node_modules/typedoc/bin/typedoc'), '--out', out, '--logLevel', 'Warn'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, describeRun(r));
    const warnings = (r.stdout + r.stderr).split('\n').filter((l) => /\[warning\]|\[error\]/.test(l));
    // Every warning counts, including a public signature that mentions a type index.ts does not
    // export (users could not name it in their own code).
    for (const w of warnings) t.diagnostic(w.replace(/\x1b\[[0-9;]*m/g, ''));
    const real = warnings.filter((l) => !/Found \d+ errors and \d+ warnings/.test(l));
    assert.deepEqual(real, [], describeRun(r));
    assert.ok(existsSync(path.join(out, 'index.html')));
    const classes = await readdir(path.join(out, 'classes'));
    assert.ok(classes.includes('Repository.html'), classes.join(' '));
  });
});
