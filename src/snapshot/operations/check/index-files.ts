// Phase 1: every index file loads (each one on its own, so every broken file is named); packs
// listed in several index files, with the same or different blobs, and packs mixing tree and
// data blobs are found here too.
import { IndexedRepository, sha256hex } from '../../../repository/repository.ts';
import type { PackId } from '../../../repository/id.ts';
import type { PackedBlob } from '../../../repository/pack.ts';
import type { IndexPack } from '../../../repository/index-file.ts';
import { loadIndexFiles } from '../../../repository/index-loader.ts';
import { Damage, packFile, type CheckContext } from './findings.ts';

/** What the index phase gives the later ones. */
export interface LoadedIndex {
  /** The repository with the index that loaded. */
  indexed: IndexedRepository;
  /** Where blobs cannot be read from: nothing yet, filled in by the later phases. */
  damage: Damage;
  /** Every indexed pack with its blobs (sorted by offset), built once. */
  packs: Map<PackId, PackedBlob[]>;
  /** Index files checked, broken ones included. */
  indexFiles: number;
  /** False when an index file is broken: restic stops there, and so does the check. */
  ok: boolean;
}

/** Loads and checks the index files. */
export async function checkIndexFiles(ctx: CheckContext): Promise<LoadedIndex> {
  const { repo, options: o, findings } = ctx;
  ctx.say('load indexes');
  const loaded = await loadIndexFiles(repo, { signal: o.signal, onProgress: (done, total) => ctx.progress({ phase: 'index', done, total }) });
  for (const f of loaded.failures) {
    findings.error({ code: 'INDEX_UNREADABLE', message: `error loading index ${f.id}: ${f.error.message}`, file: `index/${f.id}` });
  }
  const indexFiles = new Map<string, PackId[]>();
  for (const [id, packs] of loaded.files) indexFiles.set(id, packs.map((p) => p.id));
  const packs = loaded.index.packs();
  checkListings(ctx, loaded.files);
  for (const [pack, blobs] of packs) {
    if (blobs.some((b) => b.type === 'tree') && blobs.some((b) => b.type === 'data')) {
      findings.hint({ code: 'PACK_MIXED', message: `pack ${pack} contains a mix of tree and data blobs`, pack, file: packFile(pack) });
      findings.suggestPrune = true;
    }
  }
  // With a cache (the CLI's temporary one, as restic's check uses), packs that hold trees are
  // fetched whole, once each, instead of one ranged read per tree.
  const cache = repo.cache;
  if (cache) await cache.setTreePacks([...packs].filter(([, blobs]) => blobs.some((b) => b.type === 'tree')).map(([pack]) => pack));
  const ok = loaded.failures.length === 0;
  if (!ok) {
    findings.suggestRepairIndex = true;
    ctx.say('the repository index is damaged and must be repaired ("repair index")');
  }
  return {
    indexed: new IndexedRepository(repo, loaded.index, indexFiles, { refreshOnMiss: false }),
    damage: new Damage(loaded.index),
    packs,
    indexFiles: loaded.files.size + loaded.failures.length,
    ok,
  };
}

/** Packs listed in several index files: a conflict when the blob lists differ, else a duplicate. */
function checkListings(ctx: CheckContext, files: ReadonlyMap<string, readonly IndexPack[]>): void {
  const { findings } = ctx;
  const listedIn = new Map<string, Map<string, string>>(); // pack → index file → hash of its blob list
  for (const [id, packs] of files) {
    for (const p of packs) {
      let m = listedIn.get(p.id);
      if (!m) listedIn.set(p.id, (m = new Map()));
      m.set(id, packBlobsHash(p.blobs));
    }
  }
  for (const [pack, m] of listedIn) {
    if (m.size < 2) continue;
    const indexFiles = [...m.keys()].sort();
    if (new Set(m.values()).size > 1) {
      findings.error({ code: 'INDEX_CONFLICT', message: `pack ${pack} has different data in indexes: ${indexFiles.join(', ')}`, pack, file: packFile(pack), indexFiles });
      findings.broken.add(pack);
    } else {
      findings.hint({ code: 'PACK_DUPLICATE', message: `pack ${pack} contained in several indexes: ${indexFiles.join(', ')}`, pack, file: packFile(pack), indexFiles });
      findings.suggestRepairIndex = true;
    }
  }
}

/** Identifies a pack's blob list, to tell a duplicate listing from a conflicting one. */
function packBlobsHash(blobs: readonly PackedBlob[]): string {
  const lines = blobs.map((b) => `${b.type}:${b.id}:${b.offset}:${b.length}:${b.uncompressedLength}`).sort();
  return sha256hex(Buffer.from(lines.join('\n')));
}
