// bzip2 decoded block by block on every core (up to 4), as lbzip2 does: the file is
// scanned for block marks (bzip2-blocks.ts) a step ahead of the decoding, each block goes
// to a decoding thread (bzip2-lanes.ts), and the bytes are handed out in order. Each
// stream's combined CRC is checked from its blocks' CRCs: a missing or reordered block
// fails as surely as a damaged one.
//
// A mark found by chance inside compressed data (2^-48 per bit) cuts a block in two: the
// first piece then fails (its data ends early) before any of its bytes is handed out, and
// is decoded again joined with the next piece. Only a piece that fails with nothing handed
// out is joined, and at most MAX_JOINS times (two chance marks in one block: ~2^-70): a
// real corruption still fails, after a few wasted decodes. Should the cut piece seem to end
// where it was cut, its bytes come out before its CRC fails: then it fails like a
// corruption would — a refused file, never wrong bytes.
//
// Memory: at most `window` pieces are given out at once, each with at most AHEAD chunks of
// CHUNK bytes decoded and not yet handed out: 2 × lanes × 2 × 1 MiB (16 MiB with 4 lanes),
// plus each thread's libbzip2 state (3.6 MB) and buffers, whatever a block expands to.

import fs from 'node:fs';
import { MarkScanner, type Mark } from './bzip2-blocks';
import { Lanes, type PieceOutput } from './bzip2-lanes';
import { letTimersRun, type Decoder } from './source';

const MAX_JOINS = 2;

/** What finds the marks: a MarkScanner (tests wrap one to add chance marks). */
export type Marks = Pick<MarkScanner, 'next' | 'done' | 'scanned'>;

/** A piece being decoded, with the CRC its block states and how often it was joined. */
interface Given {
  output: PieceOutput;
  crc: number | null;
  joins: number;
  /** Why it failed before it was joined: what is reported if joining doesn't help. */
  first: Error | null;
}

export class Bzip2Decoder implements Decoder {
  produced = 0;
  blocksDecompressed = 0;
  private handed = 0;
  private handle: fs.promises.FileHandle | null = null;
  private scanner: Marks | null = null;
  /** Marks at or after the one the reader expects next, in order. */
  private marks: Mark[] = [];
  /** Pieces given out, in order: the first is the one read from, when it is `reading`. */
  private readonly given: Given[] = [];
  /** Where the next piece to give out begins, at the earliest. */
  private givenTo = 0;
  private reading: Given | null = null;
  /** Where the reader stands: a stream header at byte expected/8, or a mark at bit `expected`. */
  private expected = 0;
  private atHeader = true;
  private combined = 0;
  private ended = false;
  private nextId = 0;
  private readonly lanes: Lanes;
  private readonly window: number;

  constructor(
    private readonly file: string,
    private readonly fileSize: number,
    lanes: number,
    private readonly scan = (file: fs.promises.FileHandle, size: number): Marks =>
      new MarkScanner(file, size),
  ) {
    this.window = 2 * lanes;
    this.lanes = new Lanes(lanes, file);
  }

  get consumed(): number {
    return this.handed;
  }

  /** Blocks each decoding thread was given. */
  get blocksPerLane(): number[] {
    return this.lanes.decodedPerLane;
  }

  async read(dst: Buffer): Promise<number> {
    let filled = 0;
    while (filled < dst.length) {
      // Chunks already here are taken without a turn of the event loop: let timers run.
      await letTimersRun();
      if (!this.reading && !(await this.advance())) break;
      const given = this.reading!;
      let chunk: Buffer | null;
      try {
        chunk = await given.output.next();
      } catch (e) {
        await this.retry(given, e as Error);
        continue;
      }
      if (chunk === null) {
        this.blockRead(given);
        continue;
      }
      const n = chunk.copy(dst, filled);
      given.output.consume(n);
      filled += n;
      this.produced += n;
    }
    return filled;
  }

  async close(): Promise<void> {
    for (const g of this.given.splice(0)) g.output.stop();
    await this.lanes.close();
    await this.handle?.close();
    this.handle = null;
  }

