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
// Compression runs in a worker thread (zst-compressor.ts).

import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import * as zstd from 'zstd-napi/binding';
import type { Device } from './device';
import { DeviceError } from './device';
import { closeFd, pwriteFully, syncData } from './fd';
import { FrameCompressor } from './zst-compressor';

const MIB = 1024 * 1024;
export const DEFAULT_FRAME_BYTES = 8 * MIB;
export const DEFAULT_LEVEL = 3;
/** Frames handed to the compressor and not yet on disk; bounds memory to (this + 1) × frameBytes. */
const MAX_IN_FLIGHT = 1;

const FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const SEEK_TABLE_MAGIC = 0x184d2a5e;
const SEEKABLE_FOOTER_MAGIC = 0x8f92eab1;
/** Limits of the seekable format (zstd contrib/seekable_format). */
const SEEKABLE_MAX_FRAME_BYTES = 0x40000000;
const SEEKABLE_MAX_FRAMES = 0x8000000;

const fsync = promisify(fs.fsync);

export interface ZstImageOptions {
  /** zstd compression level (default 3). */
  level?: number;
  /** A frame ends at least every this many bytes of the image (default 8 MiB, at most 1 GiB). */
  frameBytes?: number;
  /** zstd's own threads per frame (default: min(4, CPUs - 1) on 3+ CPUs, else 0: the worker thread alone). */
  threads?: number;
}

/** One complete zstd frame of an image file. */
export interface ZstFrame {
  /** Byte offset of the frame in the compressed file. */
  fileOffset: number;
  compressedSize: number;
  /** Uncompressed bytes. */
  size: number;
  /** Low 32 bits of the XXH64 of the content, from the frame's trailer; null without one. */
  checksum: number | null;
  /** The frame header states its content size. */
  sizeInHeader: boolean;
}

export interface ZstScan {
  /** Complete zstd frames, in file order. */
  frames: ZstFrame[];
  /** Complete skippable frames (file offsets), e.g. the seek table. */
  skippable: number[];
  /** File offset just after the last complete frame of either kind. */
  end: number;
  /** Length of the file. */
  fileSize: number;
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
    const fd = openFd(path, 'w');
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
    const fd = openFd(path, 'r+');
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
        let out: Uint8Array;
        try {
          const r = await compressed;
          out = r.out;
          if (r.buf.byteLength === this.frameBytes) this.spare.push(r.buf);
        } catch (e) {
          throw new DeviceError('write', this.path, start, length, e as NodeJS.ErrnoException);
        }
        if (this.failure) return; // never append after a hole
        const data = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
        await pwriteFully(this.fd, this.path, data, this.fileEnd);
        const checksum = data.length >= 4 ? data.readUInt32LE(data.length - 4) : 0;
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

function openFd(path: string, flags: 'w' | 'r+' | 'r'): number {
  try {
    return fs.openSync(path, flags, 0o644);
  } catch (e) {
    throw new DeviceError('open', path, 0, 0, e as NodeJS.ErrnoException);
  }
}

const sum = (frames: ZstFrame[]): number => frames.reduce((n, f) => n + f.size, 0);

/**
 * The seekable format's seek table: a skippable frame (magic 0x184D2A5E) holding,
 * per frame, compressed size, decompressed size and checksum (u32 LE each), then
 * the footer: number of frames (u32), descriptor (u8, bit 7 = checksums present),
 * magic 0x8F92EAB1 (u32). Null when the format can't describe the frames.
 */
function seekTable(frames: ZstFrame[]): Buffer | null {
  if (frames.length > SEEKABLE_MAX_FRAMES) return null;
  const checksums = frames.every((f) => f.checksum !== null);
  const entry = checksums ? 12 : 8;
  const content = frames.length * entry + 9;
  const table = Buffer.alloc(8 + content);
  table.writeUInt32LE(SEEK_TABLE_MAGIC, 0);
  table.writeUInt32LE(content, 4);
  let at = 8;
  for (const f of frames) {
    table.writeUInt32LE(f.compressedSize, at);
    table.writeUInt32LE(f.size, at + 4);
    if (checksums) table.writeUInt32LE(f.checksum ?? 0, at + 8);
    at += entry;
  }
  table.writeUInt32LE(frames.length, at);
  table.writeUInt8(checksums ? 0x80 : 0, at + 4);
  table.writeUInt32LE(SEEKABLE_FOOTER_MAGIC, at + 5);
  return table;
}

/** Lists the complete frames of a `.zst` file (for resume, tests and diagnostics). */
export function scanZst(path: string): ZstScan {
  const fd = openFd(path, 'r');
  try {
    return scanFd(fd, path);
  } finally {
    fs.closeSync(fd);
  }
}

/** Small positioned reads through a window, so a walk over block headers stays cheap. */
class Reader {
  private window = Buffer.alloc(0);
  private windowAt = 0;
  private readonly scratch = Buffer.alloc(4096);

  constructor(
    private readonly fd: number,
    readonly fileSize: number,
  ) {}

  /** `n` bytes at `pos`, or null past the end of the file. */
  bytes(pos: number, n: number): Buffer | null {
    if (pos + n > this.fileSize) return null;
    if (pos < this.windowAt || pos + n > this.windowAt + this.window.length) {
      const len = Math.min(this.scratch.length, this.fileSize - pos);
      const got = fs.readSync(this.fd, this.scratch, 0, len, pos);
      this.window = this.scratch.subarray(0, got);
      this.windowAt = pos;
      if (got < n) return null;
    }
    return this.window.subarray(pos - this.windowAt, pos - this.windowAt + n);
  }

