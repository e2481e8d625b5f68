// Windows' platform module (platform.ts). The sequences follow Raspberry Pi Imager's
// src/windows/diskpart_util.cpp (lock every volume of the disk, with retries and a
// growing wait, before the physical drive is written; re-read the disk afterwards) and
// etcher-sdk's lib/source-destination/block-device.ts (O_EXLOCK on \\.\PhysicalDriveN).
// etcher-sdk's lib/diskpart.ts `clean` (select disk, clean, rescan, five retries two
// seconds apart) is not taken: it wipes the partition table, and a resumed job must
// find what it committed still there.
//
//   prepare  every volume on the disk opened (\\?\Volume{…}) and locked with
//            FSCTL_LOCK_VOLUME (direct-io setFSCTL_LOCK_VOLUME), retried; the locks are
//            held until the drive is closed. NTFS treats a locked volume as
//            dismounted, and Windows lets a physical drive be written where its
//            volumes are locked (KB 942448). A refusal names the programs Windows can
//            name (those running from the volume).
//   open     \\.\PhysicalDriveN, O_RDWR | O_DIRECT | O_DSYNC | O_EXLOCK: libuv makes
//            these FILE_FLAG_NO_BUFFERING (sector-aligned I/O: the copier's buffers
//            and regions are), FILE_FLAG_WRITE_THROUGH and share mode 0; a sharing
//            violation is retried 7 times from 0.1 s doubling (Rufus, Pi Imager)
//   geometry IOCTL_DISK_GET_DRIVE_GEOMETRY_EX (direct-io getBlockDevice)
//   flush    fs.fdatasync, which libuv makes FlushFileBuffers: the disk driver sends
//            the drive a cache flush
//   close    the drive, then Update-Disk (Windows reads the new partition table while
//            the old volumes are still locked), then the volume locks
//   after    "safe to remove" once closed; eject when asked: Explorer's Eject on each
//            drive letter of the disk (IOCTL_STORAGE_EJECT_MEDIA is not in direct-io)

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
import {
  ejectScript,
  holdersScript,
  parseEject,
  parseHolders,
  rescanScript,
  STORAGE_SCRIPT,
  volumesOf,
  win32Snapshot,
} from './win32-storage';

/** How long a snapshot answers again: PowerShell takes most of a second to start. */
const SNAPSHOT_MS = 2000;
/** Locking a volume: tries, and the first wait (doubled each time): 0.25 + 0.5 + … ≈ 8 s. */
const LOCK_TRIES = 6;
const LOCK_FIRST_WAIT_MS = 250;
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

/** "E:" for a volume with a letter, else its \\?\Volume{…} path. */
function volumeLabel(volume: BlockNode): string {
  return volume.aliases.find((a) => /^[A-Z]:$/.test(a)) ?? volume.path;
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

export function win32Platform(os: OsCalls, powershellExe = powershellPath()): DrivePlatform {
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

  /** Opens and locks a volume, retrying while something still has it; the descriptor holds the lock. */
  const lockVolume = async (p: string, volume: BlockNode): Promise<number> => {
    const label = volumeLabel(volume);
    let fd: number;
    try {
      fd = await os.open(volume.path, ['O_RDWR']);
    } catch (e) {
      throw new DriveError(
        `${label} on ${p} can't be opened to lock it: ${(e as Error).message}`,
        'EBUSY',
      );
    }
    for (let tries = 1, wait = LOCK_FIRST_WAIT_MS; ; tries++, wait *= 2) {
      try {
        await os.lockVolume(fd);
        return fd;
      } catch {
        if (tries === LOCK_TRIES) break;
        await os.sleep(wait);
      }
    }
    await os.close(fd);
    const roots = volume.aliases.filter((a) => /^[A-Z]:\\$/.test(a));
    const names =
      roots.length > 0 ? parseHolders((await powershell(holdersScript(roots))).stdout) : [];
    const holder =
      names.length > 0
        ? `${names.join(', ')} ${names.length === 1 ? 'runs' : 'run'} from ${label}: close ${names.length === 1 ? 'it' : 'them'} and try again`
        : `a program has files open on ${label} (Windows does not say which): close what uses it and try again`;
    throw DriveError.busy(`${label} on ${p}`, holder);
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
      const snapshot = snapshots.fresh(); // the volumes there are now
      const { node } = driveNode(p, snapshot);
      const locks: number[] = [];
      const unlock = async (): Promise<void> => {
        for (const fd of locks.splice(0).reverse()) await os.close(fd).catch(() => undefined);
      };
      try {
        if (writable) {
          for (const volume of volumesOf(snapshot, node)) locks.push(await lockVolume(p, volume));
        }
      } catch (e) {
        await unlock();
        throw e;
      }
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
        return openedDrive(os, drive, async () => {
          const r = await powershell(rescanScript(diskNumber(node.path) as number));
          if (r.code === 0) notRescanned.delete(p);
          else notRescanned.set(p, r.stderr.trim() || `Update-Disk exited with ${r.code}`);
          await unlock();
        });
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
      if (!eject) return { safeToRemove: true, ejected: false, note };
      const n = diskNumber(p);
      if (n === null) return { safeToRemove: true, ejected: false, note };
      const r = await powershell(ejectScript(n));
      let seen: { ejected: boolean; letters: string[] } = { ejected: false, letters: [] };
      try {
        seen = parseEject(r.stdout);
      } catch {
        // no answer: not ejected
      }
      if (seen.ejected) return { safeToRemove: true, ejected: true, note: null };
      const why =
        seen.letters.length === 0
          ? 'Windows gave it no drive letter to eject'
          : `Windows did not eject ${seen.letters.join(', ')}`;
      return {
        safeToRemove: true,
        ejected: false,
        note: `not ejected: ${why}; use "Safely Remove Hardware"`,
      };
    },
    // No flock on Windows, and share mode 0 (O_EXLOCK) would shut out the job's own
    // second open of the image: image files get no OS lock here; the job's row in the
    // database still refuses a second DriveTwin writer.
    lockFile: async () => undefined,
  };
}
