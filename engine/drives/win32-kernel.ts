// The Windows calls that Node, libuv and @ronomon/direct-io don't make, through koffi:
// volumes enumerated and placed on their disks, locked and dismounted, a disk told to
// read its partition table again, media ejected, and Restart Manager asked who holds a
// volume. Each runs on koffi's worker thread (`.async`): FSCTL_DISMOUNT_VOLUME flushes a
// volume and IOCTL_DISK_ARE_VOLUMES_READY waits for Windows, and neither may hold up the
// engine's event loop or the app's. win32-volumes.ts says what is done with them; tests
// give a fake (tests/helpers/fake-win32.ts) that records the sequence.

/** A Windows error, by name where it matters here (winerror.h), with its number. */
export class WinError extends Error {
  constructor(
    readonly call: string,
    readonly winerror: number,
  ) {
    const name = WIN_ERRORS[winerror] ?? `error ${winerror}`;
    super(`${call} failed: ${name}`);
  }

  /** ERROR_ACCESS_DENIED, …: what callers branch on. */
  get code(): string {
    return WIN_ERRORS[this.winerror] ?? `WIN${this.winerror}`;
  }
}

const WIN_ERRORS: Record<number, string> = {
  1: 'ERROR_INVALID_FUNCTION',
  2: 'ERROR_FILE_NOT_FOUND',
  5: 'ERROR_ACCESS_DENIED',
  21: 'ERROR_NOT_READY',
  32: 'ERROR_SHARING_VIOLATION',
  50: 'ERROR_NOT_SUPPORTED',
  87: 'ERROR_INVALID_PARAMETER',
};

/** Where a volume lies on a disk (DISK_EXTENT). */
export interface VolumeExtent {
  disk: number;
  offset: number;
  length: number;
}

/** A program Restart Manager names (RM_PROCESS_INFO). */
export interface Holder {
  pid: number;
  name: string;
}

export interface Win32Calls {
  /** FindFirstVolumeW / FindNextVolumeW: every volume, as \\?\Volume{…}\ */
  volumes(): Promise<string[]>;
  /** GetVolumePathNamesForVolumeNameW: its drive letters and folder mounts (E:\). */
  volumePaths(volume: string): Promise<string[]>;
  /** IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS on the volume, opened without access. */
  volumeExtents(volume: string): Promise<VolumeExtent[]>;
  /** CreateFileW(GENERIC_READ | GENERIC_WRITE, sharing read and write): a handle. */
  open(device: string): Promise<number>;
  /** FSCTL_LOCK_VOLUME: fails (ERROR_ACCESS_DENIED) while anything has a file open on it. */
  lockVolume(handle: number): Promise<void>;
  /** FSCTL_DISMOUNT_VOLUME: the file system lets go of it (its caches flushed). */
  dismountVolume(handle: number): Promise<void>;
  /** IOCTL_DISK_UPDATE_PROPERTIES: the disk's partition table read again. */
  updateProperties(handle: number): Promise<void>;
  /** IOCTL_DISK_ARE_VOLUMES_READY: returns once the disk's volumes are there again. */
  volumesReady(handle: number): Promise<void>;
  /** IOCTL_STORAGE_MEDIA_REMOVAL(allow), then IOCTL_STORAGE_EJECT_MEDIA. */
  ejectMedia(handle: number): Promise<void>;
  close(handle: number): Promise<void>;
  /** Restart Manager: the programs with one of `resources` (files, folders, volume roots) open. */
  holders(resources: string[]): Promise<Holder[]>;
}

const GENERIC_READ = 0x80000000;
const GENERIC_WRITE = 0x40000000;
const FILE_SHARE_READ_WRITE = 0x1 | 0x2;
const OPEN_EXISTING = 3;
const INVALID_HANDLE_VALUE = -1;
const ERROR_NO_MORE_FILES = 18;
const ERROR_MORE_DATA = 234;

/** Control codes, winioctl.h (CTL_CODE(device, function, method, access)). */
export const CODES = {
  FSCTL_LOCK_VOLUME: 0x00090018,
  FSCTL_DISMOUNT_VOLUME: 0x00090020,
  IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS: 0x00560000,
  IOCTL_DISK_UPDATE_PROPERTIES: 0x00070140,
  IOCTL_DISK_ARE_VOLUMES_READY: 0x0007421c,
  IOCTL_STORAGE_MEDIA_REMOVAL: 0x002d4804,
  IOCTL_STORAGE_EJECT_MEDIA: 0x002d4808,
};

/** VOLUME_DISK_EXTENTS: a count, then DISK_EXTENTs of 24 bytes from byte 8. */
export function parseExtents(buffer: Buffer): VolumeExtent[] {
  const count = buffer.readUInt32LE(0);
  return [...Array(count).keys()].map((i) => ({
    disk: buffer.readUInt32LE(8 + i * 24),
    offset: Number(buffer.readBigInt64LE(16 + i * 24)),
    length: Number(buffer.readBigInt64LE(24 + i * 24)),
  }));
}

