// main/index.ts itself, started against a fake Electron, with a fake utility process
// standing in for the engine: one instance, one locked-down window, IPC bound, progress
// in the title and the taskbar, and quitting that asks while a copy runs.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ejectTool } from '../../main/eject';
import { windowOptions } from '../../main/window';
import { EVENT_CHANNELS, INVOKE_CHANNELS } from '../../preload/api';
import { FakeIpcMain, frame, INDEX_URL, loadGlue, PATHS, ROOT } from '../helpers/electron-glue';
import { done, progress, started } from '../helpers/shell-job';

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

/** A utility process that answers like engine/host/host.ts. */
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
    // Kept awake while a copy runs: started and stopped calls are recorded.
    powerSaveBlocker: {
      start: (type: string) => {
        calls.push(`powerSaveBlocker.start ${type}`);
        return 7;
      },
      stop: (id: number) => void calls.push(`powerSaveBlocker.stop ${id}`),
    },
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

    // The session: permissions refused; no CSP header (a file:// page has no headers: the
    // renderer's <meta> tag carries the policy).
    const answers: boolean[] = [];
    session.permissionRequest?.(win.webContents, 'media', (ok) => answers.push(ok));
    session.permissionRequest?.(win.webContents, 'clipboard-sanitized-write', (ok) =>
      answers.push(ok),
    );
    assert.deepEqual(answers, [false, true]);
    assert.equal(session.permissionCheck?.(win.webContents, 'geolocation'), false);
    assert.equal(session.headers, null, 'no response-header handler');

    // IPC: every method bound; the page is answered, a foreign frame is not.
    const handlers = electron.ipcMain.handlers;
    assert.deepEqual([...handlers.keys()].sort(), Object.values(INVOKE_CHANNELS).sort());
    const ours = { senderFrame: frame(INDEX_URL), sender: { id: win.webContents.id } };
    const caps = await handlers.get(INVOKE_CHANNELS.capabilities)!(ours);
    assert.deepEqual(caps, {
      ok: true,
      value: {
        transport: 'electron',
        dialogs: true,
        platform: process.platform,
        version: '0.1.0',
        fileBrowser: false,
        eject: ejectTool(),
        notifications: 'app',
      },
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
      [`fork ${path.join('dist', 'engine', 'host', 'host.js')}`],
    );
    const [engine] = engines;

    engine.event({ type: 'start', ...started });
    engine.event({ type: 'progress', ...progress() });
    await until('the title shows the progress', () =>
      win.titles.includes('50% · 5 min left — DriveTwin'),
    );
    assert.deepEqual(win.bars.at(-1), [0.5, { mode: 'normal' }]);
    assert.deepEqual(
      calls.filter((c) => c.startsWith('powerSaveBlocker')),
      ['powerSaveBlocker.start prevent-app-suspension'],
      'kept awake while it copies',
    );
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
    assert.ok(calls.includes('powerSaveBlocker.stop 7'), 'allowed to sleep once it ended');

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
