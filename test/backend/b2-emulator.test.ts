// The B2 emulator itself, spoken to over raw HTTP the way Backblaze documents the native API v2:
// if the emulator drifts from B2's behaviour, the B2 backend tests built on it prove nothing.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startB2Emulator } from '../servers/b2-emulator.ts';
import type { B2Emulator } from '../servers/b2-emulator.ts';

let emu: B2Emulator;
before(async () => {
  emu = await startB2Emulator();
});
after(() => emu.stop());

interface Auth {
  accountId: string;
  apiUrl: string;
  downloadUrl: string;
  authorizationToken: string;
}

function basic(id: string, key: string): string {
  return `Basic ${Buffer.from(`${id}:${key}`).toString('base64')}`;
}

async function authorize(id = emu.keyId, key = emu.key, url = emu.authorizeUrl): Promise<Auth> {
  const res = await fetch(url, { headers: { Authorization: basic(id, key) } });
  assert.equal(res.status, 200);
  return (await res.json()) as Auth;
}

/** POSTs a JSON body to an API operation; returns status and parsed JSON. */
async function api(auth: Auth | string | undefined, op: string, body: unknown): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  const token = typeof auth === 'string' ? auth : auth?.authorizationToken;
  if (token !== undefined) headers.Authorization = token;
  const base = typeof auth === 'object' ? auth.apiUrl : emu.url;
  const res = await fetch(`${base}/b2api/v2/${op}`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

async function assertB2Error(p: Promise<{ status: number; json: any }>, status: number, code: string): Promise<any> {
  const { status: got, json } = await p;
  assert.equal(got, status, JSON.stringify(json));
  assert.deepEqual(Object.keys(json).sort(), ['code', 'message', 'status']);
  assert.equal(json.status, status);
  assert.equal(json.code, code);
  assert.equal(typeof json.message, 'string');
  return json;
}

let bucketSeq = 0;
async function newBucket(auth: Auth): Promise<{ bucketId: string; bucketName: string }> {
  const bucketName = `emu-test-${++bucketSeq}-${Date.now().toString(36)}`;
  const { status, json } = await api(auth, 'b2_create_bucket', { accountId: auth.accountId, bucketName, bucketType: 'allPrivate' });
  assert.equal(status, 200, JSON.stringify(json));
  return { bucketId: json.bucketId, bucketName };
}

async function upload(auth: Auth, bucketId: string, encodedName: string, data: Uint8Array, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const target = (await api(auth, 'b2_get_upload_url', { bucketId })).json;
  const res = await fetch(target.uploadUrl, {
    method: 'POST',
    headers: {
      Authorization: target.authorizationToken,
      'X-Bz-File-Name': encodedName,
      'Content-Type': 'application/octet-stream',
      'X-Bz-Content-Sha1': createHash('sha1').update(data).digest('hex'),
      ...headers,
    },
    body: data,
  });
  return { status: res.status, json: await res.json() };
}

describe('B2 emulator: b2_authorize_account', () => {
  it('returns the v2 authorization fields for the master key', async () => {
    const res = await fetch(emu.authorizeUrl, { headers: { Authorization: basic(emu.keyId, emu.key) } });
    assert.equal(res.status, 200);
    const json = (await res.json()) as any;
    assert.equal(json.accountId, emu.accountId);
    assert.equal(json.apiUrl, emu.url);
    assert.equal(json.downloadUrl, emu.url);
    assert.match(json.authorizationToken, /^4_/);
    assert.equal(json.recommendedPartSize, 100_000_000);
    assert.equal(json.absoluteMinimumPartSize, 5_000_000);
    assert.ok(json.allowed.capabilities.includes('writeFiles'));
    assert.equal(json.allowed.bucketId, null);
    assert.equal(json.allowed.namePrefix, null);
    // The account ID stands for the master key ID.
    assert.equal((await authorize(emu.accountId, emu.key)).accountId, emu.accountId);
  });

  it('refuses a wrong key and a missing header with B2 error bodies', async () => {
    const wrong = fetch(emu.authorizeUrl, { headers: { Authorization: basic(emu.keyId, 'nope') } }).then(async (r) => ({ status: r.status, json: await r.json() }));
    await assertB2Error(wrong, 401, 'unauthorized');
    const missing = fetch(emu.authorizeUrl).then(async (r) => ({ status: r.status, json: await r.json() }));
    await assertB2Error(missing, 401, 'bad_auth_token');
  });

  it('answers other API versions and unknown operations with not_found', async () => {
    const v3 = fetch(`${emu.url}/b2api/v3/b2_authorize_account`).then(async (r) => ({ status: r.status, json: await r.json() }));
    await assertB2Error(v3, 404, 'not_found');
    await assertB2Error(api(await authorize(), 'b2_start_large_file', {}), 404, 'not_found');
  });

  it('requires a valid token on API calls', async () => {
    await assertB2Error(api(undefined, 'b2_list_buckets', { accountId: emu.accountId }), 401, 'missing_auth_token');
    await assertB2Error(api('4_bogus', 'b2_list_buckets', { accountId: emu.accountId }), 401, 'bad_auth_token');
  });
});

describe('B2 emulator: buckets', () => {
  it('creates, lists by name and refuses duplicates and bad names', async () => {
    const auth = await authorize();
    const { bucketId, bucketName } = await newBucket(auth);
    const listed = await api(auth, 'b2_list_buckets', { accountId: auth.accountId, bucketName });
    assert.equal(listed.status, 200);
    assert.equal(listed.json.buckets.length, 1);
    assert.equal(listed.json.buckets[0].bucketId, bucketId);
    assert.equal(listed.json.buckets[0].bucketType, 'allPrivate');
    assert.deepEqual((await api(auth, 'b2_list_buckets', { accountId: auth.accountId, bucketName: 'no-such-bucket' })).json, { buckets: [] });
    await assertB2Error(api(auth, 'b2_create_bucket', { accountId: auth.accountId, bucketName, bucketType: 'allPrivate' }), 400, 'duplicate_bucket_name');
    for (const bad of ['short', 'has_underscore', 'b2-reserved', 'x'.repeat(64)]) {
      await assertB2Error(api(auth, 'b2_create_bucket', { accountId: auth.accountId, bucketName: bad, bucketType: 'allPrivate' }), 400, 'bad_request');
    }
    await assertB2Error(api(auth, 'b2_list_buckets', { accountId: 'someone-else' }), 401, 'unauthorized');
  });

  it('takes GET requests with query parameters too', async () => {
    const auth = await authorize();
    const { bucketName } = await newBucket(auth);
    const res = await fetch(`${auth.apiUrl}/b2api/v2/b2_list_buckets?accountId=${auth.accountId}&bucketName=${bucketName}`, { headers: { Authorization: auth.authorizationToken } });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as any).buckets[0].bucketName, bucketName);
  });
});

