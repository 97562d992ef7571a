// What the phases of a check share: where they report (problems, hints, messages, progress),
// where blobs cannot be read from, and which checked trees refer to unreadable blobs.
import { packFile } from '../../../repository/pack.ts';
import type { Repository } from '../../../repository/repository.ts';
import type { BlobId, BlobType } from '../../../repository/id.ts';
import type { BlobLocation, MasterIndex } from '../../../repository/master-index.ts';
import type { PackedBlob } from '../../../repository/pack.ts';
import type { CheckOptions, CheckProblem, CheckProgress } from './types.ts';

/** At most this many affected files are listed per problem. */
export const MAX_LISTED_FILES = 100;
/** The null ID, which a tree may hold where a blob is missing (treeProblems reports it). */
export const NULL_ID = '0'.repeat(64);

/** A blob as a key of the maps below: "type:id". */
export const blobKey = (type: BlobType, id: string): string => `${type}:${id}`;
/** A pack's repository file, "data/ab/<id>". */
export { packFile };
/** A name's path below a folder's path in a snapshot. */
export const joinPath = (dir: string, name: string): string => (dir === '/' ? `/${name}` : `${dir}/${name}`);

/**
 * Problems and hints as the phases find them, with what the report concludes from them: the
 * packs `repair packs` would salvage, and which of prune and `repair index` would help.
 */
export class Findings {
  readonly errors: CheckProblem[] = [];
  readonly hints: CheckProblem[] = [];
  /** Packs `restic repair packs` would salvage. */
  readonly broken = new Set<string>();
  /** Pack problems and the blobs (type:id) they make unreadable, to find who loses data. */
  readonly packBlobs = new Map<CheckProblem, string[]>();
  suggestRepairIndex = false;
  suggestPrune = false;

  error(p: CheckProblem): CheckProblem {
    this.errors.push(p);
    return p;
  }

  hint(p: CheckProblem): void {
    this.hints.push(p);
  }
}

/** What every phase is given: the repository, the caller's options, and where to report. */
export interface CheckContext {
  readonly repo: Repository;
  readonly options: CheckOptions;
  readonly say: (m: string) => void;
  readonly progress: (p: CheckProgress) => void;
  readonly findings: Findings;
}

/** Bad places found so far: missing packs, the part of a short pack past its end, blobs that failed. */
export class Damage {
  readonly #index: MasterIndex;
  readonly missingPacks = new Set<string>();
  /** Pack → actual size, for packs shorter than the index says. */
  readonly shortPacks = new Map<string, number>();
  /** Pack → stored size, for packs whose size differs from what the index implies (read-data reads what is stored). */
  readonly packSizes = new Map<string, number>();
  readonly #badLocations = new Set<string>();

  constructor(index: MasterIndex) {
    this.#index = index;
  }

  markBlob(packId: string, b: PackedBlob): void {
    this.#badLocations.add(locationKey(packId, b));
  }

  isBad(loc: BlobLocation): boolean {
    if (this.missingPacks.has(loc.packId)) return true;
    const size = this.shortPacks.get(loc.packId);
    if (size !== undefined && loc.offset + loc.length > size) return true;
    return this.#badLocations.has(locationKey(loc.packId, loc));
  }

  /** Indexed, but no stored copy can be read. */
  unavailable(type: BlobType, id: string): boolean {
    if (this.missingPacks.size === 0 && this.shortPacks.size === 0 && this.#badLocations.size === 0) return false;
    const locs = this.#index.lookup(id as BlobId, type);
    return locs.length > 0 && locs.every((l) => this.isBad(l));
  }
}

function locationKey(packId: string, b: { type: BlobType; id: string; offset: number; length: number }): string {
  return `${packId}:${b.type}:${b.id}:${b.offset}:${b.length}`;
}

/** An unreadable blob's readers: the checked trees that refer to it and the paths (at most 100). */
export interface BlobReferences {
  trees: Set<string>;
  files: string[];
  count: number;
}

/** Unreadable blobs (type:id) that checked trees refer to: the trees and the paths. */
export class References {
  readonly #refs = new Map<string, BlobReferences>();

  has(key: string): boolean {
    return this.#refs.has(key);
  }

  get(key: string): BlobReferences | undefined {
    return this.#refs.get(key);
  }

  note(key: string, tree: string, path: string): void {
    let r = this.#refs.get(key);
    if (!r) this.#refs.set(key, (r = { trees: new Set(), files: [], count: 0 }));
    r.trees.add(tree);
    // A file that holds the blob several times is one affected file.
    if (r.files[r.files.length - 1] === path) return;
    r.count++;
    if (r.files.length < MAX_LISTED_FILES) r.files.push(path);
  }
}
