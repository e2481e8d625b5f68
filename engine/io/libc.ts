// The few libc calls Node has no binding for (lseek's SEEK_DATA/SEEK_HOLE, an ioctl
// without an argument), through koffi: its binaries come prebuilt per platform in npm
// packages. Null where it can't be loaded (Windows, an unknown libc): callers then do
// without, as each says.

type Koffi = typeof import('koffi');

const LIBC_FILE: Partial<Record<NodeJS.Platform, string>> = {
  linux: 'libc.so.6',
  darwin: '/usr/lib/libSystem.B.dylib',
};

export interface Libc {
  /** A function of libc by its C declaration, e.g. 'int64_t lseek(int, int64_t, int)'. */
  func(declaration: string): (...args: unknown[]) => unknown;
  /** errno after a failed call, read on the calling thread. */
  errno(): number;
}

let loaded: Libc | null | undefined;

export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const file = LIBC_FILE[process.platform];
  if (!file) return loaded;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const koffi = require('koffi') as Koffi;
    const lib = koffi.load(file);
    loaded = {
      func: (declaration) => lib.func(declaration) as (...args: unknown[]) => unknown,
      errno: () => koffi.errno(),
    };
  } catch {
    // no koffi for this platform, or no libc where expected
  }
  return loaded;
}
