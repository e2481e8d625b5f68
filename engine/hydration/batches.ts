// A hydration job's batches: which regions go next and how many together, how many
// are in flight at once, and the buffers they are copied through — the job's memory
// bound.

import type { Run } from './commit';
import { MAX_IN_FLIGHT_BYTES, MAX_IO_BYTES, borrowBuffer, giveBack } from '../io/buffers';
import type { JobOptions } from '../options';
import type { RegionMap } from '../store/region-map';

/** How a region is hydrated: copied, zeroed (free space), or not yet (its turn comes last). */
export type RegionTurn = 'copy' | 'zero' | 'later';

/**
 * The next batch: the first unhydrated region from `from` whose turn it is, and the
 * unhydrated regions after it hydrated the same way, at most `room` of them — or
 * `longest(first, how)` when that allows more (a hole of the source read as nothing).
 */
export function nextRun(
  map: RegionMap,
  from: number,
  room: number,
  turn: (region: number) => RegionTurn,
  longest: (first: number, how: RegionTurn) => number = () => room,
): Run | null {
  const total = map.regionCount;
  let first = map.nextClear(from);
  while (first >= 0 && first < total && turn(first) === 'later') first = map.nextClear(first + 1);
  if (first < 0 || first >= total) return null;
  const how = turn(first);
  const most = Math.max(room, longest(first, how));
  let n = 1;
  while (n < most && first + n < total && !map.has(first + n) && turn(first + n) === how) n += 1;
  return { first, count: n };
}

const CAPPED_BATCH_SECONDS = 0.25;

export class Batches {
  /** The most batches in flight at once (one buffer each). */
  readonly inFlight: number;
  private readonly regions: number;
  private readonly bufferBytes: number;
  private free: Buffer[] = [];
  private buffersLeft: number;
  /** Batches in flight (read, or being written): first region → regions. */
  private readonly running = new Map<number, number>();

  constructor(
    private readonly regionSize: number,
    options: Pick<JobOptions, 'batch' | 'threshold'>,
  ) {
    // Memory stays bounded in bytes: a batch is at most one big I/O's worth of regions
    // (at least one region, copied in pieces when bigger), and only as many batches are
    // in flight as their buffers fit in the in-flight budget.
    this.regions = Math.max(1, Math.min(options.batch, MAX_IO_BYTES / regionSize));
    this.bufferBytes = Math.min(this.regions * regionSize, MAX_IO_BYTES);
    this.buffersLeft = Math.max(
      1,
      Math.min(
        Math.ceil(options.threshold / this.regions),
        Math.floor(MAX_IN_FLIGHT_BYTES / this.bufferBytes),
      ),
    );
    this.inFlight = this.buffersLeft;
  }

  /** A batch buffer: a free one, or a new one while fewer than the bound exist. */
  takeBuffer(): Buffer {
    const free = this.free.pop();
    if (free) return free;
    this.buffersLeft -= 1;
    return borrowBuffer(this.bufferBytes);
  }

  hasBuffer(): boolean {
    return this.free.length > 0 || this.buffersLeft > 0;
  }

  /** A batch ended: its buffer serves the next one. */
  returnBuffer(buffer: Buffer): void {
    this.free.push(buffer);
  }

  /** `count` regions from `first` are in flight until ended(first). */
  started(first: number, count: number): void {
    this.running.set(first, count);
  }

  ended(first: number): void {
    this.running.delete(first);
  }

  get regionsInFlight(): number {
    let n = 0;
    for (const count of this.running.values()) n += count;
    return n;
  }

  runsInFlight(): Run[] {
    return [...this.running].map(([first, count]) => ({ first, count }));
  }

  /** The job ended: its buffers go back to the pool. */
  release(): void {
    giveBack(this.free.splice(0));
  }

  /**
   * Regions per batch: as configured, or under a rate cap small enough that the batches
   * in flight, sharing the cap, each end within a quarter of a second (at least one
   * region): big ones would all end together, seconds apart, and progress would lurch.
   */
  limit(maxRate: number): number {
    if (maxRate === 0) return this.regions;
    const share = (maxRate * CAPPED_BATCH_SECONDS) / this.inFlight;
    const regions = Math.floor(share / this.regionSize);
    return Math.max(1, Math.min(this.regions, regions));
  }
}
