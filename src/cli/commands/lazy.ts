// What the CLI loads for one command: only that command's module (and what it imports), so a
// backup does not carry the code of serve, prune and the rest (about 14 MiB of the process).
// The registry of every command (`index.ts`) is loaded for the general help only.
import type { Command } from '../context.ts';

/** Each command's loader, by name, in the order of `COMMANDS`. */
export const COMMAND_LOADERS: Readonly<Record<string, () => Promise<Command>>> = {
  init: async () => (await import('./init.ts')).initCommand,
  cache: async () => (await import('./cache.ts')).cacheCommand,
  list: async () => (await import('./list.ts')).listCommand,
  copy: async () => (await import('./copy.ts')).copyCommand,
  tag: async () => (await import('./tag.ts')).tagCommand,
  rewrite: async () => (await import('./rewrite.ts')).rewriteCommand,
  recover: async () => (await import('./recover.ts')).recoverCommand,
  diff: async () => (await import('./diff.ts')).diffCommand,
  find: async () => (await import('./find.ts')).findCommand,
  backup: async () => (await import('./backup.ts')).backupCommand,
  snapshots: async () => (await import('./snapshots.ts')).snapshotsCommand,
  ls: async () => (await import('./ls.ts')).lsCommand,
  restore: async () => (await import('./restore.ts')).restoreCommand,
  dump: async () => (await import('./dump.ts')).dumpCommand,
  cat: async () => (await import('./cat.ts')).catCommand,
  stats: async () => (await import('./stats.ts')).statsCommand,
  check: async () => (await import('./check.ts')).checkCommand,
  repair: async () => (await import('./repair.ts')).repairCommand,
  key: async () => (await import('./key.ts')).keyCommand,
  unlock: async () => (await import('./unlock.ts')).unlockCommand,
  prune: async () => (await import('./prune.ts')).pruneCommand,
  forget: async () => (await import('./forget.ts')).forgetCommand,
  retention: async () => (await import('./retention.ts')).retentionCommand,
  serve: async () => (await import('./serve.ts')).serveCommand,
  version: async () => (await import('./version.ts')).versionCommand,
};

/** The command's loader, or undefined for a name that is no command (`toString` included). */
export function commandLoader(name: string): (() => Promise<Command>) | undefined {
  return Object.hasOwn(COMMAND_LOADERS, name) ? COMMAND_LOADERS[name] : undefined;
}