describe('B2 emulator: uploads, versions and hiding', () => {
  it('decodes percent-encoded names, checks the SHA-1 and returns the file', async () => {
    const auth = await authorize();
    const { bucketId } = await newBucket(auth);
    const data = new TextEncoder().encode('hello b2');
    const ok = await upload(auth, bucketId, 'dir/with%20space/%C3%BC+plus.txt', data, { 'X-Bz-Info-src_last_modified_millis': '1234' });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal(ok.json.fileName, 'dir/with space/ü plus.txt');
    assert.equal(ok.json.action, 'upload');
    assert.equal(ok.json.contentLength, data.length);
    assert.equal(ok.json.contentSha1, createHash('sha1').update(data).digest('hex'));
    assert.deepEqual(ok.json.fileInfo, { src_last_modified_millis: '1234' });
    assert.match(ok.json.fileId, /^4_z/);
    assert.equal(typeof ok.json.uploadTimestamp, 'number');

    await assertB2Error(upload(auth, bucketId, 'x', data, { 'X-Bz-Content-Sha1': 'a'.repeat(40) }), 400, 'bad_request');
    await assertB2Error(upload(auth, bucketId, 'x', data, { 'X-Bz-Content-Sha1': 'short' }), 400, 'bad_request');
    await assertB2Error(upload(auth, bucketId, '/leading-slash', data), 400, 'bad_request');
    await assertB2Error(upload(auth, bucketId, 'a//b', data), 400, 'bad_request');
    await assertB2Error(upload(auth, bucketId, 'bad%ZZescape', data), 400, 'bad_request');
    await assertB2Error(upload(auth, bucketId, 'ctrl%01char', data), 400, 'bad_request');
    // The SHA-1 may follow the content.
    const sha = createHash('sha1').update(data).digest('hex');
    const atEnd = await upload(auth, bucketId, 'at-end', Buffer.concat([data, Buffer.from(sha)]), { 'X-Bz-Content-Sha1': 'hex_digits_at_end' });
    assert.equal(atEnd.status, 200, JSON.stringify(atEnd.json));
    assert.equal(atEnd.json.contentLength, data.length);
  });

  it('refuses an upload token on another upload URL and one without Authorization', async () => {
    const auth = await authorize();
    const { bucketId } = await newBucket(auth);
    const a = (await api(auth, 'b2_get_upload_url', { bucketId })).json;
    const b = (await api(auth, 'b2_get_upload_url', { bucketId })).json;
    const send = (url: string, token: string | undefined): Promise<{ status: number; json: any }> =>
      fetch(url, {
        method: 'POST',
        headers: { ...(token ? { Authorization: token } : {}), 'X-Bz-File-Name': 'f', 'Content-Type': 'text/plain', 'X-Bz-Content-Sha1': createHash('sha1').update('x').digest('hex') },
        body: 'x',
      }).then(async (r) => ({ status: r.status, json: await r.json() }));
    await assertB2Error(send(a.uploadUrl, b.authorizationToken), 401, 'bad_auth_token');
    await assertB2Error(send(a.uploadUrl, undefined), 401, 'missing_auth_token');
    assert.equal((await send(a.uploadUrl, a.authorizationToken)).status, 200);
  });

  it('keeps versions, lists only the latest visible one, and hides and un-hides names', async () => {
    const auth = await authorize();
    const { bucketId, bucketName } = await newBucket(auth);
    const first = (await upload(auth, bucketId, 'v', new Uint8Array([1]))).json;
    const second = (await upload(auth, bucketId, 'v', new Uint8Array([2, 2]))).json;
    const names = await api(auth, 'b2_list_file_names', { bucketId });
    assert.deepEqual(names.json.files.map((f: any) => [f.fileName, f.fileId, f.contentLength]), [['v', second.fileId, 2]]);
    assert.equal(names.json.nextFileName, null);
    const versions = await api(auth, 'b2_list_file_versions', { bucketId });
    assert.deepEqual(versions.json.files.map((f: any) => f.fileId), [second.fileId, first.fileId], 'newest first');

    const hidden = await api(auth, 'b2_hide_file', { bucketId, fileName: 'v' });
    assert.equal(hidden.json.action, 'hide');
    assert.equal(hidden.json.contentType, 'application/x-bz-hide-marker');
    assert.deepEqual((await api(auth, 'b2_list_file_names', { bucketId })).json.files, []);
    const dl = await fetch(`${auth.downloadUrl}/file/${bucketName}/v`, { headers: { Authorization: auth.authorizationToken } });
    assert.equal(dl.status, 404);
    assert.equal(((await dl.json()) as any).code, 'not_found');
    await assertB2Error(api(auth, 'b2_hide_file', { bucketId, fileName: 'v' }), 400, 'already_hidden');
    await assertB2Error(api(auth, 'b2_hide_file', { bucketId, fileName: 'never-uploaded' }), 404, 'no_such_file');
    assert.equal((await api(auth, 'b2_list_file_versions', { bucketId })).json.files.length, 3);

    // Deleting the hide marker brings the latest upload back; deleting it brings back the first.
    assert.deepEqual((await api(auth, 'b2_delete_file_version', { fileName: 'v', fileId: hidden.json.fileId })).json, { fileId: hidden.json.fileId, fileName: 'v' });
    assert.equal((await api(auth, 'b2_list_file_names', { bucketId })).json.files[0].fileId, second.fileId);
    await api(auth, 'b2_delete_file_version', { fileName: 'v', fileId: second.fileId });
    const back = await fetch(`${auth.downloadUrl}/file/${bucketName}/v`, { headers: { Authorization: auth.authorizationToken } });
    assert.deepEqual(new Uint8Array(await back.arrayBuffer()), new Uint8Array([1]));
    await assertB2Error(api(auth, 'b2_delete_file_version', { fileName: 'v', fileId: second.fileId }), 400, 'file_not_present');
    await assertB2Error(api(auth, 'b2_delete_file_version', { fileName: 'other', fileId: first.fileId }), 400, 'file_not_present');
    const info = await api(auth, 'b2_get_file_info', { fileId: first.fileId });
    assert.equal(info.json.fileName, 'v');
    await assertB2Error(api(auth, 'b2_get_file_info', { fileId: second.fileId }), 404, 'not_found');
  });
});

