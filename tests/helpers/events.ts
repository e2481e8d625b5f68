// Events as the window receives them, for tests of what is shown: every field set,
// the test says what differs.

import type { JobDone, JobProgress } from '../../preload/events';

export function progressEvent(p: Partial<JobProgress> = {}): JobProgress {
  return {
    job: 1,
    phase: 'copying',
    bytesDone: 0,
    bytesTotal: 1 << 30,
    sizeKnown: true,
    regionsHydrated: 0,
    regionsWritten: 0,
    hydrating: 0,
    regionsTotal: 1024,
    rate: 0,
    averageRate: 0,
    eta: null,
    paused: false,
    throttle: { percent: 100, maxRate: 0 },
    status: '',
    ...p,
  };
}

export function doneEvent(d: Partial<JobDone> = {}): JobDone {
  return {
    job: 1,
    state: 'done',
    resumable: false,
    bytesRead: 0,
    bytesWritten: 0,
    regionsCopied: 0,
    unreadableBytes: 0,
    unreadable: [],
    failedDestinations: [],
    seconds: 1,
    ...d,
  };
}
