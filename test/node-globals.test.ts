/**
 * Node puts `Buffer` and `performance` on the global object as lazy accessors. Optimised code
 * cannot fold a global accessor into a constant, so each read of either name as a global is an
 * inline-cache call (V8's LoadGlobalIC) and a call of Node's getter. Under the broadcast load
 * those showed in a shard's profile on every pub (`perf`: about 0.5% of a two-shard server's
 * CPU, the getters included), so the server's modules import both from their `node:` modules,
 * whose bindings compiled code reads directly. The browser client (src/client) has neither.
 */
import assert from 'node:assert/strict';
import { join, relative, sep } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ACCESSORS = new Set(['Buffer', 'performance']);

/** Every use of an accessor global in the server's modules, as `file:line name`. */
function globalAccessorUses(): string[] {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  assert.ok(parsed, 'tsconfig.json parses');
  const program = ts.createProgram(parsed.fileNames, parsed.options);
  const checker = program.getTypeChecker();
  const uses: string[] = [];
  for (const file of program.getSourceFiles()) {
    const path = relative(ROOT, file.fileName).split(sep).join('/');
    if (file.isDeclarationFile || path.startsWith('node_modules/') || path.startsWith('src/client/')) continue;
    const visit = (node: ts.Node): void => {
      if (ts.isIdentifier(node) && ACCESSORS.has(node.text) && !isTypePosition(node)) {
        // An import is an alias and a local binding is declared in this project: only the global resolves into @types/node.
        const symbol = checker.getSymbolAtLocation(node);
        const declaredIn = symbol?.declarations?.[0]?.getSourceFile().fileName ?? '';
        if (symbol !== undefined && (symbol.flags & ts.SymbolFlags.Alias) === 0 && declaredIn.includes('/node_modules/')) {
          uses.push(`${path}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1} ${node.text}`);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
  }
  return uses;
}

/** A type annotation (`: Buffer`) compiles to nothing: only reads of the value cost. */
function isTypePosition(node: ts.Identifier): boolean {
  const parent = node.parent;
  return ts.isTypeReferenceNode(parent) || ts.isExpressionWithTypeArguments(parent) || ts.isTypeQueryNode(parent) || ts.isQualifiedName(parent);
}

describe("the server's modules and Node's accessor globals", () => {
  test('Buffer and performance are imported from node:buffer and node:perf_hooks, never read as globals', () => {
    assert.deepEqual(globalAccessorUses(), []);
  });
});
