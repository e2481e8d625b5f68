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

/**
 * Runs as flat [first, count, …], ascending, overlapping and adjacent ones merged. Never
 * one entry per region: a run may be millions of regions (a hole of a sparse source).
 */
function flatRuns(runs: Run[]): number[] {
  const sorted = runs.filter((r) => r.count > 0).sort((a, b) => a.first - b.first);
  const out: number[] = [];
  for (const r of sorted) {
    const n = out.length;
    const end = r.first + r.count;
    if (n > 0 && out[n - 2] + out[n - 1] >= r.first) {
      out[n - 1] = Math.max(out[n - 2] + out[n - 1], end) - out[n - 2];
    } else out.push(r.first, r.count);
  }
  return out;
}

/** The regions byte ranges touch, as runs. */
function rangeRuns(ranges: Range[], regionSize: number, regionsTotal: number): Run[] {
  const runs: Run[] = [];
  for (const r of ranges) {
    if (r.length <= 0) continue;
    const first = Math.floor(r.offset / regionSize);
    const last = Math.min(Math.floor((r.offset + r.length - 1) / regionSize), regionsTotal - 1);
    if (last >= first) runs.push({ first, count: last - first + 1 });
  }
  return runs;
}

/** Bounded: between two messages it holds what one commit period hydrated. */
export class RegionEvents {
  private newlyHydrated: Run[] = [];
  private newlyUnreadable: Run[] = [];
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
      flatRuns(rangeRuns(this.unreadable, this.regionSize, this.regionsTotal)),
      uncommitted,
    );
  }

  /** A commit hydrated `regions` and found `unreadable` extents. */
  committedNow(regions: Run[], unreadable: Range[]): void {
    this.newlyHydrated.push(...regions);
    this.unreadable.push(...unreadable);
    this.newlyUnreadable.push(...rangeRuns(unreadable, this.regionSize, this.regionsTotal));
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
      flatRuns(this.newlyUnreadable),
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
