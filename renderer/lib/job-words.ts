import type { JobState, JobSummary } from '../../preload/api';
import { formatBytes, formatPercent } from './format';

export const STATE_WORDS: Record<JobState, string> = {
  running: 'Copying',
  paused: 'Paused',
  interrupted: 'Stopped — resumable',
  done: 'Finished',
  failed: 'Stopped by an error — resumable',
};

/** "45 % (230 MiB of 512 MiB)" from the committed regions. */
export function jobProgressText(j: JobSummary): string {
  const done = Math.min(j.bytesTotal, j.regionsHydrated * j.regionSize);
  return `${formatPercent(j.regionsHydrated, j.regionsTotal)} (${formatBytes(done)} of ${formatBytes(j.bytesTotal)})`;
}
