// The stream source every compressed format shares: a decompressed stream read as a
// Device. Each format (gzip.ts, xz.ts, zstd.ts, bzip2.ts, zip.ts; plain.ts, a download
// that is not compressed) only reads its headers and makes a Decoder; everything else
// happens here. The compressed bytes come from a SourceFile: a file, or a download.
//
// A stream only goes forwards, so reads must too: concurrent readAt() calls are
// queued and served in ascending offset order, and a gap before the next read
// is decompressed and dropped — that is how a resumed job skips the regions it
// already hydrated. Each request is decompressed straight into its buffer.
//
// `size` is the uncompressed size where the format states it; otherwise it is
// Number.MAX_SAFE_INTEGER and the end shows as a short readAt().
//
// Every failure is a DeviceError whose code is never a media error (EIO…): a
// compressed stream can't be read around a bad spot, so the copier must not try
// to delimit one. Codes: ECORRUPT (bad or truncated data), ESOURCEIO (reading
// the compressed file failed), EOF (read() past the end), ESPIPE (an offset
// before one already read), EBADF (closed), EUNSUPPORTED (open: a variant the
// decoders can't read), EROFS (write); a download's own (io/http) pass through.

import type { Readable } from 'node:stream';
import type { StreamSource } from '../device';
import { DeviceError } from '../device';
import { IMAGE_BLOCK_SIZE } from '../image-file';
import type { SourceFile } from '../source-file';
import { StreamHead } from './stream-head';

export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'zip';

export interface CompressedSource extends StreamSource {
  /** Null: a download of a plain image. */
  readonly compression: Compression | null;
  /**
   * Uncompressed size where the format states it (xz index, zip central directory, zstd seek
   * table or frame content sizes summed over frames, a gzip ISIZE that can only be the size),
   * else null.
   */
  readonly knownSize: number | null;
  /**
   * Like read() but returns the number of bytes read; fewer than buffer.length only at the
   * end of the data. Offsets must never go backwards across calls; a gap is decompressed and
   * discarded. Concurrent calls are served in ascending offset order.
   */
  readAt(buffer: Buffer, offset: number): Promise<number>;
  /** Blocks decompressed (or begun) so far where the format is made of independent blocks (xz), else null. */
  readonly blocksDecompressed: number | null;
  /** Blocks each decoding thread was given, where the format's blocks are decoded on threads of their own (bzip2), else null. */
  readonly blocksPerLane: readonly number[] | null;
}

/** Decompressed bytes produced per zlib call, and dropped per step when skipping a gap. */
export const OUTPUT_CHUNK = 1024 * 1024;

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
export class FormatError extends Error {
  constructor(
    message: string,
    readonly code: 'ECORRUPT' | 'EUNSUPPORTED' = 'ECORRUPT',
  ) {
    super(message);
  }
}

/** What a format learnt from its headers, and how to decompress it. */
export interface Opened {
  /** The uncompressed size where the format states it (exactly), else null. */
  knownSize: number | null;
  /**
   * When knownSize is null: the format's guess at the uncompressed size, about the least it
   * can be. Without one, the compressed size.
   */
  estimate?: number;
  compressedSize: number;
  /** Made when the image is opened for reading; nothing is decompressed before the first read. */
  decoder(): Decoder;
  /** The decoder's error in plainer words, where the format's decoder has cryptic ones. */
  explain?(error: Error): string | undefined;
}

// ---------------------------------------------------------------------------
// Decoders: a pull interface over one decompressed stream

export interface Decoder {
  /** Fills `dst` from the stream; fewer bytes only at its end. */
  read(dst: Buffer): Promise<number>;
  /** Compressed bytes taken from the file so far. */
  readonly consumed: number;
  /** Decompressed bytes handed out so far. */
  readonly produced: number;
  /**
   * Formats that can start mid-stream (xz, from its index): goes on from where decoding can
   * begin at or before `offset`, when that is past where it stands; returns the new `produced`.
   */
  skipTo?(offset: number): Promise<number>;
  /** Formats made of independent blocks: how many were decompressed (or begun). */
  readonly blocksDecompressed?: number;
  /** Formats decoded on threads of their own: blocks each thread was given. */
  readonly blocksPerLane?: readonly number[];
  close(): Promise<void>;
}

