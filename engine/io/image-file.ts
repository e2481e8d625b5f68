import fs from 'node:fs';
import type { Device } from './device';
import { DeviceError } from './device';
import type { Range } from '../geometry';
import { IO_ALIGNMENT } from './buffers';
import { dataIn, dataMap, nextData } from './holes';
import { closeFd, preadFully, pwriteFully, syncData } from './fd';

/** Logical block size we give image files: the smallest any drive has. */
export const IMAGE_BLOCK_SIZE = 512;

export class ImageFile implements Device {
  readonly kind = 'file' as const;
  readonly logicalBlockSize = IMAGE_BLOCK_SIZE;
  private map: Range[] | null | undefined;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    public size: number,
  ) {}

  static open(path: string, writable: boolean): ImageFile {
    const { O_RDONLY, O_RDWR, O_CREAT } = fs.constants;
    try {
      const fd = fs.openSync(path, writable ? O_RDWR | O_CREAT : O_RDONLY, 0o644);
      return new ImageFile(path, fd, fs.fstatSync(fd).size);
    } catch (e) {
      throw new DeviceError('open', path, 0, 0, e as NodeJS.ErrnoException);
    }
  }

  read(buffer: Buffer, offset: number): Promise<void> {
    return preadFully(this.fd, this.path, buffer, offset);
  }

  dataIn(offset: number, length: number): Range[] | null {
    const map = this.dataMap();
    return map && dataIn(map, offset, length);
  }

  nextData(offset: number): number | null {
    const map = this.dataMap();
    return map && nextData(map, offset, this.size);
  }

  /** Where this (source) image holds data, asked of the file system once, on first use. */
  private dataMap(): Range[] | null {
    if (this.map === undefined) this.map = dataMap(this.fd, this.path, this.size, IO_ALIGNMENT);
    return this.map;
  }

  write(buffer: Buffer, offset: number): Promise<void> {
    return pwriteFully(this.fd, this.path, buffer, offset);
  }

  /**
   * Empties the file and sets its length: every byte reads as zero and holds no
   * blocks, so zero regions need not be written. False where the file system
   * can't truncate (FUSE files often can't); then zeros must be written.
   */
  reset(size: number): boolean {
    try {
      fs.ftruncateSync(this.fd, 0);
      fs.ftruncateSync(this.fd, size);
      this.size = size;
      return true;
    } catch {
      return false;
    }
  }

  async setLength(size: number): Promise<void> {
    try {
      fs.ftruncateSync(this.fd, size);
      this.size = size;
    } catch (e) {
      throw new DeviceError('write', this.path, size, 0, e as NodeJS.ErrnoException);
    }
  }

  flush(): Promise<void> {
    return syncData(this.fd, this.path);
  }

  close(): Promise<void> {
    return closeFd(this.fd);
  }
}
