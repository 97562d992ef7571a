// One reconcile step of an operator for Stash `Repository` objects: read the Repository and its
// storage Secret, open the repository exactly where Stash's restic would find it
// (backendFromStash), and print the status fields Stash shows for it — integrity, size, snapshot
// count, first and last backup time — as a JSON object, ready for a status patch.
//
//   kubectl get repository minio-repo -n demo -o json > repository.json
//   kubectl get secret minio-secret -n demo -o json > secret.json
//   node examples/stash-operator.ts repository.json secret.json      (YAML files work too)
//
// A Repository (stash.appscode.com/v1alpha1) and its Secret, whose `data` values are base64 as
// Kubernetes stores them ("Y2hhbmdlaXQ=" is "changeit"):
//
//   {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
//    "metadata": {"name": "minio-repo", "namespace": "demo"},
//    "spec": {"backend": {"storageSecretName": "minio-secret",
//                         "s3": {"endpoint": "http://minio.storage.svc:9000", "bucket": "stash", "prefix": "/demo/app"}}}}
//
//   {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "minio-secret", "namespace": "demo"},
//    "data": {"RESTIC_PASSWORD": "Y2hhbmdlaXQ=", "AWS_ACCESS_KEY_ID": "…", "AWS_SECRET_ACCESS_KEY": "…"}}
//
// Output, with Stash's field names and formats (the size as Stash formats `stats --mode raw-data`):
//   {"integrity": true, "totalSize": "1.845 MiB", "snapshotCount": 3,
//    "firstBackupTime": "2025-01-05T02:00:07Z", "lastBackupTime": "2025-01-07T02:00:05Z"}
// Run `npm run build` first.

import { readFile } from 'node:fs/promises';
import { Repository, backendFromStash, decodeSecretData, stashRepositoryStatus } from 'stowage';
import type { StashBackendSpec } from 'stowage';

interface Manifest {
  kind?: string;
  metadata?: { name?: string };
  spec?: { backend?: StashBackendSpec };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

const [repositoryFile, secretFile] = process.argv.slice(2);
if (!repositoryFile || !secretFile) {
  console.error('usage: node examples/stash-operator.ts REPOSITORY.(json|yaml) SECRET.(json|yaml)');
  process.exit(2);
}
const repository = await readManifest(repositoryFile, 'Repository');
const secret = await readManifest(secretFile, 'Secret');
const spec = repository.spec?.backend;
if (!spec) throw new Error(`${repositoryFile}: the Repository has no spec.backend`);
// An operator fetches the Secret by this name; with files, make sure the right one was given.
if (spec.storageSecretName && secret.metadata?.name !== spec.storageSecretName) {
  throw new Error(`${secretFile} is Secret ${secret.metadata?.name}, but the Repository names ${spec.storageSecretName}`);
}

// Kubernetes folds stringData into data when a Secret is written; a manifest may still carry both.
const secretData = { ...decodeSecretData(secret.data ?? {}), ...secret.stringData };
const { backend, password } = await backendFromStash(spec, secretData);
try {
  const repo = await Repository.open(backend, { password });
  // One call: `restic check` as Stash runs it after a backup (no data read), the size as
  // `restic stats --mode raw-data`, the snapshots — each field formatted as Stash writes it.
  const { status, observation } = await stashRepositoryStatus(repo);
  for (const problem of observation.check?.errors ?? []) console.error(`integrity: ${problem.message}`);
  // A damaged repository may not give its size (the index or the trees to walk may be gone):
  // the status then goes without it rather than not at all.
  if (observation.statsError) console.error(`size: ${observation.statsError}`);
  console.log(JSON.stringify(status));
} finally {
  await backend.close();
}

async function readManifest(file: string, kind: string): Promise<Manifest> {
  const text = await readFile(file, 'utf8');
  const object = (/^\s*\{/.test(text) ? JSON.parse(text) : parseYaml(text)) as Manifest;
  if (object?.kind !== kind) throw new Error(`${file} is not a ${kind} (kind: ${object?.kind})`);
  return object;
}

/**
 * Just enough YAML for Kubernetes manifests as people and kubectl write them: nested mappings,
 * lists, plain and quoted scalars, comments (a "#" after a space always starts one). No anchors,
 * block strings (| >) or flow collections other than {} and []. A real operator gets objects
 * from the Kubernetes API instead.
 */
function parseYaml(text: string): unknown {
  const KEY = /^("[^"]*"|'[^']*'|[^\s"'][^:]*?):(?:\s+(.*))?$/;
  const lines = text
    .split(/\r?\n/)
    .map((raw) => raw.replace(/(^|\s)#.*$/, '').trimEnd())
    .filter((line) => line.trim() !== '' && line.trim() !== '---')
    .map((line) => ({ indent: line.length - line.trimStart().length, text: line.trim() }));
  let i = 0;
  const isItem = (at: number, indent: number): boolean => at < lines.length && lines[at].indent === indent && /^-(\s|$)/.test(lines[at].text);
  const block = (indent: number): unknown => {
    if (isItem(i, indent)) {
      const list: unknown[] = [];
      while (isItem(i, indent)) {
        const rest = lines[i].text.slice(1).trimStart();
        if (rest === '') list.push(++i < lines.length && lines[i].indent > indent ? block(lines[i].indent) : null);
        // "- key: value" starts a mapping whose further keys line up with "key".
        else if (KEY.test(rest)) {
          // "- key: value" opens a mapping whose further keys line up under "key".
          const column = indent + lines[i].text.length - rest.length;
          lines[i] = { indent: column, text: rest };
          list.push(block(column));
        } else list.push(scalar(rest, lines[i++].text));
      }
      return list;
    }
    const map: Record<string, unknown> = {};
    while (i < lines.length && lines[i].indent === indent && !isItem(i, indent)) {
      const m = KEY.exec(lines[i].text);
      if (!m) throw new Error(`unsupported YAML line: ${lines[i].text}`);
      i++;
      const key = String(scalar(m[1], m[1]));
      if (m[2]) map[key] = scalar(m[2], m[0]);
      // A nested block sits further in; kubectl writes a list at the key's own indentation.
      else if (i < lines.length && (lines[i].indent > indent || isItem(i, indent))) map[key] = block(lines[i].indent);
      else map[key] = null;
    }
    return map;
  };
  const doc = lines.length === 0 ? null : block(lines[0].indent);
  if (i < lines.length) throw new Error(`unsupported YAML line: ${lines[i].text}`);
  return doc;
}

function scalar(value: string, line: string): unknown {
  if (value.startsWith('"')) return JSON.parse(value);
  if (value.startsWith("'")) return value.slice(1, -1).replaceAll("''", "'");
  if (value === '{}') return {};
  if (value === '[]') return [];
  if (/^[|>[{&*!]/.test(value)) throw new Error(`unsupported YAML value: ${line}`);
  if (value === 'true' || value === 'false') return value === 'true';
  if (value === 'null' || value === '~') return null;
  if (/^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  return value;
}
