// Compressed images as sources: .gz, .xz, .zst, .bz2 and the image entry of a
// .zip, decompressed as a stream (memory stays bounded whatever the image).
//
// A stream only goes forwards, so reads must too: concurrent readAt() calls are
// queued and served in ascending offset order, and a gap before the next read
// is decompressed and dropped — that is how a resumed job skips the regions it
// already hydrated. Each request is decompressed straight into its buffer.
//
// The uncompressed size is read from the format where it says it (the xz index,
// the zip central directory, the zstd frame headers); otherwise `size` is
// Number.MAX_SAFE_INTEGER and the end shows as a short readAt().
//
// Every failure is a DeviceError whose code is never a media error (EIO…): a
// compressed stream can't be read around a bad spot, so the copier must not try
// to delimit one. Codes: ECORRUPT (bad or truncated data), ESOURCEIO (reading
// the compressed file failed), EOF (read() past the end), ESPIPE (an offset
// before one already read), EBADF (closed), EUNSUPPORTED (open: a variant the
// decoders can't read), EROFS (write).

import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable, Transform, pipeline, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import * as zstd from 'zstd-napi/binding';
import type { Device } from './device';
import { DeviceError } from './device';
import { IMAGE_BLOCK_SIZE } from './image-file';

export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'zip';

export interface CompressedSource extends Device {
  readonly compression: Compression;
  /** Uncompressed size where the format states it (xz index, zip central directory, zstd frame content sizes summed over frames), else null. */
  readonly knownSize: number | null;
  readonly compressedSize: number;
  /** Compressed bytes consumed so far (for progress when the size is unknown). */
  readonly compressedPosition: number;
  /**
   * Like read() but returns the number of bytes read; fewer than buffer.length only at the
   * end of the data. Offsets must never go backwards across calls; a gap is decompressed and
   * discarded. Concurrent calls are served in ascending offset order.
   */
  readAt(buffer: Buffer, offset: number): Promise<number>;
}

const KIB = 1024;
const MIB = 1024 * KIB;
/** Compressed bytes read from the file at a time. */
const INPUT_CHUNK = MIB;
/** Decompressed bytes produced per zlib call, and dropped per step when skipping a gap. */
const OUTPUT_CHUNK = MIB;
/** zstd frames may ask for windows up to 2 GiB (`zstd --long=31`); the frame header says how much. */
const ZSTD_WINDOW_LOG_MAX = 31;

/** A DeviceError whose message carries the detail even when it has a code. */
export class CompressedSourceError extends DeviceError {
  constructor(
    op: DeviceError['op'],
    path: string,
    offset: number,
    length: number,
    code: string,
    detail: string,
  ) {
    super(op, path, offset, length, Object.assign(new Error(detail), { code }));
    const where = op === 'flush' || op === 'open' ? '' : ` at byte ${offset} (+${length})`;
    this.message = `${op} failed on ${path}${where}: ${detail}`;
  }
}

