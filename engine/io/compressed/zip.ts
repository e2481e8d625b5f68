// zip (.zip): the image entry (the only file, or the largest with an image-like
// name), stored or deflated. The central directory, at the end, states its size (a
// download whose server ignores Range is read to its end to find it).

import path from 'node:path';
import { PassThrough, Transform, pipeline, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import type { SourceFile } from '../source-file';
import { FormatError, OUTPUT_CHUNK, StreamDecoder, type Opened } from './source';

const IMAGE_EXTENSIONS = new Set(['.img', '.iso', '.raw', '.bin']);

export async function openZip(file: SourceFile): Promise<Opened> {
  if (file.size === null) {
    throw new FormatError('the server does not say how long the zip is', 'EUNSUPPORTED');
  }
  const zip = await yauzl.fromRandomAccessReaderPromise(new FileReader(file), file.size, {
    autoClose: false,
    validateEntrySizes: true,
  });
  let entry: yauzl.Entry;
  let dataStart: number;
  try {
    entry = pickZipEntry(await zipEntries(zip));
    if (entry.isEncrypted()) {
      throw new FormatError(`zip entry "${entry.fileName}" is encrypted`, 'EUNSUPPORTED');
    }
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
      throw new FormatError(
        `zip entry "${entry.fileName}" uses compression method ${entry.compressionMethod}; ` +
          'only stored (0) and deflate (8) entries can be read',
        'EUNSUPPORTED',
      );
    }
    dataStart = (await zip.readLocalFileHeaderPromise(entry, { minimal: true })).fileDataStart;
  } finally {
    zip.close();
  }
  const { compressedSize } = entry;
  // The entry's bytes are read directly (yauzl's own stream reads 16 KiB at a time).
  const decoder = () => {
    const counter = { bytes: 0 };
    return new StreamDecoder(() => {
      const raw = file.stream(counter, dataStart, dataStart + compressedSize);
      const inflate =
        entry.compressionMethod === 8
          ? zlib.createInflateRaw({ chunkSize: OUTPUT_CHUNK })
          : new PassThrough();
      return pipeline(raw, inflate, zipCheck(entry), () => undefined);
    }, counter);
  };
  return { knownSize: entry.uncompressedSize, compressedSize, decoder };
}

/** yauzl reads the directory through this: each of its reads one read of the file. */
class FileReader extends yauzl.RandomAccessReader {
  constructor(private readonly file: SourceFile) {
    super();
  }

  _readStreamForRange(start: number, end: number) {
    return this.file.stream({ bytes: 0 }, start, end);
  }

  read(
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
    callback: (err: Error | null) => void,
  ): void {
    this.file.read(position, length).then(
      (got) => {
        got.copy(buffer, offset);
        callback(got.length < length ? new Error('the zip ends early (truncated?)') : null);
      },
      (e: Error) => callback(e),
    );
  }
}

function zipEntries(zip: yauzl.ZipFile): Promise<yauzl.Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: yauzl.Entry[] = [];
    zip.on('entry', (entry: yauzl.Entry) => {
      entries.push(entry);
      zip.readEntry();
    });
    zip.on('end', () => resolve(entries));
    zip.on('error', reject);
    zip.readEntry();
  });
}

/** The single file entry, or the largest with an image-like extension. */
function pickZipEntry(entries: yauzl.Entry[]): yauzl.Entry {
  const files = entries.filter((e) => !e.fileName.endsWith('/'));
  if (files.length === 1) return files[0];
  const images = files.filter((e) => IMAGE_EXTENSIONS.has(path.extname(e.fileName).toLowerCase()));
  if (images.length > 0) {
    return images.reduce((a, b) => (b.uncompressedSize > a.uncompressedSize ? b : a));
  }
  const names = files.slice(0, 20).map((e) => e.fileName);
  const more = files.length > names.length ? `, and ${files.length - names.length} more` : '';
  const list = files.length === 0 ? 'it holds no files' : `entries: ${names.join(', ')}${more}`;
  throw new FormatError(
    `no disk image in the zip (an image is the only file, or one ending in ` +
      `${[...IMAGE_EXTENSIONS].join(' ')}); ${list}`,
    'EUNSUPPORTED',
  );
}

/** yauzl checks no CRC: check it, and the size, as the entry's data goes by. */
function zipCheck(entry: yauzl.Entry): Transform {
  let crc = 0;
  let length = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      crc = zlib.crc32(chunk, crc);
      length += chunk.length;
      if (length > entry.uncompressedSize) {
        done(
          new Error(`entry holds more than the ${entry.uncompressedSize} bytes its header says`),
        );
      } else done(null, chunk);
    },
    flush(done: TransformCallback) {
      if (length !== entry.uncompressedSize) {
        done(new Error(`entry ends after ${length} of ${entry.uncompressedSize} bytes`));
      } else if (crc >>> 0 !== entry.crc32 >>> 0) {
        done(new Error(`CRC-32 mismatch (data ${hex(crc)}, header ${hex(entry.crc32)})`));
      } else done();
    },
  });
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}
