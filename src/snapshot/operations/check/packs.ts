// Phase 2: every pack the index names exists with the size the index implies; packs in no
// index are hints.
import type { PackId } from '../../../repository/id.ts';
import { expectedPackSize, type PackedBlob } from '../../../repository/pack.ts';
import { blobKey, packFile, type CheckContext, type Damage } from './findings.ts';

/**
 * Lists the stored packs and compares them with the index: missing and short packs are marked in
 * `damage`, so that the later phases know which blobs cannot be read. Returns the number of
 * indexed packs.
 */
export async function checkPacks(ctx: CheckContext, packs: ReadonlyMap<PackId, PackedBlob[]>, damage: Damage): Promise<number> {
  const { findings } = ctx;
  ctx.say('check all packs');
  const stored = new Map<string, number>();
  for await (const f of ctx.repo.backend.list('data', { signal: ctx.options.signal })) stored.set(f.name, f.size);
  for (const [packId, blobs] of packs) {
    const size = stored.get(packId);
    const expected = expectedPackSize(blobs);
    if (size === undefined) {
      const p = findings.error({ code: 'PACK_MISSING', message: `pack ${packId}: does not exist`, pack: packId, file: packFile(packId) });
      damage.missingPacks.add(packId);
      findings.packBlobs.set(p, blobs.map((b) => blobKey(b.type, b.id)));
    } else if (size !== expected) {
      const p = findings.error({
        code: 'PACK_SIZE_MISMATCH', message: `pack ${packId}: unexpected file size: got ${size}, expected ${expected}`, pack: packId, file: packFile(packId),
      });
      findings.broken.add(packId);
      damage.packSizes.set(packId, size);
      if (size < expected) {
        damage.shortPacks.set(packId, size);
        findings.packBlobs.set(p, blobs.filter((b) => b.offset + b.length > size).map((b) => blobKey(b.type, b.id)));
      }
    }
  }
  let unreferenced = 0;
  for (const id of [...stored.keys()].sort()) {
    if (packs.has(id as PackId)) continue;
    unreferenced++;
    findings.hint({ code: 'PACK_UNREFERENCED', message: `pack ${id}: not referenced in any index`, pack: id, file: packFile(id) });
  }
  if (unreferenced > 0) findings.suggestPrune = true;
  ctx.progress({ phase: 'packs', done: 1, total: 1 });
  return packs.size;
}
