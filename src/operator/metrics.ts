// Metrics an operator exports: the four repository gauges Stash pushes
// (stashed/apimachinery v0.42.1 pkg/metrics/repository.go) and the per-host backup gauges of a
// BackupSession (pkg/metrics/backup.go), under Stash's names, plus what Stash has no name for
// (errors, bytes stored after compression). As plain typed samples, as Prometheus text
// exposition (format 0.0.4), and through prom-client, loaded only when that adapter is used.
import { InvalidInputError, UnsupportedError } from '../errors.ts';
import type { BackupResult } from '../snapshot/operations/backup/types.ts';
import type { ForgetResult } from '../snapshot/operations/forget.ts';
import type { RepositoryObservation } from './observe.ts';
import { removedByCleanup } from './stash.ts';

/** A Prometheus metric type (Stash's are all gauges). */
export type MetricType = 'gauge' | 'counter';

/** One sample: a metric name, its help and type, the labels of this series and the value. */
export interface MetricSample {
  name: string;
  help: string;
  type: MetricType;
  labels: Readonly<Record<string, string>>;
  value: number;
}

/** The Content-Type of {@link toPrometheusText}'s output. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const STASH = 'stash_appscode_com';
const LEGACY = 'stash';

/** Options of {@link repositoryMetrics}. */
export interface RepositoryMetricsOptions {
  /** Labels on every sample (Stash: name, namespace, backend, bucket, prefix, …). */
  labels?: Readonly<Record<string, string>>;
  /** The last retention run: `…_snapshot_cleaned`. Without it that gauge is left out. */
  lastCleanup?: ForgetResult;
  /** Also the pre-v2021 names Stash still pushes (`stash_repository_*`). */
  legacy?: boolean;
}

/**
 * Stash's repository gauges from an observation: `…_repository_integrity` (1 or 0; left out when
 * the check was skipped, where Stash would push 0), `…_size_bytes` (raw-data bytes, exact: Stash
 * parses them back from its rounded "1.845 MiB"), `…_snapshot_count`, `…_snapshot_cleaned`.
 */
export function repositoryMetrics(observation: RepositoryObservation, options: RepositoryMetricsOptions = {}): MetricSample[] {
  const labels = { ...options.labels };
  const out: MetricSample[] = [];
  for (const ns of options.legacy ? [STASH, LEGACY] : [STASH]) {
    const gauge = (name: string, help: string, value: number) => out.push({ name: `${ns}_repository_${name}`, help, type: 'gauge', labels, value });
    if (observation.check) gauge('integrity', 'Result of repository integrity check after last backup', observation.check.ok ? 1 : 0);
    if (observation.stats) gauge('size_bytes', 'Indicates size of repository after last backup (in bytes)', observation.stats.rawDataSize);
    gauge('snapshot_count', 'Indicates number of snapshots stored in the repository', observation.snapshots.length);
    if (options.lastCleanup) {
      gauge('snapshot_cleaned', 'Indicates number of old snapshots cleaned up according to retention policy on last backup session', removedByCleanup(options.lastCleanup));
    }
  }
  return out;
}

/** Options of {@link backupMetrics}. */
export interface BackupMetricsOptions {
  /** The host (Stash's `hostname` label). */
  hostname: string;
  /** Labels on every sample (Stash: invoker_kind, invoker_name, namespace, repository, …). */
  labels?: Readonly<Record<string, string>>;
  /** The host's whole backup time in ms; default: the backups' own span. */
  durationMs?: number;
  /** The error that failed the host's backup: success 0 and no other gauge (as Stash). */
  error?: Error | string;
}

/**
 * A host's backup gauges under Stash's BackupSession names (`stash_appscode_com_backupsession_
 * host_*`: success, duration, data size and uploaded bytes, processing time, files total, new,
 * modified, unmodified), summed over the host's backups as Stash sums its snapshots, plus
 * `stowage_backup_errors` (files and folders not read) and `stowage_backup_data_added_packed_bytes`.
 */
