// Compressed images as sources: .gz, .xz, .zst, .bz2 and the image entry of a
// .zip, decompressed as a stream (memory stays bounded whatever the image).
// This is the folder's public face: it picks the format (detect.ts), lets the
// format read its headers (one file each) and opens the shared stream source
// (source.ts).

import { DeviceError } from '../device';
import { openBzip2 } from './bzip2';
import { compressionOf } from './detect';
import { openGzip } from './gzip';
import {
  CompressedImage,
  CompressedSourceError,
  FormatError,
  type CompressedSource,
  type Compression,
  type Opened,
} from './source';
import { openXz } from './xz';
import { openZip } from './zip';
import { openZstd } from './zstd';

export { detectCompression } from './detect';
export { CompressedSourceError, type CompressedSource, type Compression } from './source';

const FORMATS: Record<Compression, (file: string) => Promise<Opened>> = {
  gzip: openGzip,
  xz: openXz,
  zstd: openZstd,
  bzip2: openBzip2,
  zip: openZip,
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
