// zstd (.zst): the native decoder, straight into the caller's buffer. The
// uncompressed size comes from the seek table at the end where there is one
// (the seekable format, DriveTwin's own .img.zst backups), else from the content
// sizes in the frame headers — walked through the whole file, so for a download only
// the first frame's, as a guess.

import fs from 'node:fs';
import type { Readable } from 'node:stream';
import * as zstd from 'zstd-napi/binding';
import type { SourceFile } from '../source-file';
import * as frames from '../zst-frames';
import { preadSync, sizeForTrailer } from './file';
import { asBuffer, FormatError, letTimersRun, type Decoder, type Opened } from './source';

/** zstd frames may ask for windows up to 2 GiB (`zstd --long=31`); the frame header says how much. */
const ZSTD_WINDOW_LOG_MAX = 31;
/** A longer seek table (over 5 million frames) is not believed: the frames are walked instead. */
const MAX_SEEK_TABLE = 64 * 1024 * 1024;

export async function openZstd(file: SourceFile): Promise<Opened> {
  const compressedSize = file.size ?? 0;
  const decoder = () => new ZstdDecoder(file);
  const trailerAt = sizeForTrailer(file);
  const table = trailerAt === null ? null : await seekTableSize(file, trailerAt);
  if (table !== null) return { knownSize: table, compressedSize, decoder };
  if (file.localPath === null) {
    return { knownSize: null, estimate: await firstFrameSize(file), compressedSize, decoder };
  }
  const fd = fs.openSync(file.localPath, 'r');
  let knownSize: number | null;
  try {
    knownSize = await zstdContentSize(fd, compressedSize);
  } finally {
    fs.closeSync(fd);
  }
  return { knownSize, compressedSize, decoder };
}

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

  constructor(private readonly file: SourceFile) {
    this.dctx.setParameter(zstd.DParameter.windowLogMax, ZSTD_WINDOW_LOG_MAX);
  }

  get consumed(): number {
    return this.counter.bytes - this.pending.length;
  }

  async read(dst: Buffer): Promise<number> {
    if (!this.chunks) {
      this.input = this.file.stream(this.counter);
      this.chunks = this.input[Symbol.asyncIterator]();
    }
    let filled = 0;
    while (filled < dst.length) {
      await letTimersRun();
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

/** Reads small pieces of a file through a 64 KiB window. */
class FileWindow {
  private readonly buf = Buffer.allocUnsafe(64 * 1024);
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
    if (frames.isSkippable(magic)) {
      pos += 8 + bytes(pos + 4, 4, 'a skippable frame').readUInt32LE(0);
      if (pos > fileSize) throw new FormatError('a skippable zstd frame runs past the end');
      continue;
    }
    if (magic !== frames.ZSTD_MAGIC) throw new FormatError(`no zstd frame at byte ${pos}`);
    // `bytes` throws on a file cut short, so null here means the reserved bit is set.
    const header = frames.frameHeader(pos, (at, n) => bytes(at, n, 'a zstd frame header'));
    if (!header) throw new FormatError(`bad zstd frame header at byte ${pos}`);
    if (header.contentSize === null) return null;
    total += header.contentSize;
    if (!Number.isSafeInteger(total)) return null;
    let at = header.blocksAt;
    for (;;) {
      const block = frames.blockHeader(bytes(at, 3, 'a zstd block header'));
      if (!block) throw new FormatError(`bad zstd block at byte ${at}`);
      at += block.stored;
      if (block.last) break;
    }
    pos = at + (header.hasChecksum ? 4 : 0);
    if (pos > fileSize) throw new FormatError('the last zstd frame runs past the end (truncated?)');
  }
  return total;
}

/**
 * The first frame's content size, where its header states one: the whole image's when it
 * is the only frame, as `zstd` writes a file; a guess all the same.
 */
async function firstFrameSize(file: SourceFile): Promise<number | undefined> {
  const head = await file.read(0, 64 * 1024);
  const bytes = (at: number, n: number): Buffer | null =>
    at + n <= head.length ? head.subarray(at, at + n) : null;
  let pos = 0;
  while (head.length >= pos + 8 && frames.isSkippable(head.readUInt32LE(pos))) {
    pos += 8 + head.readUInt32LE(pos + 4);
  }
  if (bytes(pos, 4)?.readUInt32LE(0) !== frames.ZSTD_MAGIC) return undefined;
  return frames.frameHeader(pos, bytes)?.contentSize ?? undefined;
}

/**
 * The sum of the decompressed sizes in the seek table (zstd's seekable format: a skippable
 * frame at the end listing each frame's compressed size, decompressed size and, if the
 * footer's descriptor says so, checksum; then frame count, descriptor and magic). Null
 * when there is none, or when its frames do not account for every byte before it.
 */
async function seekTableSize(file: SourceFile, fileSize: number): Promise<number | null> {
  // The footer says how long the table is: it is read, then the table at once.
  if (fileSize < 17) return null;
  const bytes = frames.seekTableBytes(await file.read(fileSize - 9, 9));
  if (bytes === null || bytes > Math.min(fileSize, MAX_SEEK_TABLE)) return null;
  const tableAt = fileSize - bytes;
  const tail = await file.read(tableAt, bytes);
  const inTail = (pos: number, n: number): Buffer | null =>
    pos >= tableAt && pos + n <= fileSize ? tail.subarray(pos - tableAt, pos - tableAt + n) : null;
  const table = frames.findSeekTable(fileSize, inTail);
  if (!table) return null;
  const { count, entryBytes } = table;
  const entries = inTail(table.entriesAt, count * entryBytes);
  if (!entries) return null;
  let compressed = 0;
  let total = 0;
  for (let at = 0; at < entries.length; at += entryBytes) {
    const entry = frames.seekTableEntry(entries, at, entryBytes);
    compressed += entry.compressedSize;
    total += entry.size;
  }
  if (compressed !== table.at) return null;
  if (count > 0 && (await file.read(0, 4)).readUInt32LE(0) !== frames.ZSTD_MAGIC) return null;
  return total;
}
