// "Safe to remove" after a copy, on every system: Linux powers the drive off
// (udisksctl, which also asks udisks to let go of it) or ejects it (eject(1)); macOS
// `diskutil eject` — retried after `diskutil unmountDisk force` when a program keeps it
// busy, and said so; Windows lets go of the disk's volumes and sends
// IOCTL_STORAGE_EJECT_MEDIA (engine/drives/win32-volumes.ts), which needs no drive
// letter. Only a drive DriveTwin lists, not the system drive, and not a loop device
// (there is nothing to unplug). Linux refuses a mounted drive; macOS and Windows unmount
// what they mounted as part of the eject.

import type { Drive } from '../engine/drives/classify';
import { DISKUTIL } from '../engine/drives/darwin';
import { diskNumber } from '../engine/drives/win32';
import { liveWin32, type Win32Calls } from '../engine/drives/win32-kernel';
import { ejectDisk } from '../engine/drives/win32-volumes';
import { DriveError } from '../engine/drives/system';
import type { Capabilities, EjectResult } from '../preload/api';
import { findDrive } from './api-drives';
import { ApiError } from './api-error';
import { onPath } from './programs';

export type EjectTool = Capabilities['eject'];

/** What this system can make a drive safe to remove with. */
export function ejectTool(
  platform: NodeJS.Platform = process.platform,
  find: (name: string) => string | null = onPath,
  win: () => Win32Calls | null = liveWin32,
): EjectTool {
  if (platform === 'darwin') return 'diskutil';
  if (platform === 'win32') return win() ? 'windows' : null;
  if (platform !== 'linux') return null;
  if (find('udisksctl')) return 'udisksctl';
  if (find('eject')) return 'eject';
  return null;
}

/** The words of a failed run (runProgram's error carries stderr). */
const said = (e: unknown): string =>
  ((e as Error & { stderr?: string }).stderr || (e as Error).message).trim();

/** macOS: eject; refused, unmount by force and eject again. Returns what had to be forced, or null. */
async function diskutilEject(
  disk: string,
  run: (program: string, args: string[]) => Promise<string>,
): Promise<string | null> {
  try {
    await run(DISKUTIL, ['eject', disk]);
    return null;
  } catch (e) {
    await run(DISKUTIL, ['unmountDisk', 'force', disk]);
    await run(DISKUTIL, ['eject', disk]);
    return said(e).split('\n')[0];
  }
}

export async function ejectDrive(
  p: string,
  drives: Drive[],
  tool: EjectTool,
  run: (program: string, args: string[]) => Promise<string>,
  win: () => Win32Calls | null = liveWin32,
): Promise<EjectResult> {
  const drive = findDrive(drives, p);
  if (!drive || drive.kind !== 'block') {
    throw new ApiError('not-found', `${p} is not a drive DriveTwin lists (already unplugged?)`);
  }
  if (drive.backingFile !== null) {
    return { ejected: false, message: `${p} is a loop device: there is nothing to unplug.` };
  }
  if (drive.system) throw new ApiError('refused', `${p} holds the running system`);
  const linux = tool === 'udisksctl' || tool === 'eject';
  if (linux && drive.mountpoints.length > 0) {
    throw new ApiError('refused', `${p} is in use (mounted at ${drive.mountpoints.join(', ')})`);
  }
  if (tool === null) {
    return {
      ejected: false,
      message: 'This system has no way to eject it here: unplug it once its light stops.',
    };
  }
  const safe = `${drive.name} is safe to unplug now.`;
  try {
    if (tool === 'udisksctl') await run('udisksctl', ['power-off', '--block-device', drive.path]);
    else if (tool === 'eject') await run('eject', [drive.path]);
    else if (tool === 'diskutil') {
      const forced = await diskutilEject(drive.path, run);
      if (forced) {
        return {
          ejected: true,
          message: `${safe} macOS refused at first (${forced}): it was unmounted by force.`,
        };
      }
    } else {
      const n = diskNumber(drive.path);
      const k = win();
      if (n === null || !k) throw new Error(`${drive.path} is not a disk this can eject`);
      await ejectDisk(k, n, (ms) => new Promise((r) => setTimeout(r, ms)));
    }
  } catch (e) {
    const why = e instanceof DriveError && e.holder ? e.holder : said(e);
    return { ejected: false, message: `It could not be ejected: ${why}` };
  }
  return { ejected: true, message: safe };
}
