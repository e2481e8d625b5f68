// xz (.xz): liblzma (liblzma.ts). The index at the end of the file lists every block
// (xz-index.ts): blocks are decompressed side by side on both cores, as `xz -d -T2`
// does, each as a stream of its own on a thread of its own (xz-lane.ts, xz-worker.ts),
// and a resumed job starts at the block holding its first region instead of
// decompressing everything before it. A file of one block (xz without -T) decompresses
// on one thread, as `xz -d` does.
//
// A download: its index is read with Range requests at its end, and the reader streams
// the file once, from the first block it needs, handing each block's bytes to its
// thread. Where the server can't read its end on its own (it ignores Range), the file
// is decoded as one stream on one thread, its size known at its end.

import os from 'node:os';
import type { Readable } from 'node:stream';
import type { SourceFile } from '../source-file';
import { needBytes, sizeForTrailer } from './file';
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

export async function openXz(file: SourceFile): Promise<Opened> {
  const compressedSize = sizeForTrailer(file);
  if (compressedSize === null) {
    const whole: XzIndex = { blocks: [], size: Infinity };
    const decoder = () => new XzDecoder(file, whole, file.size ?? Infinity, 1);
    return { knownSize: null, compressedSize: file.size ?? 0, decoder };
  }
  const index = await readXzIndex(file, compressedSize);
  const lanes = await lanesFor(file, index.blocks);
  return {
    knownSize: index.size,
    compressedSize,
    decoder: () => new XzDecoder(file, index, compressedSize, lanes),
  };
}

/** Blocks decompressed at once: one per core, two at most, as the dictionaries allow. */
async function lanesFor(file: SourceFile, blocks: XzBlock[]): Promise<number> {
  const cores = Math.min(2, os.availableParallelism());
  let largest = 0;
  let stream: Buffer | null = null;
  for (const block of blocks) {
    // Blocks of one stream are made with the same settings: look at each stream's first.
    if (stream === block.streamFlags) continue;
    stream = block.streamFlags;
    const what = 'an xz block header';
    const size = ((await needBytes(file, block.at, 1, what))[0] + 1) * 4;
    const dictionary = blockDictionary(await needBytes(file, block.at, size, what));
    largest = Math.max(largest, dictionary ?? DICTIONARY_BUDGET);
  }
  return Math.max(1, Math.min(cores, Math.floor(DICTIONARY_BUDGET / Math.max(largest, 1))));
}

