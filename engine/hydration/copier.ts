// The userspace kcopyd: one source range to one or more destinations.
//
// A destination whose write fails is reported in the write-error mask and left
// to the caller to drop; the others go on. With ignore-errors an unreadable
// range is delimited down to the logical block by re-reading halves, and the
// blocks that can't be read are written as zeros and reported.
//
// A job longer than its buffer is split into sub-jobs that run one after the
// other through that buffer (kcopyd splits jobs too): the bytes in flight are
// the caller's buffers, whatever the region size.

import type { Device } from '../io/device';
import { DeviceError, isStream, readSome } from '../io/device';
import { type Range, mergeRanges } from '../geometry';
import type { Throttle } from './throttle';
import { IO_ALIGNMENT, MAX_IO_BYTES, zeroedBuffer } from '../io/buffers';
import { type TableWrites, overlay } from '../partitions/rewrite';

export interface Target {
  device: Device;
  /** Skip writing all-zero regions: the destination already reads zeros there. */
  skipZeros: boolean;
  /** Free space (used-only clones) is written as zeros here rather than left alone. */
  writesFree: boolean;
  /** Its own partition tables, written instead of the source's (engine/partitions). */
  tables?: TableWrites;
}

export interface CopyOptions {
  ignoreErrors: boolean;
  /** Writes reach each destination in strictly ascending order (zoned drives). */
  sequential: boolean;
  /** Zero detection granularity (the region size; a sub-job at most). */
  zeroUnit: number;
  /** After each sub-job reached the targets: its bytes, and when the throttle let it start. */
  onMoved?: (bytes: number, admittedAt: number) => void;
  /** The job stops: no further sub-job starts, so a stop never waits for a whole batch. */
  stopped?: () => boolean;
}

/** Under a rate cap a sub-job is about this much of a second's worth, so the pace is even. */
const CAPPED_SUB_JOB_SECONDS = 0.1;
const MIN_SUB_JOB_BYTES = 64 * 1024;

/** One job's turn in an order (its writes, or a stream's reads): wait for `ready`, then `release`. */
interface Turn {
  ready: Promise<void>;
  release(): void;
}

const NO_TURN: Turn = { ready: Promise.resolve(), release: () => undefined };

export interface CopyResult {
  /** Set when the source failed and the range was not copied. */
  readError: DeviceError | null;
  /** Bit i set: targets[i] failed. */
  writeErrorMask: number;
  writeErrors: DeviceError[];
  unreadable: Range[];
  bytesRead: number;
  bytesWritten: number;
  /** Bytes written to each target (by its index in the targets given). */
  written: number[];
  /** Set when a streamed source ended inside the range: its size. */
  end?: number;
  /** The job stopped before the whole range was copied: none of it may be marked. */
  stopped?: boolean;
}

// Errors that mean "these blocks are bad", as opposed to "the device is gone".
const MEDIA_ERRORS = new Set(['EIO', 'ENODATA', 'EILSEQ', 'EBADMSG']);

function emptyResult(targets: unknown[]): CopyResult {
  return {
    readError: null,
    writeErrorMask: 0,
    writeErrors: [],
    unreadable: [],
    bytesRead: 0,
    bytesWritten: 0,
    written: targets.map(() => 0),
  };
}

/** Bytes per sub-job: the whole range when the buffer holds it, else whole aligned buffers. */
function subJobBytes(rangeLength: number, bufferLength: number): number {
  if (bufferLength >= rangeLength) return rangeLength;
  const step = bufferLength - (bufferLength % IO_ALIGNMENT);
  if (step === 0) {
    throw new RangeError(
      `a copy buffer of ${bufferLength} bytes is under one block (${IO_ALIGNMENT})`,
    );
  }
  return step;
}

function isMediaError(e: unknown): e is DeviceError {
  return e instanceof DeviceError && MEDIA_ERRORS.has(e.code ?? '');
}

export class Copier {
  /** The turn taken last in each order. */
  private readonly last = { writes: Promise.resolve(), reads: Promise.resolve() };
  private zeros: Buffer = Buffer.alloc(0);

  constructor(
    private readonly source: Device,
    private readonly throttle: Throttle,
    private readonly options: CopyOptions,
  ) {}

