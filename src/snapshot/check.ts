// Integrity check, as restic's checker: every index loads; every pack the index names exists
// with the size the index implies; every snapshot loads and every tree and blob it reaches is
// indexed. With readData, every pack is read: its hash, its header against the index, and
// every blob's MAC and hash. The result is a plain object an operator can store.
import type { CallOptions } from '../backend/backend.ts';
import { AbortedError, throwIfAborted } from '../errors.ts';
import type { Repository, IndexedRepository } from '../repository/repository.ts';
import { sha256hex } from '../repository/repository.ts';
import type { BlobId, PackId } from '../repository/id.ts';
import { expectedPackSize, readPackHeader, type PackedBlob } from '../repository/pack.ts';
import { mapLimit } from '../repository/concurrency.ts';
import { decodeSnapshot } from './snapshot.ts';
import { decodeTree } from './tree.ts';

export interface CheckProblem {
  message: string;
  file?: string;
  blob?: string;
  /** Snapshots that reference the damaged object, when known. */
  snapshots?: string[];
}

export interface CheckReport {
  ok: boolean;
  errors: CheckProblem[];
  hints: string[];
  snapshots: number;
  trees: number;
  packs: number;
  packsRead: number;
  blobsRead: number;
}

export interface CheckOptions extends CallOptions {
  readData?: boolean;
  onMessage?: (m: string) => void;
}

export async function checkRepository(repo: Repository, options: CheckOptions = {}): Promise<CheckReport> {
  const report: CheckReport = { ok: true, errors: [], hints: [], snapshots: 0, trees: 0, packs: 0, packsRead: 0, blobsRead: 0 };
  const say = options.onMessage ?? (() => undefined);
  const err = (p: CheckProblem) => report.errors.push(p);

  say('load indexes');
  let indexed: IndexedRepository;
  try {
    indexed = await repo.loadIndex(options);
  } catch (e) {
    if (e instanceof AbortedError) throw e;
    // Load what can be loaded, file by file, to report every broken index.
    err({ message: (e as Error).message, file: (e as { file?: string }).file });
    report.ok = false;
    return report;
  }

  say('check all packs');
  const stored = new Map<string, number>();
  for await (const f of repo.backend.list('data', options)) stored.set(f.name, f.size);
  const packs = indexed.index.packs();
  report.packs = packs.size;
  for (const [packId, blobs] of packs) {
    const size = stored.get(packId);
    const file = `data/${packId.slice(0, 2)}/${packId}`;
    if (size === undefined) err({ message: `pack ${packId} is referenced by the index but does not exist`, file });
    else if (size !== expectedPackSize(blobs)) err({ message: `pack ${packId}: unexpected file size ${size}, index says ${expectedPackSize(blobs)}`, file });
  }
  for (const id of stored.keys()) if (!packs.has(id as PackId)) report.hints.push(`pack ${id} is not referenced in any index`);

  say('check snapshots, trees and blobs');
  const treeOwners = new Map<string, Set<string>>();
  const seen = new Set<string>();
  const snapshotIds: string[] = [];
  for await (const id of repo.listIds('snapshots', options)) snapshotIds.push(id);
  report.snapshots = snapshotIds.length;
  for (const sid of snapshotIds) {
    throwIfAborted(options.signal);
    let tree: BlobId;
    try {
      tree = decodeSnapshot(await repo.loadUnpacked('snapshots', sid, options), sid).tree;
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      err({ message: (e as Error).message, file: `snapshots/${sid}`, snapshots: [sid] });
      continue;
    }
    const stack: BlobId[] = [tree];
    while (stack.length) {
      const t = stack.pop()!;
      let owners = treeOwners.get(t);
      if (!owners) treeOwners.set(t, (owners = new Set()));
      owners.add(sid);
      if (seen.has(t)) continue;
      seen.add(t);
      report.trees++;
      let nodes;
      try {
        nodes = decodeTree(await indexed.loadBlob('tree', t, options), t);
      } catch (e) {
        if (e instanceof AbortedError) throw e;
        err({ message: `tree ${t}: ${(e as Error).message}`, blob: t, snapshots: [sid] });
        continue;
      }
      for (const n of nodes) {
        if (n.name === '') err({ message: `tree ${t}: node has an empty name`, blob: t, snapshots: [sid] });
        if (n.type === 'file') {
          if (n.content === null) err({ message: `tree ${t}: file "${n.name}" has nil blob list`, blob: t, snapshots: [sid] });
          for (const c of n.content ?? []) {
            if (!indexed.index.has(c, 'data')) err({ message: `tree ${t}: file "${n.name}" blob ${c} not found in index`, blob: c, snapshots: [sid] });
          }
        } else if (n.type === 'dir') {
          if (!n.subtree) err({ message: `tree ${t}: dir "${n.name}" has no subtree`, blob: t, snapshots: [sid] });
          else if (!indexed.index.has(n.subtree, 'tree')) err({ message: `tree ${t}: dir "${n.name}" subtree ${n.subtree} not found in index`, blob: n.subtree, snapshots: [sid] });
          else stack.push(n.subtree);
        }
      }
    }
  }

  if (options.readData) {
    say(`read all data (${packs.size} packs)`);
    await mapLimit([...packs], Math.max(2, repo.backend.connections), async ([packId, blobs]) => {
      if (!stored.has(packId)) return;
      throwIfAborted(options.signal);
      const problems = await readPack(indexed, packId, blobs, options);
      report.packsRead++;
      report.blobsRead += blobs.length;
      for (const p of problems) err(p);
    });
  }
  report.ok = report.errors.length === 0;
  return report;
}

async function readPack(repo: IndexedRepository, packId: PackId, blobs: PackedBlob[], options: CallOptions): Promise<CheckProblem[]> {
  const file = `data/${packId.slice(0, 2)}/${packId}`;
  const out: CheckProblem[] = [];
  let bytes: Uint8Array;
  try {
    bytes = await repo.backend.load({ type: 'data', name: packId }, options);
  } catch (e) {
    if (e instanceof AbortedError) throw e;
    return [{ message: `pack ${packId}: ${(e as Error).message}`, file }];
  }
  if (sha256hex(bytes) !== packId) out.push({ message: `pack ${packId}: content does not match its ID (SHA-256)`, file });
  try {
    const header = await readPackHeader(repo.repo.masterKeyForWorkers(), bytes.length, bytes, async () => bytes, file);
    const key = (b: PackedBlob) => `${b.type}:${b.id}:${b.offset}:${b.length}:${b.uncompressedLength}`;
    const inHeader = new Set(header.map(key));
    for (const b of blobs) if (!inHeader.has(key(b))) out.push({ message: `pack ${packId}: blob ${b.id} in the index does not match the pack header`, file, blob: b.id });
  } catch (e) {
    out.push({ message: `pack ${packId}: ${(e as Error).message}`, file });
  }
  for (const b of blobs) {
    try {
      repo.decodeBlob({ ...b, packId }, bytes.subarray(b.offset, b.offset + b.length));
    } catch (e) {
      out.push({ message: `pack ${packId}: ${(e as Error).message}`, file, blob: b.id });
    }
  }
  return out;
}
