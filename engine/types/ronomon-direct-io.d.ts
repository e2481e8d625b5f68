declare module '@ronomon/direct-io' {
  export interface BlockDeviceInfo {
    logicalSectorSize: number;
    physicalSectorSize: number;
    size: number;
    serialNumber?: string;
  }
  export const O_DIRECT: number;
  export const O_EXCL: number;
  /** flock(LOCK_EX | LOCK_NB) when value is 1, LOCK_UN when 0 (FreeBSD, Linux, macOS). */
  export function setFlock(fd: number, value: 0 | 1, callback: (error: Error | null) => void): void;
  export function getAlignedBuffer(size: number, alignment: number): Buffer;
  export function getBlockDevice(
    fd: number,
    callback: (error: Error | null, device: BlockDeviceInfo) => void,
  ): void;
}
