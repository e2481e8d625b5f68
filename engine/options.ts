// A job's options: their defaults, what makes them valid, and which of them may change
// when a job goes on (resume, or a re-run of the same clone). One place for each rule.

import type { JobOptions } from './events';

export type { JobOptions };

export interface ThrottleSettings {
  /** 1–100: percent of wall time allowed for I/O. */
  percent: number;
  /** Bytes per second, or 0 for no cap. */
  maxRate: number;
}

export function throttleProblem(s: Partial<ThrottleSettings>): string | null {
  if (
    s.percent !== undefined &&
    !(Number.isInteger(s.percent) && s.percent >= 1 && s.percent <= 100)
  ) {
    return `throttle must be a whole percent from 1 to 100, not ${s.percent}`;
  }
  if (s.maxRate !== undefined && !(Number.isSafeInteger(s.maxRate) && s.maxRate >= 0)) {
    return `rate cap must be a positive byte rate, not ${s.maxRate}`;
  }
  if (s.maxRate !== undefined && s.maxRate > 0 && s.maxRate < MIN_RATE_CAP) {
    return (
      `a rate cap under 64K/s (${MIN_RATE_CAP} bytes/s) is too slow for a disk copy ` +
      `(1 GiB would take over 4 hours), not ${s.maxRate} bytes/s: give 64K or more, or 0 for none`
    );
  }
  return null;
}

/** The lowest rate cap: one I/O of the smallest size the copier makes (64 KiB) a second. */
export const MIN_RATE_CAP = 64 * 1024;

export const DEFAULT_OPTIONS: JobOptions = {
  threshold: 32,
  batch: 8,
  throttle: 100,
  maxRate: 0,
  sparse: null,
  ignoreErrors: false,
  sequential: false,
  verify: false,
  usedOnly: false,
  zeroFree: false,
  fit: false,
  newIds: false,
};

/** May change whenever a job goes on: they change how it copies, not what lands on disk. */
export const LIVE_OPTIONS = [
  'threshold',
  'batch',
  'throttle',
  'maxRate',
  'ignoreErrors',
  'sequential',
  'verify',
] as const satisfies ReadonlyArray<keyof JobOptions>;

/** Fixed for a job's life; the flag that sets each, for messages. */
const FIXED_FLAGS: Record<Exclude<keyof JobOptions, (typeof LIVE_OPTIONS)[number]>, string> = {
  sparse: '--sparse / --no-sparse',
  usedOnly: '--used-only',
  zeroFree: '--zero-free',
  fit: '--fit',
  newIds: '--new-ids',
};

export function optionsProblem(o: JobOptions): string | null {
  if (!Number.isInteger(o.threshold) || o.threshold < 1 || o.threshold > 4096) {
    return `threshold must be a whole number from 1 to 4096, not ${o.threshold}`;
  }
  if (!Number.isInteger(o.batch) || o.batch < 1 || o.batch > o.threshold) {
    return `batch must be a whole number from 1 to the threshold (${o.threshold}), not ${o.batch}`;
  }
  if (o.zeroFree && !o.usedOnly) return 'zeroing free space only makes sense with --used-only';
  return throttleProblem({ percent: o.throttle, maxRate: o.maxRate });
}

/** The live options among `given`. */
export function liveOptions(given: Partial<JobOptions>): Partial<JobOptions> {
  const out: Partial<JobOptions> = {};
  for (const key of LIVE_OPTIONS) {
    if (given[key] !== undefined) (out as Record<string, unknown>)[key] = given[key];
  }
  return out;
}

/**
 * Why `given` can't apply to job `id` whose options are `current`: a fixed option asked
 * to differ. Refused rather than ignored, so nobody believes a flag took effect.
 */
export function fixedOptionProblem(
  id: number,
  current: JobOptions,
  given: Partial<JobOptions>,
): string | null {
  for (const [key, flag] of Object.entries(FIXED_FLAGS) as Array<[keyof JobOptions, string]>) {
    if (given[key] === undefined || given[key] === current[key]) continue;
    return (
      `${flag} can't change for job ${id} (it was started with ${key} ${String(current[key])}); ` +
      'run the clone with --fresh to start over'
    );
  }
  return null;
}
