// A fake of engine/drives/win32-kernel.ts's Win32Calls: every kernel32 or Restart
// Manager call is recorded as one line in the same list as the fake OS's calls, so a
// test reads Windows' whole sequence in order; the volumes, where they lie and what
// fails come from the test. Handles are numbered from 100 (the fake OS's descriptors from 3).

import {
  type Holder,
  type VolumeExtent,
  type Win32Calls,
  WinError,
} from '../../engine/drives/win32-kernel';

export interface FakeVolume {
  /** \\?\Volume{…}\ */
  name: string;
  paths: string[];
  extents: VolumeExtent[];
}

export interface FakeWin32Answers {
  volumes: FakeVolume[];
  /** How many FSCTL_LOCK_VOLUME calls fail (ERROR_ACCESS_DENIED) before one succeeds (Infinity: all). */
  lockFailures?: number;
  /** What Restart Manager names as holding a volume. */
  holders?: Holder[];
  /** Calls that fail, by name ('FSCTL_DISMOUNT_VOLUME', 'IOCTL_STORAGE_EJECT_MEDIA', …), with the error number. */
  fails?: Record<string, number>;
}

const ERROR_ACCESS_DENIED = 5;

export function fakeWin32(calls: string[], answers: FakeWin32Answers): Win32Calls {
  let nextHandle = 100;
  let locksFailed = 0;
  const opened = new Map<number, string>();
  const fail = (name: string, line: string): void => {
    const code = answers.fails?.[name];
    calls.push(code === undefined ? line : `${line} -> error ${code}`);
    if (code !== undefined) throw new WinError(name, code);
  };
  const ioctl = (name: string) => async (h: number) => fail(name, `${name} ${h}`);
  return {
    async volumes() {
      calls.push(`FindFirstVolumeW/FindNextVolumeW: ${answers.volumes.length} volumes`);
      return answers.volumes.map((v) => v.name);
    },
    async volumePaths(volume) {
      const v = answers.volumes.find((x) => x.name === volume)!;
      calls.push(`GetVolumePathNamesForVolumeNameW ${volume} = ${v.paths.join(' ') || '(none)'}`);
      return v.paths;
    },
    async volumeExtents(volume) {
      const v = answers.volumes.find((x) => x.name === volume)!;
      const shown = v.extents.map((e) => `disk ${e.disk} at ${e.offset}`).join(', ');
      calls.push(`IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS ${volume} = ${shown || '(none)'}`);
      return v.extents;
    },
    async open(device) {
      fail('CreateFileW', `CreateFileW ${device} = ${nextHandle}`);
      opened.set(nextHandle, device);
      return nextHandle++;
    },
    async lockVolume(h) {
      const fails = locksFailed < (answers.lockFailures ?? 0);
      calls.push(`FSCTL_LOCK_VOLUME ${h}${fails ? ' -> ERROR_ACCESS_DENIED' : ''}`);
      if (fails) {
        locksFailed++;
        throw new WinError('FSCTL_LOCK_VOLUME', ERROR_ACCESS_DENIED);
      }
    },
    dismountVolume: ioctl('FSCTL_DISMOUNT_VOLUME'),
    updateProperties: ioctl('IOCTL_DISK_UPDATE_PROPERTIES'),
    volumesReady: ioctl('IOCTL_DISK_ARE_VOLUMES_READY'),
    ejectMedia: ioctl('IOCTL_STORAGE_EJECT_MEDIA'),
    async close(h) {
      calls.push(`CloseHandle ${h}`);
      opened.delete(h);
    },
    async holders(resources) {
      const named = (answers.holders ?? []).map((h) => `${h.name} (${h.pid})`).join(', ');
      calls.push(`RmGetList ${resources.join(' ')} = ${named || '(none)'}`);
      return answers.holders ?? [];
    },
  };
}
