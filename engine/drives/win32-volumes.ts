// The volumes on one Windows disk, found and let go of as Raspberry Pi Imager does
// (src/windows/diskpart_util.cpp): every volume Windows has (FindFirstVolumeW /
// FindNextVolumeW) placed on its disks by IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS — not only
// those a partition's AccessPaths name: a volume without a letter, a hidden or dynamic
// disk's volume is found too — then each opened, locked (FSCTL_LOCK_VOLUME, retried while
// Explorer, an antivirus or the indexer let go) and dismounted (FSCTL_DISMOUNT_VOLUME:
// Microsoft documents that only NTFS treats a locked volume as dismounted). The handles
// hold the locks until the drive is closed. After the copy the disk reads its new table
// (IOCTL_DISK_UPDATE_PROPERTIES, then IOCTL_DISK_ARE_VOLUMES_READY); an eject works with
// no drive letter (IOCTL_STORAGE_EJECT_MEDIA on a volume of the disk, or on the disk).

import { DriveError } from './system';
import type { VolumeExtent, Win32Calls } from './win32-kernel';

/** A volume with a part on the disk. */
export interface DiskVolume {
  /** \\?\Volume{…}\ */
  name: string;
  /** Its drive letters and folder mounts (E:\); none for a volume without a letter. */
  paths: string[];
  extents: VolumeExtent[];
}

/** Locking a volume: tries, and the first wait (doubled each time): 0.25 + 0.5 + … ≈ 8 s. */
const LOCK_TRIES = 6;
const LOCK_FIRST_WAIT_MS = 250;
/** How long Windows may take to bring the new volumes up before the copy says it is done. */
const VOLUMES_READY_MS = 10_000;

export const physicalDrive = (disk: number): string => `\\\\.\\PhysicalDrive${disk}`;

/** "E:" for a volume with a letter, else its \\?\Volume{…} name. */
export function volumeLabel(v: DiskVolume): string {
  const letter = v.paths.find((p) => /^[A-Z]:\\$/i.test(p));
  return letter ? letter.slice(0, 2).toUpperCase() : v.name.replace(/\\$/, '');
}

/** Every volume with an extent on disk `disk`. A volume that can't say where it lies (an empty reader) is on none. */
export async function volumesOnDisk(win: Win32Calls, disk: number): Promise<DiskVolume[]> {
  const found: DiskVolume[] = [];
  for (const name of await win.volumes()) {
    const extents = await win.volumeExtents(name).catch(() => []);
    if (!extents.some((e) => e.disk === disk)) continue;
    const paths = await win.volumePaths(name).catch(() => []);
    found.push({ name, paths, extents: extents.filter((e) => e.disk === disk) });
  }
  return found;
}

/** Who holds `v`, in words: Restart Manager's answer, else what `more` finds (the programs running from it). */
async function holderOf(
  win: Win32Calls,
  v: DiskVolume,
  more: (roots: string[]) => Promise<string[]>,
): Promise<string> {
  const named = await win
    .holders([...v.paths, v.name])
    .then((hs) => hs.map((h) => `${h.name} (PID ${h.pid})`))
    .catch(() => []);
  const names = named.length > 0 ? named : await more(v.paths).catch(() => []);
  const label = volumeLabel(v);
  if (names.length === 0) {
    return `a program has files open on ${label} (Windows does not say which): close what uses it and try again`;
  }
  const one = names.length === 1;
  return `${names.join(', ')} ${one ? 'holds' : 'hold'} ${label}: close ${one ? 'it' : 'them'} and try again`;
}

/**
 * Each volume opened, locked (retried with growing waits) and dismounted; the handles,
 * returned, keep them so until closed. A lock that can't be had names its holder where
 * Windows can (`more`: a second way to ask). Nothing stays held when one fails.
 */
