// Progress outside the page (main/job-status.ts): in the window's title and the
// taskbar while jobs run, and a notification saying how each ended.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  doneNotice,
  JobStatus,
  percentOf,
  progressTitle,
  roughDuration,
  stopPrompt,
  taskbarProgress,
} from '../../main/job-status';
import { done, progress, started } from '../helpers/shell-job';

describe('progress outside the page', () => {
  test('the title leads with the progress while jobs run', () => {
    const one = { jobs: 1, bytesDone: 42, bytesTotal: 100, paused: false, troubled: false };
    assert.equal(progressTitle(null), 'DriveTwin');
    assert.equal(progressTitle({ ...one, eta: null }), '42% — DriveTwin');
    assert.equal(progressTitle({ ...one, eta: 300 }), '42% · 5 min left — DriveTwin');
    assert.equal(progressTitle({ ...one, eta: 300, paused: true }), 'Paused at 42% — DriveTwin');
    assert.equal(progressTitle({ ...one, jobs: 2, eta: 300 }), '2 copies · 42% — DriveTwin');
    assert.equal(percentOf(999, 1000), 99, 'never 100% before done');
    assert.equal(percentOf(1, 0), 0);
    assert.equal(roughDuration(30), 'less than a minute');
    assert.equal(roughDuration(7500), '2 h 05 min');
  });

  test('the taskbar shows the fraction, paused, or trouble; nothing when idle', () => {
    const one = { jobs: 1, bytesDone: 25, bytesTotal: 100, paused: false, troubled: false };
    assert.deepEqual(taskbarProgress(null), { value: -1, mode: 'none' });
    assert.deepEqual(taskbarProgress({ ...one, eta: null }), { value: 0.25, mode: 'normal' });
    assert.equal(taskbarProgress({ ...one, eta: null, paused: true }).mode, 'paused');
    assert.equal(taskbarProgress({ ...one, eta: null, troubled: true }).mode, 'error');
  });

  test('JobStatus follows the events, and a late message does not revive an ended job', () => {
    const s = new JobStatus();
    assert.equal(s.overall(), null);
    s.onEvent('job-started', started);
    assert.equal(
      progressTitle(s.overall()),
      'Starting — DriveTwin',
      'no percent worked out before the job says it',
    );
    s.onEvent('progress', progress());
    assert.equal(progressTitle(s.overall()), '50% · 5 min left — DriveTwin');
    s.onEvent('progress', progress({ phase: 'flushing', eta: 0, bytesDone: 1 << 30 }));
    assert.equal(progressTitle(s.overall()), 'Flushing · 99% — DriveTwin');
    s.onEvent('verify-progress', {
      job: 4,
      phase: 'verifying',
      bytesDone: 256 << 20,
      bytesTotal: 1 << 30,
      rate: 100 << 20,
      eta: 8,
    });
    assert.equal(progressTitle(s.overall()), 'Verifying 25% — DriveTwin');
    assert.deepEqual(taskbarProgress(s.overall()), { value: 0.25, mode: 'normal' });
    s.onEvent('progress', progress());
    s.onEvent('mode', { job: 4, mode: 'ro', reason: 'commit failed' });
    assert.equal(taskbarProgress(s.overall()).mode, 'error');
    s.onEvent('job-started', { ...started, job: 5, bytesTotal: 1 << 30, regionsHydrated: 0 });
    assert.equal(
      progressTitle(s.overall()),
      '2 copies · 50% — DriveTwin',
      'a job with no progress yet adds nothing',
    );
    s.onEvent('progress', progress({ job: 5, bytesDone: 0 }));
    assert.equal(progressTitle(s.overall()), '2 copies · 25% — DriveTwin');
    assert.equal(s.onEvent('done', done({ job: 5 }))?.title, 'Copy finished');
    const notice = s.onEvent('done', done());
    assert.equal(notice?.title, 'Copy finished');
    assert.equal(s.running, 0);
    s.onEvent('progress', progress());
    assert.equal(s.overall(), null);
    assert.equal(progressTitle(s.overall()), 'DriveTwin');
  });

  test('a compare before an update shows in the title', () => {
    const s = new JobStatus();
    s.onEvent('job-started', { ...started, intent: 'update', resumed: true });
    s.onEvent('verify-progress', {
      job: 4,
      phase: 'comparing',
      bytesDone: 512 << 20,
      bytesTotal: 1 << 30,
      rate: 1,
      eta: null,
    });
    assert.equal(progressTitle(s.overall()), 'Comparing 50% — DriveTwin');
  });

  test('the notification says how the job ended', () => {
    const ctx = { started, progress: progress() };
    const ok = doneNotice(done({ verified: true }), ctx);
    assert.equal(ok.title, 'Copy finished');
    assert.match(ok.body, /^Job 4: 1\.00 GiB copied to \/dev\/sdb in 5 min 12 s\. Verified/);
    const bad = doneNotice(done({ unreadableBytes: 4096, verified: false }), ctx);
    assert.equal(bad.title, 'Copy finished, with problems');
    assert.match(bad.body, /4\.00 KiB could not be read/);
    assert.match(bad.body, /Verify found differences/);
    const stopped = doneNotice(done({ state: 'interrupted' }), ctx);
    assert.equal(stopped.title, 'Copy stopped');
    assert.match(stopped.body, /stopped at 50%; what was copied is kept\. It can be resumed/);
    const failed = doneNotice(done({ state: 'failed' }), { ...ctx, lastError: 'read error.' });
    assert.equal(failed.body, 'Job 4 failed: read error. It can be resumed from the job list.');
    const withError = doneNotice(done({ state: 'failed', error: 'source gone' }), {
      ...ctx,
      lastError: 'an older one',
    });
    assert.equal(withError.body, 'Job 4 failed: source gone. It can be resumed from the job list.');
    assert.deepEqual(stopPrompt(2).buttons, ['Keep copying', 'Stop and quit']);
  });

  test('the notification says verified only when every destination compared equal', () => {
    const verifyOn = { ...started, options: { ...started.options, verify: true } };
    const ctx = { started: verifyOn, progress: progress() };

    // Verify off: nothing said about it, and nothing wrong.
    const off = doneNotice(done(), { started, progress: progress() });
    assert.equal(off.title, 'Copy finished');
    assert.doesNotMatch(off.body, /verif/i);

    // Verify on, done, but no verify result: not verified, with why.
    const noResult = doneNotice(done({ error: 'reading /dev/sdb failed' }), ctx);
    assert.equal(noResult.title, 'Copy finished, with problems');
    assert.match(noResult.body, /Not verified: reading \/dev\/sdb failed\./);
    assert.doesNotMatch(noResult.body, /Verified:/);
    const noReason = doneNotice(done(), ctx);
    assert.match(noReason.body, /Not verified: the verify did not finish\./);

    // Verify on, cancelled: stopped, not verified.
    const cancelled = doneNotice(done({ state: 'interrupted' }), ctx);
    assert.equal(cancelled.title, 'Copy stopped');
    assert.match(cancelled.body, /It was not verified\./);

    // One destination differs: named.
    const differs = doneNotice(
      done({
        verified: false,
        destinations: [
          {
            path: '/dev/sdb',
            state: 'done',
            error: null,
            bytesWritten: 0,
            verified: true,
            mismatches: [],
          },
          {
            path: '/dev/sdc',
            state: 'done',
            error: null,
            bytesWritten: 0,
            verified: false,
            mismatches: [{ offset: 0, length: 4096 }],
          },
        ],
      }),
      ctx,
    );
    assert.equal(differs.title, 'Copy finished, with problems');
    assert.match(differs.body, /Verify found differences on \/dev\/sdc: see the job\./);
  });

  test('the notification names a failed destination and what to do', () => {
    const notice = doneNotice(
      done({
        state: 'failed',
        error: 'destination /mnt/full/b.img failed: ENOSPC: no space left on device, write',
        failedDestinations: ['/mnt/full/b.img'],
        destinations: [
          { path: '/srv/a.img', state: 'unfinished', error: null, bytesWritten: 0 },
          {
            path: '/mnt/full/b.img',
            state: 'failed',
            error: 'ENOSPC: no space left on device, write',
            bytesWritten: 0,
          },
        ],
      }),
      { started, progress: progress() },
    );
    assert.equal(notice.title, 'Copy failed');
    assert.equal(
      notice.body,
      'Job 4 stopped: /mnt/full/b.img failed (ENOSPC: no space left on device, write). Once ' +
        'fixed, resume the job to bring it back, or finish without it, from the job list.',
    );
  });
});
