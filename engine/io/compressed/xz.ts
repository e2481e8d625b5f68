// xz (.xz): liblzma (liblzma.ts). The index at the end of the file lists every block
// (xz-index.ts): blocks are decompressed side by side on both cores, as `xz -d -T2`
// does, each as a stream of its own, and a resumed job starts at the block holding its
// first region instead of decompressing everything before it. A file of one block (xz
// without -T) decompresses on one core, as `xz -d` does.

import fs from 'node:fs';
import os from 'node:os';
import { fileSize, need, withFd } from './file';
import { LZMA_FINISH, LZMA_RUN, codeOk, lzmaError, streamDecoder, streamEnded } from './liblzma';
import type { LzmaStream } from './liblzma';
import type { Decoder, Opened } from './source';
import {
  blockDictionary,
  readXzIndex,
  singleBlockStream,
  type XzBlock,
  type XzIndex,
} from './xz-index';

const MIB = 1024 * 1024;
/** Decompressed bytes a block's decoder hands over at a time. */
const CHUNK = 2 * MIB;
/** Chunks a block's decoder may hold ready before it waits for the reader: the memory bound. */
const AHEAD = 3;
/** Compressed bytes read from the file at a time. */
const INPUT = MIB;
/** Every decoder's LZMA2 dictionary together (xz -9 asks 64 MiB: one block at a time then). */
const DICTIONARY_BUDGET = 64 * MIB;

export async function openXz(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const { index, lanes } = withFd(file, (fd) => {
    const read = readXzIndex(fd, compressedSize);
    return { index: read, lanes: lanesFor(fd, read.blocks) };
  });
  return {
    knownSize: index.size,
    compressedSize,
    decoder: () => new XzDecoder(file, index, compressedSize, lanes),
  };
}

/** Blocks decompressed at once: one per core, two at most, as the dictionaries allow. */
function lanesFor(fd: number, blocks: XzBlock[]): number {
  const cores = Math.min(2, os.availableParallelism());
  let largest = 0;
  let stream: Buffer | null = null;
  for (const block of blocks) {
    // Blocks of one stream are made with the same settings: look at each stream's first.
    if (stream === block.streamFlags) continue;
    stream = block.streamFlags;
    const size = (need(fd, block.at, 1, 'an xz block header')[0] + 1) * 4;
    const dictionary = blockDictionary(need(fd, block.at, size, 'an xz block header'));
    largest = Math.max(largest, dictionary ?? DICTIONARY_BUDGET);
  }
  return Math.max(1, Math.min(cores, Math.floor(DICTIONARY_BUDGET / Math.max(largest, 1))));
}

class XzDecoder implements Decoder {
  produced = 0;
  /** Blocks whose decompression began: what a resumed job skipped shows here. */
  blocksDecompressed = 0;
  /** The compressed file up to the end of the last block handed out whole. */
  private handed = 0;
  /** The next block to start. */
  private next = 0;
  /** Blocks being decompressed, in order: the first is the one read from. */
  private readonly decoding: BlockDecoder[] = [];
  private readonly spare: Buffer[] = [];
  private handle: fs.promises.FileHandle | null = null;

  constructor(
    private readonly file: string,
    private readonly index: XzIndex,
    private readonly compressedSize: number,
    private readonly lanes: number,
  ) {}

  get consumed(): number {
    return this.handed;
  }

  async read(dst: Buffer): Promise<number> {
    this.handle ??= await fs.promises.open(this.file, 'r');
    let filled = 0;
    while (filled < dst.length) {
      this.startBlocks();
      const current = this.decoding[0];
      if (!current) break;
      const chunk = await current.take();
      if (chunk === null) {
        this.decoding.shift();
        this.handed = current.block.at + current.block.padded;
        if (this.decoding.length === 0 && this.next === this.index.blocks.length) {
          this.handed = this.compressedSize;
        }
        continue;
      }
      const n = chunk.buffer.copy(dst, filled, chunk.taken, chunk.length);
      chunk.taken += n;
      filled += n;
      this.produced += n;
      if (chunk.taken === chunk.length) this.spare.push(current.release());
    }
    return filled;
  }

  /**
   * Goes on from the block holding `offset` when that is further on than the block being
   * read: the blocks between are not decompressed. Returns where decompression now stands.
   */
  async skipTo(offset: number): Promise<number> {
    const { blocks } = this.index;
    const reading = this.decoding[0]?.index ?? this.next;
    let k = reading;
    while (k < blocks.length && blocks[k].start + blocks[k].size <= offset) k += 1;
    if (k === reading) return this.produced;
    await this.stopBlocks();
    this.next = k;
    this.produced = k < blocks.length ? blocks[k].start : this.index.size;
    this.handed = k < blocks.length ? blocks[k].at : this.compressedSize;
    return this.produced;
  }

