// Temporary S3 credentials from an STS AssumeRole call (AWS STS, MinIO's STS API), as restic ≥ 0.18
// takes them from RESTIC_AWS_ASSUME_ROLE_*: one form POST signed with Signature Version 4 by the
// access key, answered with a key, a secret and a session token that expire. The credentials are
// kept until shortly before they expire and then asked for again.
import { createHash, createHmac } from 'node:crypto';
import { BackendError, InvalidInputError } from '../errors.ts';
import { nodeHttp, nodeHttps } from './node-http.ts';

/** What to assume: restic's RESTIC_AWS_ASSUME_ROLE_* variables. */
export interface S3AssumeRoleOptions {
  /** The role's ARN ($RESTIC_AWS_ASSUME_ROLE_ARN). */
  roleArn: string;
  /** A name for the session ($RESTIC_AWS_ASSUME_ROLE_SESSION_NAME). */
  sessionName?: string;
  /** The external ID the role's trust policy asks for ($RESTIC_AWS_ASSUME_ROLE_EXTERNAL_ID). */
  externalId?: string;
  /** An inline session policy, JSON ($RESTIC_AWS_ASSUME_ROLE_POLICY). */
  policy?: string;
  /** Region the call is signed for ($RESTIC_AWS_ASSUME_ROLE_REGION; default the bucket's, else us-east-1). */
  region?: string;
  /**
   * The STS endpoint ($RESTIC_AWS_ASSUME_ROLE_STS_ENDPOINT); default, as restic:
   * https://sts.REGION.amazonaws.com (.com.cn for cn- regions), or https://sts.amazonaws.com.
   */
  stsEndpoint?: string;
}