  /** Goes past stream headers and ends to the next block; false at the end of the file. */
  private async advance(): Promise<boolean> {
    for (;;) {
      if (this.ended) return false;
      if (this.atHeader) {
        await this.streamHeader();
        continue;
      }
      const mark = await this.markAt(this.expected);
      if (mark.kind === 'end') {
        if (mark.crc === null) throw new Error('the data ends early (truncated file?)');
        if (mark.crc !== this.combined) {
          throw new Error(
            "a stream's CRC doesn't match its blocks' (a block missing or out of order)",
          );
        }
        this.atHeader = true;
        this.expected = Math.ceil((mark.bit + 80) / 8) * 8;
        this.handed = Math.min(this.expected / 8, this.fileSize);
        continue;
      }
      await this.fill();
      const head = this.given[0];
      if (!head || head.output.piece.start !== mark.bit)
        throw new Error('lost track of the blocks');
      this.reading = head;
      return true;
    }
  }

  /** "BZh1".."BZh9" where a stream may begin; anything else after a stream is ignored, as bzip2 does. */
  private async streamHeader(): Promise<void> {
    const at = this.expected / 8;
    this.handle ??= await fs.promises.open(this.file, 'r');
    this.scanner ??= this.scan(this.handle, this.fileSize);
    const head = Buffer.alloc(4);
    const { bytesRead } = await this.handle.read(head, 0, 4, at);
    const text = head.toString('latin1', 0, bytesRead);
    if (/^BZh[1-9]$/.test(text)) {
      this.atHeader = false;
      this.expected = (at + 4) * 8;
      this.combined = 0;
      return;
    }
    if (at === 0) throw new Error('not bzip2 data');
    if (bytesRead > 0 && 'BZh'.startsWith(text.slice(0, 3))) {
      throw new Error('the data ends inside a stream header (truncated file?)');
    }
    this.ended = true;
    this.handed = this.fileSize;
  }

  /** The mark at `bit`, the marks before it dropped; a corruption where there is none. */
  private async markAt(bit: number): Promise<Mark> {
    while (!this.scanner!.done && this.scanner!.scanned * 8 <= bit) await this.scanMore();
    while (this.marks.length > 0 && this.marks[0].bit < bit) this.marks.shift();
    const mark = this.marks[0];
    if (mark?.bit === bit) return mark;
    if (bit + 80 > this.fileSize * 8) throw new Error('the data ends early (truncated file?)');
    throw new Error('no block or stream end where one should begin');
  }

  private async scanMore(): Promise<void> {
    const found = await this.scanner!.next();
    for (const m of found) this.marks.push(m);
  }

  /** Gives out pieces, in order, up to the window: each block mark up to the mark after it. */
  private async fill(): Promise<void> {
    let i = 0;
    while (this.given.length < this.window) {
      while (
        i < this.marks.length &&
        (this.marks[i].bit < this.givenTo || this.marks[i].kind !== 'block')
      )
        i++;
      if (i >= this.marks.length || (i + 1 >= this.marks.length && !this.scanner!.done)) {
        if (this.scanner!.done) return;
        await this.scanMore();
        continue;
      }
      const start = this.marks[i];
      const end = this.marks[i + 1]?.bit ?? this.fileSize * 8;
      this.give(start.bit, end, start.crc);
    }
  }

  private give(
    start: number,
    end: number,
    crc: number | null,
    joins = 0,
    first: Error | null = null,
  ): void {
    const output = this.lanes.decode({ id: this.nextId++, start, end });
    this.given.push({ output, crc, joins, first });
    this.givenTo = end;
    this.blocksDecompressed += 1;
  }

  /** The piece was read whole: its block's CRC goes into the stream's. */
  private blockRead(given: Given): void {
    this.given.shift();
    this.reading = null;
    this.combined = (((this.combined << 1) | (this.combined >>> 31)) ^ (given.crc ?? 0)) >>> 0;
    this.expected = given.output.piece.end;
    this.handed = Math.floor(this.expected / 8);
  }

  /**
   * The piece read from failed. Nothing of it handed out: joined with the next piece and
   * decoded again (its end may have been a chance mark), the pieces after it given again.
   */
  private async retry(given: Given, error: Error): Promise<void> {
    const { start, end } = given.output.piece;
    const last = end >= this.fileSize * 8;
    if (given.output.taken > 0 || given.joins >= MAX_JOINS || last) throw given.first ?? error;
    for (const g of this.given.splice(0)) g.output.stop();
    this.reading = null;
    while (!this.scanner!.done && this.marks.every((m) => m.bit <= end)) await this.scanMore();
    const next = this.marks.find((m) => m.bit > end);
    this.give(
      start,
      next?.bit ?? this.fileSize * 8,
      given.crc,
      given.joins + 1,
      given.first ?? error,
    );
    this.blocksDecompressed -= 1;
  }
}
