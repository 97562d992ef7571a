// An operator's watch loop over one repository: it keeps the repository open for as long as it
// runs, refreshes its index on an interval (two LIST requests when nothing changed), recomputes
// the status — check, raw-data size, snapshots — only when snapshots or index files changed, and
// serves the metrics on /metrics (Prometheus text format) and the last status on /status.
//
//   RESTIC_REPOSITORY=s3:https://minio.storage:9000/backups/app RESTIC_PASSWORD=… \
//   AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… node examples/operator-loop.ts
//
// Variables (besides the repository's and its storage's, under restic's names):
//   STOWAGE_INTERVAL_MS   time between refreshes (default 60000)
//   STOWAGE_METRICS_PORT  port for /metrics, /status and /healthz on 127.0.0.1 (default 9090; 0: any free port)
//   STOWAGE_METRICS_HOST  address to listen on (default 127.0.0.1; in a pod, 0.0.0.0)
//   STOWAGE_CHECK         "structure" (default: check without reading data, as Stash), "none", or a
//                         --read-data-subset value such as "5%" (a different sample each time)
//   STOWAGE_LABELS        labels on every metric, e.g. "name=app-repo,namespace=demo"
// It prints one JSON line per event on stdout: {"event":"listening","port":…}, then for each
// refresh {"event":"status",…} (recomputed) or {"event":"unchanged",…}, and {"event":"error",…}
// when a round fails (the loop goes on, the last good metrics stay). SIGTERM or SIGINT stops it.
// Run `npm run build` first.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  PROMETHEUS_CONTENT_TYPE, Repository, buildStashRepositoryStatus, observeRepository, openBackend, repositoryMetrics, toPrometheusText,
} from 'stowage';
import type { MetricSample, ObserveOptions, RepositoryObservation, StashRepositoryStatus } from 'stowage';

const location = process.env.RESTIC_REPOSITORY;
const password = process.env.RESTIC_PASSWORD;
if (!location || !password) {
  console.error('set RESTIC_REPOSITORY and RESTIC_PASSWORD');
  process.exit(2);
}
const intervalMs = Number(process.env.STOWAGE_INTERVAL_MS ?? 60_000);
const port = Number(process.env.STOWAGE_METRICS_PORT ?? 9090);
const checkMode = process.env.STOWAGE_CHECK ?? 'structure';
const check: ObserveOptions['check'] = checkMode === 'none' ? false : checkMode === 'structure' ? true : { readDataSubset: checkMode };
const labels = Object.fromEntries(
  (process.env.STOWAGE_LABELS ?? '').split(',').filter(Boolean).map((kv) => kv.split('=', 2) as [string, string]),
);
if (!(intervalMs > 0) || !Number.isInteger(port)) {
  console.error('STOWAGE_INTERVAL_MS must be a positive number and STOWAGE_METRICS_PORT an integer');
  process.exit(2);
}

const say = (event: Record<string, unknown>) => console.log(JSON.stringify(event));
const stop = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop.abort());

const backend = await openBackend(location);
const repo = await Repository.open(backend, { password });
const indexed = await repo.loadIndex({ signal: stop.signal });

// What the HTTP side serves: the last good observation's samples and status, and the loop's own counters.
let samples: MetricSample[] = [];
let status: StashRepositoryStatus | undefined;
const loop = { refreshes: 0, recomputes: 0, errors: 0, lastRefresh: 0 };

const server = createServer((req, res) => {
  if (req.url === '/metrics') {
    const own: MetricSample[] = [
      { name: 'stowage_operator_refreshes_total', help: 'Index refreshes the loop made', type: 'counter', labels, value: loop.refreshes },
      { name: 'stowage_operator_status_recomputes_total', help: 'Times the status was recomputed (snapshots or index changed)', type: 'counter', labels, value: loop.recomputes },
      { name: 'stowage_operator_errors_total', help: 'Rounds that failed', type: 'counter', labels, value: loop.errors },
      { name: 'stowage_operator_last_refresh_timestamp_seconds', help: 'When the last refresh finished (Unix time)', type: 'gauge', labels, value: loop.lastRefresh },
    ];
    res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(toPrometheusText([...samples, ...own]));
  } else if (req.url === '/status' && status) {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status }));
  } else if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  } else res.writeHead(404).end();
});
await new Promise<void>((resolve) => server.listen(port, process.env.STOWAGE_METRICS_HOST ?? '127.0.0.1', resolve));
say({ event: 'listening', port: (server.address() as AddressInfo).port });

const recompute = async (iteration: number, reason: string) => {
  const observation: RepositoryObservation = await observeRepository(indexed, { check, signal: stop.signal });
  samples = repositoryMetrics(observation, { labels });
  status = buildStashRepositoryStatus(observation);
  loop.recomputes++;
  say({ event: 'status', iteration, reason, status });
};

try {
  let iteration = 0;
  // Why the status is due: set by a change the refresh saw, cleared once a recompute succeeded
  // (a failed one is tried again next round even if nothing changes meanwhile).
  let due: string | undefined = 'start';
  while (!stop.signal.aborted) {
    try {
      if (iteration > 0) {
        const r = await indexed.refresh({ signal: stop.signal });
        loop.refreshes++;
        loop.lastRefresh = Date.now() / 1000;
        const changed = [r.snapshotsChanged && 'snapshots', (r.added.length > 0 || r.removed.length > 0) && 'index'].filter(Boolean).join('+');
        if (changed) due = due ? `${due}+${changed}` : changed;
      }
      if (due) {
        await recompute(iteration, due);
        due = undefined;
      } else say({ event: 'unchanged', iteration });
    } catch (err) {
      if (stop.signal.aborted) break;
      loop.errors++;
      say({ event: 'error', iteration, message: (err as Error).message });
    }
    iteration++;
    await sleep(intervalMs, undefined, { signal: stop.signal }).catch(() => undefined);
  }
} finally {
  server.close();
  server.closeAllConnections();
  await backend.close();
}
