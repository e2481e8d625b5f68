// Each target's status as the renderer says it (renderer/lib/target-status.ts): being
// written with the job's progress, failed with its reason while the others go on,
// verified or not, and the done event's word for each at the end.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { JobError, JobVerified } from '../../preload/events';
import { doneEvent, progressEvent } from '../helpers/events';
import { destinationWords, plural, targetStatuses } from '../../renderer/lib/target-status';

const none = { progress: null, verifying: null, errors: [], verified: null, done: null };

describe('each target while the job runs', () => {
  test('every target is written with the job’s progress', () => {
    const progress = progressEvent({ bytesDone: 1 << 29, bytesTotal: 1 << 30 });
    const shown = targetStatuses({ ...none, destinations: ['/a', '/b'], progress });
    assert.deepEqual(
      shown.map((s) => [s.path, s.state, s.words]),
      [
        ['/a', 'copying', 'being written: 50 %'],
        ['/b', 'copying', 'being written: 50 %'],
      ],
    );
  });

  test('a failed target says why and that the others go on; a fatal error is not a target failing', () => {
    const errors: JobError[] = [
      { job: 3, message: 'ENOSPC: no space left on device', device: '/b', fatal: false },
      { job: 3, message: 'EIO', device: '/a', fatal: true },
    ];
    const [a, b] = targetStatuses({ ...none, destinations: ['/a', '/b'], errors });
    assert.equal(a.state, 'copying');
    assert.equal(b.state, 'failed');
    assert.equal(b.error, 'ENOSPC: no space left on device');
    assert.match(
      b.words,
      /^failed: it is full, with no room left to write\. It left the copy; the other targets go on\.$/,
    );
  });

  test('the verify’s result, per target, as the verified event gives it', () => {
    const verified: JobVerified = {
      job: 1,
      equal: false,
      destinations: [
        { path: '/a', equal: true, mismatches: [], regions: [] },
        { path: '/b', equal: false, mismatches: [{ offset: 0, length: 1 }], regions: [0] },
      ],
      skipped: [],
      seconds: 1,
    };
    const [a, b] = targetStatuses({ ...none, destinations: ['/a', '/b'], verified });
    assert.equal(a.words, 'copied, verified equal');
    assert.equal(a.verified, true);
    assert.equal(b.words, 'copied, differs from the source (1 range)');
  });
});

describe('each target at the end: the done event’s word', () => {
  test('done, failed with its reason, not finished; verified or differing', () => {
    const w = destinationWords;
    assert.equal(w({ path: '/a', state: 'done', error: null, bytesWritten: 0 }), 'copied');
    assert.equal(
      w({ path: '/a', state: 'failed', error: 'ENOSPC: no space left on device', bytesWritten: 0 }),
      'failed: it is full, with no room left to write.',
    );
    assert.equal(
      w({ path: '/a', state: 'unfinished', error: null, bytesWritten: 0 }),
      'not finished',
    );
    const verified = { path: '/a', state: 'done' as const, error: null, bytesWritten: 0 };
    assert.equal(w({ ...verified, verified: true, mismatches: [] }), 'copied, verified equal');
    assert.equal(
      w({ ...verified, verified: false, mismatches: [{ offset: 0, length: 1 }] }),
      'copied, differs from the source (1 range)',
    );
    assert.equal(
      w({
        ...verified,
        verified: false,
        mismatches: [
          { offset: 0, length: 1 },
          { offset: 9, length: 1 },
        ],
      }),
      'copied, differs from the source (2 ranges)',
    );
  });

  test('the done event’s destinations win over what was heard before', () => {
    const done = doneEvent({
      job: 1,
      state: 'failed',
      destinations: [
        { path: '/a', state: 'done', error: null, bytesWritten: 1, verified: true, mismatches: [] },
        { path: '/b', state: 'failed', error: 'EIO', bytesWritten: 0 },
      ],
    });
    const shown = targetStatuses({ ...none, destinations: ['/a', '/b'], done });
    assert.deepEqual(
      shown.map((s) => [s.state, s.words]),
      [
        ['done', 'copied, verified equal'],
        ['failed', 'failed: the drive reported an error there (a damaged area, or a loose cable).'],
      ],
    );
  });

  test('plural', () => {
    assert.equal(plural(1, 'range'), '1 range');
    assert.equal(plural(2, 'range'), '2 ranges');
    assert.equal(plural(1200, 'region'), '1,200 regions');
  });
});