  /**
   * Copies `range` to every live target through `buffer`. A range longer than the
   * buffer is copied as buffer-sized sub-jobs, in ascending order, each admitted by
   * the throttle on its own: memory is the buffer whatever the region size.
   */
  async copy(range: Range, buffer: Buffer, targets: (Target | null)[]): Promise<CopyResult> {
    if (this.source.dataIn?.(range.offset, range.length)?.length === 0) {
      return this.hole(range, targets);
    }
    const result = emptyResult(targets);
    // A target whose write fails is left out of the rest of the job.
    const live = [...targets];
    const turn = this.writeTurn();
    const reading = this.readTurn();
    try {
      for (let done = 0, step = 0; done < range.length; done += step) {
        if (this.stopping(result)) break;
        // Sized afresh for each sub-job, and again once admitted: a cap lowered while it
        // waited applies to it, and the throttle gets back what it no longer uses.
        step = subJobBytes(range.length - done, this.subJobLimit(buffer.length));
        await this.throttle.admit(step);
        if (this.stopping(result)) break;
        const now = subJobBytes(range.length - done, this.subJobLimit(buffer.length));
        if (now < step) {
          this.throttle.refund(step - now);
          step = now;
        }
        const admittedAt = performance.now();
        const piece = { offset: range.offset + done, length: step };
        const data = buffer.subarray(0, piece.length);
        const last = done + step >= range.length;
        const more = await this.throttle.measure(() =>
          this.readThenWrite(piece, data, live, result, { write: turn, read: reading, last }),
        );
        if (live.some((t) => t !== null)) this.options.onMoved?.(piece.length, admittedAt);
        if (!more) break;
      }
    } finally {
      reading.release();
      turn.release();
    }
    result.unreadable = mergeRanges(result.unreadable);
    return result;
  }

  /** True (and said in the result) once the job stops. */
  private stopping(result: CopyResult): boolean {
    if (this.options.stopped?.()) result.stopped = true;
    return result.stopped === true;
  }

  /**
   * A hole of a source image: zeros without reading (the file system says so), written
   * only where a target doesn't read zeros already. Nothing is counted as read.
   */
  private async hole(range: Range, targets: (Target | null)[]): Promise<CopyResult> {
    const writing = targets.map((t) => (t && !t.skipZeros ? t : null));
    return writing.some((t) => t !== null) ? this.zero(range, writing) : emptyResult(targets);
  }

  /**
   * Reads `data` at `offset`, the holes of a source image filled with zeros rather than
   * read: `n` bytes are there (fewer only where a stream ends), `read` were read.
   */
  private async readData(data: Buffer, offset: number): Promise<{ n: number; read: number }> {
    const spans = this.source.dataIn?.(offset, data.length);
    if (!spans || (spans.length === 1 && spans[0].length === data.length)) {
      const n = await readSome(this.source, data, offset);
      return { n, read: n };
    }
    data.fill(0);
    let read = 0;
    for (const span of spans) {
      const at = span.offset - offset;
      await this.source.read(data.subarray(at, at + span.length), span.offset);
      read += span.length;
    }
    return { n: data.length, read };
  }

  /** One sub-job; false when the job must end here (a read failed, a stream ended, no target left). */
  private async readThenWrite(
    range: Range,
    data: Buffer,
    targets: (Target | null)[],
    result: CopyResult,
    turns: { write: Turn; read: Turn; last: boolean },
  ): Promise<boolean> {
    let more = true;
    await turns.read.ready;
    try {
      const { n, read } = await this.readData(data, range.offset);
      // The job's last read is done: the next job may read while this one writes.
      if (turns.last) turns.read.release();
      result.bytesRead += read;
      if (n < range.length) {
        // A stream ended: its size is now known; nothing past it exists to write.
        result.end = range.offset + n;
        if (n === 0) return false;
        data = data.subarray(0, n);
        more = false;
      }
    } catch (e) {
      if (!isMediaError(e)) {
        result.readError = e as DeviceError;
        return false;
      }
      if (!this.options.ignoreErrors) {
        result.readError = await this.firstBadBlock(data, range.offset, e);
        return false;
      }
      const bad = await this.readAround(data, range.offset, range.length);
      result.unreadable.push(...bad);
      result.bytesRead += range.length - bad.reduce((n, r) => n + r.length, 0);
    }
    await turns.write.ready;
    await this.writeAll(data, range.offset, targets, result);
    return more && targets.some((t) => t !== null);
  }

  /**
   * The largest sub-job now: the buffer, or under a rate cap a tenth of a second's
   * worth (an 8 MiB I/O at 4 MiB/s would move in lumps two seconds apart).
   */
  private subJobLimit(bufferBytes: number): number {
    const { maxRate } = this.throttle.current;
    if (maxRate === 0) return bufferBytes;
    const share = Math.max(MIN_SUB_JOB_BYTES, maxRate * CAPPED_SUB_JOB_SECONDS);
    return Math.min(bufferBytes, Math.floor(share / IO_ALIGNMENT) * IO_ALIGNMENT);
  }

