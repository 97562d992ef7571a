// The check's public types: its options, progress, problems and report.
import type { CallOptions } from '../../../backend/backend.ts';
import type { GoTime } from '../../../repository/gotime.ts';

/** Stable codes for every kind of problem check reports. */
export type CheckProblemCode =
  // errors
  | 'INDEX_UNREADABLE' // an index file cannot be loaded, decrypted or parsed
  | 'INDEX_CONFLICT' // a pack is listed with different blobs in several index files
  | 'PACK_MISSING' // a pack the index names does not exist
  | 'PACK_SIZE_MISMATCH' // a pack's file size differs from what the index implies (truncated)
  | 'SNAPSHOT_UNREADABLE' // a snapshot file cannot be loaded or decoded
  | 'TREE_MISSING' // a tree a snapshot reaches is in no index
  | 'TREE_UNREADABLE' // a tree is indexed but cannot be loaded or decoded
  | 'TREE_INVALID' // a tree's nodes break a rule (names, order, content lists, subtrees, types)
  | 'BLOB_MISSING' // a data blob a file refers to is in no index
  | 'PACK_UNREADABLE' // read-data: the pack could not be downloaded
  | 'PACK_DAMAGED' // read-data: pack hash, header or layout does not match the index
  | 'BLOB_DAMAGED' // read-data: a blob fails its MAC, decompression or hash
  | 'PACK_READ_RETRIED' // read-data: the pack verified only on a second read
  // hints
  | 'PACK_UNREFERENCED' // a pack is in no index (prune or repair index takes care of it)
  | 'PACK_DUPLICATE' // a pack is listed in several index files (repair index)
  | 'PACK_MIXED'; // a pack holds tree and data blobs (prune)

/** One error or hint of a {@link CheckReport}: a stable `code`, a message, and what it concerns. */
export interface CheckProblem {
  code: CheckProblemCode;
  message: string;
  /** The repository file: "index/<id>", "data/ab/<id>", "snapshots/<id>". */
  file?: string;
  pack?: string;
  blob?: string;
  /** The tree the problem was found in. */
  tree?: string;
  /** Where in the snapshot (first snapshot that reaches it), e.g. "/home/user/file". */
  path?: string;
  /**
   * Snapshots that lose data through this problem (sorted); [] when none of the trees that could
   * be read refers to what is lost (a tree that cannot be read hides what lies below it).
   */
  snapshots?: readonly string[];
  /** Backed-up files and folders that lose data through this problem (at most 100). */
  files?: readonly string[];
  /** How many more affected files there are beyond `files`. */
  moreFiles?: number;
  /** Index files involved (duplicates and conflicts). */
  indexFiles?: readonly string[];
}

/** The result of {@link checkRepository}: `ok` is false when an error was found. */
export interface CheckReport {
  /** 'ok' when no error was found (hints do not count), as Stash's `integrity`. */
  integrity: 'ok' | 'failed';
  /** True when no error was found (hints do not count). */
  ok: boolean;
  /** Problems that make data unreadable or the repository inconsistent. */
  errors: CheckProblem[];
  /** Things worth tidying that lose no data (e.g. unreferenced packs). */
  hints: CheckProblem[];
  /** Snapshots at least one error affects, sorted. */
  damagedSnapshots: string[];
  /** Packs `restic repair packs` would salvage (restic's broken_packs). */
  brokenPacks: string[];
  /** Whether `repair index` would fix something found. */
  suggestRepairIndex: boolean;
  /** Whether `prune` would fix something found. */
  suggestPrune: boolean;
  /** What data was read: nothing, every pack, or a subset. */
  readData: 'none' | 'all' | 'subset';
  /** Index files checked. */
  indexFiles: number;
  /** Snapshots checked. */
  snapshots: number;
  /** Trees checked. */
  trees: number;
  /** Packs in the repository. */
  packs: number;
  /** Packs read and verified (read-data). */
  packsRead: number;
  /** Blobs read and verified (read-data). */
  blobsRead: number;
  /** Bytes read (read-data). */
  bytesRead: number;
  /** When the check started (local zone, nanoseconds); prints and serialises as RFC 3339. */
  startTime: GoTime;
  /** When the check ended (as `startTime`). */
  endTime: GoTime;
}

/** restic's --read-data-subset: group n of t (by the pack ID's first byte), a percentage, or a size. */
export type ReadDataSubset =
  | { kind: 'group'; n: number; t: number }
  | { kind: 'percent'; percent: number }
  | { kind: 'size'; bytes: number };

/** The phase a check is in, as {@link CheckProgress} reports it. */
export type CheckPhase = 'index' | 'packs' | 'trees' | 'read-data' | 'affected';

/** Progress of a check, reported through `onProgress`. */
export interface CheckProgress {
  phase: CheckPhase;
  done: number;
  /** 0 while unknown; for 'trees' it grows as trees are discovered. */
  total: number;
  /** read-data: bytes read so far. */
  bytes?: number;
}

/** Options of {@link checkRepository}. */
export interface CheckOptions extends CallOptions {
  /** Read every pack. */
  readData?: boolean;
  /** Read a subset of the packs ("2/5", "10%", "500M" or the parsed form). */
  readDataSubset?: string | ReadDataSubset;
  /** Check only these snapshots (full IDs); read-data then reads only the packs they use. */
  snapshotIds?: readonly string[];
  /**
   * The memory budget of read-data in bytes (at least 64 MiB): sizes the decode workers and the
   * packs read at once. Default: the container's cgroup limit, else one worker per core but one
   * (the main thread hashes the packs) and up to the backend's connections.
   */
  memoryLimit?: number;
  /** Random numbers in [0, 1) for the percentage and size subsets (default Math.random). */
  random?: () => number;
  /** Human-readable progress lines, as restic prints them. */
  onMessage?: (m: string) => void;
  /** Called as each phase advances. */
  onProgress?: (p: CheckProgress) => void;
}
