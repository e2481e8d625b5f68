// The desktop app: one instance, one sandboxed window on dist/renderer/index.html, the
// backend (main/api.ts) bound to it over IPC, the engine in a utility process. Progress
// shows in the title and the taskbar; a notification says when a job ends. Quitting
// stops running jobs cleanly (committed, resumable).
//
// Thin on purpose: the decisions are plain functions in main/window.ts,
// main/job-status.ts and main/csp.ts, which tests run under Node.

import fs from 'node:fs';
import {
  app,
  BrowserWindow,
  dialog,
  nativeTheme,
  Notification,
  session,
  type Session,
  type WebContents,
} from 'electron';
import { databasePath } from '../engine/store/database';
import { createBackend } from './api';
import { CSP_META_POLICY, cspMetaOf } from './csp';
import { WM_DEVICECHANGE } from './device-signals';
import { watchSystemDrives } from './drive-watcher';
import { ejectTool } from './eject';
import { electronDialogs, engineForker, powerSaveInhibit } from './electron-adapters';
import { EngineSupervisor } from './engine-host';
import { pickedImagesFile } from './picked-images';
import { bindIpc } from './ipc';
import { JobStatus, progressTitle, stopPrompt, taskbarProgress, type Notice } from './job-status';
import { SleepInhibitor } from './sleep-inhibitor';
import {
  allowNavigation,
  APP_ID,
  APP_NAME,
  appPaths,
  indexUrlOf,
  LINUX_DESKTOP_FILE,
  permissionAllowed,
  windowBackground,
  windowOptions,
} from './window';

const paths = appPaths(__dirname);
const indexUrl = indexUrlOf(paths.rendererIndex);
let win: BrowserWindow | null = null;

/** Every web contents, whatever creates it: it stays on our page and opens nothing. */
function lockDown(contents: WebContents): void {
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  const refuse = (event: { preventDefault(): void }, url: string): void => {
    if (!allowNavigation(url)) event.preventDefault();
  };
  contents.on('will-navigate', refuse);
  contents.on('will-frame-navigate', (event) => refuse(event, event.url));
  contents.on('will-redirect', refuse);
  contents.on('will-attach-webview', (event) => event.preventDefault());
}

function lockSession(ses: Session): void {
  ses.setPermissionRequestHandler((_contents, permission, callback) =>
    callback(permissionAllowed(permission)),
  );
  ses.setPermissionCheckHandler((_contents, permission) => permissionAllowed(permission));
  // No CSP header here: the page comes from file://, which has no response headers to
  // carry one. The renderer's <meta> tag holds (checked below, checkRendererPolicy).
}

function checkRendererPolicy(): void {
  let html: string;
  try {
    html = fs.readFileSync(paths.rendererIndex, 'utf8');
  } catch (e) {
    console.error(`DriveTwin: no renderer at ${paths.rendererIndex}: ${(e as Error).message}`);
    return;
  }
  if (cspMetaOf(html) !== CSP_META_POLICY) {
    console.error(
      `DriveTwin: ${paths.rendererIndex} does not carry the content security policy of ` +
        'main/csp.ts (CSP_META_TAG): the page runs without it',
    );
  }
}

