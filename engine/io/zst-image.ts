// A destination written as a compressed backup (`.img.zst`) that is itself
// resumable and that plain `zstd -d` restores.
//
// The image is a run of independent zstd frames. A frame ends at every flush
// (so a commit only ever covers complete frames) and at every multiple of
// `frameBytes` of the image. Each frame carries its content size in its header
// and a content checksum. When the whole image has been written, close()
// appends a seek table (zstd's seekable format: a skippable frame listing each
// frame's compressed and decompressed size and checksum). Resuming walks the
// frames from the start, keeps those that end at or before the committed
// offset and cuts the rest (a frame torn by a kill, and the seek table).
//
// Compression runs in a worker thread (zst-compressor.ts); reading a backup's frames
// back for resume is zst-scan.ts; the format itself, zst-frames.ts.

import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import * as zstd from 'zstd-napi/binding';
import type { Device } from './device';
import { DeviceError } from './device';
import { closeFd, openFdSync, pwriteFully, syncData } from './fd';
import { type CompressedFrame, FrameCompressor } from './zst-compressor';
import { SEEKABLE_MAX_FRAME_BYTES, seekTable, type ZstFrame } from './zst-frames';
import { scanFd, scanZst } from './zst-scan';

const MIB = 1024 * 1024;
export const DEFAULT_FRAME_BYTES = 4 * MIB;
export const DEFAULT_LEVEL = 3;
/** Frames handed to the compressor and not yet on disk; bounds memory to (this + 1) × frameBytes. */
const MAX_IN_FLIGHT = 1;

const fsync = promisify(fs.fsync);

export interface ZstImageOptions {
  /** zstd compression level (default 3). */
  level?: number;
  /** A frame ends at least every this many bytes of the image (default 8 MiB, at most 1 GiB). */
  frameBytes?: number;
  /** zstd's own threads per frame (default: min(4, CPUs - 1) on 3+ CPUs, else 0: the worker thread alone). */
  threads?: number;
}

/** Resuming at an offset where no frame ends. */
export class ZstResumeError extends Error {
  constructor(
    readonly path: string,
    readonly offset: number,
    /** The last frame boundary at or before `offset`: resume from here. */
    readonly boundary: number,
    /** Uncompressed bytes in all complete frames. */
    readonly committed: number,
  ) {
    super(
      `${path}: cannot resume the compressed image at byte ${offset}: no frame ends there ` +
        `(the last frame boundary before it is ${boundary}; complete frames hold ${committed} bytes)`,
    );
  }
}

function seqError(path: string, offset: number, length: number, message: string): DeviceError {
  return new DeviceError('write', path, offset, length, new Error(message));
}

export class ZstImage implements Device {
  readonly kind = 'file' as const;
  readonly logicalBlockSize = 512;
  /** Compressed bytes appended since it was opened. */
  private stored = 0;

  get storedBytes(): number {
    return this.stored;
  }

