// "Safe to remove" after a copy: the drive is powered off (udisksctl, which also asks
// udisks to let go of it) or ejected (eject(1)), whichever this system has. Only a
// drive DriveTwin lists, not the system drive, nothing mounted, and not a loop device
// (there is nothing to unplug).

import type { Drive } from '../engine/drives/classify';
import type { Capabilities, EjectResult } from '../preload/api';
import { findDrive } from './api-drives';
import { ApiError } from './api-error';
import { onPath } from './programs';

export type EjectTool = Capabilities['eject'];

/** What this system can make a drive safe to remove with (Linux only so far). */
export function ejectTool(
  platform: NodeJS.Platform = process.platform,
  find: (name: string) => string | null = onPath,
): EjectTool {
  if (platform !== 'linux') return null;
  if (find('udisksctl')) return 'udisksctl';
  if (find('eject')) return 'eject';
  return null;
}

export async function ejectDrive(
  p: string,
  drives: Drive[],
  tool: EjectTool,
  run: (program: string, args: string[]) => Promise<string>,
): Promise<EjectResult> {
  const drive = findDrive(drives, p);
  if (!drive || drive.kind !== 'block') {
    throw new ApiError('not-found', `${p} is not a drive DriveTwin lists (already unplugged?)`);
  }
  if (drive.backingFile !== null) {
    return { ejected: false, message: `${p} is a loop device: there is nothing to unplug.` };
  }
  if (drive.system) throw new ApiError('refused', `${p} holds the running system`);
  if (drive.mountpoints.length > 0) {
    throw new ApiError('refused', `${p} is in use (mounted at ${drive.mountpoints.join(', ')})`);
  }
  if (tool === null) {
    return {
      ejected: false,
      message: 'This system has neither udisksctl nor eject: unplug it once its light stops.',
    };
  }
  try {
    if (tool === 'udisksctl') await run('udisksctl', ['power-off', '--block-device', drive.path]);
    else await run('eject', [drive.path]);
  } catch (e) {
    const err = e as Error & { stderr?: string };
    return {
      ejected: false,
      message: `It could not be ejected: ${(err.stderr || err.message).trim()}`,
    };
  }
  return { ejected: true, message: `${drive.name} is safe to unplug now.` };
}
