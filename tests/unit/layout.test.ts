// The house: engine/ in rooms, no import cycles (type-only imports included), small
// files, and the contract's data written once (engine/events.ts, types only).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.join(__dirname, '..', '..', '..');

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return sources(rel);
    return /\.(ts|svelte)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

/** Every relative module a file names: imports and re-exports (type-only too), require(), import(). */
export function importsOf(text: string): string[] {
  const specs = text.matchAll(
    /(?:\bfrom\s*|\brequire\(\s*|\bimport\(\s*|^import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm,
  );
  return [...specs].map((m) => m[2]);
}

function resolve(from: string, spec: string): string | null {
  const base = path.join(path.dirname(from), spec.replace(/\.js$/, ''));
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base]) {
    if (fs.existsSync(path.join(ROOT, candidate)) && /\.(ts|svelte)$/.test(candidate)) {
      return candidate;
    }
  }
  return null;
}

/** The cycles of the graph, each as the files along it (Tarjan's strongly connected parts). */
export function cyclesOf(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const part: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      part.push(w);
    } while (w !== v);
    if (part.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(part.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

test('engine/ keeps at most eight files at its top; the rest live in rooms', () => {
  const top = fs.readdirSync(path.join(ROOT, 'engine')).filter((f) => f.endsWith('.ts'));
  assert.ok(top.length <= 8, `engine/*.ts: ${top.join(' ')}`);
});

test('no source file is over 500 lines', () => {
  const long = ['engine', 'main', 'preload', 'renderer', 'scripts', 'tests']
    .flatMap(sources)
    .map((f) => ({ f, lines: fs.readFileSync(path.join(ROOT, f), 'utf8').split('\n').length }))
    .filter(({ lines }) => lines > 500)
    .map(({ f, lines }) => `${f}: ${lines}`);
  assert.deepEqual(long, []);
});

test('no import cycles in engine/, main/, preload/ or renderer/, type-only imports included', () => {
  const graph = new Map<string, string[]>();
  for (const f of ['engine', 'main', 'preload', 'renderer'].flatMap(sources)) {
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    const targets = importsOf(text).map((s) => resolve(f, s));
    graph.set(
      f,
      targets.filter((t): t is string => t !== null),
    );
  }
  assert.ok(graph.size > 100, `${graph.size} files read`);
  assert.deepEqual(cyclesOf(graph), []);
});

test('the cycle finder finds a type-only cycle and a longer one', () => {
  const a = "import type { B } from './b';\nexport type A = B;";
  assert.deepEqual(importsOf(a), ['./b']);
  assert.deepEqual(
    importsOf("export { x } from '../x';\nconst y = require('./y');\nawait import('./z');"),
    ['../x', './y', './z'],
  );
  const graph = new Map([
    ['a', ['b']],
    ['b', ['a']],
    ['c', ['d']],
    ['d', ['e']],
    ['e', ['c']],
    ['f', ['a']],
  ]);
  assert.deepEqual(cyclesOf(graph), [
    ['a', 'b'],
    ['c', 'd', 'e'],
  ]);
});

test("the contract's data is written once: engine/events.ts has no imports and declares only types", () => {
  const text = fs.readFileSync(path.join(ROOT, 'engine', 'events.ts'), 'utf8');
  assert.doesNotMatch(text, /^\s*import\b/m);
  const declarations = [...text.matchAll(/^export\s+(\w+)/gm)].map((m) => m[1]);
  assert.ok(declarations.length > 10, declarations.join(' '));
  assert.deepEqual(
    declarations.filter((d) => d !== 'interface' && d !== 'type'),
    [],
  );
  // The preload names the engine's types; it declares none of the job's events again.
  const preload = fs.readFileSync(path.join(ROOT, 'preload', 'events.ts'), 'utf8');
  assert.doesNotMatch(
    preload,
    /export interface (JobStarted|JobProgress|JobDone|JobOptionsInfo)\b/,
  );
  assert.match(preload, /^import type \{[^}]*\} from '\.\.\/engine\/events';/m);
});