  private readonly compressor: FrameCompressor;
  private readonly frameBytes: number;
  /** Serialises write/flush/close, in call order. */
  private queue: Promise<void> = Promise.resolve();
  /** Compressed frames are appended in order along this chain. */
  private appends: Promise<void> = Promise.resolve();
  /** Image bytes accepted by write() (the offset the next write must start at). */
  private accepted: number;
  /** Image offset of the first byte of the current (open) frame. */
  private frameStart: number;
  private cur: Buffer | null = null;
  private curLen = 0;
  private readonly spare: ArrayBuffer[] = [];
  private inFlight = 0;
  private waiters: Array<() => void> = [];
  private failure: Error | null = null;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    /** Uncompressed bytes; MAX_SAFE_INTEGER until a streamed source's end is known (setLength). */
    public size: number,
    /** Uncompressed offset where writing starts. */
    start: number,
    /** Compressed bytes on disk. */
    private fileEnd: number,
    private readonly frames: ZstFrame[],
    opts: ZstImageOptions,
  ) {
    const level = opts.level ?? DEFAULT_LEVEL;
    if (!Number.isInteger(level) || level < zstd.minCLevel() || level > zstd.maxCLevel()) {
      throw new RangeError(
        `zstd level ${level} is outside ${zstd.minCLevel()}..${zstd.maxCLevel()}`,
      );
    }
    this.frameBytes = opts.frameBytes ?? DEFAULT_FRAME_BYTES;
    if (
      !Number.isInteger(this.frameBytes) ||
      this.frameBytes < 4096 ||
      this.frameBytes > SEEKABLE_MAX_FRAME_BYTES
    ) {
      throw new RangeError(`frameBytes must be an integer in 4096..${SEEKABLE_MAX_FRAME_BYTES}`);
    }
    const cpus = os.availableParallelism();
    // With N > 0 zstd compresses each frame on N threads of its own (the worker
    // thread waits); on two CPUs one compressing thread beside the main thread is best.
    const threads = opts.threads ?? (cpus > 2 ? Math.min(4, cpus - 1) : 0);
    this.accepted = this.frameStart = start;
    this.compressor = FrameCompressor.open(level, threads);
  }

  /** Creates (or empties) `path` for an image of `size` uncompressed bytes. */
  static create(path: string, size: number, opts: ZstImageOptions = {}): ZstImage {
    const fd = openFdSync(path, 'w');
    try {
      return new ZstImage(path, fd, size, 0, 0, [], opts);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /**
   * Reopens a backup to continue at uncompressed `offset`: keeps the complete frames
   * covering [0, offset), cuts everything after them (a torn frame, the seek table).
   * Throws a ZstResumeError, naming the last boundary before `offset`, when no frame
   * ends exactly there.
   */
  static resume(path: string, size: number, offset: number, opts: ZstImageOptions = {}): ZstImage {
    if (!Number.isInteger(offset) || offset < 0 || offset > size) {
      throw new RangeError(`${path}: resume offset ${offset} is outside the image (0..${size})`);
    }
    const fd = openFdSync(path, 'r+');
    try {
      const scan = scanFd(fd, path);
      const kept: ZstFrame[] = [];
      let end = 0;
      for (const f of scan.frames) {
        if (end + f.size > offset) break;
        kept.push(f);
        end += f.size;
      }
      if (end !== offset) {
        throw new ZstResumeError(path, offset, end, sum(scan.frames));
      }
      const cut = kept.length
        ? kept[kept.length - 1].fileOffset + kept[kept.length - 1].compressedSize
        : 0;
      if (scan.skippable.some((at) => at < cut)) {
        throw new Error(
          `${path}: skippable frames among the data frames; not an image DriveTwin wrote`,
        );
      }
      if (
        kept.some(
          (f, i) => f.fileOffset !== (i ? kept[i - 1].fileOffset + kept[i - 1].compressedSize : 0),
        )
      ) {
        throw new Error(`${path}: gaps between frames; not an image DriveTwin wrote`);
      }
      fs.ftruncateSync(fd, cut);
      return new ZstImage(path, fd, size, offset, cut, kept, opts);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Uncompressed bytes held in complete frames on disk (0 when the file is missing). */
  static committedBytes(path: string): number {
    if (!fs.existsSync(path)) return 0;
    return sum(scanZst(path).frames);
  }

  /**
   * The last frame boundary at or before `offset` that is a multiple of `alignment`
   * (e.g. the region size): where a resume that must start on a region can begin.
   */
  static boundaryAtOrBefore(path: string, offset: number, alignment = 1): number {
    if (!fs.existsSync(path)) return 0;
    let best = 0;
    let end = 0;
    for (const f of scanZst(path).frames) {
      end += f.size;
      if (end > offset) break;
      if (end % alignment === 0) best = end;
    }
    return best;
  }

  /** False once close() was called: every frame is then on disk. */
  get writable(): boolean {
    return !this.closed;
  }

  /**
   * A streamed source ended: the image is complete at `size`, which must be where the
   * writes ended. close() then appends the seek table, as for an image of known size.
   */
  setLength(size: number): Promise<void> {
    if (this.closed || size !== this.accepted || size > this.size) {
      const why = this.closed
        ? 'the image is closed'
        : `a .zst image ends where its writes ended (${this.accepted})`;
      return Promise.reject(seqError(this.path, size, 0, why));
    }
    this.size = size;
    return Promise.resolve();
  }

  /** Not supported: the image is write-only (verify reads the file back by decompressing it). */
  read(buffer: Buffer, offset: number): Promise<void> {
    return Promise.reject(
      new DeviceError(
        'read',
        this.path,
        offset,
        buffer.length,
        new Error('a .zst image is write-only'),
      ),
    );
  }

  /**
   * Appends `buffer` at `offset`, which must be where the previous write ended.
   * Resolves once the data is taken (copied); flush() makes it durable.
   */
  write(buffer: Buffer, offset: number): Promise<void> {
    const fail = (why: string): Promise<void> =>
      Promise.reject(seqError(this.path, offset, buffer.length, why));
    if (this.closed) return fail('the image is closed');
    if (offset !== this.accepted) {
      return fail(
        `a .zst image is written sequentially: the next write must start at ${this.accepted}`,
      );
    }
    if (offset + buffer.length > this.size)
      return fail(`past the end of the image (${this.size} bytes)`);
    this.accepted += buffer.length;
    return this.enqueue(() => this.take(buffer));
  }

  /** Ends the current frame, waits until every frame is on disk, then fdatasync. */
  flush(): Promise<void> {
    if (this.closed)
      return Promise.reject(new DeviceError('flush', this.path, 0, 0, new Error('closed')));
    return this.enqueue(async () => {
      this.endFrame();
      await this.drain();
      await syncData(this.fd, this.path);
    });
  }

  /**
   * Ends the frame; when the whole image was written, appends the seek table.
   * Then fsync and close. A partial image stays resumable.
   */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return this.enqueue(async () => {
      try {
        if (this.failure) throw this.failure;
        this.endFrame();
        await this.drain();
        if (this.frameStart === this.size) {
          // The frames are durable before the table that lists them.
          await syncData(this.fd, this.path);
          const table = seekTable(this.frames);
          if (table) await pwriteFully(this.fd, this.path, table, this.fileEnd);
        }
        try {
          await fsync(this.fd);
        } catch (e) {
          throw new DeviceError('flush', this.path, 0, 0, e as NodeJS.ErrnoException);
        }
      } finally {
        await closeFd(this.fd).catch(() => undefined);
        await this.compressor.release();
      }
    }, true);
  }

  /** Runs `op` after every earlier call; after a failure only close() still runs. */
  private enqueue(op: () => Promise<void>, always = false): Promise<void> {
    const next = this.queue.then(() => {
      if (this.failure && !always) throw this.failure;
      return op();
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Copies `buffer` into frames, ending each at the next multiple of frameBytes. */
  private async take(buffer: Buffer): Promise<void> {
    let done = 0;
    while (done < buffer.length) {
      if (!this.cur) {
        while (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((r) => this.waiters.push(r));
        if (this.failure) throw this.failure;
        this.cur = Buffer.from(this.spare.pop() ?? new ArrayBuffer(this.frameBytes));
      }
      const boundary = Math.min(
        this.size,
        (Math.floor(this.frameStart / this.frameBytes) + 1) * this.frameBytes,
      );
      const n = Math.min(buffer.length - done, boundary - this.frameStart - this.curLen);
      buffer.copy(this.cur, this.curLen, done, done + n);
      this.curLen += n;
      done += n;
      if (this.frameStart + this.curLen === boundary) this.endFrame();
    }
  }

  /** Hands the open frame to the compressor; its compressed bytes are appended in order. */
  private endFrame(): void {
    if (!this.cur || this.curLen === 0) return;
    const start = this.frameStart;
    const length = this.curLen;
    const compressed = this.compressor.compress(this.cur.buffer as ArrayBuffer, length);
    compressed.catch(() => undefined); // handled along the chain
    this.cur = null;
    this.curLen = 0;
    this.frameStart += length;
    this.inFlight++;
    this.appends = this.appends
      .then(async () => {
        let frame: CompressedFrame;
        try {
          frame = await compressed;
          if (frame.buf.byteLength === this.frameBytes) this.spare.push(frame.buf);
        } catch (e) {
          throw new DeviceError('write', this.path, start, length, e as NodeJS.ErrnoException);
        }
        if (this.failure) return frame.done(); // never append after a hole
        const { out } = frame;
        const data = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
        const checksum = data.length >= 4 ? data.readUInt32LE(data.length - 4) : 0;
        try {
          await pwriteFully(this.fd, this.path, data, this.fileEnd);
        } finally {
          frame.done(); // the buffer goes back: the next frame takes it to the thread
        }
        this.frames.push({
          fileOffset: this.fileEnd,
          compressedSize: data.length,
          size: length,
          checksum,
          sizeInHeader: true,
        });
        this.fileEnd += data.length;
        this.stored += data.length;
      })
      .catch((e: Error) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.inFlight--;
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      });
  }

  private async drain(): Promise<void> {
    await this.appends;
    if (this.failure) throw this.failure;
  }
}

const sum = (frames: ZstFrame[]): number => frames.reduce((n, f) => n + f.size, 0);