/** An access key, long-lived or temporary. */
export interface AwsKey {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** How the STS call connects: the S3 connection's trust (`--cacert`, `--insecure-tls`) and timeout. */
export interface StsConnection {
  /** Extra CA certificates (PEM) to trust. */
  ca?: string | Uint8Array;
  /** Accept any certificate (tests only). */
  insecureTls?: boolean;
  /** Gives up on a connection or answer that stalls this long. */
  timeoutMs?: number;
}

/** How long before expiry the credentials are renewed. */
const RENEW_BEFORE_MS = 5 * 60_000;

/** restic's default STS endpoint for a region. */
export function defaultStsEndpoint(region: string | undefined): string {
  if (!region) return 'https://sts.amazonaws.com';
  return region.startsWith('cn-') ? `https://sts.${region}.amazonaws.com.cn` : `https://sts.${region}.amazonaws.com`;
}

/** Checks the options; InvalidInputError names the bad one. */
export function checkAssumeRole(o: S3AssumeRoleOptions): void {
  if (o === null || typeof o !== 'object' || typeof o.roleArn !== 'string' || o.roleArn === '') {
    throw new InvalidInputError('S3 assumeRole needs a non-empty roleArn');
  }
  if (o.stsEndpoint !== undefined && !/^https?:\/\/[^/?#]+\/?$/.test(o.stsEndpoint)) {
    throw new InvalidInputError(`S3 assumeRole stsEndpoint must be an http(s) origin, got ${JSON.stringify(o.stsEndpoint)}`);
  }
}

/**
 * A credentials provider for the AWS SDK: the role assumed with `base`, asked for once and again
 * shortly before the temporary key expires. Concurrent callers share one call.
 */
export function assumeRoleProvider(base: AwsKey, o: S3AssumeRoleOptions, bucketRegion: string | undefined, connection: StsConnection = {}): () => Promise<AwsKey> {
  let current: AwsKey | undefined;
  let pending: Promise<AwsKey> | undefined;
  return () => {
    if (current?.expiration && current.expiration.getTime() - Date.now() > RENEW_BEFORE_MS) return Promise.resolve(current);
    pending ??= assumeRole(base, o, bucketRegion, connection).then(
      (key) => {
        current = key;
        pending = undefined;
        return key;
      },
      (err: unknown) => {
        pending = undefined;
        throw err;
      },
    );
    return pending;
  };
}

/** One AssumeRole call. BackendError (with the server's message) when it is refused. */
export async function assumeRole(base: AwsKey, o: S3AssumeRoleOptions, bucketRegion: string | undefined, connection: StsConnection = {}): Promise<AwsKey> {
  const region = o.region || bucketRegion || '';
  const endpoint = new URL(o.stsEndpoint || defaultStsEndpoint(region));
  const signingRegion = region || 'us-east-1';
  const form = new URLSearchParams({ Action: 'AssumeRole', Version: '2011-06-15', DurationSeconds: '3600', RoleArn: o.roleArn });
  if (o.sessionName) form.set('RoleSessionName', o.sessionName);
  if (o.externalId) form.set('ExternalId', o.externalId);
  if (o.policy) form.set('Policy', o.policy);
  const body = form.toString();
  const headers = signV4({ method: 'POST', url: endpoint, body, region: signingRegion, service: 'sts', key: base, contentType: 'application/x-www-form-urlencoded; charset=utf-8' });
  const where = `STS AssumeRole at ${endpoint.origin}`;
  let res: { status: number; text: string };
  try {
    res = await post(new URL('/', endpoint), headers, body, connection);
  } catch (err) {
    throw new BackendError(`${where}: ${(err as Error).message}`, { cause: err, transient: true });
  }
  const text = res.text;
  if (res.status < 200 || res.status > 299) {
    const message = /<Message>([\s\S]*?)<\/Message>/.exec(text)?.[1] ?? text.slice(0, 200);
    throw new BackendError(`${where} refused (${res.status}): ${message}`, { transient: res.status >= 500 || res.status === 429, status: res.status });
  }
  const field = (name: string) => new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(text)?.[1];
  const accessKeyId = field('AccessKeyId');
  const secretAccessKey = field('SecretAccessKey');
  if (!accessKeyId || !secretAccessKey) throw new BackendError(`${where}: the answer holds no credentials`, { transient: false, status: res.status });
  const expiration = field('Expiration');
  return { accessKeyId, secretAccessKey, sessionToken: field('SessionToken'), expiration: expiration ? new Date(expiration) : undefined };
}

/** One POST over node:http(s), so that the S3 connection's CA and TLS settings apply to it too. */
function post(url: URL, headers: Record<string, string>, body: string, c: StsConnection): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const ca = c.ca === undefined ? undefined : typeof c.ca === 'string' ? c.ca : Buffer.from(c.ca);
    const options = { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: c.timeoutMs };
    const req = url.protocol === 'https:'
      ? nodeHttps().request(url, { ...options, ca, rejectUnauthorized: c.insecureTls !== true })
      : nodeHttp().request(url, options);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${c.timeoutMs} ms`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.end(body);
  });
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const hmac = (key: string | Buffer, s: string) => createHmac('sha256', key).update(s).digest();

/** Signature Version 4 headers for a request with a body and no query. */
function signV4(r: { method: string; url: URL; body: string; region: string; service: string; key: AwsKey; contentType: string }): Record<string, string> {
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const payloadHash = sha256(r.body);
  const headers: Record<string, string> = {
    'content-type': r.contentType,
    host: r.url.host,
    'x-amz-content-sha256': payloadHash,
    'x-amz-date': amzDate,
  };
  if (r.key.sessionToken) headers['x-amz-security-token'] = r.key.sessionToken;
  const names = Object.keys(headers).sort();
  const signedHeaders = names.join(';');
  const canonical = [r.method, '/', '', names.map((n) => `${n}:${headers[n]!.trim()}\n`).join(''), signedHeaders, payloadHash].join('\n');
  const scope = `${day}/${r.region}/${r.service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${r.key.secretAccessKey}`, day), r.region), r.service), 'aws4_request');
  const signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
  const { host: _host, ...sent } = headers;
  return { ...sent, authorization: `AWS4-HMAC-SHA256 Credential=${r.key.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}` };
}
