// Every call a platform module makes into the system, behind one small interface: open
// flags by name, @ronomon/direct-io's fcntl/ioctl helpers, positioned I/O, the flush,
// child commands. The live one below is the system; tests pass a fake that records the
// sequence (tests/helpers/fake-os.ts).

import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import util, { promisify } from 'node:util';
import { closeFd, preadFully, pwriteFully, syncData } from '../io/fd';
import { libc } from '../io/libc';

/** Open flags by name, so that a recorded sequence reads the same on every system. */
export type OpenFlag =
  | 'O_RDONLY'
  | 'O_RDWR'
  /** Linux: no page cache. Windows (libuv): FILE_FLAG_NO_BUFFERING. */
  | 'O_DIRECT'
  /** Linux, on a block device: fails EBUSY while anyone else has it open exclusively or mounted. */
  | 'O_EXCL'
  /** macOS: an exclusive flock taken at open. Windows (libuv): share mode 0. */
  | 'O_EXLOCK'
  /** macOS: O_EXLOCK fails at once instead of waiting for the holder. */
  | 'O_NONBLOCK'
  /** Windows (libuv): FILE_FLAG_WRITE_THROUGH. */
  | 'O_DSYNC';

export interface Geometry {
  size: number;
  logicalSectorSize: number;
  /** Only Linux and FreeBSD answer it (direct-io's getBlockDevice). */
  serial: string | null;
}

export interface CommandResult {
  /** The exit code; -1 when the command could not be started. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface OsCalls {
  open(path: string, flags: OpenFlag[]): Promise<number>;
  /** Positioned and complete; `path` names the drive in errors. */
  read(fd: number, path: string, buffer: Buffer, offset: number): Promise<void>;
  write(fd: number, path: string, buffer: Buffer, offset: number): Promise<void>;
  /** fs.fdatasync, that is libuv's: what it does on each system is said where it is used. */
  fdatasync(fd: number, path: string): Promise<void>;
  /**
   * macOS: ioctl(DKIOCSYNCHRONIZECACHE), the drive's own write cache onto its media
   * (darwin.ts, flushNote). A drive without one to flush (ENOTTY, ENOTSUP) is not an error.
   */
  syncCache(fd: number, path: string): Promise<void>;
  close(fd: number): Promise<void>;
  /**
   * Linux: ioctl(BLKRRPART), the kernel reads the disk's partition table again. The
   * errno code when it can't (EBUSY: a partition is in use; EINVAL: a partition, or a
   * loop device without partition scanning), else null.
   */
  rereadPartitions(fd: number): Promise<string | null>;
  /** direct-io setF_NOCACHE(fd, 1) (macOS). */
  setNoCache(fd: number): Promise<void>;
  /** direct-io setFlock(fd, 1): flock(LOCK_EX | LOCK_NB) (Linux, macOS). */
  flock(fd: number): Promise<void>;
  /** direct-io getBlockDevice (DKIOCGETBLOCKCOUNT/SIZE, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX). */
  geometry(fd: number): Promise<Geometry>;
  /** A child command; a non-zero exit is a result, not an error. */
  run(command: string, args: string[]): Promise<CommandResult>;
  /** The same, waiting: for reading the system's picture of its drives. */
  runSync(command: string, args: string[]): CommandResult;
  sleep(ms: number): Promise<void>;
}

type DirectIo = typeof import('@ronomon/direct-io');

