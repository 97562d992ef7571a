// Index files (index/<id>): which blobs live in which pack, at which offset.
// Plaintext JSON as restic writes it (json.Encoder: compact with a trailing newline).
import { IntegrityError, shownValue } from '../errors.ts';
import { CRYPTO_OVERHEAD } from './crypto.ts';
import { isId, type BlobId, type IndexId, type PackId } from './id.ts';
import { JsonBytes } from './json-bytes.ts';
import type { PackedBlob } from './pack.ts';

/** One pack as an index file lists it: its ID and the blobs it holds. */
export interface IndexPack {
  readonly id: PackId;
  readonly blobs: readonly PackedBlob[];
}

export interface IndexFileContent {
  readonly packs: IndexPack[];
  readonly supersedes: IndexId[];
}

export function encodeIndexFile(packs: readonly IndexPack[]): Uint8Array {
  // Written pack by pack into one buffer (JsonBytes): a file of 50 000 blobs is ~7.5 MB of JSON.
  let blobs = 0;
  for (const p of packs) blobs += p.blobs.length;
  const out = new JsonBytes(16 + packs.length * 100 + blobs * 160);
  out.write('{"packs":[');
  packs.forEach((p, i) => {
    const list = p.blobs.map((b) =>
      `{"id":"${b.id}","type":"${b.type}","offset":${b.offset},"length":${b.length}` +
      (b.uncompressedLength ? `,"uncompressed_length":${b.uncompressedLength}` : '') + '}');
    out.write(`${i > 0 ? ',' : ''}{"id":"${p.id}","blobs":[${list.join(',')}]}`);
  });
  out.write(']}\n');
  return out.bytes();
}

const U32 = 0xffffffff;

function u32(v: unknown, what: string, file: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > U32) {
    throw new IntegrityError(`index field ${what} is not a valid uint32: ${shownValue(v, 40)}`, { file });
  }
  return v;
}

/** Parses and validates an index file; also reads the pre-0.2 array format (a bare list of packs). */
export function decodeIndexFile(json: Uint8Array, file: string): IndexFileContent {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'));
  } catch (e) {
    throw new IntegrityError('index is not valid JSON', { file }, { cause: e });
  }
  let packsJson: unknown;
  let supersedes: IndexId[] = [];
  if (Array.isArray(doc)) packsJson = doc;
  else if (doc && typeof doc === 'object') {
    const o = doc as Record<string, unknown>;
    packsJson = o.packs ?? [];
    if (Array.isArray(o.supersedes)) supersedes = o.supersedes.filter(isId) as IndexId[];
  } else throw new IntegrityError('index is not a JSON object', { file });
  if (!Array.isArray(packsJson)) throw new IntegrityError('index "packs" is not an array', { file });

  const packs: IndexPack[] = [];
  for (const p of packsJson as unknown[]) {
    if (!p || typeof p !== 'object') throw new IntegrityError('index pack entry is not an object', { file });
    const { id, blobs } = p as Record<string, unknown>;
    if (!isId(id)) throw new IntegrityError(`index has an invalid pack ID ${shownValue(id)}`, { file });
    if (!Array.isArray(blobs)) throw new IntegrityError(`index pack ${id} has no blob list`, { file });
    const out: PackedBlob[] = [];
    for (const b of blobs as unknown[]) {
      if (!b || typeof b !== 'object') throw new IntegrityError(`index pack ${id} has a malformed blob`, { file });
      const r = b as Record<string, unknown>;
      if (!isId(r.id)) throw new IntegrityError(`index pack ${id} has an invalid blob ID`, { file });
      if (r.type !== 'data' && r.type !== 'tree') {
        throw new IntegrityError(`index blob ${r.id} has invalid type ${shownValue(r.type, 20)}`, { file, blob: r.id });
      }
      const length = u32(r.length, 'length', file);
      if (length < CRYPTO_OVERHEAD) throw new IntegrityError(`index blob has length ${length}`, { file, blob: r.id });
      out.push({
        type: r.type,
        id: r.id as BlobId,
        offset: u32(r.offset, 'offset', file),
        length,
        uncompressedLength: r.uncompressed_length == null ? 0 : u32(r.uncompressed_length, 'uncompressed_length', file),
      });
    }
    packs.push({ id: id as PackId, blobs: out });
  }
  return { packs, supersedes };
}
