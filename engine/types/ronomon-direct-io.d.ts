declare module '@ronomon/direct-io' {
  export interface BlockDeviceInfo {
    logicalSectorSize: number;
    physicalSectorSize: number;
    size: number;
    serialNumber?: string;
  }
  export const O_DIRECT: number;
  /** libuv's: Windows FILE_FLAG_WRITE_THROUGH. */
  export const O_DSYNC: number;
  export const O_EXCL: number;
  /** macOS: exclusive flock at open; Windows (libuv): share mode 0. */
  export const O_EXLOCK: number;
  export const O_SYNC: number;
  /** flock(LOCK_EX | LOCK_NB) when value is 1, LOCK_UN when 0 (FreeBSD, Linux, macOS). */
  export function setFlock(fd: number, value: 0 | 1, callback: (error: Error | null) => void): void;
  /** fcntl(F_NOCACHE, value) (macOS only; throws elsewhere). */
  export function setF_NOCACHE(
    fd: number,
    value: 0 | 1,
    callback: (error: Error | null) => void,
  ): void;
  /** DeviceIoControl FSCTL_LOCK_VOLUME (1) / FSCTL_UNLOCK_VOLUME (0) (Windows only; throws elsewhere). */
  export function setFSCTL_LOCK_VOLUME(
    fd: number,
    value: 0 | 1,
    callback: (error: Error | null) => void,
  ): void;
  export function getAlignedBuffer(size: number, alignment: number): Buffer;
  export function getBlockDevice(
    fd: number,
    callback: (error: Error | null, device: BlockDeviceInfo) => void,
  ): void;
}