/** The whole file as one block: no index was read (header and trailer are its own). */
const WHOLE: LaneBlock = {
  at: 0,
  padded: Infinity,
  header: new Uint8Array(),
  trailer: new Uint8Array(),
};

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
  /** No index: the file is one stream, decoded as one block of unknown length. */
  private readonly whole: boolean;
  /** A download: the stream handing the threads their bytes, and how it ended. */
  private feeder: { input: Readable; done: Promise<void>; stopped: boolean } | null = null;
  /** A download's stream waiting for the reader to move on to another block. */
  private waiting: Array<() => void> = [];

  constructor(
    private readonly file: SourceFile,
    private readonly index: XzIndex,
    private readonly compressedSize: number,
    private readonly laneCount: number,
  ) {
    this.whole = index.blocks.length === 0 && index.size === Infinity;
    this.lanes = this.startLanes();
  }

  get consumed(): number {
    // One stream of unknown length: what its thread took (the reader reads ahead of it).
    return this.whole ? this.lanes[0].inputTaken : this.handed;
  }

  /** Blocks whose decompression began: what a resumed job skipped shows here. */
  get blocksDecompressed(): number {
    return this.lanes.reduce((sum, lane) => sum + lane.begun, this.begunBefore);
  }

  private get blockCount(): number {
    return this.whole ? 1 : this.index.blocks.length;
  }

  async read(dst: Buffer): Promise<number> {
    const { blocks } = this.index;
    this.begin();
    let filled = 0;
    while (filled < dst.length && this.reading < this.blockCount) {
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
          this.reading === this.blockCount ? this.compressedSize : block.at + block.padded;
        this.moveOn();
      }
    }
    // A download's last bytes go out once it was read to its end (and checked, if hashed).
    if (this.reading === this.blockCount) await this.feeder?.done;
    return filled;
  }

  /**
   * Goes on from the block holding `offset` when that is further on than the block being
   * read: the blocks between are not decompressed. Returns where decompression now stands.
   * A download that is read from its start anyway (to be hashed) only skips before it began.
   */
  async skipTo(offset: number): Promise<number> {
    const { blocks } = this.index;
    let k = this.reading;
    while (k < blocks.length && blocks[k].start + blocks[k].size <= offset) k += 1;
    if (k === this.reading || (this.begun && !this.file.restartable)) return this.produced;
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
    const count = Math.max(1, Math.min(this.laneCount, this.blockCount));
    return Array.from({ length: count }, () => new XzLane(this.file.localPath));
  }

  /** Each thread its share: every lanes.length-th block from `first`. */
  private begin(): void {
    if (this.begun) return;
    this.begun = true;
    const { blocks } = this.index;
    this.lanes.forEach((lane, i) => {
      const share: LaneBlock[] = [];
      for (let k = this.first + i; k < this.blockCount; k += this.lanes.length) {
        if (this.whole) {
          share.push(WHOLE);
          continue;
        }
        const { header, trailer } = singleBlockStream(blocks[k]);
        share.push({ at: blocks[k].at, padded: blocks[k].padded, header, trailer });
      }
      lane.begin(share);
    });
    if (this.file.localPath === null && this.first < this.blockCount) this.startFeeder();
  }

  /** The reader moved on (or the threads stopped): a waiting stream looks again. */
  private moveOn(): void {
    for (const go of this.waiting.splice(0)) go();
  }

  /**
   * A download: the file streamed once from the first block on, each block's bytes handed
   * to its thread (what lies between blocks — stream headers, indexes — is dropped). A
   * block is begun only once its thread's previous one is being read: what is downloaded
   * ahead of the reader stays within a block per thread, and a resumed job that skips
   * ahead has little to throw away. A failure reaches the reader through take().
   */
  private startFeeder(): void {
    const { blocks } = this.index;
    const from = this.whole ? 0 : blocks[this.first].at;
    const input = this.file.stream({ bytes: 0 }, from);
    const lanes = this.lanes;
    const laneOf = (k: number): XzLane => lanes[(k - this.first) % lanes.length];
    const feed = async (): Promise<void> => {
      let at = from;
      let k = this.first;
      for await (const chunk of input as AsyncIterable<Buffer>) {
        for (let off = 0; off < chunk.length;) {
          if (k >= this.blockCount) break;
          const block = this.whole ? WHOLE : blocks[k];
          if (at < block.at) {
            const n = Math.min(block.at - at, chunk.length - off);
            at += n;
            off += n;
            continue;
          }
          while (at === block.at && k >= this.reading + lanes.length && !feeder.stopped) {
            await new Promise<void>((resolve) => this.waiting.push(resolve));
          }
          if (feeder.stopped) return;
          const n = Math.min(block.at + block.padded - at, chunk.length - off);
          await laneOf(k).give(chunk.subarray(off, off + n));
          at += n;
          off += n;
          if (at === block.at + block.padded) {
            await laneOf(k).endBlock();
            k += 1;
          }
        }
      }
      if (this.whole) await laneOf(k).endBlock();
      else if (k < this.blockCount) throw new Error('the data ends inside a block (truncated?)');
    };
    const feeder = { input, done: Promise.resolve(), stopped: false };
    feeder.done = feed().catch((e: Error) => {
      for (const lane of lanes) lane.fail(e);
      throw e;
    });
    feeder.done.catch(() => undefined); // the reader meets it through take(), or awaits it at the end
    this.feeder = feeder;
  }

  private async stopLanes(): Promise<void> {
    if (this.feeder) this.feeder.stopped = true;
    this.moveOn();
    this.feeder?.input.destroy();
    await Promise.all(this.lanes.map((lane) => lane.stop()));
    await this.feeder?.done.catch(() => undefined);
    this.feeder = null;
  }
}
