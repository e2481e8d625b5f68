// One job as the Electron shell tests follow it: job 4, 1 GiB from /srv/disk.img to
// /dev/sdb, a quarter there when it starts, half when it reports progress.

import { DEFAULT_OPTIONS } from '../../engine/options';
import type { JobDone, JobProgress, JobStarted } from '../../preload/events';
import { doneEvent, progressEvent } from './events';

export const started: JobStarted = {
  job: 4,
  intent: 'new',
  resumed: false,
  sizeKnown: true,
  options: { ...DEFAULT_OPTIONS },
  source: '/srv/disk.img',
  destinations: ['/dev/sdb'],
  regionSize: 1 << 20,
  regionsTotal: 1024,
  regionsHydrated: 256,
  bytesTotal: 1 << 30,
};

export const progress = (p: Partial<JobProgress> = {}): JobProgress =>
  progressEvent({
    job: 4,
    bytesDone: 512 << 20,
    regionsHydrated: 512,
    hydrating: 8,
    rate: 100 << 20,
    eta: 5 * 60,
    ...p,
  });

export const done = (d: Partial<JobDone> = {}): JobDone =>
  doneEvent({
    job: 4,
    bytesRead: 1 << 30,
    bytesWritten: 1 << 30,
    regionsCopied: 768,
    seconds: 312,
    ...d,
  });