export function backupMetrics(results: readonly BackupResult[], options: BackupMetricsOptions): MetricSample[] {
  if (!options.hostname) throw new InvalidInputError('backupMetrics needs the hostname');
  const labels = { ...options.labels, hostname: options.hostname };
  const out: MetricSample[] = [];
  const host = (name: string, help: string, value: number) => out.push({ name: `${STASH}_backupsession_host_${name}`, help, type: 'gauge', labels, value });
  host('backup_success', 'Indicates whether the backup for a host succeeded or not', options.error === undefined ? 1 : 0);
  if (options.error !== undefined) return out;
  let size = 0, uploaded = 0, packed = 0, seconds = 0, total = 0, added = 0, changed = 0, same = 0, errors = 0;
  let first: bigint | undefined, last: bigint | undefined;
  for (const r of results) {
    const s = r.summary;
    size += s.totalBytesProcessed;
    uploaded += s.dataAdded;
    packed += s.dataAddedPacked;
    seconds += Number(s.backupEnd.epochNs - s.backupStart.epochNs) / 1e9;
    total += s.totalFilesProcessed;
    added += s.filesNew;
    changed += s.filesChanged;
    same += s.filesUnmodified;
    errors += r.errors.length;
    if (first === undefined || s.backupStart.epochNs < first) first = s.backupStart.epochNs;
    if (last === undefined || s.backupEnd.epochNs > last) last = s.backupEnd.epochNs;
  }
  const duration = options.durationMs !== undefined ? options.durationMs / 1000 : first !== undefined ? Number(last! - first) / 1e9 : 0;
  host('backup_duration_seconds', 'Indicates total time taken to complete the backup process for a host', duration);
  host('data_size_bytes', 'Total size of the target data to backup for a host (in bytes)', size);
  host('data_uploaded_bytes', 'Amount of data uploaded to the repository for a host (in bytes)', uploaded);
  host('data_processing_time_seconds', 'Total time taken to process the target data for a host', seconds);
  host('files_total', 'Total number of files that has been backed up for a host', total);
  host('files_new', 'Total number of new files that has been created since last backup for a host', added);
  host('files_modified', 'Total number of files that has been modified since last backup for a host', changed);
  host('files_unmodified', 'Total number of files that has not been changed since last backup for a host', same);
  out.push({ name: 'stowage_backup_errors', help: 'Files and folders the last backup of a host could not read (restic exit code 3)', type: 'gauge', labels, value: errors });
  out.push({ name: 'stowage_backup_data_added_packed_bytes', help: 'Bytes the last backup of a host added to the repository after compression', type: 'gauge', labels, value: packed });
  return out;
}

// ---- Prometheus text exposition -----------------------------------------------------------------

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Checks names, label names, types and duplicate series; throws InvalidInputError. Returns samples grouped by name, in first-seen order. */
function groupSamples(samples: readonly MetricSample[]): Map<string, MetricSample[]> {
  const groups = new Map<string, MetricSample[]>();
  const series = new Set<string>();
  for (const s of samples) {
    if (!METRIC_NAME.test(s.name)) throw new InvalidInputError(`metric name ${JSON.stringify(s.name)} is not valid`);
    if (s.type !== 'gauge' && s.type !== 'counter') throw new InvalidInputError(`metric ${s.name}: type ${JSON.stringify(s.type)} is not gauge or counter`);
    if (typeof s.value !== 'number') throw new InvalidInputError(`metric ${s.name}: value must be a number`);
    for (const [k, v] of Object.entries(s.labels)) {
      if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new InvalidInputError(`metric ${s.name}: label name ${JSON.stringify(k)} is not valid`);
      if (typeof v !== 'string') throw new InvalidInputError(`metric ${s.name}: label ${k} must be a string`);
    }
    const group = groups.get(s.name);
    if (group && (group[0]!.type !== s.type || group[0]!.help !== s.help)) throw new InvalidInputError(`metric ${s.name} is given with two types or helps`);
    const key = `${s.name}${labelText(s.labels)}`;
    if (series.has(key)) throw new InvalidInputError(`metric series ${key} is given twice`);
    series.add(key);
    if (group) group.push(s);
    else groups.set(s.name, [s]);
  }
  return groups;
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return `{${keys.map((k) => `${k}="${escape(labels[k]!)}"`).join(',')}}`;
}

function valueText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * The samples as Prometheus text exposition (version 0.0.4): `# HELP` and `# TYPE` once per
 * metric, one line per series, labels sorted and escaped. Serve it with
 * {@link PROMETHEUS_CONTENT_TYPE}. Throws InvalidInputError on invalid names or duplicate series.
 */