export async function letGoOfVolumes(
  win: Win32Calls,
  drive: string,
  volumes: DiskVolume[],
  sleep: (ms: number) => Promise<void>,
  more: (roots: string[]) => Promise<string[]> = async () => [],
): Promise<number[]> {
  const handles: number[] = [];
  try {
    for (const v of volumes) {
      const label = volumeLabel(v);
      const device = v.name.replace(/\\$/, '');
      const handle = await win.open(device).catch((e: Error) => {
        throw new DriveError(
          `${label} on ${drive} can't be opened to lock it: ${e.message}`,
          'EBUSY',
        );
      });
      handles.push(handle);
      for (let tries = 1, wait = LOCK_FIRST_WAIT_MS; ; tries++, wait *= 2) {
        try {
          await win.lockVolume(handle);
          break;
        } catch {
          if (tries === LOCK_TRIES)
            throw DriveError.busy(`${label} on ${drive}`, await holderOf(win, v, more));
          await sleep(wait);
        }
      }
      await win.dismountVolume(handle).catch((e: Error) => {
        throw new DriveError(
          `Windows did not dismount ${label} on ${drive}: ${e.message}`,
          'EBUSY',
        );
      });
    }
  } catch (e) {
    await closeAll(win, handles);
    throw e;
  }
  return handles;
}

export async function closeAll(win: Win32Calls, handles: number[]): Promise<void> {
  for (const h of handles.splice(0).reverse()) await win.close(h).catch(() => undefined);
}

/** Write errors through which Windows says "access denied" (libuv: EPERM, EACCES; EBADF on some handles). */
const REFUSED = new Set(['EPERM', 'EACCES', 'EBADF']);

/**
 * A write Windows refused, said so: which volume on the disk it fell in (or the disk's
 * volumes, where it fell in none). Null for any other error.
 */
export function refusedWrite(
  e: unknown,
  offset: number,
  length: number,
  volumes: DiskVolume[],
): Error | null {
  const error = e as { code?: string; cause?: { code?: string } };
  const code = error.code ?? error.cause?.code;
  if (!code || !REFUSED.has(code)) return null;
  const hit = volumes.filter((v) =>
    v.extents.some((x) => offset < x.offset + x.length && x.offset < offset + length),
  );
  const named = (hit.length > 0 ? hit : volumes).map(volumeLabel);
  const which = named.length > 0 ? ` (${named.join(', ')})` : '';
  return new DriveError(
    `Windows refused the write at byte ${offset}: a volume on this disk is still in use${which}; close what uses it and resume (${code})`,
    code,
  );
}

/** `fn`, or null after `ms` (it goes on, unwatched). */
function within<T>(ms: number, fn: Promise<T>): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  return Promise.race([fn, late]).finally(() => clearTimeout(timer));
}

/**
 * After the copy: disk `disk` reads its new partition table while the old volumes are
 * still held, they are let go of, and Windows is given time to bring up the new ones.
 * Throws when the disk could not be asked (the caller says so in its note).
 */
export async function rereadDisk(win: Win32Calls, disk: number, held: number[]): Promise<void> {
  let handle: number | null = null;
  try {
    handle = await win.open(physicalDrive(disk));
    await win.updateProperties(handle);
  } finally {
    await closeAll(win, held);
  }
  const h = handle;
  await within(
    VOLUMES_READY_MS,
    win.volumesReady(h).catch(() => undefined),
  );
  await win.close(h).catch(() => undefined);
}

/**
 * Disk `disk` ejected with or without a drive letter: its volumes let go of (locked,
 * dismounted; a holder named), then IOCTL_STORAGE_EJECT_MEDIA sent through the first of
 * them — a user may open a removable disk's volume, not the disk — or, where it has
 * none, through the disk itself.
 */
export async function ejectDisk(
  win: Win32Calls,
  disk: number,
  sleep: (ms: number) => Promise<void>,
  more?: (roots: string[]) => Promise<string[]>,
): Promise<void> {
  const drive = physicalDrive(disk);
  const volumes = await volumesOnDisk(win, disk);
  const held = await letGoOfVolumes(win, drive, volumes, sleep, more);
  try {
    const through = held[0] ?? (await win.open(drive));
    if (held.length === 0) held.push(through);
    await win.ejectMedia(through);
  } finally {
    await closeAll(win, held);
  }
}
