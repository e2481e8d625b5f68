// dm-clone's status line, for `drivetwin status` and the job record:
// <region size> <hydrated>/<total> <hydrating> <#features> <features> <#core args> <core args> <mode>

import type { Mode } from '../store/job-record';
import type { JobOptions } from '../options';

export function statusLine(s: {
  regionSize: number;
  hydrated: number;
  /** Null while a streamed source's size is unknown. */
  total: number | null;
  hydrating: number;
  paused: boolean;
  sparse: boolean;
  options: JobOptions;
  mode: Mode;
}): string {
  const o = s.options;
  const features = [
    s.paused && 'no_hydration',
    o.ignoreErrors && 'ignore_errors',
    o.sequential && 'sequential',
    s.sparse && 'sparse',
  ].filter((f): f is string => typeof f === 'string');
  const args = [
    ['hydration_threshold', o.threshold],
    ['hydration_batch_size', o.batch],
    ['throttle', o.throttle],
    ['max_rate', o.maxRate],
  ].flat();
  return [
    s.regionSize,
    `${s.hydrated}/${s.total ?? '?'}`,
    s.hydrating,
    features.length,
    ...features,
    args.length,
    ...args,
    s.mode,
  ].join(' ');
}