describe('B2 emulator: listing', () => {
  it('pages with nextFileName, starts at startFileName inclusively and filters by prefix', async () => {
    const auth = await authorize();
    const { bucketId } = await newBucket(auth);
    const names = Array.from({ length: 25 }, (_, i) => `p/${String(i).padStart(2, '0')}`);
    for (const n of [...names, 'q/outside', 'o/before']) await upload(auth, bucketId, n, new Uint8Array([7]));
    const seen: string[] = [];
    let start: string | null = null;
    const pages: number[] = [];
    do {
      const { json }: { json: any } = await api(auth, 'b2_list_file_names', { bucketId, prefix: 'p/', maxFileCount: 10, ...(start ? { startFileName: start } : {}) });
      pages.push(json.files.length);
      seen.push(...json.files.map((f: any) => f.fileName));
      start = json.nextFileName;
    } while (start);
    assert.deepEqual(pages, [10, 10, 5]);
    assert.deepEqual(seen, names);
    const from = await api(auth, 'b2_list_file_names', { bucketId, startFileName: 'p/20', maxFileCount: 2 });
    assert.deepEqual(from.json.files.map((f: any) => f.fileName), ['p/20', 'p/21']);
    assert.equal(from.json.nextFileName, 'p/22');
    await assertB2Error(api(auth, 'b2_list_file_names', { bucketId, maxFileCount: 10_001 }), 400, 'out_of_range');
    await assertB2Error(api(auth, 'b2_list_file_names', { bucketId: 'nope' }), 400, 'invalid_bucket_id');
    // 0 and absent both mean 100.
    assert.equal((await api(auth, 'b2_list_file_names', { bucketId, maxFileCount: 0 })).json.files.length, 27);
  });

  it('groups names into folders with a delimiter', async () => {
    const auth = await authorize();
    const { bucketId } = await newBucket(auth);
    for (const n of ['photos/alice.jpg', 'photos/cats/fluffy.jpg', 'photos/cats/mittens.jpg', 'photos/dogs/spot.jpg', 'photos/lilly.jpg']) await upload(auth, bucketId, n, new Uint8Array([1]));
    const { json } = await api(auth, 'b2_list_file_names', { bucketId, prefix: 'photos/', delimiter: '/' });
    assert.deepEqual(
      json.files.map((f: any) => [f.action, f.fileName]),
      [
        ['upload', 'photos/alice.jpg'],
        ['folder', 'photos/cats/'],
        ['folder', 'photos/dogs/'],
        ['upload', 'photos/lilly.jpg'],
      ],
    );
  });

  it('orders names by their UTF-8 bytes, as B2 does', async () => {
    const auth = await authorize();
    const { bucketId } = await newBucket(auth);
    // UTF-16 would put the emoji (a surrogate pair) before U+FFFD; UTF-8 puts it after.
    for (const n of ['\u{1F600}', '\uFFFD', 'z', '\u00e9']) await upload(auth, bucketId, encodeURIComponent(n), new Uint8Array([1]));
    const { json } = await api(auth, 'b2_list_file_names', { bucketId });
    assert.deepEqual(json.files.map((f: any) => f.fileName), ['z', '\u00e9', '\uFFFD', '\u{1F600}']);
  });

  it('pages through versions with nextFileName and nextFileId', async () => {
    const auth = await authorize();
    const { bucketId } = await newBucket(auth);
    for (let i = 0; i < 5; i++) await upload(auth, bucketId, 'same', new Uint8Array([i]));
    await upload(auth, bucketId, 'tail', new Uint8Array([9]));
    const all = (await api(auth, 'b2_list_file_versions', { bucketId })).json.files.map((f: any) => f.fileId);
    const seen: string[] = [];
    let next: { startFileName?: string; startFileId?: string } = {};
    for (;;) {
      const { json }: { json: any } = await api(auth, 'b2_list_file_versions', { bucketId, maxFileCount: 2, ...next });
      seen.push(...json.files.map((f: any) => f.fileId));
      if (!json.nextFileName) break;
      next = { startFileName: json.nextFileName, startFileId: json.nextFileId };
    }
    assert.deepEqual(seen, all);
    assert.equal(all.length, 6);
  });
});

