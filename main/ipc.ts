// Binds the handlers (main/api.ts) to Electron IPC: one ipcMain.handle per method on
// the contract's INVOKE_CHANNELS, answering the contract's Reply; the backend's events
// go to the window on EVENT_CHANNELS. No logic of its own beyond the sender check:
// only our window's top frame, showing our own index.html, is answered.

import { ipcMain, type BrowserWindow, type IpcMainInvokeEvent } from 'electron';
import { EVENT_CHANNELS, INVOKE_CHANNELS, METHODS, type Reply } from '../preload/api';
import type { Backend } from './api';
import { isTrustedSender, type SenderInfo } from './window';

export interface IpcOptions {
  backend: Backend;
  /** Our window, when there is one. */
  window: () => BrowserWindow | null;
  /** file:// URL of dist/renderer/index.html. */
  indexUrl: string;
}

/** The answer to anyone else. */
export const UNTRUSTED_SENDER: Reply = {
  ok: false,
  error: { code: 'refused', message: 'DriveTwin answers only its own window' },
};

export function senderOf(event: IpcMainInvokeEvent): SenderInfo {
  const frame = event.senderFrame;
  return {
    frameUrl: frame?.url ?? null,
    isMainFrame: frame !== null && frame.parent === null,
    webContentsId: event.sender.id,
  };
}

function liveWindow(window: () => BrowserWindow | null): BrowserWindow | null {
  const win = window();
  return win && !win.isDestroyed() && !win.webContents.isDestroyed() ? win : null;
}

/** Binds every method and forwards every event; returns the unbinding. */
export function bindIpc({ backend, window, indexUrl }: IpcOptions): () => void {
  const trusted = (sender: SenderInfo): boolean =>
    isTrustedSender(sender, {
      indexUrl,
      webContentsId: liveWindow(window)?.webContents.id ?? null,
    });

  for (const method of METHODS) {
    ipcMain.handle(
      INVOKE_CHANNELS[method],
      async (event: IpcMainInvokeEvent, ...args: unknown[]): Promise<Reply> => {
        if (!trusted(senderOf(event))) return UNTRUSTED_SENDER;
        return backend.call(method, args);
      },
    );
  }

  const unsubscribe = backend.onEvent((event, payload) => {
    const win = liveWindow(window);
    if (!win) return;
    // Events carry paths and job details: only to our page, never to one it was
    // somehow navigated to.
    const page: SenderInfo = {
      frameUrl: win.webContents.mainFrame.url,
      isMainFrame: true,
      webContentsId: win.webContents.id,
    };
    if (trusted(page)) win.webContents.send(EVENT_CHANNELS[event], payload);
  });

  return () => {
    unsubscribe();
    for (const method of METHODS) ipcMain.removeHandler(INVOKE_CHANNELS[method]);
  };
}
