// `recover`, as restic 0.19's: a snapshot of every tree that neither another tree nor a snapshot
// refers to (e.g. the root of a snapshot forgotten by accident, not yet pruned). Each such root
// becomes a folder named by its short ID (mode 0755, times now) in one new tree; the snapshot has
// the path "/recover", the tag "recovered", this host and user. Trees first, then the snapshot.
// Under an exclusive lock, as restic takes one. restic first runs `repair index`; this does not
// (operations do not call each other): run `repairIndex` first when packs may be missing from it.
import os from 'node:os';
import type { CallOptions } from '../../backend/backend.ts';
import { throwIfAborted } from '../../errors.ts';
import { baseRepository, type AnyRepository } from '../../repository/repository.ts';
import type { BlobId, SnapshotId } from '../../repository/id.ts';
import { goTimeNow } from '../../repository/gotime.ts';
import { mapLimit } from '../../repository/concurrency.ts';
import { withOptionalLock } from '../../repository/lock.ts';
import { encodeSnapshot, type Snapshot } from '../model/snapshot.ts';
import { decodeTree, encodeTree, sortNodes } from '../model/tree.ts';
import type { TreeNode } from '../model/node.ts';
import { listSnapshots } from '../engine/select.ts';

/** Options of {@link recover}. */
export interface RecoverOptions extends CallOptions {
  /** Take an exclusive lock (default true). Pass false when the caller holds one. */
  lock?: boolean;
  /** Keep trying this long (ms) while another process holds a lock. */
  retryLock?: number;
  /** Hostname of the new snapshot (default: this host). */
  hostname?: string;
  /** Lines as restic prints them. */
  onMessage?: (m: string) => void;
}

/** What {@link recover} found and wrote. */
export interface RecoverResult {
  /** Tree blobs in the index. */
  trees: number;
  /** The unreferenced root trees, sorted. */
  roots: BlobId[];
  /** Trees that could not be loaded (skipped, as restic skips them). */
  unreadable: Array<{ id: BlobId; message: string }>;
  /** The new snapshot (absent when there was no root). */
  snapshotId?: SnapshotId;
  /** Its tree. */
  tree?: BlobId;
}

/** Writes a snapshot of the unreferenced trees, as `restic recover`. */
export async function recover(repository: AnyRepository, options: RecoverOptions = {}): Promise<RecoverResult> {
  const repo = baseRepository(repository);
  const say = options.onMessage ?? (() => undefined);
  const signal = options.signal;
  return withOptionalLock(repo, { lock: options.lock, exclusive: true, retryLock: options.retryLock, signal }, async () => {
    say('load index files');
    const indexed = await repo.loadIndex({ signal });
    const referenced = new Map<BlobId, boolean>();
    for (const e of indexed.index.entries()) if (e.type === 'tree') referenced.set(e.id, false);
    say(`load ${referenced.size} trees`);
    const unreadable: RecoverResult['unreadable'] = [];
    await mapLimit([...referenced.keys()], Math.max(2, repo.backend.connections), async (id) => {
      throwIfAborted(signal);
      let nodes: TreeNode[];
      try {
        nodes = decodeTree(await indexed.loadBlob('tree', id, { signal }), id);
      } catch (e) {
        if ((e as { code?: string }).code === 'ABORTED') throw e;
        unreadable.push({ id, message: (e as Error).message });
        return;
      }
      for (const n of nodes) if (n.type === 'dir' && n.subtree) referenced.set(n.subtree, true);
    });
    say('load snapshots');
    for (const s of await listSnapshots(repo, { signal })) referenced.set(s.snapshot.tree, true);
    say('done');
    const roots = [...referenced].filter(([, seen]) => !seen).map(([id]) => id).sort();
    say(`\nfound ${roots.length} unreferenced roots`);
    const result: RecoverResult = { trees: referenced.size, roots, unreadable: unreadable.sort((a, b) => (a.id < b.id ? -1 : 1)) };
    if (roots.length === 0) {
      say('no snapshot to write.');
      return result;
    }
    const now = goTimeNow();
    const nodes: TreeNode[] = roots.map((id) => ({ name: id.slice(0, 8), type: 'dir', mode: 0o755, mtime: now, atime: now, ctime: now, uid: 0, gid: 0, content: null, subtree: id }));
    const writer = indexed.blobWriter({ signal });
    const tree = (await writer.saveBlob('tree', encodeTree(sortNodes(nodes)))).id;
    await writer.flush();
    const user = currentUser();
    const snapshot: Snapshot = { time: now, tree, paths: ['/recover'], hostname: options.hostname ?? os.hostname(), tags: ['recovered'], ...user };
    result.tree = tree;
    result.snapshotId = (await repo.saveUnpacked('snapshots', encodeSnapshot(snapshot), { signal })) as SnapshotId;
    say(`saved new snapshot ${result.snapshotId.slice(0, 8)}`);
    return result;
  });
}

function currentUser(): Pick<Snapshot, 'username' | 'uid' | 'gid'> {
  try {
    const u = os.userInfo();
    return { username: u.username, uid: u.uid, gid: u.gid };
  } catch {
    return {};
  }
}
