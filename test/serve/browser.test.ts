// The web page in a real headless browser: Debian's chromium driven by puppeteer-core (npm),
// against a repository in a local folder (the handler at the server's root) and one in a MinIO
// bucket (the handler mounted at /backups on a plain node:http server); one browser for both.
// Skipped, with the reason printed, when puppeteer-core or chromium is not installed
// ($STOWAGE_PUPPETEER_CORE may name the module, $STOWAGE_CHROMIUM the browser). With
// STOWAGE_UPDATE_SCREENSHOT=1 the screenshot is written to docs/serve-page.png.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { S3Backend } from '../../src/backend/s3.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startMinio, type MinioServer } from '../servers/minio.ts';
import { makeFixture, startServer, type Fixture, type Running } from './fixture.ts';

const CHROMIUM = process.env.STOWAGE_CHROMIUM ?? '/usr/bin/chromium';
const MODULE = process.env.STOWAGE_PUPPETEER_CORE ?? 'puppeteer-core';
let puppeteer: any;
let skip: string | false = false;
try {
  puppeteer = (await import(MODULE)).default;
} catch (e) {
  skip = `${MODULE} is not installed (npm i -D puppeteer-core): ${(e as Error).message.split('\n')[0]}`;
}
if (!skip && !existsSync(CHROMIUM)) skip = `no chromium at ${CHROMIUM} (apt-get install chromium, or set STOWAGE_CHROMIUM)`;
if (skip) console.log(`# browser tests skipped: ${skip}`);

const dirs = skip ? { local: '', minio: '' } : { local: await tmpDir('stowage-serve-browser-local'), minio: await tmpDir('stowage-serve-browser-minio') };
let browser: any;
before(async () => {
  if (skip) return;
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});
after(async () => {
  await browser?.close();
});

for (const kind of ['local', 'minio'] as const) describe(`the page on a ${kind} repository`, () => {
const dir = dirs[kind];
let fx: Fixture;
let srv: Running;
let minio: MinioServer | undefined;
let page: any;
const errors: string[] = [];

before(async () => {
  if (skip) return;
  if (kind === 'minio') {
    minio = await startMinio();
    const backend = new S3Backend({ endpoint: minio.endpoint, bucket: `serve-page-${process.pid}`, prefix: 'repo', credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey } });
    fx = await makeFixture(dir, { backend, bigBytes: 256 * 1024 });
  } else fx = await makeFixture(dir, { bigBytes: 256 * 1024 });
  const sha = createHash('sha1').update('pw').digest('base64');
  srv = await startServer(fx.repo, { auth: { htpasswd: `viewer:{SHA}${sha}\n` }, basePath: kind === 'minio' ? '/backups' : undefined });
  page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 560 });
  await page.authenticate({ username: 'viewer', password: 'pw' });
  page.on('pageerror', (e: Error) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m: any) => m.type() === 'error' && errors.push(`console: ${m.text()}`));
});
after(async () => {
  await page?.close();
  await srv?.close();
  await fx?.repo.close();
  await minio?.stop();
});

/** Goes to a hash route and waits until the page says it rendered it. */
async function show(hash: string): Promise<void> {
  await page.evaluate((h: string) => ((globalThis as any).location.hash = h), hash);
  await page.waitForSelector(`body[data-ready="${hash.slice(1)}"]`, { timeout: 15000 });
}
const texts = (sel: string): Promise<string[]> => page.$$eval(sel, (els: any[]) => els.map((e) => e.textContent ?? ''));

test('snapshot list with host, tag and path filters', { skip }, async () => {
  // Through a prefix, the address without its '/' is sent to the one with it (the page's links are relative).
  await page.goto(srv.base + (kind === 'minio' ? '' : '/'), { waitUntil: 'load' });
  assert.equal(new URL(page.url()).pathname, new URL(srv.base + '/').pathname);
  await page.waitForSelector('body[data-ready]');
  assert.equal((await texts('#snapshots tbody tr')).length, 2);
  await page.type('#filters input[name=host]', 'beta');
  await Promise.all([page.waitForSelector('body[data-ready="/?host=beta"]'), page.click('#filters button')]);
  const rows = await texts('#snapshots tbody tr td:first-child');
  assert.deepEqual(rows, [fx.second.slice(0, 8)]);
  await show('#/?tag=daily');
  assert.deepEqual(await texts('#snapshots tbody tr td:first-child'), [fx.first.slice(0, 8)]);
  await show('#/?path=/nowhere');
  assert.match((await texts('#snapshots tbody'))[0]!, /No snapshot matches/);
});

