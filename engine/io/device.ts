// One interface for every source and destination: the copier never asks which
// kind it holds.

export type DeviceKind = 'block' | 'file';

export interface Device {
  readonly path: string;
  readonly kind: DeviceKind;
  readonly size: number;
  readonly logicalBlockSize: number;
  /** Reads exactly `buffer.length` bytes at `offset` (the range lies within the device). */
  read(buffer: Buffer, offset: number): Promise<void>;
  write(buffer: Buffer, offset: number): Promise<void>;
  /** Makes everything written so far durable (fdatasync). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** An I/O error that names the device and the byte range it hit. */
export class DeviceError extends Error {
  constructor(
    readonly op: 'read' | 'write' | 'flush' | 'open',
    readonly path: string,
    readonly offset: number,
    readonly length: number,
    readonly cause: NodeJS.ErrnoException,
  ) {
    const where = op === 'flush' || op === 'open' ? '' : ` at byte ${offset} (+${length})`;
    super(`${op} failed on ${path}${where}: ${cause.code ?? cause.message}`);
  }

  get code(): string | undefined {
    return this.cause.code;
  }
}
