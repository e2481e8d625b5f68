// The one place that knows which system DriveTwin runs on. Each system has one small
// module behind the same interface — linux.ts, darwin.ts, win32.ts — chosen once at
// start-up; the job, the copier, the claim and the safety rules ask this module and
// never which system it is.
//
// A platform module says three things:
// - what the drives are: one picture of disks, partitions, volumes and what is mounted
//   (topology.ts's SystemSnapshot), read from lsblk/sysfs, `diskutil … -plist` or
//   PowerShell's Get-Disk / Get-Partition / Get-Volume;
// - how a drive is opened: for writing after it is prepared (unmounted, its volumes
//   locked), uncached, exclusively; flushed so that "flushed" means on the drive;
// - what happens after a copy: the partition table read again, an optional eject, and
//   whether it is safe to remove.
// Every call into the system goes through an OsCalls (os-calls.ts), so tests record
// each module's sequence against a fake.

import type { OsCalls } from './os-calls';
import type { BlockFacts, DrivePlatform } from './system';
import { blockInfoOf, type BlockInfo } from './topology';

export {
  type BlockFacts,
  DriveError,
  type DrivePlatform,
  type OpenedDrive,
  type Removal,
} from './system';

let chosen: DrivePlatform | null = null;

/** This system's module, chosen once. */
export function drivePlatform(): DrivePlatform {
  if (!chosen) {
    // Required here, not imported at the top: the CLI loads only this system's module.
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { liveOsCalls } = require('./os-calls') as typeof import('./os-calls');
    const os: OsCalls = liveOsCalls();
    if (process.platform === 'darwin') {
      chosen = (require('./darwin') as typeof import('./darwin')).darwinPlatform(os);
    } else if (process.platform === 'win32') {
      chosen = (require('./win32') as typeof import('./win32')).win32Platform(os);
    } else {
      chosen = (require('./linux') as typeof import('./linux')).linuxPlatform(os);
    }
    /* eslint-enable @typescript-eslint/no-require-imports */
  }
  return chosen;
}

/** Tests: another module in its place (null: the system's own again). */
export function useDrivePlatform(platform: DrivePlatform | null): void {
  chosen = platform;
}

export function blockFacts(p: string): BlockFacts {
  return drivePlatform().blockFacts(p);
}

/** What the system says about a drive now (any path to it). */
export function describeBlockDevice(p: string): BlockInfo {
  const platform = drivePlatform();
  const snapshot = platform.readSnapshot();
  const { node, real } = platform.driveNode(p, snapshot);
  return blockInfoOf(snapshot, node, real);
}