/** Refusal found while opening (bad headers, unsupported variant); becomes an 'open' DeviceError. */
class FormatError extends Error {
  constructor(
    message: string,
    readonly code: 'ECORRUPT' | 'EUNSUPPORTED' = 'ECORRUPT',
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------
// Detection

const NAME_SUFFIXES: Array<[RegExp, Compression]> = [
  [/\.(gz|gzip)$/i, 'gzip'],
  [/\.xz$/i, 'xz'],
  [/\.(zst|zstd)$/i, 'zstd'],
  [/\.(bz2|bzip2)$/i, 'bzip2'],
  [/\.zip$/i, 'zip'],
];

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const BZIP2_BLOCK_MAGIC = Buffer.from([0x31, 0x41, 0x59, 0x26, 0x53, 0x59]);
const BZIP2_END_MAGIC = Buffer.from([0x17, 0x72, 0x45, 0x38, 0x50, 0x90]);

/** By content (magic bytes) first, by name second; null for a plain image. Synchronous, reads a few bytes. */
export function detectCompression(path: string): Compression | null {
  let byContent: Compression | null = null;
  try {
    const fd = fs.openSync(path, 'r');
    try {
      byContent = detectByContent(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Unreadable here: opening it will say why. The name may still tell.
  }
  return byContent ?? detectByName(path);
}

function detectByName(file: string): Compression | null {
  const name = path.basename(file);
  return NAME_SUFFIXES.find(([suffix]) => suffix.test(name))?.[1] ?? null;
}

function detectByContent(fd: number): Compression | null {
  const head = preadSync(fd, 0, 16);
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 8) return 'gzip';
  if (head.length >= 6 && head.subarray(0, 6).equals(XZ_MAGIC)) return 'xz';
  if (
    head.length >= 10 &&
    head.toString('latin1', 0, 3) === 'BZh' &&
    head[3] >= 0x31 &&
    head[3] <= 0x39 &&
    (head.subarray(4, 10).equals(BZIP2_BLOCK_MAGIC) || head.subarray(4, 10).equals(BZIP2_END_MAGIC))
  ) {
    return 'bzip2';
  }
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b) {
    // A local file header, or the end record of an empty archive.
    if ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6)) return 'zip';
  }
  // zstd: a frame, possibly after skippable frames (which LZ4 shares: look past them).
  let at = 0;
  let buf = head;
  for (let i = 0; i < 16 && buf.length >= 4; i++) {
    const magic = buf.readUInt32LE(0);
    if (magic === ZSTD_MAGIC) return 'zstd';
    if ((magic & SKIPPABLE_MASK) >>> 0 !== SKIPPABLE_MAGIC || buf.length < 8) return null;
    at += 8 + buf.readUInt32LE(4);
    buf = preadSync(fd, at, 8);
  }
  return null;
}

// ---------------------------------------------------------------------------
// Opening

export async function openCompressedSource(file: string): Promise<CompressedSource> {
  let byContent: Compression | null;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      byContent = detectByContent(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new DeviceError('open', file, 0, 0, e as NodeJS.ErrnoException);
  }
  const compression = byContent ?? detectByName(file);
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
  // A zip may start with something else (a self-extractor): its directory is at the end.
  if (byContent === null && compression !== 'zip') {
    throw new CompressedSourceError(
      'open',
      file,
      0,
      0,
      'ECORRUPT',
      `named like a ${compression} file, but it does not start like one`,
    );
  }
  let opened: Opened;
  try {
    opened = await OPENERS[compression](file);
  } catch (e) {
    throw openError(file, compression, e);
  }
  return new CompressedImage(file, compression, opened);
}

interface Opened {
  knownSize: number | null;
  compressedSize: number;
  decoder: Decoder;
}

const OPENERS: Record<Compression, (file: string) => Promise<Opened>> = {
  gzip: openGzip,
  xz: openXz,
  zstd: openZstd,
  bzip2: openBzip2,
  zip: openZip,
};

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

function fileSize(file: string): number {
  return fs.statSync(file).size;
}

