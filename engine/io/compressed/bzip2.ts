// bzip2 (.bz2): unbzip2-stream, in JavaScript. The format states no size.

import { Readable } from 'node:stream';
import { fileSize, fileStream } from './file';
import { StreamDecoder, type Opened } from './source';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const unbzip2 = require('unbzip2-stream') as () => NodeJS.ReadWriteStream;

/** Decompressed bytes the classic stream may hold before it is paused. */
const BUFFERED = 4 * 1024 * 1024;

export async function openBzip2(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const decoder = () => {
    const counter = { bytes: 0 };
    return new StreamDecoder(() => {
      const bunzip = unbzip2();
      const input = fileStream(file, counter);
      input.on('error', (e) => bunzip.emit('error', e));
      return fromClassicStream(input.pipe(bunzip), input);
    }, counter);
  };
  return { knownSize: null, compressedSize, decoder };
}

/**
 * unbzip2-stream is a classic (through) stream. Readable.wrap() won't do: through emits
 * 'close' right after 'end', and wrap() then destroys the wrapper before its buffered
 * chunks are read. Backpressure: pause the through stream, which pauses the file.
 */
function fromClassicStream(classic: NodeJS.ReadableStream, input: Readable): Readable {
  const out = new Readable({
    highWaterMark: BUFFERED,
    read() {
      classic.resume();
    },
    destroy(error, done) {
      input.destroy();
      done(error);
    },
  });
  classic.on('data', (chunk: Buffer) => {
    if (!out.push(chunk)) classic.pause();
  });
  classic.on('end', () => out.push(null));
  classic.on('error', (e: Error) => out.destroy(e));
  return out;
}
