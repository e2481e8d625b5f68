// Lists the complete frames of a `.zst` file, as resuming a backup needs them: from
// its seek table when it has a whole one, else by walking frame and block headers up
// to the first frame a kill tore (which is where a resume cuts the file).

import fs from 'node:fs';
import * as zstd from 'zstd-napi/binding';
import { openFdSync } from './fd';
import {
  blockHeader,
  findSeekTable,
  frameHeader,
  isSkippable,
  seekTableEntry,
  ZSTD_MAGIC,
  type ZstFrame,
} from './zst-frames';

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

/** Lists the complete frames of a `.zst` file (for resume, tests and diagnostics). */
export function scanZst(path: string): ZstScan {
  const fd = openFdSync(path, 'r');
  try {
    return scanFd(fd, path);
  } finally {
    fs.closeSync(fd);
  }
}

/** scanZst on a file already open. */
export function scanFd(fd: number, path: string): ZstScan {
  const fileSize = fs.fstatSync(fd).size;
  const r = new Reader(fd, fileSize);
  return fromSeekTable(r) ?? walk(r, fd, path);
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

/** A complete image: trust its seek table when it accounts for every byte of the file. */
function fromSeekTable(r: Reader): ZstScan | null {
  const size = r.fileSize;
  const table = findSeekTable(size, (pos, n) => r.bytes(pos, n));
  if (!table) return null;
  const { count, entryBytes } = table;
  const frames: ZstFrame[] = [];
  let fileOffset = 0;
  for (let i = 0; i < count; i++) {
    const e = seekTableEntry(r.bytes(table.entriesAt + i * entryBytes, entryBytes)!, 0, entryBytes);
    frames.push({ fileOffset, ...e, sizeInHeader: true });
    fileOffset += e.compressedSize;
  }
  if (fileOffset !== table.at) return null;
  // Spot-check that a frame starts where the table says the last one does.
  if (count > 0 && r.u32(frames[count - 1].fileOffset) !== ZSTD_MAGIC) return null;
  return { frames, skippable: [table.at], end: size, fileSize: size };
}

/** Walks frame headers and block headers; stops at the first incomplete or unknown frame. */
function walk(r: Reader, fd: number, path: string): ZstScan {
  const frames: ZstFrame[] = [];
  const skippable: number[] = [];
  let pos = 0;
  for (;;) {
    const magic = r.u32(pos);
    if (magic === null) break;
    if (isSkippable(magic)) {
      const len = r.u32(pos + 4);
      if (len === null || pos + 8 + len > r.fileSize) break;
      skippable.push(pos);
      pos += 8 + len;
      continue;
    }
    if (magic !== ZSTD_MAGIC) break;
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
  const header = frameHeader(at, (pos, n) => r.bytes(pos, n));
  if (!header) return null;
  let size = header.contentSize ?? -1;
  const sizeInHeader = size >= 0;
  let blocksSize = 0;
  let knownBlocks = true;
  let pos = header.blocksAt;
  for (;;) {
    const h = r.bytes(pos, 3);
    const block = h && blockHeader(h);
    if (!block) return null;
    if (block.regenerated === null) knownBlocks = false;
    else blocksSize += block.regenerated;
    pos += block.stored;
    if (pos > r.fileSize) return null;
    if (block.last) break;
  }
  let checksum: number | null = null;
  if (header.hasChecksum) {
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
  const input = Buffer.alloc(Math.min(length, 1024 * 1024));
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
