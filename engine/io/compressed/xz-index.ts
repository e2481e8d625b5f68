// The xz index: read from the end of the file, stream by stream, it lists every block —
// where it lies in the file and what it holds of the image. That is what lets blocks be
// decompressed side by side, and a resumed job start at the block it needs.

import zlib from 'node:zlib';
import type { SourceFile } from '../source-file';
import { XZ_MAGIC } from './detect';
import { needBytes } from './file';
import { FormatError } from './source';

const XZ_FOOTER_MAGIC = 'YZ';
/** The integrity checks liblzma verifies (xz's types 0, 1, 4 and 10). */
const XZ_CHECKS = new Map([
  [0, 'none'],
  [1, 'CRC32'],
  [4, 'CRC64'],
  [10, 'SHA-256'],
]);

export interface XzBlock {
  /** The stream flags of the stream holding it (they name its integrity check). */
  streamFlags: Buffer;
  /** Where the block starts in the file, its size without padding, and with it. */
  at: number;
  unpadded: number;
  padded: number;
  /** Where its data starts in the image, and how many bytes it holds. */
  start: number;
  size: number;
}

export interface XzIndex {
  blocks: XzBlock[];
  /** The image's size: the sum over every stream's index. */
  size: number;
}

/**
 * Every stream's index, read from the end: stream padding, footer, index (records of
 * unpadded and uncompressed block sizes), header. Blocks come out in file order.
 */
export async function readXzIndex(file: SourceFile, fileSize: number): Promise<XzIndex> {
  const need = (position: number, length: number, what: string): Promise<Buffer> =>
    needBytes(file, position, length, what);
  const streams: XzBlock[][] = [];
  let end = fileSize;
  while (end > 0) {
    // Stream padding: zero bytes in groups of four.
    for (let i = 0; end >= 4 && (await need(end - 4, 4, 'padding')).readUInt32LE(0) === 0; i++) {
      if (i === 65536) throw new FormatError(`over 256 KiB of zeros before byte ${end}: not xz`);
      end -= 4;
    }
    if (end === 0 && streams.length > 0) break;
    const footer = await need(end - 12, 12, 'the xz stream footer');
    if (footer.toString('latin1', 10, 12) !== XZ_FOOTER_MAGIC) {
      throw new FormatError(`no xz stream footer before byte ${end} (truncated file?)`);
    }
    if (zlib.crc32(footer.subarray(4, 10)) >>> 0 !== footer.readUInt32LE(0)) {
      throw new FormatError(`the xz stream footer before byte ${end} is corrupt`);
    }
    const indexSize = (footer.readUInt32LE(4) + 1) * 4;
    const indexStart = end - 12 - indexSize;
    const records = parseXzIndex(await need(indexStart, indexSize, 'the xz index'), indexStart);
    const blockBytes = records.reduce((n, r) => n + padTo4(r.unpadded), 0);
    const start = indexStart - blockBytes - 12;
    const header = await need(start, 12, 'the xz stream header');
    const flags = header.subarray(6, 8);
    if (
      !header.subarray(0, 6).equals(XZ_MAGIC) ||
      zlib.crc32(flags) >>> 0 !== header.readUInt32LE(8) ||
      !flags.equals(footer.subarray(8, 10))
    ) {
      throw new FormatError(`no valid xz stream header at byte ${start}`);
    }
    const check = flags[1] & 0x0f;
    if (flags[0] !== 0 || !XZ_CHECKS.has(check)) {
      throw new FormatError(
        `the xz stream at byte ${start} uses an integrity check of type ${check}, which ` +
          `the decoder can't verify (recompress with xz's default --check=crc64)`,
        'EUNSUPPORTED',
      );
    }
    let at = start + 12;
    const streamFlags = Buffer.from(flags);
    streams.push(
      records.map((r) => {
        const block = { streamFlags, at, ...r, padded: padTo4(r.unpadded), start: 0 };
        at += block.padded;
        return block;
      }),
    );
    end = start;
  }
  const blocks = streams.reverse().flat();
  let size = 0;
  for (const block of blocks) {
    block.start = size;
    size += block.size;
  }
  if (!Number.isSafeInteger(size)) throw new FormatError('the xz index states too large a size');
  return { blocks, size };
}

