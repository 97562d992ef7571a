// A real OpenStack Swift for the tests: Debian's python3-swift run as a single-node cluster
// (proxy with tempauth, account, container and object servers, one device, one replica) on
// 127.0.0.1, with its own memcached, all on free ports and with data in a temp dir.
// .ci/servers/swift.sh installs the packages. Also here: a small Keystone stand-in that hands
// out tokens of that Swift, so the v2/v3 login code paths run against the real object store.

import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const PYTHON = '/usr/bin/python3';
const MEMCACHED_CANDIDATES = ['/usr/bin/memcached', '/usr/local/bin/memcached'];
const STARTUP_TIMEOUT_MS = 90_000;
const SHM = '/dev/shm';
const INSTALL_HINT = 'install it with `bash .ci/install-tools.sh` (install_swift in .ci/servers/swift.sh: apt-get install python3-swift memcached)';

export interface SwiftServer {
  /** tempauth's v1 auth URL (ST_AUTH). */
  authUrl: string;
  /** The tempauth user (ST_USER) and key (ST_KEY). */
  user: string;
  key: string;
  /** The account's storage URL, as tempauth returns it. */
  storageUrl: string;
  /** ST_AUTH/ST_USER/ST_KEY for restic. */
  env: Record<string, string>;
  /** A fresh token for direct requests (e.g. raw listings). */
  token(): Promise<string>;
  /** Forgets every issued token (flushes memcached): the next request with an old token gets 401. */
  expireTokens(): Promise<void>;
  stop(): Promise<void>;
}

export interface StartSwiftOptions {
  /** tempauth token lifetime in seconds (default 86400). */
  tokenLife?: number;
}

const execFileAsync = promisify(execFile);

