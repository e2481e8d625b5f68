// The zstd frame format, as far as DriveTwin reads and writes it: magic numbers, the
// fields of frame and block headers, and the seek table of zstd's seekable format
// (contrib/seekable_format). Bytes in, fields out: no I/O here, so the backup writer
// (zst-image.ts, zst-scan.ts), the zstd source (compressed/zstd.ts) and detection
// (compressed/detect.ts) read the format with the same code, each with its own policy
// for a short or damaged file.

export const ZSTD_MAGIC = 0xfd2fb528;
export const SKIPPABLE_MASK = 0xfffffff0;
export const SKIPPABLE_MAGIC = 0x184d2a50;
const SEEK_TABLE_MAGIC = 0x184d2a5e;
const SEEKABLE_FOOTER_MAGIC = 0x8f92eab1;
/** Limits of the seekable format. */
export const SEEKABLE_MAX_FRAME_BYTES = 0x40000000;
const SEEKABLE_MAX_FRAMES = 0x8000000;

/** One complete zstd frame of an image file. */
export interface ZstFrame {
  /** Byte offset of the frame in the compressed file. */
  fileOffset: number;
  compressedSize: number;
  /** Uncompressed bytes. */
  size: number;
  /** Low 32 bits of the XXH64 of the content, from the frame's trailer; null without one. */
  checksum: number | null;
  /** The frame header states its content size. */
  sizeInHeader: boolean;
}

/** A skippable frame's magic (0x184D2A50..5F): its length follows, then that many bytes. */
export function isSkippable(magic: number): boolean {
  return (magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC;
}

/** What a frame's header says. */
export interface FrameHeader {
  /** File offset of the frame's first block. */
  blocksAt: number;
  /** Frame_Content_Size; null when the header does not state it. */
  contentSize: number | null;
  /** A 4-byte content checksum follows the last block. */
  hasChecksum: boolean;
}

/**
 * The header of the frame at `at` (its magic already checked), read with `read(pos, n)`;
 * null when it is cut short (`read` gave null) or its reserved bit is set (not a frame).
 */
export function frameHeader(
  at: number,
  read: (pos: number, n: number) => Buffer | null,
): FrameHeader | null {
  const descriptor = read(at + 4, 1)?.[0];
  if (descriptor === undefined || descriptor & 0x08) return null;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictIdBytes = [0, 1, 2, 4][descriptor & 3];
  const fcsBytes = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag];
  const fcsAt = at + 5 + (singleSegment ? 0 : 1) + dictIdBytes;
  let contentSize: number | null = null;
  if (fcsBytes > 0) {
    const fcs = read(fcsAt, fcsBytes);
    if (!fcs) return null;
    if (fcsBytes === 1) contentSize = fcs[0];
    else if (fcsBytes === 2) contentSize = fcs.readUInt16LE(0) + 256;
    else if (fcsBytes === 4) contentSize = fcs.readUInt32LE(0);
    else contentSize = Number(fcs.readBigUInt64LE(0));
  }
  return { blocksAt: fcsAt + fcsBytes, contentSize, hasChecksum: ((descriptor >> 2) & 1) === 1 };
}

export interface BlockHeader {
  /** The frame's last block. */
  last: boolean;
  /** Bytes the block takes in the file, its 3-byte header included. */
  stored: number;
  /** Bytes it decompresses to: known for raw and RLE blocks, null for compressed ones. */
  regenerated: number | null;
}

/** A block header's 3 bytes (last, type, size); null for the reserved type. */
export function blockHeader(h: Buffer): BlockHeader | null {
  const value = h[0] | (h[1] << 8) | (h[2] << 16);
  const type = (value >> 1) & 3;
  const size = value >>> 3;
  if (type === 3) return null;
  return {
    last: (value & 1) === 1,
    // An RLE block stores one byte and regenerates Block_Size of them.
    stored: 3 + (type === 1 ? 1 : size),
    regenerated: type === 2 ? null : size,
  };
}

/** Where a seek table lies in a file: `count` entries of `entryBytes` from `entriesAt`. */
export interface SeekTableAt {
  /** File offset of the table's skippable frame: where the frames it lists end. */
  at: number;
  entriesAt: number;
  count: number;
  /** 12 with checksums, else 8. */
  entryBytes: number;
}

/**
 * The seek table a file of `fileSize` bytes ends with, found from its footer (frame count,
 * descriptor, magic) and checked against the skippable frame's header; null when the file
 * does not end in one. `read(pos, n)` returns the file's bytes at `pos` (null past its end).
 */
export function findSeekTable(
  fileSize: number,
  read: (pos: number, n: number) => Buffer | null,
): SeekTableAt | null {
  if (fileSize < 17) return null;
  const footer = read(fileSize - 9, 9);
  const bytes = footer && seekTableBytes(footer);
  if (!footer || !bytes) return null;
  const count = footer.readUInt32LE(0);
  const entryBytes = footer[4] & 0x80 ? 12 : 8;
  const content = bytes - 8;
  const at = fileSize - bytes;
  if (at < 0) return null;
  const header = read(at, 8);
  if (!header || header.readUInt32LE(0) !== SEEK_TABLE_MAGIC || header.readUInt32LE(4) !== content)
    return null;
  return { at, entriesAt: at + 8, count, entryBytes };
}

/** The bytes a seek table takes at the file's end, from its footer (the last 9); null: not one. */
export function seekTableBytes(footer: Buffer): number | null {
  if (footer.length < 9 || footer.readUInt32LE(5) !== SEEKABLE_FOOTER_MAGIC) return null;
  return 8 + footer.readUInt32LE(0) * (footer[4] & 0x80 ? 12 : 8) + 9;
}

/** One seek table entry at `pos` in `b`: compressed size, decompressed size, checksum. */
export function seekTableEntry(b: Buffer, pos: number, entryBytes: number) {
  return {
    compressedSize: b.readUInt32LE(pos),
    size: b.readUInt32LE(pos + 4),
    checksum: entryBytes === 12 ? b.readUInt32LE(pos + 8) : null,
  };
}

/**
 * The seek table for `frames`: a skippable frame (magic 0x184D2A5E) holding, per frame,
 * compressed size, decompressed size and checksum (u32 LE each), then the footer: number
 * of frames (u32), descriptor (u8, bit 7 = checksums present), magic 0x8F92EAB1 (u32).
 * Null when the format can't describe the frames.
 */
export function seekTable(frames: ZstFrame[]): Buffer | null {
  if (frames.length > SEEKABLE_MAX_FRAMES) return null;
  const checksums = frames.every((f) => f.checksum !== null);
  const entry = checksums ? 12 : 8;
  const content = frames.length * entry + 9;
  const table = Buffer.alloc(8 + content);
  table.writeUInt32LE(SEEK_TABLE_MAGIC, 0);
  table.writeUInt32LE(content, 4);
  let at = 8;
  for (const f of frames) {
    table.writeUInt32LE(f.compressedSize, at);
    table.writeUInt32LE(f.size, at + 4);
    if (checksums) table.writeUInt32LE(f.checksum ?? 0, at + 8);
    at += entry;
  }
  table.writeUInt32LE(frames.length, at);
  table.writeUInt8(checksums ? 0x80 : 0, at + 4);
  table.writeUInt32LE(SEEKABLE_FOOTER_MAGIC, at + 5);
  return table;
}