/** RM_PROCESS_INFO: RM_UNIQUE_PROCESS (12), strAppName WCHAR[256], then the rest: 668 bytes. */
const RM_PROCESS_INFO_BYTES = 668;
const RM_APP_NAME_AT = 12;

export function parseProcessInfo(buffer: Buffer, count: number): Holder[] {
  return [...Array(count).keys()].map((i) => {
    const at = i * RM_PROCESS_INFO_BYTES;
    const name = buffer.toString('utf16le', at + RM_APP_NAME_AT, at + RM_APP_NAME_AT + 512);
    return { pid: buffer.readUInt32LE(at), name: name.replace(/\0.*$/s, '') };
  });
}

/** A multi-string (MULTI_SZ) as a list. */
const multiString = (buffer: Buffer, chars: number): string[] =>
  buffer
    .toString('utf16le', 0, chars * 2)
    .split('\0')
    .filter((s) => s !== '');

/** kernel32's and Restart Manager's declarations, in koffi's C-like syntax (parsed on any system by a test). */
export const DECLARATIONS = {
  kernel32: {
    CreateFileW:
      'intptr_t __stdcall CreateFileW(const char16_t *name, uint32_t access, uint32_t share, void *security, uint32_t disposition, uint32_t flags, intptr_t template)',
    DeviceIoControl:
      'int __stdcall DeviceIoControl(intptr_t device, uint32_t code, void *input, uint32_t inputSize, _Out_ void *output, uint32_t outputSize, _Out_ uint32_t *returned, void *overlapped)',
    CloseHandle: 'int __stdcall CloseHandle(intptr_t handle)',
    FindFirstVolumeW: 'intptr_t __stdcall FindFirstVolumeW(_Out_ void *name, uint32_t length)',
    FindNextVolumeW:
      'int __stdcall FindNextVolumeW(intptr_t find, _Out_ void *name, uint32_t length)',
    FindVolumeClose: 'int __stdcall FindVolumeClose(intptr_t find)',
    GetVolumePathNamesForVolumeNameW:
      'int __stdcall GetVolumePathNamesForVolumeNameW(const char16_t *volume, _Out_ void *names, uint32_t length, _Out_ uint32_t *returned)',
    GetLastError: 'uint32_t __stdcall GetLastError()',
  },
  rstrtmgr: {
    RmStartSession:
      'uint32_t __stdcall RmStartSession(_Out_ uint32_t *session, uint32_t flags, _Out_ void *key)',
    RmRegisterResources:
      'uint32_t __stdcall RmRegisterResources(uint32_t session, uint32_t files, const char16_t **names, uint32_t apps, void *unique, uint32_t services, void *serviceNames)',
    RmGetList:
      'uint32_t __stdcall RmGetList(uint32_t session, _Out_ uint32_t *needed, _Inout_ uint32_t *count, _Out_ void *info, _Out_ uint32_t *reasons)',
    RmEndSession: 'uint32_t __stdcall RmEndSession(uint32_t session)',
  },
};

type Fn = ((...args: unknown[]) => unknown) & {
  async(...args: unknown[]): void;
};

let loaded: Win32Calls | null | undefined;

/** The system's kernel32 and Restart Manager, or null where they can't be loaded (not Windows, no koffi). */
export function liveWin32(): Win32Calls | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.platform !== 'win32') return loaded;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const koffi = require('koffi') as typeof import('koffi');
    const bind = (lib: string, decls: Record<string, string>): Record<string, Fn> => {
      const handle = koffi.load(lib);
      return Object.fromEntries(
        Object.entries(decls).map(([name, decl]) => [name, handle.func(decl) as unknown as Fn]),
      );
    };
    loaded = win32Calls(bind('kernel32.dll', DECLARATIONS.kernel32), () =>
      bind('rstrtmgr.dll', DECLARATIONS.rstrtmgr),
    );
  } catch {
    // no koffi build for this system: the callers do without, as each says
  }
  return loaded;
}

