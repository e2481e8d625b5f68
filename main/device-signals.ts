// The system's own word that a drive came, went or changed, so the drive list is read
// again at once instead of at the next poll:
//   Linux    inotify on /dev (fs.watch): a disk or partition node appears or goes
//   macOS    `diskutil activity`, DiskArbitration's events as lines ("***DiskAppeared",
//            "***DiskDisappeared", "***DiskDescriptionChanged" for a mount or unmount)
//   Windows  WM_DEVICECHANGE, which only a window receives: main/index.ts hooks it on
//            the app's window; without one (the web bridge) the poll alone does.
// A signal only says "look again"; what changed is what the list says.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { DISKUTIL } from '../engine/drives/darwin';

/** WM_DEVICECHANGE (winuser.h): a device or a volume arrived, left, or changed. */
export const WM_DEVICECHANGE = 0x0219;

/** Calls `onChange` at each of the system's device-change signals until the returned stop is called. */
export function watchDeviceChanges(
  onChange: () => void,
  platform: NodeJS.Platform = process.platform,
): () => void {
  if (platform === 'linux') return watchDev(onChange);
  if (platform === 'darwin') return diskutilActivity(onChange);
  return () => undefined;
}

/** Linux: disk and partition nodes in /dev (devtmpfs and udev make and remove them). */
function watchDev(onChange: () => void): () => void {
  let watcher: fs.FSWatcher;
  try {
    watcher = fs.watch('/dev', { persistent: false }, (_event, name) => {
      if (name && /^(sd|nvme|mmcblk|vd|hd|xvd|loop|sr|dm-|md)/.test(String(name))) onChange();
    });
  } catch {
    return () => undefined; // no inotify here: the poll alone
  }
  watcher.on('error', () => watcher.close());
  return () => watcher.close();
}

/** macOS: `diskutil activity` prints a line per DiskArbitration event until it is stopped. */
export function diskutilActivity(onChange: () => void, diskutil = DISKUTIL): () => void {
  let child: ChildProcess | null = spawn(diskutil, ['activity'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  child.on('error', () => (child = null)); // no diskutil: the poll alone
  child.unref();
  const lines = readline.createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    if (/^\*\*\*Disk(Appeared|Disappeared|DescriptionChanged)/.test(line)) onChange();
  });
  return () => {
    lines.close();
    child?.kill();
    child = null;
  };
}
