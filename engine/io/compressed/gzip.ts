// gzip (.gz): Node's gunzip, which goes on through concatenated members (pigz,
// multi-member files).
//
// The trailer's ISIZE is the size modulo 4 GiB, of the last member only. It is
// the image's size only when the file is one member too small to hold 4 GiB;
// otherwise it still places the size: the least value ≡ ISIZE (mod 4 GiB) that
// the compressed bytes can hold. A download whose end can't be read on its own (the
// server ignores Range) states nothing.

import { pipeline } from 'node:stream';
import zlib from 'node:zlib';
import type { SourceFile } from '../source-file';
import { needBytes, sizeForTrailer } from './file';
import { OUTPUT_CHUNK, StreamDecoder, type Opened } from './source';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b, 0x08]);
/** Header (10) and trailer (8) bytes that every member has and that decompress to nothing. */
const MEMBER_OVERHEAD = 18;
/** Deflate's densest code is 2 bits for 258 bytes: no member holds over 1032 bytes per byte. */
const DEFLATE_MAX_RATIO = 1032;
const ISIZE_MODULUS = 2 ** 32;
/** A file up to this long can't hold 4 GiB: ISIZE is exact when it is one member. */
const ISIZE_EXACT_UP_TO = MEMBER_OVERHEAD + Math.floor((ISIZE_MODULUS - 1) / DEFLATE_MAX_RATIO);
/** Deflate grows data by well under 0.1 % at worst (stored blocks); names in headers add a little. */
const GROWTH = 0.001;
const HEADER_NAMES = 64 * 1024;

export async function openGzip(file: SourceFile): Promise<Opened> {
  const compressedSize = sizeForTrailer(file);
  const { knownSize, estimate } =
    compressedSize === null
      ? { knownSize: null, estimate: undefined }
      : await gzipSize(file, compressedSize);
  const decoder = () => {
    const counter = { bytes: 0 };
    return new StreamDecoder(() => {
      const gunzip = zlib.createGunzip({ chunkSize: OUTPUT_CHUNK });
      return pipeline(file.stream(counter), gunzip, () => undefined);
    }, counter);
  };
  return { knownSize, estimate, compressedSize: file.size ?? 0, decoder };
}

async function gzipSize(
  file: SourceFile,
  compressedSize: number,
): Promise<{ knownSize: number | null; estimate: number }> {
  const trailer = await needBytes(file, compressedSize - 8, 8, 'the gzip trailer');
  const isize = trailer.readUInt32LE(4);
  // An all-zero trailer is as likely zero padding after the data (gunzip allows it) as an
  // empty image: not a size to state. Looking for a second member reads the whole file:
  // a download's is read once, by the copy.
  const padded = trailer.every((byte) => byte === 0);
  const small = compressedSize <= ISIZE_EXACT_UP_TO && file.localPath !== null;
  if (small && !padded && (await oneMember(file, compressedSize))) {
    return { knownSize: isize, estimate: isize };
  }
  const data = Math.max(0, compressedSize - MEMBER_OVERHEAD);
  const least = Math.max(0, Math.floor(data * (1 - GROWTH)) - HEADER_NAMES);
  const wraps = Math.max(0, Math.ceil((least - isize) / ISIZE_MODULUS));
  return { knownSize: null, estimate: isize + wraps * ISIZE_MODULUS };
}

/**
 * No second member: nowhere after the first byte do the bytes a member starts with appear
 * (with no reserved flag set: zlib refuses those). They may turn up inside compressed data
 * by chance; then the size is just not stated.
 */
async function oneMember(file: SourceFile, compressedSize: number): Promise<boolean> {
  const data = await file.read(0, compressedSize);
  for (let at = data.indexOf(GZIP_MAGIC, 1); at !== -1; at = data.indexOf(GZIP_MAGIC, at + 1)) {
    if (at + 3 >= data.length || (data[at + 3] & 0xe0) === 0) return false;
  }
  return true;
}
