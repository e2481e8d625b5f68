// The window's security settings and the IPC sender check, as plain functions:
// main/index.ts and main/ipc.ts apply them, tests run them under Node.

import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const APP_NAME = 'DriveTwin';
export const APP_ID = 'org.drivetwin.app';
/**
 * The .desktop file the Linux packages install (electron-builder names it after
 * linux.executableName): taskbar progress and portals find the app through it.
 */
export const LINUX_DESKTOP_FILE = 'drivetwin.desktop';

/** Where the built files sit, from dist/main/ (this file's compiled folder). */
export interface AppPaths {
  /** dist/preload/index.js */
  preload: string;
  /** dist/renderer/index.html */
  rendererIndex: string;
}

export function appPaths(distMain: string): AppPaths {
  const dist = path.resolve(distMain, '..');
  return {
    preload: path.join(dist, 'preload', 'index.js'),
    rendererIndex: path.join(dist, 'renderer', 'index.html'),
  };
}

/** The security-relevant part of Electron's BrowserWindowConstructorOptions, spelled out. */
export interface WindowOptions {
  width: number;
  height: number;
  minWidth: number;
  minHeight: number;
  title: string;
  show: boolean;
  backgroundColor: string;
  autoHideMenuBar: boolean;
  webPreferences: {
    preload: string;
    contextIsolation: true;
    sandbox: true;
    nodeIntegration: false;
    nodeIntegrationInWorker: false;
    nodeIntegrationInSubFrames: false;
    webSecurity: true;
    allowRunningInsecureContent: false;
    webviewTag: false;
    experimentalFeatures: false;
    navigateOnDragDrop: false;
    safeDialogs: true;
    spellcheck: false;
    devTools: boolean;
  };
}

/** The window's background before the page paints, matching the renderer's themes. */
export function windowBackground(dark: boolean): string {
  return dark ? '#16181d' : '#f7f7f8';
}

export function windowOptions(opts: {
  preload: string;
  dark: boolean;
  /** Developer tools: for development builds only. */
  devTools: boolean;
}): WindowOptions {
  return {
    width: 1120,
    height: 780,
    minWidth: 760,
    minHeight: 540,
    title: APP_NAME,
    // Shown on 'ready-to-show': no white flash before the first paint.
    show: false,
    backgroundColor: windowBackground(opts.dark),
    autoHideMenuBar: true,
    webPreferences: {
      preload: opts.preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      experimentalFeatures: false,
      // A file dropped on the window must not replace the app with that file.
      navigateOnDragDrop: false,
      safeDialogs: true,
      spellcheck: false,
      devTools: opts.devTools,
    },
  };
}

// ---------------------------------------------------------------------------
// Who may call the backend

/** What main/ipc.ts knows about the frame behind an IPC message. */
export interface SenderInfo {
  /** event.senderFrame?.url — null when the frame is gone or navigated away. */
  frameUrl: string | null | undefined;
  /** The frame is its page's top frame (not an iframe). */
  isMainFrame: boolean;
  /** event.sender.id */
  webContentsId: number;
}

export interface TrustedPage {
  /** file:// URL of dist/renderer/index.html. */
  indexUrl: string;
  /** Our window's webContents.id, or null while there is no window. */
  webContentsId: number | null;
  platform?: NodeJS.Platform;
}

export function indexUrlOf(rendererIndex: string): string {
  return pathToFileURL(rendererIndex).href;
}

/** The file a file:// URL names (query and hash ignored), or null for any other URL. */
function fileOf(url: string, platform: NodeJS.Platform): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== 'file:') return null;
  parsed.search = '';
  parsed.hash = '';
  try {
    // Decoded, so that two spellings of one path (%7E and ~) compare equal.
    const file = fileURLToPath(parsed, { windows: platform === 'win32' });
    // Windows paths are case-insensitive, and Chromium upper-cases the drive letter.
    return platform === 'win32' ? file.toLowerCase() : file;
  } catch {
    return null;
  }
}

/**
 * True only for a message from the top frame of our own window while it shows our own
 * index.html. Anything else — another window, an iframe, a page it navigated to, a
 * frame already gone — is refused before a handler runs.
 */
export function isTrustedSender(sender: SenderInfo, trusted: TrustedPage): boolean {
  const platform = trusted.platform ?? process.platform;
  if (trusted.webContentsId === null || sender.webContentsId !== trusted.webContentsId) {
    return false;
  }
  if (!sender.isMainFrame || !sender.frameUrl) return false;
  const file = fileOf(sender.frameUrl, platform);
  return file !== null && file === fileOf(trusted.indexUrl, platform);
}

/**
 * Web permissions the page may have: copying text to the clipboard (a status line, a
 * path). No camera, microphone, location, notifications (main shows those), HID, USB…
 */
export function permissionAllowed(permission: string): boolean {
  return permission === 'clipboard-sanitized-write';
}

/** The window never leaves our page: every navigation and every new window is refused. */
export function allowNavigation(_url: string): false {
  return false;
}
