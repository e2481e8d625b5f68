import assert from 'node:assert/strict';
import { test } from 'node:test';
import { niceCeiling, timeTicks } from '../../renderer/lib/chart-scale';

test('the time axis is ticked at round times, never at 0:02 / 0:05 / 0:07', () => {
  assert.deepEqual(timeTicks(0, 10), [0, 5, 10]);
  assert.deepEqual(timeTicks(0, 12.4), [0, 5, 10]);
  assert.deepEqual(timeTicks(0, 66), [0, 30, 60]);
  assert.deepEqual(timeTicks(3, 43), [10, 20, 30, 40]);
  assert.deepEqual(timeTicks(0, 600), [0, 300, 600]);
  for (const [from, to] of [
    [0, 10],
    [7, 1000],
    [0, 86_400],
  ]) {
    const ticks = timeTicks(from, to);
    assert.ok(ticks.length >= 2 && ticks.length <= 5, `${from}–${to}: ${ticks.join(',')}`);
  }
});

test('the rate axis tops at 1, 2 or 5 of a binary unit', () => {
  assert.equal(niceCeiling(15 * 1024 * 1024), 20 * 1024 * 1024);
});