  /** Writes zeros over `range` on every live target (kcopyd's zero job), a bounded piece at a time. */
  async zero(range: Range, targets: (Target | null)[]): Promise<CopyResult> {
    const step = subJobBytes(range.length, MAX_IO_BYTES);
    const zeros = this.zeroBuffer(Math.min(step, range.length));
    const result = emptyResult(targets);
    const live = [...targets];
    const turn = this.writeTurn();
    try {
      await turn.ready;
      await this.throttle.measure(async () => {
        for (let done = 0; done < range.length && live.some((t) => t !== null); done += step) {
          if (this.stopping(result)) break;
          const length = Math.min(step, range.length - done);
          const admittedAt = performance.now();
          await this.writeAll(zeros.subarray(0, length), range.offset + done, live, result);
          this.options.onMoved?.(length, admittedAt);
        }
      });
    } finally {
      turn.release();
    }
    return result;
  }

  /** At least `size` bytes of zeros (at most MAX_IO_BYTES are ever asked for). */
  private zeroBuffer(size: number): Buffer {
    if (this.zeros.length < size) this.zeros = zeroedBuffer(size);
    return this.zeros;
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
  private writeTurn(): Turn {
    return this.options.sequential ? this.takeTurn('writes') : NO_TURN;
  }

  /**
   * A stream is read forwards only, and jumps over what nobody asked for: each job's reads
   * wait for those of the job dispatched before it, so a job of several sub-jobs reads
   * them all before the next one reads (under a rate cap, or with regions bigger than
   * one I/O) — the stream never skips the rest of a job still being copied.
   */
  private readTurn(): Turn {
    return isStream(this.source) ? this.takeTurn('reads') : NO_TURN;
  }

  /** The next turn in `order`: ready once the turn taken before it is released. */
  private takeTurn(order: 'writes' | 'reads'): Turn {
    let release = (): void => undefined;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const ready = this.last[order];
    this.last[order] = mine;
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
    const own = targets.map((t) => (t?.tables?.inCopy.length ? t.tables.inCopy : null));
    const ownHere = (i: number): boolean =>
      own[i]!.some((p) => p.offset < offset + data.length && offset < p.offset + p.bytes.length);
    const write = async (i: number, target: Target, whole: boolean): Promise<void> => {
      try {
        if (target.skipZeros && pieces && !whole) {
          for (const [start, end] of pieces) {
            await target.device.write(data.subarray(start, end), offset + start);
            result.bytesWritten += end - start;
            result.written[i] += end - start;
          }
        } else {
          await target.device.write(data, offset);
          result.bytesWritten += data.length;
          result.written[i] += data.length;
        }
      } catch (e) {
        result.writeErrorMask |= 1 << i;
        result.writeErrors.push(e as DeviceError);
        targets[i] = null;
      }
    };
    const rewrites = targets.flatMap((t, i) => (t && own[i] && ownHere(i) ? [i] : []));
    await Promise.all(
      targets.map((t, i) => (t && !rewrites.includes(i) ? write(i, t, false) : null)),
    );
    // A destination whose tables lie here gets its own bytes, laid over the source's in
    // the same buffer once the others are written, then taken off again.
    for (const i of rewrites) {
      const saved = overlay(data, offset, own[i]!);
      try {
        await write(i, targets[i]!, true);
      } finally {
        if (saved) overlay(data, offset, saved);
      }
    }
  }

  /**
   * [start, end) spans of `data` holding non-zero units, adjacent ones merged. A unit
   * (a region) larger than the sub-job is judged a sub-job at a time: a target that
   * skips zeros already reads zeros there, so any span of zeros may be left alone.
   */
  private nonZeroPieces(data: Buffer): Array<[number, number]> {
    const unit = Math.min(this.options.zeroUnit, data.length);
    const zeros = this.zeroBuffer(unit);
    const spans: Array<[number, number]> = [];
    for (let start = 0; start < data.length; start += unit) {
      const end = Math.min(start + unit, data.length);
      if (data.subarray(start, end).equals(zeros.subarray(0, end - start))) continue;
      const last = spans[spans.length - 1];
      if (last && last[1] === start) last[1] = end;
      else spans.push([start, end]);
    }
    return spans;
  }
}
