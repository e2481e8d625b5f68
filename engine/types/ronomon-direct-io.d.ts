declare module '@ronomon/direct-io' {
  export interface BlockDeviceInfo {
    logicalSectorSize: number;
    physicalSectorSize: number;
    size: number;
    serialNumber?: string;
  }
  export const O_DIRECT: number;
  export const O_EXCL: number;
  export function getAlignedBuffer(size: number, alignment: number): Buffer;
  export function getBlockDevice(
    fd: number,
    callback: (error: Error | null, device: BlockDeviceInfo) => void,
  ): void;
}
