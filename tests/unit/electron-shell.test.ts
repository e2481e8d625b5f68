// The Electron shell without Electron: the window's settings, the content security
// policy, and the preload (run as Electron runs a sandboxed preload, with a fake
// `electron` as the only module it may require). The IPC sender check is in
// electron-ipc.test.ts, the progress outside the page in electron-job-status.test.ts,
// main/index.ts against a fake Electron in electron-main.test.ts.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CONTENT_SECURITY_POLICY, CSP_META_POLICY, CSP_META_TAG, cspMetaOf } from '../../main/csp';
import { allowNavigation, permissionAllowed, windowOptions } from '../../main/window';
import { EVENT_CHANNELS, EVENTS, INVOKE_CHANNELS, METHODS, type Reply } from '../../preload/api';
import { INDEX_URL, PATHS, ROOT, runSandboxedPreload } from '../helpers/electron-glue';

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

  test('exposes window.driveTwin with exactly the contract: METHODS and its local members', () => {
    const { api, exposed, ipcRenderer } = preloadUnderTest();
    assert.deepEqual(
      exposed.map(([key]) => key),
      ['driveTwin'],
    );
    assert.deepEqual(
      Object.keys(api).sort(),
      [...METHODS, 'on', 'onConnection', 'pathOfFile'].sort(),
    );
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