function start(): void {
  lockSession(session.defaultSession);
  checkRendererPolicy();

  const dbPath = databasePath();
  const engine = new EngineSupervisor({ dbPath, utilityProcess: engineForker });
  const { watcher, snapshot } = watchSystemDrives();
  watcher.on('error', (e: Error) => console.error(`DriveTwin: drive list: ${e.message}`));
  const backend = createBackend({
    engine,
    listDrives: () => watcher.poll(),
    snapshot,
    drivesChanges: watcher,
    dialogs: electronDialogs(() => win),
    eject: ejectTool(),
    transport: 'electron',
    version: app.getVersion(),
    pickedImagesFile: pickedImagesFile(dbPath),
  });
  const unbindIpc = bindIpc({ backend, window: () => win, indexUrl });

  const status = new JobStatus();
  let shown = '';
  const showStatus = (): void => {
    if (!win || win.isDestroyed()) return;
    const overall = status.overall();
    const title = progressTitle(overall);
    const bar = taskbarProgress(overall);
    const now = `${title}\n${bar.mode}:${bar.value.toFixed(3)}`;
    if (now === shown) return;
    shown = now;
    win.setTitle(title);
    win.setProgressBar(bar.value, { mode: bar.mode });
  };
  const notices = new Set<Notification>(); // held until closed, or a click may find nothing
  const notify = (notice: Notice): void => {
    if (!Notification.isSupported()) return;
    const n = new Notification({ title: notice.title, body: notice.body });
    notices.add(n);
    n.on('click', () => {
      if (!win) return;
      if (win.isMinimized()) win.restore();
      win.show();
      win.focus();
    });
    n.on('close', () => notices.delete(n));
    n.show();
  };
  const inhibitor = new SleepInhibitor(powerSaveInhibit);
  backend.onEvent((event, payload) => {
    inhibitor.onEvent(event, payload);
    const notice = status.onEvent(event, payload);
    showStatus();
    if (notice) notify(notice);
  });
  watcher.start();

  // Closing the app while jobs run asks first; either way jobs stop cleanly.
  let stopConfirmed = false;
  const confirmStop = (): boolean => {
    if (stopConfirmed || status.running === 0) return true;
    const prompt = stopPrompt(status.running);
    const options: Electron.MessageBoxSyncOptions = {
      type: 'warning',
      message: prompt.message,
      detail: prompt.detail,
      buttons: prompt.buttons,
      defaultId: 0,
      cancelId: 0,
      noLink: true,
    };
    const answer = win ? dialog.showMessageBoxSync(win, options) : 1;
    stopConfirmed = answer === 1;
    return stopConfirmed;
  };

  const createWindow = (): void => {
    const w = new BrowserWindow(
      windowOptions({
        preload: paths.preload,
        dark: nativeTheme.shouldUseDarkColors,
        devTools: !app.isPackaged,
      }),
    );
    win = w;
    shown = '';
    // Windows tells only windows that a drive came or went.
    if (process.platform === 'win32') w.hookWindowMessage(WM_DEVICECHANGE, () => watcher.signal());
    // The title is ours: it carries the progress.
    w.on('page-title-updated', (event) => event.preventDefault());
    w.once('ready-to-show', () => w.show());
    w.on('close', (event) => {
      // On macOS the app outlives its window (and its jobs go on); elsewhere closing
      // the window quits.
      if (process.platform !== 'darwin' && !confirmStop()) event.preventDefault();
    });
    w.on('closed', () => {
      if (win === w) win = null;
    });
    showStatus();
    w.loadFile(paths.rendererIndex).catch((e: Error) => {
      console.error(`DriveTwin: can't load ${paths.rendererIndex}: ${e.message}`);
    });
  };

  nativeTheme.on('updated', () => {
    win?.setBackgroundColor(windowBackground(nativeTheme.shouldUseDarkColors));
  });
  app.on('second-instance', () => {
    if (!win) return createWindow();
    if (win.isMinimized()) win.restore();
    win.show();
    win.focus();
  });
  app.on('activate', () => {
    if (!win) createWindow();
  });
  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit();
  });

  let quitting: 'no' | 'stopping' | 'done' = 'no';
  app.on('before-quit', (event) => {
    if (quitting === 'done') return;
    event.preventDefault();
    if (quitting === 'stopping' || !confirmStop()) return;
    quitting = 'stopping';
    win?.setTitle(`Stopping… — ${APP_NAME}`);
    watcher.stop();
    unbindIpc();
    engine
      .close()
      .catch((e: Error) => console.error(`DriveTwin: stopping the engine: ${e.message}`))
      .finally(() => {
        inhibitor.close();
        backend.close();
        quitting = 'done';
        app.quit();
      });
  });

  createWindow();
}

// Before the lock: the name decides the user data folder, where the lock lives.
app.setName(APP_NAME);
if (!app.requestSingleInstanceLock()) {
  // Another DriveTwin runs: it comes to the front ('second-instance'), this one leaves.
  app.quit();
} else {
  if (process.platform === 'win32') app.setAppUserModelId(APP_ID); // notifications need it
  if (process.platform === 'linux') app.setDesktopName(LINUX_DESKTOP_FILE); // taskbar progress
  app.enableSandbox();
  app.on('web-contents-created', (_event, contents) => lockDown(contents));
  app
    .whenReady()
    .then(start)
    .catch((e: Error) => {
      dialog.showErrorBox(`${APP_NAME} could not start`, e.stack ?? e.message);
      app.exit(1);
    });
}
