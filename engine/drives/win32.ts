// Windows' platform module (platform.ts). The sequences follow Raspberry Pi Imager's
// src/windows/diskpart_util.cpp (every volume of the disk locked and dismounted, with
// retries and a growing wait, before the physical drive is written; the disk told to
// read its table again afterwards) and etcher-sdk's lib/source-destination/
// block-device.ts (O_EXLOCK on \\.\PhysicalDriveN). etcher-sdk's lib/diskpart.ts `clean`
// is not taken: the session wipes the old tables itself (session/wipe.ts), and only for
// a new job — a resumed one must find what it committed still there.
//
//   prepare  every volume with an extent on the disk (win32-volumes.ts: volume
//            enumeration + IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS, letter or not) opened,
//            locked with FSCTL_LOCK_VOLUME (retried) and dismounted with
//            FSCTL_DISMOUNT_VOLUME; the handles hold them until the drive is closed. A
//            refusal names the holder Windows can name (Restart Manager, else the
//            programs running from the volume)
//   open     \\.\PhysicalDriveN, O_RDWR | O_DIRECT | O_DSYNC | O_EXLOCK: libuv makes
//            these FILE_FLAG_NO_BUFFERING (sector-aligned I/O: the copier's buffers
//            and regions are), FILE_FLAG_WRITE_THROUGH and share mode 0; a sharing
//            violation is retried 7 times from 0.1 s doubling (Rufus, Pi Imager)
//   geometry IOCTL_DISK_GET_DRIVE_GEOMETRY_EX (direct-io getBlockDevice)
//   write    a write Windows refuses (ERROR_ACCESS_DENIED: EPERM from libuv) says which
//            volume on the disk is still in use
//   flush    fs.fdatasync, which libuv makes FlushFileBuffers: the disk driver sends
//            the drive a cache flush
//   close    the drive, then IOCTL_DISK_UPDATE_PROPERTIES (the new table read while the
//            old volumes are still held), the volumes let go of, IOCTL_DISK_ARE_VOLUMES_READY
//   after    "safe to remove" once closed; eject when asked: IOCTL_STORAGE_EJECT_MEDIA
//            through a volume of the disk or the disk itself — no drive letter needed

import * as path from 'node:path';
import type { OsCalls } from './os-calls';
import {
  DriveError,
  type DrivePlatform,
  keptSnapshot,
  openedDrive,
  type SnapshotReading,
} from './system';
import type { BlockNode, SystemSnapshot } from './topology';
import { holdersScript, parseHolders, STORAGE_SCRIPT, win32Snapshot } from './win32-storage';
import { liveWin32, type Win32Calls } from './win32-kernel';
import {
  type DiskVolume,
  ejectDisk,
  letGoOfVolumes,
  rereadDisk,
  refusedWrite,
  volumesOnDisk,
} from './win32-volumes';

/** How long a snapshot answers again: PowerShell takes most of a second to start. */
const SNAPSHOT_MS = 2000;
/** Opening the physical drive exclusively: tries, and the first wait (doubled): 0.1 + … + 3.2 ≈ 6 s. */
const OPEN_TRIES = 7;
const OPEN_FIRST_WAIT_MS = 100;

/** PowerShell with the script as -EncodedCommand: no quoting survives cmd and PowerShell both. */
export function powershellArgs(script: string): string[] {
  const encoded = Buffer.from(script, 'utf16le').toString('base64');
  return ['-NoProfile', '-NonInteractive', '-EncodedCommand', encoded];
}

/** The disk number of \\.\PhysicalDriveN (any case), or null. */
export function diskNumber(p: string): number | null {
  const m = /^\\\\[.?]\\physicaldrive(\d+)$/i.exec(p);
  return m ? Number(m[1]) : null;
}

/**
 * Windows PowerShell by its full path: the elevated engine must not run whatever the
 * user's PATH finds first.
 */
export function powershellPath(systemRoot = process.env.SystemRoot ?? 'C:\\Windows'): string {
  return path.win32.join(systemRoot, 'System32', 'WindowsPowerShell', 'v1.0', 'powershell.exe');
}

/** The picture: STORAGE_SCRIPT, one PowerShell. */
function* storageReading(powershellExe: string): SnapshotReading {
  const [r] = yield [{ command: powershellExe, args: powershellArgs(STORAGE_SCRIPT) }];
  if (r.code !== 0) throw new Error(`PowerShell's Get-Disk failed: ${r.stderr.trim()}`);
  return win32Snapshot(r.stdout);
}

/** How the platform reaches Windows beyond OsCalls: PowerShell's path, kernel32 (tests: fakes). */
export interface Win32Options {
  powershell?: string;
  /** Null: koffi did not load, and drives can't be prepared for writing. */
  win?: Win32Calls | null;
}