/** A decoder over a Node stream of decompressed chunks, started on the first read. */
/**
 * Highly compressible data decodes for seconds without waiting on any I/O (the stream
 * hands over chunks as microtasks): the timers that report progress would starve.
 * Decoding lets the event loop run at least this often.
 */
const YIELD_MS = 20;
let lastYield = performance.now();

export async function letTimersRun(): Promise<void> {
  if (performance.now() - lastYield < YIELD_MS) return;
  await new Promise((resolve) => setImmediate(resolve));
  lastYield = performance.now();
}

export class StreamDecoder implements Decoder {
  private output: Readable | null = null;
  private chunks: AsyncIterator<unknown> | null = null;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;
  private closed = false;
  produced = 0;

  constructor(
    private readonly start: () => Readable | Promise<Readable>,
    private readonly counter: { bytes: number },
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
      await letTimersRun();
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
  }
}

export function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  const bytes = chunk as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---------------------------------------------------------------------------
// The source

interface Request {
  buffer: Buffer;
  offset: number;
  resolve(n: number): void;
  reject(e: Error): void;
}

export class CompressedImage implements CompressedSource {
  readonly kind = 'file' as const;
  readonly logicalBlockSize = IMAGE_BLOCK_SIZE;
  readonly path: string;
  readonly size: number;
  readonly knownSize: number | null;
  readonly estimate: number | null;
  readonly compressedSize: number;
  private readonly decoder: Decoder;
  private readonly explain: (error: Error) => string | undefined;
  /** Uncompressed bytes decompressed so far (handed out or dropped). */
  private position = 0;
  /** Set once the stream has ended: its uncompressed size. */
  private end: number | null = null;
  private readonly queue: Request[] = [];
  private pump: Promise<void> | null = null;
  private failure: DeviceError | null = null;
  private closed = false;
  private scratch: Buffer | null = null;
  private readonly head = new StreamHead();

  constructor(
    readonly file: SourceFile,
    readonly compression: Compression | null,
    private readonly opened: Opened,
  ) {
    this.path = file.name;
    this.knownSize = opened.knownSize;
    // Without the format's own guess, the compressed size: the least most images hold.
    this.estimate =
      opened.knownSize === null ? (opened.estimate ?? (opened.compressedSize || null)) : null;
    this.compressedSize = opened.compressedSize;
    this.decoder = opened.decoder();
    this.explain = opened.explain ?? (() => undefined);
    this.size = opened.knownSize ?? Number.MAX_SAFE_INTEGER;
  }

  get decompressedPosition(): number {
    return this.position;
  }

  /** A new decoder over the same file: the headers are not read again. */
  async reopen(): Promise<CompressedImage> {
    return new CompressedImage(this.file, this.compression, this.opened);
  }

  /** The data's name in messages: the format, or a plain image's. */
  private get format(): string {
    return this.compression === null ? 'image' : `${this.compression}`;
  }

  get compressedPosition(): number {
    return this.decoder.consumed;
  }

  /** Blocks decompressed so far, where the format is made of independent blocks (xz). */
  get blocksDecompressed(): number | null {
    return this.decoder.blocksDecompressed ?? null;
  }

  /** Blocks each decoding thread was given, where the format's are decoded on threads (bzip2). */
  get blocksPerLane(): readonly number[] | null {
    return this.decoder.blocksPerLane ?? null;
  }

