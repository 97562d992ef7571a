// The CLI loads only the command it runs (src/cli/commands/lazy.ts): a backup does not carry the
// code of serve, prune and the other commands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { COMMANDS } from '../../src/cli/commands/index.ts';
import { COMMAND_LOADERS, commandLoader } from '../../src/cli/commands/lazy.ts';

test('every command has a loader that yields the registered command, and nothing else has one', async () => {
  assert.deepEqual(Object.keys(COMMAND_LOADERS), Object.keys(COMMANDS));
  for (const [name, load] of Object.entries(COMMAND_LOADERS)) assert.equal(await load(), COMMANDS[name], name);
  assert.equal(commandLoader('toString'), undefined);
  assert.equal(commandLoader('nope'), undefined);
});

test('running one command loads only its own command module', () => {
  const main = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
    const { main } = await import(${JSON.stringify(main)});
    const code = await main(['version']);
    process.stderr.write(JSON.stringify({ code, seen }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, STOWAGE_NODE_REEXEC: '0' } });
  assert.equal(r.status, 0, r.stderr);
  const { code, seen } = JSON.parse(r.stderr) as { code: number; seen: string[] };
  assert.equal(code, 0);
  const commands = seen.filter((u) => u.includes('/dist/cli/commands/')).map((u) => u.replace(/^.*\/commands\//, ''));
  assert.deepEqual([...new Set(commands)].sort(), ['lazy.js', 'version.js']);
  assert.ok(!seen.some((u) => u.includes('/dist/serve/')), 'the serve code is not loaded');
});
