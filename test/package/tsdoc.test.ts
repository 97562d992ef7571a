// Every export of the package's entry point carries a TSDoc comment, read the way an editor and
// TypeDoc read it: src/index.ts is resolved with the TypeScript compiler, each re-export followed
// to its declaration. Also checked: each property of an exported options interface (`…Options`,
// what a caller fills in), each field of an exported result (`…Result`, `…Report`), and each
// public member of an exported class (a member that implements a documented interface member or
// overrides a documented base member inherits that comment, as in TypeDoc). A comment made of tags
// alone (`@internal`, `@deprecated`) does not count.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ENTRY = path.join(ROOT, 'src/index.ts');

function load(): { checker: ts.TypeChecker; exports: ts.Symbol[] } {
  const config = ts.getParsedCommandLineOfConfigFile(path.join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(ts.flattenDiagnosticMessageText(d.messageText, '\n')) });
  assert.ok(config);
  const program = ts.createProgram({ rootNames: [ENTRY], options: config.options });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(ENTRY)!);
  assert.ok(module, 'src/index.ts is not a module');
  return { checker, exports: checker.getExportsOfModule(module) };
}

const { checker, exports } = load();

/** The declaration an export stands for, through any chain of re-exports. */
function resolve(symbol: ts.Symbol): ts.Symbol {
  return symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
}

function documented(symbol: ts.Symbol): boolean {
  return ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim().length > 0;
}

function where(symbol: ts.Symbol): string {
  const decl = symbol.declarations?.[0];
  if (!decl) return '?';
  const file = decl.getSourceFile();
  return `${path.relative(ROOT, file.fileName)}:${file.getLineAndCharacterOfPosition(decl.getStart()).line + 1}`;
}

/** Public, named members of a class (no constructor: the class comment describes it). */
function classMembers(decl: ts.ClassDeclaration): ts.Symbol[] {
  const out: ts.Symbol[] = [];
  for (const member of decl.members) {
    if (!member.name || ts.isPrivateIdentifier(member.name) || ts.isConstructorDeclaration(member)) continue;
    if (ts.getCombinedModifierFlags(member) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) continue;
    if (member.name.getText().startsWith('_')) continue;
    const symbol = checker.getSymbolAtLocation(member.name);
    if (symbol) out.push(symbol);
  }
  return out;
}

/** Properties and methods written in an interface or an object type alias. */
function typeMembers(decl: ts.Declaration): ts.Symbol[] {
  const members = ts.isInterfaceDeclaration(decl) ? decl.members : ts.isTypeAliasDeclaration(decl) && ts.isTypeLiteralNode(decl.type) ? decl.type.members : undefined;
  const out: ts.Symbol[] = [];
  for (const member of members ?? []) {
    const symbol = member.name && checker.getSymbolAtLocation(member.name);
    if (symbol) out.push(symbol);
  }
  return out;
}

describe('TSDoc on the public API (src/index.ts)', () => {
  it('resolves the exports', () => {
    const values = exports.filter((e) => resolve(e).flags & ts.SymbolFlags.Value);
    assert.ok(values.length > 70 && exports.length > 200, `${values.length} value exports of ${exports.length}`);
    for (const name of ['backup', 'restore', 'checkRepository', 'Repository', 'openBackend', 'BackupOptions', 'Backend']) {
      assert.ok(exports.some((e) => e.name === name), name);
    }
  });

  it('documents every export (values, classes, interfaces and types)', () => {
    const missing = exports.map((e) => ({ name: e.name, target: resolve(e) })).filter(({ target }) => !documented(target));
    assert.deepEqual(missing.map(({ name, target }) => `${name} (${where(target)})`), [], `${missing.length} exports of ${exports.length} without TSDoc`);
  });

  it('documents every property of the options, results and reports', () => {
    const missing: string[] = [];
    for (const e of exports) {
      if (!/(Options|Result|Report)$/.test(e.name)) continue;
      for (const decl of resolve(e).declarations ?? []) {
        for (const member of typeMembers(decl)) if (!documented(member)) missing.push(`${e.name}.${member.name} (${where(member)})`);
      }
    }
    assert.deepEqual(missing, [], `${missing.length} undocumented properties`);
  });

  it('documents every public member of the exported classes', () => {
    const missing: string[] = [];
    for (const e of exports) {
      for (const decl of resolve(e).declarations ?? []) {
        if (!ts.isClassDeclaration(decl)) continue;
        for (const member of classMembers(decl)) if (!documented(member)) missing.push(`${e.name}.${member.name} (${where(member)})`);
      }
    }
    assert.deepEqual(missing, [], `${missing.length} undocumented class members`);
  });

  it('says why BackupOptions.hostname matters in Kubernetes', () => {
    const options = resolve(exports.find((e) => e.name === 'BackupOptions')!);
    const hostname = options.members?.get('hostname' as ts.__String);
    assert.ok(hostname, 'BackupOptions has no hostname');
    const text = ts.displayPartsToString(hostname.getDocumentationComment(checker));
    assert.match(text, /Kubernetes/);
    assert.match(text, /parent/);
  });
});
