// A plain image read as a stream: a download that is not compressed (a plain file on
// this machine is an ImageFile, read anywhere). Its size is the file's. A resumed job
// starts it at the first byte it still needs, and starts it again further on past a
// gap, where the file lets a stream begin anywhere (a server that honours Range).

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

  constructor(private readonly file: SourceFile) {
    this.stream = this.from(0);
  }

  get consumed(): number {
    return this.base + this.counter.bytes;
  }

  get produced(): number {
    return this.base + this.stream.produced;
  }

  read(dst: Buffer): Promise<number> {
    this.begun = true;
    return this.stream.read(dst);
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
    this.stream = this.from(offset);
    return offset;
  }

  close(): Promise<void> {
    return this.stream.close();
  }

  private from(at: number): StreamDecoder {
    const counter = { bytes: 0 };
    this.base = at;
    this.counter = counter;
    return new StreamDecoder(() => this.file.stream(counter, at), counter);
  }
}
