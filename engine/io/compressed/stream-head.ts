// The first MiB a stream produced (STREAM_HEAD_BYTES), kept: the plan reads the source's
// partition table there and the copy then starts at byte 0 of the same stream, instead of
// a second decoder opened — and, for xz, a second thread started — only to read it.

import { STREAM_HEAD_BYTES as KEPT } from '../device';

export class StreamHead {
  private bytes: Buffer | null = null;
  /** Bytes kept: the stream's [0, length). */
  private length = 0;

  /** The stream produced `data` at `at`: kept where it continues the head. */
  keep(at: number, data: Buffer): void {
    if (at !== this.length || at >= KEPT || data.length === 0) return;
    this.bytes ??= Buffer.allocUnsafe(KEPT);
    this.length += data.copy(this.bytes, at, 0, Math.min(data.length, KEPT - at));
  }

  /** True: [offset, end) is kept. */
  holds(offset: number, end: number): boolean {
    return offset >= 0 && end <= this.length;
  }

  /** Copies [offset, end) into the start of `dst` (it must be held); returns its length. */
  copy(dst: Buffer, offset: number, end: number): number {
    const n = Math.min(dst.length, end - offset);
    return this.bytes!.copy(dst, 0, offset, offset + n);
  }
}
