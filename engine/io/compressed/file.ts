// The compressed file itself: streamed to a decoder, or read in small pieces for
// the headers, trailers and indexes that say what it holds.

import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { ReadableStream } from 'node:stream/web';
import { FormatError } from './source';

/** Compressed bytes read from the file at a time. */
const INPUT_CHUNK = 1024 * 1024;

export function fileSize(file: string): number {
  return fs.statSync(file).size;
}

/** Compressed bytes of [start, end) of the file, 1 MiB at a time; `counter.bytes` counts them. */
export function fileStream(
  file: string,
  counter: { bytes: number },
  start = 0,
  end?: number,
): Readable {
  const stream = fs.createReadStream(file, {
    start,
    end: end === undefined ? undefined : end - 1,
    highWaterMark: INPUT_CHUNK,
  });
  stream.on('data', (chunk) => {
    counter.bytes += chunk.length;
  });
  return stream;
}

/**
 * The same bytes as a web stream, read one chunk ahead of the decoder. (Node 20's
 * Readable.toWeb counts the file stream's 1 MiB high-water mark in chunks: it read a
 * whole .xz file into memory ahead of the decoder.)
 */
export function fileWebStream(
  file: string,
  counter: { bytes: number },
): ReadableStream<Uint8Array> {
  let handle: fs.promises.FileHandle | null = null;
  let position = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        handle ??= await fs.promises.open(file, 'r');
        const chunk = Buffer.allocUnsafe(INPUT_CHUNK);
        const { bytesRead } = await handle.read(chunk, 0, INPUT_CHUNK, position);
        if (bytesRead === 0) {
          await handle.close();
          controller.close();
          return;
        }
        position += bytesRead;
        counter.bytes += bytesRead;
        controller.enqueue(chunk.subarray(0, bytesRead));
      },
      async cancel() {
        await handle?.close();
      },
    },
    { highWaterMark: 1 },
  );
}

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

/** `read(fd)` on the file opened for reading, closed again whatever happens. */
export function withFd<T>(file: string, read: (fd: number) => T): T {
  const fd = fs.openSync(file, 'r');
  try {
    return read(fd);
  } finally {
    fs.closeSync(fd);
  }
}
