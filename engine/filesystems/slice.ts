// A partition of a device seen as a device of its own, for the file system readers:
// reads only, offsets counted from the partition's start, its size the partition's.

import type { Range } from '../geometry';
import type { Device } from '../io/device';

export class Slice implements Device {
  readonly kind;
  readonly path: string;
  readonly logicalBlockSize: number;

  constructor(
    private readonly whole: Device,
    readonly start: number,
    readonly size: number,
  ) {
    this.kind = whole.kind;
    this.path = whole.path;
    this.logicalBlockSize = whole.logicalBlockSize;
  }

  read(buffer: Buffer, offset: number): Promise<void> {
    if (offset < 0 || offset + buffer.length > this.size)
      return Promise.reject(new RangeError(`a read at ${offset} leaves the partition`));
    return this.whole.read(buffer, this.start + offset);
  }

  write(): Promise<void> {
    return Promise.reject(new Error('a partition is only read for its used space'));
  }

  async flush(): Promise<void> {}

  /** The whole device stays open: whoever opened it closes it. */
  async close(): Promise<void> {}

  /** Where it holds data, when the whole device can say (a sparse image file). */
  dataIn(offset: number, length: number): Range[] | null {
    const found = this.whole.dataIn?.(this.start + offset, length) ?? null;
    return found && found.map((r) => ({ offset: r.offset - this.start, length: r.length }));
  }
}
