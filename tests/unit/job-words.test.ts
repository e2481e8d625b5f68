// The renderer's words for a job's events (renderer/lib/job-words.ts), under plain Node:
// the counts shown are the progress event's and add up, the confirmation says what the
// engine planned, and "verified" is said only when the done event says every
// destination compared equal.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClonePlan } from '../../preload/api';
import type { JobDone, JobProgress } from '../../preload/events';
import { doneEvent, progressEvent } from '../helpers/events';
import { finalCounts, planWords, regionCounts, verifyOutcome } from '../../renderer/lib/job-words';

const progress = (p: Partial<JobProgress> = {}): JobProgress =>
  progressEvent({ bytesTotal: 2048 << 20, regionsTotal: 2048, ...p });

const done = (d: Partial<JobDone> = {}): JobDone => doneEvent({ job: 1, ...d });

describe('region counts', () => {
  test('are the progress event’s, and not yet copied is what is left of the total', () => {
    const c = regionCounts(progress({ regionsHydrated: 100, regionsWritten: 616, hydrating: 32 }));
    assert.deepEqual(c, { total: 2048, copied: 100, written: 616, inFlight: 32, notYet: 1300 });
    assert.equal(c.copied + c.written + c.inFlight + c.notYet, c.total);
  });

  test('once ended: done is every region copied; otherwise what the record holds, nothing in flight', () => {
    assert.deepEqual(finalCounts('done', 1024, null), {
      total: 1024,
      copied: 1024,
      written: 0,
      inFlight: 0,
      notYet: 0,
    });
    assert.deepEqual(finalCounts('interrupted', 1024, 376), {
      total: 1024,
      copied: 376,
      written: 0,
      inFlight: 0,
      notYet: 648,
    });
    assert.equal(finalCounts('failed', 1024, null), null, 'not known before the record is read');
  });
});

describe('the confirmation says what the engine planned', () => {
  const plan = (p: Partial<ClonePlan>): ClonePlan => ({
    intent: 'new',
    job: null,
    bytesTotal: 1 << 30,
    sizeKnown: true,
    regionSize: 1 << 20,
    regionsTotal: 1024,
    regionsHydrated: 0,
    ...p,
  });

  test('new: erase and copy (or only copy onto new files)', () => {
    assert.deepEqual(planWords(plan({}), 1), {
      title: 'Erase this target and copy?',
      button: 'Erase and copy',
    });
    assert.equal(planWords(plan({}), 2).title, 'Erase these 2 targets and copy?');
    assert.deepEqual(planWords(plan({}), 2, false), {
      title: 'Copy onto these 2 new files?',
      button: 'Copy',
    });
  });

  test('resume: continue job N, with how much is copied when the size is known', () => {
    const resume = plan({ intent: 'resume', job: 7, regionsHydrated: 300 });
    assert.equal(planWords(resume, 1).button, 'Continue job 7 (29 % already copied)');
    assert.equal(planWords({ ...resume, regionsTotal: 0 }, 1).button, 'Continue job 7');
    assert.equal(planWords(resume, 1).title, 'Continue job 7 onto this target?');
  });

  test('update: copy only what differs', () => {
    const words = planWords(plan({ intent: 'update', job: 3, regionsHydrated: 1024 }), 2);
    assert.equal(words.button, 'Update: copy only what differs');
    assert.equal(words.title, 'Update these 2 targets from job 3?');
  });
});

describe('the verify, as the done event says it', () => {
  test('verified only when the done event says so', () => {
    assert.equal(verifyOutcome(done({ verified: true }), true, null).outcome, 'verified');
    assert.equal(verifyOutcome(done({}), true, null).outcome, 'failed');
    assert.equal(verifyOutcome(done({}), false, null).outcome, 'off');
  });

  test('differences, counted by destination', () => {
    const v = verifyOutcome(
      done({
        verified: false,
        destinations: [
          {
            path: '/a',
            state: 'done',
            error: null,
            bytesWritten: 0,
            verified: true,
            mismatches: [],
          },
          {
            path: '/b',
            state: 'done',
            error: null,
            bytesWritten: 0,
            verified: false,
            mismatches: [{ offset: 0, length: 1 }],
          },
        ],
      }),
      true,
      null,
    );
    assert.equal(v.outcome, 'differs');
    assert.match(v.text, /Differences found on one target/);
  });

  test('cancelled or failed with verify on: stopped before verifying', () => {
    for (const state of ['interrupted', 'failed'] as const) {
      const v = verifyOutcome(done({ state }), true, 'cancelled');
      assert.equal(v.outcome, 'stopped');
      assert.match(v.text, /^Stopped before verifying/);
    }
  });

  test('done with an error and no result: not verified, and why', () => {
    assert.equal(
      verifyOutcome(done({ error: 'reading /dev/sdb failed.' }), true, 'older').text,
      'Not verified: reading /dev/sdb failed.',
    );
    assert.equal(
      verifyOutcome(done({}), true, 'EIO on /dev/sdb').text,
      'Not verified: the drive reported an error there (a damaged area, or a loose cable) on /dev/sdb.',
    );
  });

  test('verify off, said only when it was', () => {
    assert.equal(
      verifyOutcome(done({ state: 'interrupted' }), false, null).text,
      'Verify was off.',
    );
    assert.equal(verifyOutcome(done({ state: 'interrupted' }), null, null).outcome, 'off');
  });
});
