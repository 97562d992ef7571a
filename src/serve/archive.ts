// What serve puts in a tar or zip of a folder: the folder's safe entries (the view hides names
// that cannot be a path component), depth first in name order, under `prefix` ("name/"), with
// the folder itself first in a tar. The archive writers are the engine's (restic's dump layout).
import type { BlobId } from '../repository/id.ts';
import { goTimeFromNs } from '../repository/gotime.ts';
import type { ArchivePath } from '../snapshot/engine/archive/contents.ts';
import { GO_MODE_DIR } from '../snapshot/model/mode.ts';
import { nodeNameToBytes, type TreeNode } from '../snapshot/model/node.ts';
import type { RepositoryView } from './view.ts';

/** The folder's own entry: mode 0755, owned by root, time 0 (it stands for no stored node). */
function rootNode(): TreeNode {
  const epoch = goTimeFromNs(0n, 0);
  return { name: '', type: 'dir', mode: (GO_MODE_DIR | 0o755) >>> 0, mtime: epoch, atime: epoch, ctime: epoch, uid: 0, gid: 0, content: null };
}

/**
 * The entries of the folder `tree`, each with its archive path (`prefix` + names; folders end
 * with '/', and come before what they hold); with `withRoot`, the prefix itself first.
 */
export async function* archiveEntries(view: RepositoryView, tree: BlobId, prefix: Buffer, signal: AbortSignal, withRoot = false): AsyncGenerator<ArchivePath> {
  if (withRoot && prefix.length > 0) yield { path: prefix, node: rootNode() };
  const folder = await view.folder(tree, { signal });
  for (const node of folder.nodes) {
    const name = Buffer.concat([prefix, nodeNameToBytes(node.name)]);
    if (node.type === 'dir') {
      const path = Buffer.concat([name, Buffer.from('/')]);
      yield { path, node };
      if (node.subtree) yield* archiveEntries(view, node.subtree, path, signal);
    } else yield { path: name, node };
  }
}
