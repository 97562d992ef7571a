// The layers of src/, as docs/ARCHITECTURE.md writes them down: each module imports only from its
// own layer and the layers below. TypeScript accepts imports that point up or sideways (and the
// cycles they make), which Go's compiler refuses restic; this test refuses them here. Type-only
// imports count too: a type that must be imported from above belongs lower down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

/** Layers, bottom first; a module may import from its own layer and any layer listed before it. */
const LAYERS: Array<{ name: string; match: (file: string) => boolean }> = [
  { name: 'base', match: (f) => ['errors.ts', 'logger.ts', 'redact.ts', 'runtime.ts', 'version.ts', 'memory-budget.ts'].includes(f) },
  { name: 'backend', match: (f) => f.startsWith('backend/') },
  { name: 'repository', match: (f) => f.startsWith('repository/') },
  { name: 'snapshot/model', match: (f) => f.startsWith('snapshot/model/') },
  { name: 'snapshot/engine', match: (f) => f.startsWith('snapshot/engine/') },
  { name: 'snapshot/operations', match: (f) => f.startsWith('snapshot/operations/') },
  { name: 'operator', match: (f) => f.startsWith('operator/') },
  { name: 'serve', match: (f) => f.startsWith('serve/') },
  { name: 'cli', match: (f) => f.startsWith('cli/') },
  { name: 'index', match: (f) => f === 'index.ts' },
];

/** Layers a layer may not import although they are below it (the model is pure: no storage). */
const FORBIDDEN: Record<string, string[]> = {
  'snapshot/model': ['backend'],
  index: ['cli'],
};

/**
 * Imports between two operations: each is one command, and what commands share belongs in
 * engine/ or repository/. An operation is a file of operations/ or a folder there (its modules,
 * the phases of one command, import each other). The exceptions, each a command that runs
 * another as part of itself.
 */
const OPERATION_CALLS_OPERATION = new Set(['snapshot/operations/forget.ts -> snapshot/operations/prune.ts']);

/** The operation a file of operations/ belongs to: the file, or the folder it is in. */
function operationOf(file: string): string {
  return file.replace(/^snapshot\/operations\/([^/]+?)(\.ts$|\/.*$)/, '$1');
}

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [path.relative(SRC, p).split(path.sep).join('/')] : [];
  });
}

function layerOf(file: string): number {
  const i = LAYERS.findIndex((l) => l.match(file));
  if (i < 0) throw new Error(`${file} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)`);
  return i;
}

/** Relative module specifiers of static imports, re-exports, dynamic imports and `new URL` workers. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(SRC, file), 'utf8');
  const specs = new Set<string>();
  for (const m of text.matchAll(/(?:\bfrom|\bimport\s*\(|^\s*import)\s*['"](\.{1,2}\/[^'"]+)['"]/gm)) specs.add(m[1]!);
  for (const m of text.matchAll(/new URL\([^)]*?['"](\.{1,2}\/[^'"]+)['"]/g)) specs.add(m[1]!);
  return [...specs].map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(file), s)).replace(/\.js$/, '.ts'));
}

test('every source file belongs to a layer', () => {
  for (const f of sourceFiles()) assert.doesNotThrow(() => layerOf(f), f);
});

test('no import points up a layer, into a forbidden layer, or sideways between operations', () => {
  const files = new Set(sourceFiles());
  const bad: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    for (const target of importsOf(file)) {
      assert.ok(files.has(target), `${file} imports ${target}, which does not exist`);
      const to = layerOf(target);
      const edge = `${file} -> ${target}`;
      if (to > from) bad.push(`${edge} (${LAYERS[from]!.name} may not import ${LAYERS[to]!.name})`);
      else if (FORBIDDEN[LAYERS[from]!.name]?.includes(LAYERS[to]!.name)) bad.push(`${edge} (${LAYERS[from]!.name} may not import ${LAYERS[to]!.name})`);
      else if (from === to && LAYERS[from]!.name === 'snapshot/operations' && operationOf(file) !== operationOf(target) && !OPERATION_CALLS_OPERATION.has(edge)) {
        bad.push(`${edge} (operations share code through engine/ or repository/)`);
      }
    }
  }
  assert.deepEqual(bad, []);
});

test('the layer test sees imports of every form (a check of the check)', () => {
  // The worker files are loaded by URL, not imported: the reader must still see them.
  assert.ok(importsOf('snapshot/engine/file-pool.ts').includes('snapshot/engine/file-worker.ts'));
  assert.ok(importsOf('snapshot/engine/decode-pool.ts').includes('snapshot/engine/decode-worker.ts'));
  assert.ok(importsOf('index.ts').includes('errors.ts'));
  assert.ok(importsOf('snapshot/operations/forget.ts').includes('snapshot/operations/prune.ts'));
  // A folder of operations/ is one operation; its neighbour is another.
  assert.equal(operationOf('snapshot/operations/check/trees.ts'), operationOf('snapshot/operations/check/index.ts'));
  assert.notEqual(operationOf('snapshot/operations/check/index.ts'), operationOf('snapshot/operations/copy.ts'));
  assert.equal(operationOf('snapshot/operations/copy.ts'), 'copy');
});
