// The userspace kcopyd: one source range to one or more destinations.
//
// A destination whose write fails is reported in the write-error mask and left
// to the caller to drop; the others go on. With ignore-errors an unreadable
// range is delimited down to the logical block by re-reading halves, and the
// blocks that can't be read are written as zeros and reported.

import type { Device } from './io/device';
import { DeviceError, readSome } from './io/device';
import { type Range, mergeRanges } from './geometry';
import type { Throttle } from './throttle';
import { zeroedBuffer } from './io/buffers';

export interface Target {
  device: Device;
  /** Skip writing all-zero regions: the destination already reads zeros there. */
  skipZeros: boolean;
  /** Free space (used-only clones) is written as zeros here rather than left alone. */
  writesFree: boolean;
}

export interface CopyOptions {
  ignoreErrors: boolean;
  /** Writes reach each destination in strictly ascending order (zoned drives). */
  sequential: boolean;
  /** Zero detection granularity (the region size). */
  zeroUnit: number;
}

interface WriteTurn {
  ready: Promise<void>;
  release(): void;
}

export interface CopyResult {
  /** Set when the source failed and the range was not copied. */
  readError: DeviceError | null;
  /** Bit i set: targets[i] failed. */
  writeErrorMask: number;
  writeErrors: DeviceError[];
  unreadable: Range[];
  bytesRead: number;
  bytesWritten: number;
  /** Set when a streamed source ended inside the range: its size. */
  end?: number;
}

// Errors that mean "these blocks are bad", as opposed to "the device is gone".
const MEDIA_ERRORS = new Set(['EIO', 'ENODATA', 'EILSEQ', 'EBADMSG']);

function emptyResult(): CopyResult {
  return {
    readError: null,
    writeErrorMask: 0,
    writeErrors: [],
    unreadable: [],
    bytesRead: 0,
    bytesWritten: 0,
  };
}

function isMediaError(e: unknown): e is DeviceError {
  return e instanceof DeviceError && MEDIA_ERRORS.has(e.code ?? '');
}

export class Copier {
  private lastTurn: Promise<void> = Promise.resolve();
  private zeros: Buffer = Buffer.alloc(0);

  constructor(
    private readonly source: Device,
    private readonly throttle: Throttle,
    private readonly options: CopyOptions,
  ) {}

  /** Copies `range` through `buffer` (at least range.length bytes) to every live target. */
  async copy(range: Range, buffer: Buffer, targets: (Target | null)[]): Promise<CopyResult> {
    const data = buffer.subarray(0, range.length);
    const result = emptyResult();
    const turn = this.writeTurn();
    try {
      await this.throttle.admit(range.length);
      await this.throttle.measure(() => this.readThenWrite(range, data, targets, result, turn));
    } finally {
      turn.release();
    }
    return result;
  }

  private async readThenWrite(
    range: Range,
    data: Buffer,
    targets: (Target | null)[],
    result: CopyResult,
    turn: WriteTurn,
  ): Promise<void> {
    try {
      const n = await readSome(this.source, data, range.offset);
      result.bytesRead = n;
      if (n < range.length) {
        // A stream ended: its size is now known; nothing past it exists to write.
        result.end = range.offset + n;
        if (n === 0) return;
        data = data.subarray(0, n);
      }
    } catch (e) {
      if (!isMediaError(e)) {
        result.readError = e as DeviceError;
        return;
      }
      if (!this.options.ignoreErrors) {
        result.readError = await this.firstBadBlock(data, range.offset, e);
        return;
      }
      result.unreadable = await this.readAround(data, range.offset, range.length);
      result.bytesRead = range.length - result.unreadable.reduce((n, r) => n + r.length, 0);
    }
    await turn.ready;
    await this.writeAll(data, range.offset, targets, result);
  }

  /** Writes zeros over `range` on every live target (kcopyd's zero job). */
  async zero(range: Range, targets: (Target | null)[]): Promise<CopyResult> {
    if (this.zeros.length < range.length) this.zeros = zeroedBuffer(range.length);
    const result = emptyResult();
    const turn = this.writeTurn();
    try {
      await turn.ready;
      await this.throttle.measure(() =>
        this.writeAll(this.zeros.subarray(0, range.length), range.offset, targets, result),
      );
    } finally {
      turn.release();
    }
    return result;
  }

  /** Narrows a failed read down to the first logical block that fails, so the error says where. */
  private async firstBadBlock(
    buf: Buffer,
    offset: number,
    error: DeviceError,
  ): Promise<DeviceError> {
    const block = this.source.logicalBlockSize;
    let bad = error;
    while (buf.length > block) {
      const half = Math.ceil(buf.length / 2 / block) * block;
      try {
        await this.source.read(buf.subarray(0, half), offset);
        buf = buf.subarray(half);
        offset += half;
      } catch (e) {
        if (!isMediaError(e)) return e as DeviceError;
        bad = e;
        buf = buf.subarray(0, half);
      }
    }
    return new DeviceError('read', this.source.path, offset, buf.length, bad.cause);
  }

  /**
   * In sequential mode each job's writes wait for those of the job dispatched before
   * it. The turn is taken when the job starts, not when its read ends: reads finish
   * in any order.
   */
  private writeTurn(): WriteTurn {
    if (!this.options.sequential) return { ready: Promise.resolve(), release: () => undefined };
    let release = (): void => undefined;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const ready = this.lastTurn;
    this.lastTurn = mine;
    return { ready, release };
  }

  /** Re-reads halves of a failed range down to single blocks; zero-fills and returns the bad ones. */
  private async readAround(buf: Buffer, offset: number, length: number): Promise<Range[]> {
    const block = this.source.logicalBlockSize;
    if (length <= block) {
      buf.fill(0, 0, length);
      return [{ offset, length }];
    }
    const half = Math.ceil(length / 2 / block) * block;
    const bad: Range[] = [];
    for (const [start, len] of [
      [0, half],
      [half, length - half],
    ]) {
      const part = buf.subarray(start, start + len);
      try {
        await this.source.read(part, offset + start);
      } catch (e) {
        if (!isMediaError(e)) throw e;
        bad.push(...(await this.readAround(part, offset + start, len)));
      }
    }
    return mergeRanges(bad);
  }

  private async writeAll(
    data: Buffer,
    offset: number,
    targets: (Target | null)[],
    result: CopyResult,
  ): Promise<void> {
    const pieces = this.options.zeroUnit > 0 ? this.nonZeroPieces(data) : null;
    await Promise.all(
      targets.map(async (target, i) => {
        if (!target) return;
        try {
          if (target.skipZeros && pieces) {
            for (const [start, end] of pieces) {
              await target.device.write(data.subarray(start, end), offset + start);
              result.bytesWritten += end - start;
            }
          } else {
            await target.device.write(data, offset);
            result.bytesWritten += data.length;
          }
        } catch (e) {
          result.writeErrorMask |= 1 << i;
          result.writeErrors.push(e as DeviceError);
        }
      }),
    );
  }

  /** [start, end) spans of `data` holding non-zero units, adjacent ones merged. */
  private nonZeroPieces(data: Buffer): Array<[number, number]> {
    const unit = this.options.zeroUnit;
    if (this.zeros.length < unit) this.zeros = zeroedBuffer(unit);
    const spans: Array<[number, number]> = [];
    for (let start = 0; start < data.length; start += unit) {
      const end = Math.min(start + unit, data.length);
      if (data.subarray(start, end).equals(this.zeros.subarray(0, end - start))) continue;
      const last = spans[spans.length - 1];
      if (last && last[1] === start) last[1] = end;
      else spans.push([start, end]);
    }
    return spans;
  }
}