export function toPrometheusText(samples: readonly MetricSample[]): string {
  let text = '';
  for (const [name, group] of groupSamples(samples)) {
    const help = group[0]!.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
    text += `# HELP ${name} ${help}\n# TYPE ${name} ${group[0]!.type}\n`;
    for (const s of group) text += `${name}${labelText(s.labels)} ${valueText(s.value)}\n`;
  }
  return text;
}

// ---- prom-client --------------------------------------------------------------------------------

/** The part of prom-client's documented API the adapter uses (Gauge, Counter with `collect`, Registry). */
export interface PromClientModule {
  Gauge: new (config: PromMetricConfig) => PromMetric;
  Counter: new (config: PromMetricConfig) => PromMetric;
  register: PromRegistry;
}
/** A prom-client metric's configuration, as the adapter fills it. */
export interface PromMetricConfig {
  name: string;
  help: string;
  labelNames: string[];
  registers: PromRegistry[];
  collect: (this: PromMetric) => void;
}
/** The methods of a prom-client Gauge / Counter the adapter calls. */
export interface PromMetric {
  reset(): void;
  set?(labels: Record<string, string>, value: number): void;
  inc?(labels: Record<string, string>, value: number): void;
}
/** A prom-client Registry (opaque to the adapter). */
export type PromRegistry = object;

/** Options of {@link PromClientAdapter.create}. */
export interface PromClientAdapterOptions {
  /** The registry (default: prom-client's global `register`). */
  registry?: PromRegistry;
  /** prom-client itself, when the caller has imported it (default: imported on first use). */
  promClient?: PromClientModule;
}

/**
 * Exposes samples through prom-client: each metric name becomes a Gauge (or Counter) whose
 * `collect` reports the latest samples given to {@link PromClientAdapter.update}, so a scrape of
 * the registry (`await registry.metrics()`) shows them with the operator's other metrics.
 * prom-client is an optional peer dependency, imported when an adapter is created.
 */
export class PromClientAdapter {
  private latest = new Map<string, MetricSample[]>();
  private readonly metrics = new Map<string, { type: MetricType; help: string; labelNames: string }>();

  private readonly client: PromClientModule;
  private readonly registry: PromRegistry;

  private constructor(client: PromClientModule, registry: PromRegistry) {
    this.client = client;
    this.registry = registry;
  }

  /**
   * An adapter on a registry; prom-client is imported now unless given.
   *
   * @throws UnsupportedError when prom-client is not installed.
   */
  static async create(options: PromClientAdapterOptions = {}): Promise<PromClientAdapter> {
    const client = options.promClient ?? (await loadPromClient());
    return new PromClientAdapter(client, options.registry ?? client.register);
  }

  /**
   * Replaces the samples the next scrape reports; a metric first seen here is registered. A
   * metric's labels must keep their names (prom-client fixes them at registration).
   */
  update(samples: readonly MetricSample[]): void {
    const groups = groupSamples(samples);
    for (const [name, group] of groups) {
      const labelNames = [...new Set(group.flatMap((s) => Object.keys(s.labels)))].sort();
      const known = this.metrics.get(name);
      if (known) {
        if (known.type !== group[0]!.type || known.labelNames !== labelNames.join(',')) {
          throw new InvalidInputError(`metric ${name} was registered with type ${known.type} and labels [${known.labelNames}]`);
        }
        continue;
      }
      const latest = () => this.latest.get(name) ?? [];
      const type = group[0]!.type;
      const config: PromMetricConfig = {
        name,
        help: group[0]!.help,
        labelNames,
        registers: [this.registry],
        collect(this: PromMetric) {
          this.reset();
          for (const s of latest()) {
            if (type === 'gauge') this.set!({ ...s.labels }, s.value);
            else this.inc!({ ...s.labels }, s.value);
          }
        },
      };
      if (type === 'gauge') new this.client.Gauge(config);
      else new this.client.Counter(config);
      this.metrics.set(name, { type, help: group[0]!.help, labelNames: labelNames.join(',') });
    }
    this.latest = groups;
  }
}

async function loadPromClient(): Promise<PromClientModule> {
  const pkg = 'prom-client';
  try {
    const mod = (await import(pkg)) as PromClientModule & { default?: PromClientModule };
    return mod.Gauge ? mod : mod.default!;
  } catch (err) {
    throw new UnsupportedError(`PromClientAdapter needs the optional package prom-client (npm install prom-client): ${(err as Error).message}`);
  }
}
