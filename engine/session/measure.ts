// The measuring pass: a compressed image whose file doesn't say how big it is (bzip2,
// gzip past 4 GiB or of several members, zstd without sizes) decompressed once to its
// end, nothing written, so that its size is known before a drive is chosen for it.

import { borrowBuffer, giveBack, MAX_IO_BYTES } from '../io/buffers';
import { isStream, knownSize, readSome } from '../io/device';
import { openReadable } from '../io/open';

export interface Measured {
  size: number;
  /** Decompressed to its end (false: its file states the size). */
  measured: boolean;
}

/** The size of the image `path` holds; `onProgress` hears decompressed and compressed bytes so far. */
export async function measureSource(
  path: string,
  onProgress?: (bytes: number, compressed: { done: number; total: number }) => void,
): Promise<Measured> {
  const source = await openReadable(path);
  const buffer = borrowBuffer(MAX_IO_BYTES);
  try {
    const stated = knownSize(source);
    if (stated !== null || !isStream(source))
      return { size: stated ?? source.size, measured: false };
    for (let at = 0; ;) {
      const n = await readSome(source, buffer, at);
      at += n;
      onProgress?.(at, { done: source.compressedPosition, total: source.compressedSize });
      if (n < buffer.length) return { size: at, measured: true };
    }
  } finally {
    giveBack([buffer]);
    await source.close();
  }
}
