// Reading the small pieces of a compressed file that say what it holds — headers,
// trailers, indexes — from a file on this machine (synchronously, by descriptor) or
// from any SourceFile (a download too).

import fs from 'node:fs';
import type { SourceFile } from '../source-file';
import { FormatError } from './source';

/** Up to `length` bytes at `position`; fewer only at the end of the file. */
export function preadSync(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/** Exactly `length` bytes at `position`, or a FormatError naming `what`. */
export function need(fd: number, position: number, length: number, what: string): Buffer {
  const buf = position >= 0 ? preadSync(fd, position, length) : Buffer.alloc(0);
  if (buf.length < length) throw new FormatError(`${what} lies outside the file (truncated?)`);
  return buf;
}

/** Exactly `length` bytes at `position` of `file`, or a FormatError naming `what`. */
export async function needBytes(
  file: SourceFile,
  position: number,
  length: number,
  what: string,
): Promise<Buffer> {
  const buf = position >= 0 ? await file.read(position, length) : Buffer.alloc(0);
  if (buf.length < length) throw new FormatError(`${what} lies outside the file (truncated?)`);
  return buf;
}

/** `read(fd)` on the file opened for reading, closed again whatever happens. */
export function withFd<T>(file: string, read: (fd: number) => T): T {
  const fd = fs.openSync(file, 'r');
  try {
    return read(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The file's size, where headers at its end are to be read: a download that can't say has none. */
export function sizeForTrailer(file: SourceFile): number | null {
  return file.seekable ? file.size : null;
}