function win32Calls(k: Record<string, Fn>, rm: () => Record<string, Fn>): Win32Calls {
  /** `fn` on koffi's worker thread; its result, and GetLastError() as that thread saw it. */
  const call = (fn: Fn, ...args: unknown[]): Promise<{ result: number; error: number }> =>
    new Promise((resolve, reject) =>
      fn.async(...args, (e: Error | null, result: unknown) =>
        e ? reject(e) : resolve({ result: Number(result), error: Number(k.GetLastError()) }),
      ),
    );
  const ioctl = async (
    name: string,
    handle: number,
    code: number,
    input: Buffer | null = null,
    output: Buffer | null = null,
  ): Promise<number> => {
    const returned = [0];
    const args = [handle, code, input, input?.length ?? 0, output, output?.length ?? 0, returned];
    const { result, error } = await call(k.DeviceIoControl, ...args, null);
    if (!result) throw new WinError(name, error);
    return returned[0];
  };
  const openWith = async (device: string, access: number): Promise<number> => {
    const args = [device, access, FILE_SHARE_READ_WRITE, null, OPEN_EXISTING, 0, 0];
    const { result, error } = await call(k.CreateFileW, ...args);
    if (result === INVALID_HANDLE_VALUE) throw new WinError(`CreateFileW ${device}`, error);
    return result;
  };
  const close = async (handle: number): Promise<void> => {
    await call(k.CloseHandle, handle);
  };
  return {
    async volumes() {
      const name = Buffer.alloc(2 * 260);
      const found: string[] = [];
      const first = await call(k.FindFirstVolumeW, name, 260);
      if (first.result === INVALID_HANDLE_VALUE)
        throw new WinError('FindFirstVolumeW', first.error);
      try {
        for (;;) {
          found.push(multiString(name, 260)[0]);
          const next = await call(k.FindNextVolumeW, first.result, name, 260);
          if (next.result) continue;
          if (next.error === ERROR_NO_MORE_FILES) return found;
          throw new WinError('FindNextVolumeW', next.error);
        }
      } finally {
        await call(k.FindVolumeClose, first.result);
      }
    },
    async volumePaths(volume) {
      for (let chars = 256; ; chars *= 4) {
        const names = Buffer.alloc(chars * 2);
        const returned = [0];
        const r = await call(k.GetVolumePathNamesForVolumeNameW, volume, names, chars, returned);
        if (r.result) return multiString(names, returned[0]);
        if (r.error !== ERROR_MORE_DATA || chars > 65536) {
          throw new WinError('GetVolumePathNamesForVolumeNameW', r.error);
        }
      }
    },
    async volumeExtents(volume) {
      // Without the trailing backslash the volume itself opens, not its root folder; no
      // access is needed to ask where it lies.
      const handle = await openWith(volume.replace(/\\$/, ''), 0);
      try {
        const out = Buffer.alloc(8 + 24 * 32);
        await ioctl(
          'IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS',
          handle,
          CODES.IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS,
          null,
          out,
        );
        return parseExtents(out);
      } finally {
        await close(handle);
      }
    },
    open: (device) => openWith(device, GENERIC_READ | GENERIC_WRITE),
    lockVolume: async (h) => void (await ioctl('FSCTL_LOCK_VOLUME', h, CODES.FSCTL_LOCK_VOLUME)),
    dismountVolume: async (h) =>
      void (await ioctl('FSCTL_DISMOUNT_VOLUME', h, CODES.FSCTL_DISMOUNT_VOLUME)),
    updateProperties: async (h) =>
      void (await ioctl('IOCTL_DISK_UPDATE_PROPERTIES', h, CODES.IOCTL_DISK_UPDATE_PROPERTIES)),
    volumesReady: async (h) =>
      void (await ioctl('IOCTL_DISK_ARE_VOLUMES_READY', h, CODES.IOCTL_DISK_ARE_VOLUMES_READY)),
    async ejectMedia(h) {
      // PREVENT_MEDIA_REMOVAL { PreventMediaRemoval: FALSE }: a lock someone set is lifted first.
      await ioctl(
        'IOCTL_STORAGE_MEDIA_REMOVAL',
        h,
        CODES.IOCTL_STORAGE_MEDIA_REMOVAL,
        Buffer.alloc(1),
      );
      await ioctl('IOCTL_STORAGE_EJECT_MEDIA', h, CODES.IOCTL_STORAGE_EJECT_MEDIA);
    },
    close,
    async holders(resources) {
      const r = rm();
      const session = [0];
      const key = Buffer.alloc(2 * 33);
      const started = await call(r.RmStartSession, session, 0, key);
      if (started.result !== 0) throw new WinError('RmStartSession', started.result);
      try {
        const registered = await call(
          r.RmRegisterResources,
          session[0],
          resources.length,
          resources,
          0,
          null,
          0,
          null,
        );
        if (registered.result !== 0) throw new WinError('RmRegisterResources', registered.result);
        for (let room = 8; ; room *= 2) {
          const info = Buffer.alloc(RM_PROCESS_INFO_BYTES * room);
          const needed = [0];
          const count = [room];
          const got = await call(r.RmGetList, session[0], needed, count, info, [0]);
          if (got.result === 0) return parseProcessInfo(info, count[0]);
          if (got.result !== ERROR_MORE_DATA || room > 1024)
            throw new WinError('RmGetList', got.result);
        }
      } finally {
        await call(r.RmEndSession, session[0]);
      }
    },
  };
}
