// A plain image read as a stream: a download that is not compressed (a plain file on
// this machine is an ImageFile, read anywhere). Its size is the file's. A resumed job
// starts it at the first byte it still needs, and starts it again further on past a
// gap, where the file lets a stream begin anywhere (a server that honours Range). The
// start — what the plan reads the partition table from — is asked for alone: a resumed
// job then downloads no more of it.

import { STREAM_HEAD_BYTES } from '../device';
import type { SourceFile } from '../source-file';
import { StreamDecoder, type Decoder, type Opened } from './source';

/** A shorter gap is read through: cheaper than a new request. */
const RESTART_GAP = 1024 * 1024;

export async function openPlain(file: SourceFile): Promise<Opened> {
  return {
    knownSize: file.size,
    compressedSize: file.size ?? 0,
    decoder: () => new PlainDecoder(file),
  };
}

class PlainDecoder implements Decoder {
  private base = 0;
  private counter = { bytes: 0 };
  private stream: StreamDecoder;
  private begun = false;
  /** Where the stream being read ends short of the file's end (the start asked for alone). */
  private bound: number | null = null;

  constructor(private readonly file: SourceFile) {
    const head = file.size !== null && file.restartable ? STREAM_HEAD_BYTES : null;
    this.stream = this.from(0, head !== null && head < file.size! ? head : null);
  }

  get consumed(): number {
    return this.base + this.counter.bytes;
  }

  get produced(): number {
    return this.base + this.stream.produced;
  }

  async read(dst: Buffer): Promise<number> {
    this.begun = true;
    let filled = await this.stream.read(dst);
    if (filled < dst.length && this.bound !== null && this.produced === this.bound) {
      await this.stream.close();
      this.stream = this.from(this.bound, null);
      filled += await this.stream.read(dst.subarray(filled));
    }
    return filled;
  }

  /**
   * The first read's stream begins where it asks; later ones only where a stream may begin
   * anywhere for the cost of what it reads (else the gap is read through).
   */
  async skipTo(offset: number): Promise<number> {
    const gap = offset - this.produced;
    if (gap <= 0 || (this.begun && (!this.file.restartable || gap < RESTART_GAP))) {
      return this.produced;
    }
    await this.stream.close();
    this.stream = this.from(offset, null);
    return offset;
  }

  close(): Promise<void> {
    return this.stream.close();
  }

  private from(at: number, end: number | null): StreamDecoder {
    const counter = { bytes: 0 };
    this.base = at;
    this.counter = counter;
    this.bound = end;
    return new StreamDecoder(() => this.file.stream(counter, at, end ?? undefined), counter);
  }
}
