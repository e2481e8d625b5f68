// zstd (.zst): the native decoder, straight into the caller's buffer. The
// uncompressed size comes from the seek table at the end where there is one
// (the seekable format, DriveTwin's own .img.zst backups), else from the content
// sizes in the frame headers.

import fs from 'node:fs';
import type { Readable } from 'node:stream';
import * as zstd from 'zstd-napi/binding';
import { SKIPPABLE_MAGIC, SKIPPABLE_MASK, ZSTD_MAGIC } from './detect';
import { fileSize, fileStream, preadSync } from './file';
import { asBuffer, FormatError, letTimersRun, type Decoder, type Opened } from './source';

/** zstd frames may ask for windows up to 2 GiB (`zstd --long=31`); the frame header says how much. */
const ZSTD_WINDOW_LOG_MAX = 31;
const SEEK_TABLE_MAGIC = 0x184d2a5e;
const SEEKABLE_FOOTER_MAGIC = 0x8f92eab1;
/** Seek table entries read at a time. */
const ENTRIES_PER_READ = 4096;

export async function openZstd(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const fd = fs.openSync(file, 'r');
  let knownSize: number | null;
  try {
    knownSize = seekTableSize(fd, compressedSize) ?? (await zstdContentSize(fd, compressedSize));
  } finally {
    fs.closeSync(fd);
  }
  return { knownSize, compressedSize, decoder: () => new ZstdDecoder(file) };
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

/**
 * The sum of the decompressed sizes in the seek table (zstd's seekable format: a skippable
 * frame at the end listing each frame's compressed size, decompressed size and, if the
 * footer's descriptor says so, checksum; then frame count, descriptor and magic). Null
 * when there is none, or when its frames do not account for every byte before it.
 */
function seekTableSize(fd: number, fileSize: number): number | null {
  if (fileSize < 17) return null;
  const footer = preadSync(fd, fileSize - 9, 9);
  if (footer.readUInt32LE(5) !== SEEKABLE_FOOTER_MAGIC) return null;
  const frames = footer.readUInt32LE(0);
  const entry = footer[4] & 0x80 ? 12 : 8;
  const content = frames * entry + 9;
  const tableAt = fileSize - 8 - content;
  if (tableAt < 0) return null;
  const header = preadSync(fd, tableAt, 8);
  if (header.readUInt32LE(0) !== SEEK_TABLE_MAGIC || header.readUInt32LE(4) !== content) {
    return null;
  }
  let compressed = 0;
  let total = 0;
  for (let first = 0; first < frames; first += ENTRIES_PER_READ) {
    const count = Math.min(ENTRIES_PER_READ, frames - first);
    const entries = preadSync(fd, tableAt + 8 + first * entry, count * entry);
    for (let at = 0; at < entries.length; at += entry) {
      compressed += entries.readUInt32LE(at);
      total += entries.readUInt32LE(at + 4);
    }
  }
  if (compressed !== tableAt) return null;
  if (frames > 0 && preadSync(fd, 0, 4).readUInt32LE(0) !== ZSTD_MAGIC) return null;
  return total;
}