/** Compressed bytes of [start, end) of the file, 1 MiB at a time; `counter.bytes` counts them. */
function fileStream(file: string, counter: { bytes: number }, start = 0, end?: number): Readable {
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

async function openGzip(file: string): Promise<Opened> {
  const counter = { bytes: 0 };
  const compressedSize = fileSize(file);
  const decoder = new StreamDecoder(() => {
    // Node's gunzip goes on through concatenated members (pigz, multi-member files).
    const gunzip = zlib.createGunzip({ chunkSize: OUTPUT_CHUNK });
    return pipeline(fileStream(file, counter), gunzip, () => undefined);
  }, counter);
  // The trailer's ISIZE is the size modulo 4 GiB, of the last member only: not a size.
  return { knownSize: null, compressedSize, decoder };
}

async function openBzip2(file: string): Promise<Opened> {
  const counter = { bytes: 0 };
  const compressedSize = fileSize(file);
  const decoder = new StreamDecoder(() => {
    const bunzip = unbzip2();
    const input = fileStream(file, counter);
    input.on('error', (e) => bunzip.emit('error', e));
    return fromClassicStream(input.pipe(bunzip), input);
  }, counter);
  return { knownSize: null, compressedSize, decoder };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const unbzip2 = require('unbzip2-stream') as () => NodeJS.ReadWriteStream;

/**
 * unbzip2-stream is a classic (through) stream. Readable.wrap() won't do: through emits
 * 'close' right after 'end', and wrap() then destroys the wrapper before its buffered
 * chunks are read. Backpressure: pause the through stream, which pauses the file.
 */
function fromClassicStream(classic: NodeJS.ReadableStream, input: Readable): Readable {
  const out = new Readable({
    highWaterMark: 4 * MIB,
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

async function openXz(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const fd = fs.openSync(file, 'r');
  let knownSize: number;
  try {
    knownSize = readXzIndexes(fd, compressedSize);
  } finally {
    fs.closeSync(fd);
  }
  const counter = { bytes: 0 };
  const decoder = new StreamDecoder(() => {
    const XzReadableStream = isolatedXzReadableStream();
    const input = Readable.toWeb(fileStream(file, counter));
    const out = Readable.fromWeb(new XzReadableStream(input as unknown as ReadableStream));
    return out;
  }, counter);
  return { knownSize, compressedSize, decoder };
}

type XzReadableStreamClass = typeof import('xz-decompress').XzReadableStream;

/**
 * xz-decompress runs every stream of one loaded copy through a single lock: a second stream
 * waits, forever, until the first ends. Each source therefore loads its own copy of the
 * module (its own WebAssembly instance), so two xz sources can be open at once.
 */
function isolatedXzReadableStream(): XzReadableStreamClass {
  const id = require.resolve('xz-decompress');
  const cached = require.cache[id];
  delete require.cache[id];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(id) as typeof import('xz-decompress')).XzReadableStream;
  } finally {
    if (cached) require.cache[id] = cached;
    else delete require.cache[id];
  }
}

async function openZstd(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const fd = fs.openSync(file, 'r');
  let knownSize: number | null;
  try {
    knownSize = await zstdContentSize(fd, compressedSize);
  } finally {
    fs.closeSync(fd);
  }
  return { knownSize, compressedSize, decoder: new ZstdDecoder(file) };
}

const IMAGE_EXTENSIONS = new Set(['.img', '.iso', '.raw', '.bin']);

async function openZip(file: string): Promise<Opened> {
  const zip = await yauzl.openPromise(file, { autoClose: false, validateEntrySizes: true });
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
  const counter = { bytes: 0 };
  // The entry's bytes are read directly (yauzl's own stream reads 16 KiB at a time).
  const decoder = new StreamDecoder(() => {
    const raw = fileStream(file, counter, dataStart, dataStart + compressedSize);
    const inflate =
      entry.compressionMethod === 8
        ? zlib.createInflateRaw({ chunkSize: OUTPUT_CHUNK })
        : new PassThrough();
    return pipeline(raw, inflate, zipCheck(entry), () => undefined);
  }, counter);
  return { knownSize: entry.uncompressedSize, compressedSize, decoder };
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

// ---------------------------------------------------------------------------
// Decoders: a pull interface over one decompressed stream

interface Decoder {
  /** Fills `dst` from the stream; fewer bytes only at its end. */
  read(dst: Buffer): Promise<number>;
  /** Compressed bytes taken from the file so far. */
  readonly consumed: number;
  /** Decompressed bytes handed out so far. */
  readonly produced: number;
  close(): Promise<void>;
}

/** A decoder over a Node stream of decompressed chunks, started on the first read. */
class StreamDecoder implements Decoder {
  private output: Readable | null = null;
  private chunks: AsyncIterator<unknown> | null = null;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;
  private closed = false;
  produced = 0;

  constructor(
    private readonly start: () => Readable | Promise<Readable>,
    private readonly counter: { bytes: number },
    private readonly onClose: () => void = () => undefined,
  ) {}

  get consumed(): number {
    return this.counter.bytes;
  }

  async read(dst: Buffer): Promise<number> {
    if (!this.chunks) {
      this.output = await this.start();
      this.chunks = this.output[Symbol.asyncIterator]();
    }
    let filled = 0;
    while (filled < dst.length) {
      if (this.pending.length === 0) {
        if (this.ended || this.closed) break;
        const next = await this.chunks.next();
        if (next.done) {
          this.ended = true;
          break;
        }
        this.pending = asBuffer(next.value);
        continue;
      }
      const n = this.pending.copy(dst, filled);
      this.pending = this.pending.subarray(n);
      filled += n;
      this.produced += n;
    }
    return filled;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.output?.destroy();
    this.onClose();
  }
}

function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  const bytes = chunk as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** zstd through the native context, straight into the caller's buffer. */
class ZstdDecoder implements Decoder {
  private readonly dctx = new zstd.DCtx();
  private readonly counter = { bytes: 0 };
  private input: Readable | null = null;
  private chunks: AsyncIterator<unknown> | null = null;
  private pending: Buffer = Buffer.alloc(0);
  private eof = false;
  /** Inside a frame (or holding output not yet flushed). */
  private inFrame = false;
  produced = 0;

  constructor(private readonly file: string) {
    this.dctx.setParameter(zstd.DParameter.windowLogMax, ZSTD_WINDOW_LOG_MAX);
  }

  get consumed(): number {
    return this.counter.bytes - this.pending.length;
  }

  async read(dst: Buffer): Promise<number> {
    if (!this.chunks) {
      this.input = fileStream(this.file, this.counter);
      this.chunks = this.input[Symbol.asyncIterator]();
    }
    let filled = 0;
    while (filled < dst.length) {
      if (this.pending.length === 0 && !this.eof) {
        const next = await this.chunks.next();
        if (next.done) this.eof = true;
        else this.pending = asBuffer(next.value);
        continue;
      }
      if (this.pending.length === 0 && !this.inFrame) break; // the end, between frames
      const [hint, produced, used] = this.dctx.decompressStream(dst.subarray(filled), this.pending);
      this.pending = this.pending.subarray(used);
      filled += produced;
      this.produced += produced;
      this.inFrame = hint !== 0;
      if (produced === 0 && used === 0) {
        if (this.eof && this.pending.length === 0) {
          throw new Error('the data ends inside a frame (truncated file?)');
        }
        throw new Error('the decoder made no progress');
      }
    }
    return filled;
  }

  async close(): Promise<void> {
    this.input?.destroy();
  }
}

// ---------------------------------------------------------------------------
// The source

interface Request {
  buffer: Buffer;
  offset: number;
  resolve(n: number): void;
  reject(e: Error): void;
}

class CompressedImage implements CompressedSource {
  readonly kind = 'file' as const;
  readonly logicalBlockSize = IMAGE_BLOCK_SIZE;
  readonly size: number;
  readonly knownSize: number | null;
  readonly compressedSize: number;
  private readonly decoder: Decoder;
  /** Uncompressed bytes decompressed so far (handed out or dropped). */
  private position = 0;
  /** Set once the stream has ended: its uncompressed size. */
  private end: number | null = null;
  private readonly queue: Request[] = [];
  private pump: Promise<void> | null = null;
  private failure: DeviceError | null = null;
  private closed = false;
  private scratch: Buffer | null = null;

  constructor(
    readonly path: string,
    readonly compression: Compression,
    opened: Opened,
  ) {
    this.knownSize = opened.knownSize;
    this.compressedSize = opened.compressedSize;
    this.decoder = opened.decoder;
    this.size = opened.knownSize ?? Number.MAX_SAFE_INTEGER;
  }

  get compressedPosition(): number {
    return this.decoder.consumed;
  }

  readAt(buffer: Buffer, offset: number): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      return Promise.reject(new RangeError(`bad offset ${offset}`));
    }
    if (this.closed) return Promise.reject(this.closedError(offset, buffer.length));
    if (this.failure) return Promise.reject(this.failure);
    if (offset < this.position) return Promise.reject(this.backwardsError(offset, buffer.length));
    if (buffer.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      // Keep the queue sorted by offset; equal offsets in arrival order.
      let i = this.queue.length;
      while (i > 0 && this.queue[i - 1].offset > offset) i -= 1;
      this.queue.splice(i, 0, { buffer, offset, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.pump) return;
    this.pump = this.serve().finally(() => {
      this.pump = null;
      // A request queued while the last one was being resolved.
      if (this.queue.length > 0 && !this.closed) this.kick();
    });
  }

  async read(buffer: Buffer, offset: number): Promise<void> {
    const n = await this.readAt(buffer, offset);
    if (n < buffer.length) {
      throw new CompressedSourceError(
        'read',
        this.path,
        offset,
        buffer.length,
        'EOF',
        `the decompressed image ends at byte ${offset + n}`,
      );
    }
  }

  write(buffer: Buffer, offset: number): Promise<void> {
    return Promise.reject(
      new CompressedSourceError(
        'write',
        this.path,
        offset,
        buffer.length,
        'EROFS',
        'a compressed image is read-only',
      ),
    );
  }

  flush(): Promise<void> {
    return Promise.reject(
      new CompressedSourceError(
        'flush',
        this.path,
        0,
        0,
        'EROFS',
        'a compressed image is read-only',
      ),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.queue.splice(0)) r.reject(this.closedError(r.offset, r.buffer.length));
    await this.pump?.catch(() => undefined);
    await this.decoder.close();
  }

  /** Serves queued requests, lowest offset first, until none is left. */
  private async serve(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0];
      if (head.offset < this.position) {
        this.queue.shift();
        head.reject(this.backwardsError(head.offset, head.buffer.length));
        continue;
      }
      if (this.end !== null) {
        this.queue.shift();
        head.resolve(0);
        continue;
      }
      if (head.offset > this.position) {
        // A gap: drop it a chunk at a time, so a lower request arriving meanwhile is served.
        try {
          await this.skip(Math.min(head.offset - this.position, OUTPUT_CHUNK));
        } catch (e) {
          this.fail(e, head.buffer.length);
          break;
        }
        continue;
      }
      this.queue.shift();
      try {
        head.resolve(await this.decode(head.buffer));
      } catch (e) {
        head.reject(this.fail(e, head.buffer.length));
        break;
      }
    }
  }

  private async decode(buffer: Buffer): Promise<number> {
    const n = await this.decoder.read(buffer);
    this.position += n;
    if (n < buffer.length) await this.ended();
    else if (this.position === this.knownSize) {
      // Run the stream to its end, so its last checksums are checked too.
      this.scratch ??= Buffer.allocUnsafe(OUTPUT_CHUNK);
      const extra = await this.decoder.read(this.scratch.subarray(0, 1));
      this.position += extra;
      await this.ended();
    }
    return n;
  }

  private async skip(length: number): Promise<void> {
    this.scratch ??= Buffer.allocUnsafe(OUTPUT_CHUNK);
    const n = await this.decoder.read(this.scratch.subarray(0, length));
    this.position += n;
    if (n < length) await this.ended();
  }

  /** The stream ended at `position`: it must be where the format said. */
  private async ended(): Promise<void> {
    this.end = this.position;
    if (this.knownSize !== null && this.end !== this.knownSize) {
      const detail =
        this.end < this.knownSize
          ? `the ${this.compression} data ends after ${this.end} bytes, but the file says ` +
            `${this.knownSize} (truncated?)`
          : `the ${this.compression} data goes on past the ${this.knownSize} bytes the file says`;
      throw new CompressedSourceError(
        'read',
        this.path,
        Math.min(this.end, this.knownSize),
        0,
        'ECORRUPT',
        detail,
      );
    }
  }

  /** Records the failure (sticky) and rejects every queued request with it. */
  private fail(e: unknown, length: number): DeviceError {
    const reached = this.decoder.produced;
    let error: DeviceError;
    if (e instanceof DeviceError) error = e;
    else {
      const err = e as NodeJS.ErrnoException;
      error = err.syscall
        ? new CompressedSourceError(
            'read',
            this.path,
            reached,
            length,
            'ESOURCEIO',
            `reading the compressed file failed after ${reached} decompressed bytes: ${err.message}`,
          )
        : new CompressedSourceError(
            'read',
            this.path,
            reached,
            length,
            'ECORRUPT',
            `${this.compression} data is corrupt or truncated after ${reached} decompressed ` +
              `bytes: ${describe(this.compression, err)}`,
          );
    }
    this.failure = error;
    for (const r of this.queue.splice(0)) r.reject(error);
    return error;
  }

  private backwardsError(offset: number, length: number): DeviceError {
    return new CompressedSourceError(
      'read',
      this.path,
      offset,
      length,
      'ESPIPE',
      `a compressed image is read forwards only; byte ${offset} is before byte ` +
        `${this.position}, already decompressed`,
    );
  }

  private closedError(offset: number, length: number): DeviceError {
    return new CompressedSourceError(
      'read',
      this.path,
      offset,
      length,
      'EBADF',
      'source is closed',
    );
  }
}

const XZ_ERRORS: Record<string, string> = {
  '2': 'unsupported integrity check',
  '3': 'out of memory',
  '4': 'needs more memory than allowed',
  '5': 'not xz data',
  '6': 'unsupported xz options (filter or integrity check)',
  '7': 'corrupt data',
  '8': 'the data ends early (truncated file?)',
};

function describe(compression: Compression, err: Error): string {
  if (compression === 'xz') {
    const code = /error code (\d+)/.exec(err.message)?.[1];
    if (code && XZ_ERRORS[code]) return XZ_ERRORS[code];
  }
  if (err.message === 'unexpected end of file') return 'the data ends early (truncated file?)';
  return err.message;
}

// ---------------------------------------------------------------------------
// Sizes stated by the formats

function preadSync(fd: number, position: number, length: number): Buffer {
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
function need(fd: number, position: number, length: number, what: string): Buffer {
  const buf = position >= 0 ? preadSync(fd, position, length) : Buffer.alloc(0);
  if (buf.length < length) throw new FormatError(`${what} lies outside the file (truncated?)`);
  return buf;
}

const XZ_FOOTER_MAGIC = 'YZ';
const XZ_SUPPORTED_CHECKS = new Map([
  [0, 'none'],
  [1, 'CRC32'],
  [4, 'CRC64'],
]);

/**
 * Sum of the uncompressed sizes in the index of every stream, read from the end: stream
 * padding, footer, index (records of unpadded and uncompressed block sizes), header.
 */
function readXzIndexes(fd: number, fileSize: number): number {
  let end = fileSize;
  let total = 0;
  let streams = 0;
  while (end > 0) {
    // Stream padding: zero bytes in groups of four.
    for (let i = 0; end >= 4 && need(fd, end - 4, 4, 'padding').readUInt32LE(0) === 0; i++) {
      if (i === 65536) throw new FormatError(`over 256 KiB of zeros before byte ${end}: not xz`);
      end -= 4;
    }
    if (end === 0 && streams > 0) break;
    const footer = need(fd, end - 12, 12, 'the xz stream footer');
    if (footer.toString('latin1', 10, 12) !== XZ_FOOTER_MAGIC) {
      throw new FormatError(`no xz stream footer before byte ${end} (truncated file?)`);
    }
    if (zlib.crc32(footer.subarray(4, 10)) >>> 0 !== footer.readUInt32LE(0)) {
      throw new FormatError(`the xz stream footer before byte ${end} is corrupt`);
    }
    const indexSize = (footer.readUInt32LE(4) + 1) * 4;
    const indexStart = end - 12 - indexSize;
    const index = need(fd, indexStart, indexSize, 'the xz index');
    const { uncompressed, blocks } = parseXzIndex(index, indexStart);
    const start = indexStart - blocks - 12;
    const header = need(fd, start, 12, 'the xz stream header');
    if (
      !header.subarray(0, 6).equals(XZ_MAGIC) ||
      zlib.crc32(header.subarray(6, 8)) >>> 0 !== header.readUInt32LE(8) ||
      !header.subarray(6, 8).equals(footer.subarray(8, 10))
    ) {
      throw new FormatError(`no valid xz stream header at byte ${start}`);
    }
    const check = header[7] & 0x0f;
    if (header[6] !== 0 || !XZ_SUPPORTED_CHECKS.has(check)) {
      const name = check === 0x0a ? 'SHA-256' : `type ${check}`;
      throw new FormatError(
        `the xz stream at byte ${start} uses a ${name} integrity check; the decoder ` +
          `reads only none, CRC32 and CRC64 (recompress with xz's default --check=crc64)`,
        'EUNSUPPORTED',
      );
    }
    total += uncompressed;
    streams += 1;
    end = start;
  }
  return total;
}

function parseXzIndex(index: Buffer, at: number): { uncompressed: number; blocks: number } {
  const corrupt = (why: string) => new FormatError(`the xz index at byte ${at} is corrupt: ${why}`);
  if (index[0] !== 0) throw corrupt('no index indicator');
  const body = index.length - 4;
  if (zlib.crc32(index.subarray(0, body)) >>> 0 !== index.readUInt32LE(body)) {
    throw corrupt('CRC32 mismatch');
  }
  let pos = 1;
  const varint = (): number => {
    let value = 0;
    for (let i = 0, scale = 1; i < 9; i++, scale *= 128) {
      if (pos >= body) throw corrupt('record past its end');
      const byte = index[pos++];
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return value;
    }
    throw corrupt('number too long');
  };
  const records = varint();
  let uncompressed = 0;
  let blocks = 0;
  for (let i = 0; i < records; i++) {
    const unpadded = varint();
    uncompressed += varint();
    blocks += Math.ceil(unpadded / 4) * 4;
  }
  if (!Number.isSafeInteger(uncompressed)) throw corrupt('size too large');
  return { uncompressed, blocks };
}

/** Reads small pieces of a file through a 64 KiB window. */
class FileWindow {
  private readonly buf = Buffer.allocUnsafe(64 * KIB);
  private start = 0;
  private length = 0;
  reads = 0;

  constructor(private readonly fd: number) {}

  /** Up to `n` (≤ 64 KiB) bytes at `pos`; fewer only at the end of the file. */
  bytes(pos: number, n: number): Buffer {
    if (pos < this.start || pos + n > this.start + this.length) {
      this.reads += 1;
      this.start = pos;
      this.length = preadSync(this.fd, pos, this.buf.length).copy(this.buf);
    }
    const from = pos - this.start;
    return this.buf.subarray(from, Math.min(from + n, this.length));
  }
}

/**
 * The sum of Frame_Content_Size over every frame, walking frame and block headers (skippable
 * frames skipped); null as soon as one frame does not state it.
 */
async function zstdContentSize(fd: number, fileSize: number): Promise<number | null> {
  const file = new FileWindow(fd);
  const bytes = (pos: number, n: number, what: string): Buffer => {
    const b = file.bytes(pos, n);
    if (b.length < n)
      throw new FormatError(`${what} at byte ${pos} runs past the end (truncated?)`);
    return b;
  };
  let pos = 0;
  let total = 0;
  let yielded = 0;
  while (pos < fileSize) {
    if (file.reads - yielded >= 1024) {
      yielded = file.reads; // a long walk must not hold up the event loop
      await new Promise((resolve) => setImmediate(resolve));
    }
    const magic = bytes(pos, 4, 'a zstd frame').readUInt32LE(0);
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      pos += 8 + bytes(pos + 4, 4, 'a skippable frame').readUInt32LE(0);
      if (pos > fileSize) throw new FormatError('a skippable zstd frame runs past the end');
      continue;
    }
    if (magic !== ZSTD_MAGIC) throw new FormatError(`no zstd frame at byte ${pos}`);
    const descriptor = bytes(pos + 4, 1, 'a zstd frame header')[0];
    if (descriptor & 0x08) throw new FormatError(`bad zstd frame header at byte ${pos}`);
    const fcsFlag = descriptor >> 6;
    const singleSegment = (descriptor >> 5) & 1;
    const hasChecksum = (descriptor >> 2) & 1;
    const dictIdSize = [0, 1, 2, 4][descriptor & 3];
    const fcsSize = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag];
    if (fcsSize === 0) return null;
    const fcsAt = pos + 5 + (singleSegment ? 0 : 1) + dictIdSize;
    const fcs = bytes(fcsAt, fcsSize, 'a zstd frame header');
    let content: number;
    if (fcsSize === 1) content = fcs[0];
    else if (fcsSize === 2) content = fcs.readUInt16LE(0) + 256;
    else if (fcsSize === 4) content = fcs.readUInt32LE(0);
    else content = Number(fcs.readBigUInt64LE(0));
    total += content;
    if (!Number.isSafeInteger(total)) return null;
    // Blocks: a 3-byte header (last, type, size); an RLE block holds one byte.
    let at = fcsAt + fcsSize;
    for (;;) {
      const header = bytes(at, 3, 'a zstd block header');
      const value = header[0] | (header[1] << 8) | (header[2] << 16);
      const type = (value >> 1) & 3;
      if (type === 3) throw new FormatError(`bad zstd block at byte ${at}`);
      at += 3 + (type === 1 ? 1 : value >>> 3);
      if (value & 1) break;
    }
    pos = at + (hasChecksum ? 4 : 0);
    if (pos > fileSize) throw new FormatError('the last zstd frame runs past the end (truncated?)');
  }
  return total;
}
