// The region map as squares on a screen, whatever the number of regions.
//
// Regions are counted into at most MAX_BUCKETS buckets of equal size as run lists
// arrive, so memory and the work per message depend on the runs and the bucket
// count, never on the disk size (a 16 TB drive at 4 KiB regions has 4 billion).
// Drawing groups whole buckets into as many cells as fit on screen.
import type { RegionMapChange } from '../../preload/events';

export const MAX_BUCKETS = 65536;

/**
 * What one drawing needs: per cell, how much is hydrated and whether anything is
 * unreadable, in flight, or written and waiting for the commit.
 */
export interface CellSummary {
  cellCount: number;
  /** Regions per cell (the last cell may hold fewer). */
  regionsPerCell: number;
  /** 0–1 per cell. */
  hydrated: Float32Array;
  /** 1 where a cell holds an unreadable region. */
  unreadable: Uint8Array;
  /** 1 where a cell holds a region in flight. */
  hydrating: Uint8Array;
  /** 1 where a cell holds a region written and waiting for the commit. */
  written: Uint8Array;
}

export class RegionCells {
  regionSize = 0;
  regionsTotal = 0;
  /** Regions per bucket; the last bucket may hold fewer. */
  perBucket = 1;
  bucketCount = 0;
  hydratedCount = 0;
  unreadableCount = 0;
  hydratingCount = 0;
  writtenCount = 0;
  private hydratedIn = new Uint32Array(0);
  private unreadableIn = new Uint32Array(0);
  /** The current in-flight and written runs (each message replaces them). */
  private hydratingRuns: number[] = [];
  private writtenRuns: number[] = [];

  /**
   * Applies a message. Returns false when an incremental message does not fit the map
   * held (another geometry): the caller should ask for the whole map (regionMap()).
   */
  apply(change: RegionMapChange): boolean {
    const fits = change.regionsTotal === this.regionsTotal && change.regionSize === this.regionSize;
    if (change.reset || !fits) this.clear(change.regionSize, change.regionsTotal);
    this.hydratedCount += this.addRuns(this.hydratedIn, change.hydrated);
    this.unreadableCount += this.addRuns(this.unreadableIn, change.unreadable);
    this.hydratingRuns = change.hydrating.slice();
    this.writtenRuns = change.written.slice();
    this.hydratingCount = countOf(this.hydratingRuns);
    this.writtenCount = countOf(this.writtenRuns);
    return change.reset || fits;
  }

  clear(regionSize: number, regionsTotal: number): void {
    this.regionSize = regionSize;
    this.regionsTotal = Math.max(0, regionsTotal);
    this.perBucket = Math.max(1, Math.ceil(this.regionsTotal / MAX_BUCKETS));
    this.bucketCount = Math.ceil(this.regionsTotal / this.perBucket);
    this.hydratedIn = new Uint32Array(this.bucketCount);
    this.unreadableIn = new Uint32Array(this.bucketCount);
    this.hydratingRuns = [];
    this.writtenRuns = [];
    this.hydratedCount = this.unreadableCount = this.hydratingCount = this.writtenCount = 0;
  }

  /** Marks every region hydrated (a finished job whose map was not sent). */
  fill(regionSize: number, regionsTotal: number): void {
    this.clear(regionSize, regionsTotal);
    this.hydratedCount = this.addRuns(this.hydratedIn, [0, regionsTotal]);
  }

  private bucketSize(b: number): number {
    return Math.min(this.perBucket, this.regionsTotal - b * this.perBucket);
  }

  /** Adds flat runs [first, count, …] into per-bucket counts; returns the regions added. */
  private addRuns(counts: Uint32Array, runs: readonly number[]): number {
    let added = 0;
    for (let i = 0; i + 1 < runs.length; i += 2) {
      let pos = Math.max(0, runs[i]);
      const end = Math.min(this.regionsTotal, runs[i] + runs[i + 1]);
      while (pos < end) {
        const b = Math.floor(pos / this.perBucket);
        const stop = Math.min(end, (b + 1) * this.perBucket);
        // Never more than the bucket holds, even if a region were reported twice.
        const room = this.bucketSize(b) - counts[b];
        const take = Math.min(stop - pos, room);
        counts[b] += take;
        added += take;
        pos = stop;
      }
    }
    return added;
  }

  /** Buckets per cell when at most `capacity` cells are drawn. */
  groupFor(capacity: number): number {
    return Math.max(1, Math.ceil(this.bucketCount / Math.max(1, capacity)));
  }

  /** The map in at most `capacity` cells. */
  summarize(capacity: number): CellSummary {
    const group = this.groupFor(capacity);
    const cellCount = Math.ceil(this.bucketCount / group);
    const regionsPerCell = group * this.perBucket;
    const hydrated = new Float32Array(cellCount);
    const unreadable = new Uint8Array(cellCount);
    for (let c = 0; c < cellCount; c++) {
      let done = 0;
      let bad = 0;
      const last = Math.min(this.bucketCount, (c + 1) * group);
      for (let b = c * group; b < last; b++) {
        done += this.hydratedIn[b];
        bad += this.unreadableIn[b];
      }
      const size = Math.min(regionsPerCell, this.regionsTotal - c * regionsPerCell);
      hydrated[c] = size > 0 ? done / size : 0;
      unreadable[c] = bad > 0 ? 1 : 0;
    }
    const hydrating = this.markCells(this.hydratingRuns, cellCount, regionsPerCell);
    const written = this.markCells(this.writtenRuns, cellCount, regionsPerCell);
    return { cellCount, regionsPerCell, hydrated, unreadable, hydrating, written };
  }

  /** 1 for each cell that holds a region of `runs`. */
  private markCells(runs: number[], cellCount: number, regionsPerCell: number): Uint8Array {
    const cells = new Uint8Array(cellCount);
    for (let i = 0; i + 1 < runs.length; i += 2) {
      if (runs[i + 1] <= 0) continue;
      const first = Math.floor(runs[i] / regionsPerCell);
      const last = Math.floor((runs[i] + runs[i + 1] - 1) / regionsPerCell);
      for (let c = Math.max(0, first); c <= Math.min(cellCount - 1, last); c++) cells[c] = 1;
    }
    return cells;
  }
}

function countOf(runs: number[]): number {
  let n = 0;
  for (let i = 1; i < runs.length; i += 2) n += runs[i];
  return n;
}
