// One interface for every source and destination: the copier never asks which
// kind it holds.

import fs from 'node:fs';
import { alignedBuffer } from './buffers';
import type { SourceFile } from './source-file';
import type { Range } from '../geometry';

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
  /** Image files: cut or extend to exactly `size` bytes. */
  setLength?(size: number): Promise<void>;
  /**
   * Image files: the spans of [offset, offset + length) holding data, as the file system
   * knows them; the rest is holes, which read as zeros. Null when it can't say.
   */
  dataIn?(offset: number, length: number): Range[] | null;
  /** Image files: where the next data at or after `offset` begins (the size: none), or null. */
  nextData?(offset: number): number | null;
  /** Where what is written is stored otherwise (a compressed backup): the bytes stored since opened. */
  readonly storedBytes?: number;
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

/**
 * The start of a stream that can be read again once the stream went past it: as much as
 * the partition table reader reads there (the plan reads it, then the copy starts at 0).
 */
export const STREAM_HEAD_BYTES = 1024 * 1024;

/**
 * A source read as a stream (a compressed image, a download): in ascending order only —
 * but for its first STREAM_HEAD_BYTES —, its size perhaps known only once its end is reached.
 */
export interface StreamSource extends Device {
  /** The file it is read from: on this machine, or a download. */
  readonly file: SourceFile;
  /** The uncompressed size where the format states it, else null. */
  readonly knownSize: number | null;
  /** While knownSize is null: what the file suggests it holds (a guess), or null. */
  readonly estimate: number | null;
  readonly compressedSize: number;
  /** Compressed bytes consumed so far: progress while the size is unknown. */
  readonly compressedPosition: number;
  /** Uncompressed bytes those decompressed into (handed out or dropped). */
  readonly decompressedPosition: number;
  /** Reads up to buffer.length bytes; fewer only at the end of the data. */
  readAt(buffer: Buffer, offset: number): Promise<number>;
  /** The same stream from its start again (a download: the same file, checked unchanged). */
  reopen(): Promise<StreamSource>;
}

export function isStream(device: Device): device is StreamSource {
  return 'readAt' in device && typeof (device as StreamSource).readAt === 'function';
}

/** The source's size, or null while a stream hasn't said it. */
export function knownSize(device: Device): number | null {
  return isStream(device) ? device.knownSize : device.size;
}

/** Bytes read at `offset`: all of `buffer`, or fewer where a stream ends. */
export function readSome(source: Device, buffer: Buffer, offset: number): Promise<number> {
  if (isStream(source)) return source.readAt(buffer, offset);
  return source.read(buffer, offset).then(() => buffer.length);
}

/**
 * Whether a drive whose read failed is gone rather than damaged: its path is gone, or
 * its first block — read when the job started — fails too. The error code that says
 * so (`readError`'s when the retry gives none), or null when it still answers.
 */
export async function goneCode(
  device: Device,
  readError: DeviceError | null,
): Promise<string | null> {
  if (!fs.existsSync(device.path)) return 'ENOENT';
  try {
    await device.read(alignedBuffer(device.logicalBlockSize), 0);
  } catch (e) {
    return (e as DeviceError).code ?? readError?.code ?? 'no answer';
  }
  return null;
}
