// IPC without Electron: main/ipc.ts bound to a fake ipcMain answers only our window
// showing our page, and forwards events only there; isTrustedSender, the rule it uses.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { isTrustedSender } from '../../main/window';
import { EVENT_CHANNELS, EVENTS, INVOKE_CHANNELS, METHODS, type Reply } from '../../preload/api';
import type { DriveTwinEventName } from '../../preload/events';
import { FakeIpcMain, frame, INDEX_URL, loadGlue } from '../helpers/electron-glue';

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
