// What a run of the hydration job has done, for its progress events and its outcome:
// bytes read, written (per destination) and done, the rate at the current pace and
// the time left, and the copying time with pauses left out.

import type { CopyResult } from './copier';
import type { Geometry } from '../geometry';
import { type Device, isStream } from '../io/device';
import { RateMeter } from './rate';
import type { RegionMap } from '../store/region-map';

/** What a run did, for its outcome. */
export interface RunTotals {
  bytesRead: number;
  bytesWritten: number;
  regionsCopied: number;
  /** Bytes written to each destination (by its index in the job) during this run. */
  written: Map<number, number>;
  /** Copying time, pauses left out. */
  seconds: number;
}

export class JobProgress {
  private readonly rateMeter = new RateMeter();
  private movedBytes = 0;
  private paceSince = 0;
  private startedAt = 0;
  private pausedAt: number | null = null;
  private pausedMs = 0;
  private done: number;
  /** Done when this run started: its average counts only what it did. */
  private doneAtStart = 0;
  private bytesRead = 0;
  private bytesWritten = 0;
  private regionsCopied = 0;
  private readonly written = new Map<number, number>();

  constructor(
    private readonly source: Device,
    /** While a stream's size is unknown: what its file suggests. */
    private readonly sizeEstimate: number | null,
    geometry: Geometry,
    map: RegionMap,
  ) {
    this.done = hydratedBytes(geometry, map);
  }

  /** Bytes on every destination: committed, or written and waiting for the commit. */
  get bytesDone(): number {
    return this.done;
  }

  start(): void {
    this.startedAt = performance.now();
    this.doneAtStart = this.done;
    this.newPace();
  }

  pause(): void {
    this.pausedAt ??= performance.now();
    this.newPace();
  }

  resume(): void {
    if (this.pausedAt !== null) this.pausedMs += performance.now() - this.pausedAt;
    this.pausedAt = null;
    this.newPace();
  }

  /** The pace changed on purpose: the rate and the time left are measured afresh. */
  newPace(): void {
    this.paceSince = performance.now();
    this.rateMeter.restart(this.movedBytes);
  }

  /**
   * The rate is of bytes moved at the current pace: what the throttle let start before
   * the last pause or throttle change was the old pace's, and is left out.
   */
  moved(bytes: number, admittedAt: number): void {
    if (admittedAt < this.paceSince) return;
    this.movedBytes += bytes;
    this.rateMeter.sample(this.movedBytes);
  }

  /** A batch's reads and writes, `targets` as given to the copier (null: left the job). */
  batchCopied(result: CopyResult, targets: ReadonlyArray<{ index: number } | null>): void {
    this.bytesRead += result.bytesRead;
    this.bytesWritten += result.bytesWritten;
    targets.forEach((t, i) => {
      if (t) this.written.set(t.index, (this.written.get(t.index) ?? 0) + (result.written[i] ?? 0));
    });
  }

  /** A batch written to every destination: `bytes` of `regions` regions are done. */
  batchDone(regions: number, bytes: number): void {
    this.done += bytes;
    this.regionsCopied += regions;
  }

  rate(): number {
    return this.rateMeter.rate();
  }

  eta(left: number): number | null {
    return this.rateMeter.eta(left);
  }

  /** Bytes done per second over this run so far, pauses left out; 0 until a second is counted. */
  averageRate(): number {
    const { seconds } = this.totals();
    return this.startedAt > 0 && seconds >= 1 ? (this.done - this.doneAtStart) / seconds : 0;
  }

  /** Until a stream ends: its uncompressed size, extrapolated from how far into the compressed file it is. */
  estimatedSize(): number {
    const first = this.sizeEstimate ?? 0;
    if (!isStream(this.source) || this.source.compressedPosition === 0) {
      return Math.max(this.done, first);
    }
    // What the compressed bytes consumed decompressed into, not what was copied: the plan
    // reads the start of the stream before anything is, and a resumed job drops regions.
    const { compressedSize, compressedPosition, decompressedPosition } = this.source;
    return Math.max(
      this.done,
      Math.round((decompressedPosition * compressedSize) / compressedPosition),
    );
  }

  totals(): RunTotals {
    const now = performance.now();
    const paused = this.pausedMs + (this.pausedAt === null ? 0 : now - this.pausedAt);
    return {
      bytesRead: this.bytesRead,
      bytesWritten: this.bytesWritten,
      regionsCopied: this.regionsCopied,
      written: this.written,
      seconds: (now - this.startedAt - paused) / 1000,
    };
  }
}

function hydratedBytes(geometry: Geometry, map: RegionMap): number {
  const { regionCount, regionSize, size } = geometry;
  if (!Number.isFinite(regionCount)) return map.count * regionSize;
  const last = regionCount - 1;
  const short = map.has(last) ? regionCount * regionSize - size : 0;
  return map.count * regionSize - short;
}
