// The drives this machine has, for the drive list and `drivetwin drives`.

import { type Drive, type DrivelistEntry, classifyDrives, driveFromDrivelist } from './classify';
import { type DrivePlatform, drivePlatform } from './platform';
import { formatBytes } from '../size';
import { naturalCompare, SYSTEM_MOUNTS, type SystemSnapshot } from './topology';

type DrivelistModule = { list(): Promise<DrivelistEntry[]> };

/** What drivelist alone says, the Windows drive included: the picture could not be read. */
function withoutSnapshot(entries: DrivelistEntry[]): Drive[] {
  const systemDrive = process.env.SystemDrive ? [`${process.env.SystemDrive}\\`] : [];
  const systemMounts = new Set([...SYSTEM_MOUNTS, ...systemDrive]);
  return entries
    .map((entry) => driveFromDrivelist(entry, systemMounts))
    .sort((a, b) => naturalCompare(a.path, b.path));
}

/**
 * The drive list, asked for again and again without blocking (the app's drive watcher):
 * drivelist's answer (native, on a worker thread; lsblk on Linux) each time, and the
 * system's picture read again only when it is cheap (Linux), when drivelist's answer
 * changed, or when the system said a drive changed — so a PowerShell or diskutil runs
 * once per change, not at every poll.
 */
export class DriveLister {
  private kept: { entries: string; snapshot: SystemSnapshot | null } | null = null;

  constructor(private readonly platform: DrivePlatform = drivePlatform()) {}

  /** The picture the last list was made from; null when none could be read. */
  get snapshot(): SystemSnapshot | null {
    return this.kept?.snapshot ?? null;
  }

  /** `changed`: the system signalled a change since the last list. */
  async list(changed = false): Promise<Drive[]> {
    // Loaded here, not at the top: the CLI's start-up stays lean for every other command.
    const drivelist = (await import('drivelist')) as DrivelistModule;
    const entries = await drivelist.list();
    const key = JSON.stringify(entries);
    const again = changed || !this.platform.snapshotIsDear || this.kept?.entries !== key;
    if (again) {
      const snapshot = await this.platform.snapshot().catch(() => null);
      this.kept = { entries: key, snapshot };
    }
    const snapshot = this.kept!.snapshot;
    return snapshot ? classifyDrives(entries, snapshot) : withoutSnapshot(entries);
  }
}

/**
 * drivelist's drives described by the system's own picture (lsblk/sysfs, diskutil,
 * Get-Disk…), plus Linux loop devices that have a backing file; sorted by path.
 */
export function listDrives(): Promise<Drive[]> {
  return new DriveLister().list(true);
}

/** `drivetwin drives`: aligned columns, binary units, one row a drive. */
export function formatDrivesTable(drives: Drive[]): string {
  const yesNo = (flag: boolean): string => (flag ? 'yes' : 'no');
  const header = ['PATH', 'NAME', 'SIZE', 'BLOCK', 'RM', 'RO', 'SYSTEM', 'MOUNTPOINTS'];
  const rightAligned = new Set([2, 3]);
  const rows = drives.map((d) => [
    d.path,
    d.name,
    formatBytes(d.size),
    String(d.logicalBlockSize),
    yesNo(d.removable),
    yesNo(d.readOnly),
    yesNo(d.system),
    d.mountpoints.length > 0 ? d.mountpoints.join(', ') : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, i) => {
          if (i === row.length - 1) return cell;
          return rightAligned.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]);
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
