// The command registry: one file per command, each exporting a Command.
import type { Command } from '../context.ts';
import { initCommand } from './init.ts';
import { backupCommand } from './backup.ts';
import { snapshotsCommand } from './snapshots.ts';
import { lsCommand } from './ls.ts';
import { restoreCommand } from './restore.ts';
import { dumpCommand } from './dump.ts';
import { catCommand } from './cat.ts';
import { statsCommand } from './stats.ts';
import { checkCommand } from './check.ts';
import { repairCommand } from './repair.ts';
import { keyCommand } from './key.ts';
import { unlockCommand } from './unlock.ts';
import { pruneCommand } from './prune.ts';
import { forgetCommand } from './forget.ts';
import { copyCommand } from './copy.ts';
import { tagCommand } from './tag.ts';
import { rewriteCommand } from './rewrite.ts';
import { recoverCommand } from './recover.ts';
import { diffCommand } from './diff.ts';
import { findCommand } from './find.ts';
import { versionCommand } from './version.ts';
import { cacheCommand } from './cache.ts';
import { retentionCommand } from './retention.ts';
import { serveCommand } from './serve.ts';
import { listCommand } from './list.ts';

export const COMMANDS: Record<string, Command> = {
  init: initCommand,
  cache: cacheCommand,
  list: listCommand,
  copy: copyCommand,
  tag: tagCommand,
  rewrite: rewriteCommand,
  recover: recoverCommand,
  diff: diffCommand,
  find: findCommand,
  backup: backupCommand,
  snapshots: snapshotsCommand,
  ls: lsCommand,
  restore: restoreCommand,
  dump: dumpCommand,
  cat: catCommand,
  stats: statsCommand,
  check: checkCommand,
  repair: repairCommand,
  key: keyCommand,
  unlock: unlockCommand,
  prune: pruneCommand,
  forget: forgetCommand,
  retention: retentionCommand,
  serve: serveCommand,
  version: versionCommand,
};