describe('B2 emulator: downloads', () => {
  it('serves ranges with 206 and Content-Range, the whole file for a whole range, and 416 past the end', async () => {
    const auth = await authorize();
    const { bucketId, bucketName } = await newBucket(auth);
    const data = new Uint8Array(Array.from({ length: 100 }, (_, i) => i));
    const up = (await upload(auth, bucketId, 'dir/r%C3%A4nge', data, { 'X-Bz-Info-color': 'bl%C3%BC' })).json;
    const get = (range?: string, method = 'GET'): Promise<Response> =>
      fetch(`${auth.downloadUrl}/file/${bucketName}/dir/r%C3%A4nge`, { method, headers: { Authorization: auth.authorizationToken, ...(range ? { Range: range } : {}) } });

    const whole = await get();
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('content-length'), '100');
    assert.equal(whole.headers.get('x-bz-file-id'), up.fileId);
    assert.equal(whole.headers.get('x-bz-file-name'), 'dir/r%C3%A4nge');
    assert.equal(whole.headers.get('x-bz-content-sha1'), createHash('sha1').update(data).digest('hex'));
    assert.equal(whole.headers.get('x-bz-info-color'), 'bl%C3%BC');
    assert.ok(Number(whole.headers.get('x-bz-upload-timestamp')) > 0);
    assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), data);

    const part = await get('bytes=10-19');
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), 'bytes 10-19/100');
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), data.subarray(10, 20));
    const open = await get('bytes=95-');
    assert.equal(open.headers.get('content-range'), 'bytes 95-99/100');
    assert.equal((await open.arrayBuffer()).byteLength, 5);
    const clipped = await get('bytes=90-150');
    assert.equal(clipped.status, 206);
    assert.equal(clipped.headers.get('content-range'), 'bytes 90-99/100');
    await clipped.arrayBuffer();
    const suffix = await get('bytes=-3');
    assert.deepEqual(new Uint8Array(await suffix.arrayBuffer()), data.subarray(97));
    const all = await get('bytes=0-99');
    assert.equal(all.status, 200);
    assert.equal(all.headers.get('content-range'), null);
    await all.arrayBuffer();
    const garbage = await get('bytes=abc');
    assert.equal(garbage.status, 200);
    await garbage.arrayBuffer();

    const past = await get('bytes=100-');
    assert.equal(past.status, 416);
    assert.equal(past.headers.get('content-range'), 'bytes */100');
    assert.equal(((await past.json()) as any).code, 'range_not_satisfiable');

    const head = await get(undefined, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), '100');
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });

  it('requires authorization for private buckets and answers 404 for missing files and buckets', async () => {
    const auth = await authorize();
    const { bucketId, bucketName } = await newBucket(auth);
    await upload(auth, bucketId, 'secret', new Uint8Array([1]));
    const anonymous = await fetch(`${auth.downloadUrl}/file/${bucketName}/secret`);
    assert.equal(anonymous.status, 401);
    assert.equal(((await anonymous.json()) as any).code, 'missing_auth_token');
    const missing = await fetch(`${auth.downloadUrl}/file/${bucketName}/nothing`, { headers: { Authorization: auth.authorizationToken } });
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as any).code, 'not_found');
    const noBucket = await fetch(`${auth.downloadUrl}/file/no-such-bucket-here/x`, { headers: { Authorization: auth.authorizationToken } });
    assert.equal(noBucket.status, 404);
    await noBucket.arrayBuffer();
  });
});