  u32(pos: number): number | null {
    const b = this.bytes(pos, 4);
    return b ? b.readUInt32LE(0) : null;
  }
}

function scanFd(fd: number, path: string): ZstScan {
  const fileSize = fs.fstatSync(fd).size;
  const r = new Reader(fd, fileSize);
  return fromSeekTable(r) ?? walk(r, fd, path);
}

/** A complete image: trust its seek table when it accounts for every byte of the file. */
function fromSeekTable(r: Reader): ZstScan | null {
  const size = r.fileSize;
  if (size < 17 || r.u32(size - 4) !== SEEKABLE_FOOTER_MAGIC) return null;
  const count = r.u32(size - 9)!;
  const descriptor = r.bytes(size - 5, 1)![0];
  const entry = descriptor & 0x80 ? 12 : 8;
  const content = count * entry + 9;
  const tableAt = size - 8 - content;
  if (tableAt < 0 || r.u32(tableAt) !== SEEK_TABLE_MAGIC || r.u32(tableAt + 4) !== content) {
    return null;
  }
  const frames: ZstFrame[] = [];
  let fileOffset = 0;
  for (let i = 0; i < count; i++) {
    const e = r.bytes(tableAt + 8 + i * entry, entry)!;
    const compressedSize = e.readUInt32LE(0);
    frames.push({
      fileOffset,
      compressedSize,
      size: e.readUInt32LE(4),
      checksum: entry === 12 ? e.readUInt32LE(8) : null,
      sizeInHeader: true,
    });
    fileOffset += compressedSize;
  }
  if (fileOffset !== tableAt) return null;
  // Spot-check that a frame starts where the table says the last one does.
  if (count > 0 && r.u32(frames[count - 1].fileOffset) !== FRAME_MAGIC) return null;
  return { frames, skippable: [tableAt], end: size, fileSize: size };
}

/** Walks frame headers and block headers; stops at the first incomplete or unknown frame. */
function walk(r: Reader, fd: number, path: string): ZstScan {
  const frames: ZstFrame[] = [];
  const skippable: number[] = [];
  let pos = 0;
  for (;;) {
    const magic = r.u32(pos);
    if (magic === null) break;
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      const len = r.u32(pos + 4);
      if (len === null || pos + 8 + len > r.fileSize) break;
      skippable.push(pos);
      pos += 8 + len;
      continue;
    }
    if (magic !== FRAME_MAGIC) break;
    const frame = walkFrame(r, pos);
    if (!frame) break;
    if (frame.size < 0) frame.size = decompressedSize(fd, path, pos, frame.compressedSize);
    frames.push(frame);
    pos += frame.compressedSize;
  }
  return { frames, skippable, end: pos, fileSize: r.fileSize };
}

/** One frame's extent (size -1: not in the header and compressed blocks present). */
function walkFrame(r: Reader, at: number): ZstFrame | null {
  const fhd = r.bytes(at + 4, 1)?.[0];
  if (fhd === undefined || fhd & 0x08) return null; // reserved bit set: not a frame
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const hasChecksum = (fhd >> 2) & 1;
  const dictBytes = [0, 1, 2, 4][fhd & 3];
  const fcsBytes = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag];
  const fcsAt = at + 5 + (single ? 0 : 1) + dictBytes;
  let size = -1;
  if (fcsBytes > 0) {
    const b = r.bytes(fcsAt, fcsBytes);
    if (!b) return null;
    if (fcsBytes === 1) size = b[0];
    else if (fcsBytes === 2) size = b.readUInt16LE(0) + 256;
    else if (fcsBytes === 4) size = b.readUInt32LE(0);
    else size = Number(b.readBigUInt64LE(0));
  }
  const sizeInHeader = size >= 0;
  let blocksSize = 0;
  let knownBlocks = true;
  let pos = fcsAt + fcsBytes;
  for (;;) {
    const h = r.bytes(pos, 3);
    if (!h) return null;
    const header = h[0] | (h[1] << 8) | (h[2] << 16);
    const type = (header >> 1) & 3;
    const blockSize = header >>> 3;
    if (type === 3) return null; // reserved block type
    if (type === 2) knownBlocks = false;
    else blocksSize += blockSize; // raw and RLE blocks regenerate Block_Size bytes
    pos += 3 + (type === 1 ? 1 : blockSize);
    if (pos > r.fileSize) return null;
    if (header & 1) break; // last block
  }
  let checksum: number | null = null;
  if (hasChecksum) {
    checksum = r.u32(pos);
    if (checksum === null) return null;
    pos += 4;
  }
  if (!sizeInHeader && knownBlocks) size = blocksSize;
  return { fileOffset: at, compressedSize: pos - at, size, checksum, sizeInHeader };
}

/** Decompresses one frame (streaming, bounded memory) to count its bytes. */
function decompressedSize(fd: number, path: string, at: number, length: number): number {
  const dctx = new zstd.DCtx();
  const input = Buffer.alloc(Math.min(length, 1 * MIB));
  const output = Buffer.alloc(zstd.dStreamOutSize());
  let total = 0;
  for (let done = 0; done < length;) {
    const n = fs.readSync(fd, input, 0, Math.min(input.length, length - done), at + done);
    if (n === 0) throw new Error(`${path}: frame at ${at} ends early`);
    done += n;
    let src = input.subarray(0, n);
    for (;;) {
      const [, produced, consumed] = dctx.decompressStream(output, src);
      total += produced;
      src = src.subarray(consumed);
      if (src.length === 0 && produced < output.length) break;
    }
  }
  return total;
}
