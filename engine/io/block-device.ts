import fs from 'node:fs';
import { type BlockDeviceInfo, getBlockDevice } from '@ronomon/direct-io';
import { blockFacts } from '../drives/linux';
import type { Device } from './device';
import { DeviceError } from './device';
import { closeFd, preadFully, pwriteFully, syncData } from './fd';

/** Linux: sysfs (direct-io's ioctls insist on a SCSI device, which loop devices are not). */
async function geometryOf(fd: number, path: string) {
  if (process.platform === 'linux') {
    const { size, logicalBlockSize } = blockFacts(path);
    return { size, logicalBlockSize };
  }
  const info = await new Promise<BlockDeviceInfo>((ok, fail) =>
    getBlockDevice(fd, (error, device) => (error ? fail(error) : ok(device))),
  );
  return { size: info.size, logicalBlockSize: info.logicalSectorSize };
}

// Raw drives: O_DIRECT with aligned buffers (buffered device writes double-cache
// and stall in writeback), and O_EXCL for writing so nobody mounts it meanwhile.
export class BlockDevice implements Device {
  readonly kind = 'block' as const;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly size: number,
    readonly logicalBlockSize: number,
  ) {}

  static async open(path: string, writable: boolean): Promise<BlockDevice> {
    const { O_RDONLY, O_RDWR, O_DIRECT, O_EXCL } = fs.constants;
    const flags = (writable ? O_RDWR | O_EXCL : O_RDONLY) | O_DIRECT;
    let fd: number;
    try {
      fd = fs.openSync(path, flags);
    } catch (e) {
      throw new DeviceError('open', path, 0, 0, e as NodeJS.ErrnoException);
    }
    try {
      const { size, logicalBlockSize } = await geometryOf(fd, path);
      return new BlockDevice(path, fd, size, logicalBlockSize);
    } catch (e) {
      fs.closeSync(fd);
      throw new DeviceError('open', path, 0, 0, e as NodeJS.ErrnoException);
    }
  }

  read(buffer: Buffer, offset: number): Promise<void> {
    return preadFully(this.fd, this.path, buffer, offset);
  }

  /** A short tail (an image whose size is not a multiple of our block) is padded with zeros. */
  write(buffer: Buffer, offset: number): Promise<void> {
    const rem = buffer.length % this.logicalBlockSize;
    if (rem === 0) return pwriteFully(this.fd, this.path, buffer, offset);
    const padded = Buffer.from(
      buffer.buffer,
      buffer.byteOffset,
      buffer.length + this.logicalBlockSize - rem,
    );
    padded.fill(0, buffer.length);
    return pwriteFully(this.fd, this.path, padded, offset);
  }

  flush(): Promise<void> {
    return syncData(this.fd, this.path);
  }

  close(): Promise<void> {
    return closeFd(this.fd);
  }
}
