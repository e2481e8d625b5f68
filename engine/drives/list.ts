// The drives this machine has, for the drive list and `drivetwin drives`.

import { type Drive, type DrivelistEntry, classifyDrives, driveFromDrivelist } from './classify';
import { drivePlatform } from './platform';
import { formatBytes } from '../size';
import { naturalCompare, SYSTEM_MOUNTS, type SystemSnapshot } from './topology';

type DrivelistModule = { list(): Promise<DrivelistEntry[]> };

/**
 * drivelist's drives described by the system's own picture (lsblk/sysfs, diskutil,
 * Get-Disk…), plus Linux loop devices that have a backing file; sorted by path.
 */
export async function listDrives(): Promise<Drive[]> {
  // Loaded here, not at the top: the CLI's start-up stays lean for every other command.
  const drivelist = (await import('drivelist')) as DrivelistModule;
  const entries = await drivelist.list();
  let snapshot: SystemSnapshot;
  try {
    snapshot = drivePlatform().readSnapshot();
  } catch {
    // diskutil or PowerShell failed: what drivelist alone says, the Windows drive included.
    const systemDrive = process.env.SystemDrive ? [`${process.env.SystemDrive}\\`] : [];
    const systemMounts = new Set([...SYSTEM_MOUNTS, ...systemDrive]);
    return entries
      .map((entry) => driveFromDrivelist(entry, systemMounts))
      .sort((a, b) => naturalCompare(a.path, b.path));
  }
  return classifyDrives(entries, snapshot);
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
