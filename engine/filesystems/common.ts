// Shared pieces of the filesystem readers: the result type, the refusal, aligned
// reads through a Device, byte-range lists and bitmap scanning.

import type { Range } from '../geometry';
import type { Device } from '../io/device';
import { alignedBuffer, IO_ALIGNMENT } from '../io/buffers';

export type FsKind = 'ext2' | 'ext3' | 'ext4' | 'fat12' | 'fat16' | 'fat32' | 'ntfs' | 'exfat';

export interface UsedSpace {
  fs: FsKind;
  /** Allocation unit in bytes: the ext block (cluster with bigalloc), the FAT, NTFS or exFAT cluster. */
  blockSize: number;
  /**
   * The source's size. Bytes past the filesystem's own end (`fsSize`) are counted
   * as used: something else (RAID metadata, a second volume) may live there.
   */
  size: number;
  /** The filesystem's own size, from its superblock or boot sector. */
  fsSize: number;
  /** Byte ranges holding anything the filesystem needs: sorted, merged, within `size`. */
  used: Range[];
}

export type RefusalKind = 'unclean' | 'unsupported' | 'corrupt';

/** A used-space copy can't be planned for this source; the message says why, and where. */
export class UsedSpaceRefused extends Error {
  override name = 'UsedSpaceRefused';
}

/** The source holds a filesystem we recognise but whose allocation we can't trust. */
export class FilesystemRefused extends UsedSpaceRefused {
  constructor(
    readonly fs: FsKind,
    readonly kind: RefusalKind,
    readonly reason: string,
    /** Where it lies, in words: `partition 2 of /dev/sdb`; absent for a whole device. */
    readonly where?: string,
  ) {
    super(`${where ? `${where}: ` : ''}${fs} filesystem refused for a used-space copy: ${reason}`);
  }
  override name = 'FilesystemRefused';

  /** The same refusal, said of the partition it came from. */
  in(where: string): FilesystemRefused {
    return new FilesystemRefused(this.fs, this.kind, this.reason, where);
  }
}

/** The most a reader reads at once (bitmaps, FATs, descriptor tables). */
export const READ_CHUNK = 4 << 20;

/** A file system must fit the space it is read from (its partition, or the whole source). */
export function mustFit(fs: FsKind, fsSize: number, space: number): void {
  if (fsSize > space)
    throw new FilesystemRefused(
      fs,
      'corrupt',
      `the volume says it is ${fsSize} bytes but its space holds only ${space}`,
    );
}

/** [offset, offset + length) lies inside one of the sorted, merged ranges. */
export function covers(ranges: Range[], offset: number, length: number): boolean {
  return ranges.some((r) => r.offset <= offset && offset + length <= r.offset + r.length);
}

/**
 * `length` bytes at `offset`, read with 4096-aligned offsets and lengths (the last
 * read may stop at the end of the device, whose size is a multiple of its logical
 * block size). Null when the range does not lie within the device.
 */
export async function readBytes(
  source: Device,
  offset: number,
  length: number,
): Promise<Buffer | null> {
  if (offset < 0 || length < 0 || offset + length > source.size) return null;
  const start = Math.floor(offset / IO_ALIGNMENT) * IO_ALIGNMENT;
  const end = Math.min(Math.ceil((offset + length) / IO_ALIGNMENT) * IO_ALIGNMENT, source.size);
  const buf = alignedBuffer(end - start);
  await source.read(buf, start);
  return buf.subarray(offset - start, offset - start + length);
}

/** Collects byte ranges in any order; `result` sorts, merges and clips them. */
export class RangeList {
  private ranges: Range[] = [];

  add(offset: number, length: number): void {
    if (length <= 0) return;
    const last = this.ranges[this.ranges.length - 1];
    if (last && last.offset + last.length === offset) last.length += length;
    else this.ranges.push({ offset, length });
  }

  result(limit: number): Range[] {
    const sorted = this.ranges
      .map((r) => ({ offset: r.offset, length: Math.min(r.offset + r.length, limit) - r.offset }))
      .filter((r) => r.length > 0)
      .sort((a, b) => a.offset - b.offset);
    const out: Range[] = [];
    for (const r of sorted) {
      const last = out[out.length - 1];
      if (last && r.offset <= last.offset + last.length) {
        last.length = Math.max(last.length, r.offset + r.length - last.offset);
      } else out.push({ ...r });
    }
    return out;
  }
}

/** Calls `run(first, count)` for every run of set bits among the first `bits` (LSB first). */
export function setBitRuns(
  bitmap: Buffer,
  bits: number,
  run: (first: number, count: number) => void,
): void {
  let start = -1;
  const close = (at: number): void => {
    if (start >= 0) run(start, at - start);
    start = -1;
  };
  const bytes = Math.ceil(bits / 8);
  for (let i = 0; i < bytes; i++) {
    const byte = bitmap[i];
    const base = i * 8;
    if (byte === 0) close(base);
    else if (byte === 0xff && base + 8 <= bits) {
      if (start < 0) start = base;
    } else {
      for (let b = 0; b < 8 && base + b < bits; b++) {
        if (byte & (1 << b)) {
          if (start < 0) start = base + b;
        } else close(base + b);
      }
    }
  }
  close(bits);
}

/** Regions that hold no used byte, as runs of region indices. */
export function freeRegions(
  used: Range[],
  size: number,
  regionSize: number,
): Array<{ first: number; count: number }> {
  if (!(regionSize > 0)) throw new RangeError(`bad region size ${regionSize}`);
  const total = Math.ceil(size / regionSize);
  const runs: Array<{ first: number; count: number }> = [];
  const free = (first: number, end: number): void => {
    if (end > first) runs.push({ first, count: end - first });
  };
  const sorted = [...used].filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  let next = 0; // first region not yet known to hold a used byte
  for (const r of sorted) {
    if (r.offset >= size) break;
    const first = Math.floor(r.offset / regionSize);
    const last = Math.floor((Math.min(r.offset + r.length, size) - 1) / regionSize);
    free(next, Math.min(first, total));
    next = Math.max(next, last + 1);
  }
  free(next, total);
  return runs;
}

// CRC32C (Castagnoli, reflected), without the final inversion: ext4's crc32c_le.
const CRC32C = new Uint32Array(256);
// CRC16 (0x8005 reflected): the kernel's crc16, used by ext4's gdt_csum.
const CRC16 = new Uint16Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  let d = n;
  for (let k = 0; k < 8; k++) {
    c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    d = d & 1 ? (d >>> 1) ^ 0xa001 : d >>> 1;
  }
  CRC32C[n] = c >>> 0;
  CRC16[n] = d;
}

export function crc32c(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC32C[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

export function crc16(crc: number, data: Uint8Array): number {
  let c = crc & 0xffff;
  for (let i = 0; i < data.length; i++) c = CRC16[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c;
}