export function win32Platform(os: OsCalls, options: Win32Options = {}): DrivePlatform {
  const powershellExe = options.powershell ?? powershellPath();
  const win = options.win === undefined ? liveWin32() : options.win;
  const powershell = (script: string) => os.run(powershellExe, powershellArgs(script));
  const snapshots = keptSnapshot(os, () => storageReading(powershellExe), SNAPSHOT_MS);
  const readSnapshot = snapshots.get;
  const driveNode = (p: string, snapshot: SystemSnapshot): { node: BlockNode; real: string } => {
    const n = diskNumber(p);
    const node = n === null ? undefined : snapshot.topology.nodes.get(`PhysicalDrive${n}`);
    if (!node) throw new Error(`${p} is not a disk Windows lists`);
    return { node, real: p };
  };
  /** Disks whose last rescan failed, for afterCopy to say. */
  const notRescanned = new Map<string, string>();
  /** The programs running from one of `roots` (E:\): asked when Restart Manager names none. */
  const runningFrom = async (roots: string[]): Promise<string[]> =>
    roots.length > 0 ? parseHolders((await powershell(holdersScript(roots))).stdout) : [];
  const kernel = (what: string): Win32Calls => {
    if (win) return win;
    throw new DriveError(`${what}: kernel32 could not be reached (koffi did not load)`, 'ENOSYS');
  };

  /**
   * The physical drive for writing, share mode 0 — held without write-sharing, Windows'
   * volume manager does not mount the partitions being written (Rufus and Pi Imager
   * rely on the same). A sharing violation (EBUSY) is retried
   * with growing waits, as Rufus (drive.c GetHandle) and Raspberry Pi Imager
   * (file_operations_windows.cpp) do: Explorer, an antivirus or the indexer often hold a
   * drive for a moment after its volumes change. Unlike them we never fall back to a
   * shared open: the claim must be exclusive (invariant 7).
   */
  const openExclusively = async (drive: string): Promise<number> => {
    for (let tries = 1, wait = OPEN_FIRST_WAIT_MS; ; tries++, wait *= 2) {
      try {
        return await os.open(drive, ['O_RDWR', 'O_DIRECT', 'O_DSYNC', 'O_EXLOCK']);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || tries === OPEN_TRIES) throw e;
        await os.sleep(wait);
      }
    }
  };

  return {
    system: 'win32',
    canEject: true,
    whenInUse: 'its volumes are locked before it is written',
    readSnapshot,
    snapshot: snapshots.read,
    snapshotIsDear: true,
    isDrive: (p, snapshot = readSnapshot) =>
      diskNumber(p) !== null && snapshot().topology.nodes.has(`PhysicalDrive${diskNumber(p)}`),
    isDrivePath: (p) => diskNumber(p) !== null,
    driveNode,
    fileSystemNode(file, _dev, snapshot) {
      // The volume mounted at the longest prefix of the file's path: E:\ or a folder mount.
      const full = path.win32.resolve(file).toUpperCase();
      const at = snapshot.uses
        .filter((u) => full.startsWith(u.mountpoint.toUpperCase()))
        .sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
      return at
        ? (snapshot.topology.nodes.get(path.win32.basename(at.source.replace(/\\$/, ''))) ?? null)
        : null;
    },
    blockFacts(p) {
      const { node } = driveNode(p, readSnapshot());
      return {
        size: node.size,
        logicalBlockSize: node.logicalBlockSize,
        serial: node.serial,
        backingFile: null,
      };
    },
    async openDrive(p, writable) {
      const snapshot = await snapshots.read(); // the disk as it is now, without blocking
      const { node } = driveNode(p, snapshot);
      const n = diskNumber(node.path) as number;
      let volumes: DiskVolume[] = [];
      let held: number[] = [];
      if (writable) {
        const k = kernel(`${p} can't be prepared for writing`);
        volumes = await volumesOnDisk(k, n);
        held = await letGoOfVolumes(k, p, volumes, os.sleep, runningFrom);
      }
      const unlock = async (): Promise<void> => {
        for (const h of held.splice(0).reverse()) await win!.close(h).catch(() => undefined);
      };
      let fd: number;
      try {
        fd = writable
          ? await openExclusively(node.path)
          : await os.open(node.path, ['O_RDONLY', 'O_DIRECT']);
      } catch (e) {
        await unlock();
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EBUSY') throw e;
        const holder = `another program kept ${node.path} open (Explorer, an antivirus, the indexer?): try again`;
        throw DriveError.busy(p, holder);
      }
      try {
        const g = await os.geometry(fd);
        const drive = {
          path: p,
          rawPath: node.path,
          fd,
          size: g.size,
          logicalBlockSize: g.logicalSectorSize,
        };
        if (!writable) return openedDrive(os, drive);
        const opened = openedDrive(os, drive, async () => {
          try {
            await rereadDisk(win!, n, held);
            notRescanned.delete(p);
          } catch (e) {
            notRescanned.set(p, (e as Error).message);
          }
        });
        return {
          ...opened,
          write: (buffer, offset) =>
            opened.write(buffer, offset).catch((e: NodeJS.ErrnoException) => {
              throw refusedWrite(e, offset, buffer.length, volumes) ?? e;
            }),
        };
      } catch (e) {
        await os.close(fd);
        await unlock();
        throw e;
      }
    },
    async afterCopy(p, eject) {
      const rescan = notRescanned.get(p);
      const note = rescan
        ? `Windows did not read its new partition table (${rescan}): unplug it and plug it in again to see it`
        : null;
      const n = diskNumber(p);
      if (!eject || n === null) return { safeToRemove: true, ejected: false, note };
      try {
        await ejectDisk(kernel(`${p} can't be ejected`), n, os.sleep, runningFrom);
        return { safeToRemove: true, ejected: true, note: null };
      } catch (e) {
        const why = e instanceof DriveError && e.holder ? e.holder : (e as Error).message;
        return {
          safeToRemove: true,
          ejected: false,
          note: `not ejected (${why}); use "Safely Remove Hardware"`,
        };
      }
    },
    // No flock on Windows, and share mode 0 (O_EXLOCK) would shut out the job's own
    // second open of the image: image files get no OS lock here; the job's row in the
    // database still refuses a second DriveTwin writer.
    lockFile: async () => undefined,
  };
}