  readAt(buffer: Buffer, offset: number): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      return Promise.reject(new RangeError(`bad offset ${offset}`));
    }
    if (this.closed) return Promise.reject(this.closedError(offset, buffer.length));
    if (this.failure) return Promise.reject(this.failure);
    if (offset < this.position && !this.head.holds(offset, this.position)) {
      return Promise.reject(this.backwardsError(offset, buffer.length));
    }
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
      throw this.error(
        'read',
        offset,
        buffer.length,
        'EOF',
        `the decompressed image ends at byte ${offset + n}`,
      );
    }
  }

  write(buffer: Buffer, offset: number): Promise<void> {
    return Promise.reject(
      this.error('write', offset, buffer.length, 'EROFS', 'a compressed image is read-only'),
    );
  }

  flush(): Promise<void> {
    return Promise.reject(this.error('flush', 0, 0, 'EROFS', 'a compressed image is read-only'));
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
      // Before where the stream stands: what the kept start holds (the plan read the
      // partition table there), then the stream goes on from where it stands.
      let kept = 0;
      if (head.offset < this.position) {
        if (!this.head.holds(head.offset, this.position)) {
          this.queue.shift();
          head.reject(this.backwardsError(head.offset, head.buffer.length));
          continue;
        }
        kept = this.head.copy(head.buffer, head.offset, this.position);
      } else if (head.offset > this.position && this.end === null) {
        // A gap: jump over it where the format can (a resumed job skips what it hydrated),
        // then drop the rest a chunk at a time, so a lower request arriving meanwhile is served.
        try {
          if (this.decoder.skipTo) this.position = await this.decoder.skipTo(head.offset);
          if (head.offset === this.position) continue;
          await this.skip(Math.min(head.offset - this.position, OUTPUT_CHUNK));
        } catch (e) {
          this.fail(e, head.buffer.length);
          break;
        }
        continue;
      }
      this.queue.shift();
      if (kept === head.buffer.length || this.end !== null) {
        head.resolve(kept);
        continue;
      }
      try {
        head.resolve(kept + (await this.decode(head.buffer.subarray(kept))));
      } catch (e) {
        head.reject(this.fail(e, head.buffer.length));
        break;
      }
    }
  }

  private async decode(buffer: Buffer): Promise<number> {
    const n = await this.decoder.read(buffer);
    this.head.keep(this.position, buffer.subarray(0, n));
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
    this.head.keep(this.position, this.scratch.subarray(0, n));
    this.position += n;
    if (n < length) await this.ended();
  }

  /** The stream ended at `position`: it must be where the format said. */
  private async ended(): Promise<void> {
    this.end = this.position;
    if (this.knownSize !== null && this.end !== this.knownSize) {
      const detail =
        this.end < this.knownSize
          ? `the ${this.format} data ends after ${this.end} bytes, but the file says ` +
            `${this.knownSize} (truncated?)`
          : `the ${this.format} data goes on past the ${this.knownSize} bytes the file says`;
      throw this.error('read', Math.min(this.end, this.knownSize), 0, 'ECORRUPT', detail);
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
        ? this.error(
            'read',
            reached,
            length,
            'ESOURCEIO',
            `reading the compressed file failed after ${reached} decompressed bytes: ${err.message}`,
          )
        : this.error(
            'read',
            reached,
            length,
            'ECORRUPT',
            `${this.format} data is corrupt or truncated after ${reached} decompressed ` +
              `bytes: ${this.describe(err)}`,
          );
    }
    this.failure = error;
    for (const r of this.queue.splice(0)) r.reject(error);
    return error;
  }

  private describe(err: Error): string {
    const explained = this.explain(err);
    if (explained) return explained;
    if (err.message === 'unexpected end of file') return 'the data ends early (truncated file?)';
    return err.message;
  }

  private backwardsError(offset: number, length: number): DeviceError {
    return this.error(
      'read',
      offset,
      length,
      'ESPIPE',
      `a compressed image is read forwards only; byte ${offset} is before byte ` +
        `${this.position}, already decompressed`,
    );
  }

  private error(
    op: DeviceError['op'],
    offset: number,
    length: number,
    code: string,
    detail: string,
  ): DeviceError {
    return new CompressedSourceError(op, this.path, offset, length, code, detail);
  }

  private closedError(offset: number, length: number): DeviceError {
    return this.error('read', offset, length, 'EBADF', 'source is closed');
  }
}