function callback(call: (done: (error: Error | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => call((error) => (error ? reject(error) : resolve())));
}

/** direct-io's errors carry their code only in the message ("EWOULDBLOCK, …"). */
function withCode(e: Error): Error {
  const code = /^E[A-Z]+/.exec(e.message)?.[0];
  if (code && !(e as NodeJS.ErrnoException).code) Object.assign(e, { code });
  return e;
}

function flagBits(flags: OpenFlag[], io: DirectIo): number {
  const c = fs.constants as Record<string, number | undefined>;
  // direct-io's values are libuv's for this system (O_DIRECT and O_EXLOCK exist where
  // Node's fs.constants has none: Windows, macOS).
  const bit: Record<OpenFlag, number | undefined> = {
    O_RDONLY: c.O_RDONLY,
    O_RDWR: c.O_RDWR,
    O_DIRECT: io.O_DIRECT,
    O_EXCL: c.O_EXCL,
    O_EXLOCK: io.O_EXLOCK,
    O_NONBLOCK: c.O_NONBLOCK,
    O_DSYNC: io.O_DSYNC,
  };
  return flags.reduce((bits, flag) => {
    const value = bit[flag];
    if (value === undefined) throw new Error(`${flag} does not exist on ${process.platform}`);
    return bits | value;
  }, 0);
}

/** execFile reports the exit code as `code`, execFileSync as `status`; a spawn failure as neither. */
function result(e: unknown, stdout: unknown, stderr: unknown): CommandResult {
  const error = e as { code?: unknown; status?: unknown; message?: string } | null;
  let code = 0;
  if (error) {
    code = typeof error.code === 'number' ? error.code : -1;
    if (typeof error.status === 'number') code = error.status;
  }
  const err = String(stderr ?? '');
  return { code, stdout: String(stdout ?? ''), stderr: err || (error?.message ?? '') };
}

const COMMAND_TIMEOUT_MS = 120_000;

/** _IO('d', 22), IOKit/storage/IODiskTypes.h. */
const DKIOCSYNCHRONIZECACHE = 0x20006416;
/** Nothing to flush: the drive has no cache it lets us flush. Named: the numbers differ per system. */
const NO_CACHE = new Set(['ENOTTY', 'ENOTSUP', 'EOPNOTSUPP']);

/** _IO(0x12, 95), linux/fs.h. */
const BLKRRPART = 0x125f;

/** ioctl(fd, BLKRRPART) through libc: null, or the errno code. */
function rereadPartitions(): (fd: number) => Promise<string | null> {
  let ioctl: ((...args: unknown[]) => unknown) | undefined;
  return async (fd) => {
    const c = libc();
    if (!c) return 'ENOSYS';
    ioctl ??= c.func('int ioctl(int, unsigned long, ...)');
    if (ioctl(fd, BLKRRPART) !== -1) return null;
    return util.getSystemErrorName(-c.errno());
  };
}

/** ioctl(fd, DKIOCSYNCHRONIZECACHE) through libc; an Error with its errno code when it fails. */
function synchronizeCache(): (fd: number, path: string) => Promise<void> {
  let ioctl: ((...args: unknown[]) => unknown) | undefined;
  return async (fd, path) => {
    const c = libc();
    if (!c) throw new Error(`${path}: the drive's cache can't be flushed: koffi did not load`);
    ioctl ??= c.func('int ioctl(int, unsigned long, ...)');
    if (ioctl(fd, DKIOCSYNCHRONIZECACHE) !== -1) return;
    const errno = c.errno();
    const code = util.getSystemErrorName(-errno);
    if (NO_CACHE.has(code)) return;
    throw Object.assign(new Error(`${path}: flushing the drive's cache failed (${code})`), {
      code,
      errno,
    });
  };
}

/** The system itself. */
export function liveOsCalls(): OsCalls {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const io = require('@ronomon/direct-io') as DirectIo;
  const open = promisify(fs.open);
  const options = { encoding: 'utf8' as const, timeout: COMMAND_TIMEOUT_MS, windowsHide: true };
  return {
    open: (path, flags) => open(path, flagBits(flags, io)),
    read: (fd, path, buffer, offset) => preadFully(fd, path, buffer, offset),
    write: (fd, path, buffer, offset) => pwriteFully(fd, path, buffer, offset),
    fdatasync: (fd, path) => syncData(fd, path),
    syncCache: synchronizeCache(),
    close: closeFd,
    rereadPartitions: rereadPartitions(),
    setNoCache: (fd) => callback((done) => io.setF_NOCACHE(fd, 1, done)),
    flock: (fd) =>
      callback((done) => io.setFlock(fd, 1, done)).catch((e) => {
        throw withCode(e as Error);
      }),
    geometry: (fd) =>
      new Promise((resolve, reject) =>
        io.getBlockDevice(fd, (error, device) =>
          error
            ? reject(withCode(error))
            : resolve({
                size: device.size,
                logicalSectorSize: device.logicalSectorSize,
                serial: device.serialNumber?.trim() || null,
              }),
        ),
      ),
    run: (command, args) =>
      new Promise((resolve) =>
        execFile(command, args, options, (e, stdout, stderr) => resolve(result(e, stdout, stderr))),
      ),
    runSync: (command, args) => {
      try {
        return result(null, execFileSync(command, args, { ...options, stdio: 'pipe' }), '');
      } catch (e) {
        const failed = e as { stdout?: unknown; stderr?: unknown };
        return result(e, failed.stdout, failed.stderr);
      }
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}
