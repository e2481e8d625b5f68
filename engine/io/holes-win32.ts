// Windows: where a file holds data, asked with FSCTL_QUERY_ALLOCATED_RANGES. NTFS answers
// a sparse file's allocated ranges and any other file's whole length as one range; a file
// system that doesn't answer (ReFS) leaves every byte counted as data. The call goes to
// kernel32 through koffi on a handle of its own, opened by path: Node's descriptor is
// libuv's CRT one, whose HANDLE an addon-free caller can't reach.

import path from 'node:path';
import type { Range } from '../geometry';

/** CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 51, METHOD_NEITHER, FILE_READ_DATA), winioctl.h. */
export const FSCTL_QUERY_ALLOCATED_RANGES = 0x940cf;
/** FILE_ALLOCATED_RANGE_BUFFER: FileOffset and Length, two LARGE_INTEGERs. */
const RANGE_BYTES = 16;
/** Ranges asked for per call; a file with more is asked again from where the answer ended. */
const RANGES_PER_CALL = 4096;

/** The three kernel32 calls, as this module uses them (tests give a fake). */
export interface Kernel32 {
  /** CreateFileW for reading, every sharing allowed; null when it fails. */
  open(file: string): number | null;
  /**
   * DeviceIoControl(FSCTL_QUERY_ALLOCATED_RANGES): whether it succeeded and the bytes it
   * wrote to `output` (on ERROR_MORE_DATA it fails having written the ranges that fit).
   */
  queryAllocatedRanges(
    handle: number,
    input: Buffer,
    output: Buffer,
  ): { ok: boolean; bytes: number };
  close(handle: number): void;
}

/**
 * The spans of `file` holding data, as the file system lists them (unaligned, in order),
 * clipped to `size`; null when it can't say.
 */
export function allocatedRanges(file: string, size: number, k = kernel32()): Range[] | null {
  if (!k) return null;
  const handle = k.open(path.toNamespacedPath(path.resolve(file)));
  if (handle === null) return null;
  try {
    const input = Buffer.alloc(RANGE_BYTES);
    const output = Buffer.alloc(RANGE_BYTES * RANGES_PER_CALL);
    const spans: Range[] = [];
    /** Where the last span given ends. */
    let covered = 0;
    for (let at = 0; at < size;) {
      input.writeBigInt64LE(BigInt(at), 0);
      input.writeBigInt64LE(BigInt(size - at), 8);
      const { ok, bytes } = k.queryAllocatedRanges(handle, input, output);
      const count = Math.floor(bytes / RANGE_BYTES);
      // A failure with no range written is not "more data": read everything.
      if (!ok && count === 0) return null;
      for (let i = 0; i < count; i++) {
        const start = Number(output.readBigInt64LE(i * RANGE_BYTES));
        const end = Math.min(size, start + Number(output.readBigInt64LE(i * RANGE_BYTES + 8)));
        // NTFS rounds the question down to its own boundary: an answer asked again may
        // repeat the end of the one before.
        const offset = Math.max(start, covered);
        if (end > offset) {
          spans.push({ offset, length: end - offset });
          covered = end;
        }
      }
      if (ok) break;
      // More to come from where the answer ended; an answer that doesn't move on can't be trusted.
      if (covered <= at) return null;
      at = covered;
    }
    return spans;
  } finally {
    k.close(handle);
  }
}

const GENERIC_READ = 0x80000000;
const FILE_SHARE_ALL = 0x1 | 0x2 | 0x4; // read, write, delete: the copy has the file open
const OPEN_EXISTING = 3;
const INVALID_HANDLE_VALUE = -1;

/** kernel32's declarations, in koffi's C-like syntax (a unit test parses them on any system). */
export const DECLARATIONS = {
  CreateFileW:
    'intptr_t __stdcall CreateFileW(const char16_t *name, uint32_t access, uint32_t share, void *security, uint32_t disposition, uint32_t flags, intptr_t template)',
  DeviceIoControl:
    'int __stdcall DeviceIoControl(intptr_t device, uint32_t code, void *input, uint32_t inputSize, void *output, uint32_t outputSize, _Out_ uint32_t *returned, void *overlapped)',
  CloseHandle: 'int __stdcall CloseHandle(intptr_t handle)',
};

let loaded: Kernel32 | null | undefined;

/** The system's kernel32, or null where it can't be loaded (not Windows, no koffi). */
function kernel32(): Kernel32 | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.platform !== 'win32') return loaded;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const koffi = require('koffi') as typeof import('koffi');
    const lib = koffi.load('kernel32.dll');
    const createFile = lib.func(DECLARATIONS.CreateFileW);
    const ioctl = lib.func(DECLARATIONS.DeviceIoControl);
    const closeHandle = lib.func(DECLARATIONS.CloseHandle);
    loaded = {
      open: (file) => {
        const h = Number(createFile(file, GENERIC_READ, FILE_SHARE_ALL, null, OPEN_EXISTING, 0, 0));
        return h === INVALID_HANDLE_VALUE ? null : h;
      },
      queryAllocatedRanges: (handle, input, output) => {
        const returned = [0];
        const ok = ioctl(
          handle,
          FSCTL_QUERY_ALLOCATED_RANGES,
          input,
          input.length,
          output,
          output.length,
          returned,
          null,
        );
        return { ok: ok !== 0, bytes: Number(returned[0]) };
      },
      close: (handle) => void closeHandle(handle),
    };
  } catch {
    // no koffi for this system: every byte is data
  }
  return loaded;
}
