// xz (.xz): liblzma (liblzma.ts). The index at the end of the file lists every block
// (xz-index.ts): blocks are decompressed side by side on both cores, as `xz -d -T2`
// does, each as a stream of its own on a thread of its own (xz-lane.ts, xz-worker.ts),
// and a resumed job starts at the block holding its first region instead of
// decompressing everything before it. A file of one block (xz without -T) decompresses
// on one thread, as `xz -d` does.

import os from 'node:os';
import { fileSize, need, withFd } from './file';
import type { Decoder, Opened } from './source';
import { XzLane, type Slot } from './xz-lane';
import type { LaneBlock } from './xz-ring';
import {
  blockDictionary,
  readXzIndex,
  singleBlockStream,
  type XzBlock,
  type XzIndex,
} from './xz-index';

const MIB = 1024 * 1024;
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
  /** The compressed file up to the end of the last block handed out whole. */
  private handed = 0;
  /** The decoding threads; block `first + k` is the `k % lanes.length`-th's. */
  private lanes: XzLane[];
  private begun = false;
  private first = 0;
  /** The block being read, and the slot being handed out of it. */
  private reading = 0;
  private slot: Slot | null = null;
  private taken = 0;
  /** Blocks begun by threads stopped when a resumed job skipped ahead. */
  private begunBefore = 0;

  constructor(
    private readonly file: string,
    private readonly index: XzIndex,
    private readonly compressedSize: number,
    private readonly laneCount: number,
  ) {
    this.lanes = this.startLanes();
  }

  get consumed(): number {
    return this.handed;
  }

  /** Blocks whose decompression began: what a resumed job skipped shows here. */
  get blocksDecompressed(): number {
    return this.lanes.reduce((sum, lane) => sum + lane.begun, this.begunBefore);
  }

  async read(dst: Buffer): Promise<number> {
    const { blocks } = this.index;
    this.begin();
    let filled = 0;
    while (filled < dst.length && this.reading < blocks.length) {
      const lane = this.lanes[(this.reading - this.first) % this.lanes.length];
      this.slot ??= await lane.take();
      if (!this.slot) throw new Error(`block ${this.reading} was never decompressed`);
      const n = this.slot.bytes.copy(dst, filled, this.taken);
      this.taken += n;
      filled += n;
      this.produced += n;
      if (this.taken < this.slot.bytes.length) continue;
      const { endsBlock } = this.slot;
      lane.release();
      this.slot = null;
      this.taken = 0;
      if (endsBlock) {
        const block = blocks[this.reading++];
        this.handed =
          this.reading === blocks.length ? this.compressedSize : block.at + block.padded;
      }
    }
    return filled;
  }

  /**
   * Goes on from the block holding `offset` when that is further on than the block being
   * read: the blocks between are not decompressed. Returns where decompression now stands.
   */
  async skipTo(offset: number): Promise<number> {
    const { blocks } = this.index;
    let k = this.reading;
    while (k < blocks.length && blocks[k].start + blocks[k].size <= offset) k += 1;
    if (k === this.reading) return this.produced;
    if (this.begun) {
      this.begunBefore = this.blocksDecompressed;
      await this.stopLanes();
      this.lanes = this.startLanes();
      this.begun = false;
    }
    this.first = this.reading = k;
    this.slot = null;
    this.taken = 0;
    this.produced = k < blocks.length ? blocks[k].start : this.index.size;
    this.handed = k < blocks.length ? blocks[k].at : this.compressedSize;
    return this.produced;
  }

  async close(): Promise<void> {
    await this.stopLanes();
  }

  private startLanes(): XzLane[] {
    const count = Math.max(1, Math.min(this.laneCount, this.index.blocks.length));
    return Array.from({ length: count }, () => new XzLane(this.file));
  }

  /** Each thread its share: every lanes.length-th block from `first`. */
  private begin(): void {
    if (this.begun) return;
    this.begun = true;
    const { blocks } = this.index;
    this.lanes.forEach((lane, i) => {
      const share: LaneBlock[] = [];
      for (let k = this.first + i; k < blocks.length; k += this.lanes.length) {
        const { header, trailer } = singleBlockStream(blocks[k]);
        share.push({ at: blocks[k].at, padded: blocks[k].padded, header, trailer });
      }
      lane.begin(share);
    });
  }

  private async stopLanes(): Promise<void> {
    await Promise.all(this.lanes.map((lane) => lane.stop()));
  }
}
