// bzip2 (.bz2). The format states no size. Decoded in-process with the system's libbzip2
// (libbz2.ts, through koffi: Debian's libbz2-1.0, macOS's own), bzip2's independent blocks
// side by side on every core, up to 4 (bzip2-decoder.ts), as lbzip2 does: faster than
// `bzip2 -dc`, which decodes on one. Windows ships no libbzip2, and the threads read the
// file themselves, which a download is not: there unbzip2-stream, in JavaScript, a few MiB/s.

import os from 'node:os';
import { Readable } from 'node:stream';
import type { SourceFile } from '../source-file';
import { Bzip2Decoder } from './bzip2-decoder';
import { haveLibbz2 } from './libbz2';
import { StreamDecoder, type Opened } from './source';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const unbzip2 = require('unbzip2-stream') as () => NodeJS.ReadWriteStream;

/** Decompressed bytes held ahead of the reader before the JavaScript decoder is paused. */
const BUFFERED = 4 * 1024 * 1024;
/** Decoding threads at most: past 4, the reader (one thread copying to the disk) is the limit. */
const MAX_LANES = 4;

export async function openBzip2(file: SourceFile): Promise<Opened> {
  const compressedSize = file.size ?? 0;
  const lanes = Math.min(os.availableParallelism(), MAX_LANES);
  const local = file.localPath;
  const decoder = () => {
    if (local !== null && haveLibbz2()) return new Bzip2Decoder(local, compressedSize, lanes);
    const counter = { bytes: 0 };
    return new StreamDecoder(() => inJavaScript(file, counter), counter);
  };
  return { knownSize: null, compressedSize, decoder };
}

function inJavaScript(file: SourceFile, counter: { bytes: number }): Readable {
  const bunzip = unbzip2();
  const input = file.stream(counter);
  input.on('error', (e) => bunzip.emit('error', e));
  return fromClassicStream(input.pipe(bunzip), input);
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
