// The Electron glue (main/index.ts, main/ipc.ts, main/electron-*.ts, preload/index.ts)
// run without Electron, for the shell tests: loaded from its TypeScript source with
// fakes in place of the modules it requires, the preload run as Electron runs a
// sandboxed one, and the fake ipcMain both main/ipc.ts and main/index.ts bind to.
// Electron's utilityProcess is played by Node children that look like Electron inside.

import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import type { UtilityChild, UtilityForker } from '../../main/engine-links';
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

// ---------------------------------------------------------------------------
// utilityProcess: a Node child that looks like Electron's

/** Run with --require in each child: process.versions.electron, as Electron has it. */
const FAKE_ELECTRON_PRELOAD = `Object.defineProperty(process.versions, 'electron', {
  value: process.env.DRIVETWIN_FAKE_ELECTRON, enumerable: true,
});
delete process.env.DRIVETWIN_FAKE_ELECTRON;
`;

export class FakeUtilityChild extends EventEmitter {
  constructor(readonly child: ChildProcess) {
    super();
    child.on('message', (m) => this.emit('message', m));
    child.on('exit', (code, signal) => this.emit('exit', code ?? (signal ? 128 : 1)));
  }
  get pid(): number | undefined {
    return this.child.pid;
  }
  get stderr(): NodeJS.ReadableStream | null {
    return this.child.stderr;
  }
  postMessage(message: unknown): void {
    if (this.child.connected) this.child.send(message as object);
  }
  kill(): boolean {
    return this.child.kill();
  }
  /** What Electron does on a fatal V8 error: 'error' with the Node.js report, then the process dies. */
  fatal(location: string, event: string): void {
    const report = JSON.stringify({ header: { event, trigger: 'FatalError' } });
    this.emit('error', 'FatalError', location, report);
    this.child.kill('SIGKILL');
  }
}

export interface FakeUtilityProcess extends UtilityForker {
  readonly children: FakeUtilityChild[];
  /** The options each fork was given. */
  readonly options: Array<Parameters<UtilityForker['fork']>[2]>;
}

/**
 * Electron's utilityProcess.fork, played by child_process.fork: the module runs with
 * process.versions.electron set, as Electron's own; no execArgv reaches it (Electron's
 * utility process applies none) and its stdio is what was asked for. `probes`: more
 * scripts each child requires first (a test's eyes inside the process).
 */
export function fakeUtilityProcess(
  electronVersion = '45.4.1',
  probes: string[] = [],
): FakeUtilityProcess {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-fake-electron-'));
  const preload = path.join(dir, 'electron-versions.js');
  fs.writeFileSync(preload, FAKE_ELECTRON_PRELOAD);
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const children: FakeUtilityChild[] = [];
  const options: FakeUtilityProcess['options'] = [];
  return {
    children,
    options,
    fork(modulePath, args = [], opts = {}) {
      options.push(opts);
      const [stdout, stderr] = (opts.stdio ?? ['ignore', 'inherit', 'inherit']).slice(1);
      const child = fork(modulePath, args, {
        execArgv: [preload, ...probes].flatMap((p) => ['--require', p]),
        env: { ...opts.env, DRIVETWIN_FAKE_ELECTRON: electronVersion },
        stdio: ['ignore', stdout ?? 'inherit', stderr ?? 'inherit', 'ipc'],
      });
      const fake = new FakeUtilityChild(child);
      children.push(fake);
      return fake as unknown as UtilityChild;
    },
  };
}
