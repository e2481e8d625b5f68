// The region map as front ends see it: a whole map first, then what changed. Fed by
// the job itself (each commit's newly hydrated regions, and what it has in flight),
// never by watching its devices or its database.

import type { Range } from '../geometry';
import type { RegionMapEvent } from '../events';
import { RegionMap } from '../store/region-map';

type Run = { first: number; count: number };

/** What is not committed yet: in flight, and written to every destination waiting for the commit. */
export interface Uncommitted {
  inFlight: Run[];
  written: Run[];
}

const NONE: Uncommitted = { inFlight: [], written: [] };

/** Region runs as flat [first, count, …], ascending, merged. */
export function runsOf(regions: Iterable<number>): number[] {
  const sorted = [...new Set(regions)].sort((a, b) => a - b);
  const out: number[] = [];
  for (const r of sorted) {
    const n = out.length;
    if (n > 0 && out[n - 2] + out[n - 1] === r) out[n - 1] += 1;
    else out.push(r, 1);
  }
  return out;
}

function flatRuns(runs: Run[]): number[] {
  const regions: number[] = [];
  for (const r of runs) for (let i = r.first; i < r.first + r.count; i++) regions.push(i);
  return runsOf(regions);
}

function rangeRegions(ranges: Range[], regionSize: number, regionsTotal: number): number[] {
  const regions: number[] = [];
  for (const r of ranges) {
    if (r.length <= 0) continue;
    const first = Math.floor(r.offset / regionSize);
    const last = Math.min(Math.floor((r.offset + r.length - 1) / regionSize), regionsTotal - 1);
    for (let i = first; i <= last; i++) regions.push(i);
  }
  return regions;
}

/** Bounded: between two messages it holds what one commit period hydrated. */
export class RegionEvents {
  private newlyHydrated: Run[] = [];
  private newlyUnreadable: number[] = [];
  private lastUncommitted = '';

  constructor(
    private readonly job: number,
    private readonly regionSize: number,
    private readonly regionsTotal: number,
    private readonly committed: RegionMap,
    private readonly unreadable: Range[],
  ) {}

  /** The whole map, with what is in flight and written now. */
  full(uncommitted: Uncommitted = NONE): RegionMapEvent {
    this.newlyHydrated = [];
    this.newlyUnreadable = [];
    return this.message(
      true,
      this.committed.runs().flatMap((r) => [r.first, r.count]),
      runsOf(rangeRegions(this.unreadable, this.regionSize, this.regionsTotal)),
      uncommitted,
    );
  }

  /** A commit hydrated `regions` and found `unreadable` extents. */
  committedNow(regions: Run[], unreadable: Range[]): void {
    this.newlyHydrated.push(...regions);
    this.unreadable.push(...unreadable);
    this.newlyUnreadable.push(...rangeRegions(unreadable, this.regionSize, this.regionsTotal));
  }

  /** The change since the last message, or null when nothing changed. */
  delta(uncommitted: Uncommitted): RegionMapEvent | null {
    const key = keyOf(flatRuns(uncommitted.inFlight), flatRuns(uncommitted.written));
    if (
      this.newlyHydrated.length === 0 &&
      this.newlyUnreadable.length === 0 &&
      key === this.lastUncommitted
    ) {
      return null;
    }
    const message = this.message(
      false,
      flatRuns(this.newlyHydrated),
      runsOf(this.newlyUnreadable),
      uncommitted,
    );
    this.newlyHydrated = [];
    this.newlyUnreadable = [];
    return message;
  }

  private message(
    reset: boolean,
    hydrated: number[],
    unreadable: number[],
    uncommitted: Uncommitted,
  ): RegionMapEvent {
    const hydrating = flatRuns(uncommitted.inFlight);
    const written = flatRuns(uncommitted.written);
    this.lastUncommitted = keyOf(hydrating, written);
    return {
      type: 'region-map',
      job: this.job,
      reset,
      regionSize: this.regionSize,
      regionsTotal: this.regionsTotal,
      hydrated,
      hydrating,
      written,
      unreadable,
    };
  }
}

function keyOf(hydrating: number[], written: number[]): string {
  return `${hydrating.join(',')}|${written.join(',')}`;
}
