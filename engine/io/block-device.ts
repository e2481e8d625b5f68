import { DriveError, drivePlatform, type OpenedDrive } from '../drives/platform';
import type { Device } from './device';
import { DeviceError } from './device';

// Raw drives, opened the way their system wants (drives/platform.ts: Linux O_DIRECT and
// O_EXCL, macOS /dev/rdiskN with O_EXLOCK and F_NOCACHE, Windows \\.\PhysicalDriveN
// unbuffered and write-through with its volumes locked): aligned buffers, whole blocks.
export class BlockDevice implements Device {
  readonly kind = 'block' as const;

  private constructor(
    readonly path: string,
    private readonly drive: OpenedDrive,
  ) {}

  get size(): number {
    return this.drive.size;
  }

  get logicalBlockSize(): number {
    return this.drive.logicalBlockSize;
  }

  /** Writing: prepared (unmounted, volumes locked) and claimed exclusively first. */
  static async open(path: string, writable: boolean): Promise<BlockDevice> {
    try {
      return new BlockDevice(path, await drivePlatform().openDrive(path, writable));
    } catch (e) {
      if (e instanceof DeviceError || e instanceof DriveError) throw e;
      throw new DeviceError('open', path, 0, 0, e as NodeJS.ErrnoException);
    }
  }

  read(buffer: Buffer, offset: number): Promise<void> {
    return this.drive.read(buffer, offset);
  }

  /** A short tail (an image whose size is not a multiple of our block) is padded with zeros. */
  write(buffer: Buffer, offset: number): Promise<void> {
    const rem = buffer.length % this.logicalBlockSize;
    if (rem === 0) return this.drive.write(buffer, offset);
    const padded = Buffer.from(
      buffer.buffer,
      buffer.byteOffset,
      buffer.length + this.logicalBlockSize - rem,
    );
    padded.fill(0, buffer.length);
    return this.drive.write(padded, offset);
  }

  flush(): Promise<void> {
    return this.drive.flush();
  }

  close(): Promise<void> {
    return this.drive.close();
  }
}
