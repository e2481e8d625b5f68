// gzip (.gz): Node's gunzip, which goes on through concatenated members (pigz,
// multi-member files).

import { pipeline } from 'node:stream';
import zlib from 'node:zlib';
import { fileSize, fileStream } from './file';
import { OUTPUT_CHUNK, StreamDecoder, type Opened } from './source';

export async function openGzip(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const decoder = () => {
    const counter = { bytes: 0 };
    return new StreamDecoder(() => {
      const gunzip = zlib.createGunzip({ chunkSize: OUTPUT_CHUNK });
      return pipeline(fileStream(file, counter), gunzip, () => undefined);
    }, counter);
  };
  // The trailer's ISIZE is the size modulo 4 GiB, of the last member only: not a size.
  return { knownSize: null, compressedSize, decoder };
}
