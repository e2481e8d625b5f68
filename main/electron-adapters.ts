// The Electron side of main/api.ts's dependencies, for main/index.ts: the utility
// process that runs the engine, the native open/save dialogs, and keeping the machine
// awake during a copy. Everything else in main/ is plain Node and never imports electron.

import { BrowserWindow, dialog, powerSaveBlocker, utilityProcess } from 'electron';
import type { Dialogs } from './api';
import type { UtilityForker } from './engine-links';
import type { Inhibit } from './sleep-inhibitor';

/** Electron's utilityProcess, as main/engine-links.ts wants it (checked here against electron.d.ts). */
export const engineForker: UtilityForker = utilityProcess;

const IMAGE_FILTERS = [
  { name: 'Disk images', extensions: ['img', 'iso', 'bin', 'raw', 'dd', 'hdd', 'dmg'] },
  { name: 'All files', extensions: ['*'] },
];

/** Native dialogs, attached to `window()` when there is one. */
export function electronDialogs(window: () => BrowserWindow | null): Dialogs {
  return {
    async open() {
      const options: Electron.OpenDialogOptions = {
        title: 'Choose an image to copy from',
        properties: ['openFile'],
        filters: IMAGE_FILTERS,
      };
      const win = window();
      const result = win
        ? await dialog.showOpenDialog(win, options)
        : await dialog.showOpenDialog(options);
      return result.canceled || result.filePaths.length === 0 ? null : result.filePaths[0];
    },
    async save() {
      const options: Electron.SaveDialogOptions = {
        title: 'Write the copy to an image file',
        defaultPath: 'drivetwin.img',
        filters: IMAGE_FILTERS,
        properties: ['createDirectory', 'showOverwriteConfirmation'],
      };
      const win = window();
      const result = win
        ? await dialog.showSaveDialog(win, options)
        : await dialog.showSaveDialog(options);
      return result.canceled || !result.filePath ? null : result.filePath;
    },
  };
}

/** While a copy runs: the system may turn the screen off, but not suspend. */
export const powerSaveInhibit: Inhibit = () => {
  const id = powerSaveBlocker.start('prevent-app-suspension');
  return () => powerSaveBlocker.stop(id);
};
