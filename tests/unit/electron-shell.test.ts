// The Electron shell without Electron: the window's settings, the content security
// policy, the preload (run as Electron runs a sandboxed preload, with a fake `electron`
// as the only module it may require), the IPC sender check (main/ipc.ts with a fake
// ipcMain), and main/index.ts itself started against a fake Electron, with a fake
// utility process standing in for the engine.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { CONTENT_SECURITY_POLICY, CSP_META_POLICY, CSP_META_TAG, cspMetaOf } from '../../main/csp';
import {
  doneNotice,
  JobStatus,
  percentOf,
  progressTitle,
  roughDuration,
  stopPrompt,
  taskbarProgress,
} from '../../main/job-status';
import {
  allowNavigation,
  appPaths,
  indexUrlOf,
  isTrustedSender,
  permissionAllowed,
  windowOptions,
} from '../../main/window';
import { EVENT_CHANNELS, EVENTS, INVOKE_CHANNELS, METHODS, type Reply } from '../../preload/api';
import type { DriveTwinEventName, JobDone, JobProgress, JobStarted } from '../../preload/events';
import { doneEvent, progressEvent } from '../helpers/events';

const ROOT = path.join(__dirname, '..', '..', '..');
const DIST_MAIN = path.join(ROOT, 'dist', 'main');
const PATHS = appPaths(DIST_MAIN);
const INDEX_URL = indexUrlOf(PATHS.rendererIndex);

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
function loadGlue(source: string, fakes: Record<string, unknown>): Record<string, unknown> {
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
function runSandboxedPreload(electron: unknown): { required: string[] } {
  const required: string[] = [];
  const sandboxRequire = (spec: string): unknown => {
    required.push(spec);
    if (spec === 'electron') return electron;
    throw new Error(`module not found: ${spec}`);
  };
  const params = ['require', 'process', 'exports', 'module', 'Buffer', 'global', 'setImmediate'];
  const run = new Function(...params, transpile(path.join(ROOT, 'preload', 'index.ts')));
  const exports = {};
  run(sandboxRequire, new EventEmitter(), exports, { exports }, Buffer, {}, setImmediate);
  return { required };
}

function preventable<T extends object>(
  fields: T,
): T & {
  prevented: boolean;
  preventDefault(): void;
} {
  const e = {
    ...fields,
    prevented: false,
    preventDefault() {
      e.prevented = true;
    },
  };
  return e;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// ---------------------------------------------------------------------------
// The window

describe('the window', () => {
  test('is isolated, sandboxed, without Node, with web security and our preload', () => {
    const o = windowOptions({ preload: PATHS.preload, dark: false, devTools: false });
    const w = o.webPreferences;
    assert.equal(w.contextIsolation, true);
    assert.equal(w.sandbox, true);
    assert.equal(w.nodeIntegration, false);
    assert.equal(w.nodeIntegrationInWorker, false);
    assert.equal(w.nodeIntegrationInSubFrames, false);
    assert.equal(w.webSecurity, true);
    assert.equal(w.allowRunningInsecureContent, false);
    assert.equal(w.webviewTag, false);
    assert.equal(w.navigateOnDragDrop, false);
    assert.equal(w.devTools, false);
    assert.equal(w.preload, path.join(ROOT, 'dist', 'preload', 'index.js'));
    assert.equal(o.show, false, 'shown once painted');
    assert.notEqual(
      windowOptions({ preload: 'p', dark: true, devTools: true }).backgroundColor,
      o.backgroundColor,
      'the first paint follows the OS theme',
    );
  });

  test('loads dist/renderer/index.html', () => {
    assert.equal(PATHS.rendererIndex, path.join(ROOT, 'dist', 'renderer', 'index.html'));
    assert.equal(INDEX_URL, pathToFileURL(PATHS.rendererIndex).href);
  });

  test('never navigates, and grants no web permission but writing to the clipboard', () => {
    for (const url of [INDEX_URL, 'https://example.com/', 'file:///etc/passwd', 'about:blank']) {
      assert.equal(allowNavigation(url), false);
    }
    for (const p of ['media', 'geolocation', 'notifications', 'hid', 'usb', 'openExternal']) {
      assert.equal(permissionAllowed(p), false, p);
    }
    assert.equal(permissionAllowed('clipboard-sanitized-write'), true);
    assert.equal(permissionAllowed('clipboard-read'), false);
  });
});

// ---------------------------------------------------------------------------
// Content security policy

function directives(policy: string): Map<string, string> {
  return new Map(
    policy.split(';').map((d) => {
      const [name, ...values] = d.trim().split(/\s+/);
      return [name, values.join(' ')];
    }),
  );
}

describe('the content security policy', () => {
  test('allows our own files only', () => {
    const d = directives(CONTENT_SECURITY_POLICY);
    assert.equal(d.get('default-src'), "'self'");
    assert.equal(d.get('script-src'), "'self'");
    assert.equal(d.get('style-src'), "'self'");
    assert.equal(d.get('connect-src'), "'self'");
    assert.equal(d.get('img-src'), "'self' data:");
    assert.equal(d.get('object-src'), "'none'");
    assert.equal(d.get('base-uri'), "'none'");
    assert.equal(d.get('frame-ancestors'), "'none'");
    assert.equal(d.get('frame-src'), "'none'");
  });

  test('has no unsafe keyword, no wildcard and no remote origin', () => {
    for (const policy of [CONTENT_SECURITY_POLICY, CSP_META_POLICY]) {
      assert.doesNotMatch(policy, /unsafe-eval|unsafe-inline|unsafe-hashes|wasm-unsafe|\*/);
      assert.doesNotMatch(policy, /(https?|wss?|blob|filesystem):/);
      for (const [, values] of directives(policy)) {
        for (const v of values.split(' ')) {
          assert.ok(["'self'", "'none'", 'data:'].includes(v), `only our own files: ${v}`);
        }
      }
    }
  });

  test('the <meta> form is the same policy minus what a <meta> tag cannot carry', () => {
    const header = directives(CONTENT_SECURITY_POLICY);
    const meta = directives(CSP_META_POLICY);
    header.delete('frame-ancestors');
    assert.deepEqual(meta, header);
    assert.equal(cspMetaOf(`<head>${CSP_META_TAG}</head>`), CSP_META_POLICY);
    assert.equal(cspMetaOf('<head><meta charset="utf-8"></head>'), null);
  });

  test('the built renderer carries exactly this policy, and no inline script', (t) => {
    const index = PATHS.rendererIndex;
    if (!fs.existsSync(index)) return t.skip('the renderer is not built (dist/renderer)');
    const html = fs.readFileSync(index, 'utf8');
    assert.equal(
      cspMetaOf(html),
      CSP_META_POLICY,
      'dist/renderer/index.html must carry main/csp.ts CSP_META_TAG (e.g. written by the Vite config)',
    );
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    for (const [, attrs, body] of scripts) {
      assert.match(attrs, /\bsrc=/, 'every script is a file');
      assert.equal(body.trim(), '', 'no inline script');
    }
    assert.doesNotMatch(html, /<style\b/i, 'no inline <style>');
  });

  test("no component has a static style attribute (style-src 'self' refuses those)", () => {
    const dir = path.join(ROOT, 'renderer');
    const components = fs.existsSync(dir)
      ? fs
          .readdirSync(dir, { recursive: true, encoding: 'utf8' })
          .filter((f) => f.endsWith('.svelte'))
      : [];
    const offenders: string[] = [];
    for (const f of components) {
      const markup = fs
        .readFileSync(path.join(dir, f), 'utf8')
        .replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, '');
      // style="…" with no {expression}: Svelte puts it in the HTML it parses, where the
      // CSP refuses it; style:prop={…} and style="{…}" go through the CSSOM and are fine.
      for (const m of markup.matchAll(/\sstyle\s*=\s*(["'])([^"'{]*)\1/g)) {
        offenders.push(`${f}: style="${m[2]}"`);
      }
    }
    assert.deepEqual(offenders, [], 'use a class, or a style: directive');
  });
});

// ---------------------------------------------------------------------------
// The preload

class FakeIpcRenderer extends EventEmitter {
  readonly invoked: Array<{ channel: string; args: unknown[] }> = [];
  answer: (channel: string, args: unknown[]) => Reply = (channel) => ({
    ok: true,
    value: channel,
  });

  invoke(channel: string, ...args: unknown[]): Promise<Reply> {
    this.invoked.push({ channel, args });
    return Promise.resolve(this.answer(channel, args));
  }
}

function preloadUnderTest(): {
  api: Record<string, unknown>;
  ipcRenderer: FakeIpcRenderer;
  exposed: Array<[string, unknown]>;
  required: string[];
} {
  const ipcRenderer = new FakeIpcRenderer();
  const exposed: Array<[string, unknown]> = [];
  const contextBridge = {
    exposeInMainWorld: (key: string, value: unknown) => void exposed.push([key, value]),
  };
  const { required } = runSandboxedPreload({ contextBridge, ipcRenderer });
  const api = (exposed[0]?.[1] ?? {}) as Record<string, unknown>;
  return { api, ipcRenderer, exposed, required };
}

describe('the preload', () => {
  test('runs sandboxed: it requires nothing but electron', () => {
    const { required } = preloadUnderTest();
    assert.deepEqual(required, ['electron']);
  });

  test('exposes window.driveTwin with exactly the contract: METHODS and on', () => {
    const { api, exposed, ipcRenderer } = preloadUnderTest();
    assert.deepEqual(
      exposed.map(([key]) => key),
      ['driveTwin'],
    );
    assert.deepEqual(Object.keys(api).sort(), [...METHODS, 'on'].sort());
    for (const [key, value] of Object.entries(api)) {
      assert.equal(typeof value, 'function', `${key} is a function`);
      assert.notEqual(value, ipcRenderer);
    }
  });

  test('each method invokes its contract channel with its arguments and unwraps the reply', async () => {
    const { api, ipcRenderer } = preloadUnderTest();
    for (const method of METHODS) {
      const call = api[method] as (...args: unknown[]) => Promise<unknown>;
      assert.equal(await call(3, { source: '/x' }), INVOKE_CHANNELS[method]);
      assert.deepEqual(ipcRenderer.invoked.pop(), {
        channel: INVOKE_CHANNELS[method],
        args: [3, { source: '/x' }],
      });
    }
  });

  test('a failed call rejects with an Error carrying the message', async () => {
    const { api, ipcRenderer } = preloadUnderTest();
    ipcRenderer.answer = () => ({
      ok: false,
      error: { code: 'refused', message: 'target /dev/sdb is the source' },
    });
    const startClone = api.startClone as (r: unknown) => Promise<unknown>;
    await assert.rejects(startClone({}), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.equal(e.message, 'target /dev/sdb is the source');
      return true;
    });
    ipcRenderer.answer = () => undefined as unknown as Reply;
    await assert.rejects((api.listJobs as () => Promise<unknown>)(), /did not answer/);
  });

  test('on(event) delivers the payload only, on the contract channel, until unsubscribed', () => {
    const { api, ipcRenderer } = preloadUnderTest();
    const on = api.on as (e: string, l: (p: unknown) => void) => () => void;
    for (const event of EVENTS) {
      const got: unknown[][] = [];
      const off = on(event, (...args: unknown[]) => got.push(args));
      assert.equal(ipcRenderer.listenerCount(EVENT_CHANNELS[event]), 1);
      const sender = { sender: ipcRenderer };
      ipcRenderer.emit(EVENT_CHANNELS[event], sender, { job: 1 });
      assert.deepEqual(got, [[{ job: 1 }]], 'no IpcRendererEvent reaches the page');
      off();
      off();
      ipcRenderer.emit(EVENT_CHANNELS[event], sender, { job: 2 });
      assert.equal(got.length, 1);
      assert.equal(ipcRenderer.listenerCount(EVENT_CHANNELS[event]), 0);
    }
  });

  test('on() refuses an event outside the contract, and a listener that is not a function', () => {
    const { api, ipcRenderer } = preloadUnderTest();
    const on = api.on as (e: unknown, l: unknown) => () => void;
    assert.throws(() => on('drivetwin:call:startClone', () => undefined), /no event/);
    assert.throws(() => on('__proto__', () => undefined), /no event/);
    assert.throws(() => on('progress', 'not a function'), TypeError);
    assert.deepEqual(ipcRenderer.eventNames(), []);
  });
});

// ---------------------------------------------------------------------------
// IPC: main/ipc.ts with a fake ipcMain

type Handler = (event: unknown, ...args: unknown[]) => Promise<Reply>;

class FakeIpcMain {
  readonly handlers = new Map<string, Handler>();
  handle(channel: string, handler: Handler): void {
    assert.ok(!this.handlers.has(channel), `${channel} bound once`);
    this.handlers.set(channel, handler);
  }
  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }
}

class FakeBackend {
  readonly calls: Array<[string, unknown[]]> = [];
  readonly events = new EventEmitter();
  async call(method: string, args: unknown[]): Promise<Reply> {
    this.calls.push([method, args]);
    return { ok: true, value: `${method} answered` };
  }
  onEvent(listener: (event: DriveTwinEventName, payload: unknown) => void): () => void {
    this.events.on('e', listener);
    return () => this.events.off('e', listener);
  }
  emit(event: DriveTwinEventName, payload: unknown): void {
    this.events.emit('e', event, payload);
  }
}

function fakeWindow(id: number, url = INDEX_URL) {
  const sent: Array<[string, unknown]> = [];
  return {
    sent,
    isDestroyed: () => false,
    webContents: {
      id,
      mainFrame: { url },
      isDestroyed: () => false,
      send: (channel: string, payload: unknown) => void sent.push([channel, payload]),
    },
  };
}

const frame = (url: string | null, parent: unknown = null) =>
  url === null ? null : { url, parent };

describe('IPC (main/ipc.ts)', () => {
  const setUp = () => {
    const ipcMain = new FakeIpcMain();
    const backend = new FakeBackend();
    const win = fakeWindow(7);
    const current: { win: ReturnType<typeof fakeWindow> | null } = { win };
    const { bindIpc } = loadGlue('main/ipc.ts', { electron: { ipcMain } }) as {
      bindIpc: (o: { backend: unknown; window: () => unknown; indexUrl: string }) => () => void;
    };
    const unbind = bindIpc({ backend, window: () => current.win, indexUrl: INDEX_URL });
    const invoke = (
      method: string,
      sender: { senderFrame: unknown; sender: { id: number } },
      ...args: unknown[]
    ) =>
      ipcMain.handlers.get(INVOKE_CHANNELS[method as (typeof METHODS)[number]])!(sender, ...args);
    return { ipcMain, backend, win, current, unbind, invoke };
  };

  test('binds one handler per method, on the contract channels', () => {
    const { ipcMain } = setUp();
    assert.deepEqual([...ipcMain.handlers.keys()].sort(), Object.values(INVOKE_CHANNELS).sort());
  });

  test('answers our window showing our page with the Reply of the handlers', async () => {
    const { backend, invoke } = setUp();
    const ours = { senderFrame: frame(INDEX_URL), sender: { id: 7 } };
    assert.deepEqual(await invoke('listDrives', ours, { source: '/dev/sda' }), {
      ok: true,
      value: 'listDrives answered',
    });
    // The renderer may route with a hash or a query: still our page.
    const routed = { senderFrame: frame(`${INDEX_URL}?job=3#/history`), sender: { id: 7 } };
    assert.equal((await invoke('listJobs', routed)).ok, true);
    assert.deepEqual(backend.calls, [
      ['listDrives', [{ source: '/dev/sda' }]],
      ['listJobs', []],
    ]);
  });

  test('refuses a foreign frame URL, an iframe, another window, a gone frame', async () => {
    const { backend, invoke, current } = setUp();
    const refused = [
      { senderFrame: frame('https://evil.example/'), sender: { id: 7 } },
      { senderFrame: frame('http://127.0.0.1:8080/index.html'), sender: { id: 7 } },
      { senderFrame: frame('file:///tmp/evil/index.html'), sender: { id: 7 } },
      { senderFrame: frame(`${INDEX_URL}.html`), sender: { id: 7 } },
      { senderFrame: frame('devtools://devtools/bundled/index.html'), sender: { id: 7 } },
      { senderFrame: frame('about:blank'), sender: { id: 7 } },
      { senderFrame: frame(INDEX_URL, { url: INDEX_URL }), sender: { id: 7 } }, // an iframe
      { senderFrame: frame(INDEX_URL), sender: { id: 8 } }, // another window
      { senderFrame: null, sender: { id: 7 } }, // the frame is gone
    ];
    for (const sender of refused) {
      const reply = await invoke('startClone', sender, { source: '/dev/sda', targets: [] });
      assert.deepEqual(
        reply,
        { ok: false, error: { code: 'refused', message: 'DriveTwin answers only its own window' } },
        JSON.stringify(sender),
      );
    }
    current.win = null; // no window: nobody is ours
    const ours = { senderFrame: frame(INDEX_URL), sender: { id: 7 } };
    assert.equal((await invoke('listJobs', ours)).ok, false);
    assert.deepEqual(backend.calls, [], 'no handler ran');
  });

  test('forwards every event to our window on its contract channel, and only to our page', () => {
    const { backend, win, current, unbind } = setUp();
    for (const event of EVENTS) backend.emit(event, { job: 1, event });
    assert.deepEqual(
      win.sent,
      EVENTS.map((event) => [EVENT_CHANNELS[event], { job: 1, event }]),
    );
    const elsewhere = fakeWindow(7, 'https://evil.example/');
    current.win = elsewhere;
    backend.emit('progress', { job: 1 });
    assert.deepEqual(elsewhere.sent, []);
    current.win = win;
    unbind();
    backend.emit('progress', { job: 1 });
    assert.equal(win.sent.length, EVENTS.length);
  });

  test('unbinding removes every handler', () => {
    const { ipcMain, unbind } = setUp();
    unbind();
    assert.equal(ipcMain.handlers.size, 0);
  });
});

describe('isTrustedSender', () => {
  const trusted = { indexUrl: INDEX_URL, webContentsId: 1, platform: 'linux' as const };
  const ok = { frameUrl: INDEX_URL, isMainFrame: true, webContentsId: 1 };

  test('accepts our page, with any query or hash, and its other spellings', () => {
    assert.equal(isTrustedSender(ok, trusted), true);
    assert.equal(isTrustedSender({ ...ok, frameUrl: `${INDEX_URL}#/jobs` }, trusted), true);
    const spelled = INDEX_URL.replace('index.html', '%69ndex.html');
    assert.equal(isTrustedSender({ ...ok, frameUrl: spelled }, trusted), true);
  });

  test('refuses everything else', () => {
    for (const frameUrl of [null, undefined, '', 'not a url', 'file:///', 'data:text/html,x']) {
      assert.equal(isTrustedSender({ ...ok, frameUrl }, trusted), false, String(frameUrl));
    }
    assert.equal(isTrustedSender({ ...ok, isMainFrame: false }, trusted), false);
    assert.equal(isTrustedSender({ ...ok, webContentsId: 2 }, trusted), false);
    assert.equal(isTrustedSender(ok, { ...trusted, webContentsId: null }), false);
    const upper = INDEX_URL.replace('index.html', 'INDEX.html');
    assert.equal(isTrustedSender({ ...ok, frameUrl: upper }, trusted), false, 'case matters');
  });

  test('on Windows, paths compare without case (Chromium upper-cases the drive letter)', () => {
    const win = {
      indexUrl: 'file:///c:/Program%20Files/DriveTwin/resources/app.asar/dist/renderer/index.html',
      webContentsId: 1,
      platform: 'win32' as const,
    };
    const frameUrl =
      'file:///C:/Program%20Files/DriveTwin/resources/app.asar/dist/renderer/index.html';
    assert.equal(isTrustedSender({ ...ok, frameUrl }, win), true);
    const other = 'file:///C:/Users/x/Downloads/index.html';
    assert.equal(isTrustedSender({ ...ok, frameUrl: other }, win), false);
  });
});

// ---------------------------------------------------------------------------
// Progress in the title and the taskbar, notifications

const started: JobStarted = {
  job: 4,
  intent: 'new',
  resumed: false,
  sizeKnown: true,
  options: {
    threshold: 32,
    batch: 8,
    throttle: 100,
    maxRate: 0,
    sparse: null,
    ignoreErrors: false,
    sequential: false,
    verify: false,
  },
  source: '/srv/disk.img',
  destinations: ['/dev/sdb'],
  regionSize: 1 << 20,
  regionsTotal: 1024,
  regionsHydrated: 256,
  bytesTotal: 1 << 30,
};

const progress = (p: Partial<JobProgress> = {}): JobProgress =>
  progressEvent({
    job: 4,
    bytesDone: 512 << 20,
    regionsHydrated: 512,
    hydrating: 8,
    rate: 100 << 20,
    eta: 5 * 60,
    ...p,
  });

const done = (d: Partial<JobDone> = {}): JobDone =>
  doneEvent({
    job: 4,
    bytesRead: 1 << 30,
    bytesWritten: 1 << 30,
    regionsCopied: 768,
    seconds: 312,
    ...d,
  });

describe('progress outside the page', () => {
  test('the title leads with the progress while jobs run', () => {
    const one = { jobs: 1, bytesDone: 42, bytesTotal: 100, paused: false, troubled: false };
    assert.equal(progressTitle(null), 'DriveTwin');
    assert.equal(progressTitle({ ...one, eta: null }), '42% — DriveTwin');
    assert.equal(progressTitle({ ...one, eta: 300 }), '42% · 5 min left — DriveTwin');
    assert.equal(progressTitle({ ...one, eta: 300, paused: true }), 'Paused at 42% — DriveTwin');
    assert.equal(progressTitle({ ...one, jobs: 2, eta: 300 }), '2 copies · 42% — DriveTwin');
    assert.equal(percentOf(999, 1000), 99, 'never 100% before done');
    assert.equal(percentOf(1, 0), 0);
    assert.equal(roughDuration(30), 'less than a minute');
    assert.equal(roughDuration(7500), '2 h 05 min');
  });

  test('the taskbar shows the fraction, paused, or trouble; nothing when idle', () => {
    const one = { jobs: 1, bytesDone: 25, bytesTotal: 100, paused: false, troubled: false };
    assert.deepEqual(taskbarProgress(null), { value: -1, mode: 'none' });
    assert.deepEqual(taskbarProgress({ ...one, eta: null }), { value: 0.25, mode: 'normal' });
    assert.equal(taskbarProgress({ ...one, eta: null, paused: true }).mode, 'paused');
    assert.equal(taskbarProgress({ ...one, eta: null, troubled: true }).mode, 'error');
  });

  test('JobStatus follows the events, and a late message does not revive an ended job', () => {
    const s = new JobStatus();
    assert.equal(s.overall(), null);
    s.onEvent('job-started', started);
    assert.equal(
      progressTitle(s.overall()),
      'Starting — DriveTwin',
      'no percent worked out before the job says it',
    );
    s.onEvent('progress', progress());
    assert.equal(progressTitle(s.overall()), '50% · 5 min left — DriveTwin');
    s.onEvent('progress', progress({ phase: 'flushing', eta: 0, bytesDone: 1 << 30 }));
    assert.equal(progressTitle(s.overall()), 'Flushing · 99% — DriveTwin');
    s.onEvent('verify-progress', {
      job: 4,
      phase: 'verifying',
      bytesDone: 256 << 20,
      bytesTotal: 1 << 30,
      rate: 100 << 20,
      eta: 8,
    });
    assert.equal(progressTitle(s.overall()), 'Verifying 25% — DriveTwin');
    assert.deepEqual(taskbarProgress(s.overall()), { value: 0.25, mode: 'normal' });
    s.onEvent('progress', progress());
    s.onEvent('mode', { job: 4, mode: 'ro', reason: 'commit failed' });
    assert.equal(taskbarProgress(s.overall()).mode, 'error');
    s.onEvent('job-started', { ...started, job: 5, bytesTotal: 1 << 30, regionsHydrated: 0 });
    assert.equal(
      progressTitle(s.overall()),
      '2 copies · 50% — DriveTwin',
      'a job with no progress yet adds nothing',
    );
    s.onEvent('progress', progress({ job: 5, bytesDone: 0 }));
    assert.equal(progressTitle(s.overall()), '2 copies · 25% — DriveTwin');
    assert.equal(s.onEvent('done', done({ job: 5 }))?.title, 'Copy finished');
    const notice = s.onEvent('done', done());
    assert.equal(notice?.title, 'Copy finished');
    assert.equal(s.running, 0);
    s.onEvent('progress', progress());
    assert.equal(s.overall(), null);
    assert.equal(progressTitle(s.overall()), 'DriveTwin');
  });

  test('a compare before an update shows in the title', () => {
    const s = new JobStatus();
    s.onEvent('job-started', { ...started, intent: 'update', resumed: true });
    s.onEvent('verify-progress', {
      job: 4,
      phase: 'comparing',
      bytesDone: 512 << 20,
      bytesTotal: 1 << 30,
      rate: 1,
      eta: null,
    });
    assert.equal(progressTitle(s.overall()), 'Comparing 50% — DriveTwin');
  });

  test('the notification says how the job ended', () => {
    const ctx = { started, progress: progress() };
    const ok = doneNotice(done({ verified: true }), ctx);
    assert.equal(ok.title, 'Copy finished');
    assert.match(ok.body, /^Job 4: 1\.00 GiB copied to \/dev\/sdb in 5 min 12 s\. Verified/);
    const bad = doneNotice(done({ unreadableBytes: 4096, verified: false }), ctx);
    assert.equal(bad.title, 'Copy finished, with problems');
    assert.match(bad.body, /4\.00 KiB could not be read/);
    assert.match(bad.body, /Verify found differences/);
    const stopped = doneNotice(done({ state: 'interrupted' }), ctx);
    assert.equal(stopped.title, 'Copy stopped');
    assert.match(stopped.body, /stopped at 50%; what was copied is kept\. It can be resumed/);
    const failed = doneNotice(done({ state: 'failed' }), { ...ctx, lastError: 'read error.' });
    assert.equal(failed.body, 'Job 4 failed: read error. It can be resumed from the job list.');
    const withError = doneNotice(done({ state: 'failed', error: 'source gone' }), {
      ...ctx,
      lastError: 'an older one',
    });
    assert.equal(withError.body, 'Job 4 failed: source gone. It can be resumed from the job list.');
    assert.deepEqual(stopPrompt(2).buttons, ['Keep copying', 'Stop and quit']);
  });

  test('the notification says verified only when every destination compared equal', () => {
    const verifyOn = { ...started, options: { ...started.options, verify: true } };
    const ctx = { started: verifyOn, progress: progress() };

    // Verify off: nothing said about it, and nothing wrong.
    const off = doneNotice(done(), { started, progress: progress() });
    assert.equal(off.title, 'Copy finished');
    assert.doesNotMatch(off.body, /verif/i);

    // Verify on, done, but no verify result: not verified, with why.
    const noResult = doneNotice(done({ error: 'reading /dev/sdb failed' }), ctx);
    assert.equal(noResult.title, 'Copy finished, with problems');
    assert.match(noResult.body, /Not verified: reading \/dev\/sdb failed\./);
    assert.doesNotMatch(noResult.body, /Verified:/);
    const noReason = doneNotice(done(), ctx);
    assert.match(noReason.body, /Not verified: the verify did not finish\./);

    // Verify on, cancelled: stopped, not verified.
    const cancelled = doneNotice(done({ state: 'interrupted' }), ctx);
    assert.equal(cancelled.title, 'Copy stopped');
    assert.match(cancelled.body, /It was not verified\./);

    // One destination differs: named.
    const differs = doneNotice(
      done({
        verified: false,
        destinations: [
          {
            path: '/dev/sdb',
            state: 'done',
            error: null,
            bytesWritten: 0,
            verified: true,
            mismatches: [],
          },
          {
            path: '/dev/sdc',
            state: 'done',
            error: null,
            bytesWritten: 0,
            verified: false,
            mismatches: [{ offset: 0, length: 4096 }],
          },
        ],
      }),
      ctx,
    );
    assert.equal(differs.title, 'Copy finished, with problems');
    assert.match(differs.body, /Verify found differences on \/dev\/sdc: see the job\./);
  });

  test('the notification names a failed destination and what to do', () => {
    const notice = doneNotice(
      done({
        state: 'failed',
        error: 'destination /mnt/full/b.img failed: ENOSPC: no space left on device, write',
        failedDestinations: ['/mnt/full/b.img'],
        destinations: [
          { path: '/srv/a.img', state: 'unfinished', error: null, bytesWritten: 0 },
          {
            path: '/mnt/full/b.img',
            state: 'failed',
            error: 'ENOSPC: no space left on device, write',
            bytesWritten: 0,
          },
        ],
      }),
      { started, progress: progress() },
    );
    assert.equal(notice.title, 'Copy failed');
    assert.equal(
      notice.body,
      'Job 4 stopped: /mnt/full/b.img failed (ENOSPC: no space left on device, write). Once ' +
        'fixed, resume the job to bring it back, or finish without it, from the job list.',
    );
  });
});

// ---------------------------------------------------------------------------
// main/index.ts against a fake Electron

/** A utility process that answers like engine/host.ts. */
class FakeEngineProcess extends EventEmitter {
  readonly pid = 4242;
  readonly stderr = null;
  readonly received: unknown[] = [];
  constructor() {
    super();
    setImmediate(() => this.emit('message', { kind: 'hello', pid: this.pid, elevated: false }));
  }
  postMessage(message: { kind: string; id: number; command: { type: string } }): void {
    this.received.push(message);
    const result = message.command.type === 'list-jobs' ? { jobs: [] } : null;
    setImmediate(() => {
      this.emit('message', { kind: 'reply', id: message.id, ok: true, result });
      if (message.command.type === 'shutdown') this.emit('exit', 0);
    });
  }
  kill(): boolean {
    setImmediate(() => this.emit('exit', 1));
    return true;
  }
  event(event: object): void {
    this.emit('message', { kind: 'event', event });
  }
}

function fakeElectron(opts: { lock?: boolean; stopAnswer?: number } = {}) {
  const calls: string[] = [];
  const windows: FakeBrowserWindow[] = [];
  const engines: FakeEngineProcess[] = [];
  const notifications: Array<{ title: string; body: string }> = [];
  const dialogs: unknown[] = [];
  const state = { quit: false, stopAnswer: opts.stopAnswer ?? 1 };

  class FakeApp extends EventEmitter {
    isPackaged = false;
    setName(name: string) {
      calls.push(`setName ${name}`);
    }
    getVersion() {
      return '0.1.0';
    }
    requestSingleInstanceLock() {
      calls.push('requestSingleInstanceLock');
      return opts.lock ?? true;
    }
    enableSandbox() {
      calls.push('enableSandbox');
    }
    setAppUserModelId(id: string) {
      calls.push(`setAppUserModelId ${id}`);
    }
    setDesktopName(name: string) {
      calls.push(`setDesktopName ${name}`);
    }
    whenReady() {
      return Promise.resolve();
    }
    quit() {
      calls.push('quit');
      const e = preventable({});
      this.emit('before-quit', e);
      if (!e.prevented) state.quit = true;
    }
    exit(code: number) {
      calls.push(`exit ${code}`);
    }
  }
  const app = new FakeApp();

  class FakeWebContents extends EventEmitter {
    readonly id = 100 + windows.length;
    readonly mainFrame = { url: 'about:blank' };
    readonly sent: Array<[string, unknown]> = [];
    openHandler: ((d: { url: string }) => { action: string }) | null = null;
    setWindowOpenHandler(h: (d: { url: string }) => { action: string }) {
      this.openHandler = h;
    }
    isDestroyed() {
      return false;
    }
    send(channel: string, payload: unknown) {
      this.sent.push([channel, payload]);
    }
  }

  class FakeBrowserWindow extends EventEmitter {
    readonly webContents = new FakeWebContents();
    readonly titles: string[] = [];
    readonly bars: Array<[number, unknown]> = [];
    loaded: string | null = null;
    focused = 0;
    constructor(readonly options: Record<string, unknown>) {
      super();
      windows.push(this);
      app.emit('web-contents-created', {}, this.webContents);
    }
    loadFile(file: string) {
      this.loaded = file;
      this.webContents.mainFrame.url = pathToFileURL(file).href;
      return Promise.resolve();
    }
    isDestroyed() {
      return false;
    }
    isMinimized() {
      return false;
    }
    restore() {}
    show() {}
    focus() {
      this.focused += 1;
    }
    setTitle(t: string) {
      this.titles.push(t);
    }
    setProgressBar(value: number, options: unknown) {
      this.bars.push([value, options]);
    }
    setBackgroundColor() {}
  }

  const session = {
    permissionRequest: null as null | ((c: unknown, p: string, cb: (ok: boolean) => void) => void),
    permissionCheck: null as null | ((c: unknown, p: string) => boolean),
    headers: null as null | ((d: object, cb: (r: { responseHeaders: object }) => void) => void),
  };
  class FakeNotification extends EventEmitter {
    static isSupported() {
      return true;
    }
    constructor(readonly options: { title: string; body: string }) {
      super();
    }
    show() {
      notifications.push(this.options);
    }
  }

  const electron = {
    app,
    BrowserWindow: FakeBrowserWindow,
    nativeTheme: Object.assign(new EventEmitter(), { shouldUseDarkColors: false }),
    Notification: FakeNotification,
    ipcMain: new FakeIpcMain(),
    dialog: {
      showMessageBoxSync: (_w: unknown, o: unknown) => {
        dialogs.push(o);
        return state.stopAnswer;
      },
      showErrorBox: (title: string, text: string) => calls.push(`error ${title}: ${text}`),
    },
    session: {
      defaultSession: {
        setPermissionRequestHandler: (h: typeof session.permissionRequest) =>
          void (session.permissionRequest = h),
        setPermissionCheckHandler: (h: typeof session.permissionCheck) =>
          void (session.permissionCheck = h),
        webRequest: {
          onHeadersReceived: (h: typeof session.headers) => void (session.headers = h),
        },
      },
    },
    utilityProcess: {
      fork: (modulePath: string) => {
        calls.push(`fork ${path.relative(ROOT, modulePath)}`);
        const engine = new FakeEngineProcess();
        engines.push(engine);
        return engine;
      },
    },
  };
  return { electron, calls, windows, engines, notifications, dialogs, session, state };
}

describe('main/index.ts against a fake Electron', () => {
  const start = async (opts: Parameters<typeof fakeElectron>[0] = {}) => {
    const fake = fakeElectron(opts);
    const drives = { listDrives: async () => [] };
    const errors: string[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => void errors.push(args.join(' '));
    try {
      loadGlue('main/index.ts', { electron: fake.electron, '../engine/drives/list': drives });
      await tick();
      await tick();
    } finally {
      console.error = consoleError;
    }
    return { ...fake, errors };
  };

  test('a second instance hands over and quits, opening nothing', async () => {
    const { calls, windows } = await start({ lock: false });
    assert.deepEqual(calls, ['setName DriveTwin', 'requestSingleInstanceLock', 'quit']);
    assert.equal(windows.length, 0);
  });

  test('opens one locked-down window on the renderer', async () => {
    const { calls, windows, session, electron } = await start();
    assert.ok(calls.includes('enableSandbox'));
    if (process.platform === 'linux') assert.ok(calls.includes('setDesktopName drivetwin.desktop'));
    assert.equal(windows.length, 1);
    const [win] = windows;
    assert.deepEqual(
      win.options,
      windowOptions({ preload: PATHS.preload, dark: false, devTools: true }),
    );
    assert.equal(win.loaded, PATHS.rendererIndex);

    // Every web contents: no new windows, no navigation, no webviews.
    assert.deepEqual(win.webContents.openHandler?.({ url: 'https://example.com' }), {
      action: 'deny',
    });
    for (const event of ['will-navigate', 'will-redirect', 'will-frame-navigate']) {
      for (const url of ['https://example.com/', INDEX_URL]) {
        const e = preventable({ url });
        win.webContents.emit(event, e, url);
        assert.ok(e.prevented, `${event} ${url}`);
      }
    }
    const webview = preventable({});
    win.webContents.emit('will-attach-webview', webview);
    assert.ok(webview.prevented, 'will-attach-webview');

    // The session: permissions refused, the CSP header added.
    const answers: boolean[] = [];
    session.permissionRequest?.(win.webContents, 'media', (ok) => answers.push(ok));
    session.permissionRequest?.(win.webContents, 'clipboard-sanitized-write', (ok) =>
      answers.push(ok),
    );
    assert.deepEqual(answers, [false, true]);
    assert.equal(session.permissionCheck?.(win.webContents, 'geolocation'), false);
    let headers: object = {};
    session.headers?.({ responseHeaders: { 'X-A': ['1'] } }, (r) => (headers = r.responseHeaders));
    assert.deepEqual(headers, {
      'X-A': ['1'],
      'Content-Security-Policy': [CONTENT_SECURITY_POLICY],
    });

    // IPC: every method bound; the page is answered, a foreign frame is not.
    const handlers = electron.ipcMain.handlers;
    assert.deepEqual([...handlers.keys()].sort(), Object.values(INVOKE_CHANNELS).sort());
    const ours = { senderFrame: frame(INDEX_URL), sender: { id: win.webContents.id } };
    const caps = await handlers.get(INVOKE_CHANNELS.capabilities)!(ours);
    assert.deepEqual(caps, {
      ok: true,
      value: { transport: 'electron', dialogs: true, platform: process.platform, version: '0.1.0' },
    });
    const foreign = {
      senderFrame: frame('https://evil.example/'),
      sender: { id: win.webContents.id },
    };
    assert.equal((await handlers.get(INVOKE_CHANNELS.capabilities)!(foreign)).ok, false);

    // A second launch brings this window forward.
    electron.app.emit('second-instance');
    assert.equal(win.focused, 1);
  });

  test('progress reaches the title and the taskbar; the end, a notification; quitting asks', async () => {
    const { windows, engines, electron, notifications, dialogs, state, calls } = await start({
      stopAnswer: 0,
    });
    const [win] = windows;
    const handlers = electron.ipcMain.handlers;
    const ours = { senderFrame: frame(INDEX_URL), sender: { id: win.webContents.id } };

    // The engine starts in a utility process on the first request.
    assert.deepEqual(await handlers.get(INVOKE_CHANNELS.listJobs)!(ours), { ok: true, value: [] });
    assert.deepEqual(
      calls.filter((c) => c.startsWith('fork')),
      [`fork ${path.join('dist', 'engine', 'host.js')}`],
    );
    const [engine] = engines;

    engine.event({ type: 'start', ...started });
    engine.event({ type: 'progress', ...progress() });
    await until('the title shows the progress', () =>
      win.titles.includes('50% · 5 min left — DriveTwin'),
    );
    assert.deepEqual(win.bars.at(-1), [0.5, { mode: 'normal' }]);
    assert.ok(
      win.webContents.sent.some(([channel]) => channel === EVENT_CHANNELS.progress),
      'the page gets the progress too',
    );

    // Quitting while copying asks; "Keep copying" keeps it.
    electron.app.quit();
    assert.equal(dialogs.length, 1);
    assert.equal(state.quit, false);

    engine.event({ type: 'done', ...done() });
    await until('the notification', () => notifications.length === 1);
    assert.equal(notifications[0].title, 'Copy finished');
    assert.match(notifications[0].body, /^Job 4: /);
    assert.equal(win.titles.at(-1), 'DriveTwin');
    assert.deepEqual(win.bars.at(-1), [-1, { mode: 'none' }]);

    // Nothing runs: quitting stops the engine cleanly, then quits.
    electron.app.quit();
    await until('the app quits', () => state.quit);
    assert.equal(dialogs.length, 1, 'no question when nothing runs');
    assert.ok(
      engine.received.some((m) => (m as { command: { type: string } }).command.type === 'shutdown'),
      'the engine was asked to stop cleanly',
    );
  });
});
