// Compressed images as sources: .gz, .xz, .zst, .bz2 and the image entry of a
// .zip, decompressed as a stream (memory stays bounded whatever the image).
// This is the folder's public face: it picks the format (detect.ts), lets the
// format read its headers (one file each), and opens the shared stream source
// (source.ts) or says how big the image is.

import { DeviceError } from '../device';
import { LocalFile, type SourceFile } from '../source-file';
import { compressionOf } from './detect';
import {
  CompressedImage,
  CompressedSourceError,
  FormatError,
  type CompressedSource,
  type Compression,
  type Opened,
} from './source';

export { compressionOfHead, detectCompression } from './detect';
export { CompressedSourceError, type CompressedSource, type Compression } from './source';

/** Each format's module is loaded when a file of it is opened: a CLI run loads one. */
const FORMATS: Record<Compression | 'plain', (file: SourceFile) => Promise<Opened>> = {
  gzip: async (file) => (await import('./gzip')).openGzip(file),
  xz: async (file) => (await import('./xz')).openXz(file),
  zstd: async (file) => (await import('./zstd')).openZstd(file),
  bzip2: async (file) => (await import('./bzip2')).openBzip2(file),
  zip: async (file) => (await import('./zip')).openZip(file),
  plain: async (file) => (await import('./plain')).openPlain(file),
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
  return openStream(localFile(file), compression);
}

/**
 * A stream source over `file` (a download, say) holding `compression`; null: a plain image,
 * read as a stream too.
 */
export async function openStream(
  file: SourceFile,
  compression: Compression | null,
): Promise<CompressedSource> {
  return new CompressedImage(file, compression, await readHeaders(file, compression));
}

function localFile(file: string): LocalFile {
  try {
    return LocalFile.open(file);
  } catch (e) {
    throw new DeviceError('open', file, 0, 0, e as NodeJS.ErrnoException);
  }
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
  if (compression === null) return { size: localFile(file).size, known: true, compression };
  return sizeOf(await readHeaders(localFile(file), compression), compression);
}

/** imageSize of a source already opened (a download, say). */
export function streamSize(source: CompressedSource): ImageSize {
  const { knownSize, estimate, compressedSize, compression } = source;
  return sizeOf({ knownSize, estimate: estimate ?? undefined, compressedSize }, compression);
}

function sizeOf(
  opened: Pick<Opened, 'knownSize' | 'estimate' | 'compressedSize'>,
  compression: Compression | null,
): ImageSize {
  if (opened.knownSize !== null) return { size: opened.knownSize, known: true, compression };
  return { size: opened.estimate ?? opened.compressedSize, known: false, compression };
}

/** What the format's headers say; any failure as an 'open' DeviceError naming the file. */
async function readHeaders(file: SourceFile, compression: Compression | null): Promise<Opened> {
  try {
    return await FORMATS[compression ?? 'plain'](file);
  } catch (e) {
    throw openError(file.name, compression, e);
  }
}

function openError(file: string, compression: Compression | null, e: unknown): DeviceError {
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
    `not a readable ${compression ?? 'image'} file: ${err.message}`,
  );
}
