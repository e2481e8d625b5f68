// xz (.xz): xz-decompress (WebAssembly). The uncompressed size is the sum of the
// index of every stream, read from the end of the file.

import { Readable } from 'node:stream';
import type { ReadableStream as NodeWebStream } from 'node:stream/web';
import zlib from 'node:zlib';
import { XZ_MAGIC } from './detect';
import { fileSize, fileWebStream, need, withFd } from './file';
import { FormatError, StreamDecoder, type Opened } from './source';

export async function openXz(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const knownSize = withFd(file, (fd) => readXzIndexes(fd, compressedSize));
  const decoder = () => {
    const counter = { bytes: 0 };
    return new StreamDecoder(() => {
      const XzReadableStream = isolatedXzReadableStream();
      // xz-decompress is typed against the DOM's streams; Node's are the same at run time.
      const input = fileWebStream(file, counter) as unknown as globalThis.ReadableStream;
      return Readable.fromWeb(new XzReadableStream(input) as unknown as NodeWebStream);
    }, counter);
  };
  return { knownSize, compressedSize, decoder, explain: explainXzError };
}

type XzReadableStreamClass = typeof import('xz-decompress').XzReadableStream;

/**
 * xz-decompress runs every stream of one loaded copy through a single lock: a second stream
 * waits, forever, until the first ends. Each source therefore loads its own copy of the
 * module (its own WebAssembly instance), so two xz sources can be open at once.
 */
function isolatedXzReadableStream(): XzReadableStreamClass {
  const id = require.resolve('xz-decompress');
  const cached = require.cache[id];
  delete require.cache[id];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(id) as typeof import('xz-decompress')).XzReadableStream;
  } finally {
    if (cached) require.cache[id] = cached;
    else delete require.cache[id];
  }
}

const XZ_ERRORS: Record<string, string> = {
  '2': 'unsupported integrity check',
  '3': 'out of memory',
  '4': 'needs more memory than allowed',
  '5': 'not xz data',
  '6': 'unsupported xz options (filter or integrity check)',
  '7': 'corrupt data',
  '8': 'the data ends early (truncated file?)',
};

/** xz-decompress reports liblzma's return codes by number. */
function explainXzError(err: Error): string | undefined {
  const code = /error code (\d+)/.exec(err.message)?.[1];
  return code ? XZ_ERRORS[code] : undefined;
}

const XZ_FOOTER_MAGIC = 'YZ';
const XZ_SUPPORTED_CHECKS = new Map([
  [0, 'none'],
  [1, 'CRC32'],
  [4, 'CRC64'],
]);

/**
 * Sum of the uncompressed sizes in the index of every stream, read from the end: stream
 * padding, footer, index (records of unpadded and uncompressed block sizes), header.
 */
function readXzIndexes(fd: number, fileSize: number): number {
  let end = fileSize;
  let total = 0;
  let streams = 0;
  while (end > 0) {
    // Stream padding: zero bytes in groups of four.
    for (let i = 0; end >= 4 && need(fd, end - 4, 4, 'padding').readUInt32LE(0) === 0; i++) {
      if (i === 65536) throw new FormatError(`over 256 KiB of zeros before byte ${end}: not xz`);
      end -= 4;
    }
    if (end === 0 && streams > 0) break;
    const footer = need(fd, end - 12, 12, 'the xz stream footer');
    if (footer.toString('latin1', 10, 12) !== XZ_FOOTER_MAGIC) {
      throw new FormatError(`no xz stream footer before byte ${end} (truncated file?)`);
    }
    if (zlib.crc32(footer.subarray(4, 10)) >>> 0 !== footer.readUInt32LE(0)) {
      throw new FormatError(`the xz stream footer before byte ${end} is corrupt`);
    }
    const indexSize = (footer.readUInt32LE(4) + 1) * 4;
    const indexStart = end - 12 - indexSize;
    const index = need(fd, indexStart, indexSize, 'the xz index');
    const { uncompressed, blocks } = parseXzIndex(index, indexStart);
    const start = indexStart - blocks - 12;
    const header = need(fd, start, 12, 'the xz stream header');
    if (
      !header.subarray(0, 6).equals(XZ_MAGIC) ||
      zlib.crc32(header.subarray(6, 8)) >>> 0 !== header.readUInt32LE(8) ||
      !header.subarray(6, 8).equals(footer.subarray(8, 10))
    ) {
      throw new FormatError(`no valid xz stream header at byte ${start}`);
    }
    const check = header[7] & 0x0f;
    if (header[6] !== 0 || !XZ_SUPPORTED_CHECKS.has(check)) {
      const name = check === 0x0a ? 'SHA-256' : `type ${check}`;
      throw new FormatError(
        `the xz stream at byte ${start} uses a ${name} integrity check; the decoder ` +
          `reads only none, CRC32 and CRC64 (recompress with xz's default --check=crc64)`,
        'EUNSUPPORTED',
      );
    }
    total += uncompressed;
    streams += 1;
    end = start;
  }
  return total;
}

function parseXzIndex(index: Buffer, at: number): { uncompressed: number; blocks: number } {
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
  const records = varint();
  let uncompressed = 0;
  let blocks = 0;
  for (let i = 0; i < records; i++) {
    const unpadded = varint();
    uncompressed += varint();
    blocks += Math.ceil(unpadded / 4) * 4;
  }
  if (!Number.isSafeInteger(uncompressed)) throw corrupt('size too large');
  return { uncompressed, blocks };
}
