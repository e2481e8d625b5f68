// Compressed images as sources: .gz, .xz, .zst, .bz2 and the image entry of a
// .zip, decompressed as a stream (memory stays bounded whatever the image).
// This is the folder's public face: it picks the format (detect.ts), lets the
// format read its headers (one file each), and opens the shared stream source
// (source.ts) or says how big the image is.

import fs from 'node:fs';
import { DeviceError } from '../device';
import { compressionOf } from './detect';
import {
  CompressedImage,
  CompressedSourceError,
  FormatError,
  type CompressedSource,
  type Compression,
  type Opened,
} from './source';

export { detectCompression } from './detect';
export { CompressedSourceError, type CompressedSource, type Compression } from './source';

/** Each format's module is loaded when a file of it is opened: a CLI run loads one. */
const FORMATS: Record<Compression, (file: string) => Promise<Opened>> = {
  gzip: async (file) => (await import('./gzip')).openGzip(file),
  xz: async (file) => (await import('./xz')).openXz(file),
  zstd: async (file) => (await import('./zstd')).openZstd(file),
  bzip2: async (file) => (await import('./bzip2')).openBzip2(file),
  zip: async (file) => (await import('./zip')).openZip(file),
};

export async function openCompressedSource(file: string): Promise<CompressedSource> {
  const compression = compressionOf(file);
  if (compression === null) {
    throw new CompressedSourceError(
      'open',
      file,
      0,
      0,
      'EUNSUPPORTED',
      'not a compressed image (gzip, xz, zstd, bzip2 or zip)',
    );
  }
  return new CompressedImage(file, compression, await readHeaders(file, compression));
}

/** How big an image is, from what its file says before anything is decompressed. */
export interface ImageSize {
  /** Bytes of the image (decompressed). */
  size: number;
  /**
   * True: `size` is exact (the format states it, or the file is not compressed). False: an
   * estimate. gzip: ISIZE, plus the 4 GiB wraps the compressed size needs (right for one
   * member under 4 GiB, low past that or with several members); bzip2, and zstd whose
   * frames state no size: the compressed size.
   */
  known: boolean;
  /** Null for a plain (uncompressed) image. */
  compression: Compression | null;
}

/**
 * The size of the image in `file`, reading only headers, trailers and indexes: the xz
 * index, the zip central directory, the zstd seek table or frame headers, the gzip trailer.
 * Where known, it is the knownSize of a source opened on the file: the same code reads
 * both. Throws the DeviceError opening it would (missing or unreadable, damaged headers, a
 * variant the decoders can't read).
 */
export async function imageSize(file: string): Promise<ImageSize> {
  const compression = compressionOf(file);
  if (compression === null) {
    try {
      return { size: fs.statSync(file).size, known: true, compression };
    } catch (e) {
      throw new DeviceError('open', file, 0, 0, e as NodeJS.ErrnoException);
    }
  }
  const opened = await readHeaders(file, compression);
  if (opened.knownSize !== null) return { size: opened.knownSize, known: true, compression };
  return { size: opened.estimate ?? opened.compressedSize, known: false, compression };
}

/** What the format's headers say; any failure as an 'open' DeviceError naming the file. */
async function readHeaders(file: string, compression: Compression): Promise<Opened> {
  try {
    return await FORMATS[compression](file);
  } catch (e) {
    throw openError(file, compression, e);
  }
}

function openError(file: string, compression: Compression, e: unknown): DeviceError {
  if (e instanceof DeviceError) return e;
  if (e instanceof FormatError)
    return new CompressedSourceError('open', file, 0, 0, e.code, e.message);
  const err = e as NodeJS.ErrnoException;
  if (err.syscall) return new DeviceError('open', file, 0, 0, err);
  return new CompressedSourceError(
    'open',
    file,
    0,
    0,
    'ECORRUPT',
    `not a readable ${compression} file: ${err.message}`,
  );
}
