// The Electron glue (main/index.ts, main/ipc.ts, main/electron-*.ts, preload/index.ts)
// run without Electron, for the shell tests: loaded from its TypeScript source with
// fakes in place of the modules it requires, the preload run as Electron runs a
// sandboxed one, and the fake ipcMain both main/ipc.ts and main/index.ts bind to.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import ts from 'typescript';
import { appPaths, indexUrlOf } from '../../main/window';
import type { Reply } from '../../preload/api';

export const ROOT = path.join(__dirname, '..', '..', '..');
const DIST_MAIN = path.join(ROOT, 'dist', 'main');
export const PATHS = appPaths(DIST_MAIN);
export const INDEX_URL = indexUrlOf(PATHS.rendererIndex);

// ---------------------------------------------------------------------------
// Loading the Electron glue (excluded from tsconfig.json) from its TypeScript source

/** The files only tsconfig.electron.json compiles: always taken from source here. */
const GLUE = /[\\/](main[\\/](index|ipc|electron-[^\\/]*)|preload[\\/]index)\.ts$/;

function transpile(file: string): string {
  return ts.transpileModule(fs.readFileSync(file, 'utf8'), {
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
    },
    fileName: file,
  }).outputText;
}

/**
 * Runs `source` (relative to ROOT) as dist/ would, with `fakes` in place of the modules
 * they name (by specifier). Other relative imports of glue files are transpiled too;
 * everything else comes from dist/ (built by tsc -p tsconfig.json).
 */
export function loadGlue(source: string, fakes: Record<string, unknown>): Record<string, unknown> {
  const file = path.join(ROOT, source);
  const compiled = path.join(ROOT, 'dist', source.replace(/\.ts$/, '.js'));
  const fromDist = createRequire(compiled);
  const mod = new Module(compiled);
  mod.filename = compiled;
  const load = (spec: string): unknown => {
    if (spec in fakes) return fakes[spec];
    if (spec.startsWith('.')) {
      const glue = path.resolve(path.dirname(file), `${spec}.ts`);
      if (GLUE.test(glue)) return loadGlue(path.relative(ROOT, glue), fakes);
    }
    return fromDist(spec);
  };
  const run = new Function(
    'exports',
    'require',
    'module',
    '__filename',
    '__dirname',
    transpile(file),
  );
  run(mod.exports, load, mod, compiled, path.dirname(compiled));
  return mod.exports as Record<string, unknown>;
}

/** Runs the preload as Electron runs a sandboxed one: its require knows 'electron' only. */
export function runSandboxedPreload(electron: unknown): { required: string[] } {
  const required: string[] = [];
  const sandboxRequire = (spec: string): unknown => {
    required.push(spec);
    if (spec === 'electron') return electron;
    throw new Error(`module not found: ${spec}`);
  };
  const params = ['require', 'process', 'exports', 'module', 'Buffer', 'global', 'setImmediate'];
  const run = new Function(...params, transpile(path.join(ROOT, 'preload', 'index.ts')));
  const preloadExports = {}; // not `exports`: that name is this module's own once compiled
  run(
    sandboxRequire,
    new EventEmitter(),
    preloadExports,
    { exports: preloadExports },
    Buffer,
    {},
    setImmediate,
  );
  return { required };
}

// ---------------------------------------------------------------------------
// IPC: a fake ipcMain

type Handler = (event: unknown, ...args: unknown[]) => Promise<Reply>;

export class FakeIpcMain {
  readonly handlers = new Map<string, Handler>();
  handle(channel: string, handler: Handler): void {
    assert.ok(!this.handlers.has(channel), `${channel} bound once`);
    this.handlers.set(channel, handler);
  }
  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }
}

export const frame = (url: string | null, parent: unknown = null) =>
  url === null ? null : { url, parent };