describe('B2 emulator: application key restrictions', () => {
  it('limits a bucket key to its bucket and name prefix', async () => {
    const restricted = await startB2Emulator({
      keys: [
        { keyId: 'master-key', key: 'master-secret' },
        { keyId: 'k1', key: 'secret-1', bucketName: 'restricted-bucket', namePrefix: 'allowed/' },
      ],
    });
    try {
      const master = await authorize('master-key', 'master-secret', restricted.authorizeUrl);
      const own = (await api(master, 'b2_create_bucket', { accountId: master.accountId, bucketName: 'restricted-bucket', bucketType: 'allPrivate' })).json;
      const other = (await api(master, 'b2_create_bucket', { accountId: master.accountId, bucketName: 'other-bucket', bucketType: 'allPrivate' })).json;

      const res = await fetch(restricted.authorizeUrl, { headers: { Authorization: basic('k1', 'secret-1') } });
      const auth = (await res.json()) as any;
      assert.equal(auth.allowed.bucketName, 'restricted-bucket');
      assert.equal(auth.allowed.bucketId, own.bucketId);
      assert.equal(auth.allowed.namePrefix, 'allowed/');
      await assertB2Error(api(auth, 'b2_list_buckets', { accountId: auth.accountId }), 401, 'unauthorized');
      assert.equal((await api(auth, 'b2_list_buckets', { accountId: auth.accountId, bucketName: 'restricted-bucket' })).json.buckets.length, 1);
      await assertB2Error(api(auth, 'b2_create_bucket', { accountId: auth.accountId, bucketName: 'another-one', bucketType: 'allPrivate' }), 401, 'unauthorized');
      await assertB2Error(api(auth, 'b2_get_upload_url', { bucketId: other.bucketId }), 401, 'unauthorized');
      await assertB2Error(upload(auth, own.bucketId, 'elsewhere/x', new Uint8Array([1])), 401, 'unauthorized');
      assert.equal((await upload(auth, own.bucketId, 'allowed/x', new Uint8Array([1]))).status, 200);
      await assertB2Error(api(auth, 'b2_list_file_names', { bucketId: own.bucketId }), 401, 'unauthorized');
      assert.equal((await api(auth, 'b2_list_file_names', { bucketId: own.bucketId, prefix: 'allowed/' })).json.files.length, 1);
    } finally {
      await restricted.stop();
    }
  });
});