test('folder browsing, file preview and download, folder as tar', { skip }, async () => {
  await show('#/');
  await Promise.all([page.waitForSelector('#entries'), page.click(`#snapshots a[href="#/snap/${fx.first.slice(0, 8)}/"]`)]);
  // Walk down from the snapshot root to the backed-up folder by clicking.
  for (const part of fx.src.split('/').filter(Boolean).concat(['docs', 'deep'])) {
    const before = await page.evaluate(() => (globalThis as any).location.hash);
    await page.$$eval('#entries a', (as: any[], name: string) => as.find((a) => a.textContent === name + '/')!.click(), part);
    await page.waitForFunction((h: string) => (globalThis as any).location.hash !== h && (globalThis as any).document.body.hasAttribute('data-ready'), {}, before);
  }
  assert.deepEqual(await texts('#entries td.name'), ['a b%c #ü.txt']);
  const href = await page.$eval('#entries td.name a', (a: any) => a.href);
  assert.equal(await page.evaluate((u: string) => fetch(u).then((r) => r.text()), href), 'odd name\n');
  const dl = await page.$eval('#entries a[href$="download=1"]', (a: any) => a.href);
  const head = await page.evaluate((u: string) => fetch(u).then((r) => r.headers.get('content-disposition')), dl);
  assert.match(head, /attachment/);
  const tar = await page.$eval('#tar', (a: any) => a.href);
  assert.ok(tar.startsWith(`${srv.base}/api/snapshots/`), tar);
  assert.ok(href.startsWith(`${srv.base}/api/snapshots/`), href);
  const tarInfo = await page.evaluate((u: string) => fetch(u).then(async (r) => [r.status, r.headers.get('content-type'), (await r.arrayBuffer()).byteLength]), tar);
  assert.deepEqual(tarInfo.slice(0, 2), [200, 'application/x-tar']);
  assert.ok(tarInfo[2] >= 3 * 512);
  const zip = await page.$eval('#zip', (a: any) => a.href);
  const zipInfo = await page.evaluate((u: string) => fetch(u).then(async (r) => [r.status, r.headers.get('content-type'), new Uint8Array(await r.arrayBuffer()).slice(0, 2).join(',')]), zip);
  assert.deepEqual(zipInfo, [200, 'application/zip', '80,75']);
});

test('diff between two snapshots and search by name', { skip }, async () => {
  await show(`#/diff/${fx.first.slice(0, 8)}/${fx.second.slice(0, 8)}`);
  const changes = (await texts('#changes tr')).map((t) => t.replace(fx.src, ''));
  assert.deepEqual(changes, ['+/added.txt', 'M/docs/readme.txt']);
  assert.match((await texts('#diff-summary'))[0]!, /^2 changes: 1 files added/);
  await show(`#/snap/${fx.second.slice(0, 8)}/${fx.src.slice(1)}/`);
  await page.type('#find input[name=name]', '*.txt');
  await Promise.all([page.waitForSelector('#hits'), page.click('#find button')]);
  const hits = (await texts('#hits td.name')).map((t) => t.replace(fx.src, '')).sort();
  assert.deepEqual(hits, ['/added.txt', '/docs/deep/a b%c #ü.txt', '/docs/readme.txt']);
});

test('the page runs under its CSP with no error; screenshot', { skip }, async () => {
  await show(`#/snap/${fx.second.slice(0, 8)}/${fx.src.slice(1)}/`);
  const out = process.env.STOWAGE_UPDATE_SCREENSHOT === '1' && kind === 'local'
    ? fileURLToPath(new URL('../../docs/serve-page.png', import.meta.url))
    : join(dir, 'serve-page.png');
  await page.screenshot({ path: out });
  assert.ok(existsSync(out));
  assert.deepEqual(errors, []);
});
});
