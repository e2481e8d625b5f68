import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobSummary } from '../../preload/api';
import { jobTimesText, verifiedWords } from '../../renderer/lib/job-words';

const MIB = 1024 * 1024;

function summary(s: Partial<JobSummary>): JobSummary {
  return {
    job: 1,
    state: 'done',
    live: false,
    resumable: false,
    mode: 'rw',
    source: '/a.img',
    destinations: [{ path: '/b.img', size: 640 * MIB, failed: null, dropped: false }],
    bytesTotal: 640 * MIB,
    regionSize: MIB,
    regionsHydrated: 640,
    regionsTotal: 640,
    unreadableBytes: 0,
    options: {} as JobSummary['options'],
    error: null,
    verified: true,
    copySeconds: 20,
    verifySeconds: 65,
    statusLine: null,
    createdAt: '2026-11-30T23:00:00Z',
    updatedAt: '2026-11-30T23:01:00Z',
    finishedAt: '2026-11-30T23:01:00Z',
    ...s,
  };
}

test('the history says how long a job copied, at what average rate, and how long it verified', () => {
  assert.equal(
    jobTimesText(summary({})),
    'copying took 20 s (32.0 MiB/s on average), verifying 1 min 5 s',
  );
  assert.equal(verifiedWords(summary({})), 'verified');
  // Half copied, then stopped: the average is over what was copied.
  assert.equal(
    jobTimesText(summary({ state: 'interrupted', regionsHydrated: 320, verifySeconds: 0 })),
    'copying took 20 s (16.0 MiB/s on average)',
  );
  assert.equal(jobTimesText(summary({ copySeconds: 0, verifySeconds: 0 })), null);
  assert.equal(
    jobTimesText(summary({ copySeconds: 0.2, verifySeconds: 0 })),
    'copying took under a second',
  );
});