describe('B2 emulator: faults for tests', () => {
  it('expires tokens after N calls with expired_auth_token', async () => {
    const auth = await authorize();
    emu.expireTokensAfter(2);
    try {
      const body = { accountId: auth.accountId };
      assert.equal((await api(auth, 'b2_list_buckets', body)).status, 200);
      assert.equal((await api(auth, 'b2_list_buckets', body)).status, 200);
      await assertB2Error(api(auth, 'b2_list_buckets', body), 401, 'expired_auth_token');
      await assertB2Error(api(auth, 'b2_list_buckets', body), 401, 'expired_auth_token');
      const fresh = await authorize();
      assert.equal((await api(fresh, 'b2_list_buckets', body)).status, 200);
    } finally {
      emu.expireTokensAfter(undefined);
    }
    const again = await authorize();
    emu.expireAllTokens();
    await assertB2Error(api(again, 'b2_list_buckets', { accountId: again.accountId }), 401, 'expired_auth_token');
  });

  it('fails the next upload with 503 and retires that upload URL', async () => {
    const auth = await authorize();
    const { bucketId } = await newBucket(auth);
    const target = (await api(auth, 'b2_get_upload_url', { bucketId })).json;
    const send = (): Promise<{ status: number; json: any }> =>
      fetch(target.uploadUrl, {
        method: 'POST',
        headers: { Authorization: target.authorizationToken, 'X-Bz-File-Name': 'f', 'Content-Type': 'text/plain', 'X-Bz-Content-Sha1': createHash('sha1').update('x').digest('hex') },
        body: 'x',
      }).then(async (r) => ({ status: r.status, json: await r.json() }));
    emu.failNextUploads(1);
    await assertB2Error(send(), 503, 'service_unavailable');
    await assertB2Error(send(), 401, 'bad_auth_token');
    assert.equal((await upload(auth, bucketId, 'f', new TextEncoder().encode('x'))).status, 200);
    assert.equal((await api(auth, 'b2_list_file_versions', { bucketId })).json.files.length, 1, 'the failed upload stored nothing');
  });
});