/** Starts the cluster; throws (never skips) when python3-swift or memcached is missing. */
export async function startSwift(opts: StartSwiftOptions = {}): Promise<SwiftServer> {
  const memcached = MEMCACHED_CANDIDATES.find((p) => existsSync(p));
  if (!memcached) throw new Error(`memcached is not installed; ${INSTALL_HINT}`);
  try {
    await execFileAsync(PYTHON, ['-c', 'import swift.common.ring, swift.proxy.server, swift.obj.server, swift.common.middleware.tempauth'], { timeout: 60_000 });
  } catch (err) {
    throw new Error(`${PYTHON} cannot import swift (python3-swift): ${(err as Error).message.split('\n').slice(-3).join(' ')}; ${INSTALL_HINT}`);
  }

  // The object server keeps metadata in user xattrs and fsyncs every object: a tmpfs with
  // user xattrs (Linux 6.6+) is much faster than /tmp, which is the fallback (ext4 has them too).
  const dir = await mkdtemp(join((await supportsUserXattrs(SHM)) ? SHM : tmpdir(), 'stowage-swift-'));
  const children: ChildProcess[] = [];
  // Last resort when the test process ends without stop(): no server and no data stays behind.
  const killAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killAll);

  try {
    const [memcachedPort, objectPort, containerPort, accountPort, proxyPort] = await freePorts(5);
    const etc = join(dir, 'etc');
    await mkdir(join(dir, 'node', 'sdb1'), { recursive: true });
    await mkdir(etc, { recursive: true });
    await writeConfigs(dir, etc, { memcachedPort, objectPort, containerPort, accountPort, proxyPort, tokenLife: opts.tokenLife ?? 86_400 });
    await buildRings(etc, { objectPort, containerPort, accountPort });

    const memcachedArgs = ['-l', '127.0.0.1', '-p', String(memcachedPort), '-U', '0', '-m', '64'];
    if (process.getuid?.() === 0) memcachedArgs.push('-u', 'root');
    children.push(launch(memcached, memcachedArgs, join(dir, 'memcached.log')));
    await writeFile(join(dir, 'launch.py'), LAUNCHER);
    for (const kind of ['object', 'container', 'account', 'proxy']) {
      children.push(launch(PYTHON, [join(dir, 'launch.py'), kind, join(etc, `${kind}-server.conf`)], join(dir, `${kind}.log`)));
    }

    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    await waitForPort(memcachedPort, deadline, children, dir);
    for (const port of [objectPort, containerPort, accountPort, proxyPort]) await waitForHealth(port, deadline, children, dir);

    const authUrl = `http://127.0.0.1:${proxyPort}/auth/v1.0`;
    const user = 'test:tester';
    const key = 'testing';
    const login = async (): Promise<{ storageUrl: string; token: string }> => {
      const res = await fetch(authUrl, { headers: { 'X-Auth-User': user, 'X-Auth-Key': key } });
      await res.arrayBuffer();
      const storageUrl = res.headers.get('x-storage-url');
      const token = res.headers.get('x-auth-token');
      if (res.status !== 200 || !storageUrl || !token) throw new Error(`swift tempauth login failed: HTTP ${res.status}`);
      return { storageUrl, token };
    };
    const { storageUrl } = await login();

    let stopped = false;
    return {
      authUrl,
      user,
      key,
      storageUrl,
      env: { ST_AUTH: authUrl, ST_USER: user, ST_KEY: key },
      token: async () => (await login()).token,
      expireTokens: () => memcachedCommand(memcachedPort, 'flush_all'),
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await stopAll(children);
        process.removeListener('exit', killAll);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll(children);
    process.removeListener('exit', killAll);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

// ---- cluster files ----------------------------------------------------------------------------

interface Ports {
  memcachedPort: number;
  objectPort: number;
  containerPort: number;
  accountPort: number;
  proxyPort: number;
  tokenLife: number;
}

async function writeConfigs(dir: string, etc: string, p: Ports): Promise<void> {
  await writeFile(
    join(etc, 'swift.conf'),
    ['[swift-hash]', 'swift_hash_path_suffix = stowage-test', 'swift_hash_path_prefix = stowage-test', '[storage-policy:0]', 'name = Policy-0', 'default = yes', ''].join('\n'),
  );
  const common = [
    'bind_ip = 127.0.0.1',
    'workers = 0',
    `user = ${userInfo().username}`,
    `swift_dir = ${etc}`,
    `devices = ${join(dir, 'node')}`,
    'mount_check = false',
    'disable_fallocate = true',
    'log_level = WARNING',
  ].join('\n');
  const storage: Array<[string, number]> = [
    ['account', p.accountPort],
    ['container', p.containerPort],
    ['object', p.objectPort],
  ];
  for (const [kind, port] of storage) {
    await writeFile(
      join(etc, `${kind}-server.conf`),
      [
        '[DEFAULT]',
        common,
        `bind_port = ${port}`,
        '[pipeline:main]',
        `pipeline = healthcheck ${kind}-server`,
        `[app:${kind}-server]`,
        `use = egg:swift#${kind}`,
        '[filter:healthcheck]',
        'use = egg:swift#healthcheck',
        '',
      ].join('\n'),
    );
  }
  await writeFile(
    join(etc, 'proxy-server.conf'),
    [
      '[DEFAULT]',
      common,
      `bind_port = ${p.proxyPort}`,
      '[pipeline:main]',
      'pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth copy proxy-logging proxy-server',
      '[app:proxy-server]',
      'use = egg:swift#proxy',
      'account_autocreate = true',
      '[filter:tempauth]',
      'use = egg:swift#tempauth',
      'user_test_tester = testing .admin',
      `token_life = ${p.tokenLife}`,
      '[filter:cache]',
      'use = egg:swift#memcache',
      `memcache_servers = 127.0.0.1:${p.memcachedPort}`,
      '[filter:catch_errors]',
      'use = egg:swift#catch_errors',
      '[filter:gatekeeper]',
      'use = egg:swift#gatekeeper',
      '[filter:healthcheck]',
      'use = egg:swift#healthcheck',
      '[filter:proxy-logging]',
      'use = egg:swift#proxy_logging',
      '[filter:listing_formats]',
      'use = egg:swift#listing_formats',
      '[filter:copy]',
      'use = egg:swift#copy',
      '',
    ].join('\n'),
  );
}

/** One RingBuilder run makes all three rings (swift-ring-builder would take ~3 s per call). */
async function buildRings(etc: string, p: { objectPort: number; containerPort: number; accountPort: number }): Promise<void> {
  const script = `
import sys
from swift.common.ring import RingBuilder
for name, port in (('account', ${p.accountPort}), ('container', ${p.containerPort}), ('object', ${p.objectPort})):
    b = RingBuilder(8, 1, 1)
    b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port, 'device': 'sdb1', 'weight': 1})
    b.rebalance()
    b.get_ring().save(name + '.ring.gz')
`;
  try {
    await execFileAsync(PYTHON, ['-c', script], { cwd: etc, timeout: 60_000 });
  } catch (err) {
    throw new Error(`building the swift rings failed: ${(err as Error).message}`);
  }
}

/**
 * What the swift-*-server scripts do, without needing the packages that ship them. Swift looks
 * for /etc/swift/swift.conf; the launcher points it at the cluster's own copy instead.
 */
const LAUNCHER = `import os, sys
kind, conf = sys.argv[1], sys.argv[2]
import swift.common.utils as utils
utils.SWIFT_CONF_FILE = os.path.join(os.path.dirname(conf), 'swift.conf')
from swift.common import constraints, storage_policy
constraints.reload_constraints()
storage_policy.reload_storage_policies()
from swift.common.wsgi import run_wsgi
kw = {}
if kind == 'object':
    from swift.obj import server
    kw['global_conf_callback'] = server.global_conf_callback
sys.exit(run_wsgi(conf, kind + '-server', **kw))
`;

// ---- processes --------------------------------------------------------------------------------

function launch(bin: string, args: string[], logFile: string): ChildProcess {
  const log = createWriteStream(logFile);
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.on('error', () => {});
  return child;
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const force = setTimeout(() => c.kill('SIGKILL'), 5000);
          c.once('exit', () => {
            clearTimeout(force);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}

function checkAlive(children: ChildProcess[], dir: string): void {
  const dead = children.find((c) => c.exitCode !== null || c.signalCode !== null);
  if (!dead) return;
  const logs = ['memcached', 'object', 'container', 'account', 'proxy']
    .map((n) => {
      try {
        return `${n}.log: ${readFileSync(join(dir, `${n}.log`), 'utf8').trim().split('\n').slice(-5).join(' | ')}`;
      } catch {
        return '';
      }
    })
    .filter((l) => l.length > 10)
    .join('\n');
  throw new Error(`a swift process (${dead.spawnfile} ${dead.spawnargs.slice(1, 3).join(' ')}) exited with ${dead.exitCode ?? dead.signalCode} during startup:\n${logs}`);
}

async function waitForHealth(port: number, deadline: number, children: ChildProcess[], dir: string): Promise<void> {
  for (;;) {
    checkAlive(children, dir);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthcheck`, { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      if (res.status === 200 && text.trim() === 'OK') return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`swift on port ${port} did not answer /healthcheck within ${STARTUP_TIMEOUT_MS / 1000} s`);
    await sleep(100);
  }
}

async function waitForPort(port: number, deadline: number, children: ChildProcess[], dir: string): Promise<void> {
  for (;;) {
    checkAlive(children, dir);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`memcached on port ${port} did not start within ${STARTUP_TIMEOUT_MS / 1000} s`);
    await sleep(50);
  }
}

/** Sends one text-protocol command to memcached and waits for its one-line answer. */
function memcachedCommand(port: number, command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`${command}\r\n`));
    let answer = '';
    s.on('data', (d) => {
      answer += d.toString();
      if (answer.includes('\r\n')) {
        s.destroy();
        if (answer.startsWith('OK')) resolve();
        else reject(new Error(`memcached answered ${JSON.stringify(answer.trim())} to ${command}`));
      }
    });
    s.on('error', reject);
  });
}

async function supportsUserXattrs(dir: string): Promise<boolean> {
  if (!existsSync(dir)) return false;
  const probe = `
import os, sys, tempfile
with tempfile.NamedTemporaryFile(dir=sys.argv[1]) as f:
    os.setxattr(f.name, 'user.stowage-probe', b'1')
`;
  try {
    await execFileAsync(PYTHON, ['-c', probe, dir], { timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/** Ports that were free a moment ago (all held open together, so they are distinct). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createTcpServer>>((resolve, reject) => {
          const s = createTcpServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- Keystone stand-in --------------------------------------------------------------------------

export interface FakeKeystone {
  /** e.g. http://127.0.0.1:PORT/v3 */
  v3Url: string;
  /** e.g. http://127.0.0.1:PORT/v2.0 */
  v2Url: string;
  /** The fixed identities it accepts. */
  user: { name: string; id: string; password: string; domain: string; project: string; projectId: string; projectDomain: string };
  appCredential: { id: string; name: string; secret: string };
  /** Logins it answered with a token (by API version), and the ones it refused. */
  calls: { v2: number; v3: number; refused: number };
  /** The region whose public endpoint is the real Swift; other endpoints point at a closed port. */
  region: string;
  stop(): Promise<void>;
}

/**
 * An identity service with Keystone's token APIs (v2.0 POST /tokens, v3 POST /auth/tokens)
 * that checks each request body field by field and hands out real tempauth tokens of `swift`,
 * with a catalog of several regions and interfaces of which only one reaches the real Swift.
 */
export async function startFakeKeystone(swift: SwiftServer): Promise<FakeKeystone> {
  const user = { name: 'demo', id: 'u-1234', password: `pw-${randomBytes(6).toString('hex')}`, domain: 'Default', project: 'backups', projectId: 'p-5678', projectDomain: 'Default' };
  const appCredential = { id: 'ac-42', name: 'stowage-ci', secret: `secret-${randomBytes(6).toString('hex')}` };
  const calls = { v2: 0, v3: 0, refused: 0 };
  const region = 'RegionOne';
  const closed = 'http://127.0.0.1:9/v1/AUTH_elsewhere';

  const v3Catalog = [
    { type: 'identity', name: 'keystone', endpoints: [{ interface: 'public', region, region_id: region, url: 'http://127.0.0.1:9/v3' }] },
    {
      type: 'object-store',
      name: 'swift',
      endpoints: [
        { interface: 'public', region: 'RegionTwo', region_id: 'RegionTwo', url: closed },
        { interface: 'internal', region, region_id: region, url: closed },
        { interface: 'admin', region, region_id: region, url: closed },
        { interface: 'public', region, region_id: region, url: swift.storageUrl },
      ],
    },
  ];
  const v2Catalog = [
    { type: 'identity', name: 'keystone', endpoints: [{ region, publicURL: 'http://127.0.0.1:9/v2.0' }] },
    {
      type: 'object-store',
      name: 'swift',
      endpoints: [
        { region: 'RegionTwo', publicURL: closed, internalURL: closed, adminURL: closed },
        { region, publicURL: swift.storageUrl, internalURL: closed, adminURL: closed },
      ],
    },
  ];

  const refuse = (res: ServerResponse): void => {
    calls.refused++;
    sendJson(res, 401, { error: { code: 401, title: 'Unauthorized', message: 'The request you have made requires authentication.' } });
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readJsonBody(req);
      if (req.method === 'POST' && req.url === '/v2.0/tokens') {
        const auth = body?.auth;
        const cred = auth?.passwordCredentials;
        const tenantOk = auth?.tenantName === user.project || auth?.tenantId === user.projectId;
        if (cred?.username !== user.name || cred?.password !== user.password || !tenantOk) return refuse(res);
        calls.v2++;
        return sendJson(res, 200, { access: { token: { id: await swift.token(), expires: '2999-01-01T00:00:00Z', tenant: { id: user.projectId, name: user.project } }, serviceCatalog: v2Catalog, user: { id: user.id, name: user.name } } });
      }
      if (req.method === 'POST' && req.url === '/v3/auth/tokens') {
        if (!v3RequestOk(body, user, appCredential)) return refuse(res);
        calls.v3++;
        res.setHeader('X-Subject-Token', await swift.token());
        return sendJson(res, 201, { token: { methods: body.auth.identity.methods, expires_at: '2999-01-01T00:00:00.000000Z', catalog: v3Catalog, user: { id: user.id, name: user.name } } });
      }
      sendJson(res, 404, { error: { code: 404, title: 'Not Found', message: `no route ${req.method} ${req.url}` } });
    })().catch((err: unknown) => sendJson(res, 500, { error: { code: 500, title: 'Internal Server Error', message: String(err) } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return {
    v3Url: `http://127.0.0.1:${port}/v3`,
    v2Url: `http://127.0.0.1:${port}/v2.0`,
    user,
    appCredential,
    calls,
    region,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Json = any;

/** Keystone v3's rules for the password and application_credential methods, as the real service applies them. */
function v3RequestOk(body: Json, user: FakeKeystone['user'], app: FakeKeystone['appCredential']): boolean {
  const identity = body?.auth?.identity;
  const methods: unknown = identity?.methods;
  if (!Array.isArray(methods) || methods.length !== 1) return false;
  const userMatches = (u: Json): boolean => u?.id === user.id || (u?.name === user.name && (u?.domain?.name === user.domain || u?.domain?.id === 'default'));
  if (methods[0] === 'password') {
    const u = identity.password?.user;
    if (!userMatches(u) || u.password !== user.password) return false;
    const project = body.auth.scope?.project;
    // This user has a role on one project only; unscoped tokens have no catalog.
    if (!project) return false;
    return project.id === user.projectId || (project.name === user.project && (project.domain?.name === user.projectDomain || project.domain?.id === 'default'));
  }
  if (methods[0] === 'application_credential') {
    const c = identity.application_credential;
    if (body.auth.scope) return false; // Keystone refuses a scope with application credentials.
    if (c?.secret !== app.secret) return false;
    return c.id === app.id || (c.name === app.name && userMatches(c.user));
  }
  return false;
}

async function readJsonBody(req: IncomingMessage): Promise<Json> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const bytes = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  res.end(bytes);
}