const padTo4 = (n: number): number => Math.ceil(n / 4) * 4;

function parseXzIndex(index: Buffer, at: number): Array<{ unpadded: number; size: number }> {
  const corrupt = (why: string) => new FormatError(`the xz index at byte ${at} is corrupt: ${why}`);
  if (index[0] !== 0) throw corrupt('no index indicator');
  const body = index.length - 4;
  if (zlib.crc32(index.subarray(0, body)) >>> 0 !== index.readUInt32LE(body)) {
    throw corrupt('CRC32 mismatch');
  }
  let pos = 1;
  const varint = (): number => {
    let value = 0;
    for (let i = 0, scale = 1; i < 9; i++, scale *= 128) {
      if (pos >= body) throw corrupt('record past its end');
      const byte = index[pos++];
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return value;
    }
    throw corrupt('number too long');
  };
  const count = varint();
  const records: Array<{ unpadded: number; size: number }> = [];
  for (let i = 0; i < count; i++) {
    const unpadded = varint();
    const size = varint();
    if (unpadded < 5) throw corrupt('a block too small to be one');
    records.push({ unpadded, size });
  }
  return records;
}

/** xz's variable-length integer (7 bits a byte, low first). */
export function xzVarint(value: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    bytes.push(byte);
  } while (value > 0);
  return bytes;
}

/**
 * One block as a stream of its own — stream header, the block as it is in the file, an
 * index of that one block, stream footer — so a stream decoder (which checks the block's
 * header, its integrity check and its sizes against the index) decodes it alone.
 */
export function singleBlockStream(block: XzBlock): { header: Buffer; trailer: Buffer } {
  const flagsCrc = Buffer.alloc(4);
  flagsCrc.writeUInt32LE(zlib.crc32(block.streamFlags) >>> 0);
  const header = Buffer.concat([XZ_MAGIC, block.streamFlags, flagsCrc]);
  const records = [0, 1, ...xzVarint(block.unpadded), ...xzVarint(block.size)];
  while (records.length % 4 !== 0) records.push(0);
  const index = Buffer.alloc(records.length + 4);
  index.set(records);
  index.writeUInt32LE(zlib.crc32(index.subarray(0, records.length)) >>> 0, records.length);
  const footer = Buffer.alloc(12);
  footer.writeUInt32LE(index.length / 4 - 1, 4);
  footer.set(block.streamFlags, 8);
  footer.write(XZ_FOOTER_MAGIC, 10, 'latin1');
  footer.writeUInt32LE(zlib.crc32(footer.subarray(4, 10)) >>> 0, 0);
  return { header, trailer: Buffer.concat([index, footer]) };
}

const LZMA2_FILTER = 0x21;

/**
 * The LZMA2 dictionary a block's decoder allocates, from the block header's filter flags
 * (what a decoder of it costs in memory); null where the header can't say.
 */
export function blockDictionary(header: Buffer): number | null {
  if (header.length < 2) return null;
  const flags = header[1];
  let pos = 2;
  const varint = (): number => {
    let value = 0;
    for (let i = 0, scale = 1; i < 9 && pos < header.length; i++, scale *= 128) {
      const byte = header[pos++];
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return value;
    }
    return -1;
  };
  if (flags & 0x40) varint(); // compressed size
  if (flags & 0x80) varint(); // uncompressed size
  for (let filter = 0; filter <= (flags & 0x03); filter++) {
    const id = varint();
    const propsSize = varint();
    if (id < 0 || propsSize < 0 || pos + propsSize > header.length) return null;
    if (id === LZMA2_FILTER && propsSize === 1) {
      const bits = header[pos] & 0x3f;
      if (bits > 40) return null;
      return bits === 40 ? 2 ** 32 - 1 : (2 | (bits & 1)) * 2 ** (Math.floor(bits / 2) + 11);
    }
    pos += propsSize;
  }
  return null;
}