  async close(): Promise<void> {
    await this.stopBlocks();
    await this.handle?.close();
    this.handle = null;
  }

  private startBlocks(): void {
    const { blocks } = this.index;
    while (this.decoding.length < this.lanes && this.next < blocks.length && this.handle) {
      const k = this.next++;
      this.decoding.push(new BlockDecoder(k, blocks[k], this.handle, this.spare));
      this.blocksDecompressed += 1;
    }
  }

  private async stopBlocks(): Promise<void> {
    const stopping = this.decoding.splice(0);
    await Promise.all(stopping.map((b) => b.stop()));
  }
}

interface Chunk {
  buffer: Buffer;
  /** Bytes decompressed into it, and bytes of them handed out. */
  length: number;
  taken: number;
}

/** One block, decompressed on the thread pool into chunks the reader takes in order. */
class BlockDecoder {
  private readonly ready: Chunk[] = [];
  private filling: Chunk | null = null;
  private finished = false;
  private stopped = false;
  private error: Error | null = null;
  private wakeReader: (() => void) | null = null;
  private wakeDecoder: (() => void) | null = null;
  private readonly running: Promise<void>;

  constructor(
    readonly index: number,
    readonly block: XzBlock,
    private readonly file: fs.promises.FileHandle,
    private readonly spare: Buffer[],
  ) {
    this.running = this.run();
  }

  /** The next chunk with bytes left to hand out; null once the block is done. */
  async take(): Promise<Chunk | null> {
    while (this.ready.length === 0) {
      if (this.finished) {
        if (this.error) throw this.error;
        return null;
      }
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
    }
    return this.ready[0];
  }

  /** The first chunk was handed out whole: its buffer, for another chunk. */
  release(): Buffer {
    const chunk = this.ready.shift()!;
    this.wake('decoder');
    return chunk.buffer;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake('decoder');
    await this.running;
    for (const chunk of this.ready.splice(0)) this.spare.push(chunk.buffer);
    if (this.filling) this.spare.push(this.filling.buffer);
    this.filling = null;
  }

  private async run(): Promise<void> {
    const lzma = streamDecoder();
    try {
      const { header, trailer } = singleBlockStream(this.block);
      await this.feed(lzma, header, LZMA_RUN());
      const input = Buffer.allocUnsafe(Math.min(INPUT, this.block.padded));
      const end = this.block.at + this.block.padded;
      for (let at = this.block.at; at < end && !this.stopped;) {
        const length = Math.min(input.length, end - at);
        const { bytesRead } = await this.file.read(input, 0, length, at);
        if (bytesRead === 0) throw new Error('the file ends inside a block (truncated?)');
        await this.feed(lzma, input.subarray(0, bytesRead), LZMA_RUN());
        at += bytesRead;
      }
      await this.feed(lzma, trailer, LZMA_FINISH());
      if (this.filling && this.filling.length > 0) this.ready.push(this.filling);
      this.filling = null;
    } catch (e) {
      this.error = e as Error;
    } finally {
      lzma.close();
      this.finished = true;
      this.wake('reader');
    }
  }

  /** Decompresses `input`; with LZMA_FINISH, until the (one-block) stream ends. */
  private async feed(lzma: LzmaStream, input: Buffer, action: number): Promise<void> {
    let used = 0;
    for (;;) {
      const out = await this.room();
      if (!out) return;
      const [ret, availIn, availOut] = await new Promise<[number, number, number]>((resolve) =>
        lzma.code(action, input, used, input.length - used, out.buffer, out.length, (...r) =>
          resolve(r),
        ),
      );
      if (!codeOk(ret)) throw lzmaError(ret);
      used = input.length - availIn;
      out.length = out.buffer.length - availOut;
      if (availOut === 0) {
        this.ready.push(out);
        this.filling = null;
        this.wake('reader');
      }
      if (streamEnded(ret)) return;
      if (action === LZMA_RUN() && availIn === 0) return;
    }
  }

  /** A chunk with room, once fewer than AHEAD wait for the reader; null when stopped. */
  private async room(): Promise<Chunk | null> {
    while (!this.stopped && !this.filling && this.ready.length >= AHEAD) {
      await new Promise<void>((resolve) => (this.wakeDecoder = resolve));
    }
    if (this.stopped) return null;
    this.filling ??= { buffer: this.spare.pop() ?? Buffer.allocUnsafe(CHUNK), length: 0, taken: 0 };
    return this.filling;
  }

  private wake(who: 'reader' | 'decoder'): void {
    const wake = who === 'reader' ? this.wakeReader : this.wakeDecoder;
    if (who === 'reader') this.wakeReader = null;
    else this.wakeDecoder = null;
    wake?.();
  }
}
