// Every string the renderer can put on screen, read from its sources: no system error
// code (ENOSPC, EIO…), no byte offset and no command-line flag (--something) outside a
// Details disclosure. Strings are taken from the syntax trees — TypeScript's for .ts
// files, Svelte's for components (markup text, attribute values, script strings) — so
// comments and regular expressions (plain-words.ts's patterns) are not strings.
// What the engine says at run time is checked by plain-words.test.ts.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { ENGINE_ONLY } from '../helpers/engine-words';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const RENDERER = path.join(ROOT, 'renderer');

interface Found {
  file: string;
  text: string;
}

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'public' ? [] : sources(full);
    return /\.(ts|svelte)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** String literals and template parts of TypeScript source; imports' module names left out. */
function tsStrings(code: string): string[] {
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) return;
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) out.push(node.text);
    // What an expression fills in counts as a number: "(byte ${offset})" is an offset.
    if (ts.isTemplateHead(node) || ts.isTemplateMiddle(node)) out.push(`${node.text}0`);
    if (ts.isTemplateTail(node)) out.push(node.text);
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile('x.ts', code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS));
  return out;
}

type SvelteNode = { type?: string; name?: string; [key: string]: unknown };

/** Markup text, attribute values and script strings of a component, outside <details>. */
function svelteStrings(code: string): string[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { parse } = require('svelte/compiler') as {
    parse(source: string, options: { modern: true }): SvelteNode;
  };
  const out: string[] = [];
  const walk = (node: unknown, inDetails: boolean): void => {
    if (Array.isArray(node)) return node.forEach((n) => walk(n, inDetails));
    if (typeof node !== 'object' || node === null) return;
    const n = node as SvelteNode;
    const details = inDetails || (n.type === 'RegularElement' && n.name === 'details');
    if (!details) {
      // Text and template parts may be followed by an expression, counted as a number.
      if (n.type === 'Text' && typeof n.data === 'string') out.push(`${n.data}0`);
      // A regular expression is a Literal with `regex`: a pattern, not words.
      if (n.type === 'Literal' && typeof n.value === 'string' && !n.regex) out.push(n.value);
      if (n.type === 'TemplateElement') out.push(`${(n.value as { cooked: string }).cooked}0`);
    }
    for (const [key, value] of Object.entries(n)) {
      if (key === 'parent' || key === 'loc' || key === 'metadata') continue;
      if (n.type === 'ImportDeclaration') continue;
      walk(value, details);
    }
  };
  walk(parse(code, { modern: true }), false);
  return out;
}

/** A CSS custom property's name (theme.color('--map-done')): a name, not words. */
const CSS_VARIABLE = /^--[a-z][a-z0-9-]*$/;

function offending(file: string): Found[] {
  const code = fs.readFileSync(file, 'utf8');
  const strings = file.endsWith('.svelte') ? svelteStrings(code) : tsStrings(code);
  return strings
    .filter((text) => !CSS_VARIABLE.test(text))
    .filter((text) => ENGINE_ONLY.some(([, pattern]) => pattern.test(text)))
    .map((text) => ({ file: path.relative(ROOT, file), text }));
}

test('the renderer’s own strings: no error codes, byte offsets or flags outside Details', () => {
  const files = sources(RENDERER);
  assert.ok(files.length > 30, `the renderer's sources were found (${files.length})`);
  const found = files.flatMap(offending);
  assert.deepEqual(found, [], 'words for engineers on screen');
});

test('the check finds them: a flag in markup, an error code in a script string, not in Details', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'words-'));
  try {
    const component = path.join(dir, 'Bad.svelte');
    fs.writeFileSync(
      component,
      `<script lang="ts">const why = 'failed with ENOSPC'; const re = /--fit/;</script>\n` +
        `<p>Run it with --fit at byte 4096</p><details><summary>Details</summary>EIO --x</details>`,
    );
    const module = path.join(dir, 'bad.ts');
    fs.writeFileSync(module, `// --comment ENOSPC\nexport const s = \`at byte \${1} (EIO)\`;\n`);
    const texts = [...offending(component), ...offending(module)].map((f) => f.text);
    assert.deepEqual(texts, [
      'Run it with --fit at byte 40960',
      'failed with ENOSPC',
      'at byte 0',
      ' (EIO)',
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
