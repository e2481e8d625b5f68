// What a hydration job (job.ts) is given — the job's parts, set up by the session —
// and what it gives back when its copy ends.

import type { Target } from './copier';
import type { RunTotals } from './job-progress';
import type { Geometry, Range } from '../geometry';
import type { Device } from '../io/device';
import type { JobOptions } from '../options';
import type { Metadata } from '../store/metadata';
import type { RegionMap } from '../store/region-map';

/** A destination of the job: `index` is its place in the job's record. */
export interface JobTarget extends Target {
  index: number;
  /** A new job's: where its old partition tables lie, zeroed before the first region. */
  wipe?: Range[];
}

export interface JobParts {
  id: number;
  metadata: Metadata;
  geometry: Geometry;
  source: Device;
  targets: JobTarget[];
  map: RegionMap;
  options: JobOptions;
  /** Free regions (used-only clones) that are zeroed rather than copied. */
  zeroRegions?: RegionMap | null;
  /** While a stream's size is unknown: what its file suggests. */
  sizeEstimate?: number | null;
  /** Bytes whose regions are hydrated last: the partition tables and the boot sector. */
  heldBack?: Range[];
  /** Served while it hydrates (engine/serve): reads and writes of the destination as it will be. */
  serve?: boolean;
}

/** How the copy ended; the session adds verify and turns it into the done event. */
export interface CopyOutcome extends RunTotals {
  state: 'done' | 'interrupted' | 'failed';
  /** Every region is hydrated on the destinations still in the job (whatever left it). */
  complete: boolean;
  /** Not done, and a resume can finish it (not so when the source is damaged or the image too big). */
  resumable: boolean;
  error: string | null;
  unreadable: Range[];
  /** Destinations that left the job during this run, with why, and the bitmap committed then (what each holds). */
  failed: Array<{ index: number; path: string; reason: string; held: Uint8Array }>;
  /** The job database was deleted or replaced while the job ran. */
  databaseLost: boolean;
  /** Why the job database was found damaged while the job ran, or null. */
  databaseDamaged: string | null;
}
